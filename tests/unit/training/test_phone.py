"""The phone recipe's pieces on synthetic data: call selection, per-call alert simulation, and
leave-one-source-out with thresholds chosen on training folds only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

from streamd.pipeline.smoother import Smoother
from streamd.training.phone_data import Call, shared_calls
from streamd.training.phone_embed import select_calls
from streamd.training.phone_head import (
    Windows,
    choose_c,
    ema_alert_stat,
    first_alert,
    fit_logistic,
    leave_one_group_out,
    threshold_for_call_rate,
)
from streamd.training.phone_report import logo_figures, loso_figures

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data"


def test_first_alert_matches_the_smoother_and_the_alert_level() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        p = rng.uniform(0, 1, int(rng.integers(1, 10)))
        thr = float(rng.uniform(0.2, 0.9))
        s = Smoother(thr, thr - 0.1, "ema", 0.5, 3, 2, 3)
        raised = [i for i, v in enumerate(p) if s.update(float(v)) is not None and s.alerting]
        k = first_alert(p, thr)
        assert k == (raised[0] if raised else None)
        assert (k is not None) == (ema_alert_stat(p) >= thr)


def test_threshold_for_call_rate() -> None:
    stats = np.linspace(0, 1, 1001)
    t = threshold_for_call_rate(stats.tolist(), 0.01)
    assert (stats >= t).mean() <= 0.01 < (stats >= t - 0.002).mean()


def synthetic(n_sources: int = 6, calls: int = 12, seed: int = 0) -> tuple[Windows, list[Call]]:
    """Sources with a source offset (a shortcut) and a fake direction shared by all (the cue)."""
    rng = np.random.default_rng(seed)
    xs, cs, ys, gs = [], [], [], []
    call_list: list[Call] = []
    for s in range(n_sources):
        offset = rng.normal(0, 1.0, 8)
        for c in range(calls):
            fake = (c + s) % 2
            ci = len(call_list)
            call_list.append(
                Call(
                    f"{s}:{c}",
                    (),
                    "fake" if fake else "real",
                    f"g{c % 3}" if fake else "human",
                    f"src{s}",
                )
            )
            for _ in range(4):
                x = offset + rng.normal(0, 0.5, 8)
                x[0] += 2.5 * fake
                xs.append(x)
                cs.append(ci)
                ys.append(fake)
                gs.append(f"src{s}")
    return Windows(np.array(xs), np.array(cs), np.array(ys), np.array(gs)), call_list


def test_loso_generalises_on_a_shared_cue_and_reports_per_call() -> None:
    w, calls = synthetic()
    p, thr = leave_one_group_out(w, lambda x, y: fit_logistic(x, y, 1.0), inner_k=3)
    assert not np.isnan(p).any() and set(thr) == {f"src{s}" for s in range(6)}
    f = loso_figures(w, p, thr, calls, shipped=0.5)
    assert f["loso"]["clip_eer"] < 0.2 and f["loso"]["auc"] > 0.9
    assert f["loso"]["call_detection"] > 0.5
    assert set(f["call_false_alarm_per_real_source_at_shipped"]) == {f"src{s}" for s in range(6)}
    logo = logo_figures(w, calls, lambda x, y: fit_logistic(x, y, 1.0), p, 0.5)
    assert logo["generators"] == 3 and logo["mean_clip_eer"] < 0.2


def with_extra(w: Windows, copies: int = 2, seed: int = 1) -> Windows:
    """The same calls again, as if through other channels (noisier copies of each window)."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([w.x + rng.normal(0, 0.3, w.x.shape) for _ in range(copies)])
    rep = np.tile(np.arange(len(w.y)), copies)
    return Windows(x, w.call[rep], w.y[rep], w.group[rep])


def test_extra_windows_train_only_the_folds_that_hold_their_calls() -> None:
    w, _ = synthetic()
    w.extra = with_extra(w)
    sizes: list[int] = []

    def fit(x: np.ndarray, y: np.ndarray) -> object:
        sizes.append(len(y))
        return fit_logistic(x, y, 1.0)

    p, _ = leave_one_group_out(w, fit, inner_k=3)  # type: ignore[arg-type]
    assert not np.isnan(p).any() and len(p) == len(w.y)  # scores only for the main windows
    per_source = len(w.y) // 6
    # each outer fold: 5 training sources, each window 1 + 2 extra copies; none of the held-out
    # source's extra windows (its calls) reach the fit
    outer = [n for n in sizes if n == 5 * per_source * 3]
    assert len(outer) == 6
    x, y = w.train_set(w.group == "src0")
    assert len(y) == len(x) == 3 * per_source


def test_choose_c_reads_only_its_mask_and_nested_loso_passes_training_masks() -> None:
    w, _ = synthetic()
    held = w.group == "src0"
    w.x[held] = np.nan  # a choice that read the held-out source would fail to fit
    c = choose_c(w, ~held, [0.01, 1.0], lambda c: lambda x, y: fit_logistic(x, y, c), k=3)
    assert c in (0.01, 1.0)
    assert choose_c(w, ~held, [0.5], lambda c: lambda x, y: fit_logistic(x, y, c)) == 0.5
    w, _ = synthetic()
    masks: list[np.ndarray] = []

    def choose(tr: np.ndarray) -> object:
        masks.append(tr.copy())
        return lambda x, y: fit_logistic(x, y, 1.0)

    p, _ = leave_one_group_out(
        w,
        lambda x, y: fit_logistic(x, y, 1.0),
        inner_k=3,
        choose=choose,  # type: ignore[arg-type]
    )
    assert len(masks) == 6 and not np.isnan(p).any()
    for m, g in zip(masks, sorted(set(w.group.tolist())), strict=True):
        assert not m[w.group == g].any() and m[w.group != g].all()


def test_select_calls_caps_each_source_in_a_seeded_order() -> None:
    calls = [Call(str(i), (), "real", "human", f"s{i % 3}") for i in range(30)]
    a, b = select_calls(calls, 4, seed=0), select_calls(calls, 4, seed=0)
    assert set(select_calls(calls, 1, first=10)) >= set(
        np.random.default_rng(0).permutation(30)[:10].tolist()
    )
    assert a == b and len(a) == 12
    assert select_calls(calls, 4, seed=1) != a
    assert len(select_calls(calls, None)) == 30


@pytest.mark.skipif(not (SHARED / "manifest.csv").exists(), reason="../shared/data is not here")
def test_shared_calls_join_the_short_digits() -> None:
    calls = shared_calls(SHARED)
    digits = [c for c in calls if c.id.startswith("digits:")]
    assert digits and all(1 <= len(c.paths) <= 12 for c in digits)
    assert len(calls) == 1926 - sum(len(c.paths) for c in digits) + len(digits)
    assert {c.label for c in calls} == {"real", "fake"}
