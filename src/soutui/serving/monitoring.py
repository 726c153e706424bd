"""Model monitoring: served lists and live events against the training window, and the alerts.

Owns the statistics (population stability index, Gini, catalogue coverage) as pure
functions and the bounded rolling state behind them. The request path only appends:
`served` costs O(k) for a list of k items and `ingested` O(batch); everything that
touches the catalogue (Gini, coverage, PSI) runs when Prometheus scrapes or /admin polls.
"""

from __future__ import annotations

import calendar
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from prometheus_client import Counter as PromCounter
from prometheus_client import Histogram
from prometheus_client.metrics_core import Metric

if TYPE_CHECKING:
    import pandas as pd

    from soutui.serving.bundle import LoadedBundle
    from soutui.serving.settings import MonitoringConfig

PSI_FLOOR = 1e-4  # a bin empty on one side counts as this share, so PSI stays finite
LIST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 1.0)
LAG_BUCKETS = (0.5, 1, 5, 15, 60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400)
NO_ARM = "none"  # the arm label of a list served outside any experiment
NEW_ITEMS = "new"  # items the training window never saw: their share is its own signal, not a PSI bin


# --- statistics (pure) -----------------------------------------------------------

def psi(expected: Sequence[float] | np.ndarray, actual: Sequence[float] | np.ndarray, floor: float = PSI_FLOOR) -> float:
    """Population stability index, sum over bins of (a - e) * ln(a / e), on shares.

    Counts or shares are both fine (each side is normalised); a share below `floor` is
    raised to it, so a bin empty on one side adds a large but finite term."""
    e, a = np.asarray(expected, np.float64), np.asarray(actual, np.float64)
    if e.shape != a.shape or e.ndim != 1:
        raise ValueError(f"psi needs two 1-d arrays of one length, got {e.shape} and {a.shape}")
    if e.sum() <= 0 or a.sum() <= 0:
        return float("nan")
    e = np.maximum(e / e.sum(), floor)
    a = np.maximum(a / a.sum(), floor)
    return float(np.sum((a - e) * np.log(a / e)))


def gini(counts: Iterable[int | float], n_items: int | None = None) -> float:
    """Gini coefficient of how often each item was served: 0 = all equally, (n-1)/n = one item.

    `counts` may list only the items served at least once; `n_items` (the catalogue size)
    adds the never-served ones as zeros without materialising them, so this is
    O(m log m) in the m served items, not O(catalogue)."""
    every = np.fromiter(counts, np.float64)
    x = np.sort(every[every > 0])
    n = max(int(n_items or 0), len(every))
    total = x.sum()
    if n == 0 or total <= 0:
        return 0.0
    ranks = np.arange(n - len(x) + 1, n + 1, dtype=np.float64)  # the zeros take ranks 1..n-m
    return float(np.sum((2 * ranks - n - 1) * x) / (n * total))


def coverage(n_served: int, n_items: int) -> float:
    """Share of the catalogue that appeared in at least one served list."""
    return n_served / n_items if n_items > 0 else 0.0


def popularity_bins(item_counts: dict[str, int] | Counter[str], n_bins: int) -> dict[str, int]:
    """Item -> popularity bin, bins of about equal training-event mass, bin 0 = the head.

    Per-item PSI would be dominated by noise (most items have a handful of events); bins of
    equal mass keep every bin's expected share near 1/n_bins and still show a shift from
    head to tail."""
    ranked = sorted(item_counts.items(), key=lambda kv: (-kv[1], kv[0]))
    total = float(sum(c for _, c in ranked))
    out: dict[str, int] = {}
    before = 0.0
    for item, c in ranked:
        out[item] = min(n_bins - 1, int(n_bins * before / total)) if total > 0 else 0
        before += c
    return out


def bundle_created_s(manifest: dict[str, Any]) -> float | None:
    """The bundle's build time in unix seconds (manifest `created`, e.g. 2026-11-30T14:00:00Z.123456789)."""
    created = str(manifest.get("created", ""))
    try:
        return float(calendar.timegm(time.strptime(created[:20], "%Y-%m-%dT%H:%M:%SZ")))
    except ValueError:
        return None


# --- the training window ---------------------------------------------------------

