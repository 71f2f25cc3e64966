"""Fixtures the model-family tests share."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.families import AasistReference, load_aasist_reference


@pytest.fixture(scope="session")
def aasist_reference(shared_dir: Path) -> AasistReference:
    """The original AASIST implementation's inputs and logits, read once per session."""
    return load_aasist_reference(shared_dir)
