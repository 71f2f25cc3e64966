"""``streamd eval --report``: the page's numbers are the evaluation's, every clip is listed."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from streamd.offline.datasets import LabeledClip
from streamd.offline.eval import ClipResult, summarize
from streamd.offline.metrics import roc_points
from streamd.offline.report import clip_rows, curves, write_report

pytest.importorskip("matplotlib")


def results(tmp_path: Path) -> list[ClipResult]:
    rng = np.random.default_rng(3)
    out = []
    for i in range(40):
        out.append(
            ClipResult(
                LabeledClip(tmp_path / f"r{i}.wav", "real", "human", source=f"corpus{i % 2}"),
                windows=list(rng.uniform(0.0, 0.6, 3)),
            )
        )
    for i in range(30):
        system = ("melgan", "vits", "xtts")[i % 3]
        out.append(
            ClipResult(
                LabeledClip(tmp_path / f"f{i}.wav", "fake", system, source=f"corpus{i % 2}"),
                windows=list(rng.uniform(0.3, 1.0, 2)),
            )
        )
    out.append(ClipResult(LabeledClip(tmp_path / "bad.wav", "real", "human"), error="unreadable"))
    out.append(ClipResult(LabeledClip(tmp_path / "short.wav", "fake", "vits")))
    return out


def test_report_files_and_numbers(tmp_path: Path) -> None:
    res = results(tmp_path)
    summary = summarize(res, threshold=0.5, far=0.05)
    paths = write_report(tmp_path / "rep", res, summary, title="t", threshold=0.5, far=0.05)
    for key in ("overall", "source", "generator", "histogram"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", key
    page = paths["html"].read_text()
    c = summary["clip"]
    assert f"{100 * c['eer']:.2f}%" in page and f"{c['auc']:.3f}" in page
    assert f"{100 * c['confusion']['false_alarm_rate']:.2f}%" in page
    assert f"{c['at_far']['threshold']:.4f}" in page
    for system in ("melgan", "vits", "xtts"):
        assert f"{100 * summary['per_system'][system]['eer']:.2f}%" in page
    with paths["csv"].open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(res) and {r["path"] for r in rows} == {str(r.clip.path) for r in res}
    bad = next(r for r in rows if r["path"].endswith("bad.wav"))
    assert bad["error"] == "unreadable" and bad["score"] == ""
    data = json.loads(paths["json"].read_text())
    assert data["clip"] == json.loads(json.dumps(summary["clip"]))
    assert len(data["per_clip"]) == len(res)


def test_curves_are_the_metrics_roc_and_mark_the_operating_points(tmp_path: Path) -> None:
    res = results(tmp_path)
    summary = summarize(res, threshold=0.5, far=0.05)
    rows = clip_rows(res, 0.5)
    far_t = summary["clip"]["at_far"]["threshold"]
    groups = curves(rows, 0.5, far_t)
    [overall] = groups["overall"]
    scored = [(r.score, r.clip.is_fake) for r in res if r.score is not None]
    roc = roc_points([s for s, _ in scored], [y for _, y in scored])
    np.testing.assert_allclose(overall.fpr, roc.fpr)
    np.testing.assert_allclose(overall.fnr, roc.fnr)
    conf = summary["clip"]["confusion"]
    assert overall.at_threshold == pytest.approx(
        (conf["false_alarm_rate"], 1 - conf["detection_rate"])
    )
    at = summary["clip"]["at_far"]
    assert overall.at_far == pytest.approx((at["false_alarm_rate"], 1 - at["detection_rate"]))
    assert [c.name for c in groups["generator"]] == ["melgan", "vits", "xtts"]
    assert all(c.n_real == 40 for c in groups["generator"])
    assert [c.name for c in groups["source"]] == ["corpus0", "corpus1"]
    # flagged follows the threshold rule, score >= threshold
    assert all(r["flagged"] == (r["score"] >= 0.5) for r in rows if r["score"] is not None)
