"""The --input parser: exact results for valid text, a clear InputSpecError for anything else (fuzzed)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from netscope.errors import InputSpecError
from netscope.inputs import InputSpec, TensorSpec, parse_input

FUZZ = settings(max_examples=400, deadline=None, derandomize=True)


@pytest.mark.parametrize("text,shape,dtype", [
    ("1,3,224,224", (1, 3, 224, 224), None),
    ("1x3x32x32", (1, 3, 32, 32), None),
    ("(1, 3, 32, 32)", (1, 3, 32, 32), None),
    ("[2,8]", (2, 8), None),
    ("1,128:int64", (1, 128), "int64"),
    ("4,16:fp16", (4, 16), "float16"),
    ("5,", (5,), None),
])
def test_valid_shapes(text, shape, dtype):
    spec = parse_input(text)
    assert spec.shape == shape and spec.dtype == dtype


@given(st.lists(st.integers(1, 64), min_size=1, max_size=5), st.sampled_from(["", ":int64", ":bfloat16", ":bool"]))
@FUZZ
def test_round_trip_of_well_formed_shapes(dims, suffix):
    spec = parse_input(",".join(map(str, dims)) + suffix)
    assert spec.shape == tuple(dims)


@given(st.text(max_size=30))
@FUZZ
def test_arbitrary_text_parses_or_raises_input_spec_error(text):
    try:
        spec = parse_input(text)
    except InputSpecError as err:
        assert str(err) and "\n" not in str(err)
    else:
        assert all(isinstance(d, int) and d >= 1 for d in spec.shape)


def test_integer_inputs_stay_within_their_range_and_do_not_touch_the_global_rng():
    import torch

    state = torch.get_rng_state()
    args, kwargs = InputSpec([TensorSpec((4, 50), "int64", high=7)], {"mask": TensorSpec((4, 50), "bool")}).build("cpu")
    assert args[0].dtype == torch.int64 and int(args[0].max()) < 7 and int(args[0].min()) >= 0
    assert kwargs["mask"].all()
    assert torch.equal(torch.get_rng_state(), state)


def test_api_input_size_takes_the_models_input_dtype_as_the_cli_does():
    """``summary(model, input_size=(1, 16))`` on a model that starts with an embedding feeds token ids
    (int64 below num_embeddings), like ``--input 1,16`` does, instead of floats the embedding rejects."""
    import torch
    import torch.nn as nn

    from netscope.inputs import inputs_from

    class Tokens(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(50, 8)
            self.head = nn.Linear(8, 3)

        def forward(self, ids):
            assert ids.dtype == torch.int64 and int(ids.max()) < 50
            return self.head(self.embed(ids))

    spec = inputs_from(Tokens(), input_size=(2, 16))
    assert spec.args[0] == TensorSpec((2, 16), "int64", 50)
    assert inputs_from(Tokens(), input_size=(2, 16), input_dtypes=["float32"]).args[0].dtype == "float32"
    import netscope

    report = netscope.summary(Tokens(), input_size=(2, 16))
    assert report.totals.total_macs == 2 * 16 * 8 * 3  # the head; the embedding lookup is no multiply-add


def test_a_numpy_array_of_whole_numbers_is_a_shape_and_any_other_array_is_refused():
    """numpy integers are fine in a shape, so is a numpy array of them (1-d: a shape, 2-d: shapes); the
    same figures as the tuple. A float array is data, which must be a tensor: one clear error."""
    import numpy as np
    import torch.nn as nn

    import netscope

    model = nn.Conv2d(3, 4, 3)
    expected = netscope.summary(model, input_size=(2, 3, 9, 9), device="cpu").totals.total_macs
    assert expected == 2 * 4 * 3 * 9 * 7 * 7
    for shape in (np.array([2, 3, 9, 9]), np.array([2, 3, 9, 9], dtype=np.int32), np.array([[2, 3, 9, 9]])):
        assert netscope.summary(model, input_size=shape, device="cpu").totals.total_macs == expected
    solved = netscope.solve_input_size(model, np.array([1, 3, 9, 9]), max_size=12)
    assert solved.base_shape == (1, 3, 9, 9)
    with pytest.raises(netscope.NetscopeError, match="numpy array of float32"):
        netscope.summary(model, np.zeros((2, 3, 9, 9), dtype=np.float32))


def test_cli_keyword_inputs_reach_a_keyword_only_forward(tmp_path, capsys):
    """``--input NAME=SHAPE[:DTYPE]`` passes a keyword tensor: a forward with keyword-only arguments runs from
    the command line, with the figures of the same call in Python; bad names are refused (exit 2)."""
    import json

    import torch
    import torch.nn as nn

    import netscope
    from netscope.cli import main

    source = tmp_path / "kwonly.py"
    source.write_text("import torch.nn as nn\n"
                      "class Net(nn.Module):\n"
                      "    def __init__(self):\n"
                      "        super().__init__()\n"
                      "        self.emb, self.fc = nn.Embedding(50, 8), nn.Linear(8, 3)\n"
                      "    def forward(self, x=None, *, ids, scale):\n"
                      "        return self.fc(self.emb(ids) * scale)\n")
    assert main(["summary", f"{source}:Net", "--input", "ids=2,5:int64", "--input", "scale=2,5,1",
                 "--device", "cpu", "-f", "json"]) == 0
    data = json.loads(capsys.readouterr()[0])
    assert data["totals"]["total_macs"] == 2 * 5 * 8 * 3 and data["layers"][1]["input_shapes"] == [[2, 5]]
    import importlib.util

    spec = importlib.util.spec_from_file_location("kwonly", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    reference = netscope.summary(module.Net(), {"ids": torch.randint(0, 50, (2, 5)), "scale": torch.ones(2, 5, 1)},
                                 device="cpu")
    assert reference.totals.total_macs == data["totals"]["total_macs"]
    for bad in ("1x=2,5", "ids=2,5:int64 ids=2,5:int64"):
        args = ["summary", f"{source}:Net", "--device", "cpu"]
        for value in bad.split():
            args += ["--input", value]
        assert main(args) == 2
        assert "--input" in capsys.readouterr()[1]
    assert parse_inputs_kwargs("ids=1,4:int64", "2,3") == ({"ids": ((1, 4), "int64")}, [((2, 3), None)])


def parse_inputs_kwargs(*texts):
    from netscope.inputs import parse_inputs

    spec = parse_inputs(list(texts))
    return {k: (v.shape, v.dtype) for k, v in spec.kwargs.items()}, [(a.shape, a.dtype) for a in spec.args]


def test_detection_input_shapes_are_the_images_of_its_list(capsys):
    """The Run line shows a detection model's input as [3, 512, 512] (one image of its list): that shape given
    back with --input works, each --input is one image, and the figures are those of the model called on
    that list in Python."""
    import json

    import torch
    import torchvision

    import netscope
    from netscope.cli import main

    name = "ssdlite320_mobilenet_v3_large"
    assert main(["summary", name, "--input", "3,320,320", "--input", "3,256,300", "--device", "cpu",
                 "-f", "json", "-q"]) == 0
    data = json.loads(capsys.readouterr()[0])
    assert data["run"]["input_shapes"] == [[[3, 320, 320], [3, 256, 300]]]
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None, weights_backbone=None).eval()
    images = [torch.rand(3, 320, 320), torch.rand(3, 256, 300)]
    assert netscope.summary(model, input_data=(images,), device="cpu").totals.total_macs == data["totals"]["total_macs"]


def test_api_input_size_of_a_detection_model_is_its_list_of_images():
    """``input_size=[(3, H, W), ...]`` in Python is, as ``--input`` on the command line, the images of the one list
    a torchvision detection model takes (it was two positional arguments: images and targets, and the forward
    raised). Oracle: the model's own transform on those images (the batch its backbone receives)."""
    import torch
    import torchvision

    import netscope

    model = torchvision.models.get_model("ssdlite320_mobilenet_v3_large", weights=None,
                                         weights_backbone=None).eval()
    shapes = [(3, 320, 320), (3, 256, 300)]
    report = netscope.summary(model, input_size=shapes, device="cpu", audit_names=False)
    assert report.layers[0].input_shapes == [shapes]
    with torch.no_grad():
        batch = model.transform([torch.rand(*shape) for shape in shapes])[0].tensors
    backbone = next(layer for layer in report.layers if layer.name == "backbone")
    assert backbone.input_shapes == [tuple(batch.shape)]
    assert report.totals.total_params == sum(p.numel() for p in model.parameters())
    assert netscope.summary(model, device="cpu", audit_names=False).layers[0].input_shapes == [[(3, 512, 512)]]


