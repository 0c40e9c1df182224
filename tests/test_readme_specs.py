"""The README's tour, run as a new user runs it, and the model specs every command takes.

Each CLI example runs in-process (``netscope.cli.main``) in a scratch folder; the models it builds are compared
with the same models built directly (class, parameter count), so a spec that builds the wrong thing fails.
"""

from __future__ import annotations

import csv
import io
import json
import pathlib
import sys
import textwrap

import pytest
import torch
import torch.nn as nn
import torchvision

from test_bad_input import run_cli

ROOT = pathlib.Path(__file__).parent.parent


def params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def one_paragraph_error(err: str, command: str) -> str:
    """The error paragraph: one line starting ``netscope COMMAND: error:``, no traceback."""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith(f"netscope {command}: error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture()
def scratch(tmp_path, monkeypatch):
    """A user's folder: a package with a factory, a model file importing its sibling, a script."""
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "models.py").write_text(textwrap.dedent("""
        import torch.nn as nn

        def build_net(width=16, depth=2, bias=True, scale=1.0, dims=(3, 4), act="relu", extra="x"):
            net = nn.Sequential(*[nn.Linear(8 if i == 0 else width, width, bias=bias) for i in range(depth)])
            net.cfg = dict(width=width, depth=depth, bias=bias, scale=scale, dims=dims, act=act, extra=extra)
            return net
    """))
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "blocks.py").write_text(textwrap.dedent("""
        import torch.nn as nn

        class Block(nn.Sequential):
            def __init__(self, c):
                super().__init__(nn.Conv2d(c, c, 3, padding=1), nn.ReLU())
    """))
    (tmp_path / "proj" / "model.py").write_text(textwrap.dedent("""
        import torch.nn as nn
        from blocks import Block  # a sibling module, found next to this file

        class Net(nn.Module):
            def __init__(self, c=8, n=2):
                super().__init__()
                self.stem = nn.Conv2d(3, c, 3)
                self.blocks = nn.Sequential(*[Block(c) for _ in range(n)])

            def forward(self, x):
                return self.blocks(self.stem(x))

        class BrokenInit(nn.Module):
            def __init__(self):
                super().__init__()
                len(5)  # a TypeError in the constructor's own code, not in its arguments

        class NeedsArgs(nn.Module):
            def __init__(self, width, depth):
                super().__init__()
                self.fc = nn.Linear(width, depth)
    """))
    (tmp_path / "proj" / "train.py").write_text(textwrap.dedent("""
        import sys
        import torch.nn as nn
        with open("runs.log", "a") as log:
            log.write("ran\\n")

        class Net(nn.Linear):
            pass

        sys.exit(0)  # a training script's entry point, not under __main__
    """))
    (tmp_path / "other").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    for name in ("mypkg", "mypkg.models", "blocks"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return tmp_path


# ------------------------------------------------------------------ the README's tour


def test_readme_resnet18_with_model_arg_input_and_depth(scratch, capsys):
    code, out, err = run_cli(["summary", "resnet18", "-a", "num_classes=10", "--input", "1,3,32,32",
                              "--depth", "2", "-f", "json", "-q"], capsys)
    assert code == 0, err
    data = json.loads(out)
    expected = torchvision.models.resnet18(weights=None, num_classes=10)
    assert data["totals"]["total_params"] == params(expected)
    assert data["layers"][0]["input_shapes"] == [[1, 3, 32, 32]]
    assert data["layers"][0]["output_shapes"] == [1, 10]  # one output: its shape
    assert max(layer["depth"] for layer in data["layers"]) == 2


def test_readme_import_string_factory_with_typed_model_args(scratch, capsys):
    from netscope.models.specs import parse_model_args, resolve_model

    args = ["width=32", "depth=3", "bias=False", "scale=0.5", "dims=(1, 2)", "act=gelu", "extra=None"]
    built = resolve_model("mypkg.models:build_net", parse_model_args(args)).module
    assert built.cfg == dict(width=32, depth=3, bias=False, scale=0.5, dims=(1, 2), act="gelu", extra=None)
    code, out, err = run_cli(["summary", "mypkg.models:build_net", *sum((["-a", a] for a in args), []),
                              "-f", "json", "-q"], capsys)
    assert code == 0, err
    assert json.loads(out)["totals"]["total_params"] == 8 * 32 + 32 * 32 * 2  # no bias


def test_readme_file_spec_markdown_and_csv_columns(scratch, capsys):
    code, out, err = run_cli(["summary", "proj/model.py:Net", "--input", "1,3,32,32", "--format", "markdown"],
                             capsys)
    assert code == 0, err
    assert out.startswith("| Layer") and "| (root)" in out and "| Net" in out
    code, out, err = run_cli(["summary", "resnet50", "--columns", "layer,output,params,macs,kernel,stride",
                              "--format", "csv", "-o", "resnet50.csv", "-q"], capsys)
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO((scratch / "resnet50.csv").read_text())))
    assert list(rows[0]) == ["layer", "output_shapes", "params", "macs", "kernel_size", "stride"]  # JSON's names
    conv1 = next(r for r in rows if r["layer"] == "conv1")
    assert (conv1["kernel_size"], conv1["stride"]) == ("7x7", "2x2")
    assert int(rows[0]["params"]) == params(torchvision.models.resnet50(weights=None))


