"""The naming audit's findings: one function per finding code, each returning Findings."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple

import torch.nn as nn

from netscope.records import Finding, Severity
from netscope.naming.segments import (
    NON_PERSISTENT_BUFFER, PARAMETER, SEQUENTIAL_INDEX, WRAPPERS, index_accessor,
)
from netscope.naming.unregistered import StrayItem
from netscope.naming.walk import LeafVisit, ModuleVisit

MAX_LISTED = 6  # names quoted in one message before "and N more"


def collect(*, visits, leaves, saved_keys, entries, strays, missed_by_attribute, shared_groups) -> List[Finding]:
    """All findings, most consequential first."""
    return [
        *unregistered_findings(strays, missed_by_attribute),
        *alias_findings(visits),
        *tied_weight_findings(leaves, saved_keys, shared_groups),
        *wrapper_findings(visits, entries),
        *plain_tensor_findings(strays),
        *non_persistent_buffer_findings(leaves),
        *numbered_sequential_findings(visits),
    ]


def _quoted(names: Sequence[str]) -> str:
    shown = ", ".join(f"`{n}`" for n in names[:MAX_LISTED])
    return shown + (f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else "")


def _expr(visit: ModuleVisit) -> str:
    return "model" + "".join(step.accessor for step in visit.steps)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


# --- unregistered modules and parameters ----------------------------------------------------

_MODULE_FIX = {
    "dict": "store them in an nn.ModuleDict (keys must be strings: nn.ModuleDict({str(k): m for k, m in d.items()}))",
    "list": "store them in an nn.ModuleList",
    "tuple": "store them in an nn.ModuleList",
    "set": "store them in an nn.ModuleList (a set has no stable order, so keys would not be stable either)",
    "": "assign the module with ordinary attribute syntax (self.name = module) so nn.Module registers it",
}
_PARAM_FIX = {
    "dict": "store them in an nn.ParameterDict",
    "list": "store them in an nn.ParameterList",
    "tuple": "store them in an nn.ParameterList",
    "set": "store them in an nn.ParameterList",
    "": "assign it with ordinary attribute syntax (self.name = nn.Parameter(...)) or call register_parameter(name, p)",
}


def unregistered_findings(strays: Sequence[StrayItem], missed_by_attribute: Dict[Tuple[int, str], int]) -> List[Finding]:
    findings = []
    for (slot, category), group in _grouped(strays, ("module", "parameter")):
        first = group[0]
        where = f"{_expr(first.owner)}.{first.attribute}"
        holder = f"a plain {first.container}" if first.container else "a plain attribute"
        missed = missed_by_attribute.get(slot, 0)
        fixes = _MODULE_FIX if category == "module" else _PARAM_FIX
        fix = fixes.get(first.container, fixes["list"])
        if category == "module":
            classes = ", ".join(f"{n}x {c}" for c, n in Counter(type(i.obj).__name__ for i in group).items())
            message = (f"{where} is {holder} holding {_plural(len(group), 'nn.Module')} ({classes}) with "
                       f"{missed:,} parameters that state_dict() does not save, .parameters() does not list "
                       "(so the optimizer never trains them) and .to(device) does not move.")
            code = "unregistered-module"
        else:
            message = (f"{where} is {holder} holding {_plural(len(group), 'nn.Parameter')} ({missed:,} elements) "
                       "that state_dict() does not save, .parameters() does not list (so the optimizer "
                       "never trains them) and .to(device) does not move.")
            code = "unregistered-parameter"
        findings.append(Finding(Severity.WARNING, code, message, fix=f"Register them: {fix}.",
                                layer=first.owner.path))
    return findings


def plain_tensor_findings(strays: Sequence[StrayItem]) -> List[Finding]:
    findings = []
    for _, group in _grouped(strays, ("tensor",)):
        first = group[0]
        where = f"{_expr(first.owner)}.{first.attribute}"
        tensor = first.obj
        what = (f"a plain tensor attribute ({list(tensor.shape)}, {str(tensor.dtype).replace('torch.', '')}, "
                f"on {tensor.device})" if not first.container
                else f"a plain {first.container} holding {_plural(len(group), 'tensor')}")
        findings.append(Finding(
            Severity.WARNING, "plain-tensor-attribute",
            f"{where} is {what}: state_dict() does not save or load it and .to(device) does not move it.",
            fix="Use self.register_buffer(name, tensor) (persistent=False when it must not be saved), "
                "or nn.Parameter when it should be trained.",
            layer=first.owner.path))
    return findings


def _grouped(strays: Sequence[StrayItem], categories):
    """Strays grouped by (owner, attribute) and category, in first-seen order."""
    groups: Dict[Tuple[Tuple[int, str], str], List[StrayItem]] = {}
    for item in strays:
        if item.category in categories:
            groups.setdefault(((id(item.owner.module), item.attribute), item.category), []).append(item)
    return groups.items()


# --- aliases and tied weights ----------------------------------------------------------------

def alias_findings(visits: Sequence[ModuleVisit]) -> List[Finding]:
    """Modules registered directly under two or more names (not merely inside an aliased parent)."""
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
    for key, names in paths.items():
        if len(registrations[key]) < 2:
            continue
        module = modules[key]
        tensors = list(itertools.chain(module.named_parameters(), module.named_buffers()))
        example = ""
        if tensors:
            leaf = tensors[0][0]
            example = (f" Each of its {_plural(len(tensors), 'tensor')} appears under {len(names)} state_dict "
                       f"keys ({_quoted([f'{n}.{leaf}' for n in names])}):")
        else:
            example = " It holds no tensors, so only module paths are duplicated;"
        findings.append(Finding(
            Severity.WARNING, "alias",
            f"{type(module).__name__} is registered under {len(names)} names: {_quoted(names)}.{example} "
            "load_state_dict expects every one of those keys and copies each into the same tensor (the last "
            "one loaded wins), while torch.save writes the data only once per storage; the totals count it once.",
            fix="If the sharing is intended, nothing to do. Otherwise register the module under one name only "
                f"(e.g. keep `{names[0]}` and refer to the others through it, or give each place its own module).",
            layer=names[0]))
    return findings


def tied_weight_findings(leaves: Sequence[LeafVisit], saved_keys: Sequence[Optional[str]],
                         shared_groups: Sequence[Sequence[int]]) -> List[Finding]:
    """One tensor registered as a parameter/buffer of two different modules (or under two names).

    ``shared_groups`` holds the row indices of each tensor with several names; rows below
    ``len(leaves)`` are the registered leaves.
    """
    findings = []
    for members in shared_groups:
        indices = [i for i in members if i < len(leaves)]
        if len({(id(leaves[i].owner.module), leaves[i].name) for i in indices}) < 2:
            continue
        names = [saved_keys[i] or leaves[i].key for i in indices]
        leaf = leaves[indices[0]]
        what = "parameter" if leaf.kind == PARAMETER else "buffer"
        findings.append(Finding(
            Severity.INFO, "tied-weights",
            f"{_quoted(names)} are one {what} tensor ({list(leaf.tensor.shape)}) shared by several modules "
            "(tied weights): counted once in the totals; state_dict() holds every key, torch.save writes the "
            "data once, and load_state_dict fills each key into the same tensor (the last one loaded wins).",
            fix="Intended tying needs nothing. When a checkpoint lacks one of the keys, load with strict=False "
                "and re-tie after loading.",
            layer=leaf.owner.path))
    return findings


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
        for entry in hits:
            for place in _wrapper_places(entry, kind.origin):
                examples.setdefault(place, entry)
        places = sorted(examples)
        saved = [e for e in hits if e.in_state_dict]
        shown_places = _quoted([p + kind.attribute + "." for p in places])
        if kind.hook_strips_prefix:
            example = hits[0]
            path = ".".join(s.text for s in example.segments)
            message = (f"{kind.label} wrapper segment `{kind.attribute}` sits at {shown_places}; its state_dict "
                       f"hooks drop it, so `{path}` is saved as `{example.key}` ({_plural(len(saved), 'key')} "
                       "affected), while named_modules() paths still contain it.")
            fix = ("Nothing to do for state_dict()/load_state_dict(); strip the segment yourself when matching "
                   f"named_modules() names against checkpoint keys (remove `{kind.attribute}.`).")
        else:
            renames = []
            for place in places:
                key = examples[place].key
                renames.append(f"`{key}` becomes `{place + key[len(place) + len(kind.attribute) + 1:]}`")
            message = (f"{_plural(len(saved), 'state_dict key')} pass through the {kind.label} wrapper segment "
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
    """The key prefixes in front of each wrapper segment of ``origin`` ("" at the root)."""
    places, prefix = [], ""
    for segment in entry.segments:
        if segment.origin == origin:
            places.append(prefix)
        prefix += segment.text + "."
    return places


# --- buffers ---------------------------------------------------------------------------------

def non_persistent_buffer_findings(leaves: Sequence[LeafVisit]) -> List[Finding]:
    findings = []
    seen = set()
    for leaf in leaves:
        registration = (id(leaf.owner.module), leaf.name)
        if leaf.kind != NON_PERSISTENT_BUFFER or registration in seen:
            continue
        seen.add(registration)
        tensor = leaf.tensor
        findings.append(Finding(
            Severity.INFO, "non-persistent-buffer",
            f"`{leaf.key}` ({type(leaf.owner.module).__name__}, {list(tensor.shape)}, "
            f"{str(tensor.dtype).replace('torch.', '')}) is a non-persistent buffer: .to(device) moves it but "
            "state_dict() leaves it out, so its value always comes from the constructor, never a checkpoint.",
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
                or not any(index_accessor(name) for name in module._modules)):
            continue
        seen.add(id(module))
        by_parent.setdefault(visit.path.rpartition(".")[0], []).append(visit)
    return [_numbered_sequential_finding(parent, group) for parent, group in by_parent.items()]


def _numbered_sequential_finding(parent: str, group: List[ModuleVisit]) -> Finding:
    visit = group[0]
    module = visit.module
    names = suggested_names(module)
    first_child, first_leaf = _first_leaf(module)
    example = ""
    if first_child is not None:
        example = (f" (`{visit.path}.{first_child}.{first_leaf}` would read "
                   f"`{visit.path}.{names[first_child]}.{first_leaf}`)")
    children = ", ".join(names[n] for n in module._modules if n in names)
    if len(group) == 1:
        what = f"`{visit.path}` is a numbered {type(module).__name__} inside a numbered Sequential"
        subject, layer = "its", visit.path
    else:
        shown = ", ".join(f"`{v.path}`" for v in group[:3]) + (", ..." if len(group) > 3 else "")
        what = f"`{parent or '(root)'}` holds {len(group):,} numbered Sequentials ({shown}) inside a numbered Sequential"
        subject, layer = "their", parent
    return Finding(
        Severity.INFO, "numbered-sequential",
        f"{what}, so {subject} keys are positions two levels deep; built from an OrderedDict the children of "
        f"`{visit.path}` would be named {children}{example}.",
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
