"""Output files: one check of where netscope may write, and atomic writes (a temp file in the target's
folder, fsync, then rename over the target).

``-`` means standard output. A symbolic link is followed: its target is replaced and the link kept.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from typing import Iterator, Sequence

from netscope.errors import UsageError

STDOUT = "-"
STDOUT_ALIASES = ("/dev/stdout", "/dev/fd/1", "/proc/self/fd/1")  # standard output, named as a file


def names_stdout(path) -> bool:
    """Whether an output path means standard output: ``-``, or ``/dev/stdout`` and its aliases. The CLI points
    descriptor 1 at stderr while a command runs (``cli._keep_fd1_for_output``), so opening ``/dev/stdout`` would
    write to stderr; such a path is written through :func:`write_stdout` like ``-``."""
    return path == STDOUT or (isinstance(path, str) and os.path.abspath(path) in STDOUT_ALIASES)


def writable_target(path: str, *, force: bool, reads: Sequence[str] = ()) -> str:
    """The absolute path netscope will replace for ``path``, or UsageError before anything is written.

    Refused: a folder; a missing folder or one netscope cannot create files in; an existing file without
    ``force``; a read-only file (even with ``force``); one of the command's input files ``reads``. A device or
    a FIFO (``/dev/null``) is not a file to replace: it is written in place, without ``force``, if it is writable.
    """
    if path == STDOUT:
        raise UsageError("'-' (standard output) cannot take this file; give a file name")
    target = os.path.realpath(path)  # a symlink: write its target, keep the link
    if os.path.isdir(target):
        raise UsageError(f"{path} is a directory; give a file name to write to")
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise UsageError(f"folder {folder} does not exist; create it first or choose another path")
    if os.path.exists(target):
        for source in reads:
            if os.path.exists(source) and os.path.samefile(source, target):
                raise UsageError(f"{path} is a file this command reads ({source}); writing there would destroy "
                                 "it, so choose another file name")
        if not os.path.isfile(target):  # /dev/null, a FIFO: written in place (atomic_path), nothing replaced
            if not os.access(target, os.W_OK):
                raise UsageError(f"{path} is not a regular file and netscope cannot write to it; choose another name")
            return target
        if not force:
            raise UsageError(f"{path} already exists; pass --force to overwrite it, or choose another name")
        if not os.stat(target).st_mode & 0o222:
            raise UsageError(f"{path} is read-only; netscope does not replace read-only files, even with --force "
                             "(make it writable first, or choose another name)")
    _probe(folder, path)
    return target


def _probe(folder: str, path: str) -> None:
    """Create and remove a temp file in ``folder``: the only sure test that a write there will work."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".netscope-", suffix=".probe", dir=folder)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: creating a file in {folder} failed ({exc.strerror or exc}); "
                         "choose a folder you can write to") from None
    os.close(fd)
    os.remove(probe)


@contextlib.contextmanager
def atomic_path(path: str, *, force: bool = True) -> Iterator[str]:
    """Yield a temp path beside ``path``'s target; on success it replaces the target, on any exception it
    is removed. With ``force=False`` an existing ``path`` is refused before anything is written."""
    path = writable_target(path, force=force)
    folder = os.path.dirname(path)
    if os.path.exists(path) and not os.path.isfile(path):  # /dev/null, a FIFO: write straight into it
        yield path
        return
    try:
        fd, tmp = tempfile.mkstemp(prefix=".netscope-", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    os.close(fd)
    try:
        yield tmp
        try:
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.chmod(tmp, _mode_for(path))
            os.replace(tmp, path)
        except OSError as exc:  # a full disk at fsync, a folder made read-only meanwhile
            raise cannot_write(path, exc) from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


_COMMAND_STDOUT: list = []  # the standard output a running CLI command writes its own output to


@contextlib.contextmanager
def command_output() -> Iterator[None]:
    """Run a CLI command with ``print`` going to stderr (a model's file, constructor or forward that prints
    would corrupt ``-f json``/``-f csv``/``-o -`` on stdout); the command's own output goes to the real
    standard output through :func:`command_stdout`."""
    _COMMAND_STDOUT.append(sys.stdout)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        _COMMAND_STDOUT.pop()


@contextlib.contextmanager
def held_output(held: io.StringIO) -> Iterator[io.StringIO]:
    """What ``print`` and ``sys.stderr`` writes inside the block go, in order, into ``held`` instead of being shown
    (a build made only to size the weights, whose constructor the real build runs again)."""
    with contextlib.redirect_stdout(held), contextlib.redirect_stderr(held):
        yield held


def command_stdout():
    """Where a command's own output goes: the real standard output while :func:`command_output` runs."""
    return _COMMAND_STDOUT[-1] if _COMMAND_STDOUT else sys.stdout


def write_text_atomic(path: str, text: str, *, force: bool = True) -> None:
    """Write ``text`` to ``path`` atomically, or to standard output when ``path`` is ``-``."""
    if path == STDOUT:
        write_stdout(text)
        return
    with atomic_path(path, force=force) as tmp:
        try:
            # a lone surrogate (a checkpoint key unpickled from bytes that were not UTF-8) as its escape, \udcff
            with open(tmp, "w", encoding="utf-8", errors="backslashreplace") as handle:
                handle.write(text)
        except OSError as exc:  # a full disk (/dev/full), a quota: the temp file is removed, the target untouched
            raise cannot_write(path, exc) from None


def cannot_write(path: str, exc: OSError) -> UsageError:
    """The error for writing ``path`` through :func:`atomic_path` that failed with ``exc`` (a full disk, a quota):
    the temp file is removed and the target left as it was."""
    return UsageError(f"cannot write {path}: {exc.strerror or exc}; nothing was written there")


def write_stdout(text: str) -> None:
    """Write (and flush) a command's own output to standard output. Characters its encoding cannot hold
    (``LANG=C``, ``PYTHONIOENCODING=ascii``) are written as backslash escapes, as Python does on stderr; a closed
    or full standard output is a UsageError naming it. A closed pipe (``| head``) stays a BrokenPipeError, which
    the CLI ends quietly on."""
    stream = command_stdout()
    if stream is None:  # started with stdout closed (`>&-`): Python gives no sys.stdout
        raise UsageError("standard output is closed, so the output has nowhere to go; redirect it to a file "
                         "(> FILE) or give -o FILE where the command has it")
    try:
        try:
            stream.write(text)
        except UnicodeEncodeError:  # the whole text is encoded before any of it is written
            encoding = getattr(stream, "encoding", None) or "utf-8"
            stream.write(text.encode(encoding, "backslashreplace").decode(encoding))
        stream.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:  # /dev/full, a full disk behind `> FILE`
        raise UsageError(f"cannot write to standard output: {exc.strerror or exc}") from None


def _mode_for(path: str) -> int:
    """The existing file's permissions when overwriting, else what the user's umask gives a new file."""
    if os.path.exists(path):
        return os.stat(path).st_mode & 0o7777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask
