"""Checkpoint containers: which entry of a saved object holds the model tensors (`state_dict`, `model`,
`module`, ...), and how to describe where they were found."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Dict, Optional, Tuple

from netscope.errors import CheckpointError
from netscope.records import TensorMeta
from netscope.registry import Registry
from netscope.units import first_few

# Keys that commonly hold the model's state dict, most specific first (Lightning/mmengine/timm train
# scripts use 'state_dict'; DeepSpeed 'module'; many research repos 'model' or 'net').
STATE_DICT_KEYS = (
    "state_dict", "model_state_dict", "model", "module", "net", "network", "params", "weights",
    "state_dict_ema", "model_ema", "ema", "ema_state_dict", "generator", "student", "teacher",
)
# Keys that hold tensors which are not model weights: never chosen as the state dict by the fallback.
NON_MODEL_KEYS = frozenset({
    "optimizer", "optimizer_states", "optimizer_state_dict", "optim", "opt", "scheduler",
    "lr_scheduler", "lr_schedulers", "scaler", "amp", "grad_scaler", "loops", "callbacks",
    "averaging_state",  # Lightning WeightAveraging: its AveragedModel's count (n_averaged), no model weights
})
# Lightning's StochasticWeightAveraging callback keeps a copy of the model's state dict (the averaged weights) in its
# own state: callbacks[<its state key>]["average_model_state"], the one model copy inside a NON_MODEL_KEYS entry.
_LIGHTNING_SWA = ("StochasticWeightAveraging", "average_model_state")
_MAX_DEPTH = 4


def is_tensor_like(value: Any) -> bool:
    """A torch.Tensor, or a TensorMeta standing in for one in headers-only views."""
    if isinstance(value, TensorMeta):
        return True
    torch = _torch_if_loaded()
    return torch is not None and isinstance(value, torch.Tensor)


def refuse_shapeless_tensors(state: Mapping) -> None:
    """A nested tensor (``torch.nested``) has no one shape, nor has a lazy module's uninitialized parameter: a state
    dict holding one is refused with its keys named (a listing, a comparison or a mapping would each need it)."""
    torch = _torch_if_loaded()
    lazy = getattr(getattr(getattr(torch, "nn", None), "parameter", None), "UninitializedTensorMixin", ())
    unset = [key for key, value in state.items() if isinstance(value, lazy)] if lazy else []
    if unset:
        shown = first_few(map(repr, unset))
        raise CheckpointError(
            f"the state dict holds {len(unset)} uninitialized lazy parameter(s) or buffer(s) ({shown}): they have no "
            "shape yet, so netscope cannot list, compare or remap them. Run the model once on an input (or call its "
            "lazy modules' initialize_parameters) before saving its state dict")
    nested = [key for key, value in state.items() if getattr(value, "is_nested", False) is True]
    if nested:
        shown = first_few(map(repr, nested))
        raise CheckpointError(
            f"the state dict holds {len(nested)} nested tensor(s) ({shown}): a nested tensor (torch.nested) has no "
            "single shape, so netscope cannot list, compare or remap it. Save its parts instead (nt.unbind() gives "
            "the component tensors; torch.nested.to_padded_tensor one padded tensor)")


def _torch_if_loaded():
    import sys

    return sys.modules.get("torch")


def count_tensors(value: Any, depth: int = 0) -> int:
    """Tensors reachable through string-keyed mappings (what a state dict search can use)."""
    if is_tensor_like(value):
        return 1
    if depth >= _MAX_DEPTH or not isinstance(value, Mapping):
        return 0
    return sum(count_tensors(v, depth + 1) for k, v in value.items() if isinstance(k, str))


def _is_state_dict(mapping: Mapping) -> bool:
    """String keys, some tensor values, and no nested mapping that holds tensors itself."""
    if set(map(type, mapping.values())) == {TensorMeta}:  # a headers-only state dict: C loops over 100k keys
        return set(map(type, mapping)) == {str} or all(isinstance(k, str) for k in mapping)
    if not all(isinstance(k, str) for k in mapping):
        return False
    has_tensor = False
    for value in mapping.values():
        if type(value) is TensorMeta or is_tensor_like(value):  # the first test spares a call per tensor
            has_tensor = True
        elif isinstance(value, Mapping) and count_tensors(value):
            return False
    return has_tensor


def is_plain_state_dict(container: Any) -> bool:
    """A non-empty mapping of string keys to ``TensorMeta`` only (what torch_zip reads from a saved state dict):
    its own state dict, with no other candidate and no other entry, told in C loops over 100k keys."""
    return (isinstance(container, Mapping) and len(container) > 0 and not is_optimizer_state(container)
            and set(map(type, container.values())) == {TensorMeta} and set(map(type, container)) == {str})


def is_optimizer_state(value: Any) -> bool:
    """An optimizer's state dict (``{"state": ..., "param_groups": [...]}``): its tensors are never model weights."""
    return isinstance(value, Mapping) and "state" in value and "param_groups" in value


