"""The one registry type: every per-kind table of netscope refuses a second entry under a key the same way."""

import pytest
import torch.nn as nn

from netscope.registry import Registry


def _tables():
    from netscope.analyses.formulas import registry as formulas
    from netscope.checkpoints.containers import LAYOUTS
    from netscope.checkpoints.readers import READERS
    from netscope.checkpoints.writing import WRITERS
    from netscope.finding_codes import FINDING_CODES
    from netscope.models.sources import SOURCES, load_builtin_sources
    from netscope.naming import segments
    from netscope.operators.registry import REGISTRY as MAC_REGISTRY
    from netscope.render.columns import COLUMNS
    from netscope.wrappers import WRAPPERS

    load_builtin_sources()
    return {"layouts": LAYOUTS, "readers": READERS, "writers": WRITERS, "finding codes": FINDING_CODES,
            "sources": SOURCES, "child rules": segments._CHILD_RULES, "leaf rules": segments._LEAF_RULES,
            "mac formulas": MAC_REGISTRY._formulas, "size formulas": formulas.FORMULAS._formulas,
            "columns": COLUMNS, "wrappers": WRAPPERS}


@pytest.mark.parametrize("label", sorted(_tables()))
def test_every_table_is_a_registry_that_refuses_a_second_entry(label):
    table = _tables()[label]
    assert isinstance(table, Registry)
    key = next(iter(table))
    before = dict(table)
    with pytest.raises(ValueError, match=f"{table.what} for .* registered twice"):
        table.add(key, object())
    assert dict(table) == before  # the refused entry changed nothing


def test_add_lookup_and_pop():
    registry = Registry("rule")
    registry.add(nn.Module, "module")
    registry.decorator(nn.Sequential, nn.ModuleList)("container")

    class Blocks(nn.Sequential):
        pass

    assert registry.lookup(Blocks) == "container"  # nearest base with an entry
    assert registry.lookup(nn.Linear) == "module"
    assert registry.lookup(int) is None
    assert list(registry) == [nn.Module, nn.Sequential, nn.ModuleList] and len(registry) == 3
    with pytest.raises(ValueError, match="rule for Sequential registered twice"):
        registry.add(nn.Sequential, "again")
    assert registry.pop(nn.Sequential) == "container" and nn.Sequential not in registry
    assert registry.lookup(Blocks) == "module"
    registry.add(nn.Sequential, "again")  # after pop, the key is free
    assert registry[nn.Sequential] == "again"

