"""``netscope keys CKPT``: a checkpoint's container structure and every tensor, read from headers only."""

from __future__ import annotations

import argparse
import json
from math import prod
from operator import attrgetter
from typing import Any, Dict, List, Sequence, Tuple

from netscope.commands.common import add_output_arguments, check_output_paths, emit
from netscope.units import shape_text

HELP = "list a checkpoint's container structure and every tensor's key, shape, dtype and size (no tensor data read)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CKPT",
                        help=".pt/.pth/.bin/.ckpt/.pth.tar, .safetensors, a sharded *.index.json, a "
                        "torch.distributed.checkpoint directory, a torch.export .pt2 or an accelerate folder")
    parser.add_argument("--key", default=None, metavar="NAME",
                        help="the dict of tensors to list inside the container, e.g. state_dict_ema")
    parser.add_argument("--unsafe-pickle", action="store_true",
                        help="allow arbitrary pickled objects (weights_only=False): only for files you trust, "
                        "since unpickling can run code stored in the file")
    parser.add_argument("--tree", action="store_true",
                        help="group keys by module prefix, with tensor counts, elements and bytes per subtree")
    add_output_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from netscope.collector import paused_gc
    from netscope.render.rows import check_format

    check_format(args.format, args.table_style)
    check_output_paths(args, (args.output,))
    # A row or two of small records per tensor: the collector's passes would double the time. The records
    # die with listing_text's frame, inside the block (reference counting frees them): alive after it, the
    # first collection would walk every one of them (0.1 s on 100k keys). The text itself is not tracked.
    with paused_gc():
        text = listing_text(args)
    emit(text, args)
    return 0


def listing_text(args: argparse.Namespace) -> str:
    """What ``netscope keys`` prints, in ``args.format``."""
    from netscope.checkpoints import inspect_checkpoint

    info = inspect_checkpoint(args.checkpoint, weights_only=not args.unsafe_pickle, key=args.key)
    if args.format == "json":
        return json.dumps(info.to_dict(), indent=2)
    table = tree_columns(info, indent=args.format != "csv") if args.tree else tensor_columns(info)
    return render_listing(info, table, args.format, args.table_style)


def human_bytes(n: int) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


TENSOR_COLUMNS = ("key", "shape", "dtype", "elements", "size", "shares_storage_with")
TREE_COLUMNS = ("key", "shape", "dtype", "tensors", "elements", "size")


def tensor_columns(info) -> Dict[str, Sequence[Any]]:
    """Column -> one cell per tensor, in file order: ``key``, ``shape`` (text), ``dtype``, ``elements``,
    ``bytes``, ``size`` (text) and ``shares_storage_with`` (the first key on the same storage, else blank).
    Big files repeat a few kinds of tensor: the columns a tensor's kind decides are ``Coded`` by kind, so
    their cells are made, measured and drawn once per kind."""
    from netscope.render.rows import Coded

    keys = list(info.tensors)
    metas = list(info.tensors.values())
    dtypes = list(map(attrgetter("dtype"), metas))
    shapes = list(map(attrgetter("shape"), metas))
    if len(set(dtypes)) == 1:  # one dtype (the common case): a tensor's kind is its shape
        kinds: Sequence[Any] = shapes
        cells = {shape: _kind_cells(shape, dtypes[0]) for shape in dict.fromkeys(shapes)}
    else:
        kinds = list(zip(shapes, dtypes))
        cells = {kind: _kind_cells(*kind) for kind in dict.fromkeys(kinds)}
    table: Dict[str, Sequence[Any]] = {
        name: Coded(kinds, {kind: made[index] for kind, made in cells.items()})
        for index, name in enumerate(("shape", "dtype", "elements", "bytes", "size"))}
    table["key"] = keys
    table["shares_storage_with"] = _first_keys(keys, list(map(attrgetter("storage_id"), metas)))
    return table


def _kind_cells(shape: Tuple[int, ...], dtype: str) -> Tuple[str, str, int, int, str]:
    """(shape text, dtype, elements, bytes, size text) of a tensor of ``shape`` and ``dtype``."""
    from netscope.checkpoints.dtypes import itemsize

    numel = prod(shape)
    nbytes = numel * itemsize(dtype)
    return shape_text(shape), dtype, numel, nbytes, human_bytes(nbytes)


def _first_keys(keys: List[str], storage_ids: List[Any]) -> List[str]:
    """Per key, the first key on the same storage when that is another key, else blank."""
    distinct = set(storage_ids)
    if len(distinct) == len(storage_ids) and None not in distinct:  # nothing shared: the common case
        return [""] * len(keys)
    first: Dict[Any, str] = {}
    out = []
    for key, storage in zip(keys, storage_ids):
        owner = key if storage is None else first.setdefault(storage, key)
        out.append("" if owner == key else owner)
    return out


