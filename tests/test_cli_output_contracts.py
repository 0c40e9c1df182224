"""What a script reading netscope's output relies on, command by command: JSON documents that `json` parses
with schema and schema_version, CSV that `csv` reads back to the report's own names (commas, quotes, line
breaks, non-ASCII), `-o FILE` byte-identical to `-o -`, and refused outputs with exit 2 and nothing written."""

from __future__ import annotations

import csv
import io
import json
import textwrap

import pytest
import torch

from netscope.cli import main

ODD = 'a,b "c"|d\ne'  # a ModuleDict-style registration name no format may break on


@pytest.fixture()
def files(tmp_path, monkeypatch):
    """A model file whose module names need quoting, and two checkpoints of it (one under a wrapper prefix,
    with an extra key that needs quoting too)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "odd.py").write_text(textwrap.dedent(f"""
        import torch.nn as nn
        class Odd(nn.Module):
            def __init__(self):
                super().__init__()
                self.add_module({ODD!r}, nn.Conv2d(3, 4, 3))
                self.add_module("ünï", nn.Conv2d(4, 4, 3))
            def forward(self, x):
                print("the model prints")  # must not reach stdout
                return getattr(self, "ünï")(getattr(self, {ODD!r})(x))
    """))
    (tmp_path / "finds.py").write_text(textwrap.dedent("""
        import torch.nn as nn
        class Finds(nn.Module):  # a 1x1 stride-2 conv (a check's info) and one module under two names (an alias)
            def __init__(self):
                super().__init__()
                self.down = nn.Conv2d(3, 4, 1, stride=2)
                self.again = self.down
            def forward(self, x):
                return self.down(x)
    """))
    import importlib.util

    spec = importlib.util.spec_from_file_location("odd_model_for_contracts", tmp_path / "odd.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    state = module.Odd().state_dict()
    torch.save(state, tmp_path / "plain.pt")
    wrapped = {"module." + k: v for k, v in state.items()}
    wrapped['extra,"x"\ny'] = torch.zeros(3)
    torch.save(wrapped, tmp_path / "wrapped.pt")
    return tmp_path, list(state)


def cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def strict_json(text):
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


COMMANDS = {
    "summary": ["summary", "odd.py:Odd", "-i", "1,3,8,8", "--device", "cpu"],
    "check": ["check", "odd.py:Odd", "-i", "1,3,8,8", "--device", "cpu", "--all"],
    "names": ["names", "odd.py:Odd"],
    "keys": ["keys", "wrapped.pt"],
    "diff": ["diff", "wrapped.pt", "odd.py:Odd"],
    "diff-two-files": ["diff", "wrapped.pt", "plain.pt"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_json_is_one_schema_document_and_csv_reads_back_every_name(files, capsys, command):
    _, keys = files
    code, out, err = cli(capsys, *COMMANDS[command], "-f", "json")
    assert code in (0, 1), err
    doc = strict_json(out)  # nothing else on stdout: the model's print went to stderr
    assert doc["schema"] == f"netscope.{command.split('-')[0]}" and isinstance(doc["schema_version"], int)
    code, out, err = cli(capsys, *COMMANDS[command], "-f", "csv")
    assert code in (0, 1), err
    rows = list(csv.reader(io.StringIO(out)))
    assert len({len(row) for row in rows}) == 1  # a header and records of its width
    cells = {cell for row in rows[1:] for cell in row}
    if command in ("summary", "check"):
        assert ODD in cells and "ünï" in cells
    elif command == "names":
        assert [row[0] for row in rows[1:]] == keys
    elif command == "keys":
        assert 'extra,"x"\ny' in cells and f"module.{ODD}.weight" in cells


@pytest.mark.parametrize("command", ["summary", "names", "keys", "diff"])
def test_markdown_rows_survive_pipes_and_line_breaks_in_names(files, capsys, command):
    code, out, err = cli(capsys, *COMMANDS[command], "-f", "markdown")
    assert code in (0, 1), err
    table = [line for line in out.splitlines() if line.startswith("|")]
    widths = {len(line.replace("\\|", "").split("|")) for line in table}
    assert len(widths) == 1, table  # every row has the header's cells: no "|" or line break split one
    assert any("<br>" in line for line in table)


# Every command's CSV: a column JSON has is named as JSON names it, and a boolean is written as JSON writes it.
# (command line, the JSON records its CSV rows flatten, the text columns JSON does not have: README's output section)
CSV_AND_JSON = {
    "summary": (["summary", "odd.py:Odd", "-i", "1,3,8,8", "--device", "cpu"], lambda d: d["layers"], set()),
    "summary-all": (["summary", "odd.py:Odd", "-i", "1,3,8,8", "--device", "cpu", "--columns", "all"],
                    lambda d: d["layers"], set()),
    "by-op": (["summary", "odd.py:Odd", "-i", "1,3,8,8", "--device", "cpu", "--by-op"],
              lambda d: [dict(name=c["name"], **op) for c in d["per_layer"] for op in c["ops"]], set()),
    "step": (["step", "odd.py:Odd", "-i", "2,3,8,8", "--columns", "all"], lambda d: d["layers"], set()),
    "check": (["check", "finds.py:Finds", "-i", "1,3,8,8", "--device", "cpu"], lambda d: d["findings"], set()),
    "check-all": (COMMANDS["check"], lambda d: d["checks"], {"formula", "rf", "jump"}),
    "names": (COMMANDS["names"], lambda d: d["entries"], {"origins"}),
    "names-findings": (["names", "finds.py:Finds", "--findings-only"], lambda d: d["findings"], set()),
    "keys": (COMMANDS["keys"], lambda d: [dict(key=k, **v) for k, v in d["tensors"].items()],
             {"elements", "bytes", "size", "shares_storage_with"}),
    "diff": (COMMANDS["diff"] + ["--all"], lambda d: d["plan"]["decisions"], set()),
    "remap": (["remap", "wrapped.pt", "odd.py:Odd", "--dry-run", "--drop-unmatched"], lambda d: d["plan"]["decisions"],
              set()),
}


@pytest.mark.parametrize("command", list(CSV_AND_JSON))
def test_every_csv_names_its_columns_as_json_does_and_writes_booleans_as_json_does(files, capsys, command):
    argv, records_of, text_only = CSV_AND_JSON[command]
    code, out, err = cli(capsys, *argv, "-f", "json", "-q")
    assert code in (0, 1), err
    records = records_of(strict_json(out))
    code, out, err = cli(capsys, *argv, "-f", "csv", "-q")
    assert code in (0, 1), err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert records and len(rows) == len(records)
    fields = set().union(*records)
    header = list(rows[0])
    assert set(header) - text_only <= fields, set(header) - text_only - fields
    for row, record in zip(rows, records):
        for column in set(header) & fields:
            value = record[column]
            if isinstance(value, bool) or value is None and column in ("trainable",):
                assert row[column] == {True: "true", False: "false", None: ""}[value], (column, row[column])
    assert not {cell for row in rows for cell in row.values()} & {"True", "False", "yes", "no"}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_plain_table_shows_line_breaks_in_names_escaped_on_the_names_own_line(files, capsys, command):
    """A line break in a module name or checkpoint key is drawn as ``\\n`` (as Python writes it), never as a
    second line of the row."""
    code, out, err = cli(capsys, *COMMANDS[command], "-f", "table")
    assert code in (0, 1), err
    shown = ODD.replace("\n", "\\n")
    assert shown in out and ODD not in out
    lines = out.splitlines()
    assert not any(line.strip().startswith("e ") or line.strip() in ("e", "e.weight", "e.bias") for line in lines)
    if command in ("keys", "diff", "diff-two-files"):
        assert 'extra,"x"\\ny' in out and 'extra,"x"\ny' not in out


@pytest.mark.parametrize("command", ["check", "diff", "diff-two-files", "names"])
def test_output_file_is_byte_identical_to_stdout_and_never_replaced_without_force(files, capsys, command):
    tmp_path, _ = files
    argv = COMMANDS[command] + ["-f", "json"]
    code, stdout_text, err = cli(capsys, *argv, "-o", "-")
    assert code in (0, 1), err
    code_file, out, err = cli(capsys, *argv, "-o", "report.json")
    assert (code_file, out) == (code, "")
    assert (tmp_path / "report.json").read_text() == stdout_text
    code, out, err = cli(capsys, *argv, "-o", "report.json")  # exists, no --force
    assert (code, out) == (2, "") and "--force" in err and "Traceback" not in err
    code, out, err = cli(capsys, *argv, "-o", "no/such/dir/report.json")
    assert (code, out) == (2, "") and "does not exist" in err
    assert not (tmp_path / "no").exists()


def test_diff_refuses_to_write_over_the_second_checkpoint(files, capsys):
    tmp_path, _ = files
    before = (tmp_path / "plain.pt").read_bytes()
    code, out, err = cli(capsys, "diff", "wrapped.pt", "plain.pt", "-o", "plain.pt", "--force", "-q")
    assert (code, out) == (2, "") and "reads" in err
    assert (tmp_path / "plain.pt").read_bytes() == before


def test_quiet_silences_remaps_note_but_not_an_error(files, capsys):
    tmp_path, keys = files
    state = torch.load(tmp_path / "plain.pt")
    weight = next(k for k in keys if k.endswith("weight"))
    state[weight] = torch.zeros(1, 1, 1, 1)  # a shape the model's layer does not have
    torch.save(state, tmp_path / "mismatch.pt")
    argv = ["remap", "mismatch.pt", "odd.py:Odd", "--dry-run", "-f", "json"]
    code, out, err = cli(capsys, *argv)
    assert code == 0 and "note: a strict load of the result would fail" in err
    code, quiet_out, err = cli(capsys, *argv, "-q")
    assert (code, err) == (0, "") and strict_json(quiet_out) == strict_json(out)
    code, out, err = cli(capsys, "remap", "mismatch.pt", "odd.py:Odd", "-o", "new.pt", "-q")  # refused: not a note
    assert (code, out) == (2, "") and "--drop-unmatched" in err and not (tmp_path / "new.pt").exists()


def test_keys_and_names_csv_write_one_tensors_shape_the_same_way(files, capsys):
    """The same key's shape reads the same in `keys` and `names` CSV (and the summary's): a JSON list of ints."""
    _, keys = files
    tables = {}
    for argv in (["keys", "plain.pt"], ["names", "odd.py:Odd"]):
        code, out, err = cli(capsys, *argv, "-f", "csv")
        assert code == 0, err
        tables[argv[0]] = {row["key"]: row["shape"] for row in csv.DictReader(io.StringIO(out))}
    assert tables["keys"] == tables["names"] and list(tables["keys"]) == keys
    state = torch.load(files[0] / "plain.pt")
    assert {k: strict_json(v) for k, v in tables["keys"].items()} == {k: list(t.shape) for k, t in state.items()}


def test_by_op_json_is_a_versioned_document_equal_to_the_summarys_operators_section(files, capsys):
    code, out, err = cli(capsys, *COMMANDS["summary"], "--by-op", "-f", "json")
    assert code == 0, err
    doc = strict_json(out)
    code, out, err = cli(capsys, *COMMANDS["summary"], "-f", "json")
    summary = strict_json(out)
    assert doc.pop("schema") == "netscope.operators" and doc.pop("schema_version") == summary["schema_version"]
    assert doc == summary["operators"]


@pytest.mark.parametrize("command", ["names", "diff", "remap"])
def test_a_state_dict_that_raises_is_exit_3_with_one_paragraph(files, capsys, command):
    """README: exit 3 when the model's own state_dict() raised; diff and remap leaked a traceback (exit 1)."""
    tmp_path, _ = files
    (tmp_path / "sdboom.py").write_text(textwrap.dedent("""
        import torch.nn as nn
        class SDBoom(nn.Module):
            def __init__(self):
                super().__init__()
                self.l = nn.Linear(2, 2)
            def state_dict(self, *args, **kwargs):
                raise RuntimeError("sd boom")
    """))
    argv = {"names": ["names"], "diff": ["diff", "plain.pt"], "remap": ["remap", "plain.pt"]}[command]
    extra = ["--dry-run"] if command == "remap" else []
    code, out, err = cli(capsys, *argv, "sdboom.py:SDBoom", *extra, "-f", "json", "-q")
    assert (code, out) == (3, "")
    assert "state_dict() raised RuntimeError: sd boom" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_options_may_come_before_the_model_of_diff_and_remap(files, capsys):
    """`netscope diff ckpt.pt --all MODEL` parses as `diff ckpt.pt MODEL --all` (argparse had bound the optional
    model positional before the options and refused MODEL, exit 2); an unknown option is still exit 2."""
    after = cli(capsys, "diff", "wrapped.pt", "odd.py:Odd", "--all", "-f", "json")
    before = cli(capsys, "diff", "wrapped.pt", "--all", "-f", "json", "odd.py:Odd")
    assert before == after and after[0] == 1
    plan = cli(capsys, "remap", "wrapped.pt", "--dry-run", "odd.py:Odd", "-f", "json", "-q")
    assert plan[0] == 0 and strict_json(plan[1])["target"] == "Odd"
    with pytest.raises(SystemExit) as info:
        main(["diff", "wrapped.pt", "--bogus", "odd.py:Odd"])
    assert info.value.code == 2 and "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_fd_level_writes_of_the_model_never_reach_stdout(tmp_path):
    """A model that writes to file descriptor 1 itself (os.write, C code, a child process) goes to stderr like
    its print does: stdout holds only the JSON (it held the model's lines before the document)."""
    import os
    import subprocess
    import sys

    (tmp_path / "fd.py").write_text(textwrap.dedent("""
        import os
        import torch.nn as nn
        os.write(1, b"import-time write\\n")
        class F(nn.Module):
            def __init__(self):
                super().__init__()
                self.l = nn.Linear(4, 4)
            def forward(self, x):
                os.write(1, b"forward write\\n")
                os.system("echo from a child process")
                return self.l(x)
    """))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (os.getcwd(), os.environ.get("PYTHONPATH")) if p),
               OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-m", "netscope", "summary", "fd.py:F", "-i", "1,4", "--device", "cpu",
                             "-f", "json"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert strict_json(result.stdout)["schema"] == "netscope.summary"
    assert all(line in result.stderr for line in ("import-time write", "forward write", "from a child process"))


