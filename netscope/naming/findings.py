"""The naming audit's findings: one function per finding code, each returning Findings."""

from __future__ import annotations

import itertools
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Dict, Hashable, List, Optional, Sequence, Tuple

import torch.nn as nn

from netscope.records import Finding, Severity
from netscope.registry import Registry
from netscope.naming.segments import NON_PERSISTENT_BUFFER, PARAMETER, SEQUENTIAL_INDEX, is_index, shadowed
from netscope.naming.identity import storage_key, storage_of
from netscope.naming.unregistered import DATACLASS, StrayItem
from netscope.naming.walk import LeafVisit, ModuleVisit
from netscope.units import plural
from netscope.wrappers import WRAPPERS

MAX_LISTED = 6  # names quoted in one message before "and N more"


def collect(*, visits, leaves, saved_keys, entries, strays, missed_by_attribute, shared_groups,
            collided, changes, identities, registered_modules=None, registered_tensors=None) -> List[Finding]:
    """All findings, most consequential first."""
    return [
        *key_collision_findings(leaves, saved_keys, collided),
        *state_dict_change_findings(leaves, changes, saved_keys),
        *unregistered_findings(strays, missed_by_attribute, registered_modules, registered_tensors),
        *alias_findings(visits, leaves, saved_keys),
        *shared_storage_findings(leaves, saved_keys, shared_groups),
        *overlapping_view_findings(leaves, saved_keys, identities),
        *tied_weight_findings(leaves, saved_keys, shared_groups),
        *registration_name_findings(visits, leaves),
        *shadowed_name_findings(visits, leaves),
        *uninitialized_findings(leaves),
        *wrapper_findings(visits, entries),
        *plain_tensor_findings(strays, _registered_storages(leaves, saved_keys)),
        *non_persistent_buffer_findings(leaves, saved_keys),
        *numbered_sequential_findings(visits),
        *derived_weight_findings((visit.path, visit.module) for visit in visits),
    ]


def _quoted(names: Sequence[str]) -> str:
    shown = ", ".join(f"`{n}`" for n in names[:MAX_LISTED])
    return shown + (f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else "")


def _expr(visit: ModuleVisit) -> str:
    return "model" + "".join(step.accessor for step in visit.steps)


# --- unregistered modules and parameters ----------------------------------------------------

_MODULE_FIX = {
    "dict": "store them in an nn.ModuleDict (keys must be strings: nn.ModuleDict({str(k): m for k, m in d.items()}))",
    "list": "store them in an nn.ModuleList",
    "tuple": "store them in an nn.ModuleList",
    "set": "store them in an nn.ModuleList (a set has no stable order, so keys would not be stable either)",
    "dataclass": "assign each module to the model itself (self.head = cfg.head registers it) or keep the config's "
                 "modules in an nn.ModuleDict; a dataclass is not an nn.Module, so torch never looks inside it",
    "": "assign the module with ordinary attribute syntax (self.name = module) so nn.Module registers it",
}
_PARAM_FIX = {
    "dict": "store them in an nn.ParameterDict",
    "list": "store them in an nn.ParameterList",
    "tuple": "store them in an nn.ParameterList",
    "set": "store them in an nn.ParameterList",
    "dataclass": "assign each parameter to the model itself (self.scale = cfg.scale registers it) or keep them in "
                 "an nn.ParameterDict",
    "": "assign it with ordinary attribute syntax (self.name = nn.Parameter(...)) or call register_parameter(name, p)",
}


def _only_references(modules: Sequence[nn.Module], registered_modules, registered_tensors) -> bool:
    """Unregistered modules that only wrap registered ones (torch.compile's OptimizedModule of a registered
    child, a Sequential of registered blocks): every tensor below them is registered, and every unregistered
    module among them has children (none is a leaf whose behaviour .train()/.eval() would switch)."""
    if registered_modules is None or registered_tensors is None:
        return False
    for module in modules:
        for sub in module.modules():
            if id(sub) in registered_modules:
                continue
            if not sub._modules or any(t is not None and id(t) not in registered_tensors
                                       for t in itertools.chain(sub._parameters.values(), sub._buffers.values())):
                return False
    return True


def _holder(item: StrayItem) -> str:
    """What holds an unregistered item: "a plain list", "a dataclass instance (HeadConfig)", "a plain attribute"."""
    if item.container == DATACLASS:
        value = vars(item.owner.module).get(item.attribute)
        return f"a dataclass instance ({type(value).__name__})"
    return f"a plain {item.container}" if item.container else "a plain attribute"


