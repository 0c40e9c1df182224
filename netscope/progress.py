"""A progress bar on stderr for long passes and remaps, shown only after a couple of seconds.

Usage, from a loop that knows how much work it does (``total`` may be ``None`` when it does not)::

    with progress("tracing", total=len(modules), quiet=args.quiet) as advance:
        for ...:
            advance()        # or advance(n)

The bar is drawn by tqdm with ``delay`` so short runs print nothing at all, and only when the stream
is a terminal: redirected or piped stderr, ``quiet=True``, or tqdm missing all give a no-op
``advance`` that costs one Python call. Imports tqdm lazily (never at ``netscope --help``).
"""

from __future__ import annotations

import contextlib
import sys
from typing import Callable, Iterator, Optional, TextIO

DEFAULT_DELAY_S = 2.0

Advance = Callable[..., None]


def _ignore(n: int = 1) -> None:
    """The ``advance`` of a silent progress indicator."""


def progress_enabled(stream: Optional[TextIO] = None, *, quiet: bool = False) -> bool:
    """True when a bar may be drawn: not quiet, and ``stream`` (default stderr) is a terminal."""
    if quiet:
        return False
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (ValueError, OSError):  # a closed or detached stream
        return False


@contextlib.contextmanager
def progress(description: str, *, total: Optional[int] = None, unit: str = "it", quiet: bool = False,
             stream: Optional[TextIO] = None, delay: float = DEFAULT_DELAY_S) -> Iterator[Advance]:
    """Yield ``advance(n=1)``; a tqdm bar appears on ``stream`` once the block has run ``delay`` seconds.

    The bar is closed (and its line cleared) when the block ends, also when it raises.
    """
    if not progress_enabled(stream, quiet=quiet):
        yield _ignore
        return
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is optional: no bar, same behaviour otherwise
        yield _ignore
        return
    bar = tqdm(total=total, desc=description, unit=unit, file=sys.stderr if stream is None else stream,
               delay=delay, leave=False, dynamic_ncols=True, mininterval=0.2)
    try:
        yield bar.update
    finally:
        bar.close()
