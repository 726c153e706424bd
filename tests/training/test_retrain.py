"""Continuous training: SASRec warm start (items matched by id, new items content-initialised),
the time-window split, the window metrics across vocabularies, the gate, and `soutui retrain`
end to end on a store with new items and live events."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
from sasrec_fixtures import SMALL, sasrec  # noqa: E402

from soutui.config import ConfigError  # noqa: E402
from soutui.data.sequences import SequenceData  # noqa: E402
from soutui.evaluation.metrics import ndcg_from_ranks  # noqa: E402
from soutui.features.content import ItemContent  # noqa: E402
from soutui.models.itemknn import ItemKNN  # noqa: E402
from soutui.models.popularity import Popularity  # noqa: E402
from soutui.training.retrain import (  # noqa: E402
    MISS,
    cutoff_time,
    decide,
    final_fit,
    fit_recipe,
    last_event_holdout,
    paired_difference,
    retrain_config,
    run_gate,
    split_at,
    window_metrics,
)

N = 24
T0 = 1_600_000_000
DAY = 86400
TINY = {**SMALL, "cooc_neighbors": 0, "epochs": 12, "patience": 3}


def cyclic(n_users: int = 160, seed: int = 0, ids: list[str] | None = None) -> SequenceData:
    """Users walk the cycle i0 -> i1 -> ... -> i23 -> i0 one event a day, starting on day u / 10."""
    rng = np.random.default_rng(seed)
    ids = ids or [f"i{i}" for i in range(N)]
    index = {x: j for j, x in enumerate(ids)}
    seqs, tss = [], []
    for u in range(n_users):
        start, length = int(rng.integers(N)), int(rng.integers(5, 12))
        seqs.append(np.array([index[f"i{(start + k) % N}"] for k in range(length)], np.int64))
        tss.append(T0 + (u // 10 + np.arange(length)) * DAY)
    users = np.array([f"u{u}" for u in range(n_users)], dtype=object)
    return SequenceData(np.array(ids, dtype=object), users, seqs, tss)


def text_for(ids: list[str], twin: dict[str, str] | None = None) -> ItemContent:
    """A random 8-d 'title vector' per old item; a twin copies its original's vector."""
    base = np.random.default_rng(1).normal(size=(N, 8)).astype(np.float32)
    rows = [base[int((twin or {}).get(x, x)[1:])] for x in ids]
    return ItemContent(text=np.stack(rows))


@pytest.fixture(scope="module")
def previous():  # type: ignore[no-untyped-def]
    data = cyclic()
    train, valid = last_event_holdout(data)
    return sasrec(**TINY).fit(train, valid, content=text_for(list(data.item_ids)))


def test_warm_start_matches_items_by_id_and_content_initialises_new_ones(previous) -> None:  # type: ignore[no-untyped-def]
    old_ids = [f"i{i}" for i in range(N)]
    new_ids = [*reversed(old_ids), "new5"]  # another order, and an item nobody has bought: a twin of i5
    data = cyclic(ids=new_ids)
    content = text_for(new_ids, twin={"new5": "i5"})
    cand = sasrec(**{**TINY, "epochs": 0}).warm_start(previous).fit(data, content=content)  # no training step
    hist_old = np.array([2, 3, 4])
    hist_new = np.array([new_ids.index(f"i{i}") for i in hist_old])
    before = previous.score([hist_old])[0]
    after = cand.score([hist_new])[0]
    np.testing.assert_allclose(after[[new_ids.index(x) for x in old_ids]], before, rtol=1e-5, atol=1e-5)
    report = cand.training_report()
    assert report is not None and report["warm_start"]["items_new"] == 1
    assert report["warm_start"]["items_kept"] == N
    rank = np.argsort(-after).tolist()
    assert rank.index(new_ids.index("i5")) <= 1  # the model learned the cycle: i4 -> i5 ...
    # ... and the never-bought twin of i5 is recommended beside it
    assert rank.index(new_ids.index("new5")) <= 1
    assert after[new_ids.index("new5")] == pytest.approx(after[new_ids.index("i5")], abs=0.5)
    fresh = sasrec(**{**TINY, "epochs": 0}).fit(data, content=content)  # no warm start: an untrained model
    assert np.argsort(-fresh.score([hist_new])[0])[0] != new_ids.index("i5")


