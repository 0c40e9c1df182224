"""Hypothesis properties of remap: generated state dicts (random nesting, wrapper tokens at any depth,
shared storages, bf16/float8/int/bool dtypes, empty and non-contiguous tensors) survive
remap -> save -> load bit-identical, with sharing preserved and nothing silently dropped."""

from __future__ import annotations

import os
import tempfile
from collections import OrderedDict

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import netscope
from netscope.checkpoints import load_checkpoint, save_checkpoint
from netscope.records import TensorMeta
from netscope.remapping.sides import TensorLayout
from netscope.remapping.wrappers import WRAPPER_TOKENS

DTYPES = [torch.float32, torch.bfloat16, torch.float16, torch.float8_e4m3fn, torch.int64, torch.int8, torch.bool]
SEGMENTS = ["a", "b", "layer", "0", "1", "2", "conv", "norm"]
LEAVES = ["weight", "bias", "running_mean", "scale"]

module_paths = st.lists(st.sampled_from(SEGMENTS), min_size=0, max_size=3).map(".".join)
keys_strategy = st.lists(st.tuples(module_paths, st.sampled_from(LEAVES)), min_size=1, max_size=8,
                         unique=True).map(lambda pairs: [f"{m}.{leaf}" if m else leaf for m, leaf in pairs])
tensor_spec = st.tuples(st.sampled_from(DTYPES), st.lists(st.integers(0, 4), min_size=0, max_size=3),
                        st.sampled_from(["fresh", "share", "transposed", "strided"]))
wrappers = st.lists(st.sampled_from(sorted(WRAPPER_TOKENS)), min_size=0, max_size=3)


def _random_tensor(dtype, shape, generator):
    numel = 1
    for d in shape:
        numel *= d
    raw = torch.randint(0, 256, (numel * torch.empty((), dtype=dtype).element_size(),), dtype=torch.uint8,
                        generator=generator)
    return raw.view(dtype).reshape(shape) if dtype != torch.bool else (raw > 127).reshape(shape)


def _bytes(t):
    if t.numel() == 0:
        return torch.empty(0, dtype=torch.uint8)
    flat = torch.empty(t.numel(), dtype=t.dtype)
    flat.copy_(t.reshape(-1))  # a fresh stride-1 buffer (contiguous() keeps odd strides of size-1 dims)
    t = flat
    return t.view(torch.uint8) if t.dtype != torch.bool else t.to(torch.uint8)


def _build_state(keys, specs, seed):
    generator = torch.Generator().manual_seed(seed)
    state, made = OrderedDict(), []
    for key, (dtype, shape, how) in zip(keys, specs):
        if how == "share" and made:
            tensor = made[seed % len(made)]
        elif how == "transposed" and len(shape) == 2:
            tensor = _random_tensor(dtype, [shape[1], shape[0]], generator).t()
        elif how == "strided" and len(shape) == 1:
            tensor = _random_tensor(dtype, [shape[0] * 2], generator)[::2]
        else:
            tensor = _random_tensor(dtype, shape, generator)
        made.append(tensor)
        state[key] = tensor
    return state


def _wrap(key, tokens, depth):
    parts = key.split(".")
    depth = min(depth, len(parts) - 1)
    return ".".join(parts[:depth] + tokens + parts[depth:])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(keys=keys_strategy, specs=st.lists(tensor_spec, min_size=8, max_size=8), tokens=wrappers,
       depth=st.integers(0, 2), seed=st.integers(0, 2**16), fmt=st.sampled_from([".pt", ".safetensors"]))
def test_remap_save_load_is_bit_identical(keys, specs, tokens, depth, seed, fmt):
    state = _build_state(keys, specs, seed)
    target_ids = {}
    target = TensorLayout({k: TensorMeta(tuple(v.shape), str(v.dtype).replace("torch.", ""),
                                         target_ids.setdefault(id(v), f"id:{id(v)}"))
                           for k, v in state.items()})
    source = OrderedDict((_wrap(k, tokens, depth), v) for k, v in state.items())
    snapshot = {k: (_bytes(v).clone(), v.dtype, tuple(v.shape), v.stride()) for k, v in source.items()}

    new, report = netscope.remap(source, target)

    # nothing silently dropped: every source key is loaded somewhere, every target key is filled
    assert report.unused == [] and report.missing == [] and report.mismatched == []
    assert set(new) == set(state)
    # the input is untouched
    assert list(source) == list(snapshot)
    for k, v in source.items():
        assert torch.equal(_bytes(v), snapshot[k][0]) and v.stride() == snapshot[k][3]

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "out" + fmt)
        save_checkpoint(new, path)
        loaded = load_checkpoint(path, mmap=False).state_dict
    assert set(loaded) == set(state)
    for key, original in state.items():
        assert loaded[key].dtype == original.dtype and tuple(loaded[key].shape) == tuple(original.shape)
        assert torch.equal(_bytes(loaded[key]), _bytes(original)), key
    if fmt == ".pt":  # torch.save keeps storages shared exactly as they were
        for a in state:
            for b in state:
                same = state[a].untyped_storage().data_ptr() == state[b].untyped_storage().data_ptr() \
                    and state[a].untyped_storage().nbytes() > 0
                assert (loaded[a].untyped_storage().data_ptr() == loaded[b].untyped_storage().data_ptr()) == same or \
                    loaded[a].untyped_storage().nbytes() == 0


@settings(max_examples=40, deadline=None)
@given(keys=keys_strategy, tokens=wrappers, depth=st.integers(0, 2))
def test_plan_invert_round_trips_keys(keys, tokens, depth):
    metas = {k: TensorMeta((i + 1,), "float32") for i, k in enumerate(keys)}
    source = TensorLayout({_wrap(k, tokens, depth): m for k, m in metas.items()})
    target = TensorLayout(metas)
    plan, _ = netscope.remapping.plan_mapping(source, target)
    back, _ = netscope.remapping.plan_mapping(target, source, plan=plan, invert=True, structural=False)
    assert back.mapping() == {t: s for s, t in plan.mapping().items()}
    assert set(plan.mapping()) == set(source.tensors)
