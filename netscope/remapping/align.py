"""Matching by structure when names differ: nn.Sequential renumbering, then order/type/shape alignment.

Both work on *open* keys only (not yet matched by name, wrapper or rule) and never pair tensors of
different shapes. Structural alignment compares "leaf groups" (the tensors registered directly on one
module) in registration order, anchored diff-style on groups whose signature is unique on both sides,
and refuses to pair where two candidate positions fit equally. Everything here is near-linear.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from functools import lru_cache
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from netscope.records import TensorMeta
from netscope.remapping.wrappers import WRAPPER_TOKENS, may_hold_wrapper_token

Shape = Tuple[int, ...]


# ---------------------------------------------------------------- sequential renumbering

@dataclass(frozen=True)
class IndexShift:
    """Children of one nn.Sequential/ModuleList moved from ``source_prefix`` to ``target_prefix``."""

    source_prefix: str  # e.g. "features.3." (actual source spelling, wrappers included)
    target_prefix: str  # e.g. "features.2."
    pairs: Tuple[Tuple[str, str], ...]  # (source key, target key)


def _index_entries(keys: Sequence[str]) -> List[Tuple[str, int, str, str, str]]:
    """(container, index, rest, key, actual prefix) for each numeric segment of each key; the container
    and rest are spelled without wrapper tokens, the prefix as in the key."""
    entries = []
    for key in keys:
        parts = key.split(".")
        if len(parts) < 2 or not any(map(str.isdigit, parts)):  # the common case: nothing to add
            continue
        if may_hold_wrapper_token(key):
            real = [(i, p) for i, p in enumerate(parts) if p not in WRAPPER_TOKENS]
            for n in range(len(real) - 1):
                pos, part = real[n]
                if part.isdigit():
                    entries.append((".".join(p for _, p in real[:n]), int(part), ".".join(p for _, p in real[n + 1:]),
                                    key, ".".join(parts[: pos + 1]) + "."))
            continue
        for n in range(len(parts) - 1):
            if parts[n].isdigit():
                entries.append((".".join(parts[:n]), int(parts[n]), ".".join(parts[n + 1:]), key,
                                ".".join(parts[: n + 1]) + "."))
    return entries


def _index_groups(entries, metas: Mapping[str, TensorMeta], wanted: set):
    """container path (wrappers left out) -> index -> [(rest, shape, key, actual prefix)], for ``wanted`` containers."""
    groups: Dict[str, Dict[int, list]] = defaultdict(lambda: defaultdict(list))
    for container, index, rest, key, prefix in entries:
        if container in wanted:
            groups[container][index].append((rest, metas[key].shape, key, prefix))
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
    source_entries = _index_entries(source_keys)
    if not source_entries:
        return []
    target_entries = _index_entries(target_keys)
    shared = {e[0] for e in source_entries} & {e[0] for e in target_entries}
    if not shared:
        return []
    source_groups = _index_groups(source_entries, source_metas, shared)
    target_groups = _index_groups(target_entries, target_metas, shared)
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
            (_, sa), (_, tb) = src[a], tgt[b]
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
        head, tail = _trim_runs(source, target, source_kinds, target_kinds, a0, a1, b0, b1, head, tail)
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


def _trim_runs(source, target, source_kinds, target_kinds, a0, a1, b0, b1, head, tail) -> Tuple[int, int]:
    """(head, tail) without the inner ends that the unaligned middle could take as well: a layer at the inner
    end of a run, alone in the run with its pair of parent modules (it stepped into another block), whose kind
    is also left in the middle on both sides, is a tie by position. torchvision's layer4.0 ends conv1, bn1,
    conv2, bn2, downsample.0, downsample.1; Hugging Face's runs shortcut, layer.0, layer.1: matched from the
    end, downsample.1 met layer.1's norm, where bn2 belongs. The middle decides it."""
    def parents(i: int, j: int) -> Tuple[str, str]:
        return _parent(source[i].module), _parent(target[j].module)

    def loose(i: int, j: int, run) -> bool:
        return (source_kinds[i] in source_kinds[a0 + head:a1 - tail]
                and target_kinds[j] in target_kinds[b0 + head:b1 - tail]
                and sum(parents(a, b) == parents(i, j) for a, b in run) == 1)

    while tail and loose(a1 - tail, b1 - tail, [(a1 - 1 - k, b1 - 1 - k) for k in range(tail)]):
        tail -= 1
    while head and loose(a0 + head - 1, b0 + head - 1, [(a0 + k, b0 + k) for k in range(head)]):
        head -= 1
    # a whole block at the inner end (every layer of one parent pair) whose kinds all recur in the middle on both
    # sides is a tie as well: timm's RegNet block runs conv1, ..., downsample, torchvision's proj, f.a, ...; all
    # four 1x1 convs of one shape, so conv1 (+ its norm) met proj from the start, where f.a belongs. The middle
    # is taken as it is now, so trimming one block cannot make the next one loose (no cascade along a stack)
    middle_s, middle_t = set(source_kinds[a0 + head:a1 - tail]), set(target_kinds[b0 + head:b1 - tail])

    def block(pairs) -> int:
        """How many pairs at the start of ``pairs`` (inner end first) share the first one's parents, if all of
        their kinds recur in the middle on both sides; else 0."""
        if not pairs:
            return 0
        n = 0
        while n < len(pairs) and parents(*pairs[n]) == parents(*pairs[0]):
            n += 1
        loose_all = all(source_kinds[a] in middle_s and target_kinds[b] in middle_t for a, b in pairs[:n])
        return n if loose_all else 0

    while tail and (n := block([(a1 - k, b1 - k) for k in range(tail, 0, -1)])):
        tail -= n
    while head and (n := block([(a0 + k, b0 + k) for k in range(head - 1, -1, -1)])):
        head -= n
    return head, tail


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


