"""The serving core: the live bundle, users' histories and the four list operations.

Routes stay thin and call this. A request reads `self.bundle` once, so a reload that
swaps the reference mid-request never mixes two bundles in one answer.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from soutui.data.store import open_store
from soutui.serving import ann, candidates, explain, rules
from soutui.serving.bundle import BundleError, LoadedBundle, find_bundles, load_bundle, newest_bundle
from soutui.serving.events import EventLog, Histories, StoreSync, import_stamp, now_s
from soutui.serving.monitoring import Monitor
from soutui.serving.privacy import LivePrivacy, redact_paths
from soutui.serving.settings import ServeSettings
from soutui.serving.shared_state import SharedState, channel_for, is_postgres, records_from

log = logging.getLogger(__name__)


class NotFound(LookupError):
    """A requested item (or similar) does not exist; routes turn this into a 404."""


class Unavailable(RuntimeError):
    """The bundle lacks what the request needs (e.g. a search index); routes return 503."""


class ResultCache:
    """A small LRU of finished answers. Only for answers that depend on nothing live (e.g. a
    search without user_id depends on the bundle and the parameters alone), so a hit returns
    exactly what recomputing would; the key carries the bundle version, so a reload never
    serves an old bundle's answer."""

    def __init__(self, size: int) -> None:
        self.size, self.hits, self.misses = size, 0, 0
        self._d: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> dict[str, Any] | None:
        with self._lock:
            out = self._d.get(key)
            if out is None:
                self.misses += 1
            else:
                self.hits += 1
                self._d.move_to_end(key)
            return out

    def put(self, key: tuple[Any, ...], value: dict[str, Any]) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._d[key] = value
            if len(self._d) > self.size:
                self._d.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._d.clear()

    def stats(self) -> dict[str, int]:
        return {"entries": len(self._d), "hits": self.hits, "misses": self.misses}


