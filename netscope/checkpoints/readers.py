"""Format detection and one reader per format: ``inspect`` (headers only) and ``load`` (tensors on CPU)."""

from __future__ import annotations

import glob
import os
import re
import struct
import sys
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from netscope.checkpoints import dcp, export_archive, safetensors_format, sharded, torch_format, torch_zip
from netscope.checkpoints.distributed import distributed_notes
from netscope.checkpoints.dtypes import layout_name, torch_dtype_name
from netscope.checkpoints.identity import element_span
from netscope.checkpoints.info import CheckpointInfo, LoadedCheckpoint
from netscope.checkpoints.containers import (
    describe_layout,
    find_state_dict,
    is_plain_state_dict,
    is_tensor_like,
    nested_from_flat,
    other_entries,
    path_text,
    refuse_shapeless_tensors,
    select_state_dict,
    state_dict_candidates,
    weight_averaging_note,
)
from netscope.collector import paused_gc
from netscope.errors import CheckpointError, UsageError
from netscope.records import TensorMeta
from netscope.registry import Registry

CHECKPOINT_EXTENSIONS = (".safetensors", ".pt", ".pth", ".bin", ".ckpt", ".tar", ".pt2")
# the model's weights in a folder that also holds optimizer/scheduler files (accelerate's save_state)
_MODEL_FILE = re.compile(r"^(pytorch_)?model(_\d+)?\.(safetensors|bin|pt|pth)$")


@dataclass(frozen=True)
class Reader:
    inspect: Callable[[str, bool], CheckpointInfo]  # (path, weights_only)
    load: Callable[[str, bool, bool], LoadedCheckpoint]  # (path, weights_only, mmap)


READERS: Registry[str, Reader] = Registry("checkpoint reader")  # format name -> reader
register_reader = READERS.add


# ---- public entry points ---------------------------------------------------------------------------

def inspect_checkpoint(path: str, *, weights_only: bool = True, key: Optional[str] = None) -> CheckpointInfo:
    """List a checkpoint's container structure and every tensor's key, shape and dtype.

    Tensor bytes are never read (safetensors and DCP headers are parsed; torch files are memory-mapped
    and their tensors never touched), except for legacy non-zip torch files, which say so in ``notes``.
    ``key`` chooses which dict of tensors is the state dict (``state_dict_ema``, ``model.ema``).
    """
    with paused_gc():  # a few small records per tensor, 100k tensors and more: collector passes would dominate
        return _inspect(path, weights_only, key)


def _inspect(path: str, weights_only: bool, key: Optional[str]) -> CheckpointInfo:
    fmt, resolved = detect_format(path)
    if key is None:
        return READERS[fmt].inspect(resolved, weights_only)
    if fmt == "torch":
        container, notes = _torch_header_view(resolved, weights_only)
        return _info_from_container(resolved, fmt, container, notes, key)[0]
    if fmt == "dcp":
        _, _, _, nested, notes = _dcp_view(resolved, weights_only)
        return _dcp_info(resolved, nested, notes, key)[0]
    raise _key_does_not_apply(path, fmt, key)


def load_checkpoint(path: str, *, weights_only: bool = True, mmap: bool = True,
                    key: Optional[str] = None) -> LoadedCheckpoint:
    """Load a checkpoint on CPU; ``weights_only=False`` allows arbitrary pickled objects (trusted files only).
    ``key`` chooses which dict of tensors is the state dict (as for :func:`netscope.keys`)."""
    fmt, resolved = detect_format(path)
    loaded = READERS[fmt].load(resolved, weights_only, mmap)
    if key is None:
        return loaded
    if fmt not in ("torch", "dcp"):
        raise _key_does_not_apply(path, fmt, key)
    notes = [n for n in loaded.info.notes if not n.startswith(CHOSEN_NOTE)]  # the automatic choice, now overruled
    info, state = _info_from_container(resolved, fmt, loaded.container, notes, key)
    return LoadedCheckpoint(info=info, container=loaded.container, state_dict=state)


