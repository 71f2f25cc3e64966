from __future__ import annotations

from pathlib import Path

import pytest

from streamd.config import load_config, parse_config
from streamd.errors import ConfigError


def test_empty_file_runs_on_defaults(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("")
    cfg = load_config(p, environ={})
    assert cfg.server.host == "127.0.0.1" and cfg.server.port == 8080
    assert cfg.windows.length_s == 4.0 and cfg.windows.min_s == 2.5 and cfg.windows.hop_s == 1.0
    assert cfg.model.providers == ["cuda", "cpu"] and cfg.alerts.raise_ is None


def test_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"windows\.hop_s"):
        parse_config({"windows": {"hop_s": -1}}, environ={})
    with pytest.raises(ConfigError, match=r"model\.colour: unknown key"):
        parse_config({"model": {"colour": "red"}}, environ={})
    with pytest.raises(ConfigError, match=r"sources\.sip\.allow_from"):
        parse_config({"sources": {"sip": {"allow_from": ["nonsense"]}}}, environ={})
    with pytest.raises(ConfigError, match=r"alerts.*clear"):
        parse_config({"alerts": {"raise": 0.5, "clear": 0.8}}, environ={})


def test_env_overrides_keys() -> None:
    cfg = parse_config(
        {}, environ={"STREAMD_MODEL__BATCH_MAX": "8", "STREAMD_SERVER__TOKENS": "[a, b]"}
    )
    assert cfg.model.batch_max == 8 and cfg.server.tokens == ["a", "b"]


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("model: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p, environ={})
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml", environ={})
    p.write_text("- a list")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(p, environ={})


def test_shipped_configs_are_valid() -> None:
    root = Path(__file__).resolve().parents[2] / "configs"
    files = sorted(root.glob("*.yaml"))
    assert files, "configs/ must ship at least default.yaml"
    for f in files:
        load_config(f, environ={})
