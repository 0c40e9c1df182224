"""Infer a Plan from two layouts, in the order of evidence:

plan replay, exact names, wrapper tokens and common prefixes, user rules, nn.Sequential renumbering,
structural alignment; then aliases (tied/de-duplicated tensors), shape mismatches, unused and missing.
Pure metadata: no tensor is read.
"""

from __future__ import annotations

import re
from dataclasses import replace
from functools import cached_property
from typing import Dict, List, Mapping, Optional, Sequence, Set, Tuple

from netscope.errors import CheckpointError
from netscope.remapping import plan as P
from netscope.remapping.align import sequential_shifts, structural_alignment
from netscope.remapping.sides import TensorLayout, module_of
from netscope.remapping.plan import KeyDecision, Plan
from netscope.remapping.rules import (Rule, RuleChain, group_ref, literal_module_rule, literal_prefix_rule,
                                     literal_replacement)
from netscope.checkpoints.distributed import CONSOLIDATE_FSDP, flat_param_keys
from netscope.checkpoints.dtypes import copy_refusal
from netscope.wrappers import adapter_hint, adapter_kind
from netscope.remapping.wrappers import WrapperIndex, describe_wrapper_change, may_hold_wrapper_token, prefix_votes

RULE_CHECK_BUDGET = 5_000_000  # key x rule applications spent verifying the compact rules


class _Matching:
    """Working state of one inference run (internal; the result is an immutable Plan)."""

    def __init__(self, source: TensorLayout, target: TensorLayout):
        self.source, self.target = source, target
        self.open_sources: Dict[str, None] = dict.fromkeys(source.tensors)
        self.assigned: Dict[str, Tuple[str, str, str]] = {}  # source -> (target, reason, detail)
        self.filled: Dict[str, str] = {}  # target -> source
        self.covered: Dict[str, str] = {}  # target -> target it is tied to (already filled)
        self.pending: Dict[str, Tuple[str, str]] = {}  # source -> (same-named target, how it was named)
        self.why_unmatched: Dict[str, str] = {}
        self.refused: Dict[str, str] = {}  # source -> why a fitting target was not taken (ambiguous, no evidence)
        self.held_back: Dict[str, Tuple[str, str]] = {}  # source -> (target it fits, why it is not loaded)
        self.replayed: Set[str] = set()  # sources a --plan loads: the user's word, not re-judged
        self.rules_matched: Set[Rule] = set()  # user rules that renamed at least one checkpoint key
        self.rules: List[Rule] = []
        self.structural_pairs: List[Tuple[str, str]] = []  # (source module, target module) renamed by structure
        self.notes: List[str] = []
        self._target_groups: Dict[str, List[str]] = {}
        for keys in target.storage_groups().values():
            for key in keys:
                self._target_groups[key] = keys

    @cached_property
    def last_parameterized_module(self) -> Optional[str]:
        """The module holding the target's last parameter (typically the classifier); None without any."""
        params = [k for k in self.target.tensors if self.target.is_parameter(k)]
        return module_of(params[-1]) if params else None

    def target_open(self, key: str) -> bool:
        return key in self.target.tensors and key not in self.filled and key not in self.covered

    def open_targets(self) -> Dict[str, None]:
        return {k: None for k in self.target.tensors if k not in self.filled and k not in self.covered}

    def target_free(self, key: str) -> bool:
        """Not filled yet; a tied name already covered by its twin may still be filled by name evidence."""
        return key in self.target.tensors and key not in self.filled

    def free_targets(self) -> Dict[str, None]:
        return {k: None for k in self.target.tensors if k not in self.filled}

    def assign(self, source: str, target: str, reason: str, detail: str) -> bool:
        s, t = self.source.tensors[source], self.target.tensors[target]
        if s.shape != t.shape or ((s.dtype != t.dtype or s.layout != t.layout) and copy_refusal(s, t)):
            self.pending.setdefault(source, (target, detail or reason))
            return False
        self.assigned[source] = (target, reason, detail)
        self.filled[target] = source
        if self.covered:
            self.covered.pop(target, None)
        if self._target_groups:
            for tied in self._target_groups.get(target, ()):
                if tied != target and tied not in self.filled:
                    self.covered[tied] = target
        self.open_sources.pop(source, None)
        if self.why_unmatched:
            self.why_unmatched.pop(source, None)
        return True

    def hold_back(self, source: str, why: str) -> None:
        """Take back an assignment whose tensor fits but must not load; it is reported against its target."""
        target = self.assigned.pop(source)[0]
        del self.filled[target]
        for tied in [k for k, by in self.covered.items() if by == target]:
            del self.covered[tied]
        self.held_back[source] = (target, why)


