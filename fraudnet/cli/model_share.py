"""``fraudnet model sign|combine``: share decision models between members.

A member that shares its model publishes the model file with a detached
signature ``MODEL.sig`` (JSON), made with its node key in the ``model-share``
context over ``model id (SHA-256 hex) NUL member id``, on the network id. A
member that receives models runs ``combine``: each file's SHA-256 must be the
signed model id, the signer must be a member of the node's network (the
``[p2p] members`` of ``node.toml``, or the roster when ``[consensus]`` is
configured) under the key it names, and the signature must verify -- only
then is the file decoded. The result is one ``blend`` model
(:func:`fraudnet.training.combine.combine`) deployed like any other
(``fraudnet model deploy``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from fraudnet.errors import ConfigError, IntegrityError, ModelError

CONTEXT = b"model-share"
SIG_TYPE = "fraudnet-model-signature/1"
MAX_SIG_BYTES = 4096


def _payload(model_id: str, member: str) -> bytes:
    return model_id.encode("ascii") + b"\x00" + member.encode("utf-8")


def _network(node_dir: Path) -> tuple[str, dict[str, bytes]]:
    """``(network id, member id -> public key)`` the node trusts."""
    from fraudnet.adapters.p2p.settings import P2PSettings
    from fraudnet.config import load_settings

    settings = load_settings(node_dir)
    where = str(node_dir / "node.toml")
    if "p2p" not in settings.extra:
        raise ConfigError(f"{where}: no [p2p] section: the node has no network to share with")
    p2p = P2PSettings.from_mapping(settings.extra["p2p"], where, base_dir=node_dir)
    members = dict(p2p.members)
    if "consensus" in settings.extra:
        from fraudnet.adapters.consensus_bridge import ConsensusSettings, load_chain_file

        cs = ConsensusSettings.from_mapping(settings.extra["consensus"], where,
                                            node_dir=node_dir, default_threshold=0.8)  # fmt: skip
        members = {m.member_id: m.public_key for m in load_chain_file(cs).tip.members}
    return p2p.network_id, members


def _read_sig(path: Path) -> dict[str, str]:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise IntegrityError(f"{path}: cannot read signature ({e.strerror or e})") from None
    if len(raw) > MAX_SIG_BYTES:
        raise IntegrityError(f"{path}: {len(raw)} bytes is not a model signature")
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise IntegrityError(f"{path}: not JSON") from None
    keys = ("type", "network", "member", "public_key", "model_id", "signature")
    if (
        not isinstance(doc, dict)
        or doc.get("type") != SIG_TYPE
        or not all(isinstance(doc.get(k), str) for k in keys)
    ):
        raise IntegrityError(f"{path}: not a {SIG_TYPE} document")
    return {k: doc[k] for k in keys}


def verify_shared(model_path: Path, network: str, members: dict[str, bytes]) -> tuple[str, str]:
    """Check ``model_path`` against ``model_path.sig``; returns ``(member, model id)``.

    The file is hashed, never decoded, here; raises :class:`IntegrityError`."""
    import hashlib

    from fraudnet.core import crypto
    from fraudnet.core.scoring.modelfile import MAX_MODEL_BYTES

    sig_path = model_path.with_name(model_path.name + ".sig")
    doc = _read_sig(sig_path)
    try:
        if model_path.stat().st_size > MAX_MODEL_BYTES:
            raise IntegrityError(f"{model_path}: larger than {MAX_MODEL_BYTES} bytes")
        model_id = hashlib.sha256(model_path.read_bytes()).hexdigest()
    except OSError as e:
        raise IntegrityError(f"{model_path}: cannot read ({e.strerror or e})") from None
    if doc["network"] != network:
        raise IntegrityError(f"{sig_path}: signed for network {doc['network']!r}, not {network!r}")
    if doc["model_id"] != model_id:
        raise IntegrityError(f"{sig_path}: signs model {doc['model_id'][:16]}…, the file is "
                             f"{model_id[:16]}… (altered or wrong file)")  # fmt: skip
    member = doc["member"]
    key = members.get(member)
    if key is None:
        raise IntegrityError(f"{sig_path}: {member!r} is not a member of {network!r}")
    if doc["public_key"] != key.hex():
        raise IntegrityError(f"{sig_path}: not member {member!r}'s key")
    try:
        signature = bytes.fromhex(doc["signature"])
    except ValueError:
        raise IntegrityError(f"{sig_path}: signature is not hex") from None
    if not crypto.verify(key, signature, CONTEXT, network.encode(), _payload(model_id, member)):
        raise IntegrityError(f"{sig_path}: bad signature by {member!r}")
    return member, model_id


@click.command("sign")
@click.argument("model_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--node", "node_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="this member's node directory (its key and network)")  # fmt: skip
def sign(model_path: Path, node_dir: Path) -> None:
    """Sign MODEL for the members of this node's network (writes MODEL.sig)."""
    from fraudnet.adapters.storage.keys import load_node_key
    from fraudnet.core import crypto
    from fraudnet.training.modelio import load_model

    network, members = _network(node_dir)
    key = load_node_key(node_dir)
    pub = crypto.public_bytes(key)
    me = [m for m, k in members.items() if k == pub]
    if not me:
        raise ConfigError(f"{node_dir}: the node key is not a member key of {network!r}")
    _, model_id = load_model(model_path)  # only a valid model is worth signing
    sig = crypto.sign(key, CONTEXT, network.encode(), _payload(model_id, me[0]))
    doc: dict[str, Any] = {"type": SIG_TYPE, "network": network, "member": me[0],
                           "public_key": pub.hex(), "model_id": model_id,
                           "signature": sig.hex()}  # fmt: skip
    out = model_path.with_name(model_path.name + ".sig")
    out.write_text(json.dumps(doc, sort_keys=True) + "\n", encoding="utf-8")
    click.echo(f"{out}: model {model_id[:16]}… signed by {me[0]} for {network}")


@click.command("combine")
@click.argument("models", nargs=-1, required=True,
                type=click.Path(dir_okay=False, path_type=Path))  # fmt: skip
@click.option("--node", "node_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="this member's node directory (whose members are trusted)")  # fmt: skip
@click.option("--weights", default=None, help="comma-separated weights, one per model "
              "(default: equal)")  # fmt: skip
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path))
def combine_cmd(models: tuple[Path, ...], node_dir: Path, weights: str | None,
                out_path: Path) -> None:  # fmt: skip
    """Combine members' signed MODELS into one consortium model (a blend)."""
    from fraudnet.training.combine import combine
    from fraudnet.training.modelio import load_model, save_model

    network, members = _network(node_dir)
    w: list[float] | None = None
    if weights is not None:
        try:
            w = [float(v) for v in weights.split(",")]
        except ValueError:
            raise ConfigError(f"--weights {weights!r}: expected numbers") from None
        if len(w) != len(models):
            raise ConfigError(f"--weights: {len(w)} weights for {len(models)} models")
    loaded, signers = [], []
    for path in models:
        member, model_id = verify_shared(path, network, members)
        model, got_id = load_model(path)
        if got_id != model_id:  # changed between hashing and loading
            raise IntegrityError(f"{path}: changed while being read")
        model.meta["model_id"] = model_id
        loaded.append(model)
        signers.append(member)
    if len(set(signers)) != len(signers):
        raise ModelError(f"combine: one model per member (twice: {sorted(signers)})")
    out = combine(loaded, w, meta={"network": network, "signers": signers})
    model_id = save_model(out, out_path)
    click.echo(f"{out_path}: consortium of {len(loaded)} members "
               f"({', '.join(signers)}), model id {model_id}")  # fmt: skip