def _key_does_not_apply(path: str, fmt: str, key: str) -> CheckpointError:
    return CheckpointError(f"{path} is a {fmt} checkpoint, which holds one flat dict of tensors; --key {key!r} "
                           "chooses a dict inside a torch.save or DCP container and does not apply here")


# ---- detection ---------------------------------------------------------------------------------------

def detect_format(path: str) -> Tuple[str, str]:
    """``(format, path to read)`` from the file's content (extension only as a tie-breaker)."""
    try:
        path = os.fspath(path)
    except TypeError:
        raise UsageError(f"a checkpoint is named by its path (a str or os.PathLike), not {type(path).__name__}") from None
    if not os.path.exists(path):
        if os.path.islink(path):  # a dangling link, or links that lead back to themselves
            raise CheckpointError(f"{path} is a symbolic link that leads to no file (to {os.readlink(path)!r}: a "
                                  "missing target, or links that form a loop); point it at the checkpoint.")
        raise CheckpointError(f"no file or folder at {path}; check the path (and the current directory).")
    if os.path.isdir(path):
        return _detect_directory(path)
    name = os.path.basename(path)
    if name == dcp.METADATA_FILE and dcp.is_dcp_dir(os.path.dirname(os.path.abspath(path))):
        return "dcp", os.path.dirname(os.path.abspath(path))
    if name.endswith(".distcp"):
        raise CheckpointError(
            f"{path} is one data file of a torch.distributed.checkpoint directory; pass the directory that "
            "holds it and its .metadata file instead."
        )
    if not os.path.isfile(path):  # a FIFO (`<(...)`), /dev/zero: no size to read, seeking fails or never ends
        raise CheckpointError(f"{path} is not a regular file (a pipe or a device); netscope reads a checkpoint from a "
                              "file it can seek in, so save or copy it to a file first.")
    size = os.path.getsize(path)
    if size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): the save was interrupted or the copy failed; save it again.")
    with open(path, "rb") as handle:
        head = handle.read(64)
    if name.endswith(".json"):
        return _sharded_format(path), path
    if head.startswith(torch_format.ZIP_MAGIC):
        return ("pt2" if export_archive.archive_prefix(path) is not None else "torch"), path
    if _looks_like_safetensors(head, size):  # before the pickle check: a header length may start with 0x80
        return "safetensors", path
    if head[:1] == b"\x80":  # a pickle: legacy torch.save
        return "torch", path
    if name.endswith(".safetensors"):
        safetensors_format.read_header(path)  # raises the precise reason
    raise CheckpointError(f"{path} is not a checkpoint: {_describe_content(head)}. netscope reads torch.save "
                          "files (.pt/.pth/.bin/.ckpt), .safetensors, sharded *.index.json and "
                          "torch.distributed.checkpoint directories.")


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 10:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    return 0 < length <= size - 8 and head[8:9] == b"{"


def _describe_content(head: bytes) -> str:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "its content is not a format netscope knows"
    first = text.strip().splitlines()[0][:40] if text.strip() else ""
    return f"it is a text file starting {first!r}"


def _sharded_format(path: str) -> str:
    shards, _ = sharded.read_index(path)
    fmt = sharded.shard_format(shards)
    if fmt == "sharded-mixed":
        raise CheckpointError(f"{path} mixes .safetensors and torch shards; netscope expects one kind per index.")
    return fmt


def _detect_directory(path: str) -> Tuple[str, str]:
    if dcp.is_dcp_dir(path):
        return "dcp", path
    indexes = sorted(glob.glob(os.path.join(path, "*.index.json")))
    if len(indexes) == 1:
        return _sharded_format(indexes[0]), indexes[0]
    if len(indexes) > 1:
        names = ", ".join(os.path.basename(i) for i in indexes)
        raise CheckpointError(f"{path} holds several index files ({names}); pass the one you mean.")
    files = sorted(f for f in os.listdir(path) if f.endswith(CHECKPOINT_EXTENSIONS)
                   and os.path.isfile(os.path.join(path, f)))
    if len(files) == 1:
        return detect_format(os.path.join(path, files[0]))
    models = [f for f in files if _MODEL_FILE.match(f)]
    if len(models) == 1:  # accelerate save_state: model.safetensors beside optimizer.bin, scheduler.bin, ...
        return detect_format(os.path.join(path, models[0]))
    if files:
        raise CheckpointError(f"{path} is a folder with several checkpoint files ({', '.join(files[:6])}); "
                              "pass the file you mean.")
    raise CheckpointError(
        f"{path} is a folder without a checkpoint: netscope expects a torch.distributed.checkpoint directory "
        "(with a .metadata file), a *.index.json, or a single .safetensors/.pt/.pth/.bin file in it."
    )


