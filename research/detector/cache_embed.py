"""Cache a frozen AASIST's readout (and graph nodes, logits, the window itself) for every window
the daemon cuts from each call after a phone channel.

Calls are processed in a fixed seeded order (the recipe's) and saved in shards of 50 calls under
CACHE/<model>-<channel>[-<kind>]/, so an interrupted run is usable and a rerun skips the shards
already written. The doc's caches:

  cache_embed.py asv5 ulaw --limit 250          # the first 250 calls of the seeded order
  cache_embed.py asv5 ulaw --per-source 12      # top up: each source's first 12 calls
  cache_embed.py asv5 ulaw --kind nonspeech --cap 3
  cache_embed.py asv5 ulaw --kind tts --cap 2   # after synth_tts.py
"""

from __future__ import annotations

import argparse
import hashlib
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from windows import CHECKPOINTS, add_paths, calls, checkpoint, tts_calls

from streamd.export.aasist import load_checkpoint, tile_to_length
from streamd.training.channels import ChannelMix, call_channel
from streamd.training.phone_data import (
    Call,
    augmented_channel,
    daemon_windows,
    load_call,
    phone_channel,
)

FIELDS = ("call", "end", "emb", "logit", "spec", "temp", "wav", "mid")
MID_BLOCKS = (
    4  # "mid": the encoder map after this many residual blocks (float16), for fine-tuning the rest
)


def call_list(kind: str, shared: Path, cache: Path) -> tuple[list[Call], dict[int, np.ndarray]]:
    """The calls of ``kind``, and the audio of those that are synthesized in memory."""
    if kind == "shared":
        return calls(shared), {}
    if kind == "tts":
        return tts_calls(cache), {}
    from tests.helpers.call_signals import signals  # needs the repo root on PYTHONPATH

    sig = signals(60.0)
    cs = [Call("ns:" + k, (), "real", k, "nonspeech", k) for k in sig]
    return cs, dict(enumerate(sig.values()))


def top_up_order(cs: list[Call], order: np.ndarray, per_source: int, done: set[int]) -> np.ndarray:
    """Each source's first ``per_source`` calls of the seeded order not cached yet, round robin
    over sources (every source's k-th call before any (k+1)-th), so a partial run is balanced."""
    cnt: Counter[str] = Counter()
    rank = {}
    for ci in order.tolist():
        rank[ci] = cnt[cs[ci].source]
        cnt[cs[ci].source] += 1
    pos = {c: i for i, c in enumerate(order.tolist())}
    todo = [c for c in order.tolist() if rank[c] < per_source and c not in done]
    return np.array(sorted(todo, key=lambda c: (rank[c], pos[c])), dtype=int)


def encode_to(model: torch.nn.Module, x: torch.Tensor, blocks: int) -> torch.Tensor:
    """The encoder map after the sinc front end and the first ``blocks`` residual blocks."""
    import torch.nn.functional as F

    h = F.max_pool2d(model.conv_time(x).abs().unsqueeze(1), kernel_size=(3, 3))
    h = F.selu(model.first_bn(h)).contiguous(memory_format=torch.channels_last)
    out: torch.Tensor = model.encoder[:blocks](h)
    return out


@torch.inference_mode()
def run(a: argparse.Namespace) -> None:
    torch.set_num_threads(a.threads)
    model = load_checkpoint(checkpoint(a.shared, a.model)).eval()
    cs, in_memory = call_list(a.kind, a.shared, a.cache)
    order = np.random.default_rng(0).permutation(len(cs))
    if a.limit:
        order = order[: a.limit]
    out = a.cache / (f"{a.model}-{a.channel}" + ("" if a.kind == "shared" else f"-{a.kind}"))
    out.mkdir(parents=True, exist_ok=True)
    if a.per_source:
        done: set[int] = set()
        for f in out.glob("shard*.npz"):
            done |= set(np.load(f)["call"].tolist())
        order = top_up_order(cs, order, a.per_source, done)
        print(len(order), "calls to top up", flush=True)
    rng = np.random.default_rng(1)
    buf: dict[str, list[object]] = {k: [] for k in FIELDS}
    t0, nwin = time.time(), 0
    for j, ci in enumerate(order.tolist()):
        name = f"{a.prefix}{j // 50:02d}.npz" if a.per_source else f"shard{j // 50:03d}.npz"
        if (out / name).exists():
            continue
        audio = in_memory[ci] if ci in in_memory else load_call(cs[ci])
        if a.kind != "nonspeech":  # the non-speech signals are already through G.711
            if a.channel == "codecs":  # seeded per call exactly as the recipe's copy 0
                seed = [0, int(hashlib.sha1(cs[ci].id.encode()).hexdigest()[:8], 16)]
                audio = call_channel(audio, np.random.default_rng(seed), ChannelMix()).audio
            elif a.channel == "aug":
                audio = augmented_channel(audio, rng)
            else:
                audio = phone_channel(audio)
        sel = list(daemon_windows(audio))[:: a.stride][: a.cap]
        for end, w in sel:  # batch 1 is fastest per window on CPU
            x = tile_to_length(torch.from_numpy(w).unsqueeze(0), 64600)
            mid = encode_to(model, x, MID_BLOCKS)
            spec, temp = model.graph_nodes(model.encoder[MID_BLOCKS:](mid))
            emb = model.graph_embed(spec, temp)
            wav = np.zeros(64000, dtype=np.float16)
            wav[: len(w)] = w[:64000]
            row = (ci, end, emb[0].numpy(), model.out_layer(emb)[0].numpy())
            row += (spec[0].numpy().astype(np.float16), temp[0].numpy().astype(np.float16), wav)
            row += (mid[0].numpy().astype(np.float16),)
            for k, v in zip(FIELDS, row, strict=True):
                buf[k].append(v)
        nwin += len(sel)
        if (j + 1) % 50 == 0 or j == len(order) - 1:
            np.savez(out / name, **{k: np.array(v) for k, v in buf.items()})
            buf = {k: [] for k in FIELDS}
            el = time.time() - t0
            print(
                f"{j + 1}/{len(order)} calls, {nwin} windows, {el:.0f}s, "
                f"{el / max(nwin, 1):.2f}s/window",
                flush=True,
            )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("model", choices=sorted(CHECKPOINTS), help="published checkpoint")
    ap.add_argument(
        "channel",
        choices=["ulaw", "aug", "codecs"],
        help="G.711 mu-law, a random phone line, or a random call path (codecs, room, RawBoost)",
    )
    ap.add_argument("--kind", choices=["shared", "tts", "nonspeech"], default="shared")
    ap.add_argument("--stride", type=int, default=1, help="keep every STRIDE-th window")
    ap.add_argument("--cap", type=int, default=6, help="windows per call (default: %(default)s)")
    ap.add_argument("--limit", type=int, default=0, help="first LIMIT calls of the order (0: all)")
    ap.add_argument("--per-source", type=int, default=0, help="top up to N calls per source")
    ap.add_argument("--prefix", default="shard6", help="shard name prefix of a top-up run")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default: %(default)s)")
    add_paths(ap)
    run(ap.parse_args())


if __name__ == "__main__":
    main()
