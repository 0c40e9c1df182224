"""Gradient oracle for receptive fields, independent of netscope: on a float64 eval copy with every weight
positive, saturating activations and max-pools swapped for maps that read the same positions (a max-pool
becomes a sum over the very window it reads, ceil-mode and dilation included), the input positions with a
non-zero gradient of ONE output element are that element's receptive field."""

from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

# with every weight positive, values grow layer by layer and these saturate (a sigmoid gate's gradient rounds
# to 0 past ~37): swapped for the identity, which reads the same positions
_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.GELU, nn.LeakyReLU,
                nn.Sigmoid, nn.Tanh)


class WindowSum(nn.Module):
    """Reads exactly the positions a max-pool reads: pad by ``padding`` (more on the right, for ceil mode's
    last window), sum each dilated, strided window with a ones kernel, keep as many outputs as the pool."""

    def __init__(self, pool: nn.Module, nd: int):
        super().__init__()
        self.pool, self.nd = pool, nd

    def forward(self, x):
        nd = self.nd
        tup = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v,) * nd  # noqa: E731
        kernel, stride = tup(self.pool.kernel_size), tup(self.pool.stride or self.pool.kernel_size)
        pad, dilation = tup(self.pool.padding), tup(self.pool.dilation)
        sizes = self.pool(x).shape[2:]
        pads = []
        for k, s, p, d in reversed(list(zip(kernel, stride, pad, dilation))):
            pads += [p, p + s + d * k]
        y = F.pad(x, pads)
        conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]
        ones = torch.ones((x.shape[1], 1) + kernel, dtype=x.dtype)
        y = conv(y, ones, stride=stride, dilation=dilation, groups=x.shape[1])
        return y[(slice(None), slice(None)) + tuple(slice(0, n) for n in sizes)]


def positive_copy(model: nn.Module) -> nn.Module:
    twin = copy.deepcopy(model).double().eval()
    for module in list(twin.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)):
                nd = {nn.MaxPool1d: 1, nn.MaxPool2d: 2, nn.MaxPool3d: 3}[type(child)]
                setattr(module, child_name, WindowSum(child, nd))
            elif isinstance(child, (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)):
                avg = {nn.AdaptiveMaxPool1d: nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool2d: nn.AdaptiveAvgPool2d,
                       nn.AdaptiveMaxPool3d: nn.AdaptiveAvgPool3d}[type(child)]
                setattr(module, child_name, avg(child.output_size))
            elif isinstance(child, _ACTIVATIONS):
                setattr(module, child_name, nn.Identity())
    with torch.no_grad():
        for param in twin.parameters():
            param.copy_(param.abs() + 0.1)
        for name, buffer in twin.named_buffers():
            if name.endswith("running_var"):
                buffer.fill_(1.0)
            elif name.endswith("running_mean"):
                buffer.zero_()
    return twin


def module_outputs(model: nn.Module, x, names):
    """Run the positive twin on ``x`` (positive float64, requires_grad) and return {name: first output tensor}."""
    twin = positive_copy(model)
    modules = dict(twin.named_modules())
    outputs = {}

    def keep(name):
        def hook(module, args, out):
            value = out[0] if isinstance(out, (tuple, list)) else out
            value = next(iter(value.values())) if isinstance(value, dict) else value
            outputs.setdefault(name, value)
        return hook

    handles = [modules[n].register_forward_hook(keep(n)) for n in names]
    try:
        twin(x)
    finally:
        for handle in handles:
            handle.remove()
    return outputs


def positive_input(shape, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, dtype=torch.float64, generator=generator) + 0.5).requires_grad_()


def extent(out, x, index):
    """Per spatial axis of ``x``: (first, last) input position with a non-zero gradient of ``out[0, :, *index]``
    (all channels of that position), or None when no position reaches it."""
    (grad,) = torch.autograd.grad(out[(0, slice(None)) + tuple(index)].sum(), x, retain_graph=True)
    nonzero = (grad[0].abs().sum(0) != 0).nonzero()
    if nonzero.numel() == 0:
        return None
    return tuple((int(nonzero[:, d].min()), int(nonzero[:, d].max())) for d in range(nonzero.shape[1]))
