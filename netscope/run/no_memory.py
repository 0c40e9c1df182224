"""No-memory mode: parameters and buffers on the meta device, the rest of the model untouched."""

from __future__ import annotations

import collections
import contextlib
import copy
import functools
import sys
import weakref
from typing import Callable, Iterator, Optional, Tuple, TypeVar

T = TypeVar("T")


# torch.nn.init functions skipped for meta tensors in the no-memory build: there is nothing to fill, and
# meta ``normal_`` goes through torch._refs, which imports torch._dynamo (about 1 s and 176 MB).
_INIT_FUNCTIONS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
                   "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_",
                   "sparse_")


@contextlib.contextmanager
def empty_weights(enabled: bool = True) -> Iterator[None]:
    """Build models inside this block with parameters and buffers re-homed to the meta device.

    Unlike ``with torch.device("meta")``, ordinary tensors created in ``__init__`` stay on the CPU, so
    constructors that compute values and call ``.tolist()`` (torchvision's regnet) still work. Same
    idea as accelerate's ``init_empty_weights``; the patch lives only inside this block.

    The model's identity structure survives: one tensor registered under several names (or in
    several modules) gets one meta twin, and distinct tensors over one storage get meta views of
    one meta storage. Lazy modules' uninitialised tensors are re-created on meta, so the first
    forward materialises them there. ``torch.nn.init`` functions do nothing to meta tensors.
    """
    if not enabled:
        yield
        return
    import torch
    import torch.nn as nn

    twins = _MetaTwins()
    original_register_parameter = nn.Module.register_parameter
    original_register_buffer = nn.Module.register_buffer

    def register_parameter(module, name, param):
        original_register_parameter(module, name, param)
        if param is not None and param.device.type != "meta":
            module._parameters[name] = twins.parameter(module._parameters[name])

    def register_buffer(module, name, tensor, persistent=True):
        original_register_buffer(module, name, tensor, persistent=persistent)
        if tensor is not None and isinstance(tensor, torch.Tensor) and tensor.device.type != "meta":
            module._buffers[name] = twins.buffer(module._buffers[name])

    originals = {name: getattr(nn.init, name) for name in _INIT_FUNCTIONS if hasattr(nn.init, name)}
    from netscope.run.model_state import GLOBAL_STATE_LOCK

    with GLOBAL_STATE_LOCK, quantization_refused():  # the patches are process-wide: one build at a time
        nn.Module.register_parameter = register_parameter
        nn.Module.register_buffer = register_buffer
        for name, function in originals.items():
            setattr(nn.init, name, _skipping_meta(function))
        try:
            yield
        finally:
            nn.Module.register_parameter = original_register_parameter
            nn.Module.register_buffer = original_register_buffer
            for name, function in originals.items():
                setattr(nn.init, name, function)


BUILD_DESCRIPTIONS = {
    "meta": "parameters on the meta device (no memory)",
    "fake": "fake tensors, then parameters on the meta device (no memory)",
    "cpu": "real weights on the CPU",
}


@contextlib.contextmanager
def fake_tensors() -> Iterator[None]:
    """Build models inside this block with every tensor a fake tensor (shapes and dtypes, no data).

    The fallback for constructors the meta build cannot run, e.g. ones that combine a parameter with
    a fresh CPU tensor. Values still cannot be read (``.item()`` fails here too).
    """
    from torch._subclasses.fake_tensor import FakeTensorMode

    with quantization_refused(), FakeTensorMode(allow_non_fake_inputs=True):
        yield


# Eager-mode quantization entry points: their native kernels (fusing, packing weights) read tensor data
# and crash the process on meta tensors (torchvision's quantized models segfault in fuse_modules), which
# no fallback could catch; inside a no-memory build they raise instead, so the real build is used.
_QUANTIZATION_ENTRY_POINTS = ("fuse_modules", "fuse_modules_qat", "prepare", "prepare_qat", "convert",
                              "quantize", "quantize_dynamic")


@contextlib.contextmanager
def quantization_refused() -> Iterator[None]:
    """Make ``torch.ao.quantization``'s eager entry points raise (only where that package is loaded)."""
    package = sys.modules.get("torch.ao.quantization")
    originals = {name: getattr(package, name) for name in _QUANTIZATION_ENTRY_POINTS
                 if package is not None and hasattr(package, name)}

    def refuse(name):
        def refused(*args, **kwargs):
            raise RuntimeError(f"torch.ao.quantization.{name} runs native kernels that need tensor values; "
                               "a quantized model is built with real weights")
        return refused

    for name in originals:
        setattr(package, name, refuse(name))
    try:
        yield
    finally:
        for name, function in originals.items():
            setattr(package, name, function)


