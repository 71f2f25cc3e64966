"""Add the ``mid`` encoder map to shards written before cache_embed.py stored it.

  backfill_mid.py asv5-ulaw        # rewrites CACHE/asv5-ulaw/shard*.npz that lack "mid"

Each call is cut again through the same channel and windows (G.711 mu-law, the daemon's VAD and
windows), the windows are matched by their end time, and the encoder runs up to block 4. The
shard is rewritten through a temporary file, so an interrupted run leaves it whole.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch
from cache_embed import MID_BLOCKS, encode_to
from windows import add_paths, calls, checkpoint

from streamd.export.aasist import load_checkpoint, tile_to_length
from streamd.training.phone_data import daemon_windows, load_call, phone_channel


@torch.inference_mode()
def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("src", help="cache folder of cache_embed.py (ulaw channel), e.g. asv5-ulaw")
    ap.add_argument("--threads", type=int, default=2)
    add_paths(ap)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cs = calls(a.shared)
    model = load_checkpoint(checkpoint(a.shared, "asv5")).eval()
    for f in sorted((a.cache / a.src).glob("shard*.npz")):
        z = dict(np.load(f))
        if "mid" in z:
            continue
        mids = []
        cut: dict[int, dict[float, np.ndarray]] = {}
        for c, e in zip(z["call"].tolist(), z["end"].tolist(), strict=True):
            if c not in cut:
                audio = phone_channel(load_call(cs[c]))
                cut[c] = {round(end, 3): w for end, w in daemon_windows(audio)}
            w = cut[c][round(e, 3)]
            x = tile_to_length(torch.from_numpy(w).unsqueeze(0), 64600)
            mids.append(encode_to(model, x, MID_BLOCKS)[0].numpy().astype(np.float16))
        z["mid"] = np.stack(mids)
        tmp = f.parent / (f.name + ".part")
        with open(tmp, "wb") as fh:
            np.savez(fh, **z)
        os.replace(tmp, f)
        print(f"{f.name}: {len(mids)} windows", flush=True)


if __name__ == "__main__":
    main()
