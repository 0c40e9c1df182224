"""The one registry of size formulas, keyed by module type and looked up along the MRO.

A formula is a small pure function ``formula(module, args, kwargs) -> Prediction | None``: ``args`` and
``kwargs`` are what the module's forward received, with every tensor replaced by its ``torch.Size``.
It returns the expected output shape with the arithmetic written out per dimension, or the reason the
layer must reject the input (the same reason PyTorch gives), or ``None`` when it cannot tell (for
example a lazy layer that has not materialized yet).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Tuple

from netscope.records import Finding
from netscope.registry import Registry
from netscope.units import shape_text

Shape = Tuple[int, ...]

# Reasons a layer rejects an input: stable codes, one per kind of PyTorch error.
INPUT_RANK = "input-rank"  # wrong number of dimensions for this layer / mode
CHANNELS = "channel-mismatch"  # input channels differ from in_channels
FEATURES = "feature-mismatch"  # last dimension differs from in_features
KERNEL_TOO_LARGE = "kernel-larger-than-input"  # padded input smaller than the (dilated) kernel
OUTPUT_TOO_SMALL = "output-too-small"  # an output size would be zero or negative
PADDING_TOO_LARGE = "padding-over-half-kernel"  # pooling padding larger than half the kernel
OUTPUT_PADDING_TOO_LARGE = "output-padding-too-large"  # transposed conv: output_padding >= stride and dilation
OUTPUT_SIZE_OUT_OF_RANGE = "output-size-out-of-range"  # transposed conv: output_size= not reachable
PADDING_EXCEEDS_INPUT = "padding-exceeds-input"  # reflect/circular padding wider than the input
NOT_DIVISIBLE = "not-divisible"  # pixel (un)shuffle, fold: a size is not a multiple of the factor
BLOCK_COUNT_MISMATCH = "block-count-mismatch"  # fold: number of blocks differs from output_size's
DIM_OUT_OF_RANGE = "dim-out-of-range"  # flatten: start_dim/end_dim outside the input's dims
BATCH_MISMATCH = "batch-mismatch"  # bilinear: the two inputs' leading dimensions differ

REASONS = (INPUT_RANK, CHANNELS, FEATURES, KERNEL_TOO_LARGE, OUTPUT_TOO_SMALL, PADDING_TOO_LARGE,
           OUTPUT_PADDING_TOO_LARGE, OUTPUT_SIZE_OUT_OF_RANGE, PADDING_EXCEEDS_INPUT, NOT_DIVISIBLE,
           BLOCK_COUNT_MISMATCH, DIM_OUT_OF_RANGE, BATCH_MISMATCH)


@dataclass(frozen=True)
class DimFormula:
    """One output dimension's arithmetic, e.g. ``H: floor((224 + 2*3 - 1*(7-1) - 1) / 2) + 1 = 112``."""

    dim: str
    text: str
    expected: int

    def to_dict(self) -> dict:
        return {"dim": self.dim, "text": self.text, "expected": self.expected}


@dataclass(frozen=True)
class Invalid:
    """Why the layer must reject this input; ``expected``/``arrived`` are short phrases for diagnosis."""

    reason: str  # one of REASONS
    message: str
    expected: str = ""
    arrived: str = ""

    def to_dict(self) -> dict:
        return {"reason": self.reason, "message": self.message, "expected": self.expected, "arrived": self.arrived}


@dataclass(frozen=True)
class Prediction:
    """What a formula expects for one call: an output shape, or why the call must fail."""

    shape: Optional[Shape]  # None when invalid
    dims: Tuple[DimFormula, ...] = ()
    notes: Tuple[Finding, ...] = ()  # warnings about this call (layer/call_index filled in by the checker)
    invalid: Optional[Invalid] = None

    @property
    def is_valid(self) -> bool:
        return self.invalid is None


Formula = Callable[[Any, tuple, dict], Optional[Prediction]]


class FormulaRegistry:
    """Module type -> formula. Lookup walks the MRO, so subclasses inherit their base's formula."""

    def __init__(self) -> None:
        self._formulas: Registry[type, Formula] = Registry("size formula")

    def register(self, *module_types: type):
        """Decorator: the formula of each of ``module_types`` (and of their subclasses without their own)."""
        return self._formulas.decorator(*module_types)

    def lookup(self, module_type: type) -> Optional[Formula]:
        return self._formulas.lookup(module_type)

    def __contains__(self, module_type: type) -> bool:
        return self.lookup(module_type) is not None

    def types(self) -> Tuple[type, ...]:
        return tuple(self._formulas)


FORMULAS = FormulaRegistry()


def invalid(reason: str, message: str, expected: str = "", arrived: str = "") -> Prediction:
    return Prediction(shape=None, invalid=Invalid(reason, message, expected, arrived))


def first_shape(args: tuple, kwargs: dict, name: str = "input") -> Optional[Shape]:
    """The shape of the first positional tensor argument (or keyword ``name``), if there is one."""
    value = args[0] if args else kwargs.get(name)
    if isinstance(value, tuple) and all(isinstance(d, int) for d in value):
        return tuple(int(d) for d in value)
    return None


def dim_names(count: int) -> Tuple[str, ...]:
    """Spatial dimension names: L; H, W; D, H, W; beyond that S1, S2, ..."""
    return {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}.get(count, tuple(f"S{i + 1}" for i in range(count)))


def as_tuple(value, count: int) -> Tuple:
    """An int (or 1-tuple) repeated ``count`` times, or the tuple itself."""
    if isinstance(value, (tuple, list)):
        return tuple(value) * count if len(value) == 1 and count > 1 else tuple(value)
    return (value,) * count


def spatial_rank_problem(class_name: str, nd: int, shape) -> Optional[Prediction]:
    """None when ``shape`` is an unbatched (nd+1) or batched (nd+2) input of an nd-dim windowed layer."""
    if len(shape) in (nd + 1, nd + 2):
        return None
    return invalid(INPUT_RANK,
                   f"{class_name} expects a {nd + 1}D (unbatched) or {nd + 2}D (batched) input, got {len(shape)}D "
                   f"{shape_text(shape)}",
                   expected=f"{nd + 1}D or {nd + 2}D input", arrived=f"{len(shape)}D {shape_text(shape)}")


def product_text(values) -> str:
    """``2704 = 16*13*13`` style factor text: ``16*13*13``."""
    return "*".join(str(v) for v in values)
