"""The shape flow: the main tensor's shape along the model's path, through its dominant containers.

From the main container (the root, or below it through single-child wrappers) the flow lists the calls
in order. A container with few children (``EXPAND_AT_MOST``: GPT-2's ``transformer`` + ``lm_head``, T5's
encoder and decoder, ConvNeXt's ``features``, Faster R-CNN's backbone/rpn/roi_heads) is opened and its own
children follow, so the stages and blocks inside show. Where a container's input is not the previous
step's output (T5's decoder starting from its own ids, a detector's resized batch), the flow shows the
data entering it as a branch step. Runs of identical blocks, each fed by the one before, are one step
(``h.0–11 ×12``); identical blocks side by side (parallel branches) are not. Leaf layers
appear only where they change the shape; blocks always do.

Joins come from the trace's dataflow (``LayerCall.inputs_from`` and ``merges``): a step that takes
the output of an earlier step besides the previous one says so (``dec1 ← enc1``: a U-Net skip, a detector's
heads); a block whose own code merges its input (or a side branch such as ``downsample``) back into its
children's path shows ``⊕ skip`` or ``⊕ skip (downsample)``; a container not opened counts the blocks inside
that do (``layer1 ⊕ skip in 2 blocks``). Children fed from the block's input and merged without it show as
``⊕ 4 branches (cat)`` (Inception); a block scaling its input by a branch (squeeze-excitation) as ``⊗ gate``.

Batched or not: the leading dimension is taken for a batch only when the model's first argument is a
tensor and the output leads with the same size (``[1, 3, 224, 224]`` -> ``3×224×224``); an unbatched image
or a list of images (detection models) is shown as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from netscope.records import MODEL_INPUT, LayerCall
from netscope.render.folding import find_folds, run_label, subtree_sizes

MAX_STEPS = 40  # a longer flow keeps its first steps and its last one, and says how many it left out
EXPAND_AT_MOST = 4  # a container with this many children or fewer is opened in the flow


@dataclass(frozen=True)
class FlowStep:
    """One point of the flow: the call whose output it is ("input" first) and that output's shape."""

    label: str
    shape: Tuple[int, ...]  # without the batch dimension when the input has one
    halves: bool  # every spatial size is half (rounded up) of the previous step's
    branch: bool = False  # data entering a container that does not come from the previous step
    depth: int = 0  # how many opened containers deep the call sits
    join: str = ""  # "← enc1" (earlier steps whose outputs join here), "⊕ skip (downsample)", ...

    @property
    def text(self) -> str:
        return "×".join(str(d) for d in self.shape) or "scalar"


@dataclass(frozen=True)
class ShapeFlow:
    steps: List[FlowStep]
    omitted: int  # steps left out before the last one, when the flow was longer than MAX_STEPS
    batch: Optional[int] = None  # the batch size taken off every shape, None when the input is not batched


def child_calls(layers: Sequence[LayerCall]) -> Dict[int, List[LayerCall]]:
    """Calls grouped by the index of their enclosing call, in call order."""
    kids: Dict[int, List[LayerCall]] = {}
    for call in layers:
        if call.parent is not None:
            kids.setdefault(call.parent, []).append(call)
    return kids


def main_container(layers: Sequence[LayerCall]) -> Optional[LayerCall]:
    """The call whose children form the main path: the root, or below it through single-child wrappers."""
    if not layers:
        return None
    kids = child_calls(layers)
    node = layers[0]
    while len(kids.get(node.index, ())) == 1:
        node = kids[node.index][0]
    return node


def first_tensor(tree, path: str = "") -> Tuple[Optional[Tuple[int, ...]], str]:
    """The first tensor shape inside a shape tree (depth first) and the dict key it sits under ('' if none)."""
    if isinstance(tree, tuple):
        return tree, path
    if isinstance(tree, dict):
        items = list(tree.items())
    elif isinstance(tree, list):
        items = [(path, item) for item in tree]
    else:
        return None, ""
    for key, item in items:
        found, where = first_tensor(item, key if isinstance(tree, dict) else path)
        if found is not None:
            return found, where
    return None, ""


