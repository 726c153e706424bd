"""Open-loop load test of a running soutui server: fixed request rate, fixed duration.

Open loop means requests are *scheduled* at a fixed rate whatever the server's speed,
and latency is measured from the scheduled send time, so a slow server cannot hide
queueing delay by slowing the generator down (no coordinated omission). Run it in its
own process, against loopback only:

    soutui serve --bundle BUNDLE &                       # the server under test
    python benchmarks/load_test.py --url http://127.0.0.1:8000 --rate 200 --duration 20

Users are drawn from /v1/demo-users (with history) and made-up ids (cold start);
queries from a fixed list of beauty-shop queries.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from typing import Any
from urllib.parse import urlparse

import httpx
import numpy as np

QUERIES = ["shampoo", "red lipstick", "nail polish", "face cream for dry skin", "eyeliner waterproof",
           "hair dryer", "perfume", "sunscreen spf 50", "makeup brush set", "anti aging serum",
           "moisturizer", "conditioner", "lip balm", "body lotion", "mascara", "润肤霜"]


def percentiles(lat_ms: list[float]) -> dict[str, float]:
    if not lat_ms:
        return {"p50_ms": float("nan"), "p95_ms": float("nan"), "p99_ms": float("nan"), "max_ms": float("nan")}
    a = np.array(lat_ms)
    return {f"p{p}_ms": round(float(np.percentile(a, p)), 2) for p in (50, 95, 99)} | {"max_ms": round(float(a.max()), 2)}


async def run(url: str, path_fn: Any, rate: float, duration: float, timeout: float) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    lat: list[float] = []
    errors: dict[str, int] = {}
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout) as client:
        # warm up connections and caches (not measured)
        await asyncio.gather(*(client.get(path_fn()) for _ in range(20)))
        n = int(rate * duration)
        start = time.perf_counter() + 0.05
        tasks = []

        async def one(t_sched: float) -> None:
            delay = t_sched - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                r = await client.get(path_fn())
                if r.status_code >= 400:
                    errors[str(r.status_code)] = errors.get(str(r.status_code), 0) + 1
            except httpx.HTTPError as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            lat.append((time.perf_counter() - t_sched) * 1000)

        for i in range(n):
            tasks.append(asyncio.create_task(one(start + i / rate)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    return {"requests": n, "achieved_rate": round(n / elapsed, 1), "errors": sum(errors.values()),
            "error_kinds": errors, **percentiles(lat)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--rate", type=float, default=200.0, help="requests per second (open loop)")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per endpoint")
    ap.add_argument("--endpoints", default="recommend,search", help="comma list: recommend,search,similar,trending")
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    host = urlparse(args.url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        print("load_test: refusing to load a non-loopback host", file=sys.stderr)
        return 2
    rng = random.Random(0)
    users = httpx.get(args.url + "/v1/demo-users", params={"n": 50}).json()["users"] or ["cold"]
    items = [it["item_id"] for it in httpx.get(args.url + "/v1/trending", params={"k": 100}).json()["items"]]
    paths = {
        # 80% users with history, 20% cold-start ids
        "recommend": lambda: f"/v1/recommend/{rng.choice(users) if rng.random() < 0.8 else f'cold-{rng.randrange(10**6)}'}?k=10",
        "search": lambda: f"/v1/search?q={rng.choice(QUERIES)}&k=10",
        "similar": lambda: f"/v1/similar/{rng.choice(items)}?k=10",
        "trending": lambda: "/v1/trending?k=10",
    }
    bundle = httpx.get(args.url + "/healthz").json()["bundle"]
    results = {}
    for ep in args.endpoints.split(","):
        results[ep] = asyncio.run(run(args.url, paths[ep], args.rate, args.duration, args.timeout))
    report = {"protocol": f"open loop, {args.rate:g} req/s for {args.duration:g} s per endpoint, loopback, "
                          "latency from scheduled send time, 20 warm-up requests not counted",
              "bundle": bundle, "results": results}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(report["protocol"])
        print(f"bundle: {bundle}")
        print(f"{'endpoint':<10} {'rate':>7} {'p50':>7} {'p95':>7} {'p99':>7} {'max':>8} {'errors':>6}")
        for ep, r in results.items():
            print(f"{ep:<10} {r['achieved_rate']:>7} {r['p50_ms']:>7} {r['p95_ms']:>7} {r['p99_ms']:>7} {r['max_ms']:>8} {r['errors']:>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
