"""Which operators one pass ran, where, how often, and what they cost: the per-operator breakdown.

The dispatch mode (``netscope.run.trace``) counts, for every module call, each operator that ran while that
call was the innermost one, and the multiply-adds of those with a formula (``netscope.operators.registry``). This
module turns those raw per-call tables into records, lazily: a report that never asks pays nothing.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import AbstractSet, Any, Dict, List, Mapping, Sequence, Set, Tuple

from netscope.operators.registry import qualified_name

FORMULA, ZERO, UNCOUNTED = "formula", "zero", "uncounted"


@dataclass(frozen=True)
class OpUse:
    """One operator's calls and multiply-adds (in one module call, or over the whole pass)."""

    op: str  # qualified name, e.g. "aten::addmm"
    kind: str  # "formula" (counted), "zero" (zero by convention) or "uncounted" (no formula: total is partial)
    calls: int
    macs: int

    def to_dict(self) -> Dict[str, Any]:
        return {"op": self.op, "kind": self.kind, "calls": self.calls, "macs": self.macs}


@dataclass(frozen=True)
class UncountedOp:
    """An operator with no multiply-add formula and not zero by convention: the report is partial."""

    op: str
    calls: int
    layers: Tuple[str, ...]  # display names of the module calls it ran in, in call order
    reason: str = ""  # why it has no formula, for an operator left uncounted on purpose (formulas.NO_CONVENTION)

    def to_dict(self) -> Dict[str, Any]:
        return {"op": self.op, "calls": self.calls, "layers": list(self.layers), **({"reason": self.reason}
                                                                                   if self.reason else {})}

    def __str__(self) -> str:
        shown = ", ".join(self.layers[:3]) + (f" and {len(self.layers) - 3} more" if len(self.layers) > 3 else "")
        why = f"; uncounted on purpose: {self.reason}" if self.reason else ""
        return f"{self.op} ({self.calls} call{'s' if self.calls != 1 else ''} in {shown}{why})"


@dataclass(frozen=True)
class OperatorTable:
    """What the dispatch mode recorded, one entry per operator call, in flat lists: the index of the
    module call that was innermost (-1: outside every call, charged to the root as its multiply-adds
    are) and the op packet; the same for operators with a formula, with their multiply-adds. Tallied
    per module call lazily, on the first question. ``kinds`` says how each operator counted.
    """

    call_count: int
    op_calls: Sequence[int]
    op_packets: Sequence[Any]
    mac_calls: Sequence[int]
    mac_packets: Sequence[Any]
    mac_values: Sequence[int]
    kinds: Mapping[Any, str]
    complex_packets: AbstractSet[Any] = frozenset()  # operators counted on complex numbers (4 real per complex)

    def __reduce__(self):
        """Pickled with each op packet as its qualified name (torch's op objects do not pickle), so a report can
        leave a worker process or be saved from a notebook; every answer of the table is the same from names."""
        name = qualified_name
        return (type(self), (self.call_count, list(self.op_calls), [name(p) for p in self.op_packets],
                             list(self.mac_calls), [name(p) for p in self.mac_packets], list(self.mac_values),
                             {name(p): kind for p, kind in self.kinds.items()},
                             frozenset(name(p) for p in self.complex_packets)))

    @functools.cached_property
    def counts(self) -> Tuple[Dict[Any, int], ...]:
        """Per module call: op packet -> calls."""
        return self._per_call(self.op_calls, self.op_packets, itertools.repeat(1))

    @functools.cached_property
    def macs(self) -> Tuple[Dict[Any, int], ...]:
        """Per module call: op packet -> multiply-adds (operators with a formula)."""
        return self._per_call(self.mac_calls, self.mac_packets, self.mac_values)

    def _per_call(self, calls, packets, values) -> Tuple[Dict[Any, int], ...]:
        tables: List[Dict[Any, int]] = [{} for _ in range(max(self.call_count, 1))]
        for index, packet, value in zip(calls, packets, values):
            table = tables[index if index >= 0 else 0]
            table[packet] = table.get(packet, 0) + value
        return tuple(tables)

    @functools.cached_property
    def _missing(self) -> Set[Any]:
        """The recorded operators without a formula. ``kinds`` may be shared with later passes (a training
        step's backward and optimizer operators): only the operators recorded here count. Asked of the recorded
        ones only when ``kinds`` has such an operator at all (a packet's hash is a Python call)."""
        if UNCOUNTED not in self.kinds.values():
            return set()
        return {p for p in set(self.op_packets) if self.kinds.get(p) == UNCOUNTED}

    @property
    def partial(self) -> bool:
        """True when some operator that ran has no formula: the multiply-add totals are lower bounds."""
        return bool(self._missing)

    def call_ops(self, index: int) -> List[OpUse]:
        """The operators of one module call (its own, not its children's), heaviest first."""
        macs = self.macs[index]
        uses = [OpUse(qualified_name(p), self.kinds[p], n, macs.get(p, 0)) for p, n in self.counts[index].items()]
        return sorted(uses, key=lambda u: (-u.macs, -u.calls, u.op))

    def overall(self) -> List[OpUse]:
        """Every operator of the pass, heaviest first."""
        calls = _tally(zip(self.op_packets, itertools.repeat(1)))
        total = _tally(zip(self.mac_packets, self.mac_values))
        uses = [OpUse(qualified_name(p), self.kinds[p], n, total.get(p, 0)) for p, n in calls.items()]
        return sorted(uses, key=lambda u: (-u.macs, -u.calls, u.op))

    def uncounted_calls(self) -> Set[int]:
        """Indexes of the module calls in which an uncounted operator ran itself."""
        missing = self._missing
        if not missing:
            return set()
        return {max(index, 0) for index, packet in zip(self.op_calls, self.op_packets) if packet in missing}

    def uncounted(self, layer_names: Sequence[str]) -> List[UncountedOp]:
        """Each uncounted operator with its call count and the module calls (``layer_names[i]``) it ran in."""
        from netscope.operators.formulas import NO_CONVENTION

        missing = self._missing
        found = []
        for packet in missing:
            where = [i for i, counts in enumerate(self.counts) if packet in counts]
            name = qualified_name(packet)
            found.append(UncountedOp(name, sum(self.counts[i][packet] for i in where),
                                     tuple(layer_names[i] for i in where), NO_CONVENTION.get(name, "")))
        return sorted(found, key=lambda u: (-u.calls, u.op))


def _tally(pairs) -> Dict[Any, int]:
    totals: Dict[Any, int] = {}
    for key, value in pairs:
        totals[key] = totals.get(key, 0) + value
    return totals
