"""Replay simulator: online experiments run on real held-out users, through the real serving code.

Simulated shoppers are the leave-one-out test users of a dataset: each one's history (all but
the last event) is what the server holds, and the held-out last item is what they want. A
`RecService` (started the way `soutui serve` starts it: a bundle, an event log of those
histories) answers through `Experiments.recommend` -- the function behind /v1/recommend -- and
the shopper's clicks, carts and purchases go back through `Experiments.claim`, the function
behind POST /v1/events, so assignment, interleaving, crediting and the statistics are the served
code, not a copy. Simulated events are credited only: histories stay frozen during a replay,
so every shopper is the same person in every experiment (and one answer per shopper).

Clicks follow a position-based model (Craswell et al. 2008; Chuklin et al. 2015, "Click
Models for Web Search"): P(click at rank r) = examination(r) * attractiveness(item), with
examination(r) = r ** -eta and attractiveness `attract_target` for the wanted item,
`attract_other` for any other. A click on the wanted item leads to a cart with
`cart_after_click`, and a cart to a purchase with `purchase_after_cart`.

Visits. A shopper visits `visits` times (`Replay.run`): "data" (the default) = as many times as
they have events in their served history -- each Amazon review is a bought product, so at least
one shopping visit -- which gives real shoppers' spread of activity (a few with hundreds of
visits, most with a handful); an integer n = every shopper n times (1 = the single-visit
shopper). Each visit shows a list (the same list while histories are frozen; interleaving draws
new coins per impression) and clicks follow the model above; the held-out item is wanted until
the shopper buys it, after which only noise clicks remain. The verdict is the user-level test
(`experiments.user_level`): clicks per user for A/B, per-user preference for interleaving.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from soutui.config import ConfigError
from soutui.serving.experiments import Experiments
from soutui.serving.service import RecService
from soutui.serving.settings import ArmConfig, ExperimentConfig, ServeSettings

ProgressFn = Callable[[str], None]


@dataclass(frozen=True)
class ClickModel:
    """Position-based click model; the defaults are the documented parameters (docs/experiments.md)."""

    eta: float = 1.0  # examination(r) = r ** -eta (rank r from 1)
    attract_target: float = 0.9  # P(click | examined) for the item the shopper wants
    attract_other: float = 0.02  # P(click | examined) for any other item (noise clicks)
    cart_after_click: float = 0.3  # wanted item: P(cart | click)
    purchase_after_cart: float = 0.5  # wanted item: P(purchase | cart)

    def events(self, items: list[str], wanted: str | None, rng: np.random.Generator) -> list[tuple[str, str]]:
        """(item_id, event_type) of one shopper looking at one list."""
        out: list[tuple[str, str]] = []
        u = rng.random((len(items), 3))
        for r, item in enumerate(items, start=1):
            hit = item == wanted
            if u[r - 1, 0] < r**-self.eta * (self.attract_target if hit else self.attract_other):
                out.append((item, "click"))
                if hit and u[r - 1, 1] < self.cart_after_click:
                    out.append((item, "cart"))
                    if u[r - 1, 2] < self.purchase_after_cart:
                        out.append((item, "purchase"))
        return out


def parse_arm(spec: str) -> ArmConfig:
    """`popularity` / `itemknn` (fitted here on the training part) or `MODEL@BUNDLE_DIR` (that
    bundle's model; it must not have seen the test items: a SASRec checkpoint trained with
    `soutui train` has not, a bundle's refitted baselines have)."""
    model, _, bundle = spec.partition("@")
    if not model:
        raise ConfigError(f"arm {spec!r}: name a model, e.g. itemknn or sasrec@/path/to/bundle")
    return ArmConfig(model=model, bundle=bundle)


class Replay:
    """One prepared shop for many simulated experiments: models fitted on the leave-one-out
    training part, a bundle of them, and a `RecService` holding every test user's history."""

    def __init__(self, dataset: str, fit_models: list[str], *, store_url: str | None = None,
                 workdir: Path | None = None, cache_lists: bool = False, pool: int | None = None, seed: int = 0,
                 progress: ProgressFn | None = None) -> None:
        from soutui.data.datasets import load_dataset
        from soutui.data.sequences import SequenceData, leave_one_out
        from soutui.models.registry import model_class
        from soutui.serving.bundle_build import catalogue_in_index_order, write_bundle

        say = progress or (lambda _m: None)
        self._own_dir = workdir is None
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="soutui-replay-"))
        items, events = load_dataset(dataset, store_url, progress=progress is not None)
        data = SequenceData.from_events(events, items)
        split = leave_one_out(data)
        self.test = split.test
        if pool is not None and pool < len(self.test):  # serve only these users (a seeded sample): a quicker start
            self.test = self.test.take(np.sort(np.random.default_rng(seed).choice(len(self.test), pool, replace=False)))
        self.user_ids = [str(data.user_ids[u]) for u in self.test.users]
        self.wanted = [str(data.item_ids[i]) for i in self.test.targets]
        self.activity = [len(h) for h in self.test.histories]  # served events per shopper: visits="data"
        models = {}
        for name in dict.fromkeys(fit_models):
            t0 = time.perf_counter()
            models[name] = model_class(name)().fit(split.train, split.valid)
            say(f"fitted {name} on the training part in {time.perf_counter() - t0:.1f}s")
        catalogue = catalogue_in_index_order(items, data.item_ids)
        evaluation = {"protocol": "replay: leave-one-out training part", "models": {}, "plots": []}
        bundle = write_bundle(self.dir / "bundles", dataset, catalogue, models, next(iter(models)), evaluation)
        log = self.dir / "histories.jsonl"
        with open(log, "w") as fh:
            for u, hist, ts in zip(self.user_ids, self.test.histories, self.test.timestamps or [], strict=True):
                for j, (i, t) in enumerate(zip(hist, ts, strict=True)):
                    fh.write(json.dumps({"event_id": f"h-{u}-{j}", "user_id": u, "item_id": str(data.item_ids[i]),
                                         "event_type": "purchase", "ts": int(t)}) + "\n")
        self.settings = ServeSettings(bundle=str(bundle), bundles_dir=str(bundle.parent),
                                      store=f"duckdb://{self.dir / 'replay.duckdb'}", event_log=str(log),
                                      flush_interval_s=0.0, insecure_dev=True, demo=True)
        self.svc = RecService(self.settings)
        self._bundles: dict[str, Any] = {}  # arm bundles, loaded once for every run
        say(f"serving {len(self.user_ids)} held-out users of {dataset}: their histories come from the replay's "
            "event log, so the store's copy of the dataset (with the held-out items) is not read")
        if cache_lists:  # lists depend on (user, arm) only while histories are frozen: score each once
            self.svc.recommend = _memo(self.svc.recommend)  # type: ignore[method-assign]

    def run(self, a: ArmConfig, b: ArmConfig, method: str, users: int, seed: int, *, k: int = 10,
            check_every: int = 100, click: ClickModel | None = None, visits: int | str = "data") -> dict[str, Any]:
        """One simulated experiment over `users` test users drawn with `seed`; each visits `visits`
        times ("data": their number of served events; an integer: that many)."""
        if visits != "data" and not (isinstance(visits, int) and visits >= 1):
            raise ConfigError(f"--visits must be 'data' or a positive integer, got {visits!r}")
        if method not in ("ab", "interleave"):
            raise ConfigError(f"--method must be ab or interleave, got {method!r}")
        if not 1 <= users <= len(self.user_ids):
            raise ConfigError(f"--users must be 1..{len(self.user_ids)} (the held-out test users), got {users}")
        click = click or ClickModel()
        name = f"sim-{method}-{seed}"
        exp = ExperimentConfig(name=name, kind=method, a=a, b=b, traffic=1.0, salt=name, k=k)  # type: ignore[arg-type]
        log = self.dir / f"{name}-{time.time_ns()}.jsonl"
        settings = dataclasses.replace(self.settings, experiments=[exp], experiment_log=str(log))
        exps = Experiments(settings, self.svc, seed=seed, bundles=self._bundles)
        rng = np.random.default_rng(seed)
        order = rng.choice(len(self.user_ids), size=users, replace=False)
        curve: list[tuple[int, float | None, str | None]] = []
        batch: list[dict[str, Any]] = []  # events go in as a shop client sends them: in batches
        try:
            for n, row in enumerate(order, start=1):
                batch += self._shopper(exps, int(row), k, click, rng, visits)
                if n % check_every == 0 or n == users:
                    exps.claim(batch)
                    batch = []
                    rep = exps.report(name)
                    test = rep["user_level"] if rep else None
                    curve.append((n, test["p_value"] if test else None, test["winner"] if test else None))
            final = exps.report(name)
        finally:
            exps.close()
            log.unlink(missing_ok=True)
        return _result(method, a, b, users, seed, final, curve, click, visits)

    def _shopper(self, exps: Experiments, row: int, k: int, click: ClickModel, rng: np.random.Generator,
                 visits: int | str) -> list[dict[str, Any]]:
        """The events of one shopper's visits: a list per visit, clicks by the click model; the
        wanted item is wanted until bought."""
        user = self.user_ids[row]
        wanted: str | None = self.wanted[row]
        events: list[dict[str, Any]] = []
        for _ in range(self.activity[row] if visits == "data" else int(visits)):
            out = exps.recommend(user, k)
            if "experiment" not in out:
                break
            shown = [r["item_id"] for r in out["items"]]
            iid = out["experiment"]["impression_id"]
            seen = click.events(shown, wanted, rng)
            events += [{"event_id": f"{iid}-{j}", "user_id": user, "item_id": item, "event_type": et,
                        "impression_id": iid} for j, (item, et) in enumerate(seen)]
            if (wanted, "purchase") in seen:
                wanted = None
        return events

    def close(self) -> None:
        self.svc.close()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


