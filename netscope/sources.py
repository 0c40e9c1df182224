"""Model sources beyond torchvision and import strings, registered by prefix (``timm:``, ``hf:``)."""

from __future__ import annotations

import importlib

_SOURCE_MODULES = ("netscope.sources_timm", "netscope.sources_hf")
_loaded = False


def load_builtin_sources() -> None:
    """Import the source modules once; each registers itself with ``netscope.specs.register_source``."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for name in _SOURCE_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
