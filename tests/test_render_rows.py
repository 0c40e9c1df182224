"""The built-in "simple" table drawer must match tabulate's "simple" layout exactly (tabulate is the oracle)."""

from __future__ import annotations

import tabulate
from hypothesis import given, settings, strategies as st

from netscope.render.rows import _cell, render_rows

WORD = st.text(alphabet="abcxyz[]_.,-0123456789", min_size=1, max_size=6)
# tabulate strips the ends of every cell, so cells with inner spaces only (our own indentation is tested below)
CELL = st.one_of(st.none(), st.integers(-10**9, 10**9), st.lists(WORD, max_size=3).map(" ".join))
COLUMNS = ["name", "n", "shape"]


@given(st.lists(st.fixed_dictionaries({c: CELL for c in COLUMNS}), max_size=6),
       st.lists(st.sampled_from(COLUMNS), unique=True))
@settings(max_examples=300, deadline=None, derandomize=True)
def test_simple_table_matches_tabulate(rows, numeric):
    ours = render_rows(rows, COLUMNS, "table", numeric=numeric)
    theirs = tabulate.tabulate([[_cell(r[c]) for c in COLUMNS] for r in rows], headers=COLUMNS, tablefmt="simple",
                               colalign=["right" if c in numeric else "left" for c in COLUMNS],
                               disable_numparse=True)
    assert ours == theirs


def test_tree_indentation_survives_in_every_style():
    rows = [{"layer": "(root)"}, {"layer": "  conv1"}, {"layer": "    block.0"}]
    simple = render_rows(rows, ["layer"], "table").splitlines()
    assert simple[3] == "  conv1" and simple[4] == "    block.0"
    grid = render_rows(rows, ["layer"], "table", table_style="grid")
    assert "· conv1" in grid and "· · block.0" in grid


# ---- the column registry drives every output --------------------------------------------------------

import json  # noqa: E402

import pytest  # noqa: E402
import torch.nn as nn  # noqa: E402
import torchvision  # noqa: E402

import netscope  # noqa: E402
from netscope.cli import main  # noqa: E402
from netscope.render.columns import COLUMNS as REGISTRY, DATA_COLUMNS  # noqa: E402


class Block(nn.Module):
    def __init__(self, width=8):
        super().__init__()
        self.fc = nn.Linear(width, width)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.fc(x))


