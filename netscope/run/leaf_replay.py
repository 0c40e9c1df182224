"""Stock ``torch.nn`` leaf calls that repeat one already recorded: their operators replayed, not re-observed.

A deep model calls thousands of ``nn.Linear``/``nn.ReLU``/``nn.Conv2d`` leaves with the same configuration
and input signature. Such a leaf runs the same aten operators with the same arguments' shapes every
time, so the dispatch mode's per-operator Python callback (most of a pass's cost on deep models) only has
to watch the first one: later identical calls run with the Python dispatch keys excluded (the C++ fast
path) and get the first call's operator list, multiply-adds and convolution/pool windows copied under
their own call index.

Only calls whose operators cannot differ from the recorded ones qualify: a class defined in
``torch.nn.modules`` (not a recurrent layer or a loss) whose ``forward`` is stock too, with no per-module hooks, plain
``nn.Parameter``/``torch.Tensor`` slots, plain configuration attributes, no keyword arguments, and every
argument a plain ``torch.Tensor`` or a plain scalar. The key holds the class, every public attribute
(``training`` included), each parameter's and buffer's shape, dtype and layout (names too when they differ from
the class's first instance), and each argument: a tensor's shape, strides, dtype and device, a scalar's value.
Arguments, parameters and buffers must be dense (strided) tensors: a sparse operand's count follows its
stored elements, which no signature holds. A first call that ran an operator whose formula reads index values
(``formulas.AT_CAPACITY``: an ``nn.EmbeddingBag``'s padding rows) records no signature, so its later calls are
observed too.
A call is replayed only with grad mode and autocast off (as the pass runs them; a forward may turn them on),
and a pass turns replay on only when nothing else intercepts operators or module calls (no other dispatch
mode, no fake tensors, no global module hooks, no receptive-field tracking).

Blocks go one step further: a stock ``nn.Sequential`` (or a subclass that keeps its forward and call path) whose
children are all qualifying leaves, called with one plain tensor and no hooks like an earlier block (its class,
the input's signature, and each child's class, configuration and tensor signatures), runs its children straight
to their forwards, unobserved, and gets each child's call copied from the earlier block's: the same input and
output shapes and bytes, the operators replayed as above. The children's own call overhead is most of what a
deep stack of small blocks costs.
"""

from __future__ import annotations

import itertools
import operator
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn

from netscope.operators.registry import qualified_name
from netscope.operators.formulas import AT_CAPACITY
from netscope.run.module_tree import SCALARS, STOCK_PREFIX, is_plain_value

# Private torch parts replay needs (tested with torch 2.14); without any of them, passes observe every operator.
_NEEDED = ("_dispatch_tls_set_dispatch_key_excluded", "_dispatch_tls_is_dispatch_key_excluded",
           "_len_torch_dispatch_stack", "_is_any_autocast_enabled")
_AVAILABLE = (all(hasattr(torch._C, name) for name in _NEEDED) and hasattr(torch._C.DispatchKey, "Python")
              and hasattr(torch._C.DispatchKey, "PythonTLSSnapshot"))
_PYTHON_KEY = torch._C.DispatchKey.Python if _AVAILABLE else None
# Above every other key while a dispatch mode is active, it stashes Python's mode stack for the Python key
# further down, once per operator: with the Python key excluded nothing reads the stash, so a replayed call
# excludes both (the snapshot alone cost the deep model's replayed leaves ~0.7 us per module).
_SNAPSHOT_KEY = torch._C.DispatchKey.PythonTLSSnapshot if _AVAILABLE else None
_exclude = torch._C._dispatch_tls_set_dispatch_key_excluded if _AVAILABLE else None
_is_excluded = torch._C._dispatch_tls_is_dispatch_key_excluded if _AVAILABLE else None
_grad_enabled = torch.is_grad_enabled
_any_autocast = torch._C._is_any_autocast_enabled if _AVAILABLE else None
_TENSOR = torch.Tensor
_STRIDED = torch.strided
_PARAMETER = nn.Parameter


