"""Resolve ``auto|cpu|cuda|cuda:N|meta`` to a torch.device, with clear errors."""

from __future__ import annotations

import torch

from netscope.errors import InputSpecError


def resolve_device(spec) -> torch.device:
    """``None``/``"auto"`` -> cuda when available, else cpu. Unusable devices raise InputSpecError."""
    if spec is None or str(spec) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError):
        raise InputSpecError(f"unknown device {spec!r}; use auto, cpu, cuda, cuda:N or meta") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputSpecError(
                f"device {spec!r} asked for, but CUDA is not available here (torch.cuda.is_available() is False); "
                "use --device cpu, or --device meta for a run without memory"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise InputSpecError(f"device {spec!r} does not exist: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    elif device.type not in ("cpu", "meta"):
        if device.type == "mps" and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return device
        raise InputSpecError(f"device {spec!r} is not supported here; use auto, cpu, cuda, cuda:N or meta")
    return device
