"""Weights that live outside ``parameters()``: quantized modules keep theirs in packed objects.

``torch.ao.nn.quantized`` Conv/Linear/Embedding modules (and their fused and dynamic variants) hold
their weight and bias in a packed ``ScriptObject``, read back with ``module.weight()`` / ``.bias()``;
dynamic-quantized LSTM/GRU/RNN cells hold theirs per layer, read back with ``module._weight_bias()``.
They are counted as parameters (frozen ones: a quantized model is not trained), so a quantized model's
parameter count equals its float twin's. One registry entry per module family, looked up along the MRO.
"""

from __future__ import annotations

from typing import Callable, Dict, Iterable, Optional, Tuple

import torch.nn as nn

PackedReader = Callable[[nn.Module], Tuple]  # module -> its packed tensors


def _weight_and_bias(module: nn.Module) -> Tuple:
    bias = module.bias() if callable(getattr(module, "bias", None)) else None
    return tuple(t for t in (module.weight(), bias) if t is not None)


def _weight(module: nn.Module) -> Tuple:
    return (module.weight(),)


def _weight_bias_dicts(module: nn.Module) -> Tuple:
    """Dynamic-quantized RNNs and RNN cells: every layer's and direction's weights and biases, unpacked by
    the module's own ``_weight_bias()`` (``{"weight": {name: tensor}, "bias": {...}}``)."""
    return tuple(t for group in module._weight_bias().values() for t in group.values() if t is not None)


# (module path, class name) -> reader; resolved lazily so that torch.ao is imported only when a
# quantized module is actually met.
_READERS: Dict[Tuple[str, str], PackedReader] = {
    ("torch.ao.nn.quantized.modules.conv", "_ConvNd"): _weight_and_bias,
    ("torch.ao.nn.quantized.modules.linear", "Linear"): _weight_and_bias,
    ("torch.ao.nn.quantized.modules.embedding_ops", "Embedding"): _weight,
    ("torch.ao.nn.quantized.modules.embedding_ops", "EmbeddingBag"): _weight,
    ("torch.ao.nn.quantized.dynamic.modules.rnn", "RNNBase"): _weight_bias_dicts,
    ("torch.ao.nn.quantized.dynamic.modules.rnn", "RNNCellBase"): _weight_bias_dicts,
}
_BY_CLASS: Dict[type, Optional[PackedReader]] = {}


def _reader(cls: type) -> Optional[PackedReader]:
    if cls in _BY_CLASS:
        return _BY_CLASS[cls]
    reader = None
    for base in cls.__mro__:
        reader = _READERS.get((base.__module__, base.__qualname__))
        if reader is not None:
            break
    _BY_CLASS[cls] = reader
    return reader


def packed_tensors(module: nn.Module) -> Tuple:
    """The tensors a quantized module keeps packed (weight, bias), or ``()`` for every other module."""
    cls = type(module)
    reader = _BY_CLASS[cls] if cls in _BY_CLASS else _reader(cls)
    return reader(module) if reader is not None else ()


def packed_numel(module: nn.Module) -> int:
    return sum(t.numel() for t in packed_tensors(module))


def packed_by_module(modules: Iterable[nn.Module]) -> Dict[int, Tuple]:
    """``id(module) -> packed tensors`` for the quantized modules among ``modules`` (usually none: the
    check is one pass over the distinct classes, so deep float models pay next to nothing)."""
    modules = list(modules)
    packed_classes = {cls for cls in {type(m) for m in modules}
                      if (_BY_CLASS[cls] if cls in _BY_CLASS else _reader(cls)) is not None}
    if not packed_classes:
        return {}
    return {id(m): packed_tensors(m) for m in modules if type(m) in packed_classes}
