"""Which input sizes a model accepts: the smallest, the pattern of the rest, and the output as a function of size.

The spatial dimensions of the first input (everything after batch and channels) are varied together
(square inputs); every candidate is confirmed by running a meta-device copy of the model, which costs
no memory and never touches the user's model. Failures are classified with the size formulas' reasons:
"too small" (a kernel or window no longer fits) is monotone and bisected; anything else (a flattened
Linear, a fixed positional embedding, a skip connection of another size) means only some sizes work,
found by probing periods proposed from the model's strides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from netscope.errors import UsageError

# PyTorch messages (CPU and meta kernels) that mean "the input shrank too far somewhere".
TOO_SMALL = re.compile(
    r"Output size is too small|Kernel size can't be greater|must be at least one|too small|non-positive"
    r"|smaller than kernel size|Padding size should be less than|wrapping around more than once|non-zero size"
    r"|should be greater than 0|Invalid computed output size")

ANY, PERIODIC, EXACT, NONE = "any", "periodic", "exact", "none"


@dataclass(frozen=True)
class Probe:
    """One run of the meta copy at one size."""

    size: int
    ok: bool
    too_small: bool = False
    error: str = ""
    output_shape: Optional[Tuple[int, ...]] = None


@dataclass(frozen=True)
class SolverResult:
    """What the solver found for square inputs ``base_shape[:2] + (s,) * spatial``."""

    base_shape: Tuple[int, ...]
    spatial: int  # how many trailing dimensions were varied together
    pattern: str  # "any" (every size >= min_size), "periodic", "exact" (only valid_sizes), "none"
    min_size: Optional[int]
    period: Optional[int] = None
    valid_sizes: Tuple[int, ...] = ()  # exact: all of them; periodic: those in the first period
    output_formula: Tuple[str, ...] = ()  # per output dimension, as a function of the input size s
    probes: Tuple[Probe, ...] = field(default=(), repr=False)
    note: str = ""

    def input_shape(self, size: int) -> Tuple[int, ...]:
        return tuple(self.base_shape[:len(self.base_shape) - self.spatial]) + (size,) * self.spatial

    def summary(self) -> str:
        """One sentence: which input sizes work."""
        dims = "x".join(["s"] * self.spatial)
        if self.pattern == ANY:
            return f"every size s >= {self.min_size} works (input {dims}); the smallest is {self._shape(self.min_size)}"
        if self.pattern == PERIODIC:
            offsets = ", ".join(str(v) for v in self.valid_sizes)
            return (f"only some sizes work: s in {{{offsets}}} + k*{self.period} (k >= 0); the smallest is "
                    f"{self._shape(self.min_size)}")
        if self.pattern == EXACT:
            sizes = ", ".join(str(v) for v in self.valid_sizes)
            if len(self.valid_sizes) == 1:
                return f"only exactly s = {sizes} works: {self._shape(self.valid_sizes[0])}"
            return f"only s in {{{sizes}}} work, e.g. {self._shape(self.valid_sizes[0])}"
        return f"no working size found ({self.note})" if self.note else "no working size found"

    def _shape(self, size: Optional[int]) -> str:
        return "[" + ", ".join(str(d) for d in self.input_shape(size)) + "]" if size else "-"

    def render(self) -> str:
        lines = [self.summary()]
        if self.output_formula:
            lines.append("output shape: [" + ", ".join(self.output_formula) + "]")
        if self.note and self.pattern != NONE:
            lines.append(f"note: {self.note}")
        tried = sorted(p.size for p in self.probes)
        lines.append(f"confirmed on the meta device with {len(tried)} runs")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"base_shape": list(self.base_shape), "spatial": self.spatial, "pattern": self.pattern,
                "min_size": self.min_size, "period": self.period, "valid_sizes": list(self.valid_sizes),
                "output_formula": list(self.output_formula), "summary": self.summary(), "note": self.note,
                "probes": [{"size": p.size, "ok": p.ok, "too_small": p.too_small, "error": p.error,
                            "output_shape": list(p.output_shape) if p.output_shape else None} for p in self.probes]}


class _Prober:
    """Runs the meta copy at one size per call, remembering every answer."""

    def __init__(self, model, input_spec, spatial: int, max_probes: int):
        import torch

        from netscope.meta import meta_copy

        self.torch = torch
        self.model = meta_copy(model).eval()
        self.spec = input_spec
        self.spatial = spatial
        self.max_probes = max_probes
        self.results: Dict[int, Probe] = {}
        first = input_spec.args[0]
        self.lead = tuple(first.shape[:len(first.shape) - spatial])
        self.dtype = getattr(torch, first.dtype or "float32")

    def __call__(self, size: int) -> Probe:
        if size in self.results:
            return self.results[size]
        if len(self.results) >= self.max_probes:
            raise _OutOfProbes()
        torch = self.torch
        args, kwargs = self.spec.build("meta")
        first = torch.empty(self.lead + (size,) * self.spatial, dtype=self.dtype, device="meta")
        if self.spec.as_list:
            args = ([first] + list(args[0][1:]),)
        else:
            args = (first,) + tuple(args[1:])
        try:
            with torch.no_grad():
                out = self.model(*args, **kwargs)
            probe = Probe(size, True, output_shape=_first_tensor_shape(out))
        except TypeError as exc:
            if _ARGUMENT_MISMATCH.search(str(exc)):  # not about sizes: no size can fix it
                from netscope.errors import ForwardError

                raise ForwardError(
                    f"the model's forward cannot be called with the dummy input: {exc}. Give every input it "
                    "needs with --input (once per positional tensor), or wrap it in a module whose forward "
                    "takes one tensor", original=exc) from exc
            text = f"{type(exc).__name__}: {exc}".splitlines()[0]
            probe = Probe(size, False, bool(TOO_SMALL.search(str(exc))), text[:300])
        except Exception as exc:  # noqa: BLE001 - any failure of the user's forward is a "no" for this size
            text = f"{type(exc).__name__}: {exc}".splitlines()[0]
            probe = Probe(size, False, bool(TOO_SMALL.search(str(exc))), text[:300])
        self.results[size] = probe
        return probe

    def ok(self, size: int) -> bool:
        return size >= 1 and self(size).ok


_ARGUMENT_MISMATCH = re.compile(r"(missing \d+ required|takes \d+ positional argument|unexpected keyword argument|"
                                r"positional arguments? but \d+ (was|were) given)")


class _OutOfProbes(Exception):
    pass


def _first_tensor_shape(value) -> Optional[Tuple[int, ...]]:
    import torch

    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        for item in value:
            shape = _first_tensor_shape(item)
            if shape is not None:
                return shape
    if hasattr(value, "__dataclass_fields__"):
        return _first_tensor_shape([getattr(value, f) for f in value.__dataclass_fields__])
    return None


def candidate_periods(model, limit: int) -> List[int]:
    """Periods worth trying: powers of two and the running products of the model's strides."""
    periods = {2 ** k for k in range(1, 12) if 2 ** k <= limit}
    product = 1
    for module in model.modules():
        stride = getattr(module, "stride", None)
        if isinstance(stride, (tuple, list)) and stride:
            stride = stride[0]
        if isinstance(stride, int) and stride > 1 and hasattr(module, "kernel_size"):
            product *= stride
            if product <= limit:
                periods.add(product)
    return sorted(periods)


