"""Online experiments: assignment, team-draft interleaving, crediting, statistics, and the API end to end
(a real app on the synthetic shop: recommend -> impression -> events with impression_id -> report, restart)."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from scipy.stats import binomtest
from serving_shop import API_KEY
from statsmodels.stats import proportion as sm_prop

from soutui.config import ConfigError, from_dict
from soutui.serving.app import create_app
from soutui.serving.experiments import (
    Ledger,
    ab_arm,
    enrolled,
    proportion_diff,
    report_from_log,
    team_draft,
    win_test,
)
from soutui.serving.settings import ArmConfig, ExperimentConfig, ServeSettings

W = {"X-API-Key": API_KEY}


def exp(name: str = "e1", kind: str = "interleave", **kw: object) -> ExperimentConfig:
    a, b = ArmConfig(model="popularity"), ArmConfig(model="itemknn")
    return ExperimentConfig(name=name, kind=kind, a=a, b=b, **kw)  # type: ignore[arg-type]


# --- pure functions ------------------------------------------------------------------------

def test_team_draft_is_a_fair_draft_of_both_lists() -> None:
    la, lb = [f"x{i}" for i in range(10)], ["x1", "y1", "x0", "y2", "y3", "x2", "y4", "y5", "y6", "y7"]
    for seed in range(50):
        items, teams = team_draft(la, lb, 10, random.Random(seed))
        assert len(items) == 10 and len(set(items)) == 10
        for n in range(1, 11):  # after every pick the teams differ by at most one
            assert abs(teams[:n].count("a") - teams[:n].count("b")) <= 1
        for team, lst in (("a", la), ("b", lb)):
            mine = [i for i, t in zip(items, teams, strict=True) if t == team]
            # each team picks its own highest-ranked item not yet shown
            assert mine == sorted(mine, key=lst.index)
            for i in mine:
                higher = lst[: lst.index(i)]
                assert all(h in items[: items.index(i)] for h in higher)


def test_team_draft_by_hand() -> None:
    class Coin(random.Random):  # a always wins the toss
        def random(self) -> float:
            return 0.0

    items, teams = team_draft(["p", "q", "r"], ["q", "s", "t"], 4, Coin())
    assert items == ["p", "q", "r", "s"] and teams == ["a", "b", "a", "b"]
    items, teams = team_draft(["p"], ["q", "s"], 5, Coin())  # a runs out: b fills
    assert items == ["p", "q", "s"] and teams == ["a", "b", "b"]


def test_enrolment_slices_are_disjoint_and_ab_split_matches_its_share() -> None:
    e1, e2 = exp("e1", traffic=0.3), exp("e2", kind="ab", traffic=0.2, b_share=0.25)
    users = [f"user{i}" for i in range(20_000)]
    got = [enrolled([e1, e2], u) for u in users]
    n1, n2 = sum(g is e1 for g in got), sum(g is e2 for g in got)
    assert binomtest(n1, len(users), 0.3).pvalue > 1e-4 and binomtest(n2, len(users), 0.2).pvalue > 1e-4
    in2 = [u for u, g in zip(users, got, strict=True) if g is e2]
    nb = sum(ab_arm(e2, u) == "b" for u in in2)
    assert binomtest(nb, len(in2), 0.25).pvalue > 1e-4
    assert [ab_arm(e2, u) for u in in2[:50]] == [ab_arm(e2, u) for u in in2[:50]]  # stable
    reshuffled = dataclasses.replace(e2, salt="other")
    assert [ab_arm(e2, u) for u in in2] != [ab_arm(reshuffled, u) for u in in2]


def test_config_rejects_unknown_keys_and_overbooked_traffic() -> None:
    arm = {"model": "itemknn"}
    good = {"experiments": [{"name": "x", "kind": "ab", "a": arm, "b": arm, "traffic": 0.5}]}
    assert from_dict(ServeSettings, good).experiments[0].traffic == 0.5
    with pytest.raises(ConfigError, match="colour"):
        from_dict(ServeSettings, {"experiments": [{**good["experiments"][0], "colour": "red"}]})
    with pytest.raises(ConfigError):
        from_dict(ServeSettings, {"experiments": [{**good["experiments"][0], "kind": "bandit"}]})
    with pytest.raises(ConfigError, match="more than 1"):
        from_dict(ServeSettings, {"experiments": [{**good["experiments"][0], "name": n, "traffic": 0.6} for n in "xy"]})


def test_statistics_match_the_libraries() -> None:
    d = proportion_diff(30, 1000, 10, 1000)
    assert d["diff"] == pytest.approx(0.02)
    ref = sm_prop.test_proportions_2indep(30, 1000, 10, 1000, compare="diff", method="agresti-caffo")
    assert d["p_value"] == pytest.approx(ref.pvalue) and d["p_value"] < 0.05 and d["ci95"][0] > 0
    same = proportion_diff(10, 1000, 10, 1000)
    assert same["p_value"] > 0.9 and same["ci95"][0] < 0 < same["ci95"][1]
    assert proportion_diff(0, 500, 0, 500)["p_value"] == pytest.approx(1.0)
    w = win_test(60, 40)
    assert w["p_value"] == pytest.approx(binomtest(60, 100, 0.5).pvalue) and w["b_win_share"] == 0.6
    assert w["ci95"][0] < 0.6 < w["ci95"][1] and w["delta"] == pytest.approx(0.2)


def test_ledger_credits_only_matching_claims_once() -> None:
    led = Ledger()
    arms = {"a": {"model": "p"}, "b": {"model": "q"}}
    led.apply({"t": "imp", "id": "i1", "exp": "e", "kind": "interleave", "k": 3, "arms": arms, "user": "u1",
               "items": ["x", "y", "z"], "teams": ["a", "b", "a"], "ts": 1.0})
    claim = {"t": "claim", "impression_id": "i1", "event_id": "ev1", "event_type": "click", "item_id": "y", "user": "u1"}
    led.apply(claim)
    led.apply(claim)  # a retried batch: not counted twice
    led.apply({**claim, "event_id": "ev2", "user": "u2"})  # someone else's event
    led.apply({**claim, "event_id": "ev3", "item_id": "w"})  # an item not shown
    led.apply({**claim, "event_id": "ev4", "impression_id": "nope"})
    rep = led.report("e")
    assert rep is not None and rep["wins"] == {"a": 0, "b": 1, "tie": 0} and led.unmatched == 3
    assert rep["arms"]["b"]["ctr"] == 1.0 and rep["arms"]["a"]["ctr"] == 0.0
    led.apply({**claim, "event_id": "ev5", "item_id": "x"})
    led.apply({**claim, "event_id": "ev6", "item_id": "z"})  # a now has 2 clicks to b's 1
    led.apply({**claim, "event_id": "ev7", "item_id": "z", "event_type": "view"})  # views are not credited
    rep = led.report("e")
    assert rep is not None and rep["wins"] == {"a": 1, "b": 0, "tie": 0} and led.unmatched == 4


def _imps(led: Ledger, kind: str, user: str, n: int, clicked: int, arm: str = "b") -> None:
    """`n` impressions of `user`; the first `clicked` of them get a click on an item of `arm`."""
    arms = {"a": {"model": "p"}, "b": {"model": "q"}}
    for j in range(n):
        iid = f"{user}-{j}"
        rec = {"t": "imp", "id": iid, "exp": "e", "kind": kind, "k": 2, "arms": arms, "user": user,
               "items": ["x", "y"], "ts": 1.0}
        led.apply({**rec, "arm": arm} if kind == "ab" else {**rec, "teams": [arm, "a" if arm == "b" else "b"]})
        if j < clicked:
            led.apply({"t": "claim", "impression_id": iid, "event_id": f"c-{iid}", "event_type": "click",
                       "item_id": "x", "user": user})


def test_user_level_tests_count_users_not_impressions() -> None:
    from scipy.stats import ttest_ind

    led = Ledger()  # A/B: 30 users per arm, 3 clickers each; one heavy b user clicks on all of 100 visits
    for arm in ("a", "b"):
        for u in range(30):
            _imps(led, "ab", f"{arm}{u}", 100 if (arm, u) == ("b", 0) else 1, 100 if (arm, u) == ("b", 0) else int(u < 3), arm)
    rep = led.report("e")
    assert rep is not None and rep["impression_level_winner"] == "b" and rep["test"]["p_value"] < 1e-6  # pseudo-replication
    assert rep["winner"] is None  # the verdict is the user-level test's
    ul = rep["user_level"]
    clicks = {"a": [1] * 3 + [0] * 27, "b": [100, 1, 1] + [0] * 27}
    assert ul["users"] == {"a": 30, "b": 30} and ul["diff"] == pytest.approx((102 - 3) / 30)
    assert ul["p_value"] == pytest.approx(ttest_ind(clicks["b"], clicks["a"], equal_var=False).pvalue)
    assert ul["p_value"] > 0.05 and ul["winner"] is None
    led = Ledger()  # interleaving: u1 prefers b on 10 of 10 visits, u2 prefers a on its one visit
    _imps(led, "interleave", "u1", 10, 10, "b")
    _imps(led, "interleave", "u2", 1, 1, "a")
    _imps(led, "interleave", "u3", 3, 0)  # no click: no preference
    rep = led.report("e")
    assert rep is not None and rep["wins"] == {"a": 1, "b": 10, "tie": 3} and rep["impression_level_winner"] == "b"
    assert rep["winner"] is None
    ul = rep["user_level"]
    assert ul["preferences"] == {"a": 1, "b": 1, "tie": 1} and ul["winner"] is None
    assert ul["p_value"] == pytest.approx(binomtest(1, 2, 0.5).pvalue)


# --- the API end to end --------------------------------------------------------------------

@pytest.fixture
def exp_settings(settings: ServeSettings, tmp_path: Path) -> ServeSettings:
    return dataclasses.replace(settings, experiments=[exp("inter", traffic=0.5), exp("split", kind="ab", traffic=0.5)],
                               experiment_log=str(tmp_path / "exp.jsonl"))


def _serve_users(c: TestClient, users: list[str]) -> dict[str, dict]:  # type: ignore[type-arg]
    out = {}
    for u in users:
        r = c.get(f"/v1/recommend/{u}", params={"k": 6})
        assert r.status_code == 200, r.text
        out[u] = r.json()
    return out


def test_experiment_answers_events_and_report_survive_a_restart(exp_settings: ServeSettings) -> None:
    users = [f"u{i}" for i in range(60)]
    with TestClient(create_app(exp_settings)) as c:
        got = _serve_users(c, users)
        tags = {u: g["experiment"] for u, g in got.items()}
        assert {t["name"] for t in tags.values()} == {"inter", "split"}  # every user with history is in one
        inter = [u for u in users if tags[u]["name"] == "inter"]
        split = [u for u in users if tags[u]["name"] == "split"]
        for u in inter:
            assert tags[u]["arm"] is None and {i["arm"] for i in got[u]["items"]} <= {"a", "b"}
            assert got[u]["model"] == "interleaved"
        for u in split:
            assert tags[u]["arm"] in ("a", "b") and got[u]["model"] == ("popularity" if tags[u]["arm"] == "a" else "itemknn")
        again = _serve_users(c, split[:5])  # an A/B user keeps their arm
        assert [again[u]["experiment"]["arm"] for u in split[:5]] == [tags[u]["arm"] for u in split[:5]]
        assert "experiment" not in c.get("/v1/recommend/u1", params={"model": "itemknn"}).json()  # chosen model
        assert "experiment" not in c.get("/v1/recommend/nobody-new").json()  # no history: trending, no impression

        # click the first item of every interleaved list: the arm that placed it wins that impression
        evs = [{"event_id": f"c-{u}", "user_id": u, "item_id": got[u]["items"][0]["item_id"], "event_type": "click",
                "impression_id": tags[u]["impression_id"]} for u in inter]
        evs.append({**evs[0], "event_id": "forged", "user_id": "u999"})  # not the user it was shown to
        r = c.post("/v1/events", json={"events": evs}, headers=W)
        assert r.status_code == 200 and r.json()["accepted"] == len(evs)
        c.post("/v1/events", json={"events": evs[:3]}, headers=W)  # a retry credits nothing twice
        first_arms = [got[u]["items"][0]["arm"] for u in inter]
        rep = c.get("/v1/admin/experiments").json()
        assert rep["unmatched_claims"] == 1
        by = {e["name"]: e for e in rep["experiments"]}
        assert by["inter"]["wins"] == {"a": first_arms.count("a"), "b": first_arms.count("b"), "tie": 0}
        n_split = sum(by["split"]["arms"][a]["impressions"] for a in "ab")
        assert n_split == len(split) + 5 and by["split"]["arms"]["a"]["ctr"] == 0.0
    # a new server (restart) reads the same figures from the experiment log; so does the CLI's reader
    with TestClient(create_app(exp_settings)) as c:
        again_rep = c.get("/v1/admin/experiments").json()
    assert {e["name"]: e["wins"] for e in again_rep["experiments"] if e["kind"] == "interleave"} == {"inter": by["inter"]["wins"]}
    assert report_from_log(Path(exp_settings.experiment_log), "inter")[0]["wins"] == by["inter"]["wins"]


def test_cli_report_reads_the_log(exp_settings: ServeSettings, capsys: pytest.CaptureFixture[str]) -> None:
    from soutui.cli import main

    with TestClient(create_app(exp_settings)) as c:
        got = _serve_users(c, [f"u{i}" for i in range(30)])
    name = next(g["experiment"]["name"] for g in got.values())
    assert main(["experiment", "report", name, "--log", exp_settings.experiment_log, "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["name"] == name and rep["winner"] is None and rep["users"] >= 1
    assert main(["experiment", "report", name, "--log", exp_settings.experiment_log]) == 0
    text = capsys.readouterr().out
    assert f"experiment {name}" in text and "winner at 5%: none (not significant)" in text
    assert "user level (" in text and rep["user_level"]["winner"] is None  # the test at the randomisation unit
    assert main(["experiment", "report", "nosuch", "--log", exp_settings.experiment_log]) == 2


def test_an_arm_from_another_bundle(exp_settings: ServeSettings, shop_bundle: Path) -> None:
    other = ExperimentConfig(name="ob", kind="ab", a=ArmConfig(model="popularity"),
                             b=ArmConfig(model="itemknn", bundle=str(shop_bundle)), b_share=0.99)
    s = dataclasses.replace(exp_settings, experiments=[other])
    with TestClient(create_app(s)) as c:
        got = _serve_users(c, ["u1", "u2", "u3"])
    assert all(g["experiment"]["arm"] == "b" and g["model"] == "itemknn" for g in got.values())
    rep = report_from_log(Path(s.experiment_log), "ob")[0]
    assert rep["arms"]["b"]["bundle"] == shop_bundle.name


def test_dashboard_panel_strings_exist_in_both_languages() -> None:
    import re

    js = (Path(__file__).resolve().parents[2] / "src/soutui/web/static/admin_experiments.js").read_text(encoding="utf-8")
    tables = {lang: set(re.findall(r'"([\w.]+)":', body))
              for lang, body in re.findall(r"Object\.assign\(STRINGS\.(en|zh), \{(.*?)\n\}\);", js, re.S)}
    assert tables["en"] == tables["zh"] and len(tables["en"]) > 15
    used = set(re.findall(r'\bt\("([\w.]+)"', js)) | {f"exp.{m}" for m in ("ctr", "cart_rate", "purchase_rate")}
    assert used <= tables["en"], used - tables["en"]