def exclude_python(excluded: bool) -> None:
    """Operators skip (True) or reach again (False) the Python dispatch keys: a replayed call's run unobserved."""
    _exclude(_PYTHON_KEY, excluded)
    _exclude(_SNAPSHOT_KEY, excluded)


def replay_possible() -> bool:
    """Whether a pass may replay: no dispatch mode or Python-key exclusion already active, no global
    module hooks (they would run inside a replayed call, unobserved)."""
    from torch.nn.modules import module as module_globals

    return (_AVAILABLE and torch._C._len_torch_dispatch_stack() == 0 and not _is_excluded(_PYTHON_KEY)
            and not _is_excluded(_SNAPSHOT_KEY)
            and not module_globals._global_forward_pre_hooks and not module_globals._global_forward_hooks
            and not module_globals._global_backward_hooks and not module_globals._global_backward_pre_hooks)


class LeafReplay:
    """Replay state of one pass: recorded leaf signatures and what their first call ran.

    Used by the trace recorder: :meth:`start` when a leaf call opens, :meth:`finish` when it returns or
    raises. ``recorder`` is the ``_Recorder`` (its flat operator lists), ``windows`` its
    ``WindowOpLog`` (raw convolution/pool calls)."""

    def __init__(self, recorder, windows):
        # the recorder's flat operator lists (mutated, never replaced), not the recorder: it holds this object, and a
        # cycle between the two kept a pass's calls alive until the collector's next full pass
        self.lists = None if recorder is None else (recorder.op_calls, recorder.op_packets, recorder.mac_calls,
                                                    recorder.mac_packets, recorder.mac_values)
        self.windows = windows
        self.classes: Dict[type, Optional[_ClassShape]] = {}  # None: a class never replayed
        # signature -> (op packets, mac packets, mac values, windows, index of the recorded call)
        self.recorded: Dict[tuple, tuple] = {}
        self.same_as: Dict[int, int] = {}  # replayed call index -> index of the call it replays
        # stock nn.Sequential blocks of qualifying leaves (see block_start): block signature -> per child, what its
        # call recorded (input shape, output shape, output bytes, replay entry)
        self.blocks: Dict[tuple, tuple] = {}
        self.block_classes: Dict[type, bool] = {}

    def key(self, module: nn.Module, args: tuple, hooks: Optional[bool] = None) -> Optional[tuple]:
        """The call's signature, or None when it does not qualify. ``hooks``: whether the module has call hooks,
        when the caller knows (the pass's :class:`~netscope.run.model_state.HookState`); read here otherwise."""
        if _grad_enabled() or _any_autocast():  # a forward that turned either on: operators may differ
            return None
        part = self.module_part(module, hooks)
        if part is None:
            return None
        cls, config, tensors = part
        if len(args) == 1 and type(args[0]) is _TENSOR:  # the usual call
            x = args[0]
            if x.is_nested or x.layout is not _STRIDED:  # nested components, sparse stored elements: not in a key
                return None
            return (cls, config, tensors, x.shape, x.stride(), x.dtype, x.device)
        inputs = []
        device = None
        for value in args:
            if type(value) is _TENSOR:
                if value.is_nested or value.layout is not _STRIDED:
                    return None
                inputs.append((value.shape, value.stride(), value.dtype, value.device))
                device = value.device
            elif type(value) in SCALARS:
                inputs.append((type(value), value))
            else:
                return None
        if device is None:  # no tensor argument: the tensors' devices are not in the key
            return None
        return (cls, config, tensors, tuple(inputs))

    def module_part(self, module: nn.Module, hooks: Optional[bool] = None) -> Optional[tuple]:
        """``(class, configuration, tensor signatures)`` of a stock leaf that qualifies, whatever its input; else
        None. ``hooks``: as :meth:`key` takes it."""
        cls = type(module)
        shape = self.classes.get(cls, _UNSEEN)
        if shape is _UNSEEN:
            shape = self.classes[cls] = _ClassShape.of(cls, module)
        if shape is None:
            return None
        state = module.__dict__
        if hooks is None:
            hooks = (state["_forward_pre_hooks"] or state["_forward_hooks"] or state["_backward_hooks"]
                     or state["_backward_pre_hooks"])
        if hooks or "forward" in state:  # hooks (or an instance's forward) run inside the call, unobserved
            return None
        config = shape.config(state)
        if config is None:
            config = _config(state)  # an instance unlike the first of its class
            if config is None:
                return None
        tensors = shape.tensors(state["_parameters"], state["_buffers"])
        if tensors is None:
            return None
        return cls, config, tensors

    def start(self, call, module: nn.Module, args: tuple, kwargs: dict, hooks: Optional[bool] = None) -> None:
        """A leaf call opens: replay it (operators unobserved) or note where its recording starts. ``hooks``: as
        :meth:`key` takes it."""
        if kwargs:  # keyword arguments: observed, not replayed (rare on stock leaves)
            return
        key = self.key(module, args, hooks)
        if key is None:
            return
        entry = self.recorded.get(key)
        if entry is not None:
            call.replay = entry
            exclude_python(True)
            return
        if _holds_sparse(module):  # a sparse weight's count follows its stored elements, which no key holds
            return
        op_calls, _, mac_calls, _, _ = self.lists
        call.recording = (key, len(op_calls), len(mac_calls), len(self.windows.raw))

    def finish(self, call, raised: bool) -> None:
        """A leaf call with ``call.replay`` or ``call.recording`` set closes: copy the recorded operators
        (and observe operators again), or record them."""
        op_calls, op_packets, mac_calls, mac_packets, mac_values = self.lists
        if call.recording is not None:
            key, op_start, mac_start, window_start = call.recording
            call.recording = None
            index = call.index
            if raised or any(i != index for i in op_calls[op_start:]) \
                    or any(i != index for i in mac_calls[mac_start:]):
                return  # something else ran inside: not a signature to trust
            windows = tuple(raw[1:] for raw in self.windows.raw[window_start:])
            if any(raw[0] != index for raw in self.windows.raw[window_start:]):
                return
            if any(qualified_name(packet) in AT_CAPACITY for packet in set(op_packets[op_start:])):
                return  # a count read from index values: the next call with this signature may count otherwise
            call.entry = self.recorded[key] = (tuple(op_packets[op_start:]), tuple(mac_packets[mac_start:]),
                                               tuple(mac_values[mac_start:]), windows, index)
            return
        entry = call.replay
        call.replay = None
        exclude_python(False)
        if raised:  # its operators ran unobserved and did not all run: nothing is charged (the call failed)
            return
        self.charge(call, entry)

    def charge(self, call, entry: tuple) -> None:
        """Charge a replayed call with what the recorded call ``entry`` ran: its operators, multiply-adds and
        windows, copied under the call's own index."""
        op_calls, op_packets, mac_calls, mac_packets, mac_values = self.lists
        packets, recorded_packets, values, windows, source = entry
        index = call.index
        call.entry = entry
        self.same_as[index] = source
        if packets:
            op_calls.extend((index,) * len(packets))
            op_packets.extend(packets)
        if values:
            mac_calls.extend((index,) * len(values))
            mac_packets.extend(recorded_packets)
            mac_values.extend(values)
            call.own_macs += sum(values)
        for raw in windows:
            self.windows.raw.append((index,) + raw)

    def block_start(self, call, module: nn.Module, x: torch.Tensor, hooked, names: dict) -> Optional[tuple]:
        """A container call opens with one plain tensor and no hooks of its own: when it is a stock
        ``nn.Sequential`` (its class's forward, iteration and call path torch's) whose children are all qualifying
        stock leaves of the traced model, the recorded children of an earlier block with the same signature
        (returned: :func:`netscope.run.trace` runs the children without observing them and copies their calls),
        or None, with ``call.block`` set to the signature so that :meth:`block_finish` records this block.
        ``hooked``: the pass's set of modules with hooks (None: read each child's hook tables)."""
        cls = type(module)
        sequential = self.block_classes.get(cls)
        if sequential is None:
            sequential = self.block_classes[cls] = _stock_sequential(cls)
        if not sequential or "forward" in module.__dict__ or _grad_enabled() or _any_autocast():
            return None
        if x.is_nested or x.layout is not _STRIDED:  # as for a leaf's key: no signature holds their layout
            return None
        parts = []
        for child in module._modules.values():
            if child is None or child._modules or id(child) not in names:
                return None
            part = self.module_part(child, None if hooked is None else id(child) in hooked)
            if part is None:
                return None
            parts.append(part)
        if not parts:
            return None
        key = (cls, x.shape, x.stride(), x.dtype, x.device, tuple(parts))
        template = self.blocks.get(key)
        if template is None:
            call.block = key
        return template

    def block_finish(self, call, calls: list) -> None:
        """A block :meth:`block_start` gave a signature returned: its children's calls become the signature's
        template when they are exactly its children, each one plain tensor in and out, recorded or replayed."""
        key = call.block
        call.block = None
        children = calls[call.index + 1:]
        if len(children) != len(key[-1]):
            return
        template = []
        for child, module in zip(children, call.module._modules.values()):
            args = child.args
            if (child.module is not module or child.parent != call.index or not child.finished or child.entry is None
                    or type(child.output) is not _SIZE or len(args) != 1 or type(args[0]) is not _SIZE
                    or child.kwargs):
                return
            template.append((args[0], child.output, child.output_bytes, child.entry))
        self.blocks[key] = tuple(template)

    def close(self, excluded_before: bool) -> None:
        """After the pass: the Python keys' exclusion as it was before (a call left open by an error)."""
        for key in (_PYTHON_KEY, _SNAPSHOT_KEY):
            if _is_excluded(key) != excluded_before:
                _exclude(key, excluded_before)