# ---- shared helpers ------------------------------------------------------------------------------------

def _tensor_metas(state: Dict[str, Any], prefix: str = "", plain: Optional[bool] = None) -> Dict[str, TensorMeta]:
    """``plain``: whether ``state`` is known to hold ``TensorMeta`` under string keys only (None: find out)."""
    if plain or (plain is None and state and set(map(type, state.values())) == {TensorMeta}
                 and set(map(type, state)) == {str}):
        tensors = state  # torch_zip's view of a plain state dict: nothing to filter
        if torch_format.numbered_in_order(state.values(), prefix):
            # every id already the one storage_ids gives: nothing to renumber. A plain dict (ordered as well):
            # an OrderedDict of 100k keys takes 45 ms to build, and is slower to walk
            return dict(state)
    else:
        tensors = {k: v for k, v in state.items() if is_tensor_like(v) and isinstance(k, str)}
        refuse_shapeless_tensors(tensors)
    ids = torch_format.storage_ids(tensors, prefix)
    return OrderedDict(
        (k, (v if v.storage_id == ids[k] else TensorMeta(v.shape, v.dtype, ids[k], v.span)) if type(v) is TensorMeta
         else TensorMeta(tuple(int(d) for d in v.shape), torch_dtype_name(v.dtype), ids[k], element_span(v),
                         layout_name(v)))
        for k, v in tensors.items()  # torch_zip's TensorMeta: shape and dtype final, often the very id too
    )


def _info_from_container(path: str, fmt: str, container: Any, notes: List[str],
                         key: Optional[str] = None) -> Tuple[CheckpointInfo, dict]:
    if key is None and is_plain_state_dict(container):
        # the searches below would each walk the 100k keys to find what this one check tells: the container is
        # the state dict, the only candidate, with nothing beside it
        tensors = _tensor_metas(container, plain=True)
        info = CheckpointInfo(path=path, format=fmt, layout=describe_layout(container, ()), state_dict_path=(),
                              tensors=tensors, other_entries={}, notes=tuple(notes + distributed_notes(path, tensors)))
        return info, container
    if key is not None:
        sd_path, state = select_state_dict(container, key)
    else:
        try:
            sd_path, state = find_state_dict(container)
        except CheckpointError:
            sd_path, state = (), {}
            notes = notes + ["no model tensors found: the file holds no dict of tensors at the top level or under "
                             "'state_dict', 'model', 'module' or a similar key" + _non_string_keys(container) + "."]
    notes = notes + _other_candidates_note(container, tuple(sd_path), key is None)
    layout = describe_layout(container, sd_path)
    torch = sys.modules.get("torch")
    if state and torch is not None and isinstance(container, torch.nn.Module):
        layout = f"whole {type(container).__name__} object pickled (state dict taken from it)"
    tensors = _tensor_metas(state)
    notes = notes + distributed_notes(path, tensors) + _sparse_note(tensors) + _meta_note(state)
    info = CheckpointInfo(path=path, format=fmt, layout=layout, state_dict_path=tuple(sd_path),
                          tensors=tensors, other_entries=other_entries(container, sd_path),
                          notes=tuple(notes))
    return info, state


