"""What ``state_dict()`` really saves, matched to the structural walk by tensor identity.

A key is explained by the registered tensor saved under it (``is``, not equal shape), so state_dict
hooks and ``_save_to_state_dict`` overrides that rename, drop, swap or replace keys, and two modules
whose registration names make the same key, are told apart from ordinary keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Hashable, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from netscope.naming.identity import tensor_identity
from netscope.naming.segments import EXTRA_STATE, NON_PERSISTENT_BUFFER
from netscope.wrappers import WRAPPERS, wrapper_kind
from netscope.naming.walk import LeafVisit, ModuleVisit

_MISSING = object()
_HOOK_STRIPPED_ORIGINS = frozenset(kind.origin for kind in WRAPPERS.values() if kind.hook_strips_prefix)

RENAMED = "renamed"  # a registered tensor saved under a key that is not its path
SWAPPED = "swapped"  # ... under the path of another registered tensor
REPLACED = "replaced"  # a key that is a registered tensor's path holds some other value
ADDED = "added"  # a key that no registered tensor's path explains, holding no registered tensor
DROPPED = "dropped"  # a registered, persistent tensor saved under no key
SAVED_NON_PERSISTENT = "saved-non-persistent"  # a non-persistent buffer saved all the same


@dataclass(frozen=True)
class SavedKey:
    """One ``state_dict`` key, in torch's order, and the registered tensor saved under it."""

    key: str
    leaf: Optional[int]  # index into the walk's leaves; None when the value is no registered tensor
    moved: bool  # the key is not that leaf's path (nor its path without hook-stripped wrapper segments)


@dataclass(frozen=True)
class Change:
    """One difference between the structural keys and what ``state_dict()`` saved."""

    kind: str  # RENAMED, SWAPPED, REPLACED, ADDED, DROPPED, SAVED_NON_PERSISTENT
    key: Optional[str]  # the saved key (None for DROPPED)
    leaf: Optional[int]  # the registered tensor concerned (None for ADDED)
    agent: Optional[ModuleVisit]  # the module whose hooks or overrides made the change; None when unknown
    agents: Tuple[str, ...]  # the hooks/overrides on ``agent``, by qualified name


def structural_keys(visits: Sequence[ModuleVisit], leaves: Sequence[LeafVisit]) -> List[Optional[str]]:
    """Per leaf the key its path makes, without the segments that wrapper state_dict hooks remove
    (FSDP, activation checkpointing); None for non-persistent buffers, which are never saved."""
    strips = any(visit.origin in _HOOK_STRIPPED_ORIGINS for visit in visits)
    return [None if leaf.kind == NON_PERSISTENT_BUFFER
            else ".".join(s.segment.text for s in leaf.steps if s.segment.origin not in _HOOK_STRIPPED_ORIGINS)
            if strips else leaf.key
            for leaf in leaves]