_UNSEEN = object()
_SIZE = torch.Size


def _stock_sequential(cls: type) -> bool:
    """Whether calling an instance of ``cls`` runs ``nn.Sequential``'s forward over its children through torch's
    own call path (a subclass that defines none of these is one: torchvision's ``Conv2dNormActivation``)."""
    return (issubclass(cls, nn.Sequential) and cls.forward is nn.Sequential.forward
            and cls.__iter__ is nn.Sequential.__iter__ and cls.__call__ is nn.Module.__call__
            and cls._call_impl is nn.Module._call_impl
            and getattr(cls, "_wrapped_call_impl", None) is getattr(nn.Module, "_wrapped_call_impl", None))
# Stock modules whose operators may depend on more than the key holds: recurrent layers (the flat weights'
# memory layout, cuDNN paths) and losses (CTC picks its kernel from the target lengths' values on CUDA).
_NOT_REPLAYED = frozenset({"torch.nn.modules.rnn", "torch.nn.modules.loss"})
_GENERAL = "general"  # marks a configuration or tensor signature read the general (slower) way
_SCALAR_TYPES = frozenset(SCALARS)
_signature = operator.attrgetter("shape", "dtype", "device", "layout")
_shape_dtype = operator.attrgetter("shape", "dtype", "layout")  # layout: a sparse weight never shares a dense key
_ONLY_PARAMETER, _ONLY_TENSOR = {_PARAMETER}, {_TENSOR}


