"""Keys a forward pre-hook derives (torch.nn.utils.prune, the old weight_norm / spectral_norm): the naming audit
says the plain key is not saved and names the keys that are, checked against the module's real state_dict."""

import re
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.utils.prune as prune

import netscope
from netscope.naming.audit import audit_names
from netscope.naming.fast import audit_findings, is_plain
from netscope.run.module_tree import module_tree


def _old_weight_norm(module):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return nn.utils.weight_norm(module)


def _old_spectral_norm(module):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return nn.utils.spectral_norm(module)


class Net(nn.Module):
    def __init__(self, wrap):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8))
        self.head = nn.Linear(8, 2)
        wrap(self)

    def forward(self, x):
        return self.head(self.body(x))


def _pruned(net):
    prune.l1_unstructured(net.body[0], "weight", amount=0.5)
    prune.random_unstructured(net.body[2], "weight", amount=0.25)
    prune.l1_unstructured(net.head, "bias", amount=0.5)


def _custom_mask(net):
    prune.custom_from_mask(net.head, "weight", torch.ones(2, 8))
    prune.l1_unstructured(net.head, "weight", amount=0.5)  # a second method on one tensor: a PruningContainer


CASES = {
    "prune": (_pruned, "torch.nn.utils.prune"),
    "prune twice": (_custom_mask, "torch.nn.utils.prune"),
    "weight_norm": (lambda net: _old_weight_norm(net.head), "torch.nn.utils.weight_norm"),
    "spectral_norm": (lambda net: _old_spectral_norm(net.body[2]), "torch.nn.utils.spectral_norm"),
}


def _derived(findings):
    return [f for f in findings if f.code == "derived-weight"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_keys_named_are_the_state_dicts_and_the_plain_key_is_not(case):
    wrap, utility = CASES[case]
    net = Net(wrap)
    keys = set(net.state_dict())
    found = _derived(audit_names(net).findings)
    assert found and all(utility in f.message for f in found)
    for finding in found:
        absent, _, rest = finding.message.partition(" is not in the state_dict" if " is not" in finding.message
                                                    else " are not in the state_dict")
        for key in re.findall(r"`([^`]+)`", absent):
            assert key not in keys  # the plain key really is missing ...
            owner, _, name = key.rpartition(".")
            assert isinstance(net.get_submodule(owner), nn.Module) and hasattr(net.get_submodule(owner), name)
        saved = re.findall(r"`([\w.]+)`", rest.split(" instead")[0].split("holds ")[1])
        assert saved and set(saved) <= keys  # ... and the keys it names are the ones saved


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_fast_audit_finds_the_same_as_the_full_one(case):
    net = Net(CASES[case][0])
    tree = module_tree(net)
    assert [f.to_dict() for f in audit_findings(net, tree)] == [f.to_dict() for f in audit_names(net).findings]


def test_a_pruned_plain_model_takes_the_fast_path_and_summary_shows_the_finding():
    net = Net(_pruned)
    assert is_plain(module_tree(net))
    report = netscope.summary(net, input_size=(1, 8))
    found = _derived(report.findings)
    assert len(found) == 2  # one per pruned tensor name: weight (two modules), bias (one)
    weight = next(f for f in found if "`weight = weight_orig * weight_mask`" in f.message)
    assert "`body.0.weight`, `body.2.weight`" in weight.message and weight.layer == "body.0"


def test_no_finding_without_such_a_hook():
    plain = Net(lambda net: None)
    parametrized = Net(lambda net: nn.utils.parametrizations.weight_norm(net.head))  # keys under parametrizations.
    hooked = Net(lambda net: net.head.register_forward_pre_hook(lambda module, args: None))
    for net in (plain, parametrized, hooked):
        assert not _derived(audit_names(net).findings)
        assert not _derived(audit_findings(net))


def test_names_command_shows_it(tmp_path, capsys):
    from netscope.cli import main

    source = tmp_path / "pruned_model.py"
    source.write_text("import torch.nn as nn, torch.nn.utils.prune as prune\n"
                      "class Net(nn.Module):\n"
                      "    def __init__(self):\n"
                      "        super().__init__()\n"
                      "        self.fc = nn.Linear(4, 4)\n"
                      "        prune.l1_unstructured(self.fc, 'weight', amount=0.5)\n"
                      "    def forward(self, x):\n"
                      "        return self.fc(x)\n")
    assert main(["names", f"{source}:Net"]) == 0
    out = capsys.readouterr().out
    assert "derived-weight" in out and "`fc.weight_orig`, `fc.weight_mask`" in out
