"""Server settings: one validated dataclass tree (unknown keys rejected), env overrides.

Built with `soutui.config.from_dict`, so a typo in a config file is an error at start,
not a silently ignored rule.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from soutui.config import ConfigError, home_dir
from soutui.serving.ann import AnnConfig


@dataclass
class RulesConfig:
    """Business rules applied to every list the server returns (see serving/rules.py)."""

    exclude_purchased: bool = True  # never recommend what the user already bought
    in_stock_only: bool = True  # drop items marked out of stock
    pinned: list[str] = field(default_factory=list)  # item ids shown first on recommend/trending
    boosted: list[str] = field(default_factory=list)  # item ids lifted by `boost` (score units, 0..1 scale)
    boost: float = 0.2
    max_per_category: int = 2  # diversity: at most this many items per category (when diverse=true)
    mmr_lambda: float = 0.7  # diversity: relevance/novelty trade-off for MMR over item vectors
    candidates: int = 200  # how many top-scored items rules and diversity choose from

    def __post_init__(self) -> None:
        if not 0.0 <= self.mmr_lambda <= 1.0:
            raise ConfigError(f"rules.mmr_lambda must be in [0, 1], got {self.mmr_lambda}")
        if self.max_per_category < 1:
            raise ConfigError("rules.max_per_category must be >= 1")
        if self.candidates < 10:
            raise ConfigError("rules.candidates must be >= 10")


@dataclass
class MonitoringConfig:
    """Windows and alert thresholds of the model monitor (see serving/monitoring.py, docs/monitoring.md).

    A threshold of 0 switches its alert off."""

    max_bundle_age_h: float = 168.0  # alert "stale_model" when the served bundle is older (hours)
    max_psi: float = 0.25  # alert "drift_*" when a PSI (event-type mix, item popularity) exceeds this
    max_new_item_share: float = 0.15  # alert "new_items" when more live events are on items unseen in training
    min_coverage: float = 0.01  # alert "low_coverage" when less of the catalogue was served in the window
    max_ingest_lag_s: float = 300.0  # alert "ingest_lag" when the median event-time-to-accept lag exceeds this
    coverage_window_s: int = 3600  # window of catalogue coverage and Gini of served items
    drift_window_s: int = 3600  # live window compared with the training window
    min_drift_events: int = 200  # judge drift only with at least this many live events in the window
    min_lists: int = 100  # judge coverage only with at least this many lists served in the window
    popularity_bins: int = 10  # item-popularity PSI bins (equal training-event mass) + one for new items
    history_points: int = 240  # points kept for the /admin plots
    history_interval_s: float = 30.0  # at most one plot point per this many seconds

    def __post_init__(self) -> None:
        for name in ("max_bundle_age_h", "max_psi", "max_new_item_share", "min_coverage", "max_ingest_lag_s",
                     "history_interval_s"):
            if getattr(self, name) < 0:
                raise ConfigError(f"monitoring.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("min_coverage", "max_new_item_share"):
            if getattr(self, name) > 1:
                raise ConfigError(f"monitoring.{name} is a share, in [0, 1], got {getattr(self, name)}")
        for name in ("coverage_window_s", "drift_window_s", "popularity_bins", "history_points"):
            if getattr(self, name) < 1:
                raise ConfigError(f"monitoring.{name} must be >= 1, got {getattr(self, name)}")

    def thresholds(self) -> dict[str, float]:
        return {"stale_model": self.max_bundle_age_h, "drift_event_type": self.max_psi,
                "drift_item_popularity": self.max_psi, "new_items": self.max_new_item_share,
                "low_coverage": self.min_coverage,
                "ingest_lag": self.max_ingest_lag_s}


@dataclass
class ArmConfig:
    """One side of an experiment: a model of the served bundle, or a model of another bundle."""

    model: str = ""  # model name; empty = the bundle's default recommender
    bundle: str = ""  # another bundle dir (same dataset); empty = the served bundle


@dataclass
class ExperimentConfig:
    """An online experiment on /v1/recommend (see serving/experiments.py and docs/experiments.md).

    `ab`: each enrolled user sees one arm, chosen by a salted hash of the user id.
    `interleave`: each enrolled user sees the team-draft interleaving of both arms' lists."""

    name: str
    kind: Literal["ab", "interleave"]
    a: ArmConfig
    b: ArmConfig
    traffic: float = 1.0  # share of users enrolled (experiments take disjoint slices of one hash)
    b_share: float = 0.5  # ab only: share of enrolled users who see arm b
    salt: str = ""  # ab assignment salt; empty = the experiment name (change it to re-shuffle users)
    k: int = 10  # the list length CTR@k refers to

    def __post_init__(self) -> None:
        if not self.name.strip() or len(self.name) > 64:
            raise ConfigError("experiments: a name needs 1..64 characters")
        if not 0.0 < self.traffic <= 1.0:
            raise ConfigError(f"experiment {self.name}: traffic must be in (0, 1], got {self.traffic}")
        if not 0.0 < self.b_share < 1.0:
            raise ConfigError(f"experiment {self.name}: b_share must be in (0, 1), got {self.b_share}")
        if not 1 <= self.k <= 100:
            raise ConfigError(f"experiment {self.name}: k must be 1..100")


