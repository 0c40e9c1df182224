"""Turn a model spec string into an ``nn.Module`` plus the dummy inputs it expects.

Specs: a prefixed source registered in :data:`netscope.models.sources.SOURCES` (``timm:...``, ``hf:...``,
``torchvision:...``), a file (``path/to/file.py:ClassName``), an import string (``pkg.module:factory``),
or a bare name, which the source registered for bare names resolves (torchvision: ``resnet50``).
Every failure is a :class:`ModelSpecError` that says what to do.
"""

from __future__ import annotations

import ast
import contextlib
import difflib
import importlib
import importlib.util
import os
import sys
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

from netscope.errors import ModelSpecError, UsageError
from netscope.inputs import InputSpec, TensorSpec
from netscope.models.sources import SOURCES, ResolvedModel, bare_name_source, load_builtin_sources

DEFAULT_MODEL = "resnet50"


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
            literal = LITERAL_SPELLINGS.get(raw.strip().lower())
            if literal is not None:  # as a string it would be truthy: bias=false would build a bias
                raise UsageError(
                    f"--model-arg {pair!r}: {raw.strip()!r} would be passed as a string; write the Python "
                    f"literal ({key}={literal}), or quote it for the string ({key}=\"'{raw.strip()}'\")")
            kwargs[key] = raw
    return kwargs


LITERAL_SPELLINGS = {"true": "True", "false": "False", "none": "None", "null": "None"}  # other languages' spellings


def resolve_model(spec: Optional[str], model_args: Optional[Mapping[str, Any]] = None,
                  *, empty_weights: bool = False, loaded: Optional[Dict[str, Any]] = None) -> ResolvedModel:
    """Build the model a spec names. ``empty_weights`` builds it without weight memory: parameters and
    buffers on the meta device, or, when the constructor cannot run that way (it reads a value, or
    mixes a parameter with a fresh tensor), fake tensors re-homed to meta, then a real CPU build;
    ``build`` says which. ``loaded``: the model files (``path.py:Class``) already run in this command, by
    absolute path, shared by its builds (a meta build, then the real one), so that a file's module-level code runs
    once per command, as in a script that imports it; filled here."""
    load_builtin_sources()
    spec = spec or DEFAULT_MODEL
    model_args = dict(model_args or {})
    loaded = {} if loaded is None else loaded  # one resolution's builds (meta, fake, real) share it at least
    run_model_file(spec, loaded)
    if not empty_weights:
        return _resolve(spec, model_args, False, loaded)
    from netscope.run.no_memory import build_without_memory

    resolved, build, failures = build_without_memory(lambda empty: _resolve(spec, model_args, empty, loaded),
                                                     retry=_constructor_failed, module_of=lambda r: r.module)
    resolved.build, resolved.build_failures = build, failures
    return resolved


def run_model_file(spec: Optional[str], loaded: Dict[str, Any]) -> None:
    """The module-level code of the file a ``path.py:Class`` spec names, run once per ``loaded`` (for real: never
    inside a meta or fake build); nothing for other specs."""
    file_spec = _file_spec(spec or DEFAULT_MODEL)
    if file_spec is not None:
        _file_module(*file_spec, spec, loaded)


def _constructor_failed(exc: BaseException) -> bool:
    """The spec was fine and the model's own code raised (so another build may succeed). A syntax error, an
    import error or ``sys.exit`` does not depend on where the weights live: no other build is tried (a script
    would otherwise run its module-level code three times)."""
    cause = exc.__cause__
    return (isinstance(exc, ModelSpecError) and cause is not None
            and not isinstance(cause, (SyntaxError, ImportError, SystemExit)))


def _resolve(spec: str, model_args: Dict[str, Any], empty_weights: bool, loaded: Dict[str, Any]) -> ResolvedModel:
    prefix, sep, rest = spec.partition(":")
    if sep and prefix in SOURCES:
        return SOURCES[prefix].resolve(rest, model_args, empty_weights)
    if _file_spec(spec) is not None:
        return _from_file(prefix, rest, model_args, spec, loaded)
    if sep:
        return _from_import_string(prefix, rest, model_args, spec)
    return bare_name_source().resolve(spec, model_args, empty_weights)


