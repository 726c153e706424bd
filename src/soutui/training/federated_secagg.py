"""Secure aggregation for federated SASRec: Flower's SecAgg+ protocol, server and client side.

The server runs Flower's `SecAggPlusWorkflow` (inside its `DefaultWorkflow`, as the fit step of a
`ServerApp`) with the same FedAvg strategy as the plain path; every client is a Flower `ClientApp`
whose `client_fn` returns the same SASRec NumPyClient, wrapped in Flower's `secaggplus_mod`. Each
round has the protocol's four stages (setup, share keys, collect masked vectors, unmask): a client
clips its parameters to [-clipping_range, clipping_range], scales them by its FedAvg weight
(num_examples / max_weight), quantises them to integers in [0, quantization_range) and adds
pairwise and private masks mod modulus_range; the server only ever holds the masked vectors, their
sum, and the Shamir shares it needs to remove the masks from the sum. What the server learns is
the weighted sum of the parameters (and, by Flower's design, each client's num_examples and its
metrics), never one client's parameters.

Two engines run the same ServerApp and ClientApps. SecAgg+ needs Flower's Message API
(ServerApp/ClientApp), and Flower's simulation engine needs Ray (not installed here). "local"
(default): `LocalGrid`, an implementation of Flower's `Grid` interface that hands each message to
its node's ClientApp in this process, one thread per client; every message and reply crosses as
Flower's own protobuf bytes (`serde.message_to_proto`, serialised and parsed again), so the two
sides share no object and the byte counts are those of the wire messages; each node keeps one
Context for the run, as a SuperNode does (the SecAgg+ client state lives in it). "deployment":
`run_deployed` starts Flower's own processes on loopback (flower-superlink, one flower-supernode
per client, `flwr run` on a generated Flower app whose components are `deployed_server_app` and
`deployed_client_app`); each client's data reaches only its node, as a file named in that node's
--node-config. A SuperNode starts one ClientApp process per message, so this is much slower.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flwr.app import Context, Error, Message, RecordDict
from flwr.client import NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.common import serde
from flwr.common.constant import SUPERLINK_NODE_ID, ErrorCode
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage
from flwr.proto.message_pb2 import Message as ProtoMessage  # pylint: disable=no-name-in-module
from flwr.server import LegacyContext, ServerConfig
from flwr.server.strategy import Strategy
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.serverapp import Grid, ServerApp
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

FIRST_NODE_ID = 1001  # node ids of the clients: FIRST_NODE_ID + i


@dataclass(frozen=True)
class SecAggSettings:
    """SecAgg+ parameters (flwr.server.workflow.SecAggPlusWorkflow). A float num_shares or
    reconstruction_threshold is a fraction (of the sampled clients, of num_shares), an int > 2 a count."""

    num_shares: float | int = 1.0  # every client shares its key with every other (N <= ~20 here)
    reconstruction_threshold: float | int = 0.5  # shares needed to rebuild a key (at least 2)
    clipping_range: float = 8.0  # each weighted parameter is clipped to [-C, C] before quantisation
    quantization_range: int = 2**22  # integers per [-C, C]: step 2C / Q
    modulus_range: int = 2**32  # masks are uniform in [0, M)
    max_weight: float | None = None  # FedAvg weight scale; None = the largest client's num_examples

    def __post_init__(self) -> None:
        if (
            self.clipping_range <= 0
            or self.quantization_range < 2
            or self.modulus_range <= self.quantization_range
        ):
            raise ValueError("need clipping_range > 0 and 2 <= quantization_range < modulus_range")
        if self.max_weight is not None and self.max_weight <= 0:
            raise ValueError("max_weight must be positive")

    def error_bound(self, weights: Sequence[int]) -> float:
        """Largest difference, per parameter, between the SecAgg+ aggregate and plain FedAvg of the same
        updates (parameters within the clipping range): stochastic rounding costs each client under one
        step 2C/Q of its weighted parameter, and the weights n/W are themselves rounded to 1/Q, which
        moves a weighted mean of values in [-C, C] by at most C * k / (Q * sum r); both are divided by
        the summed weights sum r = sum round(n Q / W) / Q."""
        k, c, q = len(weights), self.clipping_range, self.quantization_range
        w = self.max_weight or max(weights)
        total = sum(round(n / w * q) / q for n in weights)
        return (k * 2 * c / q + c * k / q) / total


# CPython 3.11's parser is not thread-safe: Flower reads each array's header with np.load, which goes
# through ast.literal_eval, and clients parsing at once failed with "AST constructor recursion depth
# mismatch" (a dead loopback client left the gRPC server waiting for it). Clients that share this
# process (LocalGrid's nodes here, federated's loopback gRPC clients) hold this lock for a whole call.
IN_PROCESS_TURN = threading.Lock()


class LocalGrid(Grid):
    """Flower's Grid interface over in-process ClientApps (see the module docstring). Counts the bytes
    of every message per round (group_id) each way, and keeps the SecAgg+ setup the server sent."""

    def __init__(self, apps: dict[int, ClientApp], run_id: int = 1, workers: int = 1) -> None:
        self._run = Run.create_empty(run_id)
        self.apps = apps
        self.contexts = {nid: Context(run_id, nid, {}, RecordDict(), {}) for nid in apps}
        self.bytes_down: dict[str, int] = defaultdict(int)
        self.bytes_up: dict[str, int] = defaultdict(int)
        self.setup: dict[str, Any] = {}
        self._replies: dict[str, Message] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="flwr-node")

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str,
                       ttl: float | None = None) -> Message:  # fmt: skip
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.apps)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids, jobs = [], []
        for msg in messages:
            msg.metadata.__dict__["_message_id"] = uuid.uuid4().hex
            msg.metadata.__dict__["_run_id"] = self._run.run_id
            self._note_setup(msg)
            wire = serde.message_to_proto(msg).SerializeToString()
            with self._lock:
                self.bytes_down[msg.metadata.group_id] += len(wire)
            ids.append(msg.metadata.message_id)
            jobs.append(self._pool.submit(self._deliver, wire))
        for job in jobs:
            job.result()
        return ids

    def _note_setup(self, msg: Message) -> None:
        self.setup = self.setup or _setup_of(msg)

    def _deliver(self, wire: bytes) -> None:
        """What a SuperNode does with one message: parse it, run the node's ClientApp, send the reply."""
        msg = serde.message_from_proto(ProtoMessage.FromString(wire))
        nid = msg.metadata.dst_node_id
        try:
            with IN_PROCESS_TURN:
                reply = self.apps[nid](msg, self.contexts[nid])
        except Exception as ex:  # noqa: BLE001  # the server sees a failed reply, as from a SuperNode
            reply = Message(Error(ErrorCode.CLIENT_APP_RAISED_EXCEPTION, repr(ex)), reply_to=msg)
        reply.metadata.__dict__["_message_id"] = uuid.uuid4().hex
        back = serde.message_to_proto(reply).SerializeToString()
        with self._lock:
            self.bytes_up[msg.metadata.group_id] += len(back)
            self._replies[msg.metadata.message_id] = serde.message_from_proto(ProtoMessage.FromString(back))

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        with self._lock:
            return [self._replies.pop(i) for i in message_ids if i in self._replies]

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        return self.pull_messages(self.push_messages(messages))

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _client_fn(client: NumPyClient) -> Any:
    return lambda context: client.to_client()