def solve_input_size(model, input_spec=None, *, spatial: Optional[int] = None, max_size: Optional[int] = None,
                     max_probes: int = 400) -> SolverResult:
    """Find which square input sizes ``model`` accepts (batch and channels held at ``input_spec``'s).

    ``input_spec``: a shape ``(1, 3, 224, 224)``, a list of shapes or a :class:`netscope.inputs.InputSpec`
    (default: the guess for this model); only its
    first tensor's trailing ``spatial`` dimensions vary (default: every dimension after the first two).
    """
    from netscope.inputs import InputSpec, inputs_from

    if not isinstance(input_spec, InputSpec):  # the API's one input convention: a shape, shapes, or None
        input_spec = inputs_from(model, input_size=input_spec)
    if not isinstance(input_spec, InputSpec) or not input_spec.args:
        raise UsageError("solve_input_size needs an InputSpec with at least one input tensor, e.g. "
                         "InputSpec([TensorSpec((1, 3, 224, 224))])")
    shape = tuple(input_spec.args[0].shape)
    if spatial is not None and not 1 <= spatial <= len(shape):
        raise UsageError(f"--spatial {spatial} does not fit the input {list(shape)}: it must be between 1 and "
                         f"{len(shape)} (the number of trailing dimensions to vary)")
    spatial = len(shape) - 2 if spatial is None else spatial
    if spatial < 1:
        raise UsageError(f"the input {list(shape)} has no spatial dimensions to vary; give an input like "
                         "1,3,224,224 (batch, channels, height, width), or say how many trailing dimensions "
                         "vary with --spatial")
    if max_probes < 1:
        raise UsageError(f"--max-probes must be at least 1, got {max_probes}")
    if max_size is not None and max_size < 1:
        raise UsageError(f"--max-size must be at least 1, got {max_size}")
    reference = shape[-1]
    max_size = max_size or max(4 * reference, 512)
    probe = _Prober(model, input_spec, spatial, max_probes)
    try:
        return _solve(model, probe, shape, spatial, reference, max_size)
    except _OutOfProbes:
        return _result(shape, spatial, NONE, None, probe,
                       note=f"gave up after {max_probes} runs; pass a valid --input to start from")


