"""/metrics with `soutui serve --workers 2` (issue 13 §2): whichever worker answers the scrape,
the counters are the sum over every worker (prometheus_client's multiprocess mode), a killed
worker's counts stay in the sum, and a real Prometheus scraping the shared port reads the sum.

Real processes on a real PostgreSQL server (tests/pg_server.py), real HTTP; which worker answered
is read from the `X-Soutui-Worker` header, and every request opens a new connection so the kernel
hands requests to both workers."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from pg_server import PgServer
from prometheus_client.parser import text_string_to_metric_families
from serving_shop import (
    API_KEY,
    WORKER,
    build_shop_bundle,
    free_port,
    shop_database,
    start_server,
    wait_workers,
    write_config,
)

ROUTE = "/v1/recommend/{user_id}"
PROMETHEUS = shutil.which("prometheus")


def _scrape(url: str) -> tuple[int, dict[str, float]]:
    """(the worker that answered /metrics, {series: value}) with series like `name{k=v,...}`."""
    r = httpx.get(url + "/metrics", timeout=10)
    assert r.status_code == 200, r.text
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            out[s.name + "{" + ",".join(f"{k}={v}" for k, v in sorted(s.labels.items())) + "}"] = s.value
    return int(r.headers[WORKER]), out


def _recommend_count(series: dict[str, float]) -> float:
    return sum(v for k, v in series.items() if k.startswith("soutui_requests_total{") and f"route={ROUTE}" in k)


def _scrape_each(url: str, pids: set[int], tries: int = 400) -> dict[int, dict[str, float]]:
    """Scrape on new connections until every worker in `pids` has answered once."""
    seen: dict[int, dict[str, float]] = {}
    for _ in range(tries):
        pid, series = _scrape(url)
        seen.setdefault(pid, series)
        if pids <= set(seen):
            return seen
    raise AssertionError(f"only workers {sorted(seen)} of {sorted(pids)} answered /metrics")


def _recommend(url: str, n: int, tag: str) -> dict[int, int]:
    """n requests to /v1/recommend, each on a new connection: how many each worker answered."""
    by: dict[int, int] = {}
    for i in range(n):
        r = httpx.get(url + f"/v1/recommend/{tag}-{i % 7}", params={"k": 5}, timeout=10)
        assert r.status_code == 200, r.text
        by[int(r.headers[WORKER])] = by.get(int(r.headers[WORKER]), 0) + 1
    return by


def _stale_run(path: Path) -> None:
    """What a previous server left in an operator-given directory: 1,000 recommend requests."""
    code = ("from prometheus_client import Counter; Counter('soutui_requests_total', '', ['route', 'status'])"
            f".labels({ROUTE!r}, '200').inc(1000)")
    subprocess.run([sys.executable, "-c", code], env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(path)}, check=True)
    assert list(path.glob("counter_*.db"))


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, pg_server: PgServer, shop: tuple[pd.DataFrame, pd.DataFrame]
) -> Iterator[tuple[str, set[int], Path]]:
    """`soutui serve --workers 2 --store postgresql://...` with the operator's own metrics directory:
    (base URL, the worker pids, that directory)."""
    tmp = tmp_path_factory.mktemp("metrics-workers")
    bundle = build_shop_bundle(tmp / "bundles", *shop, search=False)  # no search index: a quick start
    db = shop_database(pg_server, shop)
    metrics_dir = tmp / "prom"
    metrics_dir.mkdir()
    _stale_run(metrics_dir)
    cfg = write_config(tmp / "serve.toml", port=free_port(), bundle=str(bundle), bundles_dir=str(bundle.parent),
                       store=db, event_log=str(tmp / "events.jsonl"), api_key=API_KEY, demo=True, workers=2)
    proc, url = start_server(cfg, env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}, timeout=120)
    try:
        yield url, set(wait_workers(url, 2)), metrics_dir
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_any_worker_reports_the_sum_over_workers_and_keeps_a_killed_workers_counts(
    server: tuple[str, set[int], Path],
) -> None:
    url, pids, metrics_dir = server
    before = {pid: _recommend_count(s) for pid, s in _scrape_each(url, pids).items()}
    assert set(before.values()) == {0}  # the stale run's 1,000 were cleaned at start
    by = _recommend(url, 40, "sum")
    assert len(by) == 2 and min(by.values()) > 0, by  # both workers answered some: a per-worker count is < 40
    for pid, series in _scrape_each(url, pids).items():
        assert _recommend_count(series) == 40, (pid, by)
        lists = sum(v for k, v in series.items() if k.startswith("soutui_lists_total{") and "endpoint=recommend" in k)
        assert lists == 40  # the monitor's counters are summed too
        infos = {k: v for k, v in series.items() if k.startswith("soutui_bundle_info{")}
        assert list(infos.values()) == [1.0], infos  # one bundle, served by both: one series, not one per pid

    victim = min(pids)
    os.kill(victim, signal.SIGKILL)  # no shutdown hook runs
    live = set(wait_workers(url, 2))  # the survivor and uvicorn's replacement
    assert victim not in live
    for pid, series in _scrape_each(url, live).items():
        assert _recommend_count(series) == 40, pid  # the dead worker's 40 - n still counted
        assert [v for k, v in series.items() if k.startswith("soutui_bundle_info{")] == [1.0]
    assert not list(metrics_dir.glob(f"gauge_live*_{victim}.db"))  # reaped: mark_process_dead
    assert list(metrics_dir.glob(f"counter_{victim}.db"))  # its counts stay


@pytest.mark.skipif(PROMETHEUS is None, reason="the prometheus binary is absent (scripts/setup.sh installs it)")
def test_prometheus_scraping_the_shared_port_reads_the_sum(
    tmp_path: Path, server: tuple[str, set[int], Path]
) -> None:
    assert PROMETHEUS is not None
    url, _, _ = server
    pids = set(wait_workers(url, 2))  # a test before may have replaced one
    start = max(_recommend_count(s) for s in _scrape_each(url, pids).values())
    by = _recommend(url, 30, "prom")
    assert len(by) == 2, by
    prom_port = free_port()
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: soutui\n"
        f"    static_configs:\n      - targets: ['{url.removeprefix('http://')}']\n"
    )
    prom = subprocess.Popen(
        [PROMETHEUS, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    expr = f'sum(soutui_requests_total{{route="{ROUTE}"}})'
    values: list[float] = []
    try:
        deadline = time.time() + 40
        while len(values) < 3 and time.time() < deadline:  # the latest scrape, at three moments (1 s apart)
            try:
                r = httpx.get(f"http://127.0.0.1:{prom_port}/api/v1/query", params={"query": expr}, timeout=5)
                result: list[dict[str, Any]] = r.json()["data"]["result"] if r.status_code == 200 else []
            except httpx.HTTPError:
                result = []
            if result:
                values.append(float(result[0]["value"][1]))
            time.sleep(1.1)
    finally:
        prom.terminate()
        prom.communicate(timeout=20)
    assert values and set(values) == {start + 30}, (values, start)
