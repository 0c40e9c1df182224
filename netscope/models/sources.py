"""The one registry of model sources: each turns the name in a spec into a built model and its input.

A source registers under a prefix (``timm`` resolves ``timm:NAME``); exactly one may also resolve bare
names (torchvision: ``resnet50``). Import strings and files are not sources: they are recognised by form.
Adding a source is one module with one ``@register_source`` function, listed in ``BUILTIN_SOURCE_MODULES``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Tuple

from netscope.inputs import InputSpec
from netscope.registry import Registry

BUILTIN_SOURCE_MODULES = ("netscope.models.torchvision", "netscope.models.timm", "netscope.models.hf")


@dataclass
class ResolvedModel:
    """A built model and how to feed it."""

    module: Any  # torch.nn.Module (typed loosely so this file imports without torch)
    label: str  # what the user asked for, for titles
    inputs: InputSpec  # the default dummy input for this model
    source: str = "torchvision"
    build: str = "real"  # with empty_weights: "meta", or the fallback "fake"/"cpu" (netscope.run.no_memory.BUILD_DESCRIPTIONS)
    build_failures: Tuple[str, ...] = ()  # why each cheaper build failed
    notes: Tuple[str, ...] = ()  # how the source built it, where a reader of the report must know


Resolver = Callable[[str, Mapping[str, Any], bool], ResolvedModel]  # (name, model_args, empty_weights)


@dataclass(frozen=True)
class ModelSource:
    prefix: str  # "timm" for "timm:NAME"
    resolve: Resolver
    bare_names: bool = False  # also resolves specs without a prefix


SOURCES: Registry[str, ModelSource] = Registry("model source")


def register_source(prefix: str, *, bare_names: bool = False):
    """Register a resolver for specs ``prefix:name`` (and, with ``bare_names``, for plain ``name``)."""

    def decorator(fn: Resolver) -> Resolver:
        if bare_names and prefix not in SOURCES and any(source.bare_names for source in SOURCES.values()):
            raise ValueError(f"model source {prefix!r} claims bare names, which {bare_name_source().prefix!r} resolves")
        SOURCES.add(prefix, ModelSource(prefix, fn, bare_names))
        return fn

    return decorator


def bare_name_source() -> ModelSource:
    load_builtin_sources()
    return next(source for source in SOURCES.values() if source.bare_names)


def load_builtin_sources() -> None:
    """Import the source modules; each registers itself when first imported (they import their library
    - torchvision, timm, transformers - only when a spec of theirs is resolved)."""
    for name in BUILTIN_SOURCE_MODULES:
        importlib.import_module(name)
