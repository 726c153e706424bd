"""Model monitoring: PSI and Gini against known answers and independent references, the rolling
windows, and the monitor end to end through the app (/metrics, /v1/admin/monitoring)."""

from __future__ import annotations

import dataclasses
import math
import re
import time
import tomllib
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families
from scipy.stats import entropy
from serving_shop import API_KEY

import soutui
from soutui.config import ConfigError, from_dict
from soutui.serving.monitoring import (
    LiveWindow,
    ServedWindow,
    bundle_created_s,
    coverage,
    gini,
    popularity_bins,
    psi,
)
from soutui.serving.settings import MonitoringConfig, ServeSettings

H = {"X-API-Key": API_KEY}


# --- PSI ----------------------------------------------------------------------------

def test_psi_known_answer() -> None:
    # (0.25 - 0.5) ln(0.25/0.5) + (0.75 - 0.5) ln(0.75/0.5) = 0.25 ln 2 + 0.25 ln 1.5
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.25 * math.log(2) + 0.25 * math.log(1.5), abs=1e-12)
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.274653, abs=1e-6)
    assert psi([10, 10], [5, 15]) == psi([0.5, 0.5], [0.25, 0.75])  # counts are normalised
    assert psi([3, 1, 6], [3, 1, 6]) == 0.0


def test_psi_is_symmetric_kl_as_scipy_computes_it() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        e, a = rng.random(7) + 0.01, rng.random(7) + 0.01
        ref = entropy(a / a.sum(), e / e.sum()) + entropy(e / e.sum(), a / a.sum())
        assert psi(e, a) == pytest.approx(ref, rel=1e-9)


def test_psi_empty_bin_is_floored_not_infinite() -> None:
    value = psi([1.0, 0.0], [0.5, 0.5])
    # the empty expected bin counts as 1e-4: (0.5 - 1e-4) ln(0.5 / 1e-4) + (0.5 - 1) ln(0.5 / 1)... after flooring
    e, a = np.array([1.0, 1e-4]), np.array([0.5, 0.5])
    assert value == pytest.approx(float(np.sum((a - e) * np.log(a / e))))
    assert math.isfinite(value) and value > 3
    assert math.isnan(psi([0, 0], [1, 2]))
    with pytest.raises(ValueError):
        psi([1, 2], [1, 2, 3])


# --- Gini and coverage --------------------------------------------------------------

def test_gini_known_answers() -> None:
    assert gini([5, 5, 5, 5]) == 0.0
    assert gini([0, 0, 0, 7]) == pytest.approx(3 / 4)  # one item served: (n - 1) / n
    assert gini([7], n_items=4) == pytest.approx(3 / 4)  # never-served items as implicit zeros
    assert gini([1, 2, 3, 4]) == pytest.approx(0.25)  # sum (2i - n - 1) x_i / (n sum x) = 10 / 40
    assert gini([]) == 0.0 and gini([], n_items=10) == 0.0


def test_gini_matches_mean_absolute_difference() -> None:
    rng = np.random.default_rng(0)
    for n in (3, 17, 200):
        x = rng.integers(0, 50, size=n).astype(float)
        mad = np.abs(x[:, None] - x[None, :]).sum() / (2 * n * n * x.mean())
        served = [v for v in x if v > 0]  # the zeros are passed only as the catalogue size
        assert gini(served, n_items=n) == pytest.approx(mad, rel=1e-9)


def test_coverage() -> None:
    assert coverage(10, 40) == 0.25 and coverage(0, 0) == 0.0


def test_popularity_bins_have_equal_mass() -> None:
    counts = {f"i{j}": 1 for j in range(100)}
    bins = popularity_bins(counts, 4)
    assert Counter(bins.values()) == {0: 25, 1: 25, 2: 25, 3: 25}
    skewed = {"head": 60, **{f"t{j}": 1 for j in range(40)}}
    b = popularity_bins(skewed, 4)
    assert b["head"] == 0  # the head item alone holds 60 % of the mass
    assert {b[f"t{j}"] for j in range(40)} == {2, 3}  # the tail starts at 60 %: bins 2 and 3


