from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streamd.errors import AudioError
from streamd.pipeline.audio import AudioConverter, StreamInfo, load_audio, read_audio, to_mono_float

from tests.helpers.common import write_wav


def test_to_mono_float_layouts() -> None:
    st = np.array([[32767, -32768], [16384, 16384]], dtype=np.int16)
    np.testing.assert_allclose(to_mono_float(st), [(32767 - 32768) / 2 / 32768, 0.5], atol=1e-6)
    assert to_mono_float(np.zeros((5, 1), np.float32)).shape == (5,)
    with pytest.raises(ValueError):
        to_mono_float(np.zeros((2, 2, 2)))


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_streaming_resampler_matches_one_shot(rate: int) -> None:
    """Chunked conversion with kept state equals converting the whole signal at once."""
    t = np.arange(rate * 2) / rate
    x = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    whole = AudioConverter(rate)
    ref = np.concatenate([whole.convert(x), whole.flush()])
    conv = AudioConverter(rate)
    chunks = [conv.convert(c) for c in np.array_split(x, 137)] + [conv.flush()]
    got = np.concatenate(chunks)
    assert abs(len(got) - 32000) <= 1 and len(got) == len(ref)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    # and the tone is still a clean 440 Hz tone: no clicks at chunk boundaries
    spec = np.abs(np.fft.rfft(got[1000:-1000]))
    peak = np.argmax(spec) * 16000 / (len(got) - 2000)
    assert abs(peak - 440) < 2
    assert (
        spec[np.abs(np.fft.rfftfreq(len(got) - 2000, 1 / 16000) - 440) > 50].max()
        < 0.01 * spec.max()
    )


def test_read_errors(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="no such file"):
        read_audio(tmp_path / "missing.wav")
    with pytest.raises(AudioError, match="directory"):
        read_audio(tmp_path)
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioError, match="empty"):
        read_audio(tmp_path / "empty.wav")
    (tmp_path / "text.wav").write_text("hello, not audio\n" * 20)
    with pytest.raises(AudioError, match="not a readable audio file"):
        read_audio(tmp_path / "text.wav")
    good = write_wav(tmp_path / "good.wav", np.zeros(16000, np.float32), 16000)
    (tmp_path / "corrupt.wav").write_bytes(good.read_bytes()[:30])
    with pytest.raises(AudioError):
        read_audio(tmp_path / "corrupt.wav")


def test_load_audio_stereo_441(tmp_path: Path) -> None:
    t = np.arange(44100) / 44100
    left = 0.4 * np.sin(2 * np.pi * 300 * t)
    p = tmp_path / "st.flac"
    sf.write(p, np.stack([left, left], axis=1), 44100)
    y = load_audio(p)
    assert abs(len(y) - 16000) <= 1 and y.dtype == np.float32
    assert abs(np.abs(y[2000:-2000]).max() - 0.4) < 0.01


def test_stream_info_ids() -> None:
    a = StreamInfo.new(source="sip", leg="caller", call_id="c1", labels={"from": 1})
    assert a.stream_id == "c1:caller" and a.labels == {"from": "1"}
    assert set(a.to_json()) == {"stream_id", "call_id", "leg", "source", "labels"}
