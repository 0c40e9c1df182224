"""The Python API as a notebook user meets it, with inputs nobody designed for: every bad call raises one
``netscope.errors`` exception with a clear message, never an AttributeError/TypeError from deep inside, and
every report of an odd model output is JSON-able and typed as the README says."""

from __future__ import annotations

import dataclasses
import json
import threading

import numpy as np
import pytest
import torch
import torch.nn as nn

import netscope
from netscope.errors import ForwardError, NetscopeError


class Returns(nn.Module):
    """A Linear whose output goes through ``wrap`` (None, a dict, a dataclass, a complex or sparse tensor...)."""

    def __init__(self, wrap):
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.wrap = wrap

    def forward(self, x):
        return self.wrap(self.linear(x))


@dataclasses.dataclass
class Pair:
    tensor: torch.Tensor
    count: int


OUTPUTS = {
    "none": lambda y: None,
    "dict": lambda y: {"a": y, 1: [y, 3], (2, 3): y},
    "dataclass": lambda y: Pair(y, 3),
    "nested": lambda y: ((y, (y, None)), "text"),
    "complex": lambda y: torch.complex(y, y),
    "sparse": lambda y: y.to_sparse(),
    "nan": lambda y: float("nan"),
    "numpy": lambda y: y.detach().numpy(),
    "torch objects": lambda y: (torch.float32, torch.device("cpu"), torch.Size([1])),
}


@pytest.mark.parametrize("kind", sorted(OUTPUTS))
def test_odd_outputs_give_strict_json_and_a_typed_frame(kind):
    report = netscope.summary(Returns(OUTPUTS[kind]), input_data=torch.randn(2, 4))
    text = json.dumps(report.to_dict(), allow_nan=False)  # strict JSON, no custom encoder
    assert json.loads(text)["layers"][1]["output_shapes"] == [2, 3]  # the Linear's own output, as torch made it
    frame = report.to_dataframe()
    assert str(frame["macs"].dtype) == "int64" and frame["macs"].tolist() == [24, 24]  # 2*4*3, as nn.Linear does
    assert frame["output_shapes"][1] == (2, 3)
    assert str(frame["trainable"].dtype) == "boolean"
    assert "<table" in report._repr_html_() and report.render()


def test_huggingface_model_output_keeps_its_field_names():
    outputs = pytest.importorskip("transformers.modeling_outputs", reason="needs transformers")
    report = netscope.summary(Returns(lambda y: outputs.BaseModelOutput(last_hidden_state=y)),
                              input_data=torch.randn(2, 4))
    assert json.loads(json.dumps(report.to_dict()))["output"] == {"last_hidden_state": [2, 3]}


def test_a_failed_pass_partial_report_says_the_pass_failed():
    """``err.report`` (what ran before the failure) must not read as a complete summary: its totals count only the
    calls that ran, so the text, JSON and DataFrame rows say the pass failed, naming the layer."""
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(5, 3))
    with pytest.raises(ForwardError) as caught:
        netscope.summary(model, (2, 4))
    report = caught.value.report
    assert report is not None
    notes = report.to_dict()["run"]["notes"]
    assert any("failed" in note and "'1'" in note for note in notes), notes
    assert "forward pass failed" in report.render()
    frame = report.to_dataframe()
    assert frame["output_shapes"].tolist()[2] == "(failed)"
    assert str(frame["macs"].dtype) == "int64"
    json.dumps(report.to_dict(), allow_nan=False)


@pytest.mark.parametrize("size", [(np.int64(2), np.int32(4)), torch.Size([2, 4]), np.array([2, 4]),
                                  [np.array([2, 4])], [torch.Size([2, 4])], {"input": (np.int64(2), 4)}])
def test_shapes_as_numpy_and_torch_objects(size):
    report = netscope.summary(nn.Linear(4, 3), size)
    assert json.loads(json.dumps(report.to_dict()))["layers"][0]["output_shapes"] == [2, 3]


def test_a_list_of_shapes_may_mix_numpy_arrays_and_tuples():
    report = netscope.summary(nn.Bilinear(4, 5, 2), [np.array([3, 4]), (3, 5)])
    assert report.layers[0].output_shapes == (3, 2)
    assert json.loads(json.dumps(report.to_dict()))["run"]["input_shapes"] == [[3, 4], [3, 5]]


@pytest.mark.parametrize("dtype", [np.int64, np.dtype("int64"), torch.long, "int64"])
def test_input_dtypes_as_numpy_or_torch(dtype):
    report = netscope.summary(nn.Embedding(10, 3), (2, 5), input_dtypes=dtype)
    assert report.layers[0].output_shapes == (2, 5, 3) and report.totals.total_params == 30


