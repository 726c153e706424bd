"""Fine-tuning the MiniLM search encoder (`index build --fine-tune`, soutui.search.finetune).

One tiny run (English products of the test catalogue, made-up product codes as queries, so
the stock model cannot already answer them) is shared by the checks: training raises the
loss's in-batch accuracy on its own pairs, the exported ONNX graphs (fp32 and int8) agree
with the PyTorch fine-tuned encoder, and an index built with it serves queries through the
index's own graph, never the stock one. The CLI check proves no test query reaches training.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from soutui.cli import main
from soutui.data.store import open_store
from soutui.features.onnx_encoder import PackagedEncoder, encode_minilm_onnx, encode_query, model_dir
from soutui.search import evaluation
from soutui.search.catalog import Catalog
from soutui.search.engine import QUERY_ENCODER_DIR, SearchConfig, SearchEngine
from soutui.search.finetune import (
    Encoder,
    FineTuneConfig,
    fine_tune,
    fits,
    in_batch_accuracy,
    reusable,
    training_pairs,
)

from .catalog_fixture import items_frame

CODES = ["zq", "vix", "brel", "kto", "pww", "dax", "mur", "ylo", "fep", "gorb", "hux", "jat", "lom", "nep", "sav", "tig"]
ENGLISH = items_frame().iloc[:20]  # the English products
# about a minute of CPU for the module; the shared 2-core machine gave it ~4 % of a core (14 min wall)
pytestmark = pytest.mark.timeout(1800)


def _texts() -> dict[str, str]:
    cat = Catalog.from_items(ENGLISH)
    return dict(zip(cat.item_ids.tolist(), cat.embed_texts(), strict=True))


def _judged() -> tuple[evaluation.Qrels, evaluation.Qrels]:
    """Fit: 'code N' -> product N (gain 2), its neighbour judged irrelevant; valid: 'item code N' (same products)."""
    ids = ENGLISH["item_id"].tolist()
    fit = {f"{c} 7{i}": {ids[i]: 2.0, ids[(i + 1) % 16]: 0.0} for i, c in enumerate(CODES)}
    valid = {f"item {c} 7{i}": {ids[i]: 2.0} for i, c in enumerate(CODES[:8])}
    return fit, valid


CONFIG = FineTuneConfig(
    minutes=60, max_steps=16, batch_size=8, lr=2e-4, warmup_steps=2, eval_every=8, patience=10, distractors=4
)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, Path]:  # type: ignore[type-arg]
    work = tmp_path_factory.mktemp("ft")
    fit, valid = _judged()
    enc_dir, record = fine_tune(_texts(), fit, valid, work, CONFIG)
    return enc_dir, record, work


def test_fine_tuning_raises_in_batch_accuracy_on_its_pairs(tuned: tuple[Path, dict, Path]) -> None:  # type: ignore[type-arg]
    import torch

    _, record, work = tuned
    pairs = training_pairs(_judged()[0], _texts(), CONFIG, 0)
    before = in_batch_accuracy(Encoder(model_dir()), pairs, CONFIG)
    trained = Encoder(model_dir())
    trained.bert.load_state_dict(torch.load(work / "checkpoint.pt", weights_only=False)["model"])
    after = in_batch_accuracy(trained, pairs, CONFIG)
    assert after >= before + 0.25, (before, after)
    assert record["steps"] == 16 and record["stopped_by"] == "max steps"
    assert [h["step"] for h in record["history"]] == [0, 8, 16]
    assert record["valid_pool_ndcg@10_after"] >= record["valid_pool_ndcg@10_before"]
    # a second call with the same data and settings reuses the finished run
    again = fine_tune(_texts(), *_judged(), work, CONFIG)[1]
    assert again == record


def test_a_larger_budget_resumes_the_finished_run_and_a_smaller_one_starts_afresh(
    tuned: tuple[Path, dict, Path], tmp_path: Path  # type: ignore[type-arg]
) -> None:
    _, record, work = tuned
    shutil.copytree(work, tmp_path / "ft")
    more = fine_tune(_texts(), *_judged(), tmp_path / "ft", replace(CONFIG, max_steps=24))[1]
    assert more["steps"] == 24 and [h["step"] for h in more["history"]] == [0, 8, 16, 24]
    assert more["history"][:3] == record["history"]  # trained on from step 16, not again from 0
    less = fine_tune(_texts(), *_judged(), tmp_path / "ft", replace(CONFIG, max_steps=8))[1]
    assert less["steps"] == 8 and [h["step"] for h in less["history"]] == [0, 8]


def test_budget_rules() -> None:
    done = {"stopped_by": "budget", "config": {"minutes": 10.0, "max_steps": None}}
    assert reusable(done, FineTuneConfig(minutes=10.0))
    assert not reusable(done, FineTuneConfig(minutes=20.0))  # more time asked for: train on
    assert not reusable(done, FineTuneConfig(minutes=5.0))  # less: the run on disk overspent it
    assert reusable({**done, "stopped_by": "early stopping"}, FineTuneConfig(minutes=20.0))
    assert fits(elapsed=50.0, step_s=4.0, check_s=6.0, budget_s=60.0)
    assert not fits(elapsed=50.5, step_s=4.0, check_s=6.0, budget_s=60.0)


def test_onnx_int8_encoder_agrees_with_the_pytorch_fine_tuned_one(tuned: tuple[Path, dict, Path]) -> None:  # type: ignore[type-arg]
    enc_dir, _, work = tuned
    texts = list(_texts().values()) + list(_judged()[0])[:6]
    ref = Encoder(work / "best").encode(texts)
    tok = enc_dir / "tokenizer.json"
    fp32 = encode_minilm_onnx(texts, packaged=PackagedEncoder(enc_dir / "minilm.onnx", tok))
    int8 = encode_minilm_onnx(texts, packaged=PackagedEncoder(enc_dir / "minilm.int8.onnx", tok))
    assert (fp32 * ref).sum(1).min() > 0.99
    assert (int8 * ref).sum(1).min() > 0.85  # dynamic int8, the stock model's tolerance too
    items = ref[:20]
    for q in range(20, len(texts)):  # same top-3 products for each query
        want = np.argsort(-(items @ ref[q]))[:3].tolist()
        assert np.argsort(-(fp32[:20] @ fp32[q]))[:3].tolist() == want
        assert np.argsort(-(int8[:20] @ int8[q]))[:1].tolist() == want[:1]


def test_index_serves_with_its_own_fine_tuned_encoder(
    tuned: tuple[Path, dict, Path], tmp_path: Path  # type: ignore[type-arg]
) -> None:
    enc_dir, record, _ = tuned
    out = tmp_path / "idx"
    cfg = SearchConfig(encoders=["minilm"], embed_cache_dir=str(tmp_path / "emb"))
    SearchEngine.build(ENGLISH, out, cfg, own_encoder=enc_dir, fine_tune=record)
    engine = SearchEngine.load(out)
    assert engine.manifest["fine_tune"]["steps"] == 16
    assert engine._packaged is not None and engine._packaged.graph.parent == out / QUERY_ENCODER_DIR
    q = list(_judged()[0])[0]
    own = encode_minilm_onnx([q], packaged=PackagedEncoder(enc_dir / "minilm.int8.onnx", enc_dir / "tokenizer.json"))[0]
    served = engine.embed_query(engine.parse(q), "minilm")
    np.testing.assert_allclose(served, own, atol=1e-5)
    assert float(served @ encode_query(q, quantized=True)) < 0.99  # not the stock model
    # catalogue vectors come from the fine-tuned fp32 graph
    fp32 = PackagedEncoder(enc_dir / "minilm.onnx", enc_dir / "tokenizer.json")
    row = engine.row_of[ENGLISH["item_id"].iloc[0]]
    want = encode_minilm_onnx([engine.catalog.embed_texts()[row]], packaged=fp32)[0]
    np.testing.assert_allclose(engine.vectors["minilm"].vectors[row], want, atol=1e-5)
    # an index whose fine-tuned graph is missing refuses to load rather than serve the stock model
    (out / QUERY_ENCODER_DIR / "minilm.int8.onnx").unlink()
    with pytest.raises(FileNotFoundError, match="fine-tuned"):
        SearchEngine.load(out)


def test_cli_fine_tune_never_trains_on_a_test_query(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOUTUI_HOME", str(tmp_path))
    ids = ENGLISH["item_id"].tolist()
    rows = [
        {"event_id": f"{i}-{j}", "item_id": ids[i], "event_type": "search", "query": f"{c} {j}", "relevance": 3.0}
        for i, c in enumerate(CODES) for j in range(3)
    ]  # fmt: skip
    url = f"duckdb://{tmp_path / 's.duckdb'}"
    store = open_store(url)
    try:
        store.write_dataset("codes", {"items": ENGLISH, "events": pd.DataFrame(rows)})
    finally:
        store.close()
    argv = ["index", "build", "--dataset", "codes", "--store", url, "--out", str(tmp_path / "ix"),
            "--encoder", "minilm", "--no-ltr", "--fine-tune", "--fine-tune-minutes", "60", "--fine-tune-steps", "1", "--json"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    train, test = evaluation.split(evaluation.qrels_from_events(pd.DataFrame(rows)))
    used = json.loads((tmp_path / "ix.finetune" / "queries.json").read_text())
    assert not (set(used["fit"]) | set(used["valid"])) & set(test)
    assert set(used["fit"]) | set(used["valid"]) == set(train) and not set(used["fit"]) & set(used["valid"])
    assert report["fine_tune"]["steps"] == 1 and report["method_choice"]["valid_queries"] == len(used["valid"])
    manifest = json.loads((tmp_path / "ix" / "manifest.json").read_text())
    assert manifest["fine_tune"]["fit_queries"] == len(used["fit"])
