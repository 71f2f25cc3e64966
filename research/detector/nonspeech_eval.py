"""Non-speech signals (tests/helpers/call_signals.py, 60 s each): windows the daemon cuts, how
many the tone gate passes, and whether each model alerts without the gate (built-in head trained
on all ../shared windows at --threshold; published ASVspoof 5 AASIST and AASIST-L at 0.5).
Also counts the speech windows of ../shared the gate would drop.

  nonspeech_eval.py --threshold 0.8625 --no-tts    # needs CACHE/asv5-ulaw-nonspeech
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from final_eval import build
from final_eval import parser as eval_parser

from streamd.pipeline.tonegate import ToneGate
from streamd.training.phone_data import daemon_windows
from streamd.training.phone_embed import load_shards, select_calls
from streamd.training.phone_head import first_alert, fit_logistic, sigmoid

from tests.helpers.call_signals import signals  # needs the repo root on PYTHONPATH


def p_fake(logit: np.ndarray) -> np.ndarray:
    z = logit.astype(np.float64)
    return sigmoid(z[:, 0] - z[:, 1])


def speech_gated(a: argparse.Namespace, gate: ToneGate) -> tuple[int, int]:
    """(gated, total) over the evaluated ../shared windows (each call's first 6)."""
    from windows import calls

    cs = calls(a.shared)
    chosen = set(range(len(cs)) if a.all_calls else select_calls(cs, a.per, 0, 250))
    seen: dict[int, int] = {}
    gated = total = 0
    done: set[tuple[int, float]] = set()
    for f in sorted((a.cache / "asv5-ulaw").glob("shard*.npz")):
        z = np.load(f)
        for c, e, w in zip(z["call"].tolist(), z["end"].tolist(), z["wav"], strict=True):
            if (c, round(e, 3)) in done:  # top-up shards repeat some calls
                continue
            done.add((c, round(e, 3)))
            seen[c] = seen.get(c, 0) + 1
            if c not in chosen or seen[c] > 6:
                continue
            x = w.astype(np.float32)
            x = x[: max(len(np.trim_zeros(x, "b")), 40000)]
            gated += gate.is_tonal(x)
            total += 1
    return gated, total


def main() -> None:
    ap = eval_parser()
    ap.description = __doc__
    ap.add_argument("--threshold", type=float, default=0.8, help="built-in alert threshold")
    ap.add_argument("--onnx", help="score with this model graph (the shipped model.onnx)")
    ap.add_argument("--all-calls", action="store_true", help="count gated speech on all calls")
    a = ap.parse_args()
    ns = load_shards(a.cache / "asv5-ulaw-nonspeech")
    if a.onnx:
        import onnxruntime as ort

        sess = ort.InferenceSession(a.onnx, providers=["CPUExecutionProvider"])
        wav = np.load(sorted((a.cache / "asv5-ulaw-nonspeech").glob("shard*.npz"))[0])["wav"]
        zs = [
            sess.run(None, {sess.get_inputs()[0].name: x[None].astype(np.float32)})[0][0]
            for x in wav
        ]
        p_b = p_fake(np.array(zs))
    else:
        w, _, _ = build(a)
        head = fit_logistic(w.x, w.y, a.C)
        p_b = sigmoid(head.score(ns["emb"].astype(np.float64)))
    p_a5 = p_fake(ns["logit"])
    lpath = a.cache / "aasist-l-on-asv5-ulaw-nonspeech"
    p_l = p_fake(load_shards(lpath)["logit"]) if list(lpath.glob("shard*.npz")) else None
    gate = ToneGate()
    rows = []
    for i, (name, x) in enumerate(signals(60.0).items()):
        wins = [s for _, s in daemon_windows(x)]
        m = ns["call"] == i
        r = {
            "signal": name,
            "seconds": 60,
            "vad_windows": len(wins),
            "windows_after_gate": sum(not gate.is_tonal(s) for s in wins),
            "builtin_p_first3": [round(float(v), 3) for v in p_b[m]],
            "builtin_alert_no_gate": bool(m.any()) and first_alert(p_b[m], a.threshold) is not None,
            "asv5_alert_no_gate@0.5": bool(m.any()) and first_alert(p_a5[m], 0.5) is not None,
        }
        if p_l is not None:
            r["aasistl_alert_no_gate@0.5"] = bool(m.any()) and first_alert(p_l[m], 0.5) is not None
        rows.append(r)
        print(r, flush=True)
    print(
        f"total signal {60 * len(rows)} s; VAD windows {sum(r['vad_windows'] for r in rows)}; "
        f"reaching the scorer with the gate: {sum(r['windows_after_gate'] for r in rows)}"
    )
    for k in ("builtin_alert_no_gate", "asv5_alert_no_gate@0.5", "aasistl_alert_no_gate@0.5"):
        print(f"{k}: {sum(bool(r.get(k)) for r in rows)} of {len(rows)} signals")
    gated, total = speech_gated(a, gate)
    print(f"speech windows gated: {gated} of {total}")
    dest = a.out or a.cache
    (dest / "nonspeech.json").write_text(json.dumps(rows, indent=1))
    print("wrote", dest / "nonspeech.json")


if __name__ == "__main__":
    main()
