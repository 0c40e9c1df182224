"""The one-line headline of a report: ``ResNet · 25.6 M params · 4.09 G MACs · 231 MB · 0 findings``."""

from __future__ import annotations


def short_number(value: float, unit: str = "") -> str:
    """Three significant digits with an SI prefix: 25557032 -> '25.6 M', 231.2e6 -> '231 M'."""
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}".rstrip()


def estimated_total_bytes(totals) -> int:
    """Input, forward activations, parameters and buffers: the "Estimated total size" line."""
    return totals.input_bytes + totals.activation_bytes + totals.param_bytes + totals.buffer_bytes


def headline(report) -> str:
    t = report.totals
    name = report.layers[0].class_name if report.layers else report.run.model
    count = len(report.notable_findings())
    bound = ">=" if report.partial else ""  # an operator without a formula ran: the total is a lower bound
    return (f"{name} · {short_number(t.total_params)} params · {bound}{short_number(t.total_macs)} MACs · "
            f"{short_number(estimated_total_bytes(t), 'B')} · {count} finding{'' if count == 1 else 's'}")
