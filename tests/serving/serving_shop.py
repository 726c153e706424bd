"""A small synthetic shop (catalogue, events, store, bundle) with a known structure.

Items come in 4 categories; users browse within one category, so a personalised
model must recommend from that category while trending does not care.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from soutui.data.sequences import SequenceData
from soutui.data.store import open_store
from soutui.models.itemknn import ItemKNN
from soutui.models.popularity import Popularity
from soutui.serving.bundle_build import catalogue_in_index_order, write_bundle

CATS = ["Beauty > Skin", "Beauty > Hair", "Beauty > Nails", "Home > Kitchen"]
API_KEY = "test-key-123"
WORKER = "x-soutui-worker"  # the response header naming the worker process that answered


def make_shop(n_items: int = 40, n_users: int = 60, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    items = pd.DataFrame(
        {
            "item_id": [f"i{j}" for j in range(n_items)],
            "title": [f"产品 {j} 润肤霜" if j == 3 else f"Product {j}" for j in range(n_items)],
            "category": [CATS[j % 4] for j in range(n_items)],
            "brand": [f"brand{j % 3}" for j in range(n_items)],
            "price": [5.0 + j for j in range(n_items)],
            "in_stock": [j != 7 for j in range(n_items)],  # i7 is out of stock
        }
    )
    rows = []
    for u in range(n_users):
        cat = u % 4
        pool = [j for j in range(n_items) if j % 4 == cat]
        for t, j in enumerate(rng.choice(pool, size=8)):
            etype = "purchase" if t == 7 else "view"
            rows.append((f"e{u}-{t}", f"u{u}", f"i{j}", etype, 1_700_000_000 + u * 100 + t))
    events = pd.DataFrame(rows, columns=["event_id", "user_id", "item_id", "event_type", "ts"])
    return items, events


def build_shop_bundle(out: Path, items: pd.DataFrame, events: pd.DataFrame, **kw: Any) -> Path:
    data = SequenceData.from_events(events, items)
    cat = catalogue_in_index_order(items, data.item_ids)
    models = {"popularity": Popularity().fit(data), "itemknn": ItemKNN().fit(data)}
    evaluation = {"protocol": "synthetic", "models": {"itemknn": {"test": {"NDCG@10": 0.5}}}, "plots": []}

    def search(tmp: Path) -> dict[str, Any]:
        from soutui.search.engine import SearchEngine

        SearchEngine.build(cat, tmp / "search", popularity=np.bincount(np.concatenate(data.sequences), minlength=len(cat)))
        return {"search": {"dir": "search"}}

    extra = search if kw.pop("search", True) else None
    return write_bundle(out, "shop", cat, models, kw.pop("default", "itemknn"), evaluation, extra, **kw)


def make_home(tmp: Path, shop: tuple[pd.DataFrame, pd.DataFrame]) -> str:
    """A fresh DuckDB store holding the shop dataset; returns its URL."""
    return write_shop(f"duckdb://{tmp / 'store.duckdb'}", shop)


def write_shop(url: str, shop: tuple[pd.DataFrame, pd.DataFrame]) -> str:
    """Write the shop as dataset "shop" into the store at `url`; returns the URL."""
    store = open_store(url)
    try:
        store.write_dataset("shop", {"items": shop[0], "events": shop[1]})
    finally:
        store.close()
    return url


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(path: Path, **settings: Any) -> Path:
    """A ServeSettings TOML file (flat keys only)."""
    lines = [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def start_server(config: Path, env: dict[str, str] | None = None, timeout: float = 60.0) -> tuple[Any, str]:
    """`soutui serve --config` in a subprocess; waits for /healthz. Returns (process, base URL)."""
    import os
    import subprocess
    import sys
    import time
    import tomllib

    import httpx

    port = tomllib.loads(config.read_text())["port"]
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from soutui.cli import main; sys.exit(main())", "serve", "--config", str(config)],
        env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stdout.read().decode() if proc.stdout else ''}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start in time")


def shop_database(pg_server: Any, shop: tuple[pd.DataFrame, pd.DataFrame]) -> str:
    """A fresh PostgreSQL database (tests/pg_server.py) holding the shop as dataset "shop"; its URL."""
    return write_shop(str(pg_server.create_database()), shop)


def wait_workers(url: str, n: int, timeout: float = 90.0) -> list[int]:
    """Poll /healthz on new connections until `n` distinct workers have answered; their pids, sorted."""
    import time

    import httpx

    seen: set[int] = set()
    deadline = time.time() + timeout
    while len(seen) < n and time.time() < deadline:
        try:
            seen.add(int(httpx.get(url + "/healthz", timeout=5).headers[WORKER]))
        except httpx.HTTPError:
            time.sleep(0.1)
    assert len(seen) >= n, f"only workers {seen} answered in {timeout} s"
    return sorted(seen)
