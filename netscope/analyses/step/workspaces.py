"""Operators whose fake (meta) kernel returns an empty workspace that the real kernel fills and saves for
backward: on fake tensors, saved activations and the peak miss those bytes, so the step names them.

One entry per aten operator: what the missing buffer is. torch's own meta kernels leave these at 0 bytes
(``torch/_meta_registrations.py``: "TODO: Query cudnnGetRNNTrainingReserveSize"); the size is the
library's own (oneDNN, cuDNN), known only by running the kernel.
"""

from __future__ import annotations

from typing import Dict, Iterable, Optional, Tuple

UNSIZED_WORKSPACES: Dict[str, str] = {
    "aten.mkldnn_rnn_layer": "oneDNN's LSTM workspace (CPU nn.LSTM)",
    "aten._cudnn_rnn": "cuDNN's RNN reserve space (CUDA nn.RNN/LSTM/GRU)",
}


def unsized_workspaces(operators: Iterable[str]) -> Tuple[str, ...]:
    """The operators among ``operators`` (a fake step's forward) whose saved workspace is unsized."""
    return tuple(sorted({op for op in operators if op in UNSIZED_WORKSPACES}))


def workspace_note(operators: Iterable[str]) -> Optional[str]:
    """The note for the unsized workspaces a fake step ran (None when it ran none)."""
    found = sorted({UNSIZED_WORKSPACES[op] for op in unsized_workspaces(operators)})
    if not found:
        return None
    return (f"saved activations and the peak are lower bounds: {' and '.join(found)} is saved for backward by the "
            "real kernel, and its size is the library's own, unknown on fake tensors (torch's fake kernel makes it "
            "0 bytes); a real step has it")
