"""Kamailio (Debian's package) with deploy/kamailio/kamailio.cfg on a 127.0.0.1 port, for tests.

Runs in the foreground with its own runtime dir and a ctl socket, so a test can read the
dispatcher's view of each node (``kamcmd dispatcher.list``). Every wait is bounded.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from tests.helpers.daemonproc import ROOT
from tests.helpers.sip import free_udp_port

KAMAILIO = shutil.which("kamailio") or (
    "/usr/sbin/kamailio" if Path("/usr/sbin/kamailio").exists() else None
)
KAMCMD = shutil.which("kamcmd") or "/usr/sbin/kamcmd"
CONFIG = ROOT / "deploy" / "kamailio" / "kamailio.cfg"


class Kamailio:
    def __init__(self, root: Path, nodes: list[int], ping_s: int = 1, probe_fails: int = 1) -> None:
        self.root = root
        self.port = free_udp_port()
        self.ctl = root / "kamailio_ctl"
        (root / "dispatcher.list").write_text("".join(f"1 sip:127.0.0.1:{p}\n" for p in nodes))
        self.defines = [
            f'DS_LIST="{root / "dispatcher.list"}"',
            f'CTL_SOCKET="unix:{self.ctl}"',
            f"DS_PING_S={ping_s}",
            f"DS_PROBE_FAILS={probe_fails}",
            "INVITE_TIMEOUT_MS=1500",
        ]
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = root / "kamailio.log"

    def start(self, timeout: float = 20) -> Kamailio:
        assert KAMAILIO is not None
        cmd = [KAMAILIO, "-DD", "-E", "-f", str(CONFIG), "-l", f"udp:127.0.0.1:{self.port}"]
        cmd += ["-Y", str(self.root), "-w", str(self.root), "-m", "32", "-M", "4"]
        for d in self.defines:
            cmd += ["-A", d]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=self.root)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"kamailio exited {self.proc.returncode}:\n{self.log()}")
            if self.ctl.exists() and self.dispatcher() is not None:
                return self
            time.sleep(0.2)
        raise AssertionError(f"kamailio not up within {timeout} s:\n{self.log()}")

    def dispatcher(self) -> dict[str, str] | None:
        """``{uri: flags}`` from ``dispatcher.list`` (``AP`` active, ``IP``/``IX`` inactive)."""
        try:
            out = subprocess.run(
                [KAMCMD, "-s", f"unix:{self.ctl}", "dispatcher.list"],
                capture_output=True,
                text=True,
                timeout=5,
            )
        except subprocess.TimeoutExpired:
            return None
        if out.returncode != 0:
            return None
        nodes: dict[str, str] = {}
        uri = None
        for line in out.stdout.splitlines():
            line = line.strip()
            if line.startswith("URI:"):
                uri = line.split(":", 1)[1].strip()
            elif line.startswith("FLAGS:") and uri:
                nodes[uri] = line.split(":", 1)[1].strip()
        return nodes

    def wait_flags(self, uri: str, prefix: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            state = self.dispatcher()
            if state and state.get(uri, "").startswith(prefix):
                return
            time.sleep(0.2)
        raise AssertionError(f"{uri} not {prefix} within {timeout} s: {state}\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self) -> Kamailio:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
