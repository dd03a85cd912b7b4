"""The one error tree of fraudnet.

This module imports nothing from fraudnet, so every layer may import it.

Three families, kept apart on purpose (as h11 keeps ``LocalProtocolError``
apart from ``RemoteProtocolError``):

* :class:`UserError` -- the operator or a data feed gave us something wrong
  (bad config, malformed transaction, corrupt file). The message names *what*
  and *where*; the CLI prints it on one line and exits with :attr:`exit_code`.
* :class:`PeerError` -- another network member (or someone pretending to be
  one) sent something invalid. Never fatal for the node: the message is
  rejected and counted; :attr:`reason` is a stable label for metrics.
* :class:`InternalError` -- a bug in fraudnet. Should never happen; if it
  does, it is a defect to report.

Exit codes (documented in README and ``fraudnet --help``):

====  =====================================================
0     success
1     internal error (a bug)
2     usage error (bad command line) -- click's own code
3     configuration error
4     input data error
5     integrity failure (audit log or certificate does not verify)
6     unavailable (node or broker not reachable, overloaded)
7     security refusal (bad permissions on a key file, auth failure)
====  =====================================================
"""

from __future__ import annotations

__all__ = [
    "AuditError",
    "ConfigError",
    "ConsensusError",
    "FraudnetError",
    "InputError",
    "IntegrityError",
    "InternalError",
    "KeyFileError",
    "ModelError",
    "PeerError",
    "PolicyError",
    "SignalRejected",
    "TransactionError",
    "UnavailableError",
    "UserError",
]


class FraudnetError(Exception):
    """Root of every error fraudnet raises on purpose."""

    exit_code: int = 1


class InternalError(FraudnetError):
    """A bug in fraudnet: an invariant did not hold. Report it."""

    exit_code = 1


class UserError(FraudnetError):
    """Something the operator or a data feed supplied is wrong.

    ``str(err)`` is a complete one-line message naming what and where.
    """

    exit_code = 1


class ConfigError(UserError):
    """Configuration (file, environment, flags) is invalid. Fix the named setting."""

    exit_code = 3


class InputError(UserError):
    """Input data (a file, a request body, a message) is malformed."""

    exit_code = 4


class TransactionError(InputError):
    """One transaction record is invalid.

    ``source`` names the file/topic/endpoint, ``location`` the line, offset
    or record index, ``field`` the offending field (``None`` when the record
    as a whole cannot be parsed). In streaming mode the record goes to the
    dead-letter topic with :attr:`reason` instead of being raised.
    """

    def __init__(
        self,
        reason: str,
        *,
        field: str | None = None,
        source: str = "",
        location: str = "",
    ) -> None:
        self.reason = reason
        self.field = field
        self.source = source
        self.location = location
        super().__init__(self._render())

    def _render(self) -> str:
        where = ":".join(p for p in (self.source, self.location) if p)
        what = f"field {self.field!r}: " if self.field else ""
        return f"{where + ': ' if where else ''}{what}{self.reason}"

    def located(self, source: str, location: str) -> TransactionError:
        """Return a copy of this error with its source and location filled in."""
        return TransactionError(self.reason, field=self.field, source=source, location=location)


class ModelError(UserError):
    """A model file is missing, corrupt or incompatible with this node."""

    exit_code = 4


class PolicyError(UserError):
    """A policy bundle is invalid (syntax, unknown field, wrong type)."""

    exit_code = 4


class IntegrityError(UserError):
    """Something that must verify does not (audit log, proof, certificate)."""

    exit_code = 5


class AuditError(IntegrityError):
    """The audit log is damaged; the message names the first bad record and the kind of damage."""


class UnavailableError(UserError):
    """A node, broker or peer is not reachable or is shedding load. Retry later."""

    exit_code = 6


class KeyFileError(UserError):
    """A key file is missing, malformed or readable by group/others (must be 0600)."""

    exit_code = 7


class PeerError(FraudnetError):
    """A remote member sent something invalid. Never fatal; the message is dropped.

    ``reason`` is a short stable label used as a metrics label value.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class SignalRejected(PeerError):
    """A signal envelope failed validation.

    ``ignore`` is True when GossipSub should IGNORE (drop silently, e.g.
    a duplicate) rather than REJECT (penalise the forwarding peer).
    """

    def __init__(self, reason: str, detail: str = "", *, ignore: bool = False) -> None:
        self.ignore = ignore
        super().__init__(reason, detail)


class ConsensusError(PeerError):
    """A roster, attestation or certificate is invalid."""