def secaggplus_workflow(s: SecAggSettings, max_weight: float) -> SecAggPlusWorkflow:
    return SecAggPlusWorkflow(num_shares=s.num_shares, reconstruction_threshold=s.reconstruction_threshold,
                              max_weight=max_weight, clipping_range=s.clipping_range,
                              quantization_range=s.quantization_range, modulus_range=s.modulus_range)  # fmt: skip


def run_secure(clients: Sequence[NumPyClient], weights: Sequence[int], strategy: Strategy, rounds: int,
               settings: SecAggSettings, workers: int = 1) -> tuple[dict[str, Any], LocalGrid]:  # fmt: skip
    """Run `rounds` FedAvg rounds with SecAgg+ over `clients` (whose FitRes weights are `weights`);
    the strategy receives only the unmasked aggregate. Returns what ran and the grid (byte counts)."""
    if len(clients) < 2:
        raise ValueError("secure aggregation needs at least 2 clients")
    max_weight = float(settings.max_weight or max(max(weights), 1))
    apps = {
        FIRST_NODE_ID + i: ClientApp(client_fn=_client_fn(c), mods=[secaggplus_mod])
        for i, c in enumerate(clients)
    }
    grid = LocalGrid(apps, workers=workers)
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=rounds), strategy=strategy)
        DefaultWorkflow(fit_workflow=secaggplus_workflow(settings, max_weight))(grid, legacy)

    # what a ServerApp process sets (flwr.server.compat.app.start_grid does the same): its messages' source
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, grid.run.run_id, SUPERLINK_NODE_ID
    try:
        app(grid, Context(grid.run.run_id, 0, {}, RecordDict(), {}))
    finally:
        grid.close()
    info = {**_describe(grid.setup, settings, weights),
            "transport": "in-process LocalGrid (Flower's Grid interface; messages as Flower protobuf bytes)"}  # fmt: skip
    return info, grid


# --- the same ServerApp and ClientApp on Flower's deployment engine (flower-superlink, flower-supernode) ---


