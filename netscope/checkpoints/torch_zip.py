"""List zip-format ``torch.save`` files without importing torch or reading tensor bytes.

``data.pkl`` is unpickled by a restricted unpickler whose ``find_class`` knows only the globals a plain
state dict (or a training checkpoint of dicts, lists, numbers and tensors) uses, and maps each to a
stand-in: storages become ``_Storage`` (id, dtype, element count) and tensors become ``TensorMeta``
whose ``storage_id`` is ``s`` + the storage's key in the archive (torch numbers storages in the order it
saves them, so for a plain state dict these are the ids the listing gives: nothing is renumbered). Every such global is one torch's ``weights_only`` loader
allows, so nothing can run code. Anything else (an unknown global, an odd record, a view outside its
storage) raises ``FastPathUnavailable`` and the caller falls back to ``torch.load``, which applies the
``weights_only`` rules and gives the usual error messages.
"""

from __future__ import annotations

import _compat_pickle
import codecs
import collections
import io
import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Dict, NamedTuple, Tuple

from netscope.checkpoints.dtypes import itemsize
from netscope.checkpoints.zip_records import ZipUnsupported, read_directory
from netscope.records import TensorMeta

# legacy ``torch.<Name>Storage`` classes named in pickles -> dtype name (torch.storage's BC table)
LEGACY_STORAGE_DTYPES = {
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
    "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16", "CharStorage": "int8",
    "ByteStorage": "uint8", "BoolStorage": "bool", "BFloat16Storage": "bfloat16",
    "ComplexDoubleStorage": "complex128", "ComplexFloatStorage": "complex64",
}


class FastPathUnavailable(Exception):
    """The file needs torch itself to be read (or to produce torch's exact error): fall back."""


@dataclass(frozen=True, slots=True)
class _StorageType:
    dtype: str


@dataclass(frozen=True, slots=True)
class _Dtype:
    name: str

    netscope_summary = "dtype"  # how layouts.summarize_value words a torch.dtype entry


class _Storage(NamedTuple):  # one per storage in the file: a tuple is the cheapest immutable record
    key: str  # the storage_id its tensors get: "s" + its key in the archive
    dtype: str
    numel: int
    element: int  # bytes per element of dtype

    @property
    def nbytes(self) -> int:
        return self.numel * self.element


_new_storage = partial(tuple.__new__, _Storage)  # the NamedTuple without its Python-level __new__


class _TensorType:
    """Stands for ``torch.Tensor`` / ``nn.Parameter`` as the ``new_type`` of ``_rebuild_from_type_v2``."""

    __slots__ = ()


_TENSOR_TYPE = _TensorType()


_new_object = object.__new__


def _tensor_meta(shape: tuple, dtype: str, storage_id: str) -> TensorMeta:
    """``TensorMeta(shape, dtype, storage_id)`` without the frozen dataclass's three ``object.__setattr__``
    calls (one per tensor in the file: half the cost of the stand-in on 100k-key files)."""
    meta = _new_object(TensorMeta)
    meta.__dict__.update(shape=shape, dtype=dtype, storage_id=storage_id)
    return meta


def _tensor(storage: Any, offset: Any, size: Any, stride: Any) -> TensorMeta:
    """The view's ``TensorMeta``, once its shape, strides and offset fit in the storage (what
    ``Tensor.set_`` checks). One call per tensor in the file: plain loops and exact types, anything
    unusual falls back to torch."""
    if type(storage) is not _Storage or type(offset) is not int or offset < 0:
        raise FastPathUnavailable("tensor arguments of an unexpected type")
    if type(size) is not tuple or type(stride) is not tuple or len(size) != len(stride):
        raise FastPathUnavailable("tensor shape or strides of an unexpected form")
    last, empty = offset, False
    for d, s in zip(size, stride):
        if type(d) is not int or type(s) is not int or d < 0 or s < 0:
            raise FastPathUnavailable("tensor shape or strides of an unexpected form")
        empty = empty or d == 0
        last += (d - 1) * s
    if not storage.element or (not empty and last + 1 > storage.numel):
        raise FastPathUnavailable("tensor view outside its storage, or an unknown dtype")
    return _tensor_meta(size, storage.dtype, storage.key)


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    return _tensor(storage, offset, size, stride)