def build_without_memory(build: Callable[[bool], T], retry: Callable[[BaseException], bool],
                         module_of: Callable[[T], object]) -> Tuple[T, str, Tuple[str, ...]]:
    """``build(empty_weights)`` as cheaply as it runs: on meta, else with fake tensors (whose parameters
    and buffers are then re-homed to meta, so every later step sees an ordinary meta model), else for
    real on the CPU. Returns the result, the build used (a key of ``BUILD_DESCRIPTIONS``) and why each
    cheaper build failed. Exceptions ``retry`` rejects (bad spec, not a failing constructor) propagate
    at once; the real build's own exception propagates unchanged."""
    failures = []
    for kind, context in (("meta", empty_weights), ("fake", fake_tensors)):
        try:
            with context():
                result = build(kind == "meta")
            if kind == "fake":
                fake_to_meta(module_of(result))
            return result, kind, tuple(failures)
        except Exception as exc:  # the constructor cannot run without memory: try the next build
            if not retry(exc):
                raise
            failures.append(f"{kind}: {_cause_text(exc)}")
    return build(False), "cpu", tuple(failures)


def fake_to_meta(model) -> None:
    """Replace ``model``'s fake parameters and buffers by meta ones, keeping its identity structure
    (one twin per tensor object, one meta storage per fake storage)."""
    import torch
    import torch.nn as nn

    from netscope.checkpoints.identity import storage_key

    bases, twins, keep = {}, {}, []  # keep: originals stay alive, so their ids are not recycled meanwhile

    def twin(tensor, parameter: bool):
        if id(tensor) not in twins:
            keep.append(tensor)
            key = storage_key(tensor)
            if key is None:
                meta = torch.empty_strided(tensor.shape, tensor.stride(), dtype=tensor.dtype, device="meta")
            else:
                if (key, tensor.dtype) not in bases:
                    size = tensor.untyped_storage().nbytes() // tensor.element_size()
                    bases[(key, tensor.dtype)] = torch.empty(size, dtype=tensor.dtype, device="meta")
                meta = bases[(key, tensor.dtype)].as_strided(tensor.shape, tensor.stride(), tensor.storage_offset())
            twins[id(tensor)] = nn.Parameter(meta, requires_grad=tensor.requires_grad) if parameter else meta
        return twins[id(tensor)]

    for module in model.modules():
        for table, parameter in ((module._parameters, True), (module._buffers, False)):
            for name, tensor in list(table.items()):
                if tensor is not None and tensor.device.type != "meta":
                    table[name] = twin(tensor, parameter)


def _cause_text(exc: BaseException) -> str:
    cause = exc.__cause__ or exc
    first = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    return f"{type(cause).__name__}: {first}" if first else type(cause).__name__


def _skipping_meta(function):
    @functools.wraps(function)
    def init(tensor, *args, **kwargs):
        if getattr(tensor, "device", None) is not None and tensor.device.type == "meta":
            return tensor
        return function(tensor, *args, **kwargs)

    return init


