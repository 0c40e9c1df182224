"""bench/run.py's bookkeeping (no timings asserted): a crashing scenario fails the run and names itself."""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def bench_run():
    spec = importlib.util.spec_from_file_location("netscope_bench_run", os.path.join(ROOT, "bench", "run.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses resolve annotations through sys.modules
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


CRASH = "import sys; sys.stderr.write('first line\\nkaboom: the child broke\\n'); sys.exit(3)"


def test_a_crashing_scenario_fails_the_run_and_the_others_still_run(bench_run, monkeypatch, capsys):
    def scenarios(self):
        return {
            "boom": lambda: self.processes([sys.executable, "-c", CRASH], repeats=1),
            "nocuda": lambda: (_ for _ in ()).throw(bench_run.Skipped("no CUDA device (prerequisite)")),
            "fine": lambda: self.add("fine", "case", "tool", process=self.processes([sys.executable, "-c", "pass"],
                                                                                   repeats=1)),
        }

    monkeypatch.setattr(bench_run.Bench, "scenarios", scenarios)
    assert bench_run.main(["--only", "boom", "nocuda", "fine", "--repeats", "1"]) == 1
    out, err = capsys.readouterr()
    failure = err[err.index("scenario(s) failed"):]
    assert "scenario 'boom' failed" in failure and "status 3" in failure and "kaboom: the child broke" in failure
    assert "skipped: no CUDA device (prerequisite)" in out  # a missing prerequisite is a skip, not a failure
    assert "| fine " in out and "nocuda" not in failure


def test_a_run_with_only_skips_succeeds(bench_run, monkeypatch, capsys):
    monkeypatch.setattr(bench_run.Bench, "scenarios", lambda self: {"cuda": self.cuda})
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert bench_run.main(["--only", "cuda", "--repeats", "1"]) == 0
    assert "skipped: no CUDA device" in capsys.readouterr().out


def test_process_rows_are_the_child_as_the_kernel_saw_it(bench_run):
    code = "b = bytearray(200 * 2**20); b[::4096] = b'x' * len(b[::4096])"  # touch 200 MiB
    done = bench_run.run_process([sys.executable, "-c", code], env=dict(os.environ), keep_stdout=False)
    assert done.exit_code == 0 and done.peak_rss_mib >= 200 and done.wall_s > 0 and done.cpu_s > 0