def _entries(value: Any):
    """(key, item) of a container the search walks: a mapping's string keys, a list's or tuple's positions
    (``torch.save([model.state_dict(), optimizer.state_dict()])``)."""
    if isinstance(value, Mapping):
        return [(k, v) for k, v in value.items() if isinstance(k, str)]
    if isinstance(value, (list, tuple)):
        return list(enumerate(value))
    return []


def _search(value: Any, depth: int) -> Optional[Tuple[Tuple[Any, ...], dict]]:
    if isinstance(value, (list, tuple)) and depth <= _MAX_DEPTH:
        return _best(_entries(value), depth)
    if not isinstance(value, Mapping) or depth > _MAX_DEPTH or is_optimizer_state(value):
        return None
    if _is_state_dict(value):
        return (), value
    for key in STATE_DICT_KEYS:
        if key in value:
            found = _search(value[key], depth + 1)
            if found is not None:
                return (key,) + found[0], found[1]
    return _best([(k, v) for k, v in _entries(value) if k not in NON_MODEL_KEYS], depth)


def _best(entries, depth: int) -> Optional[Tuple[Tuple[Any, ...], dict]]:
    """The entry holding the most model tensors (searched as ``_search`` does), with its key path."""
    best: Optional[Tuple[int, Tuple[Any, ...], dict]] = None
    for key, sub in entries:
        if not isinstance(sub, (Mapping, list, tuple)):
            continue
        found = _search(sub, depth + 1)
        if found is not None:
            n = count_tensors(found[1])
            if best is None or n > best[0]:
                best = (n, (key,) + found[0], found[1])
    return None if best is None else (best[1], best[2])


def find_state_dict(container: Any) -> Tuple[Tuple[Any, ...], dict]:
    """Locate the model tensors inside a loaded checkpoint: ``(keys into the container, the dict)``.

    A plain state dict gives ``((), container)``; Lightning gives ``(("state_dict",), ...)``; nested
    layouts (``{"model": {"state_dict": ...}}``) give the whole key path. Tensors and ``TensorMeta``
    both count as tensors, so headers-only views can be searched too. An ``nn.Module`` saved whole
    gives ``((), module.state_dict())``. An empty mapping is an empty state dict.
    """
    torch = _torch_if_loaded()
    if torch is not None and isinstance(container, torch.nn.Module):
        return (), container.state_dict()
    if isinstance(container, Mapping) and len(container) == 0:
        return (), container  # type: ignore[return-value]
    found = _search(container, 0)
    if found is None and (is_optimizer_state(container) or (
            isinstance(container, Mapping) and container and all(is_optimizer_state(v) for v in container.values()))):
        raise CheckpointError(
            "the checkpoint holds only optimizer state (a dict with 'state' and 'param_groups'), no model "
            "weights: there is nothing to map onto a model. Save the model's state dict too (e.g. "
            "dcp.save({'model': model.state_dict(), 'optim': ...}))."
        )
    if found is None:
        raise CheckpointError(
            f"the checkpoint holds no model tensors (it is a {summarize_value(container)}); netscope looks "
            "for a dict of tensors at the top level or under a key such as 'state_dict', 'model' or "
            "'module'. Save the weights with torch.save(model.state_dict(), PATH) and try again."
        )
    return found


