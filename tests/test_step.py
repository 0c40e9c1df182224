"""netscope step against a real CPU training step: flop_counter for multiply-adds, saved_tensors_hooks for
saved activations, the real optimizer's state, torch.chunk for FSDP2 shards; CLI and renderers."""

from __future__ import annotations

import csv
import io
import json

import pytest
import torch
import torch.nn as nn
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode
from torch.utils.weak import WeakIdKeyDictionary

import netscope
from netscope.cli import main
from netscope.analyses.step.sharding import local_numel, shard_rows

import step_gloo_job
from step_gloo_job import Odd


def gpt2_small():
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=1000, n_positions=64,
                                     bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(config)


# name -> (builder, input, attention layers run through CPU flash attention: (count, batch, heads, seq, head_dim))
MODELS = {
    "resnet18": (lambda: torchvision.models.resnet18(weights=None), lambda: torch.randn(2, 3, 64, 64), None),
    "vit_b_16": (lambda: torchvision.models.vit_b_16(weights=None), lambda: torch.randn(1, 3, 224, 224),
                 (12, 1, 12, 197, 64)),
    "gpt2": (gpt2_small, lambda: torch.randint(0, 1000, (2, 32)), None),
}


AUTOCAST = {"bf16-mixed": torch.bfloat16, "fp16-mixed": torch.float16}


def real_step(model, x, precision):
    """A real CPU forward+backward: flop_counter's forward and backward multiply-adds and the bytes of
    the unique storages saved for backward (parameters and buffers excluded)."""
    own = {id(t.untyped_storage()) for t in list(model.parameters()) + list(model.buffers())}
    seen = WeakIdKeyDictionary()
    saved = [0]

    def pack(tensor):
        storage = tensor.untyped_storage()
        if id(storage) not in own and storage not in seen:
            seen[storage] = True
            saved[0] += storage.nbytes()
        return tensor

    model.train()
    with FlopCounterMode(display=False) as counter:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
                torch.autocast("cpu", dtype=AUTOCAST.get(precision, torch.float32), enabled=precision in AUTOCAST):
            out = model(x)
        forward = counter.get_total_flops()
        out = out.logits if hasattr(out, "logits") else out
        out.sum().backward()
        total = counter.get_total_flops()
    return forward // 2, (total - forward) // 2, saved[0]


@pytest.mark.parametrize("name, precision", [(name, precision) for name in sorted(MODELS)
                                             for precision in ("fp32", "bf16-mixed")] + [("resnet18", "fp16-mixed")])
def test_step_matches_a_real_cpu_step(name, precision):
    build, make_input, attention = MODELS[name]
    torch.manual_seed(0)
    model = build()
    x = make_input()
    report = netscope.step(model, input_data=x, precision=precision)
    forward, backward, saved = real_step(model, x, precision)
    # netscope's extra formulas: CPU flash attention, forward (2 bmm) and backward (flop_counter's sdpa
    # backward: recomputed scores + 4 bmm); flop_counter has neither CPU op, so it counts them as 0.
    layers, b, h, s, d = attention or (0, 0, 0, 0, 0)
    assert report.totals.forward_macs == forward + layers * 2 * b * h * s * s * d
    assert report.totals.backward_macs == backward + layers * 5 * b * h * s * s * d
    assert abs(report.totals.activation_bytes - saved) <= 0.01 * saved
    assert sum(report.own_backward_macs) == report.totals.backward_macs == report.backward_macs[0]
    t = report.totals  # at the end of the forward, parameters, optimizer state and saved tensors are all live
    assert t.peak_bytes >= t.param_bytes + t.optimizer_bytes + t.activation_bytes


def test_backward_is_charged_to_the_layer_that_ran_it():
    """Every conv and linear layer's backward computes the weight gradient and, unless its input needs
    none (the stem, fed by the data), the input gradient: each costs exactly the forward's multiply-adds.

    (flop_counter's own per-module split is no oracle here: its backward-hook attribution charges
    other convolutions' backward to ``layer2.0.downsample.0`` in a residual block.)
    """
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None)
    report = netscope.step(model, input_data=torch.randn(2, 3, 64, 64))
    checked = 0
    for call in report.layers:
        if call.is_leaf and call.class_name in ("Conv2d", "Linear"):
            gradients = 1 if call.name == "conv1" else 2
            assert report.backward_macs[call.index] == gradients * call.macs, call.name
            assert report.own_backward_macs[call.index] == report.backward_macs[call.index]
            checked += 1
    assert checked == 21
    by_name = {c.name: c for c in report.layers}
    block = by_name["layer2.0"]
    assert report.backward_macs[block.index] == sum(report.own_backward_macs[c.index] for c in report.layers
                                                    if c.name.startswith("layer2.0."))


def _real_optimizer_step(model, optimizer_name):
    from netscope.analyses.step.options import OPTIMIZERS

    optimizer = OPTIMIZERS[optimizer_name].build([p for p in model.parameters() if p.requires_grad])
    model(torch.randn(4, 10)).sum().backward()
    grads = sum(p.grad.nbytes for p in model.parameters() if p.grad is not None)
    optimizer.step()
    state = sum(v.nbytes for s in optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor))
    return grads, state


@pytest.mark.parametrize("optimizer", ["sgd", "sgd-momentum", "adam", "adamw"])
def test_param_grad_and_optimizer_bytes_equal_a_real_step(optimizer):
    torch.manual_seed(0)
    model = Odd()
    report = netscope.step(model, (4, 10), optimizer=optimizer)
    grads, state = _real_optimizer_step(Odd(), optimizer)
    assert report.totals.param_bytes == sum(p.nbytes for p in model.parameters())
    assert report.totals.grad_bytes == grads
    assert report.totals.optimizer_bytes == state
    assert report.totals.peak_bytes >= (report.totals.param_bytes + report.totals.grad_bytes
                                        + report.totals.optimizer_bytes)


class _WithUnusedLayer(nn.Module):
    """A trainable layer the forward never calls: it gets no gradient, so torch's optimizers make no state for it."""

    def __init__(self, unused: bool = True):
        super().__init__()
        self.used = nn.Linear(8, 4)
        if unused:
            self.unused = nn.Linear(8, 100)

    def forward(self, x):
        return self.used(x)


