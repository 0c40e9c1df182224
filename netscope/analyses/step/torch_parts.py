"""The private PyTorch parts the training-step view relies on, each imported behind a clear message.

- ``torch._subclasses.fake_tensor.FakeTensorMode``: tensors with shapes, dtypes, devices and storages
  but no memory, so the real forward, backward and optimizer step run at any size;
- ``torch.distributed._tools.mem_tracker.MemTracker``: live bytes by category (parameters, gradients,
  optimizer state, activations, temporaries) through a step, and its peak;
- ``torch._C._current_autograd_node``: the autograd node running a backward operator.
"""

from __future__ import annotations

from netscope.errors import DependencyError

_UPGRADE = ("netscope step relies on it (tested with torch 2.14); upgrade torch, or use netscope summary for "
            "forward-only figures")


def fake_tensor_mode():
    """A FakeTensorMode that also accepts real and meta tensors as inputs."""
    try:
        from torch._subclasses.fake_tensor import FakeTensorMode
    except ImportError as err:
        raise DependencyError(f"torch has no FakeTensorMode here ({err}); {_UPGRADE}") from None
    return FakeTensorMode(allow_non_fake_inputs=True)


class _NoHook:
    """Stands for a hook handle where none is needed."""

    def remove(self) -> None:
        return None


_NO_HOOK = _NoHook()


class _Held:
    """What MemTracker reads of a module (its parameters and buffers), limited to the given ones."""

    def __init__(self, params: list, buffers: list):
        self._params, self._buffers = params, buffers

    def parameters(self):
        return iter(self._params)

    def buffers(self):
        return iter(self._buffers)


def timeline_tracker(device: str):
    """A ``MemTracker`` that records, after every operator, the live bytes on ``device`` as
    ``(total, parameters, gradients, optimizer state)`` in ``.timeline``.

    It replaces MemTracker's per-operator walk over every module's peak (quadratic in model size: most
    of a 7B step's time) by that one record; everything else, including which tensor is which kind
    and when it is freed, is MemTracker's own.
    """
    import torch

    try:
        from torch.distributed._tools.mem_tracker import MemTracker, _MemRefType
    except ImportError as err:
        raise DependencyError(f"torch.distributed._tools.mem_tracker.MemTracker is missing ({err}); {_UPGRADE}") from None
    if not hasattr(MemTracker, "_update_peak_stats"):
        raise DependencyError(f"this torch's MemTracker has no _update_peak_stats to hook; {_UPGRADE}")
    from torch._C._functorch import is_functorch_wrapped_tensor
    from torch.utils._pytree import tree_map_only

    from netscope.run.model_state import function_modes_aside
    from netscope.run.trace import _under

    keys = (_MemRefType.PARAM, _MemRefType.GRAD, _MemRefType.OPT)
    where = torch.device(device)

    class TimelineTracker(MemTracker):
        def __init__(self):
            super().__init__()
            self.timeline = []
            # its module hooks (ModTracker's, which run MemTracker's) are netscope's bookkeeping inside the model's
            # calls: out of sight of a user's TorchFunctionMode, which sees the model's own code
            tracker = self._mod_tracker
            for hook in ("_fw_pre_hook", "_fw_post_hook"):
                if hasattr(tracker, hook):
                    setattr(tracker, hook, _under(function_modes_aside, getattr(tracker, hook)))

        def track_step(self, model, optimizer, inputs) -> None:
            """``track_external``, and no gradient hooks on frozen parameters (MemTracker would try to
            register one, which torch refuses for a tensor that does not require grad)."""
            for param in model.parameters():
                if not param.requires_grad:
                    self._param_to_grad_hook_handles[param] = (_NO_HOOK, _NO_HOOK)
            from netscope.run.user_inputs import tensors_inside

            tensors: dict = {}  # MemTracker takes tensors, modules and optimizers only: not a flag or a cache object
            tensors_inside(inputs, tensors)
            self.track_external(model, optimizer, *tensors.values())

        def _track_module_params_and_buffers(self, module, install_grad_hooks: bool = True):
            """MemTracker's, for a module called through ``torch.func.functional_call`` too: that call's
            parameters are tensors the forward computed (a hypernetwork's weights, ``w * 2``; under ``vmap``, a
            stacked ensemble's batched slices), not graph leaves, so they stay the activations they are, with no
            gradient hooks (torch refuses a post-accumulate-grad hook on them; a batched one has no storage)."""
            params, buffers = list(module.parameters()), list(module.buffers())
            own = [p for p in params if p.is_leaf and not is_functorch_wrapped_tensor(p)]
            kept = [b for b in buffers if not is_functorch_wrapped_tensor(b)]
            if len(own) < len(params) or len(kept) < len(buffers):
                module = _Held(own, kept)
            return super()._track_module_params_and_buffers(module, install_grad_hooks)

        def _track_inputs_or_outputs(self, args) -> int:
            """MemTracker's per-module input/output bytes, without the tensors ``torch.func.vmap`` (or ``grad``)
            wraps, whose storage cannot be read (its operators' bytes are tracked all the same, unwrapped)."""
            return super()._track_inputs_or_outputs(tree_map_only(
                torch.Tensor, lambda t: None if is_functorch_wrapped_tensor(t) else t, args))

        def _update_peak_stats(self, peak_state) -> None:
            snap = self._curr_mem_snap.get(where)
            if snap is not None:
                self.timeline.append((snap.get("Total", 0),) + tuple(snap.get(k, 0) for k in keys))

    return TimelineTracker()


def current_autograd_node():
    """The function returning the autograd node being run (None outside backward)."""
    import torch

    getter = getattr(torch._C, "_current_autograd_node", None)
    if getter is None:
        raise DependencyError(f"torch._C._current_autograd_node is missing; {_UPGRADE}")
    return getter
