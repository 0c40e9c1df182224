"""Optional dependencies: import one, or raise a DependencyError that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from netscope.errors import DependencyError


def require(module_name: str, *, needed_for: str, extra: str) -> ModuleType:
    """``require("timm", needed_for="timm:... model specs", extra="timm")`` -> the timm module."""
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise DependencyError(
            f"{needed_for} need the {module_name} package, which is not importable here ({exc}); "
            f'install it with pip install "netscope[{extra}]"'
        ) from None
