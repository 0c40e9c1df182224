"""Which input sizes a model accepts, per spatial axis, found by probing every size in a range.

A *scan* varies one axis of the first input (or all spatial axes together: the square scan) over
``1..max_size`` and runs the model once per size. The runs happen on a meta-device copy (no memory,
the user's model untouched); a size the meta kernels accept but a size formula of the layer rejects
(``netscope.analyses.formulas``: bilinear upsampling to an empty output) counts as failing. Sizes where the
verdict changes are re-run on a real device when one is available: all of them when a formula
overruled meta or meta could not run a size, else the outermost ones. Operators that the meta device
cannot run (``.item()``, ``nonzero``) get fake tensors (inside ``trace``), then the real device. Every
claim is about the sizes probed: nothing is extrapolated beyond them, and no size is skipped on the
strength of a formula (formulas only make meta stricter).
"""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Sequence, Tuple

from netscope.errors import ForwardError, UsageError

OK, FAILS, UNKNOWN = "ok", "fails", "unknown"
AXIS_LABELS = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}
REAL_CONFIRMATIONS = 16  # most real-device runs spent confirming the sizes where a scan's verdict changes
FIT_POINTS = 6  # working sizes needed before an output dimension is written as a formula of the size
REAL_PARAMS_LIMIT = 200_000_000  # larger models are not run on a real device by the solver

DEVICE_CLASH = re.compile(r"same device|expected device meta|on meta and \S+ on|at least two devices")
# lookups by index whose bounds only the real values can check: meta accepts a row past an embedding table's end
LOOKUPS = frozenset({"aten::embedding", "aten::_embedding_bag", "aten::embedding_bag", "aten::index",
                     "aten::index_select", "aten::gather", "aten::take"})
ARGUMENT_MISMATCH = re.compile(r"(missing \d+ required|takes \d+ positional argument|unexpected keyword argument|"
                               r"positional arguments? but \d+ (was|were) given)")


@dataclass(frozen=True)
class Probe:
    """One run at one input shape: ``state`` is ok, fails or unknown (no device could decide)."""

    scan: str  # the scan's label: "s" (square), "H", "W", "L", ...
    size: int
    shape: Tuple[int, ...]  # the first input's full shape
    state: str
    device: str  # where the verdict came from: "meta", "meta+formula" (a formula overruled meta), "cpu", ...
    error: str = ""
    output_shape: Optional[Tuple[int, ...]] = None

    @property
    def ok(self) -> bool:
        return self.state == OK

    def to_dict(self) -> dict:
        return {"scan": self.scan, "size": self.size, "shape": list(self.shape), "state": self.state,
                "device": self.device, "error": self.error,
                "output_shape": list(self.output_shape) if self.output_shape else None}


@dataclass(frozen=True)
class Scan:
    """The valid sizes of one axis (or of all spatial axes together) over the sizes probed."""

    label: str
    dims: Tuple[int, ...]  # indices into the first input's shape that took the size
    max_size: int
    probed: Tuple[int, ...]
    valid: Tuple[int, ...]
    unknown: Tuple[int, ...] = ()
    output_formula: Tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        """Every size in ``1..max_size`` was probed."""
        return len(self.probed) >= self.max_size and self.probed[-1] == self.max_size

    def describe(self) -> str:
        """The valid set, compactly: ``multiples of 7 from 7``, ``2..201, 209..224``, ``every s >= 32``."""
        return describe_sizes(self.valid, self.probed, self.label)

    def __repr__(self) -> str:
        """One line (the field-by-field repr lists every probed size: thousands of numbers)."""
        return f"Scan({self.label}: {self.describe()})"

    def to_dict(self) -> dict:
        return {"label": self.label, "dims": list(self.dims), "max_size": self.max_size,
                "complete": self.complete, "probed": _ranges(self.probed), "valid": list(self.valid),
                "unknown": list(self.unknown), "description": self.describe(),
                "output_formula": list(self.output_formula)}


