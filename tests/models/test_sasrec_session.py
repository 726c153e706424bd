"""SASRec's session head: session-kNN votes added with a weight chosen on validation, served alike.

Known answer: every session is one "topic" of four items in random order, so the items seen name
the rest. Session-kNN finds them from whole sessions; a barely trained transformer does not, so
validation must choose a weight above 0, and the head must lift the topic's other items.
"""

from __future__ import annotations

import numpy as np
import pytest
from sasrec_fixtures import SMALL, sasrec

from soutui.config import ConfigError
from soutui.data.sequences import SequenceData, leave_one_out
from soutui.models.registry import load_model
from soutui.models.sasrec_onnx import OnnxScorer, export_onnx
from soutui.models.sasrec_recommender import SASRecRecommender
from soutui.models.sknn import SessionKNN

TOPICS, SIZE = 10, 4


def topic_sessions(n: int = 400, seed: int = 0) -> SequenceData:
    rng = np.random.default_rng(seed)
    seqs = [SIZE * int(rng.integers(TOPICS)) + rng.permutation(SIZE) for _ in range(n)]
    ids = np.array([f"i{i}" for i in range(SIZE * TOPICS)], dtype=object)
    return SequenceData(ids, np.array([f"s{u}" for u in range(n)], dtype=object), seqs, None)


@pytest.fixture(scope="module")
def fitted():  # type: ignore[no-untyped-def]
    split = leave_one_out(topic_sessions())
    params = {**SMALL, "lr": 1e-4}  # barely trained: the network alone does not know the topics
    model = sasrec(**params, epochs=1, patience=5, cooc_neighbors=0, session_neighbors=20)
    return split, model.fit(split.train, split.valid)


