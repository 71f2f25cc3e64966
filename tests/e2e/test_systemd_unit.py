"""``systemd/streamd.service``: systemd accepts it, it has the hardening we promise, and the
daemon really runs under MemoryDenyWriteExecute (no writable+executable memory)."""

from __future__ import annotations

import errno
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from streamd.cli import build_parser
from streamd.config import Config
from streamd.http.app import CLIENT_FLUSH_S

from tests.helpers.daemonproc import speech_wav

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "streamd.service"
VENV_STREAMD = Path(sys.executable).parent / "streamd"


def directives() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def local_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this venv's streamd (verify checks the binary exists)."""
    if not VENV_STREAMD.exists():
        pytest.skip(f"{VENV_STREAMD} is not installed (pip install -e .)")
    unit = tmp_path / "streamd.service"
    text = UNIT.read_text()
    assert "/opt/streamd/.venv/bin/streamd " in text
    unit.write_text(text.replace("/opt/streamd/.venv/bin/streamd ", f"{VENV_STREAMD} "))
    return unit


def analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    return tool


def test_systemd_analyze_verify_passes(tmp_path: Path) -> None:
    r = subprocess.run(
        [analyze(), "verify", str(local_copy(tmp_path))], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0 and r.stderr.strip() == "" and r.stdout.strip() == "", (
        r.stderr + r.stdout
    )


def test_security_exposure_is_low(tmp_path: Path) -> None:
    r = subprocess.run(
        [analyze(), "security", "--offline=true", "--no-pager", str(local_copy(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout)
    if m is None:
        pytest.skip(
            f"systemd-analyze security --offline is not supported here: {r.stderr.strip()[:200]}"
        )
    assert float(m.group(1)) <= 2.0, r.stdout


def test_unit_has_the_promised_settings() -> None:
    d = directives()
    expect = {
        "Type": "notify",
        "Restart": "on-failure",
        "DynamicUser": "yes",
        "StateDirectory": "streamd",
        "ConfigurationDirectory": "streamd",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectControlGroups": "yes",
        "RestrictNamespaces": "yes",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "SystemCallArchitectures": "native",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "CapabilityBoundingSet": "",
    }
    for key, value in expect.items():
        assert d.get(key) == [value], key
    watchdog, stop = int(d["WatchdogSec"][0]), int(d["TimeoutStopSec"][0])
    assert 0 < watchdog <= 60
    assert (
        stop > Config().service.grace_s + CLIENT_FLUSH_S + 5
    )  # systemd never SIGKILLs a clean stop
    argv = shlex.split(d["ExecStart"][0])
    args = build_parser().parse_args(argv[1:])
    assert args.command == "run" and args.config == "/etc/streamd/config.yaml"


MDWE_WRAPPER = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
    sys.exit(100 + ctypes.get_errno())
import mmap
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    sys.exit(99)  # not enforced
except PermissionError:
    pass
os.execv(sys.executable, [sys.executable, "-m", "streamd", *sys.argv[1:]])
"""


def test_daemon_runs_with_memory_deny_write_execute(tiny_model_dir: Path, tmp_path: Path) -> None:
    """PR_SET_MDWE (Linux 6.3+) is what systemd uses for MemoryDenyWriteExecute=yes where the
    kernel has it; the whole run-time path (onnxruntime CPU, numpy, soxr, sqlite, aiohttp) must
    work."""
    clip = speech_wav(tmp_path / "s.wav", 8.0)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        json.dumps(
            {
                "server": {"port": 0},
                "sources": {
                    "files": [str(clip)],
                    "as_fast_as_possible": True,
                    "exit_when_done": True,
                    "webrtc": {"enabled": False},
                },
                "model": {"dir": str(tiny_model_dir)},
                "store": {"path": str(tmp_path / "e.db")},
            }
        )
    )
    r = subprocess.run(
        [sys.executable, "-c", MDWE_WRAPPER, "run", "-c", str(cfg), "--events-stdout"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if r.returncode in (100 + errno.EINVAL, 99):
        pytest.skip("this kernel has no PR_SET_MDWE (Linux >= 6.3)")
    assert r.returncode == 0, r.stderr[-2000:]
    types = [json.loads(line)["type"] for line in r.stdout.splitlines()]
    assert types.count("window.scored") >= 3 and types[-1] == "daemon.status"
