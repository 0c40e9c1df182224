"""Cost of receptive-field tracking: the same pass with it on and off, in alternating runs.

    python bench/rf_overhead.py [--repeats 15]

Rows: ResNet-50 (1x3x224x224) and the deep model of bench/run.py (4,000 Linear+ReLU blocks, input
1x64: not spatial, so nothing is tracked), plus a deep conv model (1,000 Conv2d+ReLU blocks on
1x8x16x16) where every operator is tracked. Process CPU time, one thread, median of the repeats.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn as nn
import torchvision

import netscope
import netscope.run.trace as trace_module


def models():
    yield "resnet50", torchvision.models.resnet50().eval(), torch.randn(1, 3, 224, 224)
    yield "deep4000 (Linear, not tracked)", nn.Sequential(
        *[nn.Sequential(nn.Linear(64, 64), nn.ReLU()) for _ in range(4000)]), torch.randn(1, 64)
    yield "deep conv 1000", nn.Sequential(
        *[nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()) for _ in range(1000)]), torch.randn(1, 8, 16, 16)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=15)
    options = parser.parse_args()
    torch.set_num_threads(1)
    for name, model, x in models():
        for label, run in (("trace", lambda flag: trace_module.trace(model, ((x,), {}), receptive_field=flag)),
                           ("full report", lambda flag: str(netscope.summary(model, input_data=x,
                                                                             receptive_field=flag)))):
            times = {True: [], False: []}
            with torch.no_grad():
                for i in range(options.repeats + 1):
                    for flag in (True, False) if i % 2 else (False, True):
                        start = time.process_time()
                        run(flag)
                        if i:  # the first round warms up
                            times[flag].append(time.process_time() - start)
            on, off = statistics.median(times[True]), statistics.median(times[False])
            print(f"{name:32s} {label:12s} on {on:.4f} s  off {off:.4f} s  overhead {100 * (on / off - 1):+.1f}%")


if __name__ == "__main__":
    main()
