"""The one error family that every parser raises, so adapters can catch junk in one place."""

from __future__ import annotations


class ProtocolError(ValueError):
    """Input that does not follow the protocol. Parsers raise this (or a subclass) and nothing else."""