def unregistered_findings(strays: Sequence[StrayItem], missed_by_attribute: Dict[Tuple[int, str], int],
                          registered_modules=None, registered_tensors=None) -> List[Finding]:
    findings = []
    for (slot, category), group in _grouped(strays, ("module", "parameter")):
        first = group[0]
        where = f"{_expr(first.owner)}.{first.attribute}"
        holder = _holder(first)
        missed = missed_by_attribute.get(slot, 0)
        fixes = _MODULE_FIX if category == "module" else _PARAM_FIX
        fix = fixes.get(first.container, fixes["list"])
        if category == "module" and _only_references([i.obj for i in group], registered_modules, registered_tensors):
            classes = ", ".join(f"{n}x {c}" for c, n in Counter(type(i.obj).__name__ for i in group).items())
            findings.append(Finding(
                Severity.INFO, "unregistered-module",
                f"{where} is {holder} holding {plural(len(group), 'nn.Module')} ({classes}) that only "
                f"wrap{'s' if len(group) == 1 else ''} modules registered elsewhere in the model: every parameter and "
                "buffer below is registered, so state_dict(), "
                ".parameters() and .to(device) reach them; only the wrapper objects themselves are outside the tree "
                "(named_modules(), .train()/.eval() and .apply() skip them).",
                fix="Nothing to do when it is a deliberate handle (a compiled or grouped view of registered modules).",
                layer=first.owner.path))
            continue
        if category == "module":
            classes = ", ".join(f"{n}x {c}" for c, n in Counter(type(i.obj).__name__ for i in group).items())
            message = (f"{where} is {holder} holding {plural(len(group), 'nn.Module')} ({classes}) with "
                       f"{missed:,} parameters that state_dict() does not save, .parameters() does not list "
                       "(so the optimizer never trains them) and .to(device) does not move; named_modules(), "
                       f".train()/.eval() and .apply() skip {'it' if len(group) == 1 else 'them'} too.")
            code = "unregistered-module"
        else:
            message = (f"{where} is {holder} holding {plural(len(group), 'nn.Parameter')} ({missed:,} elements) "
                       "that state_dict() does not save, .parameters() does not list (so the optimizer "
                       "never trains them) and .to(device) does not move.")
            code = "unregistered-parameter"
        findings.append(Finding(Severity.WARNING, code, message, fix=f"Register them: {fix}.",
                                layer=first.owner.path))
    return findings


def _registered_storages(leaves: Sequence[LeafVisit], saved_keys: Sequence[Optional[str]]) -> Dict[Hashable, str]:
    """Storage -> the key (or path) of the first registered tensor on it."""
    found: Dict[Hashable, str] = {}
    for i, leaf in enumerate(leaves):
        if leaf.tensor is not None:
            storage = storage_key(leaf.tensor)
            if storage is not None:
                found.setdefault(storage, saved_keys[i] or leaf.key)
    return found


def plain_tensor_findings(strays: Sequence[StrayItem], registered_storages: Optional[Dict[Hashable, str]] = None
                          ) -> List[Finding]:
    """Plain tensor attributes; ``registered_storages`` (storage -> key) tells the ones over a registered
    tensor's memory (a cached ``weight.t()`` or ``.data``), which loading does reach and moving does not."""
    findings = []
    for _, group in _grouped(strays, ("tensor",)):
        first = group[0]
        where = f"{_expr(first.owner)}.{first.attribute}"
        tensor = first.obj
        what = (f"a plain tensor attribute ({list(tensor.shape)}, {str(tensor.dtype).replace('torch.', '')}, "
                f"on {tensor.device})" if not first.container
                else f"{_holder(first)} holding {plural(len(group), 'tensor')}")
        over = [key for key in (registered_storages.get(storage_key(item.obj)) for item in group)
                if key is not None] if registered_storages else []
        if over:
            memory = (f"over the memory of `{over[0]}`" if not first.container
                      else f"({len(over)} of them over the memory of registered tensors: "
                           f"{_quoted(list(dict.fromkeys(over)))})")
            saved, it, that, this = (("does not save it", "it", "that tensor", "this one") if not first.container else
                                     ("saves none of them", "the views", "the registered tensors", "the views"))
            message = (f"{where} is {what} {memory}: state_dict() {saved}, load_state_dict changes {it} only by "
                       f"writing into {that}, and .to(device), .half() and the like give {that} new memory and leave "
                       f"{this} on the old memory, with the old values.")
            fix = ("Derive it in forward from the registered tensor (self.linear.weight.t()) instead of keeping "
                   "a copy of the view, or register it with register_buffer(name, tensor, persistent=False).")
        elif _moves_its_own(first.owner.module):
            # timm's LeViT/EfficientFormer fill attention_bias_cache in an eval forward and empty it in _apply and train()
            cls = type(first.owner.module).__name__
            message = (f"{where} is {what}, which {cls} looks after itself: its class overrides _apply, which "
                       f".to(device), .half() and the like call, so they go through its own code. state_dict() does not "
                       f"save or load it: fine for a cache rebuilt from registered tensors.")
            fix = ("If it is a cache, make sure it is emptied when the tensors it comes from change (load_state_dict "
                   "too); if it must be saved, register it with register_buffer(name, tensor).")
            findings.append(Finding(Severity.INFO, "plain-tensor-attribute", message, fix=fix, layer=first.owner.path))
            continue
        else:
            message = f"{where} is {what}: state_dict() does not save or load it and .to(device) does not move it."
            fix = ("Use self.register_buffer(name, tensor) (persistent=False when it must not be saved), "
                   "or nn.Parameter when it should be trained.")
        findings.append(Finding(Severity.WARNING, "plain-tensor-attribute", message, fix=fix, layer=first.owner.path))
    return findings


def _moves_its_own(module) -> bool:
    """Whether ``module``'s class (not torch.nn's) defines ``_apply``, the method every device or dtype move runs."""
    for base in type(module).__mro__:
        if "_apply" in base.__dict__:
            return not base.__module__.startswith("torch.nn.")
    return False


def _grouped(strays: Sequence[StrayItem], categories):
    """Strays grouped by (owner, attribute) and category, in first-seen order."""
    groups: Dict[Tuple[Tuple[int, str], str], List[StrayItem]] = {}
    for item in strays:
        if item.category in categories:
            groups.setdefault(((id(item.owner.module), item.attribute), item.category), []).append(item)
    return groups.items()


# --- aliases and tied weights ----------------------------------------------------------------

