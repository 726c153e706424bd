"""DuckDB vs PostgreSQL store on Amazon Beauty: import, read, append, and copying a dataset over.

Starts its own throwaway PostgreSQL (tests/pg_server.py: Debian's initdb/pg_ctl, fsync off, so
the figures are the store's work, not the disk's) and a private DuckDB file. For each store:
`soutui data import amazon-beauty --store URL` timed as a whole CLI run (parse + clean + write),
the median of 3 full reads of the events table, one 1,000-event append, and the median of 50
one-event appends. Then the docs/production.md recipe copies the DuckDB dataset into a fresh
PostgreSQL database. Prints one JSON object; the machine's load average goes with it.

    .venv/bin/python benchmarks/store_postgres.py [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from pg_server import start_server  # noqa: E402

from soutui.data.postgres_store import close_pools  # noqa: E402
from soutui.data.store import open_store  # noqa: E402

DATASET = "amazon-beauty"


def _loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def _measure(url: str, home: str) -> dict[str, Any]:
    env = {**os.environ, "SOUTUI_HOME": home, "OMP_NUM_THREADS": "1"}
    t = time.monotonic()
    run = subprocess.run([str(ROOT / ".venv/bin/soutui"), "data", "import", DATASET, "--store", url, "--json"],
                         capture_output=True, text=True, env=env)  # fmt: skip
    import_s = time.monotonic() - t
    if run.returncode != 0:
        raise SystemExit(f"import failed: {run.stderr[-2000:]}")
    store = open_store(url)
    try:
        reads = []
        for _ in range(3):
            t = time.monotonic()
            events = store.read(DATASET, "events")
            reads.append(time.monotonic() - t)
        batch = pd.DataFrame({"event_id": [f"bench{k}" for k in range(1000)], "user_id": "bench",
                              "item_id": "i", "event_type": "view", "ts": 1})  # fmt: skip
        t = time.monotonic()
        assert store.append_events(DATASET, batch) == 1000
        append_1000 = time.monotonic() - t
        one = []
        for k in range(50):
            t = time.monotonic()
            store.append_events(DATASET, batch.iloc[[0]].assign(event_id=f"one{k}"))
            one.append(time.monotonic() - t)
    finally:
        store.close()
    return {"import_cli_s": round(import_s, 2), "events": len(events),
            "read_events_median_s": round(statistics.median(reads), 3), "append_1000_s": round(append_1000, 3),
            "append_1_median_ms": round(1000 * statistics.median(one), 1), "loadavg_after": _loadavg()}  # fmt: skip


def _copy_over(src_url: str, dst_url: str) -> float:
    """The docs/production.md recipe: every dataset of a DuckDB store into PostgreSQL."""
    t = time.monotonic()
    src, dst = open_store(src_url, read_only=True), open_store(dst_url)
    for name in src.datasets():
        tables = {t: src.read(name, t) for t in ("items", "users", "events")}
        dst.write_dataset(src.meta(name).get("name", name), tables, src.read(name, "quarantine"), src.meta(name))
    src.close()
    dst.close()
    return time.monotonic() - t


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).add_argument("--json", action="store_true")
    out: dict[str, Any] = {"loadavg_before": _loadavg(), "cores": os.cpu_count()}
    server = start_server()
    try:
        with tempfile.TemporaryDirectory(prefix="soutui-store-bench-") as home:
            duck = f"duckdb://{home}/soutui.duckdb"
            for kind, url in (("duckdb", duck), ("postgresql", server.create_database("beauty"))):
                print(f"store_postgres: {kind} ...", file=sys.stderr, flush=True)
                out[kind] = _measure(url, home)
            copy_url = server.create_database("copied")
            out["copy_duckdb_to_postgresql_s"] = round(_copy_over(duck, copy_url), 2)
            copied = open_store(copy_url, read_only=True)
            out["copied_events"] = len(copied.read(DATASET, "events"))
            copied.close()
    finally:
        close_pools()
        server.stop()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
