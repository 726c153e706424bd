"""Open-loop load test of a soutui server on loopback: fixed request rate, fixed duration.

Open loop: requests are *scheduled* at a fixed rate whatever the server's speed and
latency is measured from the scheduled send time, so a slow server (or a late
generator) cannot hide queueing delay (no coordinated omission). The generator is
cheap per request: raw asyncio sockets, HTTP/1.1 keep-alive over a few persistent
connections, request bytes prepared before the clock starts, responses checked by
status line and Content-Length only. It pins itself to one CPU and, when it starts
the server itself (`--bundle`), pins the server to the other, so the two never compete
with each other for a core (other processes on the machine still can: the load average
is printed before and after, and the server's CPU time per request, which depends far
less on how busy the machine is than latency does):

    python benchmarks/load_test.py --bundle BUNDLE --rate 200 --duration 20    # starts + stops the server
    python benchmarks/load_test.py --url http://127.0.0.1:8000 --rate 200      # a server you started

Worker scaling (`--find-max 20`): the rate is raised step by step (x`--step`) from `--rate` until
/v1/recommend's p99 exceeds 20 ms or a request fails; the last passing rate is the throughput at
p99 <= 20 ms. With `--workers 2 --server-cpus 0,1 --store postgresql://...` the started server runs
two workers (each a process; their CPU time is summed from /proc):

    python benchmarks/load_test.py --bundle B --store postgresql://... --workers 2 --server-cpus 0,1 \
        --load-cpu 0 --endpoints recommend --find-max 20 --rate 100 --duration 10

Recommend users are drawn uniformly from the real users in the store (all have a
history); search queries are 1-3 consecutive words cut from random real catalogue
titles. Loopback only; the run is bounded by --duration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

import numpy as np

LOOPBACK = ("127.0.0.1", "localhost", "::1")


# --- request material (prepared before the clock starts) ---------------------------


def real_users(store_url: str | None, dataset: str, n: int, rng: random.Random) -> list[str]:
    """`n` users drawn uniformly from the dataset's users in the store."""
    from soutui.data.store import open_store

    store = open_store(store_url or None, read_only=True)  # the server may hold it too
    try:
        users = sorted(set(store.read(dataset, "events")["user_id"].astype(str)))
    finally:
        store.close()
    return [rng.choice(users) for _ in range(n)]


def title_queries(items_parquet: Path, n: int, rng: random.Random) -> list[str]:
    """`n` queries of 1-3 consecutive alphabetic words from random catalogue titles."""
    import pandas as pd

    titles = pd.read_parquet(items_parquet, columns=["title"])["title"].dropna().astype(str).tolist()
    out: list[str] = []
    while len(out) < n:
        words = re.findall(r"[^\W\d_]{3,}", rng.choice(titles).lower())
        if not words:
            continue
        w = rng.choice((1, 2, 2, 3))
        s = rng.randrange(max(1, len(words) - w + 1))
        out.append(" ".join(words[s : s + w]))
    return out


def request_bytes(host: str, port: int, path: str, key: str = "") -> bytes:
    auth = f"X-API-Key: {key}\r\n" if key else ""
    return f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: application/json\r\n{auth}\r\n".encode()


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of a process (all its threads), from /proc; None if unknown."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int | None) -> dict[int, float]:
    """CPU seconds of a process and of its children (uvicorn's worker processes), by pid."""
    if pid is None:
        return {}
    out: dict[int, float] = {}
    todo = [pid]
    while todo:
        p = todo.pop()
        cpu = cpu_seconds(p)
        if cpu is None:
            continue
        out[p] = cpu
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            try:
                todo += [int(c) for c in task.read_text().split()]
            except OSError:
                pass
    return out


def get_json(url: str, key: str = "") -> Any:
    req = urllib.request.Request(url, headers={"X-API-Key": key} if key else {})
    with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 (loopback only, checked)
        return json.loads(r.read())


# --- the generator ------------------------------------------------------------------


