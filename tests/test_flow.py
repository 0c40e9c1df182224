"""Dataflow edges of the trace (which call produced what each call receives) and the joins the shape flow shows.

Oracles: the hand-built models' own forward code (who feeds whom is written there), torchvision's published
block structure (``BasicBlock`` adds its input back, ``MBConv.use_res_connect``, Inception's four branches).
"""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
import torch.nn as nn
import torchvision

import netscope
from netscope.run.dataflow import MODEL_INPUT
from netscope.analyses.flow import block_joins, shape_flow
from netscope.render.html import report_html
from netscope.run.trace import trace


def _calls(model, *inputs, device="cpu"):
    report = netscope.summary(model, input_data=tuple(inputs), device=device)
    return report, {c.display_name: c for c in report.layers}


def _index(calls, name):
    return calls[name].index


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.act = nn.Linear(4, 4), nn.Linear(4, 4), nn.ReLU()

    def forward(self, x):
        return self.act(self.b(self.a(x)) + x)


class TwoBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.left, self.right, self.head = nn.Linear(4, 3), nn.Linear(4, 5), nn.Linear(8, 2)

    def forward(self, x):
        return self.head(torch.cat([self.left(x), self.right(x)], dim=-1))


def _conv(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU())


class UNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc1, self.down, self.enc2 = _conv(3, 8), nn.MaxPool2d(2), _conv(8, 16)
        self.up, self.dec1 = nn.ConvTranspose2d(16, 8, 2, stride=2), _conv(16, 8)
        self.out = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(self.down(e1))
        return self.out(self.dec1(torch.cat([self.up(e2), e1], dim=1)))


class Twice(nn.Module):
    def __init__(self):
        super().__init__()
        self.shared = nn.Linear(4, 4)

    def forward(self, x):
        return self.shared(torch.tanh(self.shared(x)))


# ---- edges, against the forward code ----------------------------------------------------------------

@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_residual_block_edges(device):
    report, calls = _calls(Residual(), torch.randn(2, 4), device=device)
    a, b, act = (_index(calls, n) for n in ("a", "b", "act"))
    assert calls["(root)"].inputs_from == (MODEL_INPUT,)
    assert calls["a"].inputs_from == (MODEL_INPUT,)
    assert calls["b"].inputs_from == (a,)
    assert calls["act"].inputs_from == (MODEL_INPUT, b)  # b's output + the model input, added in the root's code
    assert calls["(root)"].merges == (("add", (MODEL_INPUT, b)),)
    assert all(not calls[n].merges for n in ("a", "b", "act"))
    assert act == b + 1


def test_two_branch_concat_edges():
    report, calls = _calls(TwoBranch(), torch.randn(2, 4))
    left, right = _index(calls, "left"), _index(calls, "right")
    assert calls["left"].inputs_from == calls["right"].inputs_from == (MODEL_INPUT,)
    assert calls["head"].inputs_from == (left, right)
    assert calls["(root)"].merges == (("cat", (left, right)),)


def test_unet_skip_edges_and_flow():
    report, calls = _calls(UNet(), torch.randn(1, 3, 16, 16))
    idx = {n: _index(calls, n) for n in ("enc1", "down", "enc2", "up", "dec1", "out")}
    assert calls["down"].inputs_from == (idx["enc1"],)
    assert calls["enc2"].inputs_from == (idx["down"],)
    assert calls["up"].inputs_from == (idx["enc2"],)
    assert calls["dec1"].inputs_from == (idx["enc1"], idx["up"])  # the skip: enc1's output joins up's
    assert calls["out"].inputs_from == (idx["dec1"],)
    assert calls["enc1.0"].inputs_from == (MODEL_INPUT,) and calls["enc1.1"].inputs_from == (idx["enc1"] + 1,)
    flow = shape_flow(report.layers, report.run.input_shapes)
    joins = {s.label: s.join for s in flow.steps}
    assert joins["dec1"] == "← enc1"
    assert [label for label, join in joins.items() if join] == ["dec1"]


def test_module_called_twice_edges():
    report, calls = _calls(Twice(), torch.randn(2, 4))
    first, second = calls["shared"], calls["shared (call 2)"]
    assert first.inputs_from == (MODEL_INPUT,)
    assert second.inputs_from == (first.index,)  # through tanh in the root's code
    assert calls["(root)"].merges == ()


