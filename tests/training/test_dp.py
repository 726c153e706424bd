"""DP-SGD (issue 12 §2): accounting equals Opacus's own, per-user gradients are exact, a DP run records privacy."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from opacus.accountants import RDPAccountant
from opacus.accountants.utils import get_noise_multiplier

from soutui.config import ConfigError
from soutui.evaluation.protocol import evaluate_full_ranking
from soutui.features.content import ItemContent
from soutui.models.fitting import poisson_user_batches
from soutui.models.mlp import MLPRecommender
from soutui.models.sasrec import SASRec, SASRecConfig
from soutui.training.dp import per_sample_grads
from soutui.training.pipeline import Prepared, run_training
from soutui.training.trainer import LoopTrainer

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
from sasrec_fixtures import SMALL, cyclic_data, sasrec  # noqa: E402

DP = {"dp_epsilon": 4.0, "dp_delta": 1e-3, "dp_clip": 1.0}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def test_reported_epsilon_equals_opacus_accountant() -> None:
    split = cyclic_data(200)
    m = sasrec(**SMALL, **DP, epochs=3, dp_head=0.0).fit(split.train, split.valid)  # DP-SGD alone
    p = m.training_report()["privacy"]  # type: ignore[index]
    users = sum(len(s) >= 2 for s in split.train.sequences)
    steps_per_epoch = math.ceil(users / SMALL["batch_size"])  # type: ignore[operator]
    assert p["unit"] == "user" and p["accountant"] == "rdp" and p["delta"] == 1e-3
    assert p["sample_rate"] == pytest.approx(1 / steps_per_epoch)
    assert p["steps"] == p["planned_steps"] == 3 * steps_per_epoch
    # the noise is Opacus's for the target over the planned steps, and epsilon is its accountant's
    sigma = get_noise_multiplier(target_epsilon=4.0, target_delta=1e-3, sample_rate=p["sample_rate"],
                                 steps=p["steps"], accountant="rdp")  # fmt: skip
    assert p["noise_multiplier"] == pytest.approx(sigma)
    acc = RDPAccountant()
    acc.history = [(p["noise_multiplier"], p["sample_rate"], p["steps"])]
    assert p["epsilon"] == pytest.approx(acc.get_epsilon(delta=1e-3), abs=1e-4)
    assert 3.9 < p["epsilon"] <= 4.0
    assert "co-occurrence head" in p["off_in_dp_mode"]
    assert float(m._net().cooc_alpha) == 0.0 and not m.ablations()  # dp_head=0: the head is off
    # and it learns under the noise: the walk (next = last + 1) ranks far above chance (~0.2 on 24 items)
    assert evaluate_full_ranking(m, split.test, split.train.n_items, (10,))["NDCG@10"] > 0.35


def test_private_head_and_dp_sgd_together_meet_the_target_epsilon() -> None:
    """The default DP mode: the co-occurrence head is a private release spending `dp_head` of the
    budget, DP-SGD's noise is solved for the rest, and the recorded epsilon is the TOTAL: one fresh
    Opacus accountant over both parts' histories gives it, it meets the target, and either part
    alone spends less."""
    split = cyclic_data(200)
    m = sasrec(**SMALL, **DP, epochs=3).fit(split.train, split.valid)
    p = m.training_report()["privacy"]  # type: ignore[index]
    head = p["head"]
    assert "co-occurrence head" not in p["off_in_dp_mode"] and float(m._net().cooc_alpha) == head["weight"] > 0
    acc = RDPAccountant()
    acc.history = [tuple(h) for h in head["history"]] + [(p["noise_multiplier"], p["sample_rate"], p["steps"])]
    assert [list(h) for h in acc.history] == p["history"]
    assert p["epsilon"] == pytest.approx(acc.get_epsilon(delta=1e-3), abs=1e-4)
    assert 3.95 < p["epsilon"] <= 4.0
    assert head["epsilon"] == pytest.approx(0.75 * 4.0, abs=0.02) and p["dp_sgd_epsilon"] < p["epsilon"]
    # the same budget all on DP-SGD needs less noise than DP-SGD's share of it
    alone = get_noise_multiplier(target_epsilon=4.0, target_delta=1e-3, sample_rate=p["sample_rate"],
                                 steps=p["steps"], accountant="rdp")  # fmt: skip
    assert p["noise_multiplier"] > alone
    assert evaluate_full_ranking(m, split.test, split.train.n_items, (10,))["NDCG@10"] > 0.35
    with pytest.raises(ConfigError, match="dp_head"):  # a head spending the whole budget is refused
        sasrec(**SMALL, **DP, dp_head=1.0)


def test_stopping_early_records_the_smaller_epsilon_spent() -> None:
    split = cyclic_data(200)
    m = sasrec(**SMALL, **DP, epochs=4, dp_steps=1000).fit(split.train)  # epochs end it first
    p = m.training_report()["privacy"]  # type: ignore[index]
    assert p["planned_steps"] == 1000 and p["steps"] < 1000
    # DP-SGD spent far less than its planned share; the total is the head's release plus what it spent
    assert 0 < p["dp_sgd_epsilon"] < 1.0 and p["head"]["epsilon"] < p["epsilon"] < 3.5


def test_per_sample_grads_equal_each_row_alone() -> None:
    torch.manual_seed(0)
    cfg = SASRecConfig(n_items=12, max_len=6, d_model=8, n_heads=2, n_layers=1, dropout=0.0, emb_dropout=0.0,
                       id_dropout=0.0, item_mask=0.0, time_dropout=0.0, cooc_neighbors=0,
                       dense_loss=True)  # fmt: skip
    net = SASRec(cfg).train()
    seq = torch.tensor([[0, 0, 3, 4, 5], [1, 2, 3, 4, 5], [0, 0, 0, 7, 8]])
    tgt = torch.tensor([[0, 0, 4, 5, 6], [2, 3, 4, 5, 6], [0, 0, 0, 8, 9]])
    grads, _ = per_sample_grads(net, [seq, tgt, None])
    for r in range(3):
        net.zero_grad()
        _, loss = net(seq[r : r + 1], tgt[r : r + 1], None)
        loss.backward()
        for name, p in net.named_parameters():
            ref = p.grad if p.grad is not None else torch.zeros_like(p)
            assert torch.allclose(grads[name][r], ref, atol=1e-5), name
    # the dense loss (DP) equals the indexed loss (default) on the same batch
    _, dense = net(seq, tgt, None)
    net.cfg.dense_loss = False
    _, indexed = net(seq, tgt, None)
    assert float(dense) == pytest.approx(float(indexed), rel=1e-5)


def test_poisson_batches_hold_each_user_at_most_once() -> None:
    gen, steps = poisson_user_batches(1000, 50, lambda users, rng: (users,))
    assert steps == 20
    drawn = [b[0] for b in gen(np.random.default_rng(0)) for _ in [0]]
    assert len(drawn) == 20 and all(len(set(u.tolist())) == len(u) for u in drawn)
    sizes = [len(u) for u in drawn]
    assert 35 < np.mean(sizes) < 65 and len(set(sizes)) > 1  # Poisson: about q x n, not fixed


def test_dp_runs_record_privacy_for_sasrec_and_mlp(tmp_path: Path) -> None:
    split = cyclic_data(200)
    prep = Prepared("cyclic", split.train, split, ItemContent())
    for model, params in (("sasrec", {**SMALL, "epochs": 2}), ("mlp", {"epochs": 2, "batch_size": 32})):
        rec = run_training("cyclic", model, {**params, **DP}, output=tmp_path / model, onnx=False,
                           prep=prep, progress=False)  # fmt: skip
        assert rec["privacy"]["unit"] == "user" and 0 < rec["privacy"]["epsilon"] <= 4.0
        assert set(rec["privacy"]) >= {"epsilon", "delta", "accountant", "unit"}
        assert rec["training"]["stopped"] == "dp_steps"


def test_mlp_private_batches_are_one_row_per_user() -> None:
    split = cyclic_data(100)
    m = MLPRecommender(batch_size=10, **DP).use_trainer(LoopTrainer(progress=False))
    m.n_items_ = split.train.n_items
    gen, steps = m._batches(split.train)
    users = sum(len(s) >= 2 for s in split.train.sequences)
    assert steps == math.ceil(users / 10)
    rows = sum(len(b[0]) for b in gen(np.random.default_rng(1)))  # type: ignore[arg-type]
    assert abs(rows - users) < 4 * math.sqrt(users)  # one expected pass over users, not over events


def test_sampled_softmax_is_refused_in_dp_mode() -> None:
    split = cyclic_data(50)
    with pytest.raises(ConfigError, match="full_ce"):
        sasrec(**SMALL, **DP, loss="sampled_softmax").fit(split.train)


def test_cli_train_json_record_carries_privacy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    import json

    import soutui.training.pipeline as pipeline
    from soutui.cli import main

    split = cyclic_data(120)
    monkeypatch.setattr(
        pipeline, "prepare", lambda *a, **k: Prepared("tiny", split.train, split, ItemContent())
    )
    sets = [f"--set={k}={json.dumps(v)}" for k, v in {**SMALL, **DP, "epochs": 1}.items() if k != "progress"]
    assert (
        main(["train", "--dataset", "tiny", "--output", str(tmp_path / "run"), "--no-onnx", "--json", *sets])
        == 0
    )
    rec = json.loads(capsys.readouterr().out)
    assert rec["privacy"]["unit"] == "user" and rec["privacy"]["accountant"] == "rdp"
    assert json.loads((tmp_path / "run" / "training.json").read_text())["privacy"] == rec["privacy"]


def test_bundle_manifest_and_admin_endpoint_carry_privacy(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    sys.path.insert(0, str(Path(__file__).parents[1] / "serving"))
    from serving_shop import API_KEY, make_home, make_shop

    from soutui.data.sequences import SequenceData
    from soutui.models.popularity import Popularity
    from soutui.serving.app import create_app
    from soutui.serving.bundle_build import catalogue_in_index_order, write_bundle
    from soutui.serving.settings import ServeSettings

    shop = make_shop()
    data = SequenceData.from_events(shop[1], shop[0])
    mlp = MLPRecommender(epochs=1, batch_size=16, **DP).use_trainer(LoopTrainer(progress=False)).fit(data)
    bundle = write_bundle(tmp_path / "bundles", "shop", catalogue_in_index_order(shop[0], data.item_ids),
                          {"popularity": Popularity().fit(data), "mlp": mlp}, "popularity")  # fmt: skip
    settings = ServeSettings(bundle=str(bundle), bundles_dir=str(bundle.parent), store=make_home(tmp_path, shop),
                             api_key=API_KEY, event_log=str(tmp_path / "events.jsonl"), flush_interval_s=0.0,
                             demo=True)  # fmt: skip
    with TestClient(create_app(settings)) as c:
        info = c.get("/v1/admin/bundle").json()
    assert set(info["privacy"]) == {"mlp"}  # the popularity model is not private, and is not listed
    assert info["privacy"]["mlp"]["unit"] == "user" and 0 < info["privacy"]["mlp"]["epsilon"] <= 4.0
    assert info["manifest"]["privacy"] == info["privacy"]


@pytest.mark.parametrize(
    "bad", [{"dp_epsilon": -1.0}, {"dp_delta": 0.0}, {"dp_delta": 1.0}, {"dp_clip": 0.0}]
)
def test_bad_privacy_settings_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match="dp_"):
        sasrec(**SMALL, **{**DP, **bad})
    with pytest.raises(ConfigError, match="dp_"):
        MLPRecommender(**{**DP, **bad}).train_config()


def test_content_only_items_train_privately_with_no_id_table() -> None:
    """item_ids=false: items are their public title vectors only; the ID table stays zero and is no
    parameter DP-SGD trains (so no noise is spent on it), and the model still learns the walk."""
    split = cyclic_data(200)
    rng = np.random.default_rng(0)
    titles = rng.normal(size=(split.train.n_items, 12)).astype(np.float32)  # one public vector per item
    content = ItemContent(text=titles / np.linalg.norm(titles, axis=1, keepdims=True))
    # nothing hidden: the walk's next item is read from the last item, and hiding it in a fifth of the
    # steps only slows this 3-epoch toy
    m = sasrec(**{**SMALL, "lr": 0.03}, **DP, epochs=3, item_ids=False, item_mask=0.0)
    m.fit(split.train, content=content)
    net = m._net()
    assert not net.items.id_emb.weight.requires_grad and float(net.items.id_emb.weight.abs().sum()) == 0.0
    assert m.training_report()["privacy"]["epsilon"] <= 4.0  # type: ignore[index]
    assert evaluate_full_ranking(m, split.test, split.train.n_items, (10,))["NDCG@10"] > 0.35
    with pytest.raises(ConfigError, match="item_ids=false needs"):
        sasrec(**SMALL, epochs=1, item_ids=False).fit(split.train)
