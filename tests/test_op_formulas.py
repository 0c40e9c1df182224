"""Formulas for the operators users hit as zeros, each against an independent count.

RNN kernels: the count written out (each weight matrix once per step and batch row) and the meta
device's decomposition into mm/addmm, which torch's own formulas count. Bilinear: N·out·in1·in2.
deform_conv2d: torch's FlopCounterMode on the plain convolution of the same shape. Quantized: torch's
FlopCounterMode on the float twin, and the fused float model's ``parameters()``.
"""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch
import torch.nn as nn
import torchvision
from torch.utils.flop_counter import FlopCounterMode

import netscope


def _macs(model, *inputs, device="cpu"):
    report = netscope.summary(model, input_data=tuple(inputs), device=device, checks=False, audit_names=False)
    assert not report.partial, report.uncounted_ops()
    return report


def _rnn_formula(rnn: nn.RNNBase, steps: int, batch: int) -> int:
    gates = {"LSTM": 4, "GRU": 3}.get(type(rnn).__name__, 1)
    hidden = rnn.hidden_size
    out = rnn.proj_size or hidden
    directions = 2 if rnn.bidirectional else 1
    total = 0
    for layer in range(rnn.num_layers):
        layer_in = rnn.input_size if layer == 0 else out * directions
        per_step = gates * hidden * layer_in + gates * hidden * out + (hidden * out if rnn.proj_size else 0)
        total += directions * steps * batch * per_step
    return total


RNNS = [
    pytest.param(lambda: nn.LSTM(10, 16), id="lstm"),
    pytest.param(lambda: nn.LSTM(10, 16, num_layers=2, bidirectional=True), id="lstm-2-layer-bi"),
    pytest.param(lambda: nn.LSTM(10, 16, num_layers=2, proj_size=8), id="lstm-proj"),
    pytest.param(lambda: nn.LSTM(10, 16, batch_first=True, bias=False), id="lstm-batch-first-no-bias"),
    pytest.param(lambda: nn.GRU(10, 16, num_layers=2, bidirectional=True), id="gru-2-layer-bi"),
    pytest.param(lambda: nn.RNN(10, 16, nonlinearity="relu"), id="rnn-relu"),
    pytest.param(lambda: nn.RNN(10, 16, num_layers=3), id="rnn-tanh-3-layer"),
]


@pytest.mark.parametrize("build", RNNS)
def test_rnn_family_counts_the_same_on_cpu_and_meta_and_equals_the_formula(build):
    torch.manual_seed(0)
    rnn = build().eval()
    steps, batch = 7, 3
    shape = (batch, steps, 10) if rnn.batch_first else (steps, batch, 10)
    x = torch.randn(shape)
    cpu = _macs(rnn, x)
    meta = _macs(rnn, x, device="meta")
    assert cpu.totals.total_macs == meta.totals.total_macs == _rnn_formula(rnn, steps, batch)
    assert cpu.totals.total_params == meta.totals.total_params == sum(p.numel() for p in rnn.parameters())


def test_cpu_lstm_uses_the_mkldnn_kernel_and_it_is_counted():
    rnn = nn.LSTM(10, 16).eval()
    report = _macs(rnn, torch.randn(7, 3, 10))
    ops = report.by_operator().set_index("op")
    if "aten::mkldnn_rnn_layer" not in ops.index:
        pytest.skip("this build of torch runs LSTM on CPU without mkldnn_rnn_layer")
    assert ops.loc["aten::mkldnn_rnn_layer", "macs"] == _rnn_formula(rnn, 7, 3)


@pytest.mark.parametrize("cell,gates", [(nn.LSTMCell, 4), (nn.GRUCell, 3), (nn.RNNCell, 1)])
def test_rnn_cells(cell, gates):
    module = cell(10, 16).eval()
    x = torch.randn(3, 10)
    cpu = _macs(module, x)
    assert cpu.totals.total_macs == _macs(module, x, device="meta").totals.total_macs == 3 * gates * 16 * (10 + 16)


def test_bilinear_counts_n_out_in1_in2():
    module = nn.Bilinear(5, 7, 3)
    a, b = torch.randn(4, 5), torch.randn(4, 7)
    for device in ("cpu", "meta"):
        assert _macs(module, a, b, device=device).totals.total_macs == 4 * 3 * 5 * 7


def test_deform_conv2d_counts_as_the_plain_convolution_of_its_weight():
    from torchvision.ops import DeformConv2d

    module = DeformConv2d(4, 6, 3, stride=2, padding=1, groups=2)
    x = torch.randn(2, 4, 9, 9)
    offset = torch.zeros(2, 2 * 9, 5, 5)
    report = _macs(module, x, offset)
    plain = nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2)
    with FlopCounterMode(display=False) as flops:
        plain(x)
    assert report.totals.total_macs == flops.get_total_flops() // 2 == 2 * 6 * 5 * 5 * (4 // 2) * 3 * 3


class Spectral(nn.Module):
    def forward(self, x):
        return torch.fft.irfft(torch.fft.rfft(x, dim=-1), n=x.shape[-1], dim=-1), torch.fft.fft2(x.to(torch.complex64))


