"""The repeated blocks of a model: what a per-block ``fully_shard`` or activation-checkpointing recipe wraps."""

from __future__ import annotations

from typing import List

import torch.nn as nn


def block_units(model: nn.Module) -> List[nn.Module]:
    """The blocks of the ``nn.ModuleList`` holding the most parameters, else ``[model]``."""
    best, best_size = None, 0
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) > 1:
            size = sum(p.numel() for p in module.parameters())
            if size > best_size:
                best, best_size = module, size
    return list(best) if best is not None else [model]