def _deployed_client(context: Context) -> Any:
    """A SuperNode's ClientApp process: the client (its users' sequences) comes from the node's own file."""
    with open(str(context.node_config["client"]), "rb") as f:
        client = pickle.load(f)  # noqa: S301  # written by run_deployed for this node
    client.attach(context.state)  # its round count and AdamW moments, carried by the SuperNode
    return client.to_client()


deployed_client_app = ClientApp(client_fn=_deployed_client, mods=[secaggplus_mod])
deployed_server_app = ServerApp()


@deployed_server_app.main()
def _deployed_server(grid: Grid, context: Context) -> None:
    job = Path(str(context.run_config["job"]))
    with open(job / "server.pkl", "rb") as f:
        strategy, rounds, settings, max_weight = pickle.load(f)  # noqa: S301  # written by run_deployed
    watch = _Watch(grid)
    legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=rounds), strategy=strategy)
    DefaultWorkflow(fit_workflow=secaggplus_workflow(settings, max_weight))(watch, legacy)
    with open(job / "result.pkl", "wb") as f:
        pickle.dump((strategy, watch.setup, dict(watch.bytes_up), dict(watch.bytes_down)), f)


class _Watch(Grid):
    """The deployment grid, passed through; notes the SecAgg+ setup and each message's protobuf size."""

    def __init__(self, inner: Grid) -> None:
        self.inner, self.setup = inner, dict[str, Any]()
        self.bytes_down: dict[str, int] = defaultdict(int)
        self.bytes_up: dict[str, int] = defaultdict(int)

    def set_run(self, run: Run) -> None:
        self.inner.set_run(run)

    @property
    def run(self) -> Run:
        return self.inner.run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str,
                       ttl: float | None = None) -> Message:  # fmt: skip
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return self.inner.get_node_ids()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self.inner.push_messages(self._out(messages))

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self._in(self.inner.pull_messages(message_ids))

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        return self._in(self.inner.send_and_receive(self._out(messages), timeout=timeout))

    def _out(self, messages: Iterable[Message]) -> list[Message]:
        messages = list(messages)
        for m in messages:
            self.setup = self.setup or _setup_of(m)
            self.bytes_down[m.metadata.group_id] += serde.message_to_proto(m).ByteSize()
        return messages

    def _in(self, messages: Iterable[Message]) -> list[Message]:
        got = list(messages)
        for m in got:
            self.bytes_up[m.metadata.group_id] += serde.message_to_proto(m).ByteSize()
        return got


def _describe(setup: dict[str, Any], settings: SecAggSettings, weights: Sequence[int]) -> dict[str, Any]:
    """What ran, as the server's SecAgg+ setup message stated it."""
    if not setup:
        raise RuntimeError("secure aggregation did not start (no SecAgg+ setup message was sent)")
    return {
        "protocol": "SecAgg+ (flwr SecAggPlusWorkflow on the server, secaggplus_mod on each ClientApp)",
        "num_shares": int(setup[Key.SHARE_NUMBER]),
        "reconstruction_threshold": int(setup[Key.THRESHOLD]),
        "clipping_range": float(setup[Key.CLIPPING_RANGE]),
        "quantization_range": int(setup[Key.TARGET_RANGE]),
        "modulus_range": int(setup[Key.MOD_RANGE]),
        "max_weight": float(setup[Key.MAX_WEIGHT]),
        "max_abs_error_vs_fedavg": settings.error_bound(list(weights)),
    }


def _setup_of(msg: Message) -> dict[str, Any]:
    configs = msg.content.config_records.get(RECORD_KEY_CONFIGS) if msg.has_content() else None
    if configs is None or configs.get(Key.STAGE) != Stage.SETUP:
        return {}
    keys = (
        Key.SHARE_NUMBER,
        Key.THRESHOLD,
        Key.CLIPPING_RANGE,
        Key.TARGET_RANGE,
        Key.MOD_RANGE,
        Key.MAX_WEIGHT,
    )
    return {k: configs[k] for k in keys}


