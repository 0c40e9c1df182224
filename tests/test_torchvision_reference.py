"""Acceptance: every torchvision weight's published ``num_params`` and ``_ops`` (all five families).

The published figures come from dispatch-mode counting (pytorch/vision#6936): classification and
quantized models at their weights' crop size, segmentation at 1x3x520x520, video at 1x3x16xcrop²,
optical flow on a pair of 512x512 frames (12 flow updates), detection on one image resized inside
the model. Every model is built as its weights build it (``builder(weights=W)`` with the loading
patched out: aux heads, FrozenBatchNorm2d backbones, class counts), never downloaded.

Where it runs: on the meta device (no memory) for every family but two. Detection post-processing
reads values (``nonzero`` in box filtering) that meta tensors lack, so detection runs on CPU at
batch 1; quantized kernels exist on CPU only. Detection counts depend on how many proposals and
detections reach the RoI heads; the figures were measured with real weights on a random image, and
each is reproduced by pinning those numbers with the builder's own thresholds (``DETECTION_PINS``).
Quantized weights copy ``num_params`` from their float twin, so their parameters are compared with
the packed-weight count (the float twin with batch norm folded in, as ``quantize=True`` builds it)
and their multiply-adds with the published GIPS.
"""

from __future__ import annotations

import functools
import warnings

import pytest
import torch
import torchvision

import netscope
from netscope.run.no_memory import empty_weights
from netscope.models.torchvision import OPTICAL_FLOW_SIZE, VIDEO_FRAMES, weights_not_loaded

PUBLISHED_ROUNDING = 0.0005e9  # _ops are published with three decimals of G


def _weights(module):
    names = sorted(torchvision.models.list_models(module=module))
    return [pytest.param(name, weights, id=f"{name}-{weights.name}")
            for name in names for weights in torchvision.models.get_model_weights(name)]


def _crop(weights) -> int:
    crop = weights.transforms.keywords["crop_size"]
    return crop[0] if isinstance(crop, (list, tuple)) else crop


def build_like_weights(name, weights, *, meta=True, **kwargs):
    """``builder(weights=weights, **kwargs)`` without loading the weights (on the meta device by default)."""
    builder = torchvision.models.get_model_builder(name)
    with warnings.catch_warnings(), empty_weights(enabled=meta), weights_not_loaded():
        warnings.simplefilter("ignore")
        return builder(weights=weights, **kwargs).eval()


@functools.lru_cache(maxsize=None)
def _meta_totals(name, weights, shapes):
    """(params, macs) of one build on the meta device; weights sharing a build and input share the run."""
    model = build_like_weights(name, weights)
    report = netscope.summary(model, list(shapes) if len(shapes) > 1 else shapes[0], device="meta",
                              checks=False, audit_names=False)
    assert not report.partial, report.uncounted_ops()
    return report.totals.total_params, report.totals.total_macs


def _assert_published(weights, params, macs):
    assert params == weights.meta["num_params"]
    assert abs(macs - weights.meta["_ops"] * 1e9) <= PUBLISHED_ROUNDING, (macs / 1e9, weights.meta["_ops"])


@pytest.mark.parametrize("name,weights", _weights(torchvision.models))
def test_classification(name, weights):
    crop = _crop(weights)
    _assert_published(weights, *_meta_totals(name, weights, ((1, 3, crop, crop),)))


@pytest.mark.parametrize("name,weights", _weights(torchvision.models.segmentation))
def test_segmentation(name, weights):
    _assert_published(weights, *_meta_totals(name, weights, ((1, 3, 520, 520),)))


@pytest.mark.parametrize("name,weights", _weights(torchvision.models.video))
def test_video(name, weights):
    crop = _crop(weights)
    _assert_published(weights, *_meta_totals(name, weights, ((1, 3, VIDEO_FRAMES, crop, crop),)))


@pytest.mark.parametrize("name,weights", _weights(torchvision.models.optical_flow))
def test_optical_flow(name, weights):
    frame = (1, 3, OPTICAL_FLOW_SIZE, OPTICAL_FLOW_SIZE)
    # every raft_large (raft_small) weight is the same architecture: one run per builder
    first = torchvision.models.get_model_weights(name).DEFAULT
    _assert_published(weights, *_meta_totals(name, first, (frame, frame)))


# What the quantized builders set when given weights, for the float twin built without them.
FLOAT_TWIN_KWARGS = {"quantized_googlenet": {"aux_logits": False, "init_weights": False},
                     "quantized_inception_v3": {"aux_logits": False, "init_weights": False}}


