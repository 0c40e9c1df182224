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

    Inside a ``run.model_state.frozen_heap`` block that froze the heap itself (a summary), what the block built
    joins the frozen heap when it ends (``gc.freeze``; that block's ``gc.unfreeze`` lets it go with the model): the
    records outlive the block (rows, the report), and the collector's later passes in the summary would walk them
    again (on a 12,000-module model, a full pass over its rows per summary, ~3 us per module).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            if FROZEN[0]:
                gc.freeze()
            gc.enable()


# frozen_heap blocks open (run.model_state) that froze the heap themselves: gc.freeze is process-wide, so only they
# unfreeze it, and only inside them does a paused block freeze what it built
FROZEN = [0]
