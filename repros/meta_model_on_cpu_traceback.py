"""A model built under `torch.device("meta")`, summarised with device="cpu", raised torch's raw
NotImplementedError ("Cannot copy out of meta tensor; no data!") from run/prepare.py:_placed instead of a
NetscopeError saying what to do. Run: PYTHONPATH=. python repros/meta_model_on_cpu_traceback.py"""
import torch
import torch.nn as nn

import netscope

with torch.device("meta"):
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
try:
    netscope.summary(model, input_size=(2, 4), device="cpu")
except netscope.errors.NetscopeError as error:
    print("clear error:", error)
