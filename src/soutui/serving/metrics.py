"""Request metrics: Prometheus counters/histograms plus a rolling window for the dashboard.

Model monitoring (per model and experiment arm, drift, coverage, bundle age) comes from
serving/monitoring.py's `Monitor`, registered here as a collector, so /metrics is one registry.

A plain ASGI middleware (no BaseHTTPMiddleware task overhead) labels each request
with its route template, so /v1/items/{item_id} is one series, not one per item.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

if TYPE_CHECKING:
    from soutui.serving.monitoring import Monitor

BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class Metrics:
    def __init__(self, window_s: float = 60.0, monitor: Monitor | None = None) -> None:
        self.registry = CollectorRegistry()
        if monitor is not None:
            self.registry.register(monitor)  # its collect() computes the monitoring gauges at scrape time
        self.requests = Counter("soutui_requests_total", "HTTP requests", ["route", "status"], registry=self.registry)
        self.latency = Histogram(
            "soutui_request_seconds", "request latency", ["route"], buckets=BUCKETS, registry=self.registry
        )
        self.bundle = Gauge("soutui_bundle_info", "the bundle being served (value 1)", ["bundle"], registry=self.registry)
        self.events = Counter("soutui_events_accepted_total", "events durably accepted", registry=self.registry)
        self.window_s = window_s
        self.recent: deque[tuple[float, str, float, int]] = deque(maxlen=200_000)  # (t, route, seconds, status)

    def set_bundle(self, version: str) -> None:
        self.bundle.clear()
        self.bundle.labels(version).set(1)

    def observe(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)
        self.recent.append((time.time(), route, seconds, status))

    def export(self) -> bytes:
        return generate_latest(self.registry)

    def stats(self, rate_window_s: float = 10.0) -> dict[str, Any]:
        """Per-route rate over the last `rate_window_s` and latency percentiles over the window."""
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
