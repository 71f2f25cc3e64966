"""streamd: real-time detection of AI-generated and cloned voices on live calls."""

from __future__ import annotations

__version__ = "0.1.0"
