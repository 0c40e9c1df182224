"""netscope: see inside any PyTorch nn.Module.

The public API is re-exported here lazily, so that importing ``netscope`` (and running
``netscope --help``) does not import torch.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "summary": "netscope.api",
    "Report": "netscope.report",
    "check": "netscope.api",
    "step": "netscope.analyses.step",
    "StepReport": "netscope.analyses.step.report",
    "solve_input_size": "netscope.analyses.solver",
    "audit_names": "netscope.naming",
    "keys": "netscope.checkpoints",
    "read_checkpoint": "netscope.checkpoints",
    "diff": "netscope.remapping",
    "remap": "netscope.remapping",
    "remap_file": "netscope.remapping",
    "load": "netscope.remapping",
    "NetscopeError": "netscope.errors",
    "InputSpec": "netscope.inputs",
    "TensorSpec": "netscope.inputs",
    "register_macs": "netscope.operators.registry",
    "ignore_macs": "netscope.operators.registry",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    module_path = _EXPORTS.get(name)
    if module_path is None:
        return submodule(__name__, name)
    value = getattr(importlib.import_module(module_path), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__


def submodule(package: str, name: str):
    """``netscope.errors``, ``netscope.operators.registry``, ...: a submodule the docs name, imported on first
    attribute access (as ``import netscope.errors`` would), so that ``import netscope`` alone reaches it; a package's
    module-level ``__getattr__`` calls this."""
    import importlib.util

    if not name.startswith("_") and name.isidentifier() and importlib.util.find_spec(f"{package}.{name}"):
        return importlib.import_module(f"{package}.{name}")
    raise AttributeError(f"module {package!r} has no attribute {name!r}")
