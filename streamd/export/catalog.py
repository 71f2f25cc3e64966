"""Known published checkpoints: where they live, their sha256, and ``streamd models pull``.

Downloads go to the cache (``$XDG_CACHE_HOME/streamd``), are checked against the sha256 below
before anything is exported, and fail with a message that says how to install from a local file.
``STREAMD_MODEL_MIRROR`` replaces the GitHub base URL (an internal mirror; tests use a local one).
pooch (the downloader behind scipy.datasets) does the fetching: a temporary file in the cache,
moved into place only once its sha256 matches, and a progress bar on a terminal.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from streamd.errors import ModelError, UsageError

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
        Known(
            "rawgat-st",
            "rawgat-st",
            "eurecom-asp/RawGAT-ST-antispoofing/raw/main/Pre_trained_models/RawGAT_ST_mul/Best_epoch.pth",
            "8a91ce8201d42119cbfb9ebca8850e5914f1a85959b3ca962819783738c2a9e2",
            "MIT",
            "EER 1.06% on ASVspoof 2019 LA eval",
        ),
    )
}


def by_sha256(digest: str) -> Known | None:
    return next((k for k in KNOWN.values() if k.sha256 == digest), None)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "streamd"


def download(known: Known, cache: Path) -> Path:
    """The checkpoint in the cache, fetched (from ``$STREAMD_MODEL_MIRROR`` if set) when absent."""
    import pooch
    import requests

    base = os.environ.get("STREAMD_MODEL_MIRROR", GITHUB).rstrip("/")
    url = f"{base}/{known.path}"

    def say_cached(path: str, action: str, _: object) -> str:
        if action == "fetch":  # pooch logs downloads itself ("Downloading data from ...")
            print(f"using cached {path}")
        return path

    try:
        path = pooch.retrieve(
            url,
            known_hash=f"sha256:{known.sha256}",
            fname=f"{known.name}-{known.filename}",
            path=cache,
            processor=say_cached,
            downloader=pooch.HTTPDownloader(progressbar=sys.stderr.isatty(), timeout=30),
        )
    except (requests.RequestException, OSError) as exc:
        raise ModelError(
            f"cannot download {known.name} from {url} ({_reason(exc)}). Offline? Install it from a "
            f"local copy of {known.filename} (sha256 {known.sha256[:12]}…): streamd models export "
            f"--family {known.family} --from PATH/{known.filename} --name {known.name}"
        ) from None
    except ValueError as exc:  # pooch: the hash does not match; the download is already removed
        got = re.search(r"but got (\w+)", str(exc))
        raise ModelError(
            f"{url}: sha256 {got[1] if got else '(unknown)'} does not match the published "
            f"{known.sha256}; not installed"
        ) from None
    return Path(path)


def _reason(exc: Exception) -> str:
    """The innermost cause, e.g. "Connection refused", not requests' nested repr."""
    while exc.__context__ is not None and isinstance(exc.__context__, Exception):
        exc = exc.__context__
    return str(exc).split("] ")[-1].split(" for url: ")[0] or type(exc).__name__


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