def first_tensor_shape(tree) -> Optional[Tuple[int, ...]]:
    """The first tensor shape inside a shape tree (depth first), or None when it holds no tensor."""
    return first_tensor(tree)[0]


def _other_inputs(tree, limit: int = 2) -> List[str]:
    """Keyword names of the tensors a call takes besides its first (where other data joins: T5's decoder
    takes ``encoder_hidden_states``); at most ``limit`` names, then a count."""
    _, first_key = first_tensor(tree)
    names = [key for arg in (tree if isinstance(tree, list) else [tree]) if isinstance(arg, dict)
             for key, value in arg.items() if key != first_key and first_tensor_shape(value) is not None]
    return names[:limit] + ([f"{len(names) - limit} more"] if len(names) > limit else [])


def _side_input(call: LayerCall, following: Sequence[LayerCall]) -> bool:
    """A call computed beside the main path and handed to several later siblings as an extra input, never as the
    tensor they carry on (Llama's ``rotary_emb``: its cos/sin go to every decoder layer, which carries the hidden
    states; a diffusion U-Net's time embedding): it is no step of the path."""
    shape = first_tensor_shape(call.output_shapes)
    if shape is None:
        return False
    consumers = [c for c in following if call.index in c.inputs_from]
    return len(consumers) >= 2 and all(first_tensor_shape(c.input_shapes) not in (None, shape) for c in consumers)