def test_bundle_created_is_utc() -> None:
    assert bundle_created_s({"created": "1970-01-02T00:00:00Z.000000001"}) == 86400.0
    assert bundle_created_s({}) is None


# --- rolling windows ----------------------------------------------------------------

def test_served_window_forgets_old_slices() -> None:
    w = ServedWindow(window_s=60, slots=6)  # 10 s slices
    w.add(("m", "none"), ["a", "b"], now=1000.0)
    w.add(("m", "none"), ["a"], now=1035.0)
    c, lists = w.counts(now=1040.0)[("m", "none")]
    assert c == Counter({"a": 2, "b": 1}) and lists == 2
    c, lists = w.counts(now=1065.0)[("m", "none")]  # the slice of t=1000 is older than 60 s
    assert c == Counter({"a": 1}) and lists == 1


def test_served_window_running_total_equals_the_sum_of_its_slices() -> None:
    rng = np.random.default_rng(1)
    w = ServedWindow(window_s=120, slots=6)  # 20 s slices
    log: list[tuple[float, list[str]]] = []
    t = 0.0
    for step in range(600):
        t += float(rng.exponential(1.5))  # about 3 windows in all, with quiet gaps
        items = [f"i{j}" for j in rng.integers(0, 30, size=int(rng.integers(0, 6)))]
        key = ("m", "none") if step % 3 else ("m", "b")
        w.add(key, items, t)
        log.append((t, items) if key == ("m", "none") else (t, []))
        if step % 37 == 0:
            oldest = int(t // 20) - 6 + 1
            want = Counter(i for ts, its in log if int(ts // 20) >= oldest for i in its)
            c, _ = w.counts(t).get(("m", "none"), (Counter(), 0))
            assert c == want
    c, lists = w.counts(t + 1000)[("m", "none")]  # everything expired
    assert c == Counter() and lists == 0


def test_live_window_evicts_and_caps() -> None:
    w = LiveWindow(window_s=100, cap=3)
    w.add([("view", "0"), ("cart", "1")], now=0.0)
    w.add([("view", "0"), ("view", "new")], now=50.0)  # the cap drops the oldest
    assert w.evict(50.0) == 3 and w.types == Counter({"view": 2, "cart": 1})
    assert w.evict(120.0) == 2 and +w.types == Counter({"view": 2}) and +w.bins == Counter({"0": 1, "new": 1})


def test_experiment_arms_label_the_lists() -> None:
    from soutui.serving.monitoring import Monitor

    m = Monitor(MonitoringConfig())
    items = [{"item_id": "i1"}, {"item_id": "i2"}]
    m.served_response("recommend", {"model": "itemknn", "items": items}, 0.001)
    m.served_response("recommend", {"model": "itemknn", "items": items, "experiment": {"name": "e", "arm": "b"}}, 0.001)
    m.served_response("recommend", {"model": "interleaved", "items": items, "experiment": {"name": "e", "arm": None}}, 0.001)
    got = {tuple(s.labels[k] for k in ("model", "arm")): s.value for f in m.lists.collect() for s in f.samples
           if s.name == "soutui_lists_total"}
    assert got == {("itemknn", "none"): 1, ("itemknn", "e:b"): 1, ("interleaved", "e:interleaved"): 1}


# --- config ---------------------------------------------------------------------------

def test_monitoring_config_rejects_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(ServeSettings, {"monitoring": {"max_psy": 0.2}})
    with pytest.raises(ConfigError, match="min_coverage"):
        from_dict(ServeSettings, {"monitoring": {"min_coverage": 2.0}})
    assert from_dict(ServeSettings, {"monitoring": {"max_psi": 0.1}}).monitoring.max_psi == 0.1


def test_defaults_toml_lists_every_monitoring_key() -> None:
    doc = tomllib.loads((Path(soutui.__file__).parent / "defaults.toml").read_text(encoding="utf-8"))
    assert set(doc["serve"]["monitoring"]) == {f.name for f in dataclasses.fields(MonitoringConfig)}
    assert from_dict(MonitoringConfig, doc["serve"]["monitoring"]) == MonitoringConfig()


# --- end to end through the app ---------------------------------------------------------

def _metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the exposition, read with prometheus_client's own parser."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    raise AssertionError(f"{name}{labels} not in /metrics")


@pytest.fixture(scope="module")
def plain_bundle(tmp_path_factory: pytest.TempPathFactory, shop: tuple[pd.DataFrame, pd.DataFrame]) -> Path:
    """The shop's bundle without a search index: monitoring needs none, and it builds in seconds."""
    from serving_shop import build_shop_bundle

    return build_shop_bundle(tmp_path_factory.mktemp("plain"), *shop, search=False)


@pytest.fixture
def settings(tmp_path: Path, shop: tuple[pd.DataFrame, pd.DataFrame], plain_bundle: Path) -> ServeSettings:
    """As conftest's `settings`, over the search-less bundle."""
    from serving_shop import make_home

    return ServeSettings(bundle=str(plain_bundle), bundles_dir=str(plain_bundle.parent), store=make_home(tmp_path, shop),
                         api_key=API_KEY, event_log=str(tmp_path / "events.jsonl"), flush_interval_s=0.0, demo=True)


@pytest.fixture
def watched(settings: ServeSettings):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from soutui.serving.app import create_app

    settings.monitoring = MonitoringConfig(min_drift_events=20, min_lists=5, min_coverage=0.9, max_ingest_lag_s=300)
    with TestClient(create_app(settings)) as c:
        yield c


def test_served_lists_give_coverage_gini_and_per_model_counts(watched) -> None:  # type: ignore[no-untyped-def]
    served: Counter[str] = Counter()
    for u in range(8):
        body = watched.get(f"/v1/recommend/u{u}", params={"k": 5}).json()
        assert body["model"] == "itemknn"
        served.update(it["item_id"] for it in body["items"])
    watched.get("/v1/recommend/nobody-yet", params={"k": 5})  # no history: trending
    rep = watched.get("/v1/admin/monitoring").json()
    row = next(r for r in rep["served"] if r["model"] == "itemknn")
    assert row["arm"] == "none" and row["lists"] == 8
    assert row["items_served"] == len(served)
    assert row["coverage"] == pytest.approx(len(served) / 40)
    assert row["gini"] == pytest.approx(gini(served.values(), n_items=40))
    assert {r["model"] for r in rep["served"]} == {"itemknn", "trending", "all"}
    low = next(a for a in rep["alerts"] if a["name"] == "low_coverage")
    assert low["firing"] == (next(r for r in rep["served"] if r["model"] == "all")["coverage"] < 0.9)

    text = watched.get("/metrics").text
    assert _metric(text, "soutui_lists_total", endpoint="recommend", model="itemknn", arm="none") == 8
    assert _metric(text, "soutui_lists_total", endpoint="recommend", model="trending", arm="none") == 1
    assert _metric(text, "soutui_list_seconds_count", endpoint="recommend", model="itemknn", arm="none") == 8
    assert _metric(text, "soutui_catalogue_coverage", model="itemknn", arm="none") == pytest.approx(len(served) / 40)
    assert 0 < _metric(text, "soutui_bundle_age_seconds", bundle=rep["bundle"]) < 3600
    assert _metric(text, "soutui_alert_threshold", alert="ingest_lag") == 300


def test_ab_experiment_lists_are_counted_per_arm(settings: ServeSettings) -> None:
    from fastapi.testclient import TestClient

    from soutui.serving.app import create_app

    arms = {"a": {"model": "popularity"}, "b": {"model": "itemknn"}}
    settings.experiments = from_dict(ServeSettings, {"experiments": [{"name": "split", "kind": "ab", **arms}]}).experiments
    seen: Counter[str] = Counter()
    with TestClient(create_app(settings)) as c:
        for u in range(20):
            body = c.get(f"/v1/recommend/u{u}", params={"k": 5}).json()
            seen[f"{body['experiment']['name']}:{body['experiment']['arm']}/{body['model']}"] += 1
        text = c.get("/metrics").text
    assert set(seen) == {"split:a/popularity", "split:b/itemknn"}  # both arms drawn among 20 users
    for key, n in seen.items():
        arm, model = key.split("/")
        assert _metric(text, "soutui_lists_total", endpoint="recommend", model=model, arm=arm) == n
        assert _metric(text, "soutui_catalogue_coverage", model=model, arm=arm) > 0


def test_empty_lists_are_counted(watched) -> None:  # type: ignore[no-untyped-def]
    body = watched.get("/v1/trending", params={"k": 5, "category": "no such category"}).json()
    assert body["items"] == []
    text = watched.get("/metrics").text
    assert _metric(text, "soutui_lists_empty_total", endpoint="trending", model="trending", arm="none") == 1


def test_drift_and_ingest_lag_alerts_fire(watched) -> None:  # type: ignore[no-untyped-def]
    rep = watched.get("/v1/admin/monitoring").json()
    assert rep["drift"]["reference_events"] == 60 * 8  # the shop: 8 events per user, all before the bundle
    assert rep["drift"]["event_type"] is None and not any(a["firing"] for a in rep["alerts"] if a["name"].startswith("drift"))
    # live traffic unlike training (views with one purchase in 8): 30 carts all on one item, 10 views of an
    # item the training window never saw, all 10 minutes late
    late = int(time.time()) - 600
    ev = [{"event_id": f"c{j}", "user_id": f"u{j % 5}", "item_id": "i1", "event_type": "cart", "ts": late} for j in range(30)]
    ev += [{"event_id": f"n{j}", "user_id": f"u{j % 5}", "item_id": "brand-new", "event_type": "view", "ts": late}
           for j in range(10)]
    assert watched.post("/v1/events", json={"events": ev}, headers=H).json()["accepted"] == 40
    rep = watched.get("/v1/admin/monitoring").json()
    d = rep["drift"]
    assert d["live_events"] == 40 and d["enough"]
    # reference mix: cart 0 (floored to 1e-4), purchase 1/8, view 7/8; live: cart 3/4, purchase 0, view 1/4
    e, a = np.array([1e-4, 1 / 8, 7 / 8]), np.array([3 / 4, 1e-4, 1 / 4])
    assert d["event_type"] == pytest.approx(float(np.sum((a - e) * np.log(a / e))), rel=1e-6)
    assert d["item_popularity"] > 0.25  # every known-item live event falls in one popularity bin
    assert d["new_item_share"] == pytest.approx(10 / 40)
    firing = {a["name"] for a in rep["alerts"] if a["firing"]}
    assert {"drift_event_type", "drift_item_popularity", "new_items", "ingest_lag"} <= firing
    assert "stale_model" not in firing
    assert 590 <= rep["ingest_lag_s"] <= 700
    text = watched.get("/metrics").text
    assert _metric(text, "soutui_drift_psi", feature="event_type") == pytest.approx(d["event_type"], rel=1e-6)
    assert _metric(text, "soutui_alert_firing", alert="drift_event_type") == 1
    assert _metric(text, "soutui_event_ingest_lag_seconds_count") == 40
    assert _metric(text, "soutui_drift_new_item_share") == pytest.approx(0.25)


def test_reload_makes_every_known_event_the_new_training_window(watched) -> None:  # type: ignore[no-untyped-def]
    ev = [{"event_id": f"r{j}", "user_id": "u1", "item_id": "i2", "event_type": "cart"} for j in range(25)]
    watched.post("/v1/events", json={"events": ev}, headers=H)
    before = watched.get("/v1/admin/monitoring").json()["drift"]
    assert before["live_events"] == 25 and before["reference_events"] == 480
    assert watched.post("/v1/admin/reload", json={}, headers=H).status_code == 200
    after = watched.get("/v1/admin/monitoring").json()["drift"]
    # the new bundle was (by assumption) built from everything known: the 480 store events + 25 live ones
    assert after["reference_events"] == 505 and after["live_events"] == 0 and after["event_type"] is None


def test_stale_bundle_alert(settings: ServeSettings) -> None:
    from fastapi.testclient import TestClient

    from soutui.serving.app import create_app

    settings.monitoring = MonitoringConfig(max_bundle_age_h=1e-9)
    with TestClient(create_app(settings)) as c:
        stale = next(a for a in c.get("/v1/admin/monitoring").json()["alerts"] if a["name"] == "stale_model")
        assert stale["firing"] and stale["value"] > 1e-9
        assert _metric(c.get("/metrics").text, "soutui_alert_firing", alert="stale_model") == 1


def test_served_is_cheap_on_the_hot_path() -> None:
    """O(k) per list whatever the catalogue: 2,000 lists of 10 items in well under a second."""
    from soutui.serving.monitoring import Monitor

    m = Monitor(MonitoringConfig())
    items = [f"i{j}" for j in range(10)]
    t0 = time.perf_counter()
    for _ in range(2000):
        m.served("recommend", "itemknn", None, items, 0.001)
    per_list_us = (time.perf_counter() - t0) / 2000 * 1e6
    assert per_list_us < 250, per_list_us  # measured ~10-20 us on a quiet machine


# --- /admin in a real browser ---------------------------------------------------------------

@pytest.mark.browser
def test_admin_says_stale_and_drifted_in_english_and_chinese(
    tmp_path: Path, shop: tuple[pd.DataFrame, pd.DataFrame], plain_bundle: Path, chromium  # type: ignore[no-untyped-def]
) -> None:
    import httpx
    from serving_shop import free_port, make_home, start_server, write_config

    cfg = write_config(tmp_path / "serve.toml", port=free_port(), bundle=str(plain_bundle), store=make_home(tmp_path, shop),
                       event_log=str(tmp_path / "e.jsonl"), api_key=API_KEY, demo=True)
    with cfg.open("a") as fh:  # a stale bundle (any age is too old) and drift judged from 20 live events
        fh.write("[monitoring]\nmax_bundle_age_h = 1e-9\nmin_drift_events = 20\n")
    proc, url = start_server(cfg)
    try:
        ev = [{"event_id": f"p{j}", "user_id": f"u{j % 5}", "item_id": "i1", "event_type": "cart"} for j in range(30)]
        assert httpx.post(url + "/v1/events", json={"events": ev}, headers=H, timeout=10).json()["accepted"] == 30
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            page.goto(url + "/admin")
            page.evaluate("localStorage.setItem('soutui.lang', 'en')")
            page.reload()
            page.wait_for_selector("#mon-verdicts li.firing")
            text = page.inner_text("#mon-verdicts")
            assert "The model is stale" in text and "The data has drifted" in text
            assert "Coverage is judged once 100 lists" in text  # no lists served yet: not judged
            page.select_option("#lang", "zh")
            page.wait_for_function("document.querySelector('#mon-verdicts').innerText.includes('模型已过时')")
            assert "数据已漂移" in page.inner_text("#mon-verdicts")
            artifacts = Path(__file__).resolve().parents[2] / "test-artifacts"
            artifacts.mkdir(exist_ok=True)
            page.screenshot(path=str(artifacts / "dashboard-monitoring-zh.png"), full_page=True)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_dashboard_and_alert_rules_name_only_metrics_the_server_exports(watched) -> None:  # type: ignore[no-untyped-def]
    """A misspelt metric in docs/grafana-dashboard.json or the rules of docs/monitoring.md would only
    draw an empty panel; here every name they use must be a sample of /metrics."""
    docs = Path(__file__).resolve().parents[2] / "docs"
    watched.get("/v1/recommend/u1")
    watched.get("/v1/trending", params={"category": "no such category"})  # an empty list
    watched.post("/v1/events", json={"events": [{"event_id": "d1", "user_id": "u1", "item_id": "i2", "event_type": "view"}]},
                 headers=H)
    exported = {s.name for f in text_string_to_metric_families(watched.get("/metrics").text) for s in f.samples}
    dash = (docs / "grafana-dashboard.json").read_text(encoding="utf-8")
    rules = (docs / "monitoring.md").read_text(encoding="utf-8").split("# soutui-alerts.yml", 1)[1]
    used = set(re.findall(r"\bsoutui_[a-z_]+", dash)) | set(re.findall(r"\bsoutui_[a-z_]+", rules))
    assert len(used) >= 14 and used <= exported, sorted(used - exported)
