"""Run another published checkpoint (AASIST family, or RawGAT-ST as ``rawgat``) on the windows
cache_embed.py stored (same windows, same order, each call's first 6), so every model is
compared on exactly the same audio. ``emb`` is the readout the model's output layer sees.

  rescore.py asv5-ulaw aasist-l      -> CACHE/aasist-l-on-asv5-ulaw/shardNNN.npz
  rescore.py asv5-ulaw rawgat --shards 'shard00[0-4].npz'
Shards already rescored are skipped; --follow keeps waiting for new source shards.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from windows import CHECKPOINTS, add_paths, checkpoint

from streamd.export import aasist, rawgat
from streamd.export.aasist import tile_to_length

Model = tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]


def load_model(name: str, path: Path) -> Model:
    """(readout of a waveform batch, output layer on a readout) of the named checkpoint."""
    if name == "rawgat":
        net = rawgat.load_checkpoint(path)
        return net.embed, net.classify
    model = aasist.load_checkpoint(path)
    return model.embed, model.out_layer


def cap_mask(call: np.ndarray, cap: int) -> np.ndarray:
    """Each call's first ``cap`` windows."""
    seen: dict[int, int] = {}
    keep = np.zeros(len(call), bool)
    for i, c in enumerate(call.tolist()):
        seen[c] = seen.get(c, 0) + 1
        keep[i] = seen[c] <= cap
    return keep


@torch.inference_mode()
def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("src", help="cache folder written by cache_embed.py, e.g. asv5-ulaw")
    ap.add_argument("model", choices=sorted(CHECKPOINTS), help="checkpoint to run")
    ap.add_argument("--cap", type=int, default=6, help="windows per call (default: %(default)s)")
    ap.add_argument("--follow", action="store_true", help="wait for new shards (Ctrl-C to stop)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default: %(default)s)")
    ap.add_argument(
        "--shards", default="shard*.npz", help="source shards to rescore (default: %(default)s)"
    )
    add_paths(ap)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    src = a.cache / a.src
    if not src.is_dir():
        raise SystemExit(f"{src} not found: run cache_embed.py first")
    embed, head = load_model(a.model, checkpoint(a.shared, a.model))
    dst = a.cache / f"{a.model}-on-{a.src}"
    dst.mkdir(exist_ok=True)
    t0, n = time.time(), 0
    while True:
        todo = [f for f in sorted(src.glob(a.shards)) if not (dst / f.name).exists()]
        if not todo:
            if not a.follow:
                break
            time.sleep(30)
            continue
        z = np.load(todo[0])
        keep = cap_mask(z["call"], a.cap)
        embs, logits = [], []
        for w in z["wav"][keep]:
            x = torch.from_numpy(w.astype(np.float32))
            # stored windows are zero-padded to 64,000 samples: cut the padding (at least 2.5 s)
            k = len(np.trim_zeros(w.astype(np.float32), "b")) or len(w)
            x = tile_to_length(x[: max(k, 40000)].unsqueeze(0), 64600)
            e = embed(x)
            embs.append(e[0].numpy())
            logits.append(head(e)[0].numpy())
            n += 1
        np.savez(
            dst / todo[0].name,
            call=z["call"][keep],
            end=z["end"][keep],
            emb=np.array(embs),
            logit=np.array(logits),
        )
        took = time.time() - t0
        print(
            f"{todo[0].name}: {n} windows {took:.0f}s ({took / max(n, 1):.2f} s/window)", flush=True
        )


if __name__ == "__main__":
    main()