def infer_plan(source: TensorLayout, target: TensorLayout, *, rules: Sequence[Rule] = (),
               plan: Optional[Plan] = None, structural: bool = True) -> Plan:
    """The mapping from ``source`` keys to ``target`` keys, every key decided and explained."""
    flat = flat_param_keys(source.tensors)
    if flat:
        raise CheckpointError(f"key {flat[0]!r}: " + CONSOLIDATE_FSDP.format(n=len(flat)))
    state = _Matching(source, target)
    if plan is not None:
        _replay(state, plan)
    if rules:  # the user's word comes before any automatic handling (a model_ema. rule beats the model. strip)
        _user_rules(state, rules)
    _shifts(state, _renumbering_suspects(state))  # before exact names: an index equal by accident is no evidence
    _exact(state)
    _wrappers(state)
    _prefixes(state)
    _shifts(state)
    if structural:
        _structural(state)
    _square_weights_beside_transposed(state)
    result = _finish(state, rules)
    if plan is not None:  # replaying is what the "compact rules differ, replay with --plan" note advises
        result = replace(result, notes=tuple(n for n in result.notes if "replay with --plan" not in n))
    return result


def _replay(state: _Matching, plan: Plan) -> None:
    skipped = 0
    for decision in plan.decisions:
        if not decision.loads or decision.reason == P.ALIAS:
            continue
        s, t = decision.source, decision.target
        if s in state.open_sources and state.target_free(t):
            if state.assign(s, t, decision.reason, "replayed from plan" + (f": {decision.detail}" if decision.detail else "")):
                state.replayed.add(s)
        elif s not in state.source.tensors or t not in state.target.tensors:
            skipped += 1
    if skipped:
        state.notes.append(f"{skipped} plan entries name keys absent from this checkpoint or model; they were skipped")


def _exact(state: _Matching) -> None:
    for key in list(state.open_sources):
        if key in state.target.tensors and key not in state.filled:
            state.assign(key, key, P.EXACT, "")


def _wrappers(state: _Matching) -> None:
    # two keys without wrapper tokens are equal or unrelated, so every match involves a token on one side
    targets = state.free_targets()
    token_targets = [k for k in targets if may_hold_wrapper_token(k)]
    token_sources = [k for k in state.open_sources if may_hold_wrapper_token(k)]
    if not token_targets and not token_sources:
        return
    index = WrapperIndex(targets if token_sources else token_targets)
    for key in (list(state.open_sources) if token_targets else token_sources):
        targets = index.best_targets(key, state.target_free)
        if len(targets) == 1:
            if state.assign(key, targets[0], P.WRAPPER, describe_wrapper_change(key, targets[0])):
                state.rules.append(_head_rule(key, targets[0]))
        elif len(targets) > 1:
            state.why_unmatched[key] = (f"wrapper tokens make it fit {len(targets)} target keys equally "
                                        f"({', '.join(targets[:3])}); add a --rule to say which")


def _prefixes(state: _Matching, rounds: int = 4) -> None:
    """Strip or add the prefix that explains at least half of the keys it touches; repeat."""
    for _ in range(rounds):
        sources = list(state.open_sources)
        targets = state.free_targets()
        if not sources or not targets:
            return
        votes = prefix_votes(sources, targets)
        progress = False
        for (kind, prefix), count in votes.most_common():
            side = sources if kind == "strip" else targets
            touched = sum(1 for k in side if k.startswith(prefix))
            if count * 2 < touched:
                continue
            if kind == "strip" and _refuse_rival_prefixes(state, votes, prefix, count, sources):
                progress = True
                break
            for key in (sources if kind == "strip" else list(targets)):
                if not key.startswith(prefix):
                    continue
                s, t = (key, key[len(prefix):]) if kind == "strip" else (key[len(prefix):], key)
                if s in state.open_sources and state.target_free(t):
                    detail = f"prefix '{prefix}' {'stripped' if kind == 'strip' else 'added'}"
                    progress |= state.assign(s, t, P.WRAPPER, detail)
            if progress:
                state.rules.append(literal_prefix_rule(prefix, "") if kind == "strip" else literal_prefix_rule("", prefix))
                break
        if not progress:
            return


