"""The naming audit's records and their rendering. Imports no torch."""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from typing import List, Optional, Tuple

from netscope.run.no_memory import BUILD_DESCRIPTIONS
from netscope.errors import UsageError
from netscope.records import Finding
from netscope.render.rows import cell_text, check_format, fitted_table, render_rows
from netscope.report import TEXT_WIDTH
from netscope.units import plural

from netscope.naming.segments import Segment


@dataclass(frozen=True)
class NameEntry:
    """One state_dict key, or one parameter/buffer that state_dict leaves out."""

    key: str  # the state_dict key; for tensors not saved, the dotted path they live under
    segments: Tuple[Segment, ...]  # the key's structural path, segment by segment
    expression: Optional[str]  # Python reaching the tensor from ``model``; None when unknown
    kind: str  # parameter, buffer, non-persistent-buffer, extra-state, state-dict-hook
    shape: Optional[Tuple[int, ...]]
    dtype: Optional[str]  # "float32"; None for extra state
    trainable: bool
    in_state_dict: bool
    alias_group: Optional[int]  # equal for names of the same tensor; None when it has one name
    module_class: str  # class of the module that holds it

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape or ():
            n *= d
        return n if self.shape is not None else 0

    @property
    def origins(self) -> Tuple[str, ...]:
        return tuple(segment.origin for segment in self.segments)

    def to_dict(self) -> dict:
        return {
            "key": self.key,
            "segments": [{"text": s.text, "origin": s.origin} for s in self.segments],
            "expression": self.expression,
            "kind": self.kind,
            "shape": list(self.shape) if self.shape is not None else None,
            "dtype": self.dtype,
            "trainable": self.trainable,
            "in_state_dict": self.in_state_dict,
            "alias_group": self.alias_group,
            "module_class": self.module_class,
        }


@dataclass(frozen=True)
class NamingTotals:
    """Whole-model figures; a tensor with several names is counted once."""

    state_dict_keys: int
    unique_saved_tensors: int  # distinct tensors behind those keys (torch.save writes each once)
    total_params: int
    trainable_params: int
    buffer_elements: int
    aliased_tensors: int  # tensors reachable under more than one name
    unregistered_params: int  # elements of parameters that .parameters() and state_dict() never see
    findings: int

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


# named as the JSON entries name them (CSV's header); a table titles two of them shorter
ENTRY_COLUMNS = ("key", "origins", "expression", "shape", "dtype", "trainable", "in_state_dict", "alias_group")
ENTRY_TITLES = {"in_state_dict": "saved", "alias_group": "alias"}
SHARED_COLUMNS = ("dtype", "trainable", "in_state_dict", "alias_group")  # stated once under the table when one value fits all
DROP_ORDER = ("expression",)  # left out of a table wider than its width (it restates the key as Python)
FINDING_COLUMNS = ("severity", "code", "layer", "message", "fix")


