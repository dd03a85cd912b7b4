"""librdkafka's mock cluster through its C API (ctypes), for record deletion.

``Producer({'test.mock.num.brokers': 1})`` starts the mock cluster but gives
no handle on it. librdkafka's public mock API (``rdkafka_mock.h``) does: this
module loads the librdkafka that confluent-kafka ships (the library its
extension links, so the same code runs the broker either way), creates a
client handle with ``rd_kafka_new`` and a one-broker cluster with
``rd_kafka_mock_cluster_new``, and exposes
``rd_kafka_mock_partition_delete_records``.

Why deletion matters (ADR 0506): the mock finds the message set a fetch
starts at by walking the partition's log from its oldest set ("FIXME:
Maintain an index") and returns one set per partition per fetch, so every
fetch costs time in the number of sets the partition holds -- up to ~5 MiB
of them. Deleting what the node's consumers have committed keeps the walk
short.

Every call is checked: a library without these symbols, or a cluster that
does not start, raises :class:`MockClusterUnavailable` and the caller falls
back to the plain ``test.mock.num.brokers`` broker (no deletion).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import threading
from pathlib import Path

__all__ = ["MockCluster", "MockClusterUnavailable", "find_librdkafka"]

_RD_KAFKA_PRODUCER = 0
#: rd_kafka_resp_err_t values delete_records returns that are not failures of ours
_ERR_NO_ERROR = 0
_ERR_OFFSET_OUT_OF_RANGE = 1
_ERR_UNKNOWN_TOPIC_OR_PART = 3


class MockClusterUnavailable(RuntimeError):
    """The mock cluster's C API cannot be used here (library, symbol or start-up)."""


def find_librdkafka() -> Path:
    """The librdkafka shared library that confluent-kafka uses.

    Wheels bundle it next to the package (``confluent_kafka.libs/`` on Linux,
    ``confluent_kafka/.dylibs/`` on macOS); a build against a system library
    finds it through the loader's search path.
    """
    import confluent_kafka

    pkg = Path(confluent_kafka.__file__).resolve().parent
    patterns = [
        str(pkg.parent / "confluent_kafka.libs" / "librdkafka*.so*"),
        str(pkg / ".dylibs" / "librdkafka*.dylib"),
    ]
    for pattern in patterns:
        found = sorted(glob.glob(pattern))
        if found:
            return Path(found[0])
    name = ctypes.util.find_library("rdkafka")
    if name:
        return Path(name)
    raise MockClusterUnavailable("librdkafka not found next to confluent_kafka or on the system")


class MockCluster:
    """One mock broker on 127.0.0.1, owned by this object until :meth:`close`."""

    def __init__(self, library: Path | None = None) -> None:
        path = library or find_librdkafka()
        try:
            lib = ctypes.CDLL(str(path))
            _declare(lib)
        except (OSError, AttributeError) as e:
            raise MockClusterUnavailable(f"{path}: {e}") from None
        self._lib = lib
        self._lock = threading.Lock()
        conf = lib.rd_kafka_conf_new()
        errstr = ctypes.create_string_buffer(512)
        for key, value in ((b"log_level", b"3"),):  # quiet: it only owns the cluster
            if lib.rd_kafka_conf_set(conf, key, value, errstr, len(errstr)) != 0:
                lib.rd_kafka_conf_destroy(conf)
                raise MockClusterUnavailable(f"rd_kafka_conf_set {key!r}: {errstr.value!r}")
        rk = lib.rd_kafka_new(_RD_KAFKA_PRODUCER, conf, errstr, len(errstr))
        if not rk:  # on failure the conf is still ours
            lib.rd_kafka_conf_destroy(conf)
            raise MockClusterUnavailable(f"rd_kafka_new: {errstr.value.decode(errors='replace')}")
        mc = lib.rd_kafka_mock_cluster_new(rk, 1)
        if not mc:
            lib.rd_kafka_destroy(rk)
            raise MockClusterUnavailable("rd_kafka_mock_cluster_new failed")
        self._rk: int | None = rk
        self._mc: int | None = mc
        self.bootstrap = (lib.rd_kafka_mock_cluster_bootstraps(mc) or b"").decode()
        if not self.bootstrap:
            self.close()
            raise MockClusterUnavailable("mock cluster reported no bootstrap address")

    def delete_records(self, topic: str, partition: int, before: int) -> bool:
        """Delete the records of ``topic`` [``partition``] below offset ``before``.

        Returns False when there is nothing to delete there (unknown topic or
        partition, an offset past the end, or the cluster is closed); raises
        :class:`MockClusterUnavailable` on any other error code.
        """
        with self._lock:
            if self._mc is None:
                return False
            err = self._lib.rd_kafka_mock_partition_delete_records(
                self._mc, topic.encode(), partition, before
            )
        if err in (_ERR_OFFSET_OUT_OF_RANGE, _ERR_UNKNOWN_TOPIC_OR_PART):
            return False
        if err != _ERR_NO_ERROR:
            raise MockClusterUnavailable(f"delete_records {topic}[{partition}] < {before}: {err}")
        return True

    def close(self) -> None:
        """Stop the broker (its clients see the connection close) and free the handle."""
        with self._lock:
            mc, rk, self._mc, self._rk = self._mc, self._rk, None, None
        if mc:
            self._lib.rd_kafka_mock_cluster_destroy(mc)
        if rk:
            self._lib.rd_kafka_destroy(rk)


def _declare(lib: ctypes.CDLL) -> None:
    """Argument and result types (``rdkafka.h``, ``rdkafka_mock.h``); AttributeError if a
    symbol is missing (a librdkafka older than 2.x or built without the mock cluster)."""
    vp, cp, i32, i64 = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int32, ctypes.c_int64
    lib.rd_kafka_conf_new.restype = vp
    lib.rd_kafka_conf_new.argtypes = []
    lib.rd_kafka_conf_set.restype = ctypes.c_int
    lib.rd_kafka_conf_set.argtypes = [vp, cp, cp, cp, ctypes.c_size_t]
    lib.rd_kafka_conf_destroy.restype = None
    lib.rd_kafka_conf_destroy.argtypes = [vp]
    lib.rd_kafka_new.restype = vp
    lib.rd_kafka_new.argtypes = [ctypes.c_int, vp, cp, ctypes.c_size_t]
    lib.rd_kafka_destroy.restype = None
    lib.rd_kafka_destroy.argtypes = [vp]
    lib.rd_kafka_mock_cluster_new.restype = vp
    lib.rd_kafka_mock_cluster_new.argtypes = [vp, ctypes.c_int]
    lib.rd_kafka_mock_cluster_destroy.restype = None
    lib.rd_kafka_mock_cluster_destroy.argtypes = [vp]
    lib.rd_kafka_mock_cluster_bootstraps.restype = cp
    lib.rd_kafka_mock_cluster_bootstraps.argtypes = [vp]
    lib.rd_kafka_mock_partition_delete_records.restype = ctypes.c_int
    lib.rd_kafka_mock_partition_delete_records.argtypes = [vp, cp, i32, i64]
