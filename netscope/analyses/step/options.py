"""What one training step is made of: the optimizer, the precision policy and the data-parallel layout.

Two registries (optimizers, precisions), one entry per name, and a frozen options record validated
once for the API and the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

from netscope.errors import UsageError


@dataclass(frozen=True)
class Optimizer:
    """A ``torch.optim`` class and the keyword arguments that select its variant."""

    class_name: str
    kwargs: Dict[str, object]

    def build(self, params):
        import torch

        return getattr(torch.optim, self.class_name)(params, **self.kwargs)


OPTIMIZERS: Dict[str, Optimizer] = {
    "sgd": Optimizer("SGD", {"lr": 0.01}),
    "sgd-momentum": Optimizer("SGD", {"lr": 0.01, "momentum": 0.9}),
    "adam": Optimizer("Adam", {"lr": 1e-3}),
    "adamw": Optimizer("AdamW", {"lr": 1e-3}),
}


@dataclass(frozen=True)
class Precision:
    """``autocast``: the dtype the forward computes in under ``torch.autocast`` (None: no autocast).
    Parameters, gradients and optimizer state stay in the model's own dtype either way."""

    autocast: Optional[str]


PRECISIONS: Dict[str, Precision] = {
    "fp32": Precision(None),
    "bf16-mixed": Precision("bfloat16"),
    "fp16-mixed": Precision("float16"),
}


@dataclass(frozen=True)
class StepOptions:
    optimizer: str = "adamw"
    precision: str = "fp32"
    fsdp: Optional[int] = None  # ranks of a FSDP2 (fully_shard) job
    ddp: Optional[int] = None  # ranks of a DDP (replicated) job
    activation_checkpointing: bool = False  # each block of the largest ModuleList under torch.utils.checkpoint
    keep_grads: bool = False  # gradients zeroed in place between steps (zero_grad(set_to_none=False)), not freed

    def __post_init__(self):
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("precision", self.precision, PRECISIONS)
        if not isinstance(self.keep_grads, bool):
            raise UsageError(f"set_to_none must be True or False, not {(not self.keep_grads)!r}")
        if self.fsdp is not None and self.ddp is not None:
            raise UsageError("give either fsdp (sharded) or ddp (replicated) ranks, not both")
        for name in ("fsdp", "ddp"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise UsageError(f"{name} must be a whole number of ranks, at least 1, not {value!r}")

    @property
    def world_size(self) -> int:
        return self.fsdp or self.ddp or 1

    @property
    def layout(self) -> str:
        return "fsdp" if self.fsdp else "ddp" if self.ddp else "single"


def _choice(what: str, value, table: Dict[str, object]) -> None:
    if value not in table:
        raise UsageError(f"unknown {what} {value!r}; use one of {', '.join(table)}")