def test_warm_start_refuses_another_network(previous) -> None:  # type: ignore[no-untyped-def]
    data = cyclic()
    with pytest.raises(ConfigError, match="cannot warm-start"):
        sasrec(**{**TINY, "d_model": 8, "epochs": 0}).warm_start(previous).fit(
            data, content=text_for(list(data.item_ids))
        )
    with pytest.raises(ConfigError, match="cannot warm-start sasrec: items.text_proj"):
        sasrec(**{**TINY, "epochs": 0}).warm_start(previous).fit(data, content=ItemContent())  # no titles now
    with pytest.raises(ConfigError, match="DP-SGD fit cannot warm-start"):
        sasrec(**{**TINY, "epochs": 0, "dp_epsilon": 8.0}).warm_start(previous).fit(
            data, content=text_for(list(data.item_ids))
        )
    with pytest.raises(ConfigError, match="only warm-start from a fitted sasrec"):
        sasrec(**TINY).warm_start(Popularity().fit(data))


def test_split_at_holds_out_the_window_by_time() -> None:
    data = cyclic(n_users=40)
    cfg = retrain_config({"window_days": 3})
    cut = cutoff_time(data, cfg)
    assert data.timestamps is not None
    assert cut == int(np.concatenate(data.timestamps).max()) - 3 * DAY
    assert (
        cutoff_time(data, cfg, serving_until=cut + DAY) == cut + DAY + 1
    )  # never a day the serving model saw
    assert cutoff_time(data, cfg, serving_until=cut - DAY) == cut
    w = split_at(data, cut)
    assert w.train.timestamps is not None
    assert all((t < cut).all() for t in w.train.timestamps)
    held = sum(int((t >= cut).sum()) for t in data.timestamps)
    assert w.events == held and w.train.n_interactions == data.n_interactions - held
    for u, h, y in zip(w.targets.users, w.targets.histories, w.targets.targets, strict=True):
        seq = data.sequences[u]
        assert len(h) >= 1 and seq[len(h)] == y and data.timestamps[u][len(h)] >= cut  # target in the window
        assert np.array_equal(seq[: len(h)], h)  # the history is everything before it
    first_in_window = sum(1 for t in data.timestamps if t[0] >= cut)  # a user's first event has no history
    assert len(w.targets) == held - first_in_window
    frac = split_at(data, cutoff_time(data, retrain_config({"window_frac": 0.5, "window_days": 0})))
    assert 0 < frac.events < data.n_interactions
    with pytest.raises(ConfigError):
        retrain_config({"window_days": 0})
    with pytest.raises(ConfigError):
        retrain_config({"margin": 0.1, "typo": 1})


def test_window_metrics_count_targets_outside_a_models_catalogue_as_misses() -> None:
    ids = ["a", "b", "c", "new"]
    seqs = [np.array([0, 1, 1]), np.array([0, 1, 2]), np.array([2, 3])]  # user 2 buys the new item last
    tss = [np.array([T0, T0 + DAY, T0 + 5 * DAY]), np.array([T0, T0 + DAY, T0 + 5 * DAY]),
           np.array([T0, T0 + 5 * DAY])]  # fmt: skip
    data = SequenceData(np.array(ids, dtype=object), np.array(["u0", "u1", "u2"], dtype=object), seqs, tss)
    w = split_at(data, T0 + 2 * DAY)
    assert sorted(w.targets.targets.tolist()) == [1, 2, 3]
    old = SequenceData(np.array(ids[:3], dtype=object), data.user_ids, [np.array([0, 1, 1, 1])], None)
    pop = Popularity().fit(old)  # knows a, b, c; b most popular, then a, then c
    m = window_metrics(pop, ids[:3], data, w)
    # targets: b (rank 0), c (rank 2, behind b and a), new (unknown: a miss)
    want = (ndcg_from_ranks(np.array([0]), 10) + ndcg_from_ranks(np.array([2]), 10)) / 3
    assert m["targets"] == 3 and m["targets_known"] == 2
    assert m["NDCG@10"] == pytest.approx(want, abs=1e-6) and m["HR@10"] == pytest.approx(2 / 3, abs=1e-6)