def state_dict_candidates(container: Any) -> Dict[Tuple[Any, ...], int]:
    """Every key path to a dict of model tensors in the container (optimizer-like entries skipped), with
    its tensor count: what ``--key`` can choose from."""
    found: Dict[Tuple[Any, ...], int] = {}

    def walk(value: Any, path: Tuple[Any, ...]) -> None:
        if isinstance(value, (list, tuple)) and len(path) <= _MAX_DEPTH:
            for key, sub in _entries(value):
                walk(sub, path + (key,))
            return
        if not isinstance(value, Mapping) or len(path) > _MAX_DEPTH or is_optimizer_state(value):
            return
        if _is_state_dict(value):
            found[path] = (len(value) if set(map(type, value.values())) == {TensorMeta} else
                           sum(1 for v in value.values() if type(v) is TensorMeta or is_tensor_like(v)))
            return
        for key, sub in value.items():
            if isinstance(key, str) and key not in NON_MODEL_KEYS:
                walk(sub, path + (key,))

    walk(container, ())
    found.update(_lightning_swa_copies(container))
    return found


def _lightning_swa_copies(container: Any) -> Dict[Tuple[Any, ...], int]:
    """The averaged model state of Lightning's StochasticWeightAveraging callback (see :data:`_LIGHTNING_SWA`)."""
    callbacks = container.get("callbacks") if isinstance(container, Mapping) else None
    if not isinstance(callbacks, Mapping):
        return {}
    found = {}
    for name, state in callbacks.items():
        if isinstance(name, str) and name.startswith(_LIGHTNING_SWA[0]) and isinstance(state, Mapping):
            copy = state.get(_LIGHTNING_SWA[1])
            if isinstance(copy, Mapping) and _is_state_dict(copy):
                found[("callbacks", name, _LIGHTNING_SWA[1])] = sum(
                    1 for v in copy.values() if type(v) is TensorMeta or is_tensor_like(v))
    return found


def weight_averaging_note(container: Any, chosen: Tuple[Any, ...]) -> Optional[str]:
    """What the dicts of a Lightning checkpoint written with weight averaging hold, or ``None`` for other files.
    EMAWeightAveraging / WeightAveraging save the averaged weights as ``state_dict`` (what ``load_from_checkpoint``
    loads), the model's current weights as ``current_model_state`` and the AveragedModel's count as
    ``averaging_state``; StochasticWeightAveraging keeps the averaged copy in its callback state."""
    if not isinstance(container, Mapping):
        return None
    if "current_model_state" in container and "averaging_state" in container:
        which = {("state_dict",): "state_dict (the averaged weights)",
                 ("current_model_state",): "current_model_state (the model's current, not averaged, weights)"}
        return ("Lightning weight averaging (EMAWeightAveraging/WeightAveraging) wrote this file: 'state_dict' holds "
                "the averaged weights (what LightningModule.load_from_checkpoint loads), 'current_model_state' the "
                "model's current weights (--key current_model_state), 'averaging_state' the averaging count "
                "(n_averaged), no model weights" + (f"; read: {which[chosen]}" if chosen in which else ""))
    swa = _lightning_swa_copies(container)
    if swa:
        return ("Lightning StochasticWeightAveraging wrote this file: 'state_dict' holds the model's current weights, "
                f"{', '.join(path_text(p) for p in swa)} the averaged ones (--key that path)")
    return None


def modules_as_state_dicts(container: Any, notes: list) -> Any:
    """Whole modules pickled inside a container (``{"model": model, "ema": ema, "optimizer": ...}``, as YOLOv5
    saves) replaced by their state dicts, each named in ``notes``, so they are found, listed and remapped like
    any dict of tensors (and written back as state dicts). A module saved alone is left to ``find_state_dict``."""
    torch = _torch_if_loaded()
    if torch is None or not isinstance(container, Mapping):
        return container

    def walk(value: Any, path: Tuple[Any, ...]) -> Any:
        if isinstance(value, torch.nn.Module):
            notes.append(f"{path_text(path)} is a whole {type(value).__name__} object pickled: its state dict is "
                         "used (and written in its place)")
            return value.state_dict()
        if not isinstance(value, Mapping) or len(path) > _MAX_DEPTH or not any(
                isinstance(v, (torch.nn.Module, Mapping)) for v in value.values()):
            return value
        items = {k: walk(v, path + (k,)) for k, v in value.items()}
        if all(items[k] is v for k, v in value.items()):
            return value
        try:
            new = type(value)(items)
        except TypeError:  # e.g. a defaultdict: a plain dict keeps every entry
            new = dict(items)
        return new

    return walk(container, ())


