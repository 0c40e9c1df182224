"""``torch.export`` archives (``.pt2``): a zip whose ``data/weights/model_weights_config.json`` lists every
weight's key, shape and dtype, so the listing reads that file alone; loading goes through ``torch.export.load``.

The archive lists the exported program's state dict as its graph signature takes it: every parameter (in
``named_parameters`` order), then every buffer, so a BatchNorm's running statistics come after the last layer's
weights. :func:`model_order` puts the keys back in the model's ``state_dict`` order where the archive proves it.
"""

from __future__ import annotations

import json
import zipfile
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Tuple

from netscope.checkpoints.zip_records import ZipUnsupported, read_directory
from netscope.errors import CheckpointError
from netscope.records import TensorMeta

WEIGHTS_CONFIG = "data/weights/model_weights_config.json"
# torch._export.serde.schema.ScalarType values -> dtype names (the archive stores the enum's number)
SCALAR_TYPES = {1: "uint8", 2: "int8", 3: "int16", 4: "int32", 5: "int64", 6: "float16", 7: "float32", 8: "float64",
                9: "complex32", 10: "complex64", 11: "complex128", 12: "bool", 13: "bfloat16", 28: "uint16",
                29: "float8_e4m3fn", 30: "float8_e5m2", 31: "float8_e4m3fnuz", 32: "float8_e5m2fnuz",
                33: "float8_e8m0fnu", 34: "uint32", 35: "uint64"}


def archive_prefix(path: str) -> Optional[str]:
    """The folder inside the zip that holds a torch.export archive (``m/``), or None when it is not one."""
    try:  # a torch.save file of 100k tensors has 100k records: look for the name in the raw directory first
        directory = read_directory(path)
        if b"archive_format" not in directory.raw:
            return None
        for name in directory.records:
            if name.endswith("archive_format") and directory.read(name).strip() == b"pt2":
                return name[: -len("archive_format")]
        return None
    except ZipUnsupported:
        pass  # zipfile decides
    try:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                if name.endswith("archive_format") and archive.read(name).strip() == b"pt2":
                    return name[: -len("archive_format")]
    except (zipfile.BadZipFile, OSError, KeyError):
        return None
    return None


def weight_metas(path: str) -> Tuple["OrderedDict[str, TensorMeta]", bool]:
    """Every weight of the archive's model, from its weights config (no tensor bytes read), in the model's
    ``state_dict`` order where the archive proves it, with whether it does (see :func:`model_order`)."""
    prefix = archive_prefix(path) or ""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read(prefix + WEIGHTS_CONFIG))["config"]
    except (KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{path} is a torch.export archive without a readable {WEIGHTS_CONFIG} ({exc}); "
                              "re-export it with torch.export.save") from None
    order = model_order(list(config), {key: entry.get("is_param") for key, entry in config.items()},
                        {key: entry.get("path_name", key) for key, entry in config.items()})
    metas: "OrderedDict[str, TensorMeta]" = OrderedDict()
    for key in order or config:
        entry = config[key]
        meta = entry.get("tensor_meta", {})
        shape = tuple(int(d.get("as_int", 0)) for d in meta.get("sizes", []))
        dtype = SCALAR_TYPES.get(meta.get("dtype"), f"scalar-type-{meta.get('dtype')}")
        metas[key] = TensorMeta(shape, dtype, f"pt2:{entry.get('path_name', key)}")
    return metas, order is not None


def model_order(keys: List[str], is_param: Mapping[str, Optional[bool]],
                storage: Optional[Mapping[str, str]] = None) -> Optional[List[str]]:
    """``keys`` (parameters in ``named_parameters`` order, then buffers in ``named_buffers`` order, as the archive
    lists them) in the model's ``state_dict`` order, or ``None`` where the archive does not say it.

    ``state_dict`` walks the modules depth first in registration order, each module's own parameters, then its own
    buffers, then its children. The parameters give the order of every child whose subtree holds one; a child
    holding buffers only is placed by its index where all its siblings are numbered (an ``nn.Sequential``,
    ``nn.ModuleList``), and otherwise its place is unknown: ``None`` (so for an archive without ``is_param``). The
    order found is checked against both listings (parameters and buffers each keep their relative order).
    Tied tensors (one ``storage`` under several keys) are listed together, not in registration order: ``None``."""
    if any(is_param.get(key) is None for key in keys):
        return None
    if storage is not None and len(set(storage.values())) < len(storage):
        return None
    params = [k for k in keys if is_param[k]]
    buffers = [k for k in keys if not is_param[k]]
    if params + buffers != keys:  # not the parameters-then-buffers listing this reading assumes
        return None
    own: Dict[str, Tuple[List[str], List[str]]] = {"": ([], [])}  # module -> (own parameters, own buffers)
    children: Dict[str, List[str]] = {"": []}  # module -> children in first-seen order (parameters first)
    holds_param = set()
    for key in keys:
        module = key.rpartition(".")[0]
        path = ""
        for part in module.split(".") if module else ():
            child = f"{path}.{part}" if path else part
            if child not in own:
                own[child], children[child] = ([], []), []
                children[path].append(child)
            if is_param[key]:
                holds_param.add(child)
            path = child
        own[module][0 if is_param[key] else 1].append(key)
    order: List[str] = []

    def walk(module: str) -> bool:
        order.extend(own[module][0])
        order.extend(own[module][1])
        kids = children[module]
        if not all(kid in holds_param for kid in kids):  # a buffers-only child: only an index places it
            leaves = [kid.rpartition(".")[2] for kid in kids]
            if not all(leaf.isdigit() for leaf in leaves):
                return False
            placed = [kid for kid in kids if kid in holds_param]
            kids = sorted(kids, key=lambda kid: int(kid.rpartition(".")[2]))
            if [kid for kid in kids if kid in holds_param] != placed:  # the indices contradict the parameters
                return False
        return all(walk(kid) for kid in kids)

    if not walk(""):
        return None
    listed_params = [k for k in order if is_param[k]]
    listed_buffers = [k for k in order if not is_param[k]]
    return order if listed_params == params and listed_buffers == buffers else None


def load_state(path: str, order: Optional[List[str]] = None) -> Dict[str, object]:
    """The exported program's state dict (parameters and buffers), through torch.export.load; in ``order`` (the
    keys as :func:`weight_metas` gives them) where given."""
    import torch

    try:
        program = torch.export.load(path)
    except Exception as exc:  # torch.export.load raises many kinds on a damaged or foreign archive
        raise CheckpointError(f"{path} could not be loaded with torch.export.load ({type(exc).__name__}: "
                              f"{str(exc)[:200]})") from None
    state = program.state_dict
    if order is None or set(order) != set(state):
        return OrderedDict(state)
    return OrderedDict((key, state[key]) for key in order)