def _saved_below(paths: set, leaves: Sequence[LeafVisit], saved_keys: Sequence[Optional[str]]) -> Dict[str, str]:
    """Module path -> the first state_dict key of a tensor below it (paths with none left out)."""
    found: Dict[str, str] = {}
    for leaf, key in zip(leaves, saved_keys):
        if key is None:
            continue
        parts = leaf.key.split(".")
        for k in range(1, len(parts)):
            prefix = ".".join(parts[:k])
            if prefix in paths:
                found.setdefault(prefix, key)
    return found


def alias_findings(visits: Sequence[ModuleVisit], leaves: Sequence[LeafVisit] = (),
                   saved_keys: Optional[Sequence[Optional[str]]] = None) -> List[Finding]:
    """Modules registered directly under two or more names (not merely inside an aliased parent).
    ``leaves``/``saved_keys``: the walk's tensors and the key each is saved under, to tell the paths whose
    keys state_dict() really holds (an override or hook can save an aliased module once)."""
    paths: Dict[int, List[str]] = {}
    registrations: Dict[int, set] = {}
    modules: Dict[int, nn.Module] = {}
    for visit in visits:
        if visit.parent is None:
            continue
        key = id(visit.module)
        modules[key] = visit.module
        paths.setdefault(key, []).append(visit.path)
        registrations.setdefault(key, set()).add((id(visit.parent), visit.name))
    findings = []
    aliased = {key for key, registered in registrations.items() if len(registered) >= 2}
    below = (_saved_below({n for key in aliased for n in paths[key]}, leaves, saved_keys)
             if aliased and saved_keys is not None else None)
    for key, names in paths.items():
        if key not in aliased:
            continue
        module = modules[key]
        # the keys below it (non-persistent buffers have none)
        saved = [name for name, _ in module.named_parameters()] + [
            f"{path}.{name}" if path else name for path, sub in module.named_modules()
            for name, buf in sub._buffers.items() if buf is not None and name not in sub._non_persistent_buffers_set]
        kept = names if below is None else [n for n in names if n in below]
        examples = [f"{n}.{saved[0]}" for n in kept] if below is None else [below[n] for n in kept]
        if saved and len(kept) < 2 and kept:
            consequence = (f" state_dict() saves its tensors under one of those paths only (e.g. `{examples[0]}`: a "
                           "state_dict override or hook leaves the others out), so checkpoints hold them once.")
        elif saved and kept:
            consequence = (f" Each of its {plural(len(saved), 'state_dict key')} appears under {len(kept)} paths "
                           f"({_quoted(examples)}): load_state_dict expects every one of "
                           "those keys and copies each into the same tensor (the last one loaded wins), while "
                           "torch.save writes the data only once per storage; the totals count it once.")
        else:
            consequence = (" It has no state_dict keys, so checkpoints are unaffected; named_modules() lists it once, "
                           f"as `{names[0]}`.")
        # One container's numbered slots all holding the module is how nn.ModuleList([block] * n) goes wrong
        # (n references to one block, not n blocks): a warning. Other sharing (a position encoder handed to
        # every block, CoaT's shared ConvPosEnc) is built on purpose: true and worth knowing, like tied weights.
        repeated = len({parent for parent, _ in registrations[key]}) == 1 and all(
            is_index(name) for _, name in registrations[key])
        pattern = (" One container holds it in several numbered slots: the pattern of nn.ModuleList([block] * n) "
                   "or nn.Sequential(*[block] * n), which repeats one module instead of building n."
                   if repeated else "")
        findings.append(Finding(
            Severity.WARNING if repeated else Severity.INFO, "alias",
            f"{type(module).__name__} is registered under {len(names)} names: {_quoted(names)}.{consequence}{pattern}",
            fix="If the sharing is intended, nothing to do. Otherwise register the module under one name only "
                f"(e.g. keep `{names[0]}` and refer to the others through it, or give each place its own module"
                + (", e.g. nn.ModuleList([Block() for _ in range(n)])" if repeated else "") + ").",
            layer=names[0]))
    return findings


def tied_weight_findings(leaves: Sequence[LeafVisit], saved_keys: Sequence[Optional[str]],
                         shared_groups: Sequence[Sequence[int]]) -> List[Finding]:
    """One tensor object registered under two or more names (in one module or several).

    ``shared_groups`` holds the leaf indices of each tensor identity with several names; distinct
    objects on one storage are :func:`shared_storage_findings`' business.
    """
    findings = []
    for members in shared_groups:
        by_object: Dict[int, List[int]] = {}
        for i in members:
            by_object.setdefault(id(leaves[i].tensor), []).append(i)
        for indices in by_object.values():
            registrations = {(id(leaves[i].owner.module), leaves[i].name) for i in indices}
            if len(registrations) < 2:
                continue
            names = [saved_keys[i] or leaves[i].key for i in indices]
            leaf = leaves[indices[0]]
            as_param = [name for name, i in zip(names, indices) if leaves[i].kind == PARAMETER]
            owners = len({id(leaves[i].owner.module) for i in indices})
            where = f"shared by {owners} modules (tied weights)" if owners > 1 else "registered under several names of one module"
            if as_param and len(as_param) < len(indices):  # register_buffer(name, p): a parameter and a buffer
                what = "nn.Parameter" if isinstance(leaf.tensor, nn.Parameter) else "tensor"
                as_buffer = [name for name in names if name not in as_param]
                counted = (f"registered as a parameter ({_quoted(as_param)}) and as a buffer ({_quoted(as_buffer)}), "
                           "so model.parameters() and model.buffers() both list it and the totals count its "
                           "elements once among the parameters and once among the buffer elements")
            else:
                what = "parameter" if leaf.kind == PARAMETER else "buffer"
                counted = "counted once in the totals, as model.parameters() does"
            findings.append(Finding(
                Severity.INFO, "tied-weights",
                f"{_quoted(names)} are one {what} object ({_shape_text(leaf.tensor)}) {where}: {counted}; "
                "state_dict() holds every key, torch.save writes the data "
                "once, and load_state_dict fills each key into the same tensor (the last one loaded wins).",
                fix="Intended tying needs nothing. When a checkpoint lacks one of the keys, load with strict=False "
                    "and re-tie after loading.",
                layer=leaf.owner.path))
    return findings


