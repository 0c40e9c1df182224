"""Runs of identical repeated blocks (``layers.1–31  31 × LlamaDecoderLayer  as layers.0``), found once.

Two sibling calls are identical when they have the same parameter count and multiply-adds, and the same
structure: each call of their subtrees, in order and nesting, has the same class, input and output shapes, own
parameters and multiply-adds, window hyperparameters and behaviour key (a stock layer's configuration, hooks),
and each call below them has the same name relative to its parent; and the same wiring: each call inside takes
its tensors from the same calls inside (or from outside), and their own code merges the same values (a block
whose residual add is switched off is not "as" one that adds it). A GELU block is never shown "as" a ReLU block. The first call of a run stays in full; the rest fold into one row.
A call whose subtree holds a failed check or a finding never folds, so folding cannot hide a problem.
Table, notebook and HTML views fold; JSON and the DataFrame always keep every call.
"""

from __future__ import annotations

import itertools
import operator
from dataclasses import dataclass
from typing import Any, Collection, Dict, List, Optional, Sequence, Tuple

from netscope.records import LayerCall
from netscope.render.columns import COLUMNS, relative_name, text_row


@dataclass(frozen=True)
class Fold:
    """Calls ``members`` (in call order) repeat call ``first``, their immediately preceding sibling run's head."""

    first: int
    members: Tuple[int, ...]
    label: str  # "layers.1–31"
    class_name: str

    @property
    def count(self) -> int:
        return len(self.members)


def subtree_sizes(layers: Sequence[LayerCall]) -> List[int]:
    """Number of calls in each call's subtree, itself included (calls are in pre-order)."""
    sizes = [1] * len(layers)
    for index, parent in zip(range(len(layers) - 1, -1, -1), reversed(list(map(_PARENT, layers)))):
        if parent is not None:
            sizes[parent] += sizes[index]
    return sizes


_PARENT = operator.attrgetter("parent")


def run_label(first: LayerCall, last: LayerCall) -> str:
    """``layers.1–31`` for calls ``layers.1`` to ``layers.31`` (also ``encoder_layer_0–11``); both names otherwise."""
    if first.index == last.index:
        return first.name
    head, _, tail = first.name.rpartition(".")
    last_head, _, last_tail = last.name.rpartition(".")
    stem, last_stem = tail.rstrip("0123456789"), last_tail.rstrip("0123456789")
    if head == last_head and stem == last_stem and tail != stem and last_tail != last_stem:
        return f"{first.name}–{last_tail[len(last_stem):]}"
    if head == last_head:  # named siblings (k_proj, v_proj, o_proj): the first and the last
        return f"{first.name} … {last_tail}"
    return f"{first.name} … {last.name}"


def _hidden(index: Optional[int], layers: Sequence[LayerCall], folded: set, memo: Dict[int, bool]) -> bool:
    """A fold member, or inside one. Asked for a parent only after every ancestor's runs are found (``kids`` holds
    parents in the order of their first child), so the memo never goes stale. (A module-level function: a closure
    that calls itself is a reference cycle, which kept the report's rows alive until the collector's next full pass.)"""
    if index is None:
        return False
    known = memo.get(index)
    if known is None:
        known = memo[index] = index in folded or _hidden(layers[index].parent, layers, folded, memo)
    return known


def find_folds(layers: Sequence[LayerCall], pinned: Collection[int] = ()) -> List[Fold]:
    """Every run of identical siblings, as folds of its second to last call; runs inside a folded call are
    not looked for (the fold hides them with it).

    ``pinned``: indexes of calls that must stay visible (a failed check, a finding); a call with a pinned
    call in its subtree ends a run.
    """
    if not layers:
        return []
    sizes = subtree_sizes(layers)
    holds_pin = set()
    for index in pinned:
        while index is not None and index not in holds_pin:
            holds_pin.add(index)
            index = layers[index].parent
    kids: Dict[int, List[LayerCall]] = {}
    for call in layers:
        if call.parent is not None:
            kids.setdefault(call.parent, []).append(call)

    structure = _structures(layers, kids)
    made: Dict[int, Any] = {}  # call index -> its signature: a run's end is compared again as the next start

    def signature(call: LayerCall):
        index = call.index
        if index in made:
            return made[index]
        if call.call_number > 1 or index in holds_pin:
            key = None
        else:
            key = (structure[index], call.subtree_params, call.macs)
        made[index] = key
        return key

    wired: Dict[int, tuple] = {}

    def wiring(call: LayerCall) -> tuple:
        """Where each call in ``call``'s subtree takes its tensors from and what its own code merges, as offsets
        inside the subtree (``_OUTSIDE`` for any call before it; a producer always comes before its consumer):
        asked only of calls whose signatures match."""
        found = wired.get(call.index)
        if found is None:
            low = call.index
            parts = [_merged(call.merges, low)] if call.merges else []
            for inner in layers[low + 1:low + sizes[low]]:
                sources = inner.inputs_from
                if len(sources) == 1:
                    parts.append(sources[0] - low if sources[0] >= low else _OUTSIDE)
                else:
                    parts.append(_offsets(sources, low))
                if inner.merges:
                    parts.append(_merged(inner.merges, low))
            found = wired[call.index] = tuple(parts)
        return found

    folds: List[Fold] = []
    folded: set = set()  # indexes of fold members
    hidden_memo: Dict[int, bool] = {}

    for parent, siblings in kids.items():
        if _hidden(parent, layers, folded, hidden_memo):
            continue
        start = 0
        while start < len(siblings):
            key = signature(siblings[start])
            end = start + 1
            while (key is not None and end < len(siblings) and signature(siblings[end]) == key
                   and wiring(siblings[end]) == wiring(siblings[start])):
                end += 1
            members = siblings[start + 1:end]
            if members and (len(members) > 1 or sizes[members[0].index] > 1):  # only when it saves rows
                folds.append(Fold(siblings[start].index, tuple(m.index for m in members),
                                  run_label(members[0], members[-1]), members[0].class_name))
                folded.update(m.index for m in members)
            start = end
    folds.sort(key=lambda f: f.members[0])
    return folds


