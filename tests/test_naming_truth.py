"""Naming truth on odd modules (issue 13 item 9, issue 15): torch's own state_dict() is the oracle.

For every model: the audit lists exactly ``state_dict().keys()`` in torch's order, every expression
evaluates to the very object saved under its key (``is``), and parameters are counted as
``model.parameters()`` counts them.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict

import pytest
import torch
import torch.nn as nn
import torchvision
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import netscope

LAZY = nn.parameter.UninitializedTensorMixin


# --- the zoo --------------------------------------------------------------------------------------

class DottedCollision(nn.Module):
    """setattr skips add_module's check for '.', so `fc.0` collides with `fc` -> `0`."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(2, 2))
        setattr(self, "fc.0", nn.Linear(2, 2))


class DottedAlone(nn.Module):
    def __init__(self):
        super().__init__()
        self._modules["head.proj"] = nn.Linear(3, 1)


class NumberingGaps(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([nn.Linear(1, 1)])
        self.blocks.add_module("5", nn.Linear(1, 2))
        self.scales = nn.ParameterList([nn.Parameter(torch.zeros(1))])
        self.scales.register_parameter("4", nn.Parameter(torch.zeros(2)))
        self.seq = nn.Sequential()
        self.seq.add_module("2", nn.Linear(1, 3))
        self.seq.add_module("0", nn.Linear(3, 1))


class Ligature(nn.Module):
    """`ﬁlter` (U+FB01) and `filter` are two attributes; Python source reads both as `filter`."""

    def __init__(self, twin=True):
        super().__init__()
        setattr(self, "\ufb01lter", nn.Linear(1, 1))
        if twin:
            self.filter = nn.Linear(2, 2)


def _rename(module, state_dict, prefix, local_metadata):
    state_dict[prefix + "w"] = state_dict.pop(prefix + "weight")


def _drop_bias(module, state_dict, prefix, local_metadata):
    del state_dict[prefix + "bias"]


def _swap(module, state_dict, prefix, local_metadata):
    state_dict[prefix + "weight"], state_dict[prefix + "bias"] = state_dict[prefix + "bias"], state_dict[prefix + "weight"]


def _to_half(module, state_dict, prefix, local_metadata):
    state_dict[prefix + "weight"] = state_dict[prefix + "weight"].detach().half()


def _add_version(module, state_dict, prefix, local_metadata):
    state_dict[prefix + "version"] = torch.tensor(2)


def hooked():
    model = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 4), nn.Linear(4, 4), nn.Linear(4, 5), nn.Linear(5, 1))
    for layer, hook in zip(model, (_rename, _drop_bias, _swap, _to_half, _add_version)):
        layer._register_state_dict_hook(hook)
    return model


class SavesKernel(nn.Linear):
    def _save_to_state_dict(self, destination, prefix, keep_vars):
        destination[prefix + "kernel"] = self.weight if keep_vars else self.weight.detach()


