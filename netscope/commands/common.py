"""Arguments several commands share, and their conversion to API calls. Imports torch lazily."""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import sys

from netscope.fileio import write_stdout
from netscope.render.rows import TEXT_FORMATS


def add_model_arguments(parser: argparse.ArgumentParser, *, with_inputs: bool = True) -> None:
    parser.add_argument(
        "model", nargs="?", default=None,
        help="torchvision name (default resnet50), package.module:factory, path/to/file.py:Class, "
        "timm:NAME or hf:CONFIG",
    )
    parser.add_argument("--model-arg", "-a", action="append", default=[], metavar="KEY=VALUE",
                        help="keyword argument for the model constructor (repeatable), e.g. num_classes=10; VALUE is a "
                        "Python literal (10, 0.1, True, None, (3, 4), 'text') or else a plain string")
    if with_inputs:
        parser.add_argument("--input", "-i", action="append", default=[], metavar="[NAME=]SHAPE[:DTYPE]",
                            help="dummy input shape, e.g. 1,3,224,224 or 1,128:int64 (repeat for several inputs); "
                            "NAME=SHAPE passes a keyword input, e.g. input_ids=1,128:int64")
        parser.add_argument("--device", default="auto",
                            help="auto (cuda when available, else cpu), cpu, cuda, cuda:N, or meta (no memory)")
        parser.add_argument("--dtype", default=None,
                            help="float dtype of the pass: float32, bfloat16, float16 (default: the model's own, "
                            "float32 for torchvision and timm, the config's torch_dtype for hf:)")
        parser.add_argument("--train", action="store_true", help="run the pass in train mode (default: eval)")


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", "-f", default="table", choices=TEXT_FORMATS, help="output format")
    parser.add_argument("--table-style", default="simple", metavar="STYLE",
                        help="tabulate style for --format table (simple, grid, github, ...)")
    add_output_file_arguments(parser)


def add_output_file_arguments(parser: argparse.ArgumentParser) -> None:
    """``-o FILE`` (``-`` standard output) and ``--force``: where a command's text output goes (:func:`emit`)."""
    parser.add_argument("--output", "-o", default=None, metavar="FILE",
                        help="write to FILE instead of stdout ('-': stdout)")
    parser.add_argument("--force", action="store_true",
                        help="replace output files that already exist (a symlink's target is replaced, the link kept)")


def input_files(args: argparse.Namespace):
    """The files a command line reads: its checkpoint, rules and plan files, and the model's source: a
    ``path/to/file.py:Class`` file, the module file of a ``package.module:factory`` import string, or an
    ``hf:path/to/config.json`` config."""
    spec = getattr(args, "model", None) or ""
    model_path, sep, _ = spec.partition(":")
    model_file = None
    if sep and model_path.endswith(".py"):
        model_file = model_path
    elif model_path == "hf" and spec[3:].strip():
        config = spec[3:].strip()
        model_file = os.path.join(config, "config.json") if os.path.isdir(config) else config
    elif sep and model_path not in ("timm", "torchvision"):
        model_file = _module_source(model_path)
    elif not sep and os.path.exists(spec):  # diff's second checkpoint in the model's place
        model_file = spec
    return [p for p in (getattr(args, "checkpoint", None), getattr(args, "rules", None), getattr(args, "plan", None),
                        model_file) if p]


def _module_source(module: str):
    """The source file an import string's module would be imported from, found on the path without importing
    anything (no package ``__init__`` runs before the output paths are checked); None when not found."""
    parts = module.split(".")
    if not all(part.isidentifier() for part in parts):
        return None
    for entry in [os.getcwd()] + sys.path:
        base = os.path.join(entry or os.getcwd(), *parts)
        for candidate in (base + ".py", os.path.join(base, "__init__.py")):
            if os.path.isfile(candidate):
                return candidate
    return None


def check_output_paths(args: argparse.Namespace, paths) -> None:
    """Refuse, before any work is done, output paths netscope cannot or must not write
    (:func:`netscope.fileio.writable_target`); ``-`` is standard output."""
    from netscope.fileio import STDOUT, writable_target

    from netscope.errors import UsageError

    if any(p == "" for p in paths):  # -o "" (an unset shell variable) would otherwise mean stdout, silently
        raise UsageError("an output file name is empty; give a file name, or '-' for standard output")
    paths = _stdout_aliases_as_dash(args, paths)
    inputs = input_files(args)
    named = [p for p in paths if p]
    _refuse_shared_outputs(args, named)
    for path in named:
        if path != STDOUT:
            writable_target(path, force=getattr(args, "force", False), reads=inputs)


def _stdout_aliases_as_dash(args: argparse.Namespace, paths):
    """``-o /dev/stdout`` (or ``/dev/fd/1``) is ``-o -``: the option on ``args`` and in ``paths`` becomes ``-``."""
    from netscope.fileio import STDOUT, names_stdout

    for name in OUTPUT_OPTIONS:
        if names_stdout(getattr(args, name, None)):
            setattr(args, name, STDOUT)
    return [STDOUT if names_stdout(p) else p for p in paths]


