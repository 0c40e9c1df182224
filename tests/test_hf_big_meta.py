"""A Llama-3-70B-shaped ``hf:`` config (grouped-query attention, 128k vocabulary, untied head) far beyond this
machine's memory, on ``--device meta`` and ``--device auto``: parameters equal the architecture's formula,
multiply-adds the formula of its matmuls, and the run allocates no weights (peak RSS of the child process).
Oracles: the formulas written below from the architecture, and the OS's peak RSS."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("transformers")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPE = dict(hidden_size=8192, intermediate_size=28672, num_hidden_layers=80, num_attention_heads=64,
             num_key_value_heads=8, vocab_size=128256)
SEQ = 16


def _parameters(h, i, layers, heads, kv_heads, vocab):
    head_dim = h // heads
    attention = 2 * h * h + 2 * h * kv_heads * head_dim  # q and o; k and v (grouped)
    mlp = 3 * h * i  # gate, up, down
    return 2 * vocab * h + layers * (attention + mlp + 2 * h) + h  # embedding + head, 2 norms per layer, final norm


def _macs(h, i, layers, heads, kv_heads, vocab, seq):
    head_dim = h // heads
    projections = seq * (2 * h * h + 2 * h * kv_heads * head_dim + 3 * h * i)
    scores = 2 * heads * seq * seq * head_dim  # q @ k^T and attn @ v, dense (as torch's flop_counter)
    return layers * (projections + scores) + seq * h * vocab


# the child's own peak: VmHWM of its process image (ru_maxrss would carry the forked pytest's pages over exec)
_DRIVER = ("import sys\nfrom netscope.cli import main\ncode = main(sys.argv[1:])\n"
           "peak = open('/proc/self/status').read().split('VmHWM:')[1].split()[0]\n"
           "print('peak_kib', peak, file=sys.stderr)\nsys.exit(code)")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="peak RSS read from /proc (Linux)")
@pytest.mark.parametrize("device", ["meta", "auto"])
def test_70b_shape_counts_by_formula_without_allocating(device):
    args = [a for key, value in SHAPE.items() for a in ("-a", f"{key}={value}")]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", _DRIVER, "summary", "hf:llama", *args, "--device", device,
                           "--input", f"1,{SEQ}", "-f", "json", "--depth", "1", "-q"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    peak_kib = int(done.stderr.rsplit("peak_kib", 1)[1].split()[0])
    data = json.loads(done.stdout)
    shape = tuple(SHAPE[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers",
                                     "num_attention_heads", "num_key_value_heads", "vocab_size"))
    assert data["run"]["device"] == "meta"
    assert data["totals"]["total_params"] == _parameters(*shape) == 70_553_706_496
    assert data["totals"]["param_bytes"] == 4 * _parameters(*shape)
    assert data["totals"]["total_macs"] == _macs(*shape, SEQ)
    assert data["partial"] is False
    # 282 GB of float32 weights; the child's peak (torch + transformers imported) stays below one layer's 3.4 GB
    assert peak_kib < 3 * 1024 * 1024, f"peak RSS {peak_kib} KiB"