def test_fft_counts_n_log2_n_over_2_complex_multiply_adds_per_signal():
    x = torch.randn(3, 8, 16)
    report = _macs(Spectral(), x)
    # rfft over the last dim: 3·8 signals of 16 points; irfft the same; fft2: 16-point and 8-point passes;
    # each butterfly's complex multiply-add is 4 real ones
    expected = 4 * ((3 * 8 * 16 * 4 // 2) * 2 + (3 * 8 * 16 * 4 // 2 + 3 * 8 * 16 * 3 // 2))
    assert report.totals.total_macs == expected
    assert _macs(Spectral(), x, device="meta").totals.total_macs == expected


def test_a_real_fft_over_two_dims_counts_its_second_pass_over_the_half_spectrum():
    """rfft2 of (2, 31, 20): 2·31 real signals of 20 points, then 2·11 complex signals (20 // 2 + 1 columns kept)
    of 31 points; irfft2 the same passes in reverse. n·ceil(log2 n)/2 complex multiply-adds per signal, 4 real each
    (the convention of the 1-d test above); rfftn over dims (1, 3) of (2, 6, 31, 20): its first pass over the 20
    real points, its second over 6 points of the 2·31·11 half-spectrum signals."""
    x = torch.randn(2, 31, 20)
    last = 2 * 31 * 20 * 5 // 2  # ceil(log2 20) = 5
    second = 2 * 11 * 31 * 5 // 2  # ceil(log2 31) = 5
    assert _macs(_Fn(torch.fft.rfft2), x).totals.total_macs == 4 * (last + second)
    spectrum = torch.fft.rfft2(x)
    assert _macs(_Fn(lambda y: torch.fft.irfft2(y, s=(31, 20))), spectrum).totals.total_macs == 4 * (last + second)
    rfftn = _Fn(lambda y: torch.fft.rfftn(y, dim=(1, 3)))
    assert _macs(rfftn, torch.randn(2, 6, 31, 20)).totals.total_macs == 4 * (
        2 * 6 * 31 * 20 * 5 // 2 + 2 * 31 * 11 * 6 * 3 // 2)  # ceil(log2 6) = 3


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_large"])
def test_quantized_models_count_the_float_twins_multiply_adds_and_packed_weights(name):
    warnings.filterwarnings("ignore", category=UserWarning)
    builder = torchvision.models.get_model_builder(f"quantized_{name}")
    quantized = builder(weights=None, quantize=True).eval()
    x = torch.randn(1, 3, 64, 64)
    report = _macs(quantized, x)
    float_twin = builder(weights=None, quantize=False).eval()
    with FlopCounterMode(display=False) as flops:
        float_twin(x)
    assert report.totals.total_macs == flops.get_total_flops() // 2
    float_twin.fuse_model(is_qat=False)  # what quantize=True does before converting: BN folded into the convs
    assert report.totals.total_params == sum(p.numel() for p in float_twin.parameters())
    assert report.totals.trainable_params == 0
    fc_row = next(c for c in report.layers if c.name == "fc" or c.name == "classifier.3")
    assert fc_row.own_params == fc_row.subtree_params > 0


def test_quantized_linear_dynamic_and_transposed_conv():
    warnings.filterwarnings("ignore", category=UserWarning)
    model = nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 4))
    dynamic = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    report = _macs(dynamic, torch.randn(5, 12))
    assert report.totals.total_macs == 5 * (12 * 8 + 8 * 4)
    assert report.totals.total_params == sum(p.numel() for p in model.parameters())
    qconv = torch.ao.nn.quantized.ConvTranspose2d(4, 6, 3, stride=2, groups=2)
    qx = torch.quantize_per_tensor(torch.randn(1, 4, 5, 5), 0.1, 0, torch.quint8)
    report = _macs(qconv, qx)
    plain = nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2)
    with FlopCounterMode(display=False) as flops:
        plain(torch.randn(1, 4, 5, 5))
    assert report.totals.total_macs == flops.get_total_flops() // 2 == 1 * 5 * 5 * 4 * (6 // 2) * 3 * 3
    assert report.totals.total_params == math.prod(qconv.weight().shape) + 6


def _float_rnn_macs(model, x):
    """The float twin counted by torch's FlopCounterMode with oneDNN off, so the RNN runs as plain matmuls."""
    with torch.backends.mkldnn.flags(enabled=False), FlopCounterMode(display=False) as flops:
        model(x)
    return flops.get_total_flops() // 2


@pytest.mark.parametrize("dtype", [torch.qint8, torch.float16])
@pytest.mark.parametrize("cls, shape, kwargs", [
    (nn.LSTM, (2, 5, 8), dict(num_layers=2, bidirectional=True, batch_first=True)),
    (nn.GRU, (5, 2, 8), dict(num_layers=3)),
    (nn.LSTMCell, (3, 8), {}), (nn.GRUCell, (3, 8), {}), (nn.RNNCell, (3, 8), {}),
])
def test_dynamic_quantized_rnns_count_the_float_twins_weights_and_multiply_adds(cls, shape, kwargs, dtype):
    warnings.filterwarnings("ignore", category=UserWarning)
    float_twin = nn.Sequential(cls(8, 16, **kwargs))
    quantized = torch.ao.quantization.quantize_dynamic(float_twin, {cls}, dtype=dtype)
    x = torch.randn(*shape)
    report = _macs(quantized, x)
    assert not report.partial
    assert report.totals.total_macs == _float_rnn_macs(float_twin, x) > 0
    assert report.totals.total_params == sum(p.numel() for p in float_twin.parameters())