def shared_storage_findings(leaves: Sequence[LeafVisit], saved_keys: Sequence[Optional[str]],
                            shared_groups: Sequence[Sequence[int]]) -> List[Finding]:
    """Distinct tensor objects (e.g. two nn.Parameters) that are the same view of one storage."""
    findings = []
    for members in shared_groups:
        objects: Dict[int, List[int]] = {}
        for i in members:
            objects.setdefault(id(leaves[i].tensor), []).append(i)
        if len(objects) < 2:
            continue
        leaf = leaves[members[0]]
        names = [saved_keys[indices[0]] or leaves[indices[0]].key for indices in objects.values()]
        params = sum(1 for indices in objects.values() if leaves[indices[0]].kind == PARAMETER)
        numel = leaf.tensor.numel()
        counted = (f" model.parameters() lists each of the {params} Parameter objects, so its count (and the "
                   f"totals here) include these {numel:,} elements {params} times;" if params > 1 else "")
        findings.append(Finding(
            Severity.WARNING, "shared-storage",
            f"{_quoted(names)} are {len(objects)} distinct tensor objects over the same memory "
            f"({_shape_text(leaf.tensor)}), not one tied tensor:{counted} an optimizer keeps separate state for "
            "each and applies every update to the same memory; torch.save writes the storage once and "
            "loads it back shared.",
            fix="To tie, register one object under both names (self.b.weight = self.a.weight); to separate, "
                "give each its own storage (nn.Parameter(t.clone())).",
            layer=leaf.owner.path))
    return findings


MAX_EXACT_OVERLAP = 1 << 16  # elements per view compared one by one when views are not dense


def overlapping_view_findings(leaves: Sequence[LeafVisit], saved_keys: Sequence[Optional[str]],
                              identities: Sequence[Optional[Hashable]]) -> List[Finding]:
    """Different views of one storage whose elements overlap (writing one changes the other).

    ``identities`` holds each leaf's :func:`tensor_identity`."""
    by_storage: Dict[Hashable, Dict[Hashable, int]] = {}
    for i, identity in enumerate(identities):
        storage = storage_of(identity) if identity is not None else None
        if storage is not None:
            by_storage.setdefault(storage, {}).setdefault(identity, i)
    findings = []
    for views in by_storage.values():
        if len(views) < 2:
            continue
        indices = list(views.values())
        overlaps = [(a, b, _views_overlap(leaves[a].tensor, leaves[b].tensor))
                    for a, b in itertools.combinations(indices, 2)]
        pairs = [(a, b, how) for a, b, how in overlaps if how]
        if not pairs:
            continue
        involved = sorted({i for a, b, _ in pairs for i in (a, b)})
        names = [saved_keys[i] or leaves[i].key for i in involved]
        shown = ", ".join(f"`{saved_keys[a] or leaves[a].key}` with `{saved_keys[b] or leaves[b].key}`"
                          + ("" if how == "elements" else " (byte ranges intersect; too many elements to compare one by one)")
                          for a, b, how in pairs[:MAX_LISTED])
        findings.append(Finding(
            Severity.WARNING, "overlapping-views",
            f"{_quoted(names)} are different views of one storage whose elements overlap ({shown}): "
            "writing through one changes the other, model.parameters() and the totals here count the shared "
            "elements once per view, and an optimizer updates them once per view; torch.save writes the storage once.",
            fix="Give each tensor its own storage (nn.Parameter(view.clone())), or keep one tensor and derive the "
                "others in forward.",
            layer=leaves[involved[0]].owner.path))
    return findings


def _views_overlap(a, b) -> Optional[str]:
    """"elements" when two views of one storage share an element, "ranges" when their byte ranges
    intersect but they are too large to compare element by element, else None (metadata only)."""
    spans = []
    for t in (a, b):
        if t.numel() == 0:
            return None
        start = t.storage_offset() * t.element_size()
        last = sum((size - 1) * stride for size, stride in zip(t.shape, t.stride()))
        spans.append((start, start + (last + 1) * t.element_size(), t))
    (a0, a1, _), (b0, b1, _) = spans
    if a1 <= b0 or b1 <= a0:
        return None
    if all(_dense(t) for t in (a, b)):
        return "elements"  # each covers its whole byte range, and the ranges intersect
    if a.dtype != b.dtype or max(a.numel(), b.numel()) > MAX_EXACT_OVERLAP:
        return "ranges"
    return "elements" if _element_offsets(a) & _element_offsets(b) else None


def _dense(t) -> bool:
    return t.numel() == 1 + sum((size - 1) * stride for size, stride in zip(t.shape, t.stride()))


def _element_offsets(t) -> set:
    offsets = {t.storage_offset()}
    for size, stride in zip(t.shape, t.stride()):
        offsets = {o + i * stride for o in offsets for i in range(size)}
    return offsets


