"""Training loop: resume after an interruption replays the uninterrupted run; records and CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
from sasrec_fixtures import SMALL, cyclic_data, sasrec  # noqa: E402

from soutui.config import ConfigError  # noqa: E402
from soutui.features.content import ItemContent  # noqa: E402
from soutui.models.sasrec_recommender import SASRecRecommender  # noqa: E402
from soutui.training.pipeline import load_params, parse_overrides, to_toml  # noqa: E402
from soutui.training.records import data_fingerprint, markdown_table  # noqa: E402
from soutui.training.trainer import LoopTrainer  # noqa: E402


@pytest.fixture(scope="module")
def split():  # type: ignore[no-untyped-def]
    return cyclic_data(n_users=60)


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_resume_equals_uninterrupted(split, tmp_path, ema_decay) -> None:  # type: ignore[no-untyped-def]
    params = {**SMALL, "epochs": 3, "patience": 10, "ema_decay": ema_decay}  # the average resumes too

    def fit(**trainer: object) -> SASRecRecommender:
        m = SASRecRecommender(**params).use_trainer(LoopTrainer(progress=False, **trainer))  # type: ignore[arg-type]
        return m.fit(split.train, split.valid)

    full = fit(checkpoint_dir=tmp_path / "a")
    part = fit(checkpoint_dir=tmp_path / "b", stop_after_epochs=1)
    part_report = part.training_report()
    assert part_report is not None and part_report["epoch"] == 1 and not part_report["stopped"]
    resumed = fit(checkpoint_dir=tmp_path / "b", resume=True)
    r, f = resumed.training_report(), full.training_report()
    assert r is not None and f is not None
    assert r["epoch"] == 3 and [x["loss"] for x in r["history"]] == [x["loss"] for x in f["history"]]
    h = split.test.histories[:10]
    np.testing.assert_allclose(resumed.score(h), full.score(h), atol=1e-5)


def test_early_stopping_keeps_best_epoch(split) -> None:  # type: ignore[no-untyped-def]
    m = sasrec(**{**SMALL, "epochs": 30, "patience": 1, "lr": 0.05}).fit(split.train, split.valid)
    st = m.training_report()
    assert st is not None and st["stopped"] in ("patience", "epochs")
    best = max(r["valid"] for r in st["history"])
    assert st["best_metric"] == pytest.approx(best)


def test_fingerprint_changes_with_data(split) -> None:  # type: ignore[no-untyped-def]
    a = data_fingerprint(split.train)
    seqs = list(split.train.sequences)
    seqs[0] = seqs[0][::-1]
    assert a == data_fingerprint(split.train)
    assert a != data_fingerprint(split.train.with_sequences(seqs, None))


def test_markdown_table_from_records() -> None:
    rec = {"run": "r1", "metrics": {"valid": {"NDCG@10": 0.05, "HR@10": 0.08}, "test": {"NDCG@10": 0.04}},
           "time": {"train_s": 12.0}, "training": {"epoch": 7}}  # fmt: skip
    table = markdown_table([rec])
    assert "| r1 | 0.0500 | 0.0800 | 0.0400 |" in table and table.count("\n") == 2


def test_overrides_and_toml_roundtrip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    p = parse_overrides(["d_model=32", "use_time=true", "loss=sampled_softmax", 'device="cpu"', "lr=1e-3"])
    assert p == {"d_model": 32, "use_time": True, "loss": "sampled_softmax", "device": "cpu", "lr": 0.001}
    (tmp_path / "c.toml").write_text(to_toml(p))
    assert load_params(tmp_path / "c.toml", ["d_model=64"]) == {**p, "d_model": 64}
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["d_model"])


def test_to_toml_escapes_strings(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Quotes, backslashes and newlines survive the round trip (the hand-written writer broke them)."""
    p = {"note": 'say "hi" \\ C:\\path\nnext', "alphas": (0.0, 1.5), "use_time": True, "lr": 1e-3}
    (tmp_path / "c.toml").write_text(to_toml(p))
    assert load_params(tmp_path / "c.toml") == {**p, "alphas": [0.0, 1.5]}