@pytest.mark.parametrize("optimizer, build", [
    ("sgd-momentum", lambda ps: torch.optim.SGD(ps, lr=0.01, momentum=0.9)),
    ("adam", lambda ps: torch.optim.Adam(ps, lr=1e-3)),
])
def test_a_parameter_without_gradient_has_no_optimizer_state(optimizer, build):
    torch.manual_seed(0)
    model = _WithUnusedLayer()
    report = netscope.step(model, (4, 8), optimizer=optimizer)
    real = _WithUnusedLayer()
    opt = build(list(real.parameters()))
    for _ in range(2):
        real(torch.randn(4, 8)).sum().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    state = sum(v.nbytes for s in opt.state.values() for v in s.values() if isinstance(v, torch.Tensor))
    assert report.totals.optimizer_bytes == state
    # the peak too: the unused layer adds only its parameters (no gradient, no state) to the same step
    without = netscope.step(_WithUnusedLayer(unused=False), (4, 8), optimizer=optimizer)
    unused_bytes = sum(p.nbytes for p in real.unused.parameters())
    assert report.totals.peak_bytes - without.totals.peak_bytes == unused_bytes


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 40), st.integers(1, 9))
def test_shard_rows_follow_torch_chunk(dim0, world):
    chunks = [c.shape[0] for c in torch.chunk(torch.empty(dim0), world)] if dim0 else []
    chunks += [0] * (world - len(chunks))
    assert [shard_rows(dim0, world, r) for r in range(world)] == chunks
    assert all(local_numel((dim0, 3), world, r, padded=True) == 3 * -(-dim0 // world) for r in range(world))


@pytest.mark.parametrize("world", [2, 4])
def test_per_rank_bytes_equal_a_real_gloo_job(world, tmp_path):
    import socket

    import torch.multiprocessing as mp

    pytest.importorskip("torch.distributed.fsdp", reason="FSDP2 (fully_shard) needs torch>=2.6")
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.spawn(step_gloo_job.run_rank, args=(world, port, str(tmp_path)), nprocs=world, join=True)
    real = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(world)]
    keys = ("param_bytes", "grad_bytes", "optimizer_bytes")
    for layout in ("ddp", "fsdp"):
        report = netscope.step(Odd(), (4, 10), optimizer="adamw", **{layout: world})
        assert len(report.totals.ranks) == world
        for rank, figures in enumerate(real):
            ours = report.totals.ranks[rank]
            assert {k: getattr(ours, k) for k in keys} == figures[layout], (layout, rank)
    # the layouts differ where they should: DDP replicates, FSDP's last rank holds fewer rows
    assert real[0]["ddp"]["param_bytes"] == sum(p.nbytes for p in Odd().parameters())
    assert real[-1]["fsdp"]["param_bytes"] < real[0]["fsdp"]["param_bytes"]


def test_cli_step_table_json_and_html(tmp_path, capsys):
    html = tmp_path / "step.html"
    code = main(["step", "resnet18", "-a", "num_classes=10", "--input", "2,3,32,32", "--fsdp", "4",
                 "--depth", "1", "--html", str(html), "-q"])
    out = capsys.readouterr().out
    assert code == 0
    assert "Backward mult-adds" in out and "per rank (fsdp, 4 ranks)" in out
    page = html.read_text()
    for rank in range(4):
        assert f"rank {rank} params" in page and f"rank {rank} activations" in page
    assert main(["step", "resnet18", "-a", "num_classes=10", "--input", "2,3,32,32", "--format", "json",
                 "--optimizer", "sgd"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["totals"]["optimizer_bytes"] == 0  # plain SGD keeps no state
    assert data["layers"][0]["backward_macs"] == data["totals"]["backward_macs"]


@pytest.mark.parametrize("argv, needle", [
    (["step", "resnet18", "--fsdp", "0"], "at least 1"),
    (["step", "resnet18", "--fsdp", "2", "--ddp", "2"], "not allowed with"),
    (["step", "resnet18", "--optimizer", "lion"], "invalid choice"),
])
def test_cli_step_bad_input_is_one_paragraph(argv, needle, capsys):
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own refusals
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2
    assert needle in err and "Traceback" not in err


def test_api_refuses_bad_options():
    with pytest.raises(netscope.NetscopeError, match="unknown optimizer"):
        netscope.step(Odd(), (4, 10), optimizer="lion")
    with pytest.raises(netscope.NetscopeError, match="not both"):
        netscope.step(Odd(), (4, 10), fsdp=2, ddp=2)
    frozen = Odd().requires_grad_(False)
    with pytest.raises(netscope.NetscopeError, match="no trainable parameter"):
        netscope.step(frozen, (4, 10))


def test_the_users_gradients_optimizer_and_rng_are_untouched():
    torch.manual_seed(0)
    model = Odd()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    model(torch.randn(4, 10)).sum().backward()
    optimizer.step()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    state = {(id(p), k): v.clone() for p, s in optimizer.state.items() for k, v in s.items()}
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    rng = torch.get_rng_state()
    netscope.step(model, (4, 10), optimizer="adamw")
    assert {n: p.grad for n, p in model.named_parameters() if p.grad is not None}.keys() == grads.keys()
    assert all(torch.equal(p.grad, grads[n]) for n, p in model.named_parameters() if p.grad is not None)
    assert {(id(p), k) for p, s in optimizer.state.items() for k in s} == state.keys()
    assert all(torch.equal(v, state[id(p), k]) for p, s in optimizer.state.items() for k, v in s.items())
    assert all(torch.equal(p, params[n]) for n, p in model.named_parameters())
    assert torch.equal(torch.get_rng_state(), rng)


def test_dataframe_has_step_columns():
    pytest.importorskip("pandas")
    report = netscope.step(Odd(), (4, 10))
    frame = report.to_dataframe()
    assert list(frame["backward_macs"]) == report.backward_macs
    assert frame["saved_bytes"].iloc[0] == report.totals.activation_bytes
    assert report.to_dict()["totals"]["ranks"][0]["rank"] == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device: the measured peak is a CUDA figure")
def test_measured_cuda_peak_beside_the_estimate():
    model = torchvision.models.resnet18(weights=None).cuda()
    report = netscope.step(model, (8, 3, 64, 64), measure=True)
    assert report.totals.measured_peak_bytes > report.totals.param_bytes


def test_measure_without_cuda_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(netscope.NetscopeError, match="no CUDA device"):
        netscope.step(Odd(), (4, 10), measure=True)


def test_activation_checkpointing_matches_a_real_checkpointed_step():
    """Backward recomputes each block's forward: flop_counter on a real step whose blocks run under
    torch.utils.checkpoint agrees, and so does the formula 'no-checkpoint backward + block forwards'."""
    from torch.utils.checkpoint import checkpoint

    torch.manual_seed(0)
    model = gpt2_small()
    x = torch.randint(0, 1000, (2, 32))
    plain = netscope.step(model, input_data=x)
    checkpointed = netscope.step(model, input_data=x, activation_checkpointing=True)
    blocks = [c for c in plain.layers if c.name.startswith("transformer.h.") and c.name.count(".") == 2]
    assert len(blocks) == 2
    assert checkpointed.totals.backward_macs == plain.totals.backward_macs + sum(c.macs for c in blocks)
    assert checkpointed.totals.activation_bytes < plain.totals.activation_bytes
    for block in model.transformer.h:  # the real thing, on the user's side of the fence
        block.forward = (lambda f: lambda *a, **k: checkpoint(f, *a, use_reentrant=False, **k))(block.forward)
    _, backward, _ = real_step(model, x, "fp32")
    assert checkpointed.totals.backward_macs == backward


def test_activation_checkpointing_needs_blocks(capsys):
    assert main(["step", "resnet18", "--input", "1,3,32,32", "--activation-checkpointing"]) == 2
    err = capsys.readouterr().err
    assert "no repeated blocks" in err and "Traceback" not in err


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("groups", [1, 8, 64])
def test_convolution_backward_costs_two_forwards_for_any_groups(groups, transposed):
    """Input gradient + weight gradient = 2 forward convolutions, grouped or not (flop_counter agrees
    only for groups=1: it ignores groups in the backward)."""
    layer = (nn.ConvTranspose2d if transposed else nn.Conv2d)(64, 64, 3, padding=1, groups=groups)
    model = nn.Sequential(nn.Conv2d(3, 64, 1), layer)  # a trainable stem: the layer's input needs a gradient
    report = netscope.step(model, (2, 3, 16, 16))
    call = next(c for c in report.layers if c.name == "1")
    assert call.macs == 2 * 64 * 16 * 16 * (64 // groups) * 3 * 3  # batch x out (or in) positions x fan-in
    assert report.backward_macs[call.index] == 2 * call.macs
    if groups == 1:
        x = torch.randn(2, 64, 16, 16, requires_grad=True)
        with FlopCounterMode(display=False) as counter:
            out = layer(x)
            forward = counter.get_total_flops()
            out.sum().backward()
        assert report.backward_macs[call.index] == (counter.get_total_flops() - forward) // 2


class ReadsAValue(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        y = self.fc(x)
        return y * 2 if y.sum().item() > 0 else y


def test_a_forward_that_reads_values_is_named_with_the_reason(monkeypatch):
    """Too large for a real step (limit patched to 0 bytes): refused, naming why fake tensors could not run it."""
    monkeypatch.setattr("netscope.analyses.step.api.REAL_STEP_LIMIT_BYTES", 0)
    model = ReadsAValue()
    with pytest.raises(netscope.NetscopeError) as info:
        netscope.step(model, (2, 4))
    assert info.value.exit_code == 3
    assert "fake tensors" in str(info.value) and ".item()" in str(info.value)
    assert "real step on cpu was not tried" in str(info.value)


def test_a_forward_that_reads_values_runs_a_real_step_when_it_fits():
    """Small enough: the step runs on real copies, and its figures equal a real CPU step's (flop_counter,
    saved_tensors_hooks) on the same values; the user's model is untouched."""
    torch.manual_seed(0)
    model = ReadsAValue()
    x = torch.randn(2, 4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = netscope.step(model, input_data=x)
    assert report.totals.tensors == "real" and any("reads tensor values" in n for n in report.forward.run.notes)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    forward, backward, saved = real_step(model, x, "fp32")
    assert (report.totals.forward_macs, report.totals.backward_macs) == (forward, backward) == (2 * 4 * 4, 2 * 4 * 4)
    assert report.totals.activation_bytes == saved
    assert main(["step", f"{__file__}:ReadsAValue", "--input", "2,4", "-q"]) == 0


def test_repr_is_one_headline_of_the_totals():
    from netscope.render.headline import short_number

    report = netscope.step(nn.Sequential(nn.Linear(8, 4)), (2, 8), optimizer="sgd", fsdp=2)
    text = repr(report)
    t = report.totals
    assert "\n" not in text and text.startswith("Sequential · step sgd fp32 · per rank of 2 (fsdp)")
    assert f"{short_number(t.forward_macs)} fwd + {short_number(t.backward_macs)} bwd MACs" in text
    assert text.endswith(f"peak {short_number(t.peak_bytes, 'B')}") and t.forward_macs == 2 * 8 * 4


class ZeroCostLayers(nn.Module):
    """Every layer family the summary counts as zero by convention (norms, pooling, interpolation,
    padding, slicing, embedding, non-pointwise activations) between two convolutions."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.layers = nn.Sequential(
            nn.BatchNorm2d(8), nn.Hardswish(), nn.MaxPool2d(2), nn.GroupNorm(2, 8), nn.Hardsigmoid(),
            nn.Upsample(scale_factor=2, mode="bilinear"), nn.AvgPool2d(2), nn.ReflectionPad2d(1),
            nn.LeakyReLU(0.1), nn.ELU(), nn.Softplus(), nn.AdaptiveAvgPool2d(4), nn.Hardtanh())
        self.norm = nn.LayerNorm(4)
        self.conv2 = nn.Conv2d(8, 4, 1)

    def forward(self, x, ids):
        y = self.norm(self.layers(self.conv1(x)))[:, :, 1:3, 0]  # slice and select
        return self.conv2(y.unsqueeze(-1)).flatten(1) + self.embed(ids).sum()


def test_backward_of_zero_cost_operators_is_zero_by_convention_so_a_plain_step_is_not_partial():
    """Their backward kernels follow the forward's convention (as flop_counter does): a step of a model
    made of them has an exact total, equal to a real CPU step's, and no operator named as uncounted."""
    torch.manual_seed(0)
    model, x, ids = ZeroCostLayers(), torch.randn(2, 3, 16, 16), torch.randint(0, 10, (2, 5))
    report = netscope.step(model, input_data=(x, ids))
    assert not report.forward.partial and report.totals.backward_uncounted == ()
    assert "PARTIAL" not in str(report)
    model.train()
    with FlopCounterMode(display=False) as counter:
        out = model(x, ids)
        forward = counter.get_total_flops()
        out.sum().backward()
    assert (report.totals.forward_macs, report.totals.backward_macs) == (
        forward // 2, (counter.get_total_flops() - forward) // 2)
    assert report.totals.backward_macs > 0


def _uncounted_in_backward(namespace: str, name: str):
    """An autograd Function that is a copy forward and whose backward runs ``namespace::name``, a custom operator
    (grad * 2) without a multiply-add formula; with the library holding the operator (keep it alive)."""
    lib = torch.library.Library(namespace, "FRAGMENT")
    lib.define(f"{name}(Tensor x) -> Tensor")
    lib.impl(name, lambda x: x * 2, "CompositeExplicitAutograd")
    lib.impl(name, lambda x: torch.empty_like(x), "Meta")
    op = getattr(getattr(torch.ops, namespace), name)

    class UncountedBackward(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, grad):
            return op(grad)

    return UncountedBackward, lib


def test_an_operator_uncounted_in_the_backward_only_does_not_make_the_forward_partial():
    """The forward's operator table names only operators its forward ran, even though the step's
    backward shares the operator registry (an uncounted backward operator is the backward's note)."""
    Scale, lib = _uncounted_in_backward("netscope_step_test", "grad_scale")

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return Scale.apply(self.fc(x))

    report = netscope.step(Model(), input_size=(2, 4))
    assert not report.forward.partial and report.forward.uncounted_ops() == []
    assert report.totals.backward_uncounted == ("netscope_step_test.grad_scale",)
    text = str(report)
    assert "PARTIAL" not in text.split("Backward")[0]
    assert "Backward mult-adds: " in text and "no multiply-add formula for netscope_step_test.grad_scale" in text
    assert json.loads(report.to_json())["totals"]["backward_uncounted"] == ["netscope_step_test.grad_scale"]
    page = report.to_html()
    assert f'data-total="backward_macs" data-value="{report.totals.backward_macs}">&gt;=' in page
    assert 'data-total="forward_macs" data-value="{}">{:,}'.format(report.totals.forward_macs,
                                                                    report.totals.forward_macs) in page
    assert "netscope_step_test.grad_scale (backward)" in page
    from netscope.render.headline import short_number

    assert f"+ >={short_number(report.totals.backward_macs)} bwd MACs" in repr(report)


def test_a_torchscript_module_is_refused_with_the_reason_not_a_traceback(tmp_path, capsys):
    """Scripted and traced modules: an optimizer cannot take their fake copy's parameters, and their
    compiled code runs no module hooks. One clear error (exit 2), and the model is left as it was."""
    eager = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    for scripted in (torch.jit.script(eager), torch.jit.trace(eager, torch.randn(1, 3, 8, 8))):
        before = {k: v.clone() for k, v in scripted.state_dict().items()}
        with pytest.raises(netscope.NetscopeError, match="TorchScript module"):
            netscope.step(scripted, input_size=(2, 3, 8, 8))
        assert all(torch.equal(v, before[k]) for k, v in scripted.state_dict().items())
    source = tmp_path / "scripted.py"
    source.write_text("import torch, torch.nn as nn\n"
                      "def build():\n"
                      "    return torch.jit.script(nn.Sequential(nn.Linear(4, 3), nn.ReLU()))\n")
    assert main(["step", f"{source}:build", "--input", "2,4"]) == 2
    err = capsys.readouterr()[1]
    assert "TorchScript module" in err and "Traceback" not in err


def test_the_default_step_table_fits_120_columns_as_the_summary_does(capsys):
    """Default columns are left out (type) until the table fits, with a note; the totals wrap; columns the
    user chose are never left out."""
    report = netscope.step(torchvision.models.resnet50(weights=None), input_size=(2, 3, 64, 64))
    text = report.render()
    assert max(map(len, text.splitlines())) <= 120
    assert "(left out to fit 120 columns: type; choose with --columns)" in text
    assert "Bottleneck" not in text and "Backward mult-adds" in text.splitlines()[0]
    chosen = report.render(columns="layer,type,output,params,macs,bwd_macs,saved")
    assert "Bottleneck" in chosen and "left out" not in chosen
    assert "Bottleneck" in report.render(width=200) and "left out" not in report.render(width=200)


def test_a_packed_sequence_input_is_refused_with_the_reason():
    """torch's MemTracker cannot rebuild a PackedSequence input: one clear error naming it, not a forward
    error blaming the model; the summary still takes the same input."""
    from torch.nn.utils.rnn import pack_padded_sequence

    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(4, 6)

        def forward(self, packed):
            return self.lstm(packed)[1][0]

    packed = pack_padded_sequence(torch.randn(5, 2, 4), torch.tensor([5, 3]))
    with pytest.raises(netscope.NetscopeError, match="PackedSequence") as caught:
        netscope.step(Tagger(), packed)
    from netscope.errors import ForwardError

    assert not isinstance(caught.value, ForwardError)  # exit 2: netscope's limit, not the model's failure
    assert netscope.summary(Tagger(), packed, device="cpu").totals.total_macs == 4 * 6 * (4 + 6) * (5 + 3)


def test_rows_whose_backward_ran_an_uncounted_operator_show_a_lower_bound():
    Twice, lib = _uncounted_in_backward("netscope_step_rows", "grad_twice")

    class Scaled(nn.Module):
        def forward(self, x):  # the multiply, an operator of this call, tags the Function's node with it
            return Twice.apply(x) * 1.0

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.scaled = Scaled()
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            return self.head(self.scaled(self.fc(x)))

    report = netscope.step(Model(), input_size=(2, 4))
    rows = {row["layer"].strip(): row for row in report.rows(["layer", "bwd_macs", "own_bwd_macs"])}
    assert rows["scaled"]["bwd_macs"] == ">=0" and rows["scaled"]["own_bwd_macs"] == ">=0"
    assert rows["(root)"]["bwd_macs"].startswith(">=") and not rows["(root)"]["own_bwd_macs"].startswith(">=")
    # the layers whose backward is fully counted keep exact figures: grad weight 2*4*4, grad input 2*4*4 for fc's
    # successor head (4 -> 2: weight 2*4*2, input 2*4*2); fc is the first layer: no grad input
    assert rows["head"]["bwd_macs"] == f"{2 * 4 * 2 + 2 * 4 * 2}" and rows["fc"]["bwd_macs"] == f"{2 * 4 * 4}"
    layers = {layer["name"]: layer for layer in report.to_dict()["layers"]}
    assert layers["scaled"]["backward_macs_partial"] and layers[""]["backward_macs_partial"]
    assert not layers["fc"]["backward_macs_partial"] and report.to_dict()["backward_partial"]
    # the DataFrame and the CSV say so too, for the same calls (the records' partial set is the oracle)
    frame = report.to_dataframe()
    partial = report.partial_backward()
    assert frame["backward_macs_partial"].tolist() == [c.index in partial for c in report.layers]
    assert frame["backward_macs_partial"].tolist() == [layers[c.name]["backward_macs_partial"] for c in report.layers]
    cells = list(csv.DictReader(io.StringIO(report.render("csv", columns="name,bwd_macs"))))
    assert [row["bwd_macs"].startswith(">=") for row in cells] == [c.index in partial for c in report.layers]
    assert [int(row["bwd_macs"].removeprefix(">=")) for row in cells] == frame["backward_macs"].tolist()
    own = list(csv.DictReader(io.StringIO(report.render("csv", columns="name,own_bwd_macs"))))
    assert [row["own_bwd_macs"].startswith(">=") for row in own] == frame["own_backward_macs_partial"].tolist()
    assert [layers[c.name]["own_backward_macs_partial"] for c in report.layers] == [c.name == "scaled" for c in report.layers]


def _nested_linears():
    return nn.Sequential(nn.Sequential(nn.Linear(6, 5), nn.ReLU()), nn.Linear(5, 3))


def test_step_json_keeps_the_chosen_columns_and_depth_like_the_summary():
    torch.manual_seed(0)
    report = netscope.step(_nested_linears(), (4, 6), optimizer="sgd")
    data = json.loads(report.render("json", columns="layer,params,bwd_macs", depth=1))
    assert data["schema"] == "netscope.step" and data["columns"] == ["layer", "params", "bwd_macs"]
    # depth 1: the root and its two children; the inner Linear and ReLU (depth 2) are left out
    assert [row["layer"] for row in data["layers"]] == ["(root)", "0", "1"]
    assert all(set(row) == {"layer", "params", "bwd_macs"} for row in data["layers"])
    # backward of y = x W^T + b on a batch of 4: the first layer's input needs no gradient, so only
    # dW (4*6*5 multiply-adds); the second needs dW and dx (2 * 4*5*3)
    assert [row["bwd_macs"] for row in data["layers"]] == [4 * 6 * 5 + 2 * 4 * 5 * 3, 4 * 6 * 5, 2 * 4 * 5 * 3]
    assert [row["params"] for row in data["layers"]] == [6 * 5 + 5 + 5 * 3 + 3, 6 * 5 + 5, 5 * 3 + 3]
    full = json.loads(report.render("json"))  # no columns: every data column plus the step figures
    assert len(full["layers"]) == 5 and full["layers"][0]["backward_macs"] == 4 * 6 * 5 + 2 * 4 * 5 * 3


@pytest.mark.parametrize("depth", ["2", -1, 1.5, True])
def test_a_bad_depth_is_one_clear_error_in_every_format(depth):
    report = netscope.step(_nested_linears(), (4, 6), optimizer="sgd")
    for rendered in (report, report.forward):
        for fmt in ("table", "markdown", "csv", "json"):
            with pytest.raises(netscope.NetscopeError, match="depth"):
                rendered.render(fmt, depth=depth)
        with pytest.raises(netscope.NetscopeError, match="depth"):
            rendered.to_dict(depth=depth)


def test_ddp_buckets_hold_a_slot_for_every_trainable_parameter_used_or_not():
    # DDP's reducer sizes its buckets from the parameters that require grad when it wraps the model: the
    # unused Linear(8, 100) has a slot too; a frozen layer has none
    frozen = _nested_linears()
    frozen[0][0].requires_grad_(False)
    for model, size in ((_WithUnusedLayer(), (4, 8)), (frozen, (4, 6))):
        single = netscope.step(model, size, optimizer="sgd").totals.peak_bytes
        ddp = netscope.step(model, size, optimizer="sgd", ddp=2).totals.peak_bytes
        assert ddp - single == sum(p.nbytes for p in model.parameters() if p.requires_grad)


def test_step_takes_flags_and_cache_objects_in_input_data_and_leaves_them_as_given():
    """Non-tensor inputs (a bool flag, a string, an object holding tensors) were handed to torch's MemTracker,
    which refused them with a TypeError; the step runs on copies, so the user's cache object is not appended to."""

    class Cache:
        def __init__(self):
            self.keys = [torch.zeros(2, 4)]

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(4, 3)

        def forward(self, x, cache, flag=False, mode="a"):
            cache.keys.append(x)
            return self.proj(x) * (2 if flag and mode == "a" else 1)

    cache = Cache()
    first = cache.keys[0]
    report = netscope.step(Model(), input_data={"x": torch.randn(2, 4), "cache": cache, "flag": True, "mode": "a"})
    assert report.totals.forward_macs == 2 * 4 * 3  # batch x in x out, the Linear's formula
    assert len(cache.keys) == 1 and cache.keys[0] is first


def test_step_refuses_a_scripted_submodule_and_names_a_failing_backward(tmp_path):
    """Two tracebacks found by trying: a TorchScript submodule inside an eager model ('can't optimize a non-leaf
    Tensor' from the optimizer), and a custom operator without a gradient formula (torch's RuntimeError from
    loss.backward()). The first is refused by name (exit 2), the second is the model's failure (exit 3)."""
    from netscope.errors import ForwardError, UsageError

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(4, 4)

        def forward(self, x):
            return self.proj(x)

    with pytest.raises(UsageError, match="the submodule 0, is a TorchScript module"):
        netscope.step(nn.Sequential(torch.jit.script(Block()), nn.Linear(4, 2)), (2, 4))

    @torch.library.custom_op("netscope_test::doubled", mutates_args=())
    def doubled(x: torch.Tensor) -> torch.Tensor:
        return x * 2

    @doubled.register_fake
    def _(x):
        return torch.empty_like(x)

    class Custom(Block):
        def forward(self, x):
            return doubled(self.proj(x))

    x = torch.randn(2, 4, requires_grad=True)
    with pytest.raises(RuntimeError, match="no autograd formula"):
        Custom()(x).sum().backward()  # the oracle: torch's own backward fails the same way
    with pytest.raises(ForwardError, match="backward pass failed"):
        netscope.step(Custom(), (2, 4))


def _real_step_figures(model, x, optimizer="adamw", prepare=lambda model: None, set_to_none=True):
    """One real CPU step of a copy of ``model`` (loss: the sum of every float output that needs a gradient, the
    step's stated loss): parameter, ``.grad`` and optimizer-state bytes, and the distinct non-parameter storages
    ``saved_tensors_hooks`` sees, as {(dtype, bytes): count}; then ``MemTracker``'s peak of a second real step
    (on real tensors; netscope runs it on fake ones)."""
    import collections
    import copy

    from torch.distributed._tools.mem_tracker import MemTracker

    from netscope.analyses.step.options import OPTIMIZERS

    model = copy.deepcopy(model).train()
    prepare(model)  # on the copy: what the real loop does to its model (checkpointed blocks)
    params = list({id(p): p for p in model.parameters()}.values())
    own = {id(t.untyped_storage()) for t in params + list(model.buffers())}
    opt = OPTIMIZERS[optimizer].build([p for p in params if p.requires_grad])
    seen, saved = WeakIdKeyDictionary(), collections.Counter()

    def pack(tensor):
        storage = tensor.untyped_storage()
        if id(storage) not in own and storage not in seen:
            seen[storage] = True
            saved[(tensor.dtype, storage.nbytes())] += 1
        return tensor

    def loss(out):
        return sum(t.sum() for t in torch.utils._pytree.tree_leaves(out)
                   if isinstance(t, torch.Tensor) and t.is_floating_point() and t.requires_grad)

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    loss(out).backward()
    del out
    grads = sum(p.grad.untyped_storage().nbytes() for p in params if p.grad is not None)
    opt.step()
    opt.zero_grad(set_to_none=set_to_none)
    state = sum(v.untyped_storage().nbytes() for s in opt.state.values() for v in s.values() if isinstance(v, torch.Tensor))
    tracker = MemTracker()

    class NoHook:
        def remove(self):
            return None

    for p in params:  # torch refuses a gradient hook on a frozen parameter
        if not p.requires_grad:
            tracker._param_to_grad_hook_handles[p] = (NoHook(), NoHook())
    tracker.track_external(model, opt, x)
    with tracker:  # the output stays referenced through backward, as in a training loop (``out = model(x)``)
        out = model(x)
        loss(out).backward()
        del out
        opt.step()
        opt.zero_grad(set_to_none=set_to_none)
    peak = tracker.get_tracker_snapshot("peak")[torch.device("cpu")]["Total"]
    return sum(p.nbytes for p in params), grads, state, saved, peak


class _Checkpointed(nn.Module):
    """The user's own ``torch.utils.checkpoint`` in forward, and a dict output holding a tuple and a constant."""

    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(16, 64), nn.GELU(), nn.Linear(64, 16)) for _ in range(3))
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        from torch.utils.checkpoint import checkpoint

        for block in self.blocks:
            x = checkpoint(block, x, use_reentrant=False)
        return {"logits": self.head(x), "aux": (x.mean(), torch.tensor(1.0))}


def _frozen_resnet():
    model = torchvision.models.resnet18(weights=None)
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("fc."))
    return model


def _lora_gpt2():
    peft = pytest.importorskip("peft")
    return peft.get_peft_model(gpt2_small(), peft.LoraConfig(r=4, target_modules=["c_attn"], fan_in_fan_out=True))


class _Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.attention = nn.MultiheadAttention(32, 4, batch_first=True)

    def forward(self, x):
        return self.attention(x, x, x)  # (output, averaged weights): both are summed


# set-ups nobody designed the step for: every figure equals the real step's (peak: MemTracker's on real tensors)
UNDESIGNED = {
    "gpt2-tied": (gpt2_small, lambda: torch.randint(0, 1000, (2, 16)), "adamw"),
    "frozen-backbone": (_frozen_resnet, lambda: torch.randn(2, 3, 32, 32), "adamw"),
    "lora": (_lora_gpt2, lambda: torch.randint(0, 1000, (2, 16)), "adam"),
    "user-checkpoint-dict": (_Checkpointed, lambda: torch.randn(8, 16), "adamw"),
    "bn-inplace-dropout": (lambda: nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
                                                 nn.Dropout(0.1), nn.Flatten(), nn.Linear(8 * 14 * 14, 10)),
                           lambda: torch.randn(4, 3, 16, 16), "sgd-momentum"),
    "embedding": (lambda: nn.Sequential(nn.Embedding(1000, 32), nn.Flatten(), nn.Linear(32 * 16, 4)),
                  lambda: torch.randint(0, 1000, (4, 16)), "adamw"),
    "multihead-attention": (_Attention, lambda: torch.randn(2, 10, 32), "sgd"),
    "gru": (lambda: nn.GRU(16, 32, batch_first=True, bidirectional=True), lambda: torch.randn(3, 7, 16), "adamw"),
}


@pytest.mark.parametrize("name", sorted(UNDESIGNED))
def test_undesigned_set_ups_equal_a_real_step(name):
    build, make_input, optimizer = UNDESIGNED[name]
    torch.manual_seed(0)
    model, x = build(), make_input()
    report = netscope.step(model, input_data=x, optimizer=optimizer)
    params, grads, state, saved, peak = _real_step_figures(model, x, optimizer)
    t = report.totals
    assert (t.param_bytes, t.grad_bytes, t.optimizer_bytes) == (params, grads, state)
    assert t.activation_bytes == sum(nbytes * count for (_, nbytes), count in saved.items())
    assert t.peak_bytes == peak
    assert not any("lower bound" in note for note in report.run.notes) and not t.unsized_workspaces


def test_an_lstm_names_the_workspace_fake_tensors_cannot_size():
    """CPU nn.LSTM runs oneDNN's mkldnn_rnn_layer, whose real kernel saves a uint8 workspace for backward that
    torch's fake kernel makes empty: netscope's saved bytes are the real step's without those, and a note says so."""
    torch.manual_seed(0)
    model, x = nn.LSTM(16, 32, num_layers=2, batch_first=True), torch.randn(3, 7, 16)
    report = netscope.step(model, input_data=x)
    _, _, _, saved, peak = _real_step_figures(model, x)
    workspace = sum(nbytes * count for (dtype, nbytes), count in saved.items() if dtype == torch.uint8)
    everything = sum(nbytes * count for (_, nbytes), count in saved.items())
    assert report.totals.activation_bytes == everything - workspace
    named = [note for note in report.run.notes if "oneDNN's LSTM workspace" in note]
    assert bool(named) == (workspace > 0)  # a torch without oneDNN runs the LSTM's decomposition: exact, no note
    assert bool(report.totals.unsized_workspaces) == (workspace > 0)
    if workspace:
        assert "lower bounds" in named[0]
        assert report.totals.peak_bytes < peak
        assert "peak >=" in repr(report) and "saved activations >=" in report.totals_text()
        assert json.loads(report.render("json"))["totals"]["unsized_workspaces"] == ["aten.mkldnn_rnn_layer"]


@pytest.mark.parametrize("name", ["resnet18", "gpt2"])
def test_saved_bytes_per_layer_equal_what_each_modules_forward_saved(name):
    """Per layer: a real forward with a module stack kept by hooks charges every storage saved for backward
    (first save, parameters and buffers excluded) to the innermost module running; summed per module name (ResNet's
    ``relu`` runs twice per block), netscope's own saved bytes are the same, module by module."""
    import collections
    import copy

    build, make_input, _ = MODELS[name]
    torch.manual_seed(0)
    model, x = build(), make_input()
    report = netscope.step(model, input_data=x)
    real = copy.deepcopy(model).train()
    names = {module: n for n, module in real.named_modules()}
    stack, handles = [], []
    for module in real.modules():
        handles.append(module.register_forward_pre_hook(lambda m, a: stack.append(names[m]) and None))
        handles.append(module.register_forward_hook(lambda m, a, o: stack.pop() and None))
    own = {id(t.untyped_storage()) for t in list(real.parameters()) + list(real.buffers())}
    seen, expected = WeakIdKeyDictionary(), collections.Counter()

    def pack(tensor):
        storage = tensor.untyped_storage()
        if id(storage) not in own and storage not in seen:
            seen[storage] = True
            expected[stack[-1]] += storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        real(x)
    got = collections.Counter()
    for call in report.layers:
        got[call.name] += report.own_saved_bytes[call.index]
    assert +got == +expected
    assert len(+expected) > 10


def test_the_loss_of_a_several_output_model_is_named():
    """The step backpropagates the sum of every float output that needs a gradient; with several, a note names
    them (a constant, an integer output is not among them); one output needs no note."""
    torch.manual_seed(0)
    report = netscope.step(_Checkpointed(), input_data=torch.randn(8, 16))
    named = [note for note in report.run.notes if "sum of the outputs" in note]
    assert len(named) == 1 and "['logits'], ['aux'][0]:" in named[0]
    assert not any("sum of the outputs" in note for note in netscope.step(nn.Linear(4, 2), (3, 4)).run.notes)


def test_activation_checkpointing_peak_equals_a_real_checkpointed_steps():
    """The planned checkpointed step's saved bytes and peak equal a real step whose blocks run under
    non-reentrant torch.utils.checkpoint (MemTracker on real tensors): seq 128, where activations dominate."""
    from torch.utils.checkpoint import checkpoint

    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_layer=3, n_embd=64, n_head=4, vocab_size=500, n_positions=256)
    torch.manual_seed(0)
    model, x = transformers.GPT2LMHeadModel(config), torch.randint(0, 500, (4, 128))

    def checkpointed(real):
        for block in real.transformer.h:
            block.forward = (lambda f: lambda *a, **k: checkpoint(f, *a, use_reentrant=False, **k))(block.forward)

    plain = netscope.step(model, input_data=x).totals
    report = netscope.step(model, input_data=x, activation_checkpointing=True).totals
    _, _, _, saved, peak = _real_step_figures(model, x, prepare=checkpointed)
    assert report.activation_bytes == sum(nbytes * count for (_, nbytes), count in saved.items())
    assert report.peak_bytes == peak < plain.peak_bytes


def test_an_embedding_with_sparse_gradients_is_refused_by_name_not_blamed_on_the_model(capsys):
    # nn.Embedding(sparse=True) makes a sparse gradient, whose storage torch's MemTracker cannot read: the step
    # failed with 'the model's backward pass failed ... no backward that torch can run' (exit 3), yet torch's own
    # step of the very model runs (the oracle below). Now the step refuses, naming the layer (exit 2)
    from netscope.errors import UsageError

    model = nn.Sequential(nn.Embedding(100, 8, sparse=True), nn.Flatten(), nn.Linear(8 * 6, 4))
    x = torch.randint(0, 100, (4, 6))
    model(x).sum().backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert model[0].weight.grad.layout == torch.sparse_coo
    with pytest.raises(UsageError, match=r"model\.0 \(Embedding with sparse=True: sparse gradients\)"):
        netscope.step(model, input_data=x, optimizer="sgd")
    assert main(["step", "torch.nn:EmbeddingBag", "-a", "num_embeddings=50", "-a", "embedding_dim=4",
                 "-a", "sparse=True", "--input", "3,5:int64", "--optimizer", "sgd"]) == 2
    assert "EmbeddingBag with sparse=True" in capsys.readouterr().err
    model[0].sparse = False  # dense gradients: planned
    planned = netscope.step(model, input_data=x, optimizer="sgd").totals
    assert planned.grad_bytes == sum(p.nbytes for p in model.parameters())


class _ActivationHeavy(nn.Module):
    """Three convolutions at full resolution (activations outweigh the weights), a linear head, and a layer the
    forward never calls (its gradient stays None in a real loop, zeroed in place or not)."""

    def __init__(self):
        super().__init__()
        self.convs = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1),
                                   nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.Flatten())
        self.head = nn.Linear(32 * 16 * 16, 64)
        self.unused = nn.Linear(64, 1000)

    def forward(self, x):
        return self.head(self.convs(x))


