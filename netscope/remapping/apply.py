"""The small step that moves tensors: a Plan applied to a real state dict and its container.

Tensors are placed, never copied or converted (bit-identical, dtypes kept, shared storages stay
shared). The input state dict and container are never mutated; non-tensor entries are carried over,
optimizer state keyed by parameter names is re-keyed, ``_metadata`` is re-keyed.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple

from netscope.remapping.sides import TensorLayout, leaf_of, module_of, split_state_dict
from netscope.remapping.plan import Plan


def module_mapping(plan: Plan) -> Dict[str, str]:
    """source module path -> target module path, from loaded tensors and their same-named ancestors."""
    result: Dict[str, str] = {}
    for source, target in plan.mapping().items():
        s, t = module_of(source), module_of(target)
        result.setdefault(s, t)
        s_parts, t_parts = s.split(".") if s else [], t.split(".") if t else []
        while s_parts and t_parts and s_parts[-1] == t_parts[-1]:
            s_parts, t_parts = s_parts[:-1], t_parts[:-1]
            result.setdefault(".".join(s_parts), ".".join(t_parts))
        if not t_parts and s_parts:  # the whole target path was matched: the rest of the source is wrappers
            result.setdefault(".".join(s_parts), "")
    return result


def apply_plan(state_dict: Mapping[str, Any], plan: Plan, target_order=()) -> "OrderedDict[str, Any]":
    """A new state dict in target naming (target order first), non-tensor entries carried over."""
    tensors, others = split_state_dict(state_dict)
    placed: Dict[str, Any] = {}
    for decision in plan.decisions:
        if decision.loads and decision.source in tensors and decision.target not in placed:
            placed[decision.target] = tensors[decision.source]
    result: "OrderedDict[str, Any]" = OrderedDict()
    for key in target_order:
        if key in placed:
            result[key] = placed.pop(key)
    result.update(placed)
    metadata = getattr(state_dict, "_metadata", None)
    if not others and metadata is None:
        return result
    modules = module_mapping(plan)
    for key, value in others.items():
        result.setdefault(_rename_by_module(key, modules), value)
    if metadata is not None:
        result._metadata = remap_metadata(metadata, modules)  # type: ignore[attr-defined]
    return result


def entry_mismatches(keys: Optional[Iterable[str]], plan: Plan,
                     target: TensorLayout) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """``(stray, missing)``: the checkpoint's non-tensor state-dict ``keys``, renamed as :func:`apply_plan` carries
    them, that the target's state dict does not have (``load_state_dict(strict=True)`` refuses them as unexpected),
    and the target's required entries (``_extra_state`` a module sets) that none of them is (reported missing).
    ``keys`` None: not known (nothing is told)."""
    if keys is None or target.entries is None:
        return (), ()
    keys = list(keys)
    modules = module_mapping(plan) if keys else {}
    renamed = [_rename_by_module(key, modules) for key in keys]
    stray = tuple(key for key in renamed if key not in target.entries and key not in target.tensors)
    have = set(renamed)
    return stray, tuple(key for key in sorted(target.required_entries) if key not in have)


def _rename_by_module(key: str, modules: Mapping[str, str]) -> str:
    owner = module_of(key)
    if owner in modules:
        new_owner = modules[owner]
        return f"{new_owner}.{leaf_of(key)}" if new_owner else leaf_of(key)
    return key


def remap_metadata(metadata: Mapping[str, Any], modules: Mapping[str, str]) -> "OrderedDict[str, Any]":
    """Module versions re-keyed to target module paths (entries for unmapped modules kept as they are)."""
    result: "OrderedDict[str, Any]" = OrderedDict()
    for prefix, value in metadata.items():
        new = _rename_module(prefix, modules)
        if new not in result or prefix in modules:
            result[new] = value
    return result


def _rename_module(path: str, modules: Mapping[str, str]) -> str:
    """``path`` renamed by its nearest mapped ancestor (``module.layer1.0.relu`` -> ``layer1.0.relu``)."""
    ancestor, rest = path, ""
    while True:
        if ancestor in modules:
            new = modules[ancestor]
            return f"{new}.{rest}" if new and rest else (new or rest)
        if not ancestor:
            return path
        head, _, leaf = ancestor.rpartition(".")
        ancestor, rest = head, f"{leaf}.{rest}" if rest else leaf


def remap_optimizer_state(obj: Any, mapping: Mapping[str, str]) -> Tuple[Any, int]:
    """(new object, keys renamed) for an optimizer state dict keyed by parameter names; other objects
    (including torch's own integer-keyed optimizer state) come back unchanged."""
    if not (isinstance(obj, Mapping) and isinstance(obj.get("state"), Mapping)
            and isinstance(obj.get("param_groups"), list)):
        return obj, 0
    state = obj["state"]
    if not any(isinstance(k, str) and k in mapping for k in state):
        return obj, 0
    renamed = sum(1 for k in state if isinstance(k, str) and k in mapping)
    new = type(obj)(obj) if isinstance(obj, dict) else dict(obj)
    new["state"] = {mapping.get(k, k) if isinstance(k, str) else k: v for k, v in state.items()}
    groups = []
    for group in obj["param_groups"]:
        if isinstance(group, Mapping) and isinstance(group.get("params"), list):
            group = dict(group)
            group["params"] = [mapping.get(p, p) if isinstance(p, str) else p for p in group["params"]]
        groups.append(group)
    new["param_groups"] = groups
    return new, renamed


def rebuild_container(container: Any, state_dict_path: Tuple, new_state_dict: Mapping[str, Any],
                      plan: Plan, siblings: Optional[Mapping[Tuple, Mapping[str, Any]]] = None) -> Tuple[Any, int]:
    """(new container, optimizer keys renamed): the state dict replaced at its path (and each of ``siblings``,
    other dicts of model tensors renamed by the same plan, at theirs), optimizer state re-keyed, every other
    entry carried over untouched."""
    mapping = plan.mapping()
    if not state_dict_path:
        return new_state_dict, 0
    replacements = {tuple(state_dict_path): new_state_dict, **{tuple(p): v for p, v in (siblings or {}).items()}}
    return _rebuild(container, (), replacements, mapping)


def _rebuild(node: Any, here: Tuple, replacements: Mapping[Tuple, Any], mapping) -> Tuple[Any, int]:
    if isinstance(node, (list, tuple)) and any(len(p) > len(here) and p[:len(here)] == here for p in replacements):
        items = [_rebuild(value, here + (n,), replacements, mapping) if here + (n,) not in replacements
                 else (replacements[here + (n,)], 0) for n, value in enumerate(node)]
        values = [v for v, _ in items]
        # a list or tuple saved with the state dict in it (torch.save((model_sd, optim_sd))) keeps its type
        rebuilt = values if type(node) is list else tuple(values) if type(node) is tuple else type(node)(*values)
        return rebuilt, sum(n for _, n in items)
    if not isinstance(node, Mapping):
        return node, 0
    try:
        result = type(node)()
    except TypeError:  # e.g. a defaultdict: a plain dict keeps every entry
        result = {}
    renamed_total = 0
    for key, value in node.items():
        path = here + (key,)
        if path in replacements:
            value, renamed = replacements[path], 0
        elif any(p[:len(path)] == path for p in replacements):
            value, renamed = _rebuild(value, path, replacements, mapping)
        else:
            value, renamed = remap_optimizer_state(value, mapping)
            if not renamed and isinstance(value, list):
                pieces = [remap_optimizer_state(v, mapping) for v in value]
                if any(n for _, n in pieces):
                    value, renamed = [v for v, _ in pieces], sum(n for _, n in pieces)
        renamed_total += renamed
        result[key] = value
    return result, renamed_total


def describe_key(key: Optional[str]) -> str:
    return key if key is not None else "-"