def path_text(path: Tuple[Any, ...]) -> str:
    return ".".join(str(k) for k in path) if path else "(top level)"


def select_state_dict(container: Any, key: str) -> Tuple[Tuple[Any, ...], dict]:
    """The state dict at ``key``: an entry name (``state_dict_ema``) or a dotted path (``model.ema``)."""
    candidates = state_dict_candidates(container)
    for path in candidates:
        if key == path_text(path) or (len(path) == 1 and key == path[0]):
            node = container
            for part in path:
                node = node[part]
            return path, node
    if list(candidates) == [()]:  # a bare state dict: there is nothing to choose
        raise CheckpointError(f"the checkpoint has no dict of model tensors at {key!r}: its {candidates[()]} tensors "
                              "are at the top level of the file, the only dict of tensors it holds; drop --key")
    listed = ", ".join(f"{path_text(p)} ({n} tensors)" for p, n in candidates.items()) or "none"
    raise CheckpointError(f"the checkpoint has no dict of model tensors at {key!r}; the candidates are: {listed}. "
                          "Pass one of them with --key")


def summarize_value(value: Any) -> str:
    """A short description of one non-tensor entry: ``int 12``, ``dict (2 keys)``, ``str 'adam'``."""
    if value is None:
        return "None"
    if hasattr(value, "netscope_summary"):
        return value.netscope_summary
    if isinstance(value, bool):
        return f"bool {value}"
    if isinstance(value, (int, float)):
        return f"{type(value).__name__} {value!r}"
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return f"str {text!r}"
    if isinstance(value, TensorMeta):
        return f"tensor {value.dtype} {tuple(value.shape)}"
    if is_tensor_like(value):
        from netscope.checkpoints.dtypes import torch_dtype_name

        if getattr(value, "is_nested", False) is True:  # no one shape: its component count instead
            return f"nested tensor {torch_dtype_name(value.dtype)} ({value.size(0)} components)"
        return f"tensor {torch_dtype_name(value.dtype)} {tuple(value.shape)}"
    if isinstance(value, Mapping):
        n = len(value)
        tensors = count_tensors(value)
        extra = f", {tensors} tensors" if tensors else ""
        return f"{type(value).__name__} ({n} key{'s' * (n != 1)}{extra})"
    if isinstance(value, (list, tuple, set, frozenset)):
        n = len(value)
        return f"{type(value).__name__} ({n} item{'s' * (n != 1)})"
    return type(value).__name__


def other_entries(container: Any, path: Tuple[Any, ...]) -> Dict[str, str]:
    """Every entry beside the state dict along its key path, summarized; dotted names for nested ones.

    For a top-level state dict, its own non-tensor values (``_extra_state`` objects) are listed; for a top-level
    mapping that is no state dict (tensors under integer keys), every entry.
    """
    entries: Dict[str, str] = {}
    if not isinstance(container, Mapping) and not (path and isinstance(container, (list, tuple))):
        # a bare tensor or list saved alone: say what the file holds (a pickled module is not listed: its state
        # dict is what the listing shows)
        if is_tensor_like(container) or isinstance(container, (list, tuple)):
            return {"(top level)": summarize_value(container)}
        return entries
    if not path:
        own = _is_state_dict(container)  # else no state dict was found: its tensors are listed here, not lost
        if own and set(map(type, container.values())) == {TensorMeta}:  # a headers-only state dict, nothing beside
            return entries
        for key, value in container.items():
            if not own or (type(value) is not TensorMeta and not is_tensor_like(value)):
                entries[str(key)] = summarize_value(value)
        return entries
    node: Any = container
    prefix = ""
    for key in path:
        for sibling, value in (node.items() if isinstance(node, Mapping) else enumerate(node)):
            if sibling != key:
                entries[f"{prefix}{sibling}"] = summarize_value(value)
        node = node[key]
        prefix = f"{prefix}{key}."
    for key, value in node.items():
        if not is_tensor_like(value):
            entries[f"{prefix}{key}"] = summarize_value(value)
    return entries


