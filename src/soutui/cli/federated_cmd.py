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
        "The global model is evaluated with the leave-one-out, full-ranking protocol. See docs/federated.md.",
    )
    p.add_argument("--dataset", default="amazon-beauty", help="dataset name (imported on first use)")
    p.add_argument("--clients", type=int, default=4, help="number of clients (default 4)")
    p.add_argument("--rounds", type=int, default=5, help="FedAvg rounds (default 5)")
    p.add_argument(
        "--local-epochs", type=int, default=1, help="epochs each client trains per round (default 1)"
    )
    p.add_argument("--dp-noise", type=float, default=0.0,
                   help="client-level DP: Gaussian noise multiplier on the clipped updates (0 = off)")  # fmt: skip
    p.add_argument("--dp-clip", type=float, default=1.0, help="client-level DP: update norm bound")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="SASRec parameter, as for `soutui train` (repeatable)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    add_store_arg(p)
    p.add_argument("--json", action="store_true", help="print the record as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from soutui.training.federated import FederatedConfig, run_federated
    from soutui.training.pipeline import load_params, prepare

    if args.clients < 1 or args.rounds < 1 or args.local_epochs < 1:
        raise ConfigError("--clients, --rounds and --local-epochs must be at least 1")
    params = load_params(None, args.overrides)
    cfg = FederatedConfig(args.clients, args.rounds, args.local_epochs, args.seed, args.dp_noise, args.dp_clip,
                          params)  # fmt: skip
    prep = prepare(args.dataset, store_url=args.store, progress=True)  # progress on stderr
    rec = run_federated(prep, cfg, progress=True)
    if args.json:
        print_json(rec)
        return 0
    print(f"{args.dataset}: {args.clients} clients x {args.rounds} rounds, {rec['time']['train_s']} s; "
          f"{rec['bytes_per_round']:,} bytes per round (up + down)", file=sys.stdout)  # fmt: skip
    print_table(
        [{"split": k, **v} for k, v in rec["metrics"].items()], ["split", "NDCG@10", "HR@10", "users"]
    )
    return 0