class _ClassShape:
    """What a qualifying class's instances look like: the public attributes and tensor slot names of its
    first instance seen (the attributes read with one C call for every later instance)."""

    __slots__ = ("size", "read", "types", "tuples", "plain", "slots")

    def __init__(self, names: Tuple[str, ...], size: int, types: tuple, slots: tuple):
        self.slots = slots  # (parameter names, buffer names) of the first instance
        self.size = size  # len(__dict__): equal, with every name present, means the same attribute names
        self.read = operator.itemgetter(*names) if len(names) > 1 else (
            (lambda state, name=names[0]: (state[name],)) if names else (lambda state: ()))
        self.types = types
        self.tuples = tuple(i for i, t in enumerate(types) if t is tuple)
        self.plain = all(t in _SCALAR_TYPES or t is tuple for t in types)

    @classmethod
    def of(cls, module_class: type, module: nn.Module) -> Optional["_ClassShape"]:
        """None for a class that never qualifies."""
        if not module_class.__module__.startswith(STOCK_PREFIX) or module_class.__module__ in _NOT_REPLAYED:
            return None
        for base in module_class.__mro__:  # the class that defines forward must be stock too
            if "forward" in base.__dict__:
                if not base.__module__.startswith(STOCK_PREFIX):
                    return None
                break
        state = module.__dict__
        names = tuple(name for name in state if name[0] != "_")
        return cls(names, len(state), tuple(type(state[name]) for name in names),
                   (tuple(state["_parameters"]), tuple(state["_buffers"])))

    def tensors(self, parameters: dict, buffers: dict) -> Optional[tuple]:
        """(shape, dtype) of every parameter and buffer, when the slots are named like the first instance's
        and all filled with plain tensors; the general :func:`_tensors` otherwise (None: not replayable).
        The device is the input's, which the key holds (a stock layer's tensors share its device)."""
        names = self.slots
        if tuple(parameters) == names[0] and (not parameters or set(map(type, parameters.values())) == _ONLY_PARAMETER):
            if not buffers and not names[1]:
                return tuple(map(_shape_dtype, parameters.values()))
            if tuple(buffers) == names[1] and set(map(type, buffers.values())) == _ONLY_TENSOR:
                return tuple(map(_shape_dtype, parameters.values())) + tuple(map(_shape_dtype, buffers.values()))
        found = _tensors(parameters, _PARAMETER)
        if found is None:
            return None
        if buffers:
            more = _tensors(buffers, _TENSOR)
            return None if more is None else found + more
        return found

    def config(self, state: dict) -> Optional[tuple]:
        """The public attribute values of an instance shaped like the first (names and types), else None."""
        if not self.plain or len(state) != self.size:
            return None
        try:
            values = self.read(state)
        except KeyError:
            return None
        if tuple(map(type, values)) != self.types:
            return None
        for i in self.tuples:
            if not is_plain_value(values[i]):
                return None
        return values


