"""Model keys torch's own ``load_state_dict`` supplies when a checkpoint lacks them.

``_NormBase._load_from_state_dict`` (BatchNorm, SyncBatchNorm, InstanceNorm with running stats) adds a
missing ``num_batches_tracked`` when the checkpoint's ``_metadata`` version for that module is absent or
below 2 (files saved before torch 0.4.1, or a state dict copied into a plain dict), so a strict load
accepts such a checkpoint; with version 2 the key is really missing.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional, Tuple


def keys_torch_fills(model: Any, metadata: Optional[Mapping[str, Any]], missing: Iterable[str]) -> Tuple[str, ...]:
    """The ``missing`` model keys a strict ``model.load_state_dict`` of a state dict carrying ``metadata``
    (its ``_metadata``, keyed by module path; ``None`` when it has none) fills in itself."""
    import torch.nn as nn
    from torch.nn.modules.batchnorm import _NormBase

    if not isinstance(model, nn.Module):
        return ()
    filled = []
    for key in missing:
        prefix, _, name = key.rpartition(".")
        if name != "num_batches_tracked":
            continue
        try:
            module = model.get_submodule(prefix)
        except AttributeError:
            continue
        if not isinstance(module, _NormBase) or not module.track_running_stats:
            continue
        version = (metadata or {}).get(prefix, {}).get("version")
        if version is None or version < 2:
            filled.append(key)
    return tuple(filled)
