"""Where the parameters and multiply-adds are: per top-level block and per layer type, ready for bar charts.

Every chart adds up to the report's own total. Parameters come from ``report.param_owners`` (each tensor
once, tied and shared ones included; modules never called, such as ``MultiheadAttention.out_proj`` on the
fused path, under their own name and type); what sits on the root or outside every block gets its own bar.
Multiply-adds come from the calls; operators that ran outside every block get their own bar too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List

from netscope.analyses.flow import child_calls, main_container

MAX_BARS = 16  # more bars than this are summed into one "other" bar
OUTSIDE = "(outside blocks)"  # parameters and operators of the root (and single-child wrappers) themselves


@dataclass(frozen=True)
class Bar:
    label: str
    value: int


@dataclass(frozen=True)
class Breakdown:
    """Four bar lists: params and mult-adds per top-level block, and per layer type; each sums to its total."""

    block_params: List[Bar]
    block_macs: List[Bar]
    type_params: List[Bar]
    type_macs: List[Bar]
    total_params: int
    total_macs: int


def breakdown(report, *, max_bars: int = MAX_BARS) -> Breakdown:
    layers = report.layers
    container = main_container(layers)
    blocks = child_calls(layers).get(container.index, []) if container is not None else []
    prefix = container.name if container is not None else ""

    block_params: Dict[str, int] = {c.name: 0 for c in blocks if not c.is_repeat}
    type_params: Dict[str, int] = {}
    for owner in owners(report):
        block = _block_of(owner.name, prefix) or OUTSIDE  # a block that never ran still gets its bar
        block_params[block] = block_params.get(block, 0) + owner.numel
        type_params[owner.class_name] = type_params.get(owner.class_name, 0) + owner.numel
    params_bars = [Bar(k, v) for k, v in block_params.items()]

    total_macs = report.totals.total_macs
    macs_bars = [Bar(c.display_name, c.macs) for c in blocks]
    outside = total_macs - sum(b.value for b in macs_bars)
    if outside:
        macs_bars.append(Bar(OUTSIDE, outside))
    type_macs: Dict[str, int] = {}
    for call in layers:
        type_macs[call.class_name] = type_macs.get(call.class_name, 0) + call.own_macs
    return Breakdown(
        block_params=_top(params_bars, max_bars, keep_order=True, noun="blocks"),
        block_macs=_top(macs_bars, max_bars, keep_order=True, noun="blocks"),
        type_params=_top([Bar(k, v) for k, v in type_params.items()], max_bars, keep_order=False, noun="types"),
        type_macs=_top([Bar(k, v) for k, v in type_macs.items()], max_bars, keep_order=False, noun="types"),
        total_params=report.totals.total_params,
        total_macs=total_macs,
    )


def owners(report):
    """The report's parameter owners; for a report built by hand without them, each called module's own
    parameters (exact unless parameters are shared or modules were not called)."""
    if report.param_owners or not report.layers:
        return report.param_owners
    from netscope.analyses.totals import OwnedParams

    return [OwnedParams(c.name, c.class_name, c.own_params) for c in report.layers if not c.is_repeat and c.own_params]


def _block_of(module_name: str, prefix: str):
    """The main container's child that holds ``module_name`` (by name), or None for the container and above."""
    if prefix:
        if not module_name.startswith(prefix + "."):
            return None
        rest = module_name[len(prefix) + 1:]
    else:
        rest = module_name
    if not rest:
        return None
    head = rest.split(".", 1)[0]
    return f"{prefix}.{head}" if prefix else head


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