def test_api_input_size_as_a_dict_gives_keyword_inputs_of_those_shapes():
    """``input_size={"ids": (2, 5), "image": (2, 3, 16, 16)}`` is keyword inputs by shape (the API's
    ``--input NAME=SHAPE``); it was taken as data and the model received tuples. Token ids stay integer (the
    default input's dtype under that name). Oracles: the conv's multiply-add formula, ``parameters()``, and the
    shapes a real call produces."""
    import pytest
    import torch
    import torch.nn as nn

    import netscope
    from netscope.errors import InputSpecError

    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(50, 8)
            self.conv = nn.Conv2d(3, 8, 3)

        def forward(self, ids, image):
            return self.emb(ids).mean(1) + self.conv(image).mean((2, 3))

    model = TwoInputs()
    shapes = {"image": (2, 3, 16, 16), "ids": (2, 5)}
    for dtypes in (None, {"ids": torch.int32}):
        report = netscope.summary(model, input_size=shapes, input_dtypes=dtypes, audit_names=False)
        assert report.layers[0].input_shapes == [shapes]
        real = model(ids=torch.zeros(2, 5, dtype=torch.long), image=torch.zeros(2, 3, 16, 16))
        assert report.layers[0].output_shapes == tuple(real.shape)
        assert report.totals.total_macs == 2 * 8 * 14 * 14 * (3 * 3 * 3)  # output elements x in_ch x k x k
        assert report.totals.total_params == sum(p.numel() for p in model.parameters())
    with pytest.raises(InputSpecError, match="input_dtypes must be a dict"):
        netscope.summary(model, input_size=shapes, input_dtypes=["int64", "float32"])


