"""File to file: read a checkpoint, remap it to a model's naming, write it with every tensor accounted for.

``remap_file`` is the whole ``netscope remap`` command as a function (the CLI only parses arguments).
A source tensor that does not go into the model is never dropped silently: it stays in the output
container under ``netscope_unmatched``, goes to a side file the caller names, or is dropped only with
``drop_unmatched=True``. The container's other entries (optimizer state, EMA weights, epoch, ...) are
carried through unless ``state_dict_only=True``.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, List, Mapping, Optional, Tuple

from netscope.errors import UsageError
from netscope.remapping import plan as P
from netscope.remapping.plan import Plan
from netscope.remapping.report import RemapReport, Unmatched
from netscope.units import shape_text

UNMATCHED_ENTRY = "netscope_unmatched"  # where unmatched source tensors are kept inside the output container
TENSORS_ONLY_EXTENSIONS = (".safetensors",)


def unmatched_decisions(plan: Plan) -> List[Unmatched]:
    """Source tensors that do not go into the model (aliases of a loaded tensor are not lost: their data is)."""
    return [Unmatched(d.source, d.source_shape, d.reason, d.detail) for d in plan.decisions
            if d.source is not None and not d.loads and d.reason != P.ALIAS]


def same_file(a: str, b: str) -> bool:
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return os.path.realpath(a) == os.path.realpath(b)


def remap_file(checkpoint: str, model, out: Optional[str] = None, *, rules: Iterable = (), plan=None,
               invert: bool = False, key: Optional[str] = None, weights_only: bool = True,
               min_coverage: Optional[float] = None, drop_unmatched: bool = False,
               unmatched_out: Optional[str] = None, state_dict_only: bool = False, in_place: bool = False,
               force: bool = False, dry_run: bool = False) -> RemapReport:
    """Remap the checkpoint file ``checkpoint`` to ``model``'s naming and write it to ``out``.

    ``key`` chooses the dict of tensors inside the container (``state_dict_ema``). Below ``min_coverage``
    nothing is written (CoverageError, exit 1). ``dry_run`` reads headers only and writes nothing.
    Unmatched tensors go under ``netscope_unmatched`` in the output container, to ``unmatched_out``, or
    nowhere with ``drop_unmatched``; a bare state dict or a .safetensors output cannot hold them, so there
    one of the two options is required. ``in_place`` allows ``out`` to be ``checkpoint`` (atomic replace);
    ``force`` allows replacing another existing file.
    """
    from netscope.remapping import _target_layout, check_coverage, plan_mapping
    from netscope.remapping.apply import entry_mismatches
    from netscope.remapping.sides import layout_from_metas, source_layout, split_state_dict

    if not isinstance(checkpoint, (str, os.PathLike)):
        raise UsageError(f"remap_file reads a checkpoint file: give its path, not a {type(checkpoint).__name__} "
                         "(netscope.remap(state_dict, model) renames one in memory)")
    checkpoint = os.fspath(checkpoint)
    if invert and plan is None:
        raise UsageError("invert replays a saved plan backwards; give the plan too (--plan PLAN.json)")
    if not dry_run and not out and in_place:
        raise UsageError(f"--in-place replaces the input only where -o names it: write -o {checkpoint} --in-place "
                         "(or choose another output file, -o remapped.pt, without --in-place)")
    if not dry_run and not out:
        raise UsageError("give the output file (-o OUT, e.g. -o remapped.pt), or use a dry run to only print the plan")
    if drop_unmatched and unmatched_out:
        raise UsageError("choose one of --drop-unmatched and --unmatched-out FILE, not both")
    if out and same_file(out, checkpoint) and not in_place:
        raise UsageError(f"-o {out} is the input checkpoint itself; choose another file name, or pass "
                         "--in-place to replace the input (written atomically)")
    if unmatched_out and (same_file(unmatched_out, checkpoint) or (out and same_file(unmatched_out, out))):
        raise UsageError(f"--unmatched-out {unmatched_out} is the input or the output file; give a separate file")
    target = _target_layout(model)
    label = type(model).__name__
    if dry_run:
        from netscope.checkpoints import inspect_checkpoint

        info = inspect_checkpoint(checkpoint, weights_only=weights_only, key=key)
        refuse_distributed_pieces(info)
        source = layout_from_metas(info.tensors, info.keys_in_model_order)
        result, coverage = plan_mapping(source, target, rules=rules, plan=plan, invert=invert)
        unmatched = unmatched_decisions(result)
        stray, missing = entry_mismatches(info.state_dict_entries, result, target)
        return RemapReport(result, coverage, checkpoint, label, tuple(info.notes) + ("dry run: nothing written",),
                           unmatched=tuple(unmatched), stray_entries=stray, missing_entries=missing)
    from netscope.checkpoints import load_checkpoint, save_checkpoint
    from netscope.remapping.apply import apply_plan, rebuild_container
    from netscope.remapping.engine import settle_tied_notes
    from netscope.remapping.loader_fills import keys_torch_fills

    loaded = load_checkpoint(checkpoint, weights_only=weights_only, key=key)
    refuse_distributed_pieces(loaded.info)
    source = source_layout(loaded.state_dict, loaded.info.keys_in_model_order)
    result, coverage = plan_mapping(source, target, rules=rules, plan=plan, invert=invert)
    result = settle_tied_notes(result, loaded.state_dict, target)  # the values are at hand: equal ones lose nothing
    report = RemapReport(result, coverage, checkpoint, label, tuple(loaded.info.notes))
    check_coverage(report, min_coverage)  # below the threshold: nothing is written
    unmatched = unmatched_decisions(result)
    new_state_dict = apply_plan(loaded.state_dict, result, target.tensors)
    fills = keys_torch_fills(model, getattr(new_state_dict, "_metadata", None), report.missing)
    path = tuple(loaded.info.state_dict_path)
    tensors_only = out.lower().endswith(TENSORS_ONLY_EXTENSIONS)
    in_place_write = same_file(out, checkpoint)
    notes: List[str] = list(loaded.info.notes)

    others = _other_entries(loaded.container, path, new_state_dict)
    if others and tensors_only and not state_dict_only:
        raise UsageError(f"{out} would be a .safetensors file, which holds tensors only: the checkpoint's other "
                         f"entries ({', '.join(others[:8])}{' ...' if len(others) > 8 else ''}) would be lost. "
                         "Write a .pt file to keep them, or pass --state-dict-only to write the state dict alone")
    if others and state_dict_only and in_place_write:
        raise UsageError(f"--in-place with --state-dict-only would drop {', '.join(others[:8])} from {checkpoint}; "
                         "write to another file instead")
    destination = _unmatched_destination(unmatched, loaded.container, path, out, tensors_only or state_dict_only,
                                         drop_unmatched, unmatched_out, in_place_write)
    if state_dict_only or tensors_only:
        import torch

        container: Any = {k: v for k, v in new_state_dict.items() if isinstance(v, torch.Tensor)} if tensors_only \
            else new_state_dict
        if others:
            notes.append(f"--state-dict-only: left out the container's other entries: {', '.join(others)}")
        renamed = 0
    else:
        siblings, sibling_notes = _siblings_in_target_naming(loaded.container, path, loaded.state_dict, result,
                                                             target.tensors, bool(unmatched))
        notes.extend(sibling_notes)
        container, renamed = rebuild_container(loaded.container, path, new_state_dict, result, siblings)
    source_tensors = loaded.state_dict
    kept = {u.key: source_tensors[u.key] for u in unmatched}
    if unmatched and destination == "container":
        container = dict(container)
        container[UNMATCHED_ENTRY] = kept
        where = f"kept in {out} under '{UNMATCHED_ENTRY}' (original keys)"
    elif unmatched and destination == "side-file":
        save_checkpoint(kept, unmatched_out, force=force)
        where = f"written to {unmatched_out} (original keys)"
    elif unmatched:
        where = "dropped (--drop-unmatched)"
    else:
        where = ""
    save_checkpoint(container, out, force=force or in_place)
    notes.append(f"written: {out}")
    if tensors_only:
        notes.extend(_alias_notes(out))
    stray, missing = entry_mismatches(split_state_dict(loaded.state_dict)[1], result, target)
    return RemapReport(result, coverage, checkpoint, label, tuple(notes), renamed, tuple(unmatched), where, fills,
                       stray, missing)


def _siblings_in_target_naming(container: Any, path: Tuple, state_dict: Mapping, plan: Plan, target_order,
                               has_unmatched: bool) -> Tuple[dict, List[str]]:
    """The container's other dicts of model tensors (timm's ``state_dict_ema``, a teacher copy) renamed by the
    same plan where they hold exactly the remapped dict's keys and shapes; any other is named as carried over
    in its original naming (never renamed by a plan made for different keys) if it shares a key with it (Lightning's
    ``averaging_state``, ``{"n_averaged": ...}``, does not: it is no copy of the model)."""
    from netscope.checkpoints.containers import path_text, state_dict_candidates
    from netscope.remapping.apply import apply_plan
    from netscope.remapping.sides import split_state_dict

    if not path or all(d.source == d.target for d in plan.decisions if d.loads):
        return {}, []
    shapes = {k: tuple(v.shape) for k, v in split_state_dict(state_dict)[0].items()}
    renamed, kept, chosen = {}, [], path_text(path)
    for other in state_dict_candidates(container):
        if other == path:
            continue
        node = container
        for part in other:
            node = node[part]
        other_shapes = {k: tuple(v.shape) for k, v in split_state_dict(node)[0].items()}
        same = other_shapes == shapes
        if same and not has_unmatched:
            renamed[other] = apply_plan(node, plan, target_order)
        elif shapes.keys() & other_shapes.keys():  # in the remapped dict's naming, at least in part
            why = "it holds tensors the model does not take" if same else f"other keys or shapes than {chosen}"
            kept.append(f"{path_text(other)} ({why})")
    notes = []
    if renamed:
        notes.append(f"renamed by the same mapping: {', '.join(path_text(p) for p in renamed)} (the same keys and "
                     f"shapes as {chosen})")
    if kept:
        notes.append(f"carried over in its original naming: {', '.join(kept)}; remap it with --key NAME into "
                     "another file")
    return renamed, notes


def _alias_notes(path: str) -> List[str]:
    """A .safetensors file stores a tensor once: keys that shared it are recorded as netscope aliases, which
    ``safetensors.torch.load_file`` does not return (torch's strict load then misses them)."""
    from netscope.checkpoints import safetensors_format

    aliases = safetensors_format.read_header(path).aliases
    if not aliases:
        return []
    shown = ", ".join(f"{a} = {c}" for a, c in list(aliases.items())[:4]) + (" ..." if len(aliases) > 4 else "")
    return [f"{len(aliases)} key(s) share a tensor with another key ({shown}); the .safetensors format stores it "
            "once and records the alias in its metadata: netscope.load restores it, but safetensors.torch."
            "load_file does not, so tie the weights after loading (HF from_pretrained does) or write a .pt file"]


def _other_entries(container: Any, path: Tuple, new_state_dict: Mapping) -> List[str]:
    """Names of what the container holds besides the model tensors (non-tensor state-dict entries too)."""
    import torch

    names = [f"state dict entry {k!r}" for k, v in new_state_dict.items() if not isinstance(v, torch.Tensor)]
    if getattr(new_state_dict, "_metadata", None) is not None and path:
        names.append("_metadata")
    node = container
    for depth, part in enumerate(path):
        if isinstance(node, (Mapping, list, tuple)):
            keys = node if isinstance(node, Mapping) else range(len(node))
            names.extend(".".join(map(str, path[:depth] + (k,))) for k in keys if k != part)
            node = node[part]
    return names


def _unmatched_destination(unmatched: List[Unmatched], container: Any, path: Tuple, out: str, flat_output: bool,
                           drop: bool, side_file: Optional[str], in_place: bool) -> str:
    """'container', 'side-file', 'drop' or '' (nothing unmatched); refuses when none applies."""
    if not unmatched:
        return ""
    if drop:
        return "drop"
    if side_file:
        return "side-file"
    if path and not flat_output and isinstance(container, Mapping):
        if UNMATCHED_ENTRY in container:
            raise UsageError(f"the checkpoint already has an entry {UNMATCHED_ENTRY!r}; write the unmatched tensors "
                             "elsewhere with --unmatched-out FILE, or pass --drop-unmatched")
        return "container"
    listed = "; ".join(f"{u.key} {shape_text(u.shape or ())} ({u.why})"
                       for u in unmatched[:5])
    more = f" and {len(unmatched) - 5} more" if len(unmatched) > 5 else ""
    what = ("the output holds the state dict alone" if path and flat_output else
            f"the output is a {type(container).__name__}, which has no entry to keep them under" if path
            else "the output is a bare state dict, which must hold only the model's keys")
    action = "the input was left unchanged" if in_place else "nothing was written"
    raise UsageError(f"{len(unmatched)} checkpoint tensor(s) do not go into the model: {listed}{more}. {what}, so "
                     f"they cannot be kept in {out}; {action}. Keep them with --unmatched-out FILE, or drop them "
                     "explicitly with --drop-unmatched")


def refuse_distributed_pieces(info) -> None:
    """A per-rank shard or an unconsolidated FSDP file is answered with how to consolidate it; a file
    without model tensors (an optimizer-only save) with what it holds instead."""
    from netscope.checkpoints.distributed import distributed_notes
    from netscope.errors import CheckpointError

    problems = distributed_notes(info.path, info.tensors)
    if problems:
        raise CheckpointError(problems[0])
    if not info.tensors:
        raise CheckpointError(f"{info.path} holds no model tensors to map ({info.layout}); "
                              + (" ".join(info.notes) or "save the model's state dict and try again"))
