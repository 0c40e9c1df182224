"""Where each segment of a state_dict key comes from, and the Python fragment that reaches it.

Two registries keyed by the parent's type and looked up along its MRO: one for child modules
(Sequential index, ModuleDict key, wrapper prefix, ...) and one for the tensors a module holds
(ParameterList index, ParameterDict key, plain parameter/buffer). Wrapper classes are keyed by their
qualified name, so recognising ``torch.compile`` or FSDP never imports those subsystems.
"""

from __future__ import annotations

import json
import keyword
import unicodedata
from dataclasses import dataclass
from typing import Callable, Optional

import torch.nn as nn
from torch.nn.utils.parametrize import ParametrizationList, is_parametrized

from netscope.registry import Registry

ATTRIBUTE = "attribute"
SEQUENTIAL_INDEX = "sequential-index"
MODULELIST_INDEX = "modulelist-index"
MODULEDICT_KEY = "moduledict-key"
PARAMETERLIST_INDEX = "parameterlist-index"
PARAMETERDICT_KEY = "parameterdict-key"
PARAMETRIZATION = "parametrization"
PARAMETER = "parameter"
BUFFER = "buffer"
NON_PERSISTENT_BUFFER = "non-persistent-buffer"
EXTRA_STATE = "extra-state"
STATE_DICT_HOOK = "state-dict-hook"  # a key a state_dict hook added; its structure is unknown
UNREGISTERED_CONTAINER = "unregistered-container"  # a plain list/dict/... attribute
UNREGISTERED_ENTRY = "unregistered-entry"  # an item of that plain container


@dataclass(frozen=True)
class Segment:
    """One dot-separated part of a key and what put it there."""

    text: str
    origin: str


@dataclass(frozen=True)
class Step:
    """A segment plus the Python suffix that goes from the parent object to the child."""

    segment: Segment
    accessor: str  # ".conv1", "[0]", '["a"]', '._modules["my-layer"]'


from netscope.wrappers import wrapper_kind  # noqa: E402  (the one registry of wrapper kinds)


# --- Python fragments -------------------------------------------------------------------------

def attribute_accessor(name: str, table: str, owner: Optional[object] = None) -> str:
    """``.name`` when that is valid Python naming exactly ``name``, else ``._modules["name"]`` (or
    _parameters/_buffers). Python NFKC-normalises identifiers in source (``model.\ufb01lter`` reads
    ``model.filter``), so a name that normalisation changes is reached through its table; so is a
    name that ``owner.name`` would resolve to something else first (see :func:`shadowed`)."""
    if (name.isidentifier() and not keyword.iskeyword(name)
            and (name.isascii() or unicodedata.normalize("NFKC", name) == name)
            and not (owner is not None and shadowed(owner, name, table))):
        return f".{name}"
    return f".{table}[{json.dumps(name)}]"


_ABSENT = object()


def shadowed(owner: object, name: str, table: str) -> bool:
    """Whether ``owner.name`` finds something before the entry ``name`` of ``owner``'s ``table``.

    ``nn.Module.__getattr__`` looks in ``_modules``/``_parameters``/``_buffers`` only when ordinary lookup
    fails, so a class attribute of that name (a property a subclass defines, a method) or an instance
    attribute wins; an instance attribute itself (``table`` ``__dict__``) loses only to a data descriptor.
    """
    if not hasattr(type(owner), name):  # the common case, answered by the type's attribute cache
        return table != "__dict__" and name in vars(owner)
    found = next((vars(cls)[name] for cls in type(owner).__mro__ if name in vars(cls)), _ABSENT)
    if table == "__dict__":
        return found is not _ABSENT and (hasattr(type(found), "__set__") or hasattr(type(found), "__delete__"))
    return found is not _ABSENT or name in vars(owner)


def is_index(name: str) -> bool:
    """A canonical decimal name (``"3"``, not ``"03"`` or ``"٣"``): what containers number their children with."""
    return name.isdigit() and name.isascii() and (name == "0" or name[0] != "0")


def index_accessor(name: str, size: Optional[int] = None) -> Optional[str]:
    """``[3]`` for a canonical decimal name (below ``size``, when given: ModuleList and ParameterList
    index by ``str(i)`` only within their length, so numbering gaps need the table), else None."""
    if is_index(name) and (size is None or int(name) < size):
        return f"[{name}]"
    return None


def key_accessor(name: str) -> str:
    return f"[{json.dumps(name)}]"


# --- child modules ------------------------------------------------------------------------------

ChildRule = Callable[[nn.Module, str, int, str], Step]  # (parent, name, position, parent_origin) -> Step
_CHILD_RULES: Registry[type, ChildRule] = Registry("child-segment rule")  # container class -> rule, along the MRO
_child_rule = _CHILD_RULES.decorator