@functools.lru_cache(maxsize=None)
def _quantized_totals(name, weights):
    torch.manual_seed(0)
    model = build_like_weights(name, weights, meta=False, quantize=True)
    crop = _crop(weights)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = netscope.summary(model, (1, 3, crop, crop), checks=False, audit_names=False)
    assert not report.partial, report.uncounted_ops()
    builder = torchvision.models.get_model_builder(name)
    with empty_weights():
        float_twin = builder(weights=None, quantize=False, **FLOAT_TWIN_KWARGS.get(name, {})).eval()
    float_twin.fuse_model(is_qat=False)  # what quantize=True does before converting
    return report.totals.total_params, report.totals.total_macs, sum(p.numel() for p in float_twin.parameters())


@pytest.mark.slow
@pytest.mark.parametrize("name,weights", _weights(torchvision.models.quantization))
def test_quantized(name, weights):
    params, macs, packed = _quantized_totals(name, torchvision.models.get_model_weights(name).DEFAULT)
    assert params == packed and 0 < params <= weights.meta["num_params"]
    assert abs(macs - weights.meta["_ops"] * 1e9) <= PUBLISHED_ROUNDING, (macs / 1e9, weights.meta["_ops"])


ALL_PROPOSALS = {"rpn_score_thresh": 0.0, "rpn_nms_thresh": 1.0}  # the top 1000 proposals per image survive
NO_PROPOSALS = {"rpn_score_thresh": 1.5}  # above any sigmoid score: no proposal reaches the RoI heads
NO_DETECTIONS = {"box_score_thresh": 1.5}


def _detections(n):
    return {"box_score_thresh": 0.0, "box_nms_thresh": 1.0, "box_detections_per_img": n}


# What reached the RoI heads when the figure was measured (deduced from the published numbers: each
# per-proposal and per-detection head has a fixed cost; a count off by one misses by a whole head).
DETECTION_PINS = {
    ("fasterrcnn_mobilenet_v3_large_320_fpn", "COCO_V1"): NO_PROPOSALS,
    ("fasterrcnn_mobilenet_v3_large_fpn", "COCO_V1"): NO_PROPOSALS,
    ("fasterrcnn_resnet50_fpn", "COCO_V1"): ALL_PROPOSALS,
    ("fasterrcnn_resnet50_fpn_v2", "COCO_V1"): ALL_PROPOSALS,
    ("maskrcnn_resnet50_fpn", "COCO_V1"): {**ALL_PROPOSALS, **NO_DETECTIONS},
    ("maskrcnn_resnet50_fpn_v2", "COCO_V1"): {**ALL_PROPOSALS, **_detections(100)},
    ("keypointrcnn_resnet50_fpn", "COCO_LEGACY"): {**ALL_PROPOSALS, **NO_DETECTIONS},
    ("keypointrcnn_resnet50_fpn", "COCO_V1"): {**ALL_PROPOSALS, **_detections(1)},
}


@pytest.mark.slow
@pytest.mark.parametrize("name,weights", _weights(torchvision.models.detection))
def test_detection(name, weights):
    torch.manual_seed(0)
    model = build_like_weights(name, weights, meta=False, **DETECTION_PINS.get((name, weights.name), {}))
    image = torch.rand(3, 512, 512)
    report = netscope.summary(model, input_data=([image],), checks=False, audit_names=False)
    assert not report.partial, report.uncounted_ops()
    _assert_published(weights, report.totals.total_params, report.totals.total_macs)


def test_cli_defaults_reproduce_published_figures(capsys):
    from netscope.cli import main

    for name in ("fcn_resnet50", "raft_small", "r3d_18", "googlenet"):
        weights = torchvision.models.get_model_weights(name).DEFAULT
        assert main(["summary", name, "--device", "meta", "--depth", "0", "-f", "json", "-q"]) == 0
        import json

        totals = json.loads(capsys.readouterr()[0])["totals"]
        _assert_published(weights, totals["total_params"], totals["total_macs"])


@pytest.mark.slow
def test_cli_counts_detection_heads_at_capacity(capsys):
    """Built without trained weights, a two-stage detector's heads are counted at capacity (every proposal the
    RPN keeps), which is what fasterrcnn_resnet50_fpn's published _ops measured; the report says so, and a
    threshold the user sets is kept."""
    import json

    from netscope.cli import main
    from netscope.models.specs import resolve_model

    name = "fasterrcnn_resnet50_fpn"
    weights = torchvision.models.get_model_weights(name).DEFAULT
    assert main(["summary", name, "--device", "cpu", "--depth", "0", "-f", "json", "-q"]) == 0
    data = json.loads(capsys.readouterr()[0])
    _assert_published(weights, data["totals"]["total_params"], data["totals"]["total_macs"])
    assert any("counted at capacity" in note for note in data["run"]["notes"])
    resolved = resolve_model(name, {"box_score_thresh": 0.05})
    assert resolved.module.roi_heads.score_thresh == 0.05 and resolved.module.rpn.score_thresh == 0.0
    assert resolve_model("resnet18").notes == ()