def test_cli_train_rejects_unknown_key(tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import soutui.training.pipeline as pipeline
    from soutui.cli import main

    monkeypatch.setattr(pipeline, "prepare", lambda *a, **k: (_ for _ in ()).throw(ConfigError("unused")))
    rc = main(["train", "--dataset", "x", "--set", "d_modle=3", "--output", str(tmp_path / "r"), "--json"])
    assert rc == 2
    assert "d_modle" in capsys.readouterr().err


def test_cli_train_end_to_end(split, tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import soutui.training.pipeline as pipeline
    from soutui.cli import main
    from soutui.models.registry import load_model
    from soutui.models.sasrec_onnx import OnnxScorer

    prep = pipeline.Prepared("tiny", split.train, split, ItemContent())
    monkeypatch.setattr(pipeline, "prepare", lambda *a, **k: prep)
    sets = [f"--set={k}={json.dumps(v)}" for k, v in {**SMALL, "epochs": 2}.items() if k != "progress"]
    rc = main(["train", "--dataset", "tiny", "--output", str(tmp_path / "run"), "--json", *sets])
    assert rc == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["metrics"]["test"]["users"] == len(split.test) and rec["training"]["epoch"] == 2
    assert (tmp_path / "run" / "record.json").exists() and (tmp_path / "run" / "ckpt" / "last.pt").exists()
    model = load_model(tmp_path / "run")
    ort = OnnxScorer(tmp_path / "run")
    h = split.test.histories[:5]
    assert np.abs(model.score(h) - ort.score(h)).max() < 1e-4


def test_tune_resumes_and_writes_best_config(split, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import soutui.training.tune as tune_mod
    from soutui.training.pipeline import Prepared

    # a tiny search space so each trial takes a second
    space = {"d_model": [8, 16], "lr": (0.003, 0.02)}

    def tiny(trial):  # type: ignore[no-untyped-def]
        return {"d_model": trial.suggest_categorical("d_model", space["d_model"]),
                "lr": trial.suggest_float("lr", *space["lr"], log=True)}  # fmt: skip

    monkeypatch.setitem(tune_mod.SPACES, "sasrec", tiny)
    prep = Prepared("tiny", split.train, split, ItemContent())
    base = {k: v for k, v in SMALL.items() if k not in ("d_model", "lr")} | {"epochs": 2}
    storage = f"sqlite:///{tmp_path / 'tune.db'}"
    first = tune_mod.tune(prep, "sasrec", 2, storage, "s", base, tmp_path / "best.toml")
    second = tune_mod.tune(prep, "sasrec", 1, storage, "s", base, tmp_path / "best.toml")
    assert first["trials"] == 2 and second["trials"] == 3
    best = load_params(tmp_path / "best.toml")
    assert best["d_model"] in space["d_model"] and best["epochs"] == 2
    assert second["best_value"] >= first["best_value"]
    # a value the user fixed is kept, even where the space searches that key
    fixed = tune_mod.tune(prep, "sasrec", 1, storage, "fixed", base | {"d_model": 12}, tmp_path / "fixed.toml")
    assert fixed["best_params"]["d_model"] == 12 and load_params(tmp_path / "fixed.toml")["d_model"] == 12


def test_cosine_schedule_follows_the_budget() -> None:
    from soutui.training.loop import TrainConfig, budget_fraction, scheduled_lr

    cfg = TrainConfig(lr=1.0, lr_schedule="cosine", warmup_steps=10, min_lr_ratio=0.1, epochs=100,
                      max_minutes=10)  # fmt: skip
    assert scheduled_lr(cfg, 0, 0.0) == pytest.approx(0.1)  # first warm-up step
    assert scheduled_lr(cfg, 50, 0.0) == pytest.approx(1.0)
    assert scheduled_lr(cfg, 50, 0.5) == pytest.approx(0.55)
    assert scheduled_lr(cfg, 50, 1.0) == pytest.approx(0.1)
    assert budget_fraction(cfg, 10, 300.0, 0.0) == pytest.approx(0.5)  # the clock, not epochs, binds
    assert budget_fraction(cfg, 90, 60.0, 0.0) == pytest.approx(0.9)
    assert scheduled_lr(TrainConfig(lr=0.3), 5, 0.9) == 0.3  # constant ignores the budget
    with pytest.raises(ConfigError, match="lr_schedule"):
        SASRecRecommender(lr_schedule="linear")


def _linear_fit(ema_decay: float, seen: list[np.ndarray], steps: list[np.ndarray]):  # type: ignore[no-untyped-def]
    """A 3-weight least-squares net trained 2 epochs x 4 batches by the loop; `steps` gets the
    weights after every optimizer step, `seen` the weights each validation saw."""
    import torch

    from soutui.training.loop import TrainConfig, train

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(3))

        def forward(self, x, y):  # type: ignore[no-untyped-def]
            return None, ((x @ self.w - y) ** 2).mean()

    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 3)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5]) + rng.normal(scale=0.5, size=32)).astype(np.float32)

    def batches(r: np.random.Generator):  # type: ignore[no-untyped-def]
        order = r.permutation(32)
        for i in range(0, 32, 8):
            yield x[order[i : i + 8]], y[order[i : i + 8]]

    net = Net()

    def validate() -> float:
        seen.append(net.w.detach().numpy().copy())
        return 1.0 / (1.0 + float(np.abs(seen[-1] - np.array([1.0, -2.0, 0.5])).sum()))

    def record(opt: torch.optim.Optimizer) -> None:
        opt.register_step_post_hook(lambda *_: steps.append(net.w.detach().numpy().copy()))

    cfg = TrainConfig(epochs=2, lr=0.1, patience=10, grad_clip=0.0, ema_decay=ema_decay, progress=False)
    state = train(net, batches, 4, validate, cfg, with_optimizer=record)
    return net, state


def test_weight_average_is_what_is_validated_and_kept() -> None:
    raw_seen: list[np.ndarray] = []
    raw_steps: list[np.ndarray] = []
    _linear_fit(0.0, raw_seen, raw_steps)
    seen: list[np.ndarray] = []
    steps: list[np.ndarray] = []
    net, state = _linear_fit(0.5, seen, steps)
    # the average does not change the iterates it averages (validation swaps the weights back)
    np.testing.assert_allclose(np.array(steps), np.array(raw_steps), atol=1e-6)
    ema = [steps[0]]  # the first update copies; then avg = 0.5 avg + 0.5 w
    for w in steps[1:]:
        ema.append(0.5 * ema[-1] + 0.5 * w)
    np.testing.assert_allclose(seen[0], ema[3], atol=1e-6)  # end of epoch 1 (4 steps)
    np.testing.assert_allclose(seen[1], ema[7], atol=1e-6)
    assert not np.allclose(seen[1], steps[7], atol=1e-3)  # the average, not the last iterate
    assert state.best_epoch == 2  # (epochs count from 1) and the net holds what it validated
    np.testing.assert_allclose(net.w.detach().numpy(), seen[1], atol=1e-6)


def test_ema_decay_is_checked() -> None:
    from soutui.training.loop import TrainConfig

    with pytest.raises(ConfigError, match="ema_decay"):
        TrainConfig(ema_decay=1.0)
