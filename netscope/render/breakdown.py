"""Where the parameters and multiply-adds are: per top-level block and per layer type, ready for bar charts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence

from netscope.records import LayerCall
from netscope.render.flow import child_calls, main_container

MAX_BARS = 16  # more bars than this are summed into one "other" bar


@dataclass(frozen=True)
class Bar:
    label: str
    value: int


@dataclass(frozen=True)
class Breakdown:
    """Four bar lists: params and mult-adds per top-level block, and per layer type."""

    block_params: List[Bar]
    block_macs: List[Bar]
    type_params: List[Bar]
    type_macs: List[Bar]


def breakdown(layers: Sequence[LayerCall], *, max_bars: int = MAX_BARS) -> Breakdown:
    container = main_container(layers)
    blocks = child_calls(layers).get(container.index, []) if container is not None else []
    # a module called twice owns its parameters once: only its first call counts them
    block_params = [Bar(c.display_name, c.subtree_params if not c.is_repeat else 0) for c in blocks]
    block_macs = [Bar(c.display_name, c.macs) for c in blocks]
    type_params: Dict[str, int] = {}
    type_macs: Dict[str, int] = {}
    for call in layers:
        if not call.is_repeat:
            type_params[call.class_name] = type_params.get(call.class_name, 0) + call.own_params
        type_macs[call.class_name] = type_macs.get(call.class_name, 0) + call.own_macs
    return Breakdown(
        block_params=_top(block_params, max_bars, keep_order=True, noun="blocks"),
        block_macs=_top(block_macs, max_bars, keep_order=True, noun="blocks"),
        type_params=_top([Bar(k, v) for k, v in type_params.items()], max_bars, keep_order=False, noun="types"),
        type_macs=_top([Bar(k, v) for k, v in type_macs.items()], max_bars, keep_order=False, noun="types"),
    )


def _top(bars: List[Bar], limit: int, *, keep_order: bool, noun: str) -> List[Bar]:
    """Non-zero bars; beyond ``limit``, the largest ``limit - 1`` and one bar summing the rest."""
    bars = [b for b in bars if b.value > 0]
    ranked = sorted(range(len(bars)), key=lambda i: -bars[i].value)
    if len(bars) > limit:
        kept = set(ranked[:limit - 1])
        rest = [bars[i] for i in ranked[limit - 1:]]
        chosen = [bars[i] for i in (sorted(kept) if keep_order else ranked[:limit - 1])]
        return chosen + [Bar(f"other ({len(rest):,} {noun})", sum(b.value for b in rest))]
    return bars if keep_order else [bars[i] for i in ranked]