# ---------------------------------------------------------------- name evidence

GENERIC_TOKENS = frozenset({"proj", "layer", "layers", "module", "weight", "bias", "linear", "op"})


def _tokens(name: str) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """(alphabetic tokens, numbers) of one segment: ``'q_proj'`` -> (('q', 'proj'), ()), ``'bn1'`` -> (('bn',), ('1',))."""
    alpha = tuple(t for t in re.findall(r"[a-z]+", name.lower()) if t not in GENERIC_TOKENS)
    return alpha, tuple(re.findall(r"\d+", name))


def _token_similarity(a: str, b: str) -> float:
    if a == b:
        return 1.0
    short, long_ = sorted((a, b), key=len)
    if long_.startswith(short):  # q ~ query, attn ~ attention's head, k ~ key
        return 0.8
    if short[0] == long_[0] and len(short) >= 2 and _is_subsequence(short, long_):  # attn ~ attention, ffn ~ feedforward? no
        return 0.7
    return 0.0


def _is_subsequence(small: str, big: str) -> bool:
    it = iter(big)
    return all(ch in it for ch in small)


@lru_cache(maxsize=4096)
def name_similarity(a: str, b: str) -> float:
    """How strongly two module names say they are the same thing, 0 (no evidence) to 1 (equal).

    Pure indices (``'0'``) carry no name evidence against another name; numbers inside names must agree
    (``bn1`` ~ ``norm1``, not ``norm2``); letters compare by token, prefix (``q`` ~ ``query``) and
    abbreviation (``attn`` ~ ``attention``), and count only when one name's words are all found in the other
    (``mlp`` ~ ``mlp_block``, but ``attention_norm`` !~ ``post_attention_layernorm``)."""
    if a == b:
        return 1.0
    if a.isdigit() or b.isdigit():
        return 0.0
    (ta, da), (tb, db) = _tokens(a), _tokens(b)
    if (da or db) and da != db:
        return 0.0
    letters = max((_token_similarity(x, y) for x in ta for y in tb), default=0.0)
    if not (_covered(ta, tb) or _covered(tb, ta)):
        # each name has a word the other cannot explain: a shared word is no evidence (attention_norm is
        # Meta Llama's pre-attention norm, not post_attention_layernorm; self_attn is not cross_attn)
        letters = 0.0
    return max(letters, 0.5 if da and da == db else 0.0)


def _covered(tokens: Tuple[str, ...], other: Tuple[str, ...]) -> bool:
    """Every token of ``tokens`` matches some token of ``other`` (by equality, prefix or abbreviation)."""
    return bool(tokens) and all(any(_token_similarity(x, y) > 0 for y in other) for x in tokens)


def _number(name: str) -> Optional[int]:
    """The one number in a worded name (``fc1`` -> 1); None for a pure index, no number or several (``conv3x3``)."""
    numbers = re.findall(r"\d+", name)
    return int(numbers[0]) if len(numbers) == 1 and not name.isdigit() else None


def _unnumbered(name: str) -> str:
    return re.sub(r"\d+", "", name)


def numberings_differ(source_names: Sequence[str], target_names: Sequence[str]) -> bool:
    """Whether two lists of sibling names number their layers differently: every name holds one number and
    neither list's numbers include the other's (``fc0, fc1, fc2`` against ``linear1, linear2, linear3``, a base
    moved by one; Meta's ``w1, w3`` against T5's ``wi_0, wi_1``). An equal number then marks no same place
    (fc1 is linear2, w1 is wi_0), so numbers are no name evidence; one list holding the other's numbers and
    more (``bn1, bn2`` against ``norm1, norm2, norm3``: a layer added) still shares one numbering."""
    s_numbers, t_numbers = [_number(n) for n in source_names], [_number(n) for n in target_names]
    if not s_numbers or not t_numbers or None in s_numbers or None in t_numbers:
        return False
    s_set, t_set = set(s_numbers), set(t_numbers)
    return not (s_set <= t_set or t_set <= s_set)


def numbers_contradict(a: str, b: str) -> bool:
    """Same words, another number (``fc0`` and ``fc3``): the names say these are different layers."""
    na, nb = _number(a), _number(b)
    return (na is not None and nb is not None and na != nb
            and name_similarity(_unnumbered(a), _unnumbered(b)) > 0)


