"""Modules and tensors a module keeps in its ``__dict__`` where ``nn.Module`` does not register them.

Plain Python lists, tuples, dicts, sets, deques, ``SimpleNamespace`` objects and dataclass instances (a config
object holding a module: ``self.cfg = HeadConfig(head=nn.Linear(...))``), nested up to two levels, and plain
attributes are scanned. Torch's own bookkeeping (``_parameters``, ``_forward_hooks``, ...) is skipped, and so is
anything that is registered somewhere else in the model (a deliberate non-owning reference).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import types
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple

import torch
import torch.nn as nn

from netscope.naming.segments import UNREGISTERED_CONTAINER, UNREGISTERED_ENTRY, Segment, Step, attribute_accessor
from netscope.naming.walk import ModuleVisit
from netscope.run.module_tree import TORCH_INTERNAL  # noqa: F401  (re-exported: the bookkeeping every module holds)

CONTAINERS = (list, tuple, dict, set, frozenset, collections.deque, types.SimpleNamespace)
# Attributes torch keeps on some module classes beside the registered ones: not the user's
# (a traced module's compiled twin, the GraphModule an unflattened torch.export module runs: each shares its
# module's tensors; nothing there is lost).
TORCH_ATTRIBUTES = {"torch.jit._script.ScriptModule": frozenset({"_actual_script_module", "_c", "_concrete_type"}),
                    "torch.export.unflatten.InterpreterModule": frozenset({"graph_module"}),
                    "torch.export.unflatten.UnflattenedModule": frozenset({"graph_module"})}
MAX_DEPTH = 2  # a container inside a container
DATACLASS = "dataclass"  # StrayItem.container of a dataclass instance's fields


def is_container(value) -> bool:
    """Whether ``value`` is a plain holder that torch never looks inside: one of :data:`CONTAINERS`, or a
    dataclass instance (not a module or tensor that is also a dataclass)."""
    return isinstance(value, CONTAINERS) or (dataclasses.is_dataclass(value) and not isinstance(value, type)
                                              and not _held(value))


def _container_name(value) -> str:
    return DATACLASS if dataclasses.is_dataclass(value) and not isinstance(value, CONTAINERS) else type(value).__name__


@dataclass(frozen=True)
class StrayItem:
    """One module, parameter or tensor an owner holds without registering it."""

    owner: ModuleVisit
    attribute: str
    container: str  # "dict", "list", "dataclass", ... of the attribute; "" when the attribute holds the item itself
    steps: Optional[Tuple[Step, ...]]  # root -> item; None when Python cannot index it (inside a set)
    obj: Any

    @property
    def category(self) -> str:
        if isinstance(self.obj, nn.Module):
            return "module"
        if isinstance(self.obj, nn.Parameter):
            return "parameter"
        return "tensor"

    @property
    def location(self) -> str:
        """Python expression of the item, or a description when it is unreachable (set member)."""
        if self.steps is not None:
            return "model" + "".join(step.accessor for step in self.steps)
        owner = "model" + "".join(step.accessor for step in self.owner.steps)
        return f"a member of {owner}.{self.attribute} ({self.container})"


def stray_items(visits: List[ModuleVisit], registered_modules: Set[int], registered_tensors: Set[int]) -> List[StrayItem]:
    """Unregistered items held by each distinct module (first path of each), in visit order."""
    seen_owners: Set[int] = set()
    torch_attributes = {}  # module class -> its torch-kept attributes
    found: List[StrayItem] = []
    for visit in visits:
        if id(visit.module) in seen_owners:
            continue
        seen_owners.add(id(visit.module))
        attributes = vars(visit.module)
        if not attributes.keys() - TORCH_INTERNAL:  # nothing of the user's own: the usual leaf module
            continue
        derived = _derived_attributes(visit.module, torch_attributes)
        for attribute, value in attributes.items():
            if attribute in TORCH_INTERNAL or attribute in derived:
                continue
            if is_container(value):
                base = visit.steps + (Step(Segment(attribute, UNREGISTERED_CONTAINER),
                                           attribute_accessor(attribute, "__dict__", visit.module)),)
                items = _container_items(value, base, 1)
                container = _container_name(value)
            elif _held(value):
                items = iter([(value, visit.steps + (Step(Segment(attribute, UNREGISTERED_CONTAINER),
                                                          attribute_accessor(attribute, "__dict__", visit.module)),))])
                container = ""
            else:
                continue
            for obj, steps in items:
                if id(obj) in (registered_modules if isinstance(obj, nn.Module) else registered_tensors):
                    continue
                found.append(StrayItem(visit, attribute, container, steps, obj))
    return found


def holds_unregistered(module: nn.Module, registered_modules: Set[int], registered_tensors: Set[int],
                       torch_attributes: Dict[type, Set[str]]) -> bool:
    """Whether :func:`stray_items` finds anything on ``module`` itself, told without building any path
    (``torch_attributes``: a per-class memo the caller keeps for one model)."""
    attributes = vars(module)
    if not attributes.keys() - TORCH_INTERNAL:
        return False
    derived = _derived_attributes(module, torch_attributes)
    for attribute, value in attributes.items():
        if attribute in TORCH_INTERNAL or attribute in derived:
            continue
        if is_container(value):
            items = (obj for obj, _ in _container_items(value, None, 1))
        elif _held(value):
            items = (value,)
        else:
            continue
        for obj in items:
            if id(obj) not in (registered_modules if isinstance(obj, nn.Module) else registered_tensors):
                return True
    return False


def _derived_attributes(module: nn.Module, torch_attributes: Dict[type, Set[str]]) -> Set[str]:
    cls = type(module)
    if cls not in torch_attributes:
        torch_attributes[cls] = _torch_attributes(cls)
    return _hook_computed_attributes(module) | torch_attributes[cls]


def _torch_attributes(module_class: type) -> Set[str]:
    names: Set[str] = set()
    for cls in module_class.__mro__:
        names |= TORCH_ATTRIBUTES.get(f"{cls.__module__}.{cls.__qualname__}", frozenset())
    return names


_COMPUTED_NAME_ATTRIBUTES = ("name", "_tensor_name")  # WeightNorm/SpectralNorm; torch.nn.utils.prune's methods


def _hook_computed_attributes(module: nn.Module) -> Set[str]:
    """Attributes a forward pre-hook recomputes each call (old-style ``weight_norm``/``spectral_norm``
    set ``module.weight`` from ``weight_g``/``weight_v`` or ``weight_orig``, ``torch.nn.utils.prune`` from
    ``weight_orig * weight_mask``): derived, not forgotten."""
    return {name for hook in module._forward_pre_hooks.values() for attribute in _COMPUTED_NAME_ATTRIBUTES
            if isinstance(name := getattr(hook, attribute, None), str)}


def _container_items(container, steps: Optional[Tuple[Step, ...]], depth: int) -> Iterator[Tuple[Any, Optional[Tuple[Step, ...]]]]:
    if isinstance(container, dict):
        pairs = ((key, value, _key_accessor(key)) for key, value in container.items())
    elif isinstance(container, (set, frozenset)):
        pairs = ((None, value, None) for value in container)
    elif isinstance(container, types.SimpleNamespace):
        pairs = ((name, value, f".{name}") for name, value in vars(container).items())
    elif not isinstance(container, CONTAINERS):  # a dataclass instance: its fields (slots ones too)
        pairs = ((f.name, getattr(container, f.name, None), f".{f.name}") for f in dataclasses.fields(container))
    else:
        pairs = ((index, value, f"[{index}]") for index, value in enumerate(container))
    for key, value, accessor in pairs:
        if steps is None or accessor is None:
            item_steps = None
        else:
            item_steps = steps + (Step(Segment(str(key), UNREGISTERED_ENTRY), accessor),)
        if _held(value):
            yield value, item_steps
        elif depth < MAX_DEPTH and is_container(value):
            yield from _container_items(value, item_steps, depth + 1)


def _key_accessor(key) -> Optional[str]:
    if isinstance(key, (str, int, float, bool, bytes)) or key is None:
        return f"[{json.dumps(key) if isinstance(key, str) else repr(key)}]"
    return None


def _held(value) -> bool:
    """A module or tensor by its real type: an object that only claims the class (``Mock(spec=nn.Module)``,
    a proxy whose ``__class__`` says so) has no module or tensor inside to register or to walk."""
    return issubclass(type(value), (nn.Module, torch.Tensor))