class ReversedStateDict(nn.Module):
    """A child whose state_dict override reverses its keys' order."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(2, 2)
        self.b = nn.Linear(2, 2)

    def state_dict(self, *args, **kwargs):
        out = super().state_dict(*args, **kwargs)
        return OrderedDict(reversed(list(out.items())))


class SharedStorage(nn.Module):
    """Two nn.Parameter objects over one tensor, and one object under two names."""

    def __init__(self):
        super().__init__()
        base = torch.randn(3)
        self.a = nn.Parameter(base)
        self.b = nn.Parameter(base)
        tied = nn.Parameter(torch.zeros(2))
        self.register_parameter("c", tied)
        self.register_parameter("d", tied)
        shared = torch.ones(4)
        self.register_buffer("x", shared)
        self.register_buffer("y", shared)


class OverlappingViews(nn.Module):
    def __init__(self):
        super().__init__()
        base = torch.zeros(12)
        self.a = nn.Parameter(base[:6])
        self.b = nn.Parameter(base[4:8])  # overlaps a (elements 4, 5)
        self.c = nn.Parameter(base[8:])  # adjacent to b, overlaps nothing
        grid = torch.zeros(4, 4)
        self.even = nn.Parameter(grid[:, 0::2])  # interleaved columns: ranges intersect, elements do not
        self.odd = nn.Parameter(grid[:, 1::2])
        self.row = nn.Parameter(grid[1])  # shares grid[1, 0] with even and grid[1, 1] with odd


class TiedAcrossModules(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.embed.weight
        self.norm = nn.BatchNorm1d(4)
        self.other = nn.BatchNorm1d(4)
        self.other.register_buffer("running_mean", self.norm.running_mean)


def scripted():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.script(torchvision.models.resnet18(weights=None))


def traced():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.trace(torchvision.models.resnet18(weights=None).eval(), torch.zeros(1, 3, 32, 32))


ZOO = {
    "dotted collision": DottedCollision,
    "dotted alone": DottedAlone,
    "numbering gaps": NumberingGaps,
    "ligature twin": Ligature,
    "ligature alone": lambda: Ligature(twin=False),
    "state_dict hooks": hooked,
    "_save_to_state_dict override": lambda: nn.Sequential(SavesKernel(2, 2), nn.ReLU()),
    "state_dict override": lambda: nn.Sequential(nn.Linear(1, 2), ReversedStateDict()),
    "shared storage": SharedStorage,
    "overlapping views": OverlappingViews,
    "tied across modules": TiedAcrossModules,
    "lazy": lambda: nn.Sequential(nn.LazyConv2d(4, 3), nn.Flatten(), nn.LazyLinear(3)),
    "scripted resnet18": scripted,
    "traced resnet18": traced,
}


def assert_truthful(model, report):
    """The oracle: torch's own state_dict(), object identity, and model.parameters()."""
    saved = model.state_dict(keep_vars=True)
    assert report.state_dict_keys() == list(saved.keys())
    registered = {id(t) for t in _all_tensors(model)}
    for entry in report.entries:
        if entry.expression is None:
            assert entry.in_state_dict and not any(saved[entry.key] is model_t for model_t in _all_tensors(model))
            continue
        if entry.kind == "extra-state":
            continue
        value = eval(entry.expression, {"model": model})
        if entry.in_state_dict:
            assert value is saved[entry.key], entry.key
        else:
            assert id(value) in registered
    params = [p for p in model.parameters() if not isinstance(p, LAZY)]
    assert report.totals.total_params == sum(p.numel() for p in params)
    assert report.totals.trainable_params == sum(p.numel() for p in params if p.requires_grad)
    assert report.totals.state_dict_keys == len(saved)


def _all_tensors(model):
    return ([t for _, t in model.named_parameters(remove_duplicate=False)]
            + [t for _, t in model.named_buffers(remove_duplicate=False)])


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_matches_torchs_state_dict(name):
    model = ZOO[name]()
    assert _all_tensors(model)
    assert_truthful(model, netscope.audit_names(model))


def _codes(report):
    return sorted(f.code for f in report.findings)


def test_dotted_name_collision_is_named_and_points_at_the_saved_tensor():
    model = DottedCollision()
    report = netscope.audit_names(model)
    assert _codes(report) == ["dotted-name", "key-collision", "key-collision"]
    saved = model.state_dict(keep_vars=True)
    winner = model._modules["fc.0"].weight
    assert saved["fc.0.weight"] is winner  # torch keeps the last one written
    collision = next(f for f in report.findings if f.code == "key-collision")
    assert 'keeps only model._modules["fc.0"].weight' in collision.message
    assert "model.fc[0].weight is never saved" in collision.message
    rows = [e for e in report.entries if e.key == "fc.0.weight"]
    assert [(e.expression, e.in_state_dict) for e in rows] == [
        ("model.fc[0].weight", False), ('model._modules["fc.0"].weight', True)]


def test_dotted_name_without_collision():
    report = netscope.audit_names(DottedAlone())
    (finding,) = report.findings
    assert finding.code == "dotted-name" and "`head.proj`" in finding.message
    with pytest.raises(AttributeError):
        DottedAlone().get_submodule("head.proj")  # the finding's claim, checked against torch


def test_numbering_gaps_use_the_table_where_indexing_fails():
    model = NumberingGaps()
    report = netscope.audit_names(model)
    expressions = {e.key: e.expression for e in report.entries}
    assert expressions["blocks.0.weight"] == "model.blocks[0].weight"
    assert expressions["blocks.5.weight"] == 'model.blocks._modules["5"].weight'
    assert expressions["scales.0"] == "model.scales[0]"
    assert expressions["scales.4"] == 'model.scales._parameters["4"]'
    assert expressions["seq.2.weight"] == 'model.seq._modules["2"].weight'  # Sequential[i] is positional
    with pytest.raises(IndexError):
        model.blocks[5]
    with pytest.raises(IndexError):
        model.scales[4]


