"""Scoring on a Triton tier: real ``streamd serve-model`` (PyTriton) servers on 127.0.0.1, real
daemons with ``model.backend: triton``; Triton's own metrics say how it batched."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from streamd.config import parse_config
from streamd.events.store import EventStore
from streamd.model.session import Detector

from tests.helpers.daemonproc import DaemonProc, free_port, speech_wav, write_config
from tests.helpers.triton import ServeModel, triton_python

pytest.importorskip("tritonclient.grpc.aio", reason="pip install 'streamd[triton-client]'")
PY = triton_python()
pytestmark = pytest.mark.skipif(
    PY is None, reason="no .venv-triton with PyTriton (scripts/setup --dev, or STREAMD_TRITON=1)"
)


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeModel]:
    assert PY is not None
    with ServeModel(PY, tiny_model_dir, tmp_path_factory.mktemp("triton")).start() as s:
        yield s


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    d = tmp_path_factory.mktemp("speech")
    return [speech_wav(d / f"s{i}.wav", 12.0, offset=3 * i) for i in range(4)]


def triton_cfg(servers: list[str], **model: object) -> dict[str, object]:
    return {"backend": "triton", "triton": {"servers": servers, "retry_s": 0.5}, **model}


def local_scores(models: Path, clips: list[Path]) -> dict[str, list[tuple[float, float]]]:
    """(window start, p_fake) per file from in-process onnxruntime, the daemon's own path."""
    from streamd.offline.score import score_files

    cfg = parse_config({"model": {"dir": str(models), "name": "tiny", "providers": ["cpu"]}})
    det = Detector.load(models / "tiny.yaml", ["cpu"])
    return {
        Path(r.path).name: [(w["window"]["start_s"], w["score"]) for w in r.windows]
        for r in score_files([str(c) for c in clips], cfg, det)
    }


def daemon_scores(db: Path) -> dict[str, list[tuple[float, float]]]:
    store = EventStore(db, readonly=True)
    try:
        events = store.read_since(0, types=["window.scored"], limit=100_000)
    finally:
        store.close()
    out: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for e in events:
        out[e["stream"]["labels"]["name"]].append((e["window"]["start_s"], e["score"]))
    return dict(out)


def assert_same_scores(
    got: dict[str, list[tuple[float, float]]], want: dict[str, list[tuple[float, float]]]
) -> None:
    assert sorted(got) == sorted(want)
    for name, windows in want.items():
        assert [s for s, _ in got[name]] == [s for s, _ in windows], name  # no window lost
        diff = max(abs(a[1] - b[1]) for a, b in zip(got[name], windows, strict=True))
        assert diff <= 1e-5, (name, diff)


async def test_64_concurrent_windows_run_in_fewer_executions(
    server: ServeModel, tiny_model_dir: Path
) -> None:
    from streamd.model.remote import RemoteDetector

    cfg = parse_config({"model": triton_cfg([server.grpc])}).model.triton
    clients = [RemoteDetector.from_config(tiny_model_dir / "tiny.yaml", cfg) for _ in range(2)]
    local = Detector.load(tiny_model_dir / "tiny.yaml", ["cpu"])
    rng = np.random.default_rng(7)
    windows = [(0.1 * rng.standard_normal(64000)).astype(np.float32) for _ in range(64)]
    before = server.metrics()
    results = await asyncio.gather(
        *(clients[i % 2].score_windows_async([w]) for i, w in enumerate(windows))
    )
    for _ in range(50):  # Triton's metrics endpoint can trail the last responses (bounded: 5 s)
        after = server.metrics()
        if after["nv_inference_request_success"] - before["nv_inference_request_success"] >= 64:
            break
        await asyncio.sleep(0.1)
    for c in clients:
        await c.aclose()
    requests = after["nv_inference_request_success"] - before["nv_inference_request_success"]
    executions = after["nv_inference_exec_count"] - before["nv_inference_exec_count"]
    assert requests == 64
    assert executions < requests, (executions, requests)
    p_local, _ = local.score_windows(windows)
    p_remote = np.array([p[0] for p, _ in results])
    assert np.abs(p_remote - p_local).max() <= 1e-5
    # One batch larger than the server's max_batch_size (16) is split, not refused.
    p_big, _ = await clients[0].score_windows_async(windows[:40])
    assert clients[0].servers[0].max_batch == 16
    assert np.abs(p_big - p_local[:40]).max() <= 1e-5
    await clients[0].aclose()


