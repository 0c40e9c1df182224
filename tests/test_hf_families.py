"""``hf:config.json`` for families a sweep of transformers' model types found failing on netscope's own default
input. Oracles: the transformers model built from the same config by transformers itself, run on the inputs a
tokenizer gives (int64 ids, an int64 all-ones ``attention_mask``), its ``parameters()``, and torch's own formulas
(``flop_counter.flop_registry``) on that forward."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

import netscope
from netscope.cli import main
from netscope.models.specs import resolve_model

transformers = pytest.importorskip("transformers")


class _TorchFormulas(TorchDispatchMode):
    """Multiply-adds of every operator torch's flop_counter has a formula for (2 FLOPs each)."""

    def __init__(self):
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.flops += formula(*args, **(kwargs or {}), out_val=out)
        return out


def test_xlnet_default_mask_is_what_a_tokenizer_gives(tmp_path, capsys):
    """XLNet computes ``1.0 - attention_mask``: netscope's bool mask made its forward raise (exit 3) on inputs
    netscope built itself. The default mask is now int64 ones, as tokenizers return it."""
    config = transformers.XLNetConfig(vocab_size=100, d_model=32, n_layer=2, n_head=2, d_head=16, d_inner=64,
                                      architectures=["XLNetModel"])
    config.save_pretrained(tmp_path)
    spec = f"hf:{tmp_path / 'config.json'}"
    assert main(["summary", spec, "-q"]) == 0, capsys.readouterr().err
    args, kwargs = resolve_model(spec).inputs.build("cpu")
    mask = kwargs["attention_mask"]
    assert mask.dtype == torch.int64 and bool((mask == 1).all()) and mask.shape == args[0].shape
    torch.manual_seed(0)
    oracle = transformers.XLNetModel(config).eval()
    ids = torch.randint(0, config.vocab_size, tuple(args[0].shape))
    counter = _TorchFormulas()
    with torch.no_grad(), counter:
        oracle(ids, attention_mask=torch.ones_like(ids))
    report = netscope.summary(oracle, input_data=(tuple(args), kwargs), audit_names=False)
    assert not report.partial, report.uncounted_ops()
    assert report.totals.total_macs == counter.flops // 2 > 0
    assert report.totals.total_params == sum(p.numel() for p in oracle.parameters())
