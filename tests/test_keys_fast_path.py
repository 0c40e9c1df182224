"""Hypothesis properties of the torch-free listing of zip torch.save files (``torch_zip`` plus the column-wise
``netscope keys`` table): on generated state dicts (many dtypes, shared storages, views with offsets,
non-contiguous and expanded strides, empty and 0-d tensors, Parameters, nesting) it gives exactly what
``torch.load`` gives, and every cell of the listing is what the real tensors say."""

from __future__ import annotations

import math
import os
import tempfile

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netscope.checkpoints import inspect_checkpoint, readers, torch_format, torch_zip
from netscope.commands import keys as keys_command

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.float8_e4m3fn, torch.float8_e5m2,
          torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool, torch.complex64]
VIEWS = ["fresh", "tied", "transposed", "row", "strided", "tail", "expanded", "empty", "scalar", "parameter"]

tensor_spec = st.tuples(st.sampled_from(DTYPES), st.lists(st.integers(1, 5), min_size=2, max_size=3),
                        st.sampled_from(VIEWS))


def _tensor(dtype, shape, view, earlier):
    """A tensor for one key: a fresh one, or a view of (or the very) tensor saved under an earlier key."""
    base = earlier[-1] if earlier and view not in ("fresh", "empty", "scalar", "parameter", "expanded") else None
    if base is None or base.dim() < 2 or base.numel() == 0:
        base = torch.zeros(shape, dtype=dtype)
        if view in ("tied", "row", "strided", "tail", "transposed"):
            view = "fresh"
    return {
        "fresh": lambda: base,
        "tied": lambda: base,  # the same tensor object under a second key
        "transposed": lambda: base.t() if base.dim() == 2 else base.transpose(0, 2),
        "row": lambda: base[-1],  # a view with an offset
        "strided": lambda: base[:, ::2],
        "tail": lambda: base[1:],
        "expanded": lambda: torch.zeros(1, shape[-1], dtype=dtype).expand(3, shape[-1]),
        "empty": lambda: torch.zeros(0, shape[-1], dtype=dtype),
        "scalar": lambda: torch.zeros((), dtype=dtype),
        "parameter": lambda: torch.nn.Parameter(torch.zeros(shape, dtype=dtype), requires_grad=False),
    }[view]()


def _state_dict(specs):
    state, earlier = {}, []
    for number, (dtype, shape, view) in enumerate(specs):
        tensor = _tensor(dtype, shape, view, earlier)
        earlier.append(tensor)
        state[f"block.{number % 3}.layer{number}.weight"] = tensor
    return state


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=st.lists(tensor_spec, min_size=1, max_size=10), nested=st.booleans())
def test_fast_listing_equals_torch_load(specs, nested):
    state = _state_dict(specs)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.pt")
        torch.save({"model": state, "epoch": 3} if nested else state, path)
        torch_zip.read_container(path)  # the fast path covers the file (raises when it would fall back)
        fast = inspect_checkpoint(path)
        container, notes = torch_format.load(path, weights_only=True, mmap=True)
        oracle = readers._info_from_container(path, "torch", container, notes)[0]
        assert list(fast.tensors.items()) == list(oracle.tensors.items())
        assert fast == oracle and fast.to_dict() == oracle.to_dict()
        assert fast.total_bytes == oracle.total_bytes

        # every cell of the listing, against the real tensors (not against netscope's own records)
        table = keys_command.tensor_columns(fast)
        owners = {}
        for row, (key, tensor) in enumerate(state.items()):
            numel, nbytes = tensor.numel(), tensor.numel() * tensor.element_size()
            owner = owners.setdefault(tensor.untyped_storage()._cdata, key)  # one storage, whatever the view
            assert table["key"][row] == key
            assert table["shape"][row] == str(list(tensor.shape))  # as names and summary write shapes
            assert table["dtype"][row] == str(tensor.dtype).rpartition(".")[2]
            assert table["elements"][row] == numel == math.prod(tensor.shape)
            assert table["bytes"][row] == nbytes
            assert table["size"][row] == keys_command.human_bytes(nbytes)
            assert table["shares_storage_with"][row] == ("" if owner == key else owner)
        text = keys_command.render_listing(fast, table, "table", "simple")
        largest, reached, keys = {}, {}, {}  # per storage: its largest view; the bytes from each view's first to last
        for tensor in state.values():  # element; how many keys use it
            ptr = tensor.untyped_storage()._cdata
            largest[ptr] = max(largest.get(ptr, 0), tensor.numel() * tensor.element_size())
            keys[ptr] = keys.get(ptr, 0) + 1
            if tensor.numel():
                index = torch.arange(tensor.untyped_storage().nbytes() // tensor.element_size()).as_strided(
                    tensor.shape, tensor.stride(), tensor.storage_offset())  # the storage elements the view reads
                size = tensor.element_size()
                reached.setdefault(ptr, set()).update(range(int(index.min()) * size, (int(index.max()) + 1) * size))
        shared = len(largest) < len(state)
        # a storage several keys share: the bytes their views reach together, counted once (at least the largest view)
        total = sum(max(n, len(reached.get(ptr, ())) if keys[ptr] > 1 else 0) for ptr, n in largest.items())
        assert f"{sum(t.numel() for t in state.values()):,} elements" in text
        assert f"({total:,} bytes" + ("; a storage several keys share counted once)" if shared else ")") in text
