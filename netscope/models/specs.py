"""Turn a model spec string into an ``nn.Module`` plus the dummy inputs it expects.

Specs: a torchvision model name (``resnet50``), an import string (``pkg.module:factory``), a file
(``path/to/file.py:ClassName``), or a prefixed source registered in ``SOURCES`` (``timm:...``,
``hf:...``). Every failure is a :class:`ModelSpecError` that says what to do.
"""

from __future__ import annotations

import ast
import contextlib
import difflib
import importlib
import importlib.util
import inspect
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from netscope.errors import ModelSpecError, UsageError
from netscope.inputs import InputSpec, TensorSpec

DEFAULT_MODEL = "resnet50"


@dataclass
class ResolvedModel:
    """A built model and how to feed it."""

    module: Any  # torch.nn.Module (typed loosely so this file imports without torch)
    label: str  # what the user asked for, for titles
    inputs: InputSpec  # the default dummy input for this model
    source: str = "torchvision"
    build: str = "real"  # with empty_weights: "meta", or the fallback "fake"/"cpu" (netscope.run.no_memory.BUILD_DESCRIPTIONS)
    build_failures: Tuple[str, ...] = ()  # why each cheaper build failed


# prefix -> resolver(name, model_args, empty_weights) -> ResolvedModel; filled by netscope.models.sources
SOURCES: Dict[str, Callable[[str, Mapping[str, Any], bool], ResolvedModel]] = {}


def register_source(prefix: str):
    """Register a resolver for specs of the form ``prefix:name``."""

    def decorator(fn):
        if prefix in SOURCES:
            raise ValueError(f"model source {prefix!r} registered twice")
        SOURCES[prefix] = fn
        return fn

    return decorator


