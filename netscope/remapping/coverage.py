"""How much of the target model a mapping fills: parameter elements, in total and per top-level module."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, List, Set, Tuple

from netscope.remapping.sides import TensorLayout


@dataclass(frozen=True)
class ModuleCoverage:
    module: str  # top-level child name, "(root)" for parameters registered on the model itself
    loaded: int  # parameter elements that will be loaded
    total: int

    @property
    def fraction(self) -> float:
        return self.loaded / self.total if self.total else 1.0


@dataclass(frozen=True)
class Coverage:
    """Fractions of the target's parameter elements (tied parameters counted once)."""

    loaded: int
    total: int
    per_module: Tuple[ModuleCoverage, ...]
    uninitialised: Tuple[str, ...]  # largest modules (or single tensors) whose parameters all stay unloaded
    parameters_only: bool = True  # False for a second checkpoint as the target: it does not say which are buffers

    @property
    def counted(self) -> str:
        """What ``loaded`` and ``total`` count, in words."""
        return ("the model's parameter elements" if self.parameters_only
                else "the target checkpoint's tensor elements (parameters and buffers: a file does not tell them apart)")

    @property
    def fraction(self) -> float:
        return self.loaded / self.total if self.total else 1.0

    def to_dict(self) -> dict:
        return {
            "loaded": self.loaded, "total": self.total, "fraction": self.fraction,
            "per_module": [{"module": m.module, "loaded": m.loaded, "total": m.total, "fraction": m.fraction}
                           for m in self.per_module],
            "uninitialised": list(self.uninitialised),
        }


def compute_coverage(target: TensorLayout, loaded_keys: Iterable[str]) -> Coverage:
    loaded_set: Set[str] = set(loaded_keys)
    tensors, parameter_keys = target.tensors, target.parameter_keys
    first_of: Dict[str, str] = {}  # storage (or the key itself) -> its first parameter key
    tied: Dict[str, List[str]] = {}  # first key -> every key of that storage, for storages with several
    for key, meta in tensors.items():
        if parameter_keys is None or key in parameter_keys:
            first = first_of.setdefault(meta.storage_id or key, key)
            if first != key:
                tied.setdefault(first, [first]).append(key)
    per_top: Dict[str, List[int]] = {}
    loaded_total = total = 0
    loaded_nodes, unloaded_keys = [], []
    for key in first_of.values():
        numel = tensors[key].numel
        group = tied.get(key)
        is_loaded = key in loaded_set if group is None else any(k in loaded_set for k in group)
        total += numel
        top = key.partition(".")[0] if "." in key else "(root)"
        entry = per_top.get(top)
        if entry is None:
            per_top[top] = entry = [0, 0]
        entry[1] += numel
        if is_loaded:
            loaded_total += numel
            entry[0] += numel
            loaded_nodes.append(key)
        else:
            unloaded_keys.append(key)
    per_module = tuple(ModuleCoverage(name, counts[0], counts[1]) for name, counts in per_top.items())
    return Coverage(loaded_total, total, per_module, _largest_unloaded(loaded_nodes, unloaded_keys),
                    parameters_only=parameter_keys is not None)


def _largest_unloaded(loaded_keys: List[str], unloaded_keys: List[str]) -> Tuple[str, ...]:
    """The largest module paths (or single tensors) under which nothing is loaded."""
    if not unloaded_keys:
        return ()
    if not loaded_keys:
        return ("(the whole model)",)
    touched = set()
    for key in loaded_keys:
        touched.update(_ancestors(key))
    result: Dict[str, None] = {}
    for key in unloaded_keys:
        for node in _ancestors(key)[1:]:
            if node not in touched:
                result[node] = None
                break
    return tuple(result)


def _ancestors(key: str) -> List[str]:
    """``'a.b.c'`` -> ``['', 'a', 'a.b', 'a.b.c']``."""
    result, pos = [""], key.find(".")
    while pos != -1:
        result.append(key[:pos])
        pos = key.find(".", pos + 1)
    result.append(key)
    return result


def _parent(node: str) -> str:
    return node.rpartition(".")[0]