def test_readme_diff_then_remap_a_dataparallel_checkpoint(scratch, capsys):
    model = torchvision.models.resnet18(weights=None)
    torch.save({"state_dict": {"module." + k: v for k, v in model.state_dict().items()}}, scratch / "ckpt.pt")
    code, out, err = run_cli(["diff", "ckpt.pt", "resnet18", "-q"], capsys)
    assert code == 1  # README: diff exits 1 when the checkpoint would not load strictly as-is
    assert "wrapper-stripped" in out
    code, out, err = run_cli(["remap", "ckpt.pt", "resnet18", "-o", "fixed.pt", "--min-coverage", "0.99",
                              "--save-plan", "plan.json", "-q"], capsys)
    assert code == 0, err
    fixed = torch.load(scratch / "fixed.pt", weights_only=True)["state_dict"]
    fresh = torchvision.models.resnet18(weights=None)
    fresh.load_state_dict(fixed, strict=True)
    assert json.loads((scratch / "plan.json").read_text())


def test_solver_result_repr_is_one_line(scratch):
    import netscope

    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2))
    result = netscope.solve_input_size(model, (1, 1, 8, 8), max_size=16)
    text = repr(result)
    assert "\n" not in text and len(text) < 300 and result.summary() in text
    assert all(len(repr(scan)) < 200 for scan in result.scans)


# ------------------------------------------------------------------ model specs


def test_file_spec_importing_a_sibling_from_another_folder(scratch, capsys, monkeypatch):
    monkeypatch.chdir(scratch / "other")
    code, out, err = run_cli(["summary", "../proj/model.py:Net", "-a", "n=3", "--input", "1,3,16,16",
                              "-f", "json", "-q"], capsys)
    assert code == 0, err
    sys.path.insert(0, str(scratch / "proj"))
    try:
        from model import Net  # noqa: the file itself, imported the ordinary way
        expected = Net(n=3)
    finally:
        sys.path.remove(str(scratch / "proj"))
        sys.modules.pop("model", None)
    data = json.loads(out)
    assert data["layers"][0]["type"] == "Net" and data["totals"]["total_params"] == params(expected)


def test_type_error_inside_a_constructor_is_not_blamed_on_its_arguments(scratch, capsys):
    code, out, err = run_cli(["summary", "proj/model.py:BrokenInit"], capsys)
    line = one_paragraph_error(err, "summary")
    assert code == 2 and "raised TypeError" in line and "has no len()" in line and "--model-arg" not in line
    code, out, err = run_cli(["summary", "proj/model.py:NeedsArgs", "-a", "width=4"], capsys)
    line = one_paragraph_error(err, "summary")
    assert code == 2 and "'depth'" in line and "--model-arg" in line


@pytest.mark.parametrize("command", ["summary", "names"])
def test_a_script_exiting_at_import_runs_once(scratch, capsys, command):
    code, out, err = run_cli([command, "proj/train.py:Net"], capsys)
    line = one_paragraph_error(err, command)
    assert code == 2 and "sys.exit(0)" in line and '__name__ == "__main__"' in line
    assert (scratch / "runs.log").read_text() == "ran\n"  # not once per fallback build


