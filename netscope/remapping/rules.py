"""User and compact rename rules: ``REGEX=REPLACEMENT`` applied in order, each to the previous result.

Rules chain like mmengine's ``revise_keys``: every rule is applied (``re.sub``) to the output of the
one before. The text form splits on the LAST ``=``, because a regex may contain ``=`` (lookaheads,
``(?P=name)``) while a state_dict key, and so a replacement, never does.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Iterable, List, Sequence, Tuple

from netscope.errors import UsageError


@dataclass(frozen=True)
class Rule:
    """One rename: every match of ``pattern`` in a key is replaced by ``replacement`` (re.sub syntax)."""

    pattern: str
    replacement: str

    def compiled(self) -> "re.Pattern[str]":
        return re.compile(self.pattern)

    def text(self) -> str:
        return f"{self.pattern}={self.replacement}"


def parse_rule(text: str) -> Rule:
    """``'REGEX=REPLACEMENT'`` -> Rule, split on the last ``=``; a bad regex is a UsageError."""
    if not isinstance(text, str) or "=" not in text:
        raise UsageError(
            f"rule {text!r} has no '='; write it as REGEX=REPLACEMENT, e.g. --rule '^backbone\\.=' to drop a "
            "'backbone.' prefix (the text is split on the last '=', so the replacement cannot contain '=')"
        )
    pattern, _, replacement = text.rpartition("=")
    return make_rule(pattern, replacement, origin=text)


def make_rule(pattern: str, replacement: str, *, origin: str = "") -> Rule:
    """A validated Rule: the regex compiles and the replacement's group references exist."""
    origin = origin or f"{pattern}={replacement}"
    if not pattern:
        raise UsageError(f"rule {origin!r} has an empty regex before '='; write it as REGEX=REPLACEMENT")
    try:
        compiled = re.compile(pattern)
    except (re.error, OverflowError, RecursionError) as exc:  # a{99999999999}: Overflow; deep nesting: Recursion
        raise UsageError(f"rule {origin!r}: the regex {pattern!r} is invalid ({exc}); fix the pattern "
                         "(remember to escape dots as '\\.')") from exc
    try:
        compiled.sub(replacement, "")  # parses the template eagerly: bad group references raise here
    except (re.error, IndexError, OverflowError, RecursionError) as exc:
        raise UsageError(f"rule {origin!r}: the replacement {replacement!r} is invalid for that regex ({exc}); "
                         "refer only to groups the regex defines, as \\1 or \\g<name>") from exc
    return Rule(pattern, replacement)


def coerce_rules(rules: Iterable) -> Tuple[Rule, ...]:
    """Accept Rule objects, ``'REGEX=REPL'`` strings or ``(regex, repl)`` pairs."""
    result: List[Rule] = []
    for item in rules or ():
        if isinstance(item, Rule):
            result.append(make_rule(item.pattern, item.replacement))
        elif isinstance(item, str):
            result.append(parse_rule(item))
        elif isinstance(item, (tuple, list)) and len(item) == 2 and all(isinstance(x, str) for x in item):
            result.append(make_rule(item[0], item[1]))
        else:
            raise UsageError(f"rule {item!r} is neither 'REGEX=REPLACEMENT' nor a (regex, replacement) pair")
    return tuple(result)


class RuleChain:
    """Rules compiled once, applied in order to keys."""

    def __init__(self, rules: Sequence[Rule]):
        self.rules = tuple(rules)
        self._compiled = [(r.compiled(), r.replacement) for r in self.rules]

    def __bool__(self) -> bool:
        return bool(self.rules)

    def apply(self, key: str) -> str:
        for pattern, replacement in self._compiled:
            key = pattern.sub(replacement, key)
        return key


def read_rules_file(path: str) -> Tuple[Rule, ...]:
    """Rules from a file: a netscope plan/rules JSON (``{"rules": [[regex, repl], ...]}``) or text lines
    ``REGEX=REPLACEMENT`` (blank lines and lines starting with ``#`` ignored)."""
    if not os.path.isfile(path):
        what = "is a directory" if os.path.isdir(path) else "does not exist"
        raise UsageError(f"rules file {path!r} {what}; give the path of a file written by "
                         "'netscope remap --save-plan' or a text file of REGEX=REPLACEMENT lines")
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except UnicodeDecodeError:
        raise UsageError(f"rules file {path!r} is not UTF-8 text (a checkpoint given as --rules?); give a file "
                         "written by 'netscope remap --save-plan' or a text file of REGEX=REPLACEMENT lines") from None
    except OSError as exc:
        raise UsageError(f"rules file {path!r} cannot be read ({exc.strerror or exc}); check its permissions") from None
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"rules file {path!r} looks like JSON but does not parse ({exc})") from exc
        if not isinstance(data, dict) or not isinstance(data.get("rules"), list):
            raise UsageError(f"rules file {path!r} is JSON without a 'rules' list; write "
                             '{"rules": [["REGEX", "REPLACEMENT"], ...]} or use text lines REGEX=REPLACEMENT')
        return coerce_rules(tuple(r) if isinstance(r, list) else r for r in data["rules"])
    lines = [line.strip() for line in text.splitlines()]
    return tuple(parse_rule(line) for line in lines if line and not line.startswith("#"))


def group_ref(number: int) -> str:
    """A replacement reference to group ``number`` that text after it cannot extend (``\\g<1>`` then ``4.``,
    where ``\\1`` then ``4.`` would read as group 14)."""
    return f"\\g<{int(number)}>"


def literal_replacement(text: str) -> str:
    """``text`` as re.sub replacement text that inserts it verbatim."""
    return text.replace("\\", "\\\\")


def literal_prefix_rule(old_prefix: str, new_prefix: str) -> Rule:
    """A rule that renames keys starting with ``old_prefix`` (dot-terminated or empty) to ``new_prefix``."""
    return Rule("^" + re.escape(old_prefix), literal_replacement(new_prefix))


def literal_module_rule(old_module: str, new_module: str) -> Rule:
    """A rule that renames only the tensors registered directly on module ``old_module``."""
    old = re.escape(old_module + ".") if old_module else ""
    new = (new_module + ".") if new_module else ""
    return Rule(f"^{old}([^.]+)$", literal_replacement(new) + group_ref(1))
