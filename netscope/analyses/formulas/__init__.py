"""Size formulas, one small module per layer family, all registered into ``FORMULAS`` by module type.

``predict(module, args, kwargs)`` returns a :class:`Prediction` (expected output shape with the
arithmetic per dimension, warnings, or the reason the layer must reject the input), or ``None`` for a
module type without a formula. Adding a layer type is one registered function in one family module.
"""

from __future__ import annotations

from typing import Optional

from netscope.analyses.formulas.registry import (  # noqa: F401 - re-exported vocabulary
    FORMULAS, REASONS, DimFormula, FormulaRegistry, Invalid, Prediction,
)
from netscope.analyses.formulas import (  # noqa: F401 - importing a family registers its formulas
    adaptive, conv, conv_transpose, flatten, fold, fractional, linear, pool, shuffle, unpool, upsample,
)


def predict(module, args: tuple, kwargs: Optional[dict] = None) -> Optional[Prediction]:
    """The formula's expectation for calling ``module`` with these (shape-only) arguments."""
    formula = FORMULAS.lookup(type(module))
    if formula is None:
        return None
    return formula(module, tuple(args), dict(kwargs or {}))


def has_formula(module) -> bool:
    return FORMULAS.lookup(type(module)) is not None
