"""A forward that creates a submodule on its first call (`if not hasattr(self, "extra"): self.extra =
nn.Linear(...)`, a common lazy-init pattern) crashes `netscope summary` with a raw traceback
(KeyError in run/trace.py:_param_table, `table[id(child)]`, line ~522: the module tree was walked
before the forward, the new child is not in it); the CLI exits 1 with the traceback, and the user's
model keeps the new child. Expected: the pass reported (the new module named, as lazily created), or one
clear error (exit 3/2), and the model as it was. Left unfixed: run/trace.py is being refactored by the lead.
Run: PYTHONPATH=. python repros/forward_adds_submodule_keyerror.py
"""
import torch
import torch.nn as nn

import netscope


class AddsModule(nn.Module):
    def __init__(self):
        super().__init__()
        self.l = nn.Linear(4, 4)

    def forward(self, x):
        if not hasattr(self, "extra"):
            self.extra = nn.Linear(4, 4)
        return self.extra(self.l(x))


model = AddsModule()
try:
    netscope.summary(model, torch.randn(2, 4))
except netscope.errors.NetscopeError as error:
    print("clear error:", error)
except Exception as error:  # noqa: BLE001 - what this repro shows
    print(f"raw {type(error).__name__}: {error}")
print("children after:", [n for n, _ in model.named_children()])
