"""Warm the recipe's per-call cache from research shards, so `streamd train --recipe` does not
embed again the windows cache_embed.py already embedded (the same windows, model and tiling).

  to_recipe_cache.py asv5-ulaw  .cache/recipe             # the G.711 windows
  to_recipe_cache.py asv5-codecs .cache/recipe --copy 0    # the recipe's channel copy 0

Only for complete runs (every call of the seeded order processed: a call with no window in the
shards gets an empty file, as the recipe writes). --verify N embeds N calls the recipe's way and
prints the largest difference to the converted readouts.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np
from windows import add_paths, calls, checkpoint

from streamd.model.manifest import sha256_file
from streamd.training.channels import ChannelMix
from streamd.training.phone_embed import cache_key, call_file, embed_calls, save_call


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("src", help="research cache folder, e.g. asv5-ulaw or asv5-codecs")
    ap.add_argument("dest", type=Path, help="the recipe's cache folder (its `cache:` key)")
    ap.add_argument("--copy", type=int, help="channel copy index (codecs caches)")
    ap.add_argument("--per-call", type=int, default=6)
    ap.add_argument("--verify", type=int, default=3, help="calls to re-embed and compare")
    add_paths(ap)
    a = ap.parse_args()
    cs = calls(a.shared)
    ckpt = checkpoint(a.shared, "asv5")
    sha = sha256_file(ckpt)
    channel = "ulaw" if a.copy is None else f"codecs:{a.copy}:{ChannelMix()!r}"
    out = a.dest / cache_key(sha, channel, a.per_call)
    out.mkdir(parents=True, exist_ok=True)
    rows: dict[int, dict[float, tuple[np.ndarray, np.ndarray]]] = defaultdict(dict)
    for f in sorted((a.cache / a.src).glob("shard*.npz")):
        zf = np.load(f)
        z = {k: zf[k] for k in ("call", "end", "emb", "logit")}
        for c, e, v, lg in zip(
            z["call"].tolist(), z["end"].tolist(), z["emb"], z["logit"], strict=True
        ):
            rows[int(c)].setdefault(round(float(e), 3), (v, lg))
    dim = len(next(iter(next(iter(rows.values())).values()))[0])
    saved = 0
    for ci, call in enumerate(cs):
        wins = sorted(rows.get(ci, {}).items())[: a.per_call]
        end = np.array([e for e, _ in wins], dtype=np.float64)
        emb = np.array([v for _, (v, _) in wins], dtype=np.float32).reshape(len(wins), dim)
        logit = np.array([lg for _, (_, lg) in wins], dtype=np.float32).reshape(len(wins), 2)
        save_call(out, call, end, emb, logit, dim)
        saved += len(wins)
    print(f"wrote {len(cs)} call files ({saved} windows, each call's first {a.per_call}) to {out}")
    if a.verify:
        from streamd.export.aasist import load_checkpoint

        enc = load_checkpoint(ckpt).eval()
        pick = [ci for ci in sorted(rows)[:: max(1, len(rows) // a.verify)]][: a.verify]
        tmp = out.parent / (out.name + "-verify")
        for ci in pick:
            call_file(tmp, cs[ci]).unlink(missing_ok=True)
        kind = "ulaw" if a.copy is None else "codecs"
        got = embed_calls(
            cs, pick, enc, tmp, kind, a.per_call, a.copy or 0, print, mix=ChannelMix()
        )
        ref = np.concatenate([np.load(call_file(out, cs[ci]))["emb"] for ci in pick])
        print(f"verify {len(pick)} calls: max |readout diff| {np.abs(got['emb'] - ref).max():.2e}")


if __name__ == "__main__":
    main()
