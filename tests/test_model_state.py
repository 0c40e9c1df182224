"""netscope never changes the user's model: every entry point, every kind of model, also on failure."""

from __future__ import annotations

import importlib

import pytest
import torch
import torch.nn as nn
import torch.nn.modules.module as module_globals
import torchvision
from torch.nn.parameter import UninitializedTensorMixin

import netscope
from netscope.errors import NetscopeError

HOOK_SLOTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
              "_state_dict_hooks", "_state_dict_pre_hooks", "_load_state_dict_pre_hooks",
              "_load_state_dict_post_hooks", "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs",
              "_forward_hooks_always_called")
GLOBAL_HOOKS = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
                "_global_backward_pre_hooks", "_global_module_registration_hooks",
                "_global_parameter_registration_hooks", "_global_buffer_registration_hooks")


def snapshot(model: nn.Module):
    """Everything observable about a model and the global state netscope could touch."""
    tensors = {}
    for name, t in list(model.named_parameters(remove_duplicate=False)) + list(model.named_buffers(remove_duplicate=False)):
        has_values = t.device.type != "meta" and not isinstance(t, UninitializedTensorMixin)  # lazy: none yet
        tensors[name] = (id(t), type(t), t.device, t.dtype, t.requires_grad, t.detach().clone() if has_values else None)
    return {
        "tensors": tensors,
        "training": [(name, m.training) for name, m in model.named_modules()],
        "hooks": [(name, slot, list(getattr(m, slot).items()) if isinstance(getattr(m, slot, None), dict) else getattr(m, slot, None))
                  for name, m in model.named_modules() for slot in HOOK_SLOTS],
        "global_hooks": [(g, list(getattr(module_globals, g).items())) for g in GLOBAL_HOOKS],
        "rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "grad": torch.is_grad_enabled(),
        "call_path": (nn.Module.__call__, nn.Module._call_impl),  # the trace wraps _call_impl process-wide
        "python_key": torch._C._dispatch_tls_is_dispatch_key_excluded(torch._C.DispatchKey.Python),
    }


def _bits(value: torch.Tensor) -> torch.Tensor:
    """A float tensor's bytes with its shape (NaN statistics compare equal; 0-d tensors too), else the tensor."""
    if value.dtype.is_floating_point and value.numel():
        return value.reshape(-1).view(torch.uint8).reshape(*value.shape, -1)
    return value


def assert_same(before, after):
    assert before["tensors"].keys() == after["tensors"].keys()
    for name, (ident, kind, device, dtype, grad, value) in before["tensors"].items():
        a_ident, a_kind, a_device, a_dtype, a_grad, a_value = after["tensors"][name]
        assert (ident, kind, device, dtype, grad) == (a_ident, a_kind, a_device, a_dtype, a_grad), name
        if value is not None:
            assert torch.equal(_bits(value), _bits(a_value)), name
    for key in ("training", "hooks", "global_hooks", "grad", "call_path", "python_key"):
        assert before[key] == after[key], key
    assert torch.equal(before["rng"], after["rng"])
    if before["cuda_rng"] is not None:
        assert all(torch.equal(a, b) for a, b in zip(before["cuda_rng"], after["cuda_rng"]))


