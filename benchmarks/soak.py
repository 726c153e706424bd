"""Soak test: open-loop mixed load (recommend, search, events) for minutes; pass or fail.

Reuses load_test.py's generator (open loop, latency from the scheduled send time, raw
keep-alive sockets) and its server start (pinned to a CPU, read key). The server gets a
write key and its own event log, so events are real writes: fsync'd, copied to the store.

Pass = 0 errors, server RSS growth under 5 % from the end of the warm-up to the end, and
every acknowledged event in the store exactly once after the server stopped (a clean
SIGTERM: the store sync flushes on shutdown; kill -9 durability is tests/serving's job).

    python benchmarks/soak.py --bundle BUNDLE --store duckdb:///scratch/soutui.duckdb --minutes 10

The events are appended to the store's dataset: point --store at a scratch copy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent))
import load_test as lt  # noqa: E402 - the benchmarks folder is not a package

MIX = {"recommend": 0.4, "search": 0.4, "events": 0.2}


def post_bytes(host: str, port: int, path: str, body: bytes, key: str) -> bytes:
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"X-API-Key: {key}\r\nContent-Length: {len(body)}\r\n\r\n")  # fmt: skip
    return head.encode() + body


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class RssSampler(threading.Thread):
    """The server's resident memory every `every_s` seconds while the load runs."""

    def __init__(self, pid: int, every_s: float = 5.0) -> None:
        super().__init__(daemon=True)
        self.pid, self.every_s = pid, every_s
        self.samples: list[float] = []
        self._stop_evt = threading.Event()

    def run(self) -> None:
        while not self._stop_evt.wait(self.every_s):
            self.samples.append(rss_mb(self.pid))

    def stop(self) -> None:
        self._stop_evt.set()
        self.join()


def mixed_requests(
    n: int, host: str, port: int, read_key: str, write_key: str, pools: dict[str, list[str]], rng: random.Random,
    prefix: str,
) -> tuple[list[bytes], list[str]]:
    """`n` requests drawn by MIX; each event request carries one new event. Returns (requests, event ids)."""
    reqs: list[bytes] = []
    event_ids: list[str] = []
    kinds = rng.choices(list(MIX), weights=list(MIX.values()), k=n)
    for i, kind in enumerate(kinds):
        if kind == "recommend":
            path = f"/v1/recommend/{quote(rng.choice(pools['users']), safe='')}?k=10"
            reqs.append(lt.request_bytes(host, port, path, read_key))
        elif kind == "search":
            reqs.append(lt.request_bytes(host, port, f"/v1/search?q={quote(rng.choice(pools['queries']))}&k=10", read_key))
        else:
            eid = f"{prefix}-{i}"
            ev = {"event_id": eid, "user_id": rng.choice(pools["users"]), "item_id": rng.choice(pools["items"]),
                  "event_type": rng.choice(("view", "view", "click", "cart", "purchase"))}  # fmt: skip
            reqs.append(post_bytes(host, port, "/v1/events", json.dumps({"events": [ev]}).encode(), write_key))
            event_ids.append(eid)
    return reqs, event_ids