def _non_string_keys(container: Any) -> str:
    """Why a top-level dict holding tensors is no state dict: keys that are not strings (a module's are names)."""
    if not isinstance(container, dict) or not any(is_tensor_like(v) for v in container.values()):
        return ""
    odd = [k for k in container if not isinstance(k, str)]
    return (f" (the top-level dict holds tensors, but under keys that are not names: {', '.join(map(repr, odd[:4]))}"
            f"{', ...' if len(odd) > 4 else ''}; each entry is listed among the other entries)" if odd else "")


def _sparse_note(tensors: Dict[str, TensorMeta]) -> List[str]:
    """Sparse tensors are listed by their dense shape: say that their sizes are not the bytes the file holds."""
    sparse = [f"{key} ({meta.layout})" for key, meta in tensors.items() if meta.layout is not None]
    if not sparse:
        return []
    return [f"{', '.join(sparse[:6])}{', ...' if len(sparse) > 6 else ''}: sparse tensor(s), listed with their dense "
            "shape; their sizes count that shape's elements, not the indices and values the file stores"]


def _meta_note(state: Dict[str, Any]) -> List[str]:
    """Tensors saved on the meta device: the file has their shapes and dtypes, no values."""
    meta = [key for key, value in state.items() if getattr(getattr(value, "device", None), "type", None) == "meta"]
    if not meta:
        return []
    return [f"{', '.join(map(str, meta[:6]))}{', ...' if len(meta) > 6 else ''}: saved on the meta device, so the file "
            "holds their shapes and dtypes but no values; a model with real weights cannot load them"]


CHOSEN_NOTE = "the state dict was taken from"


def _other_candidates_note(container: Any, chosen: Tuple[Any, ...], automatic: bool) -> List[str]:
    """A note naming the other dicts of model tensors (EMA weights, a teacher, ...) and how to choose one."""
    averaging = weight_averaging_note(container, chosen)
    others = {p: n for p, n in state_dict_candidates(container).items() if p != chosen}
    if not others:
        return [averaging] if averaging else []
    listed = ", ".join(f"{path_text(p)} ({n} tensors)" for p, n in others.items())
    ema = any("ema" in str(p[-1]).lower() for p in others if p)
    listing = (f"{CHOSEN_NOTE} {path_text(chosen)}{' (chosen automatically)' if automatic else ''}; "
               f"the file also holds {listed}: choose with --key NAME"
               + (" (timm's own loader uses the EMA weights by default)" if ema else ""))
    return [listing] + ([averaging] if averaging else [])


def saved_module_versions(path: str, *, weights_only: bool = True, key: Optional[str] = None):
    """The ``_metadata`` (module path -> {"version": n}) of the state dict as a plain ``torch.load`` of ``path``
    gives it to ``load_state_dict``, read from headers only: ``None`` for formats that cannot store it
    (safetensors, shards) and for a torch file saved as a plain dict; ``{}`` where torch's loader is not
    ``load_state_dict`` on that dict (a torch.distributed.checkpoint folder, a torch.export archive)."""
    fmt, resolved = detect_format(path)
    if fmt == "torch":
        container, notes = _torch_header_view(resolved, weights_only)
        return getattr(_info_from_container(resolved, fmt, container, notes, key)[1], "_metadata", None)
    return None if fmt in ("safetensors", "sharded-safetensors", "sharded-torch") else {}


# ---- torch.save files -------------------------------------------------------------------------------

def _torch_header_view(path: str, weights_only: bool) -> Tuple[Any, List[str]]:
    """The container with tensors as ``TensorMeta`` (zip files, no torch import) or as mmap'd tensors."""
    try:
        return torch_zip.read_container(path), []
    except torch_zip.FastPathUnavailable:
        return torch_format.load(path, weights_only=weights_only, mmap=True)


def _torch_inspect(path: str, weights_only: bool) -> CheckpointInfo:
    container, notes = _torch_header_view(path, weights_only)
    info, _ = _info_from_container(path, "torch", container, notes)
    return info


def _torch_load(path: str, weights_only: bool, mmap: bool) -> LoadedCheckpoint:
    container, notes = torch_format.load(path, weights_only=weights_only, mmap=mmap)
    info, state = _info_from_container(path, "torch", container, notes)
    return LoadedCheckpoint(info=info, container=container, state_dict=state)


