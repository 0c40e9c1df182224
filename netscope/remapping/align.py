"""Matching by structure when names differ: nn.Sequential renumbering, then order/type/shape alignment.

Both work on *open* keys only (not yet matched by name, wrapper or rule) and never pair tensors of
different shapes. Structural alignment compares "leaf groups" (the tensors registered directly on one
module) in registration order, anchored diff-style on groups whose signature is unique on both sides,
and refuses to pair where two candidate positions fit equally. Everything here is near-linear.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Sequence, Tuple

from netscope.records import TensorMeta
from netscope.remapping.wrappers import WRAPPER_TOKENS

Shape = Tuple[int, ...]


# ---------------------------------------------------------------- sequential renumbering

@dataclass(frozen=True)
class IndexShift:
    """Children of one nn.Sequential/ModuleList moved from ``source_prefix`` to ``target_prefix``."""

    source_prefix: str  # e.g. "features.3." (actual source spelling, wrappers included)
    target_prefix: str  # e.g. "features.2."
    pairs: Tuple[Tuple[str, str], ...]  # (source key, target key)


def _index_positions(key: str):
    """(container, index, rest, actual prefix) for each numeric segment of ``key``, wrappers ignored."""
    parts = key.split(".")
    if not any(map(str.isdigit, parts)):  # the common case: nothing to yield
        return
    real = [(i, p) for i, p in enumerate(parts) if p not in WRAPPER_TOKENS] if ("module" in key or "_orig_mod" in key) \
        else list(enumerate(parts))
    for n in range(len(real) - 1):
        pos, part = real[n]
        if part.isdigit():
            yield n, pos, part, parts, real


def _containers(keys: Sequence[str]) -> set:
    found = set()
    for key in keys:
        for n, _, _, _, real in _index_positions(key):
            found.add(".".join(p for _, p in real[:n]))
    return found


def _index_groups(keys: Sequence[str], metas: Mapping[str, TensorMeta], wanted: set):
    """container path (wrappers left out) -> index -> [(rest, shape, key, actual prefix)], for ``wanted`` containers."""
    groups: Dict[str, Dict[int, list]] = defaultdict(lambda: defaultdict(list))
    for key in keys:
        for n, pos, part, parts, real in _index_positions(key):
            container = ".".join(p for _, p in real[:n])
            if container in wanted:
                rest = ".".join(p for _, p in real[n + 1:])
                groups[container][int(part)].append((rest, metas[key].shape, key, ".".join(parts[: pos + 1]) + "."))
    return groups


def sequential_shifts(source_keys: Sequence[str], source_metas: Mapping[str, TensorMeta],
                      target_keys: Sequence[str], target_metas: Mapping[str, TensorMeta]) -> List[IndexShift]:
    """Children of the same container renumbered (layers inserted, removed or re-indexed), paired in order.

    Per container, the children (their tensor names after the index, and shapes) of the shorter side must
    embed in order into the longer side's; a child is paired only where that embedding is forced (its
    leftmost and rightmost placements agree), so a repeated child that could sit in two places stays open
    for other evidence. Containers whose children already agree index by index are left to the exact pass.
    A child kept at its own index comes back as a pair with equal prefixes. Outer containers are tried
    first; a key is used once."""
    shared = _containers(source_keys)
    if shared:
        shared &= _containers(target_keys)
    if not shared:
        return []
    source_groups = _index_groups(source_keys, source_metas, shared)
    target_groups = _index_groups(target_keys, target_metas, shared)
    used_source, used_target = set(), set()
    shifts: List[IndexShift] = []
    for container in sorted(set(source_groups) & set(target_groups), key=lambda c: (c.count(".") + bool(c), c)):
        src = _live_children(source_groups[container], used_source)
        tgt = _live_children(target_groups[container], used_target)
        if not src or not tgt:
            continue
        src_sig = [_child_signature(entries) for _, entries in src]
        tgt_sig = [_child_signature(entries) for _, entries in tgt]
        if dict(zip((i for i, _ in src), src_sig)) == dict(zip((i for i, _ in tgt), tgt_sig)):
            continue  # the same children under the same indices: names already say it
        forced = _forced_embedding(src_sig, tgt_sig)
        found = []
        for a, b in forced:
            (si, sa), (ti, tb) = src[a], tgt[b]
            by_rest = {rest: key for rest, _, key, _ in tb}
            found.append(IndexShift(sa[0][3], tb[0][3], tuple((key, by_rest[rest]) for rest, _, key, _ in sa)))
        # under chained application a rule must not rename a key into the next rule's input
        moved = [s for s in found if s.source_prefix != s.target_prefix]
        increasing = bool(moved) and _index_of(moved[0].target_prefix) > _index_of(moved[0].source_prefix)
        found.sort(key=lambda s: _index_of(s.source_prefix), reverse=increasing)
        for shift in found:
            used_source.update(s for s, _ in shift.pairs)
            used_target.update(t for _, t in shift.pairs)
        shifts.extend(found)
    return shifts


def _child_signature(entries) -> tuple:
    return tuple(sorted((rest, shape) for rest, shape, _, _ in entries))


def _forced_embedding(a: Sequence[tuple], b: Sequence[tuple]) -> List[Tuple[int, int]]:
    """(i, j) pairs of the order-preserving embedding of the shorter list into the longer one (equal
    items), for the items whose leftmost and rightmost placements agree; [] when it does not embed."""
    if len(a) > len(b):
        return [(i, j) for j, i in _forced_embedding(b, a)]
    left, j = [], 0
    for item in a:
        while j < len(b) and b[j] != item:
            j += 1
        if j == len(b):
            return []
        left.append(j)
        j += 1
    right, j = [0] * len(a), len(b) - 1
    for n in range(len(a) - 1, -1, -1):
        while b[j] != a[n]:
            j -= 1
        right[n] = j
        j -= 1
    return [(n, left[n]) for n in range(len(a)) if left[n] == right[n]]


def _index_of(prefix: str) -> int:
    return int(prefix.rstrip(".").rpartition(".")[2])


def _live_children(children: Dict[int, list], used: set):
    result = []
    for index in sorted(children):
        entries = [e for e in children[index] if e[2] not in used]
        if entries and len(entries) == len(children[index]):
            result.append((index, entries))
        elif entries:
            return []  # partly consumed elsewhere: not a clean container, leave it to later stages
    return result


# ---------------------------------------------------------------- structural alignment

@dataclass(frozen=True)
class LeafGroup:
    """The open tensors registered directly on one module: leaf name -> shape."""

    module: str
    tensors: Tuple[Tuple[str, Shape], ...]  # (leaf, shape) in key order
    keys: Tuple[str, ...]

    def items(self) -> Dict[str, Shape]:
        return dict(self.tensors)

    def kind(self) -> tuple:
        """What must agree for two groups to be the same kind of layer: the weight's shape (or all
        shapes when there is no 'weight') and whether it keeps running statistics."""
        return _kind(self.items())


def _kind(items: Dict[str, Shape]) -> tuple:
    running = "running_mean" in items or "running_var" in items
    if "weight" in items:
        return ("weight", items["weight"], running)
    return ("all", tuple(sorted(items.items())), running)


def leaf_groups(keys: Sequence[str], metas: Mapping[str, TensorMeta]) -> List[LeafGroup]:
    order: Dict[str, List[str]] = {}
    for key in keys:
        module = key.rpartition(".")[0]
        group = order.get(module)
        if group is None:  # (no setdefault: a throwaway list per key would feed the garbage collector)
            order[module] = group = []
        group.append(key)
    return [LeafGroup(module, tuple((key.rpartition(".")[2], metas[key].shape) for key in group), tuple(group))
            for module, group in order.items()]


def compatible(a: LeafGroup, b: LeafGroup) -> bool:
    return a.kind() == b.kind() and _shapes_agree(a.items(), b.items())


def _shapes_agree(ia: Dict[str, Shape], ib: Dict[str, Shape]) -> bool:
    """At least one leaf name in common, and every common leaf has the same shape."""
    if ia == ib:  # the usual case, decided in C
        return bool(ia)
    common = ia.keys() & ib.keys()
    return bool(common) and all(ia[k] == ib[k] for k in common)


@dataclass(frozen=True)
class GroupAlignment:
    pairs: Tuple[Tuple[int, int], ...]  # (source group index, target group index)
    ambiguous: Dict[int, str]  # source group index -> why it was not paired


def align_groups(source: Sequence[LeafGroup], target: Sequence[LeafGroup]) -> GroupAlignment:
    """Order-preserving pairing of compatible groups (see module docstring)."""
    source_items = [g.items() for g in source]
    target_items = [g.items() for g in target]
    source_kinds = [_kind(items) for items in source_items]
    target_kinds = [_kind(items) for items in target_items]
    fits = lambda i, j: (source_kinds[i] == target_kinds[j]  # noqa: E731  (compatible(), kinds computed once)
                         and _shapes_agree(source_items[i], target_items[j]))
    pairs: List[Tuple[int, int]] = []
    ambiguous: Dict[int, str] = {}
    stack = [(0, len(source), 0, len(target))]
    while stack:
        a0, a1, b0, b1 = stack.pop()
        n, m = a1 - a0, b1 - b0
        if n == 0 or m == 0:
            continue
        head = 0
        while head < min(n, m) and fits(a0 + head, b0 + head):
            head += 1
        if head == n == m:
            pairs.extend((a0 + i, b0 + i) for i in range(n))
            continue
        tail = 0
        while tail < min(n, m) and fits(a1 - 1 - tail, b1 - 1 - tail):
            tail += 1
        short = min(n, m)
        if head + tail >= short:  # the shorter side is covered from both ends: the overlap is a guess
            safe_head, safe_tail = max(0, short - tail), max(0, short - head)
            local = [(a0 + i, b0 + i) for i in range(min(head, safe_head))]
            local += [(a1 - 1 - k, b1 - 1 - k) for k in range(min(tail, safe_tail))]
            pairs.extend(local)
            paired = {a for a, _ in local}
            target_kind_set = set(target_kinds[b0:b1])
            for i in range(a0, a1):
                if i not in paired and source_kinds[i] in target_kind_set:
                    ambiguous[i] = ("several positions in the target fit it equally (a repeated layer was added "
                                    "or removed); add a --rule to say which")
            continue
        pairs.extend((a0 + i, b0 + i) for i in range(head))
        pairs.extend((a1 - 1 - k, b1 - 1 - k) for k in range(tail))
        a0, a1, b0, b1 = a0 + head, a1 - tail, b0 + head, b1 - tail
        anchors = _unique_anchors(range(a0, a1), range(b0, b1), source_kinds, target_kinds, fits)
        if not anchors:
            target_kind_set = set(target_kinds[b0:b1])
            for i in range(a0, a1):
                if source_kinds[i] in target_kind_set:
                    ambiguous[i] = ("it has the same shape as several target layers in an unaligned stretch; "
                                    "add a --rule to say which")
            continue
        pairs.extend(anchors)
        bounds = [(a0 - 1, b0 - 1)] + anchors + [(a1, b1)]
        for (pa, pb), (na, nb) in zip(bounds, bounds[1:]):
            stack.append((pa + 1, na, pb + 1, nb))
    pairs.sort()
    return GroupAlignment(tuple(pairs), ambiguous)


def _unique_anchors(a_range, b_range, a_kinds, b_kinds, fits) -> List[Tuple[int, int]]:
    """Pairs of groups whose kind occurs once on each side, longest order-consistent chain of them."""
    a_count = Counter(a_kinds[i] for i in a_range)
    b_first: Dict[tuple, int] = {}
    b_count: Counter = Counter()
    for j in b_range:
        b_count[b_kinds[j]] += 1
        b_first.setdefault(b_kinds[j], j)
    candidates = [(i, b_first[a_kinds[i]]) for i in a_range
                  if a_count[a_kinds[i]] == 1 and b_count.get(a_kinds[i]) == 1 and fits(i, b_first[a_kinds[i]])]
    return _longest_increasing(candidates)


def _longest_increasing(pairs: List[Tuple[int, int]]) -> List[Tuple[int, int]]:
    """Longest chain of pairs increasing in both coordinates (pairs are sorted by the first)."""
    tails: List[int] = []  # b value ending the best chain of each length
    tail_index: List[int] = []
    previous: List[int] = []
    for idx, (_, b) in enumerate(pairs):
        pos = bisect_left(tails, b)
        if pos == len(tails):
            tails.append(b)
            tail_index.append(idx)
        else:
            tails[pos] = b
            tail_index[pos] = idx
        previous.append(tail_index[pos - 1] if pos else -1)
    chain = []
    idx = tail_index[-1] if tail_index else -1
    while idx >= 0:
        chain.append(pairs[idx])
        idx = previous[idx]
    return chain[::-1]


@dataclass(frozen=True)
class StructuralResult:
    pairs: Tuple[Tuple[str, str, str], ...]  # (source key, target key, detail)
    module_pairs: Tuple[Tuple[str, str], ...]  # (source module, target module)
    no_counterpart: Dict[str, str]  # source key -> why (its module was paired, the tensor has no twin)
    ambiguous: Dict[str, str]  # source key -> why it was left unpaired


def structural_alignment(source_keys: Sequence[str], source_metas: Mapping[str, TensorMeta],
                         target_keys: Sequence[str], target_metas: Mapping[str, TensorMeta],
                         module_type: Callable[[str], str]) -> StructuralResult:
    source = leaf_groups(source_keys, source_metas)
    target = leaf_groups(target_keys, target_metas)
    alignment = align_groups(source, target)
    pairs, module_pairs, no_counterpart, ambiguous = [], [], {}, {}
    for i, j in alignment.pairs:
        sg, tg = source[i], target[j]
        kind = module_type(tg.module)
        module_pairs.append((sg.module, tg.module))
        target_items = dict(zip((leaf for leaf, _ in tg.tensors), tg.keys))
        detail = f"same position, kind and shape as {tg.module} ({kind})" if kind else \
            f"same position, kind and shape as {tg.module}"
        for (leaf, _), key in zip(sg.tensors, sg.keys):
            if leaf in target_items:
                pairs.append((key, target_items[leaf], detail))
            else:
                label = f"{tg.module or '(root)'}" + (f" ({kind})" if kind else "")
                extra = " (an extra bias: the target layer is built with bias=False)" if leaf == "bias" else ""
                no_counterpart[key] = f"its module aligns with {label}, which has no '{leaf}'{extra}"
    for i, why in alignment.ambiguous.items():
        for key in source[i].keys:
            ambiguous[key] = why
    return StructuralResult(tuple(pairs), tuple(module_pairs), no_counterpart, ambiguous)
