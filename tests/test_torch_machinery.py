"""Models that carry PyTorch machinery netscope was not designed around: a root class overriding ``__call__``,
``torch.export.unflatten`` modules. Oracles: torch's FlopCounterMode, the real forward, the model's own
parameters and state_dict."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

import netscope


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


def test_step_of_a_root_overriding_call_counts_the_whole_forward():
    model = CallOverride()
    x = torch.randn(2, 8)
    step = netscope.step(model, input_data=x)
    assert step.layers[0].name == "" and step.layers[0].macs == _flop_counter_macs(model, x)


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