BAD_CALLS = {
    "input_size 0": lambda: netscope.summary(nn.Linear(4, 3), (0, 4)),
    "input_size -1": lambda: netscope.summary(nn.Linear(4, 3), (-1, 4)),
    "input_size float": lambda: netscope.summary(nn.Linear(4, 3), (2.5, 4)),
    "input_size text": lambda: netscope.summary(nn.Linear(4, 3), "2,4"),
    "input_data numpy": lambda: netscope.summary(nn.Linear(4, 3), input_data=np.zeros((2, 4), np.float32)),
    "input_data int": lambda: netscope.summary(nn.Linear(4, 3), input_data=3),
    "InputSpec of shapes": lambda: netscope.summary(nn.Linear(4, 3), netscope.InputSpec([(2, 4)])),
    "InputSpec of text": lambda: netscope.summary(nn.Linear(4, 3), netscope.InputSpec("2,4")),
    "InputSpec kwargs": lambda: netscope.summary(nn.Linear(4, 3), netscope.InputSpec([], {"x": (2, 4)})),
    "TensorSpec 0 dim": lambda: netscope.summary(nn.Linear(4, 3), netscope.InputSpec([netscope.TensorSpec((0, 4))])),
    "input_dtypes numpy float": lambda: netscope.summary(nn.Linear(4, 3), (2, 4), input_dtypes=np.complex64),
    "solve a function": lambda: netscope.solve_input_size(lambda x: x, (1, 3, 8, 8)),
    "keys None": lambda: netscope.keys(None),
    "keys int": lambda: netscope.keys(3),
    "input_data dict, int key": lambda: netscope.summary(nn.Linear(4, 3), input_data={1: torch.randn(2, 4)}),
    "input_dtypes dict, shape tuple": lambda: netscope.summary(nn.Linear(4, 3), (2, 4), input_dtypes={"x": "int64"}),
    "input_dtypes set": lambda: netscope.summary(nn.Linear(4, 3), [(2, 4), (2, 4)], input_dtypes={"int64", "bool"}),
    "render width -5": lambda: netscope.summary(nn.Linear(4, 3), (2, 4)).render(width=-5),
    "render width text": lambda: netscope.summary(nn.Linear(4, 3), (2, 4)).render(width="80"),
}


@pytest.mark.parametrize("name", sorted(BAD_CALLS))
def test_bad_calls_raise_one_netscope_error(name):
    with pytest.raises(NetscopeError) as caught:
        BAD_CALLS[name]()
    assert not isinstance(caught.value, ForwardError)  # refused before the model runs, as the caller's mistake
    message = str(caught.value)
    assert message and "Traceback" not in message and "\n" not in message.strip()


def test_numpy_data_is_refused_with_the_conversion_to_use():
    for data in (np.zeros((2, 4), np.float32), np.float32(3)):
        with pytest.raises(NetscopeError, match=r"torch\.from_numpy|torch\.tensor"):
            netscope.summary(nn.Linear(4, 3), input_data=data)


def test_input_dtypes_by_keyword_need_shapes_by_keyword():
    with pytest.raises(NetscopeError, match="dict of shapes by keyword"):
        netscope.summary(nn.Linear(4, 3), (2, 4), input_dtypes={"x": "int64"})


def test_registering_a_formula_twice_replaces_the_users_own_and_refuses_netscopes_saying_how():
    """A notebook cell with ``@netscope.register_macs`` run again replaces the user's earlier formula (the last one
    is the one looked up); over one of netscope's own formulas, one OperatorRegistryError saying what to do."""
    from netscope.errors import OperatorRegistryError
    from netscope.operators.registry import REGISTRY

    name = "netscope_api_edges::twice"
    torch.library.define(name, "(Tensor x) -> Tensor")
    try:
        netscope.register_macs(name)(lambda x, out_val=None: x.numel())
        netscope.register_macs(name)(lambda x, out_val=None: 2 * x.numel())
        kind, formula = REGISTRY.resolve(getattr(torch.ops.netscope_api_edges, "twice").default)
        assert kind == "formula" and formula(torch.zeros(3, 2), out_val=torch.zeros(3, 2)) == 12
    finally:
        REGISTRY.unregister(name)
    with pytest.raises(OperatorRegistryError, match=r"registered twice.*unregister"):
        netscope.register_macs("aten::mv")(lambda *a, out_val=None: 0)


def test_an_in_memory_checkpoint_container_is_searched_as_a_file_is():
    """``torch.load`` gives ``{"state_dict": ..., "epoch": 3}``; passed to diff/remap in Python it must be read as
    the same file would be (the nested state dict found), not as a state dict with no tensors (all 'missing')."""
    model = nn.Sequential(nn.Linear(4, 3))
    container = {"state_dict": model.state_dict(), "epoch": 3}
    assert netscope.diff(container, model).coverage.fraction == 1.0
    new, report = netscope.remap(container, model)
    assert report.coverage.fraction == 1.0 and torch.equal(new["0.weight"], model.state_dict()["0.weight"])