def _holds_sparse(module: nn.Module) -> bool:
    """Whether a parameter or buffer of the module is not a dense (strided) tensor. Read when a signature would
    be recorded, once per signature (or per call, for the rare module that holds one)."""
    state = module.__dict__
    return any(t is not None and t.layout is not _STRIDED
               for t in itertools.chain(state["_parameters"].values(), state["_buffers"].values()))


def _config(state: dict) -> Optional[tuple]:
    """The public attribute names and values of any instance, when all are plain."""
    parts = [_GENERAL]  # never equal to a fast-path configuration (values only)
    for name, value in state.items():
        if name[0] != "_":
            if not is_plain_value(value):
                return None
            parts.append(name)
            parts.append(value)
    return tuple(parts)


def _tensors(slots: dict, kind: type) -> Optional[tuple]:
    """Names, then (shape, dtype, device) of every slot (None for an empty one), when each holds exactly
    ``kind`` or nothing; else None."""
    if not slots:
        return (_GENERAL,)
    values = slots.values()
    if set(map(type, values)) == {kind}:  # the usual slots: all filled
        return (_GENERAL,) + tuple(slots) + tuple(map(_signature, values))
    parts = [_GENERAL]  # never equal to the fast path's (shape, dtype) pairs
    for name, tensor in slots.items():
        if tensor is None:
            parts.append((name, None))
        elif type(tensor) is kind:
            parts.append((name,) + _signature(tensor))
        else:
            return None
    return tuple(parts)

