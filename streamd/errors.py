"""Errors that the CLI turns into one clear line and an exit code, never a traceback."""

from __future__ import annotations


class StreamdError(Exception):
    """A failure the user can act on. ``exit_code``: 2 usage/config, 1 runtime.

    The exit codes are in docs/design.md, "Command line".
    """

    exit_code = 1


class UsageError(StreamdError):
    exit_code = 2


class ConfigError(UsageError):
    """The config file is wrong; the message names the key."""


class ModelError(StreamdError):
    """A model or manifest cannot be loaded or used."""

    exit_code = 2


class NoModelError(ModelError):
    """No model is installed or none was chosen; the message says how to get one."""


class AudioError(StreamdError):
    """An audio file cannot be read as audio."""

    exit_code = 2


class ProtocolError(ValueError):
    """Input that does not follow the protocol. Parsers raise this (or a subclass) and nothing else.

    It lives here, not in ``protocols/``, because the codecs below the protocols raise it too.
    """
