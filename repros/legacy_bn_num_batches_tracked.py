"""A checkpoint saved before num_batches_tracked existed (torch < 0.4.1: no `_metadata` version 2 for the
BatchNorm) loads with torch's own `load_state_dict(strict=True)`: `_NormBase._load_from_state_dict` fills
the buffer in. netscope says the opposite: `netscope.load(..., strict=True)` raises StrictLoadError,
`netscope diff` prints "a strict load would fail" and exits 1, `remap` notes the result would not load.

Oracle: torch's strict load. Fixed for state dicts in memory and files remapped/loaded (remapping/loader_fills.py);
`netscope diff FILE` reads headers only (no _metadata), so it still says "would fail" there. Originally: the decision needs the checkpoint's `_metadata` versions, which
the header readers (checkpoints/readers.py, off-limits) do not expose; the fix belongs in
remapping/report.py:strict_problems + DiffReport.clean (skip a missing `<bn>.num_batches_tracked` of a
_NormBase with track_running_stats whose module version in `_metadata` is absent or < 2).
Run: PYTHONPATH=. python repros/legacy_bn_num_batches_tracked.py
"""
from collections import OrderedDict

import torch.nn as nn

import netscope

model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
legacy = OrderedDict((k, v) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked"))
legacy._metadata = OrderedDict([("", {"version": 1}), ("0", {"version": 1}), ("1", {"version": 1})])
print("torch strict:", nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).load_state_dict(legacy, strict=True))
try:
    netscope.load(legacy, nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), strict=True)
    print("netscope.load: loaded (agrees with torch)")
except netscope.errors.NetscopeError as error:
    print("netscope.load refused:", error)