async def _read_response(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 response; return its status. Bodies are skipped, not parsed."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    i = head.lower().find(b"content-length:")
    if i < 0:
        raise ConnectionError("response without Content-Length (chunked responses are not expected here)")
    length = int(head[i + 15 : head.index(b"\r\n", i)])
    await reader.readexactly(length)
    return status


async def run_endpoint(
    host: str, port: int, reqs: list[bytes], rate: float, duration: float, conns: int, timeout: float
) -> dict[str, Any]:
    """Send reqs[i] at start + i/rate over `conns` keep-alive connections; latencies from schedule."""
    n = int(rate * duration)
    queue: asyncio.Queue[tuple[int, float, bytes] | None] = asyncio.Queue()
    lat = np.full(n, np.nan)
    lag = np.full(n, np.nan)  # generator side: pick-up time minus scheduled time
    errors: dict[str, int] = {}
    done = 0

    async def worker() -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection(host, port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while (job := await queue.get()) is not None:
            i, t_sched, req = job
            lag[i] = time.perf_counter() - t_sched
            try:
                writer.write(req)
                status = await asyncio.wait_for(_read_response(reader), timeout)
                if status >= 400:
                    errors[str(status)] = errors.get(str(status), 0) + 1
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
            lat[i] = time.perf_counter() - t_sched
            done += 1
        writer.close()

    # warm-up (not measured): each connection answers a few requests
    for r in reqs[: 4 * conns]:
        w_reader, w_writer = await asyncio.open_connection(host, port)
        w_writer.write(r)
        await _read_response(w_reader)
        w_writer.close()
    workers = [asyncio.create_task(worker()) for _ in range(conns)]
    await asyncio.sleep(0.2)
    start = time.perf_counter() + 0.05
    for i in range(n):
        t = start + i / rate
        delay = t - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((i, t, reqs[i % len(reqs)]))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    elapsed = time.perf_counter() - start
    ms = lat[~np.isnan(lat)] * 1000
    pct = {f"p{p}_ms": round(float(np.percentile(ms, p)), 2) for p in (50, 95, 99)} if len(ms) else {}
    return {
        "requests": n,
        "completed": done,
        "achieved_rate": round(done / elapsed, 1),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        **pct,
        "max_ms": round(float(ms.max()), 2) if len(ms) else None,
        "generator_lag_p99_ms": round(float(np.nanpercentile(lag, 99) * 1000), 2),
    }


# --- server process (optional) -------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    bundle: str, port: int, cpu: int | None, config: str | None, read_key: str,
    workers: int = 1, store: str | None = None, cpus: set[int] | None = None,
) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-c",
        "import sys; from soutui.cli import main; sys.exit(main())",
        "serve",
        "--bundle",
        bundle,
        "--port",
        str(port),
    ]
    if config:
        cmd += ["--config", config]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    if store:
        cmd += ["--store", store]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("SOUTUI_API_KEY", None)  # read-only load: write endpoints stay disabled
    env["SOUTUI_READ_KEY"] = read_key  # reads need a key outside demo mode; every request sends it
    pin = cpus if cpus else ({cpu} if cpu is not None else None)
    pre = (lambda: os.sched_setaffinity(0, pin)) if pin else None  # workers inherit the parent's CPU set
    proc = subprocess.Popen(cmd, env=env, preexec_fn=pre, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(
                f"load_test: the server exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}"
            )
        try:
            get_json(f"http://127.0.0.1:{port}/healthz", read_key)
            return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("load_test: the server did not answer /healthz within 180 s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default=None, help="a running server (loopback), e.g. http://127.0.0.1:8000")
    ap.add_argument(
        "--bundle", default=None, help="start `soutui serve` on this bundle (pinned to --server-cpu)"
    )
    ap.add_argument("--config", default=None, help="serve TOML passed to the started server")
    ap.add_argument("--rate", type=float, default=200.0, help="requests per second (open loop)")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per endpoint (5..300)")
    ap.add_argument(
        "--endpoints", default="recommend,search", help="comma list: recommend,search,similar,trending"
    )
    ap.add_argument("--connections", type=int, default=8, help="persistent keep-alive connections")
    ap.add_argument("--timeout", type=float, default=5.0, help="per-request timeout (counted as an error)")
    ap.add_argument("--store", default=None, help="store URL holding the dataset's events (users)")
    ap.add_argument("--pool", type=int, default=20000, help="distinct users / queries drawn (large: a small pool flatters the search cache)")
    ap.add_argument("--load-cpu", type=int, default=0, help="CPU the generator pins itself to (-1: none)")
    ap.add_argument(
        "--server-cpu", type=int, default=1, help="CPU the started server is pinned to (-1: none)"
    )
    ap.add_argument(
        "--server-pid", type=int, default=None, help="with --url: the server's pid, to report its CPU"
    )
    ap.add_argument("--key", default=os.environ.get("SOUTUI_READ_KEY", ""),
                    help="with --url: the server's read key (default $SOUTUI_READ_KEY)")
    ap.add_argument("--items", default=None,
                    help="with --url: the bundle's items.parquet (query pool); default: the bundle dir given by --bundle")
    ap.add_argument("--workers", type=int, default=1, help="with --bundle: server worker processes (> 1 needs --store postgresql://)")
    ap.add_argument("--server-cpus", default=None, help="with --bundle: CPU list for the server and its workers, e.g. 0,1")
    ap.add_argument("--find-max", type=float, default=None, metavar="P99_MS",
                    help="raise the rate from --rate by x--step until p99 > P99_MS (first endpoint only)")
    ap.add_argument("--step", type=float, default=1.25, help="rate factor between --find-max steps")
    ap.add_argument("--max-steps", type=int, default=12, help="most --find-max steps")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if not 5 <= args.duration <= 300 or not 0 < args.rate <= 5000:
        print("load_test: --duration must be 5..300 s and --rate 0..5000 req/s", file=sys.stderr)
        return 2
    if (args.url is None) == (args.bundle is None):
        print(
            "load_test: give exactly one of --url (a running server) or --bundle (start one)", file=sys.stderr
        )
        return 2
    cpus = os.sched_getaffinity(0)
    load_cpu = args.load_cpu if args.load_cpu >= 0 and args.load_cpu in cpus else None
    server_cpu = args.server_cpu if args.server_cpu >= 0 and args.server_cpu in cpus else None
    server_cpus = {int(c) for c in args.server_cpus.split(",")} & cpus if args.server_cpus else None
    if load_cpu is not None:
        os.sched_setaffinity(0, {load_cpu})
    proc = None
    if args.bundle:
        port = free_port()
        args.key = secrets.token_urlsafe(16)
        proc = start_server(args.bundle, port, server_cpu, args.config, args.key, args.workers, args.store, server_cpus)
        url = f"http://127.0.0.1:{port}"
    else:
        url = args.url.rstrip("/")
        if urlparse(url).hostname not in LOOPBACK:
            print("load_test: refusing to load a non-loopback host", file=sys.stderr)
            return 2
        server_cpu = None
    try:
        report = _run(url, args, load_cpu, server_cpu, proc)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    if args.json:
        print(json.dumps(report, indent=2))
    elif args.find_max is not None:
        print_find_max(report)
    else:
        print_report(report)
    return 0


def print_find_max(report: dict[str, Any]) -> None:
    print(report["protocol"])
    print(f"bundle: {report['bundle']} (default recommender: {report['recommender']}); {report['pinning']}")
    print(f"{'rate':>7} {'achieved':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} {'srv cpu ms/req':>14} "
          f"{'gen cpu ms/req':>14} {'load 1m':>7}")
    for r in report["steps"]:
        print(f"{r['rate']:>7} {r['achieved_rate']:>8} {r['p50_ms']:>7} {r['p99_ms']:>7} {r['errors']:>6} "
              f"{r['server_cpu_ms_per_req']!s:>14} {r['generator_cpu_ms_per_req']!s:>14} {r['load_avg_1m']:>7}")
    print(f"throughput at p99 <= {report['p99_target_ms']} ms: {report['max_rate']} req/s "
          f"({report['workers']} worker(s)); server CPU by process (s): {report['server_cpu_by_process']}")


def print_report(report: dict[str, Any]) -> None:
    print(report["protocol"])
    print(f"bundle: {report['bundle']} (default recommender: {report['recommender']}); {report['pinning']}")
    print(
        f"{'endpoint':<10} {'rate':>6} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'max ms':>8} {'errors':>6} "
        f"{'gen lag p99':>11} {'srv cpu ms/req':>14} {'cache hits':>10} {'load avg 1m':>12}"
    )
    for ep, r in report["results"].items():
        hits = f"{100 * r['search_cache_hit_rate']:.0f} %" if "search_cache_hit_rate" in r else "-"
        print(
            f"{ep:<10} {r['achieved_rate']:>6} {r['p50_ms']:>7} {r['p95_ms']:>7} {r['p99_ms']:>7} "
            f"{r['max_ms']:>8} {r['errors']:>6} {r['generator_lag_p99_ms']:>11} {r['server_cpu_ms_per_req']!s:>14} "
            f"{hits:>10} {r['load_avg_1m']:>12}"
        )
    print("cache hits: share of searches answered from the server's result cache during that run; "
          "load avg 1m: the machine's 1-minute load average at the end of that endpoint's run "
          f"(cores: {os.cpu_count()}); srv cpu ms/req: server process CPU time / completed requests")


def _run(
    url: str,
    args: argparse.Namespace,
    load_cpu: int | None,
    server_cpu: int | None,
    proc: subprocess.Popen[bytes] | None,
) -> dict[str, Any]:
    rng = random.Random(args.seed)
    u = urlparse(url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    info = get_json(url + "/v1/admin/bundle", args.key)
    dataset = info["manifest"]["dataset"]
    items_parquet = Path(args.items) if args.items else Path(args.bundle or info.get("path", "")) / "items.parquet"
    if not items_parquet.is_file():
        raise SystemExit(f"load_test: no {items_parquet}; pass --items BUNDLE/items.parquet")
    try:
        users = real_users(args.store, dataset, args.pool, rng)
        user_src = f"{args.pool} draws from the store's users of {dataset}"
    except Exception as exc:  # e.g. the store is locked by another process
        users = get_json(url + "/v1/demo-users?n=50", args.key)["users"]
        user_src = f"50 demo users (store unavailable: {exc})"
    queries = title_queries(items_parquet, args.pool, rng)
    items = [it["item_id"] for it in get_json(url + "/v1/trending?k=100", args.key)["items"]]
    paths = {
        "recommend": [f"/v1/recommend/{quote(x, safe='')}?k=10" for x in users],
        "search": [f"/v1/search?q={quote(q)}&k=10" for q in queries],
        "similar": [f"/v1/similar/{quote(rng.choice(items), safe='')}?k=10" for _ in range(args.pool)],
        "trending": ["/v1/trending?k=10"],
    }
    pid = proc.pid if proc else args.server_pid
    load_before = round(os.getloadavg()[0], 2)
    if args.find_max is not None:
        ep = args.endpoints.split(",")[0]
        reqs = [request_bytes(host, port, p, args.key) for p in paths[ep]]
        out = find_max_rate(host, port, reqs, args, pid)
        return {**out, "protocol": f"{ep}: open loop, {args.duration:g} s per step from {args.rate:g} req/s, x{args.step:g} per "
                f"step, loopback, {args.connections} keep-alive connections, latency from the scheduled send time; "
                f"users: {user_src}", "bundle": info["version"], "recommender": info["default_recommender"],
                "pinning": _pinning(load_cpu, server_cpu, proc, args), "workers": args.workers,
                "load_before": load_before, "load_after": round(os.getloadavg()[0], 2)}
    results = {}
    for ep in args.endpoints.split(","):
        if ep not in paths:
            raise SystemExit(f"load_test: unknown endpoint {ep!r}; choose from {sorted(paths)}")
        reqs = [request_bytes(host, port, p, args.key) for p in paths[ep]]
        cache0 = get_json(url + "/v1/admin/stats", args.key).get("search_cache", {})
        cpu0 = cpu_seconds(pid)
        r = asyncio.run(
            run_endpoint(host, port, reqs, args.rate, args.duration, args.connections, args.timeout)
        )
        cpu1 = cpu_seconds(pid)
        # server CPU per request is robust to a busy machine: it is what the server spent, not waited
        r["server_cpu_ms_per_req"] = (
            round((cpu1 - cpu0) * 1000 / r["completed"], 3) if cpu0 is not None and cpu1 is not None else None
        )
        cache1 = get_json(url + "/v1/admin/stats", args.key).get("search_cache", {})
        r["load_avg_1m"] = round(os.getloadavg()[0], 2)
        if ep == "search" and cache1:
            hits, misses = cache1["hits"] - cache0.get("hits", 0), cache1["misses"] - cache0.get("misses", 0)
            r["search_cache_hit_rate"] = round(hits / max(1, hits + misses), 3)
        results[ep] = r
    pin = _pinning(load_cpu, server_cpu, proc, args)
    return {
        "protocol": f"open loop, {args.rate:g} req/s for {args.duration:g} s per endpoint, loopback, "
        f"{args.connections} keep-alive HTTP/1.1 connections (raw asyncio sockets), latency from the "
        f"scheduled send time, {4 * args.connections} warm-up requests not counted; users: {user_src}; "
        f"queries: {args.pool} draws of 1-3 words from real titles",
        "bundle": info["version"],
        "recommender": info["default_recommender"],
        "pinning": pin,
        "load_before": load_before,
        "load_after": round(os.getloadavg()[0], 2),
        "server_pid": proc.pid if proc else None,
        "results": results,
    }



def _pinning(load_cpu: int | None, server_cpu: int | None, proc: Any, args: argparse.Namespace) -> str:
    pin = f"generator on CPU {load_cpu}" if load_cpu is not None else "generator unpinned"
    if proc is None:
        return pin + ", server started elsewhere (pinning unknown)"
    if args.server_cpus:
        return pin + f", server ({args.workers} worker(s)) on CPUs {args.server_cpus}"
    return pin + (f", server on CPU {server_cpu}" if server_cpu is not None else ", server unpinned")


def find_max_rate(host: str, port: int, reqs: list[bytes], args: argparse.Namespace, pid: int | None) -> dict[str, Any]:
    """Raise the rate until p99 > the target (or an error); the last passing rate is the throughput."""
    steps: list[dict[str, Any]] = []
    rate, best = args.rate, None
    cpu_start = tree_cpu_seconds(pid)
    for _ in range(args.max_steps):
        cpu0, gen0 = sum(tree_cpu_seconds(pid).values()), time.process_time()
        r = asyncio.run(run_endpoint(host, port, reqs, rate, args.duration, args.connections, args.timeout))
        cpu1, gen1 = sum(tree_cpu_seconds(pid).values()), time.process_time()
        n = max(1, r["completed"])
        r.update(rate=round(rate, 1), load_avg_1m=round(os.getloadavg()[0], 2),
                 server_cpu_ms_per_req=round((cpu1 - cpu0) * 1000 / n, 3) if pid else None,
                 generator_cpu_ms_per_req=round((gen1 - gen0) * 1000 / n, 3))
        steps.append(r)
        if r["errors"] or r.get("p99_ms", float("inf")) > args.find_max:
            break
        best = r["achieved_rate"]
        rate *= args.step
    cpu_end = tree_cpu_seconds(pid)
    by_proc = {p: round(cpu_end[p] - cpu_start.get(p, 0.0), 1) for p in cpu_end}
    return {"p99_target_ms": args.find_max, "max_rate": best, "steps": steps, "server_cpu_by_process": by_proc}


if __name__ == "__main__":
    sys.exit(main())
