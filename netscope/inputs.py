"""Dummy inputs, one convention for the API and the CLI.

``--input 1,3,224,224[:dtype]`` (:func:`parse_input`) and ``summary(model, input_size=..., input_data=...)``
(:func:`inputs_from`) both end in :func:`tensor_spec`, so they validate and draw integers the same way.
"""

from __future__ import annotations

import dataclasses
import operator
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from netscope.checkpoints.dtypes import torch_dtype_name
from netscope.errors import InputSpecError

MAX_INPUT_ELEMENTS = 2**34  # 16 Gi elements: anything larger is a typo, not a model input

FLOAT_DTYPES = ("float32", "float16", "bfloat16", "float64")
INT_DTYPES = ("int64", "int32", "int16", "int8", "uint8", "bool")
DEFAULT_INT_HIGH = 1000  # integer inputs (token ids, labels) are drawn from [0, 1000) unless the model says less
DTYPE_ALIASES = {"float": "float32", "fp32": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16",
                 "double": "float64", "long": "int64", "int": "int64"}


def normalize_dtype(name) -> str:
    """``"fp16"`` -> ``"float16"``, ``torch.bfloat16`` -> ``"bfloat16"``, ``np.int64`` -> ``"int64"``; raises
    InputSpecError for an unknown name."""
    if _is_numpy_dtype(name):  # np.int64, np.dtype("int64"): a notebook has numpy at hand
        import numpy

        name = numpy.dtype(name).name
    if not isinstance(name, str):  # a torch.dtype (what a Python caller has at hand) prints as "torch.float16"
        text = str(name)
        if not text.startswith("torch."):
            raise InputSpecError(f"a dtype is a name such as 'float16', a torch.dtype or a numpy dtype, not {name!r}")
        name = text
    key = name.strip().lower().removeprefix("torch.")
    key = DTYPE_ALIASES.get(key, key)
    if key not in FLOAT_DTYPES + INT_DTYPES:
        raise InputSpecError(
            f"unknown dtype {name!r}; use one of {', '.join(FLOAT_DTYPES + INT_DTYPES)}"
        )
    return key


def _is_numpy_dtype(value) -> bool:
    """A numpy dtype or scalar type (``np.dtype("int64")``, ``np.int64``), told apart without importing numpy."""
    module = getattr(value, "__module__", "") if isinstance(value, type) else type(value).__module__
    return module.split(".")[0] == "numpy" and (isinstance(value, type) or hasattr(value, "kind"))


