"""The call channels are real signal processing: codecs that line up with their input and cut the
band they should, a room that lengthens decays, RawBoost's three noises doing what the paper says,
and ``call_channel`` applying what it claims, ending on the G.711 leg."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable

import numpy as np
import pytest

from streamd.training import channels as ch
from streamd.training.augment import g711

from tests.helpers.speechlike import speechlike

Fn = Callable[[np.ndarray, np.random.Generator], np.ndarray]
CODECS: dict[str, Fn] = {
    "g722": ch.g722,
    "opus_nb": lambda x, r: ch.opus(x, r, rate=8000),
    "opus_wb": lambda x, r: ch.opus(x, r, rate=16000),
    "amr_nb": ch.amr_nb,
    "mp3": ch.mp3,
}
RANDOM: dict[str, Fn] = {
    "opus": ch.opus,
    "amr_nb": ch.amr_nb,
    "mp3": ch.mp3,
    "reverb": ch.reverb,
    "rawboost_lnl": ch.rawboost_lnl,
    "rawboost_isd": ch.rawboost_isd,
    "rawboost_ssi": ch.rawboost_ssi,
    **{f"rawboost_{a}": functools.partial(ch.rawboost, algo=a) for a in range(1, 9)},
    "call_channel": lambda x, r: ch.call_channel(x, r).audio,
}
EVERY: dict[str, Fn] = {**RANDOM, "g722": ch.g722}


def band_energy(y: np.ndarray, lo: float, hi: float) -> float:
    f = np.fft.rfftfreq(y.size, 1 / 16000)
    return float(np.sum(np.abs(np.fft.rfft(y.astype(np.float64))[(f >= lo) & (f < hi)]) ** 2))


def corr_at(x: np.ndarray, y: np.ndarray, lag: int) -> float:
    """Correlation of x with y delayed by ``lag`` samples."""
    a, b = (x[: x.size - lag], y[lag:]) if lag >= 0 else (x[-lag:], y[: y.size + lag])
    return float(np.corrcoef(a, b)[0, 1])


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return speechlike(2.0)


@pytest.mark.parametrize("name", sorted(EVERY))
def test_same_length_dtype_finite_and_deterministic(name: str, speech: np.ndarray) -> None:
    fn = EVERY[name]
    y = fn(speech, np.random.default_rng(7))
    assert y.dtype == np.float32 and y.shape == speech.shape
    assert np.all(np.isfinite(y)) and np.max(np.abs(y)) <= 1.0
    assert not np.array_equal(y, speech)
    np.testing.assert_array_equal(y, fn(speech, np.random.default_rng(7)))
    # odd lengths and a clip shorter than one codec frame keep their length too
    for n in (1, 333):
        assert fn(speech[:n].copy(), np.random.default_rng(0)).shape == (n,)


@pytest.mark.parametrize("name", sorted(RANDOM))
def test_different_seeds_draw_different_channels(name: str, speech: np.ndarray) -> None:
    outs = {RANDOM[name](speech, np.random.default_rng(s)).tobytes() for s in range(4)}
    assert len(outs) > 1


@pytest.mark.parametrize("name", sorted(EVERY))
@pytest.mark.parametrize(
    "bad",
    [
        np.zeros(100, dtype=np.float64),
        np.zeros(100, dtype=np.int16),
        np.zeros((2, 100), dtype=np.float32),
        np.zeros(0, dtype=np.float32),
        np.array([0.0, np.nan], dtype=np.float32),
        [0.0, 0.1],
    ],
    ids=["float64", "int16", "stereo", "empty", "nan", "list"],
)
def test_wrong_input_is_a_clear_value_error(name: str, bad: object) -> None:
    with pytest.raises(ValueError, match="audio"):
        EVERY[name](bad, np.random.default_rng(0))  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(CODECS))
def test_codec_output_lines_up_with_input_yet_differs(name: str, speech: np.ndarray) -> None:
    for seed in range(3):
        y = CODECS[name](speech, np.random.default_rng(seed))
        by_lag = {lag: corr_at(speech, y, lag) for lag in range(-40, 41)}
        assert by_lag[0] > 0.5
        best = max(by_lag.items(), key=lambda item: item[1])[0]
        assert abs(best) <= 1  # the codec delay is removed, to a sample
        error = np.sqrt(np.mean((y - speech) ** 2) / np.mean(speech**2))
        assert error > 0.02  # really coded, not passed through


@pytest.mark.parametrize("name", ["amr_nb", "opus_nb"])
def test_narrowband_codecs_remove_the_band_above_4khz(name: str, speech: np.ndarray) -> None:
    assert band_energy(speech, 4000, 8000) > 0.05 * band_energy(speech, 0, 8000)
    for seed in range(3):
        y = CODECS[name](speech, np.random.default_rng(seed))
        assert band_energy(y, 4000, 8000) < 0.01 * band_energy(speech, 4000, 8000)
        assert band_energy(y, 300, 3400) > 0.3 * band_energy(speech, 300, 3400)


def test_g722_keeps_the_wide_band(speech: np.ndarray) -> None:
    y = ch.g722(speech, np.random.default_rng(0))
    assert band_energy(y, 4000, 7000) > 0.5 * band_energy(speech, 4000, 7000)


def test_low_bitrate_mp3_removes_the_top_band_and_32k_keeps_more(speech: np.ndarray) -> None:
    top = band_energy(speech, 5500, 8000)
    for seed in range(4):  # every encoder rate the draw can pick
        low = ch.mp3(speech, np.random.default_rng(seed), kbps=16)
        assert band_energy(low, 5500, 8000) < 0.05 * top
        high = ch.mp3(speech, np.random.default_rng(seed), kbps=32)
        assert band_energy(high, 5500, 8000) > 10 * band_energy(low, 5500, 8000)


def test_reverb_lengthens_the_decay_after_a_burst_and_keeps_the_level() -> None:
    rng = np.random.default_rng(0)
    x = np.zeros(16000, dtype=np.float32)
    x[2000:4000] = 0.3 * rng.standard_normal(2000).astype(np.float32)
    after = slice(4000 + 320, 4000 + 4800)  # 20-300 ms after the burst ends
    short = ch.reverb(x, np.random.default_rng(1), rt60_s=(0.2, 0.2))
    long = ch.reverb(x, np.random.default_rng(1), rt60_s=(0.7, 0.7))
    burst = float(np.mean(x[2000:4000] ** 2))
    assert float(np.mean(x[after] ** 2)) == 0.0
    assert float(np.mean(short[after] ** 2)) > 1e-4 * burst  # a tail where there was silence
    assert float(np.mean(long[after] ** 2)) > 5 * float(np.mean(short[after] ** 2))
    assert float(np.mean(long[:2000] ** 2)) < 1e-12 * burst  # nothing before the sound (causal)
    for y in (short, long):
        assert np.sqrt(np.mean(y**2)) == pytest.approx(np.sqrt(np.mean(x**2)), rel=0.01)
        assert corr_at(x, y, 0) > 0.5  # the direct path is kept in place


def test_isd_changes_only_a_fraction_of_samples(speech: np.ndarray) -> None:
    shares = []
    for seed in range(8):
        y = ch.rawboost_isd(speech, np.random.default_rng(seed))
        changed = np.mean(y != speech)
        assert 0.0 < changed <= 0.10 + 1e-3
        shares.append(changed)
    assert max(shares) - min(shares) > 0.01  # the share itself is drawn
    y = ch.rawboost_isd(speech, np.random.default_rng(0), max_percent=1.0)
    assert np.mean(y != speech) <= 0.01 + 1e-3


@pytest.mark.parametrize("snr", [10.0, 20.0, 35.0])
def test_ssi_hits_the_requested_snr(snr: float, speech: np.ndarray) -> None:
    for seed in range(3):
        y = ch.rawboost_ssi(speech, np.random.default_rng(seed), snr_db=(snr, snr))
        x64, n = speech.astype(np.float64), y.astype(np.float64) - speech
        measured = 10 * np.log10(np.sum(x64**2) / np.sum(n**2))
        assert measured == pytest.approx(snr, abs=1.0)
        # coloured: a random multi-band filter, so the noise spectrum is far from flat
        bands = [band_energy(n, lo, lo + 500) for lo in range(0, 8000, 500)]
        assert max(bands) > 10 * min(bands)


def test_lnl_changes_the_spectrum_keeps_length_and_is_nonlinear(speech: np.ndarray) -> None:
    edges = np.geomspace(100, 7900, 13)
    for seed in range(3):
        y = ch.rawboost_lnl(speech, np.random.default_rng(seed))
        assert y.shape == speech.shape
        ratio_db = [
            10 * np.log10(band_energy(y, lo, hi) / band_energy(speech, lo, hi))
            for lo, hi in itertools.pairwise(edges)
        ]
        assert max(ratio_db) - min(ratio_db) > 6.0  # notches: some bands cut, others kept
    # n_f = 1 is a linear filter; the default adds x**2..x**5 terms
    lin1 = ch.rawboost_lnl(speech, np.random.default_rng(3), n_f=1)
    lin2 = ch.rawboost_lnl(0.5 * speech, np.random.default_rng(3), n_f=1)
    np.testing.assert_allclose(lin2, 0.5 * lin1, atol=1e-6)
    nl1 = ch.rawboost_lnl(speech, np.random.default_rng(3))
    nl2 = ch.rawboost_lnl(0.5 * speech, np.random.default_rng(3))
    assert np.max(np.abs(nl2 - 0.5 * nl1)) > 1e-4


def test_rawboost_combinations_compose_the_algorithms(speech: np.ndarray) -> None:
    def series(*steps: Fn) -> np.ndarray:
        rng, y = np.random.default_rng(5), speech
        for step in steps:
            y = step(y, rng)
        return y

    lnl, isd, ssi = ch.rawboost_lnl, ch.rawboost_isd, ch.rawboost_ssi
    expected: dict[int, tuple[Fn, ...]] = {
        1: (lnl,),
        2: (isd,),
        3: (ssi,),
        4: (lnl, isd, ssi),
        5: (lnl, isd),
        6: (lnl, ssi),
    }
    for algo, steps in {**expected, 7: (isd, ssi)}.items():
        np.testing.assert_array_equal(
            ch.rawboost(speech, np.random.default_rng(5), algo), series(*steps)
        )
    rng = np.random.default_rng(5)
    parallel = lnl(speech, rng).astype(np.float64) + isd(speech, rng)
    parallel /= max(1.0, float(np.max(np.abs(parallel))))
    np.testing.assert_allclose(
        ch.rawboost(speech, np.random.default_rng(5), 8), parallel, atol=1e-6
    )
    with pytest.raises(ValueError, match="algo"):
        ch.rawboost(speech, np.random.default_rng(0), 9)


def only(codec: str, **kw: object) -> ch.ChannelMix:
    base = {"p_rawboost": 0.0, "p_reverb": 0.0, "p_level": 0.0, "p_band": 0.0}
    return ch.ChannelMix.from_mapping({**base, "codecs": {codec: 1.0}, **kw})


@pytest.mark.parametrize(
    ("codec", "label"),
    [
        ("none", "no transport codec"),
        ("g711", "G.711 "),
        ("g722", "G.722"),
        ("opus", "Opus"),
        ("amr_nb", "AMR-NB"),
        ("mp3", "MP3"),
    ],
)
def test_call_channel_applies_the_forced_codec_then_the_g711_leg(
    codec: str, label: str, speech: np.ndarray
) -> None:
    path = ch.call_channel(speech, np.random.default_rng(2), only(codec))
    assert path.applied[0].startswith(label) and path.applied[-1] == "G.711 ulaw to the trunk"
    no_trunk = ch.call_channel(speech, np.random.default_rng(2), only(codec, to_g711=0.0))
    assert no_trunk.applied == path.applied[:1]
    # the output is exactly the mu-law leg applied to what the codec delivered
    np.testing.assert_array_equal(path.audio, g711(no_trunk.audio, "ulaw"))
    assert band_energy(path.audio, 4100, 8000) < 1e-3 * band_energy(path.audio, 0, 8000)
    if codec == "none":
        np.testing.assert_array_equal(no_trunk.audio, speech)
    else:
        assert not np.array_equal(no_trunk.audio, speech)


def test_call_channel_default_mix_varies_and_describes_every_step(speech: np.ndarray) -> None:
    paths = [ch.call_channel(speech, np.random.default_rng(s)) for s in range(12)]
    seen = " | ".join(p.description for p in paths)
    for word in ("RawBoost", "reverb", "level", "Opus", "G.711 ulaw to the trunk"):
        assert word in seen
    assert all(p.applied[-1] == "G.711 ulaw to the trunk" for p in paths)  # to_g711 = 1.0


def test_call_channel_stages_draw_independently(speech: np.ndarray) -> None:
    """Turning one stage off (an ablation) leaves the other stages' draws alone."""
    for seed in range(4):
        with_room = ch.call_channel(speech, np.random.default_rng(seed), ch.ChannelMix(p_reverb=1))
        without = ch.call_channel(speech, np.random.default_rng(seed), ch.ChannelMix(p_reverb=0))
        assert [s for s in with_room.applied if not s.startswith("reverb")] == list(without.applied)


def test_channel_mix_validates_and_reads_recipe_mappings() -> None:
    mix = ch.ChannelMix.from_mapping(
        {"p_reverb": 0.5, "gain_db": [-10, 0], "codecs": {"opus": 3, "amr_nb": 1}}
    )
    assert mix.gain_db == (-10, 0) and dict(mix.codecs) == {"opus": 3.0, "amr_nb": 1.0}
    assert ch.ChannelMix() == ch.ChannelMix.from_mapping({})
    for bad in (
        {"p_reverb": 1.5},
        {"to_g711": -0.1},
        {"codecs": {"gsm": 1}},
        {"codecs": {"opus": 0}},
        {"codecs": {"opus": -1, "g722": 2}},
        {"rawboost_algos": [9]},
        {"gain_db": [6, -20]},
        {"p_revreb": 0.3},
    ):
        with pytest.raises(ValueError):
            ch.ChannelMix.from_mapping(bad)


def test_the_pyav_codecs_exist_here() -> None:
    assert ch.transport_codecs() == {"g722": True, "opus": True, "amr_nb": True, "mp3": True}
