"""Federated SASRec on Flower: users split across N clients, local training, FedAvg on a server.

What runs: a Flower server (flwr's gRPC server, FedAvg) on a loopback port and N Flower
clients, each holding only its own users' sequences. Flower's simulation mode needs Ray,
which is not installed here; the server and clients are Flower's own (legacy gRPC) server
and client APIs, talking over real gRPC on 127.0.0.1, the clients in threads of this process.

Each round a client receives the global weights, trains SASRec on its users with the same
model and epoch loop as `soutui train` (SASRecRecommender.fit with an injected trainer that
starts from the global weights: GlobalStart) and returns its trainable parameters, its user
count (FedAvg's weight) and its mean training loss; its AdamW moments stay with it for the next
round (`keep_moments`, the default). Nothing else leaves a client: no event,
no user or item id, no buffer computed from its data (tests/training/test_federated.py reads
the gRPC messages a client sends). The initial weights come from the server, built from the
public catalogue (item count, titles, attributes) only.

Data-dependent parts that would pool raw statistics are off: the co-occurrence head and the
cold-item reset. Optional client-level DP: Flower's DifferentialPrivacyServerSideFixedClipping
(each client's update clipped to `dp_clip`, Gaussian noise `dp_noise x dp_clip` added to the
sum; central DP, the server is trusted). Optional secure aggregation (`secure_aggregation=True`):
Flower's SecAgg+ (SecAggPlusWorkflow + secaggplus_mod), which runs only with Flower's Message API
(ServerApp/ClientApp), so that path uses federated_secagg instead of the gRPC server (engine
"local": an in-process Grid; "deployment": Flower's superlink/supernode processes): the same
clients and strategy, but the server only ever sees masked, quantised parameters.
"""

from __future__ import annotations

import io
import logging
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from soutui.data.sequences import SequenceData
from soutui.models.base import Recommender
from soutui.models.fitting import BatchFn, TrainConfig, TrainOutcome
from soutui.training.federated_secagg import IN_PROCESS_TURN, SecAggSettings, run_deployed, run_secure
from soutui.training.pipeline import Prepared, build_model, evaluate_splits
from soutui.training.trainer import LoopTrainer

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")  # no network calls home

