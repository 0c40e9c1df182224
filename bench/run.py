"""netscope vs torchinfo (and the checkpoint listers' own tools), side by side, in one run.

    python bench/run.py                      # every scenario (several minutes on 2 CPU cores)
    python bench/run.py --only cnn deep      # some of them: cnn deep cuda llama checkpoint remap help step
    python bench/run.py --quick              # fewer repeats, smaller sizes (a smoke test)
    python bench/run.py --threads 1          # torch.set_num_threads / OMP_NUM_THREADS in every child

Every measurement runs in a fresh child process. Command-line rows run the real CLI
(``python -m netscope ...``, stdout to /dev/null) as that process; API rows run a child of this script
that warms up once, repeats, and prints one JSON line. Each column has one meaning:

- ``warm s``, ``warm cpu s``: in-process median wall / CPU (``process_time``) time of one call, over
  ``--repeats`` calls after one warm-up call (API rows only; imports and the first call not included).
- ``process s``: wall time of a whole process, start to exit, timed by this script around the child
  (``Popen`` to ``os.wait4``): interpreter start, imports, the work, output and interpreter exit, as a
  user pays it; median over ``--repeats`` fresh processes (CLI rows and their peers only).
- ``process cpu s``: user + system CPU of that process as the kernel reports it (``wait4`` rusage), median.
- ``peak RSS MiB (wait4)``: the child process's peak resident set as the kernel reports it
  (``ru_maxrss`` from ``wait4``), the largest over the repeats; shown for rows whose child ran that row
  alone (not for the tool rows of ``cnn``/``deep``, which share one child).
- ``RSS growth MiB (VmHWM)``: a peak inside a child, over the child's RSS just before (``VmHWM``
  restarted through ``/proc/self/clear_refs``): per tool for ``cnn``/``deep`` (torchinfo and netscope run
  in turns in one child, so that load hits both alike), and the real CPU training step of ``step``.
- ``ratio``: the row's judged figure divided by the same figure of the row named in ``ratio to``
  (``warm s`` for API rows, ``process s`` for CLI rows), measured in this same run.
- ``target``, ``met``: the goal for the row and whether this run met it (goals, not assertions).

torchinfo is measured twice: as it runs by default, and with Python's cyclic garbage collector paused
around its call (``gc.disable()``, restored after), since netscope pauses the collector for its own
bookkeeping. The ``<= N x torchinfo`` targets use the gc-paused torchinfo (the stricter comparison);
the note gives the ratio to default torchinfo too. Tools measured in turns in one child start each timed
call after a ``gc.collect()`` (untimed), so that no tool's call pays for collecting the cyclic garbage the
previous tool left behind.

A scenario that crashes fails the run: its error and the child's stderr tail are printed after the
table and the exit status is 1. Only a missing prerequisite (no CUDA) is a skip, printed as such.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LLAMA = os.path.join(HERE, "llama.py")
TORCHINFO_COLUMNS = ("input_size", "output_size", "num_params", "mult_adds")  # netscope's default columns

CHILDREN: Dict[str, Callable[[argparse.Namespace], dict]] = {}


def child(name: str):
    """Register a measurement that runs inside a child process."""

    def decorator(fn):
        if name in CHILDREN:
            raise ValueError(f"child measurement {name!r} registered twice")
        CHILDREN[name] = fn
        return fn

    return decorator


# ------------------------------------------------------------------ measuring (child side)

def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM), in MiB."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def timed(fn: Callable[[], object], repeats: int, *, sync: Optional[Callable[[], None]] = None) -> dict:
    """Warm up once (timed as ``first_seconds``), then the median wall and CPU seconds of ``repeats`` calls."""
    first = time.perf_counter()
    fn()
    if sync:
        sync()
    first = time.perf_counter() - first
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        if sync:
            sync()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return {"seconds": statistics.median(walls), "cpu_seconds": statistics.median(cpus), "first_seconds": first}


def _setup_torch(args):
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    return torch


def _vision_model(name: str):
    import torchvision

    return torchvision.models.get_model(name, weights=None)


def _deep_model(blocks: int):
    import torch.nn as nn

    return nn.Sequential(*[nn.Sequential(nn.Linear(64, 64), nn.ReLU()) for _ in range(blocks)])


def _model_and_input(args):
    torch = _setup_torch(args)
    if args.model.startswith("deep"):
        model, x = _deep_model(int(args.model[4:])), torch.randn(1, 64)
    else:
        model, x = _vision_model(args.model), torch.randn(1, 3, 224, 224)
    device = torch.device(args.device)
    return torch, model.to(device).eval(), x.to(device), device


def reset_peak_rss() -> bool:
    """Restart VmHWM from the current RSS (Linux: ``5`` into /proc/self/clear_refs); False when unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def timed_round_robin(fns: Dict[str, Callable[[], object]], repeats: int, *,
                      sync: Optional[Callable[[], None]] = None) -> Dict[str, dict]:
    """Like :func:`timed` for several functions, run in turns so that machine load hits all alike.

    Each function's own peak RSS (VmHWM restarted just before its warm-up) is in ``peak_rss_mb``.
    """
    results: Dict[str, dict] = {}
    for name, fn in fns.items():
        supported = reset_peak_rss()
        before = current_rss_mb()
        fn()
        if sync:
            sync()
        results[name] = {"walls": [], "cpus": [],
                         "peak_rss_mb": peak_rss_mb() if supported else None,
                         "peak_rss_increase_mb": (peak_rss_mb() - before) if supported else None}
    for _ in range(repeats):
        for name, fn in fns.items():
            gc.collect()  # the previous tool's garbage is collected here, untimed, not during this tool's call
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            if sync:
                sync()
            results[name]["walls"].append(time.perf_counter() - wall)
            results[name]["cpus"].append(time.process_time() - cpu)
    for entry in results.values():
        entry["seconds"] = statistics.median(entry.pop("walls"))
        entry["cpu_seconds"] = statistics.median(entry.pop("cpus"))
    return results


