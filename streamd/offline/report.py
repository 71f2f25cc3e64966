"""``streamd eval --report DIR``: an HTML page with DET and ROC curves, histograms and every clip.

Every number on the page comes from :mod:`streamd.offline.metrics` through the same summary the
console report prints, so the page, ``--json`` and the terminal always agree. The curves are
drawn overall, per source and per generator (each generator's fakes against all real clips),
with the operating points at the threshold in use and at the ``--far`` target marked. The
per-clip table is also written as ``clips.csv`` and ``report.json``.

Needs matplotlib (the ``export`` extra); it is imported here only, never on the daemon's path.
"""

from __future__ import annotations

import csv
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

import numpy as np

from streamd.errors import UsageError
from streamd.offline.metrics import roc_points

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from streamd.offline.eval import ClipResult

DET_TICKS = (0.001, 0.01, 0.05, 0.2, 0.5, 0.8, 0.95)
MIN_CLIPS_FOR_CURVE = 5  # per class: a curve through 1 fake clip is a step, not a finding
MAX_CURVES = 12  # per plot; the tables list every group
_PROBIT = NormalDist()


@dataclass(frozen=True)
class Curve:
    """One ROC/DET curve: its name, its points and its operating points."""

    name: str
    fpr: np.ndarray
    fnr: np.ndarray
    n_real: int
    n_fake: int
    at_threshold: tuple[float, float] | None  # (false alarm, miss) at the threshold in use
    at_far: tuple[float, float] | None


def clip_rows(results: Sequence[ClipResult], threshold: float) -> list[dict[str, Any]]:
    """The per-clip table: one row per clip, scored or not."""
    rows = []
    for r in results:
        score = r.score
        rows.append(
            {
                "path": str(r.clip.path),
                "label": r.clip.label,
                "system": r.clip.system,
                "source": r.clip.source,
                "windows": len(r.windows),
                "score": score,  # full precision: the operating points compare it with thresholds
                "max_window": max(r.windows) if r.windows else None,
                "scored_whole": r.whole is not None,
                "flagged": None if score is None else bool(score >= threshold),
                "error": r.error or "",
            }
        )
    return rows


def _curve(
    name: str, rows: list[dict[str, Any]], threshold: float, far_threshold: float | None
) -> Curve | None:
    scored = [r for r in rows if r["score"] is not None]
    y = np.array([r["label"] == "fake" for r in scored], dtype=int)
    if not y.any() or y.all():
        return None  # a curve needs both classes
    s = np.array([r["score"] for r in scored], dtype=float)
    roc = roc_points(s, y)

    def point(t: float | None) -> tuple[float, float] | None:
        if t is None:
            return None
        flagged = s >= t
        return float(flagged[y == 0].mean()), float(1.0 - flagged[y == 1].mean())

    return Curve(
        name,
        roc.fpr,
        roc.fnr,
        int((y == 0).sum()),
        int(y.sum()),
        point(threshold),
        point(far_threshold),
    )


def curves(
    rows: list[dict[str, Any]], threshold: float, far_threshold: float | None
) -> dict[str, list[Curve]]:
    """Overall, per source (its own clips) and per generator (its fakes vs all real clips)."""
    real = [r for r in rows if r["label"] == "real"]
    out: dict[str, list[Curve]] = {"overall": [], "source": [], "generator": []}
    c = _curve("all clips", rows, threshold, far_threshold)
    if c is not None:
        out["overall"].append(c)
    for source in sorted({r["source"] for r in rows}):
        c = _curve(source, [r for r in rows if r["source"] == source], threshold, far_threshold)
        if c is not None:
            out["source"].append(c)
    fake_systems = sorted({r["system"] for r in rows if r["label"] == "fake"})
    for system in fake_systems:
        fakes = [r for r in rows if r["label"] == "fake" and r["system"] == system]
        c = _curve(system or "(unnamed)", real + fakes, threshold, far_threshold)
        if c is not None:
            out["generator"].append(c)
    return out


def plotted(group: list[Curve]) -> list[Curve]:
    """The curves worth drawing: enough clips of each class, the largest groups first."""
    big = [c for c in group if min(c.n_real, c.n_fake) >= MIN_CLIPS_FOR_CURVE]
    return sorted(big, key=lambda c: (-c.n_fake, -c.n_real, c.name))[:MAX_CURVES]


def _probit(p: np.ndarray | float) -> np.ndarray:
    clipped = np.clip(np.asarray(p, dtype=float), 1e-4, 1 - 1e-4)
    return np.array([_PROBIT.inv_cdf(float(v)) for v in clipped.ravel()]).reshape(clipped.shape)


def _short(name: str, n: int = 38) -> str:
    return name if len(name) <= n else name[: n - 1] + "…"