def test_close_names_are_suggested_for_a_misspelled_torchvision_model(scratch, capsys):
    code, out, err = run_cli(["names", "resnt50"], capsys)
    assert code == 2 and "Closest torchvision names: resnet50" in one_paragraph_error(err, "names")


def test_a_checkpoint_given_where_a_model_goes(scratch, capsys):
    torch.save(nn.Linear(2, 2).state_dict(), scratch / "weights.pt")
    code, out, err = run_cli(["check", "weights.pt"], capsys)
    line = one_paragraph_error(err, "check")
    assert code == 2 and "netscope keys weights.pt" in line and "netscope diff weights.pt MODEL" in line


def test_timm_pretrained_tag_builds_its_config_with_random_weights_and_says_so(scratch, capsys, monkeypatch):
    timm = pytest.importorskip("timm")
    import timm.models._builder as builder

    def no_download(*args, **kwargs):
        raise AssertionError("netscope asked timm for pretrained weights")

    monkeypatch.setattr(builder, "load_pretrained", no_download)
    name = "resnet18.a1_in1k"
    code, out, err = run_cli(["summary", f"timm:{name}", "--device", "meta", "-f", "json"], capsys)
    assert code == 0, err
    data = json.loads(out)
    expected = timm.create_model(name, pretrained=False)
    assert data["layers"][0]["type"] == type(expected).__name__
    assert data["totals"]["total_params"] == params(expected)
    assert any("pretrained tag 'a1_in1k'" in note and "random" in note for note in data["run"]["notes"])
    code, out, err = run_cli(["summary", "timm:resnet18", "--device", "meta", "-f", "json"], capsys)
    assert not any("pretrained tag" in note for note in json.loads(out)["run"]["notes"])


EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_readme_examples_run(path, tmp_path, monkeypatch, capsys):
    """Every example the README names runs as a script (a renamed column once broke one)."""
    import runpy

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(path)])
    with torch.random.fork_rng(devices=[]):
        runpy.run_path(str(path), run_name="__main__")
    assert capsys.readouterr().out.strip()


def test_readme_names_every_example():
    readme = (ROOT / "README.md").read_text()
    assert EXAMPLES and all(f"examples/{p.name}" in readme for p in EXAMPLES)


def test_what_a_model_file_prints_while_building_goes_to_stderr_not_into_json(scratch, capsys):
    (scratch / "proj" / "chatty.py").write_text(textwrap.dedent("""
        import torch.nn as nn
        print("loading config")

        class Net(nn.Linear):
            def __init__(self):
                print("building Net")
                super().__init__(4, 2)
    """))
    code, out, err = run_cli(["summary", "proj/chatty.py:Net", "-f", "json"], capsys)
    assert code == 0, err
    assert json.loads(out)["totals"]["total_params"] == params(nn.Linear(4, 2))
    assert "loading config" in err and "building Net" in err


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_what_a_forward_prints_goes_to_stderr_not_into_the_output(scratch, capsys, fmt):
    """A print in the model's forward (a debugging line left in) ran during the pass and landed in the middle of
    -f json / -f csv on stdout. Every command runs with print going to stderr; its own output keeps stdout."""
    (scratch / "proj" / "loud.py").write_text(textwrap.dedent("""
        import torch.nn as nn

        class Net(nn.Linear):
            def __init__(self):
                super().__init__(4, 2)

            def forward(self, x):
                print("forward got", tuple(x.shape))
                return super().forward(x)
    """))
    code, out, err = run_cli(["summary", "proj/loud.py:Net", "--input", "3,4", "-f", fmt], capsys)
    assert code == 0, err
    if fmt == "json":
        assert json.loads(out)["totals"]["total_params"] == params(nn.Linear(4, 2))
    else:
        rows = list(csv.DictReader(io.StringIO(out)))
        assert [row["name"] for row in rows] == [""]  # the root, named as JSON names it
    assert "forward got (3, 4)" in err and "forward got" not in out


