"""Models that carry PyTorch machinery netscope was not designed around: a root class overriding ``__call__``,
``torch.export.unflatten`` modules. Oracles: torch's FlopCounterMode, the real forward, the model's own
parameters and state_dict."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

import netscope
from netscope.errors import UsageError


def _flop_counter_macs(model: nn.Module, *args) -> int:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(*args)
    return counter.get_total_flops() // 2  # torch counts a multiply-add as two FLOPs


class CallOverride(nn.Module):
    """Overrides ``__call__``: torch's module call path (and its hooks) never sees the root."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)

    def __call__(self, x):
        return self.head(self.fc(x)).sum(-1) @ torch.ones(2, 5)  # an operator of the root's own, with multiply-adds


class CallOverrideThenSuper(CallOverride):
    """Overrides ``__call__`` and then goes through ``nn.Module.__call__`` (a logging wrapper)."""

    def __call__(self, x):
        return nn.Module.__call__(self, x)

    def forward(self, x):
        return self.head(self.fc(x)).sum(-1) @ torch.ones(2, 5)


@pytest.mark.parametrize("cls", [CallOverride, CallOverrideThenSuper])
def test_a_root_overriding_call_is_row_zero_with_the_whole_models_multiply_adds(cls):
    torch.manual_seed(0)
    model = cls()
    x = torch.randn(2, 8)
    expected_output = model(x)
    report = netscope.summary(model, input_data=x)
    root = report.layers[0]
    assert (root.name, root.depth, root.parent, root.call_number) == ("", 0, None, 1)
    assert root.output_shapes == tuple(expected_output.shape)
    assert report.totals.total_macs == root.macs == _flop_counter_macs(model, x)
    assert [(c.name, c.depth, c.parent) for c in report.layers[1:]] == [("fc", 1, 0), ("head", 1, 0)]
    assert report.totals.total_params == sum(p.numel() for p in model.parameters())


class ChildCallsForward(nn.Module):
    """A block whose ``__call__`` runs ``forward`` itself: torch's call path never sees it."""

    def __init__(self):
        super().__init__()
        self.inner = nn.Linear(8, 8)

    def __call__(self, x):
        return self.forward(x)

    def forward(self, x):
        return self.inner(x) @ torch.ones(8, 4)  # an operator of the block's own


class ChildCallsSuper(ChildCallsForward):
    """A block whose ``__call__`` logs, then goes through ``nn.Module.__call__``."""

    def __call__(self, x):
        return super(ChildCallsForward, self).__call__(x)


class HasOverridingChild(nn.Module):
    def __init__(self, block_class):
        super().__init__()
        self.a = nn.Linear(8, 8)
        self.block = nn.Sequential(block_class())
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.block(self.a(x)))


def _own_and_subtree_macs_add_up(report) -> None:
    for call in report.layers:
        children = [c for c in report.layers if c.parent == call.index]
        assert call.macs == call.own_macs + sum(c.macs for c in children), call.name


@pytest.mark.parametrize("block_class", [ChildCallsForward, ChildCallsSuper])
def test_a_child_overriding_call_gets_its_own_row_with_its_own_operators(block_class):
    torch.manual_seed(0)
    model = HasOverridingChild(block_class)
    x = torch.randn(2, 8)
    calls_before = block_class.__dict__["__call__"]
    report = netscope.summary(model, input_data=x)
    assert block_class.__dict__["__call__"] is calls_before  # the class is left as it was
    rows = [(c.name, c.class_name, c.depth, report.layers[c.parent].name if c.parent is not None else None)
            for c in report.layers]
    assert rows == [("", "HasOverridingChild", 0, None), ("a", "Linear", 1, ""), ("block", "Sequential", 1, ""),
                    ("block.0", block_class.__name__, 2, "block"), ("block.0.inner", "Linear", 3, "block.0"),
                    ("head", "Linear", 1, "")]
    block = report.layers[3]
    assert block.output_shapes == (2, 4)
    assert block.own_macs == 2 * 8 * 4  # its own matmul: (2x8) @ (8x4)
    assert block.macs == block.own_macs + 2 * 8 * 8
    assert report.layers[0].own_macs == 0
    assert report.totals.total_macs == report.layers[0].macs == _flop_counter_macs(model, x)
    _own_and_subtree_macs_add_up(report)