class Dropper(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.drop = nn.Dropout(0.5)
        self.bn = nn.BatchNorm1d(8)

    def forward(self, x):
        return self.bn(self.drop(self.fc(x)))


class Recurrent(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(8, 16, batch_first=True, num_layers=2, dropout=0.1)
        self.rnn = nn.RNN(16, 4, batch_first=True)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.rnn(out)[0]


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True, dropout=0.1)
        self.norm = nn.LayerNorm(8)

    def forward(self, x):
        return self.norm(self.attn(x, x, x)[0])


class FailsHalfway(nn.Module):
    """BatchNorm updates its statistics in train mode, then the forward raises."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(8)
        self.fc = nn.Linear(8, 8)

    def forward(self, x):
        x = self.fc(self.bn(x))
        torch.rand(3)  # consumes the global RNG before failing
        raise ValueError("boom halfway")


def with_user_hooks():
    model = Dropper()
    model.fc.register_forward_hook(lambda m, i, o: None)
    model.register_forward_pre_hook(lambda m, i: None)
    model.bn.register_full_backward_hook(lambda m, gi, go: None)
    return model


def frozen_resnet():
    model = torchvision.models.resnet18(weights=None, num_classes=5)
    model.layer1.requires_grad_(False)
    model.layer2.eval()
    return model


def qat_prepared():
    """Eager QAT as torch.ao.quantization prepares it: its per-channel observers and fake-quantizers ``resize_``
    their buffers in place on the first train-mode forward (``min_val`` from ``[0]`` to ``[out_channels]``)."""
    import warnings

    from torch.ao import quantization

    model = nn.Sequential(quantization.QuantStub(), nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5),
                          quantization.DeQuantStub())
    model.qconfig = quantization.get_default_qat_qconfig("x86")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notice, pointing at torchao
        return quantization.prepare_qat(model.train())


MODELS = {
    "batchnorm-resnet": (frozen_resnet, (2, 3, 32, 32)),
    "dropout": (Dropper, (4, 8)),
    "rnn-lstm": (Recurrent, (2, 5, 8)),
    "multihead-attention": (Attention, (2, 5, 8)),
    "user-hooks": (with_user_hooks, (4, 8)),
    "fails-halfway": (FailsHalfway, (4, 8)),
    "compiled": (lambda: torch.compile(Dropper()), (4, 8)),
    "qat-observers": (qat_prepared, (2, 3, 8, 8)),
}


def _optional(module_name, attr):
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError):
        return None


def entry_points():
    points = {
        "summary-eval": lambda m, shape: netscope.summary(m, shape),
        "summary-train": lambda m, shape: netscope.summary(m, shape, mode="train"),
        "summary-meta": lambda m, shape: netscope.summary(m, shape, device="meta"),
        "summary-bf16": lambda m, shape: netscope.summary(m, shape, dtype="bfloat16"),
        "check": lambda m, shape: netscope.check(m, shape),
        "step": lambda m, shape: netscope.step(m, shape),
        "step-bf16-fsdp": lambda m, shape: netscope.step(m, shape, precision="bf16-mixed", fsdp=2),
    }
    solve = _optional("netscope.analyses.solver", "solve_input_size")
    if solve is not None:
        from netscope.inputs import InputSpec, TensorSpec

        points["solve"] = lambda m, shape: solve(m, InputSpec([TensorSpec(shape)]))
    audit = _optional("netscope.naming", "audit_names")
    if audit is not None:
        points["names"] = lambda m, shape: audit(m)
    return points


ENTRY_POINTS = entry_points()


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_entry_point_leaves_model_unchanged(model_name, entry):
    builder, shape = MODELS[model_name]
    torch.manual_seed(0)
    model = builder()
    model.train()  # the user's model is in train mode; netscope runs eval by default
    before = snapshot(model)
    try:
        ENTRY_POINTS[entry](model, shape)
    except NetscopeError:
        pass  # FailsHalfway raises by design: state must still be intact
    assert_same(before, snapshot(model))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_model_stays_on_its_device_and_rng_is_kept():
    model = frozen_resnet().cuda()
    before = snapshot(model)
    report = netscope.summary(model, (2, 3, 32, 32), mode="train")
    assert report.totals.peak_memory_bytes is not None and report.totals.peak_memory_bytes > 0
    netscope.summary(model, (2, 3, 32, 32), device="cpu")
    assert_same(before, snapshot(model))


def test_failure_inside_forward_reports_layer_and_restores():
    model = FailsHalfway().train()
    before = snapshot(model)
    with pytest.raises(NetscopeError) as info:
        netscope.summary(model, (4, 8), mode="train")
    assert "boom halfway" in str(info.value)
    assert isinstance(info.value.original, ValueError)
    assert_same(before, snapshot(model))


def test_the_snapshot_notices_what_a_careless_tool_would_change():
    model = Dropper().train()
    before = snapshot(model)
    model(torch.randn(4, 8))  # a plain train-mode forward: BN statistics and RNG move
    with pytest.raises(AssertionError):
        assert_same(before, snapshot(model))
    model = Dropper()
    before = snapshot(model)
    model.fc.eval()
    with pytest.raises(AssertionError):
        assert_same(before, snapshot(model))
    model = Dropper()
    before = snapshot(model)
    model.fc.register_forward_hook(lambda m, i, o: None)
    with pytest.raises(AssertionError):
        assert_same(before, snapshot(model))


class RewritesItsSlots(nn.Module):
    """A forward that swaps, adds and removes registered tensors: the guard's flat "nothing changed" test
    must notice each (issue 16 item 7 made it three list comparisons)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)
        self.register_buffer("scale", torch.ones(4))
        self.b.spare = nn.Parameter(torch.ones(2))

    def forward(self, x):
        self.a.weight = nn.Parameter(torch.zeros(4, 4))  # swapped object
        del self.b._parameters["spare"]  # removed
        self.b.register_buffer("extra", torch.zeros(1))  # added
        self.scale = torch.full((4,), 2.0)  # buffer object replaced
        self.b.weight.requires_grad_(False)
        return self.b(self.a(x)) * self.scale