def decide_by_names(source_names: Sequence[str], target_names: Sequence[str], *,
                    complete: bool = True) -> Dict[int, int]:
    """Source index -> target index where names decide: each is the other's unique best, with some evidence;
    repeated until nothing changes. When the lists are ``complete`` (every candidate on both sides), the
    last one left on each side follows by elimination."""
    if numberings_differ(source_names, target_names):  # fc0..fc3 against linear1..linear4: a number is no evidence
        source_names, target_names = [_unnumbered(n) for n in source_names], [_unnumbered(n) for n in target_names]
    decided: Dict[int, int] = {}
    while True:
        open_s = [i for i in range(len(source_names)) if i not in decided]
        open_t = [j for j in range(len(target_names)) if j not in decided.values()]
        if complete and len(open_s) == 1 and len(open_t) == 1 and decided:
            decided[open_s[0]] = open_t[0]
            return decided
        score = {(i, j): name_similarity(source_names[i], target_names[j]) for i in open_s for j in open_t}
        new = {}
        for i in open_s:
            row = sorted(((score[i, j], j) for j in open_t), reverse=True)
            if not row or row[0][0] <= 0 or (len(row) > 1 and row[1][0] == row[0][0]):
                continue
            j = row[0][1]
            column = sorted((score[k, j] for k in open_s), reverse=True)
            if len(column) > 1 and column[1] == column[0]:
                continue
            new[i] = j
        if not new:
            return decided
        decided.update(new)


def suggested_rules(source_modules: Sequence[str], target_modules: Sequence[str]) -> str:
    """Ready ``--rule`` lines pairing the modules in their order (the last follows by elimination)."""
    lines = []
    for s, t in list(zip(source_modules, target_modules))[: max(1, min(len(source_modules), len(target_modules)) - 1)]:
        s_leaf, t_leaf = s.rpartition(".")[2], t.rpartition(".")[2]
        if s.rpartition(".")[0] == t.rpartition(".")[0] and not s_leaf.isdigit():
            lines.append(f"--rule '(^|\\.){re.escape(s_leaf)}\\.=\\g<1>{t_leaf}.'")
        else:
            lines.append(_module_rule(s, t))
    return " ".join(lines)


def _module_rule(source_module: str, target_module: str) -> str:
    """The ``--rule`` that renames one module path to another, anchored at the start."""
    return f"--rule '^{_escape(source_module)}\\.={target_module}.'"


def _escape(text: str) -> str:
    return re.escape(text)


@dataclass(frozen=True)
class StructuralResult:
    pairs: Tuple[Tuple[str, str, str, bool], ...]  # (source key, target key, detail, decided by names)
    module_pairs: Tuple[Tuple[str, str], ...]  # (source module, target module)
    no_counterpart: Dict[str, str]  # source key -> why (its module was paired, the tensor has no twin)
    ambiguous: Dict[str, str]  # source key -> why it was left unpaired
    refused: Dict[str, str]  # source key -> why it was refused although shapes fit (ambiguous or no evidence)


def _parent(module: str) -> str:
    return module.rpartition(".")[0]


def _leaf(module: str) -> str:
    return module.rpartition(".")[2]


def structural_alignment(source_keys: Sequence[str], source_metas: Mapping[str, TensorMeta],
                         target_keys: Sequence[str], target_metas: Mapping[str, TensorMeta],
                         module_type: Callable[[str], str],
                         links: Sequence[Tuple[str, str]] = (), ordered: bool = True) -> StructuralResult:
    """Pair open leaf groups: siblings under the same parent path by kind and name, then the rest by order
    (anchored diff), where a run of interchangeable same-kind neighbours needs names to decide and a pair
    across different subtrees needs corroboration. ``links``: (source module, target module) already
    loaded by stronger evidence. ``ordered=False`` (a file that lists keys sorted by name, a .pt2 whose buffers
    cannot be placed): order is no
    evidence, so a pair stands only where its kind and shape occur once among the open groups on both sides."""
    source = leaf_groups(source_keys, source_metas)
    target = leaf_groups(target_keys, target_metas)
    kinds_s = [g.kind() for g in source]
    kinds_t = [g.kind() for g in target]
    decided: Dict[int, Tuple[int, str, bool]] = {}  # source group -> (target group, evidence, by names)
    refused: Dict[int, str] = {}
    blocked_t: set = set()

    # 1. siblings under the same parent path (only the leaf modules were renamed: MoE gate/up/down -> w1/w3/w2)
    by_parent_t: Dict[str, List[int]] = defaultdict(list)
    for j, g in enumerate(target):
        by_parent_t[_parent(g.module)].append(j)
    by_parent_s: Dict[str, List[int]] = defaultdict(list)
    for i, g in enumerate(source):
        if _parent(g.module) in by_parent_t:
            by_parent_s[_parent(g.module)].append(i)
    for parent, s_members in by_parent_s.items():
        t_members = by_parent_t[parent]
        _match_siblings(source, target, kinds_s, kinds_t, s_members, t_members, parent, decided, refused, blocked_t)

    # 2. the rest by order
    rest_s = [i for i in range(len(source)) if i not in decided and i not in refused]
    taken = {j for j, _, _ in decided.values()} | blocked_t
    rest_t = [j for j in range(len(target)) if j not in taken]
    alignment = align_groups([source[i] for i in rest_s], [target[j] for j in rest_t])
    proposals = [(rest_s[a], rest_t[b]) for a, b in alignment.pairs]
    ambiguous_groups = {rest_s[a]: why for a, why in alignment.ambiguous.items()}
    proposals = _names_decide_runs(source, target, kinds_s, proposals, decided, refused)
    proposals = _names_contradicting_position(source, target, kinds_s, kinds_t, proposals, rest_t, decided, refused)
    if not ordered:
        proposals = _unique_without_order(source, target, kinds_s, kinds_t, proposals, rest_s, rest_t, decided,
                                          refused)
    proposals = _consistent_indices(source, target, proposals, refused)
    proposals = _one_target_parent_each(source, target, proposals, refused)
    proposals = _unequal_classes(source, target, kinds_s, kinds_t, proposals, rest_s, rest_t, refused)
    proposals = _ancestor_names_contradicting_position(source, target, proposals, refused)
    _corroborate(source, target, proposals, decided, refused, links, source_keys, target_keys)

    pairs, module_pairs, no_counterpart, ambiguous, refused_keys = [], [], {}, {}, {}
    for i in sorted(decided):
        j, evidence, by_names = decided[i]
        sg, tg = source[i], target[j]
        kind = module_type(tg.module)
        module_pairs.append((sg.module, tg.module))
        target_items = dict(zip((leaf for leaf, _ in tg.tensors), tg.keys))
        detail = f"{evidence} as {tg.module}" + (f" ({kind})" if kind else "")
        for (leaf, _), key in zip(sg.tensors, sg.keys):
            if leaf in target_items:
                pairs.append((key, target_items[leaf], detail, by_names))
            else:
                label = f"{tg.module or '(root)'}" + (f" ({kind})" if kind else "")
                extra = " (an extra bias: the target layer is built with bias=False)" if leaf == "bias" else ""
                no_counterpart[key] = f"its module aligns with {label}, which has no '{leaf}'{extra}"
    for i, why in ambiguous_groups.items():
        if i not in decided and i not in refused:
            for key in source[i].keys:
                ambiguous[key] = why
    for i, why in refused.items():
        for key in source[i].keys:
            refused_keys[key] = why
    return StructuralResult(tuple(pairs), tuple(module_pairs), no_counterpart, ambiguous, refused_keys)


