"""Checkpoint key mapping: wrappers, prefixes, rules, renumbering, structure, aliases, coverage, plans, CLI."""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
from collections import OrderedDict

import pytest
import torch
import torch.nn as nn
import torchvision

import netscope
from netscope.cli import main
from netscope.errors import CheckpointError, UsageError
from netscope.records import TensorMeta
from netscope.remapping import CoverageError, StrictLoadError, plan_mapping, read_plan
from netscope.remapping.align import LeafGroup, align_groups
from netscope.remapping.apply import rebuild_container
from netscope.remapping.sides import TensorLayout
from netscope.remapping.rules import RuleChain, parse_rule, read_rules_file

EXAMPLES = os.path.join(os.path.dirname(__file__), os.pardir, "examples")


def _example(name):
    spec = importlib.util.spec_from_file_location(f"_ex_{name}", os.path.join(EXAMPLES, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _prefixed(state_dict, prefix):
    return OrderedDict((prefix + k, v) for k, v in state_dict.items())


def _reasons(report):
    return {d.source or d.target: d.reason for d in report.decisions}


def _meta_layout(entries, **kwargs):
    return TensorLayout({k: TensorMeta(tuple(s), "float32") for k, s in entries}, **kwargs)


def _same_tensor(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.data_ptr() == b.data_ptr() and a.stride() == b.stride()


@pytest.fixture(scope="module")
def resnet18():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    with torch.no_grad():  # non-trivial running stats so that a wrong mapping changes outputs
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model


# ---------------------------------------------------------------- acceptance: wrappers and prefixes

def test_dataparallel_resnet18_checkpoint_loads_into_plain_model(resnet18, tmp_path):
    wrapped = nn.DataParallel(resnet18)
    path = tmp_path / "dp.pt"
    torch.save({"state_dict": wrapped.state_dict(), "epoch": 7}, path)
    assert all(k.startswith("module.") for k in wrapped.state_dict())
    fresh = torchvision.models.resnet18(weights=None).eval()
    report = netscope.load(str(path), fresh)
    assert set(_reasons(report).values()) == {"wrapper-stripped"}
    assert report.coverage.fraction == 1.0
    assert [(r.pattern, r.replacement) for r in report.rules] == [(r"^module\.", "")]
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(fresh(x), resnet18(x))


def test_torch_compile_checkpoint_loads_into_uncompiled_model(resnet18):
    compiled = torch.compile(resnet18)  # never called: only the _orig_mod naming matters
    state = compiled.state_dict()
    assert next(iter(state)).startswith("_orig_mod.")
    fresh = torchvision.models.resnet18(weights=None)
    report = netscope.load(state, fresh)
    assert report.coverage.fraction == 1.0
    for key, value in resnet18.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value)


@pytest.mark.parametrize("prefix", ["_orig_mod.module.", "module._orig_mod.", "module.module.",
                                    "_fsdp_wrapped_module._checkpoint_wrapped_module.", "_forward_module.", "model."])
def test_wrapper_tokens_in_any_order(resnet18, prefix):
    new, report = netscope.remap(_prefixed(resnet18.state_dict(), prefix), resnet18)
    assert list(new) == list(resnet18.state_dict())
    assert set(_reasons(report).values()) == {"wrapper-stripped"}
    assert all(_same_tensor(new[k[len(prefix):]], v) for k, v in _prefixed(resnet18.state_dict(), prefix).items())


def test_wrapper_tokens_at_depth_and_real_attribute_named_module():
    class Inner(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.Sequential(nn.Linear(3, 4))

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = Inner()
            self.module = nn.Linear(4, 2)  # a real attribute called "module": must keep its name

    model = Model()
    state = {
        "encoder._checkpoint_wrapped_module.layer.0.weight": torch.randn(4, 3),
        "encoder._checkpoint_wrapped_module.layer.0.bias": torch.randn(4),
        "module.module.weight": torch.randn(2, 4),  # DataParallel around it: only the outer token goes
        "module.module.bias": torch.randn(2),
    }
    new, report = netscope.remap(state, model)
    assert report.mapping == {
        "encoder._checkpoint_wrapped_module.layer.0.weight": "encoder.layer.0.weight",
        "encoder._checkpoint_wrapped_module.layer.0.bias": "encoder.layer.0.bias",
        "module.module.weight": "module.weight",
        "module.module.bias": "module.bias",
    }
    model.load_state_dict(new, strict=True)
    # the same key that already matches is never stripped
    _, report = netscope.remap({"module.weight": torch.randn(2, 4), "module.bias": torch.randn(2)}, model)
    assert set(_reasons(report).values()) >= {"exact"} and report.mapping["module.weight"] == "module.weight"


def test_target_side_wrapper_is_added():
    model = nn.DataParallel(nn.Linear(3, 2))
    new, report = netscope.remap({"weight": torch.randn(2, 3), "bias": torch.randn(2)}, model)
    assert list(new) == ["module.weight", "module.bias"]
    assert set(_reasons(report).values()) == {"wrapper-stripped"}


def test_common_prefix_on_checkpoint_side_is_stripped(resnet18):
    new, report = netscope.remap(_prefixed(resnet18.state_dict(), "backbone.body."), resnet18)
    assert list(new) == list(resnet18.state_dict())
    assert [r.pattern for r in report.rules] == [r"^backbone\.body\."]
    assert report.plan.rules_reproduce_mapping


# ---------------------------------------------------------------- acceptance: classifier, hand-written ResNet-50

def test_classifier_with_different_number_of_classes(resnet18):
    ten = torchvision.models.resnet18(weights=None, num_classes=10)
    new, report = netscope.remap(ten.state_dict(), resnet18)
    reasons = _reasons(report)
    assert {k for k, r in reasons.items() if r != "exact"} == {"fc.weight", "fc.bias"}
    assert reasons["fc.weight"] == reasons["fc.bias"] == "shape-mismatch"
    assert "different number of classes (10 vs 1000)" in report.mismatched[0].detail
    assert "fc.weight" not in new and "fc.bias" not in new  # never loaded
    before = resnet18.fc.weight.clone()
    with pytest.raises(StrictLoadError, match="different shape"):
        netscope.load(ten.state_dict(), resnet18)
    target = torchvision.models.resnet18(weights=None)
    fc_before = target.fc.weight.clone()
    netscope.load(ten.state_dict(), target, strict=False)
    assert torch.equal(target.fc.weight, fc_before) and torch.equal(target.conv1.weight, ten.conv1.weight)
    assert torch.equal(resnet18.fc.weight, before)
    assert report.coverage.per_module[-1].module == "fc" and report.coverage.per_module[-1].loaded == 0
    assert report.coverage.uninitialised == ("fc",)


def test_handwritten_resnet50_aligns_with_torchvision():
    example = _example("handwritten_resnet50")
    torch.manual_seed(0)
    source = example.HandwrittenResNet50().eval()
    target = torchvision.models.resnet50(weights=None).eval()
    new, report = netscope.remap(source.state_dict(), target)
    assert report.unused == ["stem.0.bias"]
    unused = next(d for d in report.decisions if d.source == "stem.0.bias")
    assert "conv1 (Conv2d), which has no 'bias'" in unused.detail
    assert report.missing == [] and report.mismatched == []
    assert set(new) == set(target.state_dict())
    mapping = report.mapping
    assert mapping["layer1.0.shortcut.0.weight"] == "layer1.0.downsample.0.weight"
    assert mapping["layer3.5.spatial.1.running_var"] == "layer3.5.bn2.running_var"
    assert mapping["head.2.weight"] == "fc.weight"
    assert {d.reason for d in report.decisions if d.loads} == {"structural"}
    assert len(report.rules) <= 12 and report.plan.rules_reproduce_mapping
    target.load_state_dict(new, strict=True)
    with torch.no_grad():
        source.stem[0].bias.zero_()
        x = torch.randn(1, 3, 64, 64)
        assert torch.equal(source(x), target(x))


def test_structural_alignment_refuses_equal_candidates():
    g = lambda name, shape: LeafGroup(name, (("weight", shape),), (name + ".weight",))  # noqa: E731
    source = [g("a", (4, 4)), g("b", (4, 4)), g("c", (8, 4))]
    target = [g("x", (4, 4)), g("y", (8, 4))]
    alignment = align_groups(source, target)
    assert alignment.pairs == ((2, 1),)  # only the unique fit; which (4,4) is the extra one is a guess
    assert set(alignment.ambiguous) == {0, 1}
    # the same through the public API: ambiguous keys are listed, never guessed
    layout = _meta_layout([("a.weight", (4, 4)), ("b.weight", (4, 4)), ("c.weight", (8, 4))])
    plan, _ = plan_mapping(layout, _meta_layout([("x.weight", (4, 4)), ("y.weight", (8, 4))]))
    assert plan.mapping() == {"c.weight": "y.weight"}
    assert [d.target for d in plan.by_reason("missing")] == ["x.weight"]
    assert all("fit" in d.detail for d in plan.by_reason("unused"))


def test_structural_anchors_reorder_free_insertion():
    source = _meta_layout([("s.a.weight", (1, 2)), ("s.extra.weight", (7, 7)), ("s.b.weight", (3, 2)),
                           ("s.c.weight", (5, 2))])
    target = _meta_layout([("t.x.weight", (1, 2)), ("t.y.weight", (3, 2)), ("t.z.weight", (5, 2))])
    plan, coverage = plan_mapping(source, target)
    assert plan.mapping() == {"s.a.weight": "t.x.weight", "s.b.weight": "t.y.weight", "s.c.weight": "t.z.weight"}
    assert [d.source for d in plan.by_reason("unused")] == ["s.extra.weight"]
    assert coverage.fraction == 1.0


def test_structural_alignment_of_100k_keys_is_exact_and_compact():
    """Near-linear by design (measured ~4 s CPU on a loaded 2-core box); a quadratic pass would not finish."""
    def layout(conv, bn, n):
        tensors = {}
        for i in range(n):
            c = 8 + i % 13
            tensors[conv.format(i) + ".weight"] = TensorMeta((c, c, 3, 3), "float32")
            for leaf in ("weight", "bias", "running_mean", "running_var"):
                tensors[bn.format(i) + "." + leaf] = TensorMeta((c,), "float32")
        return TensorLayout(tensors)

    source, target = layout("blocks.{}.0", "blocks.{}.1", 20_000), layout("layers.{}.conv", "layers.{}.bn", 20_000)
    plan, coverage = plan_mapping(source, target)
    assert len(source.tensors) == 100_000 and coverage.fraction == 1.0
    assert plan.mapping() == dict(zip(source.tensors, target.tensors))
    assert len(plan.rules) == 2 and plan.rules_reproduce_mapping


# ---------------------------------------------------------------- sequential renumbering

def _features(*layers):
    model = nn.Module()
    model.features = nn.Sequential(*layers)
    return model


def test_sequential_shift_is_one_rule():
    torch.manual_seed(0)
    source = _features(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Dropout(), nn.Conv2d(8, 16, 3))  # 0, 3
    target = _features(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 16, 3))  # 0, 2
    new, report = netscope.remap(source.state_dict(), target)
    assert [(r.pattern, r.replacement) for r in report.rules] == [(r"^features\.3\.", "features.2.")]
    assert _reasons(report) == {"features.0.weight": "exact", "features.0.bias": "exact",
                                "features.3.weight": "sequential-shift", "features.3.bias": "sequential-shift"}
    target.load_state_dict(new, strict=True)
    assert torch.equal(target.features[2].weight, source.features[3].weight)


@pytest.mark.parametrize("source_idx,target_idx", [((0, 3, 6), (0, 2, 4)), ((0, 2, 4), (0, 3, 6))])
def test_sequential_shift_rules_replay_in_either_direction(source_idx, target_idx):
    def build(indices):
        layers = [nn.Identity() for _ in range(max(indices) + 1)]
        for n, i in enumerate(indices):
            layers[i] = nn.Linear(4 + n, 5 + n)
        return _features(*layers)

    source, target = build(source_idx), build(target_idx)
    new, report = netscope.remap(source.state_dict(), target)
    assert len(report.rules) == 2 and report.plan.rules_reproduce_mapping
    chain = RuleChain(report.rules)
    assert {chain.apply(k) for k in source.state_dict()} == set(target.state_dict())
    target.load_state_dict(new, strict=True)


# ---------------------------------------------------------------- user rules

def test_rule_parsing_splits_on_last_equals_and_validates():
    rule = parse_rule(r"^blocks\.(?=\d)=layers.")
    assert (rule.pattern, rule.replacement) == (r"^blocks\.(?=\d)", "layers.")
    assert parse_rule(r"^(?P<a>x)(?P=a)\.=y.").pattern == r"^(?P<a>x)(?P=a)\."
    with pytest.raises(UsageError, match="invalid"):
        parse_rule("^(unclosed=x")
    with pytest.raises(UsageError, match="no '='"):
        parse_rule("nothing")
    with pytest.raises(UsageError, match="replacement"):
        parse_rule(r"^a=\2")


def test_user_rules_apply_in_order_and_rules_file(tmp_path, resnet18):
    state = OrderedDict((k.replace("layer", "stage").replace("downsample", "proj"), v)
                        for k, v in resnet18.state_dict().items())
    rules = [r"^stage=layer", r"\.proj\.=.downsample."]
    new, report = netscope.remap(state, resnet18, rules=rules, structural=False)
    assert report.unused == [] and report.missing == []
    assert {d.reason for d in report.decisions} == {"exact", "rule"}
    path = tmp_path / "rules.txt"
    path.write_text("# comment\n" + "\n".join(rules) + "\n")
    assert [r.text() for r in read_rules_file(str(path))] == rules


# ---------------------------------------------------------------- aliases, metadata, container, safety

class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.body = nn.Linear(4, 4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.embed.weight


def test_tied_weight_saved_once_is_not_missing():
    model = Tied()
    state = {k: v for k, v in model.state_dict().items() if k != "head.weight"}  # de-duplicated file
    new, report = netscope.remap(state, model)
    assert report.missing == [] and report.coverage.fraction == 1.0
    alias = report.plan.by_reason("alias-of")
    assert [(d.source, d.target) for d in alias] == [("embed.weight", "head.weight")]
    assert new["head.weight"] is new["embed.weight"]
    netscope.load(state, Tied(), strict=True)


def _strict_loads(state, model) -> bool:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError:
        return False
    return True


TIED_FILE = "import torch.nn as nn\n" + inspect.getsource(Tied)  # Tied above, as a file the CLI imports


@pytest.mark.parametrize("drop_alias", [True, False])
def test_diff_exit_agrees_with_torch_strict_load_for_a_tied_checkpoint(tmp_path, capsys, drop_alias):
    """HF's save_pretrained writes a tied weight once; torch's strict load then misses the other name, so
    `diff` (exit 0 = loads strictly as-is) must say 1; the full state dict loads and says 0."""
    model = Tied()
    state = {k: v for k, v in model.state_dict().items() if not (drop_alias and k == "head.weight")}
    strict = _strict_loads(state, Tied())
    assert strict is not drop_alias  # the oracle, torch itself
    assert netscope.diff(state, Tied()).clean is strict
    (tmp_path / "tied.py").write_text(TIED_FILE)
    path = tmp_path / "tied.pt"
    torch.save(state, path)
    assert main(["diff", str(path), f"{tmp_path / 'tied.py'}:Tied"]) == (0 if strict else 1)
    err = capsys.readouterr().err
    assert ("does not load strictly as-is (1 missing, 0 unexpected" in err) is drop_alias


def test_shared_storage_in_source_maps_or_is_alias():
    model = Tied()
    state = _prefixed(model.state_dict(), "module.")
    new, report = netscope.remap(state, model)
    assert new["head.weight"].data_ptr() == new["embed.weight"].data_ptr()
    state = {"module.embed.weight": state["module.embed.weight"], "module.body.weight": state["module.body.weight"],
             "module.body.bias": state["module.body.bias"], "module.copy": state["module.embed.weight"]}
    _, report = netscope.remap(state, model)
    assert _reasons(report)["module.copy"] == "alias-of" and report.unused == []


def test_input_not_mutated_non_tensors_and_metadata_carried(resnet18):
    state = nn.DataParallel(resnet18).state_dict()
    state["module.extra_note"] = "kept"
    keys_before, metadata_before = list(state), dict(state._metadata)
    new, report = netscope.remap(state, resnet18)
    assert list(state) == keys_before and dict(state._metadata) == metadata_before
    assert new["extra_note"] == "kept"
    assert new._metadata["layer1.0.bn1"] == state._metadata["module.layer1.0.bn1"]
    assert new._metadata[""] == state._metadata["module"]
    assert set(new._metadata) >= {name for name, _ in resnet18.named_modules()}


def test_optimizer_state_keyed_by_names_is_rekeyed():
    model = nn.Linear(3, 2)
    container = {"model": {"module.weight": torch.randn(2, 3), "module.bias": torch.randn(2)},
                 "optim": {"state": {"module.weight": {"step": 3}}, "param_groups": [{"lr": 0.1, "params": ["module.weight", "module.bias"]}]},
                 "torch_optim": {"state": {0: {"step": 1}}, "param_groups": [{"params": [0, 1]}]},
                 "epoch": 4}
    new_sd, report = netscope.remap(container["model"], model)
    new_container, renamed = rebuild_container(container, ("model",), new_sd, report.plan)
    assert renamed == 1
    assert new_container["optim"]["state"] == {"weight": {"step": 3}}
    assert new_container["optim"]["param_groups"] == [{"lr": 0.1, "params": ["weight", "bias"]}]
    assert new_container["torch_optim"] is container["torch_optim"] and new_container["epoch"] == 4
    assert container["optim"]["param_groups"][0]["params"] == ["module.weight", "module.bias"]  # untouched


def test_unconsolidated_fsdp_is_answered_with_consolidate_first():
    state = {f"_fsdp_wrapped_module.layers.{i}._fsdp_wrapped_module._flat_param": torch.zeros(10) for i in range(300)}
    with pytest.raises(CheckpointError, match="onsolidate"):
        netscope.remap(state, nn.Linear(2, 2))


def test_min_coverage_api_names_uninitialised_modules(resnet18):
    state = {k: v for k, v in resnet18.state_dict().items() if not k.startswith("layer4")}
    with pytest.raises(CoverageError, match="layer4"):
        netscope.remap(state, resnet18, min_coverage=0.99)
    _, report = netscope.remap(state, resnet18, min_coverage=0.1)
    assert report.coverage.uninitialised == ("layer4",)
    per = {m.module: m.fraction for m in report.coverage.per_module}
    assert per["layer4"] == 0.0 and per["layer1"] == 1.0


def test_callable_package_keeps_netscope_remap_a_function():
    import netscope.remapping.engine  # noqa: F401  binds the package as netscope.remap
    new, _ = netscope.remap({"weight": torch.ones(2, 2)}, nn.Linear(2, 2, bias=False))
    assert list(new) == ["weight"]


# ---------------------------------------------------------------- plans

def test_plan_save_replay_invert_round_trip(tmp_path):
    example = _example("handwritten_resnet50")
    torch.manual_seed(0)
    source = example.HandwrittenResNet50(stem_bias=False)
    target = torchvision.models.resnet50(weights=None)
    state = source.state_dict()
    new, report = netscope.remap(state, target)
    path = tmp_path / "plan.json"
    netscope.remapping.write_plan(report.plan, str(path))
    plan = read_plan(str(path))
    assert plan == report.plan
    assert json.loads(path.read_text())["counts"]["structural"] == len(state)
    replayed, replay_report = netscope.remap(state, target, plan=str(path), structural=False)
    assert replay_report.mapping == report.mapping and list(replayed) == list(new)
    back, back_report = netscope.remap(new, source, plan=plan, invert=True, structural=False)
    assert list(back) == list(state)
    assert all(_same_tensor(back[k], v) for k, v in state.items())
    assert all("replayed from plan" in d.detail for d in back_report.decisions)
    assert all("replayed from plan: backwards (" in d.detail for d in back_report.decisions if d.loads)  # not "stripped"
    # the compact rules alone replay it too
    assert netscope.remap(state, target, rules=plan.rules, structural=False)[1].mapping == report.mapping


def test_plan_file_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(UsageError, match="not valid JSON"):
        read_plan(str(bad))
    bad.write_text('{"format": "other"}')
    with pytest.raises(UsageError, match="not a netscope remap plan"):
        read_plan(str(bad))


# ---------------------------------------------------------------- diff (headers only)

def test_diff_explains_prefix_classifier_and_extra_bias():
    class Net(nn.Module):
        def __init__(self, classes, bias):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, bias=bias)
            self.fc = nn.Linear(4, classes)

    source = {("module." + k): TensorMeta(tuple(v.shape), "float32") for k, v in Net(10, True).state_dict().items()}
    report = netscope.diff(source, Net(1000, False))
    by_source = {d.source: d for d in report.decisions if d.source}
    assert by_source["module.conv.weight"].reason == "wrapper-stripped"
    assert by_source["module.fc.weight"].reason == "shape-mismatch"
    assert "classifier" in by_source["module.fc.weight"].detail
    assert by_source["module.conv.bias"].reason == "unused"
    assert set(report.unexpected_by_name) == set(source)
    assert not report.clean


# ---------------------------------------------------------------- CLI

MODEL_FILE = os.path.join(EXAMPLES, "handwritten_resnet50.py")


@pytest.fixture()
def dp_checkpoint(tmp_path, resnet18):
    path = tmp_path / "dp.pt"
    torch.save({"state_dict": nn.DataParallel(resnet18).state_dict(), "epoch": 3,
                "optimizer": {"state": {}, "param_groups": [{"params": [0]}]}}, path)
    return path


def test_cli_remap_writes_a_strict_loadable_checkpoint(dp_checkpoint, tmp_path, capsys, resnet18):
    out = tmp_path / "out.pt"
    plan_path = tmp_path / "plan.json"
    code = main(["remap", str(dp_checkpoint), "resnet18", "-o", str(out), "--save-plan", str(plan_path),
                 "--min-coverage", "0.99"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "coverage: 100.00%" in text
    saved = torch.load(out, weights_only=True)
    assert saved["epoch"] == 3 and saved["optimizer"]["param_groups"] == [{"params": [0]}]
    fresh = torchvision.models.resnet18(weights=None)
    fresh.load_state_dict(saved["state_dict"], strict=True)
    for key, value in resnet18.state_dict().items():
        assert torch.equal(saved["state_dict"][key], value) and saved["state_dict"][key].dtype == value.dtype
    assert json.loads(plan_path.read_text())["counts"]["wrapper-stripped"] == len(resnet18.state_dict())
    # writing over an existing file needs --force, over the input needs --in-place
    assert main(["remap", str(dp_checkpoint), "resnet18", "-o", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["remap", str(dp_checkpoint), "resnet18", "-o", str(dp_checkpoint), "--force"]) == 2
    assert "--in-place" in capsys.readouterr().err


def test_cli_remap_safetensors_output(dp_checkpoint, tmp_path, capsys, resnet18):
    out = tmp_path / "out.safetensors"
    # the container's epoch and optimizer state cannot go into a .safetensors file: refused, nothing written
    assert main(["remap", str(dp_checkpoint), "resnet18", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "holds tensors only" in err and "epoch" in err and "optimizer" in err and "--state-dict-only" in err
    assert not out.exists()
    assert main(["remap", str(dp_checkpoint), "resnet18", "-o", str(out), "--state-dict-only"]) == 0
    assert "left out the container's other entries" in capsys.readouterr().out
    from safetensors.torch import load_file

    loaded = load_file(str(out))
    assert set(loaded) == set(resnet18.state_dict())
    assert all(torch.equal(loaded[k], v) for k, v in resnet18.state_dict().items())


def test_cli_min_coverage_fails_with_exit_1_and_names_modules(tmp_path, capsys, resnet18):
    path = tmp_path / "partial.pt"
    torch.save({k: v for k, v in resnet18.state_dict().items() if not k.startswith(("layer3", "fc"))}, path)
    out = tmp_path / "out.pt"
    assert main(["remap", str(path), "resnet18", "-o", str(out), "--min-coverage", "0.99"]) == 1
    err = capsys.readouterr().err
    assert "layer3" in err and "fc" in err and "below the required 99.00%" in err
    assert not out.exists()


def test_cli_dry_run_diff_and_plan_invert(dp_checkpoint, tmp_path, capsys):
    plan_path = tmp_path / "plan.json"
    assert main(["remap", str(dp_checkpoint), "resnet18", "--dry-run", "--save-plan", str(plan_path)]) == 0
    assert "dry run: nothing written" in capsys.readouterr().out
    assert main(["diff", str(dp_checkpoint), "resnet18", "--format", "json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert len(data["unexpected_by_name"]) == len(data["missing_by_name"]) == 122
    assert main(["diff", str(dp_checkpoint), "resnet18", "-a", "num_classes=10"]) == 1
    captured = capsys.readouterr()
    # the detail column wraps toward 120 columns: the phrase reads on when the lines are joined
    assert "classifier with a different number of classes (1000 vs 10)" in " ".join(captured.out.split())
    assert "a strict load would fail" in captured.err
    # a plain checkpoint written by the inverted plan gets the wrapper back
    plain = tmp_path / "plain.pt"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), plain)
    factory = tmp_path / "wrapped_model.py"
    factory.write_text("import torch.nn as nn, torchvision\n"
                       "def build():\n    return nn.DataParallel(torchvision.models.resnet18(weights=None))\n")
    wrapped_out = tmp_path / "wrapped.pt"
    assert main(["remap", str(plain), f"{factory}:build", "-o", str(wrapped_out), "--plan", str(plan_path),
                 "--invert", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["plan"]["counts"]["wrapper-stripped"] == 122  # the inverted decisions keep their reason
    keys = list(torch.load(wrapped_out, weights_only=True))
    assert len(keys) == 122 and all(k.startswith("module.") for k in keys)


def test_cli_usage_errors(dp_checkpoint, tmp_path, capsys):
    assert main(["remap", str(dp_checkpoint), "resnet18"]) == 2
    assert "-o OUT" in capsys.readouterr().err
    assert main(["remap", str(dp_checkpoint), "resnet18", "--dry-run", "--rule", "^(bad=x"]) == 2
    assert "invalid" in capsys.readouterr().err
    assert main(["remap", str(dp_checkpoint), "resnet18", "--dry-run", "--invert"]) == 2
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    assert main(["diff", str(junk), "resnet18"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_cli_handwritten_file_spec_as_target(tmp_path, capsys):
    path = tmp_path / "tv.pt"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    assert main(["diff", str(path), f"{MODEL_FILE}:HandwrittenResNet50"]) == 1
    out = capsys.readouterr().out
    assert "structural" in out and "stem.0.bias" in out and "missing" in out


def test_dcp_directory_is_diffed_from_metadata(tmp_path, capsys, resnet18):
    import torch.distributed.checkpoint as dcp

    directory = tmp_path / "dcp"
    dcp.save({"model": nn.DataParallel(resnet18).state_dict()}, checkpoint_id=str(directory))
    for name in os.listdir(directory):  # keep only the .metadata file: proof that no tensor bytes are read
        if name.endswith(".distcp"):
            os.remove(directory / name)
    assert main(["diff", str(directory), "resnet18", "--format", "json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["coverage"]["fraction"] == 1.0
    assert data["plan"]["counts"]["wrapper-stripped"] == len(resnet18.state_dict())


def _bn_net():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.InstanceNorm2d(4, track_running_stats=True))


@pytest.mark.parametrize("version", [None, 1, 2, "no-metadata"])
@pytest.mark.parametrize("prefix", ["", "module."])
def test_missing_num_batches_tracked_is_judged_as_torchs_strict_load_judges_it(version, prefix):
    """torch's norm loader fills a missing num_batches_tracked when the module's _metadata version is absent
    or below 2 (checkpoints older than torch 0.4.1); with version 2 the strict load fails. The oracle is
    torch's own strict load, of the checkpoint as-is (diff) and of the remapped one (remap, load)."""
    state = OrderedDict((prefix + k, v) for k, v in _bn_net().state_dict().items()
                        if not k.endswith("num_batches_tracked"))
    if version != "no-metadata":
        state._metadata = OrderedDict((prefix + m if m else m, {} if version is None else {"version": version})
                                      for m in ("", "0", "1", "2"))
    as_is = _strict_loads(state, _bn_net())
    assert as_is is (version != 2 and not prefix)
    assert netscope.diff(state, _bn_net()).clean is as_is
    new, report = netscope.remap(state, _bn_net())
    mapped = _strict_loads(new, _bn_net())
    assert mapped is (version != 2)
    assert (report.strict_problems() == []) is mapped
    if mapped:
        assert set(report.loader_fills) == {"1.num_batches_tracked", "2.num_batches_tracked"}
        netscope.load(state, _bn_net(), strict=True)
    else:
        with pytest.raises(StrictLoadError, match="num_batches_tracked"):
            netscope.load(state, _bn_net(), strict=True)


def test_remap_reads_a_checkpoint_path_like_diff_and_load(resnet18, tmp_path):
    """A path is read as load() reads it (weights_only, the dict of tensors found inside); the renamed tensors are
    the file's own values, compared with torch.load's."""
    path = tmp_path / "dp.pt"
    torch.save({"state_dict": nn.DataParallel(resnet18).state_dict(), "epoch": 3}, path)
    new, report = netscope.remap(str(path), torchvision.models.resnet18(weights=None))
    saved = torch.load(path, weights_only=True)["state_dict"]
    assert list(new) == list(resnet18.state_dict())
    assert all(torch.equal(new[key], saved["module." + key]) for key in new)
    assert report.source_label == str(path) and report.coverage.fraction == 1.0
    with pytest.raises(netscope.errors.UsageError, match="checkpoint path"):
        netscope.remap(42, resnet18)


def test_remap_refuses_a_pickle_that_needs_weights_only_false(resnet18, tmp_path):
    path = tmp_path / "unsafe.pt"
    torch.save({"state_dict": resnet18.state_dict(), "args": _PickledConfig()}, path)
    with pytest.raises(netscope.errors.CheckpointError, match="weights_only"):
        netscope.remap(str(path), resnet18)
    new, _ = netscope.remap(str(path), resnet18, weights_only=False)
    assert all(torch.equal(new[k], v) for k, v in resnet18.state_dict().items())


class _PickledConfig:  # a class torch.load(weights_only=True) will not unpickle
    pass
