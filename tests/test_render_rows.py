"""The built-in "simple" table drawer must match tabulate's "simple" layout exactly (tabulate is the oracle)."""

from __future__ import annotations

import tabulate
from hypothesis import given, settings, strategies as st

from netscope.render.rows import _cell, render_rows

WORD = st.text(alphabet="abcxyz[]_.,-0123456789", min_size=1, max_size=6)
# tabulate strips the ends of every cell, so cells with inner spaces only (our own indentation is tested below)
CELL = st.one_of(st.none(), st.integers(-10**9, 10**9), st.lists(WORD, max_size=3).map(" ".join))
COLUMNS = ["name", "n", "shape"]


@given(st.lists(st.fixed_dictionaries({c: CELL for c in COLUMNS}), max_size=6),
       st.lists(st.sampled_from(COLUMNS), unique=True))
@settings(max_examples=300, deadline=None, derandomize=True)
def test_simple_table_matches_tabulate(rows, numeric):
    ours = render_rows(rows, COLUMNS, "table", numeric=numeric)
    theirs = tabulate.tabulate([[_cell(r[c]) for c in COLUMNS] for r in rows], headers=COLUMNS, tablefmt="simple",
                               colalign=["right" if c in numeric else "left" for c in COLUMNS],
                               disable_numparse=True)
    assert ours == theirs


def test_tree_indentation_survives_in_every_style():
    rows = [{"layer": "(root)"}, {"layer": "  conv1"}, {"layer": "    block.0"}]
    simple = render_rows(rows, ["layer"], "table").splitlines()
    assert simple[3] == "  conv1" and simple[4] == "    block.0"
    grid = render_rows(rows, ["layer"], "table", table_style="grid")
    assert "· conv1" in grid and "· · block.0" in grid
