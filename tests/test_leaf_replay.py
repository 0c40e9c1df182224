"""Replayed stock leaves record exactly what observing every operator records.

Oracle: the same pass with replay turned off (every operator seen by the dispatch mode), compared field by
field: every call record, the per-call operator counts and multiply-adds, the convolution/pool windows and
the formula checks; and torch's own FlopCounterMode for the totals.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torchvision
from torch.utils.flop_counter import FlopCounterMode

import netscope
from netscope.analyses.checks import check_trace
from netscope.run import leaf_replay
from netscope.run.module_tree import module_tree
from netscope.records import FAILED
from netscope.run.trace import trace


def _pass(model, args, monkeypatch, replay: bool):
    with monkeypatch.context() as patch:
        if not replay:
            patch.setattr("netscope.run.trace.replay_possible", lambda: False)
        return trace(model, (args, {}), tree=module_tree(model))


def _same(a, b):
    assert [c.__dict__ for c in a.calls] == [c.__dict__ for c in b.calls]
    assert a.operators.counts == b.operators.counts
    assert a.operators.macs == b.operators.macs
    assert a.window_ops == b.window_ops
    assert [c.__dict__ for c in check_trace(a)] == [c.__dict__ for c in check_trace(b)]


class Tower(nn.Module):
    """Repeated stock leaves of many kinds, some called twice, with keyword-capable and kwargs-only ones."""

    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(8, 8, 3, padding=1, bias=i % 2 == 0) for i in range(4))
        self.norms = nn.ModuleList(nn.BatchNorm2d(8) for _ in range(4))
        self.pool = nn.MaxPool2d(2, ceil_mode=True)
        self.act = nn.ReLU()
        self.fcs = nn.Sequential(*[nn.Linear(8, 8) for _ in range(3)], nn.GELU(), nn.Dropout(0.1))
        self.lstm = nn.LSTM(8, 8, batch_first=True)
        self.ln = nn.LayerNorm(8)

    def forward(self, x):
        for conv, norm in zip(self.convs, self.norms):
            x = self.act(norm(conv(x)))  # act called four times
        x = self.pool(x)
        x = self.pool(x)  # same module, different input signature
        v = x.mean((2, 3))
        v = self.fcs(v)
        seq, _ = self.lstm(v.unsqueeze(1).repeat(1, 3, 1))
        seq, _ = self.lstm(seq, None)  # the optional argument given: a different signature
        return self.ln(seq)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_replay_records_what_observing_every_operator_records(monkeypatch, mode):
    torch.manual_seed(0)
    model = Tower().train(mode == "train")
    x = torch.randn(2, 8, 9, 9)
    fast, slow = _pass(model, (x,), monkeypatch, True), _pass(model, (x,), monkeypatch, False)
    assert fast.replayed > 0 and slow.replayed == 0
    _same(fast, slow)


def test_replay_on_a_torchvision_model_matches_the_full_pass_and_torchs_flop_counter(monkeypatch):
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(1, 3, 64, 64)
    fast, slow = _pass(model, (x,), monkeypatch, True), _pass(model, (x,), monkeypatch, False)
    assert fast.replayed > 10
    _same(fast, slow)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    assert fast.calls[0].macs == counter.get_total_flops() // 2


def test_hooked_custom_and_subclass_leaves_are_never_replayed(monkeypatch):
    class MyLinear(nn.Linear):  # a user subclass: its forward may do anything
        def forward(self, x):
            return super().forward(x) * 2

    seen = []
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4), MyLinear(4, 4), MyLinear(4, 4), nn.Linear(4, 4))
    model[1].register_forward_hook(lambda m, a, out: seen.append(out.sum()))  # the hook's ops count too
    fast, slow = _pass(model, (torch.randn(2, 4),), monkeypatch, True), _pass(model, (torch.randn(2, 4),),
                                                                           monkeypatch, False)
    assert fast.replayed == 1  # only model[4], identical to model[0]
    _same(fast, slow)
    key = leaf_replay.LeafReplay(None, None).key
    assert key(model[2], (torch.randn(2, 4),)) is None and key(model[1], (torch.randn(2, 4),)) is None


def test_another_global_hook_or_dispatch_mode_turns_replay_off():
    from torch.utils._python_dispatch import TorchDispatchMode

    model = nn.Sequential(*[nn.Linear(4, 4) for _ in range(4)])
    x = torch.randn(1, 4)
    handle = torch.nn.modules.module.register_module_forward_hook(lambda m, a, out: None)
    try:
        assert trace(model, ((x,), {})).replayed == 0
    finally:
        handle.remove()

    class Noop(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            return func(*args, **(kwargs or {}))

    with Noop():
        assert trace(model, ((x,), {})).replayed == 0
    assert trace(model, ((x,), {})).replayed == 3


def test_the_python_dispatch_key_is_restored_when_the_forward_raises():
    class Boom(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.Sequential(*[nn.Linear(4, 4) for _ in range(3)])

        def forward(self, x):
            y = self.layers(x)
            raise ValueError("after the replayed leaves")

    with pytest.raises(netscope.errors.ForwardError):
        netscope.summary(Boom(), input_size=(1, 4))
    assert not torch._C._dispatch_tls_is_dispatch_key_excluded(torch._C.DispatchKey.Python)
    assert not torch._C._dispatch_tls_is_dispatch_key_excluded(torch._C.DispatchKey.PythonTLSSnapshot)
    with FlopCounterMode(display=False) as counter:  # torch's own Python-key mode still sees operators
        nn.Linear(4, 4)(torch.randn(1, 4))
    assert counter.get_total_flops() == 2 * 4 * 4


from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

_LAYERS = {
    "conv": lambda c, draw: nn.Conv1d(c, c, draw(st.integers(1, 3)), stride=draw(st.integers(1, 2)),
                                      padding=draw(st.integers(0, 1)), dilation=draw(st.integers(1, 2)),
                                      bias=draw(st.booleans()), padding_mode=draw(st.sampled_from(["zeros", "reflect"]))),
    "pool": lambda c, draw: nn.MaxPool1d(draw(st.integers(1, 2)), ceil_mode=draw(st.booleans())),
    "avg": lambda c, draw: nn.AvgPool1d(draw(st.integers(1, 2)), padding=0, count_include_pad=draw(st.booleans())),
    "bn": lambda c, draw: nn.BatchNorm1d(c, affine=draw(st.booleans()), track_running_stats=draw(st.booleans())),
    "act": lambda c, draw: draw(st.sampled_from([nn.ReLU(), nn.GELU(), nn.SiLU(), nn.LeakyReLU(0.2), nn.Identity()])),
    "drop": lambda c, draw: nn.Dropout(draw(st.sampled_from([0.0, 0.5]))),
}


@st.composite
def _stacks(draw):
    channels = draw(st.integers(1, 3))
    pool = [_LAYERS[kind](channels, draw) for kind in draw(st.lists(st.sampled_from(sorted(_LAYERS)), min_size=1,
                                                                        max_size=4))]
    picks = draw(st.lists(st.integers(0, len(pool) - 1), min_size=2, max_size=10))
    # the same modules reused and fresh copies of the same configuration: both replay
    layers = [pool[i] if draw(st.booleans()) else __import__("copy").deepcopy(pool[i]) for i in picks]
    return nn.Sequential(*layers), channels, draw(st.sampled_from(["eval", "train"]))


def _drawn_stack_matches_the_observed_pass(monkeypatch, drawn) -> None:
    """A drawn (model, channels, mode) records with replay what the observed pass records (when it runs at all)."""
    model, channels, mode = drawn
    model.train(mode == "train")
    x = torch.randn(2, channels, 40)
    try:
        slow = _pass(model, (x,), monkeypatch, False)
    except netscope.errors.ForwardError:  # the stack shrank the input too far: nothing to compare
        return
    _same(_pass(model, (x,), monkeypatch, True), slow)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_stacks())
def test_replay_equals_the_observed_pass_on_generated_stacks_of_stock_layers(monkeypatch, drawn):
    _drawn_stack_matches_the_observed_pass(monkeypatch, drawn)


def test_leaves_run_under_autocast_or_grad_inside_the_forward_are_observed_not_replayed(monkeypatch):
    class Mixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8)

        def forward(self, x):
            x = self.a(x)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                x = self.b(x)  # the same signature as self.a, but autocast adds casts
            with torch.enable_grad():
                return self.c(x.float())

    model = Mixed()
    fast, slow = _pass(model, (torch.randn(2, 8),), monkeypatch, True), _pass(model, (torch.randn(2, 8),),
                                                                            monkeypatch, False)
    assert fast.replayed == 0
    _same(fast, slow)
    assert any("_to_copy" in str(p) for p in fast.operators.counts[2])  # autocast's casts, seen in self.b


def test_without_the_private_torch_parts_replay_is_off_and_counts_stay_exact(monkeypatch):
    model = nn.Sequential(*[nn.Linear(4, 4) for _ in range(4)])
    x = torch.randn(1, 4)
    monkeypatch.setattr(leaf_replay, "_AVAILABLE", False)
    off = trace(model, ((x,), {}))
    monkeypatch.undo()
    on = trace(model, ((x,), {}))
    assert off.replayed == 0 and on.replayed == 3
    assert [c.macs for c in off.calls] == [c.macs for c in on.calls] == [4 * 16] + [16] * 4


def test_calls_are_recorded_where_module_call_is_call_impl_itself_as_before_torch_2_1(monkeypatch):
    monkeypatch.setattr(nn.Module, "__call__", nn.Module._call_impl)  # what torch 2.0's Module looked like
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    result = trace(model, ((torch.randn(1, 4),), {}))
    assert [c.name for c in result.calls] == ["", "0", "1"]
    assert nn.Module.__call__ is nn.Module._call_impl  # both put back


def test_recurrent_layers_and_losses_are_always_observed():
    key = leaf_replay.LeafReplay(None, None).key
    with torch.no_grad():
        assert key(nn.LSTM(4, 4), (torch.randn(2, 3, 4),)) is None
        assert key(nn.CTCLoss(), (torch.randn(5, 2, 4),)) is None
        assert key(nn.Linear(4, 4), (torch.randn(2, 4),)) is not None


class TwoCalls(nn.Module):
    """One stock leaf called twice with inputs of one signature (shape, strides, dtype) whose values differ."""

    def __init__(self, leaf: nn.Module):
        super().__init__()
        self.leaf = leaf

    def forward(self, first, second, *rest):
        return self.leaf(first, *rest), self.leaf(second, *rest)


def test_a_leaf_whose_count_reads_index_values_is_counted_per_call_not_replayed(monkeypatch):
    # an EmbeddingBag with per_sample_weights: one multiply-add per element of each row entering a bag, padding
    # rows skipped: the second call's four padding rows make its count 2 x 8, the first's 6 x 8
    bag = nn.EmbeddingBag(50, 8, mode="sum", padding_idx=0)
    first, second = torch.tensor([1, 2, 3, 4, 5, 6]), torch.tensor([0, 0, 0, 0, 5, 6])
    args = (first, second, torch.tensor([0, 3]), torch.ones(6))
    model = TwoCalls(bag)
    fast, slow = _pass(model, args, monkeypatch, True), _pass(model, args, monkeypatch, False)
    assert [c.own_macs for c in fast.calls[1:]] == [6 * 8, 2 * 8]
    _same(fast, slow)


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
@pytest.mark.parametrize("layout", ["coo", "csr"])
def test_a_leaf_fed_a_sparse_tensor_is_observed_per_call(monkeypatch, layout):
    # nn.Linear on a sparse input: one multiply-add per stored element and output feature (mm on a sparse
    # operand); the two inputs share shape and dtype but store 2 and 50 elements
    sparse = {"coo": torch.Tensor.to_sparse, "csr": torch.Tensor.to_sparse_csr}[layout]
    dense_few = torch.zeros(5, 10)
    dense_few[0, 0], dense_few[1, 3] = 1.0, 2.0
    args = (sparse(dense_few), sparse(torch.randn(5, 10) + 10))
    model = TwoCalls(nn.Linear(10, 4, bias=False))
    expected = (model(*args)[0].shape, model(*args)[1].shape)  # the real forward runs
    report = netscope.summary(model, input_data=args)
    assert [c.output_shapes for c in report.layers[1:]] == [tuple(shape) for shape in expected]
    assert [c.own_macs for c in report.layers[1:]] == [2 * 4, 50 * 4]
    fast, slow = _pass(model, args, monkeypatch, True), _pass(model, args, monkeypatch, False)
    _same(fast, slow)


def test_leaves_holding_sparse_weights_are_observed_per_call(monkeypatch):
    # two nn.Linear of one configuration whose sparse weights store 1 and 40 elements: x (3, 10) @ w.t() makes
    # one multiply-add per stored element and row of x (mm on a sparse operand): 3 x 1 and 3 x 40
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(10, 4, bias=False), nn.Linear(10, 4, bias=False)
            few = torch.zeros(4, 10)
            few[0, 0] = 1.0
            self.a.weight = nn.Parameter(few.to_sparse(), requires_grad=False)
            self.b.weight = nn.Parameter((torch.randn(4, 10) + 10).to_sparse(), requires_grad=False)

        def forward(self, x):
            return self.a(x) + self.b(x)

    model, x = Two(), torch.randn(3, 10)
    fast, slow = _pass(model, (x,), monkeypatch, True), _pass(model, (x,), monkeypatch, False)
    assert [c.own_macs for c in fast.calls[1:]] == [3 * 1, 3 * 40]
    _same(fast, slow)
    model.a.weight, model.b.weight = nn.Parameter(torch.randn(4, 10), requires_grad=False), model.a.weight
    fast, slow = _pass(model, (x,), monkeypatch, True), _pass(model, (x,), monkeypatch, False)  # a dense twin first
    assert [c.own_macs for c in fast.calls[1:]] == [3 * 10 * 4, 3 * 1]
    _same(fast, slow)


# Stock nn.Sequential blocks of qualifying leaves, repeated: the later ones run their children unobserved and
# copy the earlier block's children's calls. Oracle as above: the pass with replay off.

def _blocks_taken(monkeypatch):
    """A list that collects, per block call that opened, whether it was run from a recorded block."""
    taken = []
    block_start = leaf_replay.LeafReplay.block_start

    def spy(self, *args):
        template = block_start(self, *args)
        taken.append(template is not None)
        return template

    monkeypatch.setattr(leaf_replay.LeafReplay, "block_start", spy)
    return taken


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_repeated_stock_blocks_are_copied_exactly(monkeypatch, mode):
    torch.manual_seed(0)

    def block():
        return nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True), nn.Dropout(0.2))

    model = nn.Sequential(nn.Conv2d(3, 4, 1), *[block() for _ in range(4)], nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Sequential(nn.Linear(4, 4), nn.ReLU()), nn.Sequential(nn.Linear(4, 4), nn.ReLU()))
    model.train(mode == "train")
    x = torch.randn(2, 3, 8, 8)
    slow = _pass(model, (x,), monkeypatch, False)
    taken = _blocks_taken(monkeypatch)
    fast = _pass(model, (x,), monkeypatch, True)
    assert taken.count(True) == 3 + 1  # blocks 2-4 like block 1; the second head like the first
    _same(fast, slow)
    # every leaf but the first of each signature: the stem conv, block 1's four, the pool, the flatten, the first
    # head's two
    assert fast.replayed == sum(1 for m in model.modules() if not m._modules) - 1 - 4 - 1 - 1 - 2


def test_blocks_differing_in_any_part_of_the_signature_are_not_copied(monkeypatch):
    torch.manual_seed(0)
    blocks = [nn.Sequential(nn.Linear(6, 6), nn.ReLU()) for _ in range(8)]
    blocks[2][0] = nn.Linear(6, 6, bias=False)  # another configuration
    blocks[3][1] = nn.GELU()  # another class
    blocks[4][1].register_forward_hook(lambda m, a, out: out * 2)  # a hook (its operators counted)
    blocks[5].register_forward_pre_hook(lambda m, a: None)  # a hook on the block itself
    blocks[6].forward = lambda x, b=blocks[6]: b[1](b[0](x)) + 1  # an instance forward
    model = nn.Sequential(*blocks)
    x = torch.randn(3, 6)
    slow = _pass(model, (x,), monkeypatch, False)
    taken = _blocks_taken(monkeypatch)
    fast = _pass(model, (x,), monkeypatch, True)
    # the root (children not leaves), blocks 0-7 but block 5 (its hook: never tried): blocks 1 and 7 like block 0
    assert taken == [False, False, True, False, False, False, False, True]
    _same(fast, slow)


def test_blocks_of_another_input_signature_or_a_custom_sequential_are_not_copied(monkeypatch):
    class Doubling(nn.Sequential):  # a subclass with its own forward: it may do anything
        def forward(self, x):
            return super().forward(x) * 2

    class Plain(nn.Sequential):  # a subclass with nn.Sequential's forward (torchvision's Conv2dNormActivation)
        pass

    def block(kind=nn.Sequential):
        return kind(nn.Linear(4, 4), nn.Tanh())

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c, self.d, self.e = block(), block(), block(Doubling), block(Plain), block(Plain)
            self.g, self.h = block().double(), block().double()

        def forward(self, x):
            y = self.b(self.a(x))
            z = self.b(x.t().contiguous().t())  # the same block, its input's strides differ: another signature
            u = self.h(self.g(x.double()))  # blocks like a and b in float64: another signature, alike
            return self.e(self.d(self.c(y + z))), u

    model, x = Net(), torch.randn(4, 4)
    slow = _pass(model, (x,), monkeypatch, False)
    taken = _blocks_taken(monkeypatch)
    fast = _pass(model, (x,), monkeypatch, True)
    # the root (not a Sequential), a, b like a, b again (recorded), g, h like g, c (its own forward), d, e like d
    assert taken == [False, False, True, False, False, True, False, False, True]
    _same(fast, slow)


def test_a_hook_registered_during_the_pass_stops_block_copies(monkeypatch):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(4, 4), nn.ReLU()) for _ in range(4))

        def forward(self, x):
            for i, block in enumerate(self.blocks):
                if i == 2:  # a forward that hooks a later block's child as it goes
                    self.blocks[3][0].register_forward_hook(lambda m, a, out: out + 1)
                x = block(x)
            return x

    x = torch.randn(2, 4)
    slow = _pass(Net(), (x,), monkeypatch, False)  # each pass on a model without the hook yet
    taken = _blocks_taken(monkeypatch)
    fast = _pass(Net(), (x,), monkeypatch, True)
    # the root (not a Sequential), block 0, block 1 like block 0; blocks 2 and 3 opened after the handle counter
    # moved: not tried
    assert taken == [False, False, True]
    _same(fast, slow)


def test_a_copied_block_whose_child_raises_names_that_child_and_restores_the_python_key(monkeypatch):
    calls = []
    relu_forward = nn.ReLU.forward

    def forward(self, x):  # (patched on the class: ReLU stays a stock leaf)
        calls.append(1)
        if len(calls) == 3:
            raise IndexError("index 9 is out of bounds, say")
        return relu_forward(self, x)

    monkeypatch.setattr(nn.ReLU, "forward", forward)
    taken = _blocks_taken(monkeypatch)
    model = nn.Sequential(*[nn.Sequential(nn.Linear(4, 4), nn.ReLU()) for _ in range(4)])
    with pytest.raises(netscope.errors.ForwardError) as raised:
        netscope.summary(model, input_size=(1, 4))
    assert "index 9 is out of bounds, say" in str(raised.value)
    assert not torch._C._dispatch_tls_is_dispatch_key_excluded(torch._C.DispatchKey.Python)
    assert not torch._C._dispatch_tls_is_dispatch_key_excluded(torch._C.DispatchKey.PythonTLSSnapshot)
    assert "failed in layer 2.1 (ReLU)" in str(raised.value)
    partial = raised.value.report
    assert [c.name for c in partial.layers] == ["", "0", "0.0", "0.1", "1", "1.0", "1.1", "2", "2.0", "2.1"]
    assert [c.output_shapes for c in partial.layers[-3:]] == [FAILED, (1, 4), FAILED]
    assert taken == [False, False, True, True]  # the root, block 0, blocks 1 and 2 like block 0


@st.composite
def _block_stacks(draw):
    channels = draw(st.integers(1, 3))
    kinds = draw(st.lists(st.sampled_from(sorted(_LAYERS)), min_size=1, max_size=3))

    def make():
        return nn.Sequential(*[_LAYERS[kind](channels, draw) for kind in kinds])

    first = make()
    blocks = []
    for _ in range(draw(st.integers(2, 5))):  # the same block again, a copy of it, or one drawn anew (may differ)
        how = draw(st.sampled_from(["same", "copy", "new"]))
        blocks.append(first if how == "same" else __import__("copy").deepcopy(first) if how == "copy" else make())
    return nn.Sequential(*blocks), channels, draw(st.sampled_from(["eval", "train"]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_block_stacks())
def test_block_copies_equal_the_observed_pass_on_generated_stacks_of_stock_blocks(monkeypatch, drawn):
    _drawn_stack_matches_the_observed_pass(monkeypatch, drawn)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_block_copies_on_torchvisions_conv_norm_activation_blocks_match_the_observed_pass(monkeypatch, mode):
    # EfficientNet's stages repeat MBConv blocks whose Conv2dNormActivation (a torchvision subclass of nn.Sequential
    # with its forward: conv, batch norm, SiLU) see the same shapes: copied after the first of each stage
    torch.manual_seed(0)
    model = torchvision.models.efficientnet_b0(weights=None).train(mode == "train")
    x = torch.randn(2, 3, 64, 64)
    slow = _pass(model, (x,), monkeypatch, False)
    taken = _blocks_taken(monkeypatch)
    fast = _pass(model, (x,), monkeypatch, True)
    assert sum(taken) >= 8  # 17 with torchvision 0.29
    _same(fast, slow)
    if mode == "eval":
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(x)
        assert fast.calls[0].macs == counter.get_total_flops() // 2
