"""The compact JSON payload the HTML report's script renders: tables of classes and shapes, one array per call."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Tuple

from netscope.records import NOT_RECORDED, Severity
from netscope.render.columns import COLUMNS, relative_name
from netscope.run.shapes import format_shape_tree

FORMAT_VERSION = 2
# Position of each field in a row array; the page's script looks each one up by name in ``fields``.
ROW_FIELDS = ("name", "class", "parent", "input", "output", "params", "macs", "own_params", "own_macs", "call",
              "check", "macs_partial", "own_macs_partial",  # 1 where that count misses an uncounted operator (>=N)
              "inputs_from")  # the calls it received outputs of, each as index - theirs (the model's input: index + 1)
# The tree's columns, in order: titles and alignment from the column registry (render/columns.py).
TREE_COLUMNS = ("layer", "type", "input", "output", "params", "macs", "check")
SORTABLE = ("params", "macs")
MAX_FINDING_MESSAGES = 400  # naming findings whose full message is embedded; the rest keep code and fix only


class _Interner:
    """Strings stored once in a table, referred to by position."""

    def __init__(self) -> None:
        self.table: List[str] = []
        self._index: Dict[str, int] = {}

    def __call__(self, text: str) -> int:
        if text not in self._index:
            self._index[text] = len(self.table)
            self.table.append(text)
        return self._index[text]


def exact(count):
    """A count as JSON that JavaScript reads without loss: past 2**53 (a float64's last exact integer) a decimal
    string, which the page's script reads with BigInt."""
    return str(count) if isinstance(count, int) and abs(count) > 2**53 else count


def _short_shape(tree) -> str:
    """'1×64×56×56' for one tensor, the general shape-tree text otherwise."""
    if isinstance(tree, list) and len(tree) == 1:
        tree = tree[0]
    if isinstance(tree, tuple):
        return "×".join(str(d) for d in tree) or "scalar"
    return format_shape_tree(tree)


def _relative_name(name: str, parent_name: str):
    """The name's last part when it extends the enclosing call's name, else ``[full name]``."""
    if not parent_name:
        return name
    short = relative_name(name, parent_name)
    return short if short != name else [name]


def check_notes(check) -> List[Any]:
    """A formula check as [status, what went wrong ('' when it passed), [warning messages], [info messages]].

    Each finding goes where its own ``severity`` puts it (the CLI and JSON use the same field); the
    finding that restates a mismatch (an error) is left to ``status`` and ``problem``."""
    status = str(getattr(check, "status", "unknown"))
    problem = "" if status == "pass" else (f"{status}: expected {getattr(check, 'expected_shape', '?')}, "
                                          f"observed {getattr(check, 'observed_shape', '?')}")
    warnings, notes = [], []
    for finding in getattr(check, "findings", ()) or ():
        severity = str(getattr(finding, "severity", Severity.WARNING))
        if severity == Severity.WARNING.value:
            warnings.append(str(finding.message))
        elif severity == Severity.INFO.value:
            notes.append(str(finding.message))
    return [status, problem, warnings, notes]


def finding_rows(report) -> Tuple[Dict[int, List[List[str]]], List[List[str]]]:
    """Naming findings ([code, message, fix, severity]) placed on the call they name (its first call), and
    those that name no call (with the layer name appended)."""
    first_call = {}
    for call in report.layers:
        first_call.setdefault(call.name, call.index)
    placed: Dict[int, List[List[str]]] = {}
    loose: List[List[str]] = []
    for finding in report.findings:
        entry = [finding.code, finding.message, finding.fix or "", str(finding.severity)]
        index = finding.call_index if finding.call_index is not None else first_call.get(finding.layer)
        if index is None:
            loose.append(entry + [finding.layer or ""])
        else:
            placed.setdefault(index, []).append(entry)
    return placed, loose


def report_payload(report) -> Dict[str, Any]:
    """Everything the page's script needs, as plain JSON-able values, with repeated strings stored once."""
    classes, shapes, texts = _Interner(), _Interner(), _Interner()
    check_kinds: Dict[str, int] = {}  # identical check outcomes (most are a plain "pass") are stored once
    check_table: List[Any] = []
    check_of = {}
    for check in report.checks:
        outcome = check_notes(check)
        key = json.dumps(outcome)
        if key not in check_kinds:
            check_kinds[key] = len(check_table)
            check_table.append(outcome)
        check_of[check.call_index] = check_kinds[key]
    names = {c.index: c.name for c in report.layers}
    partial = report.partial_calls()
    own_partial = report.operators.uncounted_calls() if report.partial else set()  # ran in the call's own code
    rows = []
    for c in report.layers:
        parent_name = names.get(c.parent, "") if c.parent is not None else ""
        recorded = c.output_shapes != NOT_RECORDED  # inside TorchScript no hook ran: shapes and counts unknown, not 0
        rows.append([
            _relative_name(c.name, parent_name), classes(c.class_name), -1 if c.parent is None else c.parent,
            shapes(_short_shape(c.input_shapes) if recorded else NOT_RECORDED), shapes(_short_shape(c.output_shapes)),
            exact(c.subtree_params), exact(c.macs) if recorded else None, exact(c.own_params),
            exact(c.own_macs) if recorded else None,
            c.call_number, check_of.get(c.index, -1), int(c.index in partial), int(c.index in own_partial),
            [c.index - source for source in c.inputs_from],  # small numbers: most come from a call just before
        ])
    # operators in a call's own code joining several calls' outputs: {call: [[operator, [calls]], ...]}
    merges = {str(c.index): [[texts(op), list(sources)] for op, sources in c.merges] for c in report.layers if c.merges}
    placed, loose = finding_rows(report)
    naming: Dict[str, List[List[int]]] = {}
    severity: Dict[str, str] = {}  # the badge's colour: the most severe naming finding of the call
    rank = {Severity.ERROR.value: 0, Severity.WARNING.value: 1, Severity.INFO.value: 2}
    budget = MAX_FINDING_MESSAGES
    for index in sorted(placed):
        entries = []
        severity[str(index)] = min((entry[3] for entry in placed[index]), key=lambda level: rank.get(level, 1))
        for code, message, fix, _ in placed[index]:
            entries.append([texts(code), texts(message) if budget > 0 else -1, texts(fix)])
            budget -= 1
        naming[str(index)] = entries
    return {
        "version": FORMAT_VERSION,
        "columns": [[key, COLUMNS[key].title, COLUMNS[key].numeric, key in SORTABLE] for key in TREE_COLUMNS],
        "folds": [[f.first, list(f.members), f.label] for f in report.folds()],
        "model": report.run.model,
        "fields": list(ROW_FIELDS),
        "classes": classes.table,
        "shapes": shapes.table,
        "texts": texts.table,
        "rows": rows,
        "checks": check_table,
        "names": naming,
        "name_severity": severity,
        "merges": merges,
        "loose_findings": loose,
        "totals": report.totals.to_dict(),
    }


def script_json(payload: Dict[str, Any]) -> str:
    """JSON safe inside a <script> element: every '<', '>' and '&' escaped, so '</script>' cannot occur."""
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
