"""``torch.distributed.checkpoint`` directories: the ``.metadata`` file read with a restricted unpickler.

torch reads ``.metadata`` with plain ``pickle.load``, which would run any code the file names. Here only
the checkpoint's own metadata classes (and torch.Size, dtypes, layouts, paths) may be built, so listing
or diffing a DCP directory never executes code from it and never reads tensor bytes.
"""

from __future__ import annotations

import io
import os
import pickle
from collections import OrderedDict
from typing import Any, Dict, List, Tuple

from netscope.errors import CheckpointError
from netscope.records import TensorMeta

METADATA_FILE = ".metadata"

_ALLOWED = {
    "torch.distributed.checkpoint.metadata": {
        "Metadata", "TensorStorageMetadata", "BytesStorageMetadata", "ChunkStorageMetadata",
        "TensorProperties", "MetadataIndex", "StorageMeta", "_MEM_FORMAT_ENCODING",
    },
    "torch.distributed.checkpoint.filesystem": {"_StorageInfo"},
    "torch.distributed.checkpoint._extension": {"ZStandard", "StreamTransformExtension", "Extension"},
    "torch.serialization": {"_get_layout"},
    "torch": {"Size"},
    "pathlib": {"PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath", "Path"},
    "collections": {"OrderedDict"},
    "builtins": {"set", "frozenset", "tuple", "list", "dict", "slice", "complex"},
}


class _RefusedGlobal(pickle.UnpicklingError):
    """A global outside the allow-list: raised before the object could be built."""


class _MetadataUnpickler(pickle.Unpickler):
    """Builds only DCP metadata classes; anything else is refused before it can run."""

    def find_class(self, module: str, name: str):
        import torch

        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if name in _ALLOWED.get(module, ()):
            __import__(module)
            import sys

            return getattr(sys.modules[module], name)
        raise _RefusedGlobal(f"global {module}.{name} is not a DCP metadata class")


def is_dcp_dir(path: str) -> bool:
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, METADATA_FILE))


def read_metadata(directory: str, *, weights_only: bool = True) -> Any:
    """The ``Metadata`` object of a DCP directory, built by the restricted unpickler.

    ``weights_only=False`` (the explicit unsafe opt-in) unpickles it as torch does, for custom planners.
    """
    path = os.path.join(directory, METADATA_FILE)
    with open(path, "rb") as handle:
        data = handle.read()
    if not data:
        raise CheckpointError(f"{path} is empty: the torch.distributed.checkpoint save did not finish; save again.")
    try:
        metadata = (_MetadataUnpickler(io.BytesIO(data)).load() if weights_only
                    else pickle.loads(data))  # noqa: S301 - the caller opted in explicitly
    except ImportError as exc:
        raise CheckpointError(
            f"{path} needs {exc.name or 'a module'} to be read, which this Python/torch installation lacks "
            "(torch.distributed may be disabled in this build); read it where torch.distributed is available."
        ) from None
    except _RefusedGlobal as exc:
        raise CheckpointError(
            f"{path} names Python objects other than torch.distributed.checkpoint metadata ({exc}); "
            "netscope does not unpickle them because that could run code from the file. If the directory "
            "comes from a trusted custom planner, pass --unsafe-pickle (API: weights_only=False)."
        ) from None
    except Exception as exc:  # truncated or garbage pickle
        raise CheckpointError(
            f"{path} is not a readable torch.distributed.checkpoint metadata file ({type(exc).__name__}: {exc}); "
            "the directory is incomplete or corrupt: save it again."
        ) from None
    if type(metadata).__name__ != "Metadata" or not hasattr(metadata, "state_dict_metadata"):
        raise CheckpointError(f"{path} does not hold torch.distributed.checkpoint Metadata; it is not a DCP checkpoint.")
    return metadata


