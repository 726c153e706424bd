"""`soutui federated`: SASRec trained across N Flower clients (users partitioned), FedAvg on a server."""

from __future__ import annotations

import argparse
import sys

from soutui.cli.common import add_store_arg, print_json, print_table
from soutui.config import ConfigError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "federated",
        help="federated SASRec on Flower: users split across N clients, local training, FedAvg",
        description="Partition the dataset's users across N Flower clients (gRPC on loopback); each trains "
        "SASRec on its own users and sends only model parameters; the server averages them (FedAvg). "
        "With --secure-aggregation the rounds run Flower's SecAgg+ protocol instead (ServerApp/ClientApps): "
        "the server sees only masked, quantised parameters and their sum. "
        "The global model is evaluated with the leave-one-out, full-ranking protocol. See docs/federated.md.",
    )
    p.add_argument("--dataset", default="amazon-beauty", help="dataset name (imported on first use)")
    p.add_argument("--clients", type=int, default=4, help="number of clients (default 4)")
    p.add_argument("--rounds", type=int, default=5, help="FedAvg rounds (default 5)")
    p.add_argument(
        "--local-epochs", type=int, default=1, help="epochs each client trains per round (default 1)"
    )
    p.add_argument("--strategy", choices=["fedavg", "fedavgm", "fedadam"], default="fedavg",
                   help="the server's step on the clients' averaged update (Flower's FedAvg, FedAvgM or FedAdam; "
                   "default fedavg)")  # fmt: skip
    p.add_argument("--server-lr", type=float, default=1.0,
                   help="fedavgm: server learning rate; fedadam: its step size eta (default 1.0)")  # fmt: skip
    p.add_argument("--server-momentum", type=float, default=0.0,
                   help="fedavgm: server momentum; fedadam: beta_1 (default 0.0)")  # fmt: skip
    p.add_argument("--reset-moments", action="store_true",
                   help="clients start every round's AdamW from zero (default: each client keeps its moments "
                   "across rounds; they never leave it)")  # fmt: skip
    p.add_argument("--dp-noise", type=float, default=0.0,
                   help="client-level DP: Gaussian noise multiplier on the clipped updates (0 = off)")  # fmt: skip
    p.add_argument("--dp-clip", type=float, default=1.0, help="client-level DP: update norm bound")
    p.add_argument("--secure-aggregation", action="store_true",
                   help="Flower SecAgg+: the server sees only masked, quantised parameters and their sum")  # fmt: skip
    p.add_argument("--secagg-shares", type=_count_or_fraction, default=1.0,
                   help="SecAgg+ key shares per client: a fraction of the clients (<= 1) or a count > 2 (default 1.0)")  # fmt: skip
    p.add_argument("--secagg-threshold", type=_count_or_fraction, default=0.5,
                   help="SecAgg+ shares needed to rebuild a key: a fraction of the shares or a count (default 0.5)")  # fmt: skip
    p.add_argument("--secagg-clip", type=float, default=8.0,
                   help="SecAgg+ clipping range C: weighted parameters are clipped to [-C, C] (default 8)")  # fmt: skip
    p.add_argument("--engine", choices=["local", "deployment"], default="local",
                   help="with --secure-aggregation: 'local' runs the ServerApp and ClientApps in this process "
                   "(default); 'deployment' runs them on Flower's deployment engine (flower-superlink and one "
                   "flower-supernode per client on 127.0.0.1; slower: a process per client message)")  # fmt: skip
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="SASRec parameter, as for `soutui train` (repeatable)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    add_store_arg(p)
    p.add_argument("--json", action="store_true", help="print the record as JSON")
    p.set_defaults(func=run)


def _count_or_fraction(text: str) -> float | int:
    """SecAgg+ takes a float as a fraction and an int as a count: '3' -> 3, '0.5' -> 0.5, '1' -> 1.0."""
    value = float(text)
    return int(value) if value.is_integer() and value > 1 else value


def run(args: argparse.Namespace) -> int:
    from soutui.training.federated import FederatedConfig, run_federated
    from soutui.training.federated_secagg import SecAggSettings
    from soutui.training.pipeline import load_params, prepare

    if args.clients < 1 or args.rounds < 1 or args.local_epochs < 1:
        raise ConfigError("--clients, --rounds and --local-epochs must be at least 1")
    params = load_params(None, args.overrides)
    try:
        secagg = SecAggSettings(num_shares=args.secagg_shares, reconstruction_threshold=args.secagg_threshold,
                                clipping_range=args.secagg_clip)  # fmt: skip
        cfg = FederatedConfig(args.clients, args.rounds, args.local_epochs, args.seed, args.dp_noise, args.dp_clip,
                              params, secure_aggregation=args.secure_aggregation, secagg=secagg,
                              engine=args.engine, strategy=args.strategy, server_lr=args.server_lr,
                              server_momentum=args.server_momentum,
                              keep_moments=not args.reset_moments)  # fmt: skip
    except ValueError as e:
        raise ConfigError(str(e)) from e
    prep = prepare(args.dataset, store_url=args.store, progress=True)  # progress on stderr
    rec = run_federated(prep, cfg, progress=True)
    if args.json:
        print_json(rec)
        return 0
    print(f"{args.dataset}: {args.clients} clients x {args.rounds} rounds, {rec['time']['train_s']} s; "
          f"{rec['bytes_per_round']:,} bytes per round (up + down)", file=sys.stdout)  # fmt: skip
    if sa := rec["federated"]["secure_aggregation"]:
        print(f"secure aggregation: SecAgg+, {sa['num_shares']} shares, threshold {sa['reconstruction_threshold']}, "
              f"clip +-{sa['clipping_range']}, {sa['quantization_range']} levels", file=sys.stdout)  # fmt: skip
    print_table(
        [{"split": k, **v} for k, v in rec["metrics"].items()], ["split", "NDCG@10", "HR@10", "users"]
    )
    return 0
