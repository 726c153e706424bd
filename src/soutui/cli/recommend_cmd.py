"""`soutui recommend`: ask a bundle for one answer from the command line, without starting a server.

The answer comes from the same service object (`RecService`) and the same code the HTTP API
uses, with the same bundle, store, rules and live events, so it equals what
`GET /v1/recommend/{user}`, `/v1/similar/{item}` or `/v1/trending` would return.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from soutui.cli.common import add_store_arg, print_json
from soutui.config import ConfigError, NotFoundError, from_dict, load_toml


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "recommend",
        help="one user's recommendations (or an item's look-alikes, or trending) from a bundle, as the API gives them",
        description="Loads the bundle (default: the newest under $SOUTUI_HOME/bundles) and the store's live events "
        "exactly as `soutui serve` does, answers once and exits.",
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--user", help="user id as your shop sends it (pseudonymised like the API does)")
    what.add_argument("--similar", metavar="ITEM", help="items like this item id (a product page's list)")
    what.add_argument("--trending", action="store_true", help="the trending list (what users without history get)")
    p.add_argument("-k", "--k", type=int, default=10, help="number of results (default 10)")
    p.add_argument("--model", default=None, help="a model of the bundle (default: the bundle's default)")
    p.add_argument("--category", default=None, help="only items of this category (--user, --trending)")
    p.add_argument("--diverse", action="store_true", help="spread results over categories (--user, --trending)")
    p.add_argument("--explain", action="store_true", help="add each result's attributions (--user, --similar)")
    p.add_argument("--bundle", default=None, help="bundle dir (default: newest under $SOUTUI_HOME/bundles)")
    p.add_argument("--config", default=None, help="serve config TOML (rules etc.; see soutui/defaults.toml)")
    add_store_arg(p)
    p.add_argument("--json", action="store_true", help="print the API's JSON answer")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from soutui.serving.service import NotFound, RecService
    from soutui.serving.settings import ServeSettings

    if not 1 <= args.k <= 1000:
        raise ConfigError(f"--k must be between 1 and 1000, got {args.k}")
    base = load_toml(ServeSettings, args.config, table="serve") if args.config else from_dict(ServeSettings, {})
    overrides = {"bundle": args.bundle, "store": args.store}
    settings = dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})
    svc = RecService(settings)
    try:
        out = _answer(svc, args)
    except NotFound as exc:
        raise NotFoundError(str(exc)) from None
    finally:
        svc.close()
    if args.json:
        print_json(out)
    else:
        _print(out)
    return 0


def _answer(svc: Any, args: argparse.Namespace) -> dict[str, Any]:
    if args.user is not None:
        return svc.recommend(  # type: ignore[no-any-return]
            args.user, args.k, args.category, None, args.diverse, args.model, explain_results=args.explain
        )
    if args.similar is not None:
        return svc.similar(args.similar, args.k, args.model, explain_results=args.explain)  # type: ignore[no-any-return]
    return svc.trending(args.k, args.category, args.diverse)  # type: ignore[no-any-return]


def _print(out: dict[str, Any]) -> None:
    head = [f"bundle {out['bundle']}"]
    if "model" in out:
        head.append(f"model {out['model']}")
    if "history_length" in out:
        head.append(f"history {out['history_length']} items")
    print(" · ".join(head))
    for rank, item in enumerate(out["items"], 1):
        title = str(item.get("title") or "")[:60]
        print(f"{rank:>3}. {item['item_id']:<14} {title:<60}  {item.get('reason', '')}")
