"""Training windows cut the way the daemon cuts them, conditions (clean, G.711, augmented), splits.

A detector scores VAD-gated windows of 2.5-4 s (the windower), so it is trained on exactly those:
each clip is converted to 16 kHz once, passed through a condition (augmentation happens on the
whole clip, before VAD, as a call would carry it), then through ``SpeechGate`` + ``Windower``
with the daemon's config. Clips with too little speech for one window are used whole and fitted by
the model's pad rule, as ``streamd eval --short-clips score`` does.

Validation is split by group (speaker or source), never by clip: windows of one speaker on both
sides would measure memory of that voice, not detection.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from streamd.config import Config
from streamd.errors import UsageError
from streamd.offline.datasets import LabeledClip
from streamd.pipeline.vad import SpeechGate
from streamd.pipeline.windows import Window, Windower
from streamd.training.augment import AugmentConfig, augment, g711

CLEAN = "clean"
TELEPHONE = "g711"  # fixed mu-law round trip: the second condition of every evaluation
EVAL_CONDITIONS = (CLEAN, TELEPHONE)
SplitBy = Literal["speaker", "source"]


@dataclass(frozen=True)
class WindowRules:
    """The daemon's VAD and windowing settings (``vad.*``, ``windows.*``)."""

    aggressiveness: int = 2
    frame_ms: int = 20
    hangover_ms: int = 200
    pause_s: float = 0.8
    length_s: float = 4.0
    min_s: float = 2.5
    hop_s: float = 1.0

    @classmethod
    def from_config(cls, cfg: Config) -> WindowRules:
        v, w = cfg.vad, cfg.windows
        return cls(
            v.aggressiveness, v.frame_ms, v.hangover_ms, v.pause_s, w.length_s, w.min_s, w.hop_s
        )

    def key(self) -> str:
        return repr(tuple(self.__dict__.values()))

    def fitted(self, model_min_s: float, model_max_s: float) -> WindowRules:
        """The rules the daemon applies for a model taking ``model_min_s``-``model_max_s`` windows
        (``pipeline.hub.fit_windows``): windows no longer than the model takes, nor shorter."""
        length = min(self.length_s, model_max_s)
        return replace(self, length_s=length, min_s=min(max(self.min_s, model_min_s), length))


def cut_windows(audio16k: np.ndarray, rules: WindowRules) -> list[Window]:
    """Every window the daemon would score for this audio, in order (same calls as a stream)."""
    gate = SpeechGate(rules.aggressiveness, rules.frame_ms, rules.hangover_ms)
    windower = Windower(rules.length_s, rules.min_s, rules.hop_s, rules.pause_s)
    out: list[Window] = []
    for frame in gate.push(np.asarray(audio16k, dtype=np.float32)) + gate.flush():
        out += windower.push(frame)
    return out + windower.flush()


def pick_evenly(n: int, k: int) -> list[int]:
    """``k`` indices spread over ``range(n)``, first and last included (all of them when n <= k)."""
    if n <= k:
        return list(range(n))
    if k == 1:
        return [0]
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


def training_windows(
    audio16k: np.ndarray, rules: WindowRules, max_windows: int, short: str = "tile"
) -> list[np.ndarray]:
    """Windows for one clip: the windower's, at most ``max_windows`` evenly spread (neighbours at
    a 1 s hop overlap by 75%, so more adds cost, not information); or the whole clip when the
    windower cuts none and ``short == "tile"`` (the model's pad rule fits it)."""
    windows = cut_windows(audio16k, rules)
    if windows:
        return [windows[i].samples for i in pick_evenly(len(windows), max_windows)]
    if short == "tile" and len(audio16k) >= rules.frame_ms * 16:
        return [np.asarray(audio16k, dtype=np.float32)]
    return []


def clip_seed(clip: LabeledClip, seed: int, draw: str) -> np.random.Generator:
    """A generator that depends only on (seed, clip, draw), not on the order clips are visited."""
    digest = hashlib.sha256(f"{clip.path.name}|{clip.path.parent.name}|{draw}".encode()).digest()
    return np.random.default_rng([seed, int.from_bytes(digest[:8], "little")])


