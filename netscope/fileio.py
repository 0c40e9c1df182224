"""Atomic file writes: a temp file in the target's folder, fsync, then rename over the target."""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Iterator

from netscope.errors import UsageError


@contextlib.contextmanager
def atomic_path(path: str, *, force: bool = True) -> Iterator[str]:
    """Yield a temp path beside ``path``; on success it replaces ``path``, on any exception it is removed.

    With ``force=False`` an existing ``path`` is refused before anything is written.
    """
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    if os.path.isdir(path):
        raise UsageError(f"{path} is a directory; give a file name to write to")
    if not force and os.path.exists(path):
        raise UsageError(f"{path} already exists; pass --force to overwrite it, or choose another name")
    if not os.path.isdir(folder):
        raise UsageError(f"folder {folder} does not exist; create it first or choose another path")
    if os.path.exists(path) and not os.path.isfile(path):  # /dev/null, a FIFO: write straight into it
        yield path
        return
    fd, tmp = tempfile.mkstemp(prefix=".netscope-", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def write_text_atomic(path: str, text: str, *, force: bool = True) -> None:
    with atomic_path(path, force=force) as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)


def _mode_for(path: str) -> int:
    """The existing file's permissions when overwriting, else what the user's umask gives a new file."""
    if os.path.exists(path):
        return os.stat(path).st_mode & 0o7777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask
