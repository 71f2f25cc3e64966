"""The Triton side without a server: the model repository export, the client's failover state and
the bounded queue when no server answers (real refused connections on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import sysconfig
from pathlib import Path

import numpy as np
import pytest
import yaml

from streamd.cli import main
from streamd.config import parse_config
from streamd.errors import ModelError

pytest.importorskip("tritonclient.grpc.aio", reason="pip install 'streamd[triton-client]'")

from streamd.model.remote import RemoteDetector
from streamd.model.triton_repo import write_triton_repo
from streamd.pipeline.remote_scorer import RemoteScorer, WindowDropped

from tests.helpers.daemonproc import free_port


def test_export_triton_writes_a_repository_triton_accepts(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    repo = tmp_path / "repo"
    assert (
        main(["models", "export-triton", "tiny", str(repo), "--models-dir", str(tiny_model_dir)])
        == 0
    )
    cfg = text_format.Parse(
        (repo / "tiny" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig()
    )  # Triton's own schema: a typo in a field name fails here
    manifest = yaml.safe_load((tiny_model_dir / "tiny.yaml").read_text())
    assert cfg.backend == "onnxruntime" and cfg.max_batch_size == 64
    assert cfg.input[0].name == manifest["input"] and list(cfg.input[0].dims) == [-1]
    assert cfg.output[0].name == manifest["output"]
    assert list(cfg.output[0].dims) == [len(manifest["labels"])]
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 2000
    assert cfg.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    onnx = (repo / "tiny" / "1" / "model.onnx").read_bytes()
    assert onnx == (tiny_model_dir / "tiny.onnx").read_bytes()


def test_export_triton_refuses_a_changed_onnx_file(tiny_model_dir: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "tiny.yaml").write_text((tiny_model_dir / "tiny.yaml").read_text())
    (models / "tiny.onnx").write_bytes(b"not the exported graph")
    with pytest.raises(ModelError, match="sha256"):
        write_triton_repo(models / "tiny.yaml", tmp_path / "repo")
    assert not (tmp_path / "repo").exists()


def test_serve_model_points_the_stub_at_this_libpython() -> None:
    from streamd.cli.serve_model import use_this_libpython

    env = {"LD_LIBRARY_PATH": "/opt/x"}
    libdir = sysconfig.get_config_var("LIBDIR")
    assert use_this_libpython(env) == f"{libdir}:/opt/x"
    assert use_this_libpython(env) == f"{libdir}:/opt/x"  # idempotent


async def test_no_server_left_windows_wait_then_drop_beyond_the_bound(
    tiny_model_dir: Path,
) -> None:
    dead = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]  # nothing listens
    cfg = parse_config(
        {"model": {"backend": "triton", "triton": {"servers": dead, "timeout_s": 1}}}
    ).model.triton
    det = RemoteDetector.from_config(tiny_model_dir / "tiny.yaml", cfg)
    scorer = RemoteScorer(det, batch_max=2, batch_wait_ms=0, max_queue=5)
    await scorer.start()
    futures = [scorer.submit(np.zeros(48000, np.float32)) for _ in range(12)]
    deadline = asyncio.get_running_loop().time() + 20
    while det.unavailable() is None:  # both refuse: both marked down
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    reason = det.unavailable()
    assert reason is not None and "inference tier unavailable" in reason
    assert all(d in reason for d in dead)
    dropped = [f for f in futures if f.done() and isinstance(f.exception(), WindowDropped)]
    assert scorer.dropped == len(dropped) == 12 - 5
    assert not any(f.done() for f in futures[:5])  # the first ones wait for a server
    assert scorer.status()["queued"] == 3  # two are in the request that waits
    close = asyncio.create_task(scorer.close())  # would wait for a server: cancel it
    await asyncio.sleep(0.1)
    close.cancel()
    with pytest.raises(asyncio.CancelledError):
        await close
    assert all(f.done() for f in futures)  # no stream is left waiting on a window
