"""Scale: no-memory (meta) mode, --dtype, automatic meta fallback, progress indication, trace bookkeeping.

Oracles: the LLaMA parameter formula written from the architecture, a CPU run of the same model,
``sum(p.numel())`` per module, PyTorch's element sizes. No timing assertions.
"""

from __future__ import annotations

import gc
import importlib.util
import io
import json
import os
import sys

import pytest
import torch
import torch.nn as nn
import torchvision

import netscope
from netscope.cli import main
from netscope.collector import paused_gc
from netscope.run.devices import _meminfo_available, available_memory_bytes
from netscope.run.no_memory import empty_weights, weight_bytes
from netscope.progress import progress, progress_enabled
from netscope.run.trace import module_count, trace

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LLAMA_PATH = os.path.join(ROOT, "bench", "llama.py")


def _load_llama():
    spec = importlib.util.spec_from_file_location("netscope_bench_llama", LLAMA_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


llama = _load_llama()


def _cli_json(capsys, *argv):
    code = main(["summary", *argv, "-f", "json", "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out), captured.err


def _layer(report, name):
    return next(layer for layer in report["layers"] if layer["name"] == name)


# ---------------------------------------------------------------- LLaMA shapes on meta

def test_parameter_formula_matches_an_independent_count_on_a_small_config():
    config = llama.LlamaConfig(vocab_size=97, hidden_size=32, num_layers=3, num_heads=4, num_kv_heads=2,
                               intermediate_size=48)
    model = llama.LlamaForCausalLM(config)
    assert sum(p.numel() for p in model.parameters()) == llama.parameter_count(config)


def test_7b_on_meta_reports_the_exact_parameter_count_and_operator_macs(capsys):
    seq = 8
    report, _ = _cli_json(capsys, f"{LLAMA_PATH}:llama_7b", "--device", "meta", "--input", f"1,{seq}:int64")
    assert report["run"]["device"] == "meta"
    assert report["totals"]["total_params"] == llama.parameter_count(llama.LLAMA_7B) == 6_738_415_616
    assert report["totals"]["param_bytes"] == 4 * 6_738_415_616
    head = _layer(report, "lm_head")
    assert head["output_shapes"] == [1, seq, 32000]
    assert head["macs"] == seq * 4096 * 32000
    mlp = _layer(report, "model.layers.31.mlp")
    assert mlp["macs"] == 3 * seq * 4096 * 11008
    attention = _layer(report, "model.layers.0.self_attn")
    # four projections plus q @ k^T and attn @ v (causal sdpa is still counted densely, as flop_counter does)
    assert attention["macs"] == 4 * seq * 4096 * 4096 + 2 * seq * seq * 4096


def test_70b_shape_on_meta_reports_the_exact_parameter_count(capsys):
    report, _ = _cli_json(capsys, f"{LLAMA_PATH}:llama_70b", "--device", "meta", "--input", "1,4:int64")
    assert report["totals"]["total_params"] == llama.parameter_count(llama.LLAMA_70B) == 68_976_648_192
    assert _layer(report, "model.layers.79.self_attn.k_proj")["output_shapes"] == [1, 4, 1024]


def test_bfloat16_halves_parameter_bytes(capsys):
    spec = [f"{LLAMA_PATH}:llama_7b", "--model-arg", "num_layers=2", "--device", "meta", "--input", "1,4:int64"]
    full, _ = _cli_json(capsys, *spec)
    half, _ = _cli_json(capsys, *spec, "--dtype", "bfloat16")
    assert half["run"]["dtype"] == "bfloat16"
    assert half["totals"]["total_params"] == full["totals"]["total_params"]
    assert 2 * half["totals"]["param_bytes"] == full["totals"]["param_bytes"]
    assert half["totals"]["total_macs"] == full["totals"]["total_macs"]


def test_api_dtype_follows_bytes_on_a_users_model():
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    params = sum(p.numel() for p in model.parameters())
    half = netscope.summary(model, (2, 16), device="meta", dtype="float16")
    assert half.totals.param_bytes == 2 * params
    assert all(p.dtype == torch.float32 for p in model.parameters())


class _MixedDtypes(nn.Module):
    """A bfloat16 layer first, a float32 one after: the first parameter's dtype is not the model's."""

    def __init__(self):
        super().__init__()
        self.first = nn.Linear(16, 32).to(torch.bfloat16)
        self.second = nn.Linear(32, 4)

    def forward(self, x):
        return self.second(self.first(x.to(self.first.weight.dtype)).to(self.second.weight.dtype))


@pytest.mark.parametrize("device", ["cpu", "meta"])
@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
def test_dtype_converts_every_parameter_of_a_mixed_dtype_model(device, dtype):
    """dtype=bfloat16 on a model whose first parameter is already bfloat16 ran the float32 layer as it was
    (param_bytes 1,616 instead of 2 x 676): the conversion was decided by the first parameter alone. Oracle:
    parameters() and torch's element sizes; without dtype= the model's own mixed dtypes are counted."""
    model = _MixedDtypes()
    params = sum(p.numel() for p in model.parameters())
    own = sum(p.numel() * p.element_size() for p in model.parameters())
    report = netscope.summary(model, (2, 16), device=device, dtype=dtype, audit_names=False)
    assert report.totals.param_bytes == params * getattr(torch, dtype).itemsize
    assert netscope.summary(model, (2, 16), device=device, audit_names=False).totals.param_bytes == own
    assert [p.dtype for p in model.parameters()] == [torch.bfloat16] * 2 + [torch.float32] * 2


# ---------------------------------------------------------------- a user's model is never touched

def _snapshot(model):
    tensors = [(n, t) for n, t in model.named_parameters()] + [(n, t) for n, t in model.named_buffers()]
    return {
        "objects": [(n, id(t), t.device, t.dtype, t.requires_grad, t.data_ptr()) for n, t in tensors],
        "values": {n: t.detach().clone() for n, t in tensors},
        "training": [m.training for m in model.modules()],
        "hooks": [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()],
    }


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_meta_and_cpu_runs_leave_the_users_tensors_alone(device):
    model = torchvision.models.resnet18(weights=None)
    model.layer1.requires_grad_(False)
    model.train()
    before = _snapshot(model)
    rng = torch.random.get_rng_state()
    netscope.summary(model, (1, 3, 64, 64), device=device, mode="train")
    after = _snapshot(model)
    assert after["objects"] == before["objects"]
    assert after["training"] == before["training"]
    assert after["hooks"] == before["hooks"]
    for name, value in before["values"].items():
        assert torch.equal(after["values"][name], value), name
    assert torch.equal(torch.random.get_rng_state(), rng)


@pytest.mark.parametrize("name", ["regnet_y_400mf", "mobilenet_v3_small", "efficientnet_b0"])
def test_meta_run_reports_what_the_cpu_run_reports(name):
    model = torchvision.models.get_model(name, weights=None)
    real = netscope.summary(model, (1, 3, 96, 96), device="cpu")
    meta = netscope.summary(model, (1, 3, 96, 96), device="meta")
    assert [(c.name, c.output_shapes, c.own_params, c.subtree_params, c.macs) for c in meta.layers] == \
           [(c.name, c.output_shapes, c.own_params, c.subtree_params, c.macs) for c in real.layers]
    assert meta.totals.total_params == real.totals.total_params == sum(p.numel() for p in model.parameters())


def test_regnet_builds_under_empty_weights_where_a_meta_device_context_fails():
    with empty_weights():
        model = torchvision.models.regnet_y_400mf(weights=None)
    assert all(t.device.type == "meta" for t in list(model.parameters()) + list(model.buffers()))
    reference = torchvision.models.regnet_y_400mf(weights=None)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in reference.parameters())


# ---------------------------------------------------------------- --device auto falls back to meta

def test_auto_device_runs_on_meta_when_weights_would_not_fit(capsys, monkeypatch):
    monkeypatch.setattr("netscope.run.devices.available_memory_bytes", lambda device=None: 1024)
    code = main(["summary", "resnet18", "--device", "auto", "-f", "json"])
    captured = capsys.readouterr()
    assert code == 0
    assert json.loads(captured.out)["run"]["device"] == "meta"
    assert json.loads(captured.out)["totals"]["total_params"] == 11_689_512
    note = [line for line in captured.err.splitlines() if "meta device" in line]
    assert len(note) == 1 and "resnet18" in note[0] and "--device cpu" in note[0]


def test_auto_device_note_is_silenced_by_quiet(capsys, monkeypatch):
    monkeypatch.setattr("netscope.run.devices.available_memory_bytes", lambda device=None: 1024)
    report, err = _cli_json(capsys, "resnet18", "--device", "auto", "--input", "1,3,32,32")
    assert report["run"]["device"] == "meta"
    assert "meta device" not in err


def test_auto_device_runs_for_real_when_weights_fit(capsys, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.setattr("netscope.run.devices.available_memory_bytes", lambda device=None: 1 << 50)
    report, err = _cli_json(capsys, "resnet18", "--device", "auto", "--input", "1,3,32,32")
    assert report["run"]["device"] == "cpu"
    assert err == ""


def test_weight_bytes_counts_distinct_tensors_as_built_or_converted():
    with empty_weights():
        model = torchvision.models.resnet18(weights=None)
    tensors = {id(t): t for t in list(model.parameters()) + list(model.buffers())}.values()
    built = sum(t.numel() * t.element_size() for t in tensors)
    assert weight_bytes(model) == built
    assert weight_bytes(model, "bfloat16") == built  # the float32 build is the peak, not the cast copy
    doubled = sum(t.numel() * (8 if t.is_floating_point() else t.element_size()) for t in tensors)
    assert weight_bytes(model, "float64") == doubled


def test_meminfo_parsing(tmp_path):
    path = tmp_path / "meminfo"
    path.write_text("MemTotal:       16000000 kB\nMemFree:          100 kB\nMemAvailable:    2048 kB\n")
    assert _meminfo_available(str(path)) == 2048 * 1024
    path.write_text("MemTotal: 1 kB\n")
    assert _meminfo_available(str(path)) is None
    assert _meminfo_available(str(tmp_path / "missing")) is None
    assert available_memory_bytes(torch.device("meta")) is None


# ---------------------------------------------------------------- progress indication

class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_is_silent_off_a_terminal_and_when_quiet():
    plain = io.StringIO()
    with progress("tracing", total=3, stream=plain, delay=0) as advance:
        for _ in range(3):
            advance()
    assert plain.getvalue() == ""
    terminal = _Terminal()
    with progress("tracing", total=3, stream=terminal, delay=0, quiet=True) as advance:
        advance(3)
    assert terminal.getvalue() == ""
    assert not progress_enabled(plain) and progress_enabled(terminal) and not progress_enabled(terminal, quiet=True)


def test_progress_draws_on_a_terminal_after_its_delay():
    terminal = _Terminal()
    with progress("tracing", total=4, stream=terminal, delay=0) as advance:
        advance(4)
    assert "tracing:" in terminal.getvalue() and "/4" in terminal.getvalue()
    late = _Terminal()
    with progress("tracing", total=4, stream=late, delay=60) as advance:  # a short run prints nothing
        advance(4)
    assert late.getvalue() == ""


def test_trace_reports_each_call_to_progress():
    model = nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.ReLU(), nn.Linear(4, 2)))
    seen = []
    result = trace(model, ((torch.randn(1, 4),), {}), progress=seen.append)
    assert len(seen) == len(result.calls) == module_count(model) == 5


# ---------------------------------------------------------------- trace bookkeeping

class _Shared(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(6, 6)
        self.b = nn.Sequential(self.a, nn.ReLU())  # the same module reachable twice
        self.c = nn.Linear(6, 6)
        self.c.weight = self.a.weight  # a tied parameter
        self.frozen = nn.Linear(6, 3)
        self.frozen.weight.requires_grad_(False)

    def forward(self, x, *, scale):
        return self.frozen(self.c(self.b(x)) * scale)


class _Plain(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.Sequential(*[nn.Sequential(nn.Linear(5, 5), nn.ReLU()) for _ in range(3)])
        self.head = nn.Linear(5, 2)
        self.head.bias.requires_grad_(False)

    def forward(self, x):
        return self.head(self.blocks(x))


@pytest.mark.parametrize("model_type", [_Shared, _Plain])
def test_subtree_params_equal_each_modules_deduplicated_count(model_type):
    model = model_type()
    kwargs = {"scale": torch.tensor(2.0)} if model_type is _Shared else {}
    result = trace(model, ((torch.randn(1, 6 if model_type is _Shared else 5),), kwargs))
    for call, module in zip(result.calls, result.modules):
        params = list(module.parameters())
        flags = {p.requires_grad for p in params}
        expected = "" if not flags else "yes" if flags == {True} else "no" if flags == {False} else "partial"
        assert call.subtree_params == sum(p.numel() for p in params), call.name
        assert call.own_params == sum(p.numel() for p in module._parameters.values() if p is not None)
        assert call.trainable == expected, call.name


def test_keyword_arguments_of_the_root_are_recorded():
    model = _Shared()
    result = trace(model, ((torch.randn(2, 6),), {"scale": torch.ones(2, 1)}))
    assert result.calls[0].input_shapes == [(2, 6), {"scale": (2, 1)}]


def test_trace_keeps_no_activation_tensors():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
    result = trace(model, ((torch.randn(3, 4),), {}))
    assert result.outputs[1] == torch.Size([3, 8])
    assert [c.output_bytes for c in result.calls] == [3 * 8 * 4] * 3


def test_paused_gc_restores_the_collector_state():
    assert gc.isenabled()
    with paused_gc():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with paused_gc():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def _summary_garbage(blocks: int) -> list:
    """The objects one summary (rendered, then dropped) leaves for the cyclic collector rather than freeing them."""
    model = nn.Sequential(*[nn.Sequential(nn.Linear(4, 4), nn.ReLU()) for _ in range(blocks)]).eval()
    x = torch.randn(1, 4)
    netscope.summary(model, input_data=x).render()  # warm-up: caches filled on first use are not garbage
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        netscope.summary(model, input_data=x).render()
        gc.collect()
        garbage = list(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    return garbage


def test_a_summary_leaves_no_cycles_that_grow_with_the_model():
    """Rows, calls and walks are freed when the report goes: a reference cycle through them (a self-calling
    closure, a recorder and its replay) kept every one alive until a full collection, which a summary inside the
    frozen heap never makes, so repeated summaries grew the process."""
    _summary_garbage(10)  # what earlier tests left for the collector (and a first summary's caches) gone first
    small, large = _summary_garbage(10), _summary_garbage(200)
    assert len(large) - len(small) < 200 - 10  # less than one object per block added (a cycle held ~9 per block)
    assert not [o for o in large if type(o).__module__.startswith("netscope")]


def test_records_built_with_the_collector_paused_are_let_go_with_the_heap():
    """Inside a summary, records built with the collector paused join the frozen heap; after it, nothing is frozen."""
    from netscope.run.model_state import frozen_heap

    assert gc.get_freeze_count() == 0
    with frozen_heap():
        frozen = gc.get_freeze_count()
        with paused_gc():
            built = [[i] for i in range(1000)]
        assert gc.get_freeze_count() >= frozen + len(built)
    assert gc.get_freeze_count() == 0
    with paused_gc():  # outside a summary's frozen heap nothing is frozen
        built = [[i] for i in range(10)]
    assert gc.get_freeze_count() == 0