def test_an_instance_outside_the_model_of_an_overriding_class_passes_through():
    """A module of the same class that the model does not hold (called from a hook) is no row of the pass."""
    torch.manual_seed(0)
    stranger = ChildCallsForward()
    model = HasOverridingChild(ChildCallsForward)
    seen = []
    model.a.register_forward_hook(lambda module, args, output: seen.append(stranger(output).shape))
    x = torch.randn(2, 8)
    report = netscope.summary(model, input_data=x)
    assert [c.name for c in report.layers] == ["", "a", "block", "block.0", "block.0.inner", "head"]
    assert seen == [torch.Size([2, 4])]
    assert report.totals.total_macs == _flop_counter_macs(model, x)


def test_a_child_overriding_call_that_raises_is_named_and_its_class_restored():
    class Failing(ChildCallsForward):
        def forward(self, x):
            raise ValueError("block refused")

    model = HasOverridingChild(Failing)
    with pytest.raises(netscope.errors.ForwardError) as caught:
        netscope.summary(model, input_data=torch.randn(2, 8))
    assert caught.value.layer == "block.0"
    assert "__call__" in ChildCallsForward.__dict__ and "__call__" not in Failing.__dict__
    assert type(model.block[0]).__call__ is ChildCallsForward.__dict__["__call__"]


def test_step_gives_a_child_overriding_call_its_own_row():
    torch.manual_seed(0)
    model = HasOverridingChild(ChildCallsForward)
    x = torch.randn(2, 8)
    step = netscope.step(model, input_data=x)
    names = [c.name for c in step.layers]
    assert "block.0" in names and step.layers[names.index("block.0.inner")].parent == names.index("block.0")
    assert step.layers[0].macs == _flop_counter_macs(model, x)


def test_step_of_a_root_overriding_call_counts_the_whole_forward():
    model = CallOverride()
    x = torch.randn(2, 8)
    step = netscope.step(model, input_data=x)
    assert step.layers[0].name == "" and step.layers[0].macs == _flop_counter_macs(model, x)


class ChildOverridesCallImpl(ChildCallsForward):
    """A block whose class defines ``_call_impl`` (what ``nn.Module.__call__`` calls): the process-wide one, where
    torch's hooks run, is never reached for it."""

    __call__ = nn.Module.__call__

    def _call_impl(self, *args, **kwargs):
        return self.forward(*args, **kwargs)


def _hooked_names(model: nn.Module, x) -> list:
    """The modules whose forward hooks torch fires on a real forward (the oracle for what torch's call path sees)."""
    fired = []
    handles = [m.register_forward_hook(lambda *_, name=name: fired.append(name)) for name, m in model.named_modules()]
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()
    return fired


def test_a_child_overriding_call_impl_gets_its_own_row_though_torch_hooks_miss_it():
    torch.manual_seed(0)
    model = HasOverridingChild(ChildOverridesCallImpl)
    x = torch.randn(2, 8)
    assert "block.0" not in _hooked_names(model, x)  # torch's own hooks do not see the block
    defined = ChildOverridesCallImpl.__dict__["_call_impl"]
    report = netscope.summary(model, input_data=x)
    assert ChildOverridesCallImpl.__dict__["_call_impl"] is defined  # the class is left as it was
    assert [(c.name, c.depth) for c in report.layers] == [("", 0), ("a", 1), ("block", 1), ("block.0", 2),
                                                          ("block.0.inner", 3), ("head", 1)]
    assert report.layers[3].own_macs == 2 * 8 * 4  # its own matmul: (2x8) @ (8x4)
    assert report.totals.total_macs == _flop_counter_macs(model, x)
    assert not any("have no row though modules inside them ran" in n for n in report.run.notes)
    _own_and_subtree_macs_add_up(report)


class CallsChildForward(nn.Module):
    """Calls a block's ``forward`` directly, runs its other blocks from a ModuleList (a container with no
    forward: never called, by design) and iterates an nn.Sequential by hand (its forward only chains them)."""

    def __init__(self):
        super().__init__()
        self.block = ChildCallsForward()
        self.blocks = nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 4)])
        self.stages = nn.Sequential(nn.Linear(4, 4), nn.ReLU())

    def forward(self, x):
        x = self.block.forward(x)
        for block in self.blocks:
            x = block(x)
        for stage in self.stages:
            x = stage(x)
        return x