def _is_one_dtype(value) -> bool:
    """``value`` names one dtype (a string, a torch.dtype or a numpy dtype), not a list of them."""
    return isinstance(value, str) or type(value).__name__ == "dtype" or _is_numpy_dtype(value)


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
    high: Optional[int] = None  # integer tensors are drawn from [low, high); None: DEFAULT_INT_HIGH (see for_model)
    # (token id, count): the first ``count`` values along the last dimension are that token (a vision-language
    # model's image placeholders), every other value is drawn from [0, high) without it
    placeholder: Optional[Tuple[int, int]] = None
    # why this default tensor cannot be made (a model family whose inputs must come from its own processor):
    # building it raises that paragraph, before any forward runs on inputs it would refuse
    refused: str = ""
    low: int = 0  # the smallest value an integer tensor holds: ``low=1, high=2`` is all ones (an attention mask)

    @property
    def is_integer(self) -> bool:
        return self.dtype is not None and self.dtype not in FLOAT_DTYPES and self.dtype != "bool"

    def upper_bound(self) -> int:
        """The exclusive bound values are drawn below: ``high``, at most what the dtype can hold."""
        import torch

        limit = int(torch.iinfo(getattr(torch, self.dtype)).max) + 1 if self.is_integer else 2
        return max(self.low + 1, min(self.high if self.high is not None else DEFAULT_INT_HIGH, limit))

    def nbytes(self, float_dtype: str) -> int:
        import torch

        numel = 1
        for d in self.shape:
            numel *= d
        return numel * getattr(torch, self.dtype or float_dtype).itemsize

    def build(self, device, float_dtype: str, generator=None):
        import torch

        if self.refused:
            raise InputSpecError(self.refused)
        dtype_name = self.dtype or float_dtype
        dtype = getattr(torch, dtype_name)
        if str(device) == "meta":
            return torch.empty(self.shape, dtype=dtype, device="meta")
        if dtype.is_floating_point:
            # drawn where the CPU generator lives (a user's ``torch.set_default_device`` must not move the draw)
            return torch.randn(self.shape, generator=generator, dtype=torch.float32,
                               device="cpu").to(device=device, dtype=dtype)
        if dtype == torch.bool:
            return torch.ones(self.shape, dtype=dtype, device=device)
        if self.placeholder is None:
            return torch.randint(self.low, self.upper_bound(), self.shape, generator=generator,
                                 dtype=torch.int64, device="cpu").to(device=device, dtype=dtype)
        token, count = self.placeholder
        if not self.shape or self.shape[-1] <= count:
            raise InputSpecError(
                f"token ids of shape {list(self.shape)} cannot hold the {count} image placeholder tokens (id {token}) one "
                f"image needs and text after them: give a last dimension above {count} (e.g. --input 1,{count + 128})")
        high = self.upper_bound()
        inside = 0 <= token < high  # the token is one of the values that could be drawn: drawn around it
        values = torch.randint(0, max(1, high - inside), self.shape, generator=generator, dtype=torch.int64)
        if inside:
            values += values >= token
        values[..., :count] = token
        return values.to(device=device, dtype=dtype)


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

    @classmethod
    def of_tensors(cls, args: tuple, kwargs: Dict[str, Any]) -> "InputSpec":
        """The spec example tensors fit: their shapes and dtypes (integer values drawn as for any spec)."""
        import torch

        def spec(where, value) -> TensorSpec:
            if not isinstance(value, torch.Tensor):
                raise InputSpecError(f"{where} is a {type(value).__name__}; only tensors can be resized here, "
                                     "give input_size=(shape) instead")
            return TensorSpec(tuple(value.shape), torch_dtype_name(value.dtype))

        return cls([spec(f"input {i}", v) for i, v in enumerate(args)],
                   {name: spec(f"input {name!r}", v) for name, v in kwargs.items()})

    def nbytes(self, float_dtype: str = "float32") -> int:
        """Bytes the built tensors take, computed without allocating them."""
        return sum(spec.nbytes(float_dtype) for spec in list(self.args) + list(self.kwargs.values()))

    def for_model(self, model) -> "InputSpec":
        """Integer tensors whose range was not given are drawn below the smallest ``num_embeddings`` of the
        model's embedding layers (token ids must index every table they can reach), else below 1000."""
        import torch.nn as nn

        if not any(spec.is_integer and spec.high is None for spec in list(self.args) + list(self.kwargs.values())):
            return self
        sizes = [m.num_embeddings for m in model.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag))]
        if not sizes:
            return self
        bound = min(sizes)

        def fit(spec: TensorSpec) -> TensorSpec:
            if not spec.is_integer or spec.high is not None:
                return spec
            return dataclasses.replace(spec, high=min(bound, DEFAULT_INT_HIGH))

        return dataclasses.replace(self, args=[fit(a) for a in self.args],
                                   kwargs={k: fit(v) for k, v in self.kwargs.items()})

    def with_dtypes_of(self, defaults: Optional["InputSpec"], model=None) -> "InputSpec":
        """Inputs given without a dtype take the dtype (and range) the model's default input has at the same
        position or under the same keyword: ``hf:gpt2 -i 2,64`` stays int64 token ids. With ``model``, a keyword
        input also matches a default given by position under the forward's name for it (``-i input_ids=1,9``
        for T5). When the model takes one list of images (torchvision detection), the shapes given are that
        list's images."""
        if defaults is None:
            return self
        if defaults.as_list and not self.as_list and not self.kwargs:  # a detection model: one list of images
            return dataclasses.replace(self, as_list=True).with_dtypes_of(defaults, model)
        if defaults.as_list != self.as_list:
            return self
        def typed(spec: TensorSpec, default: Optional[TensorSpec]) -> TensorSpec:
            if default is None or spec.dtype is not None or default.dtype is None:
                return spec
            return dataclasses.replace(spec, dtype=default.dtype, high=default.high, low=default.low,
                                       placeholder=default.placeholder)

        args = [typed(spec, default) for spec, default in zip(self.args, defaults.args)] + list(
            self.args[len(defaults.args):])
        by_name = {**dict(zip(_positional_names(model), defaults.args)), **defaults.kwargs}
        kwargs = {name: typed(spec, by_name.get(name)) for name, spec in self.kwargs.items()}
        return dataclasses.replace(self, args=args, kwargs=kwargs)


    def completed_by(self, defaults: Optional["InputSpec"], model=None) -> Tuple["InputSpec", List[str]]:
        """This spec plus the model's default keyword inputs it does not give (by keyword, or by the position the
        forward takes them at): ``hf:t5 --input 1,9`` keeps T5's ``decoder_input_ids`` and ``attention_mask``,
        without which its forward fails. A kept input whose default shape is that of the default main input (the
        first positional one) takes the shape given for the main input (the same sequence: ``attention_mask``
        follows ``input_ids``). Returns the spec and, for a note, each kept input as ``name [shape]``."""
        if defaults is None or defaults.as_list or self.as_list or not defaults.kwargs:
            return self, []
        names = _positional_names(model)
        given = set(self.kwargs) | set(names[:len(self.args)])
        main = self.args[0] if self.args else self.kwargs.get(names[0]) if names else None
        main_default = defaults.args[0] if defaults.args else None
        kept = {}
        for name, default in defaults.kwargs.items():
            if name not in given:
                follows = main is not None and main_default is not None and default.shape == main_default.shape
                kept[name] = dataclasses.replace(default, shape=main.shape) if follows else default
        if not kept:
            return self, []
        shown = [f"{name} [{', '.join(map(str, spec.shape))}]" for name, spec in kept.items()]
        return dataclasses.replace(self, kwargs={**self.kwargs, **kept}), shown