@pytest.mark.parametrize("batch_first", [True, False])
def test_fused_transformer_encoder_layer_counts_what_the_unfused_layer_does(batch_first):
    """``nn.TransformerEncoder`` in eval runs ``aten::_transformer_encoder_layer_fwd``; its count is the
    unfused layer's, written out: q/k/v + output projections, scores and weighted sum, two FFN matmuls."""
    batch, seq, embed, heads, hidden, layers = 2, 6, 32, 4, 64, 3
    torch.manual_seed(0)
    encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(embed, heads, hidden, batch_first=batch_first),
                                    layers, enable_nested_tensor=False).eval()
    x = torch.randn(batch, seq, embed) if batch_first else torch.randn(seq, batch, embed)
    report = netscope.summary(encoder, x)
    fused = "aten::_transformer_encoder_layer_fwd" in set(report.by_operator()["op"])
    assert fused == batch_first  # torch takes the fused fast path only for batch-first inputs: both paths checked
    tokens = batch * seq
    per_layer = tokens * embed * 4 * embed + 2 * tokens * seq * embed + 2 * tokens * embed * hidden
    assert not report.partial and report.totals.total_macs == layers * per_layer


# ---- complex operands: real multiply-adds --------------------------------------------------------------

class ComplexProducts(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(16, 12, dtype=torch.complex64)

    def forward(self, x, w):
        return self.linear(x @ w)


def _real_twin(x, w, linear):
    """The same products on real numbers: (a+bi)(c+di) = (ac - bd) + (ad + bc)i, four real matmuls each."""
    y_re = x.real @ w.real - x.imag @ w.imag
    y_im = x.real @ w.imag + x.imag @ w.real
    weight = linear.weight.t()
    return y_re @ weight.real - y_im @ weight.imag, y_re @ weight.imag + y_im @ weight.real


def test_complex_matmul_and_linear_count_four_real_multiply_adds_per_complex_one():
    model = ComplexProducts()
    x, w = torch.randn(2, 8, 16, dtype=torch.complex64), torch.randn(16, 16, dtype=torch.complex64)
    with FlopCounterMode(display=False) as flops:
        _real_twin(x, w, model.linear)
    with FlopCounterMode(display=False) as complex_flops:
        model(x, w)
    report = _macs(model, x, w)
    assert report.totals.total_macs == flops.get_total_flops() // 2 == 4 * (2 * 8 * 16 * 16 + 2 * 8 * 16 * 12)
    assert complex_flops.get_total_flops() // 2 * 4 == report.totals.total_macs  # torch counts one per complex one
    assert _macs(model, x, w, device="meta").totals.total_macs == report.totals.total_macs


def test_real_operators_on_a_view_of_complex_numbers_are_not_multiplied():
    x = torch.randn(4, 6, dtype=torch.complex64)
    w = torch.randn(2, 3)  # the (4, 6, 2) real view times a real (2, 3) matrix: real multiply-adds only
    model = _Fn(lambda x: torch.view_as_real(x) @ w)
    assert _macs(model, x).totals.total_macs == 4 * 6 * 2 * 3


def test_a_report_with_complex_operators_says_they_count_four_real_multiply_adds_each():
    """One note per report naming the operators that counted complex numbers and the convention (4 real per complex,
    torch's FlopCounterMode counting one), in the table and the JSON; none for a real model or real operators on a
    real view of complex numbers; the step command's report says it too (its backward matmuls are complex too)."""
    model = ComplexProducts()
    x, w = torch.randn(2, 8, 16, dtype=torch.complex64), torch.randn(16, 16, dtype=torch.complex64)
    for device in ("cpu", "meta"):
        report = _macs(model, x, w, device=device)
        [note] = [n for n in report.run.notes if "complex" in n]
        assert note.startswith("multiply-adds of complex operators (aten::addmm, aten::mm) are counted in real ones: "
                               "each complex multiply-add counts as 4 real ones")
        assert "Note: " + note[:60] in str(report) and note in json.loads(report.to_json())["run"]["notes"]
    signal = _Fn(lambda s: torch.fft.irfft(torch.fft.rfft(s) * 2))
    [note] = [n for n in _macs(signal, torch.randn(3, 8)).run.notes if "complex" in n]
    assert "(aten::_fft_c2r, aten::_fft_r2c)" in note
    real_view = _Fn(lambda z: torch.view_as_real(z) @ torch.randn(2, 3))
    plain_reports = (_macs(real_view, torch.randn(4, 6, dtype=torch.complex64)), _macs(nn.Linear(4, 4), torch.randn(2, 4)))
    for plain in plain_reports:
        assert not any("complex" in n for n in plain.run.notes)
    holder = _Fn(lambda z: holder.linear(z).abs())  # a real loss from a complex layer
    holder.linear = nn.Linear(4, 4).to(torch.complex64)
    step = netscope.step(holder, input_data=(torch.randn(2, 4, dtype=torch.complex64),))
    assert any(n.startswith("multiply-adds of complex operators (aten::") for n in step.run.notes)


class _Fn(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *args):
        return self.fn(*args)


# ---- EmbeddingBag: a weighted sum is a product, a plain bag a gather and a reduction ------------------

def _weighted_bag_oracle(indices, offsets, dim, include_last_offset, padding_idx):
    """Brute force: walk the bags as the documentation defines them, one multiply-add per element of each row."""
    flat = indices.reshape(-1).tolist()
    if offsets is None:  # 2-d input: one bag per row
        bags = [indices[r].tolist() for r in range(indices.shape[0])]
    else:
        ends = offsets.tolist()[1:] if include_last_offset else offsets.tolist()[1:] + [len(flat)]
        bags = [flat[start:end] for start, end in zip(offsets.tolist(), ends)]
    return sum(dim for bag in bags for index in bag if index != padding_idx)


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
@pytest.mark.parametrize("padding_idx", [None, 3])
def test_embedding_bag_without_weights_is_a_gather_and_a_reduction_like_embedding_then_sum(mode, padding_idx):
    bag = nn.EmbeddingBag(20, 8, mode=mode, padding_idx=padding_idx)
    ids = torch.randint(0, 20, (4, 5))
    composed = _Fn(lambda i: getattr(torch, {"sum": "sum", "mean": "mean", "max": "amax"}[mode])(
        nn.functional.embedding(i, bag.weight), dim=1))
    assert _macs(bag, ids).totals.total_macs == _macs(composed, ids).totals.total_macs == 0


@pytest.mark.parametrize("layout", ["2d", "offsets", "last_offset"])
@pytest.mark.parametrize("padding_idx", [None, 3])
@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_embedding_bag_with_per_sample_weights_counts_each_bagged_element(layout, padding_idx, device):
    dim = 8
    bag = nn.EmbeddingBag(20, dim, mode="sum", padding_idx=padding_idx)
    generator = torch.Generator().manual_seed(0)
    if layout == "2d":
        ids, offsets = torch.randint(0, 6, (4, 5), generator=generator), None
    else:
        ids, offsets = torch.randint(0, 6, (13,), generator=generator), torch.tensor([0, 4, 4, 9])
        if layout == "last_offset":
            bag.include_last_offset = True  # bags [0:4], [4:4], [4:9]; indices 9.. belong to no bag
    weights = torch.rand(ids.shape, generator=generator)
    inputs = (ids, offsets, weights) if offsets is not None else (ids, None, weights)
    report = _macs(bag, *inputs, device=device)
    capacity = [note for note in report.run.notes if "upper bound" in note and "aten::_embedding_bag" in note]
    if device == "meta":  # index values unknown (padding rows, the last offset's value): every index is counted
        assert report.totals.total_macs == ids.numel() * dim
        assert len(capacity) == 1 and "padding_idx rows" in capacity[0]  # and the report says so
        return
    assert not capacity
    expected = _weighted_bag_oracle(ids, offsets, dim, layout == "last_offset",
                                    padding_idx if padding_idx is not None else -1)
    assert report.totals.total_macs == expected
    if padding_idx is not None:  # the case really has padding rows to skip
        assert expected < _weighted_bag_oracle(ids, offsets, dim, layout == "last_offset", -1)


def test_embedding_bag_weighted_sum_equals_the_sparse_product_it_computes():
    """The weighted bag is (bags x num_embeddings sparse, one stored weight per index) @ weight: torch's dense
    result and netscope's count of that sparse mm agree with the bag's own count."""
    bag = nn.EmbeddingBag(20, 8, mode="sum")
    ids, offsets, weights = torch.tensor([1, 5, 5, 9, 2, 7]), torch.tensor([0, 2, 5]), torch.rand(6)
    rows = torch.tensor([0, 0, 1, 1, 1, 2])
    sparse = torch.sparse_coo_tensor(torch.stack([rows, ids]), weights, (3, 20))
    torch.testing.assert_close(bag(ids, offsets, weights), torch.sparse.mm(sparse, bag.weight))
    assert _macs(bag, ids, offsets, weights).totals.total_macs == ids.numel() * 8


# ---- cdist: p = 2 is a product per coordinate pair, other p no products ------------------------------------

def test_cdist_p2_counts_one_squared_difference_per_coordinate_of_each_pair_over_the_broadcast_batch():
    x1, x2 = torch.randn(2, 1, 7, 3), torch.randn(3, 6, 3)  # batch (2, 3), P=7, R=6, M=3; under 25 rows: direct path
    report = _macs(_Fn(lambda a, b: torch.cdist(a, b)), x1, x2)
    assert report.totals.total_macs == 2 * 3 * 7 * 6 * 3
    assert [op for op in report.by_operator()["op"] if "cdist" in op] == ["aten::_cdist_forward"]


@pytest.mark.parametrize("p", [0.0, 1.0, float("inf")])
def test_cdist_without_products_counts_zero_and_is_not_partial(p):
    assert _macs(_Fn(lambda a, b: torch.cdist(a, b, p=p)), torch.randn(4, 3), torch.randn(5, 3)).totals.total_macs == 0


def test_cdist_matmul_path_counts_the_matmul_it_runs():
    x1, x2 = torch.randn(2, 30, 4), torch.randn(2, 40, 4)
    # the decomposition documented for cdist's mm path: [-2x, |x|², 1] @ [y, 1, |y|²]ᵀ, then sqrt
    left = torch.cat([-2 * x1, x1.pow(2).sum(-1, keepdim=True), torch.ones(2, 30, 1)], -1)
    right = torch.cat([x2, torch.ones(2, 40, 1), x2.pow(2).sum(-1, keepdim=True)], -1)
    with FlopCounterMode(display=False) as flops:
        product = left @ right.mT
    model = _Fn(lambda a, b: torch.cdist(a, b, compute_mode="use_mm_for_euclid_dist"))
    torch.testing.assert_close(product.clamp_min(0).sqrt(), model(x1, x2), atol=1e-4, rtol=1e-4)
    report = _macs(model, x1, x2)
    assert "aten::_euclidean_dist" in set(report.by_operator()["op"])
    assert report.totals.total_macs == flops.get_total_flops() // 2 == 2 * 30 * 40 * (4 + 2)


@pytest.mark.parametrize("window", ["hann_window", "hamming_window", "blackman_window", "bartlett_window",
                                    "kaiser_window"])
def test_stft_with_a_window_made_in_forward_counts_its_ffts_and_is_not_partial(window):
    x = torch.randn(2, 64)
    model = _Fn(lambda x: torch.stft(x, 16, hop_length=4, window=getattr(torch, window)(16), return_complex=True))
    frames = 1 + 64 // 4  # center=True pads n_fft // 2 on each side
    # one 16-point FFT per frame and signal: 16·log2(16)/2 butterflies, 4 real multiply-adds each
    assert _macs(model, x).totals.total_macs == 4 * 2 * frames * 16 * 4 // 2


@pytest.mark.parametrize("weighted", [False, True])
def test_embedding_bag_training_step_charges_the_weighted_sum_to_the_weight_gradient_too(weighted):
    class Bag(nn.Module):
        def __init__(self):
            super().__init__()
            self.bag = nn.EmbeddingBag(50, 8, mode="sum")  # step runs on fake tensors: index values unread

        def forward(self, ids, weights):
            return self.bag(ids, per_sample_weights=weights if weighted else None)

    ids = torch.tensor([[1, 2, 5, 7], [2, 2, 9, 4], [3, 8, 8, 2]])
    report = netscope.step(Bag(), input_data=(ids, torch.rand(3, 4)))
    assert report.totals.forward_macs == report.totals.backward_macs == (3 * 4 * 8 if weighted else 0)
    assert any("upper bound" in note for note in report.run.notes) == weighted  # fake tensors: counted at capacity


# ---- functional products that decompose: netscope against torch's FlopCounterMode -------------------------

@pytest.mark.parametrize("equation, shapes", [
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("bii,bij->bj", [(2, 4, 4), (2, 4, 5)]),  # a diagonal taken first, then a batched product
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)]),  # three operands: two matmuls
    ("bhqd,bhkd->bhqk", [(2, 3, 5, 8), (2, 3, 7, 8)]),
    ("i,j->ij", [(4,), (5,)]),  # an outer product: a broadcast multiply, elementwise (0 by convention, torch's too)
    ("ii->", [(4, 4)]),  # a trace: diagonal and sum
])
def test_einsum_counts_what_torch_counts_and_is_never_partial(equation, shapes):
    operands = [torch.randn(shape) for shape in shapes]
    model = _Fn(lambda *xs: torch.einsum(equation, *xs))
    with FlopCounterMode(display=False) as flops:
        model(*operands)
    assert _macs(model, *operands).totals.total_macs == flops.get_total_flops() // 2