def _refuse_rival_prefixes(state: _Matching, votes, prefix: str, count: int, sources: Sequence[str]) -> bool:
    """Two prefixes that each strip to the same model keys as often (``model.`` and ``ema.``, ``student.``
    and ``teacher.``) are two copies of the weights: which one loads is the user's choice, never the file's
    order. Their keys are refused as ambiguous with the rules to paste; True when that happened."""
    rivals = [p for (k, p), c in votes.items() if k == "strip" and c == count and p != prefix
              and 2 * c >= sum(1 for key in sources if key.startswith(p))]
    if not rivals:
        return False
    fills = {p: {key[len(p):] for key in sources if key.startswith(p) and state.target_free(key[len(p):])}
             for p in [prefix] + rivals}
    contested = [p for p in fills if any(fills[p] & fills[q] for q in fills if q != p)]
    if len(contested) < 2:
        return False
    named = ", ".join(f"'{p}'" for p in contested)
    paste = " or ".join(f"--rule '{literal_prefix_rule(p, '').text()}'" for p in contested)
    why = (f"ambiguous: the prefixes {named} each strip to the same {count} model keys (two copies of the weights: "
           f"a model and its EMA, a student and its teacher?); say which to load: {paste}")
    for key in sources:
        if any(key.startswith(p) for p in contested) and key in state.open_sources:
            state.refused[key] = why
            state.open_sources.pop(key, None)
    return True


def _user_rules(state: _Matching, rules: Sequence[Rule]) -> None:
    chain = RuleChain(rules)
    compiled = [(rule, rule.compiled()) for rule in rules]
    index = None
    for key in list(state.open_sources):
        renamed = chain.apply(key)
        if renamed == key:
            continue
        target, how = None, f"renamed by rules to {renamed}"
        if state.target_free(renamed):
            target = renamed
        else:
            index = index or WrapperIndex(state.free_targets())
            targets = index.best_targets(renamed, state.target_free)
            if len(targets) == 1:
                target, how = targets[0], how + ", then " + describe_wrapper_change(renamed, targets[0])
            elif renamed not in state.target.tensors:
                state.why_unmatched.setdefault(key, f"the rules rename it to {renamed!r}, which the model does not have")
        if target is not None and state.assign(key, target, P.RULE, how):
            current = key  # credit each rule that changed this key on its way through the chain
            for rule, pattern in compiled:
                after = pattern.sub(rule.replacement, current)
                if after != current:
                    state.rules_matched.add(rule)
                current = after


def _renumbering_suspects(state: _Matching) -> Tuple[List[str], List[str]]:
    """(source keys, target keys) in containers where names alone do not pair every tensor with one of the
    same shape: only there can renumbered children make an equal index misleading. None of a key
    matching by name: nothing to mislead, the later renumbering pass runs instead."""
    source, target = state.source.tensors, state.target.tensors
    exact = [k for k in state.open_sources if k in target and state.target_free(k)]
    if not exact:
        return [], []
    dirty_s = [k for k in state.open_sources if k not in target or target[k].shape != source[k].shape]
    dirty_t = [k for k in state.open_targets() if k not in source or target[k].shape != source[k].shape]
    if not dirty_s and not dirty_t:
        return [], []
    containers = {c for k in dirty_s + dirty_t for c in _numbered_containers(k)}
    if not containers:
        return [], []
    inside = lambda key: any(c in containers for c in _numbered_containers(key))  # noqa: E731
    return [k for k in state.open_sources if inside(k)], [k for k in state.open_targets() if inside(k)]


def _numbered_containers(key: str) -> List[str]:
    """Paths in ``key`` followed by a numeric segment (``'a.3.b.1.w'`` -> ``['a', 'a.3.b']``)."""
    parts = key.split(".")
    return [".".join(parts[:n]) for n in range(len(parts) - 1) if parts[n].isdigit()]


def _shifts(state: _Matching, keys: Optional[Tuple[List[str], List[str]]] = None) -> None:
    sources, targets = keys if keys is not None else (list(state.open_sources), list(state.open_targets()))
    if not sources or not targets:
        return
    shifts = sequential_shifts(sources, state.source.tensors, targets, state.target.tensors)
    for shift in shifts:
        done = False
        kept = shift.source_prefix == shift.target_prefix
        for s, t in shift.pairs:
            if s in state.open_sources and state.target_open(t):
                done |= state.assign(s, t, P.EXACT if kept and s == t else P.SHIFT,
                                     f"children renumbered: {shift.source_prefix}* -> {shift.target_prefix}*")
        if done and not kept:
            state.rules.append(literal_prefix_rule(shift.source_prefix, shift.target_prefix))