def _result(shape, spatial, pattern, min_size, probe, **extra) -> SolverResult:
    return SolverResult(tuple(shape), spatial, pattern, min_size,
                        probes=tuple(probe.results[s] for s in sorted(probe.results)), **extra)


def _smallest_not_too_small(probe: _Prober, high: int) -> int:
    """Bisect the "too small" boundary in [1, high] (high is known not to be too small)."""
    low = 1
    while low < high:
        mid = (low + high) // 2
        if probe(mid).too_small:
            low = mid + 1
        else:
            high = mid
    return low


def _solve(model, probe: _Prober, shape, spatial, reference, max_size) -> SolverResult:
    start = reference
    if not probe.ok(start):
        if probe(start).too_small:  # grow until the kernels fit
            while probe(start).too_small and start < max_size:
                start = min(start * 2, max_size)
        floor_size = _smallest_not_too_small(probe, start) if not probe(start).too_small else start
        start = next((s for s in range(floor_size, max_size + 1) if probe.ok(s)), None)
        if start is None:
            return _result(shape, spatial, NONE, None, probe,
                           note=f"no size from {floor_size} to {max_size} works; last error: "
                                f"{probe(max_size).error if max_size in probe.results else probe(floor_size).error}")
    # `start` works. Does its neighbourhood?
    below_fine = all(probe.ok(start - d) or probe(start - d).too_small for d in (1, 2, 3) if start - d >= 1)
    if below_fine and all(probe.ok(start + d) for d in (1, 2, 3)):
        return _solve_any(probe, shape, spatial, start, max_size)
    return _solve_sparse(model, probe, shape, spatial, start, max_size)


def _solve_any(probe: _Prober, shape, spatial, start, max_size) -> SolverResult:
    low, high = 1, start
    while low < high:  # smallest working size, assuming every larger one works
        mid = (low + high) // 2
        if probe.ok(mid):
            high = mid
        else:
            low = mid + 1
    smallest = low
    checks = [smallest + d for d in range(1, 4)] + [start + 1, start + 7, 2 * start + 1, min(4 * start + 3, max_size)]
    broken = [s for s in checks if not probe.ok(s)]
    note = ""
    if broken:
        note = f"sizes {', '.join(map(str, broken))} fail although smaller ones work; the pattern is irregular"
    samples = sorted(s for s in probe.results if probe.results[s].ok)
    return _result(shape, spatial, ANY, smallest, probe, output_formula=_output_formula(probe, samples),
                   note=note)