def test_bmm_under_cpu_autocast_counts_the_bf16_product():
    class Autocast(nn.Module):
        def forward(self, a, b):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return torch.bmm(a, b)

    a, b = torch.randn(2, 3, 4), torch.randn(2, 4, 5)
    assert Autocast()(a, b).dtype == torch.bfloat16  # autocast did apply
    assert _macs(Autocast(), a, b).totals.total_macs == 2 * 3 * 4 * 5


@pytest.mark.parametrize("fn", [nn.functional.pairwise_distance, nn.functional.cosine_similarity])
def test_row_distances_are_elementwise_math_and_reductions_zero_and_not_partial(fn):
    assert _macs(_Fn(fn), torch.randn(9, 4), torch.randn(9, 4)).totals.total_macs == 0


def test_complex_convolution_counts_the_three_real_convolutions_torch_runs():
    """torch computes a complex convolution as three real ones (Gauss's trick); those are real multiply-adds."""
    conv = nn.Conv2d(3, 4, 3, dtype=torch.complex64)
    x = torch.randn(1, 3, 8, 8, dtype=torch.complex64)
    with FlopCounterMode(display=False) as flops:
        conv(x)
    assert _macs(conv, x).totals.total_macs == flops.get_total_flops() // 2 == 3 * (4 * 6 * 6) * (3 * 3 * 3)