def _positional_names(model) -> List[str]:
    """The names of the parameters ``model.forward`` takes by position, in order; empty when unknown."""
    import inspect

    try:
        parameters = inspect.signature(model.forward).parameters.values() if model is not None else ()
    except (TypeError, ValueError):  # a builtin or scripted forward without a Python signature
        return []
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in parameters if p.kind in positional]


def parse_input(text: str) -> TensorSpec:
    """``"1,3,224,224"`` or ``"1,128:int64"`` or ``"1x3x32x32"`` -> TensorSpec, with a clear error otherwise."""
    raw = text.strip()
    shape_part, _, dtype_part = raw.partition(":")
    dtype = normalize_dtype(dtype_part) if dtype_part else None
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
        dims.append(value)
    return tensor_spec(dims, dtype, f"--input {text!r}")


def tensor_spec(dims: Sequence[Any], dtype: Optional[str], where: str) -> TensorSpec:
    """The one validation of a dummy tensor: whole positive dimensions (numpy integers fine) and at most
    ``MAX_INPUT_ELEMENTS`` elements. ``where`` names the input in messages (``--input '1,8'``, ``input_size``)."""
    shape = []
    for item in dims:
        try:
            if isinstance(item, bool):
                raise TypeError
            value = operator.index(item)
        except TypeError:
            raise InputSpecError(f"{where}: {item!r} is not a whole number; give a shape like (1, 3, 224, 224)") from None
        if value <= 0:
            raise InputSpecError(f"{where}: every dimension must be at least 1, got {value}")
        shape.append(value)
    if not shape:
        raise InputSpecError(f"{where} has no dimensions; give a shape like (1, 3, 224, 224)")
    numel = 1
    for d in shape:
        numel *= d
    if numel > MAX_INPUT_ELEMENTS:
        raise InputSpecError(
            f"{where} asks for {numel:,} elements, more than netscope will allocate "
            f"({MAX_INPUT_ELEMENTS:,}), on any device; check the shape"
        )
    return TensorSpec(tuple(shape), normalize_dtype(dtype) if dtype else None)


def parse_inputs(texts: Optional[Sequence[str]]) -> Optional[InputSpec]:
    """``--input`` values in order: ``SHAPE[:DTYPE]`` is the next positional tensor, ``NAME=SHAPE[:DTYPE]``
    the keyword tensor ``NAME`` (a forward that takes ``input_ids=`` or keyword-only arguments)."""
    if not texts:
        return None
    args: List[TensorSpec] = []
    kwargs: Dict[str, TensorSpec] = {}
    for text in texts:
        name, equals, shape = text.partition("=")
        if not equals:
            args.append(parse_input(text))
            continue
        name = name.strip()
        if not name.isidentifier():
            raise InputSpecError(f"--input {text!r}: {name!r} is not an argument name; write a keyword input "
                                 "like input_ids=1,128:int64")
        if name in kwargs:
            raise InputSpecError(f"--input {name}= is given twice; give each keyword input once")
        kwargs[name] = parse_input(shape)
    return InputSpec(args, kwargs)


