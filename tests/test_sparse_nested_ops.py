"""Sparse matrix products, matrix-vector products, nested tensors and packed sequences, each against a count
written independently of netscope.

Sparse operands: the products a sparse kernel makes are one per stored element and dense column, counted here
from the dense matrix's non-zeros (torch's ``FlopCounterMode`` reads shapes only and counts them as dense).
``mv``/``dot``/``addbmm``: torch's ``FlopCounterMode`` on the ``mm``/``bmm`` each one equals. Nested tensors
(what ``nn.TransformerEncoder`` makes of a padding mask, and ``nn.MultiheadAttention``'s fast path takes): the
layer's matmuls written out over the real tokens, and the shapes of a real forward's nested outputs.
"""

from __future__ import annotations

import json
import warnings

import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

import netscope
from netscope.errors import MetaDeviceError


def _report(model, *inputs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's nested-tensor prototype warning
        return netscope.summary(model, input_data=tuple(inputs), audit_names=False)


def _flop_counter_macs(fn, *args) -> int:
    with FlopCounterMode(display=False) as counter:
        fn(*args)
    return counter.get_total_flops() // 2


def _state(model):
    return ({k: v.to_dense().clone() if v.layout != torch.strided else v.clone() for k, v in model.state_dict().items()},
            [m.training for m in model.modules()], [p.requires_grad for p in model.parameters()])


def _same_state(a, b) -> bool:
    return (a[0].keys() == b[0].keys() and all(torch.equal(a[0][k], b[0][k]) for k in a[0]) and a[1:] == b[1:])


# ---- sparse operands -----------------------------------------------------------------------------

class SparseGraph(nn.Module):
    """A GCN-style layer: a sparse adjacency times node features, three ways of writing the product."""

    def __init__(self, adjacency: torch.Tensor, how: str):
        super().__init__()
        self.register_buffer("adj", adjacency)
        self.how = how
        self.lin = nn.Linear(32, 8)

    def forward(self, x):
        if self.how == "matmul":
            y = self.adj @ x
        elif self.how == "mm":
            y = torch.mm(self.adj, x)
        else:
            y = torch.sparse.mm(self.adj, x)
        return self.lin(y)


def _adjacency(nodes: int = 64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    dense = (torch.rand(nodes, nodes, generator=generator) < 0.05).float()
    dense[torch.arange(nodes), torch.arange(nodes)] = 1.0  # self loops: every row non-empty
    return dense


@pytest.mark.parametrize("layout", ["coo", "csr"])
@pytest.mark.parametrize("how", ["matmul", "mm", "sparse.mm"])
def test_sparse_times_dense_counts_the_stored_elements(layout, how):
    dense = _adjacency()
    adjacency = dense.to_sparse() if layout == "coo" else dense.to_sparse_csr()
    model = SparseGraph(adjacency, how)
    x = torch.randn(64, 32)
    before = _state(model)
    report = _report(model, x)
    assert _same_state(before, _state(model))
    stored = int((dense != 0).sum())
    assert not report.partial, report.uncounted_ops()
    assert report.totals.total_macs == stored * 32 + 64 * 32 * 8  # adjacency product + Linear(32, 8) on 64 rows
    # the same model with a dense adjacency: every product counted, as torch's own counter counts it
    dense_model = SparseGraph(dense, "mm")
    assert _report(dense_model, x).totals.total_macs == _flop_counter_macs(dense_model, x) == 64 * 64 * 32 + 64 * 32 * 8


@pytest.mark.parametrize("layout", ["coo", "csr"])
def test_a_sparse_buffer_takes_the_bytes_of_its_values_and_indices(layout):
    """A sparse tensor's numel() is its dense size: the buffer bytes were 64·64·4 here, and 40 GB for a 100k-node
    adjacency holding 10^6 edges (20 MB). Its data: float32 values and int64 indices, written out per layout."""
    dense = _adjacency()
    adjacency = dense.to_sparse() if layout == "coo" else dense.to_sparse_csr()
    stored = int((dense != 0).sum())
    indices = 2 * stored * 8 if layout == "coo" else (64 + 1) * 8 + stored * 8  # COO pairs; CSR offsets, cols
    report = _report(SparseGraph(adjacency, "mm"), torch.randn(64, 32))
    assert report.totals.buffer_bytes == stored * 4 + indices < 64 * 64 * 4
    assert report.totals.buffer_elements == 64 * 64  # elements counted as numel() counts them, like parameters


def _held_bytes(t: torch.Tensor) -> int:
    """What a sparse tensor holds, read from torch's own accessors per layout."""
    if t.layout == torch.sparse_coo:
        return t.values().nbytes + t.indices().nbytes
    return t.values().nbytes + t.crow_indices().nbytes + t.col_indices().nbytes


class SparseInput(nn.Module):
    """Takes the adjacency as an input (a graph batch) and hands back a sparse copy of its dense product."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(32, 8)
        self.out = ToSparse()

    def forward(self, adjacency, x):
        return self.out(self.lin(torch.sparse.mm(adjacency, x)).relu())


class ToSparse(nn.Module):
    def forward(self, y):
        return y.to_sparse()


@pytest.mark.parametrize("layout", ["coo", "csr"])
def test_a_sparse_input_and_output_take_the_bytes_they_hold_not_their_dense_size(layout):
    """Input size and activations: a sparse tensor counts its values and indices (64·64·4 bytes dense here)."""
    dense = _adjacency()
    adjacency = dense.to_sparse() if layout == "coo" else dense.to_sparse_csr()
    x = torch.randn(64, 32)
    model = SparseInput()
    out = model(adjacency, x)
    report = _report(model, adjacency, x)
    assert report.totals.input_bytes == _held_bytes(adjacency) + x.nbytes < dense.nbytes + x.nbytes
    rows = {c.name: c for c in report.layers}
    assert rows["out"].output_bytes == _held_bytes(out) != out.to_dense().nbytes
    assert rows[""].output_bytes == _held_bytes(out)
    assert report.totals.activation_bytes == 64 * 8 * 4 + _held_bytes(out)  # Linear's dense output + the sparse one


def test_dense_times_sparse_and_sparse_times_sparse():
    generator = torch.Generator().manual_seed(1)
    a = (torch.rand(6, 5, generator=generator) < 0.4).float() * torch.rand(6, 5, generator=generator)
    b = (torch.rand(5, 7, generator=generator) < 0.4).float() * torch.rand(5, 7, generator=generator)

    class DenseSparse(nn.Module):
        def forward(self, x, s):
            return torch.mm(x, s)

    class SparseSparse(nn.Module):
        def forward(self, s, t):
            return torch.sparse.mm(s, t)

    assert _report(DenseSparse(), a, b.to_sparse()).totals.total_macs == 6 * int((b != 0).sum())
    products = sum(1 for i in range(6) for k in range(5) for j in range(7) if a[i, k] != 0 and b[k, j] != 0)
    report = _report(SparseSparse(), a.to_sparse(), b.to_sparse())
    assert not report.partial and report.totals.total_macs == products


# ---- matrix-vector products ------------------------------------------------------------------------

class VectorProducts(nn.Module):
    def __init__(self, op: str):
        super().__init__()
        self.op = op

    def forward(self, m, v, w, batch):
        if self.op == "mv":
            return torch.mv(m, v)
        if self.op == "addmv":
            return torch.addmv(torch.zeros(m.shape[0]), m, v)
        if self.op == "dot":
            return torch.dot(v, w)
        if self.op == "vdot":
            return torch.vdot(v, w)
        return torch.addbmm(torch.zeros(m.shape[0], m.shape[0]), batch, batch.transpose(1, 2))


@pytest.mark.parametrize("op, equivalent", [
    ("mv", lambda m, v, w, batch: torch.mm(m, v[:, None])),
    ("addmv", lambda m, v, w, batch: torch.mm(m, v[:, None])),
    ("dot", lambda m, v, w, batch: torch.mm(v[None, :], w[:, None])),
    ("vdot", lambda m, v, w, batch: torch.mm(v[None, :], w[:, None])),
    ("addbmm", lambda m, v, w, batch: torch.bmm(batch, batch.transpose(1, 2))),
])
def test_vector_products_count_as_the_matmul_they_equal(op, equivalent):
    inputs = (torch.randn(7, 11), torch.randn(11), torch.randn(11), torch.randn(3, 7, 5))
    report = _report(VectorProducts(op), *inputs)
    assert not report.partial, report.uncounted_ops()
    assert report.totals.total_macs == _flop_counter_macs(equivalent, *inputs) > 0


# ---- nested tensors --------------------------------------------------------------------------------

def _encoder():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True, dropout=0.0)
    return nn.TransformerEncoder(layer, 2, enable_nested_tensor=True).eval()


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = _encoder()

    def forward(self, x, mask):
        return self.enc(x, src_key_padding_mask=mask)


def _layer_formula(lengths, embed: int = 32, hidden: int = 64) -> int:
    """One encoder layer over sequences of these lengths: q, k, v and output projections, scores and
    weighted sum over all heads, two feed-forward matmuls (padded positions are never computed)."""
    tokens = sum(lengths)
    return (4 * tokens * embed * embed + 2 * sum(n * n for n in lengths) * embed + 2 * tokens * embed * hidden)


def _real_layer_outputs(model, *inputs):
    """Each encoder layer's output shapes in a real forward: component shapes of a nested output."""
    seen = []

    def hook(module, args, output):
        seen.append([tuple(t.shape) for t in output.unbind()] if output.is_nested else tuple(output.shape))

    handles = [layer.register_forward_hook(hook) for layer in model.enc.layers]
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return seen


@pytest.mark.parametrize("padded", [[0, 4], [3, 0], [0, 0]])
def test_transformer_encoder_padding_mask_runs_on_nested_tensors(padded):
    model = Encoder()
    x = torch.randn(2, 10, 32)
    mask = torch.zeros(2, 10, dtype=torch.bool)
    for row, count in enumerate(padded):
        if count:
            mask[row, -count:] = True
    lengths = [10 - int(m.sum()) for m in mask]
    real = _real_layer_outputs(model, x, mask)
    before = _state(model)
    report = _report(model, x, mask)
    assert _same_state(before, _state(model))
    assert not report.partial, report.uncounted_ops()
    assert report.totals.total_macs == 2 * _layer_formula(lengths)
    layers = [call for call in report.layers if call.class_name == "TransformerEncoderLayer"]
    assert [call.output_shapes["nested"] if isinstance(call.output_shapes, dict) else call.output_shapes
            for call in layers] == real
    assert real[0] == [(n, 32) for n in lengths]  # a padding mask, even one masking nothing, makes it nested
    assert "nested(" + ", ".join(f"[{n}, 32]" for n in lengths) + ")" in str(report)
    assert report.layers[0].output_shapes == (2, 10, 32)
    json.loads(report.to_json())
    assert len(report.to_dataframe()) == len(report.layers)
    assert "TransformerEncoderLayer" in report.to_html()


def test_multihead_attention_fast_path_on_a_nested_batch():
    torch.manual_seed(0)
    attention = nn.MultiheadAttention(32, 4, batch_first=True).eval()

    class SelfAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.att = attention

        def forward(self, x):
            return self.att(x, x, x, need_weights=False)[0]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x = torch.nested.nested_tensor([torch.randn(10, 32), torch.randn(6, 32)])
    report = _report(SelfAttention(), x)
    assert not report.partial, report.uncounted_ops()
    projections = 4 * (10 + 6) * 32 * 32  # q, k, v, out over the 16 real tokens
    assert report.totals.total_macs == projections + 2 * (10 * 10 + 6 * 6) * 32
    assert report.layers[1].output_shapes == [{"nested": [(10, 32), (6, 32)]}, "None"]  # (output, weights)


@pytest.mark.parametrize("layout", [torch.strided, torch.jagged])
def test_linear_layers_on_a_nested_batch_count_its_rows(layout):
    """On a nested tensor ``F.linear`` reaches dispatch whole (``aten::linear``, no ``addmm``), which torch's
    counter has no formula for: each layer is its weight once per real row (no padding rows)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x = torch.nested.nested_tensor([torch.randn(10, 32), torch.randn(6, 32)], layout=layout)
    report = _report(model, x)
    assert not report.partial, report.uncounted_ops()
    assert report.totals.total_macs == (10 + 6) * (32 * 16 + 16 * 4)
    assert report.layers[-1].output_shapes == {"nested": [(10, 4), (6, 4)]}


def test_attention_on_a_jagged_batch_counts_each_sequence_on_its_own():
    """SDPA's math path on a jagged batch runs ``aten::matmul`` on nested tensors (whole, no ``bmm``): scores and
    weighted sum per sequence, 2·heads·n²·head_dim for each length n, never the padded square."""

    class SelfAttention(nn.Module):
        def forward(self, x):  # (batch, ragged, 32) -> heads (batch, 4, ragged, 8)
            q = x.unflatten(-1, (4, 8)).transpose(1, 2)
            return nn.functional.scaled_dot_product_attention(q, q, q).transpose(1, 2).flatten(-2)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x = torch.nested.nested_tensor([torch.randn(10, 32), torch.randn(6, 32)], layout=torch.jagged)
    report = _report(SelfAttention(), x)
    assert not report.partial, report.uncounted_ops()
    assert report.totals.total_macs == sum(2 * 4 * n * n * 8 for n in (10, 6))


# ---- packed sequences --------------------------------------------------------------------------------

def test_packed_sequence_bookkeeping_is_not_partial():
    torch.manual_seed(0)

    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(8, 16, batch_first=True)
            self.head = nn.Linear(16, 3)

        def forward(self, x, lengths):
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            _, (h, _) = self.rnn(packed)
            return self.head(h[-1])

    model, x, lengths = Tagger().eval(), torch.randn(3, 5, 8), torch.tensor([5, 3, 2])
    report = _report(model, x, lengths)
    assert not report.partial, report.uncounted_ops()
    steps = int(lengths.sum())  # the packed LSTM runs only the real time steps
    formula = steps * 4 * 16 * (8 + 16) + 3 * 16 * 3
    assert report.totals.total_macs == formula == _flop_counter_macs(model, x, lengths)


# ---- the meta device ---------------------------------------------------------------------------------

@pytest.mark.parametrize("build", [
    lambda: (SparseGraph(_adjacency().to_sparse(), "mm"), (torch.randn(64, 32),)),  # no SparseMeta mm kernel
    lambda: (Encoder(), (torch.randn(2, 10, 32), torch.tensor([[False] * 10, [False] * 6 + [True] * 4]))),  # nested
])
def test_an_operator_the_meta_device_lacks_is_named_not_blamed_on_the_model(build):
    """The CPU runs these models (above); the meta device has no kernel for a sparse or nested operand. That is
    a MetaDeviceError (exit 2: run on a real device), not a ForwardError saying the model's forward failed."""
    model, inputs = build()
    model(*inputs)  # the model itself is fine
    with pytest.raises(MetaDeviceError, match="meta device cannot run") as info:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            netscope.summary(model, input_data=inputs, device="meta")
    assert info.value.exit_code == 2


def test_step_refuses_sparse_tensors_rather_than_plan_a_dense_model():
    """netscope step's fake twin of a sparse buffer was a dense tensor with strides (0, 0): it planned the dense
    product (64·64·32 multiply-adds, where the sparse kernel makes one per stored element and column) and a
    4-byte buffer. It refuses, naming the tensor."""
    from netscope.errors import UsageError

    dense = _adjacency()
    with pytest.raises(UsageError, match=r"model\.adj \(sparse_coo\)") as info:
        netscope.step(SparseGraph(dense.to_sparse(), "mm"), input_size=(64, 32))
    assert info.value.exit_code == 2
    planned = netscope.step(SparseGraph(dense, "mm"), input_size=(64, 32))  # the dense model plans as before
    assert planned.totals.forward_macs == 64 * 64 * 32 + 64 * 32 * 8


def test_step_refuses_a_sparse_tensor_held_by_an_input_object():
    """The step copies the tensors inside an input object (a cache) too, into dense fake twins: a sparse one
    there is refused as a sparse input is."""
    import types

    from netscope.errors import UsageError

    class UsesHeld(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(64, 8)

        def forward(self, x, held):
            return self.proj(torch.sparse.mm(held.adj, x).t())

    held = types.SimpleNamespace(adj=_adjacency().to_sparse())
    with pytest.raises(UsageError, match=r"input 1 \(sparse_coo\)"):
        netscope.step(UsesHeld(), input_data=(torch.randn(64, 32), held))


# ---- grouped matmul (mixture-of-experts) ----------------------------------------------------------------

def _grouped_cases():
    g = torch.Generator().manual_seed(0)
    r = lambda *shape: torch.randn(*shape, generator=g)
    offs = lambda *ends: torch.tensor(ends, dtype=torch.int32)
    a2, b3 = r(40, 16), r(3, 16, 8)
    a3, b2 = r(3, 8, 16), r(16, 24)
    wide, tall = r(8, 48), r(48, 8)
    return {  # (operands, the per-group matmuls it equals)
        "rows grouped": ((a2, b3, offs(8, 24, 40)),
                         lambda: [a2[0:8] @ b3[0], a2[8:24] @ b3[1], a2[24:40] @ b3[2]]),
        "rows past offs[-1] not computed": ((a2, b3, offs(8, 16, 32)),
                                            lambda: [a2[0:8] @ b3[0], a2[8:16] @ b3[1], a2[16:32] @ b3[2]]),
        "batched": ((a3, r(3, 16, 8), None), None),
        "contraction grouped": ((wide, tall, offs(16, 32, 48)),
                                lambda: [wide[:, i:i + 16] @ tall[i:i + 16] for i in (0, 16, 32)]),
        "columns grouped": ((a3, b2, offs(8, 16, 24)), lambda: [a3[i] @ b2[:, 8 * i:8 * i + 8] for i in range(3)]),
    }


@pytest.mark.parametrize("case", list(_grouped_cases()))
def test_grouped_mm_counts_its_groups_matmuls(case):
    (a, b, offs), per_group = _grouped_cases()[case]

    class Experts(nn.Module):
        def forward(self, x, w):
            return torch._grouped_mm(x, w, offs=offs)

    if per_group is None:  # (G, M, K) @ (G, K, N) is bmm
        per_group = lambda: torch.bmm(a, b)  # noqa: E731
    report = _report(Experts(), a, b)
    assert not report.partial, report.uncounted_ops()
    assert report.totals.total_macs == _flop_counter_macs(per_group) > 0
