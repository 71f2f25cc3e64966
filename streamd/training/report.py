"""Plain-text tables of what ``streamd train`` measured; torch-free so ``streamd eval`` can print them."""

from __future__ import annotations

from typing import Any


def _pct(v: Any) -> str:
    return f"{100 * v:5.1f}%" if isinstance(v, (int, float)) else "   n/a"


def format_validation(train: dict[str, Any]) -> str:
    """Base vs adapted on the held-out validation groups, per condition."""
    lines = [f"held-out validation ({train['split']['by']}: {', '.join(train['split']['val_groups'])})",
             f"{'':12} {'condition':10} {'real':>5} {'fake':>5} {'EER':>7} {'AUC':>6} {'det@FAR':>8} {'det@thr':>8} {'FA@thr':>7}"]
    for model in ("base", "adapted"):
        for cond, m in train[f"validation_{model}"].items():
            lines.append(f"{model:12} {cond:10} {m['n_real']:5d} {m['n_fake']:5d} {_pct(m.get('eer')):>7} "
                         f"{m.get('auc', float('nan')):6.3f} {_pct(m.get('detection_at_far')):>8} "
                         f"{_pct(m.get('detection_at_threshold')):>8} {_pct(m.get('false_alarm_at_threshold')):>7}")
    lines.append(f"det@FAR: detection with the threshold at {_pct(train['far']).strip()} false alarms on these reals, "
                 f"per condition; det@thr/FA@thr: at the manifest threshold {train['threshold']:.4f}")
    return "\n".join(lines)


def format_logo(metrics: dict[str, Any]) -> str:
    """The leave-one-generator-out table stored in a manifest's ``metrics.logo``, or a note."""
    logo = metrics.get("logo")
    if not logo:
        return ("leave-one-generator-out: not measured for this model "
                "(run `streamd train ... --logo` to measure and store it)")
    conds = sorted({c for v in logo["systems"].values() for c in v["adapted"]})
    head = "".join(f" {'base ' + c:>14} {'adapted ' + c:>17}" for c in conds)
    lines = [f"leave-one-generator-out ({logo['train']} head retrained per fold; unseen system's clips vs "
             f"{logo['held_out_real']}): EER, and detection at the fold's {_pct(logo.get('far', 0.01)).strip()} "
             "false-alarm threshold",
             f"  {'system':44} {'fake':>4}{head}"]
    for name, v in logo["systems"].items():
        cells = ""
        for c in conds:
            b, a = v["base"].get(c, {}), v["adapted"].get(c, {})
            cells += f" {_pct(b.get('eer'))} {_pct(b.get('detection_at_threshold'))} {_pct(a.get('eer'))} {_pct(a.get('detection_at_threshold'))}  "
        lines.append(f"  {name[:44]:44} {v['n_fake_clips']:4d}{cells}")
    for key, s in logo.get("summary", {}).items():
        lines.append(f"  {key:24} mean EER {_pct(s['mean_eer'])}  worst {_pct(s['worst_eer'])}  "
                     f"mean detection {_pct(s['mean_detection_at_threshold'])} over {s['systems']} systems")
    return "\n".join(lines)