def _named_mismatches(state: _Matching) -> Set[str]:
    """Keys present on both sides under the same name with different shapes, where the name is evidence: the
    owning module has a name, not a list index (``mlp.c_fc.weight`` transposed by a Conv1D -> Linear port).
    Structure must not move them onto another layer of the right shape: they stay shape mismatches."""
    return {s for s, (t, _) in state.pending.items()
            if t == s and not module_of(s).rpartition(".")[2].isdigit()}


def _structural(state: _Matching) -> None:
    """Pair the open keys by structure, each kind of tensor (plain, LoRA matrices...: ``adapter_kind``) only
    with the model's tensors of that kind: a LoRA file's lora_A fits a base Linear of its shape, but is no weight
    of it (a peft adapter into the base model went into fc.weight and out.weight by position)."""
    links = [(module_of(s), module_of(t)) for s, (t, _, _) in state.assigned.items()]
    named = _named_mismatches(state)
    targets: Dict[int, List[str]] = {}
    for key in state.open_targets():
        if key not in named:
            targets.setdefault(adapter_kind(key), []).append(key)
    sources: Dict[int, List[str]] = {}
    for key in state.open_sources:
        if key not in named:
            sources.setdefault(adapter_kind(key), []).append(key)
    for kind, keys in sources.items():
        if kind in targets:
            _align_by_structure(state, keys, targets[kind], links)


def _align_by_structure(state: _Matching, sources: List[str], targets: List[str],
                        links: Sequence[Tuple[str, str]]) -> None:
    result = structural_alignment(sources, state.source.tensors, targets, state.target.tensors,
                                  state.target.module_type, links,
                                  ordered=state.source.ordered and state.target.ordered)
    for s, t, detail, by_names in result.pairs:
        state.assign(s, t, P.NAMES if by_names else P.STRUCTURAL, detail)
    state.structural_pairs += [(s, t) for s, t in result.module_pairs if s != t]
    for key, why in list(result.no_counterpart.items()) + list(result.ambiguous.items()):
        if key in state.open_sources:
            state.why_unmatched.setdefault(key, why)
    for key, why in result.refused.items():
        if key in state.open_sources:
            state.refused[key] = why


def _transposed(s_shape: Tuple[int, ...], t_shape: Tuple[int, ...]) -> bool:
    """Two 2-D shapes that are each other reversed and differ: an (in, out) weight against an (out, in) one."""
    return len(s_shape) == len(t_shape) == 2 and s_shape != t_shape and tuple(s_shape) == tuple(t_shape)[::-1]


def _square_weights_beside_transposed(state: _Matching) -> None:
    """Hold back the square 2-D tensors that only look as if they fit: a checkpoint storing some weights
    transposed against the model's layers of one kind (HF's Conv1D keeps (in, out), nn.Linear (out, in): GPT-2's
    c_attn, c_fc and mlp.c_proj into a nanoGPT port) stores its square ones of that kind the same way
    (attn.c_proj, 768 x 768), and those load without a shape error, silently wrong. Evidence: a transposed tensor
    of the same leaf name, into a model layer of the same type, that is a sibling of this one or has its name,
    and whose other tensors fit (a bias of equal size: the same layer stored transposed, not a resized one).
    Tensors a replayed --plan loads are the user's word and stay loaded."""
    source, target = state.source.tensors, state.target.tensors
    unfit = {module_of(s) for s, (t, _) in state.pending.items()
             if t not in state.filled and not _transposed(source[s].shape, target[t].shape)}
    evidence: Dict[Tuple[str, str, str], str] = {}  # (leaf, model layer type, parent or name) -> transposed key
    for s, (t, _) in state.pending.items():
        if t in state.filled or module_of(s) in unfit or not _transposed(source[s].shape, target[t].shape):
            continue
        module, leaf = t.rpartition(".")[::2]
        kind = state.target.module_type(module)
        parent, _, name = module.rpartition(".")
        evidence.setdefault((leaf, kind, "parent:" + parent), s)
        evidence.setdefault((leaf, kind, "name:" + name), s)
    if not evidence:
        return
    for s, (t, _, _) in list(state.assigned.items()):
        shape = source[s].shape
        if len(shape) != 2 or shape[0] != shape[1] or s in state.replayed:
            continue
        module, leaf = t.rpartition(".")[::2]
        kind = state.target.module_type(module)
        parent, _, name = module.rpartition(".")
        seen = evidence.get((leaf, kind, "parent:" + parent)) or evidence.get((leaf, kind, "name:" + name))
        if seen is None:
            continue
        layer = f"{kind} layers" if kind else "the same layers"
        state.hold_back(s, (
            f"square {list(shape)}, so it would load without a shape error, but the checkpoint stores {seen} "
            f"transposed ({list(source[seen].shape)} against the model's {list(target[state.pending[seen][0]].shape)}) "
            f"into {layer} beside or named like this one (HF's Conv1D keeps (in, out), nn.Linear (out, in)), so this "
            "one most likely is transposed too. Convert it with .t() as those; if its layout is the model's already, "
            "save the plan (--save-plan), set its reason to \"exact\" and replay it with --plan; not loaded"))