def test_gate_promotes_a_better_candidate_and_refuses_a_worse_one() -> None:
    data = cyclic()
    cfg = retrain_config({"window_days": 4})
    ids = list(data.item_ids)
    stale = Popularity().fit(split_at(data, cutoff_time(data, cfg)).train)
    good, _ = run_gate(data, None, (stale, ids), None, "itemknn", {}, cfg)
    assert good["promoted"] and good["candidate"]["NDCG@10"] > good["serving"]["NDCG@10"]
    assert good["window"]["targets"] > 0 and good["time"]["candidate_fit_s"] >= 0
    lo, hi = good["difference"]["ci95"]
    assert lo <= good["difference"]["ndcg10_diff"] <= hi and good["difference"]["ndcg10_diff"] > 0
    want = good["candidate"]["NDCG@10"] - good["serving"]["NDCG@10"]
    assert good["difference"]["ndcg10_diff"] == pytest.approx(want, abs=1e-5)
    strong = ItemKNN().fit(data)  # saw the window itself: unbeatable by a popularity candidate
    bad, _ = run_gate(data, None, (strong, ids), None, "popularity", {}, cfg)
    assert not bad["promoted"] and "<" in bad["reason"]
    gap = bad["serving"]["NDCG@10"] - bad["candidate"]["NDCG@10"]
    lenient = retrain_config({"window_days": 4, "margin": gap + 1e-3})
    assert run_gate(data, None, (strong, ids), None, "popularity", {}, lenient)[0]["promoted"]
    assert decide({"NDCG@10": 0.30}, {"NDCG@10": 0.31}, 0.02)[0]
    assert not decide({"NDCG@10": 0.28}, {"NDCG@10": 0.31}, 0.02)[0]


def test_gate_warm_starts_sasrec_on_a_grown_catalogue(previous) -> None:  # type: ignore[no-untyped-def]
    ids = [f"i{i}" for i in range(N)] + ["new5"]
    data = cyclic(ids=ids)
    cfg = retrain_config({"window_days": 4})
    rec, cand = run_gate(data, text_for(ids, {"new5": "i5"}), (previous, ids[:N]), previous, "sasrec",
                         {**TINY, "epochs": 2}, cfg)  # fmt: skip
    assert cand.n_items_ == N + 1
    assert rec["warm_start"]["items_new"] == 1 and rec["warm_start"]["items_kept"] == N
    assert rec["candidate_epochs"] == 2
    assert rec["serving"]["targets_known"] == rec["serving"]["targets"]  # no window event buys new5
    json.dumps(rec)  # the record is plain JSON


def test_paired_difference_matches_a_hand_computed_paired_t_interval() -> None:
    from scipy import stats

    rng = np.random.default_rng(0)
    cand = rng.integers(0, 30, 400)
    serv = np.where(rng.random(400) < 0.5, cand, rng.integers(0, 30, 400))
    serv[:20] = MISS  # targets the serving model cannot score
    gain = lambda r: np.where(r < 10, 1 / np.log2(np.minimum(r, 10) + 2), 0.0)  # noqa: E731
    d = gain(cand) - gain(serv)
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    out = paired_difference(cand, serv)
    assert out["ndcg10_diff"] == pytest.approx(d.mean(), abs=1e-6)
    assert out["ci95"] == pytest.approx([d.mean() - half, d.mean() + half], abs=1e-6)
    assert 0 < out["p_value"] < 1
    same = paired_difference(cand, cand)
    assert same["ndcg10_diff"] == 0 and same["p_value"] == 1.0
    far = paired_difference(
        np.zeros(100, np.int64), np.full(100, MISS)
    )  # candidate always first, serving never
    assert far["ndcg10_diff"] == 1.0 and far["p_value"] < 1e-6


