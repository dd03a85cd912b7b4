"""Files of the p2p adapter: the network key file and persisted state.

Network key file (mode 0600, one epoch per line, ``#`` starts a comment)::

    # epoch  starts_at_unix_s  key_hex (64 hex chars = 32 bytes)
    0        1735689600        9f2c...
    1        1767225600        41aa...

Persisted state (``state_dir``):

* ``p2p-seq`` -- the reserved sequence-number high-water mark (decimal). The
  publisher reserves numbers in blocks and writes the new mark (fsync +
  rename) *before* using any number of a block, so a restart never reuses one.
* ``p2p-replay.msgpack`` -- the validator's replay snapshot, rewritten
  atomically at most once a second while it changes and at shutdown.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack

from fraudnet.adapters.storage.keys import read_secret_file
from fraudnet.core.signals import EpochKey, NetworkKeyring
from fraudnet.errors import ConfigError, KeyFileError

__all__ = ["atomic_write", "load_network_keyring", "read_replay_state", "read_seq", "write_seq"]

SEQ_FILE = "p2p-seq"
REPLAY_FILE = "p2p-replay.msgpack"
MAX_STATE_BYTES = 64 * 1024 * 1024
MAX_SEQ = (1 << 64) - 1


def load_network_keyring(path: Path, grace_s: int) -> NetworkKeyring:
    """Parse the network key file; :class:`KeyFileError` names the file and line."""
    text = read_secret_file(path).decode("utf-8", "replace")
    keys: list[EpochKey] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        body = line.split("#", 1)[0].strip()
        if not body:
            continue
        parts = body.split()
        try:
            if len(parts) != 3:
                raise ValueError
            epoch, start, key = int(parts[0]), int(parts[1]), bytes.fromhex(parts[2])
        except ValueError:
            raise KeyFileError(
                f"{path}:{lineno}: expected 'epoch starts_at_unix_s key_hex'"
            ) from None
        keys.append(EpochKey(epoch, start * 1_000_000, key))
    try:
        return NetworkKeyring(keys, grace_s * 1_000_000, where=str(path))
    except ConfigError as e:
        raise KeyFileError(str(e)) from None


def atomic_write(path: Path, data: bytes) -> None:
    """Replace a private (0600) state file atomically and durably."""
    from fraudnet.adapters.storage.audit_files import write_atomic

    write_atomic(path, data, mode=0o600)


def read_seq(state_dir: Path) -> int:
    path = state_dir / SEQ_FILE
    try:
        text = path.read_text("ascii").strip()
    except FileNotFoundError:
        return 0
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read sequence state ({e})") from None
    # <= 20 digits: int() refuses over 4300, and a sequence number is an unsigned 64-bit value
    if not (text.isdigit() and len(text) <= 20 and int(text) <= MAX_SEQ):
        raise ConfigError(f"{path}: corrupt sequence state (expected a decimal number < 2**64)")
    return int(text)


def write_seq(state_dir: Path, value: int) -> None:
    atomic_write(state_dir / SEQ_FILE, f"{value}\n".encode("ascii"))


def read_replay_state(state_dir: Path) -> Any:
    """The stored replay snapshot, or None when there is none yet."""
    path = state_dir / REPLAY_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    if len(data) > MAX_STATE_BYTES:
        raise ConfigError(f"{path}: replay state larger than {MAX_STATE_BYTES} bytes")
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as e:
        raise ConfigError(f"{path}: corrupt replay state ({type(e).__name__})") from None
