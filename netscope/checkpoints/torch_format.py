"""``.pt/.pth/.bin`` written by ``torch.save``: loaded with ``mmap=True`` (tensor bytes stay on disk until
touched) and ``weights_only=True`` unless the caller opts in to full unpickling."""

from __future__ import annotations

import argparse
import contextlib
import pathlib
import pickle
import re
import zipfile
from operator import attrgetter
from typing import Any, Dict, Iterable, List, Tuple

from netscope.checkpoints.distributed import SHARDED_TENSOR, is_sharded_tensor_error
from netscope.errors import CheckpointError
from netscope.records import TensorMeta

ZIP_MAGIC = b"PK\x03\x04"
_GLOBAL_IN_MESSAGE = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


# Plain-data classes that training scripts pickle beside the weights and that safe loading may build, as
# timm allow-lists them: argparse.Namespace (timm's train.py saves its args in every checkpoint), and paths
# (Lightning's hyper_parameters keep a data_dir=Path(...) as given; building one reads no file and runs no code).
SAFE_GLOBALS = (argparse.Namespace, pathlib.PosixPath, pathlib.PurePosixPath, pathlib.PureWindowsPath)


def unsafe_pickle_error(path: str, detail: str) -> CheckpointError:
    return CheckpointError(
        f"{path} contains pickled Python objects that safe loading (weights_only=True) refuses to "
        f"build{detail}. Building them would run code stored in the file, so netscope did not. If you "
        "trust where the file came from, pass --unsafe-pickle (API: weights_only=False); better, load it "
        "once in a trusted environment and re-save only the tensors with torch.save(model.state_dict(), PATH)."
    )


def _unsafe_globals(path: str) -> List[str]:
    import torch

    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # legacy format or unreadable: the generic message is used instead
        return []


# torch's weights_only message for a file holding nested jagged tensors (NJTs)
_NESTED_JAGGED = "to load nested jagged tensors"
# pickle's message when a module lacks the class the file names
_MISSING_CLASS = re.compile(r"Can't get attribute '([^']+)' on <module '([^']+)'")


def load(path: str, *, weights_only: bool, mmap: bool) -> Tuple[Any, List[str]]:
    """``torch.load`` on CPU; returns the object and notes (e.g. that mmap was not possible)."""
    import torch

    notes: List[str] = []
    is_zip = zipfile.is_zipfile(path)
    if mmap and not is_zip:
        mmap = False
        notes.append(
            "legacy (non-zip) torch.save format: memory mapping is impossible, so every tensor was read "
            "into memory; re-save with a current torch.save to list it without reading the data."
        )
    if is_zip and is_torchscript_archive(path):
        raise CheckpointError(
            f"{path} is a TorchScript archive (torch.jit.save), not a torch.save checkpoint: netscope does not "
            "run TorchScript loaders on files. Load it with torch.jit.load and torch.save(module.state_dict(), ...) "
            "to list, diff or remap its keys; 'netscope summary' takes the loaded module itself")
    source = path
    if str(path).endswith(".safetensors"):  # torch.load would hand the file to safetensors by its name
        source = open(path, "rb")  # closed below; a file handle cannot be memory-mapped
        mmap = False
        notes.append(f"{path} is a torch.save file although its name ends in .safetensors: every tensor was "
                     "read into memory; rename it to .pt")
    try:
        allow = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5; no allow-list before
        with (allow(list(SAFE_GLOBALS)) if allow else contextlib.nullcontext()):
            container = torch.load(source, map_location="cpu", weights_only=weights_only, mmap=mmap)
        if not weights_only:
            from netscope.checkpoints.containers import modules_as_state_dicts

            container = modules_as_state_dicts(container, notes)
        return container, notes
    except pickle.UnpicklingError as exc:
        if _NESTED_JAGGED in str(exc):  # torch's safe loader builds them only once torch._dynamo is imported
            raise CheckpointError(f"{path} holds nested jagged tensors (torch.nested, layout=torch.jagged): a nested "
                                  "tensor has no single shape, so netscope cannot list, compare or remap it. Save its "
                                  "parts instead (nt.unbind() gives the component tensors)") from None
        if weights_only and ("weights_only" in str(exc) or "Weights only" in str(exc)):
            names = (_unsafe_globals(path) if is_zip else []) or _GLOBAL_IN_MESSAGE.findall(str(exc))[:1]
            detail = f" ({', '.join(names[:6])}{', ...' if len(names) > 6 else ''})" if names else ""
            if is_sharded_tensor_error(" ".join(names)):
                raise CheckpointError(SHARDED_TENSOR.format(path=path)) from None
            raise unsafe_pickle_error(path, detail) from None
        raise _corrupt(path, exc) from None
    except ImportError as exc:  # full unpickling needs the library that pickled its objects (mmengine, ...)
        library = (exc.name or "").split(".")[0] or "the library that wrote it"
        raise CheckpointError(f"{path} pickles objects of the library {library!r}, which is not installed, so they "
                              f"cannot be rebuilt: install it (pip install {library}) and try again") from None
    except AttributeError as exc:  # full unpickling: the class the file names is not in its module here
        missing = _MISSING_CLASS.search(str(exc))
        if not missing:
            raise _corrupt(path, exc) from None
        module = "__main__" if missing.group(2).endswith("__main__") else missing.group(2)  # python -m netscope
        raise CheckpointError(
            f"{path} pickles an object of class {module}.{missing.group(1)}, which cannot be found here (a class "
            "of the training script's __main__, or one moved or renamed since), so it cannot be rebuilt. Load the "
            "file once where that class is defined and re-save only the tensors "
            "(torch.save(model.state_dict(), ...))") from None
    except Exception as exc:  # torch.load on a damaged file raises nearly anything (RuntimeError, EOFError, ...)
        if is_sharded_tensor_error(str(exc)):
            raise CheckpointError(SHARDED_TENSOR.format(path=path)) from None
        raise _corrupt(path, exc) from None
    finally:
        if source is not path:
            source.close()