def _fits(source, target, i, j) -> bool:
    return compatible(source[i], target[j])


def _match_siblings(source, target, kinds_s, kinds_t, s_members, t_members, parent, decided, refused, blocked_t):
    """Children of one parent path on both sides, paired by kind; same-kind classes by names, else refused."""
    classes_s: Dict[tuple, List[int]] = defaultdict(list)
    classes_t: Dict[tuple, List[int]] = defaultdict(list)
    for i in s_members:
        classes_s[kinds_s[i]].append(i)
    for j in t_members:
        classes_t[kinds_t[j]].append(j)
    where = parent or "(root)"
    for kind, s_class in classes_s.items():
        t_class = classes_t.get(kind)
        if not t_class:
            continue
        if len(s_class) == 1 and len(t_class) == 1:
            s_leaf, t_leaf = _leaf(source[s_class[0]].module), _leaf(target[t_class[0]].module)
            if numbers_contradict(s_leaf, t_leaf):  # fc0 left over for fc3 (fc1, fc2 taken by key): not the same
                refused[s_class[0]] = (f"ambiguous: {s_leaf} is the only layer of this kind and shape left under "
                                       f"{where}, as is {t_leaf} in the model, but their numbers differ (the two "
                                       "numberings may count from different bases); if it is that layer, paste: "
                                       f"--rule '^{_escape(source[s_class[0]].module)}\\.="
                                       f"{target[t_class[0]].module}.'")
                blocked_t.add(t_class[0])
                continue
            if _fits(source, target, s_class[0], t_class[0]):
                decided[s_class[0]] = (t_class[0], f"the only layer of this kind and shape under {where}, the same",
                                       False)
            continue
        by_names = decide_by_names([_leaf(source[i].module) for i in s_class], [_leaf(target[j].module) for j in t_class])
        for a, b in by_names.items():
            if _fits(source, target, s_class[a], t_class[b]):
                decided[s_class[a]] = (t_class[b], f"names ({_leaf(source[s_class[a]].module)} ~ "
                                       f"{_leaf(target[t_class[b]].module)}) among same-shape siblings; kind and shape",
                                       True)
        left_s = [i for n, i in enumerate(s_class) if n not in by_names]
        left_t = [j for n, j in enumerate(t_class) if n not in by_names.values()]
        if left_s and left_t:
            hint = "" if len(left_s) == len(left_t) else _uneven_hint(source, target, kinds_s, kinds_t, left_s, left_t)
            _refuse(source, target, left_s, left_t, where, refused, blocked_t, hint)


def _refuse(source, target, left_s, left_t, where, refused, blocked_t, hint: str = ""):
    """Refuse same-kind siblings that nothing pairs; ``hint``: what to paste, when pairing them in order is no
    guess worth offering (the two sides hold different numbers of them)."""
    names_s = [source[i].module for i in left_s]
    names_t = [target[j].module for j in left_t]
    why = (f"ambiguous: {', '.join(_leaf(m) for m in names_s)} and {', '.join(_leaf(m) for m in names_t)} under "
           f"{where} have the same kind and shape, and neither names nor structure tell which is which; "
           + (hint or f"if they correspond in this order, paste: {suggested_rules(names_s, names_t)}"))
    for i in left_s:
        refused[i] = why
    blocked_t.update(left_t)


UNEVEN_HINT_LIMIT = 32  # same-kind layers per side beyond which names are not searched for a hint