def _plot_pair(curves_: list[Curve], title: str, path: Path, far: float) -> None:
    """DET (probit axes) and ROC side by side, with the two operating points marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (det, roc) = plt.subplots(1, 2, figsize=(12, 5.2))
    many = len(curves_) > 6
    for c in curves_:
        label = f"{_short(c.name)} ({c.n_real} real / {c.n_fake} fake)"
        kw: dict[str, Any] = {"lw": 1.0 if many else 1.8}
        (line,) = det.plot(_probit(c.fpr), _probit(c.fnr), **kw)
        roc.plot(c.fpr, 1 - c.fnr, color=line.get_color(), label=label, **kw)
        for pt, marker in ((c.at_threshold, "o"), (c.at_far, "s")):
            if pt is not None:
                det.plot(*_probit(np.array(pt)), marker=marker, color=line.get_color(), ms=7)
                roc.plot(pt[0], 1 - pt[1], marker=marker, color=line.get_color(), ms=7)
    _det_axes(det)
    roc.plot([0, 1], [0, 1], ls=":", color="#999", lw=1)
    roc.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false-alarm rate (real flagged)")
    roc.set(ylabel="detection rate (fake flagged)", title="ROC")
    roc.grid(alpha=0.3)
    roc.plot([], [], "o", color="#444", label="threshold in use")
    roc.plot([], [], "s", color="#444", label=f"threshold for {far:.1%} false alarms")
    roc.legend(fontsize=7 if many else 8, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _det_axes(ax: Axes) -> None:
    ticks = _probit(np.array(DET_TICKS))
    labels = [f"{t:.1%}".replace(".0%", "%") for t in DET_TICKS]
    ax.set_xticks(ticks, labels)
    ax.set_yticks(ticks, labels)
    lim = (_probit(0.0005), _probit(0.99))
    ax.set(xlim=lim, ylim=lim, xlabel="false-alarm rate (real flagged)")
    ax.set(ylabel="miss rate (fake passed)", title="DET (normal deviate scale)")
    ax.plot(lim, lim, ls=":", color="#999", lw=1)  # the EER line
    ax.grid(alpha=0.3)


def _plot_hist(
    rows: list[dict[str, Any]], threshold: float, far_t: float | None, path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    bins = [i / 40 for i in range(41)]
    for label, color in (("real", "#0891b2"), ("fake", "#dc2626")):
        s = [r["score"] for r in rows if r["label"] == label and r["score"] is not None]
        ax.hist(s, bins=bins, alpha=0.55, color=color, label=f"{label} ({len(s)} clips)")
    ax.axvline(threshold, color="#111", lw=1.5, label=f"threshold in use {threshold:.3f}")
    if far_t is not None and abs(far_t - threshold) > 1e-9:
        ax.axvline(far_t, color="#111", ls="--", lw=1.2, label=f"threshold at --far {far_t:.3f}")
    ax.set(xlabel="clip score (mean p_fake of its windows)", ylabel="clips")
    ax.set(title="Score histograms")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _pct(v: Any) -> str:
    return "n/a" if v is None else f"{100 * float(v):.2f}%"


def _num(v: Any, d: int = 3) -> str:
    return "n/a" if v is None else f"{float(v):.{d}f}"


def _metrics_table(summary: dict[str, Any]) -> str:
    head = "<tr><th>level</th><th>n</th><th>real</th><th>fake</th><th>EER</th><th>AUC</th></tr>"
    body = []
    for level in ("window", "clip"):
        m = summary[level]
        body.append(
            f"<tr><td>per {level}</td><td>{m['n']}</td><td>{m['n_real']}</td><td>{m['n_fake']}</td>"
            f"<td>{_pct(m.get('eer'))}</td><td>{_num(m.get('auc'))}</td></tr>"
        )
    return f"<table>{head}{''.join(body)}</table>"


def _group_table(groups: dict[str, Any], kind: str) -> str:
    if not groups:
        return "<p>none</p>"
    head = f"<tr><th>{kind}</th><th>real</th><th>fake</th><th>EER</th><th>AUC</th></tr>"
    body = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{m.get('n_real', '')}</td>"
        f"<td>{m.get('n_fake', '')}</td><td>{_pct(m.get('eer'))}</td>"
        f"<td>{_num(m.get('auc'))}</td></tr>"
        for name, m in groups.items()
    )
    return f"<table>{head}{body}</table>"


def _clip_table(rows: list[dict[str, Any]]) -> str:
    cols = ["path", "label", "system", "source", "windows", "score", "flagged", "error"]
    head = "".join(f"<th>{c}</th>" for c in cols)
    body = []
    for r in sorted(rows, key=lambda r: (r["score"] is None, -(r["score"] or 0))):
        cls = "fp" if r["flagged"] and r["label"] == "real" else ""
        cls = "fn" if r["flagged"] is False and r["label"] == "fake" else cls
        cells = "".join(f"<td>{html.escape('' if r[c] is None else str(r[c]))}</td>" for c in cols)
        body.append(f'<tr class="{cls}">{cells}</tr>')
    return f'<table class="clips"><tr>{head}</tr>{"".join(body)}</table>'


CSS = """body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1240px;color:#111827}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #e3e7ee;padding:3px 8px;text-align:left;font-size:13px}
th{background:#f4f6fa}img{max-width:100%;border:1px solid #e3e7ee}.op{font-size:15px}
tr.fp td{background:#fef2f2}tr.fn td{background:#fffbeb}.clips td:first-child{font-family:monospace}"""  # noqa: E501


def write_report(
    out_dir: str | Path,
    results: Sequence[ClipResult],
    summary: dict[str, Any],
    *,
    title: str,
    threshold: float,
    far: float,
) -> dict[str, Path]:
    """Write index.html, the PNGs, clips.csv and report.json into ``out_dir``; return the paths."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--report {out}: exists and is not a folder")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError(
            "--report needs matplotlib: pip install 'streamd[export]' (or pip install matplotlib)"
        ) from None
    out.mkdir(parents=True, exist_ok=True)
    rows = clip_rows(results, threshold)
    at_far = summary["clip"].get("at_far")
    far_t = float(at_far["threshold"]) if at_far else None
    groups = curves(rows, threshold, far_t)
    paths: dict[str, Path] = {}
    for kind, title_ in (
        ("overall", "All clips"),
        ("source", "Per source (each source's own clips)"),
        ("generator", "Per generator (its fakes against all real clips)"),
    ):
        drawn = plotted(groups[kind]) if kind != "overall" else groups[kind]
        if drawn:
            if len(drawn) < len(groups[kind]):
                title_ += (
                    f": the {len(drawn)} largest of {len(groups[kind])} with at least "
                    f"{MIN_CLIPS_FOR_CURVE} clips of each class (every one is in the tables)"
                )
            paths[kind] = out / f"det_roc_{kind}.png"
            _plot_pair(drawn, title_, paths[kind], far)
    paths["histogram"] = out / "histogram.png"
    _plot_hist(rows, threshold, far_t, paths["histogram"])

    paths["csv"] = out / "clips.csv"
    with paths["csv"].open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["path"])
        writer.writeheader()
        writer.writerows(rows)
    paths["json"] = out / "report.json"
    paths["json"].write_text(
        json.dumps({"title": title, "threshold": threshold, **summary, "per_clip": rows}, indent=1),
        encoding="utf-8",
    )

    c = summary["clip"].get("confusion")
    ops = ""
    if c:
        ops = (
            f"<p class='op'>● <b>Threshold in use {c['threshold']:.4f}</b>: false alarms "
            f"{_pct(c['false_alarm_rate'])} ({c['fp']} of {c['fp'] + c['tn']} real clips flagged), "
            f"detection {_pct(c['detection_rate'])} ({c['tp']} of {c['tp'] + c['fn']} fake clips)."
            f"</p><p class='op'>■ <b>For ≤ {_pct(at_far['target'])} false alarms</b>: threshold "
            f"{at_far['threshold']:.4f}, detection {_pct(at_far['detection_rate'])} (false alarms "
            f"{_pct(at_far['false_alarm_rate'])}).</p>"
        )
    imgs = "".join(
        f'<h2>{name}</h2><img src="{paths[key].name}" alt="{name}">'
        for key, name in (
            ("overall", "DET and ROC, all clips"),
            ("source", "DET and ROC per source"),
            ("generator", "DET and ROC per generator"),
            ("histogram", "Score histograms"),
        )
        if key in paths
    )
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>{html.escape(title)}</title><style>{CSS}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{summary["clips"]} clips: {summary["errors"]} unreadable, {summary["excluded_short"]} too short for a
window and excluded, {summary["scored_whole"]} scored whole. A clip's score is the mean p_fake of its
windows; a clip is flagged when its score ≥ the threshold.</p>
{_metrics_table(summary)}{ops}{imgs}
<h2>Per generator</h2>{_group_table(summary["per_system"], "generator")}
<h2>Per source</h2>{_group_table(summary["per_source"], "source")}
<h2>Every clip</h2><p>Also in <a href="clips.csv">clips.csv</a> and <a href="report.json">report.json</a>.
Red rows: real clips flagged (false alarms); yellow: fake clips missed.</p>
{_clip_table(rows)}
</body></html>"""  # noqa: E501
    paths["html"] = out / "index.html"
    paths["html"].write_text(page, encoding="utf-8")
    return paths