def match_saved(leaves: Sequence[LeafVisit], structural: Sequence[Optional[str]], saved
                ) -> Tuple[List[SavedKey], List[Optional[str]]]:
    """Each saved key with its leaf, and per leaf the first key it is saved under (None: not saved)."""
    leaf_keys: List[Optional[str]] = [None] * len(leaves)
    leaf_of_key: Dict[str, int] = {}
    for i, leaf in enumerate(leaves):  # the common case: the key is the path and holds the very tensor
        key = leaf.key
        if structural[i] is None or key in leaf_of_key:
            continue
        value = saved.get(key, _MISSING)
        if value is not _MISSING and (value is leaf.tensor or leaf.kind == EXTRA_STATE or same_data(value, leaf.tensor)):
            leaf_of_key[key] = i
            leaf_keys[i] = key
    if len(leaf_of_key) == len(saved):
        return [SavedKey(key, leaf_of_key[key], False) for key in saved], leaf_keys
    by_path: Dict[str, List[int]] = {}  # the rest: wrapper-stripped paths, then object identity
    for i, leaf in enumerate(leaves):
        if structural[i] is not None and leaf_keys[i] is None:
            by_path.setdefault(structural[i], []).append(i)
    by_object: Dict[int, List[int]] = {}
    for i, leaf in enumerate(leaves):
        if leaf.tensor is not None:
            by_object.setdefault(id(leaf.tensor), []).append(i)
    by_data: Optional[Dict[Hashable, List[int]]] = None
    matched: List[SavedKey] = []
    for key, value in saved.items():
        if key in leaf_of_key:
            matched.append(SavedKey(key, leaf_of_key[key], False))
            continue
        index, moved = None, False
        for i in by_path.get(key, ()):
            leaf = leaves[i]
            if leaf_keys[i] is None and (value is leaf.tensor or same_data(value, leaf.tensor)
                                         if leaf.kind != EXTRA_STATE else True):
                index = i
                break
        if index is None and isinstance(value, torch.Tensor):
            candidates = by_object.get(id(value), [])
            if not candidates:  # a hook that saved value.detach() (what state_dict() itself does without keep_vars)
                if by_data is None:
                    by_data = {}
                    for i, leaf in enumerate(leaves):
                        if leaf.tensor is not None:
                            by_data.setdefault(tensor_identity(leaf.tensor), []).append(i)
                candidates = by_data.get(tensor_identity(value), [])
            free = [i for i in candidates if leaf_keys[i] is None]
            if candidates:
                index, moved = (free or candidates)[0], True
        if index is not None and leaf_keys[index] is None:
            leaf_keys[index] = key
        matched.append(SavedKey(key, index, moved))
    return matched, leaf_keys


def same_data(value, tensor) -> bool:
    """``value`` is another tensor object for the very data of ``tensor`` (``tensor.detach()``): the same view of
    the same storage, so saving it saves ``tensor``."""
    return (isinstance(value, torch.Tensor) and tensor is not None and value is not tensor
            and tensor_identity(value) == tensor_identity(tensor))


def collisions(leaves: Sequence[LeafVisit], structural: Sequence[Optional[str]],
               matched: Sequence[SavedKey]) -> Dict[str, List[int]]:
    """Saved key -> every persistent leaf whose path is that key, where those are different tensors."""
    by_key: Dict[str, List[int]] = {}
    for i, key in enumerate(structural):
        if key is not None:
            by_key.setdefault(key, []).append(i)
    saved = {entry.key for entry in matched}
    return {key: members for key, members in by_key.items()
            if len(members) > 1 and key in saved and len({id(leaves[i].tensor) for i in members}) > 1}


def changes(visits: Sequence[ModuleVisit], leaves: Sequence[LeafVisit], structural: Sequence[Optional[str]],
            matched: Sequence[SavedKey], leaf_keys: Sequence[Optional[str]],
            collided: Dict[str, List[int]]) -> List[Change]:
    """What hooks and overrides changed, each with the module responsible, in module order."""
    saved_keys = {entry.key for entry in matched}
    leaf_of_key = {key: i for i, key in enumerate(structural) if key is not None}
    collided_leaves = {i for members in collided.values() for i in members}
    raw: List[Tuple[str, Optional[str], Optional[int]]] = []  # (kind, key, leaf)
    for entry in matched:
        if entry.leaf is not None and leaves[entry.leaf].kind == NON_PERSISTENT_BUFFER:
            raw.append((SAVED_NON_PERSISTENT, entry.key, entry.leaf))
        elif entry.leaf is not None and entry.moved:
            raw.append((SWAPPED if entry.key in leaf_of_key else RENAMED, entry.key, entry.leaf))
        elif entry.leaf is None:
            i = leaf_of_key.get(entry.key)
            raw.append((REPLACED, entry.key, i) if i is not None else (ADDED, entry.key, None))
    for i, leaf in enumerate(leaves):
        if (leaf_keys[i] is None and structural[i] is not None and i not in collided_leaves
                and structural[i] not in saved_keys and leaf.key not in saved_keys):
            raw.append((DROPPED, None, i))
    if not raw:
        return []
    by_parts = {}
    for visit in visits:
        by_parts.setdefault(tuple(step.segment.text for step in visit.steps), visit)
    found = [_change(kind, key, i, leaves[i].owner if i is not None else _deepest_owner(key, by_parts), by_parts)
             for kind, key, i in raw]
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
