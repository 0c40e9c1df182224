"""``torch.export`` archives (``.pt2``): a zip whose ``data/weights/model_weights_config.json`` lists every
weight's key, shape and dtype, so the listing reads that file alone; loading goes through ``torch.export.load``."""

from __future__ import annotations

import json
import zipfile
from collections import OrderedDict
from typing import Dict, Optional

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


def weight_metas(path: str) -> "OrderedDict[str, TensorMeta]":
    """Every weight of the archive's model, from its weights config (no tensor bytes read)."""
    prefix = archive_prefix(path) or ""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read(prefix + WEIGHTS_CONFIG))["config"]
    except (KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{path} is a torch.export archive without a readable {WEIGHTS_CONFIG} ({exc}); "
                              "re-export it with torch.export.save") from None
    metas: "OrderedDict[str, TensorMeta]" = OrderedDict()
    for key, entry in config.items():
        meta = entry.get("tensor_meta", {})
        shape = tuple(int(d.get("as_int", 0)) for d in meta.get("sizes", []))
        dtype = SCALAR_TYPES.get(meta.get("dtype"), f"scalar-type-{meta.get('dtype')}")
        metas[key] = TensorMeta(shape, dtype, f"pt2:{entry.get('path_name', key)}")
    return metas


def load_state(path: str) -> Dict[str, object]:
    """The exported program's state dict (parameters and buffers), through torch.export.load."""
    import torch

    try:
        program = torch.export.load(path)
    except Exception as exc:  # torch.export.load raises many kinds on a damaged or foreign archive
        raise CheckpointError(f"{path} could not be loaded with torch.export.load ({type(exc).__name__}: "
                              f"{str(exc)[:200]})") from None
    return OrderedDict(program.state_dict)