def test_solve_with_keyword_inputs_only_says_what_it_varies():
    import torch
    import torch.nn as nn

    import netscope

    class KeywordOnly(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10, 4)

        def forward(self, *, ids):
            return self.emb(ids)

    with pytest.raises(netscope.NetscopeError, match=r"keywords only \(ids\)"):
        netscope.solve_input_size(KeywordOnly(), {"ids": torch.zeros(1, 5, dtype=torch.long)})


def test_meta_example_tensors_run_on_meta_or_are_refused_clearly():
    """Meta tensors as input_data: with no device given the pass runs on meta (counts as on CPU: 2*3*2
    multiply-adds); forced onto a real device, a clear InputSpecError (exit 2), never a raw NotImplementedError."""
    import torch
    import torch.nn as nn

    import netscope
    from netscope.errors import InputSpecError

    model = nn.Linear(3, 2)
    before = model.weight.detach().clone()
    report = netscope.summary(model, torch.randn(2, 3, device="meta"))
    assert report.run.device == "meta" and report.totals.total_macs == 2 * 3 * 2
    assert report.layers[0].output_shapes == (2, 2) and torch.equal(model.weight, before)
    with pytest.raises(InputSpecError, match="meta tensors"):
        netscope.summary(model, torch.randn(2, 3, device="meta"), device="cpu")