def _halves(previous: Tuple[int, ...], current: Tuple[int, ...]) -> bool:
    """Spatial dims are everything after the channel dim; only shapes of rank 3+ (C, H, W, ...) have them."""
    if len(previous) < 3 or len(previous) != len(current):
        return False
    pairs = list(zip(previous[1:], current[1:]))
    return all(p >= 2 and c == (p + 1) // 2 for p, c in pairs)


def batch_size(input_shapes, output_shapes) -> Optional[int]:
    """The batch size: the leading dimension of the model's first argument when that is a tensor of rank 2 or
    more and the model's output leads with the same size; None otherwise (an unbatched ``[3, 32, 32]``
    image gives ``[8, 15, 15]``, a detector takes a list of images)."""
    args = input_shapes if isinstance(input_shapes, list) else [input_shapes]
    first = args[0] if args else None
    if isinstance(first, dict):  # keyword inputs (input_ids=...): their first tensor
        first = first_tensor_shape(first)
    out = first_tensor_shape(output_shapes)
    if isinstance(first, tuple) and len(first) >= 2 and out and out[0] == first[0]:
        return first[0]
    return None


SOURCES_SHOWN = 2  # names of earlier steps a "←" join lists before a count
ENTRY = "entry"  # a producer outside the block: the block's own input
# the operators (``LayerCall.merges``) that join paths; indexing, ``where`` and the like select data instead
ADDS = {"add", "add_", "sub", "sub_"}
PRODUCTS = {"mul", "mul_", "div", "div_", "matmul", "bmm", "mm", "einsum", "baddbmm"}  # and attention kernels
CONCATS = {"cat", "stack", "hstack", "vstack"}


def _direct_child(layers: Sequence[LayerCall], index: int, top: int):
    """The child of call ``top`` whose subtree holds call ``index``; ``ENTRY`` for a call made before ``top``."""
    if index < top:
        return ENTRY
    while index >= 0 and layers[index].parent is not None and layers[index].parent != top:
        index = layers[index].parent
    return index


def block_joins(layers: Sequence[LayerCall], call: LayerCall) -> List[str]:
    """The merges in ``call``'s own code (``LayerCall.merges``), each as text: ``⊕ skip`` (its input added
    back), ``⊕ skip (downsample)`` (a side branch from its input added to the main path), ``⊕ 4 branches
    (cat)`` (children fed by its input, merged without it), ``⊗ gate`` (its input scaled), ``⊕ join (x)``."""
    fed_by_entry: Dict[int, bool] = {}

    def entry_fed(child: int) -> bool:
        if child not in fed_by_entry:
            sources = layers[child].inputs_from
            fed_by_entry[child] = all(p < call.index for p in sources)  # none: a branch of its own
        return fed_by_entry[child]

    joins = []
    for op, sources in call.merges:
        product = op in PRODUCTS or "scaled_dot_product" in op or "attention" in op
        if not (product or op in ADDS or op in CONCATS):
            continue  # indexing, where, ...: data selection, not a merge of paths
        parts = {_direct_child(layers, p, call.index) for p in sources}
        if len(parts) < 2:
            continue
        side = sorted(p for p in parts if p != ENTRY and entry_fed(p))
        main = sorted(p for p in parts if p != ENTRY and not entry_fed(p))
        names = ", ".join(_short_name(layers[p], call) for p in side)
        kind = " (cat)" if op in CONCATS else ""
        if product:  # a gate (its input scaled), attention (q, k, v)
            joins.append("⊗ gate" if ENTRY in parts else f"⊗ {len(side)} branches" if not main else
                         f"⊗ join ({', '.join(_short_name(layers[p], call) for p in main + side)})")
        elif ENTRY in parts:
            joins.append(f"⊕ skip{kind}")
        elif main and side:
            joins.append(f"⊕ skip ({names}){kind}")
        elif side:
            joins.append(f"⊕ {len(side)} branches{kind}")
        else:
            joins.append(f"⊕ join ({', '.join(_short_name(layers[p], call) for p in main)}){kind}")
    return joins


def _short_name(call: LayerCall, parent: LayerCall) -> str:
    name = call.name[len(parent.name) + 1:] if parent.name and call.name.startswith(parent.name + ".") else call.name
    return f"{name} (call {call.call_number})" if call.is_repeat else name


def _joins_text(joins: List[str]) -> str:
    """``⊕ skip ×2`` for repeats of one kind, kinds in order of first appearance."""
    counts: Dict[str, int] = {}
    for join in joins:
        counts[join] = counts.get(join, 0) + 1
    return ", ".join(text if n == 1 else f"{text} ×{n}" for text, n in counts.items())


class _Joins:
    """Join texts of the calls, found once: a block's own merges, or the count of blocks inside with a skip."""

    def __init__(self, layers: Sequence[LayerCall]):
        self.layers = layers
        self.own = {c.index: block_joins(layers, c) for c in layers if c.merges}
        self.sizes = subtree_sizes(layers)
        self.skips = [0] * (len(layers) + 1)  # prefix sums of "this call's own code adds a skip"
        for c in layers:
            has = any(j.startswith("⊕ skip") and not j.endswith("(cat)") for j in self.own.get(c.index, ()))
            self.skips[c.index + 1] = self.skips[c.index] + has

    def residual(self, call: LayerCall) -> bool:
        """The call's own code adds its input (or a side branch of it) back: a residual block, never opened."""
        return self.skips[call.index + 1] > self.skips[call.index]

    def inner(self, call: LayerCall) -> str:
        own = self.own.get(call.index)
        if own:
            return _joins_text(own)
        inside = self.skips[call.index + self.sizes[call.index]] - self.skips[call.index + 1]
        return f"⊕ skip in {inside} block{'s' if inside > 1 else ''}" if inside else ""

    def incoming(self, call: LayerCall, container: LayerCall, previous: Optional[LayerCall]) -> str:
        """``← enc1``: steps of ``container`` besides the previous one whose outputs ``call`` takes."""
        others = []
        for p in call.inputs_from:
            part = _direct_child(self.layers, p, container.index)
            if part == ENTRY:  # from before the container: named by its producer
                if previous is not None:
                    others.append("input" if p == MODEL_INPUT else self.layers[p].display_name)
            elif previous is None or part != previous.index:
                others.append(self.layers[part].display_name)
        others = list(dict.fromkeys(others))
        if len(others) > SOURCES_SHOWN:
            others = others[:SOURCES_SHOWN] + [f"{len(others) - SOURCES_SHOWN} more"]
        return f"← {', '.join(others)}" if others else ""


def _runs_along_the_path(layers: Sequence[LayerCall], folds) -> Dict[int, List[int]]:
    """{first call: the calls after it} of each run of identical calls where every call takes the previous one's
    output, and otherwise only what the first call takes (Llama's rotary embedding): one step along the path,
    whose joins are the first call's. A fold is split where a call does not (identical blocks side by side, fed
    by the same call, are parallel branches: each is a step that says where its input comes from)."""
    runs: Dict[int, List[int]] = {}
    for fold in folds:
        first, members = fold.first, []
        for member in fold.members:
            previous, sources = members[-1] if members else first, set(layers[member].inputs_from)
            if previous in sources and sources - {previous} <= set(layers[first].inputs_from):
                members.append(member)
                continue
            if members:
                runs[first] = members
            first, members = member, []
        if members:
            runs[first] = members
    return runs


def shape_flow(layers: Sequence[LayerCall], input_shapes, *, max_steps: int = MAX_STEPS, folds=None) -> ShapeFlow:
    """Input shape, then the path through the dominant containers (see the module docstring)."""
    container = main_container(layers)
    first = first_tensor_shape(input_shapes)
    if container is None or first is None:
        return ShapeFlow([], 0)
    batch = batch_size(input_shapes, layers[0].output_shapes)

    def unbatched(shape: Tuple[int, ...]) -> Tuple[int, ...]:
        return shape[1:] if batch is not None and len(shape) >= 2 and shape[0] == batch else shape

    kids = child_calls(layers)
    run_of = _runs_along_the_path(layers, find_folds(layers) if folds is None else folds)
    skipped = {m for members in run_of.values() for m in members}
    steps = [FlowStep("input", unbatched(first), False)]
    joins = _Joins(layers)

    def add(label: str, tree, *, block: bool, branch: bool = False, depth: int = 0, join: str = "") -> None:
        shape, key = first_tensor(tree)
        if shape is None:
            return
        shape = unbatched(shape)
        if not block and not branch and shape == steps[-1].shape:
            return
        if branch and shape == steps[-1].shape:
            return
        text = f"{label} · {key}" if key and not branch else label
        steps.append(FlowStep(text, shape, not branch and _halves(steps[-1].shape, shape), branch, depth, join))

    def walk(parent: LayerCall, depth: int) -> None:
        children = kids.get(parent.index, [])
        previous = None
        for position, call in enumerate(children):
            if _side_input(call, children[position + 1:]):  # not a step: the calls it feeds say "← call"
                continue
            before, previous = previous, call
            if call.index in skipped:
                continue
            inner = kids.get(call.index, [])
            opened = inner and len(children) <= EXPAND_AT_MOST and not joins.residual(call)
            incoming = joins.incoming(call, parent, before)
            if opened:
                joined = _other_inputs(call.input_shapes)
                label = f"→ {call.display_name}" + (f" + {', '.join(joined)}" if joined else "")
                add(label, call.input_shapes, block=False, branch=True, depth=depth, join=incoming)
                walk(call, depth + 1)
                continue
            run = run_of.get(call.index)
            join = " ".join(t for t in (incoming, joins.inner(call)) if t)
            if run is not None:
                last = layers[run[-1]]
                add(f"{run_label(call, last)} ×{len(run) + 1}", last.output_shapes, block=True, depth=depth,
                    join=join)
            else:
                add(call.display_name, call.output_shapes, block=bool(inner), depth=depth, join=join)

    walk(container, 0)
    if len(steps) == 1:  # a container with no children: its own output
        add(container.display_name or "(root)", container.output_shapes, block=True)
    if len(steps) <= max_steps:
        return ShapeFlow(steps, 0, batch)
    return ShapeFlow(steps[:max_steps - 1] + steps[-1:], len(steps) - max_steps, batch)
