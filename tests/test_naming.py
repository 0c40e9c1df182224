"""State_dict naming audit (issue 4): origins, expressions, findings, totals, CLI."""

from __future__ import annotations

import gc
import json
import sys
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torchvision
from torch.nn.utils.parametrizations import weight_norm

import netscope
from netscope.records import Severity
from netscope.cli import main
from netscope.errors import UsageError
from netscope.run.no_memory import empty_weights
from netscope.naming.findings import suggested_names

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from naming_audit import LocalConvs, Stages, TinyLM  # noqa: E402  (the runnable example's models)

TENSOR_KINDS = ("parameter", "buffer", "non-persistent-buffer")


# --- models ---------------------------------------------------------------------------------------

class Containers(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleDict({"a": nn.Linear(3, 3), "b": nn.Linear(3, 2)})
        self.layers = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2)])
        self.plist = nn.ParameterList([nn.Parameter(torch.zeros(4)), nn.Parameter(torch.zeros(2, 2))])
        self.pdict = nn.ParameterDict({"scale": nn.Parameter(torch.ones(3)), "shift": nn.Parameter(torch.zeros(3))})
        self.named_seq = nn.Sequential(OrderedDict([("conv", nn.Conv2d(1, 1, 1)), ("act", nn.ReLU())]))
        self.add_module("my-layer", nn.Linear(1, 1))  # not a Python identifier
        self.gapped = nn.Sequential()
        self.gapped.add_module("3", nn.Linear(1, 1))  # Sequential[3] would be out of range
        self.register_buffer("step", torch.zeros((), dtype=torch.long))


class Strays(nn.Module):
    """Plain-container and plain-attribute mistakes, plus legitimate references that must not be flagged."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 4)
        self.extra = [nn.Parameter(torch.zeros(5)), nn.Parameter(torch.zeros(2, 3))]
        self.scale = torch.ones(3)
        self.nested = {"heads": [nn.Linear(4, 2), nn.Linear(4, 3)]}
        self.back_refs = [self.body]  # registered elsewhere: a deliberate non-owning reference
        self.shapes = [(1, 2), {"k": "v"}]  # no tensors at all
        self.body.register_forward_hook(lambda *args: None)


class WithExtraState(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 2)

    def get_extra_state(self):
        return {"version": 2}

    def set_extra_state(self, state):
        pass


def checkpointed():
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    return nn.Sequential(nn.Linear(2, 3), checkpoint_wrapper(nn.Linear(3, 4)))


def with_hook_key():
    model = nn.Linear(2, 2)

    def add_key(module, state_dict, prefix, local_metadata):
        state_dict[prefix + "meta.version"] = torch.tensor(3)

    model._register_state_dict_hook(add_key)
    return model


def nested_numbered():
    return nn.Sequential(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()), nn.Flatten())


class Shadowed(nn.Module):
    """A child registered under a name that a property of the class hides: ``model.head`` is not it."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(2, 2)  # nn.Module.__setattr__ registers it in _modules all the same
        self.other = nn.Linear(2, 3)

    @property
    def head(self):
        return self.other


class ReversedList(nn.ModuleList):
    """A container subclass whose [] is not torch's: [0] is the last child."""

    def __getitem__(self, index):
        return super().__getitem__(len(self) - 1 - index) if isinstance(index, int) else super().__getitem__(index)


class CaseFoldingDict(nn.ModuleDict):
    def __getitem__(self, key):
        return super().__getitem__(key.upper() if key.upper() in self._modules else key)


def own_indexing():
    return nn.Sequential(ReversedList([nn.Linear(1, 1), nn.Linear(1, 2)]),
                         CaseFoldingDict({"a": nn.Linear(2, 2), "A": nn.Linear(2, 3)}))


def empty_names():
    """Children and a parameter registered under '' through the tables (add_module refuses '')."""
    model = nn.Module()
    model._modules[""] = nn.Linear(1, 1)
    model.b = nn.Linear(1, 1)
    model.b._modules[""] = nn.Linear(1, 2)
    model.b._parameters[""] = nn.Parameter(torch.ones(1))
    return model


TEST_MODELS = {
    "nested DataParallel": lambda: nn.DataParallel(Stages()),
    "local convs": LocalConvs,
    "compiled": lambda: torch.compile(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))),
    "weight_norm": lambda: nn.Sequential(weight_norm(nn.Linear(4, 8)), nn.ReLU()),
    "tied": TinyLM,
    "containers": Containers,
    "strays": Strays,
    "extra state": WithExtraState,
    "checkpoint wrapper": checkpointed,
    "hook key": with_hook_key,
    "shadowed": Shadowed,
    "own indexing": own_indexing,
    "empty names": empty_names,
    "nested numbered": nested_numbered,
    "old spectral_norm": lambda: nn.utils.spectral_norm(nn.Linear(3, 3)),
    "resnet18": lambda: torchvision.models.resnet18(weights=None),
    "vit_b_16": lambda: torchvision.models.vit_b_16(weights=None),
    "mobilenet_v3_small": lambda: torchvision.models.mobilenet_v3_small(weights=None),
}


def entry(report, key):
    (found,) = [e for e in report.entries if e.key == key]
    return found


