"""``streamd serve-model`` (PyTriton) in a subprocess on 127.0.0.1 ports, and Triton's own metrics.

PyTriton pins numpy<2, so the server runs from ``.venv-triton`` (scripts/setup --dev makes it;
``STREAMD_TRITON_PYTHON`` points elsewhere). The server runs in its own process group: a test
that kills it kills the tritonserver child too, as a crashed host would.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.helpers.daemonproc import ROOT, free_port


def triton_python() -> str | None:
    """The interpreter with PyTriton, or None (tests skip with the reason)."""
    py = os.environ.get("STREAMD_TRITON_PYTHON") or str(ROOT / ".venv-triton" / "bin" / "python")
    if not Path(py).exists():
        return None
    env = dict(os.environ, PYTHONPATH=str(ROOT))  # this checkout's streamd, as the server runs
    ok = subprocess.run(
        [py, "-c", "import pytriton, streamd.cli.serve_model"],
        capture_output=True,
        timeout=60,
        env=env,
    )
    return py if ok.returncode == 0 else None


class ServeModel:
    def __init__(
        self,
        python: str,
        models: Path,
        log_dir: Path,
        name: str = "tiny",
        queue_delay_us: int = 5000,
    ) -> None:
        self.python = python
        self.models = models
        self.name = name
        self.queue_delay_us = queue_delay_us
        self.grpc_port, self.http_port, self.metrics_port = free_port(), free_port(), free_port()
        self.log_path = log_dir / f"serve-model.{self.grpc_port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self, timeout: float = 90) -> ServeModel:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    self.python,
                    "-m",
                    "streamd",
                    "serve-model",
                    "--models-dir",
                    str(self.models),
                    "--model",
                    self.name,
                    "--grpc-port",
                    str(self.grpc_port),
                    "--http-port",
                    str(self.http_port),
                    "--metrics-port",
                    str(self.metrics_port),
                    "--queue-delay-us",
                    str(self.queue_delay_us),
                    "--workspace",  # in the test's tmp dir: a killed server leaves it there
                    str(self.log_path.parent / f"pytriton.{self.grpc_port}"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=ROOT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.http_port}/v2/models/{self.name}/ready"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve-model exited {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        return self
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.3)
        raise AssertionError(f"serve-model not ready within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def metrics(self) -> dict[str, float]:
        """Triton's counters for this model: requests, executions, inferences (windows)."""
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5
        ) as r:
            text = r.read().decode()
        out = {}
        for key in (
            "nv_inference_request_success",
            "nv_inference_exec_count",
            "nv_inference_count",
        ):
            m = re.search(rf'^{key}{{model="{self.name}",version="1"}} (\S+)$', text, re.M)
            out[key] = float(m.group(1)) if m else 0.0
        return out

    def kill(self) -> None:
        """SIGKILL the whole process group (server, tritonserver, stubs)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 20) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        # Nothing of the group may linger (tritonserver after SIGTERM is a known PyTriton trap).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def __enter__(self) -> ServeModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
