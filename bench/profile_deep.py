"""Where one ``netscope.summary(model, input_data=x).render()`` spends its time on a deep model, by phase.

    python bench/profile_deep.py                 # 4000 x (Linear, ReLU): 12,001 modules
    python bench/profile_deep.py --blocks 1000 --repeats 9 --cpu

Each phase is timed by wrapping the function that does it (restored afterwards); the figure is the median
over ``--repeats`` runs after one warm-up, in ms and in microseconds per module. Phases nest: the trace
contains the model-state guard, the forward pass and the row building. ``--cpu`` uses process time, which
is steadier than wall time on a shared machine.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import statistics
import sys
import time
from collections import defaultdict


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cpu", action="store_true", help="process time instead of wall time")
    parser.add_argument("--min", action="store_true", help="the fastest run instead of the median (steadier on a busy machine)")
    options = parser.parse_args(argv)

    import torch
    import torch.nn as nn

    import netscope
    import netscope.api as api
    import netscope.report as report
    import netscope.run.trace as trace

    torch.set_num_threads(1)
    clock = time.process_time if options.cpu else time.perf_counter
    model = nn.Sequential(*[nn.Sequential(nn.Linear(64, 64), nn.ReLU()) for _ in range(options.blocks)]).eval()
    x = torch.randn(1, 64)
    modules = sum(1 for _ in model.modules())
    spent = defaultdict(float)

    def timed(fn, label):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            start = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[label] += clock() - start
        return wrapper

    def timed_context(fn, label):
        @contextlib.contextmanager
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            start = clock()
            with fn(*args, **kwargs) as value:
                spent[label + " (enter)"] += clock() - start
                yield value
                start = clock()
            spent[label + " (exit)"] += clock() - start
        return wrapper

    patches = [(api, "run_summary", timed, "summary"), (api, "prepared", timed_context, "prepare"),
               (trace, "_run", timed, "  trace"), (trace, "preserved_model", timed_context, "    model-state guard"),
               (trace, "_build_result", timed, "    rows"), (api, "compute_totals", timed, "  totals"),
               (api, "_formula_checks", timed, "  formula checks"), (api, "_naming_findings", timed, "  naming"),
               (api, "owned_params", timed, "  owners"), (report.Report, "render", timed, "render")]
    originals = [(owner, name, getattr(owner, name)) for owner, name, _, _ in patches]
    runs = defaultdict(list)
    try:
        for owner, name, wrap, label in patches:
            setattr(owner, name, wrap(getattr(owner, name), label))
        for repeat in range(options.repeats + 1):
            spent.clear()
            start = clock()
            netscope.summary(model, input_data=x).render()
            spent["total"] = clock() - start
            if repeat:  # the first run warms up
                for label, seconds in spent.items():
                    runs[label].append(seconds)
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)
    print(f"{options.blocks} blocks, {modules:,} modules, {'fastest' if options.min else 'median'} of {options.repeats} "
          f"({'process' if options.cpu else 'wall'} time)")
    for label in ["total", "summary", "prepare (enter)", "  trace", "    model-state guard (enter)",
                  "    model-state guard (exit)", "    rows", "  totals", "  formula checks", "  naming", "  owners",
                  "prepare (exit)", "render"]:
        if label in runs:
            seconds = (min if options.min else statistics.median)(runs[label])
            print(f"{label:32s} {seconds * 1e3:8.1f} ms {seconds / modules * 1e6:7.2f} us/module")
    return 0


if __name__ == "__main__":
    sys.exit(main())