@dataclass(frozen=True)
class SolverResult:
    """Scans of the first input's spatial axes, anchored at ``anchor_shape`` (the other axes' sizes)."""

    base_shape: Tuple[int, ...]
    spatial: int  # how many trailing dimensions were varied
    anchor_shape: Optional[Tuple[int, ...]]  # a working shape the per-axis scans hold the other axes at
    scans: Tuple[Scan, ...] = ()  # the square scan first (when spatial > 1), then one per axis
    interaction: str = ""  # whether the axes' valid sets combine freely, or how they interact
    notes: Tuple[str, ...] = ()
    tied_inputs: Tuple[str, ...] = ()  # other inputs whose size on the varied axis follows the first input's
    held_inputs: Tuple[str, ...] = ()  # the other inputs kept at their given shape: every claim holds them there
    probes: Tuple[Probe, ...] = field(default=(), repr=False)
    seconds: float = 0.0

    @property
    def main(self) -> Optional[Scan]:
        """The square scan (or the only axis's scan)."""
        return self.scans[0] if self.scans else None

    @property
    def valid_sizes(self) -> Tuple[int, ...]:
        return self.main.valid if self.main else ()

    @property
    def min_size(self) -> Optional[int]:
        return self.valid_sizes[0] if self.valid_sizes else None

    @property
    def probes_per_second(self) -> float:
        return len(self.probes) / self.seconds if self.seconds > 0 else 0.0

    def scan(self, label: str) -> Scan:
        return next(s for s in self.scans if s.label == label)

    def input_shape(self, size: int) -> Tuple[int, ...]:
        """The square input of size ``size`` (batch and channels as given)."""
        return _with_sizes(self.base_shape, _spatial_dims(self.base_shape, self.spatial), size)

    def summary(self) -> str:
        """One sentence: which sizes of the square scan (or the single axis) work."""
        scan = self.main
        if scan is None or not scan.valid:
            if scan is not None and scan.unknown:
                why = next((n for n in self.notes if n.startswith("the meta device cannot")), "no device could run it")
                return f"undetermined: {why}"
            found = f"no working size found among {_range_text(scan.probed)}" if scan is not None and scan.probed \
                else "no working size found"
            return found + (f" ({self.notes[0]})" if self.notes else "")
        example = _with_sizes(self.anchor_shape or self.base_shape, scan.dims, scan.valid[0])
        return f"{_scan_name(scan, self.spatial)}: {scan.describe()}; e.g. [{', '.join(map(str, example))}]"

    def __repr__(self) -> str:
        """One line: the summary sentence and the run count (``render()`` has every scan)."""
        return f"SolverResult({self.summary()}; {len(self.scans)} scans, {len(self.probes)} runs)"

    def render(self) -> str:
        lines = []
        for scan in self.scans:
            line = f"{_scan_name(scan, self.spatial)}: {scan.describe()}"
            if scan.unknown:
                line += f" ({len(scan.unknown)} sizes undetermined: {_range_text(scan.unknown)})"
            if not scan.valid:  # why: the reference shape's error (the last run there: a real one beats meta)
                failed = next((p for p in reversed(self.probes) if p.shape == self.base_shape and p.error), None) \
                    or next((p for p in self.probes if p.scan == scan.label and p.error), None)
                if failed is not None:
                    line += f"; at {list(failed.shape)} ({failed.device}): {failed.error}"
            lines.append(line)
            if scan.output_formula:
                lines.append(f"  output shape: [{', '.join(scan.output_formula)}]")
        if not self.scans:
            lines.append(self.summary())
        if self.interaction:
            lines.append(self.interaction)
        if self.tied_inputs:
            lines.append(f"inputs varied along with the first: {', '.join(self.tied_inputs)}")
        if self.held_inputs:
            lines.append(f"inputs held at their given shape: {', '.join(self.held_inputs)}")
        lines.extend(f"note: {note}" for note in self.notes)
        devices: Dict[str, int] = {}
        for probe in self.probes:
            devices[probe.device] = devices.get(probe.device, 0) + 1
        where = ", ".join(f"{count} on {device}" for device, count in sorted(devices.items()))
        lines.append(f"{len(self.probes)} runs ({where}) in {self.seconds:.1f} s, "
                     f"{self.probes_per_second:.0f} runs/s")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """The JSON document ``netscope solve -f json`` writes (schema ``netscope.solve``)."""
        from netscope.render.rows import json_document

        return json_document("solve", {"base_shape": list(self.base_shape), "spatial": self.spatial,
                "anchor_shape": list(self.anchor_shape) if self.anchor_shape else None,
                "summary": self.summary(), "scans": [s.to_dict() for s in self.scans],
                "interaction": self.interaction, "tied_inputs": list(self.tied_inputs),
                "held_inputs": list(self.held_inputs), "notes": list(self.notes),
                "seconds": round(self.seconds, 3), "runs": len(self.probes),
                "runs_per_second": round(self.probes_per_second, 1),
                "probes": [p.to_dict() for p in self.probes]})


def _scan_name(scan: Scan, spatial: int) -> str:
    if scan.label == "s":
        return "square " + "x".join(["s"] * spatial)
    return f"{scan.label} (dim {scan.dims[0]})"


# ---------------------------------------------------------------- describing a set of sizes

def _ranges(sizes: Sequence[int]) -> List[List[int]]:
    """``[1, 2, 3, 7, 8]`` -> ``[[1, 3], [7, 8]]``."""
    out: List[List[int]] = []
    for s in sizes:
        if out and s == out[-1][1] + 1:
            out[-1][1] = s
        else:
            out.append([s, s])
    return out


def _runs(valid: Sequence[int], probed: Sequence[int]) -> List[Tuple[int, int]]:
    """Maximal runs of consecutive valid sizes (a size not probed ends a run: nothing is claimed for it)."""
    ok = set(valid)
    runs: List[Tuple[int, int]] = []
    current: Optional[List[int]] = None
    for s in probed:
        if current is not None and s != current[1] + 1:
            runs.append((current[0], current[1]))
            current = None
        if s in ok:
            if current is None:
                current = [s, s]
            else:
                current[1] = s
        elif current is not None:
            runs.append((current[0], current[1]))
            current = None
    if current is not None:
        runs.append((current[0], current[1]))
    return runs


