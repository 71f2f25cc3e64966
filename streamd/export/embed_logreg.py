"""Family ``w2v2-embed-logreg``: mean-pooled wav2vec2 embeddings + scikit-learn scaler +
LogisticRegression.

The card computes ``Wav2Vec2Model(...).last_hidden_state.mean(1)`` (768-d for
``facebook/wav2vec2-base-960h``) and pickles a fitted ``StandardScaler`` and
``LogisticRegression``. Both are affine, so they fold into one Gemm at the end of the graph:
W' = coef / scale, b' = intercept - coef @ (mean / scale).

``--from DIR`` is a folder holding the backbone as saved by ``save_pretrained`` (in DIR itself or
in DIR/backbone), ``classifier.pkl`` (a LogisticRegression, or a Pipeline of StandardScaler and
LogisticRegression) and optionally ``scaler.pkl``; ``.joblib`` works too. Unpickling runs
whatever code the file carries, so nothing is unpickled without ``--trust-pickle``.

Two classes: one output, the fake class's decision function, with a sigmoid (scikit-learn's own
binary probability). More classes: log-probabilities with a softmax, ``fake_index`` the list of
classes that mean fake, so p_fake is their summed probability.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamd.errors import ModelError, UsageError
from streamd.export.common import (
    CARD_LICENSE,
    FAKE_LABEL,
    SR,
    PooledLinear,
    hf_config,
    load_or_fail,
    preprocessor_config,
    wav2vec2_extractor,
)
from streamd.export.export import ExportPlan
from streamd.export.hf import from_pretrained
from streamd.model.manifest import WindowSpec

FAMILY = "w2v2-embed-logreg"
BACKBONES = (
    "Wav2Vec2ForCTC",
    "Wav2Vec2Model",
    "Wav2Vec2ForPreTraining",
    "Wav2Vec2ForSequenceClassification",
)
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")


def find(folder: Path, stem: str) -> Path | None:
    return next(
        (folder / f"{stem}{s}" for s in PICKLE_SUFFIXES if (folder / f"{stem}{s}").exists()), None
    )


def unpickle(path: Path, trust: bool) -> Any:
    if not trust:
        raise UsageError(
            f"{path} is a pickle: loading it runs any code the file "
            "contains. If you trust where it came from, pass --trust-pickle"
        )
    import joblib

    return load_or_fail(str(path), lambda: joblib.load(path))


def split_classifier(obj: Any, scaler: Any, origin: str) -> tuple[Any, Any]:
    """(scaler or None, LogisticRegression) from a bare estimator or a two-step Pipeline."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    if isinstance(obj, Pipeline):
        steps = [s for _, s in obj.steps if s not in (None, "passthrough")]
        if (
            scaler is not None
            or not 1 <= len(steps) <= 2
            or (len(steps) == 2 and not isinstance(steps[0], StandardScaler))
        ):
            raise UsageError(
                f"{origin}: a Pipeline must be [StandardScaler,] "
                "LogisticRegression (and no separate scaler file)"
            )
        scaler, obj = (steps[0] if len(steps) == 2 else None), steps[-1]
    if not isinstance(obj, LogisticRegression):
        raise UsageError(f"{origin}: expected a LogisticRegression, found {type(obj).__name__}")
    if scaler is not None and not isinstance(scaler, StandardScaler):
        raise UsageError(f"{origin}: expected a StandardScaler, found {type(scaler).__name__}")
    if getattr(obj, "multi_class", "auto") == "ovr" and len(obj.classes_) > 2:
        raise UsageError(
            f"{origin}: one-vs-rest LogisticRegression is not "
            "supported (its probabilities are not a softmax)"
        )
    return scaler, obj


def fold(scaler: Any, clf: Any) -> tuple[np.ndarray, np.ndarray]:
    """Scaler then classifier as one affine map (W [K, D], b [K]) in float64."""
    coef = np.asarray(clf.coef_, dtype=np.float64)
    bias = np.asarray(clf.intercept_, dtype=np.float64).reshape(-1)
    if scaler is None:
        return coef, bias
    dim = coef.shape[1]
    mean = np.asarray(scaler.mean_ if scaler.with_mean else np.zeros(dim), dtype=np.float64)
    scale = np.asarray(
        scaler.scale_ if scaler.with_std and scaler.scale_ is not None else np.ones(dim),
        dtype=np.float64,
    )
    w = coef / scale
    return w, bias - w @ mean


