"""`netscope diff` exits 0 ("loads strictly as-is") for a tied-embedding checkpoint saved without its
alias key (HF save_pretrained drops lm_head.weight), although torch's load_state_dict(strict=True) fails.

Oracle: torch's own strict load of the checkpoint as-is.
Run: PYTHONPATH=. python repros/diff_tied_exit_code.py
"""
import os
import tempfile

import torch
import torch.nn as nn

from netscope.cli import main


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(11, 4)
        self.lm_head = nn.Linear(4, 11, bias=False)
        self.lm_head.weight = self.embed.weight

    def forward(self, x):
        return self.lm_head(self.embed(x))


if __name__ == "__main__":
    model = Tied()
    state = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}
    try:
        Tied().load_state_dict(state, strict=True)
        strict_ok = True
    except RuntimeError:
        strict_ok = False
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "tied.pt")
        torch.save(state, path)
        code = main(["diff", path, f"{__file__}:Tied", "-q"])
    print(f"torch strict load ok={strict_ok}; netscope diff exit={code}")
    assert code == (0 if strict_ok else 1)
