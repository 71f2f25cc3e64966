"""Frozen-encoder readouts of the daemon's windows of each call, cached per call (resumable).

Why cache: the encoder is frozen, so its 160-dim readout per window is computed once (the only
expensive step: ~0.3 s per window on 2 CPU cores) and every head, fold and threshold after it
costs seconds. Each call's windows are saved in their own file, so an
interrupted run resumes at the call it stopped on.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from streamd.training.phone_data import (
    Call,
    augmented_channel,
    daemon_windows,
    load_call,
    phone_channel,
)

if TYPE_CHECKING:
    from streamd.training.channels import ChannelMix

log = logging.getLogger("streamd.train")
WINDOW = 64600


def select_calls(
    calls: Sequence[Call], per_source: int | None, seed: int = 0, first: int = 0
) -> list[int]:
    """Indices of the calls to use, in a seeded order: the first ``first`` calls of that order
    (a random sample), plus each source's first ``per_source`` calls (so small sources count);
    ``per_source=None`` takes every call."""
    order = np.random.default_rng(seed).permutation(len(calls))
    seen: dict[str, int] = {}
    out = []
    for pos, ci in enumerate(order.tolist()):
        src = calls[ci].source
        rank = seen.get(src, 0)
        seen[src] = rank + 1
        if per_source is None or pos < first or rank < per_source:
            out.append(ci)
    return out


def cache_key(encoder_sha: str, channel: str, per_call: int) -> str:
    return hashlib.sha256(f"{encoder_sha}|{channel}|{per_call}".encode()).hexdigest()[:16]


def call_file(cache_dir: Path, call: Call) -> Path:
    return cache_dir / f"{hashlib.sha1(call.id.encode()).hexdigest()}.npz"


def embed_calls(
    calls: Sequence[Call],
    chosen: Sequence[int],
    encoder: object,
    cache_dir: Path,
    channel: str = "ulaw",
    per_call: int = 6,
    seed: int = 0,
    say: Callable[[str], None] = print,
    audio_of: Callable[[Call], np.ndarray] = load_call,
    mix: ChannelMix | None = None,
) -> dict[str, np.ndarray]:
    """``{"call", "end", "emb", "logit"}`` over the first ``per_call`` windows of each chosen
    call; ``call`` indexes ``calls``. One cache file per call, so any interruption resumes.

    ``channel``: ``ulaw`` (8 kHz G.711 mu-law), ``aug`` (random phone line, seeded per call),
    ``codecs`` (a random call path under ``mix``, seeded per call: ``training.channels``), or
    ``none`` (already a phone signal).
    """
    import torch

    from streamd.export.aasist import tile_to_length

    cache_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    todo = [ci for ci in chosen if not call_file(cache_dir, calls[ci]).exists()]
    if todo:
        say(f"  {len(todo)} of {len(chosen)} calls to embed (the rest are cached in {cache_dir})")
    else:
        say(f"  all {len(chosen)} calls are cached in {cache_dir}: nothing to embed")
    for n, ci in enumerate(todo):
        call = calls[ci]
        audio = audio_of(call)
        if channel == "ulaw":
            audio = phone_channel(audio)
        elif channel in ("aug", "codecs"):
            rng = np.random.default_rng(
                [seed, int(hashlib.sha1(call.id.encode()).hexdigest()[:8], 16)]
            )
            if channel == "aug":
                audio = augmented_channel(audio, rng)
            else:
                from streamd.training.channels import call_channel

                audio = call_channel(audio, rng, mix).audio
        ends, embs, logits = [], [], []
        for k, (end, w) in enumerate(daemon_windows(audio)):
            if k >= per_call:
                break
            with torch.inference_mode():
                x = tile_to_length(torch.from_numpy(np.ascontiguousarray(w)).unsqueeze(0), WINDOW)
                emb = encoder.embed(x)  # type: ignore[attr-defined]
                logit = encoder.out_layer(emb)  # type: ignore[attr-defined]
            ends.append(float(end))
            embs.append(emb[0].numpy())
            logits.append(logit[0].numpy())
        save_call(
            cache_dir, call, np.asarray(ends), np.asarray(embs), np.asarray(logits), _dim(encoder)
        )
        if (n + 1) % 25 == 0 or n + 1 == len(todo):
            say(f"  embedded {n + 1}/{len(todo)} calls ({time.perf_counter() - t0:.0f} s)")
    return load_calls(cache_dir, calls, chosen, per_call)


def save_call(
    cache_dir: Path, call: Call, end: np.ndarray, emb: np.ndarray, logit: np.ndarray, dim: int
) -> None:
    path = call_file(cache_dir, call)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        end=end.astype(np.float64),
        emb=emb.astype(np.float32).reshape(-1, dim),
        logit=logit.astype(np.float32).reshape(-1, 2),
    )
    tmp.replace(path)


def load_calls(
    cache_dir: Path, calls: Sequence[Call], chosen: Sequence[int], per_call: int
) -> dict[str, np.ndarray]:
    parts: dict[str, list[np.ndarray]] = {"call": [], "end": [], "emb": [], "logit": []}
    for ci in chosen:
        z = np.load(call_file(cache_dir, calls[ci]))
        n = min(per_call, len(z["end"]))
        parts["call"].append(np.full(n, ci, dtype=np.int64))
        for k in ("end", "emb", "logit"):
            parts[k].append(z[k][:n])
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}


def _dim(encoder: object) -> int:
    return 5 * int(encoder.config.gat_dims[1])  # type: ignore[attr-defined]


def load_shards(cache_dir: Path, per_call: int | None = None) -> dict[str, np.ndarray]:
    """Research shards (call, end, emb, logit); ``per_call`` keeps each call's first windows."""
    files = sorted(cache_dir.glob("shard*.npz"))
    parts = [np.load(f) for f in files]
    d = {k: np.concatenate([p[k] for p in parts]) for k in ("call", "end", "emb", "logit")}
    if per_call is not None:
        seen: dict[int, int] = {}
        keep = np.zeros(len(d["call"]), bool)
        for i, c in enumerate(d["call"].tolist()):
            seen[c] = seen.get(c, 0) + 1
            keep[i] = seen[c] <= per_call
        d = {k: v[keep] for k, v in d.items()}
    return d
