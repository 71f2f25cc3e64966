"""WebRTC ingest with real peers: an aiortc sender against the daemon's ``/v1/webrtc/offer``.

The score comparison uses the tiny random wav2vec2 with its head rescaled (``sharp_model_dir``)
so that p_fake spreads over the range on this speech instead of sitting at 0.4995, where any
tolerance would pass.

Tolerance that Opus explains: the live stream went through aiortc's Opus encoder (96 kb/s,
``voip``: SILK, which does not keep the waveform) and decoder, 16 -> 48 -> 16 kHz resampling,
and a webrtcvad that sees the coded audio (Opus removes the low-frequency noise in pauses, so
windows are cut a little differently). The test passes the same file through aiortc's own
OpusEncoder/OpusDecoder offline and scores it with ``streamd score``'s path. Then:

- live vs the offline Opus copy, on time-aligned windows: within ``TRANSPORT_TOL`` (0.03). The
  transport adds nothing of its own: no time shift, no clicks, no loss on loopback (measured:
  identical to 4 decimals).
- live vs the original file: within what Opus alone explains (the largest offline difference on
  aligned windows) + ``TRANSPORT_TOL``. For this random model that is large (about 0.45 against a
  window-to-window spread of about 0.6: Opus shifts its scores up): a codec can move a detector,
  which is why a deployment should calibrate thresholds on the audio path it really has.
"""

from __future__ import annotations

import asyncio
import logging
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("aiortc")

from streamd.ingest.webrtc import source as webrtc_mod
from streamd.ingest.webrtc.media import FrameTimeline, StreamWriter, frame_to_pcm

from tests.helpers.common import write_wav
from tests.helpers.webrtc import (
    EventsClient,
    WavSender,
    daemon_config,
    post_offer,
    running_daemon,
    server_url,
    webrtc_source,
)

CLIP_S = 12.0
MIN_IOU = 0.8
TRANSPORT_TOL = 0.03


@pytest.fixture(scope="module")
def sharp_model_dir(tmp_path_factory: pytest.TempPathFactory, speech_16k: np.ndarray) -> Path:
    """The tiny random wav2vec2 with its head rescaled so p_fake spreads over about 0.1-0.9 on this
    speech.

    ``l_fake - l_real`` over 4 s windows of the clip gets unit spread and zero mean; the
    features, and what Opus does to them, are untouched.
    """
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers import Wav2Vec2ForSequenceClassification

    from streamd.cli import main

    from tests.helpers.tinymodels import save_tiny_wav2vec2

    root = tmp_path_factory.mktemp("sharp-model")
    ckpt = save_tiny_wav2vec2(root / "ckpt")
    # transformers' PreTrainedModel.eval is untyped
    model = Wav2Vec2ForSequenceClassification.from_pretrained(ckpt).eval()  # type: ignore[no-untyped-call]
    clip = speech_16k[: int(CLIP_S * 16000)]
    wins = np.stack([clip[i : i + 64000] for i in range(0, len(clip) - 64000 + 1, 16000)])
    wins = (wins - wins.mean(1, keepdims=True)) / np.sqrt(
        wins.var(1, keepdims=True) + 1e-7
    )  # the graph's own normalization
    with torch.no_grad():
        logits = model(torch.from_numpy(wins.astype(np.float32))).logits
        d = logits[:, 1] - logits[:, 0]
        k = float(1.0 / d.std())
        model.classifier.weight.mul_(k)
        model.classifier.bias.mul_(k)
        model.classifier.bias[1] -= k * float(d.mean())
    model.save_pretrained(ckpt)
    models = root / "models"
    assert (
        main(
            [
                "models",
                "export",
                "--from",
                str(ckpt),
                "--name",
                "sharp",
                "--models-dir",
                str(models),
            ]
        )
        == 0
    )
    return models