# ---- outer product and dense solvers: the textbook counts, against brute-force elimination ----------
# Each brute-force routine below is the plain algorithm in Python floats, counting one multiply-add per update
# x -= l·u it makes (divisions, reciprocals and square roots are not multiply-adds); its result is checked
# against torch's, so the count is the count of a real solver of that operator.

def _lu_solve_counted(a, columns):
    """Gaussian elimination without pivoting (the matrices below are diagonally dominant), then forward and back
    substitution for each right-hand side column: (solution columns, multiply-adds)."""
    n = len(a)
    lu = [row[:] for row in a]
    count = 0
    for k in range(n):
        for i in range(k + 1, n):
            lu[i][k] /= lu[k][k]
            for j in range(k + 1, n):
                lu[i][j] -= lu[i][k] * lu[k][j]
                count += 1
    solutions = []
    for b in columns:
        y = list(b)
        for i in range(n):
            for j in range(i):
                y[i] -= lu[i][j] * y[j]
                count += 1
        x = y[:]
        for i in reversed(range(n)):
            for j in range(i + 1, n):
                x[i] -= lu[i][j] * x[j]
                count += 1
            x[i] /= lu[i][i]
        solutions.append(x)
    return solutions, count


def _gauss_jordan_inverse_counted(a):
    """In-place Gauss-Jordan inversion: (inverse, multiply-adds). Step k scales the pivot row by 1/pivot and turns
    column k into the multipliers -f/pivot (products by a reciprocal, the divisions of elimination), then updates
    every other element of the other rows."""
    n = len(a)
    m = [row[:] for row in a]
    count = 0
    for k in range(n):
        reciprocal = 1.0 / m[k][k]
        m[k][k] = 1.0
        m[k] = [value * reciprocal for value in m[k]]
        for i in range(n):
            if i == k:
                continue
            factor = m[i][k]
            m[i][k] = -factor * reciprocal
            for j in range(n):
                if j != k:
                    m[i][j] -= factor * m[k][j]
                    count += 1
    return m, count