def _rebuild_tensor_v3(storage, offset, size, stride, requires_grad, hooks, dtype, metadata=None):
    if not isinstance(dtype, _Dtype) or not isinstance(storage, _Storage) or storage.dtype != "uint8":
        raise FastPathUnavailable("v3 tensor without an untyped storage and a dtype")
    element = itemsize(dtype.name)
    if not element:
        raise FastPathUnavailable(f"dtype {dtype.name} of unknown size")
    # the untyped storage counts bytes; the view's offset and strides count elements of ``dtype``
    typed = _new_storage((storage.key, dtype.name, storage.numel // element, element))
    return _tensor(typed, offset, size, stride)


def _rebuild_parameter(data, requires_grad=True, hooks=None, state=None):
    if not isinstance(data, TensorMeta):
        raise FastPathUnavailable("parameter without tensor data")
    return data


def _rebuild_from_type_v2(func, new_type, args, state):
    if new_type is not _TENSOR_TYPE or func not in (_rebuild_tensor_v2, _rebuild_tensor_v3, _rebuild_parameter):
        raise FastPathUnavailable("tensor subclass")
    return func(*args)


# (module, name) -> the stand-in find_class returns; everything here is allowed by torch's weights_only
_GLOBALS: Dict[Tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "Counter"): collections.Counter,
    ("builtins", "set"): set,
    ("builtins", "complex"): complex,
    ("builtins", "bytearray"): bytearray,
    ("_codecs", "encode"): codecs.encode,  # how protocol 2 pickles bytes
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch", "Tensor"): _TENSOR_TYPE,
    ("torch._tensor", "Tensor"): _TENSOR_TYPE,
    ("torch.nn.parameter", "Parameter"): _TENSOR_TYPE,
    ("torch", "UntypedStorage"): _StorageType("uint8"),
    ("torch.storage", "UntypedStorage"): _StorageType("uint8"),
}
_GLOBALS.update({("torch", name): _StorageType(dtype) for name, dtype in LEGACY_STORAGE_DTYPES.items()})


class _HeaderUnpickler(pickle.Unpickler):
    """Builds only containers, numbers, strings and tensor stand-ins; refuses every other global."""

    def __init__(self, data: bytes):
        super().__init__(io.BytesIO(data))
        self.storages: Dict[str, _Storage] = {}  # archive key -> storage; sizes checked after the load

    def find_class(self, module: str, name: str) -> Any:
        # protocol 2 pickles name Python 2 modules (``__builtin__.set``): rename them as pickle would
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        found = _GLOBALS.get((module, name))
        if found is not None:
            return found
        if module == "torch" and itemsize(name) and name not in ("qint8", "quint8", "qint32"):
            return _Dtype(name)  # dtypes named by _rebuild_tensor_v3 (float8, uint16, ...)
        raise FastPathUnavailable(f"global {module}.{name}")

    def persistent_load(self, saved_id: Any) -> _Storage:
        if type(saved_id) is not tuple or len(saved_id) != 5:
            raise FastPathUnavailable("persistent id that is not a storage")
        tag, storage_type, key, _location, numel = saved_id
        if (tag != "storage" or type(storage_type) is not _StorageType or type(key) is not str
                or type(numel) is not int or numel < 0):
            raise FastPathUnavailable("storage record of an unexpected form")
        known = self.storages.get(key)
        if known is None:
            dtype = storage_type.dtype
            known = self.storages[key] = _new_storage(("s" + key, dtype, numel, itemsize(dtype)))
        return known


def _check_storages(storages: Mapping[str, _Storage], records: Mapping[str, Any], prefix: str) -> None:
    """Every storage the pickle names is a stored (uncompressed, as torch writes them) record at least as long
    as its elements."""
    data = f"{prefix}data/"
    get = records.get
    for key, storage in storages.items():
        record = get(data + key)
        if record is None or record.method != 0 or record.size < storage.numel * storage.element:
            raise FastPathUnavailable(f"storage {key} missing or shorter than its tensors")


def read_container(path: str) -> Any:
    """The unpickled ``data.pkl`` of a zip torch file, tensors replaced by ``TensorMeta`` (storage_id =
    ``s`` + storage key). Raises ``FastPathUnavailable`` for anything the restricted reader does not cover."""
    if os.fspath(path).endswith(".safetensors"):
        raise FastPathUnavailable("torch file named .safetensors (torch.load reads it differently)")
    try:
        directory = read_directory(path)
        records = directory.records
        prefix = _archive_prefix(records)
        if f"{prefix}constants.pkl" in records:
            raise FastPathUnavailable("TorchScript archive")
        if f"{prefix}byteorder" in records and directory.read(f"{prefix}byteorder") not in (b"little", b"big"):
            raise FastPathUnavailable("unknown byte order")
        data = directory.read(f"{prefix}data.pkl")
    except (ZipUnsupported, KeyError) as exc:
        raise FastPathUnavailable(f"zip not readable here ({type(exc).__name__}: {exc})") from None

    unpickler = _HeaderUnpickler(data)
    try:
        container = unpickler.load()
    except FastPathUnavailable:
        raise
    except Exception as exc:  # truncated or malformed pickle: torch.load words the error
        raise FastPathUnavailable(f"pickle not readable ({type(exc).__name__})") from None
    _check_storages(unpickler.storages, records, prefix)
    if not isinstance(container, Mapping):
        raise FastPathUnavailable("top-level object is not a mapping (its layout names torch's type)")
    _refuse_bare_stand_ins(container)
    return container


def _refuse_bare_stand_ins(value: Any, depth: int = 0) -> None:
    """A storage or class saved as a value would be summarized under the stand-in's name: let torch read it."""
    if isinstance(value, (_Storage, _StorageType, _TensorType)) or depth > 100:
        raise FastPathUnavailable("a storage or torch class saved as a value")
    if isinstance(value, Mapping):
        value = list(value.keys()) + list(value.values())
    if isinstance(value, (list, tuple, set)):
        if set(map(type, value)) <= _LEAF_TYPES:  # a state dict's keys and tensors: nothing to look into
            return
        for item in value:
            if not isinstance(item, (str, int, float, TensorMeta)):
                _refuse_bare_stand_ins(item, depth + 1)


_LEAF_TYPES = frozenset({str, int, float, bool, TensorMeta})


def _archive_prefix(records: Mapping[str, Any]) -> str:
    """``"<archive>/"``: torch names every record under one top-level folder, given by the first record."""
    first = next(iter(records), "")
    if "/" not in first:
        raise FastPathUnavailable("zip without an archive folder")
    return first.split("/", 1)[0] + "/"
