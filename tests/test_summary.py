"""The summary core: records, totals, operator-level multiply-adds, cross-checks with torchinfo."""

from __future__ import annotations

import json

import hypothesis
import pytest
import torch
import torch.nn as nn
import torchvision

import netscope
from netscope.errors import ForwardError


class TwoCalls(nn.Module):
    """One Linear called twice, a tied output head, and a functional matmul in forward."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50, 8)
        self.block = nn.Linear(8, 8)
        self.head = nn.Linear(8, 50, bias=False)
        self.head.weight = self.embed.weight  # tied

    def forward(self, ids):
        x = self.embed(ids)
        x = self.block(x)
        x = self.block(x)
        scores = x @ x.transpose(-1, -2)  # functional compute belongs to the root
        return self.head(scores @ x)


def test_resnet50_totals_match_torchvision_publication():
    model = torchvision.models.resnet50(weights=None)
    report = netscope.summary(model, (1, 3, 224, 224), device="meta")
    assert report.totals.total_params == 25_557_032
    assert "Total params: 25,557,032" in str(report)
    assert "Total mult-adds: 4.09 G" in str(report)


def test_rows_are_module_calls_with_state_dict_names():
    model = torchvision.models.resnet18(weights=None)
    report = netscope.summary(model, (2, 3, 64, 64))
    names = [c.name for c in report.layers]
    assert names[0] == ""
    assert list(dict.fromkeys(names)) == [n for n, _ in model.named_modules()]  # first calls in definition order
    relu_calls = [c.call_number for c in report.layers if c.name == "layer1.0.relu"]
    assert relu_calls == [1, 2]  # BasicBlock applies its one ReLU twice: two rows
    conv = next(c for c in report.layers if c.name == "layer1.0.conv1")
    assert conv.input_shapes == [(2, 64, 16, 16)] and conv.output_shapes == (2, 64, 16, 16)
    assert conv.hyperparams["kernel_size"] == (3, 3) and conv.hyperparams["stride"] == (1, 1)
    # every parameterised module's own params equal its state_dict entries that are parameters
    params = dict(model.named_parameters())
    for call in (c for c in report.layers if not c.is_repeat):
        prefix = call.name + "." if call.name else ""
        own = sum(p.numel() for k, p in params.items() if k.startswith(prefix) and "." not in k[len(prefix):])
        assert call.own_params == own, call.name


def test_multiply_adds_are_per_operator_and_roll_up():
    model = TwoCalls()
    ids = torch.randint(0, 50, (1, 5))
    report = netscope.summary(model, input_data=ids)
    block_calls = [c for c in report.layers if c.name == "block"]
    assert [c.call_number for c in block_calls] == [1, 2]
    assert all(c.macs == 5 * 8 * 8 for c in block_calls)
    head = next(c for c in report.layers if c.name == "head")
    assert head.macs == 5 * 8 * 50
    root = report.layers[0]
    functional = 5 * 5 * 8 + 5 * 5 * 8  # x @ x^T and scores @ x
    assert root.own_macs == functional
    assert root.macs == functional + 2 * 5 * 8 * 8 + 5 * 8 * 50
    assert report.totals.total_macs == root.macs


def test_shared_parameters_counted_once():
    model = TwoCalls()
    report = netscope.summary(model, input_data=torch.randint(0, 50, (1, 5)))
    unique = {id(p): p for p in model.parameters()}
    assert report.totals.total_params == sum(p.numel() for p in unique.values()) == 50 * 8 + 8 * 8 + 8
    assert report.totals.shared_param_tensors == 1 and report.totals.shared_params == 50 * 8
    assert "shared" in str(report)


class StorageViews(nn.Module):
    """A buffer registered as a slice of another, the same storage under a second name (a distinct view object),
    a buffer over part of a larger tensor, and a parameter over part of another parameter's storage."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.register_buffer("table", torch.arange(16.0))
        self.register_buffer("head", self.table[:4])
        self.register_buffer("again", self.table.view(16))
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))
        self.register_buffer("window", torch.arange(100.0)[10:14])  # a view of a larger tensor: it holds all 100
        self.p = nn.Parameter(torch.zeros(8))
        self.q = nn.Parameter(self.p.data[:4])

    def forward(self, x):
        return self.lin(x) + self.head.sum() + self.q.sum()


