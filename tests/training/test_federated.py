"""Federated SASRec on Flower (issue 12 §3): what leaves a client is only model parameters."""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
import pytest
import torch
from flwr.common import bytes_to_ndarray
from flwr.compat.client.grpc_client import connection

from soutui.data.sequences import SequenceData, leave_one_out
from soutui.features.content import ItemContent
from soutui.training.federated import FederatedConfig, partition_users, run_federated
from soutui.training.pipeline import Prepared

N_ITEMS = 20
SMALL = {"d_model": 16, "n_heads": 2, "n_layers": 1, "max_len": 8, "dropout": 0.1, "emb_dropout": 0.1,
         "batch_size": 32, "lr": 0.01}  # fmt: skip


def secret_data(n_users: int = 240) -> Prepared:
    """Cyclic walks (next item = last + 1) with ids that would be easy to spot in a message."""
    rng = np.random.default_rng(0)
    seqs = [
        (int(rng.integers(N_ITEMS)) + np.arange(int(rng.integers(5, 10)))) % N_ITEMS for _ in range(n_users)
    ]
    tss = [1_700_000_000 + 86400 * np.arange(len(s)) for s in seqs]
    data = SequenceData(np.array([f"ITEM-SECRET-{i:04d}" for i in range(N_ITEMS)], dtype=object),
                        np.array([f"USER-SECRET-{u:05d}" for u in range(n_users)], dtype=object), seqs, tss)  # fmt: skip
    split = leave_one_out(data)
    return Prepared("secret", data, split, ItemContent())


