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
        {"model": {"batch_max": 4}, "store": {"path": "x.db"}},
        environ={
            "STREAMD_MODEL__BATCH_MAX": "8",
            "STREAMD_SERVER__TOKENS": "[a, b]",
            "STREAMD_VAD__FRAME_MS": "30",
            "STREAMD_ALERTS__RAISE": "0.7",
            "STREAMD_SOURCES__SIP__RTP_PORTS": "[40000, 40010]",
            "STREAMD_SOURCES__MIC__DEVICE": "3",
            "STREAMD_STORE__PATH": "",
        },
    )
    assert cfg.model.batch_max == 8 and cfg.server.tokens == ["a", "b"]
    # values are YAML: a Literal[10, 20, 30] takes "30", an int|str device stays an index
    assert cfg.vad.frame_ms == 30 and cfg.sources.mic.device == 3
    assert cfg.alerts.raise_ == 0.7 and cfg.sources.sip.rtp_ports == (40000, 40010)
    assert cfg.store.path is None  # an empty value is YAML null, as in the file


def test_env_override_errors_name_the_variable_not_the_file(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("model:\n  batch_max: 4\n")
    with pytest.raises(ConfigError) as info:
        load_config(p, environ={"STREAMD_MODEL__BATCH_MAX": "0"})
    msg = str(info.value)
    assert msg.startswith("STREAMD_MODEL__BATCH_MAX (environment): model.batch_max:"), msg
    assert str(p) not in msg
    # the same mistake in the file is the file's
    p.write_text("model:\n  batch_max: 0\n")
    with pytest.raises(ConfigError, match=rf"^{p}: model\.batch_max:"):
        load_config(p, environ={})
    # a rule across keys names both the file and the variable
    p.write_text("windows:\n  length_s: 3\n")
    with pytest.raises(ConfigError, match=r"with STREAMD_WINDOWS__MIN_S \(environment\): windows:"):
        load_config(p, environ={"STREAMD_WINDOWS__MIN_S": "3.5"})
    with pytest.raises(ConfigError, match=r"^STREAMD_MODEL__COLOUR \(environment\): .*unknown key"):
        load_config(p, environ={"STREAMD_MODEL__COLOUR": "red"})
    with pytest.raises(ConfigError, match=r"^STREAMD_SEVER__PORT \(environment\): unknown section"):
        load_config(p, environ={"STREAMD_SEVER__PORT": "1"})


def test_other_streamd_variables_are_not_keys() -> None:
    cfg = parse_config(
        {},
        environ={
            "STREAMD_CONFIG": "c.yaml",
            "STREAMD_MODEL_MIRROR": "http://127.0.0.1:1/",
            "STREAMD_GPU": "1",
        },
    )
    assert cfg.model_dump() == parse_config({}, environ={}).model_dump()


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
