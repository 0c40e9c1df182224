"""Wrong things fed to every command: one table, one contract (issue 7, "bad input everywhere").

For every row: the exit code documented in README.md ("Exit codes"), exactly one ``netscope...: error:``
paragraph on stderr that names what was wrong, no traceback, nothing on stdout, and no file created,
changed or removed in the working folder (which also holds the inputs).
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import textwrap
import types
import warnings

import pytest
import torch
import torch.nn as nn

from netscope.cli import main

USAGE, FINDINGS, FORWARD = 2, 1, 3  # README.md "Exit codes"

M = "netscope_badinput_models"  # importable module written into the workspace
MODELS_SOURCE = textwrap.dedent("""
    import torch.nn as nn

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 4)

        def forward(self, x):
            return self.fc(x)

    class Conv(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return self.conv(x)

    class ExitsInConstructor(nn.Module):  # a constructor that ends the process: named, not obeyed
        def __init__(self):
            super().__init__()
            raise SystemExit(4)

    class Raises(nn.Module):
        def __init__(self):
            raise RuntimeError("boom in constructor")

    class ReadsThenRaises(nn.Module):  # fails the no-memory builds (reads a value), then the real one
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 4)
            if float(self.fc.weight.detach().abs().max()) < 10:
                raise ValueError("needs a config file")

    def not_a_module():
        return 42

    NUMBER = 7

    class NeedsMask(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(8, 8)

        def forward(self, x, mask):
            return self.proj(x) * mask

    class Outer(nn.Module):  # the inner block's forward needs an argument the outer one never passes
        def __init__(self):
            super().__init__()
            self.stem = nn.Linear(8, 8)
            self.gate = NeedsMask()

        def forward(self, x):
            return self.gate(self.stem(x))

    class ConvNeedsScale(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x, scale):
            return self.conv(x) * scale

    class Lazy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.LazyLinear(4)

        def forward(self, x):
            return self.fc(x)

    class OutOfMemory(nn.Module):  # what an allocator failure inside the forward looks like
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 4)

        def forward(self, x):
            import torch
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    class WarnsThenRaises(nn.Module):
        def __init__(self):
            import warnings
            warnings.warn("torch-style deprecation chatter", UserWarning)
            raise RuntimeError("the real problem")