def test_slots_rewritten_by_the_forward_are_put_back():
    model = RewritesItsSlots()
    before = snapshot(model)
    netscope.summary(model, (2, 4))
    assert_same(before, snapshot(model))
    assert "extra" not in model.b._buffers and "spare" in model.b._parameters


def test_the_guard_says_when_the_forward_added_a_submodule():
    from netscope.run.model_state import preserved_model

    model = nn.Sequential(nn.Linear(2, 2))
    with preserved_model(model, train=False) as changes:
        pass
    assert not changes.modules_changed
    with preserved_model(model, train=False) as changes:
        model.add_module("late", nn.ReLU())
    assert changes.modules_changed


class FillsACache(nn.Module):
    """timm's attention-bias cache pattern: a plain dict filled in the first eval forward, and a call counter."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 4)
        self.bias_cache = {}
        self.calls = 0
        self.scale = float("nan")  # assigned again below: an equal value (NaN too) is no change

    def forward(self, x):
        if "k" not in self.bias_cache:
            self.bias_cache["k"] = torch.zeros(4, device=x.device)
        self.calls += 1
        self.scale = float("nan")
        return self.proj(x) + self.bias_cache["k"]


def test_plain_attributes_the_forward_changed_are_named_and_the_audit_sees_the_model_as_given():
    model = nn.Sequential(FillsACache())
    given = [(f.code, f.layer) for f in netscope.audit_names(model).findings]
    report = netscope.summary(model, (1, 4))
    assert model[0].calls == 0  # a number the forward set is put back ...
    assert "k" in model[0].bias_cache  # ... what netscope could not undo (a dict filled in place) ...
    (note,) = [n for n in report.run.notes if "plain attributes" in n]
    assert "undo: 0.bias_cache (" in note  # ... it names, and only that (calls restored, scale got an equal value)
    assert [(f.code, f.layer) for f in report.findings] == given  # the cache its own pass filled is not a finding
    assert not any("plain attributes" in n for n in netscope.summary(nn.Linear(4, 4), (1, 4)).run.notes)


class KeepsTensorsInATuple(nn.Module):
    def __init__(self):
        super().__init__()
        self.last = (torch.zeros(2), torch.zeros(2))
        self.shape = (2, (3, 4))

    def forward(self, x):
        self.last = (x.detach().clone(), x.detach().clone())  # new tensors: never compared by value
        self.shape = (2, (3, 4))  # an equal tuple again: no change
        return x * 2


def test_an_attribute_holding_new_tensors_is_named_without_comparing_them():
    model = KeepsTensorsInATuple()
    report = netscope.summary(model, (1, 2))
    (note,) = [n for n in report.run.notes if "plain attributes" in n]
    assert "undo: last (" in note and "shape" not in note.split("undo:")[1]


class CreatesAHeadOnFirstCall(nn.Module):
    """The lazy-init pattern: a submodule created by the first forward."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 6)

    def forward(self, x):
        if not hasattr(self, "head"):
            self.head = nn.Linear(6, 3)
        return self.head(self.body(x))


