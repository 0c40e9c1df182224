"""Whole-model totals: parameters counted once even when shared, buffers, bytes, multiply-adds."""

from __future__ import annotations

import collections
import itertools
import operator
from dataclasses import dataclass
from typing import Mapping, Optional, Tuple

import torch
import torch.nn as nn

from netscope.checkpoints.identity import held_bytes, storages_beyond
from netscope.operators.packed import packed_by_module
from netscope.records import Totals, record_from_fields
from netscope.run.module_tree import (_NOT_NONE, _NUMEL, _REQUIRES_GRAD, ModuleTree, ParamCensus, _values,
                                      class_name_of, param_census, tree_of)
from netscope.run.shapes import stored_bytes



def compute_totals(model: nn.Module, calls, called_modules, *, input_bytes: int,
                   peak_memory_bytes: Optional[int] = None, packed: Optional[Mapping[int, tuple]] = None,
                   tree: Optional[ModuleTree] = None, census: Optional[ParamCensus] = None) -> Totals:
    """``calls`` and ``called_modules`` are a trace's ``calls`` and ``modules`` (the module object of each call);
    ``packed`` its quantized modules' packed tensors (``TraceResult.packed``; found here when not given);
    ``tree`` the model's :class:`ModuleTree` (``TraceResult.tree``; walked here when not given), ``census`` its
    parameter slots as the trace read them after the pass (``TraceResult.census``; read here when not given).
    Each figure is read for all parameters in one C loop (``map``) instead of a Python loop per parameter."""
    tree = tree_of(model, tree)
    if census is None and not tree.shares_modules:
        census = param_census(tree)
    if census is not None and not tree.shares_modules and census.distinct == len(census.params):
        # the tree's census (TraceResult.census, or read just now): no parameter under two paths, nothing shared
        tensors, numel_list, shared = census.params, census.numels, []
        trainable = sum(itertools.compress(numel_list, census.trainable))
    else:
        # every path to every parameter, as named_parameters(remove_duplicate=False) walks them (in C loops)
        tables = [m._parameters for _, m in tree.named] if tree.shares_modules else tree.tables("_parameters")
        slots = list(filter(_NOT_NONE, itertools.chain.from_iterable(map(_values, filter(None, tables)))))
        slot_ids = list(map(id, slots))
        unique = dict(zip(slot_ids, slots))
        shared = [key for key, count in collections.Counter(slot_ids).items() if count > 1]
        tensors = list(unique.values())
        numel_list = list(map(_NUMEL, tensors))  # each read once: a Parameter's numel() is not free
        trainable = sum(itertools.compress(numel_list, map(_REQUIRES_GRAD, tensors)))
    # quantized modules' packed weights and biases count as (frozen) parameters, once per module
    packed_tensors = packed_by_module(tree.modules) if packed is None else packed
    packed = [t for tensors_ in packed_tensors.values() for t in tensors_]
    total = sum(numel_list) + sum(t.numel() for t in packed)
    called_ids = set(map(id, called_modules))
    if called_ids.issuperset(map(id, tree.modules)):  # every registered module ran: no parameter left uncalled
        uncalled = 0
    else:
        called = dict(zip(map(id, called_modules), called_modules))
        called_params = set(map(id, itertools.chain.from_iterable(
            map(_values, filter(None, (m._parameters for m in called.values()))))))
        for module in called.values():  # a called TorchScript module ran its whole subtree without module hooks
            if isinstance(module, torch.jit.ScriptModule):
                called_params.update(map(id, module.parameters()))
        uncalled = sum(n for key, n in zip(map(id, tensors), numel_list) if key not in called_params)
    shared_ids = set(shared)
    uncalled += sum(t.numel() for key, tensors_ in packed_tensors.items() if key not in called_ids for t in tensors_)
    # bytes and buffer elements: each storage once (a buffer registered as a slice of another, two parameter objects
    # over one storage hold its memory once), a storage a parameter is on counted with the parameters only (a
    # buffer viewing a parameter, or a parameter viewing a buffer); a sparse tensor's stored values and indices
    buffers_held = storages_beyond(tree.buffers, tensors)
    return Totals(
        total_params=total,
        trainable_params=trainable,
        non_trainable_params=total - trainable,
        shared_params=sum(n for key, n in zip(map(id, tensors), numel_list) if key in shared_ids) if shared_ids else 0,
        shared_param_tensors=len(shared),
        uncalled_params=uncalled,
        buffer_elements=sum(b.numel() if n is None else n // b.element_size() for b, n in buffers_held),
        param_bytes=held_bytes(tensors) + sum(t.numel() * t.element_size() for t in packed),
        buffer_bytes=sum(stored_bytes(b) if n is None else n for b, n in buffers_held),
        total_macs=calls[0].macs if calls else 0,
        input_bytes=input_bytes,
        activation_bytes=_innermost_output_bytes(calls),
        peak_memory_bytes=peak_memory_bytes,
    )


def _innermost_output_bytes(calls) -> int:
    """The forward-activation estimate: the output bytes of every call inside which no other module call ran.
    Those are the leaf modules' calls, and also the calls of modules whose children never ran as modules
    (``nn.MultiheadAttention`` uses its ``out_proj``'s weights without calling it; an ``nn.TransformerEncoderLayer``
    in eval runs one fused kernel): counting leaf modules only left their outputs out (a TransformerEncoder: 0 B)."""
    parents = set(map(_PARENT, calls))  # a call's index is its position in ``calls``
    innermost = map(operator.not_, map(parents.__contains__, range(len(calls))))
    return sum(itertools.compress(map(_OUTPUT_BYTES, calls), innermost))


_OUTPUT_BYTES, _PARENT = operator.attrgetter("output_bytes"), operator.attrgetter("parent")


@dataclass(frozen=True)
class OwnedParams:
    """The parameter elements a module owns: each tensor counted once, under the first module that registers it
    (called or not), so the owners' counts add up to ``Totals.total_params`` exactly."""

    name: str  # the module's qualified name ("" for the root)
    class_name: str
    numel: int


def owned_params(model: nn.Module, tree: Optional[ModuleTree] = None,
                 census: Optional[ParamCensus] = None) -> Tuple[OwnedParams, ...]:
    """``census``: ``tree``'s parameter slots as the trace read them after the pass (``TraceResult.census``)."""
    tree = tree_of(model, tree)
    names = tree.names
    if census is not None and census.distinct == len(census.params):  # no parameter in two slots: each its module's
        return tuple(record_from_fields(OwnedParams, {"name": names[id(module)], "class_name": class_name_of(module),
                                                      "numel": own})
                     for module, own in zip(tree.modules, census.own) if own)
    seen = set()
    owners = []
    for module, table in zip(tree.modules, tree.tables("_parameters")):  # named_modules(): each once, first path
        if not table:
            continue
        name = names[id(module)]
        own = 0
        for param in table.values():
            if param is not None and id(param) not in seen:
                seen.add(id(param))
                own += param.numel()
        if own:
            owners.append(record_from_fields(OwnedParams, {"name": name, "class_name": class_name_of(module),
                                                           "numel": own}))
    return tuple(owners)
