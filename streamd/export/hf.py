"""Loading local Hugging Face checkpoints: offline, quiet, with one-line errors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from streamd.errors import ModelError
from streamd.export.common import load_or_fail


def offline_quiet() -> None:
    """Exports read local folders only: never reach for a hub, never draw progress bars."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    except ImportError:
        raise ModelError(
            "export needs torch and transformers: pip install 'streamd[export]'"
        ) from None


def from_pretrained(cls: Any, folder: Path, **kw: Any) -> Any:
    """``cls.from_pretrained(folder)`` in eval mode, offline; a broken folder is one line."""
    offline_quiet()
    return load_or_fail(str(folder), lambda: cls.from_pretrained(str(folder), **kw).eval())