def test_a_forward_that_adds_a_submodule_is_reported_whole_and_the_model_left_as_given():
    model = CreatesAHeadOnFirstCall()
    before = snapshot(model)
    report = netscope.summary(model, (2, 4))
    assert_same(before, snapshot(model))
    assert [name for name, _ in model.named_children()] == ["body"]  # the head the pass created is gone again
    ran = CreatesAHeadOnFirstCall()
    ran(torch.randn(2, 4))  # the oracle: the model after its own first forward
    assert report.totals.total_params == sum(p.numel() for p in ran.parameters()) == 4 * 6 + 6 + 6 * 3 + 3
    assert [c.name for c in report.layers] == ["", "body", "head"]
    assert report.totals.total_macs == 2 * (4 * 6 + 6 * 3)
    assert any("added head" in n for n in report.run.notes)


# ---------------------------------------------------------------- the user's inputs

class _Appending(nn.Module):
    """Appends its input to the cache it is given (a KV cache's way), and doubles one input in place."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 4)

    def forward(self, x, cache, scale):
        cache.keys.append(x)
        cache.seen["calls"] = cache.seen.get("calls", 0) + 1
        scale.mul_(2)
        return self.proj(x) * scale


class _Cache:  # not a pytree node: an object holding tensors in attributes, as transformers' caches are
    def __init__(self):
        self.keys = [torch.zeros(1, 4)]
        self.seen = {}


def test_an_input_object_the_forward_appends_to_is_left_as_given_and_in_place_writes_are_named():
    cache, x, scale = _Cache(), torch.randn(1, 4), torch.ones(1)
    first = cache.keys[0]
    report = netscope.summary(_Appending(), input_data=(x, cache, scale))
    assert len(cache.keys) == 1 and cache.keys[0] is first and cache.seen == {}  # the pass ran on a copy
    assert report.totals.total_macs == 16  # the forward ran: the Linear's 4 x 4
    assert scale.item() == 2.0  # an in-place write into the user's tensor is not undone, but named
    assert any("wrote into these inputs in place" in note and "args[2]" in note for note in report.run.notes)
    assert not any("args[0]" in note for note in report.run.notes)


def test_an_input_that_refuses_a_copy_is_passed_as_given_and_named():
    class Stubborn(_Cache):
        def __deepcopy__(self, memo):
            raise TypeError("no copies")

    cache = Stubborn()
    report = netscope.summary(_Appending(), input_data=(torch.randn(1, 4), cache, torch.ones(1)))
    assert len(cache.keys) == 2  # the user's object: changed, as its own forward would
    assert any("args[1] (Stubborn) could not be copied" in note for note in report.run.notes)


def test_a_transformers_cache_keeps_its_length():
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=64)
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        past = model(torch.randint(0, 100, (1, 16)), use_cache=True).past_key_values
    before = [t.clone() for t in torch.utils._pytree.tree_leaves(past.to_legacy_cache())] \
        if hasattr(past, "to_legacy_cache") else None
    report = netscope.summary(model, input_data={"input_ids": torch.randint(0, 100, (1, 4)),
                                                 "past_key_values": past, "use_cache": True})
    assert past.get_seq_length() == 16  # transformers' own count; the pass appended 4 positions to its copy
    if before is not None:
        after = torch.utils._pytree.tree_leaves(past.to_legacy_cache())
        assert all(torch.equal(a, b) for a, b in zip(after, before))
    assert report.model_output is not None


class ShrinksItsWindow(nn.Module):
    """Adapts itself to a small input for good, as Hugging Face Swin does with window_size."""

    def __init__(self):
        super().__init__()
        self.window = 7
        self.proj = nn.Linear(4, 4)

    def forward(self, x):
        if x.shape[0] < self.window:
            self.window = x.shape[0]
            self.shrunk = True
        return self.proj(x)


def test_a_number_the_forward_adapted_to_a_small_input_is_put_back():
    model = ShrinksItsWindow()
    report = netscope.summary(model, (3, 4))
    assert model.window == 7 and not hasattr(model, "shrunk")  # a real forward at 3 leaves window 3 and shrunk
    assert not any("plain attributes" in n for n in report.run.notes)
    reference = ShrinksItsWindow()
    reference(torch.randn(3, 4))
    assert reference.window == 3  # the oracle: the model's own forward does change it


class ParameterAlsoABuffer(nn.Module):
    """One tensor registered as a parameter of a child and a buffer of the root (register_buffer(name, p))."""

    def __init__(self, writes: bool):
        super().__init__()
        self.a = nn.Linear(2, 2)
        self.register_buffer("w_copy", self.a.weight)
        self.writes = writes

    def forward(self, x):
        if self.writes:
            self.a.weight.mul_(1.0)
        return self.a(x)


@pytest.mark.parametrize("writes", [False, True])
def test_a_parameter_held_as_a_buffer_is_named_as_written_only_when_the_forward_writes_it(writes):
    model = ParameterAlsoABuffer(writes)
    version = model.a.weight._version
    with torch.no_grad():
        model(torch.ones(1, 2))  # the oracle: the real forward, and the tensor's own version counter
    forward_writes = model.a.weight._version != version
    assert forward_writes == writes
    report = netscope.summary(model, (1, 2))
    notes = [n for n in report.run.notes if "wrote these parameters in place" in n]
    assert bool(notes) == forward_writes  # the buffer copied back by netscope itself is no write of the forward
    if notes:
        assert notes[0].endswith(": a.weight")


# ---- global-state hygiene: what a pending backward, a model's own generator and the old norm hooks need ----

@pytest.mark.parametrize("mode", ["eval", "train"])
def test_a_backward_pending_from_the_users_own_forward_still_runs(mode):
    """BatchNorm saves its running stats for backward; autograd checks their version counters. Oracle: the
    same backward run on an untouched twin, and the counters as they were."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8)).eval()
    twin = nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8)).eval()
    twin.load_state_dict(model.state_dict())
    x = torch.randn(4, 8)
    pending, reference = model(x).square().sum(), twin(x).square().sum()
    versions = [t._version for t in model.buffers()]
    netscope.summary(model, (4, 8), mode=mode)
    assert [t._version for t in model.buffers()] == versions
    pending.backward()  # raised "modified by an inplace operation" when every buffer was copied back
    reference.backward()
    for ours, theirs in zip(model.parameters(), twin.parameters()):
        assert torch.equal(ours.grad, theirs.grad)