class Tower(nn.Module):
    """A stem, six identical blocks, a head: the shape of a transformer stack in miniature."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Linear(4, 8)
        self.blocks = nn.Sequential(*[Block() for _ in range(6)])
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


@pytest.fixture(scope="module")
def tower():
    model = Tower()
    model.stem.bias.requires_grad_(False)  # the stem is partly trainable
    return model, netscope.summary(model, (3, 4))


def test_json_and_dataframe_carry_the_same_typed_values(tower):
    model, report = tower
    data = report.to_dict()
    frame = report.to_dataframe()
    assert data["schema"] == "netscope.summary" and isinstance(data["schema_version"], int)
    assert data["columns"] == list(frame.columns) == [REGISTRY[k].name for k in DATA_COLUMNS]
    assert len(data["layers"]) == len(frame) == len(report.layers)  # every call, never folded
    for name in ("index", "name", "type", "params", "own_params", "macs", "own_macs", "output_bytes"):
        assert [row[name] for row in data["layers"]] == frame[name].tolist()
    counts = {k: REGISTRY[k].name for k in ("params", "own_params", "macs", "own_macs", "depth", "output_bytes")}
    assert all(str(frame[name].dtype) == "int64" for name in counts.values())
    # trainable: a nullable boolean; partly trainable subtrees are <NA> and say so in trainable_partial
    by_name = frame.set_index("name")
    assert by_name.loc["head", "trainable"] is True or by_name.loc["head", "trainable"] == True  # noqa: E712
    assert str(frame["trainable"].dtype) == "boolean"
    for name in ("", "stem"):  # the stem's bias is frozen: the stem and the root are partly trainable
        assert by_name.loc[name, "trainable_partial"]
        assert by_name.loc[name, "trainable"] is __import__("pandas").NA
    assert not by_name.loc["blocks.0.act", "trainable_partial"]
    assert by_name.loc["blocks.0.act", "trainable"] is __import__("pandas").NA  # no parameters at all
    # shapes as tuples: the Linear's output and the inputs (one tuple per positional argument)
    assert by_name.loc["head", "output_shapes"] == (3, 2)
    assert by_name.loc["head", "input_shapes"] == ((3, 8),)
    assert by_name.loc["head", "params"] == sum(p.numel() for p in model.head.parameters())


def test_json_honours_columns_and_depth(capsys):
    assert main(["summary", "resnet18", "--device", "meta", "-f", "json", "--columns", "name,params",
                 "--depth", "1", "--quiet"]) == 0
    data = json.loads(capsys.readouterr().out)
    model = torchvision.models.resnet18(weights=None)
    assert data["columns"] == ["name", "params"]
    assert [row["name"] for row in data["layers"]] == [""] + [n for n, _ in model.named_children()]
    assert all(set(row) == {"name", "params"} for row in data["layers"])
    assert data["layers"][0]["params"] == sum(p.numel() for p in model.parameters())


def test_repeated_blocks_fold_in_the_table_and_expand_on_request(tower):
    _, report = tower
    table = report.render("table", columns="layer,type,input,output,params,macs")
    lines = table.splitlines()
    fold = [line for line in lines if "5 × Block" in line]
    assert len(fold) == 1
    cells = fold[0].split()
    assert cells[0] == "1–5" and cells[4:6] == ["as", "0"]  # named relative to blocks, like the tree
    block_params = 8 * 8 + 8
    assert f"{5 * block_params:,}" in cells  # the run's own total, not one block's
    assert not any(line.split()[0] in ("fc", "act") for line in lines[lines.index(fold[0]):] if line.strip()[:2] != "--"
                   and "head" not in line and line.strip() and not line.startswith(("(", "Total", "Train", "Non")))
    full = report.render("table", columns="layer,type", expand=True)
    assert "5 × Block" not in full
    assert sum(1 for line in full.splitlines() if line.split()[-1:] == ["Block"]) == 6
    # CSV never folds, and its layer names carry no indentation
    csv_lines = report.render("csv", columns="layer,type").splitlines()
    assert len(csv_lines) == 1 + len(report.layers)
    assert [line.split(",")[0] for line in csv_lines[1:]] == [c.display_name for c in report.layers]
    numbers = report.render("csv", columns="name,params,macs").splitlines()[1:]
    assert numbers[0] == f",{report.layers[0].subtree_params},{report.layers[0].macs}"  # plain digits, no "k"/","


def test_a_block_with_a_problem_is_never_folded():
    class Crop(nn.Conv2d):  # its output is not what the conv formula says: a mismatch the fold must not hide
        def forward(self, x):
            return super().forward(x)[..., :-1] if self.out_channels == 5 else super().forward(x)

    model = nn.Sequential(*[nn.Sequential(Crop(4, 4, 1)) for _ in range(3)], nn.Sequential(Crop(4, 5, 1)),
                          *[nn.Sequential(Crop(5, 5, 1)) for _ in range(3)])
    report = netscope.summary(model, (1, 4, 8, 8))
    table = report.render("table", columns="layer,type,output")
    assert "MISMATCH" in report.render("table")
    assert "2 × Sequential" in table  # blocks 1–2 fold: identical to block 0, no problem inside
    mismatched = {c.layer for c in report.checks if c.status != "pass"}
    names_shown = {line.split()[0] for line in report.render("table", columns="name").splitlines()[2:] if line.strip()}
    assert mismatched and mismatched <= names_shown  # every call with a failed check keeps its own row


def test_default_table_of_resnet50_fits_120_columns_and_narrower_terminals_drop_columns():
    report = netscope.summary(torchvision.models.resnet50(weights=None), (1, 3, 224, 224), device="meta")
    text = report.render()
    assert max(len(line) for line in text.splitlines()) <= 120
    narrow = report.render(width=80)
    table = narrow.split("\n\n")[0]
    assert max(len(line) for line in narrow.splitlines()) <= 80
    assert "left out to fit 80 columns: input, type" in table
    assert "Input shape" not in table and "Type" not in table.splitlines()[0]
    everything = report.render(columns="all")
    header = everything.splitlines()[0]
    assert all((REGISTRY[k].title in header) != REGISTRY[k].step_only for k in REGISTRY)  # step's own columns: not here


def test_long_keyword_inputs_show_their_first_tensor_in_a_table():
    from netscope.render.columns import SHORT_SHAPE, text_row
    from netscope.records import LayerCall

    tree = [{"hidden_states": (1, 128, 512), "attention_mask": (1, 1, 128, 128), "position_ids": (1, 128)}]
    call = LayerCall(0, "layers.0", "Decoder", 0, None, 1, tree, (1, 128, 512), 0, 0, "", 0, 0, 0, True)
    short = text_row(call, ["input"], {}, short=True)["input"]
    assert short == "[1, 128, 512] +2" and len(short) <= SHORT_SHAPE  # and two more tensors
    assert text_row(call, ["input"], {})["input"].count("[") == 3  # CSV keeps the whole tree


# ---- multi-line cells and a wrapped column ----------------------------------------------------------

LINES = st.lists(st.lists(WORD, min_size=1, max_size=3).map(" ".join), min_size=1, max_size=3).map("\n".join)


@given(st.lists(st.fixed_dictionaries({"name": WORD, "n": st.integers(0, 999), "shape": LINES}), max_size=5),
       st.lists(st.sampled_from(COLUMNS), unique=True))
@settings(max_examples=200, deadline=None, derandomize=True)
def test_simple_table_draws_multi_line_cells_as_tabulate_does(rows, numeric):
    """A cell of several lines on purpose is a ``Lines`` (a line break inside text is shown escaped)."""
    from netscope.render.rows import Lines

    lined = [dict(r, shape=Lines(r["shape"].split("\n"))) for r in rows]
    ours = render_rows(lined, COLUMNS, "table", numeric=numeric)
    theirs = tabulate.tabulate([[_cell(r[c]) for c in COLUMNS] for r in rows], headers=COLUMNS, tablefmt="simple",
                               colalign=["right" if c in numeric else "left" for c in COLUMNS],
                               disable_numparse=True)
    assert ours == theirs


def test_a_wrapped_column_fits_the_width_and_keeps_every_word():
    message = " ".join(f"word{i}" for i in range(80))
    rows = [{"layer": "features.0.0", "code": "asymmetric-padding", "message": message}, {"layer": "fc", "code": "x",
                                                                                        "message": "short"}]
    text = render_rows(rows, ["layer", "code", "message"], "table", wrap="message", width=100)
    assert max(map(len, text.splitlines())) <= 100
    column = text.splitlines()[1].split("  ")[-1]  # the rule under the message column
    start = text.splitlines()[1].rindex(column)
    assert " ".join(line[start:].strip() for line in text.splitlines()[2:-1]) == message
    assert text.splitlines()[-1].split() == ["fc", "x", "short"]
    assert render_rows(rows, ["layer", "code", "message"], "markdown", wrap="message", width=100).count("\n") == 3


def test_check_findings_table_fits_120_columns(tmp_path, capsys):
    """Long finding messages (one per axis of a 3-d layer) wrap instead of widening the table; a finding on
    the model itself is named (root) as in the summary."""
    source = tmp_path / "net3d.py"
    source.write_text("import torch.nn as nn\n"
                      "def build():\n"
                      "    return nn.Sequential(nn.Conv3d(1, 2, 3, stride=2, padding=1), nn.AvgPool3d((2, 7, 7)))\n")
    assert main(["check", f"{source}:build", "--input", "1,1,4,14,14", "--device", "cpu"]) == 0
    out = capsys.readouterr()[0]
    table = out[out.index("severity"):].splitlines()  # the first lines name the (long) temporary path
    assert "asymmetric-padding" in out and max(map(len, table)) <= 120 and len(table) > 4
    functional = tmp_path / "functional.py"
    functional.write_text("import torch, torch.nn as nn, torch.nn.functional as F\n"
                          "class Net(nn.Module):\n"
                          "    def __init__(self):\n"
                          "        super().__init__()\n"
                          "        self.w = nn.Parameter(torch.randn(4, 3, 3, 3))\n"
                          "    def forward(self, x):\n"
                          "        return F.conv2d(x, self.w, stride=2, padding=1)\n")
    assert main(["check", f"{functional}:Net", "--input", "1,3,32,32", "--device", "cpu"]) == 0
    rows = [line for line in capsys.readouterr()[0].splitlines() if "asymmetric-padding" in line]
    assert rows and rows[0].split()[1] == "(root)"


def test_wrapping_keeps_the_lines_a_cell_has_and_check_all_shows_one_formula_per_axis(capsys):
    from netscope.render.rows import Lines

    rows = [{"k": "x" * 30, "f": Lines(["H: " + "a " * 30, "W: short"])}]
    lines = render_rows(rows, ["k", "f"], "table", wrap="f", width=60, min_wrap=20).splitlines()[2:]
    cells = [line[32:].strip() for line in lines]  # 30 characters of k, two spaces
    assert cells[-1] == "W: short" and " ".join(cells[:-1]) == "H: " + " ".join(["a"] * 30)
    assert max(map(len, lines)) <= 60
    assert main(["check", "resnet18", "--all", "--device", "meta", "--input", "1,3,64,64"]) == 0
    out = capsys.readouterr()[0]
    conv1 = out[out.index("\nconv1 "):].splitlines()[1:3]
    assert "H: floor((64 + 2*3 - 1*(7-1) - 1) / 2) + 1 = 32" in conv1[0] and "[1, 64, 32, 32]  [1, 64, 32, 32]" in conv1[0]
    assert conv1[1].strip() == "W: floor((64 + 2*3 - 1*(7-1) - 1) / 2) + 1 = 32"


from netscope.render.folding import find_folds, subtree_sizes  # noqa: E402


def _all_runs(layers, model=None):
    """Every run of identical siblings, written plainly (no skipping): the oracle for find_folds. With ``model``,
    identical also means PyTorch's own ``repr`` of the two modules (their subtrees' classes and configuration)
    and their hooks are equal."""
    sizes = subtree_sizes(layers)
    kids = {}
    for call in layers:
        if call.parent is not None:
            kids.setdefault(call.parent, []).append(call)

    def described(call):
        if model is None:
            return None
        module = model.get_submodule(call.name)
        return repr(module), [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in module.modules()]

    sig = lambda c: None if c.call_number > 1 else (c.class_name, repr(c.input_shapes), repr(c.output_shapes),
                                                     c.subtree_params, c.macs, sizes[c.index], described(c))
    runs = []
    for siblings in kids.values():
        start = 0
        while start < len(siblings):
            end = start + 1
            while sig(siblings[start]) is not None and end < len(siblings) and sig(siblings[end]) == sig(siblings[start]):
                end += 1
            members = siblings[start + 1:end]
            if members and (len(members) > 1 or sizes[members[0].index] > 1):
                runs.append(tuple(m.index for m in members))
            start = end
    return runs


LEAVES = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh_gelu": lambda: nn.GELU(approximate="tanh"),
          "lin": lambda: nn.Linear(3, 3), "drop1": lambda: nn.Dropout(0.1), "drop5": lambda: nn.Dropout(0.5)}


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.recursive(st.sampled_from(sorted(LEAVES)), lambda kids: st.lists(kids, min_size=1, max_size=4),
                    max_leaves=24))
def test_folds_are_every_run_of_identical_siblings_outside_folded_calls(spec):
    """Identical is what PyTorch's repr of the two blocks says (the order, classes and configuration of their
    layers), with equal shapes and counts: activations and dropouts cost no multiply-adds and hold no
    parameters, so only their class and configuration tell the blocks apart."""
    def build(node):
        if isinstance(node, str):
            return LEAVES[node]()
        return nn.Sequential(*[build(child) for child in node])

    model = build(spec if isinstance(spec, list) else [spec])
    layers = netscope.summary(model, input_size=(1, 3), checks=False, audit_names=False).layers
    found = [f.members for f in find_folds(layers)]
    hidden = set()
    sizes = subtree_sizes(layers)
    for members in found:
        for m in members:
            hidden.update(range(m, m + sizes[m]))
    expected = [run for run in _all_runs(layers, model) if layers[run[0]].parent not in hidden]
    assert sorted(found) == sorted(expected)


def _block(act=nn.ReLU, p=0.1, dilation=1, stride=1, hooked=False):
    block = nn.Sequential(nn.Conv2d(4, 4, 3, stride=stride, padding=dilation, dilation=dilation), act(), nn.Dropout(p))
    if hooked:
        block[0].register_forward_hook(lambda module, args, out: None)
    return block


@pytest.mark.parametrize("other", [dict(act=nn.GELU), dict(act=nn.Tanh), dict(p=0.5), dict(dilation=2),
                                   dict(act=lambda: nn.LeakyReLU(0.2)), dict(hooked=True)],
                         ids=["gelu", "tanh", "dropout_p", "dilation", "leaky_slope", "hook"])
def test_blocks_that_differ_only_inside_never_fold_into_one_another(other):
    """Same class, shapes, parameters and multiply-adds (dilation 2 with padding 2 keeps the shape and the cost),
    different layers inside: blocks 1-2 are not "as 0", and fold with each other only."""
    model = nn.Sequential(_block(), _block(**other), _block(**other), _block(**other))
    assert repr(model[0]) != repr(model[1]) or other == dict(hooked=True)  # PyTorch's own description differs
    layers = netscope.summary(model, input_size=(1, 4, 8, 8), checks=False, audit_names=False).layers
    assert [c.macs for c in layers if c.depth == 1] == [layers[1].macs] * 4
    folds = find_folds(layers)
    by_name = {c.index: c.name for c in layers}
    assert [(by_name[f.first], [by_name[m] for m in f.members]) for f in folds] == [("1", ["2", "3"])]


def test_identical_blocks_still_fold_and_json_keeps_every_call():
    model = nn.Sequential(*[_block() for _ in range(4)])
    report = netscope.summary(model, input_size=(1, 4, 8, 8), checks=False, audit_names=False)
    by_name = {c.index: c.name for c in report.layers}
    assert [(by_name[f.first], [by_name[m] for m in f.members]) for f in report.folds()] == [("0", ["1", "2", "3"])]
    assert [row["name"] for row in json.loads(report.to_json())["layers"]] == [c.name for c in report.layers]

# ---- Coded columns (a code per row, a cell per code) ---------------------------------------------------

from netscope.render.rows import TEXT_FORMATS, Coded, render_columns  # noqa: E402

CODED_CELL = st.one_of(st.none(), st.integers(-10**6, 10**6), WORD, LINES)


@given(st.lists(st.tuples(WORD, st.integers(0, 3)), max_size=8),
       st.lists(st.lists(CODED_CELL, min_size=4, max_size=4), min_size=3, max_size=3),
       st.lists(st.sampled_from(["key", "a", "b", "c", "tail"]), unique=True), st.booleans())
@settings(max_examples=300, deadline=None, derandomize=True)
def test_coded_columns_render_as_their_cells(rows, per_code, numeric, shared_codes):
    """Coded columns (grouped into one block when adjacent over one codes) give the text of the same cells
    given one per row, in every format (which the tabulate properties above check for plain columns)."""
    codes = [code for _, code in rows]
    used = dict.fromkeys(codes)  # every code of a Coded's cells occurs in its codes
    coded = [Coded(codes if shared_codes else list(codes), {code: cells[code] for code in used})
             for cells in per_code]
    columns = ["key", "a", "b", "c", "tail"]
    keys = [key for key, _ in rows]
    tail = [f"{key}!" for key in keys]
    plain = [keys] + [[column[i] for i in range(len(codes))] for column in coded] + [tail]
    for fmt in TEXT_FORMATS:
        assert (render_columns([keys, *coded, tail], columns, fmt, numeric=numeric)
                == render_columns(plain, columns, fmt, numeric=numeric))


def test_naming_and_diff_reports_repr_in_one_line_with_the_counts():
    import torch
    import torchvision

    import netscope

    model = torchvision.models.resnet18(weights=None)
    names = repr(netscope.audit_names(model))
    assert "\n" not in names and len(names) < 200 and f"{len(model.state_dict())} state_dict keys" in names
    state = model.state_dict()
    state.pop("fc.bias")
    state["extra"] = torch.zeros(1)
    for report in (netscope.diff(state, model), netscope.remap(state, model)[1]):
        text = repr(report)
        assert "\n" not in text and len(text) < 200, text[:300]
        assert text.startswith(type(report).__name__ + "(") and "1 missing, 1 unused" in text


def test_every_commands_json_and_every_reports_to_dict_carry_the_schema(tmp_path, capsys):
    import json

    import torch
    import torch.nn as nn

    import netscope
    from netscope.cli import main
    from netscope.render.rows import JSON_SCHEMA_VERSION

    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
    path = tmp_path / "ckpt.pt"
    torch.save(model.state_dict(), path)
    documents = {
        "summary": netscope.summary(model, (1, 1, 8, 8)).to_dict(),
        "step": netscope.step(model, (1, 1, 8, 8)).to_dict(),
        "names": netscope.audit_names(model).to_dict(),
        "keys": netscope.keys(str(path)).to_dict(),
        "diff": netscope.diff(str(path), model).to_dict(),
        "remap": netscope.remap(model.state_dict(), model)[1].to_dict(),
        "solve": netscope.solve_input_size(model, (1, 1, 8, 8), max_size=6).to_dict(),
    }
    for kind, data in documents.items():
        assert (data["schema"], data["schema_version"]) == (f"netscope.{kind}", JSON_SCHEMA_VERSION), kind
    assert main(["keys", str(path), "-f", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(documents["keys"]))


# ---- markdown cells read back as the names the report holds -----------------------------------------


def _gfm_cells(line):
    """A GitHub markdown table row split the way GFM splits it (on pipes not escaped by a backslash), each
    cell unescaped (``\\x`` -> ``x``, ``<br>`` -> a line break)."""
    cells, cell, chars = [], "", iter(line.strip()[1:-1])
    for char in chars:
        if char == "\\":
            cell += next(chars)
        elif char == "|":
            cells.append(cell)
            cell = ""
        else:
            cell += char
    return [c.strip().replace("<br>", "\n") for c in cells + [cell]]


def test_markdown_cells_with_pipes_and_line_breaks_read_back_as_the_records_names():
    """ModuleDict keys may hold '|', a line break and a backslash; the markdown table must keep one row per
    call and one cell per column, each reading back (GFM unescaping) as the record's name."""
    import torch

    from netscope import summary

    keys = ["pi|pe", "new\nline", "back\\slash|", "plain"]
    model = nn.ModuleDict({k: nn.Linear(2, 2) for k in keys})
    model.forward = lambda x: torch.stack([m(x) for m in model.values()])
    report = summary(model, (1, 2))
    text = report.render("markdown", columns="name,params", expand=True)
    lines = text.split("\n\n")[0].splitlines()[2:]
    assert len(lines) == len(report.layers)
    for line, call in zip(lines, report.layers):
        assert _gfm_cells(line) == [call.name, f"{call.subtree_params:,}"]