def _held_bytes(tensors) -> int:
    """The oracle: bytes of the storages under ``tensors``, each storage once (by its data pointer)."""
    return sum({t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}.values())


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_views_of_one_storage_hold_its_memory_once(device):
    model = StorageViews()
    assert len({b.untyped_storage().data_ptr() for b in model.buffers()}) == 3  # table, head, again share one
    report = netscope.summary(model, input_size=(2, 4), device=device)
    t = report.totals
    assert t.buffer_bytes == _held_bytes(model.buffers()) == 16 * 4 + 8 + 100 * 4
    assert t.buffer_elements == 16 + 1 + 100
    assert t.param_bytes == _held_bytes(model.parameters()) == (16 + 4 + 8) * 4
    assert t.total_params == sum(p.numel() for p in model.parameters())  # counted as model.parameters() counts them
    step = netscope.step(model, input_size=(2, 4))
    assert step.totals.buffer_bytes == _held_bytes(model.buffers())


class BufferViewsParameter(nn.Module):
    """A buffer registered as a view of a parameter's storage, and a parameter viewing a buffer's."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 8)
        self.register_buffer("flat", self.lin.weight.detach().view(-1))
        self.register_buffer("rows", self.lin.weight.detach()[:4])
        self.register_buffer("base", torch.randn(16))
        self.p = nn.Parameter(self.base.view(4, 4))
        self.register_buffer("own", torch.zeros(3))

    def forward(self, x):
        return self.lin(x) + self.flat[:8] + self.p.sum()


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_a_buffer_viewing_a_parameter_holds_no_memory_of_its_own(device):
    """Params and buffers were each deduplicated, but not against each other: the weight's storage was counted in
    param_bytes and again in buffer_bytes (the 'Estimated total size' 2 x the weight), and so was the buffer a
    parameter views. Oracle: the storages under state_dict's tensors, each once by data pointer."""
    model = BufferViewsParameter()
    t = netscope.summary(model, input_size=(2, 8), device=device, audit_names=False).totals
    everything = list(model.parameters()) + list(model.buffers())
    assert t.param_bytes == _held_bytes(model.parameters()) == (64 + 8 + 16) * 4
    assert t.param_bytes + t.buffer_bytes == _held_bytes(everything) == _held_bytes(model.state_dict().values())
    assert (t.buffer_bytes, t.buffer_elements) == (3 * 4, 3)  # only `own` holds memory the parameters do not
    step = netscope.step(model, input_size=(2, 8))
    assert step.totals.buffer_bytes == _held_bytes(everything) - _held_bytes(model.parameters())


def test_attention_compute_is_counted_where_torchinfo_misses_it():
    torchinfo = pytest.importorskip("torchinfo")
    model = torchvision.models.vit_b_16(weights=None).eval()
    ours = netscope.summary(model, (1, 3, 224, 224), device="meta").totals.total_macs
    theirs = torchinfo.summary(model, input_size=(1, 3, 224, 224), device="meta", verbose=0).total_mult_adds
    published = torchvision.models.ViT_B_16_Weights.IMAGENET1K_V1.meta["_ops"] * 1e9
    assert abs(ours - published) / published < 0.005
    assert theirs < 0.9 * published  # the operator-level count is what makes the difference


def test_cpu_and_meta_runs_agree():
    model = torchvision.models.mobilenet_v3_small(weights=None)
    cpu = netscope.summary(model, (1, 3, 96, 96))
    meta = netscope.summary(model, (1, 3, 96, 96), device="meta")
    assert [(c.name, c.output_shapes, c.macs, c.subtree_params) for c in cpu.layers] == \
           [(c.name, c.output_shapes, c.macs, c.subtree_params) for c in meta.layers]
    assert next(model.parameters()).device.type == "cpu"