register_reader("torch", Reader(_torch_inspect, _torch_load))


# ---- torch.export archives (.pt2) -------------------------------------------------------------------------

def _pt2_info(path: str) -> CheckpointInfo:
    tensors, in_model_order = export_archive.weight_metas(path)
    notes = distributed_notes(path, tensors)
    if not in_model_order:
        notes = notes + ["the archive lists parameters first, then buffers, and here it does not say where they sit "
                         "in the model (a module holding only buffers under a name, or tied tensors, listed side by "
                         "side): the keys are not in the model's order (remap takes no evidence from their positions)"]
    return CheckpointInfo(path=path, format="pt2", layout="torch.export archive (weights config)",
                          state_dict_path=(), tensors=tensors, notes=tuple(notes), keys_in_model_order=in_model_order)


def _pt2_load(path: str, weights_only: bool, mmap: bool) -> LoadedCheckpoint:
    info = _pt2_info(path)
    state = export_archive.load_state(path, list(info.tensors))
    return LoadedCheckpoint(info=info, container=state, state_dict=state)


register_reader("pt2", Reader(lambda path, weights_only: _pt2_info(path), _pt2_load))


# ---- safetensors ------------------------------------------------------------------------------------------

def _safetensors_info(path: str, header) -> CheckpointInfo:
    tensors, notes = safetensors_format.header_tensors(header)
    entries = {"__metadata__." + k: f"str {v!r}" if len(v) <= 40 else f"str ({len(v)} chars)"
               for k, v in safetensors_format.user_metadata(header).items()}
    notes = notes + distributed_notes(path, tensors) + _hf_shard_note(path)
    return CheckpointInfo(path=path, format="safetensors", layout="plain state_dict" if tensors else "empty state_dict",
                          state_dict_path=(), tensors=tensors, other_entries=entries, notes=tuple(notes),
                          keys_in_model_order=bool(header.key_order))


def _hf_shard_note(path: str) -> List[str]:
    import re

    name = os.path.basename(path)
    if re.search(r"-\d{5}-of-\d{5}\.", name):
        return [f"{name} is one shard of a sharded checkpoint: pass its *.index.json (or the folder) to see "
                "every tensor."]
    return []


def _safetensors_inspect(path: str, weights_only: bool) -> CheckpointInfo:
    return _safetensors_info(path, safetensors_format.read_header(path))


def _safetensors_load(path: str, weights_only: bool, mmap: bool) -> LoadedCheckpoint:
    header = safetensors_format.read_header(path)
    state = safetensors_format.load_tensors(path, header)
    return LoadedCheckpoint(info=_safetensors_info(path, header), container=state, state_dict=state)


register_reader("safetensors", Reader(_safetensors_inspect, _safetensors_load))


# ---- sharded (*.index.json) --------------------------------------------------------------------------------

def _sharded_info(path: str, weights_only: bool, load: bool, mmap: bool = True):
    shards, index_meta = sharded.read_index(path)
    fmt = sharded.shard_format(shards)
    tensors: "OrderedDict[str, TensorMeta]" = OrderedDict()
    state: "OrderedDict[str, Any]" = OrderedDict()
    found: Dict[str, List[str]] = {}
    notes: List[str] = []
    for number, shard in enumerate(shards):
        prefix = f"shard{number}:"
        if shard.endswith(".safetensors"):
            header = safetensors_format.read_header(shard, storage_prefix=prefix)
            shard_tensors, shard_notes = safetensors_format.header_tensors(header)
            if load:
                state.update(safetensors_format.load_tensors(shard, header))
        else:
            container, shard_notes = (torch_format.load(shard, weights_only=weights_only, mmap=mmap) if load
                                      else _torch_header_view(shard, weights_only))
            _, shard_state = find_state_dict(container)
            shard_tensors = _tensor_metas(shard_state, prefix)
            if load:
                state.update(shard_state)
        notes.extend(shard_notes)
        found[shard] = list(shard_tensors)
        for key, meta in shard_tensors.items():
            if key in tensors:
                notes.append(f"key {key!r} appears in more than one shard; the later one ({os.path.basename(shard)}) wins.")
            tensors[key] = meta
    notes.extend(sharded.reconcile(path, shards, found))
    for alias, saved in safetensors_format.library_aliases(index_meta, tensors).items():  # shared, saved once
        tensors[alias] = tensors[saved]
        if load:
            state[alias] = state[saved]
    notes.extend(distributed_notes(path, tensors))
    entries = {f"metadata.{k}": repr(v)[:60] for k, v in index_meta.items()}
    info = CheckpointInfo(path=path, format=fmt, layout=f"HF sharded index ({len(shards)} shards)",
                          state_dict_path=(), tensors=tensors, other_entries=entries, notes=tuple(notes),
                          keys_in_model_order=False)
    return info, state


