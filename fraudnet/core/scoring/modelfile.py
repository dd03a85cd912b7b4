"""Model files: arrays + JSON metadata in the pickle-free container.

``model_id`` is the SHA-256 of the file bytes, so two nodes running "the
same model" provably run the same bytes. Decoding validates everything
(:class:`~fraudnet.core.scoring.compiled.CompiledModel` checks array types,
lengths and tree indices) and raises :class:`~fraudnet.errors.ModelError`.
"""

from __future__ import annotations

import hashlib
from typing import Final

from fraudnet.errors import InputError, ModelError

from ..features.container import pack, unpack
from ..features.schema import SCHEMA_VERSION, FeatureConfig
from .compiled import CompiledModel

__all__ = ["FORMAT_VERSION", "decode_model", "encode_model", "model_id_of"]

MAGIC: Final = b"FNMD"
FORMAT_VERSION: Final = 1
MAX_MODEL_BYTES: Final = 512 << 20


def model_id_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def encode_model(model: CompiledModel) -> bytes:
    meta = dict(model.meta)
    meta.update(
        format_version=FORMAT_VERSION,
        kind=model.kind,
        feature_names=list(model.feature_names),
        feature_schema_version=model.schema_version,
        feature_config=model.feature_config.to_json(),
    )
    return pack(MAGIC, meta, model.arrays)


def decode_model(data: bytes, what: str = "model file") -> CompiledModel:
    """Decode and validate model bytes; :class:`ModelError` naming ``what`` on any problem."""
    if len(data) > MAX_MODEL_BYTES:
        raise ModelError(f"{what}: {len(data)} bytes exceeds {MAX_MODEL_BYTES}")
    try:
        meta, arrays = unpack(data, MAGIC, what)
    except InputError as e:
        raise ModelError(str(e)) from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"{what}: unsupported format version {meta.get('format_version')!r}")
    schema = meta.get("feature_schema_version")
    if not isinstance(schema, int) or not 1 <= schema <= SCHEMA_VERSION:
        raise ModelError(
            f"{what}: feature schema {schema!r} is newer than this node's ({SCHEMA_VERSION})"
        )
    names = meta.get("feature_names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or not names:
        raise ModelError(f"{what}: feature_names must be a non-empty list of strings")
    try:
        config = FeatureConfig.from_json(meta.get("feature_config"))
    except Exception as e:
        raise ModelError(f"{what}: {e}") from None
    try:
        model = CompiledModel(
            kind=str(meta.get("kind")), feature_names=tuple(names), arrays=arrays,
            feature_config=config, meta=meta,
        )  # fmt: skip
    except ModelError as e:
        raise ModelError(f"{what}: {e}") from None
    return model
