"""Online experiments: assignment, team-draft interleaving, crediting events to arms, report statistics.

An experiment (declared in the serve config, `ServeSettings.experiments`) compares two arms on
/v1/recommend. `ab` shows each enrolled user one arm, chosen by a salted hash of the user id;
`interleave` shows every enrolled user the team-draft interleaving of both arms' lists
(Radlinski et al. 2008; Chapelle et al. 2012) and credits each click to the arm that placed the item.

Everything goes through one append-only JSON-lines file (the experiment log): an impression
record per experiment answer, a claim record per event that names an `impression_id`. The
figures are a pure function of that file (`Ledger`), so they survive a restart, several server
workers can share the file, and `soutui experiment report` reads it without a server.
Impressions are written and flushed to the OS on the request (a killed process loses none;
a background fsync every second bounds what a power cut can lose); claims are fsync'd before
the events' 2xx, like the events themselves.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import random
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from soutui.serving.settings import ArmConfig, ExperimentConfig, ServeSettings

if TYPE_CHECKING:
    from soutui.serving.bundle import LoadedBundle
    from soutui.serving.service import RecService

log = logging.getLogger(__name__)

CREDITED = ("click", "cart", "purchase")  # event types credited to an arm (a view is not a choice)
ENROL_SALT = "soutui-experiments"  # one hash for enrolment, so experiments take disjoint user slices
MEMORY = 200_000  # impressions kept open for claims per ledger (older ones keep their counts)


# --- assignment and interleaving (pure functions) ----------------------------------------

def unit_hash(salt: str, key: str) -> float:
    """A uniform number in [0, 1) from sha256(salt, key): stable across processes and restarts."""
    digest = hashlib.sha256(f"{salt}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def enrolled(experiments: Sequence[ExperimentConfig], user_id: str) -> ExperimentConfig | None:
    """The experiment this user is in, if any: experiment i owns the hash slice
    [sum of earlier traffic shares, + its own share), so no user is in two experiments."""
    u, start = unit_hash(ENROL_SALT, user_id), 0.0
    for exp in experiments:
        if start <= u < start + exp.traffic:
            return exp
        start += exp.traffic
    return None


def ab_arm(exp: ExperimentConfig, user_id: str) -> str:
    """'a' or 'b' for this user, by a hash salted per experiment (independent of enrolment)."""
    return "b" if unit_hash(exp.salt or exp.name, user_id) < exp.b_share else "a"


def team_draft(list_a: Sequence[str], list_b: Sequence[str], k: int, rng: random.Random) -> tuple[list[str], list[str]]:
    """Team-draft interleaving: the team with fewer picks so far picks next (a coin decides
    ties); each picks its highest-ranked item not yet shown. Returns (items, team per item)."""
    items: list[str] = []
    teams: list[str] = []
    shown: set[str] = set()
    pos = {"a": 0, "b": 0}
    lists = {"a": list_a, "b": list_b}
    picks = {"a": 0, "b": 0}

    def next_of(team: str) -> str | None:
        seq = lists[team]
        while pos[team] < len(seq) and seq[pos[team]] in shown:
            pos[team] += 1
        return seq[pos[team]] if pos[team] < len(seq) else None

    while len(items) < k:
        cand = {t: next_of(t) for t in ("a", "b")}
        if cand["a"] is None and cand["b"] is None:
            break
        if picks["a"] != picks["b"]:
            team = "a" if picks["a"] < picks["b"] else "b"
        else:
            team = "a" if rng.random() < 0.5 else "b"
        if cand[team] is None:
            team = "b" if team == "a" else "a"
        item = cand[team]
        assert item is not None
        items.append(item)
        teams.append(team)
        shown.add(item)
        picks[team] += 1
    return items, teams


# --- the ledger: figures as a pure function of the log -----------------------------------

@dataclass
class _Open:
    """An impression still open for claims."""

    exp: str
    user: str
    arm_of: dict[str, str]  # item id -> arm credited for it
    claimed: set[str] = field(default_factory=set)  # event ids already credited
    hits: dict[str, set[str]] = field(default_factory=dict)  # event type -> arms credited at least once
    clicks: dict[str, int] = field(default_factory=lambda: {"a": 0, "b": 0})


@dataclass
class _User:
    """One user's counts in one experiment: the randomisation unit of A/B, the one the
    user-level tests compare (a user's impressions are not independent of each other)."""

    arm: str | None = None  # ab: the user's arm (fixed by the hash); interleave: None
    impressions: int = 0
    clicks: dict[str, int] = field(default_factory=lambda: {"a": 0, "b": 0})  # credited clicks per arm
    wins: dict[str, int] = field(default_factory=lambda: {"a": 0, "b": 0, "tie": 0})  # interleave: per impression


@dataclass
class Tally:
    """Counts of one experiment: per arm impressions and impressions with at least one credited
    click / cart / purchase; for interleaving also wins by clicks (a tie includes no click)."""

    kind: str
    arms: dict[str, dict[str, Any]]  # "a"/"b" -> {"model", "bundle"}
    k: int
    impressions: dict[str, int] = field(default_factory=lambda: {"a": 0, "b": 0})
    hits: dict[str, dict[str, int]] = field(default_factory=lambda: {t: {"a": 0, "b": 0} for t in CREDITED})
    wins: dict[str, int] = field(default_factory=lambda: {"a": 0, "b": 0, "tie": 0})
    users: dict[str, _User] = field(default_factory=dict)
    first_ts: float = 0.0
    last_ts: float = 0.0


class Ledger:
    """Replays experiment-log records into per-experiment tallies (`apply`), following the file
    as it grows (`follow`). Claims are credited only to a known impression, by the user it was
    shown to, for an item it showed, once per event id."""

    def __init__(self, memory: int = MEMORY) -> None:
        self.tallies: dict[str, Tally] = {}
        self.unmatched = 0  # claims whose impression is unknown (or closed), user or item does not match
        self._open: OrderedDict[str, _Open] = OrderedDict()
        self._memory = memory
        self._offset = 0
        self._lock = threading.Lock()

    def follow(self, path: Path) -> None:
        """Apply the complete lines appended to `path` since the last call."""
        with self._lock:
            if not path.exists():
                return
            with open(path, "rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
            end = data.rfind(b"\n") + 1  # a line being written right now waits for the next call
            for line in data[:end].splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    log.warning("skipping a torn line in %s", path)
                    continue
                self.apply(rec)
            self._offset += end

    def apply(self, rec: dict[str, Any]) -> None:
        if rec.get("t") == "imp":
            self._impression(rec)
        elif rec.get("t") == "claim":
            self._claim(rec)

    def _impression(self, rec: dict[str, Any]) -> None:
        tally = self.tallies.get(rec["exp"])
        if tally is None:
            tally = self.tallies[rec["exp"]] = Tally(rec["kind"], rec["arms"], int(rec.get("k", 10)), first_ts=rec["ts"])
        tally.last_ts = rec["ts"]
        user = tally.users.setdefault(rec["user"], _User(rec.get("arm")))
        user.impressions += 1
        if rec["kind"] == "ab":
            tally.impressions[rec["arm"]] += 1
            arm_of = dict.fromkeys(rec["items"], rec["arm"])
        else:
            tally.impressions["a"] += 1
            tally.impressions["b"] += 1
            tally.wins["tie"] += 1  # until a click decides it
            user.wins["tie"] += 1
            arm_of = dict(zip(rec["items"], rec["teams"], strict=True))
        self._open[rec["id"]] = _Open(rec["exp"], rec["user"], arm_of)
        if len(self._open) > self._memory:
            self._open.popitem(last=False)

    def _claim(self, rec: dict[str, Any]) -> None:
        imp = self._open.get(rec["impression_id"])
        arm = imp.arm_of.get(rec["item_id"]) if imp else None
        if imp is None or arm is None or imp.user != rec["user"] or rec["event_type"] not in CREDITED:
            self.unmatched += 1
            return
        if rec["event_id"] in imp.claimed:
            return
        imp.claimed.add(rec["event_id"])
        tally = self.tallies[imp.exp]
        etype = rec["event_type"]
        if arm not in imp.hits.setdefault(etype, set()):
            imp.hits[etype].add(arm)
            tally.hits[etype][arm] += 1
        user = tally.users[imp.user]
        if etype == "click":
            user.clicks[arm] += 1
        if etype == "click" and tally.kind == "interleave":
            tally.wins[_winner(imp.clicks)] -= 1
            user.wins[_winner(imp.clicks)] -= 1
            imp.clicks[arm] += 1
            tally.wins[_winner(imp.clicks)] += 1
            user.wins[_winner(imp.clicks)] += 1

    def report(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            tally = self.tallies.get(name)
            return None if tally is None else report(name, tally)

    def reports(self) -> list[dict[str, Any]]:
        with self._lock:
            return [report(n, t) for n, t in sorted(self.tallies.items())]


def _winner(clicks: dict[str, int]) -> str:
    return "tie" if clicks["a"] == clicks["b"] else ("a" if clicks["a"] > clicks["b"] else "b")


# --- statistics (statsmodels / scipy; nothing hand-written) ------------------------------

def proportion_diff(hits_b: int, n_b: int, hits_a: int, n_a: int) -> dict[str, Any]:
    """Rate of b minus rate of a with its 95 % CI and two-sided p-value: the Agresti-Caffo test
    and its matching interval (statsmodels; well defined with zero counts), so the CI excludes 0
    iff p < 0.05."""
    import warnings

    from statsmodels.stats.proportion import confint_proportions_2indep, test_proportions_2indep

    if min(n_a, n_b) == 0:
        return {"diff": None, "ci95": None, "p_value": None}
    with warnings.catch_warnings():  # statsmodels also computes ratios, which divide by zero here
        warnings.simplefilter("ignore", RuntimeWarning)
        res = test_proportions_2indep(hits_b, n_b, hits_a, n_a, compare="diff", method="agresti-caffo")
        lo, hi = confint_proportions_2indep(hits_b, n_b, hits_a, n_a, compare="diff", method="agresti-caffo")
    return {"diff": hits_b / n_b - hits_a / n_a, "ci95": [float(lo), float(hi)], "p_value": float(res.pvalue)}


def win_test(wins_b: int, wins_a: int) -> dict[str, Any]:
    """Interleaving: share of decided impressions that b won, exact binomial test against 1/2
    (scipy), with its Clopper-Pearson 95 % CI; `delta` = that share mapped to [-1, 1]."""
    from scipy.stats import binomtest

    n = wins_a + wins_b
    if n == 0:
        return {"b_win_share": None, "ci95": None, "delta": None, "p_value": None}
    res = binomtest(wins_b, n, 0.5)
    ci = res.proportion_ci(0.95)
    return {"b_win_share": wins_b / n, "ci95": [float(ci.low), float(ci.high)], "delta": 2 * wins_b / n - 1,
            "p_value": float(res.pvalue)}


def mean_diff(values_b: Sequence[float], values_a: Sequence[float]) -> dict[str, Any]:
    """Mean of b minus mean of a with its 95 % CI and two-sided p-value: Welch's t-test (scipy;
    unequal variances), for a per-user metric such as clicks per user."""
    import math

    from scipy.stats import ttest_ind

    if min(len(values_a), len(values_b)) < 2:
        return {"diff": None, "ci95": None, "p_value": None}
    res = ttest_ind(values_b, values_a, equal_var=False)
    ci = res.confidence_interval(0.95)
    diff = sum(values_b) / len(values_b) - sum(values_a) / len(values_a)
    if math.isnan(res.pvalue):  # no variance in either arm (e.g. nobody clicked): nothing to test
        return {"diff": diff, "ci95": None, "p_value": None}
    return {"diff": diff, "ci95": [float(ci.low), float(ci.high)], "p_value": float(res.pvalue)}


def user_level(t: Tally) -> dict[str, Any]:
    """The test at the randomisation unit, the user. A/B: clicks per user, b - a, Welch's t-test.
    Interleaving: each user's preference is the arm that won more of their impressions (ties
    apart); exact binomial test of users preferring b against 1/2."""
    users = list(t.users.values())
    if t.kind == "ab":
        clicks = {arm: [u.clicks[arm] for u in users if u.arm == arm] for arm in ("a", "b")}
        test = {"metric": "credited clicks per user", "users": {a: len(v) for a, v in clicks.items()},
                "method": "Welch's t-test of clicks per user, b - a (scipy)", **mean_diff(clicks["b"], clicks["a"])}
        sign = test["diff"]
    else:
        prefs = {"a": 0, "b": 0, "tie": 0}
        for u in users:
            prefs[_winner(u.wins)] += 1
        test = {"metric": "users preferring each arm (more impressions won)", "preferences": prefs,
                "method": "binomial test of users preferring b among users with a preference (scipy)",
                **win_test(prefs["b"], prefs["a"])}
        sign = test["delta"]
    p = test["p_value"]
    test["winner"] = ("b" if sign > 0 else "a") if p is not None and p < 0.05 and sign else None
    return test


METRICS = {"click": "ctr", "cart": "cart_rate", "purchase": "purchase_rate"}


def report(name: str, t: Tally) -> dict[str, Any]:
    """Per arm: impressions, CTR@k (impressions with a credited click), add-to-cart and purchase
    rates; b - a for each with 95 % CI and p-value; interleaving adds the win test. The winner is
    the user-level test's (`user_level`)."""
    arms = {}
    for arm in ("a", "b"):
        n = t.impressions[arm]
        row: dict[str, Any] = {**t.arms[arm], "impressions": n}
        for etype, metric in METRICS.items():
            row[metric] = t.hits[etype][arm] / n if n else None
        arms[arm] = row
    tests = {METRICS[e]: proportion_diff(t.hits[e]["b"], t.impressions["b"], t.hits[e]["a"], t.impressions["a"])
             for e in CREDITED}
    out: dict[str, Any] = {
        "name": name, "kind": t.kind, "k": t.k, "users": len(t.users), "arms": arms,
        "user_level": user_level(t), "diff_b_minus_a": tests,
        "since": t.first_ts, "until": t.last_ts,
    }
    if t.kind == "interleave":
        # both arms are in every impression, so their per-arm rates are paired: the win test is the test
        out["wins"] = dict(t.wins)
        out["test"] = {"method": "binomial test of b's wins among impressions one arm won by clicks (scipy)",
                       **win_test(t.wins["b"], t.wins["a"])}
        out["diff_b_minus_a"] = {m: {**d, "p_value": None, "ci95": None} for m, d in tests.items()}
    else:
        out["test"] = {"method": "Agresti-Caffo two-proportion test of CTR@k, b - a (statsmodels)", **tests["ctr"]}
    p = out["test"]["p_value"]
    sign = out["test"].get("delta") if t.kind == "interleave" else out["test"]["diff"]
    # the verdict is the test at the randomisation unit: impressions of one user are not independent
    # (a returning shopper sees the same arm), and the impression-level A/B test named a winner in
    # 20 % of A/A replays with returning shoppers (docs/experiments.md); it stays beside, for reading
    out["impression_level_winner"] = ("b" if sign > 0 else "a") if p is not None and p < 0.05 and sign else None
    out["winner"] = out["user_level"]["winner"]
    return out


# --- the log and the runtime the routes call ---------------------------------------------

class ExperimentLog:
    """Append-only JSON lines shared by every server worker: each write() holds an exclusive
    `flock` on the file (O_APPEND alone does not make a write longer than PIPE_BUF atomic on
    every filesystem), and starts on a fresh line when a worker killed mid-write left a torn
    one, so the torn line stays one unreadable line (`Ledger.follow` skips it) instead of
    swallowing the next record. The file is never replaced, so the lock is on the file itself."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)  # read: the last byte
        self._dirty = False
        self._lock = threading.Lock()

    def write(self, records: list[dict[str, Any]], sync: bool) -> None:
        data = b"".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")).encode() + b"\n" for r in records)
        with self._lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                end = os.lseek(self._fd, 0, os.SEEK_END)
                if end > 0 and os.pread(self._fd, 1, end - 1) != b"\n":
                    data = b"\n" + data
                view = memoryview(data)
                while view:  # a regular file may take less than asked (a signal): write the rest
                    view = view[os.write(self._fd, view):]
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            if sync:
                os.fsync(self._fd)
            self._dirty = not sync

    def sync(self) -> None:
        with self._lock:
            if self._dirty:
                os.fsync(self._fd)
                self._dirty = False

    def close(self) -> None:
        self.sync()
        os.close(self._fd)


class Experiments:
    """What the routes call: `recommend` (an experiment answer, or the plain one), `claim`
    (credit events that name an impression) and `reports`. One per app."""

    def __init__(self, settings: ServeSettings, svc: RecService, seed: int | None = None,
                 bundles: dict[str, LoadedBundle] | None = None) -> None:
        self.settings, self.svc = settings, svc
        self.configs = list(settings.experiments)
        self.path = settings.experiment_log_path(svc.bundle.dataset)
        self.log = ExperimentLog(self.path) if self.configs else None
        self.ledger = Ledger()
        self._rng = random.Random(seed) if seed is not None else None
        self._rng_lock = threading.Lock()
        self._bundles = {} if bundles is None else bundles  # arm bundle path -> loaded (a caller may share them)
        for exp in self.configs:
            for arm in (exp.a, exp.b):
                if arm.bundle and arm.bundle not in self._bundles:
                    self._bundles[arm.bundle] = _load_arm_bundle(svc, arm.bundle)
        self._stop = threading.Event()
        self._syncer: threading.Thread | None = None
        if self.log is not None:
            self._syncer = threading.Thread(target=self._sync_loop, name="soutui-experiment-sync", daemon=True)
            self._syncer.start()

    def _sync_loop(self) -> None:
        while not self._stop.wait(1.0):
            if self.log is not None:
                self.log.sync()

    def _new_id(self) -> str:
        if self._rng is None:
            return secrets.token_hex(12)
        with self._rng_lock:  # seeded (the simulator): reproducible ids, hence coins
            return f"{self._rng.getrandbits(96):024x}"

    def recommend(self, user_id: str, k: int = 10, category: str | None = None,
                  exclude_purchased: bool | None = None, diverse: bool = False, model: str | None = None) -> dict[str, Any]:
        """The /v1/recommend answer. A request naming a model, a user in no experiment and a user
        without history (both arms would show trending) get the plain answer, with no impression."""
        exp = None if model or not self.configs else enrolled(self.configs, user_id)
        if exp is None:
            return self.svc.recommend(user_id, k, category, exclude_purchased, diverse, model)
        args = (user_id, k, category, exclude_purchased, diverse)
        if exp.kind == "ab":
            arm = ab_arm(exp, user_id)
            out = self._arm_list(exp, arm, *args)
            if out["model"] == "trending":
                return out
            return self._record(exp, out, [r["item_id"] for r in out["items"]], arm=arm)
        lists = {arm: self._arm_list(exp, arm, *args) for arm in ("a", "b")}
        if lists["a"]["model"] == "trending" and lists["b"]["model"] == "trending":
            return lists["a"]
        impression_id = self._new_id()
        rows = {r["item_id"]: r for arm in ("b", "a") for r in lists[arm]["items"]}
        items, teams = team_draft([r["item_id"] for r in lists["a"]["items"]],
                                  [r["item_id"] for r in lists["b"]["items"]], k, random.Random(impression_id))
        out = {**lists["a"], "model": "interleaved", "items": [{**rows[i], "arm": t} for i, t in zip(items, teams, strict=True)]}
        return self._record(exp, out, items, teams=teams, impression_id=impression_id)

    def _arm_list(self, exp: ExperimentConfig, arm: str, user_id: str, k: int, category: str | None,
                  exclude_purchased: bool | None, diverse: bool) -> dict[str, Any]:
        cfg: ArmConfig = exp.a if arm == "a" else exp.b
        bundle = self._bundles.get(cfg.bundle) if cfg.bundle else None
        return self.svc.recommend(user_id, k, category, exclude_purchased, diverse, cfg.model or None, bundle=bundle)

    def _record(self, exp: ExperimentConfig, out: dict[str, Any], items: list[str], *, arm: str | None = None,
                teams: list[str] | None = None, impression_id: str | None = None) -> dict[str, Any]:
        impression_id = impression_id or self._new_id()
        user = self.svc.privacy.user(out["user_id"])
        arms = {a: {"model": c.model or "(default)", "bundle": Path(c.bundle).name if c.bundle else ""}
                for a, c in (("a", exp.a), ("b", exp.b))}
        rec: dict[str, Any] = {"t": "imp", "id": impression_id, "exp": exp.name, "kind": exp.kind, "k": exp.k,
                               "arms": arms, "user": user, "items": items, "ts": round(time.time(), 3)}
        if arm is not None:
            rec["arm"] = arm
        else:
            rec["teams"] = teams
        assert self.log is not None
        self.log.write([rec], sync=False)
        out["experiment"] = {"name": exp.name, "kind": exp.kind, "impression_id": impression_id, "arm": arm}
        return out

    def claim(self, events: list[dict[str, Any]]) -> int:
        """Log a claim per event naming an impression (fsync'd: call before the events' 2xx);
        the ledger credits it when it matches. Returns how many claims were logged."""
        claims = [{"t": "claim", "impression_id": e["impression_id"], "event_id": str(e["event_id"]),
                   "event_type": e["event_type"], "item_id": e.get("item_id"),
                   "user": self.svc.privacy.user(str(e["user_id"])), "ts": round(time.time(), 3)}
                  for e in events if e.get("impression_id")]
        if claims:
            if self.log is None:  # no experiment configured: nothing to credit, keep no file
                return 0
            self.log.write(claims, sync=True)
        return len(claims)

    def reports(self) -> list[dict[str, Any]]:
        self.ledger.follow(self.path)
        return self.ledger.reports()

    def report(self, name: str) -> dict[str, Any] | None:
        self.ledger.follow(self.path)
        return self.ledger.report(name)

    def close(self) -> None:
        self._stop.set()
        if self.log is not None:
            self.log.close()


def _load_arm_bundle(svc: RecService, path: str) -> LoadedBundle:
    """Another bundle for an arm: same dataset as the served one, live state from the service."""
    from soutui.serving.bundle import BundleError, load_bundle

    b = load_bundle(Path(path))
    if b.dataset != svc.bundle.dataset:
        raise BundleError(f"experiment arm bundle {path} is for dataset {b.dataset!r}, the server serves "
                          f"{svc.bundle.dataset!r}")
    svc.adopt(b)
    return b


def report_from_log(path: Path, name: str | None = None) -> list[dict[str, Any]]:
    """Reports straight from an experiment log (no server needed): all, or the one named."""
    ledger = Ledger()
    ledger.follow(Path(path))
    if name is None:
        return ledger.reports()
    one = ledger.report(name)
    return [one] if one else []
