"""The numbers at inputs the default checks do not use: batches of 2, 3 and 8, non-square and odd sizes, train
mode (BatchNorm statistics, dropout, stochastic depth), bfloat16, channels_last, token ids of other lengths.

Oracles, none of them netscope's: torch's ``FlopCounterMode`` per operator (2 FLOPs per multiply-add; it has no
formula for the CPU flash-attention kernel, whose count is written here as a formula instead), the unique
parameters' ``numel``, the output shapes of a real forward recorded with forward hooks, bytes as elements x
element size, and the model's state before and after.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

import netscope
from test_model_corpus import timm_model, tv

SDPA_CPU = "aten::_scaled_dot_product_flash_attention_for_cpu"  # FlopCounterMode has no entry for it


def _shapes(value):
    """A real output as netscope's shape trees write it (README: a tensor is its shape, containers nest)."""
    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    if isinstance(value, dict):  # transformers' ModelOutput is an OrderedDict
        return {str(k): _shapes(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_shapes(v) for v in value]
    return "None" if value is None else type(value).__name__


def _real_pass(model, args, kwargs, train: bool):
    """(call order: (qualified name, output shapes, output bytes of a call inside which no module call ran, else
    None), {op: multiply-adds}) of one real
    forward with no grad, in the mode asked for; the model's flags and the RNG are put back afterwards."""
    names = {}
    for name, module in model.named_modules():
        names.setdefault(id(module), name)
    calls, open_calls, handles = [], {}, []

    running, nested = [], set()  # the calls open now; those inside which another module call ran

    def before(module, _):
        if running:
            nested.add(running[-1])
        open_calls.setdefault(id(module), []).append(len(calls))
        running.append(len(calls))
        calls.append(None)

    def after(module, _, out):
        index = open_calls[id(module)].pop()
        running.pop()
        innermost = index not in nested  # no module call ran inside it
        held = sum(t.numel() * t.element_size() for t in torch.utils._pytree.tree_leaves(out)
                   if isinstance(t, torch.Tensor)) if innermost else None
        calls[index] = (names[id(module)], _shapes(out), held)

    for module in model.modules():
        handles += [module.register_forward_pre_hook(before), module.register_forward_hook(after)]
    flags = [m.training for m in model.modules()]
    rng = torch.get_rng_state()
    model.train(train)
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(*args, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
        for module, flag in zip(model.modules(), flags):
            module.training = flag
        torch.set_rng_state(rng)
    ops = {str(op).replace("aten.", "aten::"): flops // 2 for op, flops in counter.get_flop_counts()["Global"].items()}
    return calls, ops


def _state(model):
    return ([(k, v.clone()) for k, v in model.state_dict().items()], [m.training for m in model.modules()],
            torch.get_rng_state())


def _assert_true_to_the_real_pass(model, args=(), kwargs=None, *, mode="eval", dtype=None):
    """The report's shapes, per-operator multiply-adds, parameters and bytes against a real pass; the model as it was.
    Returns the report and the CPU flash-attention multiply-adds, which the caller checks by formula."""
    kwargs = kwargs or {}
    before = _state(model)
    report = netscope.summary(model, input_data=(tuple(args), kwargs), mode=mode, dtype=dtype)
    after = _state(model)
    assert [k for k, _ in before[0]] == [k for k, _ in after[0]] and before[1] == after[1]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(before[0], after[0])) and torch.equal(before[2], after[2])
    real = model
    if dtype is not None:  # the pass runs on a converted copy, float inputs converted: the oracle does the same
        real = copy.deepcopy(model).to(getattr(torch, dtype))
        cast = lambda t: t.to(getattr(torch, dtype)) if isinstance(t, torch.Tensor) and t.is_floating_point() else t
        args, kwargs = tuple(map(cast, args)), {k: cast(v) for k, v in kwargs.items()}
    calls, ops = _real_pass(real, args, kwargs, mode == "train")
    assert [(c.name, c.output_shapes) for c in report.layers] == [(name, shapes) for name, shapes, _ in calls]
    ours = {row.op: int(row.macs) for row in report.by_operator().itertuples() if row.macs}
    assert {op: ours.get(op, 0) for op in ops} == ops
    assert set(ours) - set(ops) <= {SDPA_CPU} and not report.partial
    unique = {id(p): p for p in real.parameters()}.values()
    assert report.totals.total_params == sum(p.numel() for p in unique)
    assert report.totals.param_bytes == sum(p.numel() * p.element_size() for p in unique)
    given = {id(t): t for t in (*args, *kwargs.values()) if isinstance(t, torch.Tensor)}.values()  # each once
    assert report.totals.input_bytes == sum(t.numel() * t.element_size() for t in given)
    assert report.totals.activation_bytes == sum(held for _, _, held in calls if held is not None)
    return report, ours.get(SDPA_CPU, 0)


VISION = {  # name: (builder, input shape, mode, dtype, channels_last)
    "resnet18 b3 97x131": (tv("resnet18"), (3, 3, 97, 131), "eval", None, False),
    "resnet18 b2 odd train channels_last": (tv("resnet18"), (2, 3, 65, 47), "train", None, True),
    "mobilenet_v3_small b8 32x32 train": (tv("mobilenet_v3_small"), (8, 3, 32, 32), "train", None, False),
    "squeezenet1_1 b2 225x225 bfloat16": (tv("squeezenet1_1"), (2, 3, 225, 225), "eval", "bfloat16", False),
    "efficientnet_b0 b3 97x131 train (stochastic depth)": (tv("efficientnet_b0"), (3, 3, 97, 131), "train", None,
                                                            False),
    "swin_t b2 97x131": (tv("swin_t"), (2, 3, 97, 131), "eval", None, False),
    "timm convnext_atto b2 97x131 train drop_path": (timm_model("convnext_atto", drop_path_rate=0.3),
                                                      (2, 3, 97, 131), "train", None, False),
    "timm vit_tiny dynamic 96x160 b2 train drop_path float16": (
        timm_model("vit_tiny_patch16_224", dynamic_img_size=True, drop_path_rate=0.2), (2, 3, 96, 160), "train",
        "float16", False),
}


@pytest.mark.parametrize("case", sorted(VISION))
def test_vision_models_off_their_default_input(case):
    build, shape, mode, dtype, channels_last = VISION[case]
    torch.manual_seed(0)
    model = build()
    x = torch.randn(shape)
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    report, attention = _assert_true_to_the_real_pass(model, (x,), mode=mode, dtype=dtype)
    if case.startswith("timm vit_tiny"):  # 6 x 10 patches + the class token; 3 heads x 64, 12 blocks
        tokens = (96 // 16) * (160 // 16) + 1
        assert attention == 12 * 2 * shape[0] * 3 * tokens * tokens * 64


def test_multiply_adds_of_a_conv_net_are_linear_in_the_batch():
    model = torchvision.models.resnet18(weights=None)
    one, three = (netscope.summary(model, input_size=(b, 3, 97, 131)) for b in (1, 3))
    assert three.totals.total_macs == 3 * one.totals.total_macs
    assert [c.macs for c in three.layers] == [3 * c.macs for c in one.layers]


def _hf(config_class, model_class, **fields):
    transformers = pytest.importorskip("transformers")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(transformers, model_class)(getattr(transformers, config_class)(**fields)).eval()


VOCAB = 1000
HEADS, HEAD_DIM, LAYERS = 4, 16, 2  # every text model below: hidden 64 = 4 heads x 16, 2 layers


def _ids(batch, length, seed=0):
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("length", [1, 7, 129])
def test_decoder_attention_is_quadratic_in_the_sequence_length(length):
    """Llama with grouped-query attention (2 key/value heads for 4 query heads) at batch 3: every query attends
    over every key position, 2·L²·head_dim per head and sequence (scores, then the weighted sum)."""
    model = _hf("LlamaConfig", "LlamaForCausalLM", vocab_size=VOCAB, hidden_size=64, intermediate_size=128,
                num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=2)
    _, attention = _assert_true_to_the_real_pass(model, kwargs={"input_ids": _ids(3, length)})
    assert attention == LAYERS * 3 * HEADS * 2 * length * length * HEAD_DIM


def test_encoder_decoder_cross_attention_is_source_times_target():
    model = _hf("T5Config", "T5Model", vocab_size=VOCAB, d_model=64, d_kv=HEAD_DIM, num_heads=HEADS, d_ff=128,
                num_layers=LAYERS, num_decoder_layers=LAYERS)
    source, target = 7, 13
    _, attention = _assert_true_to_the_real_pass(model, kwargs={"input_ids": _ids(3, source),
                                                                "decoder_input_ids": _ids(3, target, seed=1)})
    per_pair = 3 * HEADS * 2 * HEAD_DIM  # batch x heads x (q·k and weights·v) x head_dim
    assert attention == LAYERS * per_pair * (source * source + target * target + target * source)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_an_encoder_with_a_padding_mask_and_labels_at_batch_3(mode):
    """BERT with padded sequences and masked-LM labels: the loss (cross entropy) counts as its elementwise math
    does, the report is not partial, and dropout in train mode changes nothing counted."""
    model = _hf("BertConfig", "BertForMaskedLM", vocab_size=VOCAB, hidden_size=64, num_hidden_layers=LAYERS,
                num_attention_heads=HEADS, intermediate_size=128)
    ids, mask = _ids(3, 33), torch.ones(3, 33, dtype=torch.long)
    mask[1, 20:], mask[2, 5:] = 0, 0
    report, _ = _assert_true_to_the_real_pass(model, kwargs={"input_ids": ids, "attention_mask": mask,
                                                             "labels": ids}, mode=mode)
    assert report.layers[0].output_shapes["loss"] == ()