@pytest.mark.parametrize("dtypes", [["torch.long"], "torch.long", "int64", ["long"], ["torch.int32"]])
def test_input_dtypes_take_torch_dtypes_and_a_single_dtype(dtypes):
    """torch.dtype objects (as torchinfo's dtypes= takes them) and one dtype for one shape; the oracle is the dtype
    the model's forward really received."""
    import torch
    import torch.nn as nn

    import netscope

    # "torch.long" stands for the torch.long object (parametrize ids stay torch-free at collection)
    given = [_torch_dtype(d) for d in dtypes] if isinstance(dtypes, list) else _torch_dtype(dtypes)
    seen = []
    model = nn.Embedding(10, 4)
    handle = model.register_forward_pre_hook(lambda module, args: seen.append(args[0].dtype))
    try:
        report = netscope.summary(model, (2, 7), input_dtypes=given)
    finally:
        handle.remove()
    one = dtypes[0] if isinstance(dtypes, list) else dtypes
    expected = {"torch.long": torch.long, "int64": torch.int64, "long": torch.int64, "torch.int32": torch.int32}[one]
    assert seen == [expected] and report.model_output == (2, 7, 4)


def _torch_dtype(text):
    import torch

    return getattr(torch, text.removeprefix("torch.")) if text.startswith("torch.") else text


def test_float_dtype_of_the_pass_takes_a_torch_dtype():
    import torch
    import torch.nn as nn

    import netscope

    seen = []
    model = nn.Linear(4, 3)
    handle = model.register_forward_pre_hook(lambda module, args: seen.append((args[0].dtype, module.weight.dtype)))
    try:
        report = netscope.summary(model, (2, 4), dtype=torch.float64)
    finally:
        handle.remove()
    assert report.run.dtype == "float64" and seen == [(torch.float64, torch.float64)]
    assert model.weight.dtype == torch.float32  # the pass ran on a converted copy


def test_an_explicit_dtype_converts_the_float_tensors_of_input_data_too():
    """dtype= converts the model for the pass, so the float tensors of input_data are converted copies too (a
    float32 tensor into a bfloat16 copy raised 'mat1 and mat2 must have the same dtype', reported as a shape
    problem); integer tensors, and every tensor when no dtype is asked for, go in as given."""
    import torch
    import torch.nn as nn

    import netscope

    seen = []

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.proj = nn.Embedding(10, 4), nn.Linear(4, 4)

        def forward(self, ids, x):
            seen.append((ids.dtype, x.dtype))
            return self.embed(ids) + self.proj(x)

    model = Model()
    ids, x = torch.tensor([[1, 2, 3]]), torch.randn(1, 3, 4)
    report = netscope.summary(model, input_data=(ids, x), dtype=torch.bfloat16)
    assert seen == [(torch.int64, torch.bfloat16)] and report.run.dtype == "bfloat16"
    assert x.dtype == torch.float32 and model.proj.weight.dtype == torch.float32  # the user's, unchanged
    assert any("converted to bfloat16" in note and "args[1] (float32)" in note for note in report.run.notes)
    seen.clear()
    report = netscope.summary(model, input_data=(ids, x))  # no dtype: as given
    assert seen == [(torch.int64, torch.float32)] and not any("converted" in note for note in report.run.notes)
    from netscope.errors import ForwardError

    with pytest.raises(ForwardError, match="Check the inputs' dtypes"):  # float64 into float32 layers: say dtype
        netscope.summary(model, input_data=(ids, x.double()))


def test_api_takes_torch_dtypes_as_well_as_names():
    """``dtype=torch.bfloat16`` and ``input_dtypes=[torch.int64]`` (what a Python caller has at hand) mean what
    their names mean; they raised AttributeError ('torch.dtype' object has no attribute 'strip')."""
    import torch
    import torch.nn as nn

    import netscope

    model = nn.Sequential(nn.Embedding(50, 8), nn.Linear(8, 4))
    by_object = netscope.summary(model, input_size=(2, 5), input_dtypes=[torch.int64], dtype=torch.bfloat16)
    by_name = netscope.summary(model, input_size=(2, 5), input_dtypes=["int64"], dtype="bf16")
    assert by_object.run.dtype == by_name.run.dtype == "bfloat16"
    assert by_object.totals.param_bytes == by_name.totals.param_bytes == 2 * sum(p.numel() for p in model.parameters())
    assert model[1].weight.dtype == torch.float32  # the pass ran on a converted copy
    with pytest.raises(InputSpecError, match="torch.dtype"):
        netscope.summary(model, input_size=(2, 5), dtype=16)