@pytest.mark.parametrize("builder", [torchvision.models.resnet18, torchvision.models.mobilenet_v2,
                                     torchvision.models.squeezenet1_0])
def test_layer_shapes_and_params_agree_with_torchinfo(builder):
    torchinfo = pytest.importorskip("torchinfo")
    model = builder(weights=None)
    ours = netscope.summary(model, (1, 3, 64, 64))
    theirs = torchinfo.summary(model, input_size=(1, 3, 64, 64), verbose=0, depth=100)
    their_leaves = [(l.class_name, list(l.output_size), l.num_params) for l in theirs.summary_list if l.is_leaf_layer]
    our_leaves = [(c.class_name, list(c.output_shapes), c.own_params) for c in ours.layers if c.is_leaf]
    assert our_leaves == their_leaves
    assert ours.totals.total_params == theirs.total_params


def test_forward_failure_names_the_layer_and_keeps_the_original_error():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(10, 2))
    with pytest.raises(ForwardError) as info:
        netscope.summary(model, (1, 3, 8, 8))
    err = info.value
    assert err.layer == "2"
    assert "Linear" in str(err) and "[1, 288]" in str(err)
    assert isinstance(err.original, RuntimeError)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_train_mode_pass_leaves_batchnorm_statistics_and_flags_alone():
    model = torchvision.models.resnet18(weights=None)
    model.layer1.eval()  # a mixed-mode model: the per-module flags must come back exactly
    flags = [m.training for m in model.modules()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    report = netscope.summary(model, (2, 3, 32, 32), mode="train")
    assert report.run.mode == "train"
    assert [m.training for m in model.modules()] == flags
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.is_grad_enabled()


def test_report_data_views():
    model = torchvision.models.resnet18(weights=None)
    report = netscope.summary(model, (1, 3, 32, 32))
    data = json.loads(json.dumps(report.to_dict()))
    assert data["totals"]["total_params"] == report.totals.total_params
    assert len(data["layers"]) == len(report.layers)
    frame = report.to_dataframe()
    assert len(frame) == len(report.layers)
    assert str(frame["params"].dtype) == "int64" and str(frame["macs"].dtype) == "int64"
    assert frame.loc[frame["name"] == "fc", "macs"].item() == 512 * 1000
    # each parameter is registered on exactly one module here, so own params add up to the total
    assert frame["own_params"].sum() == report.totals.total_params


@pytest.mark.parametrize("fmt", ["table", "markdown", "csv", "json"])
def test_every_format_renders(fmt):
    report = netscope.summary(nn.Sequential(nn.Linear(4, 3), nn.ReLU()), (2, 4))
    text = report.render(fmt)
    if fmt == "json":
        assert json.loads(text)["totals"]["total_params"] == 15
    elif fmt == "csv":
        assert text.splitlines()[0].startswith("name,")  # each call named as JSON names it
        assert len(text.splitlines()) == 1 + 3
    else:
        assert "15" in text and "Linear" in text


def test_depth_limits_rows_but_not_the_record():
    report = netscope.summary(torchvision.models.resnet18(weights=None), (1, 3, 32, 32))
    shallow = report.rows(depth=1)
    assert len(shallow) == 1 + len(list(torchvision.models.resnet18(weights=None).children()))
    assert len(report.layers) > len(shallow)


def test_user_model_on_other_device_is_moved_back():
    model = nn.Linear(3, 2)
    report = netscope.summary(model, (1, 3), device="meta")
    assert report.run.device == "meta"
    assert model.weight.device.type == "cpu"


def test_dtype_of_the_pass_drives_byte_counts_without_casting_the_model():
    model = nn.Linear(100, 100)
    fp32 = netscope.summary(model, (1, 100))
    bf16 = netscope.summary(model, (1, 100), dtype="bfloat16")
    assert bf16.totals.param_bytes * 2 == fp32.totals.param_bytes
    assert model.weight.dtype == torch.float32


class FrozenNormNet(nn.Module):
    """Overrides train() to keep its BatchNorm in eval mode, as detection backbones do."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.seen_bn_training = []  # a list filled in place: netscope names it, it does not put a number back

    def train(self, mode: bool = True):
        super().train(mode)
        self.bn.eval()
        return self

    def forward(self, x):
        self.seen_bn_training.append(self.bn.training)
        return self.bn(self.conv(x))


def test_a_custom_train_override_is_respected_in_a_train_mode_pass():
    model = FrozenNormNet().eval()
    netscope.summary(model, (2, 3, 8, 8), mode="train")
    assert model.seen_bn_training == [False]
    assert model.training is False and model.bn.training is False


def test_keyword_arguments_left_at_none_are_not_displayed():
    from netscope.run.shapes import format_shape_tree

    assert format_shape_tree({"input_ids": (1, 8), "position_ids": "None", "cache": "None"}) == "{input_ids: [1, 8]}"
    assert format_shape_tree([(1, 2), "None"]) == "([1, 2], None)"  # positions in a tuple still count


def test_a_formula_mismatch_is_listed_once_under_the_table():
    class CroppingConv(nn.Conv2d):  # an exotic layer: its output is not what the conv formula says
        def forward(self, x):
            return super().forward(x)[..., :-1]

    report = netscope.summary(nn.Sequential(CroppingConv(3, 4, 3)), (1, 3, 8, 8))
    assert [c.status for c in report.checks] == ["mismatch"]
    (line,) = report.check_warnings()
    assert "produced [1, 4, 6, 5] but the formula expects [1, 4, 6, 6]" in line
    assert "MISMATCH" in report.render()


def test_uncalled_params_line_says_the_weights_may_still_be_used():
    """nn.MultiheadAttention reads out_proj's weights through F.multi_head_attention_forward without calling
    the module: its parameters are 'not called' yet used. The line says so, and they are in the total."""
    import torch.nn as nn

    import netscope

    attention = nn.MultiheadAttention(8, 2, batch_first=True)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = attention

        def forward(self, x):
            return self.attn(x, x, x, need_weights=False)[0]

    report = netscope.summary(Block(), (1, 5, 8), device="cpu")
    out_proj = sum(p.numel() for p in attention.out_proj.parameters())
    assert report.totals.uncalled_params == out_proj == 8 * 8 + 8
    assert report.totals.total_params == sum(p.numel() for p in attention.parameters())
    text = " ".join(str(report).split())
    assert f"Params in modules not called by this pass: {out_proj:,} (counted in the total; a forward may still use " \
           "them directly, as nn.MultiheadAttention uses its out_proj)" in text


def test_a_layer_shows_what_its_caller_received_after_its_own_forward_hooks_and_keyword_arguments():
    """Calls are recorded around torch's whole call path: a forward hook that replaces the output is part of
    the layer, so its row shows what the next layer receives; keyword arguments are seen for every call."""

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(8, 6)
            self.head = nn.Linear(3, 2)
            self.proj.register_forward_hook(lambda module, args, out: out.reshape(*out.shape[:-1], 2, 3))

        def forward(self, x, *, scale=1.0):
            return self.head(input=self.proj(x) * scale)

    report = netscope.summary(Block(), input_data=(torch.randn(4, 8),))
    rows = {c.name: c for c in report.layers}
    assert rows["proj"].output_shapes == (4, 2, 3)
    assert rows["head"].input_shapes == [{"input": (4, 2, 3)}]  # given as a keyword argument
    assert rows["head"].inputs_from == (rows["proj"].index,)
    assert rows["head"].output_shapes == (4, 2, 2)


def test_hooks_added_during_the_pass_run_as_torch_runs_them():
    """A module without hooks is called straight through its forward (torch's own fast path); a hook that the
    forward itself registers, on a child or process-wide, must still run for the calls after it."""
    fired = []

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(2, 3)

        def forward(self, x):
            x = self.a(x)
            self.b.register_forward_hook(lambda module, args, out: out[:, :2])
            handle = nn.modules.module.register_module_forward_hook(lambda module, args, out: fired.append(module))
            try:
                x = self.b(x)
            finally:
                handle.remove()
            return self.c(x)

    model = Block()
    report = netscope.summary(model, input_data=torch.randn(2, 4))
    assert fired == [model.b]  # the global hook saw the call made while it was registered, and only that one
    rows = {c.name: c for c in report.layers}
    assert rows["b"].output_shapes == (2, 2)  # the child's hook ran inside its call
    assert rows["c"].output_shapes == (2, 3) and rows["c"].inputs_from == (rows["b"].index,)
    assert [c.name for c in report.layers] == ["", "a", "b", "c"]


def test_a_layer_returning_a_sparse_tensor_is_recorded():
    class ToSparse(nn.Module):
        def forward(self, x):
            return x.to_sparse()

    model = nn.Sequential(nn.Linear(4, 4), ToSparse())
    x = torch.randn(3, 4)
    held = model(x)
    report = netscope.summary(model, input_data=(x,))
    sparse = report.layers[-1]
    assert sparse.output_shapes == (3, 4)
    assert sparse.output_bytes == held.values().nbytes + held.indices().nbytes  # what it holds, not 3 x 4 x 4


def test_records_made_without_their_init_carry_exactly_their_dataclass_fields():
    """Rows and owners are built by ``record_from_fields`` (no per-field setattr, no check): their fields
    must be the dataclass's, no more, no fewer."""
    from netscope.analyses.totals import OwnedParams
    from netscope.records import LayerCall

    report = netscope.summary(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), input_size=(1, 3, 8, 8))
    assert all(call.__dict__.keys() == LayerCall.__dataclass_fields__.keys() for call in report.layers)
    assert all(o.__dict__.keys() == OwnedParams.__dataclass_fields__.keys() for o in report.param_owners)
    assert report.layers[1].hyperparams == {"kernel_size": (3, 3), "stride": (1, 1), "padding": (0, 0),
                                            "dilation": (1, 1), "groups": 1, "output_padding": (0, 0)}
    assert report.layers[2].hyperparams == {}


def test_a_forward_returning_an_unconsumed_generator_says_its_work_did_not_run():
    class Lazy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            return (self.fc(x) for _ in range(2))  # runs only when someone iterates it

    report = netscope.summary(Lazy(), (1, 3))
    assert report.totals.total_macs == 0 and report.totals.uncalled_params == 3 * 3 + 3
    assert any("generator that netscope does not consume" in n for n in report.run.notes)


def test_markdown_notes_under_the_table_are_not_read_as_table_rows():
    """GFM reads every non-blank line right under a table as one more row: the table block (up to the first
    blank line) must hold only pipe rows, as many as the table has, with the fold and fit notes after it."""
    blocks = nn.Sequential(*[nn.Sequential(nn.Linear(8, 8), nn.GELU()) for _ in range(4)])
    report = netscope.summary(blocks, (2, 8))
    text = report.render("markdown", width=60)  # folded blocks, and columns left out to fit 60 characters
    table, rest = text.split("\n\n", 1)
    assert all(line.startswith("|") and line.endswith("|") for line in table.splitlines())
    assert len(table.splitlines()) == 2 + len(report.table_rows())  # header, rule, one line per (folded) row
    assert "folded" in rest and "left out to fit 60 columns" in rest
    step = netscope.step(blocks, (2, 8)).render("markdown", width=40)
    table, rest = step.split("\n\n", 1)
    assert all(line.startswith("|") for line in table.splitlines()) and "left out to fit 40 columns" in rest


@pytest.mark.parametrize("batch", [3, 2 ** 23 + 1, 2 ** 24])  # mult-adds 3*2**40, 2**63 + 2**40, 2**64
def test_dataframe_json_and_csv_keep_huge_counts_exact(batch):
    """A meta-device plan can count more than int64 holds: pandas would infer uint64 and wrap it to a negative
    int64, or raise. Every format must read back the records' exact integers (JSON and CSV as Python ints)."""
    import csv
    import io

    model = nn.Sequential(nn.Linear(2 ** 20, 2 ** 20, bias=False, device="meta"))
    report = netscope.summary(model, input_data=torch.empty(batch, 2 ** 20, device="meta"), device="meta")
    exact = [c.macs for c in report.layers]
    assert exact == [batch * 2 ** 40] * 2
    frame = report.to_dataframe()
    assert frame["macs"].tolist() == exact and frame["output_bytes"].tolist() == [c.output_bytes for c in report.layers]
    assert str(frame["macs"].dtype) == ("int64" if exact[0] < 2 ** 63 else "object")
    assert [layer["macs"] for layer in json.loads(report.to_json())["layers"]] == exact
    assert [int(row["macs"]) for row in csv.DictReader(io.StringIO(report.render("csv")))] == exact
    ops = report.by_operator().set_index("op")  # one matrix multiply holds the whole count
    assert ops.loc["aten::mm", "macs"] == batch * 2 ** 40 and ops["macs"].sum() == batch * 2 ** 40


def test_dataframe_keeps_counts_above_2_53_exact_next_to_counts_not_recorded():
    """A column with a <NA> (a call inside TorchScript) is nullable Int64; built through float64 it would round
    an odd count above 2**53."""
    import dataclasses

    from netscope.records import NOT_RECORDED

    width = 2 ** 20 + 1
    model = nn.Sequential(nn.Linear(width, width, bias=False, device="meta"))
    report = netscope.summary(model, input_data=torch.empty(2 ** 13 + 1, width, device="meta"), device="meta")
    inner = dataclasses.replace(report.layers[1], output_shapes=NOT_RECORDED)  # as a call inside TorchScript reads
    report = dataclasses.replace(report, layers=[report.layers[0], inner])
    frame = report.to_dataframe()
    assert report.layers[0].macs > 2 ** 53 and report.layers[0].macs % 2 == 1
    assert str(frame["macs"].dtype) == "Int64" and frame["macs"][0] == report.layers[0].macs
    assert frame["macs"].isna().tolist() == [False, True]


def test_total_mult_adds_shows_a_small_count_once_and_a_large_one_in_both_forms():
    small = netscope.summary(nn.Linear(4, 8), input_size=(3, 4))
    assert small.totals.total_macs == 3 * 4 * 8
    assert "Total mult-adds: 96\n" in str(small) + "\n" and "96 (96)" not in str(small)
    assert "96 (96)" not in small.to_html()
    big = netscope.summary(nn.Linear(1000, 1000), input_size=(3, 1000))
    assert big.totals.total_macs == 3 * 1000 * 1000
    assert "Total mult-adds: 3.00 M (3,000,000)" in str(big) and "3,000,000 (3.00 M)" in big.to_html()


def _storages_one_by_one(tensors):
    """The reference for distinct_storages: storage_key tensor by tensor, the first tensor on each storage."""
    from netscope.checkpoints.identity import storage_key

    seen, out = set(), []
    for t in tensors:
        key = storage_key(t)
        if key is None:
            out.append((t, None))
        elif key not in seen:
            seen.add(key)
            out.append((t, t.untyped_storage().nbytes()))
    return out


@hypothesis.settings(max_examples=60, deadline=None)
@hypothesis.given(hypothesis.strategies.lists(hypothesis.strategies.sampled_from(
    ["own", "param", "view_of_last", "same_again", "meta", "empty", "sparse", "prefix_of_big"]), max_size=12))
def test_distinct_storages_bulk_path_equals_tensor_by_tensor(kinds):
    """Whatever mix of tensors (own storages, views, repeats, meta, empty, sparse), the C-loop path of
    distinct_storages gives what telling storages one tensor at a time gives."""
    from netscope.checkpoints.identity import distinct_storages, held_bytes

    tensors = []
    for kind in kinds:
        last = tensors[-1] if tensors and tensors[-1].layout == torch.strided and tensors[-1].numel() else None
        if kind == "own" or (kind in ("view_of_last", "same_again") and last is None):
            tensors.append(torch.zeros(3))
        elif kind == "param":
            tensors.append(nn.Parameter(torch.zeros(2, 2)))
        elif kind == "view_of_last":
            tensors.append(last.view(-1)[:1])
        elif kind == "same_again":
            tensors.append(last)
        elif kind == "meta":
            tensors.append(torch.zeros(4, device="meta"))
        elif kind == "empty":
            tensors.append(torch.zeros(0))
        elif kind == "sparse":
            tensors.append(torch.eye(2).to_sparse())
        else:
            tensors.append(torch.zeros(50)[:5])
    got = [(id(t), n) for t, n in distinct_storages(tensors)]
    assert got == [(id(t), n) for t, n in _storages_one_by_one(tensors)]
    sparse_bytes = {id(t): t.values().nbytes + t.indices().nbytes for t in tensors if t.layout == torch.sparse_coo}
    assert held_bytes(tensors) == sum(sparse_bytes[id(t)] if n is None and id(t) in sparse_bytes else n or 0
                                      for t, n in _storages_one_by_one(tensors))


class _KVCache:
    """Not a container torch knows: an object holding tensors in attributes, as transformers' caches do."""

    def __init__(self, length: int, layers: int):
        self.keys = [torch.randn(1, length, 4) for _ in range(layers)]
        self.values = [torch.randn(1, length, 4) for _ in range(layers)]


class _Decoder(nn.Module):
    """Appends its new keys and values to the cache it is given and returns the cache with its output."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 4)

    def forward(self, x, cache):
        k = self.proj(x)
        cache.keys.append(k)
        cache.values.append(k * 2)
        return x, cache


def test_input_size_and_output_bytes_count_the_tensors_a_cache_object_holds():
    """A 5-position cache of 2 layers passed in: the input size holds its 4 tensors (1 x 5 x 4 float32 each) with
    the 1 x 3 x 4 input; the model's output returns the cache with the 2 tensors the pass appended."""
    x, cache = torch.randn(1, 3, 4), _KVCache(length=5, layers=2)
    report = netscope.summary(_Decoder(), input_data=(x, cache))
    assert report.totals.input_bytes == (1 * 3 * 4 + 4 * (1 * 5 * 4)) * 4
    assert report.layers[0].output_bytes == (1 * 3 * 4 + 4 * (1 * 5 * 4) + 2 * (1 * 3 * 4)) * 4
    assert len(cache.keys) == 2  # the user's cache as given: the pass appended to its copy


class _Attention(nn.Module):
    """nn.MultiheadAttention (its out_proj's weights used, the module never called) and a TransformerEncoder
    (in eval: one fused kernel per layer, its Linear children never called)."""

    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
        self.encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 32, batch_first=True), 2,
                                             enable_nested_tensor=False)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        x, _ = self.attn(x, x, x, need_weights=False)
        return self.head(self.encoder(x))


def test_forward_activations_count_every_call_inside_which_no_module_call_ran():
    """The oracle: torch's process-wide module hooks (per-module hooks would turn the encoder's fused path off)
    record which calls ran another module call inside them; the estimate sums the outputs of the others (leaf
    modules, and modules whose children never ran as modules)."""
    from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

    model = _Attention().eval()
    x = torch.randn(2, 5, 16)
    names = {id(m): name for name, m in model.named_modules()}
    running, nested, held = [], set(), {}

    def before(module, args):
        if id(module) in names:
            if running:
                nested.add(running[-1])
            running.append(names[id(module)])

    def after(module, args, out):
        if id(module) in names:
            name = running.pop()
            if name not in nested:
                held[name] = sum(t.numel() * t.element_size() for t in torch.utils._pytree.tree_leaves(out)
                                 if isinstance(t, torch.Tensor))

    hooks = [register_module_forward_pre_hook(before), register_module_forward_hook(after)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    assert set(held) == {"attn", "encoder.layers.0", "encoder.layers.1", "head"}  # no leaf module but the head
    report = netscope.summary(model, input_data=x)
    assert report.totals.activation_bytes == sum(held.values()) == (2 * 5 * 16 * 3 + 2 * 5 * 3) * 4