def test_a_state_dict_of_numpy_arrays_is_refused_with_the_conversion():
    """Numpy values under the model's own names must not read as 'no checkpoint tensor for it'."""
    model = nn.Sequential(nn.Linear(4, 3))
    arrays = {k: v.numpy() for k, v in model.state_dict().items()}
    for call in (netscope.diff, netscope.remap, netscope.load):
        with pytest.raises(NetscopeError, match="numpy.*torch.from_numpy"):
            call(arrays, model)


def test_remap_file_names_its_checkpoint_argument():
    model = nn.Sequential(nn.Linear(4, 3))
    with pytest.raises(NetscopeError, match="path"):
        netscope.remap_file(model.state_dict(), model, "unused.pt")


def test_grad_modes_threads_and_train_flags_are_left_as_given():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.5)).train()
    model[1].eval()  # mixed flags: each one must come back as it was
    flags = [m.training for m in model.modules()]
    with torch.inference_mode():
        inside = netscope.summary(model, (2, 4))
        assert torch.is_inference_mode_enabled()
    with torch.no_grad():
        netscope.summary(model, (2, 4))
        assert not torch.is_grad_enabled()
    assert torch.is_grad_enabled()
    found = {}
    thread = threading.Thread(target=lambda: found.setdefault("report", netscope.summary(model, (2, 4))))
    thread.start()
    thread.join()
    assert [m.training for m in model.modules()] == flags
    assert found["report"].totals.total_macs == inside.totals.total_macs == 2 * 4 * 4


def test_reports_and_errors_pickle():
    """A report leaves a worker process (ProcessPoolExecutor, joblib) or a notebook's cache by pickle; so does a
    ForwardError with its partial report. torch's operator objects do not pickle: the copy must answer the same."""
    import pickle

    report = netscope.summary(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 2)),
                              (2, 3, 8, 8))
    copy = pickle.loads(pickle.dumps(report))
    assert copy.to_dict() == report.to_dict() and copy.render() == report.render()
    assert copy.by_operator(per_module=True).equals(report.by_operator(per_module=True))
    with pytest.raises(ForwardError) as caught:
        netscope.summary(nn.Sequential(nn.Linear(4, 4), nn.Linear(5, 3)), (2, 4))
    error = pickle.loads(pickle.dumps(caught.value))
    assert str(error) == str(caught.value) and error.layer == "1"
    assert error.report.to_dict() == caught.value.report.to_dict()


NOTEBOOK_CELLS = [
    "import torch, torch.nn as nn, netscope\n"
    "class Bumps(nn.Module):\n"
    "    def __init__(self):\n"
    "        super().__init__()\n"
    "        self.linear = nn.Linear(4, 3)\n"
    "    def forward(self, x):\n"
    "        return self.linear(x.add_(1))",
    # two reports in one cell, each displayed
    "a = netscope.summary(nn.Conv2d(3, 4, 3), (1, 3, 8, 8))\nb = netscope.summary(nn.Linear(4, 2), (2, 4))\n"
    "display(a)\ndisplay(b)",
    "x = torch.zeros(2, 4)\nnetscope.summary(Bumps(), input_data=x)",
    "try:\n    netscope.summary(nn.Sequential(nn.Linear(4, 4), nn.Linear(5, 3)), (2, 4))\n"
    "except netscope.NetscopeError as err:\n    failed = err\nfailed.report",
]


def test_the_notebook_view_shows_each_report_and_the_run_notes(tmp_path):
    """In a real notebook: two reports displayed from one cell are two views; what the run notes (your input
    written in place, a failed pass's report holding only what ran) is in the view a notebook shows, not only
    in print(report)."""
    import os

    nbformat = pytest.importorskip("nbformat", reason="needs nbformat (the 'test' extra)")
    nbclient = pytest.importorskip("nbclient", reason="needs nbclient (the 'test' extra)")
    pytest.importorskip("ipykernel", reason="needs ipykernel (the 'test' extra)")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in NOTEBOOK_CELLS])
    env = {"PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel imports this checkout's netscope, as the tests do
    try:
        nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        for key, value in old.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
    shown = [[o for o in cell.outputs if "text/html" in o.get("data", {})] for cell in notebook.cells]
    two = shown[1]
    assert [o.data["text/plain"].split(" ·")[0] for o in two] == ["Conv2d", "Linear"]
    assert all("<table" in o.data["text/html"] for o in two)
    assert "wrote into these inputs in place" in shown[2][0].data["text/html"]
    assert "forward pass failed in layer &#x27;1&#x27;" in shown[3][0].data["text/html"]
