"""The shared vocabulary: typed, frozen records that every analysis and renderer speaks."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Mapping, Optional, Tuple, Union

from netscope.finding_codes import check_code

# A shape tree mirrors a module's inputs/outputs: a tuple of ints for a tensor, a list/tuple/dict of
# shape trees for containers, and a short string (e.g. "int", "None") for anything that is not a tensor.
Shape = Tuple[int, ...]
FAILED = "(failed)"  # the output "shape" of a call whose forward raised
NOT_RECORDED = "(not recorded)"  # shapes (and counts) of a layer inside a TorchScript module: no hooks run there
MODEL_INPUT = -1  # in LayerCall.inputs_from and merges: the model's own input, not any call's output
ShapeTree = Union[Shape, list, dict, str]


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"

    def __str__(self) -> str:  # pragma: no cover - cosmetic
        return self.value


@dataclass(frozen=True)
class Finding:
    """One thing an analysis noticed: what, where, and how to fix it."""

    severity: Severity
    code: str  # stable, machine-readable, registered in netscope.finding_codes: "formula-mismatch", ...
    message: str
    fix: str = ""
    layer: Optional[str] = None  # qualified module name, when the finding is about one module
    call_index: Optional[int] = None  # LayerCall.index, when it is about one call

    def __post_init__(self) -> None:
        check_code(self.code, Severity(self.severity).value)

    def to_dict(self) -> dict:
        return {
            "severity": self.severity.value,
            "code": self.code,
            "message": self.message,
            "fix": self.fix,
            "layer": self.layer,
            "call_index": self.call_index,
        }


@dataclass(frozen=True)
class LayerCall:
    """One call of one module during the traced forward pass (a module called twice gives two)."""

    index: int  # position in call order; 0 is the root module
    name: str  # qualified name exactly as it prefixes state_dict keys ("" for the root)
    class_name: str
    depth: int  # 0 for the root
    parent: Optional[int]  # index of the enclosing call
    call_number: int  # 1 for this module's first call in the pass, 2 for its second, ...
    input_shapes: ShapeTree
    output_shapes: ShapeTree
    own_params: int  # elements of parameters registered directly on this module
    subtree_params: int  # elements of the unique parameters of this module and its descendants
    trainable: str  # "yes", "no", "partial", or "" when the subtree holds no parameters
    own_macs: int  # multiply-adds of operators that ran while this module was the innermost one
    macs: int  # own_macs plus those of every call nested inside this one
    output_bytes: int
    is_leaf: bool  # the module has no child modules
    hyperparams: Mapping[str, Any] = field(default_factory=dict)  # kernel_size, stride, padding, ...
    # cumulative receptive field of the output on the model input: a netscope.analyses.receptive_field.Field,
    # "whole input", or None (not derived from a spatial input, or through an operator without a rule)
    receptive_field: Any = None
    # dataflow (netscope.run.dataflow): indexes of the calls whose outputs this call received (-1: the model's
    # input), and the operators in its own code that merged values of different calls: ("add_", (11, 12))
    inputs_from: Tuple[int, ...] = ()
    merges: Tuple[Tuple[str, Tuple[int, ...]], ...] = ()
    # what else makes two calls of one class behave alike (netscope.run.module_tree.behaviour_key): a stock layer's
    # configuration (Dropout's p, GELU's approximate), the module's own hooks; folding compares it, no column shows it
    behaviour: Any = None

    @property
    def is_repeat(self) -> bool:
        return self.call_number > 1

    @property
    def display_name(self) -> str:
        base = self.name or "(root)"
        return f"{base} (call {self.call_number})" if self.is_repeat else base


def record_from_fields(cls, fields: dict):
    """A frozen dataclass ``cls`` whose ``__dict__`` is ``fields`` (every field by name, unchecked: tests compare
    the keys with the dataclass's fields): what ``cls(**fields)`` makes, without ``__init__``'s
    ``object.__setattr__`` per field, for records made once per module call."""
    record = object.__new__(cls)
    object.__setattr__(record, "__dict__", fields)
    return record


@dataclass(frozen=True)
class Totals:
    """Whole-model figures; parameters are counted once even when shared or tied."""

    total_params: int
    trainable_params: int
    non_trainable_params: int
    shared_params: int  # elements of parameters reachable under more than one name (counted once above)
    shared_param_tensors: int  # how many parameter tensors have more than one name
    uncalled_params: int  # elements in modules that did not run during the pass
    buffer_elements: int  # elements of the storages buffers hold beyond the parameters' (each storage once)
    param_bytes: int
    buffer_bytes: int  # bytes of those storages: a buffer viewing a parameter's storage adds none
    total_macs: int
    input_bytes: int
    activation_bytes: int  # sum of the outputs of the calls inside which no module call ran: a forward-pass estimate
    peak_memory_bytes: Optional[int] = None  # measured on CUDA only

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class RunInfo:
    """How the pass was run."""

    model: str
    device: str
    dtype: str
    mode: str  # "eval" or "train"
    input_shapes: ShapeTree
    seconds: float
    notes: Tuple[str, ...] = ()  # how the pass ran, where a reader must know (a copy was used, ...)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class TensorMeta:
    """A tensor described without its data: what checkpoint listings and remaps work from."""

    shape: Shape
    dtype: str  # torch dtype name without the "torch." prefix, e.g. "float32"
    storage_id: Optional[str] = None  # equal for tensors sharing one storage, None when unknown
    # [first, end) elements of its own dtype the view reaches in its storage, None when unknown; lets totals count
    # the bytes that keys sharing one storage hold once (not part of equality: the same tensor, however described)
    span: Optional[Tuple[int, int]] = field(default=None, compare=False, repr=False)
    layout: Optional[str] = field(default=None, compare=False, repr=False)  # "sparse_coo", ...; None: dense (strided)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)
