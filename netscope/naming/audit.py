"""``audit_names(model)``: the structural walk, matched to ``state_dict``, turned into a NamingReport."""

from __future__ import annotations

from dataclasses import replace
from typing import Dict, Hashable, List, Optional, Sequence, Set, Tuple

import torch
import torch.nn as nn

from netscope.errors import StateDictError, UsageError
from netscope.collector import paused_gc
from netscope.naming import findings as naming_findings
from netscope.naming.report import NameEntry, NamingReport, NamingTotals
from netscope.naming.saved import SavedKey, changes, collisions, match_saved, structural_keys
from netscope.naming.segments import BUFFER, EXTRA_STATE, NON_PERSISTENT_BUFFER, PARAMETER, STATE_DICT_HOOK, Segment
from netscope.naming.unregistered import StrayItem, stray_items
from netscope.naming.identity import tensor_identity
from netscope.naming.walk import LeafVisit, ModuleVisit, dotted, leaf_visits, module_visits


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
    saved = saved_state(model, label)
    structural = structural_keys(visits, leaves)
    matched, leaf_keys = match_saved(leaves, structural, saved)
    collided = collisions(leaves, structural, matched)

    registered_modules = {id(visit.module) for visit in visits}
    registered_tensors = {id(leaf.tensor) for leaf in leaves if leaf.tensor is not None}
    strays = stray_items(visits, registered_modules, registered_tensors)
    stray_leaves = _stray_leaves(strays)

    rows = _rows_in_state_dict_order(visits, leaves, matched, leaf_keys, saved)
    registered_rows = len(rows)
    for leaf in stray_leaves:
        rows.append((_entry(leaf, leaf.key, False), leaf.tensor, None))
    identities = [tensor_identity(tensor) if tensor is not None else None for _, tensor, _ in rows]
    entries, groups = _with_alias_groups(rows, identities)
    leaf_identities: List[Optional[Hashable]] = [None] * len(leaves)
    for (_, _, leaf_index), identity in zip(rows, identities):
        if leaf_index is not None:
            leaf_identities[leaf_index] = identity

    missed = _missed_params(strays, registered_tensors)
    findings = naming_findings.collect(
        visits=visits, leaves=leaves, saved_keys=leaf_keys, entries=entries, strays=strays,
        missed_by_attribute=missed,
        shared_groups=[[rows[i][2] for i in members if i < registered_rows and rows[i][2] is not None]
                       for members in groups.values() if len(members) > 1],
        collided=collided, changes=changes(visits, leaves, structural, matched, leaf_keys, collided),
        identities=leaf_identities, registered_modules=registered_modules, registered_tensors=registered_tensors,
    )
    totals = _totals(leaves, rows, identities, groups, registered_rows, sum(missed.values()), len(findings))
    return NamingReport(label, entries, findings, totals)


def saved_state(model: nn.Module, label: str, needs: str = "The naming audit explains the keys state_dict() returns"):
    """``model.state_dict(keep_vars=True)``; what it raises (a hook that needs a process group, an override
    with a bug) becomes a StateDictError (exit 3) that names it: for the naming audit and for diff/remap, whose
    ``needs`` says what the keys were wanted for."""
    try:
        return model.state_dict(keep_vars=True)
    except Exception as err:  # the model's own code: any exception it raises
        raise StateDictError(
            f"{label}: the model's own state_dict() raised {type(err).__name__}: {err}. {needs}, so it cannot run "
            "until state_dict() does (a state_dict hook or _save_to_state_dict override in the model raised; a "
            "distributed wrapper may need its process group initialised).") from err


Row = Tuple[NameEntry, Optional[torch.Tensor], Optional[int]]  # entry, its tensor, its leaf index


def _rows_in_state_dict_order(visits: Sequence[ModuleVisit], leaves: Sequence[LeafVisit], matched: Sequence[SavedKey],
                              leaf_keys: Sequence[Optional[str]], saved) -> List[Row]:
    """One row per saved key in torch's order; each unsaved leaf right after the row of the leaf
    registered before it."""
    rows: List[Row] = []
    position_of_leaf: Dict[int, int] = {}
    module_at: Optional[Dict[Tuple[str, ...], ModuleVisit]] = None
    for position, item in enumerate(matched):
        value = saved[item.key]
        if item.leaf is None:
            if module_at is None:
                module_at = {}
                for visit in visits:
                    module_at.setdefault(tuple(step.segment.text for step in visit.steps), visit)
            rows.append((_hook_entry(item.key, value, module_at), value if isinstance(value, torch.Tensor) else None,
                         None))
        else:
            leaf = leaves[item.leaf]
            rows.append((_entry(leaf, item.key, True), leaf.tensor, item.leaf))
            position_of_leaf.setdefault(item.leaf, position)
    unsaved: List[Tuple[Tuple[int, int, int], Row]] = []
    anchor = -1
    for i, leaf in enumerate(leaves):
        if i in position_of_leaf:
            anchor = max(anchor, position_of_leaf[i])
        elif leaf_keys[i] is None:
            unsaved.append(((anchor, 1, i), (_entry(leaf, leaf.key, False), leaf.tensor, i)))
    if not unsaved:
        return rows
    placed = [((position, 0, 0), row) for position, row in enumerate(rows)] + unsaved
    placed.sort(key=lambda pair: pair[0])
    return [row for _, row in placed]


