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
    """A ``torch.optim`` class, the keyword arguments that select its variant, and how many tensors of each
    parameter's shape its state holds per parameter (besides scalars such as ``step``)."""

    class_name: str
    kwargs: Dict[str, object]
    state_tensors: int

    def build(self, params):
        import torch

        return getattr(torch.optim, self.class_name)(params, **self.kwargs)


OPTIMIZERS: Dict[str, Optimizer] = {
    "sgd": Optimizer("SGD", {"lr": 0.01}, 0),
    "sgd-momentum": Optimizer("SGD", {"lr": 0.01, "momentum": 0.9}, 1),  # momentum_buffer
    "adam": Optimizer("Adam", {"lr": 1e-3}, 2),  # exp_avg, exp_avg_sq
    "adamw": Optimizer("AdamW", {"lr": 1e-3}, 2),
    "adam-amsgrad": Optimizer("Adam", {"lr": 1e-3, "amsgrad": True}, 3),  # and max_exp_avg_sq
    "adamw-amsgrad": Optimizer("AdamW", {"lr": 1e-3, "amsgrad": True}, 3),
    "adamax": Optimizer("Adamax", {"lr": 2e-3}, 2),  # exp_avg, exp_inf
    "nadam": Optimizer("NAdam", {"lr": 2e-3}, 2),  # exp_avg, exp_avg_sq (mu_product: a scalar)
    "radam": Optimizer("RAdam", {"lr": 1e-3}, 2),
    "adagrad": Optimizer("Adagrad", {"lr": 0.01}, 1),  # sum, made for every parameter when the optimizer is built
    "adadelta": Optimizer("Adadelta", {"lr": 1.0}, 2),  # square_avg, acc_delta
    "rmsprop": Optimizer("RMSprop", {"lr": 0.01}, 1),  # square_avg
    "rmsprop-momentum": Optimizer("RMSprop", {"lr": 0.01, "momentum": 0.9}, 2),  # and momentum_buffer
    "rmsprop-centered": Optimizer("RMSprop", {"lr": 0.01, "centered": True}, 2),  # and grad_avg
    "rprop": Optimizer("Rprop", {"lr": 0.01}, 2),  # prev, step_size
}

# torch.optim classes a planned step cannot run, and why (named instead of "unknown")
REFUSED_OPTIMIZERS: Dict[str, str] = {
    "lbfgs": "torch.optim.LBFGS's step() takes a closure that re-runs the forward and backward up to max_iter "
             "times per step, and it keeps up to history_size pairs of past updates, each as large as all the "
             "parameters together, so one step is not one forward, backward and update",
    "sparseadam": "torch.optim.SparseAdam takes sparse gradients only, and netscope step plans dense ones",
    "asgd": "torch.optim.ASGD's step reads tensor values (.item()), which the fake tensors of a planned step do "
            "not have",
    "adafactor": "torch.optim.Adafactor's step reads tensor values (.item()), which the fake tensors of a planned "
                 "step do not have",
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
    # a torch.optim class given for its name: the same refusal or choice list as the name's
    name = getattr(value, "__name__", value) if isinstance(value, type) else value
    refused = REFUSED_OPTIMIZERS.get(name.lower().replace("-", "")) if isinstance(name, str) else None
    if what == "optimizer" and refused:
        raise UsageError(f"netscope step cannot plan the optimizer {name!r}: {refused}")
    if not isinstance(value, str) or value not in table:
        hint = (f" (pass its name, {name.lower()!r})" if name is not value and isinstance(name, str)
                and name.lower() in table else "")
        raise UsageError(f"unknown {what} {value!r}{hint}; use one of {', '.join(table)}")

