"""Command-line entry point: argument parsing and exit codes only.

Each subcommand lives in ``netscope/commands/<name>.py`` and exposes ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. Command modules import torch lazily, inside
``run``, so ``netscope --help`` stays instant.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import warnings
from typing import Dict, Optional, Sequence

from netscope.errors import EXIT_INTERRUPTED, EXIT_MODEL_FAILED, EXIT_USAGE, NetscopeError
from netscope.fileio import command_output

COMMANDS = {
    "summary": "netscope.commands.summary",
    "check": "netscope.commands.check",
    "solve": "netscope.commands.solve",
    "names": "netscope.commands.names",
    "keys": "netscope.commands.keys",
    "diff": "netscope.commands.diff",
    "remap": "netscope.commands.remap",
    "step": "netscope.commands.step",
}


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad usage as one paragraph and exit code 2 (its default is 2 as well)."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.print_usage(sys.stderr)
        sys.stderr.write(f"netscope: error: {message}. Run '{self.prog} --help' for the options.\n")
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    return _build_parsers()[0]


def _build_parsers():
    """The top-level parser and each subcommand's own (for its usage line in errors)."""
    from netscope import __version__

    parser = _Parser(
        prog="netscope",
        description="See inside any PyTorch nn.Module: shapes, parameters, multiply-adds, "
        "state_dict naming, size formulas, and checkpoint remapping.",
        epilog="Exit codes: 0 ok, 1 a check found problems, 2 bad usage or input, "
        "3 the model's own code raised (its forward pass; its state_dict() in names, diff, remap), 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"netscope {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands: Dict[str, argparse.ArgumentParser] = {}
    for name, module_path in COMMANDS.items():
        module = importlib.import_module(module_path)
        cmd = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd)
        cmd.add_argument("--quiet", "-q", action="store_true", help="no progress or notes on stderr")
        cmd.set_defaults(_run=module.run)
        commands[name] = cmd
    return parser, commands


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C at any point: while the command runs, or while torch and the parser load
        _say("netscope: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `netscope summary --help | head -1`
        return 0


def _main(argv: Optional[Sequence[str]]) -> int:
    parser, commands = _build_parsers()
    args, unknown = parser.parse_known_args(argv)
    if args.command is None:  # argparse.error: usage and one line on stderr, exit 2
        parser.error(f"give a command: {', '.join(COMMANDS)}, e.g. 'netscope summary resnet18'")
    if unknown:  # an optional positional after options (`diff ckpt.pt --all resnet18`), else the subcommand's error
        args = _parse_intermixed(commands[args.command], argv, args.command)
    # Warnings raised by torch and model code while the command runs are shown after its output, and not
    # at all when the command ends in an error: the error paragraph is what the user must read.
    from netscope.models.specs import exit_text, os_exit_raises

    with warnings.catch_warnings(record=True) as caught:
        try:
            # prints of the model's own code go to stderr, the command's output to stdout; os._exit in its code
            # raises, as sys.exit does, instead of ending the process with no output and exit code 0
            with command_output(), os_exit_raises():
                code = int(args._run(args) or 0)
        except NetscopeError as err:
            return _report_error(args.command, err)
        except SystemExit as exc:  # the model's forward (files and constructors are caught where they are run)
            _say(f"netscope {args.command}: error: the model's code {exit_text(exc, script=False)} while netscope "
                 "ran it, so there is nothing to report; remove the exit from its forward\n")
            return EXIT_MODEL_FAILED
        except BrokenPipeError:  # e.g. `netscope summary | head`
            return 0
    if not getattr(args, "quiet", False):
        for warning in {(str(w.message), w.category, w.filename, w.lineno): w for w in caught}.values():
            sys.stderr.write(warnings.formatwarning(warning.message, warning.category, warning.filename,
                                                    warning.lineno))
    return code


def _parse_intermixed(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]], command: str):
    """The subcommand's arguments parsed with options and positionals intermixed: argparse fills an optional
    positional (``diff``/``remap``'s model) before the options that precede it, so ``netscope diff ckpt.pt --all
    resnet18`` left ``resnet18`` unrecognized. What is still unknown is the subcommand's usage error (exit 2)."""
    tokens = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_intermixed_args(tokens[tokens.index(command) + 1:])
    args.command = command
    return args


def _report_error(command: str, err: NetscopeError) -> int:
    diagnosis = getattr(err, "diagnosis", None)
    _say(f"netscope {command}: error: {err}\n" + ("" if diagnosis is None else diagnosis.render().rstrip("\n") + "\n"))
    return err.exit_code


def _say(text: str) -> None:
    """Write to stderr; a stderr that cannot take it (``2>/dev/full``) does not change the exit code."""
    with contextlib.suppress(OSError):
        sys.stderr.write(text)
        sys.stderr.flush()


def _keep_fd1_for_output() -> None:
    """Point file descriptor 1 at stderr for the run and give ``sys.stdout`` a private duplicate of the real
    standard output. ``fileio.command_output`` sends a model's ``print`` to stderr; this does the same for what
    bypasses ``sys.stdout`` (``os.write(1, ...)``, C code, a child process the model starts), which would
    otherwise corrupt ``-f json``/``-f csv``/``-o -``. Only in the console entry point: an in-process
    ``main()`` leaves the process's descriptors alone."""
    stream = sys.stdout
    try:
        stream.flush()
        if stream.fileno() != 1 or sys.stderr.fileno() != 2:
            return
        saved = os.dup(1)
        os.dup2(2, 1)
    except (AttributeError, OSError, ValueError):  # no real descriptors (closed, or replaced streams)
        return
    sys.stdout = os.fdopen(saved, "w", buffering=1 if os.isatty(saved) else -1, encoding=stream.encoding,
                           errors=stream.errors)


def _fill_closed_std_streams() -> None:
    """Started with stderr or stdout closed (``2>&-``, ``>&-``): point the descriptor at the null device, so that
    error paragraphs have somewhere to go and a file netscope opens later cannot take descriptor 1 or 2 (where C
    code and a model's ``os.write(1, ...)`` would write into it). ``sys.stdout`` stays None: output meant for it
    is refused with a message (``fileio.write_stdout``)."""
    for fd in (1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_WRONLY)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    if sys.stderr is None:
        sys.stderr = open(2, "w", errors="backslashreplace", closefd=False)


def entry_point() -> None:  # console script
    """Run, flush, and leave with ``os._exit``: once the output is written, the interpreter's shutdown
    (tearing down torch and every imported module, 0.5-0.9 s) does nothing the user needs."""
    _fill_closed_std_streams()
    _keep_fd1_for_output()
    try:
        code = main()
    except SystemExit as exc:  # argparse's --help/--version and usage errors
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_USAGE)
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except BrokenPipeError:
        pass
    except OSError as exc:  # argparse's help did not reach standard output (/dev/full); a command's own output
        if code == 0:  # is flushed as written (fileio.write_stdout), and its failure already reported
            sys.stderr.write(f"netscope: error: cannot write to standard output: {exc.strerror or exc}\n")
            code = EXIT_USAGE
    with contextlib.suppress(OSError):
        sys.stderr.flush()
    os._exit(code)