class OwnGenerator(nn.Module):
    """Draws its noise from a generator it holds, not from the global RNG."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.generator = torch.Generator().manual_seed(3)

    def forward(self, x):
        return self.fc(x) + torch.rand(x.shape, generator=self.generator)


@pytest.mark.parametrize("entry", ["summary-eval", "summary-train", "check"])
def test_a_generator_the_model_holds_gives_the_same_numbers_after_a_pass(entry):
    model = OwnGenerator()
    expected = torch.Generator().manual_seed(3)
    ENTRY_POINTS[entry](model, (4, 8))
    assert torch.equal(torch.rand(5, generator=model.generator), torch.rand(5, generator=expected))


def _old_weight_norm():
    with pytest.warns(FutureWarning):
        return nn.Sequential(torch.nn.utils.weight_norm(nn.Linear(8, 8)), nn.ReLU())


def _old_spectral_norm():
    return nn.Sequential(torch.nn.utils.spectral_norm(nn.Linear(8, 8)), nn.ReLU())


@pytest.mark.parametrize("entry", ["summary-eval", "summary-train", "summary-meta", "summary-bf16", "step"])
@pytest.mark.parametrize("builder", [_old_weight_norm, _old_spectral_norm])
def test_the_old_weight_and_spectral_norm_hooks_run_on_copies_and_stay_on_the_model(builder, entry):
    """Their ``module.weight`` is a tensor autograd computed in a pre-hook, which torch refuses to deep-copy:
    a meta, cast or step copy raised a raw RuntimeError. Oracle: PyTorch's own forward of the model."""
    torch.manual_seed(0)
    model = builder().train()
    model(torch.randn(4, 8)).sum().backward()  # the user's grads exist and must survive
    before = snapshot(model)
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    result = ENTRY_POINTS[entry](model, (4, 8))
    assert_same(before, snapshot(model))
    assert {name: p.grad for name, p in model.named_parameters()}.keys() == grads.keys()
    assert all(torch.equal(p.grad, grads[name]) for name, p in model.named_parameters())
    if entry.startswith("summary"):
        assert [(c.name, tuple(c.output_shapes)) for c in result.layers if c.depth == 1] == \
            [("0", tuple(model[0](torch.randn(4, 8)).shape)), ("1", (4, 8))]


