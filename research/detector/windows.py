"""Shared by the research scripts: where ../shared and the cache are, the published checkpoints,
and ../shared/data (or the synthesized TTS set) as calls.

The calls, channel and windows are the recipe's own (``streamd.training.phone_data``), so the
research cache holds exactly the windows ``streamd train --recipe`` and the daemon score.
Run as a script it prints how many windows the daemon cuts from the first calls.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from streamd.training.phone_data import Call, daemon_windows, load_call, phone_channel, shared_calls

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CHECKPOINTS = {
    "asv5": "models/aasist-asvspoof5/AASIST-asvspoof5.pth",
    "aasist": "models/aasist/AASIST.pth",
    "aasist-l": "models/aasist/AASIST-L.pth",
    "rawgat": "models/rawgat-st/RawGAT_ST_mul.pth",
}


def add_paths(parser: argparse.ArgumentParser) -> None:
    """--shared and --cache, the same in every script."""
    parser.add_argument(
        "--shared",
        type=Path,
        default=REPO.parent / "shared",
        help="the shared folder with data/manifest.csv and models/ (default: %(default)s)",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=HERE / "cache",
        help="research cache: window readouts, TTS clips, result JSON (default: %(default)s)",
    )


def checkpoint(shared: Path, name: str) -> Path:
    path = shared / CHECKPOINTS[name]
    if not path.is_file():
        raise SystemExit(f"checkpoint {path} not found (is --shared right?)")
    return path


def calls(shared: Path) -> list[Call]:
    """../shared/data/manifest.csv as calls (digits joined per speaker), in manifest order:
    cached call indices point into this list."""
    data = shared / "data"
    if not (data / "manifest.csv").is_file():
        raise SystemExit(f"{data / 'manifest.csv'} not found (is --shared right?)")
    return shared_calls(data)


def tts_calls(cache: Path) -> list[Call]:
    """The clips synth_tts.py wrote, as fake calls of source ``debian-tts``."""
    index = cache / "tts" / "index.csv"
    if not index.is_file():
        raise SystemExit(f"{index} not found: run synth_tts.py first")
    with open(index, newline="") as f:
        rows = list(csv.DictReader(f))
    return [
        Call(
            "tts:" + r["path"],
            (cache / "tts" / r["path"],),
            "fake",
            r["system"],
            "debian-tts",
            r["system"],
        )
        for r in rows
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    add_paths(ap)
    ap.add_argument("--limit", type=int, default=5, help="calls to cut (default: %(default)s)")
    a = ap.parse_args()
    cs = calls(a.shared)
    print(len(cs), "calls in", a.shared / "data", "from", len({c.source for c in cs}), "sources")
    for ci in np.random.default_rng(0).permutation(len(cs))[: a.limit]:
        wins = list(daemon_windows(phone_channel(load_call(cs[ci]))))
        print(f"{ci:5d} {cs[ci].label:4s} {len(wins):3d} windows  {cs[ci].id}")


if __name__ == "__main__":
    main()
