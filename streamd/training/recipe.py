"""``streamd train --recipe FILE``: rebuild the built-in phone detector from ../shared/data.

Steps (each cached, so a rerun resumes): calls from the data manifest (+ Debian TTS fakes),
the daemon's windows after an 8 kHz G.711 channel, frozen ASVspoof 5 AASIST readouts, a
logistic head, leave-one-source-out figures with per-call alert simulation, the threshold for
the target share of real calls alerting (chosen on held-out-source scores), ONNX export checked
against PyTorch, and a manifest that is the model card.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from streamd.errors import UsageError
from streamd.training.phone_data import Call, shared_calls
from streamd.training.phone_head import (
    Windows,
    choose_c,
    ema_alert_stat,
    fit_logistic,
    leave_one_group_out,
    threshold_for_call_rate,
)
from streamd.training.phone_report import logo_figures, loso_figures

TTS_LICENSE = (
    "synthesized by the recipe with Debian's espeak-ng (GPL-3.0), flite (BSD-style) and "
    "festival + festvox-kallpc16k (X11-style); no third-party recordings"
)
REQUIRED = ("name", "data", "encoder", "out")
ENCODER_REQUIRED = ("checkpoint", "sha256", "source", "license")


@dataclass
class Recipe:
    name: str
    data: Path
    checkpoint: Path
    checkpoint_sha256: str
    checkpoint_source: str
    checkpoint_license: str
    out: Path
    cache: Path
    seed: int = 0
    per_call: int = 6
    calls_per_source: int | None = 12
    first_calls: int = 250
    tts_per_call: int = 2
    tts: bool = True
    c_grid: tuple[float, ...] = (0.1,)
    channel_copies: int = 0
    channel_mix: dict[str, Any] | None = None
    target_call_rate: float = 0.01
    checkpoint_conf: Path | None = None  # AASIST .conf when shapes match no published config
    raw: dict[str, Any] | None = None

    @classmethod
    def load(cls, path: Path, root: Path) -> Recipe:
        try:
            d = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise UsageError(f"recipe {path}: {exc}") from None
        missing = [k for k in REQUIRED if not isinstance(d, dict) or k not in d]
        missing += [
            f"encoder.{k}"
            for k in ENCODER_REQUIRED
            if isinstance(d, dict) and isinstance(d.get("encoder"), dict) and k not in d["encoder"]
        ]
        if missing:
            raise UsageError(f"recipe {path} lacks {', '.join(missing)}")
        mix = d.get("channels", {}).get("mix")
        if mix is not None:  # checked now, not after the hours of embedding before it is used
            from streamd.training.channels import ChannelMix

            try:
                ChannelMix.from_mapping(mix)
            except (ValueError, TypeError, AttributeError) as exc:
                raise UsageError(f"recipe {path}: channels.mix: {exc}") from None

        def p(v: str) -> Path:
            q = Path(v).expanduser()
            return q if q.is_absolute() else (root / q).resolve()

        enc, head = d["encoder"], d.get("head", {})
        cps = d.get("calls_per_source", 12)
        c_grid = tuple(float(v) for v in np.atleast_1d(head.get("C", 0.1)))
        if not c_grid or min(c_grid) <= 0:
            raise UsageError(f"recipe {path}: head.C must be a positive number or a list of them")
        return cls(
            name=d["name"],
            data=p(d["data"]),
            checkpoint=p(enc["checkpoint"]),
            checkpoint_sha256=enc["sha256"],
            checkpoint_source=enc["source"],
            checkpoint_license=enc["license"],
            out=p(d["out"]),
            cache=p(d.get("cache", ".cache/recipe")),
            seed=int(d.get("seed", 0)),
            per_call=int(d.get("windows_per_call", 6)),
            tts_per_call=int(d.get("tts", {}).get("windows_per_call", 2)),
            calls_per_source=None if cps is None else int(cps),
            first_calls=int(d.get("first_calls", 250)),
            tts=bool(d.get("tts", {}).get("enabled", True)),
            c_grid=c_grid,
            channel_copies=int(d.get("channels", {}).get("copies", 0)),
            channel_mix=d.get("channels", {}).get("mix"),
            target_call_rate=float(d.get("alerts", {}).get("target_call_rate", 0.01)),
            checkpoint_conf=p(enc["conf"]) if enc.get("conf") else None,
            raw=d,
        )


def _tts_calls(
    recipe: Recipe, say: Callable[[str], None]
) -> tuple[list[Call], dict[str, np.ndarray]]:
    from streamd.pipeline.audio import load_audio
    from streamd.training.debian_tts import available_engines, synthesize

    if not recipe.tts:
        say("  Debian TTS: disabled in the recipe")
        return [], {}
    if not available_engines():
        say(
            "  Debian TTS: none of espeak-ng, flite, festival installed (apt-get install espeak-ng "
            "flite festival festvox-kallpc16k); skipped, so the model will differ from the built-in"
        )
        return [], {}
    out = recipe.cache / "tts"
    rows = synthesize(out, seed=7)
    calls = [
        Call(
            "tts:" + str(r["path"]),
            (out / str(r["path"]),),
            "fake",
            str(r["system"]),
            "debian-tts",
            str(r["system"]),
            TTS_LICENSE,
        )
        for r in rows
    ]
    return calls, {c.id: load_audio(c.paths[0]) for c in calls}


def run_recipe(path: Path, root: Path | None = None, say: Callable[[str], None] = print) -> Path:
    """Build the model; returns the manifest path. Prints each step and the total time."""
    import torch

    from streamd.export.aasist import load_checkpoint
    from streamd.model.manifest import sha256_file

    t0 = time.perf_counter()
    torch.manual_seed(0)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    recipe = Recipe.load(path, root or Path.cwd())
    if not (recipe.data / "manifest.csv").exists():
        raise UsageError(
            f"{recipe.data}/manifest.csv not found: the recipe trains on ../shared/data"
        )
    if not recipe.checkpoint.exists():
        raise UsageError(f"{recipe.checkpoint}: encoder checkpoint not found")
    digest = sha256_file(recipe.checkpoint)
    if digest != recipe.checkpoint_sha256:
        raise UsageError(
            f"{recipe.checkpoint}: sha256 is {digest}, the recipe expects "
            f"{recipe.checkpoint_sha256} (a different checkpoint would build a different model)"
        )
    encoder = load_checkpoint(recipe.checkpoint, recipe.checkpoint_conf).eval()
    say(f"[1/5] calls from {recipe.data}")
    calls = shared_calls(recipe.data)
    tts, tts_audio = _tts_calls(recipe, say)
    say(f"  {len(calls)} calls from {recipe.data.name}, {len(tts)} synthesized TTS calls")
    say("[2/5] embedding the daemon's windows after 8 kHz G.711 (cached, resumable)")
    from streamd.training.phone_embed import cache_key, call_file, embed_calls, select_calls

    chosen = select_calls(calls, recipe.calls_per_source, recipe.seed, recipe.first_calls)
    key = cache_key(recipe.checkpoint_sha256, "ulaw", recipe.per_call)
    say(
        f"  every one of the {len(chosen)} calls"
        if recipe.calls_per_source is None
        else f"  {len(chosen)} calls: the first {recipe.first_calls} of a seeded order, plus "
        f"each source's first {recipe.calls_per_source}"
    )
    # the card's train_seconds covers this run only: record how much of it was cached
    embedded_now = sum(not call_file(recipe.cache / key, calls[ci]).exists() for ci in chosen)
    shared = embed_calls(
        calls, chosen, encoder, recipe.cache / key, "ulaw", recipe.per_call, recipe.seed, say
    )
    windows, all_calls = shared, list(calls)
    if tts:
        tw = embed_calls(
            tts,
            list(range(len(tts))),
            encoder,
            recipe.cache / key,
            "ulaw",
            recipe.tts_per_call,
            recipe.seed,
            say,
            audio_of=lambda c: tts_audio[c.id],
        )
        tw["call"] = tw["call"] + len(calls)
        windows = {k: np.concatenate([shared[k], tw[k]]) for k in shared}
        all_calls += tts
    w = Windows(
        x=windows["emb"].astype(np.float64),
        call=windows["call"],
        y=np.array([all_calls[c].is_fake for c in windows["call"]]),
        group=np.array([all_calls[c].source for c in windows["call"]]),
    )
    say(f"  {len(w.y)} windows ({int(w.y.sum())} fake)")
    w.extra = _channel_windows(recipe, calls, chosen, encoder, say)
    say("[3/5] leave-one-source-out: held-out scores and per-call figures")

    def fit_for(c: float) -> Any:
        return lambda x, y: fit_logistic(x, y, c, recipe.seed)

    chosen_c: dict[int, float] = {}

    def choose(train: np.ndarray) -> Any:
        # nested: each fold picks C by inner source folds of its own training sources
        c = choose_c(w, train, recipe.c_grid, fit_for)
        chosen_c[len(chosen_c)] = c
        return fit_for(c)

    p, fold_thresholds = leave_one_group_out(
        w, fit_for(recipe.c_grid[0]), recipe.target_call_rate, choose=choose
    )
    c_final = choose_c(w, np.ones(len(w.y), bool), recipe.c_grid, fit_for)
    fit = fit_for(c_final)
    if len(recipe.c_grid) > 1:
        say(f"  C per fold (inner source folds): {sorted(chosen_c.values())}; on all: {c_final}")
    real_stats = [
        ema_alert_stat(p[ix])
        for ix in w.calls_in(np.ones(len(w.y), bool)).values()
        if w.y[ix[0]] == 0
    ]
    threshold = threshold_for_call_rate(real_stats, recipe.target_call_rate)
    data = str((recipe.raw or {}).get("data", recipe.data)) + (" + debian-tts" if tts else "")
    figures = loso_figures(w, p, fold_thresholds, all_calls, shipped=threshold, data=data)
    figures["head_C"] = {"grid": list(recipe.c_grid), "per_fold": list(chosen_c.values())}
    figures["head_C"]["shipped"] = c_final
    figures["training_run"] = {
        "calls": len(chosen),
        "calls_embedded_in_this_run": embedded_now,
        "note": "train_seconds is this run's time; calls not embedded in it came from the cache",
    }
    say(
        f"  LOSO clip EER {figures['loso']['clip_eer']:.3f} AUC {figures['loso']['auc']:.3f}; "
        f"per-call false alarms {figures['loso']['call_false_alarm']:.3f}, detection "
        f"{figures['loso']['call_detection']:.3f} (fold thresholds)"
    )
    figures["logo"] = logo_figures(w, all_calls, fit, p, threshold)
    say(
        f"  leave-one-generator-out over {figures['logo']['generators']} "
        f"generators: mean clip EER {figures['logo']['mean_clip_eer']}, "
        f"mean detection {figures['logo']['mean_call_detection']}"
    )
    say(
        f"[4/5] head on all windows; threshold {threshold:.4f} for <= "
        f"{recipe.target_call_rate:.1%} of held-out real calls alerting"
    )
    head = fit(*w.train_set(np.ones(len(w.y), bool)))
    say("[5/5] export (ONNX checked against PyTorch) and model card")
    model_path = _export(recipe, encoder, head, threshold, figures, all_calls, t0)
    say(f"built {model_path} in {time.perf_counter() - t0:.0f} s")
    return model_path


def _channel_windows(
    recipe: Recipe, calls: list[Call], chosen: list[int], encoder: Any, say: Callable[[str], None]
) -> Windows | None:
    """``channels.copies`` more training windows of every chosen call, each copy through its own
    random call path (``training.channels.call_channel``, seeded per call and copy)."""
    if recipe.channel_copies <= 0:
        return None
    from streamd.training.channels import ChannelMix
    from streamd.training.phone_embed import cache_key, embed_calls

    mix = ChannelMix.from_mapping(recipe.channel_mix or {})
    parts = []
    for k in range(recipe.channel_copies):
        say(f"  call channels, copy {k + 1}/{recipe.channel_copies}: {mix}")
        key = cache_key(
            recipe.checkpoint_sha256, channel_cache_name(recipe, k, mix), recipe.per_call
        )
        parts.append(
            embed_calls(
                calls,
                chosen,
                encoder,
                recipe.cache / key,
                "codecs",
                recipe.per_call,
                recipe.seed * 1000 + k,
                say,
                mix=mix,
            )
        )
    d = {f: np.concatenate([q[f] for q in parts]) for f in parts[0]}
    say(f"  {len(d['call'])} more training windows through call channels")
    return Windows(
        d["emb"].astype(np.float64),
        d["call"],
        np.array([calls[c].is_fake for c in d["call"]]),
        np.array([calls[c].source for c in d["call"]]),
    )


def channel_cache_name(recipe: Recipe, copy: int, mix: Any) -> str:
    """What the cache of channel copy ``copy`` is keyed on: the mix and the seed that drew the
    paths (seed 0 keeps the name caches were first written under)."""
    seed = f":seed{recipe.seed}" if recipe.seed else ""
    return f"codecs:{copy}:{mix!r}{seed}"


def _sources(calls: list[Call]) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for c in calls:
        s = out.setdefault(
            c.source, {"source": c.source, "real": 0, "fake": 0, "license": c.license}
        )
        s[c.label] += 1
        if not s["license"]:
            s["license"] = c.license
    for s in out.values():
        lic = (s["license"] or "").lower()
        if "no license file" in lic:
            s["license_note"] = "no license file"
        elif "none stated" in lic or "no license stated" in lic:
            s["license_note"] = "no license stated"
    return list(out.values())


def _export(
    recipe: Recipe,
    encoder: Any,
    head: Any,
    threshold: float,
    figures: dict[str, Any],
    calls: list[Call],
    t0: float,
) -> Path:
    from streamd.export.aasist_head import export_with_head

    tmp = recipe.cache / "export"
    if tmp.exists():
        shutil.rmtree(tmp)
    card = {
        "recipe": recipe.raw,
        "encoder": {
            "checkpoint": recipe.checkpoint.name,
            "sha256": recipe.checkpoint_sha256,
            "source": recipe.checkpoint_source,
            "license": recipe.checkpoint_license,
            "config": recipe.checkpoint_conf.name if recipe.checkpoint_conf else "from shapes",
            "frozen": True,
        },
        "training_sources": _sources(calls),
        "train_seconds": round(time.perf_counter() - t0, 1),
        "alerts": {
            "method": "ema",
            "alpha": 0.5,
            "raise_after": 2,
            "target_call_false_alarm": recipe.target_call_rate,
        },
    }
    res = export_with_head(
        encoder,
        head,
        tmp,
        recipe.name,
        threshold,
        source=f"streamd recipe {recipe.name}: frozen {recipe.checkpoint_source} + logistic head",
        license=f"model: MIT (streamd); encoder: {recipe.checkpoint_license}; trained on data "
        "under the licenses in training_sources",
        metrics=figures,
        extra={"card": card},
    )
    recipe.out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(res.onnx_path, recipe.out / "model.onnx")
    data = yaml.safe_load(res.manifest_path.read_text(encoding="utf-8"))
    data["onnx"] = "model.onnx"
    (recipe.out / "manifest.yaml").write_text(
        yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100), encoding="utf-8"
    )
    (recipe.cache / "last_figures.json").write_text(json.dumps(figures, indent=1, default=str))
    return recipe.out / "manifest.yaml"


def write_sources_csv(calls: list[Call], path: Path) -> None:
    with open(path, "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["source", "real", "fake", "license"])
        for s in _sources(calls):
            wr.writerow([s["source"], s["real"], s["fake"], s["license"]])