@pytest.mark.parametrize("entry", ["summary-eval", "summary-train", "summary-meta", "step"])
def test_called_inside_the_users_inference_mode(entry):
    """Notebooks wrap calls in ``torch.inference_mode()``: netscope's copies then are inference tensors
    without version counters (the guard raised a raw RuntimeError), and a planned step needs autograd."""
    torch.manual_seed(0)
    model = Dropper().train()
    before = snapshot(model)
    with torch.inference_mode():
        result = ENTRY_POINTS[entry](model, (4, 8))
        assert torch.is_inference_mode_enabled()
    assert result is not None
    assert_same(before, snapshot(model))


def test_a_model_built_under_inference_mode_keeps_its_statistics_when_a_train_pass_fails():
    """Its buffers are inference tensors: PyTorch refuses BatchNorm's counter update outside inference mode, so
    the train pass fails (named, as the user's own forward would); the running stats it had updated by then
    are put back (the restore's own write raised before, hiding the forward's error)."""
    with torch.inference_mode():
        model = nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8))
    stats = {name: t.clone() for name, t in model.state_dict().items()}
    with pytest.raises(RuntimeError, match="inference tensor"):
        model(torch.randn(4, 8))  # the oracle: PyTorch's own train forward refuses too
    for name, t in model.state_dict().items():  # ...after writing the running stats
        t_ = stats[name]
        with torch.inference_mode():
            t.copy_(t_)
    with pytest.raises(NetscopeError, match="inference tensor"):
        netscope.summary(model, (4, 8), mode="train")
    assert all(torch.equal(stats[name], t) for name, t in model.state_dict().items())
    assert netscope.summary(model, (4, 8)).layers[1].output_shapes == (4, 8)  # eval: writes nothing, runs


CLI_MODELS = '''
import torch.nn as nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.drop = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.2)

    def forward(self, x):
        return self.drop(self.bn(self.conv(x)))
'''


@pytest.mark.parametrize("argv", [["summary", "--input", "1,3,8,8"], ["summary", "--train", "--input", "1,3,8,8"],
                                  ["check", "--input", "1,3,8,8"], ["solve", "--max-size", "12", "--input", "1,3,8,8"]])
def test_a_command_run_in_process_leaves_the_callers_random_numbers(argv, tmp_path, capsys):
    """The command builds the model, whose initialization draws from the global RNG. Oracle: the numbers
    the same seed gives without the command."""
    from netscope.cli import main

    source = tmp_path / "nets.py"
    source.write_text(CLI_MODELS)
    torch.manual_seed(7)
    expected = torch.rand(4)
    torch.manual_seed(7)
    assert main([argv[0], f"{source}:Net", *argv[1:]]) == 0
    assert torch.equal(torch.rand(4), expected)


