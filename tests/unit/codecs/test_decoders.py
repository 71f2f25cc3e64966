"""Payload decoders: G.711, L16 byte order, G.722 and Opus through PyAV with state kept."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamd.codecs import CodecError, Decoder, g711, make_decoder
from streamd.codecs.av import opus_packet_samples
from streamd.errors import ProtocolError

try:
    import av as _av

    av: ModuleType | None = _av
except ImportError:  # G.722 and Opus need PyAV (it comes with aiortc)
    av = None

needs_av = pytest.mark.skipif(av is None, reason="PyAV is not installed")


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    mono = samples if samples.ndim == 1 else samples.mean(axis=1)
    spectrum = np.abs(np.fft.rfft(mono.astype(np.float64) * np.hanning(len(mono))))
    return float(np.argmax(spectrum) * rate / len(mono))


def tone(freq: float, seconds: float, rate: int, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return np.round(amp * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def encode_with_pyav(
    codec: str, pcm: np.ndarray, rate: int, layout: str, frame: int
) -> list[bytes]:
    """Real encoder output, one packet per ``frame`` samples, as a sender would put in RTP."""
    assert av is not None
    encoder = av.CodecContext.create(codec, "w")
    encoder.sample_rate = rate
    encoder.layout = layout
    encoder.format = "s16"
    encoder.open()
    channels = 2 if layout == "stereo" else 1
    packets: list[bytes] = []
    for start in range(0, len(pcm) - frame + 1, frame):
        chunk = pcm[start : start + frame]
        data = np.repeat(chunk[:, None], channels, axis=1).reshape(1, -1)
        f = av.AudioFrame.from_ndarray(data, format="s16", layout=layout)
        f.sample_rate = rate
        f.pts = start
        packets += [bytes(p) for p in encoder.encode(f)]
    return packets


def test_names_are_case_insensitive_and_unknown_ones_rejected() -> None:
    assert make_decoder("pcmu", 8000).encoding == "PCMU"
    if av is not None:
        assert make_decoder("Opus", 48000, 2).encoding == "opus"
    for bad in ("telephone-event", "G729", "", "CN"):
        with pytest.raises(CodecError):
            make_decoder(bad, 8000)
    with pytest.raises(CodecError):
        make_decoder("opus", 8000)
    with pytest.raises(CodecError):
        make_decoder("L16", 8000, 0)


@pytest.mark.parametrize(
    ("name", "table"), [("PCMU", g711.ulaw_decode), ("PCMA", g711.alaw_decode)]
)
def test_g711_mono_and_stereo(name: str, table: object) -> None:
    payload = bytes(range(160))
    mono = make_decoder(name, 8000)
    out = mono.decode(payload)
    assert out.dtype == np.int16 and out.shape == (160,)
    np.testing.assert_array_equal(out, table(payload))  # type: ignore[operator]
    assert mono.duration(payload) == 160 and mono.samples_per_timestamp == 1.0
    stereo = make_decoder(name, 8000, 2)
    assert stereo.decode(payload).shape == (80, 2)
    with pytest.raises(CodecError):
        stereo.decode(b"\x00" * 3)


def test_l16_is_big_endian_and_interleaved() -> None:
    mono = make_decoder("L16", 16000)
    np.testing.assert_array_equal(mono.decode(b"\x01\x00\xff\xfe\x80\x00"), [256, -2, -32768])
    assert mono.sample_rate == 16000 and mono.duration(b"\x00" * 640) == 320
    stereo = make_decoder("L16", 44100, 2)
    out = stereo.decode(b"\x00\x01\x00\x02\x00\x03\x00\x04")
    np.testing.assert_array_equal(out, [[1, 2], [3, 4]])
    with pytest.raises(CodecError):
        mono.decode(b"\x00\x01\x02")
    with pytest.raises(CodecError):
        stereo.decode(b"\x00\x01")


@needs_av
def test_silence_has_the_decoded_shape_and_rate() -> None:
    assert make_decoder("PCMU", 8000).silence(160).shape == (160,)
    g722 = make_decoder("G722", 8000)
    assert g722.samples_per_timestamp == 2.0 and g722.silence(160).shape == (320,)
    opus = make_decoder("opus", 48000, 2)
    silence = opus.silence(960)
    assert silence.shape == (960, 2) and silence.dtype == np.int16 and not silence.any()


@needs_av
def test_g722_real_packets_decode_statefully_at_16k() -> None:
    pcm = tone(1000, 1.0, 16000)
    packets = encode_with_pyav("g722", pcm, 16000, "mono", 320)  # 20 ms: 160 bytes
    assert {len(p) for p in packets} == {160}
    decoder = make_decoder("G722", 8000)
    assert decoder.sample_rate == 16000 and decoder.duration(packets[0]) == 160
    chunks = [decoder.decode(p) for p in packets]
    assert {c.shape for c in chunks} == {(320,)}
    out = np.concatenate(chunks)
    assert abs(dominant_hz(out[1600:], 16000) - 1000) < 10
    assert np.abs(out[1600:]).max() > 0.2 * 32767
    # State matters: a fresh decoder per packet gives different (clicky) audio.
    fresh = np.concatenate([make_decoder("G722", 8000).decode(p) for p in packets])
    assert np.abs(fresh.astype(np.int32) - out).max() > 100


@needs_av
@pytest.mark.parametrize("channels", [1, 2])
def test_opus_real_packets_decode_to_48k(channels: int) -> None:
    pcm = tone(440, 1.0, 48000)
    packets = encode_with_pyav("libopus", pcm, 48000, "stereo", 960)
    assert all(opus_packet_samples(p) == 960 for p in packets)
    decoder = make_decoder("opus", 48000, channels)
    assert decoder.duration(packets[0]) == 960 and decoder.samples_per_timestamp == 1.0
    out = np.concatenate([decoder.decode(p) for p in packets])
    expected_shape = (len(packets) * 960,) if channels == 1 else (len(packets) * 960, 2)
    assert out.shape == expected_shape and out.dtype == np.int16
    assert abs(dominant_hz(out[4800:], 48000) - 440) < 5
    assert np.abs(out[4800:]).max() > 0.15 * 32767


@needs_av
def test_empty_payload_is_empty_audio_and_does_not_break_the_decoder() -> None:
    decoder = make_decoder("G722", 8000)
    assert decoder.decode(b"").shape == (0,)
    assert decoder.decode(b"\x00" * 160).shape == (320,)


@pytest.mark.parametrize(
    ("payload", "samples"),
    [
        (bytes([0 << 3]), 480),  # SILK NB 10 ms, one frame
        (bytes([1 << 3]), 960),  # SILK NB 20 ms
        (bytes([(16 << 3) | 1]), 240),  # CELT 2.5 ms, two frames
        (bytes([(31 << 3) | 3, 3]), 2880),  # CELT 20 ms, three frames
        (bytes([(3 << 3) | 3, 2]), 5760),  # SILK 60 ms x2 = 120 ms, the maximum
    ],
)
def test_opus_toc_durations(payload: bytes, samples: int) -> None:
    assert opus_packet_samples(payload + b"\x00" * 10) == samples


@pytest.mark.parametrize(
    "payload", [b"", bytes([3]), bytes([(31 << 3) | 3, 0]), bytes([(3 << 3) | 3, 3])]
)
def test_opus_toc_rejects_impossible_packets(payload: bytes) -> None:
    with pytest.raises(CodecError):
        opus_packet_samples(payload)


@pytest.fixture(scope="module")
def fuzz_decoders() -> list[Decoder]:
    if av is None:
        return [make_decoder("PCMU", 8000), make_decoder("L16", 16000, 2)]
    return [
        make_decoder("PCMU", 8000), make_decoder("PCMA", 8000, 2), make_decoder("L16", 16000, 2),
        make_decoder("G722", 8000), make_decoder("opus", 48000, 1), make_decoder("opus", 48000, 2),
    ]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(payload=st.binary(max_size=400))
def test_fuzz_decoders_raise_only_codec_error(fuzz_decoders: list[Decoder], payload: bytes) -> None:
    for decoder in fuzz_decoders:
        try:
            out = decoder.decode(payload)
        except ProtocolError as exc:
            assert isinstance(exc, CodecError)
            continue
        assert out.dtype == np.int16
        assert out.ndim == (1 if decoder.channels == 1 else 2)
