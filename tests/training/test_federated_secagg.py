"""Secure aggregation (Flower SecAgg+) for federated SASRec (issue 12 §3): the aggregate is FedAvg's,
and the server never holds one client's parameters."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch
from flwr.common import bytes_to_ndarray, ndarrays_to_parameters, parameters_to_ndarrays, serde
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key
from test_federated import SMALL, secret_data

import soutui.training.pipeline as pipeline
from soutui.cli import main
from soutui.training import federated as fed
from soutui.training.federated_secagg import LocalGrid, SecAggSettings


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _spy(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    """Keeps what each client computed (client side), every reply the server's grid handed the
    workflow (server side), and the parameters the strategy was given to aggregate."""
    seen: dict[str, list[Any]] = {"client": [], "server": [], "aggregate": []}
    fit, pull, agg = fed.SASRecClient.fit, LocalGrid.pull_messages, fed.RecordingFedAvg.aggregate_fit

    def client_fit(self: Any, parameters: Any, config: Any) -> Any:
        out = fit(self, parameters, config)
        seen["client"].append(([np.array(a) for a in out[0]], out[1]))
        return out

    def server_pull(self: Any, ids: Any) -> Any:
        got = list(pull(self, ids))
        seen["server"].extend(got)
        return got

    def strategy_agg(self: Any, rnd: int, results: Any, failures: Any) -> Any:
        seen["aggregate"].append([parameters_to_ndarrays(res.parameters) for _, res in results])
        return agg(self, rnd, results, failures)

    monkeypatch.setattr(fed.SASRecClient, "fit", client_fit)
    monkeypatch.setattr(LocalGrid, "pull_messages", server_pull)
    monkeypatch.setattr(fed.RecordingFedAvg, "aggregate_fit", strategy_agg)
    return seen


def test_secure_aggregate_is_fedavg_and_the_server_sees_only_masked_vectors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = _spy(monkeypatch)
    cfg = fed.FederatedConfig(clients=3, rounds=1, params=SMALL, secure_aggregation=True)
    out = run = fed.run_federated(secret_data(150), cfg, progress=False)
    sa = run["federated"]["secure_aggregation"]
    assert (sa["num_shares"], sa["reconstruction_threshold"]) == (3, 2)  # 1.0 x 3 clients, 0.5 x 3 shares
    assert (sa["clipping_range"], sa["quantization_range"]) == (8.0, 2**22)
    assert len(seen["client"]) == 3 and len(seen["server"]) == 3 * 4  # 3 clients x 4 SecAgg+ stages

    # the aggregate handed to FedAvg equals plain FedAvg of the clients' own parameters, within the bound
    (given,) = seen["aggregate"]
    assert all(len(g) == len(given[0]) for g in given)  # every result carries the one aggregate
    weights = np.array([n for _, n in seen["client"]], dtype=float)
    reference = [sum(w * p[i].astype(np.float64) for (p, _), w in zip(seen["client"], weights, strict=True))
                 / weights.sum() for i in range(len(given[0]))]  # fmt: skip
    err = max(float(np.abs(a - r).max()) for a, r in zip(given[0], reference, strict=True))
    bound = SecAggSettings().error_bound([int(w) for w in weights])
    assert sa["max_abs_error_vs_fedavg"] == pytest.approx(bound)
    assert 0 < err <= bound < 2e-5  # quantised (not the plain path), yet FedAvg to within 3kC / (Q sum r)
    spread = max(float(np.abs(p[0] - reference[0]).max()) for p, _ in seen["client"])
    assert spread > 100 * bound  # the clients differ by far more than the tolerance: a wrong sum would show

    # what the server received: no parameter array, no client's float bytes, only masked integers
    wires = [serde.message_to_proto(m).SerializeToString() for m in seen["server"]]
    assert all(not rec for m in seen["server"] for rec in m.content.array_records.values())
    probes = [p.tobytes()[:64] for params, _ in seen["client"] for p in params if p.size >= 16]
    plain = b"".join(ndarrays_to_parameters(seen["client"][0][0]).tensors)
    assert any(probe in plain for probe in probes)  # the probe finds a client's parameters where they are
    assert not any(probe in wire for probe in probes for wire in wires)
    assert not any(b"SECRET" in wire for wire in wires)
    masked = [m.content.config_records[RECORD_KEY_CONFIGS][Key.MASKED_PARAMETERS] for m in seen["server"]
              if Key.MASKED_PARAMETERS in m.content.config_records.get(RECORD_KEY_CONFIGS, {})]  # fmt: skip
    assert len(masked) == 3
    for vec in masked:
        arrays = [bytes_to_ndarray(b) for b in vec]
        for params, n in seen["client"]:  # the client's quantised, weighted parameters, before masking
            r = round(n / sa["max_weight"] * sa["quantization_range"]) / sa["quantization_range"]
            q = (np.clip(r * params[0], -8, 8) + 8) * sa["quantization_range"] / 16
            assert np.mean(np.abs(arrays[1].astype(np.float64) - q) <= 1) < 0.01  # [0] is the weight factor
    assert out["rounds"][0]["bytes_up"] > 0 and out["rounds"][0]["failures"] == 0


def test_cli_secure_aggregation_json(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    prep = secret_data(80)
    monkeypatch.setattr(pipeline, "prepare", lambda *a, **k: prep)
    sets = [x for k, v in SMALL.items() for x in ("--set", f"{k}={json.dumps(v)}")]
    base = ["federated", "--dataset", "secret", "--rounds", "1", *sets]
    assert main([*base, "--clients", "2", "--secure-aggregation", "--secagg-clip", "4", "--json"]) == 0
    sa = json.loads(capsys.readouterr().out)["federated"]["secure_aggregation"]
    assert sa["num_shares"] == 2 and sa["reconstruction_threshold"] == 2 and sa["clipping_range"] == 4.0
    assert sa["quantization_range"] == 2**22 and "SecAgg+" in sa["protocol"]
    # server-side DP clipping needs each client's update, which secure aggregation hides: refused
    assert main([*base, "--clients", "2", "--secure-aggregation", "--dp-noise", "0.5"]) == 2
    assert main([*base, "--clients", "1", "--secure-aggregation"]) == 2
    assert main([*base, "--clients", "2", "--engine", "deployment"]) == 2  # an engine for SecAgg+ only


@pytest.mark.slow  # about 75 s on the shared 2-core box: a process per client message
def test_secure_aggregation_on_flowers_deployment_engine() -> None:
    cfg = fed.FederatedConfig(clients=2, rounds=1, params=SMALL, secure_aggregation=True, engine="deployment")
    out = fed.run_federated(secret_data(120), cfg, progress=False)
    sa = out["federated"]["secure_aggregation"]
    assert "flower-supernode" in sa["transport"] and (sa["num_shares"], sa["reconstruction_threshold"]) == (
        2,
        2,
    )
    (r,) = out["rounds"]
    assert r["failures"] == 0 and r["clients"] == 2 and r["bytes_up"] > r["bytes_down"] > 0
    assert out["metrics"]["test"]["users"] == 120 and out["metrics"]["test"]["NDCG@10"] > 0


def test_flower_processes_die_with_the_process_that_started_them() -> None:
    """SIGKILL runs no `finally`: the superlink and supernodes are tied to their parent by
    PR_SET_PDEATHSIG instead, so killing soutui outright still stops them (checked on a stand-in child)."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    parent = subprocess.Popen(
        [sys.executable, "-c",
         "import subprocess, sys, time\n"
         "from soutui.training.federated_secagg import tied_to_this_process\n"
         "c = subprocess.Popen(['sleep', '120'], start_new_session=True, preexec_fn=tied_to_this_process())\n"
         "print(c.pid, flush=True)\n"
         "time.sleep(120)\n"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    status = Path(f"/proc/{child}/status")
    assert "State:\tZ" not in status.read_text()  # alive while its parent lives
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    end = time.monotonic() + 30
    while time.monotonic() < end and status.exists() and "State:\tZ" not in status.read_text():
        time.sleep(0.1)
    assert not status.exists() or "State:\tZ" in status.read_text(), "the child outlived a SIGKILLed parent"