def _attribute_step(parent: nn.Module, name: str) -> Step:
    if name == "parametrizations" and is_parametrized(parent):
        return Step(Segment(name, PARAMETRIZATION), attribute_accessor(name, "_modules", parent))
    kind = wrapper_kind(parent)
    # a wrapper's segment, or the first of a dotted pair (PeftModel's "base_model.model")
    if kind is not None and (name == kind.attribute or kind.attribute.startswith(name + ".")):
        return Step(Segment(name, kind.origin), attribute_accessor(name, "_modules", parent))
    return Step(Segment(name, ATTRIBUTE), attribute_accessor(name, "_modules", parent))


def second_wrapper_step(grandparent: nn.Module, parent_name: str, step: Step) -> Step:
    """``step`` relabelled as a wrapper segment when it is the second of a dotted wrapper attribute
    (PeftModel's ``base_model.model``: ``grandparent`` the wrapper, ``parent_name`` "base_model")."""
    kind = wrapper_kind(grandparent)
    if kind is not None and kind.attribute == f"{parent_name}.{step.segment.text}":
        return Step(Segment(step.segment.text, kind.origin), step.accessor)
    return step


@_child_rule(nn.Module)
def _module_child(parent, name, position, parent_origin):
    return _attribute_step(parent, name)


def _own_getitem(container: object, base: type) -> bool:
    """Whether ``container[...]`` is ``base``'s own indexing (a subclass may index otherwise)."""
    return type(container).__getitem__ is base.__getitem__


@_child_rule(nn.Sequential)
def _sequential_child(parent, name, position, parent_origin):
    index = index_accessor(name)
    if index is None:  # built from an OrderedDict: a real name
        return _attribute_step(parent, name)
    # Sequential[i] is positional; fall back to the key when numbering has gaps or a subclass indexes otherwise
    accessor = (index if int(name) == position and _own_getitem(parent, nn.Sequential)
                else f"._modules[{json.dumps(name)}]")
    return Step(Segment(name, SEQUENTIAL_INDEX), accessor)


@_child_rule(nn.ModuleList)
def _modulelist_child(parent, name, position, parent_origin):
    if index_accessor(name) is None:
        return _attribute_step(parent, name)
    index = index_accessor(name, len(parent)) if _own_getitem(parent, nn.ModuleList) else None
    return Step(Segment(name, MODULELIST_INDEX), index or attribute_accessor(name, "_modules", parent))


@_child_rule(ParametrizationList)
def _parametrization_list_child(parent, name, position, parent_origin):
    return Step(Segment(name, PARAMETRIZATION), index_accessor(name) or attribute_accessor(name, "_modules", parent))


@_child_rule(nn.ModuleDict)
def _moduledict_child(parent, name, position, parent_origin):
    if parent_origin == PARAMETRIZATION:  # module.parametrizations.<tensor name>
        return Step(Segment(name, PARAMETRIZATION), attribute_accessor(name, "_modules", parent))
    return Step(Segment(name, MODULEDICT_KEY),
                key_accessor(name) if _own_getitem(parent, nn.ModuleDict) else attribute_accessor(name, "_modules", parent))


def child_step(parent: nn.Module, name: str, position: int, parent_origin: str) -> Step:
    """How child ``name`` (registered at ``position`` in ``parent._modules``) extends a key."""
    rule = _CHILD_RULES.lookup(type(parent))
    if rule is not None:
        return rule(parent, name, position, parent_origin)
    raise TypeError(f"{type(parent).__name__} is not an nn.Module")  # unreachable for modules


# --- tensors ------------------------------------------------------------------------------------

LeafRule = Callable[[nn.Module, str, str, str], Step]  # (owner, name, kind, table) -> Step
_LEAF_RULES: Registry[type, LeafRule] = Registry("leaf-segment rule")  # owner class -> rule, along the MRO
_leaf_rule = _LEAF_RULES.decorator


@_leaf_rule(nn.Module)
def _plain_leaf(owner, name, kind, table):
    return Step(Segment(name, kind), attribute_accessor(name, table, owner))


@_leaf_rule(nn.ParameterList)
def _parameterlist_leaf(owner, name, kind, table):
    if index_accessor(name) is None or table != "_parameters":
        return _plain_leaf(owner, name, kind, table)
    index = index_accessor(name, len(owner)) if _own_getitem(owner, nn.ParameterList) else None
    return Step(Segment(name, PARAMETERLIST_INDEX), index or attribute_accessor(name, table, owner))


@_leaf_rule(nn.ParameterDict)
def _parameterdict_leaf(owner, name, kind, table):
    if table != "_parameters":
        return _plain_leaf(owner, name, kind, table)
    return Step(Segment(name, PARAMETERDICT_KEY),
                key_accessor(name) if _own_getitem(owner, nn.ParameterDict) else attribute_accessor(name, table, owner))


def leaf_step(owner: nn.Module, name: str, kind: str) -> Step:
    """How tensor ``name`` of ``owner`` ends a key; ``kind`` is parameter, buffer, ... ."""
    table = "_parameters" if kind == PARAMETER else "_buffers"
    rule = _LEAF_RULES.lookup(type(owner))
    if rule is not None:
        return rule(owner, name, kind, table)
    raise TypeError(f"{type(owner).__name__} is not an nn.Module")