def test_ligature_names_are_reached_through_the_table():
    model = Ligature()
    report = netscope.audit_names(model)
    entry = next(e for e in report.entries if e.key == "\ufb01lter.weight")
    assert entry.expression == 'model._modules["\\ufb01lter"].weight'
    # what the naive expression would do: Python reads model.ﬁlter as model.filter, another module
    assert eval("model.\ufb01lter", {"model": model}) is model.filter
    (finding,) = report.findings
    assert finding.code == "unnormalised-name" and finding.severity.value == "warning"
    (finding,) = netscope.audit_names(Ligature(twin=False)).findings
    assert finding.code == "unnormalised-name" and finding.severity.value == "info"


def test_state_dict_hooks_are_named_with_what_they_did():
    model = hooked()
    report = netscope.audit_names(model)
    hooks = {f.layer: f for f in report.findings if f.code == "state-dict-hook"}
    assert sorted(hooks) == ["0", "1", "2", "3", "4"]
    assert "_rename" in hooks["0"].message and "saves model[0].weight as `0.w`" in hooks["0"].message
    assert "leaves model[1].bias (`1.bias`) out" in hooks["1"].message
    assert "saves model[2].bias under `2.weight`" in hooks["2"].message
    assert "saves under `3.weight` a value that is not model[3].weight" in hooks["3"].message
    assert "adds `4.version`" in hooks["4"].message
    assert {f.severity.value for l, f in hooks.items() if l in "04"} == {"info"}
    assert {f.severity.value for l, f in hooks.items() if l in "123"} == {"warning"}
    expressions = {e.key: e.expression for e in report.entries if e.in_state_dict}
    assert expressions["2.weight"] == "model[2].bias" and expressions["2.bias"] == "model[2].weight"
    assert expressions["3.weight"] is None  # a new half-precision tensor: no expression reaches it


def test_save_to_state_dict_override_is_named():
    report = netscope.audit_names(nn.Sequential(SavesKernel(2, 2)))
    (finding,) = report.findings
    assert finding.code == "state-dict-hook" and "SavesKernel._save_to_state_dict override" in finding.message
    assert "saves model[0].weight as `0.kernel`" in finding.message and "leaves model[0].bias" in finding.message


def test_shared_storage_is_not_called_tied_and_counts_like_parameters():
    model = SharedStorage()
    report = netscope.audit_names(model)
    by_code = {}
    for f in report.findings:
        by_code.setdefault(f.code, []).append(f)
    (storage,) = by_code["shared-storage"]
    assert "`a`, `b` are 2 distinct tensor objects" in storage.message and "not one tied tensor" in storage.message
    assert "these 3 elements 2 times" in storage.message
    tied = {f.message.split(" are ")[0] for f in by_code["tied-weights"]}
    assert tied == {"`c`, `d`", "`x`, `y`"}
    assert all("several names of one module" in f.message for f in by_code["tied-weights"])
    assert report.totals.total_params == sum(p.numel() for p in model.parameters()) == 3 + 3 + 2


def test_tied_across_modules_wording():
    report = netscope.audit_names(TiedAcrossModules())
    tied = [f for f in report.findings if f.code == "tied-weights"]
    assert len(tied) == 2 and all("shared by 2 modules (tied weights)" in f.message for f in tied)


def test_lazy_modules_are_listed_without_shapes():
    model = nn.Sequential(nn.LazyLinear(3))
    report = netscope.audit_names(model)
    assert [(e.key, e.shape) for e in report.entries] == [("0.weight", None), ("0.bias", None)]
    (finding,) = report.findings
    assert finding.code == "uninitialized" and "LazyLinear" in finding.message
    assert isinstance(model[0].weight, LAZY)  # the audit did not materialise anything


@pytest.mark.parametrize("build", [scripted, traced])
def test_torchscript_has_no_false_unregistered_findings(build):
    assert netscope.audit_names(build()).findings == []


# --- generated module trees -------------------------------------------------------------------------

_LEAF_KINDS = st.sampled_from(["linear", "bn", "param", "buffer", "np-buffer", "tie", "tie-buffer", "empty"])
_CONTAINERS = st.sampled_from(["module", "sequential", "named-sequential", "modulelist", "moduledict",
                               "parameterlist", "parameterdict"])
