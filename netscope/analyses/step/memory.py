"""Bytes of one training step, per rank: exact tensor sizes from the fake step, a peak estimate around them.

Exact (each tensor's real size, split per rank by ``netscope.analyses.step.sharding``): parameters,
gradients, optimizer state, activations saved for backward.

Estimated: the peak. One device: the highest live total of the fake step as ``MemTracker`` counts it
after every operator (parameters, gradients, optimizer state, saved activations, temporaries, inputs).
DDP adds the reducer's gradient buckets (one flat copy of the gradients of every parameter that requires grad,
``gradient_as_bucket_view=False``, DDP's default). FSDP2: at every point of that timeline the live parameters, gradients and optimizer
state are scaled to the rank's padded share of them, the highest point is taken (it moves: sharded, the
saved activations weigh more), and the unsharded transients of the largest ``fully_shard`` unit are
added: the root unit's own parameters (gathered through the step: the root is not resharded after
forward) and the largest block's parameters twice (running and prefetched); a unit's unsharded
gradients come in backward, when activations are being freed, and are not added. Units are the blocks
of the model's largest ``nn.ModuleList`` (the usual per-block ``fully_shard`` recipe) and the root. Not
validated against a measured FSDP peak (no GPU here; ``bench/`` puts it beside torch's
``FSDPMemTracker`` on a fake process group); the per-rank tensor sizes are, exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import List, Tuple

import torch.nn as nn

from netscope.analyses.step.options import StepOptions
from netscope.analyses.step.run import ParamInfo, StepRun
from netscope.analyses.step.sharding import local_numel
from netscope.analyses.step.units import block_units


@dataclass(frozen=True)
class RankMemory:
    """One rank's bytes. All ranks are alike under DDP; under FSDP the last ranks may hold fewer rows."""

    rank: int
    param_bytes: int
    grad_bytes: int
    optimizer_bytes: int
    activation_bytes: int
    peak_bytes: int  # estimate

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def rank_memory(run: StepRun, options: StepOptions, model: nn.Module) -> Tuple[RankMemory, ...]:
    """Per-rank bytes of the step ``run`` measured, for the layout ``options`` names."""
    world = options.world_size
    sharded = options.layout == "fsdp"
    activations = sum(run.saved_own) + run.saved_outside
    full = _figures(run.params, 1, 0, sharded=False)
    transient = fsdp_transient_bytes(model, run.params) if sharded else 0
    buckets = ddp_bucket_bytes(run.params) if options.layout == "ddp" else 0
    ranks = []
    for rank in range(world):
        params, grads, state = _figures(run.params, world, rank, sharded=sharded)
        scale = _figures(run.params, world, rank, sharded=True, padded=True) if sharded else full
        estimate = peak_bytes(run.timeline, [_ratio(part, whole) for part, whole in zip(scale, full)])
        ranks.append(RankMemory(rank, params, grads, state, activations, estimate + transient + buckets))
    return tuple(ranks)


def ddp_bucket_bytes(params: List[ParamInfo]) -> int:
    """The DDP reducer's flat gradient buckets: one slot per parameter that requires grad, made when DDP wraps
    the model, whether this step's backward reaches the parameter or not (an unused one needs
    ``find_unused_parameters=True``, and still has its slot)."""
    return sum(info.bytes for info in params if info.trainable)


def peak_bytes(timeline, scale) -> int:
    """The highest live total along the step, with parameters, gradients and optimizer state each
    scaled by ``scale`` (a rank's share of them: 1 on one device or under DDP)."""
    sp, sg, so = scale
    if sp == sg == so == 1.0:
        return max((entry[0] for entry in timeline), default=0)
    best = 0.0
    for total, params, grads, state in timeline:
        live = total - params - grads - state + params * sp + grads * sg + state * so
        if live > best:
            best = live
    return int(round(best))


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def _figures(params: List[ParamInfo], world: int, rank: int, *, sharded: bool, padded: bool = False):
    """(parameter, gradient, optimizer-state) bytes one rank holds."""
    param_bytes = grad_bytes = state_bytes = 0
    for info in params:
        numel = prod(info.shape)
        local = local_numel(info.shape, world, rank, padded=padded) if sharded else numel
        param_bytes += local * info.element_size
        if info.grad_bytes and numel:
            grad_bytes += info.grad_bytes // numel * local
        for shape, nbytes in info.state:
            if sharded and tuple(shape) == info.shape and numel:
                state_bytes += nbytes // numel * local
            else:
                state_bytes += nbytes
    return param_bytes, grad_bytes, state_bytes


def fsdp_transient_bytes(model: nn.Module, params: List[ParamInfo]) -> int:
    """Unsharded bytes on top of the shards at the end of forward (where saved activations peak): the root
    unit's own parameters (those in no block; the root is not resharded after forward, so they stay
    gathered) and the largest block's parameters twice (the block running and the one prefetched).
    A unit's unsharded gradients live in backward, while activations are being freed: not added."""
    by_name = {info.name: info for info in params}
    names = {id(p): n for n, p in model.named_parameters()}

    def infos(module):
        return {names[id(p)]: by_name[names[id(p)]] for p in module.parameters() if names.get(id(p)) in by_name}

    blocks = [infos(unit) for unit in block_units(model) if unit is not model]
    in_blocks = {name for block in blocks for name in block}
    root = [info for name, info in infos(model).items() if name not in in_blocks]
    largest_block = max((sum(i.bytes for i in block.values()) for block in blocks), default=0)
    return sum(i.bytes for i in root) + 2 * largest_block