def missing_events(store_url: str, dataset: str, ids: list[str]) -> tuple[int, int]:
    """(acknowledged events not in the store, those stored more than once)."""
    from soutui.data.store import open_store

    store = open_store(store_url, read_only=True)
    try:
        stored = store.read(dataset, "events")["event_id"].astype(str)
    finally:
        store.close()
    counts = stored[stored.isin(set(ids))].value_counts()
    return len(set(ids) - set(counts.index)), int((counts > 1).sum())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", required=True, help="bundle dir the started server serves")
    ap.add_argument("--store", required=True, help="store URL holding the dataset (events are appended to it)")
    ap.add_argument("--minutes", type=float, default=10.0, help="measured duration after the warm-up")
    ap.add_argument("--warmup", type=float, default=60.0, help="seconds of the same load before measuring")
    ap.add_argument("--rate", type=float, default=200.0, help="requests per second (open loop)")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--pool", type=int, default=20000, help="distinct users / queries drawn (large: a small pool flatters the search cache)")
    ap.add_argument("--server-cpu", type=int, default=1, help="CPU the server is pinned to (-1: none)")
    ap.add_argument("--load-cpu", type=int, default=0, help="CPU the generator pins itself to (-1: none)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    read_key, write_key = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    with tempfile.TemporaryDirectory(prefix="soutui-soak-") as tmp:
        cfg = Path(tmp) / "serve.toml"
        cfg.write_text(f'api_key = "{write_key}"\nstore = "{args.store}"\nevent_log = "{tmp}/events.jsonl"\n')
        port = lt.free_port()
        cpus = os.sched_getaffinity(0)
        cpu = args.server_cpu if args.server_cpu in cpus else None
        if args.load_cpu in cpus:
            os.sched_setaffinity(0, {args.load_cpu})
        proc = lt.start_server(args.bundle, port, cpu, str(cfg), read_key)
        try:
            report = _soak(args, rng, port, proc.pid, read_key, write_key)
        finally:
            proc.terminate()  # graceful: the store sync flushes what it still holds
            proc.wait(60)
    dataset = report["dataset"]
    report["missing_events"], report["duplicated_events"] = missing_events(args.store, dataset, report.pop("ids"))
    report["pass"] = (report["errors"] == 0 and report["rss_growth_pct"] < 5.0 and report["missing_events"] == 0
                      and report["duplicated_events"] == 0)  # fmt: skip
    print(json.dumps(report, indent=2))
    return 0 if report["pass"] else 1


def _soak(args: argparse.Namespace, rng: random.Random, port: int, pid: int, read_key: str, write_key: str) -> dict[str, Any]:
    url, host = f"http://127.0.0.1:{port}", "127.0.0.1"
    info = lt.get_json(url + "/v1/admin/bundle", read_key)
    dataset = info["manifest"]["dataset"]
    pools = {
        "users": lt.real_users(args.store, dataset, args.pool, rng),
        "queries": lt.title_queries(Path(args.bundle) / "items.parquet", args.pool, rng),
        "items": [it["item_id"] for it in lt.get_json(url + "/v1/trending?k=100", read_key)["items"]],
    }
    prefix = f"soak-{int(time.time())}"
    warm, warm_ids = mixed_requests(int(args.rate * args.warmup), host, port, read_key, write_key, pools, rng, prefix + "w")
    n = int(args.rate * args.minutes * 60)
    reqs, ids = mixed_requests(n, host, port, read_key, write_key, pools, rng, prefix)
    load_before = round(os.getloadavg()[0], 2)
    w = asyncio.run(lt.run_endpoint(host, port, warm, args.rate, args.warmup, args.connections, 5.0))
    rss_warm = rss_mb(pid)
    cache0 = lt.get_json(url + "/v1/admin/stats", read_key)["search_cache"]
    sampler = RssSampler(pid)
    sampler.start()
    cpu0 = lt.cpu_seconds(pid)
    r = asyncio.run(lt.run_endpoint(host, port, reqs, args.rate, args.minutes * 60, args.connections, 5.0))
    cpu1 = lt.cpu_seconds(pid)
    sampler.stop()
    rss_end = rss_mb(pid)
    cache1 = lt.get_json(url + "/v1/admin/stats", read_key)["search_cache"]
    hits, misses = cache1["hits"] - cache0["hits"], cache1["misses"] - cache0["misses"]
    return {
        "protocol": f"open loop {args.rate:g} req/s, mix {MIX} (one event per POST), {args.warmup:g} s warm-up "
        f"then {args.minutes:g} min measured, {args.connections} keep-alive connections, latency from the "
        f"scheduled send time; users/queries: {args.pool} draws (store users, title words)",
        "bundle": info["version"], "dataset": dataset,
        "requests": r["requests"], "completed": r["completed"], "achieved_rate": r["achieved_rate"],
        "errors": r["errors"] + w["errors"], "error_kinds": {**w["error_kinds"], **r["error_kinds"]},
        "latency_ms_all_kinds": {k: r.get(k) for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")},
        "search_cache_hit_rate": round(hits / max(1, hits + misses), 3),
        "server_cpu_ms_per_req": round((cpu1 - cpu0) * 1000 / max(1, r["completed"]), 3) if cpu0 and cpu1 else None,
        "rss_mb_after_warmup": round(rss_warm, 1), "rss_mb_end": round(rss_end, 1),
        "rss_mb_max": round(max([rss_end, *sampler.samples]), 1),
        "rss_growth_pct": round(100 * (rss_end - rss_warm) / rss_warm, 2),
        "rss_mb_every_5s": [round(x) for x in sampler.samples],  # a plateau or a climb?
        "load_before": load_before, "load_after": round(os.getloadavg()[0], 2),
        "events_acked": len(ids) + len(warm_ids), "ids": ids + warm_ids,
    }


if __name__ == "__main__":
    sys.exit(main())