def _solve_sparse(model, probe: _Prober, shape, spatial, start, max_size) -> SolverResult:
    low_run, high_run = start, start
    while probe.ok(low_run - 1) and low_run - 1 >= start - 8:
        low_run -= 1
    while probe.ok(high_run + 1) and high_run + 1 <= start + 8:
        high_run += 1
    run = list(range(low_run, high_run + 1))
    for period in candidate_periods(model, 2 * max(start, 16)):
        if period <= len(run):
            continue
        if probe.ok(start + period) and probe.ok(start + 2 * period):
            lowest = start
            while probe.ok(lowest - period):
                lowest -= period
            offsets = tuple(s - (start - lowest) for s in run)
            first = min((s for s in offsets if probe.ok(s)), default=lowest)
            samples = sorted(s for s in probe.results if probe.results[s].ok)
            return _result(shape, spatial, PERIODIC, first, probe, period=period,
                           valid_sizes=tuple(s for s in offsets if s >= first),
                           output_formula=_output_formula(probe, samples))
    # Nothing periodic: only the run around `start` works. Spot-check smaller sizes to back the claim.
    floor_size = _smallest_not_too_small(probe, low_run)
    spots = sorted({floor_size, (floor_size + low_run) // 2, low_run // 2, low_run - 16, low_run - 32})
    extra = [s for s in spots if floor_size <= s < low_run - 1 and probe.ok(s)]
    note = f"smaller sizes such as {', '.join(map(str, extra))} also work" if extra else ""
    return _result(shape, spatial, EXACT, min([low_run] + extra), probe, valid_sizes=tuple(sorted(extra + run)),
                   output_formula=_output_formula(probe, run), note=note)


def _output_formula(probe: _Prober, sizes: Sequence[int]) -> Tuple[str, ...]:
    """Each output dimension as text in the input size s: a constant, or a * floor((s + b) / q) + c."""
    points = [(s, probe.results[s].output_shape) for s in sizes if probe.results[s].output_shape is not None]
    if not points:
        return ()
    rank = len(points[0][1])
    if any(len(shape) != rank for _, shape in points):
        return ()
    return tuple(_fit_dim([(s, shape[i]) for s, shape in points]) for i in range(rank))


def _fit_dim(points: List[Tuple[int, int]]) -> str:
    values = {v for _, v in points}
    if len(values) == 1:
        return str(values.pop())
    for q in range(1, 65):
        for b in range(q):
            floors = [(s + b) // q for s, _ in points]
            (_, v0), f0 = points[0], floors[0]
            other = next(((v, f) for (_, v), f in zip(points, floors) if f != f0), None)
            if other is None:
                continue
            if (other[0] - v0) % (other[1] - f0):
                continue
            a = (other[0] - v0) // (other[1] - f0)
            c = v0 - a * f0
            if a and all(a * f + c == v for (_, v), f in zip(points, floors)):
                if q > 1 and c % a == 0:  # floor((s + b) / q) + k == floor((s + b + k*q) / q)
                    b, c = b + (c // a) * q, 0
                return _formula_text(a, b, q, c)
    return "?"


def _formula_text(a: int, b: int, q: int, c: int) -> str:
    inner = "s" if b == 0 else f"s + {b}" if b > 0 else f"s - {-b}"
    core = inner if q == 1 else f"floor(({inner}) / {q})"
    if a != 1:
        core = f"{a}*{core}"
    if c:
        core += f" + {c}" if c > 0 else f" - {-c}"
    return core