class RecService:
    """Everything a request needs, owned by one app instance."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.bundle, self.skipped_bundles = load_serving_bundle(settings)
        self.histories = Histories(max_len=settings.max_history, trending_days=settings.trending_days)
        self.log = EventLog(settings.event_log_path(self.bundle.dataset))
        self.sync = StoreSync(settings.store or None, self.bundle.dataset, settings.flush_interval_s, self.log)
        self.store_status = "not loaded"
        self.privacy = LivePrivacy.for_dataset(None, settings.pseudonym_key_file)
        self._forgets_seen: set[tuple[str, str]] = set()  # store forget requests already honoured here
        self.sync.on_check = self._store_forgets
        self.search_cache = ResultCache(settings.search_cache_size)
        self.monitor = Monitor(settings.monitoring)  # drift, coverage, ingest lag, bundle age (/metrics, /admin)
        self.monitor.set_reference(self.bundle, None)
        self.on_reload: Callable[[str], None] | None = None  # the app's metrics follow reloads other workers ask for
        # workers on a PostgreSQL store share live state; listen before loading, so nothing falls in between
        self.shared = SharedState(settings.store, channel_for(self.bundle.dataset)) if is_postgres(settings.store) else None
        if self.shared:
            self.shared.start()
        self._load_events()
        self._refresh_bundle_state(self.bundle)
        _warm_up(self.bundle)
        self.reload_lock = threading.Lock()
        self.started = time.time()
        self.sync.start()
        if self.shared:
            self.shared.open_gate(self._on_shared)
            self.shared.publish("hello")  # running workers answer with their bundle (a reload may have moved them on)

    # --- startup ---------------------------------------------------------------
    def _load_events(self) -> None:
        """Store events, then the log's (replayed into the store so nothing acked is lost)."""
        logged = self.log.replay()
        try:
            store = open_store(self.settings.store or None)
        except Exception as exc:
            self.store_status = f"store unavailable ({exc}); serving from the event log only"
            log.warning(self.store_status)
            self.histories.add_records(logged)
            return
        try:
            if self.bundle.dataset.replace("-", "_") in store.datasets():
                self.privacy = LivePrivacy.for_dataset(store.meta(self.bundle.dataset), self.settings.pseudonym_key_file)
                self.sync.imported = import_stamp(store, self.bundle.dataset)
                gone = self._store_forgets(store)  # forgotten while the server was down: not replayed
                logged = [r for r in logged if str(r.get("user_id")) not in gone]
                if logged:
                    import pandas as pd

                    store.append_events(self.bundle.dataset, pd.DataFrame(logged))
                events = store.read(self.bundle.dataset, "events")
                self.monitor.set_reference(self.bundle, events)  # the training window: events up to the bundle's build
                self.log.seen.update(events["event_id"].astype(str).tolist())
                self.histories.load_frame(events)
                self.store_status = f"loaded {len(events)} events from the store"
            else:
                self.store_status = (
                    f"dataset {self.bundle.dataset!r} is not in the store; histories come from the event log only "
                    f"(import it with `soutui data import {self.bundle.dataset}`)"
                )
                log.warning(self.store_status)
                self.histories.add_records(logged)
        finally:
            store.close()

    def adopt(self, b: LoadedBundle) -> None:
        """Give another loaded bundle (an experiment arm) this server's live state and rules."""
        self._refresh_bundle_state(b)

    def _refresh_bundle_state(self, b: LoadedBundle) -> None:
        cat = b.catalogue
        if not b.retrievers:  # large catalogues: an ANN index per model that splits its score
            b.retrievers = ann.retrievers(b.models, self.settings.ann, len(cat))
        b.trending = self._trending(b)
        b.any_out_of_stock = not bool(cat.in_stock.all())
        b.pinned = [cat.index[i] for i in self.settings.rules.pinned if i in cat.index]
        b.boosted = [cat.index[i] for i in self.settings.rules.boosted if i in cat.index]

    def private_trending(self, b: LoadedBundle) -> bool:
        """Whether the trending fallback serves the bundle's popularity release instead of live counts:
        `trending_source` "bundle", or "auto" with a DP bundle (its manifest states a composed privacy
        total). Live counts are user data outside the bundle's accounting (docs/privacy.md)."""
        source = self.settings.trending_source
        return source == "bundle" or (source == "auto" and "total" in b.manifest.get("privacy", {}))

    def _trending(self, b: LoadedBundle) -> np.ndarray:
        """The trending scores over `b`'s catalogue: live windowed counts, or the bundle's popularity
        release (none in the bundle: all zero, i.e. catalogue order, which reveals nothing)."""
        n = len(b.catalogue)
        if not self.private_trending(b):
            return self.histories.trending_vector(b.catalogue.index, n)
        if "popularity" not in b.models:
            return np.zeros(n, np.float64)
        return np.asarray(b.models["popularity"].score([np.zeros(0, np.int64)])[0], np.float64).copy()

    # --- reads -------------------------------------------------------------------
    def item(self, item_id: str) -> dict[str, Any]:
        b = self.bundle
        i = b.catalogue.index.get(item_id)
        if i is None:
            raise NotFound(f"item {item_id!r} is not in the catalogue")
        return b.catalogue.item_json(i)

    def demo_users(self, n: int = 5, min_history: int = 5) -> list[str]:
        """Users with a real history (for the storefront's "demo user" button)."""
        out = []
        for user, dq in self.histories.recent.items():
            if len(dq) >= min_history:
                out.append(user)
                if len(out) >= n:
                    break
        return out

    def _user_history(self, b: LoadedBundle, user_id: str) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
        """(item indices, unix seconds, event types, purchased indices) of the user's recent events
        in this bundle's catalogue, oldest first, at most `max_history` of them."""
        recent, bought = self.histories.user(user_id)
        idx = b.catalogue.index
        known = [(idx[i], t, ts) for i, t, ts in recent if i in idx][-self.settings.max_history :]
        hist = np.fromiter((e[0] for e in known), np.int64, len(known))
        times = np.fromiter((e[2] for e in known), np.int64, len(known))
        purchased = np.fromiter((idx[i] for i in bought if i in idx), np.int64)
        return hist, times, [e[1] for e in known], purchased

    def score_history(self, b: LoadedBundle, name: str, hist: np.ndarray, times: np.ndarray) -> np.ndarray:
        """The served scores for one history and its event times: the exact call the offline
        protocol makes (`score(histories, timestamps)`), so served = measured. A catalogue above
        `ann.min_items` scores ANN candidates exactly and the rest -inf (serving/ann.py, tested
        for recall against this exact path)."""
        retriever = b.retrievers.get(name)
        if retriever is not None:
            return retriever.scores(hist, times)
        return b.models[name].score([hist], [times])[0]

    def recommend(
        self,
        user_id: str,
        k: int = 10,
        category: str | None = None,
        exclude_purchased: bool | None = None,
        diverse: bool = False,
        model: str | None = None,
        bundle: LoadedBundle | None = None,
        explain_results: bool = False,
        explain_method: str = "occlusion",
    ) -> dict[str, Any]:
        b = bundle or self.bundle  # another bundle: an experiment arm (serving/experiments.py)
        name = model or b.default
        if name not in b.models:
            raise NotFound(f"model {name!r} is not in this bundle; it has {sorted(b.models)}")
        hist, times, types, purchased = self._user_history(b, self.privacy.read_user(user_id, self.histories.recent))
        excl = self.settings.rules.exclude_purchased if exclude_purchased is None else exclude_purchased
        exclude = purchased if excl else None
        picked = None
        if len(hist) and name in b.retrievers:  # the rules on the ANN candidates alone (serving/candidates.py)
            picked = candidates.select_candidates(
                b.retrievers[name], hist, times, k, self.settings.rules, b.catalogue, b.item_vectors,
                category=category, exclude=exclude, pinned=b.pinned, boosted=b.boosted, diverse=diverse,
            )  # None: the filters left fewer than k candidates, so the catalogue is scored in full below
        if picked is None:
            allowed = rules.allowed_mask(b.catalogue, self.settings.rules, category, exclude)
            scores = b.models[name].score([hist], [times])[0] if len(hist) else b.trending
            picked = rules.select(
                scores, allowed, k, self.settings.rules, b.catalogue, b.item_vectors,
                pinned=b.pinned, boosted=b.boosted, diverse=diverse,
            )
        source = name if len(hist) else "trending"
        items = [p[0] for p in picked]
        if len(hist):
            affinity = explain.pair_similarity(b.models[name], b.item_vectors if name == b.default else None)
            reasons = explain.because(items, hist, types, b.catalogue, affinity)
        else:
            reasons = [explain.trending_reason(category)] * len(items)
        notes = None
        if explain_results:  # attributions in the model's own terms; the reason from the strongest
            notes = (
                explain.for_history(b.models[name], hist, times, types, items, b.catalogue, explain_method)
                if len(hist)
                else [explain.plain(r, "热门推荐") for r in reasons]
            )
        return {
            "user_id": user_id,
            "model": source,
            "bundle": b.version,
            "history_length": int(len(hist)),
            "items": self._results(b, picked, reasons, notes),
        }

    def trending(self, k: int = 10, category: str | None = None, diverse: bool = False) -> dict[str, Any]:
        b = self.bundle
        allowed = rules.allowed_mask(b.catalogue, self.settings.rules, category)
        picked = rules.select(
            b.trending, allowed, k, self.settings.rules, b.catalogue, b.item_vectors,
            pinned=b.pinned, boosted=b.boosted, diverse=diverse,
        )
        reasons = [explain.trending_reason(category)] * len(picked)
        return {"bundle": b.version, "items": self._results(b, picked, reasons)}

    def similar(
        self, item_id: str, k: int = 10, model: str | None = None, explain_results: bool = False
    ) -> dict[str, Any]:
        b = self.bundle
        i = b.catalogue.index.get(item_id)
        if i is None:
            raise NotFound(f"item {item_id!r} is not in the catalogue")
        name = model or b.default
        if name not in b.models:
            raise NotFound(f"model {name!r} is not in this bundle; it has {sorted(b.models)}")
        allowed = rules.allowed_mask(b.catalogue, self.settings.rules, None, np.array([i], np.int64))
        m = b.models[name]
        if b.item_vectors is not None and name == b.default:
            scores = b.item_vectors @ b.item_vectors[i]
        else:  # the model's own notion of similarity, over a generous candidate pool
            cand, cand_scores = m.similar_items(i, self.settings.rules.candidates)
            scores = np.full(len(b.catalogue), -np.inf)
            scores[cand] = cand_scores
        picked = rules.select(scores, allowed, k, self.settings.rules, b.catalogue)
        reasons = [explain.similar_reason(b.catalogue, i)] * len(picked)
        notes = explain.for_similar(m, i, [p[0] for p in picked], b.catalogue) if explain_results else None
        return {"item_id": item_id, "model": name, "bundle": b.version, "items": self._results(b, picked, reasons, notes)}

    def search(
        self,
        q: str,
        k: int = 10,
        user_id: str | None = None,
        category: str | None = None,
        brand: str | None = None,
        min_price: float | None = None,
        max_price: float | None = None,
        in_stock: bool | None = None,
        sort: str = "relevance",
        method: str | None = None,
        explain_results: bool = False,
    ) -> dict[str, Any]:
        b = self.bundle
        if b.search is None:
            raise Unavailable(f"bundle {b.version} has no search index; rebuild it with search enabled")
        from soutui.search.engine import SearchFilters

        key = None if user_id else (b.version, q, k, category, brand, min_price, max_price, in_stock, sort, method, explain_results)
        cached = self.search_cache.get(key) if key else None
        if cached is not None:
            return cached
        # in-stock rule: drop items known to be out of stock, keep unknown stock (many catalogues lack it)
        drop_out = self.settings.rules.in_stock_only and in_stock is None and b.any_out_of_stock
        filters = SearchFilters(category=category, brand=brand, min_price=min_price, max_price=max_price, in_stock=in_stock)
        history = None
        if user_id:
            recent, _ = self.histories.user(self.privacy.read_user(user_id, self.histories.recent))
            history = [e[0] for e in recent] or None
        how = method or self.settings.search_method or b.search.default_method
        hits, facets = b.search.search(
            q, k=2 * k if drop_out else k, filters=filters, sort=sort, method=how, user_history=history
        )
        if drop_out:
            hits = [h for h in hits if h.in_stock is not False][:k]
        items = []
        for h in hits:
            i = b.catalogue.index.get(str(h.item_id))
            row = b.catalogue.item_json(i) if i is not None else {
                "item_id": str(h.item_id), "title": h.title, "category": h.category, "brand": h.brand,
                "price": h.price, "in_stock": h.in_stock,
            }
            row.update(score=round(float(h.score), 6), reason=explain.search_reason(q, getattr(h, "reason", None)), pinned=False)
            items.append(row)
        if explain_results:  # per-feature shares of the relevance score (TreeSHAP for the learned ranker)
            rows = b.search.explain(q, [str(h.item_id) for h in hits], how, filters)
            for row, note in zip(items, explain.for_search(rows, how), strict=True):
                row["explanation"] = note
        out = {"query": q, "bundle": b.version, "items": items, "facets": _plain(facets)}
        if key:
            self.search_cache.put(key, out)
        return out

    def _results(
        self, b: LoadedBundle, picked: list[tuple[int, float, bool]], reasons: list[str],
        notes: list[dict[str, Any]] | None = None,
    ) -> list[dict[str, Any]]:  # fmt: skip
        out = []
        for n, ((i, score, pinned), reason) in enumerate(zip(picked, reasons, strict=True)):
            row = b.catalogue.item_json(i)
            row["score"] = round(score, 6) if np.isfinite(score) else 0.0
            row["reason"] = explain.PINNED_REASON if pinned else reason
            row["pinned"] = pinned
            if notes is not None:  # explain=true: the reason is the one written from the strongest attribution
                row["explanation"] = explain.plain(explain.PINNED_REASON, "店铺精选") if pinned else notes[n]
                row["reason"] = row["explanation"]["reason"]
            out.append(row)
        return out

    # --- writes ------------------------------------------------------------------
    def ingest(self, records: list[dict[str, Any]]) -> tuple[int, int]:
        """Durably log new events, then update live state; returns (accepted, duplicates).

        Ids are pseudonymised and PII masked first, so neither the log, the store nor the
        histories ever hold the raw values."""
        records = [self.privacy.event(r) for r in records]
        for r in records:
            r["ts"] = r.get("ts") or now_s()
        fresh = self.log.append(records)  # fsync'd before we return, hence before the ack
        self._apply_live(fresh)
        self.sync.add(fresh)
        if self.shared and fresh:
            self.shared.publish_events(fresh)  # before the ack: every worker sees it within ms
        return len(fresh), len(records) - len(fresh)

    def _apply_live(self, fresh: list[dict[str, Any]]) -> None:
        self.histories.add_records(fresh)
        self.monitor.ingested(fresh)
        b = self.bundle
        if self.private_trending(b):  # the bundle's private release: live counts are not added
            return
        for r in fresh:
            i = b.catalogue.index.get(str(r.get("item_id")))
            if i is not None and r.get("event_type") in ("view", "click", "cart", "purchase"):
                b.trending[i] += 1.0

    def _on_shared(self, msg: dict[str, Any]) -> None:
        """Apply what another worker announced (see serving/shared_state.py)."""
        kind = msg.get("k")
        if kind == "events":  # logged (and synced to the store) by the worker that accepted them
            self._apply_live(self.log.remember(records_from(msg.get("r") or [])))
        elif kind == "reload" or (kind == "bundle" and self.shared and msg.get("to") == self.shared.worker):
            self._serve_as_peer(msg)
        elif kind == "hello" and self.shared:  # a worker (re)started on the configured bundle: tell it ours
            self.shared.publish("bundle", to=msg.get("w"), path=str(self.bundle.path), bundle=self.bundle.version)
        elif kind == "forget":
            with self.sync.io_lock:
                self._forget_live(str(msg["u"]))

    def _serve_as_peer(self, msg: dict[str, Any]) -> None:
        """Load the bundle another worker serves (after its reload, or when this worker started)."""
        if msg.get("bundle") == self.bundle.version:
            return
        try:
            self.reload(str(msg["path"]), announce=False)
        except (BundleError, OSError, ValueError) as exc:
            log.warning("bundle of another worker refused, still serving %s: %s", self.bundle.version, exc)
            return
        if self.on_reload:
            self.on_reload(self.bundle.version)

    def reload(self, path: str | None = None, announce: bool = True) -> dict[str, Any]:
        """Load and verify a bundle, then swap it in; on any error the current one keeps serving.
        With shared state, the other workers are told to load the same bundle (`announce`)."""
        out = self._reload(path)
        if announce and self.shared:
            self.shared.publish("reload", path=str(self.bundle.path), bundle=self.bundle.version)
        return out

    def _reload(self, path: str | None) -> dict[str, Any]:
        with self.reload_lock:
            target = Path(path) if path else newest_bundle(self.settings.bundles_path())
            new = load_bundle(target, self.settings.recommender if self.settings.recommender else "")
            if new.dataset != self.bundle.dataset:
                raise BundleError(
                    f"bundle {target} is for dataset {new.dataset!r} but this server serves {self.bundle.dataset!r}; "
                    "start a separate server for it"
                )
            self._refresh_bundle_state(new)
            _warm_up(new)
            old, self.bundle = self.bundle, new
            self.monitor.bundle_changed(new)
            previous = old.version
            log.info("bundle %s replaced %s", new.version, previous)
            if gc.get_freeze_count():  # `soutui serve` froze the startup heap: let the old bundle go, freeze the new
                del old
                gc.unfreeze()
                gc.collect()
                gc.freeze()
            return {"bundle": new.version, "previous": previous}

    def newer_bundle(self) -> Path | None:
        found = find_bundles(self.settings.bundles_path())
        if found and found[-1].resolve() != self.bundle.path:
            created = str(self.bundle.manifest.get("created", ""))
            from soutui.serving.bundle import read_manifest

            if str(read_manifest(found[-1]).get("created", "")) > created:
                return found[-1]
        return None

    def forget(self, raw_user_id: str) -> dict[str, Any]:
        """Delete one user now: the event log (compacted), the store (with an audit row and a
        pending-rebuild row), the live histories, trending counts and the search cache.

        Models and indexes of the served bundle hold no user ids; what they learned from the
        user leaves with the next bundle built (see docs/privacy.md)."""
        stored = self.privacy.user(raw_user_id)
        counts = {"events": 0, "quarantine": 0, "users": 0}
        with self.sync.io_lock:  # no store sync may re-insert the user's events meanwhile
            self.sync.drop_user(stored)
            store = open_store(self.settings.store or None)  # busy: StoreError, nothing deleted yet
            try:
                if self.bundle.dataset.replace("-", "_") in store.datasets():
                    counts = store.forget_user(self.bundle.dataset, stored, also=(raw_user_id.strip(),))
            finally:
                store.close()
            logged, live = self._forget_live(stored)
        if self.shared:
            self.shared.publish("forget", u=stored)
        log.info("forgot one user: %d store event(s), %d logged, %d live", counts["events"], logged, live)
        return {"deleted": {**counts, "event_log": logged, "live_history": live}, "pending_rebuild": True}

    def _forget_live(self, stored: str) -> tuple[int, int]:
        """Drop a (stored) user from what this server holds; returns (logged events, live events)."""
        self.sync.drop_user(stored)
        logged = len(self.log.drop_user(stored))
        live = self.histories.forget(stored)
        b = self.bundle
        b.trending = self._trending(b)
        self.search_cache.clear()
        return logged, live

    def _store_forgets(self, store: Any) -> set[str]:
        """Users forgotten in the store by another process (`soutui data forget`): forget them here
        too, so neither this server's memory nor a replay of its log brings them back. The store
        keeps only a salted hash per request, so each user this server knows is hashed with it."""
        rows = [r for r in store.pending_forget(self.bundle.dataset)
                if (r["salt"], r["subject_hash"]) not in self._forgets_seen]  # fmt: skip
        if not rows:
            return set()
        users = set(self.histories.recent) | {str(r.get("user_id")) for r in self.log.replay_all()}
        gone: set[str] = set()
        for r in rows:
            self._forgets_seen.add((r["salt"], r["subject_hash"]))
            salt = r["salt"]
            gone |= {u for u in users if hashlib.sha256((salt + u).encode()).hexdigest() == r["subject_hash"]}
        for user in gone:
            self._forget_live(user)
        return gone

    def close(self) -> None:
        if self.shared:
            self.shared.close()
        self.sync.stop()
        self.log.close()


