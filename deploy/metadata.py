"""How an exported graph was made (input size, preprocessing, decoding, flip test, codec, ...): JSON in the
ONNX file's metadata, written at export and read by the ONNX Runtime wrappers and the quantisers."""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from deploy.deps import require

METADATA_KEY = 'mmpose_clean'


def write_metadata(model: Any, metadata: Mapping[str, Any]) -> None:
    """Store ``metadata`` (JSON-serialisable) in an ``onnx.ModelProto``'s metadata_props, in place."""
    for prop in [p for p in model.metadata_props if p.key == METADATA_KEY]:
        model.metadata_props.remove(prop)
    entry = model.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = json.dumps(dict(metadata))


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata dict written by :func:`export_module` (``{}`` for foreign ONNX files)."""
    onnx = require('onnx', 'reading ONNX metadata')
    model = onnx.load(os.fspath(path), load_external_data=False)
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            return json.loads(prop.value)
    return {}