_NAMES = st.sampled_from(["a", "b", "x.y", "3", "0", "\ufb01", "blk", "my-layer"])


@st.composite
def trees(draw, depth=0):
    """A recipe: (container kind, [(name, child recipe or leaf kind)], gaps) as plain data."""
    kind = draw(_CONTAINERS) if depth < 3 else "module"
    count = draw(st.integers(0, 4))
    children = []
    for _ in range(count):
        if depth < 3 and draw(st.booleans()):
            children.append((draw(_NAMES), draw(trees(depth=depth + 1))))
        else:
            children.append((draw(_NAMES), draw(_LEAF_KINDS)))
    return kind, children, draw(st.booleans())


def build(recipe, pool):
    """Build a module tree from a recipe; ``pool`` collects tensors so later leaves can tie to them."""
    kind, children, gaps = recipe
    module = {"module": nn.Module, "sequential": nn.Sequential, "named-sequential": nn.Sequential,
              "modulelist": nn.ModuleList, "moduledict": nn.ModuleDict, "parameterlist": nn.ParameterList,
              "parameterdict": nn.ParameterDict}[kind]()
    for position, (name, child) in enumerate(children):
        if kind in ("sequential", "modulelist", "parameterlist"):
            name = str(position * 2 if gaps else position)
        _attach(module, name, child, pool)
    return module


def _attach(module, name, child, pool):
    if name in module._modules or name in module._parameters or name in module._buffers:
        return  # torch refuses a second registration under one name
    if isinstance(child, tuple):
        module._modules[name] = build(child, pool)
    elif child == "linear":
        module._modules[name] = nn.Linear(2, 3)
    elif child == "bn":
        module._modules[name] = nn.BatchNorm1d(2)
    elif child in ("param", "tie") and "." not in name:
        param = pool["params"][-1] if child == "tie" and pool["params"] else nn.Parameter(torch.randn(len(pool["params"]) + 1))
        pool["params"].append(param)
        module.register_parameter(name, param)
    elif child in ("buffer", "np-buffer", "tie-buffer") and "." not in name:
        buf = pool["buffers"][-1] if child == "tie-buffer" and pool["buffers"] else torch.randn(2)
        pool["buffers"].append(buf)
        module.register_buffer(name, buf, persistent=(child != "np-buffer"))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees())
def test_generated_trees_match_torchs_state_dict(recipe):
    model = build(recipe, {"params": [], "buffers": []})
    if not model._modules and not model._parameters and not model._buffers:
        return
    report = netscope.audit_names(model)
    assert_truthful(model, report)
    saved = model.state_dict()
    if len(saved) < len(list(model.named_parameters(remove_duplicate=False))) + sum(
            1 for m in model.modules() for n in m._buffers if n not in m._non_persistent_buffers_set):
        assert "key-collision" in {f.code for f in report.findings}  # a key lost to a collision is named


# --- the CLI's no-memory build (issue 15) --------------------------------------------------------------

def naming_truth_model(name):
    """A zoo model by name, for the CLI (``test_naming_truth:naming_truth_model -a name=...``)."""
    return ZOO[name]()


@pytest.mark.parametrize("name", sorted(set(ZOO) - {"scripted resnet18", "traced resnet18"}))
def test_cli_no_memory_build_matches_the_api_on_the_zoo(name, capsys):
    from netscope.cli import main

    assert main(["names", "test_naming_truth:naming_truth_model", "-a", f"name={name!r}", "--format", "json"]) == 0
    out, err = capsys.readouterr()
    import json

    cli = json.loads(out)
    api = netscope.audit_names(ZOO[name]()).to_dict()
    assert err == ""
    for part in ("entries", "findings", "totals"):
        assert cli[part] == api[part], part


CONSTRUCTORS = '''
import torch
import torch.nn as nn

class ReadsValue(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.scale = float(self.fc.weight.detach().abs().max())

    def forward(self, x):
        return self.fc(x) * self.scale

class MixesDevices(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.register_buffer("table", torch.cat([self.fc.bias.detach(), torch.ones(4)]))
        self.head = nn.Linear(4, 2)
        self.tied = nn.Linear(4, 2)
        self.tied.weight = self.head.weight

    def forward(self, x):
        return self.head(self.fc(x) + self.table[:4]) + self.tied(x)

class Lazy(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.LazyConv2d(4, 3)
        self.fc = nn.LazyLinear(3)
        shared = torch.zeros(2)
        self.register_buffer("x", shared)
        self.register_buffer("y", shared)
'''


