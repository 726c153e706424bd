"""Request metrics: Prometheus counters/histograms plus a rolling window for the dashboard.

Model monitoring (per model and experiment arm, drift, coverage, bundle age) comes from
serving/monitoring.py's `Monitor`, registered here as a collector, so /metrics is one registry.

A plain ASGI middleware (no BaseHTTPMiddleware task overhead) labels each request
with its route template, so /v1/items/{item_id} is one series, not one per item.

With `soutui serve --workers N` (PROMETHEUS_MULTIPROC_DIR set by `serve` before the workers
start) the counters and histograms live in prometheus_client's per-process files and /metrics
exposes them through a `MultiProcessCollector`: any worker answers with the sum over every
worker, the dead ones included (counters never go down). The monitor's scrape-time gauges
(coverage, Gini, drift, bundle age) and `stats()` stay the answering worker's own.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import time
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

if TYPE_CHECKING:
    from soutui.serving.monitoring import Monitor

BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's switch to per-process metric files

log = logging.getLogger(__name__)


def multiprocess_dir() -> str | None:
    """The multiprocess directory when this process's metrics live in it, else None.

    prometheus_client chooses file-backed values when it is first imported, so the variable
    must be set before that (`soutui serve` sets it before it starts the workers)."""
    path = os.environ.get(MULTIPROC_ENV)
    if not path:
        return None
    if values.ValueClass is values.MutexValue:
        log.warning("%s is set but prometheus_client was imported before it: metrics stay per process", MULTIPROC_ENV)
        return None
    return path


def reap_dead_workers(path: str) -> list[int]:
    """`mark_process_dead` for every process whose live-gauge files remain but which is gone (a
    worker killed with no shutdown hook). Counter and histogram files stay: their counts still
    belong in the sum."""
    dead = []
    for pid in sorted({int(m.group(1)) for f in glob.glob(os.path.join(path, "gauge_live*_*.db"))
                       if (m := re.search(r"_(\d+)\.db$", f))}):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            mark_process_dead(pid, path)
            dead.append(pid)
        except PermissionError:
            pass  # alive, someone else's
    return dead


class _ScrapeTime:
    """The monitor's scrape-time gauges alone: its counters are in the multiprocess files."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterator[Any]:
        return self.monitor.gauges()

    def describe(self) -> list[Any]:
        return []


class Metrics:
    def __init__(self, window_s: float = 60.0, monitor: Monitor | None = None) -> None:
        self.registry = CollectorRegistry()
        self.multiprocess_dir = multiprocess_dir()
        # with worker processes the metrics are registered nowhere: the collector reads every worker's files
        own = self.registry if self.multiprocess_dir is None else None
        if self.multiprocess_dir is not None:
            MultiProcessCollector(self.registry, path=self.multiprocess_dir)
            if monitor is not None:
                self.registry.register(_ScrapeTime(monitor))
        elif monitor is not None:
            self.registry.register(monitor)  # its collect() computes the monitoring gauges at scrape time
        self.requests = Counter("soutui_requests_total", "HTTP requests", ["route", "status"], registry=own)
        self.latency = Histogram("soutui_request_seconds", "request latency", ["route"], buckets=BUCKETS, registry=own)
        # across workers: 1 for each bundle some live worker serves (a worker's old bundle drops to 0)
        self.bundle = Gauge("soutui_bundle_info", "the bundle being served (value 1)", ["bundle"], registry=own,
                            multiprocess_mode="livemax")
        self.events = Counter("soutui_events_accepted_total", "events durably accepted", registry=own)
        self.window_s = window_s
        self.recent: deque[tuple[float, str, float, int]] = deque(maxlen=200_000)  # (t, route, seconds, status)
        self._bundle_version: str | None = None

    def set_bundle(self, version: str) -> None:
        if self.multiprocess_dir is None:
            self.bundle.clear()
        elif self._bundle_version not in (None, version):
            self.bundle.labels(self._bundle_version).set(0)  # clear() cannot reach the file: zero the old label
        self.bundle.labels(version).set(1)
        self._bundle_version = version

    def observe(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)
        self.recent.append((time.time(), route, seconds, status))

    def export(self) -> bytes:
        if self.multiprocess_dir is not None:
            reap_dead_workers(self.multiprocess_dir)
        return generate_latest(self.registry)

    def close(self) -> None:
        """A worker leaving: its live gauges (the bundle it served) leave the sum."""
        if self.multiprocess_dir is not None:
            mark_process_dead(os.getpid(), self.multiprocess_dir)

    def stats(self, rate_window_s: float = 10.0) -> dict[str, Any]:
        """Per-route rate over the last `rate_window_s` and latency percentiles over the window,
        of this process only (with several workers: the worker that answers)."""
        now = time.time()
        while self.recent and self.recent[0][0] < now - self.window_s:
            self.recent.popleft()
        rows = list(self.recent)
        out: dict[str, Any] = {}
        for route in sorted({r[1] for r in rows}):
            mine = [r for r in rows if r[1] == route]
            lat = np.array([r[2] for r in mine]) * 1000
            out[route] = {
                "rate_per_s": round(sum(1 for r in mine if r[0] >= now - rate_window_s) / rate_window_s, 2),
                "count": len(mine),
                "errors": sum(1 for r in mine if r[3] >= 500),
                "p50_ms": round(float(np.percentile(lat, 50)), 2),
                "p95_ms": round(float(np.percentile(lat, 95)), 2),
                "p99_ms": round(float(np.percentile(lat, 99)), 2),
            }
        return {"window_s": self.window_s, "routes": out, "time": now}


class MetricsMiddleware:
    """Times every HTTP request and records it under its route template."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or ("static" if scope["path"].startswith("/static") else "other")
            self.metrics.observe(path, status, time.perf_counter() - start)
