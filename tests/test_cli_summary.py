"""`netscope summary` on the command line: model specs, options, and one-paragraph errors."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from netscope.cli import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_torchvision_name_with_model_args_and_input(capsys):
    code, out, err = run_cli(capsys, "summary", "resnet18", "--model-arg", "num_classes=10", "--input", "1,3,32,32",
                             "--device", "cpu", "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    assert data["layers"][-1]["name"] == "fc" and data["layers"][-1]["output_shapes"] == [1, 10]
    assert data["run"]["device"] == "cpu"


def test_default_model_is_resnet50_on_meta(capsys):
    code, out, err = run_cli(capsys, "summary", "--device", "meta", "--depth", "1")
    assert code == 0, err
    assert "Total params: 25,557,032" in out and "Total mult-adds: 4.09 G" in out


def test_file_spec_and_import_spec(tmp_path, capsys, monkeypatch):
    source = tmp_path / "mynet.py"
    source.write_text(textwrap.dedent("""
        import torch.nn as nn
        class Net(nn.Module):
            def __init__(self, width=4):
                super().__init__()
                self.fc = nn.Linear(8, width)
            def forward(self, x):
                return self.fc(x)
    """))
    code, out, err = run_cli(capsys, "summary", f"{source}:Net", "-a", "width=6", "--input", "2,8", "-f", "csv",
                             "--device", "cpu")
    assert code == 0, err
    assert "Linear" in out and "[2, 6]" in out
    monkeypatch.syspath_prepend(str(tmp_path))
    code, out, err = run_cli(capsys, "summary", "mynet:Net", "--input", "2,8", "-f", "markdown", "--device", "cpu")
    assert code == 0, err
    assert out.startswith("| Layer")


def test_integer_inputs_for_token_models(tmp_path, capsys, monkeypatch):
    source = tmp_path / "tok.py"
    source.write_text("import torch.nn as nn\nclass Tok(nn.Sequential):\n"
                      "    def __init__(self):\n        super().__init__(nn.Embedding(1000, 4), nn.Linear(4, 2))\n")
    code, out, err = run_cli(capsys, "summary", f"{source}:Tok", "--input", "1,16:int64", "--device", "cpu")
    assert code == 0, err
    assert "[1, 16, 2]" in out


@pytest.mark.parametrize("argv,needle", [
    (["summary", "resnet5O"], "resnet50"),  # closest names suggested
    (["summary", "resnet18", "--input", "1,3,x"], "not a whole number"),
    (["summary", "resnet18", "--input", "1,0,3"], "at least 1"),
    (["summary", "resnet18", "--input", "100000,100000,100000"], "more than netscope will allocate"),
    (["summary", "resnet18", "--device", "cuda:7"], "cuda"),
    (["summary", "resnet18", "--device", "tpu"], "device"),
    (["summary", "resnet18", "--columns", "layer,nope"], "unknown column"),
    (["summary", "resnet18", "--table-style", "nope"], "table style"),
    (["summary", "resnet18", "--dtype", "float7"], "unknown dtype"),
    (["summary", "resnet18", "--model-arg", "=3"], "KEY=VALUE"),
    (["summary", "resnet18", "--model-arg", "nonsense=3"], "nonsense"),
    (["summary", "no_such_pkg.mod:Net"], "cannot import"),
    (["summary", "missing_file.py:Net"], "does not exist"),
])
def test_user_mistakes_give_one_paragraph_and_exit_2(capsys, argv, needle):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert needle in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_forward_failure_exits_3_with_the_layer(capsys):
    code, out, err = run_cli(capsys, "summary", "resnet18", "--input", "1,1,64,64", "--device", "cpu")
    assert code == 3
    assert "conv1 (Conv2d)" in err and "Traceback" not in err


def test_help_does_not_import_torch():
    probe = "import sys; from netscope.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n" \
            "print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"


def test_python_dash_m_works():
    result = subprocess.run([sys.executable, "-m", "netscope", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and "netscope" in result.stdout


def test_no_torchvision_builder_downloads_weights(monkeypatch):
    """Detection and segmentation builders default to ImageNet backbone weights: netscope must turn that off."""
    import inspect

    import torch
    import torchvision

    from netscope.models.specs import resolve_model

    def refuse(*args, **kwargs):
        raise AssertionError(f"a weight download was attempted: {args[:1]}")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torchvision.models._api.WeightsEnum, "get_state_dict", refuse)
    with_backbone = [n for n in torchvision.models.list_models()
                     if "weights_backbone" in inspect.signature(torchvision.models.get_model_builder(n)).parameters]
    assert len(with_backbone) >= 10  # detection + segmentation families
    for name in with_backbone:
        resolved = resolve_model(name, empty_weights=True)
        assert sum(p.numel() for p in resolved.module.parameters()) > 0, name


def test_summary_refuses_training_step_columns_and_all_leaves_them_out(capsys):
    code, out, err = run_cli(capsys, "summary", "resnet18", "--device", "meta", "--columns", "layer,bwd_macs")
    assert code == 2 and "bwd_macs" in err and "netscope step" in err and "Traceback" not in err
    code, out, err = run_cli(capsys, "summary", "resnet18", "--device", "meta", "--columns", "all", "--depth", "0")
    assert code == 0 and "Receptive field (exact)" in out
    assert "Backward mult-adds" not in out and "Saved for backward" not in out


def test_exact_receptive_field_column_reads_as_text(capsys):
    import torch.nn as nn

    import netscope

    model = nn.Sequential(nn.Conv2d(1, 1, 7, stride=2, padding=3), nn.MaxPool2d(3, 2, 1))
    report = netscope.summary(model, (1, 1, 32, 32), receptive_field=True)
    lines = report.render(columns="layer,receptive_field").splitlines()
    # conv: size 7, jump 2, first window centred at 0 - 3 + 3; pool: 7 + (3-1)*2 = 11, jump 4, centre 0 + (1-1)*2
    assert lines[3].split(None, 1)[1].strip() == "7x7, jump 2x2, first centre 0x0"
    assert lines[4].split(None, 1)[1].strip() == "11x11, jump 4x4, first centre 0x0"
    assert "{" not in "\n".join(lines)  # no Python dict repr in a table


COUNTED_MODEL = '''
import pathlib
import torch
import torch.nn as nn

with open(pathlib.Path(__file__).with_name("imports.log"), "a") as log:  # a module-level side effect
    log.write("imported\\n")
OFFSET = torch.ones(4)  # a module-level tensor the forward uses: it must be a real one


class Net(nn.Module):
    def __init__(self, read_value=False):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        if read_value:  # reads a weight's value: the meta and fake builds fail, the real one runs
            self.scale = float(self.conv.weight.abs().sum() > 0)

    def forward(self, x):
        return self.conv(x).mean((2, 3)) + OFFSET
'''


@pytest.mark.parametrize("argv", [
    ["summary", "net.py:Net", "-i", "1,3,8,8"],  # --device auto: a structural build, then the real one
    ["summary", "net.py:Net", "-i", "1,3,8,8", "-a", "read_value=True"],  # meta and fake builds fail first
    ["check", "net.py:Net", "-i", "1,3,8,8"],
    ["names", "net.py:Net", "-a", "read_value=True"],
    ["step", "net.py:Net", "-i", "2,3,8,8"],
    ["solve", "net.py:Net", "-i", "1,3,8,8", "--max-size", "12"],
])
def test_a_model_file_runs_its_module_level_code_once_per_command(tmp_path, capsys, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.py").write_text(COUNTED_MODEL)
    code, out, err = run_cli(capsys, *argv, "-q")
    assert code == 0, err
    assert (tmp_path / "imports.log").read_text() == "imported\n"


PRINTING_MODEL = '''
import torch.nn as nn

print("loading the file")


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        print("building Net")
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return self.conv(x)
'''


@pytest.mark.parametrize("fits", [True, False])
def test_device_auto_shows_what_the_constructor_prints_once(tmp_path, capsys, monkeypatch, fits):
    """--device auto builds the model once on meta to size its weights, then for real when they fit: a constructor
    that prints said 'building Net' twice (a script says it once). Oracle: the file run as a script would, one
    build. When the weights do not fit, the meta build is the one used, and its print is shown, once."""
    import netscope.run.devices

    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.py").write_text(PRINTING_MODEL)
    if not fits:
        monkeypatch.setattr(netscope.run.devices, "available_memory_bytes", lambda device=None: 16)  # 16 bytes free
    code, out, err = run_cli(capsys, "summary", "net.py:Net", "-i", "1,3,8,8", "--device", "auto")
    assert code == 0, err
    assert (err.count("loading the file"), err.count("building Net")) == (1, 1), err
    assert ("running on the meta device" in err) is not fits