# each file-writing option: its flag, and what it writes (for the lines that say a file was not written)
OUTPUT_OPTIONS = {"output": ("-o", "output"), "html": ("--html", "HTML page"), "plot": ("--plot", "plot"),
                  "save_plan": ("--save-plan", "plan"), "unmatched_out": ("--unmatched-out", "file"),
                  "out": ("the output checkpoint", "checkpoint")}


def say_written(args: argparse.Namespace, path: str, what: str = "") -> None:
    """``netscope: wrote PATH`` on stderr (``what`` appended), unless ``--quiet`` or ``path`` is ``-``: output on
    standard output is there to see, and "wrote -" names no file."""
    from netscope.fileio import STDOUT

    if path and path != STDOUT and not getattr(args, "quiet", False):
        sys.stderr.write(f"netscope: wrote {path}{what}\n")


def say_not_written(args: argparse.Namespace, names, reason: str) -> None:
    """One stderr line for each file option of ``names`` (``args`` attributes) that was given and that a failure
    leaves unwritten, so that no asked-for file goes missing unsaid (``-``, standard output, needs none)."""
    from netscope.fileio import STDOUT

    for name in names:
        path = getattr(args, name, None)
        if path and path != STDOUT:
            sys.stderr.write(f"netscope: no {OUTPUT_OPTIONS[name][1]} was written to {path}: {reason}\n")


def _refuse_shared_outputs(args: argparse.Namespace, paths) -> None:
    """Two outputs of one command line may not share a file, nor standard output: the second would replace
    the first (or be refused as existing after the first was written), or both would interleave on stdout."""
    import os

    from netscope.errors import UsageError
    from netscope.fileio import STDOUT

    options = {name: flag for name, (flag, _) in OUTPUT_OPTIONS.items()}
    taken = {}
    if hasattr(args, "output") and args.output is None:
        taken[STDOUT] = "the command's own output (no -o)"
    for path in paths:
        key = path if path == STDOUT else os.path.realpath(path)
        option = next((flag for name, flag in options.items() if getattr(args, name, None) == path
                       and flag not in taken.values()), repr(path))
        if key in taken:
            where = "standard output" if key == STDOUT else path
            raise UsageError(f"{where} is given to two outputs ({taken[key]} and {option}); each output needs its "
                             "own file" + (" (with -o FILE the command's own output leaves stdout free)"
                                           if key == STDOUT else ""))
        taken[key] = option


def emit(text: str, args: argparse.Namespace) -> None:
    """Write command output to --output (atomically; an existing file only with --force) or stdout."""
    path = getattr(args, "output", None)
    if path:
        from netscope.fileio import write_text_atomic

        write_text_atomic(path, text if text.endswith("\n") else text + "\n",
                          force=getattr(args, "force", True))  # commands without --force keep the old behaviour
    else:
        write_stdout(text if text.endswith("\n") else text + "\n")


def check_table_options(args: argparse.Namespace, *, step: bool = False) -> None:
    """Fail fast, before building the model: format, tabulate style, --columns (``step``: for netscope step,
    whose backward-pass columns a summary refuses) and --depth."""
    from netscope.errors import UsageError
    from netscope.render.columns import parse_columns
    from netscope.render.rows import check_format

    check_format(args.format, args.table_style)
    if args.columns is not None:
        parse_columns(args.columns, step=step)
    if args.depth is not None and args.depth < 0:
        raise UsageError(f"--depth must be 0 or more, got {args.depth}")


def resolve_from_args(args: argparse.Namespace, *, empty_weights: bool = False, note: bool = True):
    """The ResolvedModel the command line names; ``note``: say on stderr when the no-memory build fell back."""
    import torch

    from netscope.models.specs import parse_model_args, resolve_model

    # the weights' random initialization draws from the global RNG: a command run in-process (netscope.cli.main)
    # leaves the caller's next random numbers as they were (what the build prints goes to stderr: cli.main runs
    # every command under fileio.command_output)
    with torch.random.fork_rng(devices=[]):
        resolved = resolve_model(args.model, parse_model_args(args.model_arg), empty_weights=empty_weights,
                                 loaded=vars(args).setdefault("_model_files", {}))  # a model file runs once per command
    if note:
        build_note(args, resolved)
    return resolved


def build_note(args: argparse.Namespace, resolved) -> None:
    """One stderr line when the no-memory build could not run and a fallback build was used."""
    if resolved.build_failures and not getattr(args, "quiet", False):
        from netscope.run.no_memory import BUILD_DESCRIPTIONS

        sys.stderr.write(f"netscope: {resolved.label} could not be built without memory "
                         f"({'; '.join(resolved.build_failures)}); built with {BUILD_DESCRIPTIONS[resolved.build]} "
                         "instead\n")