def _uneven_hint(source, target, kinds_s, kinds_t, left_s, left_t) -> str:
    """What to paste when a parent holds a different number of same-kind layers on each side (Meta Llama's root
    holds tok_embeddings and output, Hugging Face's lm_head alone, its embed_tokens under model.): their order
    pairs nothing (it paired the embedding with the output head). Names decide among every layer of that kind
    and shape on both sides (tok_embeddings ~ model.embed_tokens); one layer left on each side here follows."""
    kind = kinds_s[left_s[0]]
    more_s = left_s + [i for i, k in enumerate(kinds_s) if k == kind and i not in left_s]
    more_t = left_t + [j for j, k in enumerate(kinds_t) if k == kind and j not in left_t]
    counts = f"the checkpoint has {len(left_s)} of them here and the model {len(left_t)}, so their order pairs nothing"
    pairs: List[Tuple[int, int]] = []
    if len(more_s) <= UNEVEN_HINT_LIMIT and len(more_t) <= UNEVEN_HINT_LIMIT:
        by_names = decide_by_names([_leaf(source[i].module) for i in more_s], [_leaf(target[j].module) for j in more_t],
                                   complete=False)
        pairs = [(more_s[a], more_t[b]) for a, b in by_names.items() if more_s[a] in left_s or more_t[b] in left_t]
    rest_s = [i for i in left_s if i not in {a for a, _ in pairs}]
    rest_t = [j for j in left_t if j not in {b for _, b in pairs}]
    if not pairs:
        return f"{counts}; paste --rule '^CHECKPOINT_LAYER\\.=MODEL_LAYER.' for each that corresponds"
    said = ", ".join(f"{source[i].module} ~ {target[j].module}" for i, j in pairs)
    if len(rest_s) == len(rest_t) == 1:
        pairs.append((rest_s[0], rest_t[0]))
    rules = " ".join(_module_rule(source[i].module, target[j].module) for i, j in pairs)
    return f"{counts}; names pair {said}: if the rest correspond as these rules say, paste: {rules}"


def _names_decide_runs(source, target, kinds_s, proposals, decided, refused):
    """Same-kind layers within one run of consecutive pairs between one source and one target parent
    (interchangeable by position, also with other kinds between them: conv1, bn1, conv2, bn2 of one width) are
    decided by names or refused, unless a layer whose kind is found once in the run stands between them (it
    anchors their order: the norm after the 3->8 conv); other proposals are returned for the corroboration step."""
    proposals = sorted(proposals)
    rest, n = [], 0
    while n < len(proposals):
        m = n + 1
        while (m < len(proposals) and proposals[m][0] == proposals[m - 1][0] + 1
               and proposals[m][1] == proposals[m - 1][1] + 1
               and _parent(source[proposals[m][0]].module) == _parent(source[proposals[n][0]].module)
               and _parent(target[proposals[m][1]].module) == _parent(target[proposals[n][1]].module)):
            m += 1
        run, n = proposals[n:m], m
        once = Counter(kinds_s[i] for i, _ in run)
        segment: List[Tuple[int, int]] = []
        for pair in run + [None]:  # a kind found once in the run anchors the order: it splits the run
            if pair is not None and once[kinds_s[pair[0]]] > 1:
                segment.append(pair)
                continue
            by_kind: Dict[tuple, list] = defaultdict(list)
            for p in segment:
                by_kind[kinds_s[p[0]]].append(p)
            for same in by_kind.values():
                if len(same) == 1:
                    rest.extend(same)
                else:
                    _names_decide_run(source, target, same, rest, decided, refused)
            segment = []
            if pair is not None:
                rest.append(pair)
    return sorted(rest)


def _names_decide_run(source, target, run, rest, decided, refused):
    """One class of same-kind positional pairs: equal names in order stand, names decide, the rest is refused."""
    s_class, t_class = [i for i, _ in run], [j for _, j in run]
    names_s = [_leaf(source[i].module) for i in s_class]
    names_t = [_leaf(target[j].module) for j in t_class]
    by_names = decide_by_names(names_s, names_t, complete=False)  # a run may not hold every candidate
    if all(a == b for a, b in by_names.items()) and all(name_similarity(x, y) == 1.0 for x, y in zip(names_s, names_t)):
        rest.extend(run)  # equal names in the same order: no permutation in question
        return
    for a, b in by_names.items():
        decided[s_class[a]] = (t_class[b], f"names ({names_s[a]} ~ {names_t[b]}) among same-shape neighbours; kind "
                               "and shape", True)
    left_s = [i for k, i in enumerate(s_class) if k not in by_names]
    left_t = [j for k, j in enumerate(t_class) if k not in by_names.values()]
    if left_s:
        parent = _parent(source[left_s[0]].module)
        _refuse(source, target, left_s, left_t, parent or "(root)", refused, set())