class _MetaTwins:
    """Meta twins of the tensors one build registers: one twin per tensor object, one meta storage
    per real storage. Originals are held weakly (their memory is what the build must not keep), and a
    twin is reused only while its original (object or storage) is alive, so a recycled ``id`` or
    address never aliases two tensors."""

    def __init__(self):
        self._by_object = {}  # id(original) -> (weakref to original, twin)
        self._by_storage = {}  # (device, data_ptr, dtype) -> (weak reference to the storage, meta base)

    def parameter(self, tensor):
        def make(meta):
            kwargs = dict(tensor.__dict__)
            kwargs["requires_grad"] = tensor.requires_grad
            return type(tensor)(meta, **kwargs)

        return self._twin(tensor, make)

    def buffer(self, tensor):
        return self._twin(tensor, lambda meta: meta)

    def _twin(self, tensor, make):
        import torch.nn as nn

        known = self._by_object.get(id(tensor))
        if known is not None and known[0]() is tensor:
            return known[1]
        if isinstance(tensor, nn.parameter.UninitializedTensorMixin):  # lazy: no data yet; materialise on meta
            twin = type(tensor)(requires_grad=tensor.requires_grad, device="meta", dtype=tensor.dtype)
        else:
            twin = make(self._meta_view(tensor))
        self._by_object[id(tensor)] = (_weak(tensor), twin)
        return twin

    def _meta_view(self, tensor):
        """``tensor`` on meta; a view of the meta storage already made for the same real storage."""
        import torch
        from torch.multiprocessing.reductions import StorageWeakRef

        try:
            storage = tensor.untyped_storage()
            key = (str(tensor.device), storage.data_ptr(), tensor.dtype) if storage.nbytes() else None
        except (RuntimeError, NotImplementedError, TypeError):  # tensor subclasses without storage
            key = None
        if key is None:
            return tensor.detach().to("meta")
        known = self._by_storage.get(key)
        if known is None or known[0].expired():
            base = torch.empty(storage.nbytes() // tensor.element_size(), dtype=tensor.dtype, device="meta")
            known = (StorageWeakRef(storage), base)
            self._by_storage[key] = known
        return known[1].as_strided(tensor.shape, tensor.stride(), tensor.storage_offset())


def _weak(tensor):
    try:
        return weakref.ref(tensor)
    except TypeError:  # a tensor type without weak references: never reused
        return lambda: None


def meta_copy(model, empty=None):
    """A structural copy of ``model`` whose parameters and buffers live on the meta device.

    The user's model is not touched: every parameter and buffer is pre-seeded in deepcopy's memo
    with a meta twin (tied tensors stay tied, views of one storage stay views of one twin storage), so no real
    tensor data is copied or moved.
    ``empty``: makes each twin from the original tensor instead (e.g. a fake tensor on the CPU).
    """
    import torch
    import torch.nn as nn

    from netscope.checkpoints.identity import storage_key

    empty = empty or (lambda tensor: torch.empty_like(tensor, device="meta"))
    tensors = list({id(t): t for t in list(model.parameters()) + list(model.buffers())}.values())
    keys = [storage_key(t) for t in tensors]
    counts = collections.Counter(keys)
    bases = {}  # (storage, dtype) -> the twin of the whole storage, for storages that tensors view in part
    memo = {}
    for tensor, key in zip(tensors, keys):
        data = None
        # views of one storage (a buffer registered as a slice of another), or a view of a larger one: views of
        # one twin storage of the same size, so its memory is counted once and as a whole, as on the original
        if key is not None and (counts[key] > 1
                                or tensor.untyped_storage().nbytes() != tensor.numel() * tensor.element_size()):
            try:
                if (key, tensor.dtype) not in bases:
                    size = tensor.untyped_storage().nbytes() // tensor.element_size()
                    bases[key, tensor.dtype] = empty(tensor.detach().as_strided((size,), (1,), 0))
                data = bases[key, tensor.dtype].as_strided(tensor.shape, tensor.stride(), tensor.storage_offset())
            except (RuntimeError, NotImplementedError, TypeError):  # a tensor subclass without views: its own twin
                data = None
        if data is None:
            data = empty(tensor)
        parameter = isinstance(tensor, nn.Parameter)
        memo[id(tensor)] = nn.Parameter(data, requires_grad=tensor.requires_grad) if parameter else data
    return copy.deepcopy(model, seed_derived_tensors(model, memo, empty))


def seed_derived_tensors(model, memo: dict, make) -> dict:
    """Pre-seed deepcopy's ``memo`` with ``make(tensor.detach())`` for each tensor a module holds as a plain
    attribute that autograd computed (not a leaf): ``torch.nn.utils.weight_norm`` and ``spectral_norm`` keep
    ``module.weight`` so, recomputed by their forward pre-hook, and torch refuses to deep-copy such a tensor.
    Returns ``memo``."""
    import torch

    for module in model.modules():
        for value in vars(module).values():
            if isinstance(value, torch.Tensor) and value.grad_fn is not None and id(value) not in memo:
                memo[id(value)] = make(value.detach())
            elif isinstance(value, torch.fx.Graph):
                _share_graph_metadata(value, memo)
    return memo


def _share_graph_metadata(graph, memo: dict) -> None:
    """An fx graph a module keeps and runs (``torch.export.unflatten``'s modules) carries fake tensors in its
    nodes' ``meta`` (``val``: shapes for tooling), which deepcopy refuses: the copy shares them, never writes them."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensor

    for node in graph.nodes:
        for value in torch.utils._pytree.tree_leaves(node.meta):
            if isinstance(value, FakeTensor):
                memo.setdefault(id(value), value)


def weight_bytes(model, dtype: Optional[str] = None) -> int:
    """Bytes of ``model``'s distinct parameters and buffers, as built and (when larger) in float ``dtype``.

    Works on a structural (meta) build: only shapes and dtypes are read.
    """
    import torch

    target = getattr(torch, dtype) if dtype else None
    built = converted = 0
    seen = set()
    for tensor in list(model.parameters()) + list(model.buffers()):
        if id(tensor) in seen or isinstance(tensor, torch.nn.parameter.UninitializedTensorMixin):
            continue  # a lazy tensor has no size until its first pass (sized then, on the device it runs on)
        seen.add(id(tensor))
        numel = tensor.numel()
        built += numel * tensor.element_size()
        if target is not None and tensor.is_floating_point():
            converted += numel * target.itemsize
        else:
            converted += numel * tensor.element_size()
    return max(built, converted)
