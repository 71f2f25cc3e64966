"""``streamd mic`` and ``sources.mic`` against a real PulseAudio null sink fed by ``paplay``.

The fixture runs a private PulseAudio (its own HOME and runtime dir, anonymous auth on its own
socket, no default.pa) with one null sink. PortAudio reaches it through ALSA's pulse plugin
(Debian libasound2-plugins); an ``.asoundrc`` in that HOME names the sink's monitor as the ALSA
device ``streamd_monitor``, so the test picks a device by name the way a user does.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from streamd.ingest.mic import InputDevice, MicCapture

from tests.helpers.common import write_wav

ROOT = Path(__file__).resolve().parents[2]
STREAMD = [sys.executable, "-m", "streamd"]
DEVICE = "streamd_monitor"
ASOUNDRC = f"""pcm.{DEVICE} {{
    type pulse
    device "streamd_test.monitor"
    hint {{ show on description "streamd test: null sink monitor" }}
}}
"""
SPEECH_S = 7.0


@pytest.fixture(scope="module")
def pulse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A private PulseAudio with a null sink; yields the environment that reaches it."""
    if not (shutil.which("pulseaudio") and shutil.which("paplay") and shutil.which("pactl")):
        pytest.skip("PulseAudio is not installed (Debian: apt install pulseaudio pulseaudio-utils)")
    pytest.importorskip("sounddevice", exc_type=ImportError)
    root = tmp_path_factory.mktemp("pulse")
    home, runtime = root / "home", root / "run"
    home.mkdir()
    runtime.mkdir(mode=0o700)
    (home / ".asoundrc").write_text(ASOUNDRC)
    socket = runtime / "native"
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_RUNTIME_DIR": str(runtime),
        "PULSE_SERVER": f"unix:{socket}",
    }
    env.pop("PULSE_SINK", None)
    env.pop("PULSE_SOURCE", None)
    log = open(root / "pulseaudio.log", "wb")  # noqa: SIM115 - closed in teardown
    proc = subprocess.Popen(
        [
            "pulseaudio",
            "-n",
            "--daemonize=no",
            "--exit-idle-time=-1",
            "--disallow-exit",
            "--disable-shm=yes",
            "--log-target=stderr",
            "--log-level=warning",
            "-L",
            f"module-native-protocol-unix auth-anonymous=1 socket={socket}",
            "-L",
            "module-null-sink sink_name=streamd_test rate=48000",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(100):
            if proc.poll() is not None:
                break
            if (
                subprocess.run(
                    ["pactl", "info"], env=env, capture_output=True, timeout=5
                ).returncode
                == 0
            ):
                break
            time.sleep(0.1)
        if (
            proc.poll() is not None
            or subprocess.run(["pactl", "info"], env=env, capture_output=True, timeout=5).returncode
        ):
            pytest.fail(
                "private PulseAudio did not start: "
                f"{(root / 'pulseaudio.log').read_text(errors='replace')}"
            )
        yield env
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


@pytest.fixture(scope="module")
def speech_wav(speech_16k: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_wav(
        tmp_path_factory.mktemp("mic") / "speech.wav", speech_16k[: int(SPEECH_S * 16000)], 16000
    )


def streamd(
    env: dict[str, str], *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*STREAMD, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def spawn(cmd: list[str], env: dict[str, str], tmp: Path) -> tuple[subprocess.Popen[str], Path]:
    """Start ``cmd`` with stdout for one reader thread and stderr in a file (two pipe readers would
    race)."""
    err = tmp / "stderr.txt"
    with open(err, "w") as f:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=f, text=True, cwd=ROOT)
    return proc, err


def play_when_started(
    proc: subprocess.Popen[str], marker: str, env: dict[str, str], wav: Path, lines: list[str]
) -> threading.Thread:
    """Read ``proc``'s stdout into ``lines``; start ``paplay`` once ``marker`` shows (capture is
    open)."""

    def reader() -> None:
        assert proc.stdout is not None
        played = False
        for line in proc.stdout:
            lines.append(line)
            if not played and marker in line:
                played = True
                subprocess.Popen(["paplay", "-d", "streamd_test", str(wav)], env=env)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    return t


def test_list_devices_lists_the_monitor(pulse: dict[str, str]) -> None:
    out = streamd(pulse, "mic", "--list-devices")
    assert out.returncode == 0, out.stderr
    assert DEVICE in out.stdout
    rows = [
        json.loads(ln)
        for ln in streamd(pulse, "mic", "--list-devices", "--json").stdout.splitlines()
    ]
    [row] = [r for r in rows if r["name"] == DEVICE]
    assert row["channels"] >= 1 and row["default_rate"] > 0


@pytest.mark.parametrize("device", ["no-such-microphone", "4242"])
def test_missing_device_is_a_clear_error_with_exit_code_2(
    pulse: dict[str, str], device: str
) -> None:
    out = streamd(pulse, "mic", "--device", device, "--seconds", "1")
    assert out.returncode == 2
    assert "streamd mic: error: device" in out.stderr and "no input device" in out.stderr
    assert DEVICE in out.stderr  # the message lists what exists
    assert "Traceback" not in out.stderr


def test_mic_json_scores_windows_from_the_null_sink(
    pulse: dict[str, str], speech_wav: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    proc, err = spawn(
        [
            *STREAMD,
            "mic",
            "--device",
            DEVICE,
            "--json",
            "--seconds",
            str(SPEECH_S + 3),
            "--models-dir",
            str(tiny_model_dir),
        ],
        pulse,
        tmp_path,
    )
    lines: list[str] = []
    reader = play_when_started(proc, '"mic.started"', pulse, speech_wav, lines)
    proc.wait(60)
    reader.join(5)
    assert proc.returncode == 0, err.read_text()
    events = [json.loads(ln) for ln in lines]
    kinds = [e["type"] for e in events]
    assert kinds[0] == "stream.started" and events[0]["stream"]["source"] == "mic"
    windows = [e for e in events if e["type"] == "window.scored"]
    assert len(windows) >= 2, kinds
    assert all(0.0 <= w["score"] <= 1.0 and w["stream"]["leg"] == "mic" for w in windows)
    levels = [e for e in events if e["type"] == "level"]
    loud = [lv for lv in levels if lv["speech"] and lv["dbfs"] > -45]
    assert len(loud) >= 5, levels[:10]
    assert len(levels) <= (SPEECH_S + 3) * 4 + 2  # throttled to 4 per second
    assert kinds[-2:] == ["stream.ended", "mic.stopped"], kinds[-5:]
    assert events[-1]["dropped_blocks"] == 0
    summary = events[-2]["summary"]
    assert summary["speech_s"] >= SPEECH_S - 2
    assert abs(summary["duration_s"] - (SPEECH_S + 3)) < 2.0  # stream time is wall time


def test_mic_terminal_view_shows_level_speech_and_windows(
    pulse: dict[str, str], speech_wav: Path, tiny_model_dir: Path
) -> None:
    # Without a terminal rich prints the final state once; with one it redraws in place.
    proc = subprocess.Popen(
        [
            *STREAMD,
            "mic",
            "--device",
            DEVICE,
            "--seconds",
            str(SPEECH_S + 2),
            "--models-dir",
            str(tiny_model_dir),
        ],
        env={**pulse, "COLUMNS": "100"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    time.sleep(1.5)  # model load and capture start; the view has nothing to wait on
    subprocess.Popen(["paplay", "-d", "streamd_test", str(speech_wav)], env=pulse)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    for text in (
        "streamd mic",
        DEVICE,
        "level",
        "dBFS",
        "speech",
        "smoothed",
        "p_fake",
        "windows scored",
        "no alert",
    ):
        assert text in out, f"{text!r} missing from:\n{out}"
    rows = [ln for ln in out.splitlines() if "▇" in ln]
    assert len(rows) >= 2, out
    assert "s recorded" in out.splitlines()[-1]


def test_sources_mic_in_the_daemon(
    pulse: dict[str, str], speech_wav: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    cfg = tmp_path / "mic.yaml"
    cfg.write_text(
        f"server: {{enabled: false}}\nsources: {{webrtc: {{enabled: false}}, "
        f"mic: {{enabled: true, device: {DEVICE}, sample_rate: 16000}}}}\n"
        f"model: {{dir: {tiny_model_dir}, providers: [cpu]}}\n"
        f"store: {{path: {tmp_path / 'e.db'}}}\n"
    )
    proc, err = spawn([*STREAMD, "run", "-c", str(cfg)], pulse, tmp_path)
    lines: list[str] = []
    reader = play_when_started(proc, '"stream.started"', pulse, speech_wav, lines)
    deadline = time.monotonic() + SPEECH_S + 30
    while (
        time.monotonic() < deadline
        and sum('"window.scored"' in ln for ln in lines) < 2
        and proc.poll() is None
    ):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    reader.join(5)
    assert proc.returncode == 0, err.read_text()
    events = [json.loads(ln) for ln in lines if ln.startswith("{")]
    started = [e for e in events if e["type"] == "stream.started"]
    assert (
        started
        and started[0]["stream"]["source"] == "mic"
        and started[0]["stream"]["labels"]["device"] == DEVICE
    )
    assert sum(e["type"] == "window.scored" for e in events) >= 2
    assert any(e["type"] == "stream.ended" and e["stream"]["source"] == "mic" for e in events)


def test_missing_portaudio_names_the_package(tmp_path: Path) -> None:
    """sounddevice raises OSError at import when libportaudio2 is absent; the error says what to
    install."""
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "sounddevice.py").write_text("raise OSError('PortAudio library not found')\n")
    code = "import sys; from streamd.cli import main; sys.exit(main(['mic', '--list-devices']))"
    env = {**os.environ, "PYTHONPATH": f"{fake}{os.pathsep}{ROOT}"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert out.returncode == 1
    assert "apt install libportaudio2" in out.stderr and "Traceback" not in out.stderr


async def test_overflow_drops_blocks_and_owes_their_length_as_silence() -> None:
    cap = MicCapture(InputDevice(0, "x", "test", 1, 16000), queue_blocks=2)
    cap.bind(asyncio.get_running_loop())
    blocks = [np.full((320, 1), i, dtype=np.float32) for i in range(5)]

    def portaudio_thread() -> None:
        for b in blocks:
            cap._callback(b, len(b), None, None)

    t = threading.Thread(target=portaudio_thread)
    t.start()
    t.join()
    await asyncio.sleep(0.05)  # the loop runs the call_soon_threadsafe callbacks
    assert cap.dropped_blocks == 3 and cap.dropped_samples == 960
    first, second = await cap.read(), await cap.read()
    assert first is not None and second is not None
    assert first[0] == 0 and second[0] == 0
    cap._callback(blocks[0], 320, None, None)
    await asyncio.sleep(0.05)
    third = await cap.read()
    assert third is not None and third[0] == 960  # the dropped time comes back as silence, in place
    cap.close()
    assert await cap.read() is None
