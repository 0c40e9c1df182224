"""The CLI where nobody designed for it: standard output closed, full or unable to encode the names; Ctrl-C;
a disk that fills up while a checkpoint is written; a model file that ends the process at import. Each ends in
one paragraph on stderr and the documented exit code, never a traceback, and nothing half-written is left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
import torch.nn as nn

from netscope.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    env.update(extra)
    return env


def _netscope(*argv, cwd, **kwargs):
    """``python -m netscope ARGV`` in a subprocess, as a shell user runs it."""
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    return subprocess.run([sys.executable, "-m", "netscope", *argv], cwd=cwd, env=kwargs.pop("env", _env()),
                          timeout=120, **kwargs)


@pytest.fixture()
def ckpt(tmp_path):
    """A small checkpoint whose keys are not ASCII."""
    layer = nn.Linear(3, 2)
    torch.save({"schicht_ä.weight": layer.weight.detach(), "层.bias": layer.bias.detach()}, tmp_path / "uni.pt")
    return tmp_path / "uni.pt"


def _one_paragraph(stderr: bytes, *needles: str) -> str:
    text = stderr.decode()
    assert "Traceback" not in text and "Exception ignored" not in text, text
    for needle in needles:
        assert needle in text, text
    return text


def test_closed_stdout_is_one_error(ckpt):
    result = _netscope("keys", ckpt.name, cwd=ckpt.parent, stdout=None, preexec_fn=lambda: os.close(1))
    assert result.returncode == 2
    _one_paragraph(result.stderr, "netscope keys: error: standard output is closed")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux) for a device that is full")
def test_full_stdout_is_one_error(ckpt):
    with open("/dev/full", "w") as full:
        result = _netscope("keys", ckpt.name, cwd=ckpt.parent, stdout=full)
    assert result.returncode == 2
    text = _one_paragraph(result.stderr, "cannot write to standard output", os.strerror(28))
    assert text.count("error") == 1, text


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux) for a device that is full")
def test_output_file_on_a_full_device_names_it(ckpt, capsys):
    (ckpt.parent / "m.py").write_text("import torch.nn as nn\nclass M(nn.Linear):\n"
                                      "    def __init__(self):\n        super().__init__(4, 4)\n")
    code = main(["summary", f"{ckpt.parent / 'm.py'}:M", "-i", "1,4", "-o", "/dev/full", "--force"])
    err = capsys.readouterr().err
    assert code == 2
    assert "cannot write /dev/full" in err and os.strerror(28) in err and "Traceback" not in err


def test_closed_stderr_keeps_the_exit_code(tmp_path):
    result = _netscope("keys", "no_such.pt", cwd=tmp_path, stderr=None, preexec_fn=lambda: os.close(2))
    assert result.returncode == 2


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux) for a device that is full")
def test_full_stderr_keeps_the_exit_code(tmp_path):
    with open("/dev/full", "w") as full:
        result = _netscope("keys", "no_such.pt", cwd=tmp_path, stderr=full)
    assert result.returncode == 2


def test_help_into_a_closed_pipe_is_quiet(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "netscope", "summary", "--help"], cwd=tmp_path, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before netscope writes (`| true`)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0
    assert err == b""


def test_ascii_stdout_escapes_names(ckpt):
    result = _netscope("keys", ckpt.name, cwd=ckpt.parent, env=_env(PYTHONIOENCODING="ascii", LC_ALL="C", LANG="C"))
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode("ascii")
    assert "schicht_\\xe4.weight" in out and "\\u5c42.bias" in out


def test_interrupt_while_loading_is_one_line(monkeypatch, capsys):
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr("netscope.cli._build_parsers", interrupted)  # Ctrl-C while torch and the parser load
    try:
        code = main(["summary", "resnet18"])
    except KeyboardInterrupt:  # escaping would stop the whole pytest session
        pytest.fail("KeyboardInterrupt escaped netscope.cli.main")
    assert code == 130
    captured = capsys.readouterr()
    assert captured.err == "netscope: interrupted\n" and captured.out == ""


def test_sigint_during_the_forward_exits_130(tmp_path):
    started = tmp_path / "started"
    (tmp_path / "slow.py").write_text(textwrap.dedent(f"""
        import time
        import torch.nn as nn
        class Slow(nn.Linear):
            def __init__(self):
                super().__init__(4, 4)
            def forward(self, x):
                open({str(started)!r}, "w").close()
                time.sleep(60)
                return super().forward(x)
    """))
    proc = subprocess.Popen([sys.executable, "-m", "netscope", "summary", "slow.py:Slow", "-i", "1,4", "-f", "json"],
                            cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 90
    while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert started.exists(), proc.communicate()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err == b"netscope: interrupted\n" and out == b""


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_full_disk_while_writing_a_checkpoint(suffix, tmp_path, monkeypatch, capsys):
    """The writer fails part-way, as torch.save (RuntimeError) and safetensors (SafetensorError) do on a full
    disk: exit 2 naming the file, the input untouched, no output and no temp file left."""
    model = tmp_path / "m.py"
    model.write_text("import torch.nn as nn\nclass M(nn.Module):\n    def __init__(self):\n"
                     "        super().__init__()\n        self.fc = nn.Linear(3, 2)\n")
    torch.save({"module.fc." + k: v for k, v in nn.Linear(3, 2).state_dict().items()}, tmp_path / "in.pt")
    before = (tmp_path / "in.pt").read_bytes()

    def full_disk(obj, path, metadata=None):
        with open(path, "wb") as handle:
            handle.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 204032 vs 203928")

    monkeypatch.setattr(torch, "save", full_disk)
    monkeypatch.setattr("netscope.checkpoints.safetensors_format.save", full_disk)
    out = tmp_path / f"out{suffix}"
    listing = sorted(os.listdir(tmp_path))
    monkeypatch.chdir(tmp_path)
    code = main(["remap", "in.pt", f"{model}:M", "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"writing {out} failed" in err and "unexpected pos" in err and "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == listing  # no output, no temp file
    assert (tmp_path / "in.pt").read_bytes() == before


def test_model_file_calling_os_exit_at_import(tmp_path):
    (tmp_path / "script.py").write_text("import os\nos._exit(0)\n")
    result = _netscope("summary", "script.py:Net", "-i", "1,4", cwd=tmp_path)
    assert result.returncode == 2
    _one_paragraph(result.stderr, "running script.py called os._exit(0)", "__main__")
    assert result.stdout == b""


def test_os_exit_is_restored_after_a_model_file(tmp_path, monkeypatch, capsys):
    real = os._exit
    (tmp_path / "m.py").write_text("import torch.nn as nn\nclass M(nn.Linear):\n"
                                   "    def __init__(self):\n        super().__init__(4, 4)\n")
    monkeypatch.chdir(tmp_path)
    assert main(["names", "m.py:M"]) == 0
    assert os._exit is real


def test_symlink_loop_is_named(tmp_path, capsys):
    os.symlink(tmp_path / "b.pt", tmp_path / "a.pt")
    os.symlink(tmp_path / "a.pt", tmp_path / "b.pt")
    assert main(["keys", str(tmp_path / "a.pt")]) == 2
    err = capsys.readouterr().err
    assert "symbolic link that leads to no file" in err and "loop" in err


def test_dev_stdout_is_standard_output(ckpt):
    """``-o /dev/stdout`` is ``-o -``: the output reaches standard output (descriptor 1 is pointed at stderr while
    a command runs, so opening /dev/stdout would write to stderr), and --html /dev/stdout beside the command's
    own output is refused as two outputs on stdout."""
    plain = _netscope("keys", ckpt.name, "-f", "json", cwd=ckpt.parent)
    named = _netscope("keys", ckpt.name, "-f", "json", "-o", "/dev/stdout", cwd=ckpt.parent)
    assert named.returncode == 0 and named.stderr == b""
    assert named.stdout == plain.stdout != b""
    (ckpt.parent / "m.py").write_text("import torch.nn as nn\nclass M(nn.Linear):\n"
                                      "    def __init__(self):\n        super().__init__(3, 2)\n")
    both = _netscope("summary", "m.py:M", "-i", "1,3", "--html", "/dev/stdout", cwd=ckpt.parent)
    assert both.returncode == 2 and both.stdout == b""
    _one_paragraph(both.stderr, "standard output is given to two outputs")
    remap = _netscope("remap", ckpt.name, "m.py:M", "-o", "/dev/stdout", cwd=ckpt.parent)
    assert remap.returncode == 2 and remap.stdout == b""
    _one_paragraph(remap.stderr, "not to standard output")


def test_plot_on_a_full_disk_names_the_file(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib")
    from matplotlib.figure import Figure

    def full_disk(self, fname, **kwargs):
        with open(fname, "wb") as handle:
            handle.write(b"partial")
        raise OSError(28, os.strerror(28))

    monkeypatch.setattr(Figure, "savefig", full_disk)
    (tmp_path / "m.py").write_text("import torch.nn as nn\nclass M(nn.Linear):\n"
                                   "    def __init__(self):\n        super().__init__(4, 4)\n")
    monkeypatch.chdir(tmp_path)
    listing = sorted(os.listdir(tmp_path))
    code = main(["summary", "m.py:M", "-i", "1,4", "--plot", "p.png", "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot write p.png" in err and os.strerror(28) in err and "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == listing


@pytest.mark.parametrize("call, said", [("sys.exit(0)", "called sys.exit(0)"), ("os._exit(0)", "called os._exit(0)")])
def test_forward_that_exits_is_a_model_failure(call, said, tmp_path):
    """A forward that ends the process used to leave netscope with exit code 0 and no output at all."""
    (tmp_path / "quits.py").write_text(textwrap.dedent(f"""
        import os, sys
        import torch.nn as nn
        class Quits(nn.Linear):
            def __init__(self):
                super().__init__(4, 4)
            def forward(self, x):
                {call}
    """))
    result = _netscope("summary", "quits.py:Quits", "-i", "1,4", "-f", "json", cwd=tmp_path)
    assert result.returncode == 3 and result.stdout == b""
    _one_paragraph(result.stderr, "netscope summary: error: the model's code " + said)


class _Raises(nn.Module):
    """A child layer during whose forward Ctrl-C arrives (KeyboardInterrupt), or that calls sys.exit."""

    def __init__(self, exc):
        super().__init__()
        self.exc = exc

    def forward(self, x):
        raise self.exc()


@pytest.mark.parametrize("device", ["cpu", "meta"])
@pytest.mark.parametrize("raised", [KeyboardInterrupt, SystemExit])
def test_interrupted_forward_leaves_model_and_process_as_they_were(device, raised):
    import torch.nn.modules.module as module_mod
    from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

    import netscope

    model = nn.Sequential(nn.BatchNorm1d(4), nn.Linear(4, 4), _Raises(raised)).train()
    model[1].weight.requires_grad_(False)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [(m.training, dict(m._forward_hooks), dict(m._forward_pre_hooks)) for m in model.modules()]
    grads = [p.requires_grad for p in model.parameters()]
    call_impl, call = nn.Module._call_impl, nn.Module.__call__
    global_hooks = {name: dict(value) for name, value in vars(module_mod).items()
                    if name.startswith("_global") and isinstance(value, dict)}
    rng = torch.get_rng_state()
    with pytest.raises(raised):
        netscope.summary(model, (2, 4), device=device)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert flags == [(m.training, dict(m._forward_hooks), dict(m._forward_pre_hooks)) for m in model.modules()]
    assert grads == [p.requires_grad for p in model.parameters()]
    assert nn.Module._call_impl is call_impl and nn.Module.__call__ is call
    assert global_hooks == {name: dict(value) for name, value in vars(module_mod).items()
                            if name.startswith("_global") and isinstance(value, dict)}
    assert not _get_current_dispatch_mode_stack()
    assert torch.is_grad_enabled() and torch.equal(rng, torch.get_rng_state())


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")
def test_checkpoint_that_is_a_pipe_or_device_is_named(tmp_path, capsys):
    os.mkfifo(tmp_path / "fifo.pt")
    for path in [tmp_path / "fifo.pt"] + ([os.devnull] if os.path.exists(os.devnull) else []):
        assert main(["keys", str(path)]) == 2
        err = capsys.readouterr().err
        assert "is not a regular file (a pipe or a device)" in err and "empty" not in err


@pytest.mark.parametrize("fmt", ["table", "csv"])
def test_key_with_a_lone_surrogate_is_written_escaped(fmt, tmp_path, capsys):
    torch.save({"bad\udcffkey.weight": torch.zeros(2)}, tmp_path / "sur.pt")
    out = tmp_path / f"keys.{fmt}"
    assert main(["keys", str(tmp_path / "sur.pt"), "-f", fmt, "-o", str(out)]) == 0, capsys.readouterr().err
    assert "bad\\udcffkey.weight" in out.read_text(encoding="utf-8")


_TINY_FILE = """
import torch.nn as nn
class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4)
    def forward(self, x):
        return self.fc(x)
