"""Issue 14.6: replacements are built with ``\\g<N>`` so text after a group reference that starts with
digits is never read as part of the group number; the vgg -> vgg_bn family maps bit-exact."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn as nn
import torchvision
from hypothesis import given, settings, strategies as st

import netscope
from netscope.remapping.engine import _rename_rule
from netscope.remapping.rules import RuleChain, literal_module_rule, literal_prefix_rule

NAME = st.text(alphabet="abcxyz0123456789_", min_size=1, max_size=6)
DIGITS = st.text(alphabet="0123456789", min_size=1, max_size=3)
PART = st.one_of(st.none(), NAME, DIGITS)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(PART, min_size=1, max_size=4), st.data())
def test_generalized_rename_rule_with_digit_led_replacement_text(source_parts, data):
    """Index holes (None) are kept; every literal target part may start with digits ("4", "14a")."""
    holes = sum(p is None for p in source_parts)
    target_parts = data.draw(st.lists(st.one_of(NAME, DIGITS), min_size=0, max_size=3))
    slots = sorted(data.draw(st.lists(st.integers(0, len(target_parts)), min_size=holes, max_size=holes)))
    for n, slot in enumerate(slots):  # holes go back into the target in their order
        target_parts.insert(slot + n, None)
    rule = _rename_rule(source_parts, target_parts)
    indices = data.draw(st.lists(DIGITS, min_size=holes, max_size=holes))
    fill = lambda parts: [next(it) if p is None else p for it in [iter(indices)] for p in parts]  # noqa: E731
    key = ".".join(fill(source_parts) + ["weight"])
    expected = ".".join(fill(target_parts) + ["weight"])
    assert RuleChain([rule]).apply(key) == expected
    re.compile(rule.pattern).sub(rule.replacement, "")  # the template parses


@settings(max_examples=200, deadline=None, derandomize=True)
@given(NAME, st.lists(st.one_of(NAME, DIGITS), min_size=1, max_size=3).map(".".join), st.sampled_from(["weight", "bias"]))
def test_literal_rules_with_digit_led_new_names(old, new, leaf):
    assert RuleChain([literal_module_rule(old, new)]).apply(f"{old}.{leaf}") == f"{new}.{leaf}"
    assert RuleChain([literal_prefix_rule(old + ".", new + ".")]).apply(f"{old}.{leaf}") == f"{new}.{leaf}"


def _meta_model(name):
    with torch.device("meta"):
        return getattr(torchvision.models, name)(weights=None)


def _in_order(model, kinds):
    return [name for name, m in model.named_modules() if isinstance(m, kinds)]


@pytest.mark.parametrize("depth", [11, 13, 16, 19])
@pytest.mark.parametrize("direction", ["to_bn", "from_bn"])
def test_vgg_to_vgg_bn_maps_every_conv_and_classifier_tensor_bit_exact(depth, direction):
    plain, bn = _meta_model(f"vgg{depth}"), _meta_model(f"vgg{depth}_bn")
    source_model, target_model = (plain, bn) if direction == "to_bn" else (bn, plain)
    # one distinct value per tensor, expanded (no memory): identity and bits are both checked
    state = {k: torch.tensor(float(i)).expand(v.shape) for i, (k, v) in enumerate(source_model.state_dict().items())}
    new, report = netscope.remap(state, target_model)
    # the oracle: the n-th Conv2d/Linear of one model is the n-th of the other (torchvision's cfg order)
    kinds = (nn.Conv2d, nn.Linear)
    pairs = list(zip(_in_order(source_model, kinds), _in_order(target_model, kinds)))
    assert len(pairs) == len(_in_order(target_model, kinds)) == len(_in_order(source_model, kinds))
    for s, t in pairs:
        for leaf in ("weight", "bias"):
            assert new[f"{t}.{leaf}"] is state[f"{s}.{leaf}"], (s, t)
            assert torch.equal(new[f"{t}.{leaf}"], state[f"{s}.{leaf}"])
    assert report.mismatched == []
    bn_keys = {k for k in bn.state_dict() if any(k.startswith(m + ".") for m in _in_order(bn, nn.BatchNorm2d))}
    if direction == "to_bn":
        assert set(report.missing) == bn_keys and report.unused == []
    else:
        assert set(report.unused) == bn_keys and report.missing == []
    assert report.plan.rules_reproduce_mapping
    chain = RuleChain(report.rules)
    assert all(chain.apply(s) == t for s, t in report.mapping.items())


def test_vgg11_diff_against_vgg11_bn_names_the_shifts():
    """The reported crash: `netscope diff vgg11.pt vgg11_bn` died with `invalid group reference 14`."""
    from netscope.records import TensorMeta

    metas = {k: TensorMeta(tuple(v.shape), "float32") for k, v in _meta_model("vgg11").state_dict().items()}
    report = netscope.diff(metas, _meta_model("vgg11_bn"))
    assert not report.clean
    assert report.mapping["features.3.weight"] == "features.4.weight"
    assert report.mapping["features.18.weight"] == "features.25.weight"  # not the same-named 6th conv
    assert any(r.replacement == "features.4." for r in report.rules)


class _Backbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU())


class _Saved(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = _Backbone()


class _WithNorms(nn.Module):  # the same convs, renumbered (no ReLUs), then a BatchNorm at index 2
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3), nn.BatchNorm2d(8))


def test_a_rule_that_splits_one_checkpoint_module_across_two_model_modules_is_named():
    """A --rule that ignores the renumbering sends a conv's bias (same shape as a BatchNorm's) to the norm while
    its weight goes elsewhere: each mapping has its own evidence, but the split must be said."""
    source = _Saved().state_dict()
    _, report = netscope.remap(source, _WithNorms(), rules=[r"^backbone\.features\.=body."])
    split = [n for n in report.notes + report.plan.notes if "split across model modules" in n]
    by_source = {}
    for d in report.plan.decisions:
        if d.loads:
            by_source.setdefault(d.source.rsplit(".", 1)[0], set()).add(d.target.rsplit(".", 1)[0])
    really_split = sorted(k for k, targets in by_source.items() if len(targets) > 1)
    assert really_split and all(any(f"checkpoint module {k} " in n for n in split) for k in really_split)


def test_replaying_a_plan_does_not_advise_replaying_it(tmp_path):
    from netscope.remapping.plan import write_plan

    source = _Saved().state_dict()
    _, first = netscope.remap(source, _WithNorms(), rules=[r"^backbone\.features\.=body."])
    assert any("replay with --plan" in n for n in first.plan.notes)  # the compact rules cannot say it all
    write_plan(first.plan, tmp_path / "plan.json")
    _, again = netscope.remap(source, _WithNorms(), plan=str(tmp_path / "plan.json"))
    assert again.plan.mapping() == first.plan.mapping()
    assert not any("replay with --plan" in n for n in again.plan.notes)
