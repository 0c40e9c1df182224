"""A GPT-2 checkpoint (HF Conv1D weights, stored (in, out)) into an nn.Linear port with the SAME names:
remap moved mlp.c_fc.weight [32, 128] onto mlp.c_proj.weight (also [32, 128] as nn.Linear(128, 32)) by
"structural" evidence, and c_proj's onto c_fc, although the names match exactly: a silent swap of two
layers' weights (only a "split across modules" note hinted at it). Fault: remapping/engine.py _structural
took sources whose same-named target only differed in shape. Now they stay shape mismatches, marked
"transposed". Run: PYTHONPATH=. python repros/transposed_conv1d_moved_by_structure.py
"""
import torch
import torch.nn as nn

import netscope


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.c_fc, self.c_proj = nn.Linear(32, 128), nn.Linear(128, 32)


state = {k: (v.t().contiguous() if v.dim() == 2 else v) for k, v in Mlp().state_dict().items()}
_, report = netscope.remap(state, Mlp())
for d in report.decisions:
    print(f"{d.source} -> {d.target}: {d.reason}")
