"""``streamd train`` on a handful of ../shared clips: the loss falls, the model exports and scores,
the same seed gives the same weights, an interrupted run resumes exactly, LOGO runs per system."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from streamd.errors import UsageError  # noqa: E402
from streamd.offline.datasets import load_labeled  # noqa: E402
from streamd.training import trainer  # noqa: E402
from streamd.training.data import WindowRules, class_weights, conditions, split_by_group  # noqa: E402
from streamd.training.features import AasistAdapter, FeatureRecipe, build_table  # noqa: E402
from streamd.training.report import format_logo  # noqa: E402
from streamd.training.trainer import TrainOptions, predict  # noqa: E402

torch.set_num_threads(2)

# two LibriSpeech speakers and spoken digits (real), four Gemini voices and LJSpeech MelGAN (fake)
SUBSET = [
    "resemble-ai__Resemblyzer/audio_data/librispeech_test-other/1688/1688-142285-0002.flac",
    "resemble-ai__Resemblyzer/audio_data/librispeech_test-other/1688/1688-142285-0009.flac",
    "resemble-ai__Resemblyzer/audio_data/librispeech_test-other/2414/2414-128291-0009.flac",
    "resemble-ai__Resemblyzer/audio_data/librispeech_test-other/2414/2414-128291-0003.flac",
    "Jakobovski__free-spoken-digit-dataset/recordings/0_george_0.wav",
    "Jakobovski__free-spoken-digit-dataset/recordings/2_george_0.wav",
    "confianza-hys__asterisk-sounds/samples/Alnilam.flac",
    "confianza-hys__asterisk-sounds/samples/Orus.flac",
    "confianza-hys__asterisk-sounds/samples/Puck.flac",
    "confianza-hys__asterisk-sounds/samples/Gacrux.flac",
    "MarkHershey__AudioDeepFakeDetection/samples/anomalies/LJ045-0047_gen.flac",
    "MarkHershey__AudioDeepFakeDetection/samples/LJ046-0243_gen.flac",
]
VAL_FRACTION = 0.4


@pytest.fixture(scope="module")
def setup(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    pth = shared_dir / "models" / "aasist" / "AASIST-L.pth"
    if not pth.exists():
        pytest.skip(f"{pth} is absent")
    root = tmp_path_factory.mktemp("train")
    with open(shared_dir / "data" / "manifest.csv", newline="") as f:
        rows = {r["path"]: r for r in csv.DictReader(f)}
    subset = root / "subset.csv"
    with open(subset, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "label", "system", "speaker", "source"])
        w.writeheader()
        for p in SUBSET:
            r = rows[p]
            w.writerow(
                {
                    "path": str(shared_dir / "data" / p),
                    "label": r["label"],
                    "system": r["system"],
                    "speaker": r["speaker"],
                    "source": p.split("/")[0],
                }
            )
    clips = load_labeled([str(subset)])
    recipe = FeatureRecipe(WindowRules(), tuple(conditions(1)), max_windows=1, seed=0)
    cache = root / "cache"
    table = build_table(clips, AasistAdapter(pth, "graph"), recipe, cache, show_progress=False)
    split = split_by_group(clips, "speaker", VAL_FRACTION, 0)
    return {
        "pth": pth,
        "root": root,
        "csv": subset,
        "clips": clips,
        "recipe": recipe,
        "cache": cache,
        "table": table,
        "train": np.flatnonzero(np.isin(table.clip, split.train)),
        "val": np.flatnonzero(np.isin(table.clip, split.val)),
        "split": split,
    }


def weighted_loss(adapter: AasistAdapter, s: dict[str, Any]) -> float:
    """The training objective on every training row, in eval mode (no dropout)."""
    rows, table = s["train"], s["table"]
    p = predict(adapter, table, rows)
    w = class_weights(table.label[rows])
    y = table.label[rows]
    ll = np.where(y == 1, np.log(p + 1e-12), np.log(1 - p + 1e-12))
    return float(-(w[y] * ll).sum() / w[y].sum())


def fresh(s: dict[str, Any], setting: str = "graph") -> AasistAdapter:
    return AasistAdapter(s["pth"], setting)


@pytest.mark.slow
def test_features_cover_every_clip_and_condition(setup: dict[str, Any]) -> None:
    t = setup["table"]
    assert set(t.conditions) == {"clean", "g711", "aug1"} and not t.skipped
    assert {(int(c), int(k)) for c, k in zip(t.clip, t.cond, strict=True)} == {
        (c, k) for c in range(12) for k in range(3)
    }
    assert t.feats["spectral"].shape[1:] == (23, 24) and t.feats["temporal"].shape[1:] == (29, 24)
    # a second build reads the cache: the same arrays
    adapter = fresh(setup)
    again = build_table(
        setup["clips"][:1], adapter, setup["recipe"], setup["cache"], show_progress=False
    )
    np.testing.assert_array_equal(again.feats["spectral"], t.feats["spectral"][t.clip == 0])
    # the head on cached features gives the full model's logits on that window (what gets exported)
    from streamd.export.aasist import AasistForExport
    from streamd.pipeline.audio import load_audio
    from streamd.training.data import training_windows

    (window,) = training_windows(load_audio(setup["clips"][0].path), WindowRules(), 1)
    row = np.flatnonzero((t.clip == 0) & (t.cond == 0))
    adapter.head.eval()
    with torch.inference_mode():
        full = AasistForExport(adapter.model).eval()(torch.from_numpy(window)[None])
        cached = adapter.head(**t.batch(row, "cpu"))
    np.testing.assert_allclose(cached.numpy(), full.numpy(), atol=1e-4)


@pytest.mark.parametrize("setting", ["head", "graph"])
@pytest.mark.slow
def test_training_lowers_the_loss(setup: dict[str, Any], setting: str, tmp_path: Path) -> None:
    adapter = fresh(setup, setting)
    table = build_table(
        setup["clips"], adapter, setup["recipe"], setup["cache"], show_progress=False
    )
    s = {**setup, "table": table}
    before = weighted_loss(adapter, s)
    trainer.train(
        adapter,
        table,
        setup["train"],
        setup["val"],
        TrainOptions(
            setting=setting,
            epochs=6,
            lr=1e-3 if setting == "graph" else 1e-2,
            patience=10,
            batch_size=4,
        ),
        checkpoint=tmp_path / "ck.pt",
        show_progress=False,
    )
    adapter.head.load_state_dict(
        torch.load(tmp_path / "ck.pt", weights_only=False)["state"]
    )  # the last epoch's weights
    after = weighted_loss(adapter, s)
    assert after < 0.9 * before, (before, after)


@pytest.mark.slow
def test_same_seed_same_weights_and_resume(
    setup: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opts = TrainOptions(setting="graph", epochs=2, batch_size=8, patience=10, seed=3)
    args = (setup["table"], setup["train"], setup["val"], opts)
    a, b = fresh(setup), fresh(setup)
    ra = trainer.train(a, *args, checkpoint=tmp_path / "a.pt", show_progress=False)
    trainer.train(b, *args, show_progress=False)
    for k, v in a.head.state_dict().items():
        assert torch.equal(v, b.head.state_dict()[k]), k
    last_a = torch.load(tmp_path / "a.pt", weights_only=False)["state"]

    # interrupted right after epoch 1's checkpoint, then resumed
    real_save, calls = trainer._save, []

    def crash_after_first(path: Path, obj: dict[str, Any]) -> None:
        real_save(path, obj)
        calls.append(obj["epoch"])
        if len(calls) == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "_save", crash_after_first)
    with pytest.raises(KeyboardInterrupt):
        trainer.train(fresh(setup), *args, checkpoint=tmp_path / "c.pt", show_progress=False)
    c = fresh(setup)
    rc = trainer.train(c, *args, checkpoint=tmp_path / "c.pt", resume=True, show_progress=False)
    assert calls == [1, 2] and [h["epoch"] for h in rc.history] == [1, 2]
    assert rc.best_epoch == ra.best_epoch and rc.history == ra.history
    last_c = torch.load(tmp_path / "c.pt", weights_only=False)["state"]
    for k, v in last_a.items():
        assert torch.equal(v, last_c[k]), k
    with pytest.raises(UsageError, match="other options"):
        trainer.train(
            fresh(setup),
            setup["table"],
            setup["train"],
            setup["val"],
            TrainOptions(setting="graph", seed=4),
            checkpoint=tmp_path / "c.pt",
            resume=True,
            show_progress=False,
        )


def test_logo_holds_out_each_system(setup: dict[str, Any]) -> None:
    from streamd.training.logo import leave_one_generator_out

    adapter = fresh(setup, "head")
    table = build_table(
        setup["clips"], adapter, setup["recipe"], setup["cache"], show_progress=False
    )
    lines: list[str] = []
    out = leave_one_generator_out(
        adapter,
        table,
        setup["clips"],
        setup["split"],
        TrainOptions(setting="head", epochs=1),
        show_progress=False,
        say=lines.append,
    )
    systems = {c.system for c in setup["clips"] if c.label == "fake"}
    assert set(out["systems"]) == systems and len(lines) == len(systems)
    n_val_real = sum(setup["clips"][i].label == "real" for i in setup["split"].val)
    for name, v in out["systems"].items():
        n = sum(c.system == name for c in setup["clips"])
        assert (
            v["n_fake_clips"] == n
            and v["base"]["clean"]["n_fake"] == n
            and v["base"]["clean"]["n_real"] == n_val_real
        )
        if name.startswith(
            "Google"
        ):  # the only fake system in the training groups: nothing left to train on
            assert v["skipped"] == "no other fake system in the training groups"
        else:
            assert (
                v["adapted"]["clean"]["n_fake"] == n
                and v["adapted"]["g711"]["n_real"] == n_val_real
            )
    assert (
        "MelGAN" in format_logo({"logo": out})
        and "skipped" not in format_logo({"logo": out}).split("MelGAN")[1].split("\n")[0]
    )


def streamd(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamd", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.slow
def test_cli_trains_exports_and_scores(setup: dict[str, Any]) -> None:
    root = setup["root"]
    models = root / "models"
    r = streamd(
        "train",
        "--base",
        str(setup["pth"]),
        "--data",
        str(setup["csv"]),
        "--out",
        "adapted",
        "--train",
        "head",
        "--epochs",
        "2",
        "--max-windows",
        "1",
        "--val-fraction",
        str(VAL_FRACTION),
        "--cache-dir",
        str(setup["cache"]),
        "--models-dir",
        str(models),
        "--logo",
        "--device",
        "cpu",
    )
    assert r.returncode == 0, r.stderr + r.stdout
    assert "leave-one-generator-out" in r.stdout and "held-out validation" in r.stdout
    m = yaml.safe_load((models / "adapted.yaml").read_text())
    assert m["family"] == "aasist" and "AASIST-L" in m["source"] and "subset.csv" in m["source"]
    assert 0.0 <= m["threshold"] <= 1.0 and m["metrics"]["train"]["threshold"] == pytest.approx(
        m["threshold"], abs=1e-6
    )
    assert m["metrics"]["train"]["train"] == "head" and set(m["metrics"]["logo"]["systems"]) == {
        c.system for c in setup["clips"] if c.label == "fake"
    }
    assert Path(m["export_from"]).exists() and (models / ".train" / "adapted" / "val.csv").exists()
    clip = str(setup["clips"][0].path)
    s = streamd("score", clip, "--model", "adapted", "--models-dir", str(models))
    assert s.returncode == 0 and "verdict" in s.stdout, s.stderr
    e = streamd(
        "eval",
        str(setup["csv"]),
        "--limit",
        "1",
        "--model",
        "adapted",
        "--models-dir",
        str(models),
        "--logo",
        "--short-clips",
        "score",
    )
    assert e.returncode == 0 and "leave-one-generator-out" in e.stdout, e.stderr
    v = streamd("models", "verify", "adapted", "--models-dir", str(models))
    assert v.returncode == 0 and "OK" in v.stdout, v.stderr + v.stdout
    # an installed model can be the base: its manifest's export_from names the checkpoint
    from streamd.training.job import resolve_base

    base = resolve_base("adapted", str(models))
    assert base.checkpoint == Path(m["export_from"]) and base.family == "aasist"


def test_help_says_which_layers_each_setting_trains() -> None:
    r = streamd("train", "--help")
    assert r.returncode == 0
    for text in ("head", "graph", "all", "out_layer", "HS-GAL", "residual"):
        assert text in r.stdout


def test_bad_base_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("path,label\nx.wav,real\n")
    r = streamd(
        "train",
        "--base",
        "nope",
        "--data",
        str(tmp_path / "m.csv"),
        "--out",
        "x",
        "--models-dir",
        str(tmp_path),
    )
    assert r.returncode == 2 and "nope" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_wav2vec2_head_trains_and_exports(setup: dict[str, Any], tmp_path: Path) -> None:
    """The same trainer on a Wav2Vec2ForSequenceClassification folder (a tiny random one)."""
    pytest.importorskip("transformers")
    from streamd.export.export import export_plan
    from streamd.model.manifest import load_manifest
    from streamd.training.backbone import Wav2Vec2Adapter
    from streamd.training.features import make_adapter

    from tests.helpers.tinymodels import save_tiny_wav2vec2

    folder = save_tiny_wav2vec2(tmp_path / "w2v")
    with pytest.raises(UsageError, match="only --train head"):
        make_adapter("wav2vec2-seqcls", folder, "graph", "cpu")
    adapter = make_adapter("wav2vec2-seqcls", folder, "head", "cpu")
    assert isinstance(adapter, Wav2Vec2Adapter)  # _fit below is the family's own
    assert adapter.fake_index == 1 and adapter.trained_layers == "projector, classifier"
    table = build_table(
        setup["clips"], adapter, setup["recipe"], tmp_path / "cache", show_progress=False
    )
    # the cached pooled state through the head equals the whole model on the window
    from streamd.pipeline.audio import load_audio
    from streamd.training.data import training_windows

    (window,) = training_windows(load_audio(setup["clips"][0].path), WindowRules(), 1)
    plan0 = adapter.export_plan(tmp_path / "work0", "probe")
    with torch.inference_mode():
        full = plan0.module(torch.from_numpy(adapter._fit(window))[None])
        cached = adapter.head(
            **table.batch(np.flatnonzero((table.clip == 0) & (table.cond == 0)), "cpu")
        )
    np.testing.assert_allclose(cached.numpy(), full.numpy(), atol=1e-4)
    res = trainer.train(
        adapter,
        table,
        setup["train"],
        setup["val"],
        TrainOptions(setting="head", epochs=2),
        show_progress=False,
    )
    assert res.epochs_run == 2
    plan = adapter.export_plan(tmp_path / "work", "w2v-adapted")
    out = export_plan(plan, tmp_path / "models", "w2v-adapted", say=lambda _: None)
    m = load_manifest(out.manifest_path)
    assert m.family == "wav2vec2-seqcls" and m.fake_index == 1


@pytest.mark.slow
def test_all_setting_trains_the_encoder_too(setup: dict[str, Any]) -> None:
    """--train all (meant for a GPU) runs from the waveform and updates the encoder as well."""
    adapter = fresh(setup, "all")
    assert not adapter.disk_cache and "encoder" in adapter.trained_layers
    clips = setup["clips"][:2] + setup["clips"][6:8]  # two real, two fake: a few seconds of CPU
    table = build_table(clips, adapter, setup["recipe"], None, show_progress=False)
    assert table.feats["wave"].shape[1] == 64600
    before = adapter.model.get_parameter("encoder.0.0.conv1.weight").detach().clone()
    rows = np.arange(len(table))
    trainer.train(
        adapter,
        table,
        rows,
        rows,
        TrainOptions(setting="all", epochs=1, batch_size=4),
        show_progress=False,
    )
    assert not torch.equal(before, adapter.model.get_parameter("encoder.0.0.conv1.weight"))