def users_to_significance(curve: list[tuple[int, float | None, str | None]]) -> int | None:
    """The first checkpoint from which p < 0.05 holds, for the same winner, at every later
    checkpoint (None when the last checkpoint is not significant)."""
    found = None
    final = curve[-1][2] if curve else None
    for n, p, winner in reversed(curve):
        if p is None or p >= 0.05 or winner is None or winner != final:
            break
        found = n
    return found


def _result(method: str, a: ArmConfig, b: ArmConfig, users: int, seed: int, rep: dict[str, Any] | None,
            curve: list[tuple[int, float | None, str | None]], click: ClickModel, visits: int | str) -> dict[str, Any]:
    arm = lambda c: c.model + (f"@{Path(c.bundle).name}" if c.bundle else "")  # noqa: E731
    test = rep["user_level"] if rep else None
    return {
        "method": method, "a": arm(a), "b": arm(b), "seed": seed, "users": users, "visits": visits,
        "winner": test["winner"] if test else None,
        "p_value": test["p_value"] if test else None,
        "test": test,
        "impression_level": {"winner": rep["impression_level_winner"], "p_value": rep["test"]["p_value"]} if rep else None,
        "users_to_significance": users_to_significance(curve),
        "impressions": (rep["arms"]["a"]["impressions"] + (rep["arms"]["b"]["impressions"] if method == "ab" else 0))
        if rep else 0,
        "report": rep,
        "click_model": dataclasses.asdict(click),
        "protocol": "leave-one-out test users of the dataset; history = all but the last event, wanted item = the "
                    "last (until bought); " + ("one visit" if visits == 1 else f"{visits} visits" if visits != "data"
                    else "as many visits as served history events") + " per user, a list per visit through "
                    "Experiments.recommend, events through Experiments.claim; verdict = the user-level test",
    }


def _memo(fn: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    cache: dict[tuple[Any, ...], dict[str, Any]] = {}

    def recommend(*args: Any, bundle: Any = None, **kw: Any) -> dict[str, Any]:
        key = (*args, id(bundle), *sorted(kw.items()))
        if key not in cache:
            cache[key] = fn(*args, bundle=bundle, **kw)
        return dict(cache[key])  # a fresh top level: the experiment tags it

    return recommend


def simulate(dataset: str, a: str, b: str, method: str, users: int, seed: int, *, store_url: str | None = None,
             k: int = 10, check_every: int = 100, visits: int | str = "data",
             progress: ProgressFn | None = None) -> dict[str, Any]:
    """`soutui experiment simulate`: prepare the replay, run one experiment, clean up."""
    arm_a, arm_b = parse_arm(a), parse_arm(b)
    fit = [c.model for c in (arm_a, arm_b) if not c.bundle]
    replay = Replay(dataset, fit or ["popularity"], store_url=store_url, pool=users, seed=seed, cache_lists=True,
                    progress=progress)
    try:
        return replay.run(arm_a, arm_b, method, users, seed, k=k, check_every=check_every, visits=visits)
    finally:
        replay.close()
