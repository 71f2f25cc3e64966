"""The CPU-fallback warning is for a GPU that was expected, not for every CPU-only command."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from streamd.model.manifest import resolve_manifest
from streamd.model.session import Detector


@pytest.mark.parametrize("providers", [["cuda", "cpu"], ["tensorrt", "cuda", "cpu"], ["cpu"]])
def test_no_warning_when_this_onnxruntime_has_no_gpu(
    tiny_model_dir: Path, providers: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed here: a fallback would be worth a warning")
    caplog.set_level(logging.INFO, logger="streamd")
    det = Detector.load(resolve_manifest(tiny_model_dir, "tiny"), providers)
    assert det.provider == "cpu"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert "provider=cpu" in caplog.text  # still said, at info