def inputs_from(model, input_size=None, input_data=None, input_dtypes: Optional[Sequence[str]] = None):
    """The API's input convention, shared by every entry point.

    ``input_size``: a shape ``(1, 3, 224, 224)`` (numpy integers fine), a list of shapes (one per positional
    input), a dict of shapes by keyword (``{"input_ids": (1, 7)}``; ``input_dtypes`` then a dict too), or an
    :class:`InputSpec`. ``input_data``: a tensor, a tuple/list of positional values, a dict of
    keyword values, or ``((args...), {kwargs})``. A tensor, tuple of tensors or dict given as ``input_size``
    (``summary(model, x)``) is taken as ``input_data``. Neither: the model's default input.
    Returns an :class:`InputSpec` (built later on the run's device) or ``(args, kwargs)`` of real values.
    """
    from netscope.models.specs import default_inputs_for  # here: specs imports this module

    input_size = _from_numpy(input_size)
    if _is_shape_dict(input_size) and input_data is None:  # keyword inputs by shape, as --input NAME=SHAPE
        return _keyword_shapes(model, input_size, input_dtypes)
    if input_size is not None and _is_data(input_size):
        if input_data is not None:
            raise InputSpecError("give either input_size or input_data, not both")
        input_size, input_data = None, input_size
    if input_data is not None and input_size is not None:
        raise InputSpecError("give either input_size or input_data, not both")
    if input_data is not None:
        return _data_inputs(input_data)
    if input_size is None:
        return default_inputs_for(model)
    if isinstance(input_size, InputSpec):
        return checked_spec(input_size)
    if isinstance(input_size, TensorSpec):
        return checked_spec(InputSpec([input_size]))
    if not isinstance(input_size, (list, tuple)) or not input_size:
        raise InputSpecError(f"input_size must be a shape like (1, 3, 224, 224) or a list of shapes, "
                             f"not {input_size!r}")
    one = all(not isinstance(d, (list, tuple)) for d in input_size)
    shapes = [input_size] if one else list(input_size)
    if _is_one_dtype(input_dtypes):  # one dtype: "int64", torch.long, np.int64
        input_dtypes = [input_dtypes]
    if input_dtypes is not None and not isinstance(input_dtypes, (list, tuple)):
        raise InputSpecError(f"input_dtypes must be one dtype or a list of them, one per input shape, not "
                             f"{type(input_dtypes).__name__} {input_dtypes!r} (a dict by keyword goes with input_size "
                             "as a dict of shapes by keyword)")
    dtypes = list(input_dtypes or [None] * len(shapes))
    if len(dtypes) != len(shapes):
        raise InputSpecError(f"input_dtypes has {len(dtypes)} entries for {len(shapes)} input shapes")
    specs = []
    for index, (shape, dtype) in enumerate(zip(shapes, dtypes)):
        if not isinstance(shape, (list, tuple)):
            raise InputSpecError(f"input_size[{index}] = {shape!r} is not a shape; give a tuple like (1, 3, 224, 224)")
        specs.append(tensor_spec(shape, dtype, f"input shape {tuple(shape)!r}" if one else f"input_size[{index}]"))
    return InputSpec(specs).with_dtypes_of(default_inputs_for(model))  # as the CLI: token ids stay int64


def checked_spec(spec: InputSpec) -> InputSpec:
    """A caller's :class:`InputSpec`, held to the rules ``input_size`` is held to: ``TensorSpec`` entries whose
    shapes pass :func:`tensor_spec` (whole dimensions >= 1) and whose dtypes are known."""
    def check(where: str, item) -> None:
        if not isinstance(item, TensorSpec):
            raise InputSpecError(f"{where} is a {type(item).__name__}, not a netscope.TensorSpec; write "
                                 "InputSpec([TensorSpec((1, 3, 224, 224))]), or pass input_size=(1, 3, 224, 224)")
        if not isinstance(item.shape, (list, tuple)):
            raise InputSpecError(f"{where}.shape = {item.shape!r} is not a shape; give a tuple like (1, 3, 224, 224)")
        tensor_spec(item.shape, item.dtype, where)

    if not isinstance(spec.args, (list, tuple)) or not isinstance(spec.kwargs, dict):
        raise InputSpecError(f"InputSpec takes a list of TensorSpec (positional inputs) and a dict of them (keyword "
                             f"inputs), not {type(spec.args).__name__} and {type(spec.kwargs).__name__}")
    for index, item in enumerate(spec.args):
        check(f"InputSpec.args[{index}]", item)
    for name, item in spec.kwargs.items():
        check(f"InputSpec.kwargs[{name!r}]", item)
    return spec