@pytest.fixture()
def constructors(tmp_path):
    path = tmp_path / "constructors.py"
    path.write_text(CONSTRUCTORS)
    return path


@pytest.mark.parametrize("cls, build", [("ReadsValue", "cpu"), ("MixesDevices", "fake"), ("Lazy", "meta")])
def test_no_memory_build_falls_back_and_says_which(constructors, cls, build, capsys):
    import json

    from netscope.cli import main
    from netscope.run.no_memory import BUILD_DESCRIPTIONS
    from netscope.models.specs import resolve_model

    spec = f"{constructors}:{cls}"
    resolved = resolve_model(spec, empty_weights=True)
    assert resolved.build == build
    devices = {t.device.type for t in resolved.module.state_dict().values()}
    assert devices == ({"cpu"} if build == "cpu" else {"meta"})
    from torch._subclasses.fake_tensor import FakeTensor

    assert not any(isinstance(t, FakeTensor) for t in resolved.module.state_dict().values())
    assert main(["names", spec, "--format", "json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["build"] == build
    if build == "meta":
        assert err == ""
    else:
        assert f"built with {BUILD_DESCRIPTIONS[build]} instead" in err and err.count("\n") == 1
    namespace = {}
    exec(compile(CONSTRUCTORS, str(constructors), "exec"), namespace)
    api = netscope.audit_names(namespace[cls]()).to_dict()
    cli = json.loads(out)
    for part in ("entries", "findings", "totals"):
        assert cli[part] == api[part], part


def test_lazy_modules_built_without_memory_materialise_on_meta():
    from netscope.run.no_memory import empty_weights

    with empty_weights():
        model = nn.Sequential(nn.LazyLinear(3))
    assert isinstance(model[0].weight, LAZY) and model[0].weight.device.type == "meta"
    model(torch.zeros(2, 5, device="meta"))
    assert model[0].weight.shape == (3, 5) and model[0].weight.device.type == "meta"


def test_no_memory_build_keeps_storage_sharing_without_keeping_memory():
    from netscope.run.no_memory import empty_weights

    with empty_weights():
        model = SharedStorage()
        fresh = [nn.Linear(64, 64) for _ in range(8)]  # freed CPU originals: recycled addresses must not alias
    assert model.a is not model.b and model.a.untyped_storage()._cdata == model.b.untyped_storage()._cdata
    assert model.c is model.d and model.x is model.y
    storages = {layer.weight.untyped_storage()._cdata for layer in fresh}
    assert len(storages) == 8
    assert _codes(netscope.audit_names(model)) == _codes(netscope.audit_names(SharedStorage()))


def test_no_memory_build_skips_parameter_initialisation():
    import subprocess
    import sys

    code = ("import sys, torch.nn as nn\n"
            "from netscope.run.no_memory import empty_weights\n"
            "with empty_weights():\n"
            "    nn.Embedding(1000, 64); nn.Linear(8, 8); nn.Conv2d(3, 8, 3)\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"  # meta normal_ would have imported torch._dynamo


def test_a_bad_spec_is_not_retried(capsys):
    from netscope.cli import main

    assert main(["names", "no_such_model_xyz"]) == 2
    assert "could not be built without memory" not in capsys.readouterr().err


SCRIPTED = '''
import warnings
import torch
import torch.nn as nn

def traced():
    warnings.simplefilter("ignore")
    return torch.jit.trace(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)), torch.zeros(1, 4))
'''


def test_cli_names_on_a_traced_module(tmp_path, capsys):
    """Tracing cannot run on meta or fake weights: the CLI says so, builds for real, finds nothing false."""
    from netscope.cli import main

    path = tmp_path / "scripted.py"
    path.write_text(SCRIPTED)
    assert main(["names", f"{path}:traced", "--format", "json"]) == 0
    out, err = capsys.readouterr()
    import json

    data = json.loads(out)
    assert "built with real weights on the CPU instead" in err
    assert data["findings"] == []
    assert [e["key"] for e in data["entries"]] == ["0.weight", "0.bias", "2.weight", "2.bias"]


@pytest.mark.parametrize("cls, build", [("ReadsValue", "cpu"), ("MixesDevices", "fake")])
def test_diff_and_remap_run_on_the_fallback_build(constructors, tmp_path, cls, build, capsys):
    from netscope.cli import main
    from netscope.run.no_memory import BUILD_DESCRIPTIONS

    namespace = {}
    exec(compile(CONSTRUCTORS, str(constructors), "exec"), namespace)
    source = namespace[cls]()
    checkpoint, output = tmp_path / "ckpt.pt", tmp_path / "fixed.pt"
    torch.save({"module." + k: v for k, v in source.state_dict().items()}, checkpoint)
    assert main(["diff", str(checkpoint), f"{constructors}:{cls}"]) in (0, 1)
    assert f"built with {BUILD_DESCRIPTIONS[build]} instead" in capsys.readouterr().err
    assert main(["remap", str(checkpoint), f"{constructors}:{cls}", "-o", str(output)]) == 0
    assert f"built with {BUILD_DESCRIPTIONS[build]} instead" in capsys.readouterr().err
    target = namespace[cls]()
    target.load_state_dict(torch.load(output, weights_only=True), strict=True)
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def _overlap_by_writing(model, first, second):
    """The independent truth: writing through one view changes the other."""
    a, b = getattr(model, first), getattr(model, second)
    before = b.detach().clone()
    with torch.no_grad():
        a.add_(1)
    changed = not torch.equal(before, b.detach())
    with torch.no_grad():
        a.sub_(1)
    return changed


def test_overlapping_views_are_named_exactly_as_writing_shows():
    model = OverlappingViews()
    report = netscope.audit_names(model)
    (first, second) = [f for f in report.findings if f.code == "overlapping-views"]
    flagged = set()
    for finding in (first, second):
        flagged |= {tuple(pair.split("` with `")) for pair in
                    (p.strip("` ") for p in finding.message.split("(", 1)[1].split(")")[0].split(", "))}
    names = ["a", "b", "c", "even", "odd", "row"]
    truth = {(x, y) for i, x in enumerate(names) for y in names[i + 1:]
             if _overlap_by_writing(model, x, y)}
    assert flagged == truth == {("a", "b"), ("even", "row"), ("odd", "row")}
    assert report.totals.total_params == sum(p.numel() for p in model.parameters())
    assert_truthful(model, report)


def test_one_module_under_a_dotted_alias_is_not_a_collision():
    class SameModule(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Sequential(nn.Linear(2, 2))
            setattr(self, "fc.0", self.fc[0])  # the very same module: both paths give one key per tensor

    model = SameModule()
    report = netscope.audit_names(model)
    assert_truthful(model, report)
    assert "key-collision" not in _codes(report) and "dotted-name" in _codes(report)


def test_hook_findings_follow_the_module_order():
    report = netscope.audit_names(hooked())
    assert [f.layer for f in report.findings if f.code == "state-dict-hook"] == ["0", "1", "2", "3", "4"]


@pytest.mark.parametrize("cls", ["ReadsValue", "MixesDevices"])
def test_summary_on_meta_runs_on_the_fallback_build(constructors, cls, capsys):
    """The fallback builds end as ordinary meta (or real) models, so a meta summary runs on them."""
    from netscope.cli import main

    assert main(["summary", f"{constructors}:{cls}", "--device", "meta", "-i", "1,4", "--format", "json"]) == 0
    import json

    data = json.loads(capsys.readouterr().out)
    namespace = {}
    exec(compile(CONSTRUCTORS, str(constructors), "exec"), namespace)
    model = namespace[cls]()
    assert data["totals"]["total_params"] == sum(p.numel() for p in model.parameters())


def test_an_object_that_only_claims_to_be_a_module_is_not_walked():
    """A ``Mock(spec=nn.Module)`` kept as an attribute passes isinstance(nn.Module) but holds no modules: the audit
    (summary's and names') neither raises on it nor calls it unregistered; a real module kept in a list still is."""
    from unittest import mock

    class Holder(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            object.__setattr__(self, "helper", mock.Mock(spec=nn.Module))  # (nn.Module.__setattr__ would register it)
            self.kept = [nn.Linear(2, 2)]

        def forward(self, x):
            return self.fc(x)

    model = Holder()
    assert "helper" not in model._modules and isinstance(model.helper, nn.Module)
    for findings in (netscope.summary(model, input_size=(1, 4)).findings, netscope.audit_names(model).findings):
        unregistered = [f for f in findings if f.code == "unregistered-module"]
        assert len(unregistered) == 1 and "kept" in unregistered[0].message and "helper" not in unregistered[0].message
