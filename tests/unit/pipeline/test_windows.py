from __future__ import annotations

import numpy as np
import pytest

from streamd.config.sections import WindowsConfig
from streamd.pipeline.vad import Frame, SpeechGate
from streamd.pipeline.windows import AdaptiveHop, Window, Windower, adaptive_hop

SR = 16000
FRAME = 320  # 20 ms


def frames(pattern: list[tuple[bool, float]]) -> list[Frame]:
    """(speech?, seconds) runs -> 20 ms frames whose samples carry their own stream index."""
    out, pos = [], 0
    for speech, seconds in pattern:
        for _ in range(round(seconds * SR / FRAME)):
            out.append(Frame(pos, np.arange(pos, pos + FRAME, dtype=np.float32), speech, speech))
            pos += FRAME
    return out


def run(w: Windower, fr: list[Frame], flush: bool = True) -> list[Window]:
    wins = [x for f in fr for x in w.push(f)]
    return wins + (w.flush() if flush else [])


def test_full_windows_every_hop_of_speech() -> None:
    wins = run(Windower(4.0, 2.5, 1.0), frames([(True, 10.0)]))
    assert [(w.start_s, w.end_s) for w in wins] == [(float(s), float(s + 4)) for s in range(7)]
    assert all(len(w.samples) == 4 * SR for w in wins)
    # samples are the stream's own samples, in order, with nothing dropped or repeated
    assert np.array_equal(wins[3].samples, np.arange(3 * SR, 7 * SR, dtype=np.float32))


def test_hop_is_configurable() -> None:
    wins = run(Windower(4.0, 2.5, 0.5), frames([(True, 6.0)]))
    assert [w.start_s for w in wins] == [0.0, 0.5, 1.0, 1.5, 2.0]


def test_silence_is_skipped_and_times_are_stream_times() -> None:
    wins = run(Windower(4.0, 2.5, 1.0), frames([(True, 2.0), (False, 0.5), (True, 2.0)]))
    first = wins[0]
    assert first.start_s == 0.0 and first.end_s == 4.5  # spans the pause in stream time
    assert len(first.samples) == 4 * SR  # but holds only speech
    assert not np.any((first.samples >= 2 * SR) & (first.samples < 2.5 * SR))


def test_short_speech_then_pause_gives_one_short_window() -> None:
    wins = run(
        Windower(4.0, 2.5, 1.0, pause_s=0.8), frames([(True, 3.0), (False, 1.0)]), flush=False
    )
    assert len(wins) == 1 and wins[0].final
    assert wins[0].speech_s == pytest.approx(3.0)


def test_never_shorter_than_min() -> None:
    wins = run(Windower(4.0, 2.5, 1.0), frames([(True, 2.0), (False, 3.0), (True, 0.4)]))
    assert wins == []  # 2.4 s of speech in all: not enough
    wins = run(Windower(4.0, 2.5, 1.0), frames([(True, 2.0), (False, 3.0), (True, 0.6)]))
    assert len(wins) == 1 and wins[0].speech_s == pytest.approx(2.6)


def test_end_of_stream_flush_only_when_enough_unscored() -> None:
    w = Windower(4.0, 2.5, 1.0)
    wins = run(w, frames([(True, 4.5)]))
    assert len(wins) == 1  # the 0.5 s tail is less than min_s, not re-scored
    w = Windower(4.0, 2.5, 3.0)
    wins = run(w, frames([(True, 6.6)]))
    # full window at 4.0 s; then 2.6 s unscored < hop 3.0, flushed at end as a final window
    assert [(w.start_s, w.end_s, w.final) for w in wins] == [(0.0, 4.0, False), (2.6, 6.6, True)]


def test_rejects_bad_lengths() -> None:
    with pytest.raises(ValueError):
        Windower(2.0, 2.5, 1.0)


def test_vad_silence_and_tone_and_noise() -> None:
    gate = SpeechGate(aggressiveness=3, frame_ms=20, hangover_ms=0)
    fr = gate.push(np.zeros(SR, dtype=np.float32))
    assert len(fr) == 50 and not any(f.speech for f in fr)
    rng = np.random.default_rng(0)
    fr = gate.push((0.001 * rng.standard_normal(SR)).astype(np.float32))
    assert sum(f.voiced for f in fr) < 10  # faint noise is not speech
    assert fr[0].start == SR  # stream time continues