def _cholesky_counted(a):
    """Right-looking Cholesky on the lower triangle: (L, multiply-adds)."""
    n = len(a)
    l = [row[:] for row in a]
    count = 0
    for k in range(n):
        l[k][k] = math.sqrt(l[k][k])
        for i in range(k + 1, n):
            l[i][k] /= l[k][k]
        for j in range(k + 1, n):
            for i in range(j, n):
                l[i][j] -= l[i][k] * l[j][k]
                count += 1
    return [[l[i][j] if j <= i else 0.0 for j in range(n)] for i in range(n)], count


class _Solvers(nn.Module):
    """One call each of inverse, Cholesky and solve (k right-hand sides; a vector; from the right; and with ``a``
    broadcast over ``b``'s batch, where torch factors each matrix of ``a`` once)."""

    def __init__(self, which):
        super().__init__()
        self.which = which

    def forward(self, a, b):
        if self.which == "inv":
            return torch.linalg.inv(a)
        if self.which == "cholesky":
            return torch.linalg.cholesky(a)
        if self.which == "cholesky-upper":
            return torch.linalg.cholesky(a, upper=True)
        if self.which == "solve-vector":
            return torch.linalg.solve(a, b[..., 0])
        if self.which == "solve-left-false":
            return torch.linalg.solve(a, b.mT, left=False)
        return torch.linalg.solve(a, b)


def _spd(batch, n, dtype=torch.float64):
    """Symmetric (Hermitian) positive definite, diagonally dominant: elimination needs no pivoting."""
    g = torch.randn(*batch, n, n, dtype=dtype)
    return g @ g.mH + n * torch.eye(n, dtype=dtype)


@pytest.mark.parametrize("n", [1, 2, 3, 5])
@pytest.mark.parametrize("which,batch_a,batch_b", [
    ("inv", (2,), (2,)), ("cholesky", (3,), (3,)), ("cholesky-upper", (), ()), ("solve", (2,), (2,)),
    ("solve-vector", (2,), (2,)), ("solve-left-false", (), ()), ("solve", (), (4,)), ("solve", (3, 1), (2,))])
