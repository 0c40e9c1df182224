"""The compact JSON payload the HTML report's script renders: tables of classes and shapes, one array per call."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Tuple

from netscope.shapes import format_shape_tree

FORMAT_VERSION = 1
# Position of each field in a row array; the page's script reads the same order (ROW_FIELDS in the JS).
ROW_FIELDS = ("name", "class", "parent", "input", "output", "params", "macs", "own_params", "own_macs", "call",
              "check")
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
    if name.startswith(parent_name + "."):
        return name[len(parent_name) + 1:]
    return [name]


def check_notes(check) -> List[Any]:
    """A formula check as [status, what went wrong ('' when it passed), [finding messages], [their severities]]
    (severities in the CLI's and JSON's vocabulary: error, warning, info)."""
    status = str(getattr(check, "status", "unknown"))
    problem = "" if status == "pass" else (f"{status}: expected {getattr(check, 'expected_shape', '?')}, "
                                          f"observed {getattr(check, 'observed_shape', '?')}")
    findings = getattr(check, "findings", ()) or ()
    messages = [str(getattr(f, "message", f)) for f in findings]
    severities = [str(getattr(getattr(f, "severity", None), "value", "warning")) for f in findings]
    return [status, problem, messages, severities]


def notes_badge(severities) -> Tuple[str, str]:
    """(css class, label) of a check's findings badge: "warn" when any is a warning or error, else "info"."""
    if any(s != "info" for s in severities):
        return "ns-warn", f"{len(severities)} warn"
    return "ns-other", f"{len(severities)} info"


def finding_rows(report) -> Tuple[Dict[int, List[List[str]]], List[List[str]]]:
    """Naming findings placed on the call they name (its first call), and those that name no call."""
    first_call = {}
    for call in report.layers:
        first_call.setdefault(call.name, call.index)
    placed: Dict[int, List[List[str]]] = {}
    loose: List[List[str]] = []
    for finding in report.findings:
        entry = [finding.code, finding.message, finding.fix or ""]
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
    rows = []
    for c in report.layers:
        parent_name = names.get(c.parent, "") if c.parent is not None else ""
        rows.append([
            _relative_name(c.name, parent_name), classes(c.class_name), -1 if c.parent is None else c.parent,
            shapes(_short_shape(c.input_shapes)), shapes(_short_shape(c.output_shapes)),
            c.subtree_params, c.macs, c.own_params, c.own_macs, c.call_number, check_of.get(c.index, -1),
        ])
    placed, loose = finding_rows(report)
    naming: Dict[str, List[List[int]]] = {}
    budget = MAX_FINDING_MESSAGES
    for index in sorted(placed):
        entries = []
        for code, message, fix in placed[index]:
            entries.append([texts(code), texts(message) if budget > 0 else -1, texts(fix)])
            budget -= 1
        naming[str(index)] = entries
    return {
        "version": FORMAT_VERSION,
        "model": report.run.model,
        "fields": list(ROW_FIELDS),
        "classes": classes.table,
        "shapes": shapes.table,
        "texts": texts.table,
        "rows": rows,
        "checks": check_table,
        "names": naming,
        "loose_findings": loose,
        "totals": report.totals.to_dict(),
    }


def script_json(payload: Dict[str, Any]) -> str:
    """JSON safe inside a <script> element: every '<', '>' and '&' escaped, so '</script>' cannot occur."""
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