@child("tools")
def measure_tools(args) -> dict:
    """Bare forward, torchinfo (with mult-adds) and netscope (full report, and its parts), in turns."""
    import torchinfo

    import netscope
    from netscope.collector import paused_gc

    torch, model, x, device = _model_and_input(args)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None

    def bare():
        with torch.no_grad():
            model(x)

    def torchinfo_report():
        return str(torchinfo.summary(model, input_data=x, col_names=TORCHINFO_COLUMNS, verbose=0, device=device))

    def torchinfo_gc_paused():
        with paused_gc():
            return torchinfo_report()

    fns = {
        "bare forward": bare,
        "torchinfo": torchinfo_report,
        "torchinfo (gc paused)": torchinfo_gc_paused,
        "netscope": lambda: netscope.summary(model, input_data=x).render(),
        "trace+totals": lambda: netscope.summary(model, input_data=x, checks=False, audit_names=False),
        "+checks": lambda: netscope.summary(model, input_data=x, audit_names=False),
        "+naming": lambda: netscope.summary(model, input_data=x),
    }
    result = {"timings": timed_round_robin(fns, args.repeats, sync=sync)}
    if device.type == "cuda":
        for name in ("torchinfo", "netscope"):
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
            fns[name]()
            torch.cuda.synchronize(device)
            result["timings"][name]["cuda_peak_mb"] = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    stats = torchinfo.summary(model, input_data=x, col_names=TORCHINFO_COLUMNS, verbose=0, device=device)
    report = netscope.summary(model, input_data=x)
    result["macs"] = {"torchinfo": int(stats.total_mult_adds), "netscope": int(report.totals.total_macs)}
    result["rows"] = len(report.layers)
    result["modules"] = sum(1 for _ in model.modules())
    return result


@child("slope")
def measure_slope(args) -> dict:
    """netscope on deep models of several sizes, measured in turns: seconds per module."""
    import netscope

    torch = _setup_torch(args)
    device = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
    models = {blocks: (_deep_model(blocks).to(device), torch.randn(1, 64, device=device)) for blocks in args.sizes}
    fns = {}
    for blocks, (model, x) in models.items():
        fns[f"full {blocks}"] = lambda model=model, x=x: netscope.summary(model, input_data=x).render()
        fns[f"core {blocks}"] = lambda model=model, x=x: netscope.summary(model, input_data=x, checks=False,
                                                                          audit_names=False)
    timings = timed_round_robin(fns, args.repeats, sync=sync)
    points = [{"blocks": blocks, "modules": sum(1 for _ in model.modules()),
               "seconds": timings[f"full {blocks}"]["seconds"], "core_seconds": timings[f"core {blocks}"]["seconds"]}
              for blocks, (model, _) in models.items()]
    return {"points": points}


@child("remap")
def measure_remap(args) -> dict:
    """netscope.remap on a synthetic state dict whose names share nothing with the model's."""
    import random

    import torch
    import torch.nn as nn

    import netscope
    from netscope.run.no_memory import empty_weights

    layers = args.keys // 2
    rng = random.Random(0)
    dims = [(rng.randint(1, 512), rng.randint(1, 512)) for _ in range(layers)]
    with empty_weights():
        model = nn.ModuleList(nn.Linear(i, o) for i, o in dims)
    state_dict = {}
    for n, (i, o) in enumerate(dims):  # same order and shapes, a different hierarchy and naming
        prefix = f"stage{n // 1000}.unit{n % 1000}.dense"
        state_dict[prefix + ".weight"] = torch.empty(o, i, device="meta")
        state_dict[prefix + ".bias"] = torch.empty(o, device="meta")
    reports = []

    def run():
        reports.append(netscope.remap(state_dict, model, structural=True)[1])

    result = timed(run, args.repeats)
    report = reports[-1]
    result["coverage"] = float(report.coverage.fraction)
    result["keys"] = len(state_dict)
    return result


