"""The YAML config, validated with pydantic so every error names the key and the reason.

Every key has a default, so an empty file runs. ``STREAMD_SECTION__KEY=value`` environment
variables override keys (values are parsed as YAML, so ``STREAMD_MODEL__BATCH_MAX=8`` is an int);
pydantic-settings maps the names to keys, and an error in an override names the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.sources.utils import parse_env_vars

from streamd.config.sections import (
    AlertsConfig,
    LoggingConfig,
    ModelConfig,
    ServerConfig,
    ServiceConfig,
    SinksConfig,
    StoreConfig,
    VadConfig,
    WindowsConfig,
)
from streamd.config.sources import SourcesConfig
from streamd.errors import ConfigError

ENV_PREFIX = "STREAMD_"
ENV_DELIMITER = "__"


class Config(BaseSettings):
    """The whole config; ``Config()`` is the defaults, `parse_config` adds the environment."""

    model_config = SettingsConfigDict(
        extra="forbid", env_prefix=ENV_PREFIX, env_nested_delimiter=ENV_DELIMITER
    )

    server: ServerConfig = ServerConfig()
    sources: SourcesConfig = SourcesConfig()
    vad: VadConfig = VadConfig()
    windows: WindowsConfig = WindowsConfig()
    model: ModelConfig = ModelConfig()
    alerts: AlertsConfig = AlertsConfig()
    store: StoreConfig = StoreConfig()
    sinks: SinksConfig = SinksConfig()
    logging: LoggingConfig = LoggingConfig()
    service: ServiceConfig = ServiceConfig()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only the keys given: `parse_config` layers the environment so it can name a bad
        variable."""
        return (init_settings,)


class _EnvOverrides(EnvSettingsSource):
    """``STREAMD_SECTION__KEY`` variables as nested keys, each value parsed as YAML."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        super().__init__(Config, case_sensitive=False, env_parse_none_str="")
        # YAML reads an empty value as null; so does pydantic-settings with this none string.
        self.env_vars = parse_env_vars(environ, case_sensitive=False, parse_none_str="")

    def field_is_complex(self, field: FieldInfo) -> bool:
        return True  # every value goes through decode_complex_value, so "20" is 20 as in the file

    def decode_complex_value(self, field_name: str, field: FieldInfo | None, value: Any) -> Any:
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError:
            return value  # a plain string such as "a: b: c" is still a string


def _unknown_sections(environ: Mapping[str, str]) -> list[str]:
    """``STREAMD_SEVER__PORT`` would be ignored silently; other ``STREAMD_X`` names are not keys."""
    errors = []
    for key in sorted(environ):
        name = key.upper().removeprefix(ENV_PREFIX)
        section = name.split(ENV_DELIMITER)[0].lower()
        if name != key.upper() and ENV_DELIMITER in name and section not in Config.model_fields:
            errors.append(f"{key} (environment): unknown section {section!r}")
    return errors


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _blame(loc: tuple[int | str, ...], env: dict[str, Any], origin: str) -> str:
    """Who set the value at ``loc``: a variable, the file, or the file with variables under it."""
    node: Any = env
    path: list[str] = []
    for part in loc:
        if not isinstance(node, dict) or str(part) not in node:
            break
        node = node[str(part)]
        path.append(str(part))
    if path and not isinstance(node, dict):
        return ENV_PREFIX + ENV_DELIMITER.join(path).upper() + " (environment)"
    if path:
        names = ", ".join(_names(node, path))
        return f"{origin} with {names} (environment)"
    return origin


def _names(node: dict[str, Any], path: list[str]) -> list[str]:
    out = []
    for key, value in node.items():
        if isinstance(value, dict):
            out.extend(_names(value, [*path, key]))
        else:
            out.append(ENV_PREFIX + ENV_DELIMITER.join([*path, key]).upper())
    return out


def _format_error(exc: ValidationError, origin: str, env: dict[str, Any]) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{_blame(err['loc'], env, origin)}: {key}: {msg}")
    return "\n".join(lines)


def parse_config(
    data: Any, origin: str = "config", environ: Mapping[str, str] | None = None
) -> Config:
    """Validate ``data`` (from ``origin``) with the environment's overrides on top."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: the top level must be a mapping of sections")
    env_vars = os.environ if environ is None else environ
    unknown = _unknown_sections(env_vars)
    if unknown:
        raise ConfigError("\n".join(unknown))
    env = _EnvOverrides(env_vars)()
    try:
        return Config.model_validate(_merge(data, env))
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, origin, env)) from None


def load_config(path: str | Path | None, environ: Mapping[str, str] | None = None) -> Config:
    """Load and validate a config file; ``None`` means defaults plus environment overrides."""
    if path is None:
        return parse_config({}, "defaults", environ)
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read config ({exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML ({exc})".replace("\n", " ")) from None
    return parse_config(data, str(p), environ)
