"""Model sources beyond torchvision and import strings, registered by prefix (``timm:``, ``hf:``)."""

from __future__ import annotations

import importlib

_SOURCE_MODULES = ("netscope.models.timm", "netscope.models.hf")


def load_builtin_sources() -> None:
    """Import the source modules; each registers itself with ``netscope.models.specs.register_source`` when first
    imported (they import timm/transformers only when a spec of theirs is resolved)."""
    for name in _SOURCE_MODULES:
        importlib.import_module(name)
