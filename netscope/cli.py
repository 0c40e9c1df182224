"""Command-line entry point: argument parsing and exit codes only.

Each subcommand lives in ``netscope/commands/<name>.py`` and exposes ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. Command modules import torch lazily, inside
``run``, so ``netscope --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

from netscope.errors import EXIT_INTERRUPTED, EXIT_USAGE, NetscopeError

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
    from netscope import __version__

    parser = _Parser(
        prog="netscope",
        description="See inside any PyTorch nn.Module: shapes, parameters, multiply-adds, "
        "state_dict naming, size formulas, and checkpoint remapping.",
        epilog="Exit codes: 0 ok, 1 a check found problems, 2 bad usage or input, "
        "3 the model's forward pass raised, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"netscope {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, module_path in COMMANDS.items():
        module = importlib.import_module(module_path)
        cmd = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # argparse.error: usage and one line on stderr, exit 2
        parser.error(f"give a command: {', '.join(COMMANDS)}, e.g. 'netscope summary resnet18'")
    try:
        return int(args._run(args) or 0)
    except NetscopeError as err:
        sys.stderr.write(f"netscope {args.command}: error: {err}\n")
        diagnosis = getattr(err, "diagnosis", None)
        if diagnosis is not None:
            sys.stderr.write(diagnosis.render().rstrip("\n") + "\n")
        return err.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("netscope: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `netscope summary | head`
        return 0


def entry_point() -> None:  # console script
    sys.exit(main())