@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_dense_solvers_count_the_textbook_elimination_updates(n, which, batch_a, batch_b, device):
    """The formula written out (LU Σ m² = (n-1)n(2n-1)/6, n(n-1) per right-hand side, Gauss-Jordan n(n-1)²,
    Cholesky (n-1)n(n+1)/6) equals a brute-force solver's count of its updates, and netscope's, per matrix
    factored and per right-hand side the result holds, on CPU and on the meta device."""
    torch.manual_seed(n)
    rhs = 3
    a, b = _spd(batch_a, n), torch.randn(*batch_b, n, rhs, dtype=torch.float64)
    rows = a.reshape(-1, n, n)
    if which == "inv":
        inverse, per_matrix = _gauss_jordan_inverse_counted(rows[0].tolist())
        assert torch.allclose(torch.tensor(inverse, dtype=torch.float64), torch.linalg.inv(rows[0]))
        assert per_matrix == n * (n - 1) ** 2
        expected = rows.shape[0] * per_matrix
    elif which.startswith("cholesky"):
        factor, per_matrix = _cholesky_counted(rows[0].tolist())
        assert torch.allclose(torch.tensor(factor, dtype=torch.float64), torch.linalg.cholesky(rows[0]))
        assert per_matrix == sum(m * (m + 1) // 2 for m in range(n)) == (n - 1) * n * (n + 1) // 6
        expected = rows.shape[0] * per_matrix
    else:
        out = _Solvers(which)(a, b)
        columns = out.numel() // n  # right-hand sides the result holds (broadcast batches included)
        solutions, one_lu_one_rhs = _lu_solve_counted(rows[0].tolist(), [[1.0] * n])
        assert torch.allclose(torch.tensor(solutions[0], dtype=torch.float64),
                              torch.linalg.solve(rows[0], torch.ones(n, dtype=torch.float64)))
        _, one_lu_two_rhs = _lu_solve_counted(rows[0].tolist(), [[1.0] * n, [2.0] * n])
        per_rhs = one_lu_two_rhs - one_lu_one_rhs
        assert per_rhs == n * (n - 1) and one_lu_one_rhs - per_rhs == sum(m * m for m in range(n))
        expected = rows.shape[0] * (one_lu_one_rhs - per_rhs) + columns * per_rhs
    report = _macs(_Solvers(which), a.to(device), b.to(device), device=device)
    assert report.totals.total_macs == expected


def _lu_counted(a):
    """Gaussian elimination of an m×n matrix without pivoting (diagonally dominant): (packed L\\U, updates)."""
    m, n = len(a), len(a[0])
    lu = [row[:] for row in a]
    count = 0
    for k in range(min(m, n)):
        for i in range(k + 1, m):
            lu[i][k] /= lu[k][k]
            for j in range(k + 1, n):
                lu[i][j] -= lu[i][k] * lu[k][j]
                count += 1
    return lu, count


def _lu_product(packed):
    """L @ U of a packed m×n elimination (L unit lower m×r, U upper r×n, r = min(m, n)): the matrix factored."""
    lu = torch.tensor(packed, dtype=torch.float64)
    r = min(lu.shape)
    lower = torch.tril(lu[:, :r], -1) + torch.eye(lu.shape[0], r, dtype=torch.float64)
    return lower @ torch.triu(lu[:r, :])


def _substitution_counted(t, b, lower, unit=False):
    """Solve the triangular t·x = b (one right-hand side): (x, updates)."""
    n = len(t)
    x = list(b)
    count = 0
    for i in (range(n) if lower else reversed(range(n))):
        for j in (range(i) if lower else range(i + 1, n)):
            x[i] -= t[i][j] * x[j]
            count += 1
        if not unit:
            x[i] /= t[i][i]
    return x, count


class _Factored(nn.Module):
    def __init__(self, which):
        super().__init__()
        self.which = which

    def forward(self, a, b):
        if self.which == "lu_factor":
            return torch.linalg.lu_factor(a)[0]
        if self.which == "lu":
            return torch.linalg.lu(a)[2]
        if self.which == "det":
            return torch.linalg.det(a)
        if self.which == "slogdet":
            return torch.linalg.slogdet(a)[1]
        if self.which == "lu_solve":
            return torch.linalg.lu_solve(*torch.linalg.lu_factor(a), b)
        if self.which == "cholesky_solve":
            return torch.cholesky_solve(b, torch.linalg.cholesky(a))
        return torch.linalg.solve_triangular(torch.linalg.cholesky(a), b, upper=False)


@pytest.mark.parametrize("n", [1, 3, 4])
@pytest.mark.parametrize("which", ["lu_factor", "lu", "det", "slogdet", "lu_solve", "cholesky_solve",
                                   "solve_triangular"])
@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_factorizations_determinants_and_solves_with_factors_count_their_updates(n, which, device):
    """LU (Σ (m-k-1)(n-k-1)), det/slogdet (an LU; the diagonal's product or log-sum is a reduction, 0), and solves
    with given factors (n(n-1) per right-hand side for two substitutions, n(n-1)/2 for one): each the formula
    written out = a brute-force count (its result checked against torch's) = netscope's, per matrix."""
    torch.manual_seed(n)
    batch, rhs = 2, 3
    a, b = _spd((batch,), n), torch.randn(batch, n, rhs, dtype=torch.float64)
    rows = a[0].tolist()
    lu, lu_count = _lu_counted(rows)
    assert lu_count == sum((n - k - 1) ** 2 for k in range(n))
    lower = torch.linalg.cholesky(a[0]).tolist()
    column = b[0, :, 0].tolist()
    _, cholesky_count = _cholesky_counted(a[0].tolist())
    assert _lu_product(lu) is not None and torch.allclose(_lu_product(lu), a[0])
    if which in ("lu_factor", "lu", "det", "slogdet"):
        expected = batch * lu_count
    elif which == "solve_triangular":  # of the factor linalg.cholesky makes (counted too)
        x, per_rhs = _substitution_counted(lower, column, lower=True)
        assert torch.allclose(torch.tensor(x, dtype=torch.float64),
                              torch.linalg.solve_triangular(a.new_tensor(lower), b[0, :, :1], upper=False)[:, 0])
        assert per_rhs == n * (n - 1) // 2
        expected = batch * cholesky_count + batch * rhs * per_rhs
    else:  # lu_solve after lu_factor, cholesky_solve after linalg.cholesky: the factorization counted too
        factor = lower if which == "cholesky_solve" else lu
        y, forward = _substitution_counted(factor, column, lower=True, unit=which == "lu_solve")
        upper = [list(r) for r in zip(*lower)] if which == "cholesky_solve" else factor
        x, backward = _substitution_counted(upper, y, lower=False)
        assert torch.allclose(torch.tensor(x, dtype=torch.float64), torch.linalg.solve(a[0], b[0, :, 0]))
        per_rhs = forward + backward
        assert per_rhs == n * (n - 1)
        expected = batch * (lu_count if which == "lu_solve" else cholesky_count) + batch * rhs * per_rhs
    assert _macs(_Factored(which), a.to(device), b.to(device), device=device).totals.total_macs == expected


@pytest.mark.parametrize("m,n", [(5, 3), (3, 5), (1, 4)])
def test_lu_of_a_rectangular_matrix_counts_the_updates_of_min_m_n_steps(m, n):
    torch.manual_seed(0)
    a = torch.randn(m, n, dtype=torch.float64)
    a[range(min(m, n)), range(min(m, n))] += 2 * max(m, n)  # diagonally dominant: no pivoting needed
    lu, count = _lu_counted(a.tolist())
    assert torch.allclose(_lu_product(lu), a)
    assert count == sum((m - k - 1) * (n - k - 1) for k in range(min(m, n)))
    assert _macs(_Factored("lu_factor"), a, a).totals.total_macs == count


def test_complex_solvers_count_four_real_multiply_adds_per_complex_update():
    torch.manual_seed(0)
    a = _spd((2,), 4, torch.complex128)
    b = torch.randn(2, 4, 3, dtype=torch.complex128)
    for which, per_matrix in (("inv", 4 * 3 ** 2), ("cholesky", 3 * 4 * 5 // 6),
                              ("solve", 3 * 4 * 7 // 6 + 3 * 4 * 3)):
        assert _macs(_Solvers(which), a, b).totals.total_macs == 4 * 2 * per_matrix


@pytest.mark.parametrize("m,n", [(1, 1), (4, 3), (7, 1)])
def test_addr_counts_the_outer_product_as_addmm_with_k_1(m, n):
    """torch's own formula for the (m, 1) @ (1, n) matmul the outer product equals, and a count of the products
    written out, element by element."""
    class Outer(nn.Module):
        def forward(self, c, v1, v2):
            return torch.addr(c, v1, v2, beta=0.5, alpha=2.0)

    c, v1, v2 = torch.randn(m, n), torch.randn(m), torch.randn(n)
    with FlopCounterMode(display=False) as flops:
        torch.mm(v1[:, None], v2[None, :])
    products = sum(1 for i in range(m) for j in range(n))  # out[i][j] = beta·c[i][j] + alpha·v1[i]·v2[j]
    assert _macs(Outer(), c, v1, v2).totals.total_macs == flops.get_total_flops() // 2 == products == m * n


def test_ctc_loss_is_left_uncounted_and_named():
    """No multiply-add convention is defensible for CTC (see NO_CONVENTION): the report is partial and names it."""
    from netscope.operators.formulas import NO_CONVENTION

    class Ctc(nn.Module):
        def forward(self, x):
            return nn.functional.ctc_loss(x.log_softmax(-1), torch.tensor([[1, 2]]), torch.tensor([x.shape[0]]),
                                          torch.tensor([2]))

    report = netscope.summary(Ctc(), input_size=(5, 1, 4), device="cpu")
    assert report.partial and [u.op for u in report.uncounted_ops()] == ["aten::_ctc_loss"]
    assert set(NO_CONVENTION) == {"aten::_ctc_loss", "aten::linalg_eig", "aten::_linalg_svd"}
    why = "uncounted on purpose: " + NO_CONVENTION["aten::_ctc_loss"]
    assert why in " ".join(str(report).split())  # the totals line says why, beside the operator
    assert json.loads(report.to_json())["operators"]["uncounted"][0]["reason"] == NO_CONVENTION["aten::_ctc_loss"]


def _cholesky_inverse_counted(lower):
    """A⁻¹ from A's Cholesky factor, as LAPACK's potri goes: X = L⁻¹ column by column (substitution against e_j),
    then the lower triangle of XᵀX, mirrored: (A⁻¹, multiply-adds)."""
    n = len(lower)
    x = [[0.0] * n for _ in range(n)]
    count = 0
    for j in range(n):
        x[j][j] = 1.0 / lower[j][j]
        for i in range(j + 1, n):
            total = 0.0
            for k in range(j, i):
                total -= lower[i][k] * x[k][j]
                count += 1
            x[i][j] = total / lower[i][i]
    inverse = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1):
            for k in range(i, n):
                inverse[i][j] += x[k][i] * x[k][j]
                count += 1
            inverse[j][i] = inverse[i][j]
    return inverse, count


class _CholeskyInverse(nn.Module):
    def __init__(self, upper):
        super().__init__()
        self.upper = upper

    def forward(self, factor):
        return torch.cholesky_inverse(factor, upper=self.upper)


@pytest.mark.parametrize("n", [1, 2, 3, 5])
@pytest.mark.parametrize("upper", [False, True])
@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_cholesky_inverse_counts_the_triangular_inverse_and_its_gram_product(n, upper, device):
    """The brute-force count of potri's two steps (its result checked against torch's) = Σ m² for m <= n =
    n(n+1)(2n+1)/6 per matrix (leading n³/3, trtri + lauum) = netscope's, for a batch of 2."""
    torch.manual_seed(n)
    a = _spd((2,), n)
    lower = torch.linalg.cholesky(a)
    inverse, count = _cholesky_inverse_counted(lower[0].tolist())
    assert torch.allclose(torch.tensor(inverse, dtype=torch.float64), torch.cholesky_inverse(lower[0]))
    assert count == sum(m * m for m in range(1, n + 1))
    factor = lower.mH if upper else lower
    assert _macs(_CholeskyInverse(upper), factor.to(device), device=device).totals.total_macs == 2 * count


@pytest.mark.parametrize("op, call", [("aten::linalg_eig", lambda x: torch.linalg.eigvals(x).real),
                                      ("aten::_linalg_svd", lambda x: torch.linalg.svdvals(x))])
def test_eigen_and_singular_value_decompositions_stay_uncounted_with_the_reason(op, call):
    """No exact count exists (an iterative phase whose length depends on convergence): partial, with the reason."""
    from netscope.operators.formulas import NO_CONVENTION

    class Decomposes(nn.Module):
        def forward(self, x):
            return call(x)

    report = netscope.summary(Decomposes(), input_size=(4, 4), device="cpu")
    assert report.partial and [u.op for u in report.uncounted_ops()] == [op]
    assert "uncounted on purpose: " + NO_CONVENTION[op] in " ".join(str(report).split())
