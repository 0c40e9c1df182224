"""netscope called inside a context the user already has in effect: the report is that of the same call
outside it (oracle: the call outside, and PyTorch's own layer output for the multiply-add formula), and the
context is left as found (oracle: torch's own state queries)."""
import copy
import re

import pytest
import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode

import netscope
from netscope.errors import ForwardError


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10))


def _calls(report):
    return [(c.name, c.class_name, c.output_shapes, c.macs) for c in report.layers]


def test_inside_inference_mode_composite_operators_are_counted_as_outside():
    """Under ``torch.inference_mode`` autograd is skipped, so ``aten::conv2d`` reached netscope whole, had no
    formula, and the conv's multiply-adds were reported as a partial 0 (the same call outside counted them)."""
    model = _model().eval()
    outside = netscope.summary(model, (1, 3, 8, 8))
    with torch.inference_mode():
        inside = netscope.summary(model, (1, 3, 8, 8))
        assert torch.is_inference_mode_enabled()
    conv = model[0]
    out = conv(torch.randn(1, 3, 8, 8))
    expected_conv = out.numel() * (conv.in_channels // conv.groups) * conv.kernel_size[0] * conv.kernel_size[1]
    assert [c.macs for c in inside.layers if c.name == "0"] == [expected_conv]
    assert _calls(inside) == _calls(outside)
    assert not inside.partial
    assert inside.by_operator_text() == outside.by_operator_text()


def test_inference_tensor_parameters_and_inputs_count_as_normal_ones():
    """A model and input built under inference mode, summarized outside it: no autograd key on any operand."""
    expected = _calls(netscope.summary(_model().eval(), (1, 3, 8, 8)))
    with torch.inference_mode():
        model, x = _model().eval(), torch.randn(1, 3, 8, 8)
    assert _calls(netscope.summary(model, input_data=x)) == expected


def test_a_user_default_device_of_meta_does_not_move_netscopes_own_inputs():
    """``torch.set_default_device("meta")`` / ``with torch.device("meta")``: netscope's dummy input was drawn from
    its CPU generator onto the default device and raised a raw NotImplementedError (copy out of meta)."""
    model = _model().eval()
    expected = _calls(netscope.summary(model, (1, 3, 8, 8)))
    with torch.device("meta"):
        assert _calls(netscope.summary(model, (1, 3, 8, 8))) == expected
        assert torch.get_default_device() == torch.device("meta")
    torch.set_default_device("meta")
    try:
        assert _calls(netscope.summary(model, (1, 3, 8, 8))) == expected
        assert netscope.step(model, (1, 3, 8, 8)) is not None
        assert torch.get_default_device() == torch.device("meta")
    finally:
        torch.set_default_device(None)
    assert torch.get_default_device() == torch.device("cpu")


class _Outer(nn.Module):
    """A model whose forward calls netscope on its own submodule (``nested``), then runs it."""

    def __init__(self, nested=None, hooked=False):
        super().__init__()
        self.inner, self.head, self.nested, self.inner_reports = _model().eval(), nn.Linear(10, 2), nested, []
        if hooked:  # a child with a forward hook takes torch's own call path, through the outer pass's wrapper
            self.inner[0].register_forward_hook(lambda *args: None)

    def forward(self, x):
        if self.nested is not None:
            self.inner_reports.append(self.nested(self.inner))
        return self.head(self.inner(x))


def _in_a_thread(call, seconds=120):
    """``call()``'s result, run in a thread so that a deadlock fails the test instead of hanging it."""
    import threading

    box = {}
    thread = threading.Thread(target=lambda: box.update(result=call()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "deadlocked"
    return box["result"]


@pytest.mark.parametrize("hooked", [False, True])
@pytest.mark.parametrize("nested", ["summary", "step"])
def test_a_forward_that_calls_netscope_on_a_submodule(nested, hooked):
    """Re-entrancy: the outer report is that of the same model whose forward does not call netscope (the
    nested pass's dummy input, convolution and backward were charged to the outer root: 21,332 MACs for
    10,676), and the nested report is the one a lone call gives."""
    calls = {"summary": lambda m: netscope.summary(m, (1, 3, 8, 8)), "step": lambda m: netscope.step(m, (1, 3, 8, 8))}
    model = _Outer(calls[nested], hooked)
    plain = netscope.summary(_Outer(None, hooked), (1, 3, 8, 8))
    report = _in_a_thread(lambda: netscope.summary(model, (1, 3, 8, 8)))
    conv = model.inner[0]
    conv_macs = conv(torch.randn(1, 3, 8, 8)).numel() * conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
    assert report.totals.total_macs == conv_macs + 8 * 6 * 6 * 10 + 10 * 2  # conv + inner linear + head
    assert _calls(report) == _calls(plain)
    assert report.by_operator_text() == plain.by_operator_text()
    assert len(model.inner_reports) == 1
    if nested == "summary":
        assert _calls(model.inner_reports[0]) == _calls(netscope.summary(model.inner, (1, 3, 8, 8)))


def _step_text(report):
    return re.sub(r"\d+\.\d+ s\b", "", str(report.render()))


@pytest.mark.parametrize("allow", [False, True])
def test_under_the_users_fake_tensor_mode(allow):
    """A user's FakeTensorMode: netscope's copy of a real buffer was refused there (a raw AssertionError from
    aten.detach) and step's own fake copies met a second fake mode ("Mixing fake modes"). Now summary fails as
    the user's own forward does (a named ForwardError), or, with ``allow_non_fake_inputs``, equals the call
    outside; step, which runs on its own fake copies, equals the call outside either way."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    model = _model().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    expected, expected_step = _calls(netscope.summary(model, (1, 3, 8, 8))), _step_text(netscope.step(model, (1, 3, 8, 8)))
    twin = copy.deepcopy(model)  # for the user's own forward (train mode moves its statistics)
    with FakeTensorMode(allow_non_fake_inputs=allow):
        x = torch.randn(1, 3, 8, 8)
        try:
            twin(x)
            own_error = None
        except Exception as err:  # the user's own forward, as the oracle for what the pass may do
            own_error = err
        if own_error is None:
            assert _calls(netscope.summary(model, input_data=x)) == expected
        else:
            with pytest.raises(ForwardError, match="layer 0 \\(Conv2d\\).*AssertionError"):
                netscope.summary(model, input_data=x)
        assert _step_text(netscope.step(model, (1, 3, 8, 8))) == expected_step
        assert _step_text(netscope.step(model, input_data=x)) == expected_step
    assert (own_error is None) == allow
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert model.training


def test_a_users_logging_mode_sees_the_models_forward_and_nothing_of_netscopes_bookkeeping():
    """Oracle: the same mode around the model's own forward. netscope's copies of the buffers (detach, clone,
    and the compare and copy back after the pass) showed up in the user's mode before."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Log(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(str(func))
            return func(*args, **(kwargs or {}))

    model, x = _model().train(), torch.randn(1, 3, 8, 8)
    with torch.no_grad(), Log() as own:
        model(x)
    model.load_state_dict({k: v for k, v in _model().state_dict().items()})  # the stats the forward moved
    with Log() as seen:
        netscope.summary(model, input_data=x, mode="train")
    assert seen.ops == own.ops


def test_inside_the_users_autocast_the_report_says_so_and_sizes_are_those_of_that_pass():
    """Autocast really changes the pass (bf16 outputs, half the activation bytes): shapes and multiply-adds
    equal the call outside, output sizes are the real autocast forward's, and the report says why."""
    model, x = _model().eval(), torch.randn(1, 3, 8, 8)
    outside = netscope.summary(model, input_data=x)
    assert not any("autocast" in note for note in outside.run.notes)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = netscope.summary(model, input_data=x)
        real = model(x)
        assert torch.is_autocast_enabled("cpu")
    assert _calls(inside) == _calls(outside)
    linear = [c for c in inside.layers if c.name == "4"][0]
    assert linear.output_bytes == real.numel() * real.element_size()  # bfloat16: 2 bytes each
    assert any("torch.autocast('cpu', dtype=torch.bfloat16)" in note for note in inside.run.notes)


def test_step_plans_the_precision_it_is_given_also_inside_the_users_autocast():
    """step's precision option decides: an fp32 step planned inside the user's bf16 autocast was labelled fp32
    but its saved activations were the autocast pass's; it now equals the fp32 step planned outside."""
    model = _model()
    outside = _step_text(netscope.step(model, (1, 3, 8, 8)))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = _step_text(netscope.step(model, (1, 3, 8, 8)))
        assert torch.is_autocast_enabled("cpu")
    assert inside == outside


def test_step_inside_the_users_anomaly_detection_equals_the_step_outside():
    """Anomaly detection's NaN check reads the gradients' values: the planned step fell back to a real run and
    its backward was partial (aten._is_any_true uncounted). The user's setting is kept for their own code."""
    import warnings

    model = _model()
    outside = _step_text(netscope.step(model, (1, 3, 8, 8)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's "Anomaly Detection has been enabled"
        with torch.autograd.detect_anomaly():
            inside = _step_text(netscope.step(model, (1, 3, 8, 8)))
            assert torch.is_anomaly_enabled()
    assert not torch.is_anomaly_enabled()
    assert inside == outside


def test_a_forward_that_creates_tensors_under_a_meta_default_device_is_named_with_the_reason():
    """The user's own forward fails there too (oracle: it raises); netscope's error says why."""

    class Creates(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 4)

        def forward(self, x):
            return self.linear(x) + torch.zeros(4)

    model = Creates()
    with torch.device("meta"):
        with pytest.raises(RuntimeError):
            model(torch.randn(2, 4, device="cpu"))
        with pytest.raises(ForwardError, match="default device is meta in the calling code.*runs on cpu"):
            netscope.summary(model, (2, 4))


def test_a_meta_run_does_not_blame_the_default_device_nobody_set():
    """torch's own default device (cpu) is nobody's choice: a failing forward on --device meta must not say the
    calling code set it (found by fresh26: 'torch's default device is cpu in the calling code')."""
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.l = nn.Linear(4, 4)

        def forward(self, x):
            return self.l(x) + torch.ones(4, 5)

    with pytest.raises(ForwardError) as info:
        netscope.summary(Broken(), (2, 4), device="meta")
    assert "default device" not in str(info.value)


def test_a_forward_error_ending_in_a_full_stop_gets_one_before_the_advice():
    """torch's messages often end in '.'; the advice after them read 'X [10, 2].. Check the input shape(s)'."""
    class Raises(nn.Module):
        def forward(self, x):
            raise ValueError("the size is wrong.")

    with pytest.raises(ForwardError) as info:
        netscope.summary(Raises(), (2, 4))
    assert "the size is wrong. Check the input" in str(info.value) and ".." not in str(info.value)


class _Calls(nn.Module):
    """Repeated stock leaves (replayed by the trace), a hooked child, a child whose class overrides ``__call__``,
    and Python code of its own between them: every way a module call reaches the model's code."""

    class Scaled(nn.Linear):
        def __call__(self, x):
            return super().__call__(x) * torch.tensor(0.5)

    def __init__(self):
        super().__init__()
        self.blocks = nn.Sequential(*[nn.Sequential(nn.Linear(6, 6), nn.GELU()) for _ in range(3)])
        self.norm, self.head = nn.LayerNorm(6), self.Scaled(6, 2)
        self.norm.register_forward_hook(lambda module, args, out: out + 1)

    def forward(self, x):
        return self.head(self.norm(self.blocks(x)).flatten(1)).softmax(-1)


class Count(TorchFunctionMode):
    """A user's TorchFunctionMode that lists the qualified name of every function it sees."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls.append(getattr(func, "__qualname__", str(func)))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("model_fn, size", [(_model, (1, 3, 8, 8)), (_Calls, (4, 6))])
@pytest.mark.parametrize("given", ["input_data", "input_size"])
def test_a_users_function_mode_sees_the_models_forward_and_nothing_of_netscopes_bookkeeping(model_fn, size, given):
    """A counting ``TorchFunctionMode`` around ``summary`` counts what it counts around the model's own forward
    (oracle): netscope's buffer copies and compares, shape and size reads and dummy input (``randn``, ``to``)
    were 266 extra calls it saw for a 5-layer model (torch 2.14). The forward still runs under the mode (same calls,
    same order)."""
    model, x = model_fn().eval(), torch.randn(*size)
    with torch.no_grad(), Count() as own:
        model(x)
    assert own.calls  # the oracle counts something
    with torch.device("cpu"), Count() as seen:  # a default device under it stays in force
        netscope.summary(model, **({"input_data": x} if given == "input_data" else {"input_size": size}))
    assert seen.calls == own.calls
    assert torch.overrides._get_current_function_mode() is None


@pytest.mark.parametrize("model_fn, size", [(_model, (1, 3, 8, 8)), (_Calls, (4, 6))])
def test_a_users_function_mode_sees_the_steps_forward_and_backward_not_its_bookkeeping(model_fn, size):
    """Around ``step``, a counting ``TorchFunctionMode`` counts the model's forward and the backward call, as
    around a real training step (oracle) less netscope's stand-in loss (``sum``): not the fake copies, the
    memory tracker's module hooks or the autograd tagging (383 extra calls for a 3-layer MLP before, torch 2.14)."""
    model, x = model_fn().train(), torch.randn(*size)
    with Count() as own:
        out = model(x)
        forward = list(own.calls)
        out.sum().backward()
    assert own.calls == forward + ["TensorBase.sum", "Tensor.backward"]  # the oracle's real step
    model.zero_grad(set_to_none=True)
    with Count() as seen:
        netscope.step(model, input_data=x, optimizer="sgd")
    assert seen.calls == forward + ["Tensor.backward"]
    assert torch.overrides._get_current_function_mode() is None