@pytest.mark.parametrize("entry", ["summary-eval", "summary-train", "summary-meta", "summary-bf16", "step", "solve"])
def test_a_one_shot_hook_of_the_user_is_still_there_for_their_own_forward(entry):
    """A hook that removes itself through its handle runs in netscope's pass (every hook does) and must not be
    gone afterwards; a copy's hook holds the original's handle. Oracle: the hook fires on the user's next forward."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    fired = []

    def once(module, args):
        fired.append(module)
        handle.remove()

    handle = model[0].register_forward_pre_hook(once)
    other = model[1].register_forward_hook(lambda m, i, o: None)  # order kept: one-shot first, then this one
    before = snapshot(model)
    ENTRY_POINTS[entry](model, (1, 3, 8, 8))
    assert_same(before, snapshot(model))
    fired.clear()
    model(torch.randn(1, 3, 8, 8))
    assert fired == [model[0]] and not model[0]._forward_pre_hooks
    other.remove()


class RegistersAHookEachCall(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x):
        self.fc.register_forward_hook(lambda m, i, o: None)
        torch.nn.modules.module.register_module_forward_hook(lambda m, i, o: None)
        return self.fc(x)


@pytest.mark.parametrize("entry", ["summary-eval", "summary-meta", "step"])
def test_hooks_a_forward_registers_do_not_stay_on_the_model_or_the_process(entry):
    model = RegistersAHookEachCall()
    before = snapshot(model)
    ENTRY_POINTS[entry](model, (4, 8))
    assert_same(before, snapshot(model))  # its hook tables and torch's process-wide ones


def test_a_process_wide_one_shot_hook_stays_registered():
    fired = []

    def once(module, args):
        fired.append(module)
        handle.remove()

    handle = torch.nn.modules.module.register_module_forward_pre_hook(once)
    try:
        model = nn.Sequential(nn.Linear(8, 8))
        netscope.summary(model, (4, 8))
        fired.clear()
        model(torch.randn(4, 8))
        assert fired == [model]  # the user's own forward: the root's call is the first one
    finally:
        handle.remove()


def test_step_refuses_uninitialized_lazy_modules_by_name_and_leaves_them_lazy():
    model = nn.Sequential(nn.Linear(8, 8), nn.LazyLinear(4))
    with pytest.raises(NetscopeError, match=r"1 \(LazyLinear\)"):
        netscope.step(model, (4, 8))
    assert isinstance(model[1].weight, UninitializedTensorMixin)
    model(torch.randn(4, 8))  # initialized by the user's own forward: the step plans it
    assert netscope.step(model, (4, 8)) is not None


def process_state():
    """The process-wide state a call could leave changed (oracle: the same read before the call)."""
    import gc
    import os
    import random
    import warnings

    import numpy as np

    return {
        "default_dtype": torch.get_default_dtype(), "grad": torch.is_grad_enabled(),
        "inference": torch.is_inference_mode_enabled(), "autocast": torch.is_autocast_enabled("cpu"),
        "autocast_dtype": torch.get_autocast_dtype("cpu"), "deterministic": torch.are_deterministic_algorithms_enabled(),
        "threads": torch.get_num_threads(), "rng": torch.get_rng_state().tolist(), "random": random.getstate(),
        "numpy": [x.tolist() if hasattr(x, "tolist") else x for x in np.random.get_state()],
        "call_path": (nn.Module.__call__, nn.Module._call_impl),
        "global_hooks": [(g, list(getattr(module_globals, g).items())) for g in GLOBAL_HOOKS],
        "dispatch_stack": torch._C._len_torch_dispatch_stack(),
        "python_key": torch._C._dispatch_tls_is_dispatch_key_excluded(torch._C.DispatchKey.Python),
        "gc": gc.isenabled(), "frozen": gc.get_freeze_count(), "warnings": list(warnings.filters),
        "cwd": os.getcwd(),
    }


class Raises(nn.Module):
    """Dropout and BatchNorm run, then the forward raises ``kind``: always, or only from its second call."""

    def __init__(self, kind):
        super().__init__()
        self.conv, self.bn, self.drop = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5)
        self.kind = kind
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        x = self.drop(self.bn(self.conv(x)))
        if self.kind == "value":
            raise ValueError("boom")
        if self.kind == "interrupt":
            raise KeyboardInterrupt
        if self.kind == "second" and self.calls > 1:
            raise ValueError("second pass")
        return x


@pytest.mark.parametrize("kind", ["none", "value", "interrupt", "second"])
@pytest.mark.parametrize("entry", ["summary-eval", "summary-train", "summary-meta", "summary-bf16", "check", "step",
                                   "solve", "names"])
def test_the_process_is_left_as_found_also_when_the_forward_raises(entry, kind):
    model = Raises(kind).train()
    torch.manual_seed(1)
    before, model_before = process_state(), snapshot(model)
    try:
        ENTRY_POINTS[entry](model, (1, 3, 8, 8))
    except (NetscopeError, KeyboardInterrupt):
        pass
    assert process_state() == before
    assert_same(model_before, snapshot(model))


def test_the_checkpoint_functions_leave_the_process_as_found(tmp_path):
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    path = tmp_path / "ckpt.pt"
    torch.save({"model." + k: v for k, v in model.state_dict().items()}, path)
    before, model_before = process_state(), snapshot(model)
    netscope.keys(str(path))
    netscope.diff(str(path), model)
    netscope.remap(str(path), model)
    netscope.load(str(path), model)
    assert process_state() == before
    assert_same(model_before, snapshot(model))  # load wrote the same values in place: identities and values kept


def _calls(report):
    return [(c.name, c.class_name, c.output_shapes, c.macs) for c in report.layers]


def test_two_threads_summarizing_two_models_and_a_third_running_its_own_forward():
    """Each thread's report equals the one a lone call gives; the third thread's plain forward (not through
    netscope) keeps running, right, and appears in neither report."""
    import threading

    first, second = frozen_resnet(), nn.Sequential(*[nn.Linear(16, 16) for _ in range(20)])
    expected = {"first": _calls(netscope.summary(first, (1, 3, 32, 32))), "second": _calls(netscope.summary(second, (2, 16)))}
    foreign = nn.Sequential(nn.Conv1d(2, 2, 1), nn.GELU())  # classes neither traced model has
    x = torch.randn(1, 2, 5)
    foreign_expected = foreign(x)
    results, errors, stop, foreign_runs = {}, [], threading.Event(), [0]

    def summarize(name, model, shape):
        try:
            results[name] = [_calls(netscope.summary(model, shape)) for _ in range(3)]
        except BaseException as err:  # reported by the main thread
            errors.append(err)

    def own_forward():
        while not stop.is_set():
            if not torch.equal(foreign(x), foreign_expected):
                errors.append(AssertionError("the foreign forward's output changed"))
            foreign_runs[0] += 1

    threads = [threading.Thread(target=summarize, args=("first", first, (1, 3, 32, 32))),
               threading.Thread(target=summarize, args=("second", second, (2, 16)))]
    other = threading.Thread(target=own_forward)
    other.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    other.join()
    assert not errors
    assert foreign_runs[0] > 0
    for name in ("first", "second"):
        assert results[name] == [expected[name]] * 3
        assert not {"Conv1d", "GELU"} & {row[1] for rows in results[name] for row in rows}


class _HooksALaterLayer(nn.Module):
    """Its forward registers a forward hook on a layer called after it (held outside the registered children)."""

    def __init__(self, later: nn.Module, seen: list):
        super().__init__()
        self.refs = [later]  # not a child: the hook target stays the Sequential's own
        self.seen = seen

    def forward(self, x):
        self.refs[0].register_forward_hook(lambda module, args, out: self.seen.append(tuple(out.shape)) or out * 2)
        return x


def test_a_hook_registered_during_the_pass_runs_on_a_layer_that_had_none():
    """A layer without hooks when the pass began is called without reading its hook tables only while no hook
    has been registered since: one a forward registers runs on its later calls, as in the user's own forward."""
    from netscope.run.trace import trace

    def build(seen):
        torch.manual_seed(0)
        later = nn.Linear(4, 3)
        return nn.Sequential(nn.Linear(4, 4), _HooksALaterLayer(later, seen), nn.ReLU(), later).eval()

    x = torch.randn(2, 4)
    mine = []
    with torch.no_grad():
        expected = build(mine)(x)  # torch's own call path: the hook doubles the last layer's output
    seen = []
    model = build(seen)
    result = trace(model, ((x,), {}))
    assert seen == mine == [(2, 3)]
    assert result.calls[-1].output_shapes == tuple(expected.shape)
    assert not model[3]._forward_hooks  # taken off again after the pass


class LayerDrop(nn.Module):
    """Skips its layers at random in train mode, drawing from Python's and numpy's generators as Hugging Face's
    LayerDrop does (MusicGen: ``random.uniform(0, 1)``, Wav2Vec2: ``np.random.random()``)."""

    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList(nn.Conv2d(3, 3, 3, padding=1) for _ in range(4))

    def forward(self, x):
        import random

        import numpy as np

        for i, layer in enumerate(self.layers):
            draw = random.uniform(0, 1) if i % 2 else np.random.random()
            if not self.training or draw >= 0.5:
                x = layer(x)
        return x


@pytest.mark.parametrize("entry", ["summary-eval", "summary-train", "summary-meta", "summary-bf16", "check", "step",
                                   "solve"])
def test_a_forward_drawing_from_pythons_and_numpys_generators_leaves_them_as_found(entry):
    import random

    import numpy as np

    model = LayerDrop().train()
    random.seed(3)
    np.random.seed(3)
    before = process_state()
    ENTRY_POINTS[entry](model, (1, 3, 8, 8))
    assert process_state() == before
