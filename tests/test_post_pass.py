"""The steps after the forward pass (rows, formula checks, operator accounting, folding, rendering): the answers
torch's own counts and hand-written expectations give, without reading every record when a few are asked for."""

from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn
import torch.nn.functional as F

import netscope
from netscope.analyses.checks import PASS, FormulaCheck, check_trace
from netscope.operators.breakdown import OperatorTable
from netscope.records import Finding, Severity
from netscope.run.module_tree import module_tree, param_census
from netscope.run.trace import trace


def _torch_counts(module: nn.Module):
    """Own and subtree parameter elements (each parameter once) and the trainable label, from torch's walks."""
    own = sum(p.numel() for p in module.parameters(recurse=False))
    params = list(module.parameters())
    flags = {p.requires_grad for p in params}
    label = "" if not flags else "yes" if flags == {True} else "no" if flags == {False} else "partial"
    return own, sum(p.numel() for p in params), label


def test_call_params_match_torchs_counts_in_order_out_of_order_and_outside_the_tree():
    from netscope.run.trace import _call_params

    model = nn.Sequential(nn.Linear(4, 3), nn.Sequential(nn.Linear(3, 2), nn.ReLU()), nn.Linear(2, 2))
    model[2].weight.requires_grad_(False)
    tree = module_tree(model)
    census = param_census(tree)
    m = tree.modules
    stray = nn.Linear(5, 5)  # a module the forward took out of the tree: counted on its own
    for calls in (list(m), list(m[:3]), [m[3], m[0], m[3], m[5]], [m[2], stray, m[0]]):
        assert list(_call_params(tree, {}, census, calls)) == [_torch_counts(module) for module in calls]
    assert _torch_counts(model) == (0, 4 * 3 + 3 + 3 * 2 + 2 + 2 * 2 + 2, "partial")  # the root owns none


def test_rows_of_a_module_called_twice_and_of_one_under_two_paths_count_as_torch_does():
    shared = nn.Linear(3, 3)
    model = nn.Sequential(shared, nn.ReLU(), shared, nn.Sequential(shared)).eval()
    result = trace(model, ((torch.randn(2, 3),), {}))
    assert [(c.name, c.call_number) for c in result.calls] == [("", 1), ("0", 1), ("1", 1), ("0", 2), ("3", 1),
                                                             ("0", 3)]
    assert [(c.own_params, c.subtree_params, c.trainable) for c in result.calls] == [
        _torch_counts(module) for module in result.modules]


class _Packet:
    """An operator packet that counts how often it is hashed (torch's packets hash in Python)."""

    hashes = 0

    def __hash__(self):
        type(self).hashes += 1
        return id(self)


def test_partial_is_answered_without_hashing_every_recorded_operator():
    add, mm, backward_only = _Packet(), _Packet(), _Packet()
    packets = [add, mm] * 500
    table = OperatorTable(1, [0] * 1000, packets, [0] * 500, [mm] * 500, [6] * 500, {add: "zero", mm: "formula"})
    _Packet.hashes = 0
    assert not table.partial and table.uncounted_calls() == set()
    assert _Packet.hashes == 0  # no operator of the pass lacks a formula: the 1,000 recorded calls are not read
    # kinds shared with a later pass (a training step's backward): an uncounted operator this pass never ran
    later = OperatorTable(1, [0] * 1000, packets, [], [], [], {add: "zero", mm: "formula", backward_only: "uncounted"})
    assert not later.partial
    missing = OperatorTable(1, [0] * 1000, packets, [], [], [], {add: "uncounted", mm: "formula"})
    assert missing.partial and missing.uncounted_calls() == {0}


def test_a_folded_table_reads_the_check_status_of_its_shown_rows_only(monkeypatch):
    model = nn.Sequential(*[nn.Sequential(nn.Linear(8, 8), nn.ReLU()) for _ in range(50)]).eval()
    report = netscope.summary(model, input_data=torch.randn(1, 8))
    assert len(report.checks) == 50
    reads = []
    compact = FormulaCheck.compact.fget
    monkeypatch.setattr(FormulaCheck, "compact", property(lambda check: reads.append(check.call_index) or compact(check)))
    lines = report.render().splitlines()
    assert [line.split()[:2] for line in lines if line.rstrip().endswith(" ok")] == [["0", "Linear"]]
    assert reads == [2]  # the shown Linear (root 0, block 1, its Linear 2); 49 folded blocks' checks not read


def test_a_finding_placed_by_layer_name_keeps_that_block_out_of_the_folds():
    model = nn.Sequential(*[nn.Sequential(nn.Linear(4, 4), nn.ReLU()) for _ in range(8)]).eval()
    report = netscope.summary(model, input_data=torch.randn(1, 4), audit_names=False)
    assert [f.label for f in report.folds()] == ["1–7"]
    warning = Finding(Severity.WARNING, "unregistered-module", "a module kept in a plain list", layer="3")
    pinned = dataclasses.replace(report, findings=[warning])
    # block k is call 1 + 3 * k: blocks 0-2 are one run (1-2 fold), block 3 stays, blocks 4-7 another (5-7 fold)
    assert [(f.label, f.members) for f in pinned.folds()] == [("1–2", (4, 7)), ("5–7", (16, 19, 22))]
    by_index = dataclasses.replace(report, findings=[dataclasses.replace(warning, layer=None, call_index=1 + 3 * 3)])
    assert [f.label for f in by_index.folds()] == ["1–2", "5–7"]


class _CountingDict(dict):
    """``TraceResult.same_as``, counting the calls asked about."""

    asked = 0

    def get(self, key, default=None):
        self.asked += 1
        return super().get(key, default)


class _FunctionalConv(nn.Module):
    """No formula is registered for this class: its convolution operator is checked instead."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, 3, 3, 3))

    def forward(self, x):
        return F.conv2d(x, self.weight, stride=2)


def test_checks_cover_the_formula_layers_and_the_convolutions_other_modules_ran_in_call_order():
    block = lambda: nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 3, 3, padding=1))  # noqa: E731
    model = nn.Sequential(block(), block(), _FunctionalConv(), nn.Flatten()).eval()
    result = trace(model, ((torch.randn(1, 3, 16, 16),), {}))
    checked = (nn.Conv2d, _FunctionalConv, nn.Flatten)  # containers and activations have nothing to check
    expected = [i for i, module in enumerate(result.modules) if isinstance(module, checked)]
    assert len(expected) == 6 and result.same_as  # the second block's layers replay the first's operators
    result.same_as = _CountingDict(result.same_as)
    checks = check_trace(result)
    assert [c.call_index for c in checks] == expected
    assert result.same_as.asked == len(expected)  # the others (containers, activations) are not looked at one by one
    assert [c.status for c in checks] == [PASS] * 6
    # the formulas' shapes, written out: (16 + 2 * 1 - 3) + 1 = 16; (16 - 3) // 2 + 1 = 7; flattened 4 * 7 * 7
    assert [c.expected_shape for c in checks] == [(1, 3, 16, 16)] * 4 + [(1, 4, 7, 7), (1, 4 * 7 * 7)]
    assert [tuple(result.calls[i].output_shapes) for i in expected] == [c.expected_shape for c in checks]
