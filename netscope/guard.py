"""Leave the user's model exactly as it was: mode flags, buffers, tensor slots, RNG and grad mode."""

from __future__ import annotations

import contextlib
import gc
from typing import Iterator

import torch
import torch.nn as nn


@contextlib.contextmanager
def preserved_model(model: nn.Module, *, train: bool) -> Iterator[None]:
    """Run the block with ``model`` in train or eval mode and without autograd, then restore everything.

    Restored: each submodule's ``training`` flag (not just the root's), the tensor objects in every
    ``_parameters``/``_buffers`` slot, buffer values (BatchNorm running stats and
    ``num_batches_tracked`` change in a train-mode pass), the global CPU and CUDA RNG states (dropout
    draws from them) and grad mode; also when the block raises.
    """
    modules = list(model.modules())
    flags = [(m, m.training) for m in modules]
    slots = [(m, dict(m._parameters), dict(m._buffers)) for m in modules]
    buffer_values = []
    seen = set()
    for _, _, buffers in slots:
        for buffer in buffers.values():
            if buffer is None or id(buffer) in seen or buffer.device.type == "meta":
                continue
            seen.add(id(buffer))
            buffer_values.append((buffer, buffer.detach().clone()))
    cuda_devices = []
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        cuda_devices = list(range(torch.cuda.device_count()))
    try:
        with torch.random.fork_rng(devices=cuda_devices, enabled=True), torch.no_grad():
            if any(flag != train for _, flag in flags):  # model.train() visits every module: skip when moot
                _set_mode(model, modules, train)
            yield
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


def _set_mode(model: nn.Module, modules, train: bool) -> None:
    """``model.train(train)``; done as direct flag writes when no module overrides ``train`` (deep models
    spend most of ``Module.train``'s recursion in ``__setattr__``)."""
    if any(type(m).train is not nn.Module.train for m in modules):
        model.train(train)  # a custom train() (e.g. one that keeps BatchNorm frozen) must run
        return
    for module in modules:
        module.__dict__["training"] = train


def _restore_slots(current: dict, saved: dict) -> None:
    """Put back the saved tensor objects if the forward pass reassigned, added or removed any."""
    if current.keys() == saved.keys() and all(current[k] is v for k, v in saved.items()):
        return
    current.clear()
    current.update(saved)


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for the block, then restore its previous state.

    A trace allocates a few small records per module call while millions of long-lived objects (the
    model) sit in the heap; the collector's full passes then cost a third of the trace on deep models.
    Reference counting still frees everything acyclic; the block's cycles are collected afterwards.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