"""


@pytest.mark.skipif(not hasattr(os, "mkfifo") or not os.path.exists(os.devnull), reason="needs os.mkfifo, /dev/null")
def test_a_device_or_fifo_output_is_written_in_place_without_force(tmp_path, capsys):
    """``-o /dev/null`` or a FIFO is no file to replace: no --force asked, no temp file renamed over it (a rename
    into /dev fails); an existing regular file still needs --force."""
    import threading

    (tmp_path / "tiny.py").write_text(_TINY_FILE)
    command = ["summary", f"{tmp_path / 'tiny.py'}:Tiny", "--input", "2,8", "--device", "cpu", "-f", "csv", "-q"]
    assert main(command + ["-o", os.devnull]) == 0, capsys.readouterr().err
    assert main(command + ["-o", str(tmp_path / "plain.csv")]) == 0
    assert main(command + ["-o", str(tmp_path / "plain.csv")]) == 2  # a regular file: --force still needed
    assert "already exists; pass --force" in capsys.readouterr().err
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    assert main(command + ["-o", str(fifo)]) == 0, capsys.readouterr().err
    reader.join(timeout=30)
    assert received == [(tmp_path / "plain.csv").read_bytes()]  # what a regular file gets, through the pipe
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe.csv", "plain.csv", "tiny.py"]  # no temp file left
    assert fifo.is_fifo()