@pytest.mark.parametrize("typo", ["BERT", "gpt-2"])
def test_hf_shortcut_typos_suggest_the_shortcut(scratch, capsys, typo):
    pytest.importorskip("transformers")
    code, out, err = run_cli(["summary", f"hf:{typo}"], capsys)
    line = one_paragraph_error(err, "summary")
    assert code == 2 and f"Did you mean hf:{typo.lower().replace('-', '')}?" in line and "never downloads" in line


def test_a_constructor_importing_a_sibling_lazily(scratch, capsys, monkeypatch):
    (scratch / "proj" / "lazy.py").write_text(textwrap.dedent("""
        import torch.nn as nn

        class Net(nn.Sequential):
            def __init__(self):
                from blocks import Block  # imported when built, as `python lazy.py` would find it
                super().__init__(Block(3))
    """))
    monkeypatch.chdir(scratch / "other")
    code, out, err = run_cli(["summary", "../proj/lazy.py:Net", "--input", "1,3,8,8", "-f", "json", "-q"], capsys)
    assert code == 0, err
    assert json.loads(out)["totals"]["total_params"] == params(nn.Conv2d(3, 3, 3))
    assert str(scratch / "proj") not in sys.path  # the folder is on the path only while the model is built


@pytest.mark.parametrize("command", ["diff", "remap"])
def test_checkpoint_and_model_given_in_the_wrong_order(scratch, capsys, command):
    torch.save(nn.Linear(2, 2).state_dict(), scratch / "weights.pt")
    before = (scratch / "weights.pt").read_bytes()
    extra = ["-o", "out.pt"] if command == "remap" else []
    code, out, err = run_cli([command, "resnet18", "weights.pt", *extra], capsys)
    line = one_paragraph_error(err, command)
    assert code == 2 and f"checkpoint comes first, then the model: netscope {command} weights.pt resnet18" in line
    assert (scratch / "weights.pt").read_bytes() == before and not (scratch / "out.pt").exists()


def test_readme_python_tour_prints_what_its_comments_say():
    """The README's first Python block: the values in its comments are what the calls return."""
    import re

    import netscope

    readme = (ROOT / "README.md").read_text()
    block = readme.split("```python\nimport netscope, torchvision\n", 1)[1].split("```", 1)[0]
    comment = {expr.strip(): value.strip() for expr, value in re.findall(r"^(report[\w.]*)\s+# (.+)$", block, re.M)}
    model = torchvision.models.resnet50(weights=None)
    report = netscope.summary(model, input_size=(1, 3, 224, 224))
    assert repr(report) == comment["report"]
    assert report.totals.total_params == int(comment["report.totals.total_params"]) == params(model)
    assert report.totals.total_macs == int(comment["report.totals.total_macs"])
    schema = re.search(r'"schema": "([\w.]+)", "schema_version": (\d+)', block)
    data = report.to_dict()
    assert (data["schema"], data["schema_version"]) == (schema.group(1), int(schema.group(2)))
    width = int(re.search(r"The default table fits 120 columns \(ResNet-50: (\d+)\)", readme).group(1))
    from netscope.cli import main
    import contextlib
    import io as _io

    out = _io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["summary", "resnet50", "--device", "meta", "-q"]) == 0
    assert max(len(line) for line in out.getvalue().splitlines()) == width


@pytest.mark.parametrize("raw, literal", [("false", "False"), ("TRUE", "True"), ("none", "None"), ("null", "None")])
def test_model_arg_spellings_of_literals_from_other_languages_are_refused(scratch, capsys, raw, literal):
    """``-a bias=false`` as the string 'false' is truthy and would build the bias the user turned off."""
    code, out, err = run_cli(["summary", "mypkg.models:build_net", "-a", f"bias={raw}"], capsys)
    line = one_paragraph_error(err, "summary")
    assert code == 2 and f"(bias={literal})" in line and out == ""
    from netscope.models.specs import parse_model_args

    assert parse_model_args([f"act='{raw}'", "name=relu"]) == {"act": raw, "name": "relu"}  # quoted: the string