_OUTSIDE = -1  # in a wiring: producers called before the subtree (its input, a side input), however many


def _offsets(producers, low: int):
    """Producers as offsets from ``low`` (one ``_OUTSIDE`` for those before it): one as a number, several sorted."""
    found = {p - low if p >= low else _OUTSIDE for p in producers}
    return found.pop() if len(found) == 1 else tuple(sorted(found))


def _merged(merges, low: int) -> tuple:
    return ("merges",) + tuple((op, _offsets(producers, low)) for op, producers in merges)


def _structures(layers: Sequence[LayerCall], kids: Dict[int, List[LayerCall]]) -> List[int]:
    """Per call, a number equal for two calls exactly when their subtrees match call for call (class, shapes, own
    parameters and multiply-adds, hyperparameters, behaviour key, and their children's relative names and
    numbers in order)."""
    numbers: Dict[tuple, int] = {}
    structure = [0] * len(layers)
    cut = {}  # parent index -> length of its name's prefix of its children's names
    for call in layers:
        if call.parent is not None and call.parent not in cut:
            parent_name = layers[call.parent].name
            cut[call.parent] = len(parent_name) + 1 if parent_name else 0
    for call in reversed(layers):  # pre-order reversed: children before their parent
        children = kids.get(call.index)
        key = (call.class_name, _shape_key(call.input_shapes), _shape_key(call.output_shapes), call.own_params,
               call.own_macs, tuple(call.hyperparams.items()) if call.hyperparams else (), call.behaviour,
               tuple((c.name[cut[call.index]:], c.call_number > 1, structure[c.index]) for c in children)
               if children else ())
        structure[call.index] = numbers.setdefault(key, len(numbers))
    return structure


def _shape_key(tree):
    """A shape tree as something comparable: itself for one tensor's shape, a tagged tuple for the usual
    one-tensor argument list, else its text (the rest: dicts, nested containers, type names)."""
    if type(tree) is tuple:
        return tree
    if type(tree) is list and len(tree) == 1 and type(tree[0]) is tuple:
        return (list, tree[0])
    return repr(tree)


def visible_calls(layers: Sequence[LayerCall], folds: Sequence[Fold], *, depth=None):
    """Calls in order, each either a ``LayerCall`` or a ``Fold`` standing for its members and their subtrees."""
    heads = {f.members[0]: f for f in folds}
    hidden = {m for f in folds for m in f.members}
    skip_below = None  # depth of a folded call whose descendants are being skipped
    for call in layers:
        if skip_below is not None:
            if call.depth > skip_below:
                continue
            skip_below = None
        if depth is not None and call.depth > depth:
            continue
        if call.index in hidden:
            skip_below = call.depth
            if call.index in heads:
                yield heads[call.index]
            continue
        yield call


SUMMED = ("params", "own_params", "macs", "own_macs", "output_bytes")  # columns a fold row shows as run totals


def fold_row(fold: Fold, members: Sequence[LayerCall], first: LayerCall, keys: Sequence[str], ctx) -> dict:
    """Table cells of one folded run: ``layers.1–31 | 31 × LlamaDecoderLayer | as layers.0 | ...`` with the
    run's summed counts, other cells as the (identical) calls show them."""
    row = text_row(members[0], keys, ctx, short=True)
    for key in keys:
        if key in SUMMED:
            column = COLUMNS[key]
            total = sum(map(column.value, members, itertools.repeat(ctx)))
            row[key] = column.text(members[0], total, ctx)
    label = fold.label
    names = ctx.get("names")
    if names is not None and members[0].parent is not None:
        label = relative_name(label, names[members[0].parent])
    like = first.name
    if names is not None and first.parent is not None:
        like = relative_name(first.name, names[first.parent])
    row.update({k: v for k, v in (("layer", label), ("name", fold.label),
                                  ("type", f"{fold.count} × {fold.class_name}"),
                                  ("input", f"as {like}")) if k in keys})
    row["_fold"] = True
    return row
