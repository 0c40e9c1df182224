"""The mapping as a reviewable artefact: per-key decisions with a reason code, plus compact rules.

A plan saves to JSON (``--save-plan``), replays (``--plan``) and inverts (``--invert``: target naming
back to source naming).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Tuple

from netscope.errors import UsageError
from netscope.remapping.rules import Rule, make_rule

PLAN_FORMAT = "netscope-remap-plan"
PLAN_VERSION = 1

# reason codes, in the order of evidence
EXACT = "exact"
WRAPPER = "wrapper-stripped"
RULE = "rule"
SHIFT = "sequential-shift"
STRUCTURAL = "structural"  # kind and shape, by position or as the only such layer under the same parent
NAMES = "name-evidence"  # among same-kind, same-shape siblings, the names decided (q_proj ~ query)
ALIAS = "alias-of"
MISMATCH = "shape-mismatch"
AMBIGUOUS = "ambiguous"  # a model key fits, but neither names nor structure say which: refused, with a --rule
UNUSED = "unused"
MISSING = "missing"
REASONS = (EXACT, WRAPPER, RULE, SHIFT, STRUCTURAL, NAMES, ALIAS, MISMATCH, AMBIGUOUS, UNUSED, MISSING)
LOADED_REASONS = frozenset({EXACT, WRAPPER, RULE, SHIFT, STRUCTURAL, NAMES, ALIAS})  # the tensor moves to `target`


@dataclass(frozen=True)
class KeyDecision:
    """What happens to one source key and/or one target key.

    Loaded decisions have both keys. ``shape-mismatch`` names both but loads nothing. ``unused`` has
    only a source key, ``missing`` only a target key. ``alias-of`` with both keys fills a target key
    with a tensor already loaded under another name; with no target it marks a source key that is an
    alias of a loaded tensor.
    """

    source: Optional[str]
    target: Optional[str]
    reason: str
    detail: str = ""
    source_shape: Optional[Tuple[int, ...]] = None
    target_shape: Optional[Tuple[int, ...]] = None

    @property
    def loads(self) -> bool:
        return self.reason in LOADED_REASONS and self.source is not None and self.target is not None

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "target": self.target,
            "reason": self.reason,
            "detail": self.detail,
            "source_shape": list(self.source_shape) if self.source_shape is not None else None,
            "target_shape": list(self.target_shape) if self.target_shape is not None else None,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "KeyDecision":
        reason = data.get("reason")
        if reason not in REASONS:
            raise UsageError(f"plan entry {data!r} has reason {reason!r}; expected one of {', '.join(REASONS)}")
        shape = lambda v: tuple(int(d) for d in v) if v is not None else None  # noqa: E731
        return cls(data.get("source"), data.get("target"), reason, str(data.get("detail") or ""),
                   shape(data.get("source_shape")), shape(data.get("target_shape")))

    def inverted(self) -> "KeyDecision":
        reason = {UNUSED: MISSING, MISSING: UNUSED}.get(self.reason, self.reason)
        detail = f"backwards ({self.detail})" if self.detail else "backwards"  # "prefix 'model.' stripped" now adds it
        return KeyDecision(self.target, self.source, reason, detail, self.target_shape, self.source_shape)


@dataclass(frozen=True)
class Plan:
    """Per-key decisions in source order (then missing target keys), and the compact rules."""

    decisions: Tuple[KeyDecision, ...]
    rules: Tuple[Rule, ...] = ()
    rules_reproduce_mapping: bool = True  # the compact rules alone rename every loaded key correctly
    notes: Tuple[str, ...] = field(default_factory=tuple)

    def mapping(self) -> Dict[str, str]:
        """source key -> target key for the first loaded decision of each source key."""
        result: Dict[str, str] = {}
        for decision in self.decisions:
            if decision.loads and decision.source not in result:
                result[decision.source] = decision.target
        return result

    def by_reason(self, reason: str) -> List[KeyDecision]:
        return [d for d in self.decisions if d.reason == reason]

    def counts(self) -> Dict[str, int]:
        counts = {reason: 0 for reason in REASONS}
        for decision in self.decisions:
            counts[decision.reason] += 1
        return counts

    def inverted(self) -> "Plan":
        """The plan back: target naming to source naming (rules are not invertible and are dropped)."""
        return Plan(tuple(d.inverted() for d in self.decisions), (), False, self.notes + ("inverted plan",))

    def to_dict(self) -> dict:
        return {
            "format": PLAN_FORMAT,
            "version": PLAN_VERSION,
            "counts": self.counts(),
            "rules": [[r.pattern, r.replacement] for r in self.rules],
            "rules_reproduce_mapping": self.rules_reproduce_mapping,
            "notes": list(self.notes),
            "decisions": [d.to_dict() for d in self.decisions],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: dict, *, origin: str = "plan") -> "Plan":
        if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
            raise UsageError(f"{origin} is not a netscope remap plan (no \"format\": \"{PLAN_FORMAT}\"); write "
                             "one with 'netscope remap CKPT MODEL --save-plan plan.json'")
        if data.get("version") != PLAN_VERSION:
            raise UsageError(f"{origin} has plan version {data.get('version')!r}; this netscope reads version "
                             f"{PLAN_VERSION}. Re-create it with --save-plan")
        decisions = data.get("decisions")
        if not isinstance(decisions, list):
            raise UsageError(f"{origin} has no 'decisions' list; re-create it with --save-plan")
        try:
            rules = tuple(make_rule(str(p), str(r)) for p, r in data.get("rules") or ())
            return cls(tuple(KeyDecision.from_dict(d) for d in decisions), rules,
                       bool(data.get("rules_reproduce_mapping", False)), tuple(data.get("notes") or ()))
        except (AttributeError, TypeError, ValueError) as exc:  # an entry of the wrong shape: edited by hand?
            raise UsageError(f"{origin} is damaged ({type(exc).__name__}: {exc}); re-create it with "
                             "--save-plan") from None


def read_plan(path: str) -> Plan:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError as exc:
        raise UsageError(f"plan file {path!r} does not exist; write one with --save-plan") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"plan file {path!r} is not valid JSON ({exc}); re-create it with --save-plan") from exc
    except OSError as exc:  # a directory, no permission
        raise UsageError(f"plan file {path!r} cannot be read ({exc.strerror or exc}); give the JSON file "
                         "written by --save-plan") from exc
    return Plan.from_dict(data, origin=f"plan file {path!r}")


def write_plan(plan: Plan, path: str, *, force: bool = True) -> None:
    from netscope.fileio import write_text_atomic

    write_text_atomic(path, plan.to_json(), force=force)


def replace_decision(decision: KeyDecision, **changes) -> KeyDecision:
    return replace(decision, **changes)