def _is_shape_dict(value) -> bool:
    """``{"input_ids": (1, 7), ...}``: every value a shape of whole numbers."""
    import numbers

    return isinstance(value, dict) and bool(value) and all(
        isinstance(shape, (list, tuple)) and all(isinstance(d, numbers.Integral) and not isinstance(d, bool)
                                                 for d in shape) for shape in value.values())


def _keyword_shapes(model, shapes: Dict[str, Any], input_dtypes) -> "InputSpec":
    """Keyword tensors of the given shapes; ``input_dtypes`` a dict by name (or None). A name without a dtype
    takes the dtype of the model's default input under that name, as ``--input NAME=SHAPE`` does."""
    from netscope.models.specs import default_inputs_for  # here: specs imports this module

    dtypes = input_dtypes or {}
    if not isinstance(dtypes, dict) or set(dtypes) - set(shapes):
        raise InputSpecError(f"with input_size as a dict of keyword shapes, input_dtypes must be a dict over the "
                             f"same names ({', '.join(shapes)}), not {input_dtypes!r}")
    kwargs = {name: tensor_spec(shape, dtypes.get(name), f"input_size[{name!r}]") for name, shape in shapes.items()}
    return InputSpec([], kwargs).with_dtypes_of(default_inputs_for(model), model)


def _from_numpy(value):
    """A numpy array of whole numbers as ``input_size`` is a shape (1-d) or shapes (2-d), as a list;
    any other array is refused: data must be a torch tensor. In a list of shapes (no tensor in it), a 1-d integer
    array is a shape."""
    def shape_array(item) -> bool:
        return type(item).__module__ == "numpy" and getattr(item, "ndim", None) == 1 and item.dtype.kind in "iu"

    if isinstance(value, (list, tuple)) and any(shape_array(item) for item in value) and not _is_data(value):
        return [item.tolist() if shape_array(item) else item for item in value]
    if type(value).__module__ != "numpy" or not hasattr(value, "ndim"):
        return value
    if value.dtype.kind in "iu" and value.ndim in (1, 2):
        return value.tolist()
    raise InputSpecError(f"input_size is a numpy array of {value.dtype} with shape {tuple(value.shape)}: give a "
                         "shape as whole numbers, like np.array([1, 3, 224, 224]), or pass data as a torch tensor "
                         "(torch.from_numpy(array)) with input_data=")


def _is_data(value) -> bool:
    """A tensor, a dict, or a container holding a tensor: data, not a shape."""
    import torch

    if isinstance(value, (torch.Tensor, dict)):
        return True
    if isinstance(value, (list, tuple)):
        return any(_is_data(v) for v in value)
    return False


def _data_inputs(input_data):
    import torch

    if isinstance(input_data, torch.Tensor) or hasattr(input_data, "_fields"):  # a tensor, a PackedSequence
        return (input_data,), {}
    if isinstance(input_data, dict):
        names = [name for name in input_data if not isinstance(name, str)]
        if names:
            raise InputSpecError(f"input_data as a dict passes keyword inputs, so its keys must be argument names "
                                 f"(strings), not {names[0]!r}")
        return (), dict(input_data)
    if type(input_data).__module__ == "numpy":
        raise InputSpecError(f"input_data is a numpy {type(input_data).__name__}: netscope passes torch tensors, "
                             "so give torch.from_numpy(array) (or torch.tensor(value))")
    if isinstance(input_data, (list, tuple)):
        if len(input_data) == 2 and isinstance(input_data[1], dict) and isinstance(input_data[0], (list, tuple)):
            return tuple(input_data[0]), dict(input_data[1])
        return tuple(input_data), {}
    raise InputSpecError(f"input_data must be a tensor, a tuple of tensors or a dict, not {type(input_data).__name__}")
