"""``streamd train --recipe FILE`` end to end, on a tiny data folder and a tiny random AASIST.

The data folder has the layout and manifest columns of ../shared/data: four sources, each with
real and fake speech-like calls; fakes carry a steady tone, a cue a head can learn from a frozen
random encoder. The recipe takes every call, picks the head's C per leave-one-source-out fold
from a grid, adds one random call path per call, and must write a model card and an ONNX model
that ranks held-out fakes above reals; a rerun must reuse the cache; bad recipes fail clearly.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("sklearn")

from scipy.signal import resample_poly  # noqa: E402

from streamd.cli import main  # noqa: E402

from tests.helpers.speechlike import speechlike  # noqa: E402
from tests.helpers.tinymodels import tiny_aasist  # noqa: E402

SR = 16000
COLUMNS = [
    "path",
    "label",
    "system",
    "speaker",
    "corpus",
    "source_repo",
    "source_commit",
    "source_path",
    "lossless_wav_to_flac",
    "license",
    "sample_rate",
    "channels",
    "codec",
    "duration_s",
    "bytes",
    "note",
]
# source folder -> (license as the manifest states it, file sample rate, fake generator)
SOURCES = {
    "alpha__corpus": ("CC-BY-4.0", 16000, "tone-tts-a"),
    "beta__demo": ("repo MIT; audio CC0", 16000, "tone-tts-a"),
    "gamma__phone": ("no license file", 8000, "tone-tts-b"),
    "delta__demo": ("no license stated", 22050, "tone-tts-b"),
}
PER_CLASS = 2  # calls per class and source
CLIP_S = 5.5  # two daemon windows: at 4 s, then one hop
TONE_HZ = 1800.0  # the fakes' cue, inside the telephone band
C_GRID = [0.01, 1.0]
# AASIST's structure at a width a 2-core CPU embeds in well under a second per 4 s window;
# strong temporal pooling keeps the graph attention small
RECIPE_AASIST: dict[str, Any] = {
    "nb_samp": 64600,
    "first_conv": 32,
    "filts": [20, [1, 4], [4, 4], [4, 8], [8, 8]],
    "gat_dims": [8, 8],
    "pool_ratios": [0.1, 0.1, 0.5, 0.5],
    "temperatures": [2.0, 2.0, 100.0, 100.0],
}
MIX = {"codecs": {"none": 1.0, "g722": 1.0}, "p_rawboost": 0.5, "p_reverb": 0.5}


def call_audio(fake: bool, seed: int, seconds: float = CLIP_S) -> np.ndarray:
    """16 kHz speech-like audio; a fake one has a steady tone under the voice."""
    x = speechlike(seconds, seed=seed, level=0.3).astype(np.float64)
    if fake:
        t = np.arange(len(x)) / SR
        x = x + 0.12 * np.sin(2 * np.pi * TONE_HZ * t + seed)
    out: np.ndarray = (0.4 * x / np.max(np.abs(x))).astype(np.float32)
    return out


def write_data(folder: Path) -> list[dict[str, Any]]:
    """The four sources as WAV files at their own rates, and manifest.csv in ../shared's format."""
    import soundfile as sf

    rows: list[dict[str, Any]] = []
    seed = 0
    for src, (lic, rate, generator) in SOURCES.items():
        for label in ("real", "fake"):
            for k in range(PER_CLASS):
                seed += 1
                rel = f"{src}/clips/{label}_{k}.wav"
                x = call_audio(label == "fake", seed)
                if rate != SR:
                    g = np.gcd(rate, SR)
                    x = resample_poly(x, rate // g, SR // g).astype(np.float32)
                path = folder / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, x, rate, subtype="PCM_16")
                rows.append(
                    {
                        "path": rel,
                        "label": label,
                        "system": "human" if label == "real" else generator,
                        "speaker": f"{src}-{k}",
                        "corpus": src,
                        "source_repo": src.replace("__", "/"),
                        "source_commit": "0" * 40,
                        "source_path": f"clips/{label}_{k}.wav",
                        "lossless_wav_to_flac": "no",
                        "license": lic,
                        "sample_rate": rate,
                        "channels": 1,
                        "codec": "pcm_s16le",
                        "duration_s": round(len(x) / rate, 3),
                        "bytes": path.stat().st_size,
                        "note": "",
                    }
                )
    with open(folder / "manifest.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    return rows


def write_checkpoint(folder: Path) -> tuple[Path, Path, str]:
    """A random-weight AASIST as a state-dict .pth with its .conf; returns (pth, conf, sha256)."""
    folder.mkdir(parents=True, exist_ok=True)
    pth, conf = folder / "tiny.pth", folder / "tiny.conf"
    torch.save(tiny_aasist(seed=3, config=RECIPE_AASIST).state_dict(), pth)
    conf.write_text(json.dumps({"model_config": RECIPE_AASIST}))
    return pth, conf, hashlib.sha256(pth.read_bytes()).hexdigest()


def write_recipe(root: Path, sha: str, **changes: Any) -> Path:
    """A recipe like configs/recipes/phone-aasist5-lr.yaml, paths relative to ``root``."""
    recipe: dict[str, Any] = {
        "name": "tiny-recipe",
        "seed": 0,
        "data": "data",
        "encoder": {
            "checkpoint": "enc/tiny.pth",
            "conf": "enc/tiny.conf",
            "sha256": sha,
            "source": "random weights made by the test",
            "license": "MIT",
        },
        "windows_per_call": 2,
        "calls_per_source": None,
        "tts": {"enabled": False},
        "head": {"type": "logistic", "C": C_GRID},
        "channels": {"copies": 1, "mix": MIX},
        "alerts": {"target_call_rate": 0.01},
        "out": "out/tiny-recipe",
        "cache": "cache",
    } | changes
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def train(root: Path, recipe: Path) -> tuple[int, str, str]:
    """``streamd train --recipe FILE`` as a user types it, from ``root``: (rc, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(["train", "--recipe", str(recipe.relative_to(root))])
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("recipe")
    rows = write_data(root / "data")
    _, _, sha = write_checkpoint(root / "enc")
    recipe = write_recipe(root, sha)
    out = root / "out" / "tiny-recipe"
    first = train(root, recipe)
    assert first[0] == 0, first
    first_manifest = yaml.safe_load((out / "manifest.yaml").read_text())
    second = train(root, recipe)
    assert second[0] == 0, second
    return {
        "root": root,
        "rows": rows,
        "sha": sha,
        "first": first[1],
        "second": second[1],
        "out": out,
        "first_manifest": first_manifest,
        "second_manifest": yaml.safe_load((out / "manifest.yaml").read_text()),
    }


@pytest.mark.slow
def test_writes_model_and_card(built: dict[str, Any]) -> None:
    out: Path = built["out"]
    assert (out / "model.onnx").is_file() and (out / "manifest.yaml").is_file()
    m = yaml.safe_load((out / "manifest.yaml").read_text())
    assert m["onnx"] == "model.onnx"
    assert m["sha256"] == hashlib.sha256((out / "model.onnx").read_bytes()).hexdigest()
    assert 0.0 < m["threshold"] <= 1.0
    card = m["card"]
    assert card["recipe"]["name"] == "tiny-recipe" and card["recipe"]["head"]["C"] == C_GRID
    assert card["recipe"]["calls_per_source"] is None
    assert card["encoder"]["sha256"] == built["sha"] and card["encoder"]["config"] == "tiny.conf"
    sources = {s["source"]: s for s in card["training_sources"]}
    assert set(sources) == set(SOURCES)
    for src, (lic, _, _) in SOURCES.items():
        assert sources[src]["license"] == lic
        assert (sources[src]["real"], sources[src]["fake"]) == (PER_CLASS, PER_CLASS)
    assert sources["gamma__phone"]["license_note"] == "no license file"
    assert sources["delta__demo"]["license_note"] == "no license stated"
    assert "license_note" not in sources["alpha__corpus"]

    head_c = m["metrics"]["head_C"]
    assert head_c["grid"] == C_GRID
    assert len(head_c["per_fold"]) == len(SOURCES)  # one nested choice per held-out source
    assert set(head_c["per_fold"]) <= set(C_GRID) and head_c["shipped"] in C_GRID

    loso = m["metrics"]["loso"]
    n_calls = len(SOURCES) * PER_CLASS
    assert (loso["real_calls"], loso["fake_calls"]) == (n_calls, n_calls)
    assert 0.0 <= loso["clip_eer"] <= 1.0 and 0.0 <= loso["auc"] <= 1.0
    per_source = m["metrics"]["loso_per_source"]
    assert set(per_source) == set(SOURCES)
    for fig in per_source.values():
        assert fig["real_calls"] == PER_CLASS and fig["fake_calls"] == PER_CLASS
        assert 0.0 <= fig["clip_eer"] <= 1.0 and 0.0 <= fig["auc"] <= 1.0
    # the tone is learnable: held-out sources are ranked better than chance
    assert loso["auc"] > 0.5, loso
    assert m["metrics"]["logo"]["generators"] == 2  # tone-tts-a and -b, 4 calls each
    # the card says what was trained on: this data folder, no Debian TTS
    assert m["metrics"]["protocol"].startswith("leave-one-source-out over data, 8 kHz G.711")


@pytest.mark.slow
def test_onnx_model_scores_fakes_higher(built: dict[str, Any]) -> None:
    """The exported graph, loaded as the daemon loads it (onnxruntime), on calls it never saw."""
    from streamd.model.session import Detector
    from streamd.training.phone_data import daemon_windows, phone_channel

    det = Detector.load(built["out"] / "manifest.yaml", providers=["cpu"])
    p: dict[bool, list[float]] = {}
    for fake in (False, True):
        for seed in (101, 102, 103):
            audio = phone_channel(call_audio(fake, seed))
            windows = [w for _, w in daemon_windows(audio)]
            assert windows, "the VAD passed no window of a speech-like call"
            scores, _ = det.score_windows(windows)
            p.setdefault(fake, []).extend(float(v) for v in scores)
    assert all(0.0 <= v <= 1.0 for v in p[False] + p[True])
    assert np.mean(p[True]) > np.mean(p[False]), p


@pytest.mark.slow
def test_channel_copies_add_training_windows(built: dict[str, Any]) -> None:
    from streamd.training.channels import ChannelMix
    from streamd.training.phone_embed import cache_key

    n_calls = 2 * PER_CLASS * len(SOURCES)
    first: str = built["first"]
    assert "call channels, copy 1/1" in first
    found = re.search(r"(\d+) more training windows through call channels", first)
    assert found, first
    # one cache file per call under the key of the recipe's mix, apart from the G.711 ones; a
    # quiet draw (level down to -20 dB) may leave the VAD fewer windows, never more than 2 a call
    key = cache_key(built["sha"], f"codecs:0:{ChannelMix.from_mapping(MIX)!r}", 2)  # seed 0
    g711 = cache_key(built["sha"], "ulaw", 2)
    for k in (key, g711):
        assert len(list((built["root"] / "cache" / k).glob("*.npz"))) == n_calls, k
    cached = sum(len(np.load(f)["end"]) for f in (built["root"] / "cache" / key).glob("*.npz"))
    assert n_calls <= int(found.group(1)) == cached <= 2 * n_calls


@pytest.mark.slow
def test_second_run_reuses_the_cache(built: dict[str, Any]) -> None:
    first, second = built["first"], built["second"]
    assert "16 of 16 calls to embed" in first and "nothing to embed" not in first
    assert "calls to embed" not in second and "embedded" not in second
    assert second.count("all 16 calls are cached") == 2  # the G.711 windows and the channel copy
    m1, m2 = dict(built["first_manifest"]["metrics"]), dict(built["second_manifest"]["metrics"])
    # the card says how much of each run's time was embedding
    assert m1.pop("training_run")["calls_embedded_in_this_run"] == 16
    assert m2.pop("training_run")["calls_embedded_in_this_run"] == 0
    # same windows, same seed: the same figures and threshold
    assert m1 == m2
    assert built["first_manifest"]["threshold"] == built["second_manifest"]["threshold"]


def test_wrong_sha256_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "manifest.csv").write_text(",".join(COLUMNS) + "\n")
    _, _, sha = write_checkpoint(tmp_path / "enc")
    rc, out, err = train(tmp_path, write_recipe(tmp_path, "0" * 64))
    assert rc == 2 and "[1/5]" not in out
    assert f"sha256 is {sha}, the recipe expects {'0' * 64}" in err, err
    assert not (tmp_path / "out").exists()


def test_missing_manifest_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    _, _, sha = write_checkpoint(tmp_path / "enc")
    rc, _, err = train(tmp_path, write_recipe(tmp_path, sha))
    assert rc == 2
    assert f"{tmp_path / 'data'}/manifest.csv not found" in err, err


def test_incomplete_recipe_names_what_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"name": "x", "data": "data", "encoder": {"checkpoint": "a"}}))
    rc, _, err = train(tmp_path, path)
    assert rc == 2
    assert "lacks out, encoder.sha256, encoder.source, encoder.license" in err, err
    rc, _, err = train(tmp_path, tmp_path / "absent.yaml")
    assert rc == 2 and "absent.yaml" in err and "unexpected" not in err, err


def test_bad_channel_mix_fails_before_any_work(tmp_path: Path) -> None:
    _, _, sha = write_checkpoint(tmp_path / "enc")
    recipe = write_recipe(tmp_path, sha, channels={"copies": 1, "mix": {"p_reverb": 2.0}})
    rc, _, err = train(tmp_path, recipe)
    assert rc == 2
    assert "channels.mix: ChannelMix.p_reverb must be a probability" in err, err


def test_bad_head_c_is_refused(tmp_path: Path) -> None:
    for c in ([], [0.1, 0.0], -1):
        rc, _, err = train(tmp_path, write_recipe(tmp_path, "0" * 64, head={"C": c}))
        assert rc == 2 and "head.C must be a positive number" in err, (c, err)


def test_channel_cache_depends_on_the_seed(tmp_path: Path) -> None:
    """Another seed draws other call paths, so it must not reuse the cached ones."""
    from streamd.training.channels import ChannelMix
    from streamd.training.recipe import Recipe, channel_cache_name

    mix = ChannelMix.from_mapping(MIX)
    names = set()
    for seed in (0, 1, 2):
        write_recipe(tmp_path, "0" * 64, seed=seed)
        recipe = Recipe.load(tmp_path / "recipe.yaml", tmp_path)
        names |= {channel_cache_name(recipe, k, mix) for k in (0, 1)}
    assert len(names) == 6
    assert f"codecs:0:{mix!r}" in names  # seed 0: the name earlier caches were written under


def test_help_explains_recipe(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "streamd train --recipe configs/recipes/phone-aasist5-lr.yaml" in text
    for words in ("sha256", "manifest.csv", "model.onnx + manifest.yaml", "resumes", "license"):
        assert words in text, words
