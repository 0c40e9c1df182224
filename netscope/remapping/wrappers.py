"""Wrapper tokens (``module``, ``_orig_mod``, ...) at any depth, and common prefixes on either side.

A token is stripped (or added) only when that makes a source key equal an open target key; a target
key that keeps a real attribute called ``module`` is matched with the token kept.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from netscope.wrappers import PREFIXES, TOKENS as WRAPPER_TOKENS, may_hold_wrapper  # the one registry


def may_hold_wrapper_token(key: str) -> bool:
    """False when ``key`` surely has no wrapper token (a fast substring test)."""
    return may_hold_wrapper(key)


def _segments(key: str) -> List[str]:
    """The key's segments, a registered multi-segment wrapper prefix (``base_model.model``) as one."""
    for prefix in PREFIXES:
        if key.startswith(prefix):
            return [prefix[:-1]] + key[len(prefix):].split(".")
    return key.split(".")


def _is_token(segment: str) -> bool:
    return segment in WRAPPER_TOKENS or segment + "." in PREFIXES


def normalized(key: str) -> str:
    """The key without any wrapper token."""
    if not may_hold_wrapper_token(key):
        return key
    return ".".join(part for part in _segments(key) if not _is_token(part))


def _slots(key: str) -> Tuple[Tuple[str, ...], ...]:
    """Wrapper tokens grouped by the gap between real segments they sit in."""
    slots: List[List[str]] = [[]]
    for part in _segments(key):
        if _is_token(part):
            slots[-1].append(part)
        else:
            slots.append([])
    return tuple(tuple(s) for s in slots)


def _is_subsequence(small: Sequence[str], big: Sequence[str]) -> bool:
    it = iter(big)
    return all(any(x == y for y in it) for x in small)


def wrapper_edit(source_key: str, target_key: str) -> Optional[Tuple[int, int]]:
    """(kind, cost) to turn source into target by wrapper tokens only: kind 0 strip, 1 add, 2 both."""
    source_slots, target_slots = _slots(source_key), _slots(target_key)
    if len(source_slots) != len(target_slots):
        return None
    strip = all(_is_subsequence(t, s) for s, t in zip(source_slots, target_slots))
    add = all(_is_subsequence(s, t) for s, t in zip(source_slots, target_slots))
    cost = sum(abs(len(s) - len(t)) for s, t in zip(source_slots, target_slots))
    if strip:
        return (0, cost)
    if add:
        return (1, cost)
    return (2, sum(len(s) + len(t) for s, t in zip(source_slots, target_slots)))


def describe_wrapper_change(source_key: str, target_key: str) -> str:
    removed = Counter(p for p in _segments(source_key) if _is_token(p))
    added = Counter(p for p in _segments(target_key) if _is_token(p))
    gone, new = removed - added, added - removed
    parts = []
    if gone:
        parts.append("stripped " + ", ".join(f"'{t}.'" + (f" x{n}" if n > 1 else "") for t, n in sorted(gone.items())))
    if new:
        parts.append("added " + ", ".join(f"'{t}.'" + (f" x{n}" if n > 1 else "") for t, n in sorted(new.items())))
    return "wrapper token " + " and ".join(parts) if parts else "wrapper tokens reordered"


class WrapperIndex:
    """Open target keys indexed by their normalized form."""

    def __init__(self, target_keys: Iterable[str]):
        self._by_normal: Dict[str, List[str]] = defaultdict(list)
        for key in target_keys:
            self._by_normal[normalized(key)].append(key)

    def best_targets(self, source_key: str, is_open) -> List[str]:
        """The open targets reachable by the cheapest wrapper edit (stripping preferred over adding)."""
        scored = []
        for target in self._by_normal.get(normalized(source_key), ()):
            if target == source_key or not is_open(target):
                continue
            edit = wrapper_edit(source_key, target)
            if edit is not None:
                scored.append((edit, target))
        if not scored:
            return []
        best = min(edit for edit, _ in scored)
        return [target for edit, target in scored if edit == best]


def prefix_votes(unmatched_sources: Sequence[str], open_targets: Dict[str, object]) -> Counter:
    """('strip'|'add', prefix) -> how many keys that prefix change would match."""
    votes: Counter = Counter()
    for key in unmatched_sources:
        for head in _heads_of_known_tails(key, open_targets):
            votes[("strip", head)] += 1
    source_set = set(unmatched_sources)
    for key in open_targets:
        for head in _heads_of_known_tails(key, source_set):
            votes[("add", head)] += 1
    return votes


def _heads_of_known_tails(key: str, known) -> Iterable[str]:
    """Each dot-terminated head of ``key`` whose remaining tail is in ``known`` (``'a.b.c'``: ``'a.'`` if
    ``'b.c'`` is known, ``'a.b.'`` if ``'c'`` is)."""
    cut = key.find(".")
    while cut != -1:
        if key[cut + 1:] in known:
            yield key[: cut + 1]
        cut = key.find(".", cut + 1)
