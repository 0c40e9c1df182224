"""The shape flow: the main tensor's shape along the model's main path, with the stages where it halves."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from netscope.records import LayerCall

MAX_STEPS = 40  # a longer flow keeps its first steps and its last one, and says how many it left out


@dataclass(frozen=True)
class FlowStep:
    """One point of the flow: the layer whose output it is ("input" first) and that output's shape."""

    label: str
    shape: Tuple[int, ...]  # without the batch dimension when the input has one
    halves: bool  # every spatial size is half (rounded up) of the previous step's

    @property
    def text(self) -> str:
        return "×".join(str(d) for d in self.shape) or "scalar"


@dataclass(frozen=True)
class ShapeFlow:
    steps: List[FlowStep]
    omitted: int  # steps left out before the last one, when the flow was longer than MAX_STEPS


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


def first_tensor_shape(tree) -> Optional[Tuple[int, ...]]:
    """The first tensor shape inside a shape tree (depth first), or None when it holds no tensor."""
    if isinstance(tree, tuple):
        return tree
    items = tree.values() if isinstance(tree, dict) else tree if isinstance(tree, list) else ()
    for item in items:
        found = first_tensor_shape(item)
        if found is not None:
            return found
    return None


def _halves(previous: Tuple[int, ...], current: Tuple[int, ...]) -> bool:
    """Spatial dims are everything after the channel dim; only shapes of rank 3+ (C, H, W, ...) have them."""
    if len(previous) < 3 or len(previous) != len(current):
        return False
    pairs = list(zip(previous[1:], current[1:]))
    return all(p >= 2 and c == (p + 1) // 2 for p, c in pairs)


def shape_flow(layers: Sequence[LayerCall], input_shapes, *, max_steps: int = MAX_STEPS) -> ShapeFlow:
    """Input shape, then each output of the main container's children that changes the shape."""
    container = main_container(layers)
    first = first_tensor_shape(input_shapes)
    if container is None or first is None:
        return ShapeFlow([], 0)
    batch = first[0] if len(first) >= 2 else None

    def unbatched(shape: Tuple[int, ...]) -> Tuple[int, ...]:
        return shape[1:] if batch is not None and len(shape) >= 2 and shape[0] == batch else shape

    steps = [FlowStep("input", unbatched(first), False)]
    children = child_calls(layers).get(container.index, []) or [container]
    for call in children:
        shape = first_tensor_shape(call.output_shapes)
        if shape is None:
            continue
        shape = unbatched(shape)
        if shape != steps[-1].shape:
            steps.append(FlowStep(call.display_name, shape, _halves(steps[-1].shape, shape)))
    if len(steps) <= max_steps:
        return ShapeFlow(steps, 0)
    return ShapeFlow(steps[:max_steps - 1] + steps[-1:], len(steps) - max_steps)