def parse_model_args(pairs: Optional[Sequence[str]]) -> Dict[str, Any]:
    """``["num_classes=10", "dropout=0.1", "name=foo"]`` -> kwargs; values are Python literals or strings."""
    kwargs: Dict[str, Any] = {}
    for pair in pairs or ():
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise UsageError(
                f"--model-arg {pair!r} is not KEY=VALUE with KEY a Python identifier; "
                "write it like --model-arg num_classes=10"
            )
        try:
            kwargs[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            kwargs[key] = raw
    return kwargs


def resolve_model(spec: Optional[str], model_args: Optional[Mapping[str, Any]] = None,
                  *, empty_weights: bool = False) -> ResolvedModel:
    """Build the model a spec names. ``empty_weights`` builds it without weight memory: parameters and
    buffers on the meta device, or, when the constructor cannot run that way (it reads a value, or
    mixes a parameter with a fresh tensor), fake tensors re-homed to meta, then a real CPU build;
    ``build`` says which."""
    from netscope.models.sources import load_builtin_sources

    load_builtin_sources()
    spec = spec or DEFAULT_MODEL
    model_args = dict(model_args or {})
    if not empty_weights:
        return _resolve(spec, model_args, False)
    from netscope.run.no_memory import build_without_memory

    resolved, build, failures = build_without_memory(lambda empty: _resolve(spec, model_args, empty),
                                                     retry=_constructor_failed, module_of=lambda r: r.module)
    resolved.build, resolved.build_failures = build, failures
    return resolved


def _constructor_failed(exc: BaseException) -> bool:
    """The spec was fine and the model's own code raised (so another build may succeed)."""
    return isinstance(exc, ModelSpecError) and exc.__cause__ is not None


def _resolve(spec: str, model_args: Dict[str, Any], empty_weights: bool) -> ResolvedModel:
    prefix, sep, rest = spec.partition(":")
    if sep and prefix in SOURCES:
        return SOURCES[prefix](rest, model_args, empty_weights)
    if sep and (prefix.endswith(".py") or os.sep in prefix or "/" in prefix):
        return _from_file(prefix, rest, model_args, spec)
    if sep:
        return _from_import_string(prefix, rest, model_args, spec)
    return _from_torchvision(spec, model_args)


def _call_factory(factory: Callable, model_args: Mapping[str, Any], spec: str):
    import torch.nn as nn

    if isinstance(factory, nn.Module):
        if model_args:
            raise UsageError(f"{spec!r} is an already-built module instance; it takes no --model-arg")
        return factory
    if not callable(factory):
        raise ModelSpecError(f"{spec!r} names a {type(factory).__name__}, not a class or function returning an nn.Module")
    try:
        model = factory(**model_args)
    except TypeError as exc:
        raise ModelSpecError(
            f"calling {spec} with {dict(model_args)} failed: {exc}. Pass the constructor's required "
            "arguments with --model-arg KEY=VALUE"
        ) from exc
    except Exception as exc:
        raise ModelSpecError(f"the constructor of {spec} raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise ModelSpecError(f"{spec} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def _from_import_string(module_path: str, attr: str, model_args, spec: str) -> ResolvedModel:
    if not module_path.strip():
        raise ModelSpecError(f"{spec!r} names no module before ':'; write it like package.module:ClassName")
    if not attr:
        raise ModelSpecError(f"{spec!r} names no attribute after ':'; write it like package.module:ClassName")
    try:
        module = importlib.import_module(module_path)
    except ImportError as exc:
        raise ModelSpecError(
            f"cannot import {module_path!r} from {spec!r} ({exc}). Check the spelling, that the package is "
            "installed in this environment, or that the current directory is on PYTHONPATH"
        ) from exc
    except Exception as exc:
        raise ModelSpecError(f"importing {module_path!r} raised {type(exc).__name__}: {exc}") from exc
    factory = _get_attr_path(module, attr, spec)
    model = _call_factory(factory, model_args, spec)
    return ResolvedModel(model, spec, default_inputs_for(model), source="import")


def _from_file(path: str, attr: str, model_args, spec: str) -> ResolvedModel:
    if not os.path.isfile(path):
        raise ModelSpecError(f"file {path!r} from {spec!r} does not exist; write it like path/to/model.py:ClassName")
    if not attr:
        raise ModelSpecError(f"{spec!r} names no class after ':'; write it like {path}:ClassName")
    name = "_netscope_user_" + os.path.splitext(os.path.basename(path))[0].replace("-", "_")
    module_spec = importlib.util.spec_from_file_location(name, os.path.abspath(path))
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    added_path = os.path.dirname(os.path.abspath(path))
    sys.path.insert(0, added_path)  # let the file import its siblings
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise ModelSpecError(f"running {path} raised {type(exc).__name__}: {exc}") from exc
    finally:
        sys.path.remove(added_path)
    factory = _get_attr_path(module, attr, spec)
    model = _call_factory(factory, model_args, spec)
    return ResolvedModel(model, spec, default_inputs_for(model), source="file")


def _get_attr_path(module, attr: str, spec: str):
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            candidates = [n for n in dir(obj) if not n.startswith("_")]
            close = difflib.get_close_matches(part, candidates, n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            owner = spec.partition(":")[0] if obj is module else getattr(obj, "__name__", obj)  # never our alias
            raise ModelSpecError(f"{owner!s} has no attribute {part!r} (from {spec!r}).{hint}")
        obj = getattr(obj, part)
    return obj


def torchvision_model_names() -> List[str]:
    import torchvision

    return sorted(torchvision.models.list_models())


def _from_torchvision(name: str, model_args) -> ResolvedModel:
    import torchvision

    names = torchvision_model_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
        hint = f" Closest torchvision names: {', '.join(close)}." if close else ""
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
    return ResolvedModel(model, name, torchvision_default_inputs(name, model), source="torchvision")


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
    if ".detection." in module_name:
        return InputSpec([TensorSpec((3, 512, 512))], as_list=True)
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


def default_inputs_for(model) -> InputSpec:
    """A best guess for a user's model: an image-shaped input, sized from the first layer when possible."""
    import torch.nn as nn

    for module in model.modules():
        if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
            return InputSpec([TensorSpec((1, module.in_channels, 224))])
        if isinstance(module, (nn.Conv3d, nn.ConvTranspose3d)):
            return InputSpec([TensorSpec((1, module.in_channels, 16, 112, 112))])
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            return InputSpec([TensorSpec((1, module.in_channels, 224, 224))])
        if isinstance(module, nn.Linear):
            return InputSpec([TensorSpec((1, module.in_features))])
        if isinstance(module, nn.Embedding):
            return InputSpec([TensorSpec((1, 128), dtype="int64", high=module.num_embeddings)])
    return InputSpec([TensorSpec((1, 3, 224, 224))])