def test_vad_keeps_partial_frames_between_calls() -> None:
    gate = SpeechGate(frame_ms=30)
    a = gate.push(np.zeros(700, dtype=np.float32))
    b = gate.push(np.zeros(260, dtype=np.float32))
    assert len(a) == 1 and len(b) == 1 and b[0].start == 480
    assert len(gate.flush()) == 0 and gate.position == 960


def test_vad_on_real_speech(speech_16k: np.ndarray) -> None:
    gate = SpeechGate(aggressiveness=2, frame_ms=20, hangover_ms=200)
    fr = gate.push(speech_16k)
    share = sum(f.voiced for f in fr) / len(fr)
    assert 0.5 < share < 0.99  # read speech: mostly voiced, with pauses
    assert gate.speech_samples >= sum(f.voiced for f in fr) * 320  # hangover adds, never removes


def test_windows_on_real_speech(speech_16k: np.ndarray) -> None:
    gate = SpeechGate()
    w = Windower(4.0, 2.5, 1.0)
    wins = [x for f in gate.push(speech_16k) for x in w.push(f)] + w.flush()
    assert len(wins) >= 5
    assert all(2.5 * SR <= len(x.samples) <= 4 * SR for x in wins)
    starts = [x.start_s for x in wins]
    assert starts == sorted(starts)
    assert wins[-1].end_s <= len(speech_16k) / SR + 0.02


def _scored_run(w: Windower, fr: list[Frame], score: object) -> list[float]:
    """Push frames, 'score' each window at once with score(window_index), return window starts."""
    starts: list[float] = []
    for f in fr:
        for win in w.push(f):
            starts.append(win.start_s)
            w.note_score(score(len(starts) - 1))  # type: ignore[operator]
    return starts


def test_adaptive_hop_grows_after_calm_windows_and_drops_back_on_suspicion() -> None:
    w = Windower(4.0, 2.5, 1.0, adaptive=AdaptiveHop(calm_below=0.2, calm_windows=3, long_hop_s=3))
    # windows 0-2 calm -> hop 3 s; window 5 is suspicious -> back to 1 s hops
    starts = _scored_run(w, frames([(True, 24.0)]), lambda i: 0.9 if i == 5 else 0.05)
    assert starts[:6] == [0.0, 1.0, 2.0, 5.0, 8.0, 11.0]
    assert starts[6:9] == [12.0, 13.0, 14.0]  # base hop after the suspicious window
    assert starts[9] == 17.0  # three calm windows again (6, 7, 8) -> long hop
    assert w.hop_s == 3.0
    w.suspect()  # re-INVITE / new talker
    assert w.hop_s == 1.0


def test_without_adaptive_scores_change_nothing() -> None:
    w = Windower(4.0, 2.5, 1.0)
    starts = _scored_run(w, frames([(True, 10.0)]), lambda i: 0.0)
    assert starts == [float(s) for s in range(7)]


def test_adaptive_long_hop_may_not_leave_speech_unscored() -> None:
    with pytest.raises(ValueError, match="long_hop_s"):
        Windower(4.0, 2.5, 1.0, adaptive=AdaptiveHop(long_hop_s=5.0))
    with pytest.raises(ValueError):
        AdaptiveHop(calm_below=1.5)


def test_adaptive_hop_from_config_is_off_by_default_and_clamped_to_the_window() -> None:
    assert adaptive_hop(WindowsConfig(), 4.0) is None
    cfg = WindowsConfig.model_validate({"adaptive": {"enabled": True, "long_hop_s": 4.0}})
    hop = adaptive_hop(cfg, 3.0)  # a model that takes 3 s windows at most
    assert hop is not None and hop.long_hop_s == 3.0
    with pytest.raises(ValueError, match="long_hop_s"):
        WindowsConfig.model_validate({"length_s": 2.0, "min_s": 1.0, "adaptive": {"long_hop_s": 3}})


def test_speech_end_counts_speech_only_so_windows_are_placed_in_the_speech() -> None:
    w = Windower(4.0, 2.5, 1.0)
    wins = run(w, frames([(True, 5.0), (False, 2.0), (True, 2.0)]), flush=False)
    assert [x.speech_end for x in wins] == [4 * SR, 5 * SR, 6 * SR, 7 * SR]
    for x in wins:  # a window is always the last len(samples) speech samples before speech_end
        assert len(x.samples) == 4 * SR
