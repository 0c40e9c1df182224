"""Leave the user's model exactly as it was: mode flags, buffers, tensor slots, requires_grad, RNG and
grad mode; and the process-wide state a pass touches (global hooks, patched constructors) behind one lock."""

from __future__ import annotations

import contextlib
import gc
import threading
from dataclasses import dataclass, field
from typing import Iterator, List

import torch
import torch.nn as nn
from torch.nn.parameter import UninitializedTensorMixin

from netscope.collector import paused_gc  # noqa: F401  (re-exported: its home is torch-free)

# Held while netscope has process-wide state changed: the global module hooks of a trace and the
# constructor patches of the no-memory build. Two threads summarizing at once take turns.
GLOBAL_STATE_LOCK = threading.RLock()


@dataclass
class ModelChanges:
    """What a pass changed in the model that could not be undone without a copy of every weight."""

    changed_in_place: List[str] = field(default_factory=list)  # parameter names whose values the forward wrote


@contextlib.contextmanager
def preserved_model(model: nn.Module, *, train: bool) -> Iterator[ModelChanges]:
    """Run the block with ``model`` in train or eval mode and without autograd, then restore everything.

    Restored: each submodule's ``training`` flag (not just the root's), the tensor objects in every
    ``_parameters``/``_buffers`` slot, buffer values (BatchNorm running stats and
    ``num_batches_tracked`` change in a train-mode pass), each parameter's ``requires_grad``, the global CPU
    and CUDA RNG states (dropout draws from them) and grad mode; also when the block raises. Parameter
    values written in place are detected through the tensor version counter (restoring them would need a
    copy of every weight) and listed in the yielded :class:`ModelChanges`.
    """
    changes = ModelChanges()
    modules = list(model.modules())
    flags = [(m, m.training) for m in modules]
    slots = [(m, dict(m._parameters), dict(m._buffers)) for m in modules]
    buffer_values = []
    seen = set()
    for _, _, buffers in slots:
        for buffer in buffers.values():
            if buffer is None or id(buffer) in seen or isinstance(buffer, UninitializedTensorMixin) \
                    or buffer.device.type == "meta":
                continue
            seen.add(id(buffer))
            buffer_values.append((buffer, buffer.detach().clone()))
    param_state = {}
    for _, param_slots, _ in slots:
        for param in param_slots.values():
            if param is not None and not isinstance(param, UninitializedTensorMixin):  # lazy: no values yet
                param_state.setdefault(id(param), (param, param.requires_grad, param._version))
    cuda_devices = []
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        cuda_devices = list(range(torch.cuda.device_count()))
    try:
        with torch.random.fork_rng(devices=cuda_devices, enabled=True), torch.no_grad():
            if any(flag != train for _, flag in flags):  # model.train() visits every module: skip when moot
                _set_mode(model, modules, train)
            yield changes
    finally:
        for module, flag in flags:
            if module.training != flag:
                module.__dict__["training"] = flag  # a plain attribute: what Module.__setattr__ ends up doing
        for module, params, buffers in slots:
            _restore_slots(module._parameters, params)
            _restore_slots(module._buffers, buffers)
        with torch.no_grad():
            for buffer, value in buffer_values:
                if buffer.shape == value.shape:
                    buffer.copy_(value)
        for param, requires_grad, _ in param_state.values():
            if param.requires_grad != requires_grad:
                param.requires_grad_(requires_grad)
        written = {key for key, (param, _, version) in param_state.items() if param._version != version}
        if written:
            changes.changed_in_place.extend(name for name, param in model.named_parameters()
                                            if id(param) in written)


def _set_mode(model: nn.Module, modules, train: bool) -> None:
    """``model.train(train)``; done as direct flag writes when no module overrides ``train`` (deep models
    spend most of ``Module.train``'s recursion in ``__setattr__``)."""
    if any(type(m).train is not nn.Module.train for m in modules):
        model.train(train)  # a custom train() (e.g. one that keeps BatchNorm frozen) must run
        return
    for module in modules:
        module.__dict__["training"] = train


def _restore_slots(current, saved: dict) -> None:
    """Put back the saved tensor objects if the forward pass reassigned, added or removed any.
    (A TorchScript module's slots are a fixed-key mapping without ``clear``: only values can differ.)"""
    if current.keys() == saved.keys() and all(current[k] is v for k, v in saved.items()):
        return
    if not isinstance(current, dict):
        for key, value in saved.items():
            if current[key] is not value:
                current[key] = value
        return
    current.clear()
    current.update(saved)


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Around the user's forward: move every object that exists now (the model) out of the collector's
    sight with ``gc.freeze()``, so collections during the pass stay cheap while the collector keeps
    running; ``gc.unfreeze()`` afterwards. Left alone when the process has frozen objects itself."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
