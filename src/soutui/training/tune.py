"""Hyper-parameter search with Optuna on the VALIDATION split only (the test split is never read).

Trials live in an Optuna storage (SQLite by default under $SOUTUI_HOME), so an
interrupted search resumes where it stopped; the best parameters are written as a
TOML file that `soutui train --config` accepts.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from soutui.config import ConfigError, home_dir
from soutui.training.pipeline import Prepared, build_model, to_toml
from soutui.training.trainer import LoopTrainer

# model name -> function(trial) -> params; explicit, one entry per tunable model
SearchSpace = Callable[[Any], dict[str, Any]]


def sasrec_space(trial: Any) -> dict[str, Any]:
    d = trial.suggest_categorical("d_model", [32, 64, 128])
    return {
        "d_model": d,
        "n_layers": trial.suggest_int("n_layers", 1, 3),
        "n_heads": trial.suggest_categorical("n_heads", [1, 2, 4]),
        "dropout": trial.suggest_float("dropout", 0.1, 0.6),
        "emb_dropout": trial.suggest_float("emb_dropout", 0.1, 0.6),
        "id_dropout": trial.suggest_float("id_dropout", 0.0, 0.5),
        "label_smoothing": trial.suggest_float("label_smoothing", 0.0, 0.2),
        "lr": trial.suggest_float("lr", 3e-4, 5e-3, log=True),
        "weight_decay": trial.suggest_float("weight_decay", 1e-6, 0.1, log=True),
        "use_time": trial.suggest_categorical("use_time", [False, True]),
        "gated": trial.suggest_categorical("gated", [False, True]),
    }


SPACES: dict[str, SearchSpace] = {"sasrec": sasrec_space}


def tune(
    prep: Prepared,
    model: str = "sasrec",
    trials: int = 10,
    storage: str | None = None,
    study: str | None = None,
    base: dict[str, Any] | None = None,
    output: str | Path | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Run `trials` more trials; returns {"best_value", "best_params", "trials", "config"}."""
    import optuna

    if model not in SPACES:
        raise ConfigError(f"no search space for model {model!r}; tunable models: {sorted(SPACES)}")
    if storage is None:
        home_dir().mkdir(parents=True, exist_ok=True)
        storage = f"sqlite:///{home_dir() / 'tune.db'}"
    name = study or f"{prep.dataset}-{model}"
    st = optuna.create_study(
        study_name=name, storage=storage, direction="maximize", load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=seed + len_trials(storage, name)),
    )  # fmt: skip

    def objective(trial: Any) -> float:
        params = {**SPACES[model](trial), **(base or {})}  # what the user fixed (--set) is not searched over
        if params.get("d_model", 64) % params.get("n_heads", 1):
            raise optuna.TrialPruned("d_model not divisible by n_heads")
        trainer = LoopTrainer(progress=False)
        rec = build_model(model, params, trainer)
        rec.fit(prep.split.train, prep.split.valid, content=prep.content)  # reads validation only
        trial.set_user_attr("params", params)
        return trainer.validate(rec, prep.split.valid)  # the fitted model's validation NDCG@10

    st.optimize(objective, n_trials=trials)
    best = st.best_trial
    params = dict(best.user_attrs.get("params", best.params))
    out = Path(output) if output else home_dir() / "tune" / f"{name}-best.toml"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        f"# best of {len(st.trials)} trials, validation NDCG@10 = {best.value:.5f}\n" + to_toml(params)
    )
    return {"study": name, "storage": storage, "best_value": best.value, "best_params": params,
            "trials": len(st.trials), "config": str(out)}  # fmt: skip


def len_trials(storage: str, name: str) -> int:
    """Trials already stored (so a resumed search does not replay the same sampler seeds)."""
    import optuna

    try:
        return len(optuna.load_study(study_name=name, storage=storage).trials)
    except KeyError:
        return 0
