"""What ``state_dict()`` really saves, matched to the structural walk by tensor identity.

A key is explained by the registered tensor saved under it (``is``, not equal shape), so state_dict
hooks and ``_save_to_state_dict`` overrides that rename, drop, swap or replace keys, and two modules
whose registration names make the same key, are told apart from ordinary keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from netscope.naming.segments import EXTRA_STATE, NON_PERSISTENT_BUFFER, WRAPPERS, wrapper_kind
from netscope.naming.walk import LeafVisit, ModuleVisit

_HOOK_STRIPPED_ORIGINS = frozenset(kind.origin for kind in WRAPPERS.values() if kind.hook_strips_prefix)

RENAMED = "renamed"  # a registered tensor saved under a key that is not its path
SWAPPED = "swapped"  # ... under the path of another registered tensor
REPLACED = "replaced"  # a key that is a registered tensor's path holds some other value
ADDED = "added"  # a key that no registered tensor's path explains, holding no registered tensor
DROPPED = "dropped"  # a registered, persistent tensor saved under no key


@dataclass(frozen=True)
class SavedKey:
    """One ``state_dict`` key, in torch's order, and the registered tensor saved under it."""

    key: str
    leaf: Optional[int]  # index into the walk's leaves; None when the value is no registered tensor
    moved: bool  # the key is not that leaf's path (nor its path without hook-stripped wrapper segments)


@dataclass(frozen=True)
class Change:
    """One difference between the structural keys and what ``state_dict()`` saved."""

    kind: str  # RENAMED, SWAPPED, REPLACED, ADDED, DROPPED
    key: Optional[str]  # the saved key (None for DROPPED)
    leaf: Optional[int]  # the registered tensor concerned (None for ADDED)
    agent: Optional[ModuleVisit]  # the module whose hooks or overrides made the change; None when unknown
    agents: Tuple[str, ...]  # the hooks/overrides on ``agent``, by qualified name


def structural_key(leaf: LeafVisit) -> str:
    """The leaf's path without the segments that wrapper state_dict hooks remove (FSDP, checkpointing)."""
    return ".".join(s.segment.text for s in leaf.steps if s.segment.origin not in _HOOK_STRIPPED_ORIGINS)


def match_saved(leaves: Sequence[LeafVisit], saved) -> Tuple[List[SavedKey], List[Optional[str]]]:
    """Each saved key with its leaf, and per leaf the first key it is saved under (None: not saved)."""
    by_path: Dict[str, List[int]] = {}
    by_object: Dict[int, List[int]] = {}
    for i, leaf in enumerate(leaves):
        if leaf.tensor is not None:
            by_object.setdefault(id(leaf.tensor), []).append(i)
        if leaf.kind == NON_PERSISTENT_BUFFER:
            continue
        by_path.setdefault(leaf.key, []).append(i)
        stripped = structural_key(leaf)
        if stripped != leaf.key:
            by_path.setdefault(stripped, []).append(i)
    leaf_keys: List[Optional[str]] = [None] * len(leaves)
    matched: List[SavedKey] = []
    for key, value in saved.items():
        index, moved = None, False
        for i in by_path.get(key, ()):
            leaf = leaves[i]
            if leaf_keys[i] is None and (value is leaf.tensor if leaf.kind != EXTRA_STATE else True):
                index = i
                break
        if index is None and isinstance(value, torch.Tensor):
            candidates = by_object.get(id(value), [])
            free = [i for i in candidates if leaf_keys[i] is None]
            if candidates:
                index, moved = (free or candidates)[0], True
        if index is not None and leaf_keys[index] is None:
            leaf_keys[index] = key
        matched.append(SavedKey(key, index, moved))
    return matched, leaf_keys


def collisions(leaves: Sequence[LeafVisit], matched: Sequence[SavedKey]) -> Dict[str, List[int]]:
    """Saved key -> every persistent leaf whose path is that key, where those are different tensors."""
    by_key: Dict[str, List[int]] = {}
    for i, leaf in enumerate(leaves):
        if leaf.kind != NON_PERSISTENT_BUFFER:
            by_key.setdefault(structural_key(leaf), []).append(i)
    saved = {entry.key for entry in matched}
    return {key: members for key, members in by_key.items()
            if key in saved and len({id(leaves[i].tensor) for i in members}) > 1}


