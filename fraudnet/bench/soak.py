"""``fraudnet bench soak``: a node at a steady rate for a long time (see :mod:`.overload`)."""

from __future__ import annotations

from .overload import cli_soak as cli

__all__ = ["cli"]