@dataclass
class Reference:
    """What the training window looked like: event-type mix and item popularity bins."""

    types: dict[str, float]  # event type -> share
    bins: dict[str, int]  # item id -> popularity bin
    bin_shares: np.ndarray  # (n_bins,) share of the training events per popularity bin
    n_events: int
    until_s: float | None  # events up to this time (the bundle's build time), None = all

    @classmethod
    def from_counts(cls, types: Counter[str], items: Counter[str], n_bins: int, until_s: float | None) -> Reference:
        bins = popularity_bins(items, n_bins)
        mass = np.zeros(n_bins)
        for item, c in items.items():
            mass[bins[item]] += c
        total_t = sum(types.values())
        return cls(
            {t: c / total_t for t, c in types.items()} if total_t else {},
            bins, mass / mass.sum() if mass.sum() else mass, int(total_t), until_s,
        )


def count_events(events: pd.DataFrame, until_s: float | None) -> tuple[Counter[str], Counter[str]]:
    """(event-type counts, item counts) of the store's events up to `until_s` (unknown times count)."""
    ev = events
    if until_s is not None and "ts" in ev:
        ts = ev["ts"].fillna(0).astype("int64")
        ev = ev[ts <= until_s]
    types = Counter({str(k): int(v) for k, v in ev["event_type"].astype(str).value_counts().items()})
    items = ev["item_id"].dropna().astype(str).value_counts()
    return types, Counter({str(k): int(v) for k, v in items.items()})


# --- rolling state ---------------------------------------------------------------

