"""`soutui explain`: why a model scores one item for one user (history items, content), as JSON.

The model is a saved run (`--checkpoint`, else the newest finished `soutui train` run of
the dataset and model under $SOUTUI_HOME/runs); models without weights to train
(popularity, itemknn) are fitted on the dataset's events if no run exists. The user's
history is their whole event sequence in the dataset, oldest first.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from soutui.cli.common import add_store_arg, print_json
from soutui.config import ConfigError, NotFoundError, home_dir

FITTED_HERE = ("popularity", "recent-popularity", "itemknn")  # cheap enough to fit on the spot


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from soutui.models.attribution import METHODS
    from soutui.models.registry import MODELS

    p = sub.add_parser(
        "explain",
        help="attribute one user's recommendation of one item to history items and item content",
        description="Occlusion (default) or LIME attributions in the model's own score units; the reason "
        "is written from the strongest attribution.",
    )
    p.add_argument("--dataset", default="amazon-beauty", help="dataset name (imported on first use)")
    p.add_argument("--model", default="itemknn", choices=list(MODELS), help="model to explain (default itemknn)")
    p.add_argument("--user", required=True, help="user id as in the dataset")
    p.add_argument("--item", default=None, help="item id to explain (default: the model's top recommendation "
                   "outside the user's history)")
    p.add_argument("--checkpoint", default=None, help="saved model directory (default: the newest finished run)")
    p.add_argument("--method", default="occlusion", choices=METHODS, help="occlusion (default), counterfactual (what takes the item's lead over the best item left out) or lime")
    p.add_argument("--lang", default="en", choices=("en", "zh"), help="language of the reason (default en)")
    add_store_arg(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def newest_run(dataset: str, model: str) -> Path | None:
    """The newest finished run (record.json written) of `model` on `dataset`."""
    runs = sorted((home_dir() / "runs").glob(f"{dataset}-{model}-*"))
    done = [r for r in runs if (r / "record.json").exists() and (r / "model.json").exists()]
    return done[-1] if done else None


def run(args: argparse.Namespace) -> int:
    out = explain(args.dataset, args.model, args.user, args.item, args.checkpoint, args.method, args.lang, args.store)
    if args.json:
        print_json(out)
        return 0
    print(f"{out['model']} · user {out['user_id']} · item {out['item_id']}\n{out['reason']}\n")
    for a in out["attributions"]:
        print(f"  {a['weight']:+.4f}  {a['kind']:<12}  {a['name']}")
    return 0


def explain(
    dataset: str,
    model_name: str,
    user: str,
    item: str | None = None,
    checkpoint: str | None = None,
    method: str = "occlusion",
    lang: str = "en",
    store: str | None = None,
) -> dict[str, Any]:
    """The `--json` object: {"model", "user_id", "item_id", "reason", "attributions": [...]}."""
    from soutui.data.datasets import load_dataset
    from soutui.data.sequences import SequenceData
    from soutui.features.content import titles_for
    from soutui.models.attribution import Attribution, strongest
    from soutui.serving.explain import sentence

    items, events = load_dataset(dataset, store_url=store, progress=False)
    data = SequenceData.from_events(events, items)
    users = {str(u): n for n, u in enumerate(data.user_ids)}
    if user not in users:
        raise NotFoundError(f"user {user!r} has no events in dataset {dataset!r}")
    u = users[user]
    history = np.asarray(data.sequences[u], np.int64)
    times = None if data.timestamps is None else np.asarray(data.timestamps[u])
    model = _model(dataset, model_name, checkpoint, data)
    if model.n_items_ != data.n_items:
        raise ConfigError(
            f"the {model.name} model has {model.n_items_} items but dataset {dataset!r} has {data.n_items}: "
            "it was trained on another version of the data; retrain it or pass the matching --checkpoint"
        )
    if item is None:
        target = int(model.recommend(history, 1, exclude=history, timestamps=times)[0][0])
    elif str(item) in data.item_index:
        target = data.item_index[str(item)]
    else:
        raise NotFoundError(f"item {item!r} is not in dataset {dataset!r}")
    titles = titles_for(items, data.item_ids) or [""] * data.n_items
    print(f"explaining {model.name} for user {user} ({len(history)} events) by {method}", file=sys.stderr)
    (row,) = model.attribute(history, np.array([target], np.int64), times, method=method)
    named = [_name(a.as_dict(), a.item, titles, data) for a in row]
    objs = [Attribution(a["kind"], a["name"], a["weight"]) for a in named]
    top = strongest(objs, "history_item") or strongest(objs)
    en, zh = sentence(top)
    return {
        "model": model.name,
        "user_id": user,
        "item_id": str(data.item_ids[target]),
        "reason": zh if lang == "zh" else en,
        "attributions": named,
    }


def _name(a: dict[str, Any], item: int | None, titles: list[str], data: Any) -> dict[str, Any]:
    if a["kind"] == "history_item" and item is not None:
        a["name"] = titles[item] or str(data.item_ids[item])
    return a


def _model(dataset: str, name: str, checkpoint: str | None, data: Any) -> Any:
    from soutui.models.registry import load_model, model_class

    path = Path(checkpoint) if checkpoint else newest_run(dataset, name)
    if path is not None:
        model = load_model(path)
        if model.name != name and not checkpoint:
            raise ConfigError(f"{path} holds a {model.name!r} model, not {name!r}")
        return model
    if name not in FITTED_HERE:
        raise NotFoundError(
            f"no finished {name} run of {dataset!r} under {home_dir() / 'runs'}; train one first "
            f"(soutui train --dataset {dataset} --model {name}) or pass --checkpoint"
        )
    print(f"fitting {name} on {dataset} ({data.n_interactions} events)", file=sys.stderr)
    return model_class(name)().fit(data)