def load_serving_bundle(settings: ServeSettings) -> tuple[LoadedBundle, list[str]]:
    """The bundle to serve and the newer ones skipped (each with its reason).

    A named bundle is loaded or refused. Otherwise the newest *valid* bundle under
    bundles_dir is served: one corrupt newer bundle must not keep the shop offline."""
    if settings.bundle:
        return load_bundle(Path(settings.bundle), settings.recommender), []
    found = find_bundles(settings.bundles_path())
    if not found:
        newest_bundle(settings.bundles_path())  # raises, saying how to build one
    skipped: list[str] = []
    for path in reversed(found):
        try:
            bundle = load_bundle(path, settings.recommender)
        except BundleError as exc:
            skipped.append(f"{path.name}: {redact_paths(str(exc))}")
            log.warning("skipping bundle %s", skipped[-1])
            continue
        if skipped:
            log.warning("serving %s, the newest valid bundle (%d newer skipped)", bundle.version, len(skipped))
        return bundle, skipped
    raise BundleError(f"no valid bundle under {settings.bundles_path()}: " + "; ".join(skipped))


def _warm_up(b: LoadedBundle) -> None:
    """Run each model and the search engine once before serving, so lazy set-up (ONNX
    sessions, the int8 query encoder) is not paid by the first shopper. Failures only log:
    the request path reports them properly."""
    for name, model in b.models.items():
        try:
            model.score([np.zeros(1, np.int64)])
        except Exception as exc:
            log.warning("warm-up of model %s failed: %s", name, exc)
    if b.search is not None:
        try:
            b.search.warm_up()  # every query encoder, English and Chinese
        except Exception as exc:
            log.warning("warm-up of search failed: %s", exc)


def _plain(obj: Any) -> Any:
    """Facets as JSON-ready dicts/lists whatever container the search engine uses."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if hasattr(obj, "__dataclass_fields__"):
        import dataclasses

        return _plain(dataclasses.asdict(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    return obj
