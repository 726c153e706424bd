"""`soutui experiment report` (figures of a live experiment, from its log) and
`soutui experiment simulate` (a replay of real held-out users through the serving code)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from soutui.cli.common import add_store_arg, print_json, print_table
from soutui.config import NotFoundError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("experiment", help="online experiments: report a live one, simulate one on held-out users")
    esub = p.add_subparsers(dest="experiment_command", metavar="ACTION", required=True)

    r = esub.add_parser("report", help="per arm impressions, CTR@k, cart and purchase rates; b - a with 95%% CI, p")
    r.add_argument("name", help="experiment name (as in the serve config)")
    r.add_argument("--dataset", default=None, help="the served dataset (finds $SOUTUI_HOME/events/<dataset>.experiments.jsonl)")
    r.add_argument("--log", default=None, help="experiment log file (default: from --config or --dataset)")
    r.add_argument("--config", default=None, help="the serve TOML config (its experiment_log key)")
    r.add_argument("--json", action="store_true", help="print one JSON object")
    r.set_defaults(func=report)

    s = esub.add_parser("simulate", help="replay held-out test users through the real experiment code",
                        description="Simulated shoppers are the dataset's leave-one-out test users; each wants "
                        "its held-out item and clicks by a position-based model (docs/experiments.md).")
    s.add_argument("--dataset", default="amazon-beauty", help="dataset name (imported on first use)")
    s.add_argument("--a", required=True, help="arm a: popularity | itemknn | ... (fitted here) or MODEL@BUNDLE_DIR")
    s.add_argument("--b", required=True, help="arm b, as --a")
    s.add_argument("--method", choices=("ab", "interleave"), default="interleave")
    s.add_argument("--users", type=int, default=2000, help="simulated users (held-out test users, drawn by --seed)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--k", type=int, default=10, help="list length shown")
    s.add_argument("--check-every", type=int, default=100, help="users between significance checks")
    s.add_argument("--visits", type=_visits, default="data",
                   help="visits per shopper: 'data' = their number of served history events (default), or N "
                        "(1 = the single-visit shopper); a list per visit")
    add_store_arg(s)
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=simulate)


def _visits(text: str) -> int | str:
    if text == "data":
        return text
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"'data' or a positive integer, not {text!r}")
    return n


def _log_path(args: argparse.Namespace) -> Path:
    if args.log:
        return Path(args.log)
    from soutui.config import from_dict, load_toml
    from soutui.serving.settings import ServeSettings

    settings = load_toml(ServeSettings, args.config, table="serve") if args.config else from_dict(ServeSettings, {})
    if settings.experiment_log:
        return Path(settings.experiment_log)
    if not args.dataset:
        raise NotFoundError("say where the experiment log is: --log FILE, --config serve.toml or --dataset NAME")
    return settings.experiment_log_path(args.dataset)


def report(args: argparse.Namespace) -> int:
    from soutui.serving.experiments import report_from_log

    path = _log_path(args)
    if not path.is_file():
        raise NotFoundError(f"no experiment log at {path}: has a server with experiments answered yet?")
    found = report_from_log(path, args.name)
    if not found:
        names = [r["name"] for r in report_from_log(path)]
        raise NotFoundError(f"no experiment {args.name!r} in {path}; it has {names or 'none'}")
    rep = found[0]
    if args.json:
        print_json(rep)
        return 0
    _print_report(rep)
    return 0


def _print_report(rep: dict[str, Any]) -> None:
    print(f"experiment {rep['name']} ({rep['kind']}, k={rep['k']}): {rep['users']} users")
    rows = [{"arm": arm, **{c: v for c, v in r.items() if c != "bundle"}} for arm, r in rep["arms"].items()]
    print_table(rows, ["arm", "model", "impressions", "ctr", "cart_rate", "purchase_rate"])
    t = rep["test"]
    ci = "n/a" if t["ci95"] is None else f"[{t['ci95'][0]:.4f}, {t['ci95'][1]:.4f}]"
    if rep["kind"] == "interleave":
        print(f"{t['method']}: b's share of wins {t['b_win_share']}, 95% CI {ci}, p = {t['p_value']}")
    else:
        print(f"{t['method']}: CTR b - a {t['diff']}, 95% CI {ci}, p = {t['p_value']}")
    if rep["kind"] == "interleave":
        print(f"wins by clicks: {rep['wins']}")
    print(f"impression level: winner at 5%: {rep.get('impression_level_winner') or 'none'}")
    u = rep.get("user_level")
    if u:  # the randomisation unit: impressions of one user are not independent
        effect = f"preferences {u['preferences']}" if rep["kind"] == "interleave" else f"clicks per user b - a {u['diff']}"
        print(f"user level ({u['method']}): {effect}, p = {u['p_value']}")
    print(f"winner at 5%: {rep['winner'] or 'none (not significant)'}")


def simulate(args: argparse.Namespace) -> int:
    from soutui.serving.simulate import simulate as run

    def progress(msg: str) -> None:
        print(f"soutui: {msg}", file=sys.stderr)

    out = run(args.dataset, args.a, args.b, args.method, args.users, args.seed, store_url=args.store, k=args.k,
              check_every=args.check_every, visits=args.visits, progress=progress)
    if args.json:
        print_json(out)
        return 0
    _print_report(out["report"]) if out["report"] else print("no impressions (no simulated user had a history)")
    t = out["test"]
    print(f"user level ({t['method']}): p = {t['p_value']}, winner at 5%: {t['winner'] or 'none'}")
    print(f"users: {out['users']} (visits: {out['visits']}), users to significance: {out['users_to_significance']}")
    return 0