@dataclass
class ServeSettings:
    """Everything `soutui serve` needs; defaults are safe for a loopback demo."""

    host: str = "127.0.0.1"
    port: int = 8000
    bundle: str = ""  # bundle dir; empty = newest under $SOUTUI_HOME/bundles
    bundles_dir: str = ""  # where to look for bundles; empty = $SOUTUI_HOME/bundles
    store: str = ""  # store URL; empty = the default DuckDB store
    api_key: str = ""  # required for write endpoints (or set SOUTUI_API_KEY)
    insecure_dev: bool = False  # allow write endpoints without a key (loopback development only)
    read_key: str = ""  # key for read and admin endpoints (or set SOUTUI_READ_KEY); the write key reads too
    demo: bool = False  # explicit demo mode: read and admin endpoints open without a key (`soutui demo`)
    pseudonym_key_file: str = ""  # key for live user ids; empty = $SOUTUI_PSEUDONYM_KEY (see docs/privacy.md)
    event_log: str = ""  # fsync'd append-only log; empty = $SOUTUI_HOME/events/<dataset>.jsonl
    recommender: str = ""  # override the bundle's default recommender
    search_method: str = ""  # method when a request names none; empty = the one the index chose on validation
    max_history: int = 50  # most recent events a model reads per user
    flush_interval_s: float = 2.0  # how often accepted events are copied from the log into the store
    watch_interval_s: float = 0.0  # > 0: poll bundles_dir and load a newer bundle automatically
    trending_days: int = 7
    # fallback for users without history: "live" windowed event counts, "bundle" the bundle's popularity
    # model, "auto" = "bundle" when the bundle is differentially private (live counts are not), else "live"
    trending_source: Literal["auto", "live", "bundle"] = "auto"
    search_cache_size: int = 4096  # LRU of finished answers to searches without user_id (0 = off)
    workers: int = 1  # worker processes; > 1 needs a postgresql:// store (shared state, see docs/production.md)
    rules: RulesConfig = field(default_factory=RulesConfig)
    ann: AnnConfig = field(default_factory=AnnConfig)  # candidate retrieval for large catalogues (serving/ann.py)
    monitoring: MonitoringConfig = field(default_factory=MonitoringConfig)
    experiments: list[ExperimentConfig] = field(default_factory=list)
    experiment_log: str = ""  # impressions + credited events; empty = $SOUTUI_HOME/events/<dataset>.experiments.jsonl

    def __post_init__(self) -> None:
        names = [e.name for e in self.experiments]
        if len(set(names)) != len(names):
            raise ConfigError(f"experiments: names must be unique, got {names}")
        if sum(e.traffic for e in self.experiments) > 1.0 + 1e-9:
            raise ConfigError("experiments: traffic shares add up to more than 1 (a user is in at most one experiment)")
        if not 0 < self.port < 65536:
            raise ConfigError(f"port must be 1..65535, got {self.port}")
        if self.max_history < 1:
            raise ConfigError("max_history must be >= 1")
        if self.workers < 1:
            raise ConfigError(f"workers must be >= 1, got {self.workers}")
        if self.workers > 1 and self.store.split("://", 1)[0] not in ("postgresql", "postgres"):
            raise ConfigError(
                f"--workers {self.workers} needs a store that many processes write: pass --store "
                "postgresql://user@host/db (the embedded DuckDB store allows one writer; see docs/production.md)"
            )
        if not self.api_key:
            self.api_key = os.environ.get("SOUTUI_API_KEY", "")
        if not self.read_key:
            self.read_key = os.environ.get("SOUTUI_READ_KEY", "")

    @property
    def writes_enabled(self) -> bool:
        return bool(self.api_key) or self.insecure_dev

    def bundles_path(self) -> Path:
        return Path(self.bundles_dir) if self.bundles_dir else home_dir() / "bundles"

    def event_log_path(self, dataset: str) -> Path:
        return Path(self.event_log) if self.event_log else home_dir() / "events" / f"{dataset}.jsonl"

    def experiment_log_path(self, dataset: str) -> Path:
        if self.experiment_log:
            return Path(self.experiment_log)
        return home_dir() / "events" / f"{dataset}.experiments.jsonl"
