"""Options several commands share: the config file and the model choice."""

from __future__ import annotations

import argparse
import os

from streamd.config import Config, load_config


def add_config_args(p: argparse.ArgumentParser, model: bool = True) -> None:
    p.add_argument(
        "-c",
        "--config",
        metavar="PATH",
        default=os.environ.get("STREAMD_CONFIG"),
        help="YAML config (default: built-in defaults; $STREAMD_CONFIG)",
    )
    if model:
        p.add_argument(
            "--model",
            metavar="NAME",
            help="model name in the models dir (default: model.name, or the only one)",
        )
        p.add_argument(
            "--models-dir", metavar="DIR", help="where models live (default: model.dir, 'models')"
        )
    p.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], help="override logging.level"
    )


def config_from_args(args: argparse.Namespace) -> Config:
    cfg = load_config(args.config)
    if getattr(args, "models_dir", None):
        cfg.model.dir = args.models_dir
    if getattr(args, "model", None):
        cfg.model.name = args.model
    if getattr(args, "log_level", None):
        cfg.logging.level = args.log_level
    return cfg
