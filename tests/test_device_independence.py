"""Totals do not depend on the device: parameters and multiply-adds (per layer too) are identical on CPU,
on the meta device and, when one is present, on CUDA.

The same model object runs on each device (meta on a structural copy). Coverage, chosen for a 2-core CI:
every torchvision classification builder at batch 1 and its weights' crop size, except those whose
published ``_ops`` exceed ``CPU_GMACS_LIMIT`` (their CPU forward alone takes tens of seconds there; the
meta run of each is still checked against the published figure in test_torchvision_reference.py);
the RNN family (test_op_formulas.py checks its formulas too); and a timm set, TF-ported padding included.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn
import torchvision

import netscope

CPU_GMACS_LIMIT = 10.0
DEVICES = ["meta", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"))]


def _per_layer(report):
    return report.totals.total_params, report.totals.total_macs, [(c.name, c.macs, c.subtree_params) for c in report.layers]


def _assert_same_everywhere(model, input_size, device):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cpu = netscope.summary(model, input_size, device="cpu", checks=False, audit_names=False)
        other = netscope.summary(model, input_size, device=device, checks=False, audit_names=False)
    assert not cpu.partial and not other.partial, (cpu.uncounted_ops(), other.uncounted_ops())
    assert _per_layer(other) == _per_layer(cpu)
    assert cpu.totals.total_macs > 0


def _classification_cases():
    for name in sorted(torchvision.models.list_models(module=torchvision.models)):
        weights = torchvision.models.get_model_weights(name).DEFAULT
        if weights.meta["_ops"] > CPU_GMACS_LIMIT:
            continue
        crop = weights.transforms.keywords["crop_size"]
        yield pytest.param(name, crop[0] if isinstance(crop, (list, tuple)) else crop, id=name)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name,crop", list(_classification_cases()))
def test_torchvision_classification(name, crop, device):
    torch.manual_seed(0)
    kwargs = {"image_size": crop} if name.startswith("vit_") else {}
    model = torchvision.models.get_model(name, weights=None, **kwargs).eval()
    _assert_same_everywhere(model, (1, 3, crop, crop), device)


RNNS = {
    "lstm": lambda: nn.LSTM(32, 64, num_layers=2),
    "lstm-bidirectional-proj": lambda: nn.LSTM(32, 64, bidirectional=True, proj_size=16),
    "gru": lambda: nn.GRU(32, 64, num_layers=2, bidirectional=True),
    "rnn-tanh": lambda: nn.RNN(32, 64),
    "rnn-relu": lambda: nn.RNN(32, 64, nonlinearity="relu", num_layers=2),
    "lstm-cell": lambda: nn.LSTMCell(32, 64),
    "gru-cell": lambda: nn.GRUCell(32, 64),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(RNNS))
def test_rnn_family(name, device):
    torch.manual_seed(0)
    model = RNNS[name]().eval()
    shape = (4, 32) if name.endswith("cell") else (10, 4, 32)
    _assert_same_everywhere(model, shape, device)


TIMM = ["resnet50d", "efficientnet_b0", "tf_efficientnet_b0", "tf_mobilenetv3_large_100", "vit_small_patch16_224",
        "deit_tiny_patch16_224", "convnext_tiny", "swin_tiny_patch4_window7_224", "regnety_016",
        "mobilevitv2_050", "levit_128", "coat_lite_tiny", "fastvit_t8"]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", TIMM)
def test_timm(name, device):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False).eval()
    size = model.pretrained_cfg.get("input_size", (3, 224, 224))
    _assert_same_everywhere(model, (1, *size), device)
