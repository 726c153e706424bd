"""Download public dataset files into the local cache: resumable, verified, atomically renamed.

A file is fetched from `<base>/<dataset folder>/<file>` when a mirror base URL is
given (`--base-url` or $SOUTUI_DATA_URL), else from its public origin in the
`DATASETS` registry (several originals need a login, and the registry says so). Bytes
go to `<file>.part`; an interrupted download resumes from there when the server
honours Range requests; the file is checked against the known size / sha256 and only
then renamed into place, so the cache never holds a half-written or wrong file.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from soutui.data.checksums import sha256_file as sha256_of
from soutui.data.importers.base import DataError
from soutui.data.sources import RemoteFile, cache_dir, info

URL_ENV = "SOUTUI_DATA_URL"
CHUNK = 1 << 16
TIMEOUT_S = 60


def _verified(path: Path, f: RemoteFile) -> bool:
    if f.size is not None and path.stat().st_size != f.size:
        return False
    return f.sha256 is None or sha256_of(path) == f.sha256


def _url_for(dataset: str, folder: str, f: RemoteFile, base_url: str | None) -> str | None:
    if base_url:
        return f"{base_url.rstrip('/')}/{folder}/{f.name}"
    return f.url


def download(url: str, dest: Path, f: RemoteFile, progress: bool = True) -> None:
    """Fetch `url` to `dest` via `dest.part` (resumed if present), verify, rename."""
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"User-Agent": "soutui-fetch"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(req, timeout=TIMEOUT_S)  # noqa: S310 (http/https URLs from config)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # range not satisfiable: the .part is already complete
            resp = None
        else:
            raise DataError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise DataError(f"download of {url} failed: {getattr(exc, 'reason', exc)}") from exc
    if resp is not None:
        with resp:
            resumed = resp.status == 206
            mode = "ab" if resumed else "wb"
            length = resp.headers.get("Content-Length")
            total = (int(length) + (have if resumed else 0)) if length else f.size
            with (
                open(part, mode) as out,
                tqdm(
                    total=total,
                    initial=have if resumed else 0,
                    unit="B",
                    unit_scale=True,
                    desc=f.name,
                    disable=not progress,
                    file=sys.stderr,
                ) as bar,
            ):
                while block := resp.read(CHUNK):
                    out.write(block)
                    bar.update(len(block))
    if f.size is not None and part.stat().st_size != f.size:
        size = part.stat().st_size
        if size > f.size:
            part.unlink()
        raise DataError(f"{url}: got {size} bytes, expected {f.size}; run the fetch again to resume")
    if f.sha256 is not None and sha256_of(part) != f.sha256:
        part.unlink()
        raise DataError(
            f"{url}: sha256 mismatch (expected {f.sha256}); the file was discarded, check the mirror"
        )
    os.replace(part, dest)


def fetch_dataset(
    name: str, base_url: str | None = None, cache: str | Path | None = None, progress: bool = True
) -> dict[str, object]:
    """Download dataset `name` into `<cache>/<folder>/`; returns what was fetched / already there."""
    d = info(name)
    base_url = base_url or os.environ.get(URL_ENV) or None
    root = Path(cache) if cache else cache_dir()
    folder = root / d.folder
    folder.mkdir(parents=True, exist_ok=True)
    fetched, present, skipped = [], [], []
    for f in d.files:
        dest = folder / f.name
        if dest.exists() and _verified(dest, f):
            present.append(f.name)
            continue
        url = _url_for(name, d.folder, f, base_url)
        if url is None:
            if f.name in d.required:
                raise DataError(
                    f"{name}: {f.name} has no public download URL ({d.license}); pass --base-url of a mirror "
                    f"laid out as <base>/{d.folder}/{f.name}, or set ${URL_ENV}"
                )
            skipped.append(f.name)
            continue
        download(url, dest, f, progress)
        fetched.append(f.name)
    return {"dataset": name, "dir": str(root), "fetched": fetched, "present": present, "skipped": skipped}
