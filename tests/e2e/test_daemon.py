"""The real daemon in a subprocess on a free loopback port, with file sources and a tiny model,
and real websocket clients: event sequences, the replay/live seam, kill -9, SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from streamd.events.schema import validate_event
from streamd.events.store import EventStore

from tests.helpers.daemonproc import (
    DaemonProc,
    Event,
    collect,
    contiguous,
    ended_streams,
    free_port,
    speech_wav,
    write_config,
)

ALERTS = {"raise": 0.4, "clear": 0.3, "raise_after": 2}  # the tiny random model scores ~0.5


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    d = tmp_path_factory.mktemp("speech")
    return [speech_wav(d / f"speech{i}.wav", 20.0, offset=5 * i) for i in range(3)]


def by_stream(events: list[Event]) -> dict[str, list[Event]]:
    out: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        if "stream" in e:
            out[e["stream"]["stream_id"]].append(e)
    return out


def check_stream_sequence(events: list[Event]) -> dict[str, Any]:
    """stream.started, then window.scored (with alerts between), then stream.ended with its
    summary."""
    types = [e["type"] for e in events]
    assert types[0] == "stream.started" and types[-1] == "stream.ended", types
    assert set(types[1:-1]) <= {"window.scored", "alert.raised", "alert.cleared"}, types
    windows = [e for e in events if e["type"] == "window.scored"]
    starts = [w["window"]["start_s"] for w in windows]
    assert starts == sorted(starts)
    summary: dict[str, Any] = events[-1]["summary"]
    for key in ("speech_s", "windows", "max_score", "mean_score", "alert_raised", "frames_lost"):
        assert key in summary, key
    assert summary["windows"] == len(windows)
    assert summary["alert_raised"] == ("alert.raised" in types)
    if windows:
        assert summary["max_score"] == pytest.approx(max(w["score"] for w in windows), abs=1e-3)
    return summary


async def test_files_become_event_sequences_with_no_gap_across_replay_and_live(
    tiny_model_dir: Path, clips: list[Path], tmp_path: Path
) -> None:
    port = free_port()
    cfg = write_config(
        tmp_path / "c.yaml",
        tiny_model_dir,
        tmp_path / "e.db",
        port,
        sources={"files": [str(c) for c in clips], "as_fast_as_possible": True},
        alerts=ALERTS,
    )
    with DaemonProc(cfg, port).start(wait_ready=False) as d:
        await asyncio.to_thread(d.wait_ready, 60)

        # Clients join while the files are being scored, each with its own since=.
        async def client(delay: float, since: int) -> list[Event]:
            await asyncio.sleep(delay)
            events, _ = await collect(d.url, ended_streams(len(clips)), 90, since=str(since))
            return events

        runs = await asyncio.gather(client(0, 0), client(0.3, 0), client(0.6, 4), client(1.0, 10))
        assert d.stop() == 0
    assert f"listening on http://127.0.0.1:{port}" in d.log()

    reference = {e["id"]: e for e in runs[0]}
    for since, events in zip([0, 0, 4, 10], runs, strict=True):
        ids = [e["id"] for e in events]
        assert ids[0] == since + 1 and contiguous(ids), f"gap or duplicate with since={since}"
        for e in events:
            validate_event(e)
            assert e == reference[e["id"]]

    events = runs[0]
    status = events[0]
    assert status["type"] == "daemon.status" and status["state"] == "ready"
    assert (
        status["listen"]["port"] == port
        and status["provider"] == "cpu"
        and status["model"]["name"] == "tiny"
    )
    streams = by_stream(events)
    assert len(streams) == len(clips)
    for seq in streams.values():
        summary = check_stream_sequence(seq)
        assert summary["windows"] >= 10 and summary["alert_raised"] and summary["speech_s"] > 10
        assert {e["stream"]["labels"]["name"] for e in seq} <= {c.name for c in clips}


async def test_kill_9_mid_stream_then_restart_and_resume_with_since(
    tiny_model_dir: Path, clips: list[Path], tmp_path: Path
) -> None:
    store_path = tmp_path / "e.db"
    port = free_port()
    cfg = write_config(
        tmp_path / "live.yaml", tiny_model_dir, store_path, port, sources={"files": [str(clips[0])]}
    )
    with DaemonProc(cfg, port).start() as d:
        seen, _ = await collect(
            d.url, lambda ev: sum(e["type"] == "window.scored" for e in ev) >= 3, 60, since="0"
        )
        d.signal(signal.SIGKILL)
        assert d.wait(10) == -signal.SIGKILL
    assert not any(e["type"] == "stream.ended" for e in seen)  # it really died mid-stream

    port = free_port()
    cfg = write_config(
        tmp_path / "again.yaml",
        tiny_model_dir,
        store_path,
        port,
        sources={"files": [str(clips[1])], "as_fast_as_possible": True},
    )
    with DaemonProc(cfg, port).start() as d:
        # The stream the crash left open ends as "recovered", then the new file's stream.
        after, _ = await collect(d.url, ended_streams(2), 60, since="0")
        old_max = max(e["id"] for e in seen)
        resumed, _ = await collect(d.url, ended_streams(2), 60, since=str(old_max))
        assert d.stop() == 0

    stored = {e["id"]: e for e in after}
    for e in seen:  # every event the first client saw was stored before it was sent
        assert stored[e["id"]] == e
    ids = [e["id"] for e in after]
    first = [i for i in ids if i <= old_max]
    second = [i for i in ids if i > old_max]
    # A crash may skip ids (they were reserved ahead, see events/ids.py), never repeat them.
    assert ids == sorted(set(ids)) and contiguous(first) and first[0] == 1 and contiguous(second)
    reasons = [e["summary"]["reason"] for e in after if e["type"] == "stream.ended"]
    assert reasons[0] == "recovered" and len(reasons) == 2
    restarted = next(e for e in after if e["type"] == "daemon.status" and e["id"] > old_max)
    assert restarted["state"] == "ready"  # ids kept growing across the crash
    assert [e["id"] for e in resumed] == [i for i in ids if i > old_max]


async def test_sigterm_mid_stream_ends_every_stream_and_exits_0(
    tiny_model_dir: Path, clips: list[Path], tmp_path: Path
) -> None:
    port = free_port()
    grace = 8.0
    cfg = write_config(
        tmp_path / "c.yaml",
        tiny_model_dir,
        tmp_path / "e.db",
        port,
        sources={"files": [str(c) for c in clips[:2]]},
        service={"grace_s": grace},
    )
    with DaemonProc(cfg, port).start() as d:
        events: list[Event] = []
        task = asyncio.create_task(collect(d.url, lambda ev: False, 60, into=events, since="0"))
        for _ in range(300):  # until both streams are mid-way (each has a scored window)
            if len({e["stream"]["stream_id"] for e in events if e["type"] == "window.scored"}) == 2:
                break
            await asyncio.sleep(0.1)
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        rc = await asyncio.to_thread(d.wait, grace + 10)
        took = time.monotonic() - t0
        _, code = await asyncio.wait_for(task, 10)
    assert rc == 0, d.log()
    assert took < grace, took
    assert code == 1001  # going away, after the last events were sent
    streams = by_stream(events)
    assert len(streams) == 2
    for seq in streams.values():
        check_stream_sequence(seq)
        assert seq[-1]["summary"]["duration_s"] < 19  # cut short: it was mid-stream
    assert events[-1]["type"] == "daemon.status" and events[-1]["state"] == "stopped"
    store = EventStore(tmp_path / "e.db", readonly=True)
    try:
        assert [e["id"] for e in store.read_since(0, limit=10_000)] == [e["id"] for e in events]
    finally:
        store.close()