def _names_contradicting_position(source, target, kinds_s, kinds_t, proposals, open_t, decided, refused):
    """A positional pair loses to a same-named layer of the same kind and shape elsewhere in the target
    (``embed`` goes to ``embed``, not to the tied ``lm_head`` that sits at its position); with more than one
    such layer the names do not decide and the tensor is refused."""
    by_leaf: Dict[str, List[int]] = defaultdict(list)
    by_parent: Dict[str, List[int]] = defaultdict(list)
    for j in open_t:
        leaf = _leaf(target[j].module)
        by_leaf[leaf].append(j)
        if not leaf.isdigit():  # an index is no name: it can contradict nothing
            by_parent[_parent(target[j].module)].append(j)
    kept, moved = [], {}
    for i, j in proposals:
        leaf = _leaf(source[i].module)
        if leaf == _leaf(target[j].module) or leaf.isdigit():
            kept.append((i, j))
            continue
        here = name_similarity(leaf, _leaf(target[j].module))
        candidates = dict.fromkeys(by_leaf.get(leaf, []) + by_parent.get(_parent(target[j].module), []))
        scored = [(name_similarity(leaf, _leaf(target[k].module)), k) for k in candidates
                  if k != j and kinds_t[k] == kinds_s[i] and _fits(source, target, i, k)]
        best = max((score for score, _ in scored), default=0.0)
        rivals = [k for score, k in scored if score == best and score > here]
        if not rivals:
            kept.append((i, j))
        elif len(rivals) == 1 and rivals[0] not in moved:
            moved[rivals[0]] = i
            decided[i] = (rivals[0], f"names ({leaf} ~ {_leaf(target[rivals[0]].module)}) over position (which "
                          f"pointed to {target[j].module}); kind and shape", True)
        else:
            refused[i] = (f"ambiguous: position points to {target[j].module}, but {len(rivals)} layers named like "
                          f"{leaf} fit too ({', '.join(target[k].module for k in rivals[:3])}); add a --rule to say which")
    result = []
    for i, j in kept:
        if j in moved:
            refused[i] = (f"its position points to {target[j].module}, which the names give to "
                          f"{source[moved[j]].module}; add a --rule if it belongs elsewhere")
        else:
            result.append((i, j))
    return result


def _unique_without_order(source, target, kinds_s, kinds_t, proposals, open_s, open_t, decided, refused):
    """Key order sorted by name says nothing about which same-kind layer is which (``zeta`` sorts after
    ``alpha`` whatever the model's order): a pair stands only if its kind and shape is unique on both sides."""
    taken = {j for j, _, _ in decided.values()}
    count_s = Counter(kinds_s[i] for i in open_s if i not in decided and i not in refused)
    count_t = Counter(kinds_t[j] for j in open_t if j not in taken)
    result = []
    for i, j in proposals:
        if count_s[kinds_s[i]] == 1 and count_t[kinds_t[j]] == 1:
            result.append((i, j))
            continue
        n = max(count_s[kinds_s[i]], count_t[kinds_t[j]])
        refused[i] = (f"ambiguous: by position it would go to {target[j].module}, but the file's key order is not the "
                      "model's (keys sorted by name, or a torch.export archive's parameters before its buffers), so "
                      f"position tells nothing among the {n} layers of this "
                      f"kind and shape; if it is that layer, paste: --rule '^{_escape(source[i].module)}\\.="
                      f"{target[j].module}.'")
    return result


def _index_steps(s_module: str, t_module: str):
    """(container pair, (source segment, target segment)) where both paths hold a number at the same depth
    counted from the layer upwards, an index on one side at least (``blocks.2.up`` vs ``layers.1.norm``:
    ((blocks, layers), (2, 1)); ``block3.up`` vs ``layers.2.up``: (('', layers), (block3, 2)))."""
    s_parts, t_parts = s_module.split("."), t_module.split(".")
    for k in range(1, min(len(s_parts), len(t_parts)) + 1):
        a, b = s_parts[-k], t_parts[-k]
        if (a.isdigit() or b.isdigit()) and _index_or_number(a) is not None and _index_or_number(b) is not None:
            yield (".".join(s_parts[:-k]), ".".join(t_parts[:-k])), (a, b)


def _index_or_number(segment: str) -> Optional[int]:
    return int(segment) if segment.isdigit() else _number(segment)


def _numbering(segments: set) -> Optional[bool]:
    """How the (source, target) segments met under one container pair count: False for indices on both sides,
    True for a name's number against an index, where they count alike (one word, each name one index and back:
    block1..block4 against blocks.0..3), None where they do not (conv1 and bn1 against stem.0 and stem.1)."""
    names = {x for pair in segments for x in pair if not x.isdigit()}
    if not names:
        return False
    s_of, t_of = defaultdict(set), defaultdict(set)
    for a, b in segments:
        s_of[a].add(b)
        t_of[b].add(a)
    one_to_one = all(len(v) == 1 for v in s_of.values()) and all(len(v) == 1 for v in t_of.values())
    return True if one_to_one and len({_unnumbered(n) for n in names}) == 1 else None


def _consistent_indices(source, target, proposals, refused):
    """Numbered children keep one offset per container pair (``blocks.N`` -> ``layers.N``, ``blockN`` ->
    ``layers.M``); a pair whose position implies another offset (a layer inserted into a neighbouring block,
    blocks saved in another order than their numbers) is refused."""
    segments: Dict[tuple, set] = defaultdict(set)
    steps = []
    for i, j in proposals:
        found = list(_index_steps(source[i].module, target[j].module))
        steps.append(found)
        for container, pair in found:
            segments[container].add(pair)
    kinds = {container: _numbering(pairs) for container, pairs in segments.items()}
    offsets: Dict[tuple, Counter] = defaultdict(Counter)
    steps = [[(c, _index_or_number(a) - _index_or_number(b)) for c, (a, b) in found if kinds[c] is not None]
             for found in steps]
    for found in steps:
        for container, offset in found:
            offsets[container][offset] += 1
    result = []
    for (i, j), found in zip(proposals, steps):
        bad = None
        for container, offset in found:
            top = max(offsets[container].values())
            leaders = [o for o, n in offsets[container].items() if n == top]
            # equal indices win a tie (a name's number, block1 for blocks.0, may count from another base);
            # between other offsets a tie leaves no majority, so none is taken
            best = 0 if 0 in leaders and not kinds[container] else leaders[0] if len(leaders) == 1 else None
            if offset != best:
                bad = container, best is None
                break
        if bad is None:
            result.append((i, j))
            continue
        (s_container, t_container), no_majority = bad
        why = ("its index differs from that one's and no offset between the two numberings holds a majority: "
               "position and numbering disagree" if no_majority else
               "a different index than the rest of it (a layer was inserted or removed nearby)")
        refused[i] = (f"ambiguous: its position points to {target[j].module} ({s_container or '(root)'} -> "
                      f"{t_container or '(root)'}): {why}; if it is that layer, paste: "
                      f"--rule '^{_escape(source[i].module)}\\.={target[j].module}.'")
    return result


