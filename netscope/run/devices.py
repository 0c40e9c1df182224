"""Devices: resolve ``auto|cpu|cuda|cuda:N|meta`` to a torch.device with clear errors, and tell how much
memory one has free."""

from __future__ import annotations

from typing import Optional

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


def available_memory_bytes(device=None) -> Optional[int]:
    """Free memory where a pass on ``device`` would put its weights; ``None`` when it cannot be told.

    CPU: ``MemAvailable`` from /proc/meminfo (Linux; psutil is not required). CUDA: the free bytes
    ``torch.cuda.mem_get_info`` reports. Meta: no limit.
    """
    kind = getattr(device, "type", str(device or "cpu"))
    if kind == "meta":
        return None
    if kind == "cuda":
        try:
            free, _total = torch.cuda.mem_get_info(device)
            return int(free)
        except Exception:  # no driver, or a device that cannot say: do not guess
            return None
    return _meminfo_available()


def _meminfo_available(path: str = "/proc/meminfo") -> Optional[int]:
    try:
        with open(path, encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    fields = line.split()
                    return int(fields[1]) * (1024 if len(fields) < 3 or fields[2].lower() == "kb" else 1)
    except (OSError, ValueError, IndexError):
        return None
    return None