def tree_columns(info, indent: bool = True) -> Dict[str, Sequence[Any]]:
    """One row per module prefix and per tensor, with subtree totals; ``· `` marks each level of depth
    (tabulate strips leading spaces); ``indent=False`` (CSV) gives each row its full dotted key instead."""
    from netscope.checkpoints.dtypes import itemsize

    totals: Dict[str, List[int]] = {}
    children: Dict[str, List[str]] = {"": []}  # node -> child nodes, in the order the keys first name them
    for key, meta in info.tensors.items():
        parts = key.split(".")
        for depth in range(1, len(parts) + 1):
            node = ".".join(parts[:depth])
            if node not in totals:
                totals[node] = [0, 0, 0]
                children.setdefault(".".join(parts[:depth - 1]), []).append(node)
                children.setdefault(node, [])
            entry = totals[node]
            entry[0] += 1
            entry[1] += meta.numel
            entry[2] += meta.numel * itemsize(meta.dtype)
    # depth first, so every tensor sits under its own subtree even when a subtree's keys are not adjacent in the
    # file (a torch.distributed.checkpoint lists its keys in no module order)
    order: List[str] = []
    stack = list(reversed(children[""]))
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(reversed(children[node]))
    shared = _shared_subtree_bytes(info) if info.shares_storage else {}
    table: Dict[str, List[Any]] = {column: [] for column in TREE_COLUMNS + ("bytes",)}
    for node in order:
        count, elements, nbytes = totals[node]
        nbytes = shared.get(node, nbytes)
        meta = info.tensors.get(node)
        table["key"].append("· " * node.count(".") + node.rsplit(".", 1)[-1] if indent else node)
        table["tensors"].append(count)
        table["elements"].append(elements)
        table["bytes"].append(nbytes)
        table["size"].append(human_bytes(nbytes))
        table["shape"].append(shape_text(meta.shape) if meta is not None else "")
        table["dtype"].append(meta.dtype if meta is not None else "")
    return table


def _shared_subtree_bytes(info) -> Dict[str, int]:
    """Subtree -> its bytes with a storage several of its keys share counted once (as the total counts it), for
    the subtrees holding such keys."""
    from netscope.checkpoints.info import bytes_held

    first: Dict[Any, str] = {}
    for key, meta in info.tensors.items():
        if meta.storage_id is not None:
            first.setdefault(meta.storage_id, key)
    sharing = [key for key, meta in info.tensors.items()
               if meta.storage_id is not None and first[meta.storage_id] != key]
    nodes = {".".join(key.split(".")[:depth]) for key in sharing for depth in range(1, key.count(".") + 1)}
    under: Dict[str, List[Tuple[str, Any]]] = {node: [] for node in nodes}
    for key, meta in info.tensors.items():  # one pass: each key into the subtrees of interest above it
        parts = key.split(".")
        for depth in range(1, len(parts)):
            members = under.get(".".join(parts[:depth]))
            if members is not None:
                members.append((key, meta))
    return {node: bytes_held([key for key, _ in members], [meta for _, meta in members])
            for node, members in under.items()}


def render_listing(info, table: Dict[str, Sequence[Any]], fmt: str, table_style: str) -> str:
    """The listing of ``tensor_columns`` or ``tree_columns`` (which has ``tensors``) with its header and totals."""
    from netscope.render.rows import render_columns

    tree = "tensors" in table
    columns = TREE_COLUMNS if tree else TENSOR_COLUMNS
    if fmt == "csv":  # exact bytes for a program to read, next to the rounded size (1.5 KiB) a reader sees
        columns = tuple(c for name in columns for c in (("bytes", name) if name == "size" else (name,)))
    text = render_columns([table[c] for c in columns], columns, fmt, table_style=table_style,
                          numeric=("tensors", "elements", "size"),
                          headers={"shares_storage_with": "shares storage with"})
    if fmt == "csv":
        return text
    header = [
        f"checkpoint: {info.path}",
        f"format:     {info.format}",
        f"layout:     {info.layout}",
        "state dict: " + ("top level" if not info.state_dict_path
                          else "".join(f"[{k!r}]" for k in info.state_dict_path)),
    ]
    if info.other_entries:
        header.append("other entries:")
        header.extend(f"  {k}: {v}" for k, v in info.other_entries.items())
    shared = any(table["shares_storage_with"]) if not tree else info.shares_storage  # the column: no second pass
    if not tree:  # the flat listing has every tensor's elements and bytes at hand
        total_elements = sum(table["elements"])
        # no key shares: one storage per tensor; else the views' reach (CheckpointInfo.total_bytes)
        total_bytes = info.total_bytes if shared else sum(table["bytes"])
    else:
        total_elements, total_bytes = info.total_elements, info.total_bytes
    footer = [f"total: {len(info.tensors):,} tensors, {total_elements:,} elements, "
              f"{human_bytes(total_bytes)} ({total_bytes:,} bytes"
              + ("; a storage several keys share counted once" if shared else "") + ")"]
    footer.extend(f"note: {note}" for note in info.notes)
    return "\n".join(header) + "\n\n" + text + "\n\n" + "\n".join(footer)
