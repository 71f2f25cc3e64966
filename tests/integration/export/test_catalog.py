"""``streamd models pull``: real HTTP download (from a local mirror on 127.0.0.1), sha256 check,
export."""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from streamd.export.catalog import KNOWN, download
from streamd.model.manifest import sha256_file


@pytest.fixture
def mirror(tmp_path: Path, shared_dir: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "mirror"
    target = root / KNOWN["aasist-l"].path
    target.parent.mkdir(parents=True)
    target.symlink_to(shared_dir / "models" / "aasist" / "AASIST-L.pth")
    bad = root / KNOWN["aasist"].path
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_bytes(b"not the published file")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path
    server.shutdown()


def pull(name: str, tmp: Path, mirror_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STREAMD_MODEL_MIRROR": mirror_url, "XDG_CACHE_HOME": str(tmp / "cache")}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "streamd",
            "models",
            "pull",
            name,
            "--models-dir",
            str(tmp / "models"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


@pytest.mark.slow
def test_pull_downloads_verifies_and_exports(mirror: tuple[str, Path]) -> None:
    url, tmp = mirror
    r = pull("aasist-l", tmp, url)
    assert r.returncode == 0, r.stderr
    m = yaml.safe_load((tmp / "models" / "aasist-l.yaml").read_text())
    assert m["family"] == "aasist" and m["labels"] == ["spoof", "bonafide"] and m["fake_index"] == 0
    assert m["window"] == {"min_s": 2.5, "max_s": 4.0375, "pad": "repeat"}
    assert m["checkpoint_sha256"] == KNOWN["aasist-l"].sha256 and m["license"] == "MIT"
    assert m["source"].startswith("https://github.com/clovaai/aasist")
    assert (tmp / "cache" / "streamd" / "aasist-l-AASIST-L.pth").exists()


def test_pull_refuses_a_file_with_the_wrong_sha256(mirror: tuple[str, Path]) -> None:
    url, tmp = mirror
    r = pull("aasist", tmp, url)
    assert r.returncode == 2 and "does not match the published" in r.stderr
    assert not (tmp / "models" / "aasist.onnx").exists()


def test_offline_says_how_to_install_from_a_file(tmp_path: Path) -> None:
    r = pull("aasist-l", tmp_path, "http://127.0.0.1:9")  # nothing listens on the discard port
    assert r.returncode == 2
    assert (
        "streamd models export --family aasist --from PATH/AASIST-L.pth --name aasist-l" in r.stderr
    )
    assert "Traceback" not in r.stderr
    r = pull("nonesuch", tmp_path, "http://127.0.0.1:9")
    assert r.returncode == 2 and "known: aasist" in r.stderr


def test_cache_is_reused_offline_and_a_corrupt_copy_is_fetched_again(
    mirror: tuple[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url, tmp = mirror
    known = KNOWN["aasist-l"]
    cache = tmp / "cache"
    cache.mkdir()
    cached = cache / f"{known.name}-{known.filename}"
    cached.write_bytes(b"truncated by a crash")
    monkeypatch.setenv("STREAMD_MODEL_MIRROR", url)
    assert download(known, cache) == cached  # the wrong copy is replaced from the mirror
    assert sha256_file(cached) == known.sha256
    monkeypatch.setenv("STREAMD_MODEL_MIRROR", "http://127.0.0.1:9")  # offline now
    assert download(known, cache) == cached
    assert f"using cached {cached}" in capsys.readouterr().out
    assert sorted(p.name for p in cache.iterdir()) == [cached.name]  # no partial files left
