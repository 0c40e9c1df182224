"""What a remap or diff decided, as records that render to table/markdown/csv/json."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from netscope.remapping import plan as P
from netscope.remapping.coverage import Coverage
from netscope.remapping.plan import KeyDecision, Plan
from netscope.units import first_few, shape_text

COLUMNS = ("source", "target", "reason", "shape", "detail")
CSV_COLUMNS = ("source", "target", "reason", "detail", "source_shape", "target_shape")  # as JSON's plan decisions
HEADERS = {"source": "checkpoint key", "target": "model key", "reason": "reason", "shape": "shape",
           "detail": "detail"}


def _shape_text(decision: KeyDecision) -> str:
    """``[4, 3]`` as every command writes a shape, or ``[3, 4] vs [2, 4]`` (checkpoint vs model) where they differ."""
    s, t = decision.source_shape, decision.target_shape
    if s is not None and t is not None and s != t:
        return f"{shape_text(s)} vs {shape_text(t)}"
    shape = s if s is not None else t
    return shape_text(shape) if shape is not None else ""


def decision_row(decision: KeyDecision) -> dict:
    """A decision's table cells, and its CSV's (JSON's fields: ``source_shape`` and ``target_shape`` in place of the
    table's one ``shape``)."""
    return {"source": decision.source or "", "target": decision.target or "", "reason": decision.reason,
            "shape": _shape_text(decision), "detail": decision.detail,
            "source_shape": shape_text(decision.source_shape) if decision.source_shape is not None else "",
            "target_shape": shape_text(decision.target_shape) if decision.target_shape is not None else ""}


@dataclass(frozen=True)
class Unmatched:
    """A checkpoint tensor that does not go into the model, and why."""

    key: str
    shape: Optional[Tuple[int, ...]]
    reason: str  # unused | ambiguous | shape-mismatch
    detail: str

    @property
    def why(self) -> str:
        """``reason: detail``, the reason said once (some details already begin with it)."""
        return self.detail if self.detail.startswith(f"{self.reason}:") else f"{self.reason}: {self.detail}"


@dataclass(frozen=True)
class RemapReport:
    """The plan (every key decided), coverage of the target's parameters, and notes."""

    plan: Plan
    coverage: Coverage
    source_label: str = "state_dict"
    target_label: str = "model"
    notes: Tuple[str, ...] = ()
    optimizer_keys_renamed: int = 0
    unmatched: Tuple[Unmatched, ...] = ()  # checkpoint tensors not loaded into the model (file-to-file remap)
    unmatched_destination: str = ""  # where they went: kept in the container, a side file, or dropped
    loader_fills: Tuple[str, ...] = ()  # missing model keys torch's load_state_dict supplies (loader_fills.py)
    stray_entries: Tuple[str, ...] = ()  # the checkpoint's non-tensor state-dict entries the model does not have
    missing_entries: Tuple[str, ...] = ()  # the model's required non-tensor entries (_extra_state) the checkpoint lacks

    def __post_init__(self):
        """``notes`` is every note, the reading's and then the plan's (a tied tensor filled twice, a quantized
        tensor into floats): the one list the API, the text and the JSON show."""
        object.__setattr__(self, "notes", tuple(dict.fromkeys(tuple(self.notes) + tuple(self.plan.notes))))

    @property
    def decisions(self) -> Tuple[KeyDecision, ...]:
        return self.plan.decisions

    def __repr__(self) -> str:
        """One line (the dataclass repr of every decision runs to 50 k characters on ResNet-50)."""
        return (f"{type(self).__name__}({self.source_label} -> {self.target_label}: {len(self.plan.decisions)} keys "
                f"decided, {len(self.missing)} missing, {len(self.unused)} unused, {len(self.mismatched)} mismatched)")

    @property
    def mapping(self) -> Dict[str, str]:
        return self.plan.mapping()

    @property
    def rules(self):
        return self.plan.rules

    def keys_with(self, reason: str, side: str = "source") -> List[str]:
        return [getattr(d, side) for d in self.plan.decisions if d.reason == reason and getattr(d, side)]

    @property
    def missing(self) -> List[str]:
        return self.keys_with(P.MISSING, "target")

    @property
    def unused(self) -> List[str]:
        return self.keys_with(P.UNUSED)

    @property
    def ambiguous(self) -> List[str]:
        """Checkpoint keys that fit a model key but were refused: neither names nor structure decide."""
        return self.keys_with(P.AMBIGUOUS)

    @property
    def mismatched(self) -> List[KeyDecision]:
        return self.plan.by_reason(P.MISMATCH)

    def strict_problems(self) -> List[str]:
        """Why ``load_state_dict(strict=True)`` of the mapped checkpoint would refuse (empty when it would not)."""
        problems = []
        missing = [k for k in self.missing if k not in self.loader_fills]
        if missing:
            problems.append(f"{len(missing)} model key(s) have no checkpoint tensor (first: {missing[0]})")
        if self.mismatched:
            d = self.mismatched[0]
            problems.append(f"{len(self.mismatched)} tensor(s) do not fit (a different shape, a square weight "
                            f"stored transposed, or a dtype or layout torch cannot copy; first: {d.source}: {d.detail})")
        if self.ambiguous:
            d = next(d for d in self.plan.decisions if d.reason == P.AMBIGUOUS)
            problems.append(f"{len(self.ambiguous)} checkpoint tensor(s) are ambiguous and were not mapped (first: "
                            f"{d.source}: {d.detail})")
        if self.unused:
            problems.append(f"{len(self.unused)} checkpoint tensor(s) map to nothing (first: {self.unused[0]})")
        for keys, what in ((self.stray_entries, "the model does not have ({}), which load_state_dict(strict=True) "
                            "refuses as unexpected keys (remap carries them over unchanged)"),
                           (self.missing_entries, "the model's modules set on load are not in the checkpoint ({}), "
                            "which load_state_dict(strict=True) reports missing")):
            if keys:
                problems.append(f"{len(keys)} non-tensor state-dict entr{'y' if len(keys) == 1 else 'ies'} "
                                + what.format(first_few(map(repr, keys))))
        return problems

    def rows(self, *, include_exact: bool = True) -> List[dict]:
        return [decision_row(d) for d in self.plan.decisions if include_exact or d.reason != P.EXACT]

    def summary_lines(self) -> List[str]:
        counts = self.plan.counts()
        parts = ", ".join(f"{n} {reason}" for reason, n in counts.items() if n)
        lines = [f"{self.source_label} -> {self.target_label}: {parts or 'no keys'}",
                 f"coverage: {self.coverage.fraction:.2%} of {self.coverage.counted} will be loaded "
                 f"({self.coverage.loaded:,} of {self.coverage.total:,})"]
        partial = [m for m in self.coverage.per_module if m.loaded < m.total]
        for module in partial:
            lines.append(f"  {module.module}: {module.fraction:.2%} ({module.loaded:,} of {module.total:,})")
        if self.coverage.uninitialised:
            shown = ", ".join(self.coverage.uninitialised[:10])
            more = len(self.coverage.uninitialised) - 10
            lines.append(f"left uninitialised: {shown}" + (f" and {more} more" if more > 0 else ""))
        if self.plan.rules:
            lines.append("compact rules" + ("" if self.plan.rules_reproduce_mapping else " (partial; the plan is exact)")
                         + ": " + "; ".join(f"{r.pattern} -> {r.replacement or '(nothing)'}" for r in self.plan.rules[:12])
                         + (f" ... ({len(self.plan.rules)} in all)" if len(self.plan.rules) > 12 else ""))
        if self.loader_fills:
            lines.append(f"filled in by torch's load_state_dict: {', '.join(self.loader_fills[:5])}"
                         + (f" and {len(self.loader_fills) - 5} more" if len(self.loader_fills) > 5 else "")
                         + " (the state dict's _metadata has no version 2 for that module, so torch adds the counter)")
        if self.unmatched:
            lines.append(f"not loaded into the model: {len(self.unmatched)} checkpoint tensor(s)"
                         + (f", {self.unmatched_destination}" if self.unmatched_destination else "") + ":")
            for u in self.unmatched[:10]:
                lines.append(f"  {u.key} {shape_text(u.shape or ())} {u.why}")
            if len(self.unmatched) > 10:
                lines.append(f"  ... and {len(self.unmatched) - 10} more")
        if self.optimizer_keys_renamed:
            lines.append(f"optimizer state: {self.optimizer_keys_renamed} entries re-keyed")
        lines.extend(f"note: {n}" for n in self.notes)
        return lines

    def render(self, fmt: str = "table", *, table_style: str = "simple", include_exact: bool = True) -> str:
        from netscope.render.rows import render_rows

        if fmt == "json":
            return json.dumps(self.to_dict(), indent=2)
        from netscope.report import TEXT_WIDTH

        if fmt == "csv":
            return render_rows(self.rows(include_exact=include_exact), CSV_COLUMNS, fmt)
        table = render_rows(self.rows(include_exact=include_exact), COLUMNS, fmt, headers=HEADERS,
                            table_style=table_style, wrap="detail", width=TEXT_WIDTH)
        return table + "\n\n" + "\n".join(self.summary_lines())

    SCHEMA = "remap"  # json_document's kind: the document is netscope.<SCHEMA>

    def to_dict(self) -> dict:
        """The JSON document ``netscope remap -f json`` writes (schema ``netscope.remap``; ``netscope.diff`` for
        :class:`DiffReport`, which adds the by-name lists)."""
        from netscope.render.rows import json_document

        return json_document(self.SCHEMA, {"source": self.source_label, "target": self.target_label,
                "coverage": self.coverage.to_dict(),
                "strict_problems": self.strict_problems(), "loader_fills": list(self.loader_fills),
                "notes": list(self.notes),
                "optimizer_keys_renamed": self.optimizer_keys_renamed,
                "unmatched": [{"key": u.key, "shape": list(u.shape) if u.shape is not None else None,
                               "reason": u.reason, "detail": u.detail} for u in self.unmatched],
                "unmatched_destination": self.unmatched_destination, "plan": self.plan.to_dict()})

    def __str__(self) -> str:
        return self.render("table", include_exact=False)


@dataclass(frozen=True, repr=False)  # RemapReport's one-line repr
class DiffReport(RemapReport):
    """A checkpoint against a model in torch's terms (missing / unexpected / shape-mismatched keys by
    exact name), each with its likely reason and the mapping netscope proposes."""

    def _keys(self, side: str) -> List[str]:
        return list(dict.fromkeys(getattr(d, side) for d in self.plan.decisions if getattr(d, side)))

    @property
    def missing_by_name(self) -> List[str]:
        """Model keys the checkpoint does not have under that exact name."""
        sources = set(self._keys("source"))
        return [t for t in self._keys("target") if t not in sources]

    @property
    def unexpected_by_name(self) -> List[str]:
        """Checkpoint keys the model does not have under that exact name."""
        targets = set(self._keys("target"))
        return [s for s in self._keys("source") if s not in targets]

    @property
    def clean(self) -> bool:
        """Whether ``load_state_dict(strict=True)`` takes the checkpoint as it is: every key exact. A tied key
        the file saved once (``alias-of``) is still missing by name, so torch's strict load refuses it."""
        return not self.stray_entries and not self.missing_entries and all(
            d.reason == P.EXACT or (d.reason == P.MISSING and d.target in self.loader_fills)
            for d in self.plan.decisions)

    SCHEMA = "diff"

    def rows(self, *, include_exact: bool = False) -> List[dict]:
        return super().rows(include_exact=include_exact)

    def summary_lines(self) -> List[str]:
        head = (f"by exact name: {len(self.missing_by_name)} missing, {len(self.unexpected_by_name)} unexpected, "
                f"{len(self.mismatched)} shape-mismatched")
        return [head] + super().summary_lines()

    def render(self, fmt: str = "table", *, table_style: str = "simple", include_exact: bool = False) -> str:
        return super().render(fmt, table_style=table_style, include_exact=include_exact)

    def to_dict(self) -> dict:
        data = super().to_dict()
        data.update(missing_by_name=self.missing_by_name, unexpected_by_name=self.unexpected_by_name)
        return data
