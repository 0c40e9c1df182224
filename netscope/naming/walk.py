"""The structural walk: every path to every module and tensor, the way ``state_dict`` sees them.

Like ``state_dict`` (and unlike ``named_modules``) a module registered under two names is visited
under both. Iterative, so very deep models do not hit the recursion limit, and it never reads
tensor data, so meta-device models are fine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, List, Optional, Tuple

import torch
import torch.nn as nn

from netscope.naming.segments import (
    ATTRIBUTE, BUFFER, EXTRA_STATE, NON_PERSISTENT_BUFFER, PARAMETER, Segment, Step, child_step, leaf_step,
    second_wrapper_step,
)


@dataclass(frozen=True)
class ModuleVisit:
    """One path to one module."""

    module: nn.Module
    steps: Tuple[Step, ...]  # from the root; empty for the root itself
    parent: Optional[nn.Module]
    name: str  # registration name in ``parent`` ("" for the root)
    path: str  # the dotted key prefix, "" for the root

    @property
    def origin(self) -> str:
        return self.steps[-1].segment.origin if self.steps else ATTRIBUTE


@dataclass(frozen=True)
class LeafVisit:
    """One path to one tensor (or to a module's extra state)."""

    owner: ModuleVisit
    name: str
    kind: str  # parameter, buffer, non-persistent-buffer, extra-state
    tensor: Optional[torch.Tensor]
    steps: Tuple[Step, ...]
    key: str  # the dotted path, which is the state_dict key unless a hook renames it


def module_visits(root: nn.Module, prefix: Tuple[Step, ...] = ()) -> List[ModuleVisit]:
    """Every (module, path) pair in depth-first registration order, duplicates included."""
    visits: List[ModuleVisit] = []
    stack = [ModuleVisit(root, prefix, None, "", dotted(prefix))]
    while stack:
        visit = stack.pop()
        visits.append(visit)
        parent_origin = visit.origin
        children = []
        for position, (name, child) in enumerate(visit.module._modules.items()):
            if child is None:
                continue
            step = child_step(visit.module, name, position, parent_origin)
            if parent_origin.startswith("wrapper:") and visit.parent is not None and step.segment.origin == ATTRIBUTE:
                step = second_wrapper_step(visit.parent, visit.name, step)
            path = f"{visit.path}.{step.segment.text}" if visit.steps else step.segment.text  # "" is a name too
            children.append(ModuleVisit(child, visit.steps + (step,), visit.module, name, path))
        stack.extend(reversed(children))
    return visits


def dotted(steps: Tuple[Step, ...]) -> str:
    return ".".join(step.segment.text for step in steps)


def leaf_visit(owner: ModuleVisit, name: str, kind: str, tensor, step: Step) -> LeafVisit:
    key = f"{owner.path}.{step.segment.text}" if owner.steps else step.segment.text
    return LeafVisit(owner, name, kind, tensor, owner.steps + (step,), key)


def leaf_visits(visit: ModuleVisit) -> Iterator[LeafVisit]:
    """The tensors registered directly on one visited module, in ``_save_to_state_dict`` order."""
    module = visit.module
    for name, param in module._parameters.items():
        if param is not None:
            yield leaf_visit(visit, name, PARAMETER, param, leaf_step(module, name, PARAMETER))
    non_persistent = module._non_persistent_buffers_set
    for name, buf in module._buffers.items():
        if buf is not None:
            kind = NON_PERSISTENT_BUFFER if name in non_persistent else BUFFER
            yield leaf_visit(visit, name, kind, buf, leaf_step(module, name, kind))
    if getattr(type(module), "get_extra_state", nn.Module.get_extra_state) is not nn.Module.get_extra_state:
        yield leaf_visit(visit, "_extra_state", EXTRA_STATE, None,
                         Step(Segment("_extra_state", EXTRA_STATE), ".get_extra_state()"))
