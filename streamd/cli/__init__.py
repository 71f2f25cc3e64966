"""``streamd``: the command line. Thin: parse, call, print. Errors are one line and an exit code."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from streamd import __version__
from streamd.errors import StreamdError

# subcommand -> module in streamd.cli; each has ``register(subparsers)`` that sets ``func``.
COMMANDS = ["run", "score", "mic", "models", "bench", "eval", "train", "calibrate", "serve_model"]

DESCRIPTION = """\
streamd listens to live calls and raises alerts when a voice is AI-generated or cloned.

Audio from files, a microphone, SIP/RTP, WebRTC or contact-center feeds is converted to 16 kHz
mono once, gated by voice activity detection, cut into 2.5-4 s speech windows, scored by an
ONNX model shared by all streams, smoothed per stream, and published as versioned JSON events.
"""

EPILOG = """\
exit codes: 0 ok, 1 runtime failure, 2 usage, config or input error.
Run `streamd COMMAND --help` for each command's options."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamd",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"streamd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"streamd.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"streamd.cli.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except StreamdError as exc:
        print(f"streamd {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # last resort: one line, with the traceback only in debug logs
        logging.getLogger("streamd").debug("unexpected error", exc_info=True)
        print(
            f"streamd {args.command}: unexpected error: {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return 1
