"""``timm:NAME`` model specs: any ``timm.list_models()`` name, built with ``pretrained=False``.

The default input is the model's ``pretrained_cfg["input_size"]`` with batch 1, adjusted for
``--model-arg in_chans=...`` / ``img_size=...``. timm is imported only when a ``timm:`` spec is
resolved, so this module is cheap to import.
"""

from __future__ import annotations

import difflib
from typing import Any, Mapping, Tuple

from netscope.errors import ModelSpecError, UsageError
from netscope.inputs import InputSpec, TensorSpec
from netscope.optional import require
from netscope.models.sources import ResolvedModel, register_source

FALLBACK_INPUT_SIZE = (3, 224, 224)
# create_model arguments that would fetch weights; netscope never downloads
DOWNLOADING_ARGS = ("pretrained",)


def import_timm():
    """The timm module, or a DependencyError naming the extra to install."""
    return require("timm", needed_for="timm:... model specs", extra="timm")


@register_source("timm")
def resolve_timm(name: str, model_args: Mapping[str, Any], empty_weights: bool) -> ResolvedModel:
    """Build ``timm.create_model(name, pretrained=False, **model_args)`` and its default input."""
    timm = import_timm()
    name = name.strip()
    _reject_downloading_args(name, model_args)
    if not name or not timm.is_model(name):
        raise ModelSpecError(_unknown_name_message(name, timm.list_models()))
    constructor_args = {key: value for key, value in model_args.items() if key != "pretrained"}
    try:
        model = timm.create_model(name, pretrained=False, **constructor_args)
    except TypeError as exc:
        raise ModelSpecError(
            f"timm's {name} does not accept {dict(model_args)}: {exc}. Check the --model-arg names "
            "against the model's constructor"
        ) from exc
    except Exception as exc:
        raise ModelSpecError(
            f"building timm's {name} with {dict(model_args)} raised {type(exc).__name__}: {exc}"
        ) from exc
    channels, height, width = timm_input_size(model, model_args)
    inputs = InputSpec([TensorSpec((1, channels, height, width))])
    return ResolvedModel(model, f"timm:{name}", inputs, source="timm", notes=_tag_note(name, model))


def _tag_note(name: str, model) -> Tuple[str, ...]:
    """A pretrained tag (``resnet50.a1_in1k``) picks timm's config for those weights, never the weights."""
    tag = name.partition(".")[2]
    if not tag:
        return ()
    classes = (getattr(model, "pretrained_cfg", None) or {}).get("num_classes")
    config = f" ({classes} classes, its input size)" if classes else ""
    return (f"timm's pretrained tag '{tag}' chose that checkpoint's configuration{config}; the weights are "
            "random, as netscope never downloads",)


def timm_input_size(model, model_args: Mapping[str, Any]) -> Tuple[int, int, int]:
    """(C, H, W): the pretrained config's input size, overridden by ``in_chans`` / ``img_size`` args."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    size = cfg.get("input_size") or FALLBACK_INPUT_SIZE
    channels, height, width = (int(v) for v in size)
    if "in_chans" in model_args:
        channels = int(model_args["in_chans"])
    image_size = model_args.get("img_size")
    if isinstance(image_size, int):
        height = width = image_size
    elif isinstance(image_size, (tuple, list)) and len(image_size) == 2:
        height, width = (int(v) for v in image_size)
    return channels, height, width


def _reject_downloading_args(name: str, model_args: Mapping[str, Any]) -> None:
    if name.startswith(("hf-hub:", "hf_hub:", "local-dir:")):
        raise ModelSpecError(
            f"timm:{name} asks timm to fetch a model from the Hugging Face hub or a directory of weights; "
            "netscope builds timm models from their architecture name only (e.g. timm:resnet50). "
            "To inspect trained weights, summarize the architecture and compare the checkpoint with "
            "'netscope keys' / netscope.load"
        )
    for key in DOWNLOADING_ARGS:
        if model_args.get(key):
            raise UsageError(
                f"--model-arg {key}=... would make timm download weights, and netscope never downloads; "
                f"drop it (timm:{name} is built with random weights, which is all a summary needs), and "
                "use netscope.load or 'netscope keys' for a checkpoint you already have"
            )


def _unknown_name_message(name: str, names) -> str:
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    hint = f" Closest timm names: {', '.join(close)}." if close else ""
    return (
        f"{name!r} is not a timm model name.{hint} "
        "'python -c \"import timm; print(timm.list_models())\"' lists every name, and "
        "timm.list_models('*pattern*') filters them"
    )