class ServedWindow:
    """Per-(model, arm) item counts over the last `window_s`, in `slots` time slices.

    Memory is bounded by slots x distinct items served per slice (at most the catalogue).
    A running total per key is kept up to date: a slice that leaves the window is
    subtracted once (O(its distinct items), once per slice length), so reading the window
    costs a copy of the total, not a sum over the slices."""

    def __init__(self, window_s: float, slots: int = 12) -> None:
        self.slot_s, self.slots = window_s / slots, slots
        self._ring: dict[tuple[str, str], list[tuple[int, Counter[str], int]]] = {}  # (slot, items, lists)
        self._total: dict[tuple[str, str], Counter[str]] = {}
        self._lists: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def add(self, key: tuple[str, str], items: Sequence[str], now: float) -> None:
        slot = int(now // self.slot_s)
        with self._lock:
            ring = self._ring.get(key)
            if ring is None:
                ring = self._ring[key] = [(-1, Counter(), 0) for _ in range(self.slots)]
                self._total[key], self._lists[key] = Counter(), 0
            j = slot % self.slots
            if ring[j][0] != slot:
                self._expire(key, j)
                ring[j] = (slot, Counter(), 0)
            stamp, c, n = ring[j]
            c.update(items)
            ring[j] = (stamp, c, n + 1)
            self._total[key].update(items)
            self._lists[key] += 1

    def _expire(self, key: tuple[str, str], j: int) -> None:
        """Take slice j out of the key's running total (the caller holds the lock)."""
        _, old, n = self._ring[key][j]
        total = self._total[key]
        for item, c in old.items():
            left = total[item] - c
            if left > 0:
                total[item] = left
            else:
                del total[item]
        self._lists[key] -= n
        self._ring[key][j] = (-1, Counter(), 0)

    def counts(self, now: float) -> dict[tuple[str, str], tuple[Counter[str], int]]:
        """(item counts, lists served) per key over the window ending at `now`."""
        oldest = int(now // self.slot_s) - self.slots + 1
        out: dict[tuple[str, str], tuple[Counter[str], int]] = {}
        with self._lock:
            for key, ring in self._ring.items():
                for j, (stamp, _, n) in enumerate(ring):
                    if 0 <= stamp < oldest or (stamp < 0 and n):
                        self._expire(key, j)
                out[key] = (Counter(self._total[key]), self._lists[key])
        return out


class LiveWindow:
    """Live events of the last `window_s` (at most `cap`), with running counts per type and bin."""

    def __init__(self, window_s: float, cap: int = 200_000) -> None:
        self.window_s, self.cap = window_s, cap
        self._q: deque[tuple[float, str, str]] = deque()  # (accepted at, event type, bin)
        self.types: Counter[str] = Counter()
        self.bins: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, rows: Iterable[tuple[str, str]], now: float) -> None:
        with self._lock:
            for etype, b in rows:
                if len(self._q) >= self.cap:
                    self._drop()
                self._q.append((now, etype, b))
                self.types[etype] += 1
                self.bins[b] += 1

    def _drop(self) -> None:
        _, etype, b = self._q.popleft()
        self.types[etype] -= 1
        self.bins[b] -= 1

    def evict(self, now: float) -> int:
        """Drop what fell out of the window; returns the events left."""
        with self._lock:
            while self._q and self._q[0][0] < now - self.window_s:
                self._drop()
            return len(self._q)

    def counts(self) -> tuple[dict[str, int], dict[str, int]]:
        """(events per type, events per popularity bin) in the window, as copies."""
        with self._lock:
            return dict(self.types), dict(self.bins)

    def clear(self) -> None:
        with self._lock:
            self._q.clear()
            self.types.clear()
            self.bins.clear()


# --- the monitor -----------------------------------------------------------------

class Monitor:
    """Everything /metrics and /admin report about models and data, fed by the service.

    Hooks: `set_reference` (start), `bundle_changed` (reload), `ingested` (each accepted
    batch), `served` (each list answered). `report` and `collect` read it."""

    def __init__(self, cfg: MonitoringConfig) -> None:
        self.cfg = cfg
        self.lists = PromCounter("soutui_lists_total", "lists answered, by endpoint, model and experiment arm",
                                 ["endpoint", "model", "arm"], registry=None)
        self.empty = PromCounter("soutui_lists_empty_total", "lists answered with no item",
                                 ["endpoint", "model", "arm"], registry=None)
        self.seconds = Histogram("soutui_list_seconds", "time to build a list (service call, no HTTP)",
                                 ["endpoint", "model", "arm"], buckets=LIST_BUCKETS, registry=None)
        self.lag = Histogram("soutui_event_ingest_lag_seconds", "event time to durable acceptance",
                             buckets=LAG_BUCKETS, registry=None)
        self.window = ServedWindow(cfg.coverage_window_s)
        self.live = LiveWindow(cfg.drift_window_s)
        self.recent_lags: deque[float] = deque(maxlen=1000)
        self.last_event_s: float | None = None
        self.reference: Reference | None = None
        self.all_types: Counter[str] = Counter()  # every event known (store + live): the next bundle's window
        self.all_items: Counter[str] = Counter()
        self.n_items, self.bundle_version = 0, ""
        self.created_s: float | None = None
        self.history: deque[dict[str, Any]] = deque(maxlen=cfg.history_points)
        self._lock = threading.Lock()

    # --- hooks -----------------------------------------------------------------------
    def set_reference(self, bundle: LoadedBundle, events: pd.DataFrame | None) -> None:
        """The training window from the store's events up to the bundle's build time."""
        self._set_bundle(bundle)
        if events is None or not len(events):
            return
        types, items = count_events(events, None)
        self.all_types, self.all_items = types, items
        if self.created_s is not None:
            types, items = count_events(events, self.created_s)
        self.reference = Reference.from_counts(types, items, self.cfg.popularity_bins, self.created_s)

    def bundle_changed(self, bundle: LoadedBundle) -> None:
        """A reload: the new bundle trained on (about) every event known now, so that is the
        new reference, and the live window starts empty."""
        self._set_bundle(bundle)
        with self._lock:
            types, items = Counter(self.all_types), Counter(self.all_items)
        if types:
            self.reference = Reference.from_counts(types, items, self.cfg.popularity_bins, self.created_s)
        self.live.clear()

    def _set_bundle(self, bundle: LoadedBundle) -> None:
        self.n_items, self.bundle_version = len(bundle.catalogue), bundle.version
        self.created_s = bundle_created_s(bundle.manifest)

    def ingested(self, records: Sequence[dict[str, Any]], now: float | None = None) -> None:
        """Accepted live events: ingest lag, the live drift window, the next reference's counts."""
        if not records:
            return
        now = time.time() if now is None else now
        ref = self.reference
        rows = []
        with self._lock:
            for r in records:
                etype, item = str(r.get("event_type")), r.get("item_id")
                lag = max(0.0, now - float(r.get("ts") or now))
                self.lag.observe(lag)
                self.recent_lags.append(lag)
                self.all_types[etype] += 1
                b = ""
                if item is not None:
                    self.all_items[str(item)] += 1
                    b = str(ref.bins.get(str(item), NEW_ITEMS)) if ref else ""
                rows.append((etype, b))
            self.last_event_s = now
        self.live.add(rows, now)

    def served(self, endpoint: str, model: str, arm: str | None, items: Sequence[str], seconds: float) -> None:
        """One list answered: O(k) counter updates, nothing over the catalogue."""
        arm = arm or NO_ARM
        self.lists.labels(endpoint, model, arm).inc()
        self.seconds.labels(endpoint, model, arm).observe(seconds)
        if not items:
            self.empty.labels(endpoint, model, arm).inc()
        self.window.add((model, arm), items, time.time())

    def served_response(self, endpoint: str, out: dict[str, Any], seconds: float) -> None:
        """`served` from a list response: its `model` (default "trending"), its items' ids, and the
        arm label "<experiment>:<arm>" when it came from an online experiment (its `experiment`
        field, see serving/experiments.py; an interleaved list is "<experiment>:interleaved")."""
        exp = out.get("experiment")
        label = f"{exp.get('name')}:{exp.get('arm') or 'interleaved'}" if isinstance(exp, dict) else None
        self.served(endpoint, str(out.get("model") or "trending"), label,
                    [str(r["item_id"]) for r in out.get("items", ())], seconds)

    # --- reading -----------------------------------------------------------------------
    def drift(self, now: float) -> dict[str, Any]:
        """PSI of the event-type mix and of item popularity bins, training window vs live window."""
        n_live = self.live.evict(now)
        ref = self.reference
        out: dict[str, Any] = {"live_events": n_live, "reference_events": ref.n_events if ref else 0,
                               "event_type": None, "item_popularity": None, "new_item_share": None, "enough": False}
        if ref is None or n_live == 0:
            return out
        live_types, live_bins = self.live.counts()
        kinds = sorted(set(ref.types) | {t for t, c in live_types.items() if c > 0})
        if ref.types:
            out["event_type"] = psi([ref.types.get(t, 0.0) for t in kinds], [live_types.get(t, 0) for t in kinds])
        # popularity PSI over the items the training window knew; events on new items are their own
        # figure (measured on Beauty: a 1e-4-floored "new" bin made every week drift, even retrained weekly)
        actual = [live_bins.get(str(b), 0) for b in range(len(ref.bin_shares))]
        new = live_bins.get(NEW_ITEMS, 0)
        if sum(actual) > 0 and ref.bin_shares.sum() > 0:
            out["item_popularity"] = psi(ref.bin_shares, actual)
        if sum(actual) + new > 0:
            out["new_item_share"] = new / (sum(actual) + new)
        out["enough"] = n_live >= self.cfg.min_drift_events
        return out

    def served_stats(self, now: float) -> list[dict[str, Any]]:
        """Coverage and Gini per (model, arm) over the coverage window, plus model="all"."""
        per = self.window.counts(now)
        rows = []
        every: Counter[str] = Counter()
        lists_all = 0
        for (model, arm), (c, lists) in sorted(per.items()):
            every.update(c)
            lists_all += lists
            rows.append(self._served_row(model, arm, c, lists))
        if per:
            rows.append(self._served_row("all", "all", every, lists_all))
        return rows

    def _served_row(self, model: str, arm: str, c: Counter[str], lists: int) -> dict[str, Any]:
        distinct = sum(1 for v in c.values() if v > 0)
        return {"model": model, "arm": arm, "lists": lists, "items_served": distinct,
                "coverage": coverage(distinct, self.n_items), "gini": gini(c.values(), max(self.n_items, distinct))}

    def report(self, now: float | None = None) -> dict[str, Any]:
        """Everything, with the alerts judged against the thresholds (for /admin and the collector)."""
        now = time.time() if now is None else now
        age = None if self.created_s is None else max(0.0, now - self.created_s)
        lags = sorted(self.recent_lags)
        rep: dict[str, Any] = {
            "time": now, "bundle": self.bundle_version, "bundle_age_s": age, "n_items": self.n_items,
            "served": self.served_stats(now), "drift": self.drift(now),
            "ingest_lag_s": lags[len(lags) // 2] if lags else None,
            "since_last_event_s": None if self.last_event_s is None else now - self.last_event_s,
            "thresholds": self.cfg.thresholds(),
            "minimums": {"drift_events": self.cfg.min_drift_events, "lists": self.cfg.min_lists},
            "window_s": {"coverage": self.cfg.coverage_window_s, "drift": self.cfg.drift_window_s},
        }
        rep["alerts"] = alerts(rep, self.cfg)
        self._remember(rep)
        rep["history"] = list(self.history)
        return rep

    def _remember(self, rep: dict[str, Any]) -> None:
        if self.history and rep["time"] - self.history[-1]["t"] < self.cfg.history_interval_s:
            return
        everyone = next((r for r in rep["served"] if r["model"] == "all"), None)
        self.history.append({
            "t": round(rep["time"], 1), "bundle_age_h": None if rep["bundle_age_s"] is None else rep["bundle_age_s"] / 3600,
            "coverage": everyone["coverage"] if everyone else None, "gini": everyone["gini"] if everyone else None,
            "psi_event_type": rep["drift"]["event_type"], "psi_item_popularity": rep["drift"]["item_popularity"],
            "new_item_share": rep["drift"]["new_item_share"],
            "ingest_lag_s": rep["ingest_lag_s"],
        })

    def collect(self) -> Iterator[Metric]:
        """Prometheus collector: the labelled counters plus gauges computed at scrape time."""
        yield from self.lists.collect()
        yield from self.empty.collect()
        yield from self.seconds.collect()
        yield from self.lag.collect()
        yield from self.gauges()

    def gauges(self) -> Iterator[Metric]:
        """The gauges computed at scrape time from this process's windows (with several workers
        the counters above come from prometheus_client's multiprocess files instead)."""
        from prometheus_client.core import GaugeMetricFamily

        rep = self.report()
        g = GaugeMetricFamily
        age = g("soutui_bundle_age_seconds", "seconds since the served bundle was built", labels=["bundle"])
        age.add_metric([rep["bundle"]], _num(rep["bundle_age_s"]))
        cov = g("soutui_catalogue_coverage", f"share of the catalogue in lists served in the last {self.cfg.coverage_window_s:g} s",
                labels=["model", "arm"])
        gin = g("soutui_served_gini", "Gini coefficient of served items over the catalogue (0 = even)", labels=["model", "arm"])
        for r in rep["served"]:
            cov.add_metric([r["model"], r["arm"]], r["coverage"])
            gin.add_metric([r["model"], r["arm"]], r["gini"])
        d = rep["drift"]
        drift = g("soutui_drift_psi", "PSI between the training window and the live window", labels=["feature"])
        drift.add_metric(["event_type"], _num(d["event_type"]))
        drift.add_metric(["item_popularity"], _num(d["item_popularity"]))
        new = g("soutui_drift_new_item_share", "share of live events on items the training window never saw")
        new.add_metric([], _num(d["new_item_share"]))
        live = g("soutui_drift_live_events", "live events in the drift window")
        live.add_metric([], d["live_events"])
        lag = g("soutui_event_ingest_lag_median_seconds", "median ingest lag of the last 1000 events")
        lag.add_metric([], _num(rep["ingest_lag_s"]))
        quiet = g("soutui_seconds_since_last_event", "seconds since the last event was accepted")
        quiet.add_metric([], _num(rep["since_last_event_s"]))
        thr = g("soutui_alert_threshold", "alert thresholds from the serve config", labels=["alert"])
        firing = g("soutui_alert_firing", "1 while the alert's condition holds", labels=["alert"])
        for a in rep["alerts"]:
            thr.add_metric([a["name"]], a["threshold"])
            firing.add_metric([a["name"]], 1.0 if a["firing"] else 0.0)
        yield from (age, cov, gin, drift, new, live, lag, quiet, thr, firing)

    def describe(self) -> list[Metric]:
        return []  # computed at scrape time: nothing to check against other collectors' names up front


def alerts(rep: dict[str, Any], cfg: MonitoringConfig) -> list[dict[str, Any]]:
    """Each threshold judged: name, value, threshold, firing (a value that cannot be judged yet is None)."""
    d = rep["drift"]
    everyone = next((r for r in rep["served"] if r["model"] == "all"), None)
    cov_ok = everyone is not None and everyone["lists"] >= cfg.min_lists
    drift_ok = bool(d["enough"])
    checks = [
        ("stale_model", rep["bundle_age_s"] / 3600 if rep["bundle_age_s"] is not None else None, cfg.max_bundle_age_h, ">"),
        ("drift_event_type", d["event_type"] if drift_ok else None, cfg.max_psi, ">"),
        ("drift_item_popularity", d["item_popularity"] if drift_ok else None, cfg.max_psi, ">"),
        ("new_items", d["new_item_share"] if drift_ok else None, cfg.max_new_item_share, ">"),
        ("low_coverage", everyone["coverage"] if cov_ok and everyone else None, cfg.min_coverage, "<"),
        ("ingest_lag", rep["ingest_lag_s"], cfg.max_ingest_lag_s, ">"),
    ]
    out = []
    for name, value, limit, op in checks:
        firing = value is not None and limit > 0 and (value > limit if op == ">" else value < limit)
        out.append({"name": name, "value": value, "threshold": limit, "firing": bool(firing)})
    return out


def _num(v: float | None) -> float:
    return math.nan if v is None else float(v)
