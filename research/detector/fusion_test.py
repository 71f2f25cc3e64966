"""Fusion: the built-in head on the ASVspoof 5 readout, on AASIST-L's readout, and on both
concatenated, leave-one-source-out on the same windows (the doc's "Fusion did not help").

  fusion_test.py          # needs CACHE/asv5-ulaw and CACHE/aasist-l-on-asv5-ulaw
"""

from __future__ import annotations

import numpy as np
from final_eval import build
from final_eval import parser as eval_parser

from streamd.training.phone_head import Windows, fit_logistic, leave_one_group_out
from streamd.training.phone_report import loso_figures


def main() -> None:
    ap = eval_parser()
    ap.description = __doc__
    a = ap.parse_args()
    a.no_tts = True  # AASIST-L was not run on the TTS calls
    w, _, cs = build(a)
    wl, _, _ = build(a, "aasist-l-on-")
    if not np.array_equal(w.call, wl.call):
        raise SystemExit("the two caches hold different windows: rerun rescore.py")
    for name, x in [("asv5", w.x), ("aasist-l", wl.x), ("fused", np.concatenate([w.x, wl.x], 1))]:
        ww = Windows(x, w.call, w.y, w.group)
        p, thr = leave_one_group_out(ww, lambda x, y: fit_logistic(x, y, a.C))
        lo = loso_figures(ww, p, thr, cs, shipped=0.5)["loso"]
        print(
            f"{name:9s} C={a.C}: EER {lo['clip_eer']} AUC {lo['auc']} "
            f"FA {lo['call_false_alarm']} det {lo['call_detection']}",
            flush=True,
        )


if __name__ == "__main__":
    main()