def _head_rule(source_key: str, target_key: str) -> Rule:
    """The shortest prefix rename that turns source_key into target_key (common tail kept)."""
    s, t = source_key.split("."), target_key.split(".")
    common = 0
    while common < min(len(s), len(t)) and s[-1 - common] == t[-1 - common]:
        common += 1
    s_head = ".".join(s[: len(s) - common])
    t_head = ".".join(t[: len(t) - common])
    return literal_prefix_rule(s_head + "." if s_head else "", t_head + "." if t_head else "")


def _mismatch_detail(state: _Matching, source: str, target: str, how: str) -> str:
    s_shape, t_shape = state.source.tensors[source].shape, state.target.tensors[target].shape
    refusal = copy_refusal(state.source.tensors[source], state.target.tensors[target])
    if s_shape == t_shape and refusal:  # the shapes fit; the dtypes or layouts do not
        return refusal + "; not loaded"
    text = f"checkpoint {list(s_shape)} vs model {list(t_shape)}"
    if how and how != P.EXACT:
        text += f" (matched by {how})"
    if _transposed(s_shape, t_shape):
        text += (": transposed (stored (in, out), like HF's Conv1D, where nn.Linear is (out, in)?): convert with "
                 ".t(); the square weights of such layers fit without a shape error and are held back too")
    elif len(s_shape) == len(t_shape) and s_shape[1:] == t_shape[1:] and s_shape[:1] != t_shape[:1]:
        owner = module_of(target)
        kind = state.target.module_type(owner)
        if kind in ("Linear", "LazyLinear", "") and state.last_parameterized_module == owner:
            text += f": a classifier with a different number of classes ({s_shape[0]} vs {t_shape[0]})"
        else:
            text += f": a different number of output features ({s_shape[0]} vs {t_shape[0]})"
    return text + "; not loaded"