def test_retrain_waits_for_a_store_a_writer_holds(tmp_path: Path) -> None:
    import subprocess
    import time

    from soutui.data.store import StoreLockedError, open_store
    from soutui.serving.retrain_bundle import read_events

    items, events = _shop()
    path = tmp_path / "store.duckdb"
    store = open_store(f"duckdb://{path}")
    store.write_dataset("shop", {"items": items, "events": events})
    store.close()
    hold = (
        "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True); time.sleep(3)"
    )
    writer = subprocess.Popen([sys.executable, "-c", hold, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "held"
        with pytest.raises(StoreLockedError):
            read_events("shop", f"duckdb://{path}", 0.3, lambda msg: None)
        said: list[str] = []
        t0 = time.monotonic()
        _, got = read_events("shop", f"duckdb://{path}", 30, said.append)
        assert time.monotonic() - t0 > 1.0 and len(got) == len(events)  # read once the writer let go
        assert said and "store busy" in said[0]
    finally:
        writer.kill()
        writer.wait()


# --- end to end: store with live events and new items, a bundle with a SASRec checkpoint ------------------
SHOP_TS = 1_700_000_000


def test_final_fit_learns_each_users_last_event_which_the_recipe_only_validates() -> None:
    """Known answer: item "new" is only ever bought last. The early-stopped recipe holds every
    user's last event out for validation, so it never learns it; the refit (the default) does."""
    base = cyclic()
    ids = [*base.item_ids, "new"]
    seqs = [np.append(s, N) for s in base.sequences]
    tss = [np.append(t, t[-1] + DAY) for t in base.timestamps or []]
    data = SequenceData(np.array(ids, dtype=object), base.user_ids, seqs, tss)
    candidate = fit_recipe("itemknn", {}, data, None, None)
    hists = [np.array([(k + 1) % N, (k + 2) % N]) for k in range(N)]
    assert np.all(candidate.score(hists)[:, N] == 0)  # never trained on a user's last event
    published, how = final_fit(candidate, "itemknn", {}, data, None, None)
    assert how == "refit" and np.all(published.score(hists)[:, N] > 0)
    np.testing.assert_array_equal(published.score(hists), ItemKNN().fit(data).score(hists))
    again, how = final_fit(candidate, "itemknn", {}, data, None, None, refit=False)
    assert how == "recipe" and np.all(again.score(hists)[:, N] == 0)


def _shop() -> tuple[pd.DataFrame, pd.DataFrame]:
    items = pd.DataFrame({"item_id": [f"i{j}" for j in range(N)], "title": [f"Product {j}" for j in range(N)],
                          "category": [f"c{j % 3}" for j in range(N)]})  # fmt: skip
    data = cyclic(n_users=120)
    assert data.timestamps is not None
    rows = [(f"e{u}-{k}", f"u{u}", f"i{int(x)}", "purchase", int(t))
            for u, (s, ts) in enumerate(zip(data.sequences, data.timestamps, strict=True))
            for k, (x, t) in enumerate(zip(s, ts, strict=True))]  # fmt: skip
    return items, pd.DataFrame(rows, columns=["event_id", "user_id", "item_id", "event_type", "ts"])


def test_soutui_retrain_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    from soutui.cli import main
    from soutui.data.store import open_store
    from soutui.serving.bundle import load_bundle
    from soutui.serving.retrain_bundle import decisions_path, publish

    monkeypatch.setenv("SOUTUI_HOME", str(tmp_path / "home"))
    items, events = _shop()
    url = f"duckdb://{tmp_path / 'store.duckdb'}"
    store = open_store(url)
    store.write_dataset("shop", {"items": items, "events": events})
    store.close()
    data = SequenceData.from_events(events, items)
    train, valid = last_event_holdout(data)
    first = sasrec(**TINY).fit(train, valid, content=ItemContent.from_items(items, data.item_ids))
    decision = {"protocol": "initial", "candidate": {}, "serving": {}}
    old = publish(tmp_path / "bundles", "shop", items, data, "sasrec", first, decision, with_search=False)
    assert (old / "models" / "sasrec" / "checkpoint" / "sasrec.pt").is_file()
    # a new item arrives in the catalogue, and live events (as the server syncs them) follow
    new_items = pd.concat(
        [items, pd.DataFrame({"item_id": ["i99"], "title": ["Product 99"], "category": ["c1"]})]
    )
    last = int(events["ts"].max())
    live = pd.DataFrame([(f"live{k}", f"u{k}", f"i{k % N}", "purchase", last + DAY + k) for k in range(30)],
                        columns=["event_id", "user_id", "item_id", "event_type", "ts"])  # fmt: skip
    store = open_store(url)
    store.write_dataset("shop", {"items": new_items, "events": pd.concat([events, live])})
    store.close()
    argv = ["retrain", "--dataset", "shop", "--store", url, "--bundles-dir", str(tmp_path / "bundles"),
            "--window-days", "3", "--encoder", "none", "--margin", "1", "--set", "epochs=2", "--json"]  # fmt: skip
    assert main(argv) == 0
    rec = json.loads(capsys.readouterr().out)
    assert (
        rec["promoted"]
        and rec["bundle"]
        and rec["serving_bundle"] == "shop-" + old.name.removeprefix("shop-")
    )
    assert rec["warm_start"]["items_new"] == 1 and rec["window"]["targets"] > 0
    # the published model: the candidate's recipe refitted on every event (its validated epoch count)
    assert rec["final_fit"]["how"] == "refit" and rec["final_fit"]["interactions"] == len(events) + len(live)
    assert 1 <= rec["final_fit"]["epochs"] <= rec["candidate_epochs"]
    assert {"NDCG@10", "HR@10", "targets"} <= set(rec["candidate"])
    # a 3-day window would reach back into the first bundle's data: it starts after it, at the live events
    assert rec["window"]["clipped_to_serving_data"] and rec["window"]["events"] == len(live)
    assert rec["serving_saw_window"] is False and rec["serving_data_until"] == last
    new = load_bundle(rec["bundle"])
    assert len(new.catalogue) == N + 1 and new.models["sasrec"].n_items_ == N + 1
    assert new.manifest["default_recommender"] == "sasrec" and {"popularity", "itemknn"} <= set(new.models)
    logged = [json.loads(x) for x in decisions_path("shop").read_text().splitlines()]
    assert len(logged) == 1 and logged[0]["promoted"] and logged[0]["candidate"] == rec["candidate"]
    # more live events; an untrained candidate (--cold, no epoch) against the trained bundle is not promoted
    more = live.assign(event_id="more-" + live["event_id"], ts=live["ts"] + 5 * DAY,
                       item_id=[f"i{(k + 1) % N}" for k in range(len(live))])  # the cycle goes on  # fmt: skip
    store = open_store(url)
    store.write_dataset("shop", {"items": new_items, "events": pd.concat([events, live, more])})
    store.close()
    assert main([*argv[:-5], "--margin", "0", "--set", "epochs=0", "--cold"]) == 0
    out = capsys.readouterr().out
    assert "candidate NDCG@10" in out and "not promoted" in out
    # promoted again (lenient margin); then nothing is newer than the serving bundle's data: a recorded skip
    assert main([*argv[:-5], "--margin", "1", "--set", "epochs=1"]) == 0
    assert "promoted: " in capsys.readouterr().out
    assert main([*argv[:-5], "--margin", "0"]) == 0
    assert "not promoted: no events after" in capsys.readouterr().out
    logged = [json.loads(x) for x in decisions_path("shop").read_text().splitlines()]
    got = [(r["promoted"], r.get("skipped", False)) for r in logged]
    assert got == [(True, False), (False, False), (True, False), (False, True)]
    assert logged[1]["window"]["events"] == len(more)  # the window starts after the serving bundle's data


def test_soutui_retrain_rejects_a_config_with_an_unknown_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from soutui.cli import main

    bad = tmp_path / "retrain.toml"
    bad.write_text("[retrain]\nwindow_days = 3\nmargn = 0.01\n")
    assert main(["retrain", "--dataset", "shop", "--config", str(bad)]) == 2
    assert "margn" in capsys.readouterr().err
    bad.write_text("[retrain]\nmargin = -0.5\n")
    assert main(["retrain", "--dataset", "shop", "--config", str(bad)]) == 2
    assert "margin must be >= 0" in capsys.readouterr().err


def test_docs_retrain_config_block_is_every_key_at_its_default() -> None:
    import dataclasses
    import re
    import tomllib

    from soutui.training.retrain import RetrainConfig

    doc = (Path(__file__).resolve().parents[2] / "docs" / "retrain.md").read_text(encoding="utf-8")
    block = re.search(r"```toml\n(\[retrain\].*?)```", doc, re.S)
    assert block is not None, "docs/retrain.md lost its [retrain] block"
    table = tomllib.loads(block.group(1))["retrain"]
    assert set(table) == {f.name for f in dataclasses.fields(RetrainConfig)}
    assert retrain_config(table) == RetrainConfig()
