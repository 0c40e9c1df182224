"""netscope vs torchinfo, side by side, in one run: times, ratios and peak memory.

    python bench/run.py                      # every scenario (about 3-5 minutes on 2 CPU cores)
    python bench/run.py --only cnn deep      # some of them
    python bench/run.py --quick              # fewer repeats, smaller sweeps (a smoke test)

Each measurement runs in a fresh child process (``python bench/run.py --child ...``) so that its peak
RSS (``VmHWM``) belongs to it alone; the child warms up once, takes the median of ``--repeats`` runs
and prints one JSON line. The parent prints the table. Wall time is the headline figure; CPU time
(``process_time``) is shown too because it is steadier on a shared machine. Ratios compare figures
measured in this same run. Targets are a benchmark's goals, not assertions.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
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

    torch, model, x, device = _model_and_input(args)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None

    def bare():
        with torch.no_grad():
            model(x)

    def torchinfo_report():
        return str(torchinfo.summary(model, input_data=x, col_names=TORCHINFO_COLUMNS, verbose=0, device=device))

    fns = {
        "bare forward": bare,
        "torchinfo": torchinfo_report,
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


@child("cli")
def measure_cli(args) -> dict:
    """A netscope CLI command in a fresh process, as a user runs it: the first run pays for whatever the
    command imports (``keys`` on safetensors/zip files never imports torch), then warm repeats."""
    start = time.perf_counter()
    from netscope.cli import main

    import_seconds = time.perf_counter() - start

    baseline = current_rss_mb()
    argv = json.loads(args.argv)
    codes, errors = [], io.StringIO()

    def run():
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(errors):
            codes.append(main(argv))

    result = timed(run, args.repeats)
    result["exit_code"] = codes[-1]
    result["import_seconds"] = import_seconds
    result["cold_seconds"] = import_seconds + result["first_seconds"]
    result["stderr"] = errors.getvalue()[-300:]
    result["import_rss_mb"] = baseline
    return result


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
    """Write a LLaMA-shaped float32 checkpoint of about ``--gigabytes`` GB (uninitialised data)."""
    import torch

    from netscope.run.no_memory import empty_weights

    sys.path.insert(0, HERE)
    from llama import LlamaConfig, llama_7b, parameter_count  # noqa: E402

    head = parameter_count(LlamaConfig(num_layers=0))
    per_layer = parameter_count(LlamaConfig(num_layers=1)) - head
    layers = max(1, round((args.gigabytes * 1e9 / 4 - head) / per_layer))

    with empty_weights():
        shapes = {k: (tuple(v.shape), v.dtype) for k, v in llama_7b(num_layers=layers).state_dict().items()}
    state_dict = {k: torch.empty(shape, dtype=dtype) for k, (shape, dtype) in shapes.items()}
    torch.save(state_dict, args.path)
    return {"layers": layers, "bytes": os.path.getsize(args.path), "keys": len(state_dict)}


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
    start = time.perf_counter()
    for _ in range(2):
        out = model(x)
        (out.logits if hasattr(out, "logits") else out).sum().backward()
        del out
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    real_seconds = (time.perf_counter() - start) / 2
    measured_mb = peak_rss_mb() - baseline
    start = time.perf_counter()
    report = netscope.step(model, input_data=x, optimizer="adamw")
    t = report.totals
    return {"measured_mb": measured_mb, "estimate_mb": t.peak_bytes / 2**20, "real_step_seconds": real_seconds,
            "plan_seconds": time.perf_counter() - start, "hwm_reset": reset,
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
    start = time.perf_counter()
    estimate = netscope.step(reference, input_data=x, fsdp=world).totals.peak_bytes
    plan_seconds = time.perf_counter() - start
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
    return {"estimate_mb": estimate / 2**20, "tracker_mb": tracked / 2**20, "plan_seconds": plan_seconds}


@child("step_plan")
def measure_step_plan(args) -> dict:
    """One ``netscope step`` command line in a fresh process, imports included (run once)."""
    start = time.perf_counter()
    from netscope.cli import main

    errors = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(errors):
        code = main(json.loads(args.argv))
    return {"seconds": time.perf_counter() - start, "exit_code": code, "stderr": errors.getvalue()[-300:],
            "totals_tail": out.getvalue()[-600:]}


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
    parser.add_argument("--case", default="moe", choices=["dropped", "swapped", "moe"])
    parser.add_argument("--path", default="")
    parser.add_argument("--gigabytes", type=float, default=4.0)
    args = parser.parse_args(argv)
    result = CHILDREN[args.child](args)
    result["peak_rss_mb"] = peak_rss_mb()
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    return 0


# ------------------------------------------------------------------ orchestrating (parent side)

class Bench:
    def __init__(self, options):
        self.options = options
        self.rows: List[dict] = []

    def spawn(self, name: str, **params) -> dict:
        """Run one child measurement; its JSON result plus the process's wall time."""
        cmd = [sys.executable, os.path.abspath(__file__), "--child", name]
        params.setdefault("repeats", self.options.repeats)
        if self.options.threads:
            params.setdefault("threads", self.options.threads)
        for key, value in params.items():
            flag = "--" + key.replace("_", "-")
            cmd += [flag, *map(str, value)] if isinstance(value, (list, tuple)) else [flag, str(value)]
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"child {name} {params} failed:\n{done.stderr[-3000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        result["process_seconds"] = wall
        return result

    def add(self, scenario: str, case: str, tool: str, *, seconds=None, cpu=None, ratio=None, rss=None,
            target: str = "", met: Optional[bool] = None, note: str = "") -> None:
        self.rows.append({"scenario": scenario, "case": case, "tool": tool, "seconds": seconds, "cpu_s": cpu,
                          "ratio": ratio, "peak_rss_mb": rss, "target": target,
                          "met": "" if met is None else ("yes" if met else "NO"), "note": note})
        if not self.options.json_only:
            sys.stderr.write(f"  {scenario} | {case} | {tool}: {seconds if seconds is None else round(seconds, 3)} s"
                             f"{'' if ratio is None else f', ratio {ratio:.2f}'} {note}\n")

    def skip(self, scenario: str, case: str, why: str) -> None:
        self.add(scenario, case, "-", note=f"skipped: {why}")

    # -- 1 / 3: vision models, torchinfo vs netscope
    def vision(self, device: str, limit: float, scenario: str) -> None:
        published = {"resnet50": 4.089e9, "convnext_base": 15.355e9}  # torchvision weights meta "_ops" (GMACs)
        for model in ("resnet50", "convnext_base"):
            r = self.spawn("tools", model=model, device=device)
            macs = r["macs"]
            self._compare(scenario, f"{model} b1 224", r, limit,
                          extra=f"macs: netscope {macs['netscope'] / 1e9:.3f}G, torchinfo {macs['torchinfo'] / 1e9:.3f}G, "
                                f"torchvision {published[model] / 1e9:.3f}G")

    def _compare(self, scenario, case, r, limit, extra=""):
        t = r["timings"]
        ti, ns, bare = t["torchinfo"], t["netscope"], t["bare forward"]

        def memory(entry):
            cuda = f", CUDA peak {entry['cuda_peak_mb']:.0f} MB" if "cuda_peak_mb" in entry else ""
            grew = entry.get("peak_rss_increase_mb")
            return ("" if grew is None else f"peak RSS +{grew:.0f} MB over the process before its first run") + cuda

        self.add(scenario, case, "bare forward", seconds=bare["seconds"], cpu=bare["cpu_seconds"])
        self.add(scenario, case, "torchinfo", seconds=ti["seconds"], cpu=ti["cpu_seconds"], ratio=1.0,
                 rss=ti["peak_rss_mb"], note=f"{ti['seconds'] / bare['seconds']:.1f}x bare forward; {memory(ti)}")
        ratio = ns["seconds"] / ti["seconds"]
        core, checks, naming = t["trace+totals"]["seconds"], t["+checks"]["seconds"], t["+naming"]["seconds"]
        shares = (f"parts: trace+totals {core:.3f}s, checks {checks - core:+.3f}s, naming {naming - checks:+.3f}s, "
                  f"render {ns['seconds'] - naming:+.3f}s")
        self.add(scenario, case, "netscope (full report)", seconds=ns["seconds"], cpu=ns["cpu_seconds"], ratio=ratio,
                 rss=ns["peak_rss_mb"], target=f"<= {limit}x torchinfo", met=ratio <= limit,
                 note=f"{ns['seconds'] / bare['seconds']:.1f}x bare forward; {shares}; cpu ratio "
                      f"{ns['cpu_seconds'] / ti['cpu_seconds']:.2f}; {memory(ns)}" + (f"; {extra}" if extra else ""))
        self.add(scenario, case, "netscope (trace+totals)", seconds=core, cpu=t["trace+totals"]["cpu_seconds"],
                 ratio=core / ti["seconds"], target=f"<= {limit}x torchinfo", met=core / ti["seconds"] <= limit,
                 note="no formula checks, no naming audit, not rendered")

    # -- 2 / 3: the deep model and its slope
    def deep(self, device: str, limit: float, scenario: str) -> None:
        r = self.spawn("tools", model="deep4000", device=device, repeats=max(1, self.options.repeats - 2))
        self._compare(scenario, "4000 x (Linear, ReLU), 12,001 modules", r, limit)
        sizes = [1000, 2000] if self.options.quick else [1000, 2000, 4000, 8000]
        slope = self.spawn("slope", device=device, sizes=sizes, repeats=max(1, self.options.repeats - 2))
        points = slope["points"]
        first = points[0]["seconds"] / points[0]["modules"]
        for point in points:
            per = point["seconds"] / point["modules"]
            core = point["core_seconds"] / point["modules"]
            self.add(scenario, f"slope: {point['blocks']} blocks ({point['modules']} modules)", "netscope (full report)",
                     seconds=point["seconds"], ratio=per / first,
                     note=f"{per * 1e6:.1f} us/module full, {core * 1e6:.1f} us/module trace+totals; ratio = per-module time / at {points[0]['blocks']} blocks")
        flat = max(p["seconds"] / p["modules"] for p in points) / min(p["seconds"] / p["modules"] for p in points)
        self.add(scenario, "slope: max/min time per module", "netscope", ratio=flat, target="flat (~1.0)",
                 met=flat <= 1.3, note="linear scaling when near 1")

    # -- 4: LLaMA shapes on meta
    def llama(self) -> None:
        for name, seconds_limit, rss_limit in (("llama_7b", 10, 1536), ("llama_70b", 60, 3072)):
            argv = ["summary", f"{LLAMA}:{name}", "--device", "meta", "--input", "1,128:int64", "-f", "csv", "--quiet"]
            r = self.spawn("cli", argv=json.dumps(argv), repeats=max(1, self.options.repeats - 2))
            met = r["cold_seconds"] < seconds_limit and r["peak_rss_mb"] < rss_limit and r["exit_code"] == 0
            self.add("4 no-memory LLaMA", f"{name} --device meta, input 1x128", "netscope summary",
                     seconds=r["seconds"], cpu=r["cpu_seconds"], rss=r["peak_rss_mb"],
                     target=f"< {seconds_limit} s, < {rss_limit / 1024:.1f} GB", met=met,
                     note=f"wall = warm median; cold first run incl. importing torch+netscope {r['cold_seconds']:.2f}s "
                          f"(imports {r['import_seconds']:.2f}s); "
                          f"RSS after imports {r['import_rss_mb']:.0f} MB; exit {r['exit_code']} {r['stderr'].strip()}")

    # -- 8: training step: estimate vs a real CPU step, and a 7B plan on 8 FSDP ranks
    def step(self) -> None:
        models = ("resnet18",) if self.options.quick else ("resnet50", "vit_b_16", "gpt2")
        for model in models:
            r = self.spawn("step_real", model=model, repeats=1)
            ratio = r["estimate_mb"] / r["measured_mb"] if r["measured_mb"] > 0 else None
            parts = ", ".join(f"{k.removesuffix('_bytes')} {v:.0f}" for k, v in r["parts_mb"].items())
            case = f"{model} {'2x512' if model == 'gpt2' else 'b8 224'} AdamW fp32"
            self.add("8 step", case, "real CPU step", seconds=r["real_step_seconds"], rss=r["peak_rss_mb"],
                     note=f"peak RSS growth {r['measured_mb']:.0f} MiB (VmHWM reset: {r['hwm_reset']})")
            self.add("8 step", case, "netscope.step estimate", seconds=r["plan_seconds"], ratio=ratio,
                     note=f"estimated peak {r['estimate_mb']:.0f} MiB (MiB: {parts}); ratio = estimate / real "
                          "RSS growth, no target (CPU allocator, oneDNN workspaces and Python objects differ)")
        r = self.spawn("step_fsdp_tracker", repeats=1)
        self.add("8 step", "small LLaMA (4 x 512, vocab 8000) 2x256, FSDP2 4 ranks", "netscope.step estimate",
                 seconds=r["plan_seconds"], ratio=r["estimate_mb"] / r["tracker_mb"],
                 note=f"per-rank peak {r['estimate_mb']:.0f} MiB vs torch FSDPMemTracker {r['tracker_mb']:.0f} MiB "
                      "(real fully_shard per block + root on a fake process group); ratio = netscope / tracker")
        config = os.path.join(ROOT, "tests", "data", "hf_llama_7b_config.json")
        argv = ["step", f"hf:{config}", "--input", "1,2048:int64", "--fsdp", "8", "-f", "csv", "-q"]
        r = self.spawn("step_plan", argv=json.dumps(argv), repeats=1)
        met = r["seconds"] < 60 and r["peak_rss_mb"] < 3072 and r["exit_code"] == 0
        self.add("8 step", "Llama-7B shape, seq 2048, --fsdp 8, fake tensors", "netscope step", seconds=r["seconds"],
                 rss=r["peak_rss_mb"], target="< 60 s, < 3 GB", met=met,
                 note=f"fresh process incl. imports; exit {r['exit_code']} {r['stderr'].strip()[-200:]}")

    # -- 5: a 4 GB checkpoint
    def checkpoint(self) -> None:
        import importlib.util

        missing = [c for c in ("keys", "diff") if importlib.util.find_spec(f"netscope.commands.{c}") is None]
        tmp = tempfile.mkdtemp(prefix="netscope-bench-")
        try:
            path = os.path.join(tmp, "llama-4gb.pt")
            gigabytes = 0.5 if self.options.quick else 4.0
            made = self.spawn("make_checkpoint", path=path, gigabytes=gigabytes, repeats=1)
            size = f"{made['bytes'] / 1e9:.2f} GB, {made['keys']} keys, {made['layers']} layers"
            commands = {
                "keys": ["keys", path, "-f", "csv"],
                "diff": ["diff", path, f"{LLAMA}:llama_7b", "--model-arg", f"num_layers={made['layers']}"],
            }
            for name, argv in commands.items():
                if name in missing:
                    self.skip("5 checkpoint", f"netscope {name}", "command not available")
                    continue
                r = self.spawn("cli", argv=json.dumps(argv))
                # the user-facing figure: a fresh process, imports included; diff exits 1 when keys differ
                met = r["cold_seconds"] < 2 and r["peak_rss_mb"] < 300 and r["exit_code"] in (0, 1)
                self.add("5 checkpoint", f"netscope {name} on {size}", f"netscope {name}", seconds=r["cold_seconds"],
                         cpu=r["cpu_seconds"], rss=r["peak_rss_mb"], target="< 2 s, < 300 MB", met=met,
                         note=f"wall = fresh process incl. imports; warm repeat {r['seconds']:.3f}s; RSS after importing "
                              f"netscope.cli {r['import_rss_mb']:.0f} MB; exit {r['exit_code']} {r['stderr'].strip()[-200:]}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    # -- 6: structural remap on 100k keys
    def remap(self) -> None:
        keys = 10_000 if self.options.quick else 100_000
        r = self.spawn("remap", keys=keys, repeats=max(1, self.options.repeats - 2))
        self.add("6 remap", f"{r['keys']:,} keys, structural alignment", "netscope.remap", seconds=r["seconds"],
                 cpu=r["cpu_seconds"], rss=r["peak_rss_mb"], target="< 5 s", met=r["seconds"] < 5,
                 note=f"coverage {r['coverage']:.2%} of model elements matched")

        for case, what in (("dropped", "a layer dropped"), ("swapped", "two siblings swapped"),
                           ("moe", "MoE gate/up/down -> w1/w3/w2")):
            r = self.spawn("remap_case", keys=keys, case=case, repeats=max(1, self.options.repeats - 2))
            met = r["seconds"] < 5 and r["peak_rss_mb"] < 1024
            note = f"coverage {r['coverage']:.2%}, {r['ambiguous']} refused as ambiguous, {r['rules']} compact rules"
            if case == "moe":
                met = met and r["rule_seconds"] < 5
                note += (f"; with --rule gate_proj=w1: {r['rule_seconds']:.2f} s, coverage {r['rule_coverage']:.2%}, "
                         f"{r['rule_rules']} rules")
            self.add("6 remap", f"{r['keys']:,} keys, {what}", "plan_mapping", seconds=r["seconds"],
                     cpu=r["cpu_seconds"], rss=r["peak_rss_mb"], target="< 5 s, < 1 GB", met=met, note=note)

    # -- 7: --help
    def help(self) -> None:
        walls = []
        for _ in range(self.options.repeats + 1):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "netscope", "--help"], capture_output=True, cwd=ROOT, check=True)
            walls.append(time.perf_counter() - start)
        wall = statistics.median(walls[1:])
        imports = self.spawn("help_imports", repeats=1)
        self.add("7 --help", "python -m netscope --help", "netscope", seconds=wall, target="< 0.3 s",
                 met=wall < 0.3 and not imports["torch_imported"],
                 note=f"torch imported: {imports['torch_imported']}; interpreter start included")

    def run(self) -> None:
        import torch

        cuda = torch.cuda.is_available()
        plan = {
            "cnn": lambda: self.vision("cpu", 1.05, "1 CPU vision"),
            "deep": lambda: self.deep("cpu", 0.5, "2 CPU deep"),
            "cuda": (lambda: (self.vision("cuda", 0.5, "3 CUDA vision"), self.deep("cuda", 0.5, "3 CUDA deep")))
            if cuda else (lambda: self.skip("3 CUDA", "vision and deep", "no CUDA")),
            "llama": self.llama,
            "checkpoint": self.checkpoint,
            "remap": self.remap,
            "help": self.help,
            "step": self.step,
        }
        for name, step in plan.items():
            if self.options.only and name not in self.options.only:
                continue
            sys.stderr.write(f"[bench] {name}\n")
            try:
                step()
            except Exception as exc:  # one broken scenario must not hide the others' figures
                self.skip(name, "-", f"failed: {type(exc).__name__}: {str(exc).strip().splitlines()[-1][:200]}")

    def table(self) -> str:
        from tabulate import tabulate

        def fmt(value, digits):
            return "" if value is None else f"{value:.{digits}f}"

        rows = [[r["scenario"], r["case"], r["tool"], fmt(r["seconds"], 3), fmt(r["cpu_s"], 3), fmt(r["ratio"], 2),
                 fmt(r["peak_rss_mb"], 0), r["target"], r["met"], r["note"]] for r in self.rows]
        headers = ["scenario", "case", "tool", "wall s (median)", "cpu s", "ratio", "peak RSS MB", "target", "met", "note"]
        return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--child" in argv:
        return child_main(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None,
                        help="scenarios to run: cnn deep cuda llama checkpoint remap help step (default: all)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per measurement (median reported)")
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads in children (0: torch's default)")
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
                     f"CUDA {'yes: ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no'}\n")
    bench = Bench(options)
    bench.run()
    print(bench.table())
    if options.json:
        with open(options.json, "w") as handle:
            json.dump(bench.rows, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