class Recorder(grpc.StreamStreamClientInterceptor):  # type: ignore[misc]
    """Keeps every ClientMessage a client writes onto its gRPC stream."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        def tap() -> Any:
            for msg in requests:
                self.sent.append(msg)
                yield msg

        return continuation(details, tap())


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def test_partition_is_disjoint_and_complete() -> None:
    prep = secret_data(101)
    parts = partition_users(prep.split.train, 4)
    ids = [u for p in parts for u in p.user_ids]
    assert sorted(ids) == sorted(prep.split.train.user_ids) and len(set(ids)) == len(ids)
    assert {p.n_users for p in parts} <= {25, 26}
    with pytest.raises(ValueError):
        partition_users(prep.split.train, 0)


def test_a_client_sends_only_model_parameters(monkeypatch: pytest.MonkeyPatch) -> None:
    rec = Recorder()
    make = connection.create_channel
    monkeypatch.setattr(connection, "create_channel", lambda **kw: grpc.intercept_channel(make(**kw), rec))
    prep = secret_data()
    out = run_federated(prep, FederatedConfig(clients=2, rounds=2, params=SMALL), progress=False)
    fits = [m for m in rec.sent if m.WhichOneof("msg") == "fit_res"]
    assert len(fits) == 2 * 2  # every client, every round
    assert {m.WhichOneof("msg") for m in rec.sent} <= {"fit_res", "disconnect_res"}
    shapes = [tuple(int(d) for d in shape) for shape in out["param_shapes"]]
    for m in fits:
        arrays = [bytes_to_ndarray(t) for t in m.fit_res.parameters.tensors]
        assert [a.shape for a in arrays] == shapes  # exactly the trainable parameters, nothing more
        assert all(a.dtype == np.float32 for a in arrays)
        assert set(m.fit_res.metrics) == {"loss"}
        assert m.fit_res.num_examples in {p for p in out["federated"]["users_per_client"]}
        raw = m.SerializeToString()
        assert b"SECRET" not in raw  # no user id, no item id
    # and the federation learned the walk (random ranking: NDCG@10 ~ 0.3 on 20 items)
    assert out["metrics"]["test"]["NDCG@10"] > 0.6
    assert out["bytes_per_round"] == sum(len(t) for m in fits[:2] for t in m.fit_res.parameters.tensors) * 2


def test_client_level_dp_runs_through_flower() -> None:
    out = run_federated(secret_data(120), FederatedConfig(clients=2, rounds=1, dp_noise=0.5, dp_clip=1.0,
                                                          params=SMALL), progress=False)  # fmt: skip
    assert out["federated"]["client_dp"]["noise_multiplier"] == 0.5
    assert len(out["rounds"]) == 1 and out["rounds"][0]["failures"] == 0


def test_cli_federated_json(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    import soutui.training.pipeline as pipeline
    from soutui.cli import main

    prep = secret_data(100)
    monkeypatch.setattr(pipeline, "prepare", lambda *a, **k: prep)
    sets = [x for k, v in SMALL.items() for x in ("--set", f"{k}={json.dumps(v)}")]
    args = ["federated", "--dataset", "secret", "--clients", "2", "--rounds", "1", "--json", *sets]
    assert main([*args, "--strategy", "fedadam", "--server-lr", "0.01", "--server-momentum", "0.5",
                 "--reset-moments"]) == 0  # fmt: skip
    rec = json.loads(capsys.readouterr().out)
    assert rec["federated"]["clients"] == 2 and rec["federated"]["strategy"] == "FedAdam"
    assert rec["federated"]["client_optimizer"] == "AdamW, moments reset every round"
    assert rec["federated"]["server_step"] == {"eta": 0.01, "beta_1": 0.5}
    assert rec["metrics"]["test"]["users"] == len(prep.split.test) and rec["bytes_per_round"] > 0
    assert main(["federated", "--dataset", "secret", "--clients", "0"]) == 2  # a user error, one line


def _aggregate(cfg: FederatedConfig, init: list[np.ndarray], clients: list[tuple[list[np.ndarray], int]]
               ) -> list[np.ndarray]:  # fmt: skip
    """One server round of the strategy `cfg` names, on hand-made client results (no training)."""
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays

    from soutui.training.federated import _strategy

    strategy, _ = _strategy(cfg, ndarrays_to_parameters(init))
    ok = Status(code=Code.OK, message="")
    results = [(None, FitRes(ok, ndarrays_to_parameters(p), n, {"loss": 0.0})) for p, n in clients]
    agg, _ = strategy.aggregate_fit(1, results, [])  # type: ignore[arg-type]
    assert agg is not None
    return parameters_to_ndarrays(agg)


def test_server_steps_are_flowers_fedavg_fedavgm_and_fedadam() -> None:
    init = [np.zeros(3, np.float32), np.ones((2, 2), np.float32)]
    a = [np.array([1.0, 2.0, 3.0], np.float32), np.full((2, 2), 3.0, np.float32)]
    b = [np.array([3.0, 2.0, -1.0], np.float32), np.full((2, 2), 1.0, np.float32)]
    clients = [(a, 3), (b, 1)]  # FedAvg weights 3/4 and 1/4
    avg = [0.75 * x + 0.25 * y for x, y in zip(a, b, strict=True)]
    got = _aggregate(FederatedConfig(), init, clients)
    for g, e in zip(got, avg, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-6)
    # FedAvgM: the server moves server_lr times the averaged update (no momentum yet in round 1)
    got = _aggregate(FederatedConfig(strategy="fedavgm", server_lr=2.0, server_momentum=0.9), init, clients)
    for g, i, e in zip(got, init, avg, strict=True):
        np.testing.assert_allclose(g, i + 2.0 * (e - i), rtol=1e-5)
    # FedAdam, round 1: every coordinate with a non-zero update moves by about eta in its direction
    got = _aggregate(FederatedConfig(strategy="fedadam", server_lr=0.05, server_momentum=0.9), init, clients)
    for g, i, e in zip(got, init, avg, strict=True):
        step = g - i
        np.testing.assert_array_equal(np.sign(step), np.sign(e - i))
        moved = np.abs(e - i) > 0
        assert np.all(np.abs(step[moved]) > 0.01) and np.all(np.abs(step) < 0.2)
    with pytest.raises(ValueError, match="strategy"):
        FederatedConfig(strategy="fedprox")


def _client_rounds(keep: bool, rounds: int = 2) -> tuple[Any, list[np.ndarray], list[list[np.ndarray]]]:
    from soutui.training.federated import FED_PARAMS, SASRecClient
    from soutui.training.pipeline import build_model

    prep = secret_data(120)
    params = {**SMALL, **FED_PARAMS, "epochs": 1, "seed": 0}
    net = build_model("sasrec", params)._build(prep.data.n_items, prep.content)  # type: ignore[attr-defined]
    names = [n for n, _ in net.named_parameters()]
    start = [p.detach().numpy().copy() for p in net.parameters()]
    client = SASRecClient(prep.split.train, prep, params, names, keep_moments=keep)
    sent = [client.fit(start, {})[0] for _ in range(rounds)]  # the same global weights every round
    return client, start, sent


def test_a_stateful_client_keeps_its_adamw_moments_and_reshuffles_each_round() -> None:
    kept, _, sent = _client_rounds(keep=True)
    steps = [float(s["step"]) for s in kept.moments["state"].values()]  # type: ignore[index]
    n_batches = -(-kept.n_trained // SMALL["batch_size"])
    assert steps and all(s == 2 * n_batches for s in steps)  # two rounds of steps on the same moments
    reset, _, again = _client_rounds(keep=False)
    assert reset.moments is None
    # the same start, a different round seed: the two rounds' updates differ (a fixed seed replayed them)
    assert any(not np.allclose(a, b) for a, b in zip(again[0], again[1], strict=True))
    # and resumed moments change the second round's update against a fresh optimiser
    assert any(not np.allclose(a, b, atol=1e-6) for a, b in zip(sent[1], again[1], strict=True))


def test_a_client_rebuilt_for_every_message_keeps_its_state_in_the_flower_context() -> None:
    """Flower's deployment engine unpickles the client in a new process per message; the SuperNode
    carries the node's Context.state between them, and the moments and round count travel there."""
    import pickle

    from flwr.app import RecordDict

    client, start, _ = _client_rounds(keep=True, rounds=0)
    blob, state = pickle.dumps(client), RecordDict()
    for _ in range(2):
        fresh = pickle.loads(blob)  # noqa: S301
        fresh.attach(state)
        fresh.fit(start, {})
    again = pickle.loads(blob)  # noqa: S301
    again.attach(state)
    n_batches = -(-again.n_trained // SMALL["batch_size"])
    assert again.round == 2
    assert all(float(s["step"]) == 2 * n_batches for s in again.moments["state"].values())



def test_the_same_seed_gives_the_same_federation() -> None:
    """Clients that share a process (the loopback simulation runs them as threads) share torch's
    global RNG; without care their draws interleave and a seed gives a different model each run."""
    runs = [run_federated(secret_data(), FederatedConfig(clients=3, rounds=2, params=SMALL), progress=False)
            for _ in range(2)]  # fmt: skip
    assert runs[0]["metrics"] == runs[1]["metrics"]
    assert [r["loss"] for r in runs[0]["rounds"]] == [r["loss"] for r in runs[1]["rounds"]]


def test_loopback_clients_take_whole_turns() -> None:
    """In-process clients never run a fit (where Flower parses the parameters, which CPython 3.11 cannot
    do in two threads at once) at the same time."""
    import threading
    import time

    from flwr.client import Client
    from flwr.common import Code, FitIns, FitRes, GetPropertiesIns, GetPropertiesRes, Parameters, Status

    from soutui.training.federated import _TakeTurns

    spans: list[tuple[float, float]] = []

    class Slow(Client):
        def fit(self, ins: FitIns) -> FitRes:
            t0 = time.perf_counter()
            time.sleep(0.05)
            spans.append((t0, time.perf_counter()))
            return FitRes(status=None, parameters=ins.parameters, num_examples=1, metrics={})  # type: ignore[arg-type]

    clients = [_TakeTurns(Slow()) for _ in range(4)]
    ins = FitIns(Parameters(tensors=[], tensor_type="numpy.ndarray"), {})
    threads = [threading.Thread(target=c.fit, args=(ins,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    spans.sort()
    assert len(spans) == 4
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False)), spans  # no two overlap

    class Answers(Client):
        def get_properties(self, ins: GetPropertiesIns) -> GetPropertiesRes:
            return GetPropertiesRes(status=Status(Code.OK, "own"), properties={"own": True})

    # the wrapper passes every call to the wrapped client, not only fit
    res = _TakeTurns(Answers()).get_properties(GetPropertiesIns(config={}))
    assert res.properties == {"own": True}