def test_a_package_module_given_as_a_file_points_to_the_import_string(scratch, capsys):
    (scratch / "mypkg" / "rel.py").write_text("from .models import build_net\n")
    code, out, err = run_cli(["summary", "mypkg/rel.py:build_net"], capsys)
    line = one_paragraph_error(err, "summary")
    assert code == 2 and "relative import" in line and "package.module:ClassName" in line
    code, out, err = run_cli(["summary", "mypkg.rel:build_net", "-f", "json", "-q"], capsys)
    assert code == 0, err


def test_every_dotted_name_the_readme_uses_is_reached_from_import_netscope_alone():
    """``netscope.errors.OperatorRegistryError``, ``netscope.finding_codes.FINDING_CODES``, ... in a fresh
    interpreter after ``import netscope`` only: submodules were attributes only once something else had imported
    them (a new user's first ``netscope.finding_codes`` raised AttributeError)."""
    import re
    import subprocess

    names = sorted(set(re.findall(r"\bnetscope(?:\.[A-Za-z_]\w*)+", (ROOT / "README.md").read_text())))
    assert "netscope.finding_codes.FINDING_CODES" in names and "netscope.errors.OperatorRegistryError" in names
    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT)}
    import netscope

    heads = sorted({name.split(".")[1] for name in names} - set(netscope.__all__))  # submodules, not the exports
    assert {"errors", "finding_codes", "operators"} <= set(heads)
    for head in heads:  # one fresh interpreter per submodule: one import must not hide another's absence
        probe = textwrap.dedent(f"""
            import functools, netscope
            for name in {[n for n in names if n.split(".")[1] == head]!r}:
                functools.reduce(getattr, name.split(".")[1:], netscope)
            for missing in ("nope", "_private", "__wrapped__"):
                assert not hasattr(netscope, missing), missing
        """)
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=ROOT)
        assert result.returncode == 0, (head, result.stderr)


