"""netscope called inside a context the user already has in effect: the report is that of the same call
outside it (oracle: the call outside, and PyTorch's own layer output for the multiply-add formula), and the
context is left as found (oracle: torch's own state queries)."""
import torch
import torch.nn as nn

import netscope


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