def codes(report):
    return [f.code for f in report.findings]


# --- invariants over every model ------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(TEST_MODELS))
def test_keys_and_expressions_match_the_real_model(name):
    model = TEST_MODELS[name]()
    report = netscope.audit_names(model)
    assert report.state_dict_keys() == list(model.state_dict().keys())
    for e in report.entries:
        if e.kind in TENSOR_KINDS:
            assert eval(e.expression, {"model": model}) is _tensor_behind(model, e), e.key
    unique_params = {id(p): p for p in model.parameters()}
    assert report.totals.total_params == sum(p.numel() for p in unique_params.values())
    assert report.totals.trainable_params == sum(p.numel() for p in unique_params.values() if p.requires_grad)
    assert report.totals.findings == report.findings_count == len(report.findings)
    assert json.loads(report.render("json"))["totals"] == report.totals.to_dict()


def _tensor_behind(model, e):
    """The tensor an entry names, found independently of its expression."""
    if e.in_state_dict:
        return model.state_dict(keep_vars=True)[e.key]
    named = dict(model.named_buffers(remove_duplicate=False))
    named.update(model.named_parameters(remove_duplicate=False))
    if e.key in named:
        return named[e.key]
    obj = model  # an unregistered tensor: follow the plain containers by hand
    for segment in e.segments:
        if isinstance(obj, dict):
            obj = obj[int(segment.text) if int in map(type, obj) else segment.text]
        elif isinstance(obj, (list, tuple)):
            obj = obj[int(segment.text)]
        else:
            obj = getattr(obj, segment.text)
    return obj


def test_audit_leaves_the_model_untouched():
    model = Strays().train()
    model.body.eval()
    before = (
        [m.training for m in model.modules()],
        [(p.requires_grad, p.device) for p in model.parameters()],
        len(model.body._forward_hooks),
        torch.get_rng_state(),
    )
    netscope.audit_names(model)
    after = (
        [m.training for m in model.modules()],
        [(p.requires_grad, p.device) for p in model.parameters()],
        len(model.body._forward_hooks),
        torch.get_rng_state(),
    )
    assert before[:3] == after[:3]
    assert torch.equal(before[3], after[3])
    assert gc.isenabled()


# --- acceptance examples from the issue -----------------------------------------------------------

def test_nested_data_parallel_origins_and_alias_groups():
    model = nn.DataParallel(Stages())
    report = netscope.audit_names(model)
    assert entry(report, "module.stage2.module.0.weight").origins == (
        "wrapper:DataParallel", "attribute", "wrapper:DataParallel", "sequential-index", "parameter")
    assert entry(report, "module.stage2.module.0.weight").expression == "model.module.stage2.module[0].weight"
    groups = {}
    for e in report.entries:
        groups.setdefault(e.alias_group, set()).add(e.key)
    assert groups[entry(report, "module.conv1.weight").alias_group] == {
        "module.conv1.weight", "module.stage1.0.weight", "module.stage2.module.0.weight"}
    assert len(groups) == 7 and None not in groups  # conv 2 + batchnorm 5 tensors, each with 3 names
    assert report.totals.state_dict_keys == 21 and report.totals.unique_saved_tensors == 7
    alias = [f for f in report.findings if f.code == "alias"]
    assert [f.layer for f in alias] == ["module.conv1", "module.bn1", "module.stage1"]
    assert "`module.conv1`, `module.stage1.0`, `module.stage2.module.0`" in alias[0].message
    (wrapper,) = [f for f in report.findings if f.code == "wrapper-prefix"]
    assert "`module.conv1.weight` becomes `conv1.weight`" in wrapper.message
    assert "`module.stage2.module.0.weight` becomes `module.stage2.0.weight`" in wrapper.message
    assert "consume_prefix_in_state_dict_if_present" in wrapper.fix


def test_convs_in_a_plain_dict_are_flagged_with_the_missed_parameter_count():
    model = LocalConvs()
    report = netscope.audit_names(model)
    missed = sum(p.numel() for conv in model.local.values() for p in conv.parameters())
    assert missed == 3 * (4 * 4 * 3 * 3 + 4)
    (finding,) = report.findings
    assert finding.code == "unregistered-module"
    assert f"{missed:,} parameters" in finding.message and "3x Conv2d" in finding.message
    assert "ModuleDict" in finding.fix
    assert report.totals.unregistered_params == missed
    assert report.totals.total_params == sum(p.numel() for p in model.parameters())
    unsaved = [e for e in report.entries if not e.in_state_dict]
    assert [e.expression for e in unsaved][:2] == ["model.local[0].weight", "model.local[0].bias"]
    assert len(unsaved) == 6


def test_compiled_model_prefix_is_recognised_without_compiling():
    model = torch.compile(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)))
    report = netscope.audit_names(model)
    assert entry(report, "_orig_mod.2.bias").origins == ("wrapper:torch.compile", "sequential-index", "parameter")
    (finding,) = report.findings
    assert finding.code == "wrapper-prefix" and "`_orig_mod.0.weight` becomes `0.weight`" in finding.message


