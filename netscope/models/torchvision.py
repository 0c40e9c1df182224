"""torchvision models: ``resnet50`` (a bare name) or ``torchvision:resnet50``, built without weights.

A model is built as its default weights configure it (aux heads, frozen batch norm) with the weights'
loading patched out, and fed the input its published figures were measured at, so that ``netscope
summary NAME`` reproduces the weights' ``num_params`` and ``_ops``. torchvision is imported only when
such a spec is resolved.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import os
from typing import List, Optional, Tuple

from netscope.errors import ModelSpecError
from netscope.inputs import InputSpec, TensorSpec
from netscope.models.sources import ResolvedModel, register_source


def torchvision_model_names() -> List[str]:
    import torchvision

    return sorted(torchvision.models.list_models())


@register_source("torchvision", bare_names=True)
def resolve_torchvision(name: str, model_args, empty_weights: bool = False) -> ResolvedModel:
    """Build torchvision's ``name`` without weights (``empty_weights`` is handled by the caller's meta build)."""
    import torchvision

    names = torchvision_model_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
        hint = f" Closest torchvision names: {', '.join(close)}." if close else ""
        if os.path.exists(name):  # a checkpoint, a config folder or a model file given where a model spec goes
            hint = (f" {name!r} is a {'folder' if os.path.isdir(name) else 'file'} here: a checkpoint is read by "
                    f"'netscope keys {name}' (and compared with a model by 'netscope diff {name} MODEL'); a "
                    "Hugging Face config is hf:path/to/config.json; a Python file needs the class or factory, "
                    "path/to/file.py:ClassName.")
        raise ModelSpecError(
            f"unknown model {name!r}: it is not a torchvision model name, and not an import string "
            f"(package.module:factory) or a file (path/to/file.py:ClassName).{hint} "
            "'python -c \"import torchvision; print(torchvision.models.list_models())\"' lists every name"
        )
    builder = torchvision.models.get_model_builder(name)
    model_args = dict(model_args)
    for key in ("weights", "weights_backbone"):
        if model_args.get(key) is not None:
            raise ModelSpecError(
                f"--model-arg {key}={model_args[key]} asks for trained weights, but netscope builds torchvision "
                "models without them and never downloads any: drop it (shapes, parameters and multiply-adds do "
                "not depend on weight values); to check a checkpoint against the model, use 'netscope diff'")
    if "weights_backbone" in inspect.signature(builder).parameters:
        model_args.setdefault("weights_backbone", None)  # detection/segmentation default to downloading ImageNet weights
    default_weights = getattr(torchvision.models.get_model_weights(name), "DEFAULT", None)
    try:
        if default_weights is not None and set(model_args) <= {"weights_backbone"}:
            # As its published weights build it (segmentation's aux head, detection's frozen batch norm,
            # googlenet without aux heads, ...), so the counts match the weights' num_params and _ops.
            with weights_not_loaded():
                model = builder(weights=default_weights)
        else:
            model = builder(weights=None, **model_args)
    except TypeError as exc:
        raise ModelSpecError(f"torchvision's {name} does not accept {dict(model_args)}: {exc}") from exc
    except Exception as exc:
        raise ModelSpecError(f"building torchvision's {name} with {dict(model_args)} raised {type(exc).__name__}: {exc}") from exc
    notes = _heads_at_capacity(model, name, model_args)
    return ResolvedModel(model, name, torchvision_default_inputs(name, model), source="torchvision", notes=notes)


# A two-stage detector's RoI heads cost a fixed amount per proposal and per detection, and how many survive
# its score and NMS thresholds depends on the weights' values. Built without trained weights, the heads are
# counted at capacity (thresholds 0, NMS off: every proposal the RPN keeps, up to detections_per_img), so
# the figure does not depend on random values. (--model-arg <name>=... keeps a threshold of the user's.)
HEADS_AT_CAPACITY = {"rpn_score_thresh": ("rpn", "score_thresh", 0.0), "rpn_nms_thresh": ("rpn", "nms_thresh", 1.0),
                     "box_score_thresh": ("roi_heads", "score_thresh", 0.0),
                     "box_nms_thresh": ("roi_heads", "nms_thresh", 1.0)}


def _heads_at_capacity(model, name: str, model_args) -> Tuple[str, ...]:
    if not all(hasattr(model, part) for part in ("rpn", "roi_heads")):
        return ()
    changed = []
    for arg, (part, attribute, value) in HEADS_AT_CAPACITY.items():
        if arg not in model_args and hasattr(getattr(model, part), attribute):
            setattr(getattr(model, part), attribute, value)
            changed.append(arg)
    if not changed:
        return ()
    kept = getattr(model.rpn, "_post_nms_top_n", {}).get("testing", "every")
    return (f"{name}'s RoI heads are counted at capacity: {', '.join(changed)} set to keep every proposal the RPN "
            f"passes ({kept} per image in eval) and up to {getattr(model.roi_heads, 'detections_per_img', '?')} "
            "detections, so the count does not depend on the random weights; trained weights send fewer (the "
            "published _ops were measured with them). Set them with --model-arg, e.g. box_score_thresh=0.05",)


@contextlib.contextmanager
def weights_not_loaded():
    """Let torchvision builders configure a model for its weights (``builder(weights=W)``) without
    downloading or loading them: the parameters keep their fresh initialisation."""
    import torch.nn as nn
    from torchvision.models._api import WeightsEnum

    original_load = nn.Module.load_state_dict
    original_get = WeightsEnum.get_state_dict

    def load_state_dict(self, state_dict, *args, **kwargs):
        if not state_dict:  # the empty stand-in below (or a builder's copy of it): nothing to load
            return None
        return original_load(self, state_dict, *args, **kwargs)

    WeightsEnum.get_state_dict = lambda self, *args, **kwargs: {}
    nn.Module.load_state_dict = load_state_dict
    try:
        yield
    finally:
        WeightsEnum.get_state_dict = original_get
        nn.Module.load_state_dict = original_load


# The inputs torchvision's published figures (weights.meta "_ops", pytorch/vision#6936) were measured at,
# where the weights' transforms do not say: optical flow runs on a pair of 512x512 frames.
OPTICAL_FLOW_SIZE = 512
VIDEO_FRAMES = 16


DETECTION_INPUT = InputSpec([TensorSpec((3, 512, 512))], as_list=True)  # one list of (C, H, W) images


def takes_image_list(model) -> bool:
    """A torchvision detection model (Faster/Mask/Keypoint R-CNN, RetinaNet, FCOS, SSD): its forward takes one
    list of images."""
    module_name = type(model).__module__
    return module_name.startswith("torchvision.") and ".detection." in module_name


def torchvision_default_inputs(name: str, model) -> InputSpec:
    """The input a torchvision model is published for: its weights' transforms (crop size; a segmentation
    model's resize size, 520), its own image_size, or its family's (video 1x3x16xcrop², optical flow a
    pair of 512x512 frames), so that ``netscope summary NAME`` reproduces the weights' published ``_ops``."""
    module_name = type(model).__module__
    crop = _weights_transform_size(name, "crop_size")
    if ".video." in module_name:
        return InputSpec([TensorSpec((1, 3, VIDEO_FRAMES, crop or 112, crop or 112))])
    if ".optical_flow." in module_name:
        frame = TensorSpec((1, 3, OPTICAL_FLOW_SIZE, OPTICAL_FLOW_SIZE))
        return InputSpec([frame, frame])
    if ".segmentation." in module_name:
        size = _weights_transform_size(name, "resize_size") or 520
        return InputSpec([TensorSpec((1, 3, size, size))])
    if takes_image_list(model):
        return DETECTION_INPUT
    size = getattr(model, "image_size", None)
    if not isinstance(size, int):
        size = crop or 224
    return InputSpec([TensorSpec((1, 3, size, size))])


def _weights_transform_size(name: str, key: str) -> Optional[int]:
    """A size keyword (``crop_size``, ``resize_size``) of the default weights' transforms, if they set one."""
    import torchvision

    try:
        weights = torchvision.models.get_model_weights(name)
    except Exception:
        return None
    default = getattr(weights, "DEFAULT", None)
    transforms = getattr(default, "transforms", None)
    size = getattr(transforms, "keywords", {}).get(key)
    if isinstance(size, (list, tuple)):
        size = size[0]
    return int(size) if size else None
