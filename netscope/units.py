"""Human-readable numbers: 4.09 G multiply-adds, 97.49 MB."""

from __future__ import annotations


def si(value: float, unit: str = "") -> str:
    """4089184256 -> '4.09 G'. Uses powers of 1000."""
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.2f} {prefix}{unit}"
    return f"{value:g} {unit}".rstrip()


def si_exact(value: int, *, exact_first: bool = False) -> str:
    """A count in both forms, '4.09 G (4,089,184,256)' ('4,089,184,256 (4.09 G)' with ``exact_first``), or once
    when both read the same (96)."""
    rounded, exact = si(value), f"{value:,}"
    if rounded == exact:
        return exact
    return f"{exact} ({rounded})" if exact_first else f"{rounded} ({exact})"


def megabytes(nbytes: float) -> str:
    """Bytes -> 'xx.xx MB' (10^6 bytes, the unit torchinfo prints)."""
    return f"{nbytes / 1e6:,.2f} MB"


def plural(n: int, word: str) -> str:
    """``plural(1, "finding")`` -> '1 finding'; ``plural(1200, "key")`` -> '1,200 keys'."""
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def first_few(texts, limit: int = 5) -> str:
    """The first ``limit`` texts joined by commas, then ', ...' when there are more: what a message names of a list."""
    texts = list(texts)
    return ", ".join(texts[:limit]) + (", ..." if len(texts) > limit else "")


def shape_text(shape) -> str:
    """A tensor's shape as every text format writes it (a JSON list): ``[4, 3, 3, 3]``, ``[]`` for a scalar."""
    return "[" + ", ".join(str(d) for d in shape) + "]"