def test_diff_csv_writes_shapes_as_keys_does(files, capsys):
    """diff/remap's shape cell: the keys listing's `[4, 3, 3, 3]`, and `[checkpoint] vs [model]` where they differ
    (it was `4x3x3x3`, `scalar`)."""
    tmp_path, keys = files
    state = torch.load(tmp_path / "plain.pt")
    bias = next(k for k in keys if k.endswith("bias"))
    state[bias] = torch.zeros(9)
    state["step"] = torch.tensor(3)
    torch.save(state, tmp_path / "odd_shapes.pt")
    code, out, err = cli(capsys, "diff", "odd_shapes.pt", "odd.py:Odd", "--all", "-f", "csv")
    assert code == 1, err
    rows = {row["source"]: (row["source_shape"], row["target_shape"]) for row in csv.DictReader(io.StringIO(out))}
    code, out, err = cli(capsys, "keys", "odd_shapes.pt", "-f", "csv")
    listed = {row["key"]: row["shape"] for row in csv.DictReader(io.StringIO(out))}
    model_bias = str(list(torch.load(tmp_path / "plain.pt")[bias].shape))
    assert rows[bias] == (listed[bias], model_bias) == ("[9]", "[4]")  # CSV: JSON's source_shape, target_shape
    assert rows["step"] == (listed["step"], "") == ("[]", "")
    code, out, err = cli(capsys, "diff", "odd_shapes.pt", "odd.py:Odd", "--all")  # the table: one shape cell
    assert "[9] vs [4]" in out
    assert all(rows[k] == (listed[k], listed[k]) for k in keys if k != bias)