def is_torchscript_archive(path: str) -> bool:
    """A torch.jit.save zip: its records include ``constants.pkl`` (and compiled ``code/``)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/constants.pkl") or name == "constants.pkl" for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def _corrupt(path: str, exc: BaseException) -> CheckpointError:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if len(reason) > 200:
        reason = reason[:197] + "..."
    return CheckpointError(
        f"{path} could not be read as a torch.save checkpoint ({reason}). The file is truncated, corrupt, "
        "or not a PyTorch checkpoint; re-download or re-save it."
    )


def storage_ids(tensors: Dict[str, Any], prefix: str = "") -> Dict[str, str]:
    """Key -> short storage id (``s0``, ``s1``, ...): equal for keys that share one storage.

    Values are tensors, or ``TensorMeta`` whose ``storage_id`` is the file's storage key (torch_zip).
    """
    ids: Dict[Any, str] = {}
    out: Dict[str, str] = {}
    for key, tensor in tensors.items():
        if type(tensor) is TensorMeta:
            identity: Any = tensor.storage_id  # the file's storage key (a str: never equal to a tuple below)
        else:
            from netscope.checkpoints.identity import storage_or_object_key

            identity = storage_or_object_key(tensor)
        known = ids.get(identity)
        if known is None:
            known = ids[identity] = f"{prefix}s{len(ids)}"
        out[key] = known
    return out


def numbered_in_order(metas: Iterable[TensorMeta], prefix: str = "") -> bool:
    """Whether the ``storage_id`` of these ``TensorMeta`` already are what :func:`storage_ids` gives them
    (``s0``, ``s1``, ... in order of first use): torch_zip's ids for a plain state dict, since torch numbers
    storages in the order it saves them. A few C loops instead of a Python one per tensor."""
    ids = list(map(attrgetter("storage_id"), metas))
    numbered = [f"{prefix}s{n}" for n in range(len(ids))]
    if ids == numbered:  # one storage per tensor, the common case
        return True
    first = list(dict.fromkeys(ids))  # None (no id) never equals a numbered id
    return first == numbered[:len(first)]
