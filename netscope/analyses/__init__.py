"""What netscope concludes from a traced pass: totals, size-formula checks (``formulas/``, one module per
layer family), receptive fields, the diagnosis of a failed pass, the input-size solver, chart and
shape-flow data, and the training-step view (``step/``)."""
