"""Checkpoint key mapping: ``diff``, ``remap``, ``remap_file`` and ``load``.

One argument order everywhere: the checkpoint (source) first, the model (target) second.
The mapping works on metadata (``{key: TensorMeta}`` on both sides), so ``diff`` and dry runs need no
tensor data; moving tensors is a separate small step (``netscope.remapping.apply``).
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Iterable, Mapping, Optional, Tuple

from netscope.errors import EXIT_FINDINGS, CheckpointError, NetscopeError, UsageError
from netscope.remapping.coverage import Coverage, compute_coverage
from netscope.remapping.sides import TensorLayout, layout_from_metas, model_layout, source_layout, split_state_dict
from netscope.remapping.plan import KeyDecision, Plan, read_plan, write_plan
from netscope.remapping.report import DiffReport, RemapReport, Unmatched
from netscope.remapping.rules import Rule, coerce_rules, parse_rule, read_rules_file

__all__ = ["diff", "remap", "remap_file", "load", "plan_mapping", "Unmatched", "RemapReport", "DiffReport", "Plan", "KeyDecision", "Rule",
           "Coverage", "CoverageError", "StrictLoadError", "parse_rule", "read_rules_file", "read_plan",
           "write_plan"]


class CoverageError(NetscopeError):
    """Less of the model than required would be loaded (exit code 1)."""

    exit_code = EXIT_FINDINGS


class StrictLoadError(NetscopeError):
    """A strict load was asked for and the mapping leaves keys missing, unused or mismatched (exit code 1)."""

    exit_code = EXIT_FINDINGS


def _as_plan(plan) -> Optional[Plan]:
    if plan is None or isinstance(plan, Plan):
        return plan
    if isinstance(plan, (str, os.PathLike)):
        return read_plan(os.fspath(plan))
    if isinstance(plan, Mapping):
        return Plan.from_dict(dict(plan))
    raise UsageError(f"plan must be a Plan, a plan dict or the path of a plan JSON file, not {type(plan).__name__}")


def _target_layout(model) -> TensorLayout:
    import torch.nn as nn

    if isinstance(model, TensorLayout):
        return model
    if not isinstance(model, nn.Module):
        raise UsageError(f"the target must be a torch.nn.Module, not {type(model).__name__}")
    return model_layout(model)


def plan_mapping(source: TensorLayout, target: TensorLayout, *, rules: Iterable = (), plan=None,
                 invert: bool = False, structural: bool = True) -> Tuple[Plan, Coverage]:
    """Metadata-only core: (plan, coverage) for two layouts."""
    from netscope.remapping.engine import infer_plan

    replay = _as_plan(plan)
    if replay is not None and invert:
        replay = replay.inverted()
    from netscope.collector import paused_gc

    with paused_gc():  # many small per-key records over a large heap: cyclic GC passes would dominate
        result = infer_plan(source, target, rules=coerce_rules(rules), plan=replay, structural=structural)
        coverage = compute_coverage(target, [d.target for d in result.decisions if d.loads])
    return result, coverage


def check_coverage(report: RemapReport, min_coverage: Optional[float]) -> None:
    if min_coverage is None:
        return
    if not 0.0 <= float(min_coverage) <= 1.0:
        raise UsageError(f"min_coverage {min_coverage!r} is not a fraction between 0 and 1, e.g. 0.99")
    if report.coverage.fraction < float(min_coverage):
        left = ", ".join(report.coverage.uninitialised[:12]) or "(none named)"
        raise CoverageError(
            f"only {report.coverage.fraction:.2%} of the model's parameter elements would be loaded, below the "
            f"required {float(min_coverage):.2%}; left uninitialised: {left}. Check the prefix or naming with "
            "'netscope diff', add --rule REGEX=REPLACEMENT, or lower --min-coverage"
        )


def diff(checkpoint_or_state_dict, model, *, rules: Iterable = (), weights_only: bool = True,
         structural: bool = True, key: Optional[str] = None) -> DiffReport:
    """Compare a checkpoint (path, state dict, or ``{key: TensorMeta}``) with a model, from metadata only.
    ``key`` chooses the dict of tensors inside a checkpoint file (``state_dict_ema``). ``model`` may be a
    second checkpoint (a path, a state dict): its keys are then the target, as if its model were given
    (torch's loader fills, which need the model's modules, are not considered)."""
    from netscope.remapping.loader_fills import keys_torch_fills

    from netscope.remapping.apply import entry_mismatches

    source, label, notes, entries = _source_layout(checkpoint_or_state_dict, weights_only=weights_only, key=key)
    second = isinstance(model, (str, os.PathLike, Mapping))  # a second checkpoint: its keys are the target
    if second:
        target, target_label, target_notes, _ = _source_layout(model, weights_only=weights_only)
        notes = list(notes) + [f"{target_label}: {note}" for note in target_notes]
    else:
        target, target_label = _target_layout(model), type(model).__name__
    result, coverage = plan_mapping(source, target, rules=rules, structural=structural)
    stray, missing = entry_mismatches(entries, result, target)
    report = DiffReport(result, coverage, label, target_label, tuple(notes), stray_entries=stray,
                        missing_entries=missing)
    if second:
        return report
    if label == "state_dict":  # tensors in memory: their _metadata is at hand
        versions = getattr(checkpoint_or_state_dict, "_metadata", None)
    elif isinstance(checkpoint_or_state_dict, (str, os.PathLike)) and keys_torch_fills(model, None, report.missing):
        # a file: its _metadata (headers only) says whether torch's loader would supply what is missing
        from netscope.checkpoints.readers import saved_module_versions

        versions = saved_module_versions(os.fspath(checkpoint_or_state_dict), weights_only=weights_only, key=key)
    else:
        return report
    if versions:  # keyed as the remapped state dict will carry them (model.bn -> bn), as remap writes them
        from netscope.remapping.apply import module_mapping, remap_metadata

        versions = remap_metadata(versions, module_mapping(result))
    return replace(report, loader_fills=keys_torch_fills(model, versions, report.missing))


def remap_file(checkpoint, model, out=None, **options) -> RemapReport:
    """Read ``checkpoint``, rename it to ``model``'s keys, write ``out`` with every tensor accounted for
    (see :func:`netscope.remapping.files.remap_file` for the options; the CLI's ``remap`` is this call)."""
    from netscope.remapping.files import remap_file as _remap_file

    return _remap_file(checkpoint, model, out, **options)


def remap(state_dict, model, *, rules: Iterable = (), plan=None, invert: bool = False,
          structural: bool = True, min_coverage: Optional[float] = None, weights_only: bool = True,
          key: Optional[str] = None) -> Tuple["dict", RemapReport]:
    """``(new_state_dict, report)``: ``state_dict`` (a state dict, or a checkpoint path read as :func:`load` reads
    it: ``weights_only``, ``key``) renamed to ``model``'s keys. The input is not mutated;
    tensors are placed, not copied; shape mismatches are left out; non-tensor entries and ``_metadata``
    are carried over. ``plan`` (a Plan or a plan file) is replayed first; ``invert`` replays it backwards."""
    from netscope.remapping.apply import apply_plan, entry_mismatches

    state_dict, label, in_order = _read_state_dict(state_dict, weights_only=weights_only, key=key)
    source = source_layout(state_dict, in_order)
    target = _target_layout(model)
    result, coverage = plan_mapping(source, target, rules=rules, plan=plan, invert=invert, structural=structural)
    from netscope.remapping.engine import settle_tied_notes
    from netscope.remapping.loader_fills import keys_torch_fills

    result = settle_tied_notes(result, state_dict, target)  # the values are at hand: equal ones lose nothing
    report = RemapReport(result, coverage, label, type(model).__name__)
    check_coverage(report, min_coverage)
    new_state_dict = apply_plan(state_dict, result, target.tensors)
    fills = keys_torch_fills(model, getattr(new_state_dict, "_metadata", None), report.missing)
    stray, missing = entry_mismatches(split_state_dict(state_dict)[1], result, target)
    return new_state_dict, replace(report, loader_fills=fills, stray_entries=stray, missing_entries=missing)


def load(checkpoint, model, *, strict: bool = True, rules: Iterable = (), weights_only: bool = True,
         min_coverage: Optional[float] = None, plan=None, key: Optional[str] = None) -> RemapReport:
    """Remap a checkpoint (path or state dict) to ``model``'s naming and load it; returns the report.

    ``strict=True`` refuses (StrictLoadError, nothing loaded) when a model key would stay missing, a
    tensor's shape differs, or a checkpoint tensor maps to nothing or is ambiguous. Shape mismatches are
    never loaded. The older order ``load(model, checkpoint)`` is still accepted (a model is never a
    checkpoint, so the two cannot be confused).
    """
    import torch.nn as nn

    if isinstance(checkpoint, nn.Module) and not isinstance(model, nn.Module):
        checkpoint, model = model, checkpoint  # load(model, checkpoint): the order before 0.x, still accepted
    if not isinstance(model, nn.Module):
        raise UsageError(f"load() needs a torch.nn.Module as the model (second argument), not {type(model).__name__}")
    new_state_dict, report = remap(checkpoint, model, rules=rules, plan=plan, min_coverage=min_coverage,
                                   weights_only=weights_only, key=key)
    problems = report.strict_problems()
    if strict and problems:
        raise StrictLoadError(
            "strict load refused, nothing was loaded: " + "; ".join(problems) + ". Inspect with "
            "'netscope diff', add rules, or call load(..., strict=False) to load what maps"
        )
    on_meta = any(t.device.type == "meta" for t in list(model.parameters()) + list(model.buffers()))
    if not on_meta:
        no_values = [k for k, v in new_state_dict.items() if getattr(v, "is_meta", False) is True]
        if no_values:  # torch would raise 'Cannot copy out of meta tensor' midway, the model half loaded
            raise CheckpointError(
                f"{len(no_values)} checkpoint tensor(s) are on the meta device (first: {no_values[0]}): they have "
                "shapes but no values, so nothing was loaded. Load a checkpoint saved with real weights (or build "
                "the model on the meta device to take the shapes)")
    model.load_state_dict(new_state_dict, strict=strict, assign=on_meta)
    return report


def _read_state_dict(checkpoint, *, weights_only: bool, key: Optional[str]) -> Tuple[Mapping, str, bool]:
    """(state dict, label, whether its key order is the model's): a checkpoint path read (``weights_only``;
    ``key`` picks the dict of tensors), or a state dict as it is."""
    if isinstance(checkpoint, (str, os.PathLike)):
        from netscope.checkpoints import load_checkpoint
        from netscope.remapping.files import refuse_distributed_pieces

        loaded = load_checkpoint(os.fspath(checkpoint), weights_only=weights_only, key=key)
        refuse_distributed_pieces(loaded.info)  # a per-rank shard or unconsolidated FSDP file: say how
        return loaded.state_dict, os.fspath(checkpoint), loaded.info.keys_in_model_order
    if not isinstance(checkpoint, Mapping):
        raise UsageError(f"expected a state dict (a mapping of key -> tensor) or a checkpoint path, not "
                         f"{type(checkpoint).__name__}")
    return _given_state_dict(checkpoint), "state_dict", True


def _given_state_dict(mapping: Mapping) -> Mapping:
    """A mapping given in Python, read as the same container in a file is: a state dict as it is; ``torch.load``'s
    ``{"state_dict": ..., "epoch": 3}`` its dict of tensors (``find_state_dict``, which names what it holds when
    there is none); numpy arrays refused, never read as keys without a tensor."""
    import torch

    values = list(mapping.values())
    if not values or any(isinstance(v, torch.Tensor) for v in values):
        return mapping
    if any(type(v).__module__ == "numpy" for v in values):
        raise UsageError("the state dict's values are numpy arrays; netscope maps torch tensors: pass "
                         "{key: torch.from_numpy(array) for key, array in state_dict.items()}")
    from netscope.checkpoints import find_state_dict

    return find_state_dict(mapping)[1]


def _source_layout(obj, *, weights_only: bool = True, key: Optional[str] = None):
    """(layout, label, notes, the state dict's non-tensor keys or None where not known) for a path (headers only),
    a state dict, or a {key: TensorMeta} mapping."""
    from netscope.records import TensorMeta

    if isinstance(obj, TensorLayout):
        return obj, "checkpoint", [], None
    if isinstance(obj, (str, os.PathLike)):
        from netscope.checkpoints import inspect_checkpoint
        from netscope.remapping.files import refuse_distributed_pieces

        info = inspect_checkpoint(os.fspath(obj), weights_only=weights_only, key=key)
        refuse_distributed_pieces(info)
        return (layout_from_metas(info.tensors, info.keys_in_model_order), os.fspath(obj), list(info.notes),
                info.state_dict_entries)
    if isinstance(obj, Mapping):
        if obj and all(isinstance(v, TensorMeta) for v in obj.values()):
            return layout_from_metas(obj), "checkpoint", [], None
        state = _given_state_dict(obj)
        return source_layout(state), "state_dict", [], tuple(split_state_dict(state)[1])
    raise UsageError(f"expected a checkpoint path, a state dict or a {{key: TensorMeta}} mapping, not {type(obj).__name__}")