def fake_classes_of(
    classes: list[str],
    fake_classes: list[str] | None,
    fake_index: int | list[int] | None,
    origin: str,
) -> list[int]:
    if fake_classes:
        missing = [c for c in fake_classes if c not in classes]
        if missing:
            raise UsageError(f"--fake-classes {missing} are not classifier classes {classes}")
        idx = [classes.index(c) for c in fake_classes]
    elif fake_index is not None:
        idx = fake_index if isinstance(fake_index, list) else [fake_index]
        if any(not 0 <= i < len(classes) for i in idx):
            raise UsageError(f"--fake-index {fake_index} is outside the classes {classes}")
    else:
        idx = [i for i, c in enumerate(classes) if FAKE_LABEL.search(c)]
        if not idx:
            raise UsageError(
                f"{origin}: no classifier class says fake (classes are "
                f"{classes}); name them with --fake-classes A,B"
            )
    if len(set(idx)) == len(classes):
        raise UsageError(
            f"{origin}: every class {classes} is marked fake; p_fake would always be 1"
        )
    return sorted(set(idx))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_plan(
    source: Path,
    fake_index: int | list[int] | None = None,
    fake_classes: list[str] | None = None,
    trust_pickle: bool = False,
    window_min_s: float = 2.5,
    window_max_s: float = 4.0,
    source_url: str | None = None,
    license: str | None = None,
    expected_pickle_sha256: dict[str, str] | None = None,
    **_: Any,
) -> ExportPlan:
    if not source.is_dir():
        raise UsageError(
            f"{source}: family {FAMILY} needs a folder with the backbone and classifier.pkl"
        )
    backbone_dir = source if (source / "config.json").exists() else source / "backbone"
    hf_config(backbone_dir, BACKBONES, FAMILY)
    clf_path, scaler_path = find(source, "classifier"), find(source, "scaler")
    if clf_path is None:
        raise UsageError(f"{source}: no classifier.pkl (or .joblib) next to the backbone")
    hashes = {
        p.name: sha256(p) for p in (clf_path, scaler_path) if p is not None
    }  # before unpickling
    if expected_pickle_sha256 is not None and hashes != expected_pickle_sha256:
        raise ModelError(
            f"{source}: the pickles changed since export (sha256 "
            f"{hashes} != {expected_pickle_sha256}); not unpickled"
        )
    scaler = unpickle(scaler_path, trust_pickle) if scaler_path else None
    scaler, clf = split_classifier(unpickle(clf_path, trust_pickle), scaler, str(clf_path))
    classes = [str(c) for c in clf.classes_]
    fake = fake_classes_of(classes, fake_classes, fake_index, str(clf_path))
    weight, bias = fold(scaler, clf)
    from transformers import Wav2Vec2Model

    backbone = from_pretrained(Wav2Vec2Model, backbone_dir, attn_implementation="eager")
    if weight.shape[1] != backbone.config.hidden_size:
        raise UsageError(
            f"{clf_path}: classifier takes {weight.shape[1]} features, "
            f"the backbone gives {backbone.config.hidden_size}"
        )
    normalize = bool(preprocessor_config(backbone_dir).get("do_normalize", False))
    binary = len(classes) == 2
    if binary:  # one logit oriented towards the fake class; scikit-learn's score is for classes_[1]
        sign = 1.0 if fake == [1] else -1.0
        weight, bias = sign * weight, sign * bias
        labels, activation = [classes[fake[0]]], "sigmoid"
        fidx: int | list[int] = 0
    else:
        labels, fidx, activation = classes, (fake[0] if len(fake) == 1 else fake), "softmax"
    module = PooledLinear(
        backbone, weight, bias, normalize=normalize, log_softmax=not binary
    ).eval()
    return ExportPlan(
        module=module,
        family=FAMILY,
        labels=labels,
        fake_index=fidx,
        window=WindowSpec(min_s=window_min_s, max_s=window_max_s, pad="zero"),
        source=source_url or str(source),
        license=license or CARD_LICENSE,
        activation=activation,
        reference=reference_pipeline(backbone_dir, backbone, scaler, clf, fake, binary),
        extra={
            "classes": classes,
            "fake_classes": [classes[i] for i in fake],
            "normalize": "zero_mean_unit_var" if normalize else "none",
            "pooling": "mean over frames of last_hidden_state",
            "pickle_sha256": hashes,
        },
    )


def reference_pipeline(
    folder: Path, backbone: Any, scaler: Any, clf: Any, fake: list[int], binary: bool
) -> Any:
    """The card's code: feature extractor, embeddings, scaler.transform, then scikit-learn's score.

    ``predict_proba`` is expit (binary) or softmax (multi-class) of ``decision_function``; taking
    the score itself keeps the comparison exact where probabilities round to 0 or 1.
    """
    from scipy.special import log_softmax

    fe = wav2vec2_extractor(folder, do_normalize=False)

    def run(batch: np.ndarray) -> np.ndarray:
        feats = fe(list(batch), sampling_rate=SR, return_tensors="pt")
        with torch.inference_mode():
            emb = (
                backbone(input_values=feats["input_values"])
                .last_hidden_state.mean(dim=1)
                .numpy()
                .astype(np.float64)
            )
        score = clf.decision_function(scaler.transform(emb) if scaler is not None else emb)
        if binary:
            return np.asarray(score if fake == [1] else -score)[:, None]
        return np.asarray(log_softmax(score, axis=1))

    return run