def test_keyword_inputs_and_untracked_tensors():
    class Keyword(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj, self.mix = nn.Linear(4, 4), nn.Bilinear(4, 4, 2)
            self.pos = nn.Parameter(torch.zeros(4))

        def forward(self, x, *, memory):
            return self.mix(self.proj(x + self.pos), memory)  # a parameter is nobody's output

    model = Keyword()
    report = netscope.summary(model, input_data=((torch.randn(2, 4),), {"memory": torch.randn(2, 4)}))
    calls = {c.name: c for c in report.layers}
    assert calls["proj"].inputs_from == (MODEL_INPUT,)
    assert calls["mix"].inputs_from == (MODEL_INPUT, calls["proj"].index)
    assert calls[""].merges == ()  # x + parameter: one producer, not a merge


class FilledBuffer(nn.Module):
    """Two branches written into slices of a fresh buffer (made like the input: its dtype and device only),
    the buffer fed to the head; then a tensor shaped like a branch's output, none of its values, fed to a layer."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(3, 4, 3, padding=1)
        self.head, self.blank = nn.Conv2d(8, 2, 1), nn.Conv2d(2, 2, 1)

    def forward(self, x):
        out = x.new_zeros(x.shape[0], 8, x.shape[2], x.shape[3])
        out[:, :4] = self.a(x)
        out[:, 4:] = self.b(x)
        y = self.head(out)
        return y + self.blank(torch.zeros_like(y).fill_(1.0))


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_a_buffer_filled_in_place_comes_from_what_was_written_not_from_what_it_was_made_like(device):
    # the head was said to be fed by the model input (new_zeros took x for its dtype) and not by a or b, whose
    # outputs the forward copies into the buffer; blank by head (zeros_like took its shape). The forward code
    # above is the oracle: head reads a's and b's outputs, blank reads constants
    report, calls = _calls(FilledBuffer(), torch.randn(1, 3, 8, 8), device=device)
    a, b, head = (_index(calls, n) for n in ("a", "b", "head"))
    assert calls["head"].inputs_from == (a, b)
    assert calls["blank"].inputs_from == ()
    assert ("copy_", (a, b)) in calls["(root)"].merges  # b's output written beside a's
    flow = shape_flow(report.layers, report.run.input_shapes)
    assert "input" not in " ".join(step.join for step in flow.steps)


def test_the_trace_keeps_no_tensor_alive():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
    refs = []
    handles = [m.register_forward_hook(lambda m, a, out: refs.append(weakref.ref(out))) for m in model]
    try:
        result = trace(model, ((torch.randn(2, 4),), {}))
    finally:
        for h in handles:
            h.remove()
    assert len(refs) == 3 and [c.inputs_from for c in result.calls[1:]] == [(MODEL_INPUT,), (1,), (2,)]
    del result
    gc.collect()
    assert [r() for r in refs] == [None, None, None]


def test_json_and_dataframe_carry_the_edges():
    report, calls = _calls(Residual(), torch.randn(2, 4))
    data = report.to_dict()
    assert "inputs_from" in data["columns"] and "merges" in data["columns"]
    rows = {row["name"]: row for row in data["layers"]}
    assert rows["act"]["inputs_from"] == [MODEL_INPUT, calls["b"].index]
    assert rows[""]["merges"] == [["add", [MODEL_INPUT, calls["b"].index]]]
    frame = report.to_dataframe()
    assert tuple(frame.loc[frame["name"] == "act", "inputs_from"].iloc[0]) == (MODEL_INPUT, calls["b"].index)
    text = report.to_text() if hasattr(report, "to_text") else str(report)
    assert "Inputs from" not in text  # a data column, not in the default table


# ---- the joins in the flow, against torchvision's structure ----------------------------------------

def _flow_joins(model, size=(1, 3, 64, 64)):
    report = netscope.summary(model, size, device="meta")
    return report, {s.label: s.join for s in shape_flow(report.layers, report.run.input_shapes).steps}


def test_resnet18_flow_shows_a_skip_in_every_block():
    model = torchvision.models.resnet18()
    report, joins = _flow_joins(model)
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        blocks = len(getattr(model, stage))  # every BasicBlock adds its input (or downsample(x)) back
        assert joins[stage] == f"⊕ skip in {blocks} blocks"
    assert [label for label, join in joins.items() if join] == ["layer1", "layer2", "layer3", "layer4"]
    layers = {c.name: c for c in report.layers}
    assert block_joins(report.layers, layers["layer1.0"]) == ["⊕ skip"]
    assert block_joins(report.layers, layers["layer2.0"]) == ["⊕ skip (downsample)"]
    page = report_html(report)
    assert '<i class="ns-join">⊕ skip in 2 blocks</i>' in page


def test_vgg_flow_has_no_join():
    _, joins = _flow_joins(torchvision.models.vgg11())
    assert not any(joins.values())


def test_efficientnet_counts_only_residual_blocks_and_names_the_gate():
    model = torchvision.models.efficientnet_b0()
    report, joins = _flow_joins(model)
    for i, stage in enumerate(model.features):
        residual = sum(bool(getattr(block, "use_res_connect", False)) for block in stage.modules())
        expected = f"⊕ skip in {residual} block{'s' if residual > 1 else ''}" if residual else ""
        assert joins[f"features.{i}"] == expected, i
    se = next(c for c in report.layers if c.class_name == "SqueezeExcitation")
    assert block_joins(report.layers, se) == ["⊗ gate"]  # scale * input: a product, not a skip


def test_inception_blocks_merge_four_branches():
    model = torchvision.models.googlenet(init_weights=False, aux_logits=False)
    _, joins = _flow_joins(model, (1, 3, 96, 96))
    inceptions = [name for name, m in model.named_children() if type(m).__name__ == "Inception"]
    assert inceptions and all(joins[name] == "⊕ 4 branches (cat)" for name in inceptions)
    assert {label for label, join in joins.items() if join} == set(inceptions)


def test_gpt2_blocks_fold_with_their_two_residual_adds():
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(vocab_size=100, n_positions=16, n_embd=16, n_layer=3, n_head=2,
                                     bos_token_id=0, eos_token_id=0)
    report = netscope.summary(transformers.GPT2LMHeadModel(config),
                              input_data={"input_ids": torch.zeros(1, 16, dtype=torch.long)})
    steps = {s.label: s.join for s in shape_flow(report.layers, report.run.input_shapes).steps}
    assert steps["transformer.h.0–2 ×3"] == "⊕ skip ×2"  # attention output + x, then mlp output + that


def test_a_residual_sublayer_is_shown_whole_inside_an_opened_container():
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=32)
    report = netscope.summary(transformers.BertModel(config),
                              input_data={"input_ids": torch.zeros(1, 8, dtype=torch.long)})
    layers = {c.name: c for c in report.layers}
    # BertSelfOutput: LayerNorm(dropout(dense(h)) + input_tensor); BertOutput: the same around the MLP
    assert block_joins(report.layers, layers["encoder.layer.0.attention.output"]) == ["⊕ skip"]
    assert block_joins(report.layers, layers["encoder.layer.0.output"]) == ["⊕ skip"]
    joins = {s.label: s.join for s in shape_flow(report.layers, report.run.input_shapes).steps}
    assert joins["encoder.layer.0.attention.output"] == "← embeddings ⊕ skip"  # the skip comes from the embeddings
    assert joins["encoder.layer.0.output"].endswith("⊕ skip")


class SideInput(nn.Module):
    """A value computed beside the path and handed to every block as an extra input (Llama's rotary cos/sin, a
    diffusion U-Net's time embedding): the path is embed -> blocks -> head; ``time`` is no step of it."""

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.t = nn.Linear(8, 8), nn.Linear(4, 8)

        def forward(self, x, emb):
            return x + self.fc(x) * self.t(emb)

    def __init__(self, blocks: int = 3):
        super().__init__()
        self.embed, self.time = nn.Linear(6, 8), nn.Linear(1, 4)
        self.blocks = nn.ModuleList(self.Block() for _ in range(blocks))
        self.head = nn.Linear(8, 2)

    def forward(self, x, t):
        h, emb = self.embed(x), self.time(t)
        for block in self.blocks:
            h = block(h, emb)
        return self.head(h)


def test_a_value_handed_to_every_block_is_a_side_input_not_a_step():
    report, calls = _calls(SideInput(), torch.randn(2, 6), torch.randn(2, 1))
    assert all(_index(calls, "time") in calls[f"blocks.{i}"].inputs_from for i in range(3))  # the dataflow itself
    flow = shape_flow(report.layers, report.run.input_shapes)
    labels = [step.label.split(" ")[0] for step in flow.steps]
    assert "time" not in labels, labels
    assert labels[:2] == ["input", "embed"] and labels[-1] == "head", labels
    blocks = next(step for step in flow.steps if step.label.startswith("blocks"))
    assert "← time" in blocks.join, blocks.join  # where the side value joins the path
    # one consumer only is an ordinary step (a U-Net's up-sampling feeds one decoder): still shown
    report, calls = _calls(SideInput(blocks=1), torch.randn(2, 6), torch.randn(2, 1))
    labels = [step.label.split(" ")[0] for step in shape_flow(report.layers, report.run.input_shapes).steps]
    assert "time" in labels, labels


class ParallelHeads(nn.Module):
    """Three identical blocks side by side, each fed by the stem, summed; then two identical blocks in a row."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Linear(4, 8)
        self.heads = nn.ModuleList(nn.Sequential(nn.Linear(8, 8), nn.ReLU()) for _ in range(3))
        self.tail = nn.ModuleList(nn.Sequential(nn.Linear(8, 8), nn.ReLU()) for _ in range(2))

    def forward(self, x):
        x = self.stem(x)
        x = sum(head(x) for head in self.heads)
        for block in self.tail:
            x = block(x)
        return x


def test_identical_blocks_side_by_side_are_no_run_of_the_path():
    # the flow folded the three heads into one step 'heads.0–2 ×3', a run along the path, as if heads.1 took
    # heads.0's output; the forward feeds each from the stem. The two tail blocks do run in a row: one step
    report = netscope.summary(ParallelHeads(), (2, 4))
    steps = [(s.label, s.join) for s in shape_flow(report.layers, report.run.input_shapes).steps]
    assert steps == [("input", ""), ("stem", ""), ("heads.0", ""), ("heads.1", "← stem"), ("heads.2", "← stem"),
                     ("tail.0–1 ×2", "← heads.0, heads.1")]  # the sum of the heads: heads.2 is the step before


class MaybeResidual(nn.Module):
    """Two Linears; the input added back only when ``residual`` (same modules, shapes, parameters, multiply-adds)."""

    def __init__(self, residual: bool, swapped: bool = False):
        super().__init__()
        self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 8)
        self.residual, self.swapped = residual, swapped

    def forward(self, x):
        y = self.a(self.b(x)) if self.swapped else self.b(self.a(x))
        return y + x if self.residual else y


def _ground_truth(model, inputs):
    """Per block: (whether its output is its children's chain plus its input, the order its children ran in),
    from PyTorch itself: forward pre-hooks record the order, the chain is recomputed from the children."""
    order, handles, x = {}, [], inputs
    for name, block in model.named_children():
        for child_name, child in block.named_children():
            handles.append(child.register_forward_pre_hook(
                lambda m, args, name=name, child_name=child_name: order.setdefault(name, []).append(child_name)))
    with torch.no_grad():
        outputs = []
        for block in model.children():
            x = block(x)
            outputs.append(x)
        for handle in handles:
            handle.remove()
        truth, x = [], inputs
        for (name, block), y in zip(model.named_children(), outputs):
            chain = x
            for child_name in order[name]:
                chain = getattr(block, child_name)(chain)
            truth.append((torch.equal(y, chain + x), tuple(order[name])))
            x = y
    return truth


def test_blocks_wired_differently_inside_are_not_folded_or_drawn_as_one_run():
    # Before: the four blocks folded into 'as 0' and the flow drew one step '0–3 ×4 ⊕ skip', a skip in blocks 1
    # and 2 that add nothing back; and two blocks running their children in the other order folded too
    model = nn.Sequential(MaybeResidual(True), MaybeResidual(False), MaybeResidual(False), MaybeResidual(True),
                          MaybeResidual(False, swapped=True), MaybeResidual(False, swapped=True))
    x = torch.randn(2, 8)
    truth = _ground_truth(model, x)
    assert [t[0] for t in truth] == [True, False, False, True, False, False]
    report = netscope.summary(model, input_data=x, checks=False, audit_names=False)
    by_index = {c.index: c.name for c in report.layers}
    for fold in report.folds():  # a fold says its members are like its first: PyTorch's answer agrees
        names = [by_index[fold.first]] + [by_index[m] for m in fold.members]
        assert len({truth[int(n)] for n in names}) == 1, names
    assert [(by_index[f.first], [by_index[m] for m in f.members]) for f in report.folds()] == [
        ("1", ["2"]), ("4", ["5"])]
    steps = shape_flow(report.layers, report.run.input_shapes).steps
    skips = [s.label for s in steps if "skip" in s.join]
    assert skips == [str(i) for i, (residual, _) in enumerate(truth) if residual]
