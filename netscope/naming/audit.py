"""``audit_names(model)``: the structural walk, matched to ``state_dict``, turned into a NamingReport."""

from __future__ import annotations

from dataclasses import replace
from typing import Dict, Hashable, List, Optional, Sequence, Set, Tuple

import torch
import torch.nn as nn

from netscope.errors import UsageError
from netscope.guard import paused_gc
from netscope.naming import findings as naming_findings
from netscope.naming.report import NameEntry, NamingReport, NamingTotals
from netscope.naming.segments import (
    BUFFER, EXTRA_STATE, NON_PERSISTENT_BUFFER, PARAMETER, STATE_DICT_HOOK, WRAPPERS, Segment,
)
from netscope.naming.unregistered import StrayItem, stray_items
from netscope.naming.identity import tensor_identity
from netscope.naming.walk import LeafVisit, dotted, leaf_visits, module_visits

_HOOK_STRIPPED_ORIGINS = frozenset(kind.origin for kind in WRAPPERS.values() if kind.hook_strips_prefix)


def audit_names(model: nn.Module, *, label: Optional[str] = None) -> NamingReport:
    """Where every state_dict key of ``model`` comes from, and what is wrong with the naming.

    Structural only: no forward pass, no tensor data read, the model left untouched. Works on
    models whose parameters live on the meta device.
    """
    if not isinstance(model, nn.Module):
        raise UsageError(f"audit_names needs a torch.nn.Module, got {type(model).__name__}; "
                         "pass the model object itself (not its state_dict or a class)")
    with paused_gc():  # the audit allocates many small records; cyclic GC passes would dominate
        return _audit(model, label or type(model).__name__)


def _audit(model: nn.Module, label: str) -> NamingReport:
    visits = module_visits(model)
    leaves = [leaf for visit in visits for leaf in leaf_visits(visit)]
    saved = model.state_dict(keep_vars=True)
    saved_keys, hook_keys = _match_saved_keys(leaves, saved)

    registered_modules = {id(visit.module) for visit in visits}
    registered_tensors = {id(leaf.tensor) for leaf in leaves if leaf.tensor is not None}
    strays = stray_items(visits, registered_modules, registered_tensors)
    stray_leaves = _stray_leaves(strays)

    rows: List[Tuple[NameEntry, Optional[torch.Tensor]]] = []
    for leaf, key in zip(leaves, saved_keys):
        rows.append((_entry(leaf, key if key is not None else leaf.key, key is not None), leaf.tensor))
    for key in hook_keys:
        rows.append((_hook_entry(key, saved[key]), saved[key] if isinstance(saved[key], torch.Tensor) else None))
    for leaf in stray_leaves:
        rows.append((_entry(leaf, leaf.key, False), leaf.tensor))
    identities = [tensor_identity(tensor) if tensor is not None else None for _, tensor in rows]
    entries, groups = _with_alias_groups(rows, identities)

    missed = _missed_params(strays, registered_tensors)
    findings = naming_findings.collect(
        visits=visits, leaves=leaves, saved_keys=saved_keys, entries=entries, strays=strays,
        missed_by_attribute=missed, shared_groups=[m for m in groups.values() if len(m) > 1],
    )
    totals = _totals(leaves, rows, identities, groups, sum(missed.values()), len(findings))
    return NamingReport(label, entries, findings, totals)


def _match_saved_keys(leaves: Sequence[LeafVisit], saved) -> Tuple[List[Optional[str]], List[str]]:
    """For each leaf its state_dict key (None when not saved), and the keys no leaf explains.

    Keys are matched by path first; then by path without the segments that wrapper state_dict
    hooks remove (FSDP, activation checkpointing).
    """
    keys: List[Optional[str]] = [None] * len(leaves)
    used: Set[str] = set()
    for i, leaf in enumerate(leaves):
        if leaf.kind != NON_PERSISTENT_BUFFER and leaf.key in saved:
            keys[i] = leaf.key
            used.add(leaf.key)
    pending: Dict[str, List[int]] = {}
    for i, leaf in enumerate(leaves):
        if keys[i] is None and leaf.kind != NON_PERSISTENT_BUFFER:
            stripped = ".".join(s.segment.text for s in leaf.steps if s.segment.origin not in _HOOK_STRIPPED_ORIGINS)
            pending.setdefault(stripped, []).append(i)
    for key in saved:
        if key not in used and pending.get(key):
            keys[pending[key].pop(0)] = key
            used.add(key)
    return keys, [key for key in saved if key not in used]


