"""Training data: windows are the daemon's windows, and splits never cut a speaker or source in
two."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from streamd.errors import UsageError
from streamd.offline.datasets import LabeledClip, load_labeled
from streamd.training.data import (
    WindowRules,
    class_weights,
    clip_seed,
    cut_windows,
    group_of,
    pick_evenly,
    split_by_group,
    training_windows,
)


def synthetic_clips(seed: int) -> list[LabeledClip]:
    """Random groups of random sizes, some holding both classes (a speaker cloned by a TTS)."""
    rng = np.random.default_rng(seed)
    clips = []
    for g in range(int(rng.integers(6, 20))):
        source = f"src{g % 3}"
        for k in range(int(rng.integers(1, 12))):
            label = "fake" if rng.random() < 0.4 else "real"
            clips.append(
                LabeledClip(
                    Path(f"{source}/{g}/{k}.wav"),
                    label,
                    system=f"tts{k % 3}" if label == "fake" else "human",
                    speaker=f"spk{g}",
                    source=source,
                )
            )
    return clips


def assert_disjoint(clips: list[LabeledClip], by: str, seed: int) -> None:
    split = split_by_group(clips, by, 0.25, seed)  # type: ignore[arg-type]
    train_groups = {group_of(clips[i], by) for i in split.train}  # type: ignore[arg-type]
    val_groups = {group_of(clips[i], by) for i in split.val}  # type: ignore[arg-type]
    assert not train_groups & val_groups
    assert sorted(split.train + split.val) == list(range(len(clips)))
    for side in (split.train, split.val):
        assert {clips[i].label for i in side} == {"real", "fake"}
    assert set(split.val_groups) == val_groups


@pytest.mark.parametrize("by", ["speaker", "source"])
def test_split_never_shares_a_group_synthetic(by: str) -> None:
    done = 0
    for seed in range(60):
        clips = synthetic_clips(seed)
        try:
            assert_disjoint(clips, by, seed)
            done += 1
        except UsageError as exc:  # some random data cannot be split by this key: it must say so
            assert "cannot split" in str(exc)
    assert done > 20


@pytest.mark.parametrize("by", ["speaker", "source"])
def test_split_never_shares_a_group_on_shared_data(shared_dir: Path, by: str) -> None:
    clips = load_labeled([str(shared_dir / "data" / "manifest.csv")])
    for seed in range(3):
        assert_disjoint(clips, by, seed)
    # one speaker (LJ) appears in three source folders: by speaker it must stay on one side
    split = split_by_group(clips, "speaker", 0.25, 0)
    sides = {
        ("val" if i in set(split.val) else "train")
        for i, c in enumerate(clips)
        if c.speaker == "LJ"
    }
    assert len(sides) == 1


def test_split_refuses_data_that_cannot_be_validated() -> None:
    clips = [
        LabeledClip(Path(f"a/{i}.wav"), "real" if i % 2 else "fake", speaker="one", source="a")
        for i in range(10)
    ]
    with pytest.raises(UsageError, match="cannot split by speaker"):
        split_by_group(clips, "speaker")


def test_class_weights_balance_the_classes() -> None:
    y = np.array([0] * 90 + [1] * 10)
    w = class_weights(y)
    assert w[0] * 90 == pytest.approx(w[1] * 10) and w[0] * 90 + w[1] * 10 == pytest.approx(100)
    with pytest.raises(UsageError):
        class_weights(np.zeros(5))


def test_pick_evenly() -> None:
    assert pick_evenly(3, 5) == [0, 1, 2]
    assert pick_evenly(10, 3) == [0, 4, 9] or pick_evenly(10, 3) == [0, 5, 9]
    assert pick_evenly(10, 1) == [0]


def test_clip_seed_depends_on_clip_seed_and_draw_only() -> None:
    a = LabeledClip(Path("x/a.wav"), "real")
    b = LabeledClip(Path("x/b.wav"), "real")
    draw = clip_seed(a, 0, "aug1").random()
    assert draw == clip_seed(a, 0, "aug1").random()
    assert (
        draw == clip_seed(LabeledClip(Path("x/a.wav"), "fake"), 0, "aug1").random()
    )  # label plays no part
    assert (
        len(
            {
                draw,
                clip_seed(b, 0, "aug1").random(),
                clip_seed(a, 1, "aug1").random(),
                clip_seed(a, 0, "aug2").random(),
            }
        )
        == 4
    )


def test_short_clips_are_used_whole_or_dropped(speech_16k: np.ndarray) -> None:
    rules = WindowRules()
    short = speech_16k[:16000]
    assert cut_windows(short, rules) == []
    (whole,) = training_windows(short, rules, 3, "tile")
    assert np.array_equal(whole, short)
    assert training_windows(short, rules, 3, "drop") == []
    many = training_windows(speech_16k, rules, 2, "tile")
    all_windows = cut_windows(speech_16k, rules)
    assert len(all_windows) > 2 and len(many) == 2
    assert np.array_equal(many[0], all_windows[0].samples) and np.array_equal(
        many[1], all_windows[-1].samples
    )


def test_windows_match_the_daemon(tiny_model_dir: Path, shared_dir: Path) -> None:
    """cut_windows gives the windows (times and count) the daemon scores for the same clip."""
    from streamd.config import Config
    from streamd.model.manifest import resolve_manifest
    from streamd.model.session import Detector
    from streamd.offline.score import score_clips_async
    from streamd.pipeline.audio import load_audio, read_audio

    cfg = Config()
    cfg.model.dir = str(tiny_model_dir)
    detector = Detector.load(resolve_manifest(tiny_model_dir, "tiny"), providers=["cpu"])
    folder = shared_dir / "data"
    # 16 kHz read speech and 8 kHz IVR prompts with pauses (final windows shorter than 4 s)
    paths = (
        sorted((folder / "resemble-ai__Resemblyzer").rglob("*.flac"))[:2]
        + sorted(
            (folder / "pbxware__asterisk-sounds").rglob("*.flac"), key=lambda p: -p.stat().st_size
        )[:2]
    )
    assert len(paths) == 4
    clips = []
    for p in paths:
        data, rate = read_audio(p)
        clips.append((str(p), data, rate))
    reports = asyncio.run(score_clips_async(clips, cfg, detector))
    rules = WindowRules.from_config(cfg)
    for p, rep in zip(paths, reports, strict=True):
        daemon = [(ev["window"]["start_s"], ev["window"]["end_s"]) for ev in rep.windows]
        ours = [(round(w.start_s, 3), round(w.end_s, 3)) for w in cut_windows(load_audio(p), rules)]
        assert ours == daemon, p


@pytest.mark.parametrize(("lo", "hi"), [(2.5, 4.0375), (1.0, 2.0), (3.0, 6.0), (0.5, 10.0)])
def test_rules_are_fitted_to_the_model_as_the_daemon_fits_them(lo: float, hi: float) -> None:
    from types import SimpleNamespace

    from streamd.config import Config
    from streamd.model.manifest import WindowSpec
    from streamd.pipeline.hub import fit_windows

    cfg = Config()
    detector = SimpleNamespace(
        name="m", manifest=SimpleNamespace(window=WindowSpec(min_s=lo, max_s=hi))
    )
    ours = WindowRules.from_config(cfg).fitted(lo, hi)
    assert (ours.length_s, ours.min_s, ours.hop_s) == fit_windows(cfg, detector)  # type: ignore[arg-type]
