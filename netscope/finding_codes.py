"""The one registry of finding codes: every code an analysis may report, the severities it may carry and
what it means. A :class:`netscope.records.Finding` with an unregistered code, or a severity its code does
not allow, is refused when it is made, so a new code is one entry here (and its meaning is documented).

Severities are one vocabulary everywhere (CLI, JSON, HTML): ``error`` (the pass or a check failed: exit 1),
``warning`` (almost surely a bug in the model), ``info`` (true and worth knowing; by design in most models).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import FrozenSet, Iterable

from netscope.registry import Registry

SEVERITIES = ("error", "warning", "info")


@dataclass(frozen=True)
class FindingCode:
    code: str
    analysis: str  # which analysis reports it: "checks", "naming"
    severities: FrozenSet[str]
    meaning: str


FINDING_CODES: Registry[str, FindingCode] = Registry("finding code")


def register_code(code: str, analysis: str, severities: Iterable[str], meaning: str) -> FindingCode:
    """Add one code; registering a code twice or an unknown severity is refused."""
    allowed = frozenset(severities)
    if not allowed or not allowed <= set(SEVERITIES):
        raise ValueError(f"finding code {code!r}: severities must be among {SEVERITIES}, got {sorted(allowed)}")
    return FINDING_CODES.add(code, FindingCode(code, analysis, allowed, meaning))


def check_code(code: str, severity: str) -> None:
    entry = FINDING_CODES.get(code)
    if entry is None:
        raise ValueError(f"finding code {code!r} is not registered in netscope.finding_codes")
    if severity not in entry.severities:
        raise ValueError(f"finding code {code!r} is {'/'.join(sorted(entry.severities))}, not {severity}")


# ---- formula checks (netscope.analyses.checks and the per-family formulas) -----------------------------
register_code("formula-mismatch", "checks", {"error"}, "a layer's output shape differs from its size formula")
register_code("formula-invalid", "checks", {"error"}, "the formula says the layer must reject this input, and the pass failed there")
register_code("padded-in-forward", "checks", {"info"}, "the layer padded its input inside forward; the formula is checked on what the operator received")
register_code("stride-skips-input", "checks", {"warning", "info"}, "input positions no window reads (info when the stride subsamples by design)")
register_code("ceil-mode-extra-window", "checks", {"info"}, "ceil_mode adds a last window that hangs over the input's edge (what ceil_mode=True asks for)")
register_code("minimum-size", "checks", {"info"}, "the input is at the smallest size the layer accepts (by design in conv-as-linear heads)")
register_code("asymmetric-padding", "checks", {"info"}, "the padding used is not the same on both sides")
register_code("adaptive-pool-upsamples", "checks", {"warning"}, "an adaptive pool's input is smaller than its output, so it repeats values")
register_code("empty-output", "checks", {"warning"}, "a resize produced an empty tensor")
register_code("padding-mode", "checks", {"info"}, "a convolution pads with reflect/replicate/circular, not zeros (as its author chose)")
register_code("uneven-overlap", "checks", {"info"}, "a transposed convolution's kernel is not divisible by its stride (checkerboard artifacts)")

# ---- naming (netscope.naming) ---------------------------------------------------------------------------
register_code("unregistered-module", "naming", {"warning", "info"}, "modules kept in a plain list/dict/attribute: not saved, trained or moved")
register_code("unregistered-parameter", "naming", {"warning"}, "parameters kept in a plain list/dict: not saved, trained or moved")
register_code("plain-tensor-attribute", "naming", {"warning", "info"}, "a tensor attribute that is neither a parameter nor a buffer (info when its class overrides _apply, which device and dtype moves run: a cache it looks after itself)")
register_code("alias", "naming", {"warning", "info"}, "one module registered under several names, so its keys appear under each (warning when one container's numbered slots repeat it: [block] * n)")
register_code("tied-weights", "naming", {"info"}, "one tensor object under several keys (counted once)")
register_code("shared-storage", "naming", {"warning"}, "distinct tensor objects over the same memory")
register_code("overlapping-views", "naming", {"warning"}, "different views of one storage whose elements overlap")
register_code("key-collision", "naming", {"warning"}, "one state_dict key for several tensors: only one is saved")
register_code("state-dict-hook", "naming", {"warning", "info"}, "state_dict hooks change the keys from the registration paths")
register_code("dotted-name", "naming", {"warning"}, "a registered name containing '.' that reads as a path")
register_code("state-dict-raised", "naming", {"warning"}, "the model's own state_dict() raised, so the naming audit could not run")
register_code("shadowed-name", "naming", {"warning"}, "a registered name that a class or instance attribute of the same name hides from attribute access")
register_code("empty-name", "naming", {"warning"}, "a module or tensor registered under the empty name ''")
register_code("unnormalised-name", "naming", {"warning", "info"}, "a name that Python's NFKC normalisation changes")
register_code("uninitialized", "naming", {"info"}, "lazy tensors whose shapes the first forward pass fixes")
register_code("wrapper-prefix", "naming", {"info"}, "a wrapper (DataParallel, compile, ...) adds a segment to every key below it")
register_code("non-persistent-buffer", "naming", {"info"}, "a buffer state_dict() leaves out")
register_code("derived-weight", "naming", {"info"}, "a tensor a forward pre-hook computes from tensors under other keys (pruning, weight_norm, spectral_norm): that key is not saved, theirs are")
register_code("numbered-sequential", "naming", {"info"}, "keys are positions in an nn.Sequential/ModuleList, not names")
