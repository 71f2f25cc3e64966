"""Loading local Hugging Face checkpoints: offline, quiet, with one-line errors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from streamd.errors import ModelError


def offline_quiet() -> None:
    """Exports read local folders only: never reach for a hub, never draw progress bars."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:
        raise ModelError(
            "export needs torch and transformers: pip install 'streamd[export]'"
        ) from None


def from_pretrained(cls: Any, folder: Path, **kw: Any) -> Any:
    offline_quiet()
    try:
        return cls.from_pretrained(str(folder), **kw).eval()
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{folder}: cannot load the checkpoint ({first})") from None