def _call_factory(factory: Callable, model_args: Mapping[str, Any], spec: str):
    import torch.nn as nn

    if isinstance(factory, nn.Module):
        if model_args:
            raise UsageError(f"{spec!r} is an already-built module instance; it takes no --model-arg")
        return factory
    if not callable(factory):
        raise ModelSpecError(f"{spec!r} names a {type(factory).__name__}, not a class or function returning an nn.Module")
    unbound = _arguments_refused(factory, model_args)
    try:
        model = factory(**model_args)
    except TypeError as exc:
        if not unbound:  # the arguments fit the signature: the TypeError came from the constructor's own code
            raise ModelSpecError(f"the constructor of {spec} raised TypeError: {exc}") from exc
        raise ModelSpecError(
            f"calling {spec} with {dict(model_args)} failed: {exc}. Pass the constructor's required "
            "arguments with --model-arg KEY=VALUE"
        ) from exc
    except SystemExit as exc:
        raise ModelSpecError(f"the constructor of {spec} {exit_text(exc, script=False)}") from exc
    except Exception as exc:
        raise ModelSpecError(f"the constructor of {spec} raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise ModelSpecError(f"{spec} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def _arguments_refused(factory: Callable, model_args: Mapping[str, Any]) -> bool:
    """Whether ``factory(**model_args)`` does not fit the factory's signature (True when it cannot be read)."""
    import inspect

    try:
        inspect.signature(factory).bind(**model_args)
    except TypeError:
        return True
    except ValueError:  # no signature to read (some builtins): let the call decide
        return True
    return False


def _from_import_string(module_path: str, attr: str, model_args, spec: str) -> ResolvedModel:
    if not module_path.strip():
        raise ModelSpecError(f"{spec!r} names no module before ':'; write it like package.module:ClassName")
    if not attr:
        raise ModelSpecError(f"{spec!r} names no attribute after ':'; write it like package.module:ClassName")
    try:
        module = _import_module(module_path)
    except ImportError as exc:
        raise ModelSpecError(
            f"cannot import {module_path!r} from {spec!r} ({exc}). Check the spelling, that the package is "
            "installed in this environment, or that the current directory is on PYTHONPATH"
        ) from exc
    except SystemExit as exc:
        raise ModelSpecError(f"importing {module_path!r} {exit_text(exc)}") from exc
    except Exception as exc:
        raise ModelSpecError(f"importing {module_path!r} raised {type(exc).__name__}: {exc}") from exc
    factory = _get_attr_path(module, attr, spec)
    model = _call_factory(factory, model_args, spec)
    return ResolvedModel(model, spec, default_inputs_for(model), source="import")


def _import_module(module_path: str):
    """``importlib.import_module``, also finding a package in the current directory: ``netscope`` run as a console
    script does not have it on ``sys.path`` (``python -m`` does). It is appended, so it never shadows an installed
    package, and only when the package is not found elsewhere."""
    try:
        return importlib.import_module(module_path)
    except ModuleNotFoundError as exc:
        top = module_path.split(".")[0]
        here = os.getcwd()
        if exc.name != top or here in sys.path or "" in sys.path or not (
                os.path.isfile(os.path.join(here, top + ".py")) or os.path.isdir(os.path.join(here, top))):
            raise
    sys.path.append(here)
    return importlib.import_module(module_path)


def _file_spec(spec: str) -> Optional[Tuple[str, str]]:
    """``(path, attribute)`` when ``spec`` names a model file (``path/to/file.py:Class``), else None."""
    prefix, sep, rest = spec.partition(":")
    if sep and prefix not in SOURCES and (prefix.endswith(".py") or os.sep in prefix or "/" in prefix
                                          or os.path.isfile(prefix)):
        return prefix, rest
    return None


def _file_module(path: str, attr: str, spec: str, loaded: Dict[str, Any]):
    """The module of the model file ``path``: run once per command (``loaded``, by absolute path), with its folder
    on ``sys.path`` so that it can import its siblings."""
    if not os.path.isfile(path):
        raise ModelSpecError(f"file {path!r} from {spec!r} does not exist; write it like path/to/model.py:ClassName")
    if not attr:
        raise ModelSpecError(f"{spec!r} names no class after ':'; write it like {path}:ClassName")
    key = os.path.abspath(path)
    if key not in loaded:
        with _folder_on_path(path):
            loaded[key] = _run_model_file(path, spec)
    return loaded[key]


@contextlib.contextmanager
def _folder_on_path(path: str):
    """The folder of ``path`` first on ``sys.path`` while the block runs (the file's imports of its siblings, also
    from inside its constructor)."""
    folder = os.path.dirname(os.path.abspath(path))
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        sys.path.remove(folder)


def _from_file(path: str, attr: str, model_args, spec: str, loaded: Dict[str, Any]) -> ResolvedModel:
    module = _file_module(path, attr, spec, loaded)
    with _folder_on_path(path):
        model = _call_factory(_get_attr_path(module, attr, spec), model_args, spec)
    return ResolvedModel(model, spec, default_inputs_for(model), source="file")


def _run_model_file(path: str, spec: str):
    """Import the file ``path`` as a module of its own (its module-level code runs)."""
    name = "_netscope_user_" + os.path.splitext(os.path.basename(path))[0].replace("-", "_")
    module_spec = importlib.util.spec_from_file_location(name, os.path.abspath(path))
    if module_spec is None:  # a suffix Python does not import (not .py)
        raise ModelSpecError(f"{path!r} from {spec!r} is not a Python source file: name a .py file that defines "
                             "the model, like path/to/model.py:ClassName")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    try:
        with os_exit_raises():
            module_spec.loader.exec_module(module)
    except SystemExit as exc:  # a script's own entry point ran: say so, instead of leaving with its exit code
        sys.modules.pop(name, None)
        raise ModelSpecError(f"running {path} {exit_text(exc)}") from exc
    except Exception as exc:
        sys.modules.pop(name, None)
        hint = ""
        if isinstance(exc, ImportError) and "relative import" in str(exc):  # a module inside a package
            hint = (". The file belongs to a package: name it as an import string, package.module:ClassName, "
                    "from the folder that holds the package (on PYTHONPATH)")
        raise ModelSpecError(f"running {path} raised {type(exc).__name__}: {exc}{hint}") from exc
    return module


class _OsExit(SystemExit):
    """``os._exit(code)`` called by a model file while netscope imports it."""


@contextlib.contextmanager
def os_exit_raises():
    """While the block runs, ``os._exit`` in this process raises :class:`_OsExit` instead of ending it at once with
    no output (a script's last line, ``os._exit(0)``, made netscope exit 0 having printed nothing). A child process
    forked meanwhile still exits. ``os._exit`` is restored afterwards."""
    real, pid, active = os._exit, os.getpid(), [True]

    def _exit(code):  # kept by `from os import _exit`: the real one once the block is over
        if not active or os.getpid() != pid:
            real(code)
        raise _OsExit(code)

    os._exit = _exit
    try:
        yield
    finally:
        os._exit = real
        active.clear()


def exit_text(exc: SystemExit, *, script: bool = True) -> str:
    """What a module or constructor that called ``sys.exit`` did, and (``script``) how to keep a script's entry
    point from running on import."""
    text = (f"called os._exit({exc.code!r})" if isinstance(exc, _OsExit)
            else f"called sys.exit({exc.code!r}) (SystemExit)")
    if script:
        text += (": netscope imports the file as a module, so put the script part (argument parsing, training) "
                 "under if __name__ == \"__main__\":")
    return text


def _module_classes(obj) -> list:
    """The nn.Module subclasses a module itself defines (not those it imports), in definition order."""
    import types

    import torch.nn as nn

    if not isinstance(obj, types.ModuleType):
        return []
    return [n for n, v in vars(obj).items() if isinstance(v, type) and issubclass(v, nn.Module)
            and v.__module__ == obj.__name__ and not n.startswith("_")]


def _get_attr_path(module, attr: str, spec: str):
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            candidates = [n for n in dir(obj) if not n.startswith("_")]
            close = difflib.get_close_matches(part, candidates, n=3)
            defined = _module_classes(obj)
            hint = (f" Did you mean {', '.join(close)}?" if close
                    else f" It defines these nn.Module classes: {', '.join(defined)}." if defined else "")
            owner = spec.partition(":")[0] if obj is module else getattr(obj, "__name__", obj)  # never our alias
            raise ModelSpecError(f"{owner!s} has no attribute {part!r} (from {spec!r}).{hint}")
        obj = getattr(obj, part)
    return obj


def default_inputs_for(model) -> InputSpec:
    """A best guess for a user's model: an image-shaped input, sized from the first layer when possible; a
    torchvision detection model's list of images (so ``input_size=[(3, H, W), ...]`` are its images)."""
    import torch.nn as nn

    from netscope.models.torchvision import DETECTION_INPUT, takes_image_list  # here: torchvision.py imports inputs

    if takes_image_list(model):
        return DETECTION_INPUT

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