def _sharded_inspect(path: str, weights_only: bool) -> CheckpointInfo:
    return _sharded_info(path, weights_only, load=False)[0]


def _sharded_load(path: str, weights_only: bool, mmap: bool) -> LoadedCheckpoint:
    info, state = _sharded_info(path, weights_only, load=True, mmap=mmap)
    return LoadedCheckpoint(info=info, container=state, state_dict=state)


register_reader("sharded-safetensors", Reader(_sharded_inspect, _sharded_load))
register_reader("sharded-torch", Reader(_sharded_inspect, _sharded_load))


# ---- torch.distributed.checkpoint directories ------------------------------------------------------------

def _dcp_view(path: str, weights_only: bool):
    metadata = dcp.read_metadata(path, weights_only=weights_only)
    entries, paths, notes = dcp.flat_entries(metadata)
    nested = nested_from_flat(paths, {k: (v if isinstance(v, TensorMeta) else dcp.PICKLED) for k, v in entries.items()})
    return metadata, entries, paths, nested, notes


def _dcp_info(path: str, nested: dict, notes: List[str],
              key: Optional[str] = None) -> Tuple[CheckpointInfo, Tuple[Any, ...], dict]:
    if key is not None:
        sd_path, state = select_state_dict(nested, key)
    else:
        try:
            sd_path, state = find_state_dict(nested)
        except CheckpointError as exc:
            sd_path, state = (), {}
            notes = notes + [f"no model tensors found in the DCP metadata: {exc}"]
    notes = notes + _other_candidates_note(nested, tuple(sd_path), key is None)
    tensors = OrderedDict((k, v) for k, v in state.items() if isinstance(v, TensorMeta))
    notes = notes + distributed_notes(path, tensors)
    info = CheckpointInfo(path=path, format="dcp", layout="torch.distributed.checkpoint " + describe_layout(nested, sd_path),
                          state_dict_path=tuple(sd_path), tensors=tensors,
                          other_entries=other_entries(nested, sd_path), notes=tuple(notes), keys_in_model_order=False)
    return info, tuple(sd_path), state


def _dcp_inspect(path: str, weights_only: bool) -> CheckpointInfo:
    _, _, _, nested, notes = _dcp_view(path, weights_only)
    return _dcp_info(path, nested, notes)[0]


def _dcp_load(path: str, weights_only: bool, mmap: bool) -> LoadedCheckpoint:
    metadata, entries, paths, nested, notes = _dcp_view(path, weights_only)
    info, _, _ = _dcp_info(path, nested, notes)
    tensor_keys = [k for k, v in entries.items() if isinstance(v, TensorMeta)]
    values: Dict[str, Any] = dict(dcp.load_tensors(path, metadata, tensor_keys))
    for key, value in entries.items():
        if not isinstance(value, TensorMeta):
            values[key] = dcp.load_object(path, metadata, key, weights_only=weights_only)
    container = nested_from_flat(paths, values)
    node: Any = container
    for key in info.state_dict_path:
        node = node[key]
    return LoadedCheckpoint(info=info, container=container, state_dict=node)


register_reader("dcp", Reader(_dcp_inspect, _dcp_load))
