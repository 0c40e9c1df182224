"""Python's cyclic garbage collector, paused while netscope builds many small records (torch-free)."""

from __future__ import annotations

import contextlib
import gc
from typing import Iterator


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for the block, then restore its previous state. For
    netscope's own bookkeeping only: never around the user's code (see ``run.model_state.frozen_heap``).

    A trace allocates a few small records per module call while millions of long-lived objects (the
    model) sit in the heap; the collector's full passes then cost a third of the trace on deep models.
    Listing a 100k-key checkpoint builds a few hundred thousand records and spends half its time in
    the collector the same way. Reference counting still frees everything acyclic; the block's cycles
    are collected afterwards.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
