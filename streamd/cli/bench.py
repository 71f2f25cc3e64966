"""``streamd bench``: throughput and latency benchmarks that print figures (never timed tests).

Each target is a sub-subcommand whose module has ``register(subparsers)``.
"""

from __future__ import annotations

import importlib
from typing import Any

# target -> module with register(subparsers)
TARGETS = [
    "streamd.bench.scorer",
    "streamd.bench.events",
    "streamd.bench.families",
    "streamd.bench.feeds",
    "streamd.bench.sip",
    "streamd.bench.abuse",
    "streamd.bench.capacity",
    "streamd.bench.adaptive",
    "streamd.bench.precision",
    "streamd.bench.nats",
    "streamd.bench.triton",
    "streamd.bench.tier",
]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmarks: scorer throughput, event fan-out, model families",
        description="Benchmarks that print figures. Every loop is bounded in count and time.",
    )
    bsub = p.add_subparsers(dest="bench_target", metavar="TARGET", title="targets")
    for name in TARGETS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(bsub)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])
