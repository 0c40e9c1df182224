"""The --rule / --rules parsers, fuzzed: any text either becomes a rule that applies without raising, or a
UsageError whose message is one line naming the rule (issue 7)."""

from __future__ import annotations

import os
import re
import tempfile

import pytest
from hypothesis import example, given, settings, strategies as st

from netscope.errors import UsageError
from netscope.remapping.rules import Rule, RuleChain, coerce_rules, parse_rule, read_rules_file

FUZZ = settings(max_examples=300, deadline=None, derandomize=True)

KEYS = st.lists(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._", max_size=24), min_size=1, max_size=4)
REGEX_ALPHABET = "()[]{}?*+\\^$|.=<>!:#-,PgabAZ0129 "  # regex and template syntax, so most texts are tricky
REGEXY_TEXT = st.text(alphabet=REGEX_ALPHABET, max_size=24)


def parse_or_usage_error(text):
    """The Rule, or None after checking the UsageError is one line that quotes the rule."""
    try:
        rule = parse_rule(text)
    except UsageError as err:
        message = str(err)
        assert message and "\n" not in message, message
        assert repr(text) in message or "rule " in message, message
        return None
    assert isinstance(rule, Rule)
    return rule


def check_rule_applies(rule, keys):
    chain = RuleChain([rule])
    for key in keys:
        result = chain.apply(key)
        assert isinstance(result, str)
        assert result == re.sub(rule.pattern, rule.replacement, key)  # the oracle: plain re.sub
    assert parse_rule(rule.text()) == rule  # the text form round-trips (split on the last '=')


@given(st.text(max_size=40), KEYS)
@example("a{4294967296}=x", ["a"])  # repetition count overflows: was an OverflowError traceback
@example("(" * 2000 + ")" * 2000 + "=x", ["a"])  # nesting too deep: a RecursionError
@example("(?P<n>a)=\\g<99999999999999999999>", ["a"])
@example("(a)|b=\\1", ["b"])  # a group that did not take part in the match: replaced by ''
@example("=", ["a"])
@example("a==", ["a"])
@FUZZ
def test_any_text_parses_to_a_working_rule_or_a_one_line_usage_error(text, keys):
    rule = parse_or_usage_error(text)
    if rule is not None:
        check_rule_applies(rule, keys)


@given(REGEXY_TEXT, REGEXY_TEXT, KEYS)
@FUZZ
def test_regex_syntax_soup(pattern, replacement, keys):
    rule = parse_or_usage_error(f"{pattern}={replacement}")
    if rule is not None:
        check_rule_applies(rule, keys)


@given(st.lists(st.one_of(st.text(max_size=12), st.tuples(REGEXY_TEXT, REGEXY_TEXT), st.integers(), st.none()),
                max_size=4))
@FUZZ
def test_coerce_rules_accepts_rules_or_raises_usage_error(items):
    try:
        rules = coerce_rules(items)
    except UsageError as err:
        assert "\n" not in str(err)
        return
    assert len(rules) == len(items)
    RuleChain(rules).apply("backbone.layer1.0.conv1.weight")


@given(st.binary(max_size=64))
@FUZZ
def test_rules_file_of_arbitrary_bytes(data):
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "rules.txt")
        with open(path, "wb") as handle:
            handle.write(data)
        try:
            rules = read_rules_file(path)
        except UsageError as err:
            assert "\n" not in str(err)
            return
    RuleChain(rules).apply("module.fc.weight")


@pytest.mark.parametrize("text,key,renamed", [
    ("^module\\.=", "module.fc.weight", "fc.weight"),
    ("^backbone\\.=encoder.", "backbone.layer1.weight", "encoder.layer1.weight"),
    ("(?<=layer)(\\d)=_\\1", "layer3.conv.weight", "layer_3.conv.weight"),  # '=' inside the regex is kept
    ("features\\.(\\d+)\\.=f\\1.", "features.12.bias", "f12.bias"),
    ("x(?=y)=z", "xy.xz", "zy.xz"),  # lookahead: the regex holds an '=', the split is on the last one
])
def test_known_rules(text, key, renamed):
    assert RuleChain([parse_rule(text)]).apply(key) == renamed


@pytest.mark.parametrize("text,needle", [
    ("no_equals", "has no '='"),
    ("=x", "empty regex"),
    ("(=x", "is invalid"),
    ("a{4294967296}=x", "is invalid"),
    ("a=\\1", "replacement"),
    ("(?P<a>x)=\\g<b>", "replacement"),
])
def test_bad_rules_name_the_problem(text, needle):
    with pytest.raises(UsageError, match=re.escape(needle)):
        parse_rule(text)