def test_an_import_string_finds_a_package_in_the_current_directory(tmp_path, monkeypatch, capsys):
    """``netscope summary mypkg.models:build_net`` from the project folder: the console script has its own folder
    on ``sys.path``, not the current one, so the README's import string failed with 'No module named'. The folder
    is appended (never shadowing an installed package); a package found nowhere still gets the clear error."""
    import os

    package = "cwd_only_pkg"
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / package / "models.py").write_text("import torch.nn as nn\n"
                                                  "def build_net(width=8):\n"
                                                  "    return nn.Sequential(nn.Linear(4, width), nn.ReLU())\n")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", os.getcwd(), str(tmp_path))])
    for name in (package, f"{package}.models"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    code, out, err = run_cli(["summary", f"{package}.models:build_net", "-a", "width=6", "-q"], capsys)
    assert code == 2 and "cannot import" in one_paragraph_error(err, "summary")
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(["summary", f"{package}.models:build_net", "-a", "width=6", "--input", "2,4",
                              "-f", "json", "-q"], capsys)
    assert code == 0, err
    assert json.loads(out)["totals"]["total_params"] == params(nn.Sequential(nn.Linear(4, 6)))
    assert sys.path[-1] == str(tmp_path)  # appended, after every installed package


def test_diff_of_two_checkpoints_does_not_point_to_a_remap_that_refuses_them(tmp_path, monkeypatch, capsys):
    """``netscope diff old.pt new.safetensors`` said 'write it with `netscope remap`', but remap takes a model, not
    a second checkpoint (it exits 2 on one): the hint names the model of the second checkpoint instead. Its
    coverage line said 'of the model's parameter elements' while counting the file's buffers too."""
    from safetensors.torch import save_file

    monkeypatch.chdir(tmp_path)
    state = nn.BatchNorm1d(3).state_dict()
    torch.save(state, "old.pt")
    save_file({"backbone." + k: v for k, v in state.items()}, "new.safetensors")
    code, out, err = run_cli(["diff", "old.pt", "new.safetensors"], capsys)
    assert code == 1 and "prefix 'backbone.' added" in out
    # the coverage counts every tensor of the target file (a file does not say which are buffers), and says so
    elements = sum(t.numel() for t in state.values())
    assert elements > sum(p.numel() for p in nn.BatchNorm1d(3).parameters())
    assert (f"coverage: 100.00% of the target checkpoint's tensor elements (parameters and buffers: a file does not "
            f"tell them apart) will be loaded ({elements:,} of {elements:,})") in " ".join(out.split())
    assert "second one's keys" in err and "`netscope remap CKPT MODEL`" in err
    code, _, err = run_cli(["remap", "old.pt", "new.safetensors", "-o", "x.safetensors"], capsys)
    assert code == 2  # what the old hint led to


def test_readme_keep_grads_figures_are_the_real_steps():
    """The README's ``--keep-grads`` example (a 3-conv net at batch 64 with SGD: X MB against Y MB) quoted 59.7
    against 51.2 MB, which no model in the repo gives; its figures are now the named test model's, and both equal
    MemTracker's peak on a real CPU step of each loop."""
    import re

    from test_step import _ActivationHeavy, _real_step_figures

    text = " ".join((ROOT / "README.md").read_text().split())
    kept_mb, freed_mb = map(float, re.search(
        r"a 3-conv net at batch 64 with SGD, `tests/test_step.py`'s `_ActivationHeavy`: ([\d.]+) MB against "
        r"([\d.]+) MB", text).groups())
    torch.manual_seed(0)
    model, x = _ActivationHeavy(), torch.randn(64, 3, 16, 16)
    kept = _real_step_figures(model, x, "sgd", set_to_none=False)[4]
    freed = _real_step_figures(model, x, "sgd")[4]
    assert (round(kept / 1e6, 1), round(freed / 1e6, 1)) == (kept_mb, freed_mb)


def test_help_lists_the_readme_exit_codes_with_their_meaning(capsys):
    """``netscope --help`` and the README's exit-code table give the same codes; code 3 said only 'the forward pass
    raised' in the help, while names/diff/remap exit 3 when the model's own state_dict() raises (README)."""
    import re

    from netscope.cli import main

    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Exit codes", 1)[1].split("\n\n", 2)[1]
    documented = {int(code): meaning for code, meaning in re.findall(r"^\| (\d+) \| (.+) \|$", table, re.M)}
    with pytest.raises(SystemExit):
        main(["--help"])
    epilog = " ".join(capsys.readouterr().out.split("Exit codes:", 1)[1].split())
    listed = {int(code): meaning for code, meaning in re.findall(r"(\d+) (.+?)(?:, (?=\d+ )|\.$)", epilog)}
    assert set(listed) == set(documented) == {0, 1, 2, 3, 130}
    assert "state_dict()" in documented[3] and "state_dict()" in listed[3]
    assert "forward pass" in documented[3] and "forward pass" in listed[3]


def test_every_option_the_readme_names_exists_and_the_help_lists_none_it_lacks(capsys):
    """Each ``--option`` the README writes is an option of some subcommand, and every subcommand's options are in
    the README (the tour, the text, or the line naming those only ``--help`` shows)."""
    import re

    from netscope.cli import COMMANDS, main

    readme = (ROOT / "README.md").read_text()
    written = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", readme))
    offered = set()
    for command in COMMANDS:
        with pytest.raises(SystemExit):
            main([command, "--help"])
        offered |= set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", capsys.readouterr().out))
    assert written - offered == set()
    long_forms_of_short_ones = {"--help", "--model-arg", "--output", "--out", "--quiet"}  # -a, -o, -q in the README
    assert offered - written - long_forms_of_short_ones == set()


def test_the_readme_fold_row_is_the_tables(capsys):
    """The README's folded-run example is a row of ResNet-50's table, under the parent it names (it read
    ``as layer2.1`` where the table, naming rows relative to their parent, writes ``as 1``)."""
    import re

    from netscope.cli import main

    readme = " ".join((ROOT / "README.md").read_text().split())
    example, parent = re.search(r"fold into one row \(`([^`]+)` under `([\w.]+)`", readme).groups()
    assert main(["summary", "resnet50", "--device", "meta", "-q"]) == 0
    lines = capsys.readouterr().out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == [parent])
    depth = len(lines[start]) - len(lines[start].lstrip())
    block = []
    for line in lines[start + 1:]:
        if len(line) - len(line.lstrip()) <= depth:
            break
        block.append(" ".join(line.split()))
    assert any(row.startswith(" ".join(example.split()) + " ") for row in block), block
