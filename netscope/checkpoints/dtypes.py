"""Dtype names and element sizes, without importing torch (headers are parsed in pure Python)."""

from __future__ import annotations

from itertools import repeat
from typing import Iterable, Iterator, Optional

# safetensors header code -> torch dtype name (without "torch.")
SAFETENSORS_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8",
    "U64": "uint64", "U32": "uint32", "U16": "uint16", "U8": "uint8",
    "BOOL": "bool", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
    "F8_E4M3FNUZ": "float8_e4m3fnuz", "F8_E5M2FNUZ": "float8_e5m2fnuz",
    "F8_E8M0": "float8_e8m0fnu", "C64": "complex64", "C128": "complex128",
}

_ITEMSIZE = {
    "float64": 8, "float32": 4, "float16": 2, "bfloat16": 2,
    "int64": 8, "int32": 4, "int16": 2, "int8": 1,
    "uint64": 8, "uint32": 4, "uint16": 2, "uint8": 1, "bool": 1,
    "float8_e4m3fn": 1, "float8_e5m2": 1, "float8_e4m3fnuz": 1, "float8_e5m2fnuz": 1,
    "float8_e8m0fnu": 1, "complex64": 8, "complex128": 16, "complex32": 4,
    "qint8": 1, "quint8": 1, "qint32": 4,
}


def itemsize(dtype_name: str) -> int:
    """Bytes per element of a dtype name; 0 when unknown (the size is then left out of totals)."""
    return _ITEMSIZE.get(dtype_name, 0)


def itemsizes(dtype_names: Iterable[str]) -> Iterator[int]:
    """``itemsize`` of each name, in one C loop (listings of 100k tensors)."""
    return map(_ITEMSIZE.get, dtype_names, repeat(0))


_QUANTIZED = frozenset({"qint8", "quint8", "qint32", "quint4x2", "quint2x4"})


def copy_refusal(source: str, target: str) -> Optional[str]:
    """Why ``load_state_dict`` cannot copy a tensor of dtype ``source`` into one of dtype ``target`` (None when
    it can): torch refuses to copy a quantized tensor into a non-quantized one."""
    if source in _QUANTIZED and target not in _QUANTIZED:
        return (f"checkpoint {source} vs model {target}: load_state_dict cannot copy a quantized tensor into a "
                "non-quantized one; dequantize it first (tensor.dequantize())")
    return None


def torch_dtype_name(dtype) -> str:
    """``torch.float32`` -> ``"float32"``."""
    return str(dtype).rpartition(".")[2]
