"""No-memory mode: parameters and buffers on the meta device, the rest of the model untouched."""

from __future__ import annotations

import contextlib
import copy
from typing import Iterator, Optional


@contextlib.contextmanager
def empty_weights(enabled: bool = True) -> Iterator[None]:
    """Build models inside this block with parameters and buffers re-homed to the meta device.

    Unlike ``with torch.device("meta")``, ordinary tensors created in ``__init__`` stay on the CPU, so
    constructors that compute values and call ``.tolist()`` (torchvision's regnet) still work. Same
    idea as accelerate's ``init_empty_weights``; the patch lives only inside this block.
    """
    if not enabled:
        yield
        return
    import torch
    import torch.nn as nn

    original_register_parameter = nn.Module.register_parameter
    original_register_buffer = nn.Module.register_buffer

    def register_parameter(module, name, param):
        original_register_parameter(module, name, param)
        if param is not None and param.device.type != "meta":
            tensor = module._parameters[name]
            kwargs = dict(tensor.__dict__)
            kwargs["requires_grad"] = tensor.requires_grad
            module._parameters[name] = type(tensor)(tensor.to("meta"), **kwargs)

    def register_buffer(module, name, tensor, persistent=True):
        original_register_buffer(module, name, tensor, persistent=persistent)
        if tensor is not None and isinstance(tensor, torch.Tensor) and tensor.device.type != "meta":
            module._buffers[name] = module._buffers[name].to("meta")

    from netscope.guard import GLOBAL_STATE_LOCK

    with GLOBAL_STATE_LOCK:  # the patches are process-wide: one build at a time
        nn.Module.register_parameter = register_parameter
        nn.Module.register_buffer = register_buffer
        initializers = _skip_meta_initialization()
        try:
            yield
        finally:
            nn.Module.register_parameter = original_register_parameter
            nn.Module.register_buffer = original_register_buffer
            for name, function in initializers.items():
                setattr(torch.nn.init, name, function)


INITIALIZERS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
                "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_",
                "sparse_")


def _skip_meta_initialization() -> dict:
    """Make ``torch.nn.init``'s in-place initializers return meta tensors untouched (there are no values
    to fill; ``normal_`` on meta alone imports torch._dynamo, about a second). Returns the originals."""
    import torch

    originals = {name: getattr(torch.nn.init, name) for name in INITIALIZERS if hasattr(torch.nn.init, name)}

    def skipping(original):
        def initializer(tensor, *args, **kwargs):
            if isinstance(tensor, torch.Tensor) and tensor.device.type == "meta":
                return tensor
            return original(tensor, *args, **kwargs)

        return initializer

    for name, original in originals.items():
        setattr(torch.nn.init, name, skipping(original))
    return originals


def meta_copy(model, empty=None):
    """A structural copy of ``model`` whose parameters and buffers live on the meta device.

    The user's model is not touched: every parameter and buffer is pre-seeded in deepcopy's memo
    with a meta twin (tied tensors stay tied), so no real tensor data is copied or moved.
    ``empty``: makes each twin from the original tensor instead (e.g. a fake tensor on the CPU).
    """
    import torch
    import torch.nn as nn

    empty = empty or (lambda tensor: torch.empty_like(tensor, device="meta"))
    memo = {}
    for tensor in list(model.parameters()) + list(model.buffers()):
        if id(tensor) in memo:
            continue
        if isinstance(tensor, nn.Parameter):
            twin = nn.Parameter(empty(tensor), requires_grad=tensor.requires_grad)
        else:
            twin = empty(tensor)
        memo[id(tensor)] = twin
    return copy.deepcopy(model, memo)


def weight_bytes(model, dtype: Optional[str] = None) -> int:
    """Bytes of ``model``'s distinct parameters and buffers, as built and (when larger) in float ``dtype``.

    Works on a structural (meta) build: only shapes and dtypes are read.
    """
    import torch

    target = getattr(torch, dtype) if dtype else None
    built = converted = 0
    seen = set()
    for tensor in list(model.parameters()) + list(model.buffers()):
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        numel = tensor.numel()
        built += numel * tensor.element_size()
        if target is not None and tensor.is_floating_point():
            converted += numel * target.itemsize
        else:
            converted += numel * tensor.element_size()
    return max(built, converted)


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
            import torch

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