@pytest.fixture(scope="module")
def speech_wav(speech_16k: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_wav(
        tmp_path_factory.mktemp("webrtc") / "speech.wav", speech_16k[: int(CLIP_S * 16000)], 16000
    )


def opus_roundtrip(wav: Path, out: Path) -> Path:
    """The file through aiortc's own Opus encoder and decoder, as 48 kHz stereo: what the daemon
    hears."""
    import av
    import soundfile as sf
    from aiortc.codecs.opus import OpusDecoder, OpusEncoder
    from aiortc.jitterbuffer import JitterFrame

    pcm, rate = sf.read(wav, dtype="int16")
    enc, dec = OpusEncoder(), OpusDecoder()
    chunks = []
    step = rate // 50
    for i in range(0, len(pcm) - step + 1, step):
        frame = av.AudioFrame.from_ndarray(
            pcm[i : i + step].reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate, frame.pts, frame.time_base = rate, i, Fraction(1, rate)
        payloads, ts = enc.encode(frame)
        for p in payloads:
            chunks += [frame_to_pcm(f) for f in dec.decode(JitterFrame(data=p, timestamp=ts))]
    sf.write(out, np.concatenate(chunks), 48000, subtype="PCM_16")
    return out


async def file_scores(path: Path, models: Path) -> list[tuple[float, float, float]]:
    from streamd.app.daemon import load_detector
    from streamd.offline.score import score_files_async

    cfg = daemon_config(models, path.with_suffix(".db"))
    [rep] = await score_files_async([str(path)], cfg, load_detector(cfg))
    return [(e["window"]["start_s"], e["window"]["end_s"], e["score"]) for e in rep.windows]


def aligned(
    a: list[tuple[float, float, float]], b: list[tuple[float, float, float]]
) -> list[tuple[float, float]]:
    """Score pairs of windows that cover (nearly) the same stream time in ``a`` and ``b``.

    Opus changes what webrtcvad calls speech in pauses, so a window may span 0.2-0.5 s more or
    less; windows pair up when their time overlap is at least ``MIN_IOU`` of their union.
    """
    pairs = []
    for s, e, score in a:
        best = max(b, key=lambda w: min(e, w[1]) - max(s, w[0]), default=None)
        if best is None:
            continue
        inter = min(e, best[1]) - max(s, best[0])
        union = max(e, best[1]) - min(s, best[0])
        if inter / union >= MIN_IOU:
            pairs.append((score, best[2]))
    return pairs


async def test_live_scores_match_streamd_score_within_opus(
    sharp_model_dir: Path, speech_wav: Path, tmp_path: Path
) -> None:
    original = await file_scores(speech_wav, sharp_model_dir)
    coded = await file_scores(opus_roundtrip(speech_wav, tmp_path / "opus48.wav"), sharp_model_dir)
    opus_pairs = aligned(coded, original)
    assert len(opus_pairs) >= 3
    opus_tol = max(abs(x - y) for x, y in opus_pairs)

    cfg = daemon_config(sharp_model_dir, tmp_path / "events.db")
    async with running_daemon(cfg) as daemon, EventsClient(server_url(daemon)) as events:
        sender = WavSender(speech_wav)
        assert await sender.connect(server_url(daemon), {"case": "loopback"}) == 200
        candidates = [
            ln for ln in sender.answer["sdp"].splitlines() if ln.startswith("a=candidate:")
        ]
        assert candidates and all(" 127.0.0.1 " in ln and " typ host" in ln for ln in candidates), (
            candidates
        )
        await sender.wait_played(CLIP_S + 20)
        await asyncio.sleep(0.5)  # the jitter buffer's last frames
        await sender.close()
        await events.wait_for(lambda _: bool(events.of("stream.ended", "webrtc")), 20)

    started = events.of("stream.started", "webrtc")
    assert len(started) == 1 and started[0]["stream"]["leg"] == "browser"
    labels = started[0]["stream"]["labels"]
    assert labels["case"] == "loopback" and labels["remote_addr"] == "127.0.0.1"
    live = [
        (e["window"]["start_s"], e["window"]["end_s"], e["score"])
        for e in events.of("window.scored", "webrtc")
    ]
    summary = events.of("stream.ended", "webrtc")[0]["summary"]
    assert abs(summary["duration_s"] - CLIP_S) < 0.5, summary  # no time lost or added
    assert summary["frames_lost"] == 0

    vs_coded = aligned(live, coded)
    vs_original = aligned(live, original)
    assert len(vs_coded) >= len(live) // 2 and len(vs_original) >= 3, (live, coded, original)
    spread = max(s for *_, s in original) - min(s for *_, s in original)
    worst_transport = max(abs(x - y) for x, y in vs_coded)
    worst_total = max(abs(x - y) for x, y in vs_original)
    print(
        f"\nscores: spread {spread:.3f}; Opus offline vs file {opus_tol:.3f}; "
        f"live vs Opus offline {worst_transport:.4f}; live vs file {worst_total:.3f}"
    )
    assert spread > 3 * TRANSPORT_TOL, (
        "the test model must be sensitive enough for this test to mean something"
    )
    assert worst_transport <= TRANSPORT_TOL
    assert worst_total <= opus_tol + TRANSPORT_TOL


@pytest.mark.parametrize(
    ("raw", "body", "message"),
    [
        ("{not json", None, "not JSON"),
        (None, ["sdp"], "body must be"),
        (None, {"type": "answer", "sdp": "v=0\r\n"}, "type: must be"),
        (None, {"type": "offer"}, "sdp: missing"),
        (None, {"type": "offer", "sdp": "hello"}, "must start with v=0"),
        (
            None,
            {"type": "offer", "sdp": "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"},
            "no audio",
        ),
        (
            None,
            {"type": "offer", "sdp": "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=broken\r\n"},
            "cannot use this offer",
        ),
        (None, {"type": "offer", "sdp": "v=0\r\nm=audio 9\r\n", "labels": "x"}, "labels: must be"),
    ],
)
async def test_bad_offers_get_400_and_a_log_line(
    tiny_model_dir: Path,
    tmp_path: Path,
    raw: str | None,
    body: Any,
    message: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "streamd.ingest.webrtc.source")
    async with running_daemon(daemon_config(tiny_model_dir, tmp_path / "e.db")) as daemon:
        status, answer = await post_offer(server_url(daemon), body, raw=raw)
        assert status == 400, answer
        assert message in answer["error"]
        assert not webrtc_source(daemon).peers
    assert any(
        "refused (400)" in r.getMessage() and message in r.getMessage() for r in caplog.records
    )


async def test_max_peers_gives_503_until_a_peer_leaves(
    tiny_model_dir: Path, speech_wav: Path, tmp_path: Path
) -> None:
    cfg = daemon_config(tiny_model_dir, tmp_path / "e.db", sources={"webrtc": {"max_peers": 1}})
    async with running_daemon(cfg) as daemon:
        url = server_url(daemon)
        source = webrtc_source(daemon)
        first = WavSender(speech_wav)
        assert await first.connect(url) == 200
        second = WavSender(speech_wav)
        assert await second.connect(url) == 503
        await first.wait_connected()
        await first.close()  # a connected peer that leaves sends RTCP BYE and DTLS close_notify
        for _ in range(50):
            if not source.peers:
                break
            await asyncio.sleep(0.1)
        assert not source.peers, "the closed peer still holds its slot"
        third = WavSender(speech_wav)
        assert await third.connect(url) == 200
        await asyncio.gather(second.close(), third.close())
        assert source.status()["refused"] == 1


async def test_token_is_required_when_set(
    tiny_model_dir: Path, speech_wav: Path, tmp_path: Path
) -> None:
    cfg = daemon_config(tiny_model_dir, tmp_path / "e.db", server={"tokens": ["s3cret"]})
    async with running_daemon(cfg) as daemon:
        url = server_url(daemon)
        sdp = await WavSender(speech_wav).offer()
        body = {"sdp": sdp, "type": "offer"}
        assert (await post_offer(url, body))[0] == 401
        assert (await post_offer(url, body, token="wrong"))[0] == 401
        by_header = WavSender(speech_wav)
        assert await by_header.connect(url, token="s3cret") == 200
        by_query = WavSender(speech_wav)
        status, _ = await post_offer(
            url, {"sdp": await by_query.offer(), "type": "offer"}, query="?token=s3cret"
        )
        assert status == 200
        await asyncio.gather(by_header.close(), by_query.close())


async def test_unconnected_peer_is_dropped(
    tiny_model_dir: Path, speech_wav: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webrtc_mod, "CONNECT_TIMEOUT_S", 0.5)
    async with running_daemon(daemon_config(tiny_model_dir, tmp_path / "e.db")) as daemon:
        sender = WavSender(speech_wav)
        status, _ = await post_offer(
            server_url(daemon), {"sdp": await sender.offer(), "type": "offer"}
        )
        assert (
            status == 200 and len(webrtc_source(daemon).peers) == 1
        )  # the answer is never applied
        await asyncio.sleep(1.5)
        assert not webrtc_source(daemon).peers
        assert daemon.hub is not None and not daemon.hub.streams
        await sender.close()


def vanish(sender: WavSender) -> None:
    """The browser is gone: its sockets close and nothing more is sent (no BYE, no DTLS close)."""
    for transceiver in sender.pc.getTransceivers():
        dtls = transceiver.sender.transport
        if dtls is None:
            continue
        for protocol in dtls.transport._connection._protocols:  # aioice's UDP endpoints
            if protocol.transport is not None:
                protocol.transport.close()


async def test_a_vanished_browser_ends_its_stream_before_ice_consent_expires(
    tiny_model_dir: Path, speech_wav: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webrtc_mod, "MEDIA_TIMEOUT_S", 2.0)
    async with (
        running_daemon(daemon_config(tiny_model_dir, tmp_path / "e.db")) as daemon,
        EventsClient(server_url(daemon)) as events,
    ):
        sender = WavSender(speech_wav, loop=True)
        assert await sender.connect(server_url(daemon)) == 200
        await sender.wait_connected()
        await events.wait_for(lambda evs: any(e["type"] == "stream.started" for e in evs), 10)
        vanish(sender)
        # ended by the media watchdog (2 s here, 10 s by default), not by consent expiry (30 s)
        await events.wait_for(lambda evs: any(e["type"] == "stream.ended" for e in evs), 8)
        [ended] = events.of("stream.ended")
        assert ended["summary"]["reason"].startswith("no audio for 2 s"), ended["summary"]
        await asyncio.sleep(0.2)
        assert not webrtc_source(daemon).peers and daemon.hub is not None and not daemon.hub.streams
        await sender.pc.close()


class Recorder:
    """Stands in for a StreamPipeline: keeps what was written, in order."""

    def __init__(self, rate: int = 48000) -> None:
        self.sample_rate = rate
        self.parts: list[tuple[str, int]] = []
        self.lost = 0

    def write(self, pcm: np.ndarray) -> None:
        assert pcm.ndim == 2 and pcm.shape[1] == 2 and pcm.dtype == np.int16
        self.parts.append(("audio", len(pcm)))

    def write_silence(self, n: int) -> None:
        self.parts.append(("silence", n))

    def note_lost(self, frames: int) -> None:
        self.lost += frames

    def set_sample_rate(self, rate: int) -> None:
        self.sample_rate = rate

    @property
    def total(self) -> int:
        return sum(n for _, n in self.parts)


def opus_like_frame(pts: int | None, value: int = 1000) -> Any:
    """A frame shaped like aiortc's Opus output: s16 packed stereo, 960 samples at 48 kHz."""
    import av

    data = np.full((1, 1920), value, dtype=np.int16)
    data[0, 1::2] = -value  # right channel differs, so the layout is visible
    frame = av.AudioFrame.from_ndarray(data, format="s16", layout="stereo")
    frame.sample_rate = 48000
    frame.pts = pts
    frame.time_base = Fraction(1, 48000)
    return frame


def test_frame_layout_is_interleaved_stereo() -> None:
    pcm = frame_to_pcm(opus_like_frame(0, 1000))
    assert pcm.shape == (960, 2)
    assert (pcm[:, 0] == 1000).all() and (pcm[:, 1] == -1000).all()


def test_lost_packets_become_silence_of_the_same_length() -> None:
    rec = Recorder()
    writer = StreamWriter(rec)
    for pts in (0, 960, 1920, 4800, 5760):  # 2880 and 3840 lost: 1920 samples missing
        writer.push(opus_like_frame(pts))
    assert rec.parts == [("audio", 960)] * 3 + [("silence", 1920), ("audio", 960), ("audio", 960)]
    assert rec.total == 5760 + 960  # stream time equals pts time: nothing shifted
    assert rec.lost == 2


def test_overlap_and_bogus_jumps_never_shorten_or_stall() -> None:
    rec = Recorder()
    writer = StreamWriter(rec, max_gap_s=1.0)
    for pts in (0, 960, 480, 1440, 48000 * 600, 48000 * 600 + 960, None):
        writer.push(opus_like_frame(pts))
    assert [kind for kind, _ in rec.parts] == [
        "audio"
    ] * 7  # overlap written whole; 10 min jump: no silence
    assert rec.total == 7 * 960
    assert writer.timeline.discontinuities == 2 and writer.timeline.lost_frames == 0


def test_timeline_counts_dtx_gaps_in_frames() -> None:
    t = FrameTimeline()
    assert t.place(0, Fraction(1, 48000), 48000, 960) == 0
    assert t.place(960 + 960 * 10, Fraction(1, 48000), 48000, 960) == 9600
    assert t.lost_frames == 10 and t.gap_samples == 9600
