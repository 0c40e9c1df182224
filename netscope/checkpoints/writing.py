"""Write a checkpoint atomically, in the format its file extension names."""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping, Optional

from netscope.errors import CheckpointError, NetscopeError
from netscope.fileio import atomic_path, names_stdout
from netscope.registry import Registry

Writer = Callable[[Any, str, Optional[Mapping[str, str]]], None]
WRITERS: Registry[str, Writer] = Registry("checkpoint writer")  # file extension -> writer
register_writer = WRITERS.decorator  # @register_writer(".pt", ".pth"): one writer for each extension


@register_writer(".pt", ".pth", ".bin", ".ckpt", ".tar")  # .tar: timm's .pth.tar (a torch.save file)
def _write_torch(obj: Any, path: str, metadata: Optional[Mapping[str, str]]) -> None:
    import torch

    torch.save(obj, path)


@register_writer(".safetensors")
def _write_safetensors(obj: Any, path: str, metadata: Optional[Mapping[str, str]]) -> None:
    from netscope.checkpoints import safetensors_format

    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"a .safetensors file holds a flat dict of tensors, not a {type(obj).__name__}; pass the "
            "state dict, or write a .pt file to keep the whole object."
        )
    safetensors_format.save(obj, path, metadata)


def save_checkpoint(obj: Any, path: str, *, force: bool = False,
                    metadata: Optional[Mapping[str, str]] = None) -> None:
    """Write ``obj`` to ``path`` atomically (temp file beside it, then rename).

    The extension picks the format: ``.safetensors`` (a flat dict of tensors; storages shared by several
    keys are saved once and restored as aliases on load; non-contiguous tensors made contiguous) or
    ``torch.save`` for ``.pt/.pth/.bin/.ckpt`` (everything kept, shared storages stay shared). An
    existing ``path`` is refused unless ``force``. ``metadata`` (safetensors only) adds header strings.
    """
    if names_stdout(path):
        raise CheckpointError("a checkpoint is written to a file, not to standard output; give a file name ending "
                              f"in one of {', '.join(sorted(WRITERS))}.")
    ext = os.path.splitext(path)[1].lower()
    writer = WRITERS.get(ext)
    if writer is None:
        raise CheckpointError(
            f"cannot tell which format to write from the extension of {path!r}; use one of "
            f"{', '.join(sorted(WRITERS))}."
        )
    _refuse_data_less_tensors(obj, path)
    try:
        with atomic_path(path, force=force) as tmp:
            writer(obj, tmp, metadata)
    except NetscopeError:
        raise
    except Exception as exc:  # a full disk: torch.save's RuntimeError, safetensors' SafetensorError, OSError
        raise CheckpointError(  # the temp file is gone (atomic_path), the target untouched
            f"writing {path} failed ({type(exc).__name__}: {exc}); nothing was written there. A full disk or "
            "quota gives this: free space or choose another folder."
        ) from None


def _refuse_data_less_tensors(obj: Any, path: str, depth: int = 0) -> None:
    """Meta-device tensors have shapes but no values: writing them would silently save nothing."""
    import torch

    if isinstance(obj, torch.Tensor):
        if obj.device.type == "meta":
            raise CheckpointError(
                f"refusing to write {path}: it would hold tensors on the meta device, which have shapes but no "
                "values. Load real weights first (netscope.load, or load_checkpoint without a meta model)."
            )
    elif isinstance(obj, Mapping) and depth < 6:
        for value in obj.values():
            _refuse_data_less_tensors(value, path, depth + 1)
    elif isinstance(obj, (list, tuple)) and depth < 6:
        for value in obj:
            _refuse_data_less_tensors(value, path, depth + 1)
