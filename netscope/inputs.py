"""Dummy inputs: parse ``--input 1,3,224,224[:dtype]`` and build tensors on a device."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from netscope.errors import InputSpecError

MAX_INPUT_ELEMENTS = 2**34  # 16 Gi elements: anything larger is a typo, not a model input

FLOAT_DTYPES = ("float32", "float16", "bfloat16", "float64")
INT_DTYPES = ("int64", "int32", "int16", "int8", "uint8", "bool")
DTYPE_ALIASES = {"float": "float32", "fp32": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16",
                 "double": "float64", "long": "int64", "int": "int64"}


def normalize_dtype(name: str) -> str:
    """``"fp16"`` -> ``"float16"``; raises InputSpecError for an unknown name."""
    key = name.strip().lower().removeprefix("torch.")
    key = DTYPE_ALIASES.get(key, key)
    if key not in FLOAT_DTYPES + INT_DTYPES:
        raise InputSpecError(
            f"unknown dtype {name!r}; use one of {', '.join(FLOAT_DTYPES + INT_DTYPES)}"
        )
    return key


def normalize_float_dtype(name: str) -> str:
    """Like :func:`normalize_dtype`, for the float dtype a pass runs in (``--dtype``): integer names are refused."""
    key = normalize_dtype(name)
    if key not in FLOAT_DTYPES:
        raise InputSpecError(
            f"--dtype {name!r} is not a float dtype: parameters and float inputs are cast to it, so use one of "
            f"{', '.join(FLOAT_DTYPES)}; integer inputs take their dtype per tensor, e.g. --input 1,128:int64"
        )
    return key


@dataclass(frozen=True)
class TensorSpec:
    """One dummy tensor: a shape, a dtype, and for integer dtypes the exclusive upper bound of its values."""

    shape: Tuple[int, ...]
    dtype: Optional[str] = None  # None: the run's float dtype
    high: int = 2  # integer tensors are drawn from [0, high)

    def build(self, device, float_dtype: str, generator=None):
        import torch

        dtype_name = self.dtype or float_dtype
        dtype = getattr(torch, dtype_name)
        if str(device) == "meta":
            return torch.empty(self.shape, dtype=dtype, device="meta")
        if dtype.is_floating_point:
            return torch.randn(self.shape, generator=generator, dtype=torch.float32).to(device=device, dtype=dtype)
        if dtype == torch.bool:
            return torch.ones(self.shape, dtype=dtype, device=device)
        return torch.randint(0, max(self.high, 1), self.shape, generator=generator, dtype=torch.int64).to(device=device, dtype=dtype)


@dataclass(frozen=True)
class InputSpec:
    """Positional tensors (or one list of tensors when ``as_list``) plus keyword tensors."""

    args: List[TensorSpec]
    kwargs: Dict[str, TensorSpec] = field(default_factory=dict)
    as_list: bool = False  # detection models take one list of images

    def build(self, device, float_dtype: str = "float32") -> Tuple[tuple, dict]:
        """Materialize on ``device`` with a private generator, so the global RNG is never touched."""
        import torch

        generator = torch.Generator().manual_seed(0)
        args = [spec.build(device, float_dtype, generator) for spec in self.args]
        kwargs = {name: spec.build(device, float_dtype, generator) for name, spec in self.kwargs.items()}
        return ((args,) if self.as_list else tuple(args)), kwargs


def parse_input(text: str) -> TensorSpec:
    """``"1,3,224,224"`` or ``"1,128:int64"`` or ``"1x3x32x32"`` -> TensorSpec, with a clear error otherwise."""
    raw = text.strip()
    shape_part, _, dtype_part = raw.partition(":")
    dtype = normalize_dtype(dtype_part) if dtype_part else None
    high = 2
    if dtype and dtype not in FLOAT_DTYPES:
        high = 1000 if dtype not in ("bool", "uint8", "int8") else 2
    shape_text = shape_part.strip().strip("()[]")
    separator = "," if "," in shape_text else "x"  # 1,3,224,224 or 1x3x224x224
    items = [s.strip() for s in shape_text.split(separator)]
    if items and items[-1] == "":  # a trailing comma, as in a Python tuple
        items.pop()
    if not items:
        raise InputSpecError(f"--input {text!r} has no dimensions; write the shape like 1,3,224,224")
    dims = []
    for item in items:
        try:
            value = int(item)
        except ValueError:
            raise InputSpecError(
                f"--input {text!r}: {item!r} is not a whole number; write the shape like 1,3,224,224 "
                "(and an optional dtype like 1,128:int64)"
            ) from None
        if value <= 0:
            raise InputSpecError(f"--input {text!r}: every dimension must be at least 1, got {value}")
        dims.append(value)
    numel = 1
    for d in dims:
        numel *= d
    if numel > MAX_INPUT_ELEMENTS:
        raise InputSpecError(
            f"--input {text!r} asks for {numel:,} elements, more than netscope will allocate "
            f"({MAX_INPUT_ELEMENTS:,}); check the shape, or use --device meta for a run without memory"
        )
    return TensorSpec(tuple(dims), dtype, high)


def parse_inputs(texts: Optional[Sequence[str]]) -> Optional[InputSpec]:
    if not texts:
        return None
    return InputSpec([parse_input(t) for t in texts])
