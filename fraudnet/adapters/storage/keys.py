"""Key and secret files of a node directory.

Every secret file is created with mode 0600 (``O_CREAT | O_EXCL``, so an
existing file is never overwritten) and refused on load when group or
others can read it. Contents are never logged.

Files in a node directory:

* ``node.key`` -- the node's Ed25519 private key, PKCS#8 PEM. It signs
  audit checkpoints and signal envelopes and is the node's libp2p identity.
* ``local.secret`` -- 32 random bytes (hex): the key of node-local
  pseudonyms (card/terminal references in state, decisions and the log).
* ``api.token`` -- the bearer token of the HTTP API.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from cryptography.exceptions import InternalError, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fraudnet.errors import KeyFileError

__all__ = [
    "check_private",
    "create_secret_file",
    "generate_node_files",
    "load_api_token",
    "load_local_secret",
    "load_node_key",
    "read_secret_file",
]

NODE_KEY = "node.key"
LOCAL_SECRET = "local.secret"
API_TOKEN = "api.token"


def create_secret_file(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 and write ``data``; refuse to overwrite."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path}: already exists; refusing to overwrite a key file") from None
    except OSError as e:
        raise KeyFileError(f"{path}: cannot create ({e.strerror})") from None
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def check_private(path: Path) -> None:
    """Raise :class:`KeyFileError` unless ``path`` exists and only its owner can read it."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise KeyFileError(f"{path}: missing (run 'fraudnet node init')") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"{path}: permissions {stat.S_IMODE(st.st_mode):04o} are too open; "
            f"key files must be 0600 (chmod 600 {path})"
        )


def read_secret_file(path: Path) -> bytes:
    check_private(path)
    try:
        return path.read_bytes()
    except OSError as e:
        raise KeyFileError(f"{path}: cannot read ({e.strerror})") from None


def load_node_key(node_dir: Path) -> Ed25519PrivateKey:
    path = node_dir / NODE_KEY
    data = read_secret_file(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    # e.g. a PKCS#8 key of unknown type; InternalError: OpenSSL refusing damaged DER in a
    # way cryptography does not map (found by the long fuzz pass)
    except (ValueError, TypeError, UnsupportedAlgorithm, InternalError):
        raise KeyFileError(f"{path}: not a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an Ed25519 key")
    return key


def load_local_secret(node_dir: Path) -> bytes:
    path = node_dir / LOCAL_SECRET
    text = read_secret_file(path).decode("ascii", "replace").strip()
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise KeyFileError(f"{path}: expected 64 hex characters") from None
    if len(raw) != 32:
        raise KeyFileError(f"{path}: expected 32 bytes, found {len(raw)}")
    return raw


def load_api_token(node_dir: Path) -> str:
    path = node_dir / API_TOKEN
    token = read_secret_file(path).decode("ascii", "replace").strip()
    if len(token) < 16:
        raise KeyFileError(f"{path}: token too short (need at least 16 characters)")
    return token


def generate_node_files(node_dir: Path) -> None:
    """Create node.key, local.secret and api.token (0600) in ``node_dir``."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    create_secret_file(node_dir / NODE_KEY, pem)
    create_secret_file(node_dir / LOCAL_SECRET, (secrets.token_hex(32) + "\n").encode())
    create_secret_file(node_dir / API_TOKEN, (secrets.token_urlsafe(32) + "\n").encode())