def flat_entries(metadata: Any) -> Tuple["OrderedDict[str, Any]", Dict[str, Tuple[Any, ...]], List[str]]:
    """Flattened key -> TensorMeta (tensors) or ``"bytes"`` (pickled objects); key paths; notes."""
    from netscope.checkpoints.dtypes import torch_dtype_name

    entries: "OrderedDict[str, Any]" = OrderedDict()
    notes: List[str] = []
    chunked = 0
    for index, (key, item) in enumerate(metadata.state_dict_metadata.items()):
        if type(item).__name__ == "TensorStorageMetadata":
            entries[key] = TensorMeta(tuple(int(d) for d in item.size),
                                      torch_dtype_name(item.properties.dtype), f"s{index}")
            chunked += len(item.chunks) > 1
        else:
            entries[key] = "bytes"
    if chunked:
        notes.append(f"{chunked} tensors are stored as several chunks (a sharded save); shapes shown are "
                     "the full, global shapes.")
    planner = metadata.planner_data if isinstance(metadata.planner_data, dict) else {}
    paths = {k: tuple(v) for k, v in planner.items() if isinstance(v, (tuple, list)) and v}
    return entries, paths, notes


def load_tensors(directory: str, metadata: Any, keys: List[str]) -> Dict[str, Any]:
    """Read the named tensors (flattened keys) with ``torch.distributed.checkpoint.load`` in this process."""
    import warnings

    import torch
    import torch.distributed.checkpoint as dcp

    state: Dict[str, Any] = {}
    for key in keys:
        item = metadata.state_dict_metadata[key]
        state[key] = torch.empty(tuple(item.size), dtype=item.properties.dtype)
    from torch.distributed.checkpoint.api import CheckpointException

    reader = _SafeReader(directory, metadata)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            dcp.load(state, storage_reader=reader, no_dist=True,
                     planner=dcp.DefaultLoadPlanner(flatten_state_dict=False, flatten_sharded_tensors=False))
    except (Exception, CheckpointException) as exc:
        raise CheckpointError(
            f"reading tensors from the torch.distributed.checkpoint directory {directory} failed "
            f"({_first_error_line(exc)}); the directory is incomplete or corrupt."
        ) from None
    return state


def _SafeReader(directory: str, metadata: Any):
    """A FileSystemReader whose ``read_metadata`` returns the restricted-unpickled metadata."""
    from torch.distributed.checkpoint import FileSystemReader

    class SafeReader(FileSystemReader):
        def read_metadata(self, *args, **kwargs):  # noqa: D401 - torch API
            return metadata

    return SafeReader(directory)


class _Pickled:
    """Stands in for a non-tensor entry of a DCP checkpoint in headers-only views."""

    netscope_summary = "pickled object (not read)"

    def __repr__(self) -> str:
        return "<pickled object>"


PICKLED = _Pickled()


def load_object(directory: str, metadata: Any, key: str, *, weights_only: bool) -> Any:
    """One non-tensor entry, read from its byte range and unpickled with ``weights_only`` honoured."""
    import torch

    from netscope.checkpoints.torch_format import unsafe_pickle_error

    info = None
    for index, storage in (metadata.storage_data or {}).items():
        if getattr(index, "fqn", None) == key:
            info = storage
            break
    if info is None or getattr(info, "transform_descriptors", None):
        raise CheckpointError(f"{directory}: entry {key!r} has no readable byte range in the metadata "
                              "(or uses a storage transform netscope does not read); the checkpoint is incomplete.")
    file_path = os.path.join(directory, info.relative_path)
    try:
        with open(file_path, "rb") as handle:
            handle.seek(info.offset)
            data = handle.read(info.length)
        if len(data) != info.length:
            raise EOFError(f"{info.relative_path} ends before byte {info.offset + info.length}")
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=weights_only)
    except pickle.UnpicklingError as exc:
        if weights_only:
            raise unsafe_pickle_error(f"{directory} (entry {key!r})", "") from None
        raise CheckpointError(f"{directory}: entry {key!r} is corrupt ({exc}).") from None
    except (OSError, EOFError, RuntimeError) as exc:
        raise CheckpointError(f"{directory}: entry {key!r} could not be read ({exc}); the directory is "
                              "incomplete or corrupt.") from None


def _first_error_line(exc: BaseException) -> str:
    """CheckpointException embeds whole per-rank tracebacks: keep only the innermost error's name."""
    failures = getattr(exc, "failures", None)
    if isinstance(failures, dict) and failures:
        inner = next(iter(failures.values()))
        inner = getattr(inner, "exc", inner)  # some torch versions wrap the original exception
        return f"{type(inner).__name__}: {inner}".rstrip(": ")
    return f"{type(exc).__name__}: {exc}".splitlines()[0]