APP_PYPROJECT = """[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "soutui-federated"
version = "1.0.0"
description = "soutui federated SASRec under SecAgg+"
license = "Apache-2.0"
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "soutui"

[tool.flwr.app.components]
serverapp = "soutui_flwr_app:server_app"
clientapp = "soutui_flwr_app:client_app"

[tool.flwr.app.config]
job = "{job}"
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def tied_to_this_process() -> Callable[[], None]:
    """A `preexec_fn` that makes the child get SIGTERM when this process dies, however it dies
    (SIGKILL included, which runs no `finally`): Linux's PR_SET_PDEATHSIG. Where prctl is missing
    the child starts untied."""
    parent = os.getpid()

    def tie() -> None:  # runs in the child, between fork and exec
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the tie was made
            os._exit(1)

    return tie


def _wait_port(port: int, proc: subprocess.Popen[bytes], limit_s: float = 120.0) -> None:
    end = time.monotonic() + limit_s
    while time.monotonic() < end and proc.poll() is None:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"flower-superlink did not listen on 127.0.0.1:{port}")


def _write_job(job: Path, clients: Sequence[NumPyClient], server: tuple[Any, ...], port: int) -> Path:
    """The job's files: the server's strategy and settings, one file per client (its users' data, the
    node's own), a Flower app whose components are the apps above, and the CLI's SuperLink connection."""
    with open(job / "server.pkl", "wb") as f:
        pickle.dump(server, f)
    for i, c in enumerate(clients):
        with open(job / f"client{i}.pkl", "wb") as f:
            pickle.dump(c, f)
    app = job / "app"
    (app / "soutui_flwr_app").mkdir(parents=True)
    (app / "pyproject.toml").write_text(APP_PYPROJECT.replace("{job}", str(job)))
    (app / "soutui_flwr_app" / "__init__.py").write_text(
        "from soutui.training import federated_secagg\n\n"
        "server_app = federated_secagg.deployed_server_app\n"
        "client_app = federated_secagg.deployed_client_app\n"
    )
    (job / "home").mkdir()
    (job / "home" / "config.toml").write_text(
        f'[superlink]\ndefault = "loop"\n\n[superlink.loop]\naddress = "127.0.0.1:{port}"\ninsecure = true\n'
    )
    return app


def run_deployed(clients: Sequence[NumPyClient], weights: Sequence[int], strategy: Strategy, rounds: int,
                 settings: SecAggSettings, limit_s: float = 3600.0) -> tuple[dict[str, Any], Any, Any]:  # fmt: skip
    """The same SecAgg+ rounds on Flower's deployment engine: a `flower-superlink` and one
    `flower-supernode` per client on loopback (--insecure), the run started with `flwr run`. Returns
    what ran, the strategy as the ServerApp left it, and the per-round bytes (protobuf sizes)."""
    bin_dir = Path(sys.executable).parent
    max_weight = float(settings.max_weight or max(max(weights), 1))
    with tempfile.TemporaryDirectory(prefix="soutui-flwr-") as tmp:
        job, port = Path(tmp), _free_port()
        app = _write_job(job, clients, (strategy, rounds, settings, max_weight), port)
        env = {**os.environ, "FLWR_HOME": str(job / "home"), "FLWR_TELEMETRY_ENABLED": "0",
               "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}  # they start flower-superexec, flwr-*  # fmt: skip
        log = open(job / "processes.log", "wb")  # noqa: SIM115  # closed below
        procs: list[subprocess.Popen[bytes]] = []
        try:
            procs.append(subprocess.Popen([str(bin_dir / "flower-superlink"), "--insecure",
                                           "--disable-runtime-dependency-installation", "--host", "127.0.0.1",
                                           "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True, preexec_fn=tied_to_this_process()))  # fmt: skip
            _wait_port(port, procs[0])
            for i in range(len(clients)):
                procs.append(subprocess.Popen([str(bin_dir / "flower-supernode"), "--insecure", "--superlink",
                                               f"127.0.0.1:{port}", "--node-config", f'client="{job}/client{i}.pkl"',
                                               "--port", str(_free_port())], env=env, stdout=log,
                                              stderr=subprocess.STDOUT, start_new_session=True,
                                              preexec_fn=tied_to_this_process()))  # fmt: skip
            subprocess.run([str(bin_dir / "flwr"), "run", str(app), "loop", "--stream"], env=env, stdout=log,
                           stderr=subprocess.STDOUT, timeout=limit_s, check=True)  # fmt: skip
        except (RuntimeError, subprocess.SubprocessError) as e:
            log.flush()
            tail = (job / "processes.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"Flower deployment run failed ({e}); its processes' log ends:\n{tail}") from e
        finally:
            for p in procs:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGTERM)
            for p in procs:
                p.wait(timeout=30)
            log.close()
        if not (job / "result.pkl").exists():
            tail = (job / "processes.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the Flower deployment run left no result; its processes' log ends:\n{tail}")
        with open(job / "result.pkl", "rb") as f:
            done, setup, up, down = pickle.load(f)  # noqa: S301  # written by our ServerApp
    info = {**_describe(setup, settings, weights), "transport": "Flower deployment engine: flower-superlink + "
            "one flower-supernode per client on 127.0.0.1 (--insecure), started with `flwr run`"}  # fmt: skip
    return info, done, (up, down)
