"""The naming audit's fast path (issue 16 item 7): the findings ``summary`` shows are the full audit's, exactly.

The oracle is the full audit (``audit_names``), itself checked against torch's own ``state_dict()`` in
test_naming.py and test_naming_truth.py. Every model of those files, generated module trees, and cases
built to sit on the edge of "plain" must give the same findings; the plain ones must take the fast path,
so both paths are exercised.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from hypothesis import HealthCheck, given, settings

import netscope
from netscope.naming.fast import audit_findings, is_plain
from netscope.run.module_tree import module_tree
from netscope.run.no_memory import empty_weights
from test_naming import TEST_MODELS
from test_naming_truth import ZOO, build, trees


def assert_same_findings(model) -> bool:
    """The fast findings equal the full audit's; returns whether the model was taken as plain."""
    assert audit_findings(model) == netscope.audit_names(model).findings
    return is_plain(module_tree(model))


class HoldsReferences(nn.Module):
    """Plain attributes that point at registered modules and tensors: deliberate references, not strays."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(2, 2)
        self.b = nn.Linear(2, 2)
        self.order = [self.a, self.b]
        self.lookup = {"w": self.a.weight}
        self.kernel = (3, 3)


class HoldsStray(HoldsReferences):
    def __init__(self):
        super().__init__()
        self.extra = [nn.Linear(2, 2)]


class WithPositions(nn.Module):
    """A non-persistent buffer, as transformers' position ids are."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.register_buffer("position_ids", torch.arange(10), persistent=False)

    def forward(self, ids):
        return self.embed(ids + self.position_ids[: ids.shape[-1]])


class DisjointSlices(nn.Module):
    """Two parameters on one storage without sharing an element: nothing to find."""

    def __init__(self, overlap: bool = False):
        super().__init__()
        base = torch.randn(8)
        self.first = nn.Parameter(base[:4])
        self.second = nn.Parameter(base[3:7] if overlap else base[4:])


def param_named_like_buffer():
    module = nn.Linear(2, 2)
    module._buffers["weight"] = torch.zeros(2)  # one key for two tensors
    return module


def with_pre_hook():
    module = nn.Sequential(nn.Linear(2, 2))
    module[0].register_state_dict_pre_hook(lambda *args: None)
    return module


def numbered_stack():
    return nn.Sequential(*[nn.Sequential(nn.Linear(4, 4), nn.ReLU()) for _ in range(5)])


EDGES = {
    "references": (HoldsReferences, True),
    "stray": (HoldsStray, False),
    "positions": (WithPositions, True),
    "disjoint slices": (DisjointSlices, True),
    "overlapping slices": (lambda: DisjointSlices(overlap=True), False),
    "parameter and buffer under one name": (param_named_like_buffer, False),
    "state_dict pre-hook": (with_pre_hook, False),
    "numbered stack": (numbered_stack, True),
    "empty parameter": (lambda: nn.Linear(0, 2), False),
    "tied": (lambda: nn.Sequential(*[nn.Linear(2, 2)] * 2), False),
}


def test_every_naming_test_model_gives_the_full_audits_findings():
    plain = {name for name, make in {**TEST_MODELS, **ZOO}.items() if assert_same_findings(make())}
    # the fast path is really taken, on models with and without findings
    assert {"resnet18", "nested numbered", "numbering gaps", "mobilenet_v3_small"} <= plain
    assert not plain & {"tied", "strays", "hook key", "dotted collision", "shared storage", "overlapping views",
                        "lazy", "scripted resnet18", "compiled", "nested DataParallel", "extra state",
                        "shadowed", "empty names"}


def test_edge_cases_of_plain():
    for name, (make, plain) in EDGES.items():
        model = make()
        assert assert_same_findings(model) is plain, name
    assert {f.code for f in audit_findings(WithPositions())} == {"non-persistent-buffer"}
    assert {f.code for f in audit_findings(numbered_stack())} == {"numbered-sequential"}


def test_meta_models_take_the_same_paths():
    with empty_weights():
        plain = numbered_stack()
    assert assert_same_findings(plain)
    tied = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)).to("meta")
    tied[1].weight = tied[0].weight
    assert not assert_same_findings(tied)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees())
def test_generated_trees_give_the_full_audits_findings(recipe):
    assert_same_findings(build(recipe, {"params": [], "buffers": []}))


def test_summary_uses_the_fast_findings_and_they_agree():
    model = WithPositions()
    report = netscope.summary(model, input_data=torch.tensor([[1, 2]]))
    assert report.findings == netscope.audit_names(model).findings