def model_for_keys(args: argparse.Namespace):
    """The model whose state_dict a checkpoint is compared with (no-memory build). Uninitialized lazy
    modules are refused: their parameters have no shapes until a forward pass, so no comparison is honest."""
    from netscope.errors import UsageError
    from netscope.run.prepare import uninitialized_lazy

    checkpoint = getattr(args, "checkpoint", None)
    if checkpoint and args.model and not os.path.exists(checkpoint) and os.path.exists(args.model):
        raise UsageError(f"{args.model!r} is a file and {checkpoint!r} is not: the checkpoint comes first, then the "
                         f"model: netscope {args.command} {args.model} {checkpoint}")
    resolved = resolve_from_args(args, empty_weights=True)
    lazy = uninitialized_lazy(resolved.module)
    if lazy:
        raise UsageError(
            f"{resolved.label} has lazy modules whose parameter shapes are only known after a forward pass: "
            f"{', '.join(lazy)}. Comparing keys with a checkpoint needs those shapes: build the model, run it once "
            "on a real input (or use the non-lazy layers) and save or pass that module instead")
    return resolved.module


def build_report(args: argparse.Namespace, *, checks: bool = True, audit_names: bool = True,
                 receptive_field: bool = False):
    """Resolve the model and inputs the command line names and run the summary pass.

    With ``--device auto`` the model is first built structurally (weights on the meta device, which is
    cheap); when its weights would not fit in the memory available there, that build runs on meta
    (no memory) and a one-line note says so on stderr. Otherwise the real model is built.
    """
    from netscope.api import run_summary
    from netscope.run.devices import resolve_device
    from netscope.inputs import normalize_float_dtype, parse_inputs

    inputs = parse_inputs(args.input)  # validate everything cheap before building the model
    dtype = normalize_float_dtype(args.dtype) if args.dtype else None  # None: the model's own float dtype
    device = resolve_device(args.device)
    auto = str(args.device) == "auto"
    if auto:
        resolved, device = _resolve_fitting(args, device, dtype)
    else:
        resolved = resolve_from_args(args, empty_weights=(device.type == "meta"))
    inputs, input_notes = command_inputs(inputs, resolved)
    report = run_summary(resolved.module, inputs, device=device, dtype=dtype, mode="train" if args.train else "eval",
                         label=resolved.label, owned=True, checks=checks, audit_names=audit_names,
                         quiet=getattr(args, "quiet", False), fallback_to_meta=auto,
                         receptive_field=receptive_field)
    if resolved.notes or input_notes:
        report = dataclasses.replace(report, run=dataclasses.replace(
            report.run, notes=report.run.notes + tuple(input_notes) + resolved.notes))
    in_output = args.command == "summary" and args.format in ("table", "markdown", "json")  # the report has them
    if not getattr(args, "quiet", False) and not in_output:
        for note in report.run.notes:
            sys.stderr.write(f"netscope: note: {note}\n")
    return report


def command_inputs(inputs, resolved):
    """``(InputSpec, notes)``: the ``--input`` given (None: the model's default input), typed like the model's default
    input, plus its default keyword inputs not given (``InputSpec.completed_by``), which a note names."""
    if inputs is None:
        return resolved.inputs, []
    inputs, kept = inputs.with_dtypes_of(resolved.inputs, resolved.module).completed_by(resolved.inputs, resolved.module)
    if not kept:
        return inputs, []
    return inputs, [f"model inputs --input does not give keep their defaults, sized like the input given where they "
                    f"had its default shape: {', '.join(kept)} (--input NAME=SHAPE sets one)"]


def _resolve_fitting(args: argparse.Namespace, device, dtype: str):
    """(resolved model, device) for ``--device auto``: the real build if it fits, else the meta build. What the
    sizing build's constructor prints is shown only when that build is the one used: otherwise the real build's
    constructor prints it (once, as in a script)."""
    import torch

    from netscope.fileio import held_output
    from netscope.models.specs import run_model_file
    from netscope.run.devices import available_memory_bytes
    from netscope.run.no_memory import weight_bytes

    run_model_file(args.model, vars(args).setdefault("_model_files", {}))  # its module-level output is shown
    held = io.StringIO()
    try:
        with held_output(held):
            structural = resolve_from_args(args, empty_weights=True, note=False)  # sizes the weights, unless real
    except BaseException:
        sys.stderr.write(held.getvalue())  # what the constructor printed before its error
        raise
    if not _on_meta(structural.module):  # the no-memory build was not possible: this is the real build
        sys.stderr.write(held.getvalue())
        build_note(args, structural)
        return structural, device
    needed = weight_bytes(structural.module, dtype)
    available = available_memory_bytes(device)
    if available is None or needed <= available:
        del structural
        return resolve_from_args(args), device
    sys.stderr.write(held.getvalue())
    build_note(args, structural)
    if not getattr(args, "quiet", False):
        sys.stderr.write(
            f"netscope: {structural.label}'s weights need {needed / 2**30:.1f} GiB but {device} has "
            f"{available / 2**30:.1f} GiB available; running on the meta device (no memory; shapes, parameters "
            "and multiply-adds are exact). Pass --device cpu or cuda to force a real run\n")
    return structural, torch.device("meta")


def _on_meta(model) -> bool:
    return any(t.device.type == "meta" for t in list(model.parameters()) + list(model.buffers()))