""")


class Evil:
    """Unpickling this would create a file named PWNED in the working folder (caught by the snapshot)."""

    def __reduce__(self):
        return (os.system, ("touch PWNED",))


@pytest.fixture()
def workspace(tmp_path):
    root = tmp_path
    (root / f"{M}.py").write_text(MODELS_SOURCE)
    (root / "netscope_badinput_importfail.py").write_text("import netscope_no_such_dependency\n")
    (root / "netscope_badinput_importraise.py").write_text("raise ValueError('config missing')\n")
    (root / "broken.py").write_text("class Net(:\n    pass\n")
    (root / "script.py").write_text("import sys\nsys.exit(5)\n")  # a script's entry point, unguarded
    (root / "netscope_badinput_exits.py").write_text("raise SystemExit('bye')\n")
    (root / "d").mkdir()
    (root / "notes.txt").write_text("hello\n")
    (root / "existing.txt").write_text("keep me\n")
    (root / "config.json").write_text('{"model_type": "bert"}\n')
    (root / "rules.txt").write_text("^fc\\.=fc.\n")
    (root / "existing.pt").write_bytes(b"keep me too")
    (root / "existing.png").write_bytes(b"not really a png")
    (root / "empty.pt").write_bytes(b"")
    (root / "damaged_plan.json").write_text('{"format": "netscope-remap-plan", "version": 1, "decisions": [1]}')
    tiny = nn.Linear(8, 4)
    torch.save({"fc." + k: v for k, v in tiny.state_dict().items()}, root / "ckpt.pt")
    data = (root / "ckpt.pt").read_bytes()
    (root / "trunc.pt").write_bytes(data[: len(data) // 2])
    torch.save({"fc.weight": tiny.weight.detach(), "payload": Evil()}, root / "evil.pt")
    # pickled by reference to a class its module no longer defines (a training script's own class, renamed since)
    gone = type("NetscopeGone", (), {"__module__": M})
    holder = types.ModuleType(M)
    holder.NetscopeGone = gone
    saved_module = sys.modules.get(M)
    sys.modules[M] = holder
    try:
        torch.save({"fc.weight": tiny.weight.detach(), "payload": gone()}, root / "gone.pt")
    finally:
        sys.modules.pop(M)
        if saved_module is not None:
            sys.modules[M] = saved_module
    (root / "locked.pt").write_bytes(data)
    os.chmod(root / "locked.pt", 0)
    with warnings.catch_warnings():  # torch.jit is deprecated (FutureWarning); the archives still exist
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(nn.Linear(8, 4)), str(root / "scripted.pt"))
    (root / "readonly.txt").write_text("do not replace me\n")
    os.chmod(root / "readonly.txt", 0o444)
    return root


@pytest.fixture(autouse=True)
def in_workspace(workspace, monkeypatch):
    monkeypatch.chdir(workspace)
    monkeypatch.syspath_prepend(str(workspace))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)


def snapshot(root):
    """Every file under root (bytecode caches aside): path -> (size, mtime, sha256)."""
    state = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            path = os.path.join(folder, name)
            info = os.stat(path)
            digest = ""
            if os.access(path, os.R_OK):
                with open(path, "rb") as handle:
                    digest = hashlib.sha256(handle.read()).hexdigest()
            state[os.path.relpath(path, root)] = (info.st_size, info.st_mtime_ns, digest)
    return state


def run_cli(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse errors exit from inside parse_args
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def skip_if(condition, reason):
    return pytest.mark.skipif(condition, reason=reason)


CUDA = torch.cuda.is_available()
ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def row(argv, code, needle, *marks, id=None):
    return pytest.param(argv, code, needle, marks=marks, id=id or " ".join(argv)[:90])


def model_commands(spec_args):
    """The same model spec fed to every command that builds a model."""
    return {
        "summary": ["summary", *spec_args],
        "check": ["check", *spec_args],
        "solve": ["solve", *spec_args],
        "names": ["names", *spec_args],
        "diff": ["diff", "ckpt.pt", *spec_args],
        "remap": ["remap", "ckpt.pt", *spec_args, "-o", "new.pt"],
    }


BAD_SPECS = [  # (spec args, what the message must name)
    (["resnet5O"], "resnet50"),  # unknown torchvision name: the closest names are suggested
    (["netscope_badinput_nosuchpkg.mod:Net"], "cannot import"),
    (["netscope_badinput_importfail:Net"], "netscope_no_such_dependency"),
    (["netscope_badinput_importraise:Net"], "config missing"),
    ([f"{M}:Raises"], "boom in constructor"),
    ([f"{M}:ReadsThenRaises"], "needs a config file"),  # the real build's own error, after the fallbacks
    ([f"{M}:not_a_module"], "not a torch.nn.Module"),
    ([f"{M}:NUMBER"], "not a class or function"),
    ([f"{M}:Nope"], "has no attribute 'Nope'"),
    (["broken.py:Net"], "SyntaxError"),
    (["script.py:Net"], "called sys.exit(5)"),
    (["netscope_badinput_exits:Net"], "called sys.exit('bye')"),
    ([f"{M}:ExitsInConstructor"], "constructor of netscope_badinput_models:ExitsInConstructor called sys.exit(4)"),
    (["notes.txt:Net"], "not a Python source file"),
    (["missing.py:Net"], "does not exist"),
    ([":Net"], "names no module"),
    ([f"{M}:"], "names no attribute"),
    ([f"{M}:Tiny", "--model-arg", "nonsense=3"], "nonsense"),
    ([f"{M}:Tiny", "--model-arg", "=3"], "KEY=VALUE"),
]
SPEC_ROWS = [row(argv, USAGE, needle) for spec, needle in BAD_SPECS for argv in model_commands(spec).values()]

BAD_INPUTS = [
    ("1,3,x", "not a whole number"),
    ("1,-3", "at least 1"),
    ("0,8", "at least 1"),
    ("100000,100000,100000", "more than netscope will allocate"),
    ("", "no dimensions"),
    ("1,8:float7", "unknown dtype"),
]
INPUT_ROWS = [row([command, f"{M}:Tiny", "--input", text], USAGE, needle)
              for text, needle in BAD_INPUTS for command in ("summary", "check", "solve")]

DEVICE_ROWS = [
    row([command, f"{M}:Tiny", "--device", device], USAGE, needle, *marks)
    for command in ("summary", "check")
    for device, needle, marks in [
        ("cuda", "CUDA is not available", (skip_if(CUDA, "CUDA is available here"),)),
        ("cuda:7", "cuda:7", (skip_if(CUDA and torch.cuda.device_count() > 7, "a cuda:7 exists here"),)),
        ("cuda:-1", "unknown device", ()),
        ("tpu", "device 'tpu'", ()),
    ]
] + [
    row(["summary", f"{M}:Tiny", "--dtype", "int64"], USAGE, "not a float dtype"),
    row(["check", f"{M}:Tiny", "--dtype", "int64"], USAGE, "not a float dtype"),
    row(["summary", f"{M}:Tiny", "--dtype", "float7"], USAGE, "unknown dtype"),
    row(["check", f"{M}:Tiny", "--dtype", "float7"], USAGE, "unknown dtype"),
    row(["solve", f"{M}:Conv", "--device", "cuda"], USAGE, "unrecognized arguments"),
]

FORMAT_ROWS = [
    row(argv, USAGE, needle) for argv, needle in [
        (["summary", f"{M}:Tiny", "--format", "xml"], "invalid choice: 'xml'"),
        (["check", f"{M}:Tiny", "--format", "xml"], "invalid choice: 'xml'"),
        (["solve", f"{M}:Conv", "--format", "xml"], "invalid choice: 'xml'"),
        (["names", f"{M}:Tiny", "--format", "xml"], "invalid choice: 'xml'"),
        (["keys", "ckpt.pt", "--format", "xml"], "invalid choice: 'xml'"),
        (["diff", "ckpt.pt", f"{M}:Tiny", "--format", "xml"], "invalid choice: 'xml'"),
        (["remap", "ckpt.pt", f"{M}:Tiny", "--dry-run", "--format", "xml"], "invalid choice: 'xml'"),
        (["summary", f"{M}:Tiny", "--table-style", "nope"], "unknown table style 'nope'"),
        (["check", f"{M}:Tiny", "--table-style", "nope"], "unknown table style 'nope'"),
        (["names", f"{M}:Tiny", "--table-style", "nope"], "unknown table style 'nope'"),
        (["keys", "ckpt.pt", "--table-style", "nope"], "unknown table style 'nope'"),
        (["diff", "ckpt.pt", f"{M}:Tiny", "--table-style", "nope"], "unknown table style 'nope'"),
        (["remap", "ckpt.pt", f"{M}:Tiny", "--dry-run", "--table-style", "nope"], "unknown table style 'nope'"),
        (["summary", f"{M}:Tiny", "--columns", "layer,nope"], "unknown column"),
        (["summary", f"{M}:Tiny", "--depth", "-1"], "--depth"),
        (["summary", f"{M}:Tiny", "--depth", "two"], "invalid int value"),
        (["summary", f"{M}:Tiny", "--plot", "bars.xyz"], "image format"),
    ]
]

FORWARD_ROWS = [
    row(["summary", f"{M}:Outer", "--input", "1,8", "--device", "cpu"], FORWARD, "gate (NeedsMask)"),
    row(["summary", f"{M}:Outer", "--input", "1,8", "--device", "meta"], FORWARD, "gate (NeedsMask)"),
    row(["summary", f"{M}:ConvNeedsScale", "--input", "1,3,16,16", "--device", "cpu"], FORWARD, "'scale'"),
    row(["check", f"{M}:Outer", "--input", "1,8", "--device", "cpu"], FORWARD, "gate (NeedsMask)"),
    row(["solve", f"{M}:ConvNeedsScale"], FORWARD, "'scale'"),
    row(["step", f"{M}:Outer", "--input", "1,8"], FORWARD, "gate (NeedsMask)"),
]

CHECKPOINT_ROWS = [
    row(argv, USAGE, needle, *marks)
    for path, needle, marks in [
        ("missing.pt", "no file or folder", ()),
        ("d", "folder without a checkpoint", ()),
        ("notes.txt", "not a checkpoint", ()),
        ("empty.pt", "empty (0 bytes)", ()),
        ("trunc.pt", "truncated", ()),
        ("evil.pt", "--unsafe-pickle", ()),
        ("locked.pt", "permission", (skip_if(ROOT, "root reads files whatever their permissions"),)),
    ]
    for argv in (["keys", path], ["diff", path, f"{M}:Tiny"], ["remap", path, f"{M}:Tiny", "-o", "new.pt"],
                 ["remap", path, f"{M}:Tiny", "--dry-run"])
]

OUTPUT_ROWS = [
    row(argv, USAGE, needle, *marks) for argv, needle, marks in [
        (["summary", f"{M}:Tiny", "--input", "1,8", "--device", "cpu", "-o", "existing.txt"], "already exists", ()),
        (["summary", f"{M}:Tiny", "--input", "1,8", "--device", "cpu", "--html", "existing.txt"], "already exists",
         ()),
        (["summary", f"{M}:Tiny", "--input", "1,8", "--device", "cpu", "--plot", "existing.png"], "already exists",
         ()),
        (["summary", f"{M}:Tiny", "--input", "1,8", "--device", "cpu", "-o", "d"], "is a directory", ()),
        (["summary", f"{M}:Tiny", "--input", "1,8", "--device", "cpu", "-o", "nofolder/x.txt"], "does not exist",
         ()),
        (["summary", f"{M}.py:Tiny", "--input", "1,8", "--device", "cpu", "-o", f"{M}.py", "--force"],
         "a file this command reads", ()),
        # the model's own source named by an import string or hf: config, a rules file: read, so never replaced
        (["summary", f"{M}:Tiny", "--input", "1,8", "--device", "cpu", "-o", f"{M}.py", "--force"],
         "a file this command reads", ()),
        (["step", f"{M}:Tiny", "--input", "1,8", "--html", f"{M}.py", "--force"], "a file this command reads", ()),
        (["names", "hf:config.json", "-o", "config.json", "--force"], "a file this command reads", ()),
        (["remap", "ckpt.pt", f"{M}:Tiny", "--dry-run", "--rules", "rules.txt", "--save-plan", "rules.txt", "--force"],
         "a file this command reads", ()),
        (["check", f"{M}:Tiny", "--input", "1,8", "--device", "cpu", "-o", "existing.txt"], "already exists", ()),
        (["names", f"{M}:Tiny", "-o", "existing.txt"], "already exists", ()),
        (["keys", "ckpt.pt", "-o", "existing.txt"], "already exists", ()),
        (["keys", "ckpt.pt", "-o", "d"], "is a directory", ()),
        (["keys", "ckpt.pt", "-o", "ckpt.pt", "--force"], "a file this command reads", ()),
        (["solve", f"{M}:Conv", "-o", "existing.txt"], "already exists", ()),
        (["remap", "ckpt.pt", f"{M}:Tiny", "-o", "existing.pt"], "already exists", ()),
        (["remap", "ckpt.pt", f"{M}:Tiny", "-o", "ckpt.pt"], "--in-place", ()),
        (["remap", "ckpt.pt", f"{M}:Tiny", "-o", "ckpt.pt", "--force"], "--in-place", ()),
        (["remap", "ckpt.pt", f"{M}:Tiny", "-o", "d"], "is a directory", ()),
        (["remap", "ckpt.pt", f"{M}:Tiny", "-o", "out.xyz"], "extension", ()),
        (["remap", "ckpt.pt", f"{M}:Tiny"], "-o OUT", ()),
        (["remap", "ckpt.pt", f"{M}:Tiny", "--in-place"], "write -o ckpt.pt --in-place", ()),
        (["remap", "ckpt.pt", f"{M}:Tiny", "--dry-run", "--save-plan", "existing.txt"], "already exists", ()),
        (["remap", "ckpt.pt", f"{M}:Tiny", "--dry-run", "--save-plan", "ckpt.pt", "--force"],
         "a file this command reads", ()),
    ]
]

RULE_ROWS = [
    row([*prefix, *args], USAGE, needle)
    for prefix in (["diff", "ckpt.pt", f"{M}:Tiny"], ["remap", "ckpt.pt", f"{M}:Tiny", "-o", "new.pt"])
    for args, needle in [
        (["--rule", "(=x"], "regex '(' is invalid"),
        (["--rule", "no_equals_sign"], "has no '='"),
        (["--rule", "=x"], "empty regex"),
        (["--rule", "fc=\\2"], "replacement"),
        (["--rule", "(?P<a>x)=\\g<b>"], "replacement"),
        (["--rules", "missing.txt"], "does not exist"),
        (["--rules", "ckpt.pt"], "not UTF-8"),
        (["--rules", "d"], "is a directory"),
        (["--rules", "notes.txt"], "rule 'hello' has no '='"),
        (["--min-coverage", "1.5"], "--min-coverage 1.5"),
        (["--min-coverage", "-0.1"], "--min-coverage -0.1"),
        (["--min-coverage", "nan"], "--min-coverage nan"),
        (["--min-coverage", "most"], "invalid float value"),
    ]
] + [
    row(["remap", "ckpt.pt", f"{M}:Tiny", "-o", "new.pt", *args], USAGE, needle) for args, needle in [
        (["--plan", "missing.json"], "does not exist"),
        (["--plan", "notes.txt"], "not valid JSON"),
        (["--plan", "ckpt.pt"], "not valid JSON"),
        (["--plan", "d"], "cannot be read"),
        (["--plan", "damaged_plan.json"], "damaged"),
        (["--plan", "existing.txt"], "not valid JSON"),
        (["--invert"], "--plan"),
    ]
]

SOLVE_ROWS = [
    row(["solve", f"{M}:Conv", *args], USAGE, needle)
    for args, needle in [(["--max-probes", "0"], "--max-probes"), (["--max-size", "-3"], "--max-size"),
                         (["--spatial", "-1"], "--spatial")]
] + [row(["solve", f"{M}:Tiny"], USAGE, "no spatial dimensions")]

CLI_ROWS = [
    row(["frobnicate"], USAGE, "invalid choice: 'frobnicate'"),
    row([], USAGE, "give a command", id="(no arguments)"),
    row(["summary", "--bogus-flag"], USAGE, "unrecognized arguments: --bogus-flag"),
    row(["keys"], USAGE, "required: CKPT"),
    row(["diff"], USAGE, "required: CKPT"),
    row(["remap"], USAGE, "required: CKPT"),
    row(["step", "resnet18", "--fsdp", "0"], USAGE, "at least 1"),
    row(["step", "resnet18", "--input", "1,3,32,32", "--activation-checkpointing"], USAGE, "no repeated blocks"),
]

# issue 15: models a user has, and failures that must stay one paragraph
MODELS_RUN_ROWS = [
    row(argv, code, needle, *marks) for argv, code, needle, marks in [
        (["keys", "scripted.pt"], USAGE, "TorchScript archive", ()),
        (["diff", "scripted.pt", f"{M}:Tiny"], USAGE, "TorchScript archive", ()),
        (["remap", "scripted.pt", f"{M}:Tiny", "-o", "new.pt"], USAGE, "TorchScript archive", ()),
        (["diff", "ckpt.pt", f"{M}:Lazy"], USAGE, "fc (LazyLinear)", ()),
        (["remap", "ckpt.pt", f"{M}:Lazy", "--dry-run"], USAGE, "fc (LazyLinear)", ()),
        (["summary", "resnet18", "-i", "1000,3,2048,2048", "--device", "cpu"], USAGE, "--device meta", ()),
        (["check", "resnet18", "-i", "1000,3,2048,2048", "--device", "cpu"], USAGE, "--device meta", ()),
        (["summary", f"{M}:OutOfMemory", "-i", "1,8", "--device", "cpu"], USAGE, "ran out of memory in", ()),
        (["check", f"{M}:OutOfMemory", "-i", "1,8", "--device", "cpu"], USAGE, "ran out of memory in", ()),
        (["summary", "resnet18", "-a", "weights=DEFAULT"], USAGE, "never downloads", ()),
        (["names", "resnet18", "-a", "weights=IMAGENET1K_V1"], USAGE, "never downloads", ()),
        (["summary", f"{M}.py:Nope"], USAGE, f"{M}.py has no attribute 'Nope'", ()),
        (["summary", f"{M}:WarnsThenRaises"], USAGE, "the real problem", ()),
        (["summary", f"{M}:Tiny", "-i", "1,8", "--device", "cpu", "-o", "readonly.txt", "--force"], USAGE,
         "read-only", ()),
        *[([command, *args, "-o", "/proc/netscope.txt"], USAGE, "cannot write", (skip_if(not os.path.isdir("/proc"), "no /proc"),))
          for command, args in [("summary", [f"{M}:Tiny", "-i", "1,8", "--device", "cpu"]),
                                ("check", [f"{M}:Tiny", "-i", "1,8", "--device", "cpu"]),
                                ("names", [f"{M}:Tiny"]), ("keys", ["ckpt.pt"]), ("solve", [f"{M}:Conv"]),
                                ("remap", ["ckpt.pt", f"{M}:Tiny"])]],
        *[([command, *args, "--bogus-flag"], USAGE, f"usage: netscope {command}", ())
          for command, args in [("summary", []), ("check", []), ("solve", []), ("names", []), ("keys", ["ckpt.pt"]),
                                ("diff", ["ckpt.pt"]), ("remap", ["ckpt.pt"])]],
    ]
]

UNSAFE_ROWS = [  # --unsafe-pickle on a file whose pickled class cannot be found: named, not called corrupt
    row(argv, USAGE, "class netscope_badinput_models.NetscopeGone, which cannot be found")
    for argv in (["keys", "gone.pt", "--unsafe-pickle"], ["diff", "gone.pt", f"{M}:Tiny", "--unsafe-pickle"],
                 ["remap", "gone.pt", f"{M}:Tiny", "-o", "new.pt", "--unsafe-pickle"])
]

KEY_ROWS = [  # --key on a bare state dict: nothing to choose, so say to drop it (not "pass (top level)")
    row(argv, USAGE, "are at the top level of the file, the only dict of tensors it holds; drop --key")
    for argv in (["keys", "ckpt.pt", "--key", "state_dict_ema"], ["diff", "ckpt.pt", f"{M}:Tiny", "--key", "ema"])
]

PATH_AS_MODEL_ROWS = [  # a checkpoint or a folder where the model spec goes: say so, not only "unknown model"
    row(argv, USAGE, needle) for argv, needle in [
        (["summary", "ckpt.pt"], "'ckpt.pt' is a file here: a checkpoint is read by 'netscope keys ckpt.pt'"),
        (["names", "ckpt.pt"], "'ckpt.pt' is a file here"),
        # (a second checkpoint file is diff's other form, tests/test_diff_checkpoints.py; a bare folder name is a model)
        (["diff", "ckpt.pt", "d"], "'d' is a folder here"),
        (["step", "d"], "'d' is a folder here"),
    ]
]

ALL_ROWS = (UNSAFE_ROWS + KEY_ROWS + PATH_AS_MODEL_ROWS + SPEC_ROWS + INPUT_ROWS + DEVICE_ROWS + FORMAT_ROWS + FORWARD_ROWS + CHECKPOINT_ROWS + OUTPUT_ROWS
            + RULE_ROWS + SOLVE_ROWS + CLI_ROWS + MODELS_RUN_ROWS)
ERROR_LINE = re.compile(r"^netscope(?: [a-z]+)?: error: ", re.MULTILINE)


@pytest.mark.parametrize("argv,expected_code,needle", ALL_ROWS)
def test_bad_input_gives_one_clear_error(argv, expected_code, needle, workspace, capsys):
    before = snapshot(workspace)
    code, out, err = run_cli(list(argv), capsys)
    assert code == expected_code, err
    assert "Traceback" not in err, err
    assert len(ERROR_LINE.findall(err)) == 1, err  # exactly one error message ...
    assert "\n\n" not in err.strip(), err  # ... in one paragraph
    assert needle.lower() in err.lower(), err  # that names what was wrong
    assert "_netscope_user" not in err, err  # no internal module alias
    assert "Warning" not in err, err  # torch's (and the model's) warnings do not crowd the error
    assert out == "", out
    assert snapshot(workspace) == before  # nothing created, changed or removed (PWNED included)


def test_every_command_is_covered():
    from netscope.cli import COMMANDS

    covered = {p.values[0][0] for p in ALL_ROWS if p.values[0]}
    assert set(COMMANDS) <= covered
