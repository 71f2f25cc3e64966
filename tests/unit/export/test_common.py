"""The opening every family shares: a bad folder, label set or --config file is one clear line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")

from streamd.errors import ModelError, UsageError
from streamd.export.common import open_hf_card, read_json_object

ARCH = ("Wav2Vec2ForSequenceClassification",)


def card(folder: Path, config: object) -> Path:
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_open_hf_card_reads_labels_fake_index_and_source(tmp_path: Path) -> None:
    config = {
        "architectures": list(ARCH),
        "id2label": {"0": "bonafide", "1": "spoof"},
        "_name_or_path": "someone/card",
    }
    c = open_hf_card(card(tmp_path / "c", config), ARCH, "wav2vec2-seqcls", None)
    assert c.labels == ["bonafide", "spoof"] and c.fake_index == 1
    assert c.source(None) == "someone/card" and c.source("https://x") == "https://x"
    assert open_hf_card(tmp_path / "c", ARCH, "f", 0).fake_index == 0  # --fake-index wins


def test_open_hf_card_refuses_clearly(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="expected a Hugging Face model folder"):
        open_hf_card(tmp_path, ARCH, "wav2vec2-seqcls", None)
    (card(tmp_path / "bad", {}) / "config.json").write_text("{not json")
    with pytest.raises(UsageError, match=r"config\.json: cannot read"):
        open_hf_card(tmp_path / "bad", ARCH, "wav2vec2-seqcls", None)
    other = card(tmp_path / "other", {"architectures": ["BertModel"]})
    with pytest.raises(UsageError, match="architecture BertModel; family wav2vec2-seqcls needs"):
        open_hf_card(other, ARCH, "wav2vec2-seqcls", None)
    unnamed = card(tmp_path / "unnamed", {"architectures": list(ARCH), "num_labels": 2})
    with pytest.raises(UsageError, match="--fake-index N"):
        open_hf_card(unnamed, ARCH, "wav2vec2-seqcls", None)
    with pytest.raises(UsageError, match="outside the labels"):
        open_hf_card(unnamed, ARCH, "wav2vec2-seqcls", 2)


def test_config_files_must_hold_an_object(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"crop_pct": 1.0}')
    assert read_json_object(path) == {"crop_pct": 1.0}
    path.write_text("[1, 2]")  # meanpool used to fail on this with a traceback
    with pytest.raises(UsageError, match="expected a JSON object"):
        read_json_object(path)
    path.write_text("{broken")
    with pytest.raises(ModelError, match=r"c\.json: cannot load \(") as info:
        read_json_object(path)
    assert "\n" not in str(info.value)
