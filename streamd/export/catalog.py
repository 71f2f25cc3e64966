"""Known published checkpoints: where they live, their sha256, and ``streamd models pull``.

Downloads go to the cache (``$XDG_CACHE_HOME/streamd``), are checked against the sha256 below
before anything is exported, and fail with a message that says how to install from a local file.
``STREAMD_MODEL_MIRROR`` replaces the GitHub base URL (an internal mirror; tests use a local one).
"""

from __future__ import annotations

import os
import shutil
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from streamd.errors import ModelError, UsageError
from streamd.model.manifest import sha256_file

GITHUB = "https://github.com"


@dataclass(frozen=True)
class Known:
    name: str
    family: str
    path: str  # repository/raw path under the base URL
    sha256: str
    license: str
    reported: str

    @property
    def url(self) -> str:
        return f"{GITHUB}/{self.path}"

    @property
    def filename(self) -> str:
        return self.path.rsplit("/", 1)[-1]


KNOWN = {
    k.name: k
    for k in (
        Known(
            "aasist",
            "aasist",
            "clovaai/aasist/raw/main/models/weights/AASIST.pth",
            "51d2d9cf0738172f61e2a384ec50a54a55363240f67c971ed55a92435bc1a1c0",
            "MIT",
            "EER 0.83%, min t-DCF 0.0275 on ASVspoof 2019 LA eval",
        ),
        Known(
            "aasist-l",
            "aasist",
            "clovaai/aasist/raw/main/models/weights/AASIST-L.pth",
            "814331d088032bb4c3fa61cc014789eadeed464209dd094ab3a2dd6ffbdce27a",
            "MIT",
            "EER 0.99%, min t-DCF 0.0309 on ASVspoof 2019 LA eval",
        ),
        Known(
            "aasist-asvspoof5",
            "aasist",
            "asvspoof-challenge/asvspoof5/raw/main/Baseline-AASIST/models/weights/AASIST/best.pth",
            "8f10fe1d1ce3ac62c19f00b86dfaf79f86f464301d23e08726b16b02edbb601c",
            "MIT",
            "EER 15.2% on ASVspoof 5 validation",
        ),
    )
}


def by_sha256(digest: str) -> Known | None:
    return next((k for k in KNOWN.values() if k.sha256 == digest), None)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "streamd"


def download(known: Known, cache: Path) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / f"{known.name}-{known.filename}"
    if target.exists() and sha256_file(target) == known.sha256:
        print(f"using cached {target}")
        return target
    base = os.environ.get("STREAMD_MODEL_MIRROR", GITHUB).rstrip("/")
    url = f"{base}/{known.path}"
    part = target.with_suffix(target.suffix + ".part")
    print(f"downloading {url}")
    try:
        with urllib.request.urlopen(url, timeout=30) as resp, open(part, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0)
            done = 0
            while block := resp.read(1 << 16):
                out.write(block)
                done += len(block)
                if total and sys.stderr.isatty():
                    print(f"\r  {done / 1e6:.1f} / {total / 1e6:.1f} MB", end="", file=sys.stderr)
        if total and sys.stderr.isatty():
            print(file=sys.stderr)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        part.unlink(missing_ok=True)
        reason = getattr(exc, "reason", exc)
        raise ModelError(
            f"cannot download {known.name} from {url} ({reason}). Offline? Install it from a local copy of "
            f"{known.filename} (sha256 {known.sha256[:12]}…): "
            f"streamd models export --family {known.family} --from PATH/{known.filename} --name {known.name}"
        ) from None
    digest = sha256_file(part)
    if digest != known.sha256:
        part.unlink(missing_ok=True)
        raise ModelError(
            f"{url}: sha256 {digest} does not match the published {known.sha256}; not installed"
        )
    shutil.move(str(part), target)
    return target


def pull(name: str, models_dir: Path, cache: Path | None = None) -> Path:
    from streamd.export import family_module
    from streamd.export.export import export_plan

    if name not in KNOWN:
        raise UsageError(f"unknown model {name!r}; known: {', '.join(KNOWN)}")
    known = KNOWN[name]
    path = download(known, cache or cache_dir())
    plan = family_module(known.family).load_plan(path, source_url=known.url, license=known.license)
    plan.extra["export_from"] = str(path)
    res = export_plan(plan, models_dir, name)
    return res.manifest_path