def test_weight_norm_parametrization_segments():
    model = nn.Sequential(weight_norm(nn.Linear(4, 8)), nn.ReLU())
    report = netscope.audit_names(model)
    for key in ("0.parametrizations.weight.original0", "0.parametrizations.weight.original1"):
        assert entry(report, key).origins == ("sequential-index", "parametrization", "parametrization", "parameter")
    assert entry(report, "0.bias").origins == ("sequential-index", "parameter")
    assert report.findings == []


# --- segment origins ------------------------------------------------------------------------------

def test_container_origins_and_expressions():
    report = netscope.audit_names(Containers())
    expected = {
        "blocks.a.weight": (("attribute", "moduledict-key", "parameter"), 'model.blocks["a"].weight'),
        "layers.1.bias": (("attribute", "modulelist-index", "parameter"), "model.layers[1].bias"),
        "plist.1": (("attribute", "parameterlist-index"), "model.plist[1]"),
        "pdict.shift": (("attribute", "parameterdict-key"), 'model.pdict["shift"]'),
        "named_seq.conv.weight": (("attribute", "attribute", "parameter"), "model.named_seq.conv.weight"),
        "my-layer.weight": (("attribute", "parameter"), 'model._modules["my-layer"].weight'),
        "step": (("buffer",), "model.step"),
        "gapped.3.bias": (("attribute", "sequential-index", "parameter"), 'model.gapped._modules["3"].bias'),
    }
    for key, (origins, expression) in expected.items():
        assert (entry(report, key).origins, entry(report, key).expression) == (origins, expression)
    assert entry(report, "plist.1").shape == (2, 2) and entry(report, "step").dtype == "int64"
    assert entry(report, "step").trainable is False and entry(report, "plist.1").trainable is True


def test_activation_checkpoint_wrapper_segment_is_stripped_by_its_hook():
    model = checkpointed()
    report = netscope.audit_names(model)
    e = entry(report, "1.weight")  # the saved key lacks the wrapper segment
    assert [s.text for s in e.segments] == ["1", "_checkpoint_wrapped_module", "weight"]
    assert e.origins == ("sequential-index", "wrapper:activation-checkpoint", "parameter")
    assert e.in_state_dict
    assert "wrapper-prefix" in codes(report)


def test_extra_state_and_hook_added_keys_are_listed():
    report = netscope.audit_names(WithExtraState())
    assert entry(report, "_extra_state").kind == "extra-state"
    report = netscope.audit_names(with_hook_key())
    added = entry(report, "meta.version")
    assert added.kind == "state-dict-hook" and added.expression is None and added.in_state_dict


def test_a_key_a_hook_adds_inside_a_module_keeps_that_module_path_origins():
    model = nn.Sequential(nn.ModuleDict({"block": with_hook_key()}))
    report = netscope.audit_names(model)
    added = entry(report, "0.block.meta.version")
    assert model.get_submodule("0.block") is model[0]["block"]  # the hook ran with prefix "0.block."
    registered = entry(report, "0.block.weight")  # the hooked module's own key: its path's origins
    assert added.origins == registered.origins[:2] + ("state-dict-hook", "state-dict-hook")
    assert added.kind == "state-dict-hook" and added.expression is None
    assert entry(netscope.audit_names(with_hook_key()), "meta.version").origins == ("state-dict-hook",) * 2


def test_a_registered_name_a_class_attribute_hides_is_reached_through_its_table_and_named():
    model = Shadowed()
    assert model.head is model.other and model.get_submodule("head") is model.other  # what attribute access gives
    registered = dict(model.named_modules())["head"]  # walks _modules, as state_dict does
    report = netscope.audit_names(model)
    e = entry(report, "head.weight")
    assert e.expression == 'model._modules["head"].weight'
    assert eval(e.expression, {"model": model}) is registered.weight is model.state_dict(keep_vars=True)["head.weight"]
    (finding,) = [f for f in report.findings if f.code == "shadowed-name"]
    assert finding.severity.value == "warning" and finding.layer == "head"
    assert "Shadowed.head (property)" in finding.message
    assert entry(report, "other.weight").expression == "model.other.weight"  # nothing hides `other`


# --- findings -------------------------------------------------------------------------------------

def test_tied_embedding_is_one_finding_and_counted_once():
    model = TinyLM()
    report = netscope.audit_names(model)
    tied = [f for f in report.findings if f.code == "tied-weights"]
    assert len(tied) == 1 and "`embed.weight`, `head.weight`" in tied[0].message
    assert entry(report, "embed.weight").alias_group == entry(report, "head.weight").alias_group is not None
    assert report.totals.total_params == 100 * 16 + 2 * (16 * 16 + 16)
    assert report.totals.unique_saved_tensors == report.totals.state_dict_keys - 1