def _shape_text(tensor) -> str:
    return f"{list(tensor.shape)}, {str(tensor.dtype).replace('torch.', '')}"


def key_collision_findings(leaves: Sequence[LeafVisit], saved_keys: Sequence[Optional[str]],
                           collided: Dict[str, List[int]]) -> List[Finding]:
    """Two registered tensors whose paths are the same key (a registration name with a dot)."""
    findings = []
    for key, members in collided.items():
        kept = [i for i in members if saved_keys[i] == key]
        lost = [i for i in members if saved_keys[i] != key]
        expressions = [_leaf_expr(leaves[i]) for i in members]
        saved_text = (f"state_dict() keeps only {_leaf_expr(leaves[kept[0]])} (written last)" if kept
                      else "state_dict() keeps neither")
        findings.append(Finding(
            Severity.WARNING, "key-collision",
            f"`{key}` is the key of {len(members)} different tensors: {', '.join(expressions)}. {saved_text}; "
            f"{', '.join(_leaf_expr(leaves[i]) for i in lost)} is never saved, and load_state_dict copies the one "
            "saved value into all of them.",
            fix="Registration names must not contain '.': rename the module registered with a dot "
                "(setattr/add_module/_modules) so every key is unique.",
            layer=leaves[members[0]].owner.path))
    return findings


def _leaf_expr(leaf: LeafVisit) -> str:
    return "model" + "".join(step.accessor for step in leaf.steps)


_CHANGE_TEXT = {
    "renamed": "saves {expr} as `{key}`",
    "swapped": "saves {expr} under `{key}`, the path of another tensor",
    "replaced": "saves under `{key}` a value that is not {expr}",
    "added": "adds `{key}`, which no registered tensor explains",
    "dropped": "leaves {expr} (`{path}`) out",
    "saved-non-persistent": "saves the non-persistent buffer {expr}, which state_dict() itself leaves out, as `{key}`",
}


def state_dict_change_findings(leaves: Sequence[LeafVisit], changes,
                               saved_keys: Optional[Sequence[Optional[str]]] = None) -> List[Finding]:
    """One finding per module whose state_dict hooks or overrides renamed, swapped, replaced, added or dropped keys.
    ``saved_keys`` (per leaf, its key or None) tells a dropped path whose tensor is saved under another key."""
    key_of_object: Dict[int, str] = {}
    for i, key in enumerate(saved_keys or ()):
        if key is not None and leaves[i].tensor is not None:
            key_of_object.setdefault(id(leaves[i].tensor), key)
    by_agent: Dict[Tuple[int, Tuple[str, ...]], list] = {}
    for change in changes:
        by_agent.setdefault((id(change.agent.module) if change.agent else 0, change.agents), []).append(change)
    findings = []
    for (_, agents), group in by_agent.items():
        agent = group[0].agent
        texts = []
        for change in group:
            leaf = leaves[change.leaf] if change.leaf is not None else None
            text = _CHANGE_TEXT[change.kind].format(
                expr=_leaf_expr(leaf) if leaf else "", key=change.key, path=leaf.key if leaf else "")
            elsewhere = key_of_object.get(id(leaf.tensor)) if change.kind == "dropped" and leaf is not None else None
            texts.append(text + (f" (the same tensor is saved as `{elsewhere}`)" if elsewhere else ""))
        if agent is None:
            who = "Something other than a state_dict hook or override found on the modules along the path"
        else:
            who = (f"{type(agent.module).__name__} at `{agent.path or '(root)'}` has "
                   f"{', '.join(agents)}, which")
        severe = any(c.kind in ("swapped", "replaced", "dropped") for c in group)
        shown = "; ".join(texts[:MAX_LISTED]) + (f"; and {len(texts) - MAX_LISTED} more" if len(texts) > MAX_LISTED else "")
        findings.append(Finding(
            Severity.WARNING if severe else Severity.INFO, "state-dict-hook",
            f"{who} {shown}. The keys above are what state_dict() really returns; the expressions point at the "
            "tensor saved under each key.",
            fix="load_state_dict matches keys to registered names, so a checkpoint with these keys loads only "
                "through a matching load_state_dict pre-hook (or _load_from_state_dict override); check that one "
                "exists, or remap the checkpoint (netscope remap).",
            layer=agent.path if agent is not None else None))
    return findings