def _entry(leaf: LeafVisit, key: str, in_state_dict: bool) -> NameEntry:
    tensor = leaf.tensor
    return NameEntry(
        key=key,
        segments=tuple(step.segment for step in leaf.steps),
        expression="model" + "".join(step.accessor for step in leaf.steps),
        kind=leaf.kind,
        shape=shape_of(tensor),
        dtype=str(tensor.dtype).replace("torch.", "") if tensor is not None else None,
        trainable=bool(leaf.kind == PARAMETER and tensor is not None and tensor.requires_grad),
        in_state_dict=in_state_dict,
        alias_group=None,
        module_class=type(leaf.owner.module).__name__,
    )


def _hook_entry(key: str, value, module_at: Dict[Tuple[str, ...], ModuleVisit]) -> NameEntry:
    """A key no registered tensor explains: the segments up to the deepest module whose path starts
    the key keep that module's origins (the prefix a hook or override writes under); the rest are
    the hook's."""
    is_tensor = isinstance(value, torch.Tensor)
    parts = key.split(".")
    owner = next((module_at[tuple(parts[:k])] for k in range(len(parts) - 1, 0, -1) if tuple(parts[:k]) in module_at),
                 None)
    prefix = tuple(step.segment for step in owner.steps) if owner is not None else ()
    return NameEntry(
        key=key,
        segments=prefix + tuple(Segment(part, STATE_DICT_HOOK) for part in parts[len(prefix):]),
        expression=None,
        kind=STATE_DICT_HOOK,
        shape=shape_of(value) if is_tensor else None,
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
        for index, (entry, _, _) in enumerate(rows)
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
            if id(param) in registered_tensors or identity in counted or is_uninitialized(param):
                continue
            counted.add(identity)
            missed[slot] += param.numel()
    return missed


def _totals(leaves, rows, identities, groups, registered_rows: int, unregistered_params: int,
            findings: int) -> NamingTotals:
    """Parameters and buffers counted as ``model.parameters()``/``buffers()`` count them: each object
    once (two objects viewing one storage count twice; a finding says so). Uninitialised (lazy)
    tensors have no size yet and are left out (a finding says so)."""
    params: Dict[int, torch.Tensor] = {}
    buffers: Dict[int, torch.Tensor] = {}
    for leaf in leaves:
        if leaf.tensor is None or is_uninitialized(leaf.tensor):
            continue
        if leaf.kind == PARAMETER:
            params.setdefault(id(leaf.tensor), leaf.tensor)
        elif leaf.kind in (BUFFER, NON_PERSISTENT_BUFFER):
            buffers.setdefault(id(leaf.tensor), leaf.tensor)
    saved_tensors = {identity for (entry, _, _), identity in zip(rows, identities)
                     if entry.in_state_dict and identity is not None}
    aliased = sum(1 for members in groups.values() if sum(1 for i in members if i < registered_rows) > 1)
    return NamingTotals(
        state_dict_keys=sum(1 for entry, _, _ in rows if entry.in_state_dict),
        unique_saved_tensors=len(saved_tensors),
        total_params=sum(p.numel() for p in params.values()),
        trainable_params=sum(p.numel() for p in params.values() if p.requires_grad),
        buffer_elements=sum(b.numel() for b in buffers.values()),
        aliased_tensors=aliased,
        unregistered_params=unregistered_params,
        findings=findings,
    )


def is_uninitialized(tensor) -> bool:
    """A lazy module's parameter or buffer before its first forward (no shape yet)."""
    return isinstance(tensor, nn.parameter.UninitializedTensorMixin)


def shape_of(tensor) -> Optional[Tuple[int, ...]]:
    return None if tensor is None or is_uninitialized(tensor) else tuple(tensor.shape)