def test_plain_table_escapes_control_characters_and_keeps_lines_cells_on_lines():
    """Control characters of a cell (a name) are written as Python writes them in a string; a ``Lines`` cell (a
    formula per axis) is drawn one line each, its lines escaped too. Markdown keeps ``<br>`` for a line break."""
    from netscope.render.rows import Lines, printable

    assert printable("a\nb\tc\x1bd\u2028e\rf\x7f") == "a\\nb\\tc\\x1bd\\u2028e\\rf\\x7f"
    assert printable("plain ünï") == "plain ünï"
    rows = [{"name": "fi\nrst", "formula": Lines(["H: 1", "W: 2\x1b"])}, {"name": "ok", "formula": "x"}]
    table = render_rows(rows, ["name", "formula"], "table").splitlines()
    assert table[2:] == ["fi\\nrst  H: 1", "         W: 2\\x1b", "ok       x"]
    grid = render_rows(rows, ["name", "formula"], "table", table_style="grid")
    assert "fi\\nrst" in grid and "fi\nrst" not in grid
    markdown = render_rows(rows, ["name"], "markdown").splitlines()
    assert markdown[2] == "| fi<br>rst |"


def test_plain_table_tells_a_backslash_and_n_from_a_line_break():
    """A name holding a backslash then ``n`` and one holding a line break are drawn differently: the backslash is
    doubled, as Python writes it in a string literal (each shown text is the name's ``repr`` body)."""
    names = ["a\nb", "a\\nb", "c\\", "\\x1b"]
    table = render_rows([{"name": n} for n in names], ["name"], "table").splitlines()[2:]
    assert [line.rstrip() for line in table] == [repr(n)[1:-1] for n in names]
    assert len(set(table)) == len(names)
    markdown = render_rows([{"name": n} for n in names], ["name"], "markdown").splitlines()[2:]
    assert [line.strip("| ") for line in markdown] == ["a<br>b", "a\\\\nb", "c\\\\", "\\\\x1b"]  # GFM reads "\\" as "\"