def _remap_case_layouts(case: str, keys: int):
    """(source, target, rules, expected) TensorLayouts for the harder structural cases of issue 14."""
    import random

    from netscope.records import TensorMeta
    from netscope.remapping.sides import TensorLayout

    if case == "moe":  # gate_proj/up_proj/down_proj -> w1/w3/w2 in every expert: 130 layers x 256 experts x 3
        def moe(names):
            tensors = {}
            for layer in range(130):
                for expert in range(256):
                    for name in names:
                        shape = (16, 8) if name in ("gate_proj", "up_proj", "w1", "w3") else (8, 16)
                        tensors[f"model.layers.{layer}.mlp.experts.{expert}.{name}.weight"] = TensorMeta(shape, "float32")
            return TensorLayout(tensors)

        return moe(["gate_proj", "up_proj", "down_proj"]), moe(["w1", "w2", "w3"]), ()
    rng = random.Random(0)
    layers = keys // 2
    dims = [(rng.randint(1, 512), rng.randint(1, 512)) for _ in range(layers)]
    target = {}
    for n, (i, o) in enumerate(dims):
        target[f"{n}.weight"] = TensorMeta((o, i), "float32")
        target[f"{n}.bias"] = TensorMeta((o,), "float32")
    order = list(range(layers))
    if case == "dropped":  # the checkpoint lacks one layer in the middle
        order.pop(layers // 2)
    elif case == "swapped":  # two siblings declared in the other order
        order[layers // 2], order[layers // 2 + 1] = order[layers // 2 + 1], order[layers // 2]
    source = {}
    for n in order:
        i, o = dims[n]
        prefix = f"stage{n // 1000}.unit{n % 1000}.dense"
        source[prefix + ".weight"] = TensorMeta((o, i), "float32")
        source[prefix + ".bias"] = TensorMeta((o,), "float32")
    return TensorLayout(source), TensorLayout(target), ()


@child("remap_case")
def measure_remap_case(args) -> dict:
    """plan_mapping on metadata for a dropped layer, swapped siblings or the MoE rename (plus its one rule)."""
    import netscope.remapping as remapping

    source, target, _ = _remap_case_layouts(args.case, args.keys)
    results = [None]

    def run():
        results[0] = None  # the previous plan is not kept alive during the next run (peak RSS = one plan)
        results[0] = remapping.plan_mapping(source, target)

    result = timed(run, args.repeats)
    plan, coverage = results[0]
    counts = plan.counts()
    result.update(keys=len(source.tensors), coverage=float(coverage.fraction), rules=len(plan.rules),
                  ambiguous=counts["ambiguous"], loaded=sum(1 for d in plan.decisions if d.loads))
    if args.case == "moe":
        results[0] = plan = None
        start = time.perf_counter()
        plan, coverage = remapping.plan_mapping(source, target, rules=["gate_proj=w1"])
        result.update(rule_seconds=time.perf_counter() - start, rule_coverage=float(coverage.fraction),
                      rule_rules=len(plan.rules))
    return result


@child("help_imports")
def measure_help_imports(args) -> dict:
    from netscope.cli import main

    with contextlib.redirect_stdout(io.StringIO()):
        try:
            main(["--help"])
        except SystemExit:
            pass
    return {"torch_imported": "torch" in sys.modules}


@child("make_checkpoint")
def make_checkpoint(args) -> dict:
    """Write one state dict as ``--path``.pt (torch.save zip) and ``--path``.safetensors: ``--case llama``, a
    LLaMA-shaped float32 model of about ``--gigabytes`` GB (uninitialised data; 4 GB: 4 layers, 39 keys), or
    ``--case many``, ``--keys`` small tensors (a (4, 4) weight and a (4,) bias per block)."""
    import torch
    from safetensors.torch import save_file

    if args.case == "llama":
        from netscope.run.no_memory import empty_weights

        sys.path.insert(0, HERE)
        from llama import LlamaConfig, llama_7b, parameter_count  # noqa: E402

        head = parameter_count(LlamaConfig(num_layers=0))
        per_layer = parameter_count(LlamaConfig(num_layers=1)) - head
        layers = max(1, round((args.gigabytes * 1e9 / 4 - head) / per_layer))
        with empty_weights():
            shapes = {k: (tuple(v.shape), v.dtype) for k, v in llama_7b(num_layers=layers).state_dict().items()}
        state_dict = {k: torch.empty(shape, dtype=dtype) for k, (shape, dtype) in shapes.items()}
    else:
        layers, state_dict = 0, {}
        for n in range(args.keys // 2):
            prefix = f"model.layers.{n // 10}.block{n % 10}.proj"
            state_dict[prefix + ".weight"] = torch.zeros(4, 4)
            state_dict[prefix + ".bias"] = torch.zeros(4)
    torch.save(state_dict, args.path + ".pt")
    save_file(state_dict, args.path + ".safetensors")
    return {"layers": layers, "keys": len(state_dict),
            "bytes": {ext: os.path.getsize(args.path + ext) for ext in (".pt", ".safetensors")}}


def _step_model(name: str):
    """(model, input) of a step-peak row: torchvision names at batch 8 (224x224), or ``gpt2`` (124M, 2 x 512)."""
    import torch

    if name == "gpt2":
        import transformers

        return transformers.GPT2LMHeadModel(transformers.GPT2Config()), torch.randint(0, 50257, (2, 512))
    return _vision_model(name), torch.randn(8, 3, 224, 224)


@child("step_real")
def measure_step_real(args) -> dict:
    """A real CPU training step (AdamW; the second step, once its state exists) and netscope's estimate
    of its peak: the real peak is the growth of VmHWM over the RSS before the model was built."""
    torch = _setup_torch(args)
    import netscope

    reset = reset_peak_rss()
    baseline = current_rss_mb()
    torch.manual_seed(0)
    model, x = _step_model(args.model)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters())

    def one_step():
        out = model(x)
        (out.logits if hasattr(out, "logits") else out).sum().backward()
        del out
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    real = timed(one_step, args.repeats)  # the warm-up step creates AdamW's state; the timed ones hold it
    measured_mb = peak_rss_mb() - baseline
    reports = []
    plan = timed(lambda: reports.append(netscope.step(model, input_data=x, optimizer="adamw")), args.repeats)
    t = reports[-1].totals
    return {"measured_mb": measured_mb, "estimate_mb": t.peak_bytes / 2**20, "real_step_seconds": real["seconds"],
            "real_step_cpu_seconds": real["cpu_seconds"], "plan_seconds": plan["seconds"],
            "plan_cpu_seconds": plan["cpu_seconds"], "hwm_reset": reset,
            "parts_mb": {k: getattr(t, k) / 2**20 for k in ("param_bytes", "grad_bytes", "optimizer_bytes",
                                                             "activation_bytes")}}


@child("step_fsdp_tracker")
def measure_step_fsdp_tracker(args) -> dict:
    """netscope's per-rank FSDP2 peak beside torch's FSDPMemTracker: a small LLaMA under a real
    ``fully_shard`` (per block + root) on a fake process group of 4 ranks, fake tensors, 2 AdamW steps."""
    torch = _setup_torch(args)
    import torch.distributed as dist
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.fsdp2_mem_tracker import FSDPMemTracker
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.testing._internal.distributed.fake_pg import FakeStore

    import netscope

    sys.path.insert(0, HERE)
    from llama import LlamaConfig, LlamaForCausalLM  # noqa: E402

    world, config = 4, LlamaConfig(vocab_size=8000, hidden_size=512, num_layers=4, num_heads=8, num_kv_heads=8,
                                   intermediate_size=1408)
    with torch.device("meta"):
        reference = LlamaForCausalLM(config)
    x = torch.randint(0, config.vocab_size, (2, 256))
    reports = []
    plan = timed(lambda: reports.append(netscope.step(reference, input_data=x, fsdp=world)), args.repeats)
    estimate = reports[-1].totals.peak_bytes
    dist.init_process_group("fake", rank=0, world_size=world, store=FakeStore())
    try:
        mesh = init_device_mesh("cpu", (world,))
        with FakeTensorMode():
            model = LlamaForCausalLM(config)
            for layer in model.model.layers:
                fully_shard(layer, mesh=mesh)
            fully_shard(model, mesh=mesh)
            optimizer = torch.optim.AdamW(model.parameters())
            inputs = torch.randint(0, config.vocab_size, (2, 256))
            tracker = FSDPMemTracker(model, optimizer)
            tracker.track_inputs((inputs,))
            with tracker:
                for index in range(2):
                    if index:
                        tracker.reset_mod_stats()  # it keeps per-module stats of one iteration only
                    model(inputs).sum().backward()
                    optimizer.step()
                    optimizer.zero_grad()
            tracked = max(snap["Total"] for snap in tracker.get_tracker_snapshot("peak").values())
    finally:
        dist.destroy_process_group()
    return {"estimate_mb": estimate / 2**20, "tracker_mb": tracked / 2**20, "plan_seconds": plan["seconds"],
            "plan_cpu_seconds": plan["cpu_seconds"]}


def child_main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", required=True, choices=sorted(CHILDREN))
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--sizes", type=int, nargs="*", default=[1000, 2000, 4000, 8000])
    parser.add_argument("--argv", default="[]")
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--case", default="moe", choices=["dropped", "swapped", "moe", "llama", "many"])
    parser.add_argument("--path", default="")
    parser.add_argument("--gigabytes", type=float, default=4.0)
    args = parser.parse_args(argv)
    result = CHILDREN[args.child](args)
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    return 0


# ------------------------------------------------------------------ orchestrating (parent side)

# the peers of `netscope keys`: the formats' own readers, listing the key names (run as `python -c CODE FILE`)
SAFE_OPEN_KEYS = ("import sys\nfrom safetensors import safe_open\n"
                  "with safe_open(sys.argv[1], framework='numpy') as f:\n    print('\\n'.join(f.keys()))")
TORCH_LOAD_KEYS = ("import sys, torch\n"
                   "print('\\n'.join(torch.load(sys.argv[1], mmap=True, weights_only=True)))")


class ScenarioFailed(Exception):
    """A child process exited with a status its row does not expect; the message ends with its stderr."""


class Skipped(Exception):
    """A scenario's stated prerequisite is missing (no CUDA): a skip, not a failure."""


@dataclass(frozen=True)
class Process:
    """One child process as the kernel saw it."""

    wall_s: float  # Popen to wait4, timed here
    cpu_s: float  # ru_utime + ru_stime
    peak_rss_mib: float  # ru_maxrss (KiB on Linux)
    exit_code: int
    stdout: str  # "" when stdout went to /dev/null
    stderr: str


# Linux carries a process's peak RSS across fork and exec: a child forked from this (torch-importing)
# script would report at least this script's RSS. So each child is started by a tiny launcher (``python -S``,
# about 10 MiB, no imports beyond os/json/time), which times it and reports its rusage as one JSON line.
LAUNCHER = """
import json, os, sys, time
out, err, *cmd = sys.argv[1:]
actions = [(os.POSIX_SPAWN_OPEN, 1, out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
           (os.POSIX_SPAWN_OPEN, 2, err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)]
start = time.perf_counter()
pid = os.posix_spawn(cmd[0], cmd, os.environ, file_actions=actions)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - start
print(json.dumps([wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)]))
"""


def run_process(cmd: List[str], *, env: Dict[str, str], keep_stdout: bool) -> Process:
    """Run ``cmd`` to its end: wall time from start to exit and the child's own rusage (``os.wait4``), taken
    by the launcher; ``cmd[0]`` must be an absolute path."""
    with tempfile.TemporaryDirectory(prefix="netscope-bench-child-") as folder:
        out = os.path.join(folder, "stdout") if keep_stdout else os.devnull
        err = os.path.join(folder, "stderr")
        launcher = subprocess.run([sys.executable, "-S", "-c", LAUNCHER, out, err, *cmd], env=env, cwd=ROOT,
                                  capture_output=True, text=True)
        if launcher.returncode != 0:
            raise ScenarioFailed(f"the launcher of {' '.join(cmd)} failed: {_tail(launcher.stderr)}")
        wall, cpu, rss, code = json.loads(launcher.stdout)
        with open(err, errors="replace") as handle:
            stderr = handle.read()
        stdout = ""
        if keep_stdout:
            with open(out, errors="replace") as handle:
                stdout = handle.read()
        return Process(wall, cpu, rss, code, stdout, stderr)


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:]) or "(no stderr)"


