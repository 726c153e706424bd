"""End-to-end evaluation runs on synthetic data: report shape, no leakage, CLI output."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Self

import numpy as np
import pytest

from soutui.data.sequences import EvalSplit, SequenceData, leave_one_out
from soutui.evaluation import report
from soutui.features.content import ItemContent
from soutui.models.itemknn import ItemKNN
from soutui.models.popularity import Popularity

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
from contract import cyclic_data  # noqa: E402


def sentinel_data(n_users: int = 30, n_common: int = 10) -> SequenceData:
    """Each user's last two items are unique to them: any model that 'knows' them leaked."""
    rng = np.random.default_rng(0)
    seqs = []
    for u in range(n_users):
        body = rng.integers(0, n_common, int(rng.integers(2, 6)))
        seqs.append(np.concatenate([body, [n_common + 2 * u, n_common + 2 * u + 1]]).astype(np.int64))
    n_items = n_common + 2 * n_users
    return SequenceData(
        np.array([str(i) for i in range(n_items)], dtype=object),
        np.array([f"u{u}" for u in range(n_users)], dtype=object),
        seqs,
        [np.arange(len(s), dtype=np.int64) for s in seqs],
    )


def test_training_never_sees_valid_or_test_items() -> None:
    data = sentinel_data()
    split = leave_one_out(data)
    held_out = np.concatenate([split.valid.targets, split.test.targets])
    assert len(np.unique(held_out)) == 2 * data.n_users
    assert not set(np.concatenate(split.train.sequences).tolist()) & set(held_out.tolist())
    pop = report.fit_model("popularity", split)
    assert isinstance(pop, Popularity) and (pop.scores_[held_out] == 0).all()
    knn = report.fit_model("itemknn", split)
    assert isinstance(knn, ItemKNN)
    assert knn.sim_[held_out].nnz == 0 and knn.sim_[:, held_out].nnz == 0


class Spy(Popularity):
    seen: list[SequenceData] = []

    def fit(
        self, train: SequenceData, valid: EvalSplit | None = None, *, content: ItemContent | None = None
    ) -> Self:
        Spy.seen.append(train)
        return super().fit(train, valid, content=content)


def test_pipeline_fits_on_the_training_part_only(monkeypatch: pytest.MonkeyPatch) -> None:
    data = sentinel_data()
    monkeypatch.setattr(report, "model_class", lambda name: Spy)
    Spy.seen.clear()
    report.evaluate_sequences(data, "popularity", split="loo")
    (train,) = Spy.seen
    for full, seen in zip(data.sequences, train.sequences, strict=True):
        np.testing.assert_array_equal(seen, full[:-2])  # the final two positions are held out


def test_report_shape_and_known_answer() -> None:
    out = report.evaluate_sequences(cyclic_data(), "itemknn", dataset="cyclic", ks=(1, 10))
    assert out["dataset"] == "cyclic" and out["model"] == "itemknn"
    assert out["protocol"]["candidates"] == "full" and out["protocol"]["ties"] == "pessimistic"
    assert set(out["metrics"]) == {"valid", "test"}
    assert out["metrics"]["test"]["HR@1"] == 1.0  # the cycle's next item, every time
    assert out["dataset_stats"]["test_users"] == out["metrics"]["test"]["users"]
    assert out["train_seconds"] >= 0 and out["params"]["window"] >= 1
    json.dumps(out)  # JSON-able as is


def test_checkpoint_is_evaluated_not_refitted(tmp_path: Path) -> None:
    data = cyclic_data()
    model = report.fit_model("itemknn", leave_one_out(data))
    model.save(tmp_path / "knn")
    out = report.evaluate_sequences(data, "itemknn", checkpoint=str(tmp_path / "knn"), ks=(1,))
    assert out["train_seconds"] is None and out["metrics"]["test"]["HR@1"] == 1.0
    with pytest.raises(ValueError, match="holds a 'itemknn' model"):
        report.evaluate_sequences(data, "popularity", checkpoint=str(tmp_path / "knn"))


def test_bad_params_and_split_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="bad parameters"):
        report.evaluate_sequences(cyclic_data(), "itemknn", params={"windw": 3})
    with pytest.raises(ValueError, match="unknown split"):
        report.evaluate_sequences(cyclic_data(), "itemknn", split="random")


def test_leaky_popularity_is_labelled() -> None:
    out = report.leaky_popularity(cyclic_data(), ks=(10,))
    assert "LEAKY" in out["model"]


def _fake_loader(dataset: str, store: Any = None, progress: bool = False) -> tuple[SequenceData, None]:
    if dataset != "cyclic":
        raise ValueError(f"unknown dataset {dataset!r}")
    return cyclic_data(), None


def test_cli_json_and_table(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from soutui.cli import main

    monkeypatch.setattr(report, "load_sequences", _fake_loader)
    assert main(["evaluate", "--dataset", "cyclic", "--model", "itemknn", "--ks", "1,10", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["metrics"]["test"]["HR@1"] == 1.0 and out["protocol"]["exclude_history"] is False
    assert main(["evaluate", "--dataset", "cyclic", "--model", "all", "--ks", "10"]) == 0
    text = capsys.readouterr().out
    assert "full ranking" in text and "recent-popularity" in text and "mlp" in text


def test_cli_bad_input_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from soutui.cli import main

    assert main(["evaluate", "--ks", "ten"]) == 2
    err = capsys.readouterr().err
    assert "--ks must be positive integers" in err and "Traceback" not in err
    assert main(["evaluate", "--params", "[1]"]) == 2
    assert "--params must be a JSON object" in capsys.readouterr().err
