"""A real Prometheus (Debian's `prometheus` package) scrapes a real `soutui serve` on loopback,
and the metrics come back through Prometheus's HTTP API (/api/v1/query)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from serving_shop import API_KEY, build_shop_bundle, free_port, make_home, start_server, write_config

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
DOCS = Path(__file__).resolve().parents[2] / "docs"

MISSING = "the prometheus binary is absent (Debian: apt-get install prometheus; scripts/setup.sh does)"
# CI sets SOUTUI_REQUIRE_PROMETHEUS=1: there a missing binary fails the test instead of skipping it
pytestmark = pytest.mark.skipif(
    PROMETHEUS is None and os.environ.get("SOUTUI_REQUIRE_PROMETHEUS") != "1", reason=MISSING
)


def _query(prom: str, expr: str) -> list[dict[str, Any]]:
    r = httpx.get(prom + "/api/v1/query", params={"query": expr}, timeout=5)
    r.raise_for_status()
    body = r.json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def _wait_for(prom: str, expr: str, deadline: float) -> list[dict[str, Any]]:
    while time.time() < deadline:
        try:
            found = _query(prom, expr)
        except httpx.HTTPError:
            found = []
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"Prometheus never returned {expr!r}")


def _alert_rules(out: Path) -> Path:
    """The alerting rules of docs/monitoring.md, as the file a reader would copy."""
    text = (DOCS / "monitoring.md").read_text(encoding="utf-8")
    m = re.search(r"```yaml\n# soutui-alerts.yml\n(.*?)```", text, re.S)
    assert m, "docs/monitoring.md lost its alerting rules block"
    out.write_text(m.group(1))
    return out


def _dashboard_queries() -> list[str]:
    """Every PromQL expression of docs/grafana-dashboard.json, Grafana's variables set to match all."""
    dash = json.loads((DOCS / "grafana-dashboard.json").read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [v["query"]["query"].removeprefix("label_values(").rsplit(",", 1)[0] for v in dash["templating"]["list"]]
    return [re.sub(r"\$(job|model|arm)\b", ".*", e) for e in exprs]


def test_prometheus_scrapes_soutui_and_answers_a_query(tmp_path: Path, shop: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    assert PROMETHEUS is not None, MISSING
    start = time.time()
    shop_bundle = build_shop_bundle(tmp_path / "bundles", *shop, search=False)  # no search index: a quick start
    cfg = write_config(
        tmp_path / "serve.toml", port=free_port(), bundle=str(shop_bundle), store=make_home(tmp_path, shop),
        event_log=str(tmp_path / "events.jsonl"), api_key=API_KEY, demo=True,
    )
    server, url = start_server(cfg)
    started = time.time()
    prom_port = free_port()
    rules = _alert_rules(tmp_path / "soutui-alerts.yml")
    assert PROMTOOL is not None
    check = subprocess.run([PROMTOOL, "check", "rules", str(rules)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    prom_cfg = tmp_path / "prometheus.yml"
    prom_cfg.write_text(
        f"global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {rules}\n"
        "scrape_configs:\n  - job_name: soutui\n    metrics_path: /metrics\n"
        f"    static_configs:\n      - targets: ['{url.removeprefix('http://')}']\n"
    )
    prom = subprocess.Popen(
        [PROMETHEUS, f"--config.file={prom_cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    prom_url = f"http://127.0.0.1:{prom_port}"
    try:
        for u in range(6):
            assert httpx.get(f"{url}/v1/recommend/u{u}", params={"k": 5}, timeout=10).status_code == 200
        deadline = time.time() + 25
        up = _wait_for(prom_url, 'up{job="soutui"} == 1', deadline)
        assert up[0]["metric"]["instance"] == url.removeprefix("http://")
        lists = _wait_for(prom_url, 'soutui_lists_total{endpoint="recommend",model="itemknn",arm="none"}', deadline)
        assert float(lists[0]["value"][1]) == 6  # the six lists asked above, read back through Prometheus
        age = _wait_for(prom_url, "soutui_bundle_age_seconds", deadline)
        assert 0 < float(age[0]["value"][1]) < 3600
        cov = _wait_for(prom_url, 'soutui_catalogue_coverage{model="itemknn"}', deadline)
        assert 0 < float(cov[0]["value"][1]) <= 1
        for expr in _dashboard_queries():  # valid PromQL that Prometheus evaluates (status "success")
            _query(prom_url, expr)
        while time.time() < deadline:  # the rules load and evaluate without error
            groups = httpx.get(prom_url + "/api/v1/rules", timeout=5).json()["data"]["groups"]
            health = [r["health"] for g in groups for r in g["rules"]]
            if health and "unknown" not in health:
                break
            time.sleep(0.3)
        assert len(health) == 7 and set(health) == {"ok"}, groups
    finally:
        prom.terminate()
        server.terminate()
        err = prom.communicate(timeout=20)[1]
        server.wait(timeout=20)
    assert prom.returncode in (0, -15), err.decode()[-2000:]
    print(f"server up after {started - start:.1f} s; Prometheus answered after {time.time() - started:.1f} s more")
