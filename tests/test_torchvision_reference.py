"""Acceptance: every torchvision classification model's published num_params and _ops.

Each model is built with the configuration its weights use and run on the meta device (no memory,
no weight download) at the crop size of its weights' transforms.
"""

from __future__ import annotations

import inspect

import pytest
import torch
import torchvision

import netscope
from netscope.meta import empty_weights

# What the builders set when given weights: googlenet drops its auxiliary heads after loading,
# inception_v3 keeps them (its published num_params includes AuxLogits).
BUILDER_OVERRIDES = {
    "googlenet": {"aux_logits": False, "init_weights": False, "transform_input": True},
    "inception_v3": {"aux_logits": True, "init_weights": False, "transform_input": True},
}
CLASSIFICATION = sorted(torchvision.models.list_models(module=torchvision.models))


def _weight_cases():
    for name in CLASSIFICATION:
        for weights in torchvision.models.get_model_weights(name):
            yield pytest.param(name, weights, id=f"{name}-{weights.name}")


def _build_like_weights(name, weights):
    """The builder's own config for these weights (what it does with weights=...), without loading them."""
    builder = torchvision.models.get_model_builder(name)
    categories = weights.meta["categories"]  # None for feature-extraction weights (vgg16 FEATURES): 1000 classes
    kwargs = {"num_classes": len(categories)} if categories else {}
    crop = weights.transforms.keywords["crop_size"]
    crop = crop[0] if isinstance(crop, (list, tuple)) else crop
    model_class_params = _constructor_params(name)
    if "image_size" in model_class_params:
        kwargs["image_size"] = crop
    kwargs.update(BUILDER_OVERRIDES.get(name, {}))
    if "input_size" in model_class_params:  # maxvit
        kwargs["input_size"] = (crop, crop)
    with empty_weights():
        model = builder(weights=None, **kwargs)
    return model, crop


def _constructor_params(name):
    builder = torchvision.models.get_model_builder(name)
    module = inspect.getmodule(builder)
    params = set()
    for obj in vars(module).values():
        if isinstance(obj, type) and issubclass(obj, torch.nn.Module) and obj.__module__ == module.__name__:
            params.update(inspect.signature(obj.__init__).parameters)
    return params


@pytest.mark.parametrize("name,weights", list(_weight_cases()))
def test_matches_published_metadata(name, weights):
    model, crop = _build_like_weights(name, weights)
    report = netscope.summary(model, (1, 3, crop, crop), device="meta", checks=False, audit_names=False)
    assert report.totals.total_params == weights.meta["num_params"]
    published_macs = weights.meta["_ops"] * 1e9
    # 0.5%, or the rounding of the published figure (three decimals of GFLOPs) when that is wider
    tolerance = max(0.005 * published_macs, 0.0005e9)
    assert abs(report.totals.total_macs - published_macs) <= tolerance