def changes(visits: Sequence[ModuleVisit], leaves: Sequence[LeafVisit], matched: Sequence[SavedKey],
            leaf_keys: Sequence[Optional[str]], collided: Dict[str, List[int]]) -> List[Change]:
    """What hooks and overrides changed, each with the module responsible, in state_dict order."""
    saved_keys = {entry.key for entry in matched}
    structural = {structural_key(leaf): i for i, leaf in enumerate(leaves) if leaf.kind != NON_PERSISTENT_BUFFER}
    by_parts = {}
    for visit in visits:
        by_parts.setdefault(tuple(step.segment.text for step in visit.steps), visit)
    collided_leaves = {i for members in collided.values() for i in members}
    found: List[Change] = []
    for entry in matched:
        if entry.leaf is not None and entry.moved:
            leaf = leaves[entry.leaf]
            kind = SWAPPED if entry.key in structural else RENAMED
            found.append(_change(kind, entry.key, entry.leaf, leaf.owner, by_parts))
        elif entry.leaf is None:
            if entry.key in structural:
                i = structural[entry.key]
                found.append(_change(REPLACED, entry.key, i, leaves[i].owner, by_parts))
            else:
                found.append(_change(ADDED, entry.key, None, _deepest_owner(entry.key, by_parts), by_parts))
    for i, leaf in enumerate(leaves):
        if (leaf_keys[i] is None and leaf.kind != NON_PERSISTENT_BUFFER and i not in collided_leaves
                and structural_key(leaf) not in saved_keys and leaf.key not in saved_keys):
            found.append(_change(DROPPED, None, i, leaf.owner, by_parts))
    order = {id(visit.module): position for position, visit in reversed(list(enumerate(visits)))}
    found.sort(key=lambda change: order.get(id(change.agent.module), -1) if change.agent else len(visits))
    return found


def _deepest_owner(key: str, by_parts) -> Optional[ModuleVisit]:
    parts = tuple(key.split("."))
    for k in range(len(parts) - 1, -1, -1):
        if parts[:k] in by_parts:
            return by_parts[parts[:k]]
    return None


def _change(kind: str, key, leaf, owner: Optional[ModuleVisit], by_parts) -> Change:
    """The change, charged to the innermost module on the owner's path that has a hook or override."""
    if owner is not None:
        parts = tuple(step.segment.text for step in owner.steps)
        for k in range(len(parts), -1, -1):
            visit = by_parts.get(parts[:k])
            if visit is None:
                continue
            agents = state_dict_agents(visit.module, own_tensors=(k == len(parts)))
            if agents:
                return Change(kind, key, leaf, visit, agents)
    return Change(kind, key, leaf, None, ())


def state_dict_agents(module: nn.Module, *, own_tensors: bool = True) -> Tuple[str, ...]:
    """The state_dict post-hooks and overrides on ``module`` that can change its keys, by name.

    ``_save_to_state_dict`` writes only the module's own tensors, so it counts only for those.
    Wrappers whose hooks strip their own segment (FSDP, activation checkpointing) are expected.
    """
    kind = wrapper_kind(module)
    if kind is not None and kind.hook_strips_prefix:
        return ()
    agents = [f"state_dict hook {_callable_name(hook)}" for hook in module._state_dict_hooks.values()]
    methods = ("state_dict", "_save_to_state_dict") if own_tensors else ("state_dict",)
    for method in methods:
        owner = _defining_class(type(module), method)
        if owner is not None and owner is not nn.Module:
            agents.append(f"{owner.__qualname__}.{method} override")
    return tuple(agents)


def _defining_class(cls: type, name: str) -> Optional[type]:
    for klass in cls.__mro__:
        if name in vars(klass):
            return klass
    return None


def _callable_name(fn) -> str:
    target = getattr(fn, "func", fn)  # functools.partial
    name = getattr(target, "__qualname__", None) or type(target).__qualname__
    module = getattr(target, "__module__", None)
    return f"`{module}.{name}`" if module and module not in ("__main__", "builtins") else f"`{name}`"