def registration_name_findings(visits: Sequence[ModuleVisit], leaves: Sequence[LeafVisit]) -> List[Finding]:
    """Registration names that break key paths: with a dot, or changed by Python's NFKC normalisation."""
    findings = []
    seen = set()
    names = [(visit.parent, visit.name, visit.path, "module") for visit in visits
             if visit.parent is not None and not (visit.name.isascii() and "." not in visit.name and visit.name)]
    names += [(leaf.owner.module, leaf.name, leaf.key, "tensor") for leaf in leaves
              if not (leaf.name.isascii() and "." not in leaf.name and leaf.name)]
    for parent, name, path, what in names:
        if (id(parent), name, what) in seen:
            continue
        seen.add((id(parent), name, what))
        if not name:
            findings.append(Finding(
                Severity.WARNING, "empty-name",
                f"A {what} is registered under the empty name (through _modules/_parameters/_buffers; add_module "
                f"and register_* refuse ''), so its key{'s start with' if what == 'module' else ' is'} "
                f"`{path + '.' if what == 'module' else path}` with an empty segment, which tools that split or "
                "strip keys on '.' mangle"
                + (": at the root, named_modules() lists it under the root's own name '' and get_submodule('') "
                   "returns the root." if what == "module" and not path else "."),
                fix="Register it under a real name (add_module refuses '').", layer=path))
        if "." in name:
            findings.append(Finding(
                Severity.WARNING, "dotted-name",
                f"The {what} at `{path}` is registered under the name `{name}`, which contains '.': its keys read "
                f"as a path through a module `{name.split('.')[0]}` that does not hold it, so get_submodule(), "
                "get_parameter() and tools that split keys on '.' cannot find it.",
                fix="Register it under a name without '.' (nn.Module.add_module rejects such names; setattr and "
                    "_modules do not).", layer=path))
        normal = unicodedata.normalize("NFKC", name)
        if normal != name and name.isidentifier():
            twin = normal in parent._modules or normal in parent._parameters or normal in parent._buffers
            findings.append(Finding(
                Severity.WARNING if twin else Severity.INFO, "unnormalised-name",
                f"The {what} name `{name}` at `{path}` changes under Python's NFKC normalisation to `{normal}`: "
                f"in source code `.{name}` means `.{normal}`, so it is reachable only through getattr()/_modules"
                + (f", and `.{name}` in code reaches the different {what} `{normal}`." if twin else "."),
                fix=f"Register it as `{normal}` (plain ASCII) and remap existing checkpoints.", layer=path))
    return findings


def shadowed_name_findings(visits: Sequence[ModuleVisit], leaves: Sequence[LeafVisit]) -> List[Finding]:
    """Registered modules and tensors that attribute access does not reach: a class attribute (a property, a
    method) or an instance attribute of the same name is found before nn.Module.__getattr__ looks in the tables."""
    findings = []
    seen = set()
    # only names the walk reached through their table (".name" is used wherever nothing hides it)
    names = [(visit.parent, visit.name, visit.path, "module", "_modules") for visit in visits
             if visit.parent is not None and visit.steps[-1].accessor.startswith("._modules[")]
    names += [(leaf.owner.module, leaf.name, leaf.key, leaf.kind, "_parameters" if leaf.kind == PARAMETER else "_buffers")
              for leaf in leaves
              if leaf.tensor is not None and leaf.steps[-1].accessor.startswith(("._parameters[", "._buffers["))]
    for owner, name, path, what, table in names:
        if (id(owner), name) in seen or not shadowed(owner, name, table):
            continue
        seen.add((id(owner), name))
        holder = next((cls for cls in type(owner).__mro__ if name in vars(cls)), None)
        by = (f"the class attribute {holder.__qualname__}.{name} ({type(vars(holder)[name]).__name__})"
              if holder is not None else f"the instance attribute `{name}` in its __dict__")
        findings.append(Finding(
            Severity.WARNING, "shadowed-name",
            f"The {what} registered as `{name}` at `{path}` is saved under that key, but {by} is found first: "
            f"`.{name}` on its {type(owner).__name__}, get_submodule() and get_parameter() reach that instead, so "
            f"code that names `{path}` uses a different object than state_dict() saves and loads. The expression "
            f"column reaches it through {table}.",
            fix=f"Rename the {what} or the attribute so the two names differ.", layer=path))
    return findings


def uninitialized_findings(leaves: Sequence[LeafVisit]) -> List[Finding]:
    """Lazy modules' parameters and buffers that have no shape before the first forward pass."""
    lazy = [leaf for leaf in leaves
            if leaf.tensor is not None and isinstance(leaf.tensor, nn.parameter.UninitializedTensorMixin)]
    if not lazy:
        return []
    classes = ", ".join(sorted({type(leaf.owner.module).__name__ for leaf in lazy}))
    return [Finding(
        Severity.INFO, "uninitialized",
        f"{_quoted([leaf.key for leaf in lazy])} ({classes}) are uninitialised lazy tensors: their shapes are "
        "fixed by the first forward pass, so they have no shape here and the totals leave them out.",
        fix="Run one forward pass with a real input (netscope summary does so on a copy) to see their shapes.",
        layer=lazy[0].owner.path)]


# --- wrappers -------------------------------------------------------------------------------