class ParameterAlsoABuffer(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(2, 2)
        self.register_buffer("w_copy", self.a.weight)


class SavesItsScratch(nn.Module):
    """A _save_to_state_dict override that saves a non-persistent buffer all the same."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))
        self.register_buffer("scratch", torch.ones(2), persistent=False)

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        destination[prefix + "scratch"] = self.scratch if keep_vars else self.scratch.detach()


def test_a_non_persistent_buffer_an_override_saves_is_not_said_to_be_left_out():
    model = nn.Sequential(SavesItsScratch())
    assert "0.scratch" in model.state_dict()  # the oracle: torch's own state_dict
    report = netscope.audit_names(model)
    assert entry(report, "0.scratch").in_state_dict
    assert "non-persistent-buffer" not in codes(report)
    (hook,) = [f for f in report.findings if f.code == "state-dict-hook"]
    assert "saves the non-persistent buffer model[0].scratch, which state_dict() itself leaves out, as `0.scratch`" \
        in hook.message and "SavesItsScratch._save_to_state_dict override" in hook.message


class CachesAView(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.wt = self.lin.weight.data.t()  # a view of the registered weight, kept as a plain attribute
        self.other = torch.zeros(2)


def test_a_plain_tensor_over_a_registered_tensors_memory_is_told_apart():
    model = CachesAView()
    by_layer = {f.message.split(" is ")[0]: f for f in netscope.audit_names(model).findings
                if f.code == "plain-tensor-attribute"}
    view, plain = by_layer["model.wt"], by_layer["model.other"]
    assert "over the memory of `lin.weight`" in view.message and "does not save or load" in plain.message
    # the oracles for what the message claims: loading writes through the registered tensor ...
    model.load_state_dict({"lin.weight": torch.full((2, 3), 7.0), "lin.bias": torch.zeros(2)})
    assert torch.equal(model.wt, torch.full((3, 2), 7.0))
    # ... and converting gives the registered tensor new memory, leaving the view on the old one
    model.half()
    assert model.wt.dtype == torch.float32 and model.wt.untyped_storage().data_ptr() != \
        model.lin.weight.untyped_storage().data_ptr()


def test_a_wrapper_whose_own_state_dict_unwraps_is_not_said_to_prefix_or_duplicate_keys():
    fabric = pytest.importorskip("lightning.fabric", reason="Lightning Fabric is not installed")
    model = fabric.Fabric(accelerator="cpu", devices=1).setup_module(nn.Sequential(nn.Linear(2, 2)))
    keys = list(model.state_dict())
    assert keys == ["0.weight", "0.bias"]  # the oracle: _FabricModule.state_dict gives the unwrapped keys
    report = netscope.audit_names(model)
    assert report.state_dict_keys() == keys
    by_code = {f.code: f for f in report.findings}
    wrapper = by_code["wrapper-prefix"].message
    assert "`_forward_module.0.weight` is saved as `0.weight`" in wrapper and "becomes ``" not in wrapper
    alias = by_code["alias"].message  # _forward_module and _original_module are one module ...
    assert "under one of those paths only (e.g. `0.weight`" in alias  # ... whose keys are saved once
    assert not any(k.startswith(("_forward_module.", "_original_module.")) for k in keys)
    assert "(the same tensor is saved as `0.weight`)" in by_code["state-dict-hook"].message


class KeepsHandles(nn.Module):
    """Unregistered modules that only wrap registered ones, beside one that does not."""

    def __init__(self):
        super().__init__()
        self.net = nn.Linear(2, 2)
        self.__dict__["views"] = [nn.Sequential(self.net)]  # a grouping of a registered module
        self.__dict__["drops"] = [nn.Dropout(0.5)]  # a module of its own, outside the tree


def test_unregistered_modules_that_only_wrap_registered_ones_are_told_apart():
    model = KeepsHandles()
    by_layer = {f.message.split(" is ")[0]: f for f in netscope.audit_names(model).findings
                if f.code == "unregistered-module"}
    views, drops = by_layer["model.views"], by_layer["model.drops"]
    # oracles: torch reaches every tensor of the wrapper ...
    assert {id(p) for p in model.views[0].parameters()} <= {id(p) for p in model.parameters()}
    assert views.severity.value == "info" and "every parameter and buffer below is registered" in views.message
    # ... but not a module of its own: eval() leaves the stray Dropout in training mode
    model.eval()
    assert model.drops[0].training
    assert drops.severity.value == "warning" and "does not save" in drops.message


def test_a_hook_that_saves_detached_tensors_saves_the_registered_data():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))

    def detach(module, state_dict, prefix, local_metadata):  # what state_dict() does itself without keep_vars
        for key in [k for k in state_dict if k.startswith(prefix)]:
            state_dict[key] = state_dict[key].detach()

    def detach_and_rename(module, state_dict, prefix, local_metadata):
        state_dict[prefix + "w"] = state_dict.pop(prefix + "weight").detach()

    model[0]._register_state_dict_hook(detach)
    model[1]._register_state_dict_hook(detach_and_rename)
    saved = model.state_dict(keep_vars=True)
    # the oracle: the saved values are the parameters' very data, not copies
    assert saved["0.weight"] is not model[0].weight
    assert saved["0.weight"].data_ptr() == model[0].weight.data_ptr()
    assert saved["1.w"].data_ptr() == model[1].weight.data_ptr()
    report = netscope.audit_names(model)
    assert report.state_dict_keys() == list(saved)
    assert [e.key for e in report.entries] == list(saved)  # no unsaved parameter rows, no unexplained keys
    assert entry(report, "1.w").expression == "model[1].weight"
    (hook,) = [f for f in report.findings if f.code == "state-dict-hook"]
    assert hook.severity.value == "info" and "saves model[1].weight as `1.w`" in hook.message
    assert "not model[0]" not in hook.message and report.totals.aliased_tensors == 0


STATE_DICT_RAISES = """
import torch.nn as nn


class NeedsAGroup(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2)
        self._register_state_dict_hook(self.gather)

    @staticmethod
    def gather(module, state_dict, prefix, local_metadata):
        raise RuntimeError("hook needs a process group")

    def forward(self, x):
        return self.lin(x)
"""


def test_a_state_dict_that_raises_is_one_error_paragraph_and_a_summary_finding(tmp_path, capsys):
    from netscope.cli import main
    from netscope.errors import StateDictError

    path = tmp_path / "needs_group.py"
    path.write_text(STATE_DICT_RAISES)
    namespace = {}
    exec(compile(STATE_DICT_RAISES, str(path), "exec"), namespace)
    model = namespace["NeedsAGroup"]()
    with pytest.raises(RuntimeError, match="process group"):  # the oracle: torch's own state_dict()
        model.state_dict()
    with pytest.raises(StateDictError, match="state_dict\\(\\) raised RuntimeError: hook needs a process group"):
        netscope.audit_names(model)
    assert main(["names", f"{path}:NeedsAGroup", "-q"]) == 3
    err = capsys.readouterr().err
    assert "hook needs a process group" in err and "Traceback" not in err
    report = netscope.summary(model, (1, 2))  # the summary stands; the finding says why the audit is missing
    assert [f.code for f in report.findings] == ["state-dict-raised"]


def test_empty_registration_names_make_the_keys_torch_makes_and_are_named():
    model = empty_names()
    keys = list(model.state_dict())
    assert keys[:2] == [".weight", ".bias"] and "b." in keys and "b..weight" in keys  # the oracle: torch's keys
    report = netscope.audit_names(model)
    assert report.state_dict_keys() == keys
    assert "state-dict-hook" not in codes(report)  # nothing renamed them: these are the paths
    empty = [f for f in report.findings if f.code == "empty-name"]
    assert sorted(f.layer for f in empty) == ["", "b.", "b."]  # two modules and the parameter
    assert [n for n, _ in model.named_modules()][:2] == ["", ""] and model.get_submodule("") is model
    assert "get_submodule('') returns the root" in next(f.message for f in empty if f.layer == "")


class HasAModelChild(nn.Module):
    """A user model with its own child called `model` (as transformers' *ForCausalLM have)."""

    def __init__(self):
        super().__init__()
        self.model = nn.Sequential(nn.Linear(4, 4))
        self.head = nn.Linear(4, 2)


def test_peft_models_two_segment_prefix_is_one_wrapper_and_an_inner_model_child_is_not():
    peft = pytest.importorskip("peft", reason="peft is not installed")
    wrapped = peft.get_peft_model(HasAModelChild(), peft.LoraConfig(target_modules=["head"], r=2))
    report = netscope.audit_names(wrapped)
    assert report.state_dict_keys() == list(wrapped.state_dict())
    e = entry(report, "base_model.model.model.0.weight")
    assert e.origins[:3] == ("wrapper:peft PeftModel", "wrapper:peft PeftModel", "attribute")
    (finding,) = [f for f in report.findings if f.code == "wrapper-prefix" and "PeftModel" in f.message]
    # the oracle for the unwrapped key: the wrapped model's own state_dict
    unwrapped = finding.message.split("becomes `")[1].split("`")[0]
    assert unwrapped in wrapped.base_model.model.state_dict() and "at `base_model.model.`;" in finding.message


class SharedActivation(nn.Module):
    """One ReLU under two names (prepare_fx does this with a fused conv's activation)."""

    def __init__(self):
        super().__init__()
        self.relu = nn.ReLU()
        self.block = nn.Sequential(nn.Linear(2, 2), self.relu)


def test_an_aliased_module_without_state_dict_keys_is_not_said_to_duplicate_keys():
    model = SharedActivation()
    assert model.relu.state_dict() == {}  # the oracle: torch saves nothing for it
    (alias,) = [f for f in netscope.audit_names(model).findings if f.code == "alias"]
    assert "`relu`, `block.1`" in alias.message
    assert "no state_dict keys" in alias.message and "load_state_dict" not in alias.message
    shared = nn.Linear(2, 2)
    shared.register_buffer("scratch", torch.zeros(2), persistent=False)
    model = nn.ModuleDict({"a": shared, "b": shared})
    (alias,) = [f for f in netscope.audit_names(model).findings if f.code == "alias"]
    assert len(shared.state_dict()) == 2 and "Each of its 2 state_dict keys appears under 2 paths" in alias.message


def test_a_parameter_also_registered_as_a_buffer_is_named_as_both_and_counted_as_torch_counts_it():
    model = ParameterAlsoABuffer()
    report = netscope.audit_names(model)
    (tied,) = [f for f in report.findings if f.code == "tied-weights"]
    assert isinstance(model.w_copy, nn.Parameter)  # the object is a Parameter, whatever slot holds it
    assert "one nn.Parameter object" in tied.message and "one buffer object" not in tied.message
    assert "as a parameter (`a.weight`) and as a buffer (`w_copy`)" in tied.message
    # the oracle for the counting claim: torch's own parameters() and buffers()
    assert report.totals.total_params == sum(p.numel() for p in model.parameters()) == 6
    assert report.totals.buffer_elements == sum(b.numel() for b in model.buffers()) == 4


def test_non_persistent_buffer_is_listed_but_not_saved():
    report = netscope.audit_names(TinyLM())
    e = entry(report, "position_ids")
    assert (e.kind, e.in_state_dict, e.shape) == ("non-persistent-buffer", False, (32,))
    assert [f.layer for f in report.findings if f.code == "non-persistent-buffer"] == [""]


def test_strays_flagged_without_torch_internals_or_deliberate_references():
    model = Strays()
    report = netscope.audit_names(model)
    assert sorted(codes(report)) == ["plain-tensor-attribute", "unregistered-module", "unregistered-parameter"]
    by_code = {f.code: f for f in report.findings}
    assert "model.extra is a plain list holding 2 nn.Parameters (11 elements)" in by_code["unregistered-parameter"].message
    assert "model.nested" in by_code["unregistered-module"].message
    assert f"{4 * 2 + 2 + 4 * 3 + 3:,} parameters" in by_code["unregistered-module"].message
    assert "model.scale" in by_code["plain-tensor-attribute"].message
    assert report.totals.unregistered_params == 11 + 25
    assert entry(report, "nested.heads.1.weight").expression == 'model.nested["heads"][1].weight'


def test_numbered_sequential_two_levels_deep():
    report = netscope.audit_names(nested_numbered())
    (finding,) = report.findings
    assert finding.code == "numbered-sequential" and finding.layer == "0"
    assert "conv2d, batchnorm2d, relu" in finding.message
    assert "`0.0.weight` would read `0.conv2d.weight`" in finding.message
    assert suggested_names(nn.Sequential(nn.Linear(1, 1), nn.ReLU(), nn.Linear(1, 1))) == {
        "0": "linear1", "1": "relu", "2": "linear2"}


def test_clean_models_have_no_findings():
    assert netscope.audit_names(torchvision.models.resnet18(weights=None)).findings == []
    # old-style spectral_norm recomputes the plain attribute `weight` in a pre-hook: derived, not lost (no
    # plain-tensor warning); the one finding says which keys hold it instead (tests/test_derived_weights.py)
    derived = ["derived-weight"]
    assert [f.code for f in netscope.audit_names(nn.utils.spectral_norm(nn.Linear(3, 3))).findings] == derived
    assert netscope.audit_names(nn.LSTM(4, 8, 2)).findings == []  # _flat_weights lists registered params
    # torch.nn.utils.prune keeps `weight` as a plain attribute that its pre-hook recomputes from
    # weight_orig * weight_mask: derived, as forward shows
    from torch.nn.utils import prune

    pruned = nn.Linear(4, 4)
    prune.l1_unstructured(pruned, "weight", amount=0.5)
    pruned.weight_orig.data.fill_(3.0)
    pruned(torch.ones(1, 4))
    assert torch.equal(pruned.weight, pruned.weight_orig * pruned.weight_mask)
    assert [f.code for f in netscope.audit_names(pruned).findings] == derived


# --- structural, meta device, scale ---------------------------------------------------------------

def test_meta_device_model_and_many_modules():
    with empty_weights():
        model = nn.Sequential(*[nn.Linear(8, 8) for _ in range(12_000)], LocalConvs())
    report = netscope.audit_names(model)
    assert next(model.parameters()).device.type == "meta"
    assert report.state_dict_keys() == list(model.state_dict().keys())
    assert report.totals.total_params == 12_000 * 72 + 16
    assert report.totals.unregistered_params == 3 * (4 * 4 * 3 * 3 + 4)


def test_rejects_non_modules():
    with pytest.raises(UsageError, match="needs a torch.nn.Module"):
        netscope.audit_names(nn.Linear(2, 2).state_dict())


# --- rendering ------------------------------------------------------------------------------------

def test_render_formats():
    report = netscope.audit_names(TinyLM())
    table = report.render("table")
    assert "model.blocks[\"a\"].weight" in table and "tied-weights" in table and "2 findings" in table
    assert report.render("markdown").count("| tied-weights") == 1
    csv_lines = report.render("csv").strip().splitlines()
    assert len(csv_lines) == 1 + len(report.entries)
    assert len(report.render("csv", findings_only=True).strip().splitlines()) == 1 + report.findings_count
    data = json.loads(report.render("json"))
    assert [e["key"] for e in data["entries"]] == [e.key for e in report.entries]
    assert "entries" not in json.loads(report.render("json", findings_only=True))
    assert "embed.weight" not in report.render("table", findings_only=True).split("tied-weights")[0]


# --- CLI ------------------------------------------------------------------------------------------

def test_cli_json_matches_state_dict(capsys):
    assert main(["names", "mobilenet_v3_small", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    expected = torchvision.models.mobilenet_v3_small(weights=None).state_dict().keys()
    assert [e["key"] for e in data["entries"] if e["in_state_dict"]] == list(expected)
    assert data["totals"]["findings"] == len(data["findings"]) > 0


def test_cli_file_model_findings_only(tmp_path, capsys):
    path = tmp_path / "local_model.py"
    path.write_text(
        "import torch.nn as nn\n"
        "class Net(nn.Module):\n"
        "    def __init__(self, n=2):\n"
        "        super().__init__()\n"
        "        self.local = {i: nn.Conv2d(4, 4, 3) for i in range(n)}\n"
    )
    assert main(["names", f"{path}:Net", "--model-arg", "n=3", "--findings-only", "-f", "markdown"]) == 0
    out = capsys.readouterr().out
    assert "unregistered-module" in out and "3x Conv2d" in out and f"{3 * (4 * 4 * 9 + 4):,} parameters" in out


def test_cli_errors(capsys):
    assert main(["names", "no_such_model_xyz"]) == 2
    assert "error" in capsys.readouterr().err
    assert main(["names", "resnet18", "--table-style", "nope"]) == 2
    assert "unknown table style" in capsys.readouterr().err


def test_a_stack_of_numbered_blocks_is_one_finding():
    model = nn.Sequential(*[nn.Sequential(nn.Linear(4, 4), nn.ReLU()) for _ in range(50)])
    (finding,) = netscope.audit_names(model).findings
    assert finding.code == "numbered-sequential" and finding.layer == ""
    assert "50 numbered Sequentials" in finding.message and "`0.0.weight` would read `0.linear.weight`" in finding.message


# --- the CLI's no-memory build keeps the identity structure (issue 15) ------------------------------

def naming_model(name):
    """A test model by name, for the CLI (``test_naming:naming_model -a name=...``)."""
    return TEST_MODELS[name]()


@pytest.mark.parametrize("name", sorted(set(TEST_MODELS) - {"vit_b_16"}))
def test_cli_no_memory_build_matches_the_api(name, capsys):
    """Ties, aliases and shared buffers survive the CLI's meta build: same entries, findings, totals."""
    assert main(["names", "test_naming:naming_model", "-a", f"name={name!r}", "--format", "json"]) == 0
    out, err = capsys.readouterr()
    cli = json.loads(out)
    api = netscope.audit_names(TEST_MODELS[name]()).to_dict()
    assert err == ""  # the meta build worked: no fallback note
    for part in ("entries", "findings", "totals"):
        assert cli[part] == api[part], part


def test_names_table_states_columns_with_one_value_for_every_key_once_below_it():
    import torchvision

    report = netscope.audit_names(torchvision.models.vit_b_16(weights=None))
    text = report.render()
    header = next(line for line in text.splitlines() if line.startswith("key "))
    assert header.split() == ["key", "origins", "shape"]  # the expression column left out to fit 120, and said so
    assert "Every key has dtype float32, trainable yes, saved yes, no alias." in text
    assert "left out to fit 120 columns: expression" in text and max(map(len, text.splitlines())) <= 120
    assert "expression" in report.render("csv").splitlines()[0]
    assert {e.dtype for e in report.entries} == {"float32"} and all(e.in_state_dict for e in report.entries)
    assert report.render("markdown").splitlines()[2].count("|") == len(netscope.naming.report.ENTRY_COLUMNS) + 1


def test_alias_from_a_repeated_list_slot_is_a_warning_and_deliberate_sharing_is_info():
    block = nn.Linear(4, 4)
    repeated = nn.Sequential(nn.ModuleList([block] * 3))  # the classic slip: 3 references, not 3 blocks
    (finding,) = [f for f in netscope.audit_names(repeated).findings if f.code == "alias"]
    assert finding.severity is Severity.WARNING and "[block] * n" in finding.message
    assert list(repeated.state_dict()) == [f"0.{i}.{t}" for i in range(3) for t in ("weight", "bias")]

    class SharedEncoder(nn.Module):  # one position encoder handed to two blocks on purpose (timm CoaT's cpe)
        def __init__(self):
            super().__init__()
            self.cpe = nn.Conv2d(2, 2, 3, padding=1)
            self.block1, self.block2 = nn.Module(), nn.Module()
            self.block1.cpe = self.cpe
            self.block2.cpe = self.cpe

    (finding,) = [f for f in netscope.audit_names(SharedEncoder()).findings if f.code == "alias"]
    assert finding.severity is Severity.INFO and "[block] * n" not in finding.message


def test_modules_kept_in_a_dataclass_attribute_are_found_unregistered():
    """A dataclass instance (a config object holding a head) hides its modules and parameters from torch as a list
    does (torch's own parameters() and state_dict() are the oracle): the audit names the attribute and the class,
    on the full path and the fast one; a registered module kept there too is a reference, not a finding."""
    import dataclasses

    from netscope.naming.fast import audit_findings

    @dataclasses.dataclass
    class HeadConfig:
        head: nn.Module
        body: nn.Module
        width: int = 4

    @dataclasses.dataclass(frozen=True)
    class Scales:
        scale: nn.Parameter

    class Holder(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Linear(2, 2)
            self.cfg = HeadConfig(head=nn.Linear(2, 3), body=self.body)
            self.scales = Scales(nn.Parameter(torch.ones(3)))

    model = Holder()
    hidden = {id(p) for p in (*model.cfg.head.parameters(), model.scales.scale)}
    assert not hidden & {id(p) for p in model.parameters()} and set(model.state_dict()) == {"body.weight", "body.bias"}
    report = netscope.audit_names(model)
    by_code = {f.code: f for f in report.findings if f.code.startswith("unregistered")}
    assert set(by_code) == {"unregistered-module", "unregistered-parameter"}
    module, parameter = by_code["unregistered-module"], by_code["unregistered-parameter"]
    assert module.message.startswith("model.cfg is a dataclass instance (HeadConfig) holding 1 nn.Module (1x Linear) "
                                     f"with {3 * 2 + 3} parameters that state_dict() does not save")
    assert parameter.message.startswith("model.scales is a dataclass instance (Scales) holding 1 nn.Parameter (3 ")
    assert "self.head = cfg.head" in module.fix
    stray = [e for e in report.entries if not e.key.startswith("body.")]
    assert {e.key for e in stray} == {"cfg.head.weight", "cfg.head.bias", "scales.scale"}
    assert all(id(eval(e.expression, {"model": model})) in hidden for e in stray)
    assert sorted(f.code for f in audit_findings(model)) == ["unregistered-module", "unregistered-parameter"]


def test_modules_kept_in_a_deque_or_a_simple_namespace_are_found_unregistered():
    """A deque and a SimpleNamespace hide modules from torch as a list does: parameters() does not list them
    and state_dict() does not save them (torch's own calls are the oracle); a registered module kept there too
    is a non-owning reference, not a finding."""
    import collections
    import types

    class Holder(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Linear(2, 2)
            self.queue = collections.deque([nn.Linear(2, 3)])
            self.ns = types.SimpleNamespace(head=nn.Linear(2, 4), body=self.body)

    model = Holder()
    hidden = {id(p) for m in (model.queue[0], model.ns.head) for p in m.parameters()}
    assert not hidden & {id(p) for p in model.parameters()} and set(model.state_dict()) == {"body.weight", "body.bias"}
    report = netscope.audit_names(model)
    flagged = {f.message.split(" ")[0] for f in report.findings if f.code == "unregistered-module"}
    assert flagged == {"model.queue", "model.ns"}
    stray = [e for e in report.entries if not e.key.startswith("body.")]
    assert {e.key for e in stray} == {"queue.0.weight", "queue.0.bias", "ns.head.weight", "ns.head.bias"}
    assert all(id(eval(e.expression, {"model": model})) in hidden for e in stray)


class _CachedBias(nn.Module):
    """Like timm's LeViT attention: an eval forward caches a tensor derived from a parameter in a plain dict."""

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.randn(4))
        self.cache = {}

    def forward(self, x):
        if "cpu" not in self.cache:
            self.cache["cpu"] = self.bias * 2
        return x + self.cache["cpu"]


class _ManagedCachedBias(_CachedBias):
    def _apply(self, fn, *args, **kwargs):  # every device/dtype move empties the cache (what LeViT does)
        self.cache = {}
        return super()._apply(fn, *args, **kwargs)


@pytest.mark.parametrize("cls, severity", [(_CachedBias, "warning"), (_ManagedCachedBias, "info")])
def test_a_tensor_cache_is_a_warning_unless_its_class_handles_moves(cls, severity):
    """Oracle: what .double() does to the cached tensor. The plain class keeps a float32 tensor after the move (the
    warning's claim holds); the class overriding _apply empties the cache, so its forward rebuilds it in float64."""
    model = cls().eval()
    with torch.no_grad():
        model(torch.randn(2, 4))
    findings = [f for f in netscope.audit_names(model).findings if f.code == "plain-tensor-attribute"]
    assert [f.severity.value for f in findings] == [severity]
    assert "model.cache" in findings[0].message
    model.double()
    stale = any(t.dtype == torch.float32 for t in model.cache.values())
    assert stale == (severity == "warning")


def test_names_columns_picks_the_key_tables_columns(capsys):
    """``netscope names --columns`` (found missing by fresh27: summary and step had it): the key table shows the
    chosen columns, in order, each key's values as the model's own state_dict gives them (oracle); shared
    columns stay columns when asked for; an unknown column and JSON are refused with exit 2."""
    model = torchvision.models.resnet18(weights=None)
    state = model.state_dict()
    assert main(["names", "resnet18", "-c", "shape,key,dtype", "-f", "csv"]) == 0
    import csv

    rows = list(csv.reader(capsys.readouterr().out.splitlines()))
    assert rows[0] == ["shape", "key", "dtype"]
    assert rows[1:] == [[f"[{', '.join(map(str, t.shape))}]", k, str(t.dtype).removeprefix("torch.")]
                        for k, t in state.items()]
    assert main(["names", "resnet18", "-c", "key,dtype"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[2].split() == ["key", "dtype"] and "Every key has" not in table
    assert main(["names", "resnet18", "-c", "key,nope"]) == 2
    assert "unknown column(s) nope" in capsys.readouterr().err
    assert main(["names", "resnet18", "-c", "key", "-f", "json"]) == 2
    assert "JSON" in capsys.readouterr().err