from flwr.app import ConfigRecord, RecordDict  # noqa: E402
from flwr.client import Client, NumPyClient  # noqa: E402
from flwr.common import (  # noqa: E402
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    GetParametersIns,
    GetParametersRes,
    GetPropertiesIns,
    GetPropertiesRes,
    Parameters,
    Scalar,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.compat.client.app import start_client  # noqa: E402
from flwr.compat.server.app import start_server  # noqa: E402
from flwr.server import ServerConfig  # noqa: E402
from flwr.server.client_proxy import ClientProxy  # noqa: E402
from flwr.server.strategy import (  # noqa: E402
    DifferentialPrivacyServerSideFixedClipping,
    FedAdam,
    FedAvg,
    FedAvgM,
    Strategy,
)

# what federated SASRec turns off: parts that would need pooled raw statistics
FED_PARAMS = {"cooc_neighbors": 0, "cold_item_reset": False, "progress": False}
STATE_KEY = "soutui.client"  # a client's round count and AdamW moments in its Flower Context.state
# torch's RNG (dropout, the seeded shuffle) is global to a process: clients that share one (the loopback
# simulation runs them as threads) train one at a time, or their draws interleave and a seed stops
# fixing the model. Clients in their own processes (a real deployment) are not held by it.
_TORCH_RNG = threading.Lock()


@dataclass
class FederatedConfig:
    clients: int = 4
    rounds: int = 5
    local_epochs: int = 1
    seed: int = 0
    dp_noise: float = 0.0  # client-level DP noise multiplier (0 = off)
    dp_clip: float = 1.0  # client update norm bound (with dp_noise)
    params: dict[str, Any] = field(default_factory=dict)  # SASRec parameters (as `soutui train --set`)
    secure_aggregation: bool = False  # Flower SecAgg+: the server sees only the masked sum
    secagg: SecAggSettings = field(default_factory=SecAggSettings)
    engine: str = "local"  # secure aggregation: "local" (in-process Grid) or "deployment" (flwr processes)
    # the server's step on the averaged update: "fedavg" (take it), "fedavgm" (server_lr x it, with
    # server_momentum) or "fedadam" (Adam on it, step server_lr, beta_1 = server_momentum): Flower's own
    strategy: str = "fedavg"
    server_lr: float = 1.0
    server_momentum: float = 0.0
    keep_moments: bool = True  # each client keeps its AdamW moments across rounds (False: reset every round)

    def __post_init__(self) -> None:
        if self.secure_aggregation and self.dp_noise > 0:
            raise ValueError("client-level DP here clips each update on the server, which needs the individual "
                             "updates that secure aggregation hides: use one or the other")  # fmt: skip
        if self.engine not in ("local", "deployment"):
            raise ValueError(f"engine must be 'local' or 'deployment', got {self.engine!r}")
        if self.engine == "deployment" and not self.secure_aggregation:
            raise ValueError("the deployment engine is wired for secure aggregation only")
        if self.secure_aggregation and self.clients < 2:
            raise ValueError("secure aggregation needs at least 2 clients")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {sorted(STRATEGIES)}, got {self.strategy!r}")
        if self.server_lr <= 0 or not 0 <= self.server_momentum < 1:
            raise ValueError("server_lr must be > 0 and server_momentum in [0, 1)")


def partition_users(data: SequenceData, clients: int, seed: int = 0) -> list[SequenceData]:
    """Users split at random into `clients` disjoint parts (shops or regions), each its own SequenceData."""
    if clients < 1 or clients > data.n_users:
        raise ValueError(f"clients must be between 1 and the number of users ({data.n_users}), got {clients}")
    order = np.random.default_rng(seed).permutation(data.n_users)
    return [_users(data, np.sort(part)) for part in np.array_split(order, clients)]


def _users(data: SequenceData, rows: np.ndarray) -> SequenceData:
    ts = None if data.timestamps is None else [data.timestamps[u] for u in rows]
    return SequenceData(
        data.item_ids, data.user_ids[rows], [data.sequences[u] for u in rows], ts, data.item_index
    )


class GlobalStart(LoopTrainer):
    """The shared loop, started from the global weights: the client's fit builds its network as
    `soutui train` does, then trains from the server's parameters, not from a fresh init. With
    `moments` (the client's AdamW state after its previous round) the optimiser resumes them
    instead of starting from zero; `self.optimizer` is the one that trained, to read them back."""

    def __init__(self, weights: dict[str, torch.Tensor], moments: dict[str, Any] | None = None) -> None:
        super().__init__(progress=False, with_optimizer=self._restore)
        self.weights, self.moments = weights, moments
        self.optimizer: torch.optim.Optimizer | None = None

    def _restore(self, opt: torch.optim.Optimizer) -> None:
        if self.moments is not None:
            opt.load_state_dict(self.moments)
        self.optimizer = opt

    def train(self, model: Recommender, net: torch.nn.Module, batches: BatchFn, n_batches: int,
              cfg: TrainConfig, valid: Any, *, spent_s: float = 0.0, after_validations: float = 0.0
              ) -> TrainOutcome:  # fmt: skip
        with torch.no_grad():
            for name, p in net.named_parameters():
                p.copy_(self.weights[name].reshape(p.shape))
        return super().train(model, net, batches, n_batches, cfg, None)


def trainable(net: torch.nn.Module) -> list[np.ndarray]:
    """What a client sends: the trainable parameters, in the network's order (no buffers). A 0-d
    parameter goes as shape (1,): Flower's SecAgg+ unmasking drops the offset and the weight scaling
    of a 0-d array (dequantize turns it into a numpy scalar, which `vec += offset` does not update)."""
    return [np.atleast_1d(p.detach().cpu().float().numpy()) for p in net.parameters()]


class SASRecClient(NumPyClient):
    """One Flower client: its users' sequences stay here; it sends parameters, a count and a loss.

    Each round shuffles with its own seed (seed, round). With `keep_moments` the client's AdamW
    moments stay on the client from one round to the next (a stateful client: they never leave it);
    otherwise every round's optimiser starts from zero, as a stateless client's would. Where each
    message runs in a fresh process (Flower's deployment engine), `attach` puts the round count and
    the moments in the node's Flower `Context.state`, which the SuperNode carries between them."""

    def __init__(self, part: SequenceData, prep: Prepared, params: dict[str, Any], names: list[str],
                 keep_moments: bool = True) -> None:  # fmt: skip
        self.part, self.content, self.params, self.names = part, prep.content, params, names
        self.n_trained = sum(len(s) >= 2 for s in part.sequences)
        self.keep_moments, self.round = keep_moments, 0
        self.moments: dict[str, Any] | None = None
        self.node_state: RecordDict | None = None

    def attach(self, state: RecordDict) -> None:
        """Keep the round count and the moments in this Flower node's Context.state."""
        self.node_state = state
        if (rec := state.get(STATE_KEY)) is not None:
            count, moments = rec["round"], rec["moments"]
            assert isinstance(count, int) and isinstance(moments, bytes)
            self.round = count
            self.moments = torch.load(io.BytesIO(moments)) if moments else None

    def _keep(self) -> None:
        if self.node_state is not None:
            buf = io.BytesIO()
            if self.moments is not None:
                torch.save(self.moments, buf)
            self.node_state[STATE_KEY] = ConfigRecord({"round": self.round, "moments": buf.getvalue()})

    def fit(self, parameters: list[np.ndarray], config: dict[str, Scalar]
            ) -> tuple[list[np.ndarray], int, dict[str, Scalar]]:  # fmt: skip
        torch.set_num_threads(1)
        weights = {n: torch.from_numpy(np.asarray(a)) for n, a in zip(self.names, parameters, strict=True)}
        trainer = GlobalStart(weights, self.moments)
        params = {**self.params, "seed": int(self.params.get("seed", 0)) * 100_003 + 1_009 * self.round}
        with _TORCH_RNG:
            rec = build_model("sasrec", params, trainer).fit(self.part, None, content=self.content)
        self.round += 1
        if self.keep_moments and trainer.optimizer is not None:
            self.moments = trainer.optimizer.state_dict()
        self._keep()
        report = rec.training_report() or {}
        loss = float(report["history"][-1]["loss"]) if report.get("history") else 0.0
        return trainable(rec._net()), self.n_trained, {"loss": loss}  # type: ignore[attr-defined]


class RecordingFedAvg(FedAvg):
    """FedAvg (or, as a base of the classes below, FedAvgM / FedAdam) that keeps the aggregated weights
    and counts the bytes each round moves."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.latest: Parameters | None = kwargs.get("initial_parameters")
        self.rounds: list[dict[str, Any]] = []

    def aggregate_fit(self, server_round: int, results: list[tuple[ClientProxy, FitRes]],
                      failures: list[Any]) -> tuple[Parameters | None, dict[str, Scalar]]:  # fmt: skip
        # a fixed order (not arrival order), so the float sums, and so the model, repeat with the seed
        results = sorted(results, key=lambda r: (r[1].num_examples, r[1].parameters.tensors[0][-64:]))
        up = [sum(len(t) for t in res.parameters.tensors) for _, res in results]
        down = sum(len(t) for t in self.latest.tensors) if self.latest is not None else 0
        agg, metrics = super().aggregate_fit(server_round, results, failures)
        if agg is not None:  # float32 as the network (SecAgg+ dequantises to float64)
            self.latest = agg = ndarrays_to_parameters(
                [np.asarray(a, np.float32) for a in parameters_to_ndarrays(agg)]
            )
        losses = [float(res.metrics.get("loss", 0.0)) for _, res in results]
        self.rounds.append({"round": server_round, "clients": len(results), "failures": len(failures),
                            "bytes_up": int(sum(up)), "bytes_up_per_client": int(np.mean(up)) if up else 0,
                            "bytes_down": int(down * len(results)), "loss": round(float(np.mean(losses)), 5)
                            if losses else None})  # fmt: skip
        return agg, metrics


class RecordingFedAvgM(RecordingFedAvg, FedAvgM):
    """Flower's FedAvgM (server learning rate and momentum on the averaged update), recorded."""


class RecordingFedAdam(RecordingFedAvg, FedAdam):
    """Flower's FedAdam (Adam on the averaged update, Reddi et al. 2021), recorded."""


STRATEGIES: dict[str, type[RecordingFedAvg]] = {
    "fedavg": RecordingFedAvg, "fedavgm": RecordingFedAvgM, "fedadam": RecordingFedAdam,
}  # fmt: skip


def _server_step(cfg: FederatedConfig) -> dict[str, float]:
    if cfg.strategy == "fedavgm":
        return {"server_learning_rate": cfg.server_lr, "server_momentum": cfg.server_momentum}
    if cfg.strategy == "fedadam":  # eta_l is only informational in Flower's FedOpt
        return {"eta": cfg.server_lr, "beta_1": cfg.server_momentum}
    return {}


def _mean_loss(results: list[tuple[int, dict[str, Scalar]]]) -> dict[str, Scalar]:
    """Training loss averaged over clients, weighted by their user counts."""
    total = sum(n for n, _ in results)
    return {"loss": sum(n * float(m.get("loss", 0.0)) for n, m in results) / max(total, 1)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _strategy(cfg: FederatedConfig, initial: Parameters) -> tuple[Strategy, RecordingFedAvg]:
    n = cfg.clients
    fedavg = STRATEGIES[cfg.strategy](
        fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=n, min_evaluate_clients=0,
        min_available_clients=n, initial_parameters=initial, fit_metrics_aggregation_fn=_mean_loss,
        **_server_step(cfg),
    )  # fmt: skip
    if cfg.dp_noise <= 0:
        return fedavg, fedavg
    dp = DifferentialPrivacyServerSideFixedClipping(fedavg, noise_multiplier=cfg.dp_noise,
                                                    clipping_norm=cfg.dp_clip, num_sampled_clients=n)  # fmt: skip
    return dp, fedavg


class _TakeTurns(Client):
    """A loopback client whose every call (parsing the parameters, training, serialising) holds
    `IN_PROCESS_TURN`; each call is the wrapped client's own."""

    def __init__(self, inner: Client) -> None:
        self.inner = inner

    def get_properties(self, ins: GetPropertiesIns) -> GetPropertiesRes:
        with IN_PROCESS_TURN:
            return self.inner.get_properties(ins)

    def get_parameters(self, ins: GetParametersIns) -> GetParametersRes:
        with IN_PROCESS_TURN:
            return self.inner.get_parameters(ins)

    def fit(self, ins: FitIns) -> FitRes:
        with IN_PROCESS_TURN:
            return self.inner.fit(ins)

    def evaluate(self, ins: EvaluateIns) -> EvaluateRes:
        with IN_PROCESS_TURN:
            return self.inner.evaluate(ins)


def _serve_grpc(clients: list[SASRecClient], strategy: Strategy, rounds: int) -> None:
    """Flower's legacy gRPC server on a free loopback port, the clients in threads of this process."""
    address = f"127.0.0.1:{_free_port()}"
    threads = [threading.Thread(target=start_client, daemon=True, kwargs={
        "server_address": address, "client": _TakeTurns(c.to_client()), "insecure": True, "max_retries": 30,
        "max_wait_time": 60.0})for c in clients]  # fmt: skip

    def launch() -> None:
        time.sleep(0.5)  # the server binds first; clients retry until it answers
        for t in threads:
            t.start()

    threading.Thread(target=launch, daemon=True).start()
    start_server(server_address=address, config=ServerConfig(num_rounds=rounds), strategy=strategy)
    for t in threads:
        t.join(timeout=30)


def _serve_secure(clients: list[SASRecClient], strategy: Strategy, fedavg: RecordingFedAvg,
                  cfg: FederatedConfig) -> dict[str, Any]:  # fmt: skip
    """SecAgg+ rounds; the per-round byte counts are the grid's (every message of the four stages,
    protobuf sizes), since the strategy only sees the aggregate."""
    weights = [c.n_trained for c in clients]
    if cfg.engine == "deployment":  # the strategy ran in the ServerApp process: take its state back
        info, done, (up, down) = run_deployed(clients, weights, strategy, cfg.rounds, cfg.secagg)
        fedavg.latest, fedavg.rounds = done.latest, done.rounds
    else:
        info, grid = run_secure(clients, weights, strategy, cfg.rounds, cfg.secagg, workers=len(clients))
        up, down = grid.bytes_up, grid.bytes_down
    for r in fedavg.rounds:
        key = str(r["round"])
        r.update(bytes_up=up.get(key, 0), bytes_up_per_client=up.get(key, 0) // max(r["clients"], 1),
                 bytes_down=down.get(key, 0))  # fmt: skip
    return info


def run_federated(prep: Prepared, cfg: FederatedConfig, progress: bool = True) -> dict[str, Any]:
    """Train SASRec over `cfg.clients` Flower clients for `cfg.rounds` FedAvg rounds; evaluate the
    global model (full ranking, leave-one-out) and report bytes per round."""
    logging.getLogger("flwr").setLevel(logging.INFO if progress else logging.ERROR)
    torch.set_num_threads(1)
    params = {**cfg.params, **FED_PARAMS, "epochs": cfg.local_epochs, "seed": cfg.seed}
    parts = partition_users(prep.split.train, cfg.clients, cfg.seed)
    server_model = build_model("sasrec", params)
    torch.manual_seed(cfg.seed)  # the global model's initial weights follow the seed too
    net = server_model._build(prep.data.n_items, prep.content)  # type: ignore[attr-defined]  # public content only
    names = [n for n, _ in net.named_parameters()]
    fedavg_outer, fedavg = _strategy(cfg, ndarrays_to_parameters(trainable(net)))
    clients = [SASRecClient(p, prep, params, names, cfg.keep_moments) for p in parts]
    t0 = time.perf_counter()
    secure: dict[str, Any] | bool = False
    if cfg.secure_aggregation:
        secure = _serve_secure(clients, fedavg_outer, fedavg, cfg)
    else:
        _serve_grpc(clients, fedavg_outer, cfg.rounds)
    train_s = time.perf_counter() - t0
    assert fedavg.latest is not None
    with torch.no_grad():
        for p, a in zip(net.parameters(), parameters_to_ndarrays(fedavg.latest), strict=True):
            p.copy_(torch.from_numpy(np.asarray(a, dtype=np.float32)).reshape(p.shape))
    server_model.net_ = net.eval()  # type: ignore[attr-defined]
    server_model.n_items_ = prep.data.n_items
    if progress:
        print(f"federated: {cfg.rounds} rounds over {cfg.clients} clients in {train_s:.1f}s; evaluating",
              file=sys.stderr)  # fmt: skip
    metrics = evaluate_splits(server_model, prep, exclude_history=False)
    framework = (f"flower (SecAgg+ workflow, ServerApp/ClientApps; {cfg.engine} engine)" if secure
                 else "flower (flwr legacy gRPC server + clients on loopback)")  # fmt: skip
    return {
        "dataset": prep.dataset, "model": "sasrec", "federated": {
            "framework": framework, "strategy": STRATEGIES[cfg.strategy].__name__.removeprefix("Recording"),
            "server_step": _server_step(cfg),
            "clients": cfg.clients, "rounds": cfg.rounds, "local_epochs": cfg.local_epochs,
            "client_optimizer": "AdamW, moments kept on the client across rounds" if cfg.keep_moments
            else "AdamW, moments reset every round",
            "users_per_client": [int(p.n_users) for p in parts],
            "client_dp": {"noise_multiplier": cfg.dp_noise, "clipping_norm": cfg.dp_clip,
                          "mechanism": "flwr DifferentialPrivacyServerSideFixedClipping"} if cfg.dp_noise > 0 else None,
            "secure_aggregation": secure,
        },
        "params": params, "metrics": metrics, "rounds": fedavg.rounds,
        "param_shapes": [list(a.shape) for a in trainable(net)],  # as sent (0-d as (1,))
        "bytes_per_round": int(np.mean([r["bytes_up"] + r["bytes_down"] for r in fedavg.rounds])),
        "time": {"train_s": round(train_s, 1)},
        "protocol": "leave-one-out; full ranking over all items; pessimistic ties; global model after the "
        "last round, no early stopping",
    }  # fmt: skip