def wrapper_findings(visits: Sequence[ModuleVisit], entries) -> List[Finding]:
    """One finding per wrapper kind present: where it sits and what keys look like without it."""
    present = {visit.origin for visit in visits if visit.steps}
    findings = []
    for kind in WRAPPERS.values():
        if kind.origin not in present:
            continue
        hits = [e for e in entries if kind.origin in e.origins]
        if not hits:
            continue
        examples: Dict[str, object] = {}  # key prefix in front of the wrapper segment -> first entry there
        through: Dict[str, object] = {}  # ... -> first saved entry whose key really holds the segment there
        for entry in hits:
            for place in _wrapper_places(entry, kind.origin):
                examples.setdefault(place, entry)
                if entry.in_state_dict and entry.key.startswith(place + kind.attribute + "."):
                    through.setdefault(place, entry)
        places = sorted(examples)
        saved = [e for e in hits if e.in_state_dict]
        shown_places = _quoted([p + kind.attribute + "." for p in places])
        if kind.hook_strips_prefix or not through:  # its hooks, or its own state_dict override, leave it out
            example = next((e for e in hits if e.in_state_dict), hits[0])
            path = ".".join(s.text for s in example.segments)
            how = "state_dict hooks drop it" if kind.hook_strips_prefix else "state_dict() leaves it out of every key"
            message = (f"{kind.label} wrapper segment `{kind.attribute}` sits at {shown_places}; its {how}, so "
                       f"`{path}` is saved as `{example.key}` ({plural(len(saved), 'key')} affected), while "
                       "named_modules() paths still contain it.")
            fix = ("Nothing to do for state_dict()/load_state_dict(); strip the segment yourself when matching "
                   f"named_modules() names against checkpoint keys (remove `{kind.attribute}.`).")
        else:
            renames = []
            places = sorted(through)
            for place in places:
                key = through[place].key
                renames.append(f"`{key}` becomes `{place + key[len(place) + len(kind.attribute) + 1:]}`")
            passing = [e for e in saved if any(e.key.startswith(p + kind.attribute + ".") for p in places)]
            shown_places = _quoted([p + kind.attribute + "." for p in places])
            message = (f"{plural(len(passing), 'state_dict key')} pass through the {kind.label} wrapper segment "
                       f"at {shown_places}; unwrapped there, {'; '.join(renames[:MAX_LISTED])}.")
            fixes = []
            if "" in places:
                fixes.append(f"save {kind.unwrap}.state_dict() to get unwrapped keys, or strip the prefix when "
                             "loading into an unwrapped model: torch.nn.modules.utils."
                             f"consume_prefix_in_state_dict_if_present(state_dict, \"{kind.attribute}.\")")
            inner = [p for p in places if p]
            if inner:
                fixes.append(f"for an inner wrapper rename the keys, e.g. {{k.replace(\"{inner[0]}{kind.attribute}.\", "
                             f"\"{inner[0]}\"): v for k, v in state_dict.items()}}")
            fix = "To unwrap: " + "; ".join(fixes) + "."
        findings.append(Finding(Severity.INFO, "wrapper-prefix", message, fix=fix, layer=places[0].rstrip(".")))
    return findings


def _wrapper_places(entry, origin: str) -> List[str]:
    """The key prefixes in front of each wrapper segment of ``origin`` ("" at the root); a dotted wrapper
    attribute ("base_model.model") is one place."""
    places, prefix, previous = [], "", None
    for segment in entry.segments:
        if segment.origin == origin and previous != origin:
            places.append(prefix)
        previous = segment.origin
        prefix += segment.text + "."
    return places


# --- buffers ---------------------------------------------------------------------------------

def non_persistent_buffer_findings(leaves: Sequence[LeafVisit],
                                   saved_keys: Optional[Sequence[Optional[str]]] = None) -> List[Finding]:
    """Non-persistent buffers that state_dict() leaves out (``saved_keys``: per leaf the key it is saved
    under, when known: an override that saves one anyway is the state-dict-hook finding's business)."""
    findings = []
    seen = set()
    for i, leaf in enumerate(leaves):
        registration = (id(leaf.owner.module), leaf.name)
        if leaf.kind != NON_PERSISTENT_BUFFER or registration in seen or (saved_keys and saved_keys[i] is not None):
            continue
        seen.add(registration)
        tensor = leaf.tensor
        findings.append(Finding(
            Severity.INFO, "non-persistent-buffer",
            f"`{leaf.key}` ({type(leaf.owner.module).__name__}, {list(tensor.shape)}, "
            f"{str(tensor.dtype).replace('torch.', '')}) is a non-persistent buffer: .to(device) moves it but "
            "state_dict() leaves it out and load_state_dict never sets it, so its value is what the constructor "
            "(or later code, such as a forward that updates it) put there, never a checkpoint's.",
            fix="Fine for values rebuilt in __init__ (position ids, masks, caches). If it must be saved, "
                "register it with register_buffer(name, tensor, persistent=True).",
            layer=leaf.owner.path))
    return findings


# --- numbered Sequential paths ----------------------------------------------------------------

def numbered_sequential_findings(visits: Sequence[ModuleVisit]) -> List[Finding]:
    """Numbered Sequentials reached through another Sequential index: keys like `features.3.0.weight`.

    One finding per enclosing Sequential: a stack of 4,000 numbered blocks is one naming decision, not 4,000.
    """
    by_parent: Dict[str, List[ModuleVisit]] = {}
    seen = set()
    for visit in visits:
        module = visit.module
        if (id(module) in seen or not isinstance(module, nn.Sequential) or visit.origin != SEQUENTIAL_INDEX
                or not any(map(is_index, module._modules))):
            continue
        seen.add(id(module))
        by_parent.setdefault(visit.path.rpartition(".")[0], []).append(visit)
    return [numbered_sequential_finding(parent, [v.path for v in group], group[0].module)
            for parent, group in by_parent.items()]


def numbered_sequential_finding(parent: str, paths: Sequence[str], module: nn.Module) -> Finding:
    """The finding for the numbered Sequentials at ``paths`` (in module order; the first is ``module``) that
    enclosing path ``parent`` holds through Sequential indexes."""
    path = paths[0]
    names = suggested_names(module)
    first_child, first_leaf = _first_leaf(module)
    example = ""
    if first_child is not None:
        example = (f" (`{path}.{first_child}.{first_leaf}` would read "
                   f"`{path}.{names[first_child]}.{first_leaf}`)")
    children = ", ".join(names[n] for n in module._modules if n in names)
    if len(paths) == 1:
        what = f"`{path}` is a numbered {type(module).__name__} inside a numbered Sequential"
        subject, layer = "its", path
    else:
        shown = ", ".join(f"`{p}`" for p in paths[:3]) + (", ..." if len(paths) > 3 else "")
        what = f"`{parent or '(root)'}` holds {len(paths):,} numbered Sequentials ({shown}) inside a numbered Sequential"
        subject, layer = "their", parent
    return Finding(
        Severity.INFO, "numbered-sequential",
        f"{what}, so {subject} keys are positions two levels deep; built from an OrderedDict the children of "
        f"`{path}` would be named {children}{example}.",
        fix="Build it as nn.Sequential(OrderedDict([(name, layer), ...])) for readable keys; renaming changes "
            "the state_dict keys, so remap existing checkpoints (netscope remap).",
        layer=layer)