def test_a_block_whose_forward_is_called_directly_is_named_not_silently_folded_into_its_caller():
    torch.manual_seed(0)
    model = CallsChildForward()
    x = torch.randn(2, 8)
    hooked = _hooked_names(model, x)
    assert "block" not in hooked and "blocks" not in hooked and "stages" not in hooked  # torch's view
    assert "block.inner" in hooked
    report = netscope.summary(model, input_data=x)
    assert [c.name for c in report.layers] == ["", "block.inner", "blocks.0", "blocks.1", "stages.0", "stages.1"]
    [note] = [n for n in report.run.notes if "have no row though modules inside them ran" in n]
    assert note.startswith("block (ChildCallsForward) have no row")
    assert "blocks" not in note and "stages" not in note  # containers that only hold or chain their children
    assert report.layers[0].own_macs == 2 * 8 * 4  # the block's own matmul lands in its caller's row, as said
    assert report.totals.total_macs == _flop_counter_macs(model, x)
    assert any("have no row though modules inside them ran" in line for line in str(report).splitlines())


def _unflattened():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(self.conv(x).mean((2, 3)))

    x = torch.randn(1, 3, 8, 8)
    return torch.export.unflatten(torch.export.export(Net().eval(), (x,))), x


def test_unflattened_export_modules_graph_module_is_not_reported_as_unregistered():
    model, x = _unflattened()
    registered = {id(p) for p in model.parameters()}
    # torch keeps, on each InterpreterModule, a plain-attribute GraphModule over the very same tensors
    twins = [m.__dict__["graph_module"] for m in model.modules() if "graph_module" in m.__dict__]
    assert twins and all(id(p) in registered for twin in twins for p in twin.parameters())
    names = netscope.audit_names(model)
    assert names.state_dict_keys() == list(model.state_dict())
    assert [f.code for f in names.findings if f.code.startswith("unregistered")] == []
    report = netscope.summary(model, input_data=x)
    assert report.totals.total_macs == _flop_counter_macs(model, x)
    assert report.totals.total_params == sum(p.numel() for p in model.parameters())


def _training_macs(model: nn.Module, x) -> int:
    """Forward and backward multiply-adds of one real step (sum of the output), by torch's FlopCounterMode."""
    counter = FlopCounterMode(display=False)
    with counter:
        model(x).sum().backward()
    return counter.get_total_flops() // 2


@pytest.mark.parametrize("had_grad", [False, True])
def test_step_leaves_a_module_outside_the_model_that_a_hook_calls_as_it_was(had_grad):
    torch.manual_seed(0)
    probe = nn.Linear(4, 4)  # the user's own module, not registered in the model: a hook calls it
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    model[2].register_forward_hook(lambda module, args, output: probe(output))
    x = torch.randn(4, 16)
    if had_grad:
        probe.weight.grad = torch.randn(4, 4)
    grad_before = probe.weight.grad
    grad_values = None if grad_before is None else grad_before.clone()
    weight_before = probe.weight.detach().clone()

    step = netscope.step(model, input_data=x)

    assert probe.weight.grad is grad_before and probe.bias.grad is None
    if had_grad:
        assert torch.equal(probe.weight.grad, grad_values)
    assert torch.equal(probe.weight, weight_before)
    # the arithmetic is still the real step's, the probe's own backward included
    twin_probe = nn.Linear(4, 4)
    twin = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    twin[2].register_forward_hook(lambda module, args, output: twin_probe(output))
    assert step.totals.forward_macs + step.totals.backward_macs == _training_macs(twin, x)


class Checkpointed(nn.Module):
    """A stem, then two blocks run under the model's own ``torch.utils.checkpoint`` (or plainly)."""

    def __init__(self, use_reentrant):
        super().__init__()
        self.stem = nn.Linear(16, 16)
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 16)) for _ in range(2))
        self.use_reentrant = use_reentrant  # None: no checkpointing

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks:
            if self.use_reentrant is None:
                x = block(x)
            else:
                x = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=self.use_reentrant)
        return x


@pytest.mark.parametrize("use_reentrant", [False, True])
def test_step_names_the_recomputation_of_the_models_own_checkpointing(use_reentrant):
    torch.manual_seed(0)
    x = torch.randn(4, 16)
    model = Checkpointed(use_reentrant)
    recomputed = _training_macs(model, x) - _training_macs(Checkpointed(None), x)  # what checkpointing adds
    assert recomputed > 0
    step = netscope.step(model, input_data=x)
    assert step.totals.forward_macs + step.totals.backward_macs == _training_macs(Checkpointed(use_reentrant), x)
    notes = [n for n in step.run.notes if "recomputation" in n]
    assert len(notes) == 1 and f"include {recomputed:,} of recomputation" in notes[0]
    assert not [n for n in netscope.step(Checkpointed(None), input_data=x).run.notes if "recomputation" in n]


