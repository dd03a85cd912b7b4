"""Model files on disk: write atomically, load without unpickling, identify by SHA-256.

:func:`load_model` is what ``fraudnet model deploy`` (node side) calls
before :meth:`ModelScorer.swap_model`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from fraudnet.core.scoring.compiled import CompiledModel
from fraudnet.core.scoring.modelfile import MAX_MODEL_BYTES, decode_model, encode_model, model_id_of
from fraudnet.errors import ModelError

__all__ = ["load_model", "save_model"]


def save_model(model: CompiledModel, path: str | Path) -> str:
    """Write ``model`` to ``path`` (atomic rename); return its model id (SHA-256 hex)."""
    data = encode_model(model)
    p = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=p.parent if str(p.parent) else ".", prefix=".model-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except OSError as e:
        raise ModelError(f"{p}: cannot write model ({e.strerror or e})") from None
    return model_id_of(data)


def load_model(path: str | Path) -> tuple[CompiledModel, str]:
    """Read and validate a model file; returns ``(model, model_id)``."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_MODEL_BYTES:
            raise ModelError(f"{p}: {size} bytes exceeds {MAX_MODEL_BYTES}")
        data = p.read_bytes()
    except OSError as e:
        raise ModelError(f"{p}: cannot read model ({e.strerror or e})") from None
    return decode_model(data, str(p)), model_id_of(data)