def topic_margins(scores: np.ndarray, histories: list[np.ndarray]) -> np.ndarray:
    """Per history: the lowest score of its topic's unseen items less the highest of another topic's."""
    out = []
    for row, h in enumerate(histories):
        topic = SIZE * (int(h[0]) // SIZE) + np.arange(SIZE)
        rest, others = np.setdiff1d(topic, h), np.setdiff1d(np.arange(SIZE * TOPICS), topic)
        out.append(float(scores[row, rest].min() - scores[row, others].max()))
    return np.array(out)


def network_alone(model, histories):  # type: ignore[no-untyped-def]
    head, model.session_ = model.session_, None
    try:
        return model.score(histories)
    finally:
        model.session_ = head


def test_validation_chooses_the_session_head_and_it_adds_session_knn(fitted) -> None:  # type: ignore[no-untyped-def]
    split, model = fitted
    head = model.session_
    assert head is not None and head.weight > 0  # the weak network needs it here
    assert head.valid[head.weight] > head.valid[0.0]
    report = model.training_report()["session_head"]
    assert report["weight"] == head.weight and report["params"]["neighbors"] == 20
    hist = [np.array([0, 1]), np.array([6, 4]), np.array([39, 37])]
    knn = SessionKNN(neighbors=20).fit(split.train)
    want = network_alone(model, hist) + head.weight * knn.score(hist)
    np.testing.assert_allclose(model.score(hist), want, rtol=1e-5, atol=1e-5)
    with_head, alone = topic_margins(model.score(hist), hist), topic_margins(network_alone(model, hist), hist)
    assert (with_head > alone + 0.5).all(), (with_head, alone)  # the head lifts the topic's unseen items
    with model.cooc_weight(0.0):  # the transformer alone: both heads off
        np.testing.assert_allclose(model.score(hist), network_alone(model, hist))
    assert model.session_.weight == head.weight  # restored


def test_the_head_is_saved_exported_and_served_alike(fitted, tmp_path) -> None:  # type: ignore[no-untyped-def]
    split, model = fitted
    hist = [split.test.histories[i] for i in range(40)]
    model.save(tmp_path / "ckpt")
    loaded = load_model(tmp_path / "ckpt")
    np.testing.assert_allclose(loaded.score(hist), model.score(hist), rtol=1e-6)
    export_onnx(model, tmp_path / "onnx")
    served = OnnxScorer(tmp_path / "onnx")
    assert served.session_head is not None and served.session_head.weight == model.session_.weight
    np.testing.assert_allclose(served.score(hist), model.score(hist), rtol=1e-4, atol=1e-4)
    assert served.candidate_scorer() is None  # the two-tower form lacks the votes: scored in full


def test_refit_keeps_the_weight_and_refits_the_sessions(fitted) -> None:  # type: ignore[no-untyped-def]
    split, model = fitted
    data = topic_sessions()
    new = model.refit(data)
    assert new.session_ is not None and new.session_.weight == model.session_.weight
    assert new.session_.knn.sessions_.shape[0] == data.n_users  # every sequence, each one's last item too
    assert new.session_.knn.sessions_.sum() > model.session_.knn.sessions_.sum()


def test_refit_heads_adds_new_sessions_to_both_heads_and_leaves_the_network() -> None:
    full = topic_sessions()
    old = [s for s in full.sequences if int(s[0]) < SIZE * (TOPICS - 1)]  # the last topic never trained on
    split = leave_one_out(full.with_sequences(old, None))
    model = sasrec(**{**SMALL, "lr": 1e-4}, epochs=1, patience=5, cooc_neighbors=10, session_neighbors=20)
    model.fit(split.train, split.valid)
    assert model.session_ is not None
    model._net().cooc_alpha.fill_(2.0)
    model.session_.weight = 1.0  # whatever validation chose, refit_heads must keep
    last = SIZE * (TOPICS - 1) + np.arange(SIZE)
    hist = [last[:2], np.array([0, 1])]
    with model.cooc_weight(0.0):
        alone_before = model.score(hist)
    lift = model.score(hist)[0, last[2:]] - alone_before[0, last[2:]]
    assert np.abs(lift).max() < 1e-6  # neither head has seen the last topic
    assert model.refit_heads(full) is model
    assert model.session_.weight == 1.0 and float(model._net().cooc_alpha) == 2.0
    assert model.session_.knn.sessions_.shape[0] == full.n_users
    with model.cooc_weight(0.0):
        np.testing.assert_allclose(model.score(hist), alone_before, rtol=1e-6)  # the network is untouched
    lift = model.score(hist)[0, last[2:]] - alone_before[0, last[2:]]
    assert (lift > 1.0).all(), lift  # both heads now vote for the topic's unseen items
    other = SequenceData(np.array([f"x{i}" for i in range(SIZE * TOPICS)], dtype=object), full.user_ids,
                         full.sequences, None)  # fmt: skip
    with pytest.raises(ValueError, match="catalogue"):
        model.refit_heads(other)


def test_tune_recent_teaches_the_network_the_newest_sessions_and_leaves_the_model(tmp_path) -> None:  # type: ignore[no-untyped-def]
    full = topic_sessions()
    last = SIZE * (TOPICS - 1) + np.arange(SIZE)
    newest = np.flatnonzero([int(s[0]) in last for s in full.sequences])  # the last topic: never trained on
    old = [s[:0] if u in set(newest) else s for u, s in enumerate(full.sequences)]
    split = leave_one_out(full.with_sequences(old, None))
    model = sasrec(**SMALL, epochs=2, patience=5, cooc_neighbors=10, session_neighbors=20)
    model.fit(split.train, split.valid)
    model._net().cooc_alpha.fill_(2.0)
    assert model.session_ is not None
    model.session_.weight = 1.0  # whatever validation chose, the tuned copy keeps
    hist = [last[:2], last[2:], np.array([0, 1])]
    with model.cooc_weight(0.0):
        alone_before = model.score(hist)
    full_before = model.score(hist)
    tuned = model.tune_recent(full, newest, epochs=3, lr=0.01)
    assert tuned is not model
    np.testing.assert_allclose(model.score(hist), full_before, rtol=1e-6)  # the model is left as it was
    with tuned.cooc_weight(0.0):
        alone_after = tuned.score(hist)
    before, after = topic_margins(alone_before, hist[:2]), topic_margins(alone_after, hist[:2])
    assert (before < 0).all() and (after > 0).all(), (before, after)  # the network alone learnt the last topic
    assert float(tuned._net().cooc_alpha) == 2.0 and tuned.session_.weight == 1.0
    assert tuned.session_.knn.sessions_.shape[0] == full.n_users  # the heads: from every session
    report = tuned.training_report()["recent_tune"]
    assert report["sequences"] == len(newest) and report["epochs"] == 3
    assert report["events"] == sum(len(full.sequences[u]) for u in newest)
    tuned.save(tmp_path / "tuned")  # a refit of the tuned model is a refit of its base, saved or not
    assert load_model(tmp_path / "tuned")._refit_params(full) == tuned._refit_params(full)
    assert tuned._refit_params(full) == model._refit_params(full)
    with pytest.raises(ValueError, match="rows"):
        model.tune_recent(full, [full.n_users])


def test_tune_recent_chooses_the_head_weights_again_on_validation_and_passes_them_on() -> None:
    full = topic_sessions()
    newest = np.arange(full.n_users - 60, full.n_users)
    split = leave_one_out(full)
    model = sasrec(**{**SMALL, "lr": 1e-4}, epochs=1, patience=5, cooc_neighbors=10, session_neighbors=20)
    model.fit(split.train, split.valid)
    model._net().cooc_alpha.fill_(0.25)
    model.session_.weight = 32.0  # not what validation would choose for the tuned network
    trial = model.tune_recent(split.train, newest, epochs=2, lr=0.01, valid=split.valid)
    alpha, head = float(trial._net().cooc_alpha), trial.session_
    assert trial.cooc_valid_ is not None and trial.cooc_valid_[alpha] == max(trial.cooc_valid_.values())
    assert head is not None and head.valid[head.weight] == max(head.valid.values())
    assert (alpha, head.weight) != (0.25, 32.0)
    assert head.knn.sessions_.shape[0] == split.train.n_users  # the session head's sessions: all of data
    final = model.tune_recent(full, newest, epochs=2, lr=0.01, weights_from=trial)
    assert float(final._net().cooc_alpha) == alpha and final.session_.weight == head.weight
    assert final.session_.knn.sessions_.sum() > head.knn.sessions_.sum()  # rebuilt from `full`
    assert float(model._net().cooc_alpha) == 0.25 and model.session_.weight == 32.0  # left as it was


def test_tune_recent_refuses_before_it_trains_and_its_refit_checks_the_catalogue(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    full = topic_sessions(120)
    split = leave_one_out(full)
    other = SequenceData(np.array([f"x{i}" for i in range(SIZE * TOPICS)], dtype=object), full.user_ids,
                         full.sequences, None)  # fmt: skip
    model = sasrec(**SMALL, epochs=1, patience=5, cooc_neighbors=10).fit(split.train, split.valid)
    tuned = model.tune_recent(full, np.arange(10), epochs=1)
    with pytest.raises(ValueError, match="catalogue"):
        tuned._refit_params(other)  # the base recipe is only handed out for the same catalogue
    graph = sasrec(**SMALL, epochs=1, patience=5, cooc_neighbors=10, graph_neighbors=2).fit(split.train, split.valid)

    def no_training(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("tune_recent trained before refusing")

    monkeypatch.setattr(SASRecRecommender, "fit", no_training)
    with pytest.raises(ConfigError, match="graph_neighbors"):
        graph.tune_recent(full, np.arange(10), epochs=1)
    with pytest.raises(ValueError, match="catalogue"):
        model.tune_recent(other, np.arange(10), epochs=1)