@pytest.mark.parametrize("name, optimizer", [("activation-heavy", "sgd"), ("activation-heavy", "adamw"),
                                             ("gpt2-tied", "adamw")])
def test_a_loop_that_zeroes_gradients_in_place_keeps_them_through_the_forward(name, optimizer):
    # zero_grad(set_to_none=False) keeps every gradient allocated through the next forward: the real step's peak
    # (MemTracker on real tensors, gradients left from the step before) was over the planned one, which assumed
    # them freed. set_to_none=False plans that loop; figures equal the real step's
    torch.manual_seed(0)
    model, x = (_ActivationHeavy(), torch.randn(64, 3, 16, 16)) if name != "gpt2-tied" else (
        gpt2_small(), torch.randint(0, 1000, (2, 16)))
    kept = netscope.step(model, input_data=x, optimizer=optimizer, set_to_none=False)
    freed = netscope.step(model, input_data=x, optimizer=optimizer).totals
    params, grads, state, saved, peak = _real_step_figures(model, x, optimizer, set_to_none=False)
    t = kept.totals
    assert (t.param_bytes, t.grad_bytes, t.optimizer_bytes) == (params, grads, state)
    assert t.activation_bytes == sum(nbytes * count for (_, nbytes), count in saved.items())
    assert t.peak_bytes == peak
    assert any("set_to_none=False" in note for note in kept.run.notes)
    if name == "activation-heavy" and optimizer == "sgd":
        assert freed.peak_bytes == _real_step_figures(model, x, optimizer)[4] < peak


