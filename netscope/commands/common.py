"""Arguments several commands share, and their conversion to API calls. Imports torch lazily."""

from __future__ import annotations

import argparse
import sys

from netscope.render.rows import TEXT_FORMATS


def add_model_arguments(parser: argparse.ArgumentParser, *, with_inputs: bool = True) -> None:
    parser.add_argument(
        "model", nargs="?", default=None,
        help="torchvision name (default resnet50), package.module:factory, path/to/file.py:Class, "
        "timm:NAME or hf:CONFIG",
    )
    parser.add_argument("--model-arg", "-a", action="append", default=[], metavar="KEY=VALUE",
                        help="keyword argument for the model constructor (repeatable), e.g. num_classes=10")
    if with_inputs:
        parser.add_argument("--input", "-i", action="append", default=[], metavar="SHAPE[:DTYPE]",
                            help="dummy input shape, e.g. 1,3,224,224 or 1,128:int64 (repeat for several inputs)")
        parser.add_argument("--device", default="auto",
                            help="auto (cuda when available, else cpu), cpu, cuda, cuda:N, or meta (no memory)")
        parser.add_argument("--dtype", default="float32", help="float dtype of the pass: float32, bfloat16, float16")
        parser.add_argument("--train", action="store_true", help="run the pass in train mode (default: eval)")


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", "-f", default="table", choices=TEXT_FORMATS, help="output format")
    parser.add_argument("--table-style", default="simple", metavar="STYLE",
                        help="tabulate style for --format table (simple, grid, github, ...)")
    parser.add_argument("--output", "-o", default=None, metavar="FILE", help="write to FILE instead of stdout")


def emit(text: str, args: argparse.Namespace) -> None:
    """Write command output to --output (atomically) or stdout."""
    path = getattr(args, "output", None)
    if path:
        from netscope.fileio import write_text_atomic

        write_text_atomic(path, text if text.endswith("\n") else text + "\n")
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


def resolve_from_args(args: argparse.Namespace, *, empty_weights: bool = False):
    """The ResolvedModel the command line names."""
    from netscope.specs import parse_model_args, resolve_model

    return resolve_model(args.model, parse_model_args(args.model_arg), empty_weights=empty_weights)


def build_report(args: argparse.Namespace, *, checks: bool = True):
    """Resolve the model and inputs the command line names and run the summary pass."""
    from netscope.api import run_summary
    from netscope.devices import resolve_device
    from netscope.inputs import normalize_dtype, parse_inputs

    inputs = parse_inputs(args.input)  # validate everything cheap before building the model
    dtype = normalize_dtype(args.dtype)
    device = resolve_device(args.device)
    resolved = resolve_from_args(args, empty_weights=(device.type == "meta"))
    return run_summary(resolved.module, inputs or resolved.inputs, device=device, dtype=dtype,
                       mode="train" if args.train else "eval", label=resolved.label, owned=True, checks=checks)
