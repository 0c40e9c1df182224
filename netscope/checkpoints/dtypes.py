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
    "F8_E8M0": "float8_e8m0fnu", "C64": "complex64", "C128": "complex128", "F4": "float4_e2m1fn_x2",
}
# safetensors codes whose header shape counts sub-byte values that torch's dtype packs several to an element: the
# torch shape's last dimension is the header's divided by this
SAFETENSORS_PACKED = {"F4": 2}

_ITEMSIZE = {
    "float64": 8, "float32": 4, "float16": 2, "bfloat16": 2,
    "int64": 8, "int32": 4, "int16": 2, "int8": 1,
    "uint64": 8, "uint32": 4, "uint16": 2, "uint8": 1, "bool": 1,
    "float8_e4m3fn": 1, "float8_e5m2": 1, "float8_e4m3fnuz": 1, "float8_e5m2fnuz": 1,
    "float8_e8m0fnu": 1, "complex64": 8, "complex128": 16, "complex32": 4,
    "qint8": 1, "quint8": 1, "qint32": 4, "float4_e2m1fn_x2": 1,
}


def itemsize(dtype_name: str) -> int:
    """Bytes per element of a dtype name; 0 when unknown (the size is then left out of totals)."""
    return _ITEMSIZE.get(dtype_name, 0)


def itemsizes(dtype_names: Iterable[str]) -> Iterator[int]:
    """``itemsize`` of each name, in one C loop (listings of 100k tensors)."""
    return map(_ITEMSIZE.get, dtype_names, repeat(0))


_QUANTIZED = frozenset({"qint8", "quint8", "qint32", "quint4x2", "quint2x4"})


def copy_refusal(source, target) -> Optional[str]:
    """Why ``load_state_dict`` cannot copy the tensor ``source`` describes (a ``TensorMeta``) into the one
    ``target`` does (None when it can): torch refuses to copy a quantized tensor into a non-quantized one, and to
    copy between sparse and dense tensors."""
    if source.dtype in _QUANTIZED and target.dtype not in _QUANTIZED:
        return (f"checkpoint {source.dtype} vs model {target.dtype}: load_state_dict cannot copy a quantized tensor "
                "into a non-quantized one; dequantize it first (tensor.dequantize())")
    if source.layout != target.layout:
        s, t = source.layout or "dense", target.layout or "dense"
        convert = {"dense": "tensor.to_dense()", "sparse_coo": "tensor.to_sparse()"}.get(t, f"tensor.to_{t}()")
        return (f"checkpoint {s} vs model {t}: load_state_dict cannot copy between tensors of these layouts; convert "
                f"it first ({convert})")
    return None


def layout_name(tensor) -> Optional[str]:
    """``"sparse_coo"``, ``"sparse_csr"``, ... for a tensor of a sparse layout; None for a dense (strided) one."""
    name = str(tensor.layout).rpartition(".")[2]
    return None if name == "strided" else name


def torch_dtype_name(dtype) -> str:
    """``torch.float32`` -> ``"float32"``."""
    return str(dtype).rpartition(".")[2]