def _finish(state: _Matching, user_rules: Sequence[Rule]) -> Plan:
    source, target = state.source, state.target
    decisions: List[KeyDecision] = []
    source_group_of: Dict[str, List[str]] = {}
    for keys in source.storage_groups().values():
        for key in keys:
            source_group_of[key] = keys
    mismatched_targets: Set[str] = set()
    for key, meta in source.tensors.items():
        assigned = state.assigned.get(key)
        if assigned is not None:
            t, reason, detail = assigned
            decisions.append(KeyDecision(key, t, reason, detail, meta.shape, target.tensors[t].shape))
            continue
        held = state.held_back.get(key)
        if held is not None:
            mismatched_targets.add(held[0])
            decisions.append(KeyDecision(key, held[0], P.MISMATCH, held[1], meta.shape, target.tensors[held[0]].shape))
            continue
        pending = state.pending.get(key)
        if pending and pending[0] not in state.filled and pending[0] not in mismatched_targets:
            t = pending[0]
            mismatched_targets.add(t)
            decisions.append(KeyDecision(key, t, P.MISMATCH, _mismatch_detail(state, key, t, pending[1]),
                                         meta.shape, target.tensors[t].shape))
            continue
        twin = next((k for k in source_group_of.get(key, ()) if k in state.assigned), None)
        if twin is not None:
            decisions.append(KeyDecision(key, None, P.ALIAS,
                                         f"shares storage with {twin}, which is loaded as {state.assigned[twin][0]}",
                                         meta.shape, None))
            continue
        if key in state.refused:
            decisions.append(KeyDecision(key, None, P.AMBIGUOUS, _adapter_name_hint(state, key) or state.refused[key],
                                         meta.shape, None))
            continue
        why = _adapter_name_hint(state, key) or state.why_unmatched.get(key) or adapter_hint(key) or \
            "no model key matches it by name, wrapper, prefix, rule, renumbering or structure"
        decisions.append(KeyDecision(key, None, P.UNUSED, why, meta.shape, None))
    for key, meta in target.tensors.items():
        if key in state.filled or key in mismatched_targets:
            continue
        if key in state.covered:
            tied = state.covered[key]
            decisions.append(KeyDecision(state.filled[tied], key, P.ALIAS, f"tied to {tied}: the same tensor fills both",
                                         source.tensors[state.filled[tied]].shape, meta.shape))
            continue
        owner = module_of(key)
        kind = target.module_type(owner)
        where = f" ({kind} {owner})" if owner else f" (the {kind} itself)"  # a root-level key has no module path
        decisions.append(KeyDecision(None, key, P.MISSING,
                                     f"no checkpoint tensor for it{where if kind else ''}; it keeps its "
                                     "initial value", None, meta.shape))
    rules, reproduce, notes = _compact_rules(state, user_rules, decisions)
    return Plan(tuple(decisions), tuple(rules), reproduce,
                tuple(state.notes + notes + _split_modules(decisions) + _tied_targets_filled_twice(state)
                      + _dtype_notes(state, decisions)))


def _stores_quantized_values(source_dtype: str, target_dtype: str) -> bool:
    """Integer or float8 values going into a wider float tensor: ``copy_`` casts them as they are, without the
    scale a quantized checkpoint stores beside them."""
    if not target_dtype.startswith(("float", "bfloat")) or target_dtype.startswith("float8"):
        return False
    return source_dtype.startswith(("int", "uint", "float8"))


def _dtype_notes(state: _Matching, decisions: Sequence[KeyDecision]) -> List[str]:
    """Notes for loaded pairs whose dtypes differ in a way that loads without error but changes the values."""
    source, target = state.source.tensors, state.target.tensors
    differ = [(s, t) for s, (t, _, _) in state.assigned.items() if source[s].dtype != target[t].dtype]
    return _quantized_into_float(state, decisions, differ) + _complex_into_real(state, differ) if differ else []


def _quantized_into_float(state: _Matching, decisions: Sequence[KeyDecision],
                          differ: Sequence[Tuple[str, str]]) -> List[str]:
    """A note for checkpoint tensors stored as integers or float8 that load into the model's float tensors."""
    source, target = state.source.tensors, state.target.tensors
    cast = [(s, t) for s, t in differ if _stores_quantized_values(source[s].dtype, target[t].dtype)]
    if not cast:
        return []
    s, t = cast[0]
    scales = [d.source for d in decisions if d.target is None and d.source and "scale" in d.source.rpartition(".")[2]]
    beside = f"; the checkpoint also holds {', '.join(scales[:3])}{' ...' if len(scales) > 3 else ''}" if scales else ""
    return [f"{len(cast)} checkpoint tensor(s) hold integer or float8 values where the model has floats (first: {s} "
            f"{source[s].dtype} into {t} {target[t].dtype}): loading casts the stored numbers as they are, without a "
            f"quantization scale, so a quantized checkpoint loads as wrong weights{beside}. Dequantize it first, or "
            "build the model in the checkpoint's quantized form"]


def _complex_into_real(state: _Matching, differ: Sequence[Tuple[str, str]]) -> List[str]:
    """A note for complex checkpoint tensors that load into the model's real tensors: the copy keeps the real part."""
    source, target = state.source.tensors, state.target.tensors
    cast = [(s, t) for s, t in differ
            if source[s].dtype.startswith("complex") and not target[t].dtype.startswith("complex")]
    if not cast:
        return []
    s, t = cast[0]
    return [f"{len(cast)} checkpoint tensor(s) are complex where the model's are real (first: {s} {source[s].dtype} "
            f"into {t} {target[t].dtype}): loading keeps the real part and drops the imaginary part (torch only "
            "warns)"]