def conditions(n_augmented: int) -> list[str]:
    """Clean and telephone (also the evaluation conditions), then ``n_augmented`` random draws."""
    return [*EVAL_CONDITIONS, *(f"aug{i + 1}" for i in range(n_augmented))]


def render(
    audio16k: np.ndarray, condition: str, clip: LabeledClip, seed: int, cfg: AugmentConfig
) -> np.ndarray:
    """The clip as heard under one condition; ``aug*`` draws are random but seeded per clip."""
    if condition == CLEAN:
        return audio16k
    if condition == TELEPHONE:
        return g711(audio16k, "ulaw")
    if condition.startswith("aug"):
        return augment(audio16k, clip_seed(clip, seed, condition), cfg).audio
    raise ValueError(f"unknown condition {condition!r}")


def group_of(clip: LabeledClip, by: SplitBy) -> str:
    """The unit a split keeps whole: the speaker (``group`` or ``speaker`` column), or the
    source."""
    if by == "source":
        return clip.source or clip.path.parent.name
    return clip.group


@dataclass(frozen=True)
class Split:
    train: list[int]  # indices into the clip list
    val: list[int]
    val_groups: list[str]
    by: str


def split_by_group(
    clips: list[LabeledClip], by: SplitBy = "speaker", val_fraction: float = 0.25, seed: int = 0
) -> Split:
    """Put whole groups into validation until it holds about ``val_fraction`` of each class.

    Groups are visited in a seeded order; a group joins validation when it brings a class that is
    still short of its target and does not overshoot that target by more than half, so one huge
    group (one speaker with most of the fakes) cannot empty the training set. Both sides must end
    with both classes; otherwise the data cannot be validated by this key, and the error says so.
    """
    if not 0.0 < val_fraction < 1.0:
        raise UsageError("--val-fraction must be between 0 and 1")
    counts: dict[str, list[int]] = {}
    for c in clips:
        counts.setdefault(group_of(c, by), [0, 0])[c.is_fake] += 1
    total = [sum(v[0] for v in counts.values()), sum(v[1] for v in counts.values())]
    target = [val_fraction * t for t in total]
    order = sorted(counts)
    np.random.default_rng(seed).shuffle(order)
    val: set[str] = set()
    have = [0, 0]
    for g in order:
        n = counts[g]
        wanted = [n[k] > 0 and have[k] < target[k] for k in (0, 1)]
        overshoot = [have[k] + n[k] > 1.5 * target[k] + 1 for k in (0, 1)]
        if any(wanted) and not any(o and n[k] for k, o in enumerate(overshoot)):
            val.add(g)
            have = [have[0] + n[0], have[1] + n[1]]
    left = [total[k] - have[k] for k in (0, 1)]
    if min(have) == 0 or min(left) == 0:
        raise UsageError(
            f"cannot split by {by}: validation would hold {have[0]} real / {have[1]} fake "
            f"clips and training {left[0]} / {left[1]} ({len(counts)} groups); each side needs "
            "both classes. Add a group/speaker column, use --val-by source, or add data"
        )
    train_idx = [i for i, c in enumerate(clips) if group_of(c, by) not in val]
    val_idx = [i for i, c in enumerate(clips) if group_of(c, by) in val]
    return Split(train_idx, val_idx, sorted(val), by)


def class_weights(labels: np.ndarray) -> np.ndarray:
    """Inverse-frequency weights ``[w_real, w_fake]`` so that each class carries half the loss."""
    y = np.asarray(labels).astype(int)
    n = np.bincount(y, minlength=2).astype(np.float64)
    if (n == 0).any():
        raise UsageError("training needs windows of both classes")
    return (len(y) / (2.0 * n)).astype(np.float32)


def fingerprint(*parts: object) -> str:
    """A short stable hash of the things a cached result depends on."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:20]