def suggested_names(sequential: nn.Sequential) -> Dict[str, str]:
    """Child key -> lower-case class name, numbered when a class occurs more than once."""
    classes = {name: type(child).__name__.lower() for name, child in sequential._modules.items() if child is not None}
    counts = Counter(classes.values())
    seen: Counter = Counter()
    names = {}
    for name, cls in classes.items():
        if counts[cls] > 1:
            seen[cls] += 1
            names[name] = f"{cls}{seen[cls]}"
        else:
            names[name] = cls
    return names


def _first_leaf(sequential: nn.Sequential) -> Tuple[Optional[str], Optional[str]]:
    for name, child in sequential._modules.items():
        if child is None:
            continue
        for leaf, _ in itertools.chain(child.named_parameters(), child.named_buffers()):
            return name, leaf
    return None, None


# --- weights a forward pre-hook computes from other keys ---------------------------------------

@dataclass(frozen=True)
class DerivedWeight:
    """A torch utility that replaces a module's tensor ``name`` by a value its forward pre-hook computes from
    tensors registered under other names (the keys a checkpoint of the module holds)."""

    utility: str  # "torch.nn.utils.prune"
    suffixes: Tuple[str, ...]  # the keys it registers, after "<name>": ("_orig", "_mask")
    formula: str  # how the hook computes <name> from them ({n} stands for the tensor's name)
    fix: str  # how to get the plain key back ({n}: the name)


# qualified name of the hook's class (looked up along its MRO, so a pruning method of the user's counts too;
# no torch.nn.utils module is imported for it) -> what it does to the keys
DERIVED_WEIGHTS: Registry[str, DerivedWeight] = Registry("derived-weight hook")
DERIVED_WEIGHTS.add("torch.nn.utils.prune.BasePruningMethod", DerivedWeight(
    "torch.nn.utils.prune", ("_orig", "_mask"), "{n} = {n}_orig * {n}_mask",
    "torch.nn.utils.prune.remove(module, '{n}') before saving folds them into a plain `{n}` key (the pruning "
    "stays, as zeros)"))
DERIVED_WEIGHTS.add("torch.nn.utils.weight_norm.WeightNorm", DerivedWeight(
    "torch.nn.utils.weight_norm", ("_g", "_v"), "{n} = {n}_g * {n}_v / ||{n}_v||",
    "torch.nn.utils.remove_weight_norm(module, '{n}') before saving gives a plain `{n}` key "
    "(torch.nn.utils.parametrizations.weight_norm is the maintained replacement)"))
DERIVED_WEIGHTS.add("torch.nn.utils.spectral_norm.SpectralNorm", DerivedWeight(
    "torch.nn.utils.spectral_norm", ("_orig", "_u", "_v"),
    "{n} = {n}_orig / sigma, sigma by power iteration with the buffers {n}_u and {n}_v",
    "torch.nn.utils.remove_spectral_norm(module, '{n}') before saving gives a plain `{n}` key"))


def _derived_weight(hook) -> Optional[Tuple[DerivedWeight, str]]:
    """The registered kind of a forward pre-hook and the name of the tensor it computes, or None."""
    for cls in type(hook).__mro__:
        kind = DERIVED_WEIGHTS.get(f"{cls.__module__}.{cls.__qualname__}")
        if kind is not None:
            name = getattr(hook, "_tensor_name", None) or getattr(hook, "name", None)
            return (kind, name) if isinstance(name, str) else None
    return None


def derived_weight_findings(named) -> List[Finding]:
    """Modules whose tensor is computed before each forward from tensors under other keys (pruning, the old
    weight_norm and spectral_norm hooks): the key a reader expects (`fc.weight`) is not in the state_dict, and
    the keys that are there exist because of the utility. ``named``: (path, module) pairs. One finding per
    utility and tensor name."""
    found: Dict[Tuple[DerivedWeight, str], List[str]] = {}
    seen = set()
    for path, module in named:
        hooks = module.__dict__.get("_forward_pre_hooks")
        if not hooks or id(module) in seen:
            continue
        seen.add(id(module))
        for hook in hooks.values():
            derived = _derived_weight(hook)
            if derived is not None:
                found.setdefault(derived, []).append(f"{path}.{derived[1]}" if path else derived[1])
    findings = []
    for (kind, name), keys in found.items():
        saved = ", ".join(f"`{keys[0]}{suffix}`" for suffix in kind.suffixes)
        many = len(keys) > 1
        findings.append(Finding(
            Severity.INFO, "derived-weight",
            f"{_quoted(keys)} {'are' if many else 'is'} not in the state_dict: {kind.utility} computes "
            f"{'each' if many else 'it'} before every forward as `{kind.formula.format(n=name)}`, so the checkpoint "
            f"holds {saved}{' (and the same for each of the others)' if many else ''} instead.",
            fix=kind.fix.format(n=name) + ". A model built without it loads such a checkpoint only after the same "
                "call.",
            layer=keys[0].rpartition(".")[0]))
    return findings