def _tied_targets_filled_twice(state: _Matching) -> List[str]:
    """Notes for tied model tensors (one storage, several keys) that two separately stored checkpoint tensors
    both fill: one tensor can hold one value, so the one loaded last (the model's key order, as
    ``load_state_dict`` copies) overwrites the other, and if they differ the other's values are lost."""
    notes = []
    source = state.source.tensors
    for keys in state.target.storage_groups().values():
        fills = [(state.filled[k], k) for k in keys if k in state.filled]
        storages = {source[s].storage_id for s, _ in fills}
        if len(fills) < 2 or (len(storages) == 1 and None not in storages):
            continue  # one checkpoint tensor (saved once, or under several keys of one storage) fills them all
        notes.append(_tied_note(fills))
    return notes


def _tied_note(fills: Sequence[Tuple[str, str]]) -> str:
    (kept, kept_at), lost = fills[-1], [s for s, _ in fills[:-1]]
    return (f"{', '.join(k for _, k in fills)} are one tensor in the model (tied), but the checkpoint stores "
            f"{', '.join(lost)} and {kept} separately: loading keeps {kept} (copied last, into {kept_at}), so if "
            f"they differ the values of {', '.join(lost)} are lost; check that they are equal, or untie the model's "
            "weights to keep both")


def settle_tied_notes(plan: Plan, tensors: Mapping[str, object], target: TensorLayout) -> Plan:
    """``plan`` without the tied-tensor notes whose checkpoint tensors hold equal values (read from ``tensors``,
    the source state dict): then nothing is lost (a torch.distributed.checkpoint stores tied keys apart)."""
    import torch

    filled = {d.target: d.source for d in plan.decisions if d.loads and d.reason != P.ALIAS}
    settled = set()
    for keys in target.storage_groups().values():
        fills = [(filled[k], k) for k in keys if k in filled]
        if len(fills) < 2:
            continue
        values = [tensors.get(s) for s, _ in fills]
        if all(isinstance(v, torch.Tensor) for v in values) and all(_same_values(v, values[0]) for v in values[1:]):
            settled.add(_tied_note(fills))
    return replace(plan, notes=tuple(n for n in plan.notes if n not in settled)) if settled else plan


def _same_values(a, b) -> bool:
    """Equal shapes and values (float8 and other dtypes without an equality kernel compare as float64)."""
    import torch

    if a.shape != b.shape:
        return False
    try:
        return torch.equal(a, b.to(a.dtype))
    except (RuntimeError, NotImplementedError):
        try:
            return torch.equal(a.to(torch.float64), b.to(torch.float64))
        except (RuntimeError, NotImplementedError):
            return False


def _adapter_name_hint(state: _Matching, key: str) -> str:
    """Why a LoRA tensor of a peft adapter file finds no model key: peft saves ``...lora_A.weight`` but the
    peft-wrapped model names it ``...lora_A.<adapter>.weight``; the hint carries a rule that inserts the name."""
    module, _, leaf = key.rpartition(".")
    if not module.rpartition(".")[2].startswith("lora_"):
        return ""
    names = {t.rsplit(".", 2)[1] for t in state.target.tensors
             if t.startswith(module + ".") and t.endswith("." + leaf) and t.count(".") == key.count(".") + 1}
    if not names:
        return ""
    name = sorted(names)[0]
    return (f"a peft adapter file names it without the adapter name, and the model holds {module}.{name}.{leaf} "
            f"(adapter {name!r}{', among ' + ', '.join(sorted(names)) if len(names) > 1 else ''}): paste "
            f"--rule '(\\.lora_[^.]+)\\.([^.]+)$=\\1.{name}.\\2', or load it with peft's set_peft_model_state_dict")


def _split_modules(decisions: Sequence[KeyDecision]) -> List[str]:
    """Notes for checkpoint modules whose tensors went into more than one model module (a conv's weight into
    one layer, its bias into another): each mapping had its own evidence, together they rarely mean it."""
    targets: Dict[str, Dict[str, List[str]]] = {}
    for d in decisions:
        if d.loads and d.reason != P.ALIAS:
            targets.setdefault(module_of(d.source), {}).setdefault(module_of(d.target), []).append(
                f"{d.source.rsplit('.', 1)[-1]} by {d.reason}")
    return [f"checkpoint module {source or '(root)'} is split across model modules "
            + "; ".join(f"{target or '(root)'} ({', '.join(how)})" for target, how in parts.items())
            + ": check the mapping (a --rule that covers only some of its tensors?)"
            for source, parts in targets.items() if len(parts) > 1]