def _one_target_parent_each(source, target, proposals, refused):
    """The children of one source module go to one target module (several may merge into one, as a
    Sequential flattened into named layers); a child whose position points elsewhere (a neighbouring block,
    because a layer was inserted) is refused."""
    votes: Dict[str, Counter] = defaultdict(Counter)
    for i, j in proposals:
        votes[_parent(source[i].module)][_parent(target[j].module)] += 1
    result = []
    for i, j in proposals:
        ps, pt = _parent(source[i].module), _parent(target[j].module)
        ranked = votes[ps].most_common(2)
        if len(ranked) == 1 or (ranked[0][0] == pt and ranked[0][1] > ranked[1][1]):
            result.append((i, j))
            continue
        refused[i] = (f"ambiguous: its position points to {target[j].module}, outside {ranked[0][0] or '(root)'} where "
                      f"the rest of {ps or '(root)'} goes (a layer was inserted or removed nearby); if it is "
                      f"{target[j].module}, paste: --rule '^{_escape(source[i].module)}\\.={target[j].module}.'")
    return result


def _unequal_classes(source, target, kinds_s, kinds_t, proposals, open_s, open_t, refused):
    """Where a target parent has a different number of same-kind layers than the source parents that map
    into it (a layer of that kind was inserted or removed), position cannot say which one is new: refused."""
    into: Dict[str, set] = defaultdict(set)
    for i, j in proposals:
        into[_parent(target[j].module)].add(_parent(source[i].module))
    wanted_t = set(into)
    count_t: Counter = Counter()
    count_s: Counter = Counter()
    for j in open_t:
        parent = _parent(target[j].module)
        if parent in wanted_t:
            count_t[(parent, kinds_t[j])] += 1
    targets_of: Dict[str, List[str]] = defaultdict(list)
    for pt, parents in into.items():
        for ps in parents:
            targets_of[ps].append(pt)
    for i in open_s:  # same-kind source layers under every source parent that maps into a target parent
        for pt in targets_of.get(_parent(source[i].module), ()):
            count_s[(pt, kinds_s[i])] += 1
    result = []
    for i, j in proposals:
        pt, kind = _parent(target[j].module), kinds_s[i]
        n_t, n_s = count_t[(pt, kind)], count_s[(pt, kind)]
        if n_t != n_s and max(n_t, n_s) >= 2:
            refused[i] = (f"ambiguous: {n_s} layer(s) of this kind and shape in the checkpoint against {n_t} under "
                          f"{pt or '(root)'} in the model (one was inserted or removed), and neither names nor "
                          f"structure say which; if it is {target[j].module}, paste: "
                          f"--rule '^{_escape(source[i].module)}\\.={target[j].module}.'")
        else:
            result.append((i, j))
    return result


def _children_by_parent(groups) -> Dict[str, set]:
    """parent path -> the names of its child modules that hold a leaf group (at any depth)."""
    children: Dict[str, set] = defaultdict(set)
    for g in groups:
        path = g.module
        while path:
            children[_parent(path)].add(_leaf(path))
            path = _parent(path)
    return children


def _plainly_alike(a: str, b: str) -> bool:
    """Equal names, or one's letters begin the other's with three or more (``enc`` ~ ``encoder``), numbers
    equal (``enc1`` ~ ``encoder1``, not ``encoder2``): evidence strong enough to contradict position (a lone
    letter, ``b`` in ``norm_b``, is not)."""
    if _number(a) != _number(b):
        return False
    x, y = sorted((re.sub(r"[^a-z]", "", a.lower()), re.sub(r"[^a-z]", "", b.lower())), key=len)
    return x == y or (len(x) >= 3 and y.startswith(x))


