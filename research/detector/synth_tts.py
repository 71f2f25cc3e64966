"""Synthesize telephone-style fakes with Debian TTS engines (espeak-ng, flite, festival).

Writes CACHE/tts/<engine>-<voice>-<n>.wav (2-3 IVR or conversational sentences each, native rate)
and CACHE/tts/index.csv with the recipe's own generator (``streamd.training.debian_tts``, seed 7);
an existing index.csv is reused. Needs: apt-get install espeak-ng flite festival festvox-kallpc16k
(engines that are missing are skipped, which changes the set).
"""

from __future__ import annotations

import argparse

from windows import add_paths

from streamd.training.debian_tts import available_engines, synthesize


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    add_paths(ap)
    a = ap.parse_args()
    print("engines:", ", ".join(available_engines()) or "none")
    rows = synthesize(a.cache / "tts")
    print(
        len(rows),
        "clips,",
        round(sum(float(r["duration_s"]) for r in rows)),
        "s in",
        a.cache / "tts",
    )


if __name__ == "__main__":
    main()
