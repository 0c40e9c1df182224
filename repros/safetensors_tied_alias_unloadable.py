"""`netscope remap ... -o out.safetensors` of a tied model (GPT-2: lm_head.weight = transformer.wte.weight)
reports 100% coverage and "alias-of", but the file stores the tensor once and keeps lm_head.weight only
as a netscope alias in its metadata: `safetensors.torch.load_file` + `load_state_dict(strict=True)`
fails with "Missing key(s): lm_head.weight". Now the remap says so in a note.
Run: PYTHONPATH=. python repros/safetensors_tied_alias_unloadable.py
"""
import os
import tempfile

import torch
import torch.nn as nn
from safetensors.torch import load_file

import netscope


class TiedLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(11, 4)
        self.head = nn.Linear(4, 11, bias=False)
        self.head.weight = self.embed.weight


with tempfile.TemporaryDirectory() as d:
    torch.save(TiedLM().state_dict(), os.path.join(d, "src.pt"))
    out = os.path.join(d, "out.safetensors")
    report = netscope.remap_file(os.path.join(d, "src.pt"), TiedLM(), out)
    print("notes:", report.notes)
    try:
        TiedLM().load_state_dict(load_file(out), strict=True)
    except RuntimeError as error:
        print("plain strict load:", str(error).splitlines()[1].strip())