def test_two_daemons_score_through_one_server_like_local(
    server: ServeModel, tiny_model_dir: Path, clips: list[Path], tmp_path: Path
) -> None:
    before = server.metrics()
    daemons = []
    for i, files in enumerate((clips[:2], clips[2:])):
        port = free_port()
        cfg = write_config(
            tmp_path / f"d{i}.yaml",
            tiny_model_dir,
            tmp_path / f"d{i}.db",
            port,
            sources={
                "files": [str(f) for f in files],
                "as_fast_as_possible": True,
                "exit_when_done": True,
            },
            # One window per request, four in flight per daemon: all batching is Triton's,
            # within and across the two daemons (which may or may not overlap in time).
            model=triton_cfg([server.grpc], batch_max=1, batch_wait_ms=0, workers=4),
        )
        daemons.append(DaemonProc(cfg, port).start(wait_ready=False))
    try:
        for d in daemons:
            assert d.wait(120) == 0, d.log()[-3000:]
    finally:
        for d in daemons:
            d.__exit__()
    after = server.metrics()
    got = {**daemon_scores(tmp_path / "d0.db"), **daemon_scores(tmp_path / "d1.db")}
    assert_same_scores(got, local_scores(tiny_model_dir, clips))
    requests = after["nv_inference_request_success"] - before["nv_inference_request_success"]
    executions = after["nv_inference_exec_count"] - before["nv_inference_exec_count"]
    assert requests == sum(len(v) for v in got.values())
    assert executions < requests, (executions, requests)


def test_one_of_two_servers_killed_mid_stream_loses_no_window(
    tiny_model_dir: Path, clips: list[Path], tmp_path: Path
) -> None:
    assert PY is not None
    a = ServeModel(PY, tiny_model_dir, tmp_path)
    b = ServeModel(PY, tiny_model_dir, tmp_path)
    with a, b:
        a.start()
        b.start()
        port = free_port()
        cfg = write_config(
            tmp_path / "d.yaml",
            tiny_model_dir,
            tmp_path / "d.db",
            port,
            sources={"files": [str(c) for c in clips[:2]], "exit_when_done": True},  # real time
            model=triton_cfg([a.grpc, b.grpc], batch_max=4, batch_wait_ms=10),
        )
        with DaemonProc(cfg, port).start() as d:
            deadline = time.monotonic() + 30
            while a.metrics()["nv_inference_request_success"] < 3:
                assert time.monotonic() < deadline, d.log()[-3000:]
                time.sleep(0.2)
            a.kill()  # SIGKILL mid-stream: requests in flight to it fail over to b
            # /metrics names the failed server while the daemon keeps scoring through b.
            failed = f'streamd_triton_failures_total{{server="{a.grpc}"}}'
            text = ""
            while time.monotonic() < deadline + 30:
                with urllib.request.urlopen(d.url + "/metrics", timeout=5) as r:
                    text = r.read().decode()
                if any(
                    line.startswith(failed) and not line.endswith(" 0.0")
                    for line in text.splitlines()
                ):
                    break
                time.sleep(0.2)
            else:
                raise AssertionError(text)
            assert f'streamd_triton_server_up{{server="{b.grpc}"}} 1.0' in text
            assert d.wait(60) == 0, d.log()[-3000:]
        assert b.metrics()["nv_inference_request_success"] >= 3
    assert_same_scores(daemon_scores(tmp_path / "d.db"), local_scores(tiny_model_dir, clips[:2]))
