"""A quantized torchvision model through the CLI's no-memory build: eager quantization's native kernels
(fuse_modules, packing) crash the process on meta tensors, so the build must fall back to real weights."""

from __future__ import annotations

import json
import subprocess
import sys

import torch
import torchvision


def _packed_elements(model) -> int:
    """Elements of every quantized module's packed weight and bias, read through their own accessors."""
    total = 0
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if callable(weight) and type(module).__module__.startswith("torch.ao.nn"):  # quantized and fused
            total += weight().numel()
            bias = module.bias() if callable(getattr(module, "bias", None)) else None
            total += bias.numel() if bias is not None else 0
    return total


def test_quantized_model_summary_runs_in_a_fresh_process_and_counts_packed_weights():
    proc = subprocess.run([sys.executable, "-m", "netscope", "summary", "quantized_mobilenet_v2", "-a", "quantize=True",
                           "-i", "1,3,32,32", "-f", "json", "-q"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]  # a segfault would be -11 / 139
    data = json.loads(proc.stdout)
    torch.manual_seed(0)
    model = torchvision.models.quantization.mobilenet_v2(weights=None, quantize=True)
    assert data["totals"]["total_params"] == _packed_elements(model) > 0
    assert data["totals"]["total_macs"] > 0 and not data["partial"]