@dataclass(frozen=True)
class ProcessRow:
    """``--repeats`` fresh processes of one command line: medians of wall and CPU, the largest peak RSS."""

    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    exit_code: int
    stderr: str


class Bench:
    def __init__(self, options):
        self.options = options
        self.rows: List[dict] = []

    def env(self) -> Dict[str, str]:
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        if self.options.threads:
            env["OMP_NUM_THREADS"] = str(self.options.threads)
        return env

    def spawn(self, name: str, **params) -> dict:
        """Run one child measurement; its JSON result, plus ``process`` (the child as the kernel saw it)."""
        cmd = [sys.executable, os.path.abspath(__file__), "--child", name]
        params.setdefault("repeats", self.options.repeats)
        if self.options.threads:
            params.setdefault("threads", self.options.threads)
        for key, value in params.items():
            flag = "--" + key.replace("_", "-")
            cmd += [flag, *map(str, value)] if isinstance(value, (list, tuple)) else [flag, str(value)]
        done = run_process(cmd, env=self.env(), keep_stdout=True)
        if done.exit_code != 0:
            raise ScenarioFailed(f"child measurement {name!r} {params} exited with status {done.exit_code}; "
                                 f"its stderr ends:\n{_tail(done.stderr)}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        result["process"] = done
        return result

    def processes(self, cmd: List[str], *, expect=(0,), repeats: Optional[int] = None) -> ProcessRow:
        """``cmd`` as ``repeats`` fresh processes, stdout to /dev/null; an unexpected exit status fails the scenario."""
        runs = []
        for _ in range(repeats or self.options.repeats):
            done = run_process(cmd, env=self.env(), keep_stdout=False)
            if done.exit_code not in expect:
                raise ScenarioFailed(f"{' '.join(cmd)} exited with status {done.exit_code} (expected "
                                     f"{' or '.join(map(str, expect))}); its stderr ends:\n{_tail(done.stderr)}")
            runs.append(done)
        return ProcessRow(statistics.median(r.wall_s for r in runs), statistics.median(r.cpu_s for r in runs),
                          max(r.peak_rss_mib for r in runs), runs[-1].exit_code, runs[-1].stderr)

    def cli(self, argv: List[str], **kwargs) -> ProcessRow:
        """The real command line, as a user runs it: ``python -m netscope ARGV > /dev/null``."""
        return self.processes([sys.executable, "-m", "netscope", *argv], **kwargs)

    def add(self, scenario: str, case: str, tool: str, *, warm=None, warm_cpu=None, process: Optional[ProcessRow] = None,
            rss=None, growth=None, ratio=None, ratio_to: str = "", target: str = "", met: Optional[bool] = None,
            note: str = "") -> None:
        row = {"scenario": scenario, "case": case, "tool": tool, "warm_s": warm, "warm_cpu_s": warm_cpu,
               "process_s": process.wall_s if process else None, "process_cpu_s": process.cpu_s if process else None,
               "peak_rss_mib": process.peak_rss_mib if process else rss, "rss_growth_mib": growth,
               "ratio": ratio, "ratio_to": ratio_to, "target": target,
               "met": "" if met is None else ("yes" if met else "NO"), "note": note}
        self.rows.append(row)
        if not self.options.json_only:
            shown = ", ".join(f"{k} {v:.3f}" for k, v in row.items() if isinstance(v, float))
            sys.stderr.write(f"  {scenario} | {case} | {tool}: {shown} {note}\n")

    # -- 1 / 3: vision models, torchinfo vs netscope
    def vision(self, device: str, limit: float, scenario: str) -> None:
        published = {"resnet50": 4.089e9, "convnext_base": 15.355e9}  # torchvision weights meta "_ops" (GMACs)
        for model in ("resnet50", "convnext_base"):
            r = self.spawn("tools", model=model, device=device)
            macs = r["macs"]
            self._compare(scenario, f"{model} b1 224", r, limit,
                          extra=f"macs: netscope {macs['netscope'] / 1e9:.3f}G, torchinfo {macs['torchinfo'] / 1e9:.3f}G, "
                                f"torchvision {published[model] / 1e9:.3f}G")

    def _compare(self, scenario, case, r, limit, extra="", per_module_limit=None):
        t = r["timings"]
        ti, paused, ns, bare = t["torchinfo"], t["torchinfo (gc paused)"], t["netscope"], t["bare forward"]

        def cuda(entry):
            return f"; CUDA peak {entry['cuda_peak_mb']:.0f} MiB" if "cuda_peak_mb" in entry else ""

        def add(tool, entry, **kwargs):
            self.add(scenario, case, tool, warm=entry["seconds"], warm_cpu=entry["cpu_seconds"],
                     growth=entry.get("peak_rss_increase_mb"), **kwargs)

        add("bare forward", bare)
        add("torchinfo", ti, note=f"{ti['seconds'] / bare['seconds']:.1f}x bare forward{cuda(ti)}")
        add("torchinfo (gc paused)", paused, ratio=paused["seconds"] / ti["seconds"], ratio_to="torchinfo",
            note="gc.disable() around the call, restored after")
        ratio = ns["seconds"] / paused["seconds"]
        core, checks, naming = t["trace+totals"]["seconds"], t["+checks"]["seconds"], t["+naming"]["seconds"]
        shares = (f"parts: trace+totals {core:.3f}s, checks {checks - core:+.3f}s, naming {naming - checks:+.3f}s, "
                  f"render {ns['seconds'] - naming:+.3f}s")
        per_module = ns["seconds"] / r["modules"]
        target, met = f"<= {limit}x torchinfo (gc paused)", ratio <= limit
        if per_module_limit is not None:
            target += f", <= {per_module_limit * 1e6:.0f} us/module"
            met = met and per_module <= per_module_limit
        add("netscope (full report)", ns, ratio=ratio, ratio_to="torchinfo (gc paused)", target=target, met=met,
            note=f"{ratio * paused['seconds'] / ti['seconds']:.2f}x default torchinfo; {per_module * 1e6:.1f} us/module "
                 f"({r['modules']:,} modules); {ns['seconds'] / bare['seconds']:.1f}x bare forward; {shares}; "
                 f"cpu ratio {ns['cpu_seconds'] / paused['cpu_seconds']:.2f}{cuda(ns)}" + (f"; {extra}" if extra else ""))
        core_ratio = core / paused["seconds"]
        add("netscope (trace+totals)", t["trace+totals"], ratio=core_ratio, ratio_to="torchinfo (gc paused)",
            note="no formula checks, no naming audit, not rendered")

    # -- 2 / 3: the deep model and its slope
    def deep(self, device: str, limit: float, scenario: str) -> None:
        r = self.spawn("tools", model="deep4000", device=device, repeats=max(1, self.options.repeats - 2))
        self._compare(scenario, "4000 x (Linear, ReLU), 12,001 modules", r, limit, per_module_limit=20e-6)
        sizes = [1000, 2000] if self.options.quick else [1000, 2000, 4000, 8000]
        slope = self.spawn("slope", device=device, sizes=sizes, repeats=max(1, self.options.repeats - 2))
        points = slope["points"]
        first = points[0]["seconds"] / points[0]["modules"]
        for point in points:
            per = point["seconds"] / point["modules"]
            core = point["core_seconds"] / point["modules"]
            self.add(scenario, f"slope: {point['blocks']} blocks ({point['modules']} modules)", "netscope (full report)",
                     warm=point["seconds"], ratio=per / first, ratio_to=f"per module at {points[0]['blocks']} blocks",
                     note=f"{per * 1e6:.1f} us/module full, {core * 1e6:.1f} us/module trace+totals")
        flat = max(p["seconds"] / p["modules"] for p in points) / min(p["seconds"] / p["modules"] for p in points)
        self.add(scenario, "slope: max/min time per module", "netscope", ratio=flat, ratio_to="min per module",
                 target="flat (~1.0)", met=flat <= 1.3, note="linear scaling when near 1")

    # -- 4: LLaMA shapes on meta, the real command line
    def llama(self) -> None:
        for name, seconds_limit, rss_limit in (("llama_7b", 10, 1536), ("llama_70b", 60, 3072)):
            argv = ["summary", f"{LLAMA}:{name}", "--device", "meta", "--input", "1,128:int64", "-f", "csv", "--quiet"]
            r = self.cli(argv, repeats=max(1, self.options.repeats - 2))
            met = r.wall_s < seconds_limit and r.peak_rss_mib < rss_limit
            self.add("4 no-memory LLaMA", f"{name} --device meta, input 1x128", "netscope summary", process=r,
                     target=f"< {seconds_limit} s, < {rss_limit / 1024:.1f} GiB", met=met)

    # -- 8: training step: estimate vs a real CPU step, and a 7B plan on 8 FSDP ranks
    def step(self) -> None:
        models = ("resnet18",) if self.options.quick else ("resnet50", "vit_b_16", "gpt2")
        for model in models:
            r = self.spawn("step_real", model=model, repeats=1)  # a warm-up call, then one timed
            ratio = r["estimate_mb"] / r["measured_mb"] if r["measured_mb"] > 0 else None
            parts = ", ".join(f"{k.removesuffix('_bytes')} {v:.0f}" for k, v in r["parts_mb"].items())
            case = f"{model} {'2x512' if model == 'gpt2' else 'b8 224'} AdamW fp32"
            self.add("8 step", case, "real CPU step", warm=r["real_step_seconds"], warm_cpu=r["real_step_cpu_seconds"],
                     rss=r["process"].peak_rss_mib, growth=r["measured_mb"],
                     note=f"RSS growth over the RSS before the model was built (VmHWM reset: {r['hwm_reset']})")
            self.add("8 step", case, "netscope.step estimate", warm=r["plan_seconds"], warm_cpu=r["plan_cpu_seconds"],
                     ratio=ratio, ratio_to="real CPU step's RSS growth",
                     note=f"estimated peak {r['estimate_mb']:.0f} MiB (MiB: {parts}); ratio = estimate / real RSS "
                          "growth, no target (CPU allocator, oneDNN workspaces and Python objects differ)")
        r = self.spawn("step_fsdp_tracker", repeats=1)  # a warm-up call, then one timed
        self.add("8 step", "small LLaMA (4 x 512, vocab 8000) 2x256, FSDP2 4 ranks", "netscope.step estimate",
                 warm=r["plan_seconds"], warm_cpu=r["plan_cpu_seconds"], ratio=r["estimate_mb"] / r["tracker_mb"],
                 ratio_to="torch FSDPMemTracker peak",
                 note=f"per-rank peak {r['estimate_mb']:.0f} MiB vs torch FSDPMemTracker {r['tracker_mb']:.0f} MiB "
                      "(real fully_shard per block + root on a fake process group)")
        config = os.path.join(ROOT, "tests", "data", "hf_llama_7b_config.json")
        argv = ["step", f"hf:{config}", "--input", "1,2048:int64", "--fsdp", "8", "-f", "csv", "-q"]
        r = self.cli(argv, repeats=1)
        self.add("8 step", "Llama-7B shape, seq 2048, --fsdp 8, fake tensors", "netscope step", process=r,
                 target="< 60 s, < 3 GiB", met=r.wall_s < 60 and r.peak_rss_mib < 3072)

    # -- 5: checkpoints by key count, beside the formats' own readers
    def checkpoint(self) -> None:
        tmp = tempfile.mkdtemp(prefix="netscope-bench-")
        try:
            files = [self.spawn("make_checkpoint", case="llama", path=os.path.join(tmp, "llama"),
                                gigabytes=0.5 if self.options.quick else 4.0, repeats=1),
                     self.spawn("make_checkpoint", case="many", path=os.path.join(tmp, "many"),
                                keys=10_000 if self.options.quick else 100_000, repeats=1)]
            for made, stem in zip(files, ("llama", "many")):
                what = (f"LLaMA-shaped, {made['layers']} layers" if stem == "llama" else "(4, 4) + (4,) per block")
                for ext, peer, peer_name in ((".safetensors", SAFE_OPEN_KEYS, "safe_open(...).keys() (numpy)"),
                                             (".pt", TORCH_LOAD_KEYS, "torch.load(mmap=True, weights_only=True)")):
                    path = os.path.join(tmp, stem + ext)
                    size = made["bytes"][ext]
                    case = (f"{made['keys']:,} keys, {size / 1e9:.2f} GB" if size >= 1e9 else
                            f"{made['keys']:,} keys, {size / 1e6:.1f} MB") + f" {ext} ({what})"
                    theirs = self.processes([sys.executable, "-c", peer, path])
                    ours = self.cli(["keys", path])
                    self.add("5 checkpoint", case, peer_name, process=theirs, note="prints the key names only")
                    self.add("5 checkpoint", case, "netscope keys", process=ours, ratio=ours.wall_s / theirs.wall_s,
                             ratio_to=peer_name, target="<= 1 s", met=ours.wall_s <= 1.0,
                             note="prints key, shape, dtype, elements, size, storage sharing and totals")
            llama = os.path.join(tmp, "llama.pt")
            argv = ["diff", llama, f"{LLAMA}:llama_7b", "--model-arg", f"num_layers={files[0]['layers']}"]
            r = self.cli(argv, expect=(0, 1))  # diff exits 1 when the keys would not load strictly
            self.add("5 checkpoint", f"{files[0]['keys']} keys, {files[0]['bytes']['.pt'] / 1e9:.2f} GB .pt vs the model",
                     "netscope diff", process=r, target="< 2 s, < 300 MiB", met=r.wall_s < 2 and r.peak_rss_mib < 300,
                     note=f"builds the model on meta; exit {r.exit_code}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    # -- 6: structural remap on 100k keys
    def remap(self) -> None:
        keys = 10_000 if self.options.quick else 100_000
        r = self.spawn("remap", keys=keys, repeats=max(1, self.options.repeats - 2))
        self.add("6 remap", f"{r['keys']:,} keys, structural alignment", "netscope.remap", warm=r["seconds"],
                 warm_cpu=r["cpu_seconds"], rss=r["process"].peak_rss_mib, target="< 5 s", met=r["seconds"] < 5,
                 note=f"coverage {r['coverage']:.2%} of model elements matched")
        for case, what in (("dropped", "a layer dropped"), ("swapped", "two siblings swapped"),
                           ("moe", "MoE gate/up/down -> w1/w3/w2")):
            r = self.spawn("remap_case", keys=keys, case=case, repeats=max(1, self.options.repeats - 2))
            rss = r["process"].peak_rss_mib
            met = r["seconds"] < 5 and rss < 1024
            note = f"coverage {r['coverage']:.2%}, {r['ambiguous']} refused as ambiguous, {r['rules']} compact rules"
            if case == "moe":
                met = met and r["rule_seconds"] < 5
                note += (f"; with --rule gate_proj=w1: {r['rule_seconds']:.2f} s, coverage {r['rule_coverage']:.2%}, "
                         f"{r['rule_rules']} rules")
            self.add("6 remap", f"{r['keys']:,} keys, {what}", "plan_mapping", warm=r["seconds"],
                     warm_cpu=r["cpu_seconds"], rss=rss, target="< 5 s, < 1 GiB", met=met, note=note)

    # -- 7: --help
    def help(self) -> None:
        r = self.cli(["--help"])
        imports = self.spawn("help_imports", repeats=1)
        self.add("7 --help", "python -m netscope --help", "netscope", process=r, target="< 0.3 s, no torch import",
                 met=r.wall_s < 0.3 and not imports["torch_imported"], note=f"torch imported: {imports['torch_imported']}")

    def cuda(self) -> None:
        import torch

        if not torch.cuda.is_available():
            raise Skipped("no CUDA device (prerequisite)")
        self.vision("cuda", 0.5, "3 CUDA vision")
        self.deep("cuda", 0.5, "3 CUDA deep")

    def scenarios(self) -> Dict[str, Callable[[], None]]:
        return {
            "cnn": lambda: self.vision("cpu", 1.02, "1 CPU vision"),
            "deep": lambda: self.deep("cpu", 0.25, "2 CPU deep"),
            "cuda": self.cuda,
            "llama": self.llama,
            "checkpoint": self.checkpoint,
            "remap": self.remap,
            "help": self.help,
            "step": self.step,
        }

    def run(self) -> List[str]:
        """Every selected scenario; the failures, each a paragraph naming the scenario (empty: all ran)."""
        failures = []
        for name, scenario in self.scenarios().items():
            if self.options.only and name not in self.options.only:
                continue
            sys.stderr.write(f"[bench] {name}\n")
            try:
                scenario()
            except Skipped as why:
                self.add(name, "-", "-", note=f"skipped: {why}")
            except Exception as exc:  # noqa: BLE001 - every crash is reported, and fails the run
                detail = str(exc) if isinstance(exc, ScenarioFailed) else _tail(traceback.format_exc())
                failures.append(f"scenario {name!r} failed: {detail}")
                sys.stderr.write(f"[bench] {failures[-1]}\n")
        return failures

    def table(self) -> str:
        from tabulate import tabulate

        def fmt(value, digits):
            return "" if value is None else f"{value:.{digits}f}"

        rows = [[r["scenario"], r["case"], r["tool"], fmt(r["warm_s"], 3), fmt(r["warm_cpu_s"], 3),
                 fmt(r["process_s"], 3), fmt(r["process_cpu_s"], 3), fmt(r["peak_rss_mib"], 0),
                 fmt(r["rss_growth_mib"], 0), fmt(r["ratio"], 2), r["ratio_to"], r["target"], r["met"], r["note"]]
                for r in self.rows]
        headers = ["scenario", "case", "tool", "warm s", "warm cpu s", "process s", "process cpu s",
                   "peak RSS MiB (wait4)", "RSS growth MiB (VmHWM)", "ratio", "ratio to", "target", "met", "note"]
        return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--child" in argv:
        return child_main(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None,
                        help="scenarios to run: cnn deep cuda llama checkpoint remap help step (default: all)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed repeats per measurement: calls (warm s) or fresh processes (process s); median")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch.set_num_threads and OMP_NUM_THREADS in children (0: torch's default)")
    parser.add_argument("--quick", action="store_true", help="fewer repeats and smaller sizes: a smoke test")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the rows as JSON")
    parser.add_argument("--json-only", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.quick:
        options.repeats = min(options.repeats, 2)
    import platform

    import torch

    sys.stderr.write(f"[bench] python {platform.python_version()}, torch {torch.__version__}, "
                     f"{os.cpu_count()} CPUs, threads {options.threads or torch.get_num_threads()}, "
                     f"load average {os.getloadavg()[0]:.2f}, "
                     f"CUDA {'yes: ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no'}\n")
    bench = Bench(options)
    failures = bench.run()
    print(bench.table())
    if options.json:
        with open(options.json, "w") as handle:
            json.dump(bench.rows, handle, indent=2)
    if failures:
        sys.stderr.write(f"\nbench: {len(failures)} scenario(s) failed, so this run fails:\n\n" + "\n\n".join(failures) + "\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
