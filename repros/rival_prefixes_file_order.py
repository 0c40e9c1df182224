"""A Lightning-style checkpoint holding two full copies of the weights under two prefixes (`model.` and
`ema.`, or `student.` and `teacher.`): remap stripped whichever prefix came first in the file
("wrapper-stripped", 100% coverage, exit 0) and called the other copy "unused: no model key matches it by
... prefix", which is false. Saving the EMA first silently loaded the EMA. Fault: remapping/engine.py
_prefixes (votes.most_common() breaks the tie by insertion order). Now both are refused as ambiguous with
the --rule lines to paste. Run: PYTHONPATH=. python repros/rival_prefixes_file_order.py
"""
import torch
import torch.nn as nn

import netscope

torch.manual_seed(0)
raw, ema = nn.Linear(3, 2), nn.Linear(3, 2)
state = {**{"ema." + k: v for k, v in ema.state_dict().items()}, **{"model." + k: v for k, v in raw.state_dict().items()}}
new, report = netscope.remap(state, nn.Linear(3, 2))
print({d.source: (d.target, d.reason) for d in report.decisions if d.source})
if new.get("weight") is not None:
    print("loaded the EMA copy:", torch.equal(new["weight"], ema.weight))