def test_cli_keep_grads_plans_the_in_place_zeroing_loop(capsys):
    argv = ["step", "torch.nn:Linear", "-a", "in_features=64", "-a", "out_features=64", "--input", "8,64",
            "--optimizer", "sgd", "-f", "json"]
    assert main(argv) == 0
    freed = json.loads(capsys.readouterr().out)["totals"]
    assert main(argv + ["--keep-grads"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "set_to_none=False" in " ".join(out["run"]["notes"])
    assert out["totals"]["peak_bytes"] >= freed["peak_bytes"]
    with pytest.raises(netscope.errors.UsageError, match="set_to_none must be True or False"):
        netscope.step(nn.Linear(2, 2), (1, 2), set_to_none="no")


class GroupedExperts(nn.Module):
    """Two experts' weights applied with torch._grouped_mm (as transformers' MoE layers do), rows 0-1 to the first,
    2-5 to the second. Its fake kernel takes bf16/fp16 only; the CPU kernel runs float32."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(2, 8, 4))

    def forward(self, x):
        return torch._grouped_mm(x, self.w, offs=torch.tensor([2, 6], dtype=torch.int32, device=x.device)).relu()


def test_a_forward_fake_tensors_cannot_run_takes_a_real_step(capfd):
    """Before: 'the model's forward pass failed ... Check the input shape(s)' (exit 3), after torch's fake-tensor
    logger printed the kernel's traceback on stderr. Now the real step runs, a note says why, and stderr stays quiet.
    Oracle: the grouped product written out (torch's flop_counter has no formula for it): forward 6 rows x 8 x 4,
    backward the weight's gradient, 8 x 6 rows x 4 (the input needs none)."""
    torch.manual_seed(0)
    model = GroupedExperts()
    x = torch.randn(6, 8)
    report = netscope.step(model, input_data=x)
    assert report.totals.tensors == "real"
    assert any("fake tensors of a planned step cannot run this forward" in n for n in report.forward.run.notes)
    assert (report.totals.forward_macs, report.totals.backward_macs) == (6 * 8 * 4, 8 * 6 * 4)
    assert model.w.grad is None
    err = capfd.readouterr().err
    assert "Traceback" not in err and "fake_tensor.py" not in err


def test_step_page_shows_the_runs_notes():
    """The text report prints the step's notes (here: gradients kept allocated through the forward); the page too."""
    import html
    import re

    report = netscope.step(nn.Linear(4, 4), input_size=(2, 4), set_to_none=False)
    assert report.run.notes  # precondition
    items = re.findall(r'<ul class="ns-run-notes">(.*?)</ul>', report.to_html(), re.S)
    assert len(items) == 1
    assert [html.unescape(t) for t in re.findall(r"<li>(.*?)</li>", items[0], re.S)] == [
        f"Note: {note}" for note in report.run.notes]


def test_step_page_says_which_tensors_the_step_ran_on():
    """A forward that reads values (a boolean mask) takes the real step; the page says so, as the text does."""
    import re

    class Masked(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            y = self.fc(x)
            return y[y > 0].sum()

    report = netscope.step(Masked(), input_size=(2, 4))
    assert report.totals.tensors == "real"  # precondition: the fake step could not run this forward
    assert "real tensors on" in str(report)
    run = re.search(r'<p class="ns-run">(.*?)</p>', report.to_html()).group(1)
    assert "on real tensors" in run and "fake" not in run


def test_step_page_marks_saved_activations_and_peak_as_lower_bounds_like_the_text():
    """An unsized workspace (CPU nn.LSTM's oneDNN one): the text prints 'saved activations >=' and 'peak >=';
    the page's totals carry the same '>='."""
    import re

    torch.manual_seed(0)
    report = netscope.step(nn.LSTM(16, 32, batch_first=True), input_data=torch.randn(3, 7, 16))
    if not report.totals.unsized_workspaces:
        pytest.skip("this torch runs nn.LSTM without oneDNN's workspace: every figure is exact")
    shown = dict(re.findall(r'<dd data-total="(\w+)" data-value="\d+">(.*?)</dd>', report.to_html()))
    assert shown["activation_bytes"].startswith("&gt;=") and shown["peak_bytes"].startswith("&gt;=")
    assert not shown["param_bytes"].startswith("&gt;=")


class WrongHead(nn.Module):
    """A conv whose output never fits the Linear after it: the forward fails in ``fc``."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.fc = nn.Linear(10, 2)

    def forward(self, x):
        return self.fc(self.conv(x))


def test_step_html_when_the_step_cannot_be_planned_says_no_page_was_written(tmp_path, capsys):
    """--html asked for a page the failed step cannot give: one stderr line says none was written (found by fresh26:
    summary said so, step said nothing), then the error paragraph; exit 3, no file."""
    page = tmp_path / "step.html"
    assert main(["step", f"{__file__}:WrongHead", "--input", "1,3,16,16", "--html", str(page)]) == 3
    err = capsys.readouterr().err
    assert f"no HTML page was written to {page}" in err and "layer fc (Linear)" in err
    assert "Traceback" not in err and not page.exists()


def test_step_output_file_when_the_step_cannot_be_planned_says_none_was_written(tmp_path, capsys):
    out = tmp_path / "step.txt"
    assert main(["step", f"{__file__}:WrongHead", "--input", "1,3,16,16", "-o", str(out)]) == 3
    err = capsys.readouterr().err
    assert f"no output was written to {out}" in err and "layer fc (Linear)" in err and not out.exists()


class _Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(16, 32), nn.Linear(32, 16)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


class _FunctionalCall(nn.Module):
    """A hypernetwork-style forward: the block runs through ``torch.func.functional_call`` with weights the
    forward computes (not leaves: torch refuses MemTracker's post-accumulate-grad hook on them)."""

    def __init__(self):
        super().__init__()
        self.block, self.scale = _Mlp(), nn.Parameter(torch.full((1,), 2.0))

    def forward(self, x):
        weights = {name: w * self.scale for name, w in self.block.named_parameters()}
        return torch.func.functional_call(self.block, weights, (x,))


class _SameInline(_FunctionalCall):
    """The same arithmetic as :class:`_FunctionalCall`, written out: its step is the reference."""

    def forward(self, x):
        w = {name: w * self.scale for name, w in self.block.named_parameters()}
        h = torch.relu(nn.functional.linear(x, w["a.weight"], w["a.bias"]))
        return nn.functional.linear(h, w["b.weight"], w["b.bias"])


class _Vmapped(nn.Module):
    """``torch.func.vmap`` over a submodule, and an ensemble of stacked copies (``stack_module_state``): the
    module calls inside receive batched tensors, whose storage MemTracker could not read."""

    def __init__(self):
        super().__init__()
        self.block, self.members = _Mlp(), nn.ModuleList(_Mlp() for _ in range(3))

    def forward(self, x):
        y = torch.func.vmap(self.block)(x)
        params, buffers = torch.func.stack_module_state(list(self.members))
        run = lambda p, b, v: torch.func.functional_call(self.members[0], (p, b), (v,))  # noqa: E731
        return y + torch.func.vmap(run, in_dims=(0, 0, None))(params, buffers, y[0]).sum(0)


@pytest.mark.parametrize("build, shape", [(_FunctionalCall, (4, 16)), (_Vmapped, (3, 4, 16))])
def test_a_forward_through_torch_func_steps_like_a_real_cpu_step(build, shape):
    torch.manual_seed(0)
    model, x = build(), torch.randn(shape)
    report = netscope.step(model, input_data=x)  # raised (exit 3, "check the input shapes") from MemTracker's hooks
    forward, backward, saved = real_step(model, x, "fp32")
    assert (report.totals.forward_macs, report.totals.backward_macs) == (forward, backward)
    assert abs(report.totals.activation_bytes - saved) <= 0.01 * saved
    assert report.totals.param_bytes == sum(p.nbytes for p in model.parameters())


@pytest.mark.parametrize("options", [{}, {"fsdp": 2}], ids=["single", "fsdp2"])
def test_weights_a_functional_call_computes_count_as_activations_not_parameters(options):
    """The same arithmetic written out (no functional_call) is the reference for every memory figure (per rank
    too: a tensor taken for a parameter would be sharded)."""
    torch.manual_seed(0)
    x = torch.randn(4, 16)
    assert netscope.step(_FunctionalCall(), input_data=x, **options).totals == \
        netscope.step(_SameInline(), input_data=x, **options).totals


class _OwnMatmul(torch.autograd.Function):
    """A custom operator: its autograd node is made by ``apply``, which no torch function mode sees."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return x @ w

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        return grad @ w.t(), x.t() @ grad


class _OwnMatmulLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(16, 32))

    def forward(self, x):
        return _OwnMatmul.apply(x, self.weight)


def test_a_custom_autograd_functions_backward_is_charged_to_the_module_that_ran_it():
    """Its backward (input and weight gradients, 2 x 4*16*32) was charged to the next layer, whose op first
    consumed the output. Oracle: the two matmuls the Function's backward runs, as formulas."""
    model = nn.Sequential(nn.Linear(16, 16), _OwnMatmulLayer(), nn.Linear(32, 8))
    report = netscope.step(model, input_size=(4, 16))
    by_name = {c.name: c.index for c in report.layers}
    assert report.own_backward_macs[by_name["1"]] == 4 * 32 * 16 + 16 * 4 * 32
    assert report.own_backward_macs[by_name["2"]] == 2 * 4 * 32 * 8  # its own input and weight gradients
    assert report.own_backward_macs[by_name["0"]] == 4 * 16 * 16  # the stem: its weight gradient only


class _ReentrantCheckpoint(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem, self.head = nn.Linear(16, 16), nn.Linear(16, 4)
        self.block = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 16))

    def forward(self, x):
        from torch.utils.checkpoint import checkpoint

        return self.head(checkpoint(self.block, self.stem(x), use_reentrant=True))


def test_a_reentrant_checkpoint_is_charged_to_the_call_that_ran_it():
    """Reentrant checkpointing runs the block under no_grad and makes one node in the caller's code, whose
    backward recomputes the block and backpropagates through it: all the caller's (here the model's own code),
    not the head's, whose operator first read the block's output. Oracle: formulas, and flop_counter's total."""
    torch.manual_seed(0)
    model, x = _ReentrantCheckpoint(), torch.randn(4, 16)
    report = netscope.step(model, input_data=x)
    _, backward, _ = real_step(model, x, "fp32")
    by_name = {c.name: c.index for c in report.layers}
    block_forward = 4 * 16 * 32 + 4 * 32 * 16
    assert report.own_backward_macs[by_name["head"]] == 2 * 4 * 16 * 4
    assert report.own_backward_macs[by_name["stem"]] == 4 * 16 * 16  # weight gradient only: x needs none
    assert report.own_backward_macs[by_name[""]] == block_forward + 2 * block_forward  # recomputed, then backward
    assert sum(report.own_backward_macs) == report.totals.backward_macs == backward
    assert any(f"include {block_forward:,} of recomputation" in note for note in report.run.notes)


class _TiedFrozenUnused(nn.Module):
    """Tied input and output embeddings, a frozen layer in the middle, and a trainable layer the forward never
    calls (no gradient: Adagrad keeps the state it made when built, every other optimizer makes none)."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50, 16)
        self.a = nn.Linear(16, 64)
        self.frozen = nn.Linear(64, 64).requires_grad_(False)
        self.proj = nn.Linear(64, 16)
        self.head = nn.Linear(16, 50, bias=False)
        self.head.weight = self.embed.weight
        self.unused = nn.Linear(3, 3)

    def forward(self, x):
        return self.head(self.proj(torch.relu(self.frozen(torch.relu(self.a(self.embed(x)))))))


def _all_optimizers():
    from netscope.analyses.step.options import OPTIMIZERS

    return sorted(OPTIMIZERS)


@pytest.mark.parametrize("optimizer", _all_optimizers())
@pytest.mark.parametrize("set_to_none", [True, False])
def test_every_optimizer_plans_the_bytes_of_a_real_step(optimizer, set_to_none):
    """Adagrad, RMSprop and its variants, Adamax, NAdam, RAdam, Adadelta, Rprop and AMSGrad beside SGD and Adam:
    parameters, .grad, the real optimizer's state (its own scalars included), saved activations and MemTracker's
    peak of a real CPU step, on tied weights, a frozen middle layer and an unused layer."""
    torch.manual_seed(0)
    model, x = _TiedFrozenUnused(), torch.randint(0, 50, (4, 5))
    report = netscope.step(model, input_data=x, optimizer=optimizer, set_to_none=set_to_none)
    params, grads, state, saved, peak = _real_step_figures(model, x, optimizer, set_to_none=set_to_none)
    t = report.totals
    assert (t.param_bytes, t.grad_bytes, t.optimizer_bytes, t.peak_bytes) == (params, grads, state, peak)
    assert t.activation_bytes == sum(nbytes * count for (_, nbytes), count in saved.items())


def test_adagrad_keeps_the_state_it_made_for_an_unused_parameter():
    """Adagrad makes its ``sum`` for every parameter when it is built, not at the first step with a gradient:
    the unused layer's state is live in a real step (its bytes written as a formula), and in the plan."""
    torch.manual_seed(0)
    x = torch.randint(0, 50, (4, 5))
    report = netscope.step(_TiedFrozenUnused(), input_data=x, optimizer="adagrad")
    model = _TiedFrozenUnused()
    optimizer = torch.optim.Adagrad([p for p in model.parameters() if p.requires_grad], lr=0.01)
    model(x).sum().backward()
    optimizer.step()
    assert model.unused.weight.grad is None and model.unused.weight in optimizer.state
    state = sum(v.nbytes for s in optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor))
    used = 50 * 16 + 16 * 64 + 64 + 64 * 16 + 16  # embed (= head), a, proj
    unused = 3 * 3 + 3
    assert state == 4 * (used + unused) + 4 * 7  # float32 sums, and a float32 step per tensor (7: head is embed)
    assert report.totals.optimizer_bytes == state


@pytest.mark.parametrize("optimizer", _all_optimizers())
def test_state_tensors_count_the_real_optimizers_parameter_shaped_state(optimizer):
    """The registry's per-parameter state count (what the real-step fallback budgets for) is what the real
    optimizer keeps after one step."""
    from netscope.analyses.step.options import OPTIMIZERS

    model = nn.Linear(6, 5)
    entry = OPTIMIZERS[optimizer]
    real = entry.build(list(model.parameters()))
    model(torch.randn(3, 6)).sum().backward()
    real.step()
    for param in model.parameters():
        shaped = [v for v in real.state[param].values() if isinstance(v, torch.Tensor) and v.shape == param.shape]
        assert len(shaped) == entry.state_tensors, (optimizer, list(real.state[param]))


@pytest.mark.parametrize("optimizer, needle", [
    ("lbfgs", "takes a closure"), (torch.optim.LBFGS, "takes a closure"), ("SparseAdam", "sparse gradients only"),
    ("asgd", "reads tensor values"), (torch.optim.Adagrad, "pass its name, 'adagrad'"),
])
def test_an_optimizer_a_planned_step_cannot_run_is_refused_with_the_reason(optimizer, needle):
    with pytest.raises(netscope.NetscopeError, match=needle):
        netscope.step(Odd(), (4, 10), optimizer=optimizer)


def test_cli_takes_every_optimizer_of_the_registry(capsys):
    assert main(["step", "resnet18", "-a", "num_classes=10", "--input", "2,3,32,32", "--format", "json",
                 "--optimizer", "rmsprop-centered", "-q"]) == 0
    data = json.loads(capsys.readouterr().out)
    params = sum(p.numel() for p in torchvision.models.resnet18(weights=None, num_classes=10).parameters())
    tensors = len(list(torchvision.models.resnet18(weights=None, num_classes=10).parameters()))
    assert data["totals"]["optimizer_bytes"] == 4 * 2 * params + 4 * tensors  # square_avg, grad_avg; a step each


@pytest.mark.parametrize("optimizer, runs", [("sgd", True), ("adam", True), ("adam-amsgrad", False)])
def test_the_real_step_fallback_budgets_the_optimizers_own_state(monkeypatch, optimizer, runs):
    """A value-reading forward runs a real step only when weights, gradients and the optimizer's parameter-shaped
    state fit: with the limit at 4.5 times the weights, SGD (2x) and Adam (4x) fit, AMSGrad (5x: a third state
    tensor) does not (it used to be budgeted as 4x for every optimizer)."""
    weights = (4 * 4 + 4) * 4  # ReadsAValue's Linear(4, 4), float32
    monkeypatch.setattr("netscope.analyses.step.api.REAL_STEP_LIMIT_BYTES", weights * 9 // 2)
    if runs:
        assert netscope.step(ReadsAValue(), (2, 4), optimizer=optimizer).totals.tensors == "real"
    else:
        with pytest.raises(netscope.NetscopeError, match="real step on cpu was not tried"):
            netscope.step(ReadsAValue(), (2, 4), optimizer=optimizer)
