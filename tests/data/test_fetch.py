"""Fetch against a local HTTP mirror of ../shared/data, then import from the cache."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from soutui.data import fetch as fetch_mod
from soutui.data.datasets import RemoteFile, find_data_dir, load_dataset
from soutui.data.fetch import download, fetch_dataset
from soutui.data.importers.base import DataError


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def serve() -> Iterator[Callable[[Path], str]]:
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(root: Path) -> str:
        handler = functools.partial(_Quiet, directory=str(root))
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}"

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def test_fetch_then_import_from_cache(
    serve: Callable[[Path], str], needs: Callable[[str], Path], tmp_path: Path, store_url: str
) -> None:
    root = needs("amazon-beauty")
    base = serve(root)
    result = fetch_dataset("amazon-beauty", base_url=base, progress=False)
    assert sorted(result["fetched"]) == sorted(  # type: ignore[arg-type]
        ["beauty_interactions.tsv", "beauty_item_titles.tsv", "Beauty_item2attributes.json", "Beauty.txt"]
    )
    cache = tmp_path / "cache" / "datasets"  # $SOUTUI_CACHE from conftest
    assert not list(cache.rglob("*.part"))
    again = fetch_dataset("amazon-beauty", base_url=base, progress=False)
    assert again["fetched"] == [] and len(again["present"]) == 4  # type: ignore[arg-type]
    # the cache is the last place find_data_dir looks; point the checkout candidates elsewhere
    assert find_data_dir(cache) == cache.resolve()
    items, events = load_dataset("amazon-beauty", store_url=store_url, data_dir=cache, progress=False)
    assert len(items) == 12101 and len(events) == 198502


def test_download_checks_and_resumes(serve: Callable[[Path], str], tmp_path: Path) -> None:
    src = tmp_path / "mirror" / "ds"
    src.mkdir(parents=True)
    payload = b"0123456789" * 1000
    (src / "f.bin").write_bytes(payload)
    base = serve(tmp_path / "mirror")
    good = RemoteFile("f.bin", None, hashlib.sha256(payload).hexdigest(), len(payload))
    dest = tmp_path / "out" / "f.bin"
    dest.parent.mkdir()
    # a stale partial download: the server ignores Range (HTTP 200), so it restarts cleanly
    dest.with_name("f.bin.part").write_bytes(b"garbage")
    download(f"{base}/ds/f.bin", dest, good, progress=False)
    assert dest.read_bytes() == payload and not dest.with_name("f.bin.part").exists()
    wrong = RemoteFile("f.bin", None, "0" * 64, len(payload))
    with pytest.raises(DataError, match="sha256 mismatch"):
        download(f"{base}/ds/f.bin", tmp_path / "out" / "g.bin", wrong, progress=False)
    assert not (tmp_path / "out" / "g.bin").exists() and not (tmp_path / "out" / "g.bin.part").exists()
    with pytest.raises(DataError, match="HTTP 404"):
        download(f"{base}/ds/missing.bin", tmp_path / "out" / "m.bin", good, progress=False)


def test_no_public_url_says_use_a_mirror(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(fetch_mod.URL_ENV, raising=False)
    with pytest.raises(DataError, match="--base-url"):
        fetch_dataset("homedepot-search", progress=False)