def _period(valid: Sequence[int], probed: Sequence[int]) -> Optional[Tuple[int, Tuple[int, ...]]]:
    """(d, residues): the smallest d with valid(s) == (s mod d in residues) for every probed s from the
    smallest to the largest valid size, seen over at least three periods; None when there is none."""
    if len(valid) < 3:
        return None
    first, last = valid[0], valid[-1]
    tail = [s for s in probed if first <= s <= last]
    ok = set(valid)
    span = last - first + 1
    for d in range(2, span // 3 + 1):
        residues = {s % d for s in valid}
        if len(residues) == d:
            continue
        if all((s in ok) == (s % d in residues) for s in tail):
            return d, tuple(sorted(residues))
    return None


def describe_sizes(valid: Sequence[int], probed: Sequence[int], label: str = "s") -> str:
    """The valid sizes as text, exact over ``probed``; nothing is claimed about sizes not probed."""
    name = label if label and label != "s" else "s"
    valid = sorted(valid)
    probed = sorted(probed)
    if not valid:  # named with its range: a --max-size below the reference size must not read as "nothing works"
        return f"none of {_range_text(probed)} work" if probed else "none probed"
    top = probed[-1]
    gaps = _holes(probed)
    suffix = f" (probed {_range_text(probed)})" if gaps else ""
    runs = _runs(valid, probed)
    if len(runs) == 1 and runs[0][1] == top and runs[0][0] != top:
        return f"every {name} >= {runs[0][0]} up to {top} probed{suffix}"
    for skip in range(min(3, len(runs) - 4) + 1) if len(runs) > 3 else ():  # a few irregular runs, then a period
        rest = [v for v in valid if v >= runs[skip][0]]
        period = _period(rest, probed)
        if period is None:
            continue
        d, residues = period
        start = rest[0]
        end = f", up to {top} probed" if rest[-1] + d > top else f" to {rest[-1]}"
        if len(residues) == 1:
            what = f"multiples of {d} from {start}" if start % d == 0 else f"{start}, {start + d}, {start + 2 * d}, ..."
        else:
            what = f"{name} mod {d} in {{{', '.join(map(str, residues))}}} from {start}"
        prefix = ", ".join(_run_text(a, b) for a, b in runs[:skip])
        return (f"{prefix}, then " if prefix else "") + what + end + suffix
    parts = [_run_text(a, b) for a, b in runs]
    text = ", ".join(parts) if len(parts) <= 12 else ", ".join(parts[:10]) + f", ... ({len(parts)} runs)"
    if runs[-1][1] == top and runs[-1][0] != top:
        text += f" (the last run reaches {top}, the largest probed)"
    return text + suffix


def _holes(probed: Sequence[int]) -> bool:
    return bool(probed) and (probed[0] != 1 or probed[-1] - probed[0] + 1 != len(probed))


def _range_text(sizes: Sequence[int]) -> str:
    return ", ".join(_run_text(a, b) for a, b in _ranges(sizes))


def _run_text(a: int, b: int) -> str:
    return str(a) if a == b else f"{a}, {b}" if b == a + 1 else f"{a}..{b}"


# ---------------------------------------------------------------- one probe

@dataclass(frozen=True)
class Outcome:
    """What one run of the model said."""

    state: str
    error: str = ""
    output_shape: Optional[Tuple[int, ...]] = None
    formula_error: str = ""  # the run passed, but a layer's size formula says the real kernel fails
    operators: Optional[Tuple[str, ...]] = None  # the operators that ran, when asked for (``operators=True``)


def run_probe(model, input_spec, shapes: Dict[Tuple[bool, object], Tuple[int, ...]], device,
              operators: bool = False, mode: str = "eval") -> Outcome:
    """Run ``model`` once on ``device`` in ``mode`` with ``input_spec``'s tensors, some of them re-shaped.

    ``shapes``: (is_keyword, name or position) -> the shape to build that input with instead. On the
    meta device ``trace`` retries under fake tensors when an operator needs values. The single place the
    solver runs a model.
    """
    import torch

    from netscope.run.fast_meta import fast_meta_kernels
    from netscope.inputs import InputSpec
    from netscope.run.prepare import META_CANNOT_RUN, prepared, run_pass

    spec = InputSpec([replace(t, shape=shapes.get((False, i), t.shape)) for i, t in enumerate(input_spec.args)],
                     {k: replace(t, shape=shapes.get((True, k), t.shape)) for k, t in input_spec.kwargs.items()},
                     input_spec.as_list)
    device = torch.device(device)
    meta = device.type == "meta"
    try:
        # meta probes run the solver's own meta copy (owned: never copied again); real ones the model where it is
        with fast_meta_kernels() if meta else contextlib.nullcontext(), \
                prepared(model, spec, device=device, owned=meta) as prep:
            result = run_pass(prep, mode=mode, operators=operators)  # whether it ran; operators when asked
    except ForwardError as err:
        original = err.original if err.original is not None else err
        if isinstance(original, NotImplementedError) and 'missing the required "forward"' in str(original):
            raise ForwardError(f"the model cannot run at any size: {original}. Define forward() on the module "
                               "(or pass the module that has one)", original=original) from original
        if isinstance(original, TypeError) and ARGUMENT_MISMATCH.search(str(original)):
            raise ForwardError(
                f"the model's forward cannot be called with the dummy input: {original}. Give every input it "
                "needs with --input (once per positional tensor; NAME=SHAPE for a keyword one), or wrap it in a "
                "module whose forward takes one tensor", original=original) from original
        text = f"{type(original).__name__}: {original}".splitlines()[0][:300]
        # on meta, a tensor the forward makes itself (torch.hann_window(400), torch.zeros(...)) lands on the
        # CPU and clashes with the meta input: says nothing about the size
        cannot = META_CANNOT_RUN.search(text) or (meta and DEVICE_CLASH.search(text))
        return Outcome(UNKNOWN if cannot else FAILS, text)
    formula_error = _formula_rejection(result) if str(device) == "meta" else ""
    ran = tuple(u.op for u in result.operators.overall()) if operators and result.operators is not None else None
    return Outcome(OK, output_shape=_first_shape(result.model_output), formula_error=formula_error, operators=ran)


def _formula_rejection(result) -> str:
    """The first layer call the meta kernels ran although its size formula says the real kernel fails."""
    from netscope.analyses.formulas import has_formula, predict

    for call, module, (args, kwargs) in zip(result.calls, result.modules, result.call_values):
        if not has_formula(module):
            continue
        try:
            prediction = predict(module, args, kwargs)
        except Exception:  # noqa: BLE001 - a formula that cannot judge this call says nothing
            continue
        if prediction is not None and prediction.invalid is not None:
            return f"{call.name or '(root)'} ({call.class_name}): {prediction.invalid.message}"
    return ""


def _first_shape(tree) -> Optional[Tuple[int, ...]]:
    if isinstance(tree, tuple):
        return tree
    items = tree.values() if isinstance(tree, dict) else tree if isinstance(tree, list) else ()
    for item in items:
        shape = _first_shape(item)
        if shape is not None:
            return shape
    return None


# ---------------------------------------------------------------- the solver

class _Budget(Exception):
    pass


class _Runner:
    """Probes at shapes, on meta first and on the real model where meta cannot decide; memoised."""

    def __init__(self, model, input_spec, real_model, max_probes: int, mode: str = "eval"):
        from netscope.run.no_memory import meta_copy

        self.mode = mode  # train: BatchNorm's one-value-per-channel refusal, a train-only branch, decide too
        # every probe starts from the model as given: the pass's model-state guard puts back what a forward that
        # adapts itself to its input changed (run.model_state.PlainAttributes)
        self.meta = meta_copy(model).eval()
        self.spec = input_spec
        self._real_source = real_model
        self._real = None
        self.real_reason = ""
        self.max_probes = max_probes
        self.done: Dict[Tuple[Tuple[int, ...], str], Probe] = {}
        self.order: List[Probe] = []
        self.cannot_meta = ""  # the first operator meta could not run
        # whether the forward looks rows up by index (an embedding table): known after the first meta run that works
        self.looks_up_values: Optional[bool] = None

    def real(self):
        """The model on a real device, or None (``real_reason`` says why)."""
        if self._real is None and self._real_source is not None:
            source, self._real_source = self._real_source, None
            model = source() if callable(source) and not hasattr(source, "forward") else source
            count = sum(p.numel() for p in model.parameters())
            if any(t.device.type == "meta" for t in list(model.parameters()) + list(model.buffers())):
                self.real_reason = "the model's tensors live on the meta device"
            elif count > REAL_PARAMS_LIMIT:
                self.real_reason = f"the model has {count:,} parameters, too many for a confirming run"
            else:
                self._real = model
        return self._real

    def real_device(self):
        from netscope.run.trace import model_device

        return model_device(self._real)

    def __call__(self, scan: str, size: int, shapes, shape: Tuple[int, ...], real: bool = False) -> Probe:
        key = (shape, "real" if real else "meta")
        if key in self.done:
            cached = self.done[key]
            return cached if cached.scan == scan else replace(cached, scan=scan, size=size)
        if len(self.order) >= self.max_probes:
            raise _Budget()
        if real:
            model = self.real()
            device = self.real_device()
            outcome = run_probe(model, self.spec, shapes, device, mode=self.mode)
            probe = Probe(scan, size, shape, outcome.state, str(device), outcome.error, outcome.output_shape)
        else:
            outcome = run_probe(self.meta, self.spec, shapes, "meta", operators=self.looks_up_values is None,
                                mode=self.mode)
            if outcome.operators is not None:
                self.looks_up_values = bool(LOOKUPS.intersection(outcome.operators))
            if outcome.state == UNKNOWN and not self.cannot_meta:
                self.cannot_meta = outcome.error
            if outcome.formula_error:
                probe = Probe(scan, size, shape, FAILS, "meta+formula",
                              f"the meta kernels accept it, the real kernel does not: {outcome.formula_error}")
            else:
                probe = Probe(scan, size, shape, outcome.state, "meta", outcome.error, outcome.output_shape)
        self.done[key] = probe
        self.order.append(probe)
        return probe


def solve_input_size(model, input_size=None, *, input_dtypes=None, spatial: Optional[int] = None,
                     max_size: Optional[int] = None, max_probes: int = 4000, real_model=None, per_axis: bool = True,
                     input_spec=None, mode: str = "eval") -> SolverResult:
    """Which sizes of the first input's spatial axes ``model`` accepts.

    ``input_size``: the API's one input convention (as :func:`netscope.summary`): a shape ``(1, 3, 224, 224)``,
    a list of shapes, an :class:`netscope.InputSpec`, or example tensors (their shapes and dtypes are the
    reference); default: the guess for this model. ``input_spec=`` is the older name of the same argument.
    Each axis (the last ``spatial`` dimensions, default all after batch and channels) is scanned over
    ``1..max_size`` (default 4x that axis's reference size, at least 64) with the other axes held at a
    working shape, after a square scan of all of them together. ``max_probes`` caps the runs; a scan cut
    short says which sizes it probed. ``real_model``: the model (or a zero-argument callable building it)
    to confirm on a real device the sizes where a verdict changes; default ``model`` itself unless its
    tensors are on the meta device. Inputs of the same rank whose size on the varied axis equals the
    first input's (an attention mask beside token ids) vary with it. ``mode``: ``"eval"`` (default) or ``"train"``,
    the mode every probe runs in (a train-mode pass of a batch of one refuses sizes that leave BatchNorm one value
    per channel).
    """
    import torch.nn as nn

    from netscope.inputs import InputSpec, inputs_from

    if not isinstance(model, nn.Module):
        raise UsageError(f"solve_input_size needs a torch.nn.Module, got {type(model).__name__}; pass the model "
                         "object itself (not a function or a class)")
    if input_spec is not None:
        if input_size is not None:
            raise UsageError("give input_size or its older name input_spec, not both")
        input_size = input_spec
    input_spec = inputs_from(model, input_size=input_size, input_dtypes=input_dtypes)
    if isinstance(input_spec, tuple):  # example tensors: their shapes and dtypes are the reference
        input_spec = InputSpec.of_tensors(*input_spec)
    if isinstance(input_spec, InputSpec) and not input_spec.args and input_spec.kwargs:
        raise UsageError(f"solve_input_size varies the first positional input, and these inputs are keywords only "
                         f"({', '.join(input_spec.kwargs)}): wrap the model in a module whose forward takes that "
                         "tensor positionally, or size it with netscope summary --input NAME=SHAPE")
    if not isinstance(input_spec, InputSpec) or not input_spec.args:
        raise UsageError("solve_input_size needs at least one input tensor, e.g. input_size=(1, 3, 224, 224)")
    shape = tuple(input_spec.args[0].shape)
    if spatial is not None and not 1 <= spatial <= len(shape):
        raise UsageError(f"--spatial {spatial} does not fit the input {list(shape)}: it must be between 1 and "
                         f"{len(shape)} (the number of trailing dimensions to vary)")
    if spatial is None:  # token ids (batch, length) vary in length; a list of images (channels, H, W) has no
        lead = 1 if input_spec.as_list else 2  # batch dimension; otherwise everything after batch, channels
        spatial = 1 if len(shape) == 2 and _is_integer(input_spec.args[0].dtype) else len(shape) - lead
    if spatial < 1:
        raise UsageError(f"the input {list(shape)} has no spatial dimensions to vary; give an input like "
                         "1,3,224,224 (batch, channels, height, width), or say how many trailing dimensions "
                         "vary with --spatial")
    if max_probes < 1:
        raise UsageError(f"--max-probes must be at least 1, got {max_probes}")
    if max_size is not None and max_size < 1:
        raise UsageError(f"--max-size must be at least 1, got {max_size}")
    if mode not in ("eval", "train"):
        raise UsageError(f"mode must be 'eval' or 'train', not {mode!r}")
    runner = _Runner(model, input_spec, model if real_model is None else real_model, max_probes, mode)
    start = time.perf_counter()
    solver = _Solver(runner, input_spec, shape, spatial, max_size, per_axis)
    with _kept_hooks(model):  # probes run copies, whose hooks hold the user's handles (a one-shot hook's remove)
        result = solver.solve()
    return replace(result, probes=tuple(runner.order), seconds=time.perf_counter() - start)


def _kept_hooks(model):
    import torch.nn as nn

    from netscope.run.model_state import kept_hooks
    from netscope.run.module_tree import module_tree

    return kept_hooks(module_tree(model)) if isinstance(model, nn.Module) else contextlib.nullcontext()


class _Solver:
    def __init__(self, runner: _Runner, spec, shape, spatial: int, max_size: Optional[int], per_axis: bool):
        self.runner = runner
        self.spec = spec
        self.shape = shape
        self.spatial = spatial
        self.dims = _spatial_dims(shape, spatial)
        self.max_size = max_size
        self.per_axis = per_axis
        self.notes: List[str] = []
        self.tied: Dict[str, None] = {}
        self.doubtful: set = set()  # shapes meta accepted between real refusals, not run for real: undetermined
        self.labels = AXIS_LABELS.get(spatial, tuple(f"d{i}" for i in range(spatial)))
        self.square_label = "s" if spatial > 1 else self.labels[0]

    def shapes_for(self, first: Tuple[int, ...]):
        """Every input's shape for a first input of shape ``first``: other inputs of the same rank follow it
        on each spatial axis where they had the first input's reference size."""
        shapes = {(False, 0): first}
        for keyword, items in ((False, list(enumerate(self.spec.args))[1:]), (True, list(self.spec.kwargs.items()))):
            for key, tensor in items:
                other = list(tensor.shape)
                if len(other) != len(self.shape):
                    continue
                tied = [d for d in self.dims if other[d] == self.shape[d]]
                if not tied:
                    continue
                for d in tied:
                    other[d] = first[d]
                shapes[(keyword, key)] = tuple(other)
                self.tied[str(key) if keyword else f"input {key}"] = None
        return shapes

    def probe(self, label: str, size: int, first: Tuple[int, ...], real: bool = False) -> Probe:
        shapes = self.shapes_for(first)
        probe = self.runner(label, size, shapes, first, real=real)
        if probe.state == UNKNOWN and not real and self.runner.real() is not None:
            return self.runner(label, size, shapes, first, real=True)
        return probe

    def solve(self) -> SolverResult:
        scans: List[Scan] = []
        anchor = None
        try:
            reference = self.probe(self.square_label, self.shape[self.dims[-1]], self.shape)
            square = self.scan(self.square_label, self.shape, self.dims)
            scans.append(square)
            anchor = self.anchor(reference, square)
            if self.per_axis and self.spatial > 1 and anchor is not None:
                for label, dim in zip(self.labels, self.dims):
                    scans.append(self.scan(label, anchor, (dim,)))
        except _Budget:
            self.notes.append(f"stopped after {self.runner.max_probes} runs (--max-probes); "
                              "each scan lists the sizes it probed")
            cut = next((p.scan for p in reversed(self.runner.order) if p.scan != "mixed"), None)
            if cut is not None and self.runner.real() is not None:
                self.notes.append(f"scan {cut}: its verdicts were not all confirmed on {self.runner.real_device()} "
                                  "before the budget ran out; the meta device accepts some sizes real kernels refuse")
            scans = self.partial_scans(scans)
            anchor = anchor or self.anchor_from_probes()
        interaction = ""
        if len(scans) > 2 and anchor is not None:
            try:
                interaction = self.interaction(scans, anchor)
            except _Budget:
                interaction = "whether the axes interact was not checked (--max-probes reached)"
        if self.runner.cannot_meta:
            from netscope.run.prepare import meta_operator

            fallback = (f"those sizes ran on {self.runner.real_device()}" if self.runner.real() is not None
                        else f"no real device to fall back to: {self.runner.real_reason or 'none given'}")
            self.notes.append(f"the meta device cannot run this model: {meta_operator(self.runner.cannot_meta)}; "
                              f"{fallback}")
        return SolverResult(self.shape, self.spatial, anchor, tuple(scans), interaction, tuple(self.notes),
                            tuple(self.tied), self.held())

    def held(self) -> Tuple[str, ...]:
        """The other tensor inputs no probe re-sized, with their shapes."""
        shapes = self.shapes_for(self.shape)
        items = [((False, i), f"input {i}", t) for i, t in enumerate(self.spec.args)][1:] + \
                [((True, k), k, t) for k, t in self.spec.kwargs.items()]
        return tuple(f"{name} {list(t.shape)}" for key, name, t in items
                     if key not in shapes and getattr(t, "shape", None) is not None)

    def size_limit(self, base, dims) -> int:
        return self.max_size or max(4 * max(base[d] for d in dims), 64)

    def scan(self, label: str, base, dims) -> Scan:
        """Probe every size 1..limit, then confirm the changes of verdict on a real device."""
        limit = self.size_limit(base, dims)
        for size in range(1, limit + 1):
            self.probe(label, size, _with_sizes(base, dims, size))
        self.confirm(label, base, dims, limit)
        return self.collect(label, base, dims, limit)

    def verdicts(self, base, dims, limit) -> Dict[int, Probe]:
        """size -> the deciding probe (a real-device run beats a meta run) for the sizes probed so far."""
        out: Dict[int, Probe] = {}
        for size in range(1, limit + 1):
            shape = _with_sizes(base, dims, size)
            probe = self.runner.done.get((shape, "real"))
            if probe is None and (shape, "meta") in self.runner.done:
                probe = self.runner.done[(shape, "meta")]
                if shape in self.doubtful and probe.ok:  # meta accepted it between two real refusals
                    probe = replace(probe, state=UNKNOWN, error="not run on the real device, which refuses a "
                                                                "neighbouring size the meta device accepted")
            if probe is not None:
                out[size] = probe
        return out

    def confirm(self, label: str, base, dims, limit: int) -> None:
        """Re-run on the real device the sizes where the verdict changes, walking on where it disagrees.

        Every change is confirmed when the scan has sizes a formula overruled or meta could not run;
        otherwise the outer ones (the smallest valid size, the largest when a larger one fails)."""
        verdicts = self.verdicts(base, dims, limit)
        lenient = any(p.device == "meta+formula" or p.state == UNKNOWN for p in verdicts.values())
        if self.runner.real() is None:
            if any(p.device == "meta+formula" for p in verdicts.values()):
                self.notes.append(f"scan {label}: sizes where a size formula overruled the meta kernels were not "
                                  f"confirmed on a real device ({self.runner.real_reason or 'no real model given'})")
            return
        changes = self.boundaries(verdicts)
        if not lenient and changes:
            outer = [changes[0], changes[-1]]
            changes = sorted({s for s in changes if s in outer or s + 1 in outer or s - 1 in outer} & set(changes))
        # the smallest size too: meta kernels accept degenerate sizes some real kernels refuse (a bilinear
        # resize to 0 rows), which leaves no change of verdict to confirm; and the reference size when meta
        # found nothing valid
        extra = [min(verdicts)] if verdicts else []
        reference = base[dims[0]] if len({base[d] for d in dims}) == 1 else None
        if verdicts and not any(p.ok for p in verdicts.values()) and reference in verdicts:
            extra.append(reference)
        # an embedding lookup past its table fails only on real values (meta has none): the largest valid size too
        valid = [s for s, p in verdicts.items() if p.ok]
        if valid and self.runner.looks_up_values:
            extra.append(max(valid))
        changes = extra + [c for c in changes if c not in extra]
        spent = 0
        pending = list(changes)
        checked = set()
        while pending and spent < REAL_CONFIRMATIONS:
            size = pending.pop(0)
            if size in checked:
                continue
            checked.add(size)
            first = _with_sizes(base, dims, size)
            meta = self.runner.done.get((first, "meta"))
            if meta is None or meta.state == UNKNOWN or (first, "real") in self.runner.done:
                continue
            real = self.probe(label, size, first, real=True)
            spent += 1
            if real.state != meta.state and real.state != UNKNOWN:  # meta was wrong here: look further
                below = [s for s in range(1, size) if self.runner.done.get((_with_sizes(base, dims, s), "real"))]
                lower = max(below, default=0)
                if meta.ok and lower and lower < size - 2 and \
                        self.runner.done[(_with_sizes(base, dims, lower), "real")].ok:
                    spent += self.bisect(label, base, dims, lower, size, REAL_CONFIRMATIONS - spent)
                    continue
                pending[:0] = [n for n in (size - 1, size + 1) if 1 <= n <= limit and n not in checked]
        if pending:
            self.notes.append(f"scan {label}: {len(set(pending) - checked)} sizes next to a change of verdict were "
                              f"not confirmed on the real device (at most {REAL_CONFIRMATIONS} runs per scan)")

    def bisect(self, label: str, base, dims, good: int, bad: int, budget: int) -> int:
        """Real runs between a size the real model accepts and a larger one meta accepted but it refuses; the
        sizes between the real refusals stay meta-accepted yet unconfirmed, so they are made undetermined."""
        spent, top = 0, bad
        try:
            while bad - good > 1 and spent < budget:
                mid = (good + bad) // 2
                probe = self.probe(label, mid, _with_sizes(base, dims, mid), real=True)
                spent += 1
                if probe.ok:
                    good = mid
                else:
                    bad = mid
        finally:  # also when --max-probes stops it: what meta alone accepted up there is not claimed
            self.mark_doubtful(label, base, dims, good, top)
        return spent

    def mark_doubtful(self, label: str, base, dims, good: int, top: int) -> None:
        unrun = [s for s in range(good + 1, top) if (_with_sizes(base, dims, s), "real") not in self.runner.done]
        self.doubtful.update(_with_sizes(base, dims, s) for s in unrun)
        if unrun:
            self.notes.append(f"scan {label}: the real model refuses {top}, which the meta device accepted; "
                              f"{_range_text(unrun)} were not run on it and stay undetermined")

    @staticmethod
    def boundaries(verdicts: Dict[int, Probe]) -> List[int]:
        """Sizes whose neighbour has another verdict."""
        out = []
        for size, probe in sorted(verdicts.items()):
            if any(verdicts.get(n) is not None and verdicts[n].state != probe.state for n in (size - 1, size + 1)):
                out.append(size)
        return out

    def collect(self, label: str, base, dims, limit: int) -> Scan:
        verdicts = self.verdicts(base, dims, limit)
        probed = tuple(sorted(verdicts))
        valid = tuple(s for s in probed if verdicts[s].state == OK)
        unknown = tuple(s for s in probed if verdicts[s].state == UNKNOWN)
        points = [(s, verdicts[s].output_shape) for s in valid if verdicts[s].output_shape is not None]
        return Scan(label, tuple(dims), limit, probed, valid, unknown, output_formula(points))

    def anchor(self, reference: Probe, square: Scan) -> Optional[Tuple[int, ...]]:
        """A working shape to hold the other axes at: the reference, else the working square size nearest it."""
        verdict = self.runner.done.get((self.shape, "real")) or reference
        if verdict.ok:
            return self.shape
        if not square.valid:
            return None
        target = self.shape[self.dims[-1]]
        size = min(square.valid, key=lambda s: (abs(s - target), s))
        anchor = _with_sizes(self.shape, self.dims, size)
        if self.spatial > 1:
            self.notes.append(f"the reference input {list(self.shape)} fails; the axes were scanned around "
                              f"{list(anchor)}")
        return anchor

    def anchor_from_probes(self) -> Optional[Tuple[int, ...]]:
        return next((p.shape for p in self.runner.order if p.ok and p.scan == self.square_label), None)

    def partial_scans(self, scans: List[Scan]) -> List[Scan]:
        """After the budget ran out: the scans finished, and the one cut short over what it probed."""
        done = {s.label for s in scans}
        out = list(scans)
        plan = [(self.square_label, self.dims, self.shape)]
        anchor = self.anchor_from_probes()
        if self.per_axis and self.spatial > 1 and anchor is not None:
            plan += [(label, (dim,), anchor) for label, dim in zip(self.labels, self.dims)]
        for label, dims, base in plan:
            if label in done or not any(p.scan == label for p in self.runner.order):
                continue
            out.append(self.collect(label, base, dims, self.size_limit(base, dims)))
        return out

    def interaction(self, scans: List[Scan], anchor) -> str:
        """Do the per-axis valid sets combine freely? Compared with the square scan and on mixed extremes."""
        square, axes = scans[0], scans[1:]
        common = set(square.probed)
        for axis in axes:
            common &= set(axis.probed)
        both = {s for s in common if all(s in set(a.valid) for a in axes)}
        mismatched = sorted(s for s in common if (s in set(square.valid)) != (s in both))
        if mismatched:
            s = mismatched[0]
            works = s in set(square.valid)
            return (f"the axes interact: the square size {s} {'works' if works else 'fails'} although "
                    f"{'not every axis accepts' if works else 'every axis accepts'} {s} with the others at "
                    f"{list(anchor)}")
        if not all(a.valid for a in axes):
            return ""
        for low_first in (True, False):
            shape = list(anchor)
            for i, (axis, dim) in enumerate(zip(axes, self.dims)):
                shape[dim] = axis.valid[0] if (i == 0) == low_first else axis.valid[-1]
            probe = self.probe("mixed", 0, tuple(shape))
            if not probe.ok:
                return (f"the axes interact: {list(shape)} fails although each axis accepts its size with the "
                        f"others at {list(anchor)}")
        # the anchor's sizes moved to other axes (a flatten -> Linear fixes only their product): outside the
        # per-axis sets, so a pass there shows the sets do not combine into the whole valid region
        sizes = [anchor[d] for d in self.dims]
        for turn in range(1, len(sizes)):
            shape = list(anchor)
            for dim, size in zip(self.dims, sizes[turn:] + sizes[:turn]):
                shape[dim] = size
            outside = [(axis, shape[dim]) for axis, dim in zip(axes, self.dims)
                       if shape[dim] in set(axis.probed) and shape[dim] not in set(axis.valid)]
            if not outside:
                continue
            probe = self.probe("mixed", 0, tuple(shape))
            if probe.ok:
                axis, size = outside[0]
                return (f"the axes interact: {list(shape)} works although axis {axis.label} rejects {size} with "
                        f"the others at {list(anchor)}; the per-axis sets do not describe every working shape")
        return ("the axes look independent: the square scan equals the per-axis sets combined, and mixed "
                "extreme sizes work")


def _is_integer(dtype: Optional[str]) -> bool:
    return dtype is not None and not dtype.startswith(("float", "bfloat"))


def _spatial_dims(shape: Sequence[int], spatial: int) -> Tuple[int, ...]:
    return tuple(range(len(shape) - spatial, len(shape)))


def _with_sizes(shape: Sequence[int], dims: Sequence[int], size: int) -> Tuple[int, ...]:
    out = list(shape)
    for d in dims:
        out[d] = size
    return tuple(out)


# ---------------------------------------------------------------- output shape as a function of size

def output_formula(points: Sequence[Tuple[int, Tuple[int, ...]]]) -> Tuple[str, ...]:
    """Each output dimension as text in the input size s: a constant, or a * floor((s + b) / q) + c."""
    if not points:
        return ()
    rank = len(points[0][1])
    if any(len(shape) != rank for _, shape in points):
        return ()
    dims = [_fit_dim([(s, shape[i]) for s, shape in points]) for i in range(rank)]
    if len({s for s, _ in points}) < FIT_POINTS:  # too few sizes to tell a formula from a coincidence
        dims = [d if d.isdigit() else "?" for d in dims]
    return tuple(dims)


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
    core = inner if q == 1 else f"floor({inner} / {q})" if b == 0 else f"floor(({inner}) / {q})"
    if a != 1:
        core = f"{a}*{core}"
    if c:
        core += f" + {c}" if c > 0 else f" - {-c}"
    return core
