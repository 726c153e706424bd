"""The learned ranker: LightGBM lambdarank over `soutui.search.features`, trained on graded labels.

Labels are integer grades; `label_gain` maps each grade to 2^gain - 1 so the
training objective optimises the same exponential-gain NDCG that evaluation reports.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from soutui.search.features import FEATURES

GRADES_PER_UNIT = 3  # Home Depot labels are means of 3 ratings: gains are multiples of 1/3


def gain_to_grade(gain: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(gain, np.float64) * GRADES_PER_UNIT), 0, None).astype(np.int32)


# what each feature means, in words a shopper or a merchant can read (explanations, dashboard)
FEATURE_LABELS: dict[str, str] = {
    "bm25_title": "keyword match in the title",
    "bm25_text": "keyword match in the description",
    "bm25_title_rel": "title match vs the best candidate",
    "kw_rank": "keyword search rank",
    "cos_minilm": "meaning match (MiniLM)",
    "cos_minilm_rel": "meaning match vs the best (MiniLM)",
    "rank_minilm": "semantic search rank (MiniLM)",
    "cos_use": "meaning match (multilingual USE)",
    "cos_use_rel": "meaning match vs the best (USE)",
    "rank_use": "semantic search rank (USE)",
    "rrf": "combined retrieval rank",
    "q_coverage": "query words found in the title",
    "q_coverage_text": "query words found in the text",
    "q_idf_coverage": "rare query words found in the title",
    "title_coverage": "share of the title the query covers",
    "exact_phrase": "exact phrase in the title",
    "last_token": "last query word in the title",
    "first_token": "first query word in the title",
    "bigram_frac": "word pairs in the title",
    "numeric_match": "numbers (sizes, models) match",
    "size_match": "sizes (2 x 4, 16 gal) match",
    "trigram_jaccard": "spelling similarity",
    "n_query_tokens": "query length",
    "title_len": "title length",
    "n_fixes": "spelling corrections",
    "brand_match": "brand named in the query",
    "category_match": "category named in the query",
    "log_price": "price",
    "log_popularity": "popularity",
}


def feature_label(name: str) -> str:
    return FEATURE_LABELS.get(name, name.replace("_", " "))


@dataclass
class LTRParams:
    num_leaves: int = 31
    learning_rate: float = 0.05
    n_estimators: int = 600
    min_data_in_leaf: int = 50
    feature_fraction: float = 0.8
    early_stopping_rounds: int = 50
    eval_at: int = 10
    seed: int = 0


def _lgb_params(p: LTRParams, max_grade: int) -> dict[str, object]:
    return {
        "objective": "lambdarank",
        "metric": "ndcg",
        "ndcg_eval_at": [p.eval_at],
        "label_gain": [2 ** (g / GRADES_PER_UNIT) - 1 for g in range(max_grade + 1)],
        "num_leaves": p.num_leaves,
        "learning_rate": p.learning_rate,
        "min_data_in_leaf": p.min_data_in_leaf,
        "feature_fraction": p.feature_fraction,
        "seed": p.seed,
        "num_threads": 1,
        "verbose": -1,
        "deterministic": True,
        "lambdarank_truncation_level": 20,
    }


class LTRRanker:
    def __init__(self, booster: lgb.Booster | None = None) -> None:
        self.booster_ = booster

    def fit(
        self,
        x: np.ndarray,
        gain: np.ndarray,
        groups: list[int],
        x_val: np.ndarray,
        gain_val: np.ndarray,
        groups_val: list[int],
        params: LTRParams | None = None,
    ) -> LTRRanker:
        """Lambdarank with early stopping on the validation queries (carved from training queries)."""
        p = params or LTRParams()
        y, y_val = gain_to_grade(gain), gain_to_grade(gain_val)
        train = lgb.Dataset(x, y, group=groups, feature_name=list(FEATURES), free_raw_data=False)
        valid = lgb.Dataset(x_val, y_val, group=groups_val, reference=train)
        self.booster_ = lgb.train(
            _lgb_params(p, int(max(y.max(initial=0), y_val.max(initial=0)))),
            train,
            num_boost_round=p.n_estimators,
            valid_sets=[valid],
            callbacks=[lgb.early_stopping(p.early_stopping_rounds, verbose=False)],
        )
        return self

    def fit_rounds(
        self, x: np.ndarray, gain: np.ndarray, groups: list[int], params: LTRParams, n_trees: int
    ) -> LTRRanker:
        """Lambdarank with a fixed number of trees (chosen beforehand on validation)."""
        y = gain_to_grade(gain)
        train = lgb.Dataset(x, y, group=groups, feature_name=list(FEATURES), free_raw_data=False)
        self.booster_ = lgb.train(_lgb_params(params, int(y.max(initial=0))), train, num_boost_round=n_trees)
        return self

    @property
    def n_trees(self) -> int:
        if self.booster_ is None:
            return 0
        return int(self.booster_.best_iteration or self.booster_.current_iteration())

    def predict(self, x: np.ndarray) -> np.ndarray:
        if self.booster_ is None:
            raise ValueError("the ranker is not trained; call fit() or load a trained model")
        return np.asarray(self.booster_.predict(x, num_threads=1), np.float64)

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """(n, len(FEATURES) + 1) TreeSHAP contributions (LightGBM `pred_contrib`): column f is
        feature f's share of each row's score, the last column the model's expected score;
        each row sums to `predict(x)`."""
        if self.booster_ is None:
            raise ValueError("the ranker is not trained; call fit() or load a trained model")
        return np.asarray(self.booster_.predict(x, num_threads=1, pred_contrib=True), np.float64)

    def importance(self) -> dict[str, float]:
        assert self.booster_ is not None
        gains = self.booster_.feature_importance("gain")
        return dict(sorted(zip(FEATURES, map(float, gains), strict=True), key=lambda kv: -kv[1]))

    def save(self, path: Path) -> None:
        assert self.booster_ is not None
        self.booster_.save_model(str(path))

    @classmethod
    def load(cls, path: Path) -> LTRRanker:
        booster = lgb.Booster(model_file=str(path))
        if list(booster.feature_name()) != list(FEATURES):
            raise ValueError(
                f"{path}: ranker was trained on different features; rebuild the index (soutui index build)"
            )
        return cls(booster)


# ranker capacities tried on validation, (num_leaves, min_data_in_leaf), smallest first
CAPACITY_GRID: tuple[tuple[int, int], ...] = ((7, 5), (15, 20), (31, 50))
CV_BELOW_QUERIES = 2000  # fewer training queries: k-fold by query; more: one held-out slice


def _fit_held_out(
    x: np.ndarray, gain: np.ndarray, groups: list[int], splits: list[np.ndarray], p: LTRParams
) -> tuple[float, list[LTRRanker]]:
    """Fit one early-stopped ranker per held-out query set; their mean validation NDCG and the rankers."""
    starts = np.concatenate([[0], np.cumsum(groups)]).astype(np.int64)

    def rows(qs: np.ndarray) -> np.ndarray:
        return np.concatenate([np.arange(starts[q], starts[q + 1]) for q in qs])

    scores, models = [], []
    for val in splits:
        fit_q = np.setdiff1d(np.arange(len(groups)), val)
        rf, rv = rows(fit_q), rows(val)
        r = LTRRanker().fit(x[rf], gain[rf], [groups[q] for q in fit_q], x[rv], gain[rv], [groups[q] for q in val], p)
        assert r.booster_ is not None
        scores.append(float(r.booster_.best_score["valid_0"][f"ndcg@{p.eval_at}"]))
        models.append(r)
    return float(np.mean(scores)), models


def choose_capacity(
    x: np.ndarray,
    gain: np.ndarray,
    groups: list[int],
    params: LTRParams | None = None,
    grid: tuple[tuple[int, int], ...] = CAPACITY_GRID,
    folds: int | None = None,
    holdout_frac: float = 0.1,
) -> tuple[LTRRanker, dict[str, Any]]:
    """Set the ranker's capacity (leaves, min data in leaf, number of trees) on held-out queries.

    Every grid point is trained with early stopping on validation queries: `folds` folds by
    query (default 3 when there are fewer than CV_BELOW_QUERIES queries, so a small judgment
    set is not judged on one noisy slice), else one seeded slice of `holdout_frac` of them.
    The best mean validation NDCG wins; with folds it is refit on every query with the mean
    early-stopped number of trees, with one slice its early-stopped model is kept.
    """
    base = params or LTRParams()
    k = folds if folds is not None else (3 if len(groups) < CV_BELOW_QUERIES else 1)
    perm = np.random.default_rng(base.seed).permutation(len(groups))
    if k > 1:
        splits = [np.sort(perm[i::k]) for i in range(k)]
    else:
        splits = [np.sort(perm[: max(1, int(round(len(groups) * holdout_frac)))])]
    table: list[dict[str, Any]] = []
    best: tuple[float, LTRParams, list[LTRRanker]] | None = None
    for leaves, min_leaf in grid:
        p = replace(base, num_leaves=leaves, min_data_in_leaf=min_leaf)
        score, models = _fit_held_out(x, gain, groups, splits, p)
        table.append({"num_leaves": leaves, "min_data_in_leaf": min_leaf, f"valid_ndcg@{p.eval_at}": round(score, 4),
                      "n_trees": int(round(np.mean([m.n_trees for m in models])))})  # fmt: skip
        if best is None or score > best[0]:
            best = (score, p, models)
    assert best is not None
    _, p, models = best
    n_trees = max(1, int(round(np.mean([m.n_trees for m in models]))))
    ranker = models[0] if k == 1 else LTRRanker().fit_rounds(x, gain, groups, p, n_trees)
    info = {
        "num_leaves": p.num_leaves,
        "min_data_in_leaf": p.min_data_in_leaf,
        "n_trees": n_trees,
        "selection": (f"{k}-fold by query" if k > 1 else f"one held-out slice of {len(splits[0])} queries")
        + f", early stopping on lightgbm ndcg@{p.eval_at} ({p.early_stopping_rounds} rounds), best mean of the grid",
        "grid": table,
    }
    return ranker, info
