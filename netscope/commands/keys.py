"""``netscope keys CKPT``: a checkpoint's container structure and every tensor, read from headers only."""

from __future__ import annotations

import argparse
import json
from typing import Any, Dict, List, Tuple

from netscope.commands.common import add_output_arguments, check_output_paths, emit

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
    from netscope.checkpoints import inspect_checkpoint
    from netscope.collector import paused_gc
    from netscope.render.rows import check_format

    check_format(args.format, args.table_style)
    check_output_paths(args, (args.output,))
    with paused_gc():  # a row or two of small records per tensor: the collector's passes would double the time
        info = inspect_checkpoint(args.checkpoint, weights_only=not args.unsafe_pickle, key=args.key)
        if args.format == "json":
            text = json.dumps(info.to_dict(), indent=2)
        else:
            text = render_listing(info, tree_rows(info) if args.tree else tensor_rows(info), args.format,
                                  args.table_style)
    emit(text, args)
    return 0


def human_bytes(n: int) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def tensor_rows(info) -> List[Dict[str, Any]]:
    from netscope.checkpoints.dtypes import itemsize

    first_key: Dict[str, str] = {}
    # (shape, dtype) -> (shape text, elements, bytes, size text): big files repeat a few kinds of tensor
    kinds: Dict[Tuple[Any, str], Tuple[str, int, int, str]] = {}
    rows = []
    for key, meta in info.tensors.items():
        kind = (meta.shape, meta.dtype)
        known = kinds.get(kind)
        if known is None:
            numel = meta.numel
            nbytes = numel * itemsize(meta.dtype)
            known = kinds[kind] = (str(tuple(meta.shape)), numel, nbytes, human_bytes(nbytes))
        text, numel, nbytes, size = known
        shares = ""
        if meta.storage_id is not None:
            owner = first_key.setdefault(meta.storage_id, key)
            shares = "" if owner == key else owner
        rows.append({"key": key, "shape": text, "dtype": meta.dtype, "elements": numel, "bytes": nbytes,
                     "size": size, "shares_storage_with": shares})
    return rows


def tree_rows(info) -> List[Dict[str, Any]]:
    """One row per module prefix and per tensor, with subtree totals; ``· `` marks each level of depth
    (tabulate strips leading spaces)."""
    from netscope.checkpoints.dtypes import itemsize

    totals: Dict[str, List[int]] = {}
    order: List[str] = []
    for key, meta in info.tensors.items():
        parts = key.split(".")
        for depth in range(1, len(parts) + 1):
            node = ".".join(parts[:depth])
            if node not in totals:
                totals[node] = [0, 0, 0]
                order.append(node)
            entry = totals[node]
            entry[0] += 1
            entry[1] += meta.numel
            entry[2] += meta.numel * itemsize(meta.dtype)
    rows = []
    for node in order:
        count, elements, nbytes = totals[node]
        depth = node.count(".")
        meta = info.tensors.get(node)
        label = node.rsplit(".", 1)[-1]
        rows.append({
            "key": "· " * depth + label, "tensors": count, "elements": elements, "size": human_bytes(nbytes),
            "shape": str(tuple(meta.shape)) if meta is not None else "",
            "dtype": meta.dtype if meta is not None else "",
        })
    return rows


def render_listing(info, rows: List[Dict[str, Any]], fmt: str, table_style: str) -> str:
    from netscope.render.rows import render_rows

    tree = rows and "tensors" in rows[0]
    columns = (["key", "shape", "dtype", "tensors", "elements", "size"] if tree
               else ["key", "shape", "dtype", "elements", "size", "shares_storage_with"])
    table = render_rows(rows, columns, fmt, table_style=table_style,
                        numeric=("tensors", "elements", "size"),
                        headers={"shares_storage_with": "shares storage with"})
    if fmt == "csv":
        return table
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
    total_bytes = info.total_bytes  # a pass over every tensor: once
    footer = [f"total: {len(info.tensors):,} tensors, {info.total_elements:,} elements, "
              f"{human_bytes(total_bytes)} ({total_bytes:,} bytes)"]
    footer.extend(f"note: {note}" for note in info.notes)
    return "\n".join(header) + "\n\n" + table + "\n\n" + "\n".join(footer)