def _entry(leaf: LeafVisit, key: str, in_state_dict: bool) -> NameEntry:
    tensor = leaf.tensor
    return NameEntry(
        key=key,
        segments=tuple(step.segment for step in leaf.steps),
        expression="model" + "".join(step.accessor for step in leaf.steps),
        kind=leaf.kind,
        shape=tuple(tensor.shape) if tensor is not None else None,
        dtype=str(tensor.dtype).replace("torch.", "") if tensor is not None else None,
        trainable=bool(leaf.kind == PARAMETER and tensor is not None and tensor.requires_grad),
        in_state_dict=in_state_dict,
        alias_group=None,
        module_class=type(leaf.owner.module).__name__,
    )


def _hook_entry(key: str, value) -> NameEntry:
    is_tensor = isinstance(value, torch.Tensor)
    return NameEntry(
        key=key,
        segments=tuple(Segment(part, STATE_DICT_HOOK) for part in key.split(".")),
        expression=None,
        kind=STATE_DICT_HOOK,
        shape=tuple(value.shape) if is_tensor else None,
        dtype=str(value.dtype).replace("torch.", "") if is_tensor else None,
        trainable=bool(is_tensor and isinstance(value, nn.Parameter) and value.requires_grad),
        in_state_dict=True,
        alias_group=None,
        module_class="",
    )


def _stray_leaves(strays: Sequence[StrayItem]) -> List[LeafVisit]:
    """Leaves of unregistered modules and parameters that Python can reach (not set members)."""
    leaves: List[LeafVisit] = []
    for item in strays:
        if item.steps is None:
            continue
        if item.category == "module":
            for visit in module_visits(item.obj, prefix=item.steps):
                leaves.extend(leaf for leaf in leaf_visits(visit) if leaf.kind != EXTRA_STATE)
        elif item.category == "parameter":
            leaves.append(LeafVisit(item.owner, item.attribute, PARAMETER, item.obj, item.steps, dotted(item.steps)))
    return leaves


def _with_alias_groups(rows, identities) -> Tuple[Tuple[NameEntry, ...], Dict[Hashable, List[int]]]:
    """Entries with alias group ids set, and identity -> row indices."""
    groups: Dict[Hashable, List[int]] = {}
    for index, identity in enumerate(identities):
        if identity is not None:
            groups.setdefault(identity, []).append(index)
    group_of: Dict[int, int] = {}
    next_id = 1
    for members in groups.values():
        if len(members) > 1:
            for index in members:
                group_of[index] = next_id
            next_id += 1
    entries = tuple(
        entry if index not in group_of else _replace_alias(entry, group_of[index])
        for index, (entry, _) in enumerate(rows)
    )
    return entries, groups


def _replace_alias(entry: NameEntry, group: int) -> NameEntry:
    return replace(entry, alias_group=group)


def _missed_params(strays: Sequence[StrayItem], registered_tensors: Set[int]) -> Dict[Tuple[int, str], int]:
    """Per (owner module id, attribute): elements of parameters no registered name reaches."""
    counted: Set[Hashable] = set()
    missed: Dict[Tuple[int, str], int] = {}
    for item in strays:
        if item.category == "module":
            params = list(item.obj.parameters())
        elif item.category == "parameter":
            params = [item.obj]
        else:
            continue
        slot = (id(item.owner.module), item.attribute)
        missed.setdefault(slot, 0)
        for param in params:
            identity = tensor_identity(param)
            if id(param) in registered_tensors or identity in counted:
                continue
            counted.add(identity)
            missed[slot] += param.numel()
    return missed


def _totals(leaves, rows, identities, groups, unregistered_params: int, findings: int) -> NamingTotals:
    params: Dict[Hashable, torch.Tensor] = {}
    buffers: Dict[Hashable, torch.Tensor] = {}
    for leaf, identity in zip(leaves, identities):
        if leaf.kind == PARAMETER:
            params.setdefault(identity, leaf.tensor)
        elif leaf.kind in (BUFFER, NON_PERSISTENT_BUFFER):
            buffers.setdefault(identity, leaf.tensor)
    saved_tensors = {identity for (entry, _), identity in zip(rows, identities)
                     if entry.in_state_dict and identity is not None}
    registered_rows = len(leaves) + sum(1 for entry, _ in rows if entry.kind == STATE_DICT_HOOK)
    aliased = sum(1 for members in groups.values() if sum(1 for i in members if i < registered_rows) > 1)
    return NamingTotals(
        state_dict_keys=sum(1 for entry, _ in rows if entry.in_state_dict),
        unique_saved_tensors=len(saved_tensors),
        total_params=sum(p.numel() for p in params.values()),
        trainable_params=sum(p.numel() for p in params.values() if p.requires_grad),
        buffer_elements=sum(b.numel() for b in buffers.values()),
        aliased_tensors=aliased,
        unregistered_params=unregistered_params,
        findings=findings,
    )