def test_unflattened_export_module_runs_on_meta_and_in_step_like_on_cpu():
    model, x = _unflattened()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    meta = netscope.summary(model, input_data=x, device="meta")
    assert (meta.totals.total_params, meta.totals.total_macs) == (sum(p.numel() for p in model.parameters()),
                                                                  _flop_counter_macs(model, x))
    step = netscope.step(model, input_data=x)
    assert step.totals.forward_macs + step.totals.backward_macs == _training_macs(model, x)
    model.zero_grad(set_to_none=True)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def _dynamic_quantized():
    float_model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 5))
    return torch.ao.quantization.quantize_dynamic(float_model, {nn.Linear}, dtype=torch.qint8)


def _runs(model, shape) -> bool:
    try:
        with torch.no_grad():
            model(torch.randn(shape))
    except RuntimeError:
        return False
    return True


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_solver_runs_an_operator_without_a_fake_kernel_on_the_cpu_not_as_a_failure():
    model = _dynamic_quantized()  # quantized::linear_dynamic has no fake (meta) kernel
    result = netscope.solve_input_size(model, (1, 3, 8, 8), max_size=12)
    square = result.scan("s")
    assert square.valid == tuple(s for s in range(1, 13) if _runs(model, (1, 3, s, s)))  # brute force on the CPU
    assert not result.interaction.startswith("the axes interact")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_step_refuses_a_quantized_model_in_one_paragraph(capsys, tmp_path):
    from test_bad_input import run_cli

    with pytest.raises(UsageError, match=r"quantized module\(s\) 3 \(Linear\)"):
        netscope.step(_dynamic_quantized(), input_size=(1, 3, 8, 8))
    source = tmp_path / "qnet.py"
    source.write_text("import torch, torch.nn as nn\n"
                      "def build():\n"
                      "    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 5))\n"
                      "    return torch.ao.quantization.quantize_dynamic(m, {nn.Linear}, dtype=torch.qint8)\n")
    code, out, err = run_cli(["step", f"{source}:build", "--input", "1,3,8,8", "-q"], capsys)
    assert code == 2 and out == "" and "Traceback" not in err and "quantized module(s)" in err


def test_a_forward_hook_replacing_a_layers_output_does_not_fail_its_formula_check():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 8), nn.Linear(16, 2))
    conv_hook = model[0].register_forward_hook(lambda m, args, out: nn.functional.pad(out, (1, 1, 1, 1)))
    model[1].register_forward_hook(lambda m, args, out: out[:, : 4 * 6 * 6])  # the real forward still works
    model[2].register_forward_hook(lambda m, args, out: torch.cat([out, out], -1))  # 8 -> 16 features
    tables = [list(m._forward_hooks.items()) for m in model]
    x = torch.randn(2, 3, 8, 8)
    report = netscope.check(model, input_data=x)
    by_layer = {c.layer: c for c in report}
    assert [c.status for c in report] == ["pass"] * len(report) and {"0", "2"} <= set(by_layer)
    # judged on what each layer's forward returned (the hooks' replacements are what the rows show)
    assert by_layer["0"].observed_shape == tuple(model[0].forward(x).shape) == (2, 4, 6, 6)
    assert by_layer["2"].observed_shape == (2, 8)
    summary = netscope.summary(model, input_data=x)
    assert [c.output_shapes for c in summary.layers[1:]] == [(2, 4, 8, 8), (2, 144), (2, 16), (2, 2)]
    assert [list(m._forward_hooks.items()) for m in model] == tables and conv_hook.id in model[0]._forward_hooks


class _QuantReady(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = torch.ao.quantization.QuantStub()
        self.conv = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(8 * 6 * 6, 10)
        self.dequant = torch.ao.quantization.DeQuantStub()

    def forward(self, x):
        return self.dequant(self.fc(torch.flatten(self.relu(self.bn(self.conv(self.quant(x)))), 1)))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("qat", [False, True])
def test_observers_and_fake_quantization_are_counted_as_zero_not_left_uncounted(qat):
    quantization = torch.ao.quantization
    model = _QuantReady().train(qat)
    if qat:
        model.qconfig = quantization.get_default_qat_qconfig("fbgemm")
        prepared = quantization.prepare_qat(model)
    else:
        model.qconfig = quantization.get_default_qconfig("fbgemm")
        prepared = quantization.prepare(model)
    x = torch.randn(2, 3, 8, 8)
    report = netscope.summary(prepared, input_data=x, mode="train" if qat else "eval")
    assert not report.partial
    assert report.totals.total_macs == _flop_counter_macs(prepared, x) == 2 * 8 * 6 * 6 * 3 * 3 * 3 + 2 * 288 * 10
    if qat:
        step = netscope.step(prepared, input_data=x)
        assert step.totals.backward_uncounted == ()
        assert step.totals.forward_macs + step.totals.backward_macs == _training_macs(prepared, x)


class ForcesFromEnergy(nn.Module):
    """Differentiates itself in forward (forces = -dE/dx in molecular models, residuals of a physics-informed net)."""

    def __init__(self):
        super().__init__()
        self.energy = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 1))

    def forward(self, x):
        x = x if x.requires_grad else x.requires_grad_(True)
        with torch.enable_grad():
            e = self.energy(x)
            (grad,) = torch.autograd.grad(e.sum(), x, create_graph=True)
        return torch.cat([e, -grad], -1)