def _ancestor_names_contradicting_position(source, target, proposals, refused):
    """A positional pair whose ancestors differ in name where a sibling on either side is named more like
    the other (``encoder.layers.0`` by position into ``decoder.blocks.0`` while the target has an ``encoder``;
    ``encoder`` into ``dec`` beside an ``enc``): whole stacks registered in another order. Refused, never
    swapped against the names. Where the ancestors share no word but one of them shares a word with a sibling
    of the other (``self_attn`` by position into ``crossattention`` beside an ``attention``), the order of those
    siblings is in doubt: every positional pair between their children is refused (the one left over would go
    by elimination from a refused pair: ``encoder_attn`` into ``attention``)."""
    children_s, children_t = _children_by_parent(source), _children_by_parent(target)
    kept, contested = [], {}
    for i, j in proposals:
        contradiction = ""
        for a, b in _lockstep(_parent(source[i].module), _parent(target[j].module)):
            la, lb = _leaf(a), _leaf(b)
            if not a or not b or la == lb or la.isdigit() or lb.isdigit():
                continue
            if _plainly_alike(la, lb):
                continue
            if numbers_contradict(la, lb):  # enc2 into enc0 (enc1 loaded by key): the names say another layer
                contradiction = (f"ambiguous: by position it would go to {target[j].module}, but {la} and {lb} are "
                                 "one word with two numbers; if it is that layer, paste: "
                                 f"--rule '^{_escape(source[i].module)}\\.={target[j].module}.'")
                break
            better_t = [c for c in children_t.get(_parent(b), ()) if c != lb and _plainly_alike(la, c)]
            better_s = [c for c in children_s.get(_parent(a), ()) if c != la and _plainly_alike(c, lb)]
            if better_t or better_s:
                rival = (f"{_parent(b) + '.' if _parent(b) else ''}{better_t[0]} is named like {la}" if better_t else
                         f"{_parent(a) + '.' if _parent(a) else ''}{better_s[0]} is named like {lb}")
                contradiction = (f"ambiguous: by position it would go to {target[j].module}, but {rival}; if it is "
                                 f"that layer, paste: --rule '^{_escape(source[i].module)}\\.={target[j].module}.'")
                break
            if _share_a_word(la, lb):
                continue
            word_t = [c for c in children_t.get(_parent(b), ()) if c != lb and _share_a_word(la, c)]
            word_s = [c for c in children_s.get(_parent(a), ()) if c != la and _share_a_word(c, lb)]
            if word_t or word_s:
                rival = (f"{la} shares a word with {word_t[0]}, not with {lb}" if word_t else
                         f"{lb} shares a word with {word_s[0]}, not with {la}")
                contested[(_parent(a), _parent(b))] = rival
                break
        if contradiction:
            refused[i] = contradiction
        else:
            kept.append((i, j))
    if not contested:
        return kept
    result = []
    for i, j in kept:
        doubt = next(((a, b) for a, b in _lockstep(_parent(source[i].module), _parent(target[j].module))
                      if (_parent(a), _parent(b)) in contested and _leaf(a) != _leaf(b)), None)
        if doubt is None:
            result.append((i, j))
            continue
        a, b = doubt
        refused[i] = (f"ambiguous: by position {a} would be {b}, but under {_parent(a) or '(root)'} the names do not "
                      f"follow the order ({contested[(_parent(a), _parent(b))]}), so position pairs none of those "
                      f"same-shaped siblings; if it is that layer, paste: "
                      f"--rule '^{_escape(source[i].module)}\\.={target[j].module}.'")
    return result


def _share_a_word(a: str, b: str) -> bool:
    """Whether two names have a word of three or more letters in common, equal, a prefix or an abbreviation
    (``attn`` in ``self_attn`` and ``attention``); a lone letter or a generic word (``proj``) is no evidence."""
    return any(_token_similarity(x, y) > 0 for x in _tokens(a)[0] if len(x) >= 3 for y in _tokens(b)[0] if len(y) >= 3)


def _lockstep(s: str, t: str):
    """Ancestor pairs of two module paths, one level up at a time (a side at the root stays there), until
    both are the root (not yielded)."""
    while s or t:
        yield s, t
        s, t = _parent(s), _parent(t)


def _corroborate(source, target, proposals, decided, refused, links, source_keys, target_keys):
    """Accept positional pairs whose parents correspond by name or by other pairs; a lone pair across
    different subtrees (an MLM head onto a pooler) only when it takes both subtrees whole."""
    modules = [(source[i].module, target[j].module) for i, j in proposals]
    modules += [(source[i].module, target[j].module) for i, (j, _, _) in decided.items()]
    support: Counter = Counter()
    for s, t in dict.fromkeys(list(modules) + list(links)):
        for pair in _lockstep(_parent(s), _parent(t)):
            support[pair] += 1
    tops_s: Dict[str, List[int]] = {}
    tops_t: Dict[str, List[int]] = {}
    for i, j in proposals:
        s, t = _parent(source[i].module), _parent(target[j].module)
        ok = s == t or any(a == b or support[(a, b)] >= 2 for a, b in _lockstep(s, t))
        if not ok and not tops_s:
            for n, g in enumerate(source):
                tops_s.setdefault(g.module.partition(".")[0], []).append(n)
            for n, g in enumerate(target):
                tops_t.setdefault(g.module.partition(".")[0], []).append(n)
        if ok or _whole_subtrees(source[i], target[j], tops_s, tops_t, proposals):
            decided[i] = (j, "same position, kind and shape", False)
        else:
            ps, pt = _parent(source[i].module), _parent(target[j].module)
            refused[i] = (f"only position and shape link it to {target[j].module}, in a different subtree "
                          f"({ps or '(root)'} vs {pt or '(root)'}) whose other tensors do not correspond; if it is "
                          f"the same layer, paste: --rule '^{_escape(source[i].module)}\\.={target[j].module}.'")


def _whole_subtrees(sg, tg, tops_s, tops_t, proposals) -> bool:
    """Every open group under the source's top-level module pairs into the target's top-level module, and
    every open group there comes from it (a renamed head taken whole, not a piece of another subtree)."""
    s_groups = tops_s.get(sg.module.partition(".")[0], [])
    t_groups = set(tops_t.get(tg.module.partition(".")[0], []))
    paired = dict(proposals)
    return len(s_groups) == len(t_groups) and all(paired.get(i) in t_groups for i in s_groups)
