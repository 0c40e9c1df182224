"""List zip-format ``torch.save`` files without importing torch or reading tensor bytes.

``data.pkl`` is unpickled by a restricted unpickler whose ``find_class`` knows only the globals a plain
state dict (or a training checkpoint of dicts, lists, numbers and tensors) uses, and maps each to a
stand-in: storages stay the records the pickle names (``_PersistentId``) and tensors become ``TensorMeta``
whose ``storage_id`` is ``s`` + the storage's key in the archive (torch numbers storages in the order it
saves them, so for a plain state dict these are the ids the listing gives: nothing is renumbered). Every
such global is one torch's ``weights_only`` loader allows, so nothing can run code. Anything else (an unknown global, an odd record, a view outside its
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
from operator import attrgetter, ge, itemgetter, mul
from typing import Any, Dict, Optional, Tuple

from netscope.checkpoints.dtypes import itemsize, itemsizes
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


class _PersistentId(tuple):
    """A storage record as the pickle names it, ``("storage", storage type, key, location, numel)``. The
    unpickler's ``persistent_load`` is this very type (a C call, no Python frame per storage); the type tells
    it from a tuple the pickle builds itself, which is never a storage."""

    __slots__ = ()


class _TensorType:
    """Stands for ``torch.Tensor`` / ``nn.Parameter`` as the ``new_type`` of ``_rebuild_from_type_v2``."""

    __slots__ = ()


_TENSOR_TYPE = _TensorType()


_new_object = object.__new__


# (module, name) -> the stand-in find_class returns; everything here is allowed by torch's weights_only
_GLOBALS: Dict[Tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "Counter"): collections.Counter,
    ("builtins", "set"): set,
    ("builtins", "complex"): complex,
    ("builtins", "bytearray"): bytearray,
    ("_codecs", "encode"): codecs.encode,  # how protocol 2 pickles bytes
    ("torch", "Tensor"): _TENSOR_TYPE,
    ("torch._tensor", "Tensor"): _TENSOR_TYPE,
    ("torch.nn.parameter", "Parameter"): _TENSOR_TYPE,
    ("torch", "UntypedStorage"): _StorageType("uint8"),
    ("torch.storage", "UntypedStorage"): _StorageType("uint8"),
}
_GLOBALS.update({("torch", name): _StorageType(dtype) for name, dtype in LEGACY_STORAGE_DTYPES.items()})
# (module, name) -> the _TensorReader method standing for it (they record which storages the tensors use)
_REBUILDERS: Dict[Tuple[str, str], str] = {
    ("torch._utils", "_rebuild_tensor_v2"): "rebuild_tensor_v2",
    ("torch._utils", "_rebuild_tensor_v3"): "rebuild_tensor_v3",
    ("torch._utils", "_rebuild_parameter"): "rebuild_parameter",
    ("torch._utils", "_rebuild_parameter_with_state"): "rebuild_parameter",
    ("torch._tensor", "_rebuild_from_type_v2"): "rebuild_from_type_v2",
}


class _HeaderUnpickler(pickle.Unpickler):
    """Builds only containers, numbers, strings and tensor stand-ins; refuses every other global. Storage
    records need no Python call: ``persistent_load`` is the ``_PersistentId`` type."""

    persistent_load = _PersistentId

    def __init__(self, data: bytes):
        super().__init__(io.BytesIO(data))
        # the rebuild functions find_class hands out live in the memo: as methods of the unpickler itself they
        # would make a cycle (unpickler -> memo -> method -> unpickler) that keeps every object of the file
        # alive until the cyclic collector runs (0.25 s on 100k keys, on top of freeing them)
        self.tensors = _TensorReader()

    def find_class(self, module: str, name: str) -> Any:
        # protocol 2 pickles name Python 2 modules (``__builtin__.set``): rename them as pickle would
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        found = _GLOBALS.get((module, name))
        if found is not None:
            return found
        method = _REBUILDERS.get((module, name))
        if method is not None:
            return getattr(self.tensors, method)
        if module == "torch" and itemsize(name) and name not in ("qint8", "quint8", "qint32"):
            return _Dtype(name)  # dtypes named by _rebuild_tensor_v3 (float8, uint16, ...)
        raise FastPathUnavailable(f"global {module}.{name}")


class _TensorReader:
    """The stand-ins of torch's tensor rebuild functions, and the storages their tensors use.

    One Python call per tensor in the file (``rebuild_tensor_v2``, kept to plain comparisons): the storage
    record's form (torch checks it on every use), the first record of each storage key (torch keeps that one),
    the view inside its storage, and the ``TensorMeta``. Each key's record is checked against the archive
    after the load."""

    def __init__(self):
        self.storages: Dict[str, _PersistentId] = {}  # archive key -> its first record

    def rebuild_tensor_v2(self, storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any = False,
                          hooks: Any = None, metadata: Any = None, *, dtype: Optional[str] = None) -> TensorMeta:
        """The view's ``TensorMeta``; ``dtype`` None: the storage's own (a typed storage, offset and strides in
        its elements), else the view's dtype over an untyped storage (which counts bytes). A pickle passes
        arguments by position only, so ``dtype`` comes from ``rebuild_tensor_v3`` alone."""
        if type(storage) is not _PersistentId or len(storage) != 5:
            raise FastPathUnavailable("tensor without a storage record")
        tag, storage_type, key, _location, numel = storage
        if tag != "storage" or type(storage_type) is not _StorageType:
            raise FastPathUnavailable("storage record of an unexpected form")
        first = self.storages.setdefault(key, storage)  # torch keeps the first record of a key
        if first is storage:
            if type(key) is not str or type(numel) is not int or numel < 0:
                raise FastPathUnavailable("storage record of an unexpected form")
        else:
            _, storage_type, _, _, numel = first
        if dtype is None:
            dtype = storage_type.dtype
        elif storage_type.dtype == "uint8":
            numel //= itemsize(dtype)  # the view counts elements of its dtype
        else:
            raise FastPathUnavailable("v3 tensor without an untyped storage")
        if type(offset) is not int or type(size) is not tuple or type(stride) is not tuple or len(size) != len(stride):
            raise FastPathUnavailable("tensor shape or strides of an unexpected form")
        end, empty = offset + 1, False
        for d, s in zip(size, stride):
            if type(d) is not int or type(s) is not int or d <= 0 or s < 0:  # one test per dimension, mostly
                if d != 0 or type(d) is not int or type(s) is not int or s < 0:
                    raise FastPathUnavailable("tensor shape or strides of an unexpected form")
                empty = True  # an empty view fits anywhere
            end += (d - 1) * s
        if offset < 0 or (end > numel and not empty):
            raise FastPathUnavailable("tensor view outside its storage")
        # records.record_from_fields inlined: one call fewer per tensor (~10 ms on 100k keys, on the 1 s target)
        meta = _new_object(TensorMeta)  # without the frozen dataclass's three object.__setattr__ calls
        fields = meta.__dict__
        fields["shape"] = size
        fields["dtype"] = dtype
        fields["storage_id"] = "s" + key
        if offset or end != numel or empty:  # a view reaching part of its storage (a whole one's span goes unsaid:
            fields["span"] = (offset, offset if empty else end)  # its own bytes are the storage's, 100k keys pay none)
        return meta

    def rebuild_tensor_v3(self, storage, offset, size, stride, requires_grad, hooks, dtype, metadata=None):
        if type(dtype) is not _Dtype:
            raise FastPathUnavailable("v3 tensor without a dtype")
        return self.rebuild_tensor_v2(storage, offset, size, stride, dtype=dtype.name)  # names of a known size

    def rebuild_parameter(self, data, requires_grad=True, hooks=None, state=None):
        if type(data) is not TensorMeta:
            raise FastPathUnavailable("parameter without tensor data")
        return data

    def rebuild_from_type_v2(self, func, new_type, args, state):
        if new_type is not _TENSOR_TYPE or func not in (self.rebuild_tensor_v2, self.rebuild_tensor_v3,
                                                        self.rebuild_parameter):
            raise FastPathUnavailable("tensor subclass")
        return func(*args)


def _check_storages(storages: Mapping[str, _PersistentId], records: Mapping[str, Any], prefix: str) -> None:
    """Every storage the pickle names is a stored (uncompressed, as torch writes them) record at least as long
    as its elements (C loops over all storages)."""
    found = list(map(records.get, map(f"{prefix}data/".__add__, storages)))
    if None in found:
        raise FastPathUnavailable("storage missing from the archive")
    first = list(storages.values())
    nbytes = map(mul, map(itemgetter(4), first), itemsizes(map(attrgetter("dtype"), map(itemgetter(1), first))))
    if set(map(attrgetter("method"), found)) - {0} or not all(map(ge, map(attrgetter("size"), found), nbytes)):
        raise FastPathUnavailable("storage compressed, or shorter than its tensors")


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
    _check_storages(unpickler.tensors.storages, records, prefix)
    if not isinstance(container, Mapping):
        raise FastPathUnavailable("top-level object is not a mapping (its layout names torch's type)")
    _refuse_bare_stand_ins(container)
    return container


def _refuse_bare_stand_ins(value: Any, depth: int = 0) -> None:
    """A storage or class saved as a value would be summarized under the stand-in's name: let torch read it."""
    if isinstance(value, (_PersistentId, _StorageType, _TensorType)) or depth > 100:
        raise FastPathUnavailable("a storage or torch class saved as a value")
    if isinstance(value, Mapping):
        if set(map(type, value)) <= _LEAF_TYPES and set(map(type, value.values())) <= _LEAF_TYPES:
            return  # a state dict's keys and tensors: nothing to look into
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