@dataclass(frozen=True)
class NamingReport:
    """Where every state_dict key comes from, and what is wrong with the naming."""

    model: str
    entries: Tuple[NameEntry, ...]
    findings: List[Finding]
    totals: NamingTotals
    build: Optional[str] = None  # how netscope built the model (meta, fake, cpu); None for a model passed in

    @property
    def findings_count(self) -> int:
        return len(self.findings)

    def __repr__(self) -> str:
        """One line (the dataclass repr of every entry runs to 130 k characters on ResNet-50)."""
        t = self.totals
        return (f"NamingReport({self.model}: {t.state_dict_keys} state_dict keys, {t.unique_saved_tensors} saved "
                f"tensors, {t.aliased_tensors} aliased, {len(self.findings)} findings)")

    def state_dict_keys(self) -> List[str]:
        return [e.key for e in self.entries if e.in_state_dict]

    def to_dict(self) -> dict:
        """The JSON document ``netscope names -f json`` writes (schema ``netscope.names``)."""
        from netscope.render.rows import json_document

        return json_document("names", {
            "model": self.model,
            "entries": [e.to_dict() for e in self.entries],
            "findings": [f.to_dict() for f in self.findings],
            "totals": self.totals.to_dict(),
            "build": self.build,
        })

    def render(self, fmt: str = "table", table_style: str = "simple", *, findings_only: bool = False,
               columns=None) -> str:
        """Text in one of table, markdown, csv, json. csv holds one table: entries, or findings. ``columns``
        (``"key,shape"``, ``"all"`` or a list of :data:`ENTRY_COLUMNS`): the key table's columns, all of them
        shown as asked (none folded into a line under the table, none left out to fit); JSON keeps its schema."""
        check_format(fmt, table_style)
        chosen = entry_columns(columns, fmt)
        if fmt == "json":
            data = self.to_dict()
            if findings_only:
                del data["entries"]
            return json.dumps(data, indent=2)
        finding_rows = [_finding_row(f) for f in self.findings]
        if fmt == "csv":
            if findings_only:
                return render_rows(finding_rows, FINDING_COLUMNS, "csv")
            return render_rows([_entry_row(e) for e in self.entries], chosen or ENTRY_COLUMNS, "csv")
        built = f" (built with {BUILD_DESCRIPTIONS[self.build]})" if self.build in BUILD_DESCRIPTIONS else ""
        parts = [f"state_dict naming audit: {self.model}{built}"]
        if not findings_only:
            rows = [_entry_row(e) for e in self.entries]
            columns, same = list(chosen or ENTRY_COLUMNS), []
            if fmt == "table" and len(rows) > 1 and not chosen:  # a column with one value for every key is a line
                for column in SHARED_COLUMNS:
                    values = {row[column] for row in rows}
                    if len(values) == 1:
                        columns.remove(column)
                        text = cell_text(values.pop())
                        title = ENTRY_TITLES.get(column, column)
                        same.append(f"{title} {text}" if text else f"no {title}")
            table, dropped = fitted_table(
                lambda shown: render_rows(rows, shown, fmt, headers=ENTRY_TITLES, table_style=table_style,
                                          wrap="origins", width=TEXT_WIDTH, min_wrap=24),
                columns, DROP_ORDER if fmt == "table" and not chosen else (), TEXT_WIDTH)
            if same:
                table += f"\nEvery key has {', '.join(same)}."
            if dropped:
                table += (f"\n(left out to fit {TEXT_WIDTH} columns: {', '.join(dropped)}, the key as a Python "
                          "expression; --format csv or json has every column)")
            parts.append(table)
        if self.findings:
            parts.append(render_rows(finding_rows, FINDING_COLUMNS, fmt, table_style=table_style, wrap="message",
                                     width=TEXT_WIDTH))
        parts.append(textwrap.fill(_totals_line(self.totals), TEXT_WIDTH) if fmt == "table" else _totals_line(self.totals))
        return "\n\n".join(parts) + "\n"


def entry_columns(spec, fmt: str = "table") -> Optional[Tuple[str, ...]]:
    """``--columns`` of ``netscope names`` (:data:`ENTRY_COLUMNS`), validated; None when not given. Refused with
    ``-f json``, whose entries follow the ``netscope.names`` schema rather than the table's columns."""
    if spec is None:
        return None
    from netscope.render.columns import chosen_columns

    keys = chosen_columns(spec, ENTRY_COLUMNS, example="key,shape,dtype")
    if fmt == "json":
        raise UsageError("--columns picks the key table's columns (table, markdown, csv); JSON entries keep every "
                         "field of the netscope.names schema: leave out --columns, or use -f csv")
    return keys


def _entry_row(entry: NameEntry) -> dict:
    return {
        "key": entry.key,
        "origins": ", ".join(entry.origins),
        "expression": entry.expression or "",
        "shape": "" if entry.shape is None else "[" + ", ".join(map(str, entry.shape)) + "]",
        "dtype": entry.dtype or "",
        "trainable": entry.trainable,
        "in_state_dict": entry.in_state_dict,
        "alias_group": entry.alias_group,
    }


def _finding_row(finding: Finding) -> dict:
    return {"severity": finding.severity.value, "code": finding.code, "layer": finding.layer,
            "message": finding.message, "fix": finding.fix}


def _totals_line(t: NamingTotals) -> str:
    return (f"{plural(t.state_dict_keys, 'state_dict key')} over {plural(t.unique_saved_tensors, 'distinct tensor')}; "
            f"{plural(t.total_params, 'parameter')} counted once ({t.trainable_params:,} trainable), "
            f"{plural(t.buffer_elements, 'buffer element')}; {plural(t.aliased_tensors, 'tensor')} with several names; "
            f"{plural(t.unregistered_params, 'unregistered parameter')}; {plural(t.findings, 'finding')}")