# ---- layout descriptions: one describer per first key of the state-dict path ---------------------

LayoutDescriber = Callable[[Mapping, Tuple[Any, ...]], str]
LAYOUTS: Registry[Any, LayoutDescriber] = Registry("layout")
# @register_layout(first_key): how to describe containers whose state dict sits under first_key (() for top level)
register_layout = LAYOUTS.decorator


def _shape(container: Mapping, path: Tuple[Any, ...], limit: int = 4) -> str:
    keys = [path[0]] + [k for k in container if k != path[0]]
    shown = ", ".join(f"{k!r}: ..." for k in keys[:limit])
    more = ", ..." if len(keys) > limit else ""
    inner = "".join(f"[{k!r}]" for k in path[1:])
    return "{" + shown + more + "}" + (f" with the state dict at {path[0]!r}{inner}" if inner else "")


@register_layout(())
def _plain(container: Mapping, path: Tuple[Any, ...]) -> str:
    return "plain state_dict" if len(container) else "empty state_dict"


@register_layout("state_dict")
def _state_dict_key(container: Mapping, path: Tuple[Any, ...]) -> str:
    if "pytorch-lightning_version" in container or "lightning_version" in container or (
        "global_step" in container and ("callbacks" in container or "loops" in container)
    ):
        return "Lightning " + _shape(container, path)
    if "state_dict_ema" in container:
        return "timm train checkpoint " + _shape(container, path)
    if "meta" in container and isinstance(container.get("meta"), Mapping):
        return "mmengine " + _shape(container, path)
    return _shape(container, path)


@register_layout("module")
def _module_key(container: Mapping, path: Tuple[Any, ...]) -> str:
    deepspeed = any(k in container for k in ("ds_version", "ds_config", "dp_world_size", "mp_world_size"))
    return ("DeepSpeed " if deepspeed else "") + _shape(container, path)


@register_layout("state_dict_ema")
def _ema_key(container: Mapping, path: Tuple[Any, ...]) -> str:
    return "timm EMA " + _shape(container, path)


def describe_layout(container: Any, path: Tuple[Any, ...]) -> str:
    """A one-line description of the container structure around the state dict."""
    if isinstance(container, (list, tuple)) and path:
        inner = "".join(f"[{k!r}]" for k in path)
        return f"{type(container).__name__} of {len(container)} items with the state dict at {inner}"
    if not isinstance(container, Mapping):
        return f"{type(container).__name__} object"
    describer = LAYOUTS.get(path[0] if path else ())
    return describer(container, path) if describer else _shape(container, path)


def nested_from_flat(paths: Mapping[str, Tuple[Any, ...]], values: Mapping[str, Any]) -> dict:
    """Rebuild a nested container from flattened keys and their key paths (used for DCP metadata).

    As torch.distributed.checkpoint's own unflattening does, an integer path component is a list
    position (``optim.param_groups`` comes back a list, so ``set_optimizer_state_dict`` accepts it) and a
    string one a dict key."""
    root: dict = {}
    for flat_key, value in values.items():
        path = tuple(paths.get(flat_key, (flat_key,)))
        node: Any = root
        for key, following in zip(path, path[1:]):
            fresh = [] if isinstance(following, int) else {}
            if isinstance(node, list):
                node.extend([None] * (key + 1 - len(node)))
                if node[key] is None:
                    node[key] = fresh
                node = node[key]
            else:
                node = node.setdefault(key, fresh)
            if not isinstance(node, (dict, list)):
                break
        else:
            last = path[-1]
            if isinstance(node, list):
                node.extend([None] * (last + 1 - len(node)))
            node[last] = value
    return root
