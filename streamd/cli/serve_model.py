"""``streamd serve-model``: serve an installed model on Triton (PyTriton) for a shared inference
tier.

Daemons with ``model.backend: triton`` send their windows here over gRPC; Triton's dynamic
batcher merges requests from every daemon into one run. The graph runs with onnxruntime in this
process (the model's front end too), under the manifest's own input and output names, so the
client is the same for this server and for a full Triton built by ``models export-triton``.

PyTriton pins numpy<2, so it lives in its own virtualenv (``.venv-triton``, made by
``scripts/setup --dev`` or ``STREAMD_TRITON=1 scripts/setup``): run ``.venv-triton/bin/streamd
serve-model``. Known PyTriton traps handled here: its Python stub links the system libpython
(``LD_LIBRARY_PATH`` is pointed at this interpreter's), it binds 0.0.0.0 unless told (we bind
``--host``, 127.0.0.1 by default), and its server lingers after SIGTERM unless
``exit_timeout_secs`` is set.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sysconfig
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from streamd.config import load_config
from streamd.errors import StreamdError, UsageError
from streamd.model.manifest import resolve_manifest
from streamd.model.session import Detector

log = logging.getLogger("streamd.serve_model")

EXIT_TIMEOUT_S = 3


def register(sub: Any) -> None:
    p = sub.add_parser(
        "serve-model",
        help="serve a model on Triton (PyTriton) for daemons with model.backend: triton",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", "-m", help="model name in the models dir (default: model.name)")
    p.add_argument("--models-dir", metavar="DIR", help="default: model.dir from the config")
    p.add_argument("-c", "--config", metavar="FILE", help="streamd config (model.* settings)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--grpc-port", type=int, default=8001, help="KServe v2 gRPC (default 8001)")
    p.add_argument("--http-port", type=int, default=8000, help="KServe v2 HTTP (default 8000)")
    p.add_argument(
        "--metrics-port", type=int, default=8002, help="Prometheus /metrics (default 8002)"
    )
    p.add_argument("--triton-name", help="name on Triton (default: the model's name)")
    p.add_argument(
        "--max-batch",
        type=int,
        default=16,
        help="largest batch Triton forms (default 16). Memory grows with it: AASIST-L on CPU "
        "took over 15 GB at batch 64 and was OOM-killed",
    )
    p.add_argument(
        "--queue-delay-us",
        type=int,
        default=2000,
        help="how long Triton holds a request to batch it with others (default 2000)",
    )
    p.add_argument(
        "--instances", type=int, default=1, help="model instances run in parallel (default 1)"
    )
    p.add_argument(
        "--workspace",
        metavar="DIR",
        help="PyTriton's working files (sockets, a copy of tritonserver); default: a new folder "
        "under ~/.cache/pytriton, removed on a clean stop, left behind after a kill -9",
    )
    p.set_defaults(func=cmd_serve_model)


def use_this_libpython(environ: dict[str, str] | None = None) -> str:
    """Put this interpreter's LIBDIR first on LD_LIBRARY_PATH, for PyTriton's Python stub."""
    env = os.environ if environ is None else environ
    libdir = str(sysconfig.get_config_var("LIBDIR") or "")
    parts = [p for p in env.get("LD_LIBRARY_PATH", "").split(":") if p]
    if libdir and (not parts or parts[0] != libdir):
        env["LD_LIBRARY_PATH"] = ":".join([libdir, *[p for p in parts if p != libdir]])
    return env.get("LD_LIBRARY_PATH", "")


def make_infer(detector: Detector) -> Callable[..., dict[str, np.ndarray]]:
    from pytriton.decorators import batch

    name_in, name_out = detector.manifest.input, detector.manifest.output

    @batch  # type: ignore[untyped-decorator]
    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        return {name_out: detector.infer(inputs[name_in])}

    return infer  # type: ignore[no-any-return]


def _import_pytriton() -> None:
    try:
        import pytriton  # noqa: F401
    except ImportError:
        raise StreamdError(
            "PyTriton is not installed in this environment. It pins numpy<2, so it lives in its "
            "own virtualenv: run `STREAMD_TRITON=1 scripts/setup` (or `scripts/setup --dev`), "
            "then `.venv-triton/bin/streamd serve-model`"
        ) from None


def cmd_serve_model(args: argparse.Namespace) -> int:
    if args.max_batch < 1 or args.instances < 1 or args.queue_delay_us < 0:
        raise UsageError("--max-batch and --instances must be >= 1, --queue-delay-us >= 0")
    _import_pytriton()
    cfg = load_config(args.config)
    m = cfg.model
    manifest_path = resolve_manifest(args.models_dir or m.dir, args.model or m.name)
    detector = Detector.load(manifest_path, m.providers, m.require_gpu, m.threads, spin=m.spin)
    serve(detector, args)
    return 0


def serve(detector: Detector, args: argparse.Namespace) -> None:
    use_this_libpython()
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    man = detector.manifest
    name = args.triton_name or man.name
    shape = (man.max_samples,) if man.fixed_length else (-1,)
    config = TritonConfig(
        http_address=args.host,
        http_port=args.http_port,
        grpc_address=args.host,
        grpc_port=args.grpc_port,
        metrics_address=args.host,
        metrics_port=args.metrics_port,
        allow_sagemaker=False,
        allow_vertex_ai=False,
        exit_timeout_secs=EXIT_TIMEOUT_S,
    )

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # Triton.serve() stops its server on this

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_term)
    with Triton(config=config, workspace=args.workspace) as triton:
        triton.bind(
            model_name=name,
            infer_func=[make_infer(detector) for _ in range(args.instances)],
            inputs=[Tensor(name=man.input, dtype=np.float32, shape=shape)],
            outputs=[Tensor(name=man.output, dtype=np.float32, shape=(len(man.labels),))],
            config=ModelConfig(
                max_batch_size=args.max_batch,
                batcher=DynamicBatcher(max_queue_delay_microseconds=args.queue_delay_us),
            ),
            strict=True,
        )
        triton.run()
        print(
            f"serve-model: {name} ({detector.provider}) on grpc {args.host}:{args.grpc_port}, "
            f"http {args.host}:{args.http_port}, metrics http://{args.host}:{args.metrics_port}"
            f"/metrics; batches up to {args.max_batch}, {args.instances} instance(s)",
            flush=True,
        )
        triton.serve()