def test_a_forward_that_differentiates_itself_is_counted_by_summary_and_refused_clearly_by_step(capsys, tmp_path):
    from test_bad_input import run_cli

    batch = 4
    report = netscope.summary(ForcesFromEnergy(), input_data=torch.randn(batch, 2))
    forward = batch * 2 * 16 + batch * 16 * 1
    input_gradient = batch * 1 * 16 + batch * 16 * 2  # through the second Linear, then the first (no weight grads)
    assert report.totals.total_macs == forward + input_gradient and not report.partial
    with pytest.raises(UsageError, match="torch.autograd.grad on a leaf tensor"):
        netscope.step(ForcesFromEnergy(), input_data=torch.randn(batch, 2))
    source = tmp_path / "forces.py"
    source.write_text("import sys\nsys.path.insert(0, %r)\nfrom test_torch_machinery import ForcesFromEnergy\n"
                      % str(__import__("pathlib").Path(__file__).parent))
    code, out, err = run_cli(["step", f"{source}:ForcesFromEnergy", "--input", "4,2", "-q"], capsys)
    assert code == 2 and out == "" and "Traceback" not in err and "MemTracker" in err


class ForcesThroughTorchFunc(nn.Module):
    """The same forces, per sample, through ``torch.func.vmap(torch.func.grad(...))``."""

    def __init__(self):
        super().__init__()
        self.energy = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 1))

    def forward(self, x):
        return torch.func.vmap(torch.func.grad(lambda p: self.energy(p).sum()))(x)


def test_a_forward_through_torch_func_grad_is_counted_by_summary_and_refused_clearly_by_step(capsys, tmp_path):
    """Step ended in exit 3 with 'check the input shape(s)'. Oracle: torch.func itself refuses saved-tensor hooks."""
    from test_bad_input import run_cli

    batch = 4
    with pytest.raises(RuntimeError, match="saved tensor hooks"), \
            torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t):
        ForcesThroughTorchFunc()(torch.randn(batch, 2))
    report = netscope.summary(ForcesThroughTorchFunc(), input_data=torch.randn(batch, 2))
    forward, input_gradient = batch * (2 * 16 + 16 * 1), batch * (1 * 16 + 16 * 2)
    assert report.totals.total_macs == forward + input_gradient and not report.partial
    with pytest.raises(UsageError, match="torch.func.grad, vjp, jacrev or hessian"):
        netscope.step(ForcesThroughTorchFunc(), input_data=torch.randn(batch, 2))
    source = tmp_path / "forces.py"
    source.write_text("import sys\nsys.path.insert(0, %r)\nfrom test_torch_machinery import ForcesThroughTorchFunc\n"
                      % str(__import__("pathlib").Path(__file__).parent))
    code, out, err = run_cli(["step", f"{source}:ForcesThroughTorchFunc", "--input", "4,2", "-q"], capsys)
    assert code == 2 and out == "" and "Traceback" not in err and "netscope summary counts" in err


class CompiledForward(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.head = nn.Linear(8, 2)

    @torch.compile
    def forward(self, x):
        return self.head(torch.relu(self.fc(x)))


def test_functions_the_model_compiled_run_eagerly_during_the_pass():
    from torch._dynamo.utils import counters

    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 8), CompiledForward())
    model[0].forward = torch.compile(model[0].forward)  # a compiled bound method
    x = torch.randn(2, 8)
    eager = _flop_counter_macs(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 8),
                                             nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))), x)
    frames = dict(counters["frames"])
    report = netscope.summary(model, input_data=x)
    step = netscope.step(model, input_data=x)
    assert dict(counters["frames"]) == frames  # dynamo traced nothing
    assert report.totals.total_macs == step.totals.forward_macs == eager
    assert [c.name for c in report.layers] == ["", "0", "1", "2", "3", "3.fc", "3.head"]
