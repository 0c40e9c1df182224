"""The one registry of wrapper kinds: modules that insert a segment into every state_dict key below them.

Naming (``naming/segments.py``: why a key holds ``module.``), remapping (``remapping/wrappers.py``:
strip or add those segments) and the trace (``trace._eager``: run a compiled model through its eager
module) all derive from ``WRAPPER_KINDS``; adding a wrapper is one ``register_wrapper`` call.
No torch import here: classes are named by their import path and matched along the MRO.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import FrozenSet, Optional, Tuple

from netscope.registry import Registry


@dataclass(frozen=True)
class WrapperKind:
    """A wrapper module that inserts one attribute segment in every key below it."""

    attribute: str  # "module", "_orig_mod", ...; a dotted "base_model.model" is a prefix-only pair of segments
    label: str  # "DataParallel", "torch.compile", ...
    unwrap: str  # how to reach the wrapped module, for the fix text
    hook_strips_prefix: bool  # its state_dict hooks remove the segment from saved keys

    @property
    def origin(self) -> str:
        return f"wrapper:{self.label}"


WRAPPERS: Registry[str, WrapperKind] = Registry("wrapper class")  # class import path -> kind
register_wrapper = WRAPPERS.add


register_wrapper("torch.nn.parallel.data_parallel.DataParallel",
                 WrapperKind("module", "DataParallel", "model.module", False))
register_wrapper("torch.nn.parallel.distributed.DistributedDataParallel",
                 WrapperKind("module", "DistributedDataParallel", "model.module", False))
register_wrapper("torch._dynamo.eval_frame.OptimizedModule",
                 WrapperKind("_orig_mod", "torch.compile", "model._orig_mod", False))
register_wrapper("torch.distributed.fsdp.fully_sharded_data_parallel.FullyShardedDataParallel",
                 WrapperKind("_fsdp_wrapped_module", "FSDP", "model.module", True))
register_wrapper("torch.distributed.algorithms._checkpoint.checkpoint_wrapper.ActivationWrapper",
                 WrapperKind("_checkpoint_wrapped_module", "activation-checkpoint", "model._checkpoint_wrapped_module",
                             True))
register_wrapper("lightning.fabric.wrappers._FabricModule",
                 WrapperKind("_forward_module", "Lightning Fabric", "model._forward_module", False))
register_wrapper("peft.tuners.tuners_utils.BaseTunerLayer",
                 WrapperKind("base_layer", "peft adapter layer", "layer.base_layer", False))
register_wrapper("peft.peft_model.PeftModel",
                 WrapperKind("base_model.model", "peft PeftModel", "model.base_model.model", False))

# Source tensors a wrapper or a weight reparametrization adds that have no place in the plain model, with what to
# do about them: (regular expression searched in the key, hint). The plain weight is computed from them, so no
# renaming can load them.
ADAPTER_HINTS: Tuple[Tuple[str, str], ...] = (
    (r"lora_", "a LoRA adapter tensor: load it into the peft-wrapped model, or merge the adapters into the base "
               "weights first (peft's merge_and_unload) and remap that"),
    (r"(^|\.)(weight|bias)_(orig|mask)$",
     "saved from a pruned module (torch.nn.utils.prune keeps <name>_orig and <name>_mask; the weight is their "
     "product): call prune.remove(module, 'weight') before saving, or prune the target the same way"),
    (r"\.parametrizations\.\w+\.original\d*$",
     "saved from a parametrized module (torch.nn.utils.parametrize: weight_norm, orthogonal, spectral_norm; the "
     "weight is computed from it): call parametrize.remove_parametrizations(module, 'weight') before saving, or "
     "parametrize the target the same way"),
    (r"(^|\.)weight_[gv]$",
     "saved from a module under the old torch.nn.utils.weight_norm (weight = g * v / |v|): call "
     "torch.nn.utils.remove_weight_norm(module) before saving, or apply weight_norm to the target the same way"),
)


def wrapper_kind(module) -> Optional[WrapperKind]:
    """The WrapperKind of ``module``'s class or nearest registered base class, if any."""
    for cls in type(module).__mro__:
        kind = WRAPPERS.get(f"{cls.__module__}.{cls.__qualname__}")
        if kind is not None:
            return kind
    return None


def wrapped_module(module):
    """The module a registered wrapper holds (``model._orig_mod``), or None for anything else."""
    kind = wrapper_kind(module)
    if kind is None or "." in kind.attribute:
        return None
    return getattr(module, kind.attribute, None)


TOKENS: FrozenSet[str] = frozenset(k.attribute for k in WRAPPERS.values() if "." not in k.attribute)
PREFIXES: Tuple[str, ...] = tuple(sorted({k.attribute + "." for k in WRAPPERS.values() if "." in k.attribute},
                                         key=len, reverse=True))
# the shortest substrings that every token or prefix contains: a key without any of them holds no wrapper
_MARKERS: Tuple[str, ...] = tuple(sorted({t for t in TOKENS | {p.rstrip(".") for p in PREFIXES}
                                          if not any(o != t and o in t for o in TOKENS)}))


def may_hold_wrapper(key: str) -> bool:
    """False when ``key`` surely holds no wrapper segment (a fast substring test, derived from the registry)."""
    return any(marker in key for marker in _MARKERS)


def adapter_kind(key: str) -> int:
    """The index in ``ADAPTER_HINTS`` of the kind of tensor ``key`` names (a LoRA matrix, a pruned module's
    ``weight_orig``...), -1 for a plain tensor. Tensors of different kinds never stand for one another."""
    if _any_adapter().search(key) is None:  # the common case, one search
        return -1
    import re

    return next(n for n, (pattern, _) in enumerate(ADAPTER_HINTS) if re.search(pattern, key))


@lru_cache(maxsize=1)
def _any_adapter():
    import re

    return re.compile("|".join(f"(?:{pattern})" for pattern, _ in ADAPTER_HINTS))


def adapter_hint(key: str) -> str:
    """What to do about a checkpoint key no model key takes, when ``ADAPTER_HINTS`` knows its kind; else ''."""
    kind = adapter_kind(key)
    return ADAPTER_HINTS[kind][1] if kind >= 0 else ""
