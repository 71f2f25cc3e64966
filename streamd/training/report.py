"""Plain-text tables of what ``streamd train`` measured; torch-free so ``streamd eval`` can print
them."""

from __future__ import annotations

from typing import Any


def _pct(v: Any) -> str:
    return f"{100 * v:5.1f}%" if isinstance(v, (int, float)) else "   n/a"


def format_validation(train: dict[str, Any]) -> str:
    """Base vs adapted on the held-out validation groups, per condition."""
    lines = [
        f"held-out validation ({train['split']['by']}: {', '.join(train['split']['val_groups'])})",
        f"{'':12} {'condition':10} {'real':>5} {'fake':>5} {'EER':>7} "
        f"{'AUC':>6} {'det@FAR':>8} {'det@thr':>8} {'FA@thr':>7}",
    ]
    for model in ("base", "adapted"):
        for cond, m in train[f"validation_{model}"].items():
            lines.append(
                f"{model:12} {cond:10} {m['n_real']:5d} {m['n_fake']:5d} {_pct(m.get('eer')):>7} "
                f"{m.get('auc', float('nan')):6.3f} {_pct(m.get('detection_at_far')):>8} "
                f"{_pct(m.get('detection_at_threshold')):>8} "
                f"{_pct(m.get('false_alarm_at_threshold')):>7}"
            )
    lines.append(
        "det@FAR: detection with the threshold at "
        f"{_pct(train['far']).strip()} false alarms on these reals, per "
        f"condition; det@thr/FA@thr: at the manifest threshold {train['threshold']:.4f}"
    )
    return "\n".join(lines)


def format_logo(metrics: dict[str, Any]) -> str:
    """The leave-one-generator-out table stored in a manifest's ``metrics.logo``, or a note."""
    logo = metrics.get("logo")
    if not logo:
        return (
            "leave-one-generator-out: not measured for this model "
            "(run `streamd train ... --logo` to measure and store it)"
        )
    conds = [c for c in ("clean", "g711") if any(c in v["base"] for v in logo["systems"].values())]
    shipped = logo.get("model_train", logo["train"])
    recipe = f"--train {logo['train']}" + (
        f" (the model itself: --train {shipped})" if shipped != logo["train"] else ""
    )
    lines = [
        f"leave-one-generator-out: {recipe} retrained from the base without each "
        f"fake system, then that system's clips vs {logo['held_out_real']}",
        "EER, and detection at the threshold for "
        f"{_pct(logo.get('far', 0.01)).strip()} false alarms chosen without that system",
        f"  {'system':44} {'fake':>4}"
        + "".join(
            f" | {c + ' base EER':>15} {'det':>6} {'adapted EER':>11} {'det':>6}" for c in conds
        ),
    ]
    for name, v in logo["systems"].items():
        cells = ""
        for c in conds:
            b, a = v["base"].get(c, {}), v.get("adapted", {}).get(c, {})
            cells += (
                f" | {_pct(b.get('eer')):>15} {_pct(b.get('detection_at_threshold')):>6} "
                f"{_pct(a.get('eer')):>11} {_pct(a.get('detection_at_threshold')):>6}"
            )
        note = f"  ({v['skipped']})" if "skipped" in v else ""
        lines.append(f"  {name[:44]:44} {v['n_fake_clips']:4d}{cells}{note}")
    for key, sm in logo.get("summary", {}).items():
        lines.append(
            f"  {key:24} mean EER {_pct(sm['mean_eer'])}  worst {_pct(sm['worst_eer'])}  "
            f"mean detection {_pct(sm['mean_detection_at_threshold'])} over {sm['systems']} systems"
        )
    return "\n".join(lines)