def _compact_rules(state: _Matching, user_rules: Sequence[Rule],
                   decisions: Sequence[KeyDecision]) -> Tuple[List[Rule], bool, List[str]]:
    """(rules, whether they reproduce the mapping, notes): the generalized module renames when they
    reproduce it, else one literal rule per structurally renamed module."""
    loaded = [d for d in decisions if d.loads and d.reason != P.ALIAS]
    idle = [r for r in user_rules if r not in state.rules_matched]
    if idle:
        state.notes.append("rule(s) that loaded no checkpoint tensor, so are not listed as applied: "
                           + "; ".join(r.text() for r in idle))
    base = list(state.rules) + [r for r in user_rules if r in state.rules_matched]
    pairs = state.structural_pairs
    renames = _generalized_renames(pairs, RULE_CHECK_BUDGET // len(loaded) if loaded else None)
    # with renamed modules, a generalized set too large to verify cannot win: its regexes are not built
    if not pairs or len(loaded) * len(renames) <= RULE_CHECK_BUDGET:
        notes: List[str] = []
        rules = _dedupe(base + [_rename_rule(s, t) for s, t in renames])
        reproduce = _rules_reproduce(loaded, rules, notes)
        if reproduce or not pairs:
            return rules, reproduce, notes
    notes = []
    rules = _dedupe(base + [literal_module_rule(s, t) for s, t in pairs])
    return rules, _rules_reproduce(loaded, rules, notes), notes


def _generalized_renames(module_pairs: Sequence[Tuple[str, str]],
                         max_count: Optional[int] = None) -> Dict[Tuple[tuple, tuple], None]:
    """Distinct (source parts, target parts) below the shared path; ``None`` marks an index kept as is.
    Stops as soon as there are more than ``max_count`` of them."""
    renames: Dict[Tuple[Tuple[str, ...], Tuple[str, ...]], None] = {}
    for source_module, target_module in module_pairs:
        s, t = source_module.split("."), target_module.split(".")
        common = 0
        while common < min(len(s), len(t)) - 1 and s[common] == t[common]:
            common += 1
        s, t = s[common:], t[common:]
        if len(s) == len(t):
            digits = [i for i, (a, b) in enumerate(zip(s, t)) if a == b and a.isdigit()]
            s = [None if i in digits else p for i, p in enumerate(s)]
            t = [None if i in digits else p for i, p in enumerate(t)]
        renames[(tuple(s), tuple(t))] = None
        if max_count is not None and len(renames) > max_count:
            break
    return renames


def _rename_rule(s_parts: Sequence[Optional[str]], t_parts: Sequence[Optional[str]]) -> Rule:
    """The rule for one generalized rename: module ``s_parts`` -> ``t_parts``, leaf kept."""
    pattern, replacement = "(^|\\.)", group_ref(1)
    for part in s_parts:
        pattern += "(\\d+)\\." if part is None else re.escape(part + ".")
    holes = iter(range(2, 2 + sum(p is None for p in s_parts)))
    for part in t_parts:
        replacement += group_ref(next(holes)) + "." if part is None else literal_replacement(part + ".")
    group = 2 + sum(p is None for p in s_parts)
    return Rule(pattern + "([^.]+)$", replacement + group_ref(group))


def _dedupe(rules: List[Rule]) -> List[Rule]:
    seen, result = set(), []
    for rule in rules:
        if rule in seen or (rule.pattern == "^" and not rule.replacement):  # duplicates and no-ops
            continue
        seen.add(rule)
        result.append(rule)
    return result


def _rules_reproduce(loaded: Sequence[KeyDecision], rules: Sequence[Rule], notes: List[str]) -> bool:
    """Whether ``rules`` rename every loaded (non-alias) decision's source to its target."""
    if len(loaded) * max(1, len(rules)) > RULE_CHECK_BUDGET:
        notes.append(f"{len(rules)} compact rules were not verified against {len(loaded)} keys (too many); "
                     "replay with --plan for an exact mapping")
        return False
    chain = RuleChain(rules)
    wrong = [d for d in loaded if chain.apply(d.source) != d.target]
    if wrong:
        notes.append(f"the compact rules rename {len(wrong)} of {len(loaded)} loaded keys differently from the plan "
                     f"(first: {wrong[0].source}); replay with --plan, which is exact")
        return False
    return True
