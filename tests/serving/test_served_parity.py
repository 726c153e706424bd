"""Served = measured, on real Amazon Beauty: the API's RecService, scoring a bundle's ONNX SASRec
from live events, returns the same top-10 as the offline protocol scoring the PyTorch model on
the same leave-one-out test histories and event times (history kept, as in the protocol).

The model is small and briefly trained: this checks parity, not quality.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from soutui.data.sequences import SequenceData, leave_one_out
from soutui.evaluation.protocol import target_ranks
from soutui.models.base import top_k
from soutui.models.popularity import Popularity
from soutui.serving.bundle_build import catalogue_in_index_order, sasrec_onnx_writer, write_bundle
from soutui.serving.service import RecService
from soutui.serving.settings import ServeSettings

N_USERS = 500
K = 10
# time-aware, with the co-occurrence head, as the demo trains it; one cheap epoch so the test stays quick
SMALL = {"d_model": 32, "n_layers": 1, "n_heads": 2, "max_len": 20, "dropout": 0.2, "emb_dropout": 0.2,
         "batch_size": 256, "lr": 0.003, "epochs": 1, "loss": "sampled_softmax", "n_negatives": 256,
         "progress": False, "seed": 0}  # fmt: skip


@pytest.fixture(scope="module")
def beauty() -> tuple[SequenceData, pd.DataFrame]:
    from soutui.data.importers import amazon_beauty
    from soutui.data.sources import find_data_dir

    try:
        root = find_data_dir(dataset="amazon-beauty")
    except FileNotFoundError:
        pytest.skip("real Amazon Beauty data not found (../shared/data)")
    tables = amazon_beauty.build(root).tables
    items = tables["items"].drop(columns=["_row"], errors="ignore")
    return SequenceData.from_events(tables["events"], items), items


def test_served_top10_equals_offline_protocol_top10(tmp_path: Path, beauty: tuple[SequenceData, pd.DataFrame]) -> None:
    pytest.importorskip("onnxruntime")
    from soutui.models.sasrec_recommender import SASRecRecommender
    from soutui.training.trainer import LoopTrainer

    data, items_table = beauty
    split = leave_one_out(data)
    assert split.test.timestamps is not None
    model = SASRecRecommender(**SMALL).use_trainer(LoopTrainer(progress=False)).fit(split.train)
    items = catalogue_in_index_order(items_table, data.item_ids)
    bundle = write_bundle(tmp_path / "bundles", "amazon-beauty", items, {"popularity": Popularity().fit(split.train)},
                          "sasrec", onnx_models={"sasrec": sasrec_onnx_writer(model)})  # fmt: skip

    # test rows whose history has event times (99.7 % of Beauty rows; 0 = unknown, sent as "now")
    rows = [r for r in range(len(split.test)) if (split.test.timestamps[r] > 0).all()][:N_USERS]
    test = split.test.take(np.asarray(rows))
    settings = ServeSettings(bundle=str(bundle), bundles_dir=str(tmp_path / "bundles"),
                             store=f"duckdb://{tmp_path / 'empty.duckdb'}", event_log=str(tmp_path / "e.jsonl"),
                             flush_interval_s=0.0)  # fmt: skip
    svc = RecService(settings)  # the object the API's routes call
    try:
        assert type(svc.bundle.models["sasrec"]).__name__ == "OnnxScorer"
        svc.ingest([
            {"event_id": f"p{r}-{j}", "user_id": f"parity-{r}", "item_id": str(data.item_ids[i]),
             "event_type": "purchase", "ts": int(t)}
            for r, (h, ts) in enumerate(zip(test.histories, test.timestamps, strict=True))
            for j, (i, t) in enumerate(zip(h, ts, strict=True))
        ])  # fmt: skip
        served = [
            [svc.bundle.catalogue.index[it["item_id"]]
             for it in svc.recommend(f"parity-{r}", K, exclude_purchased=False)["items"]]
            for r in range(len(test))
        ]  # fmt: skip
    finally:
        svc.close()

    # the offline protocol: PyTorch model, test histories + their times, history kept
    _, tops = target_ranks(model, test, topk=K)
    assert tops is not None
    torch_scores = model.score(test.histories, test.timestamps)
    exact = 0
    for r, got in enumerate(served):
        s = np.asarray(torch_scores[r], np.float64)
        want = top_k(s, K)[0].tolist()
        assert set(want) == set(tops[r].tolist())  # the protocol's own top-10 (unordered) is that list
        if got == want:
            exact += 1
            continue
        # a list may differ only where PyTorch itself has a near-tie (float32 export noise):
        # every served item scores within 1e-4 of the 10th best, in PyTorch's order up to 1e-4
        assert len(got) == K and all(s[i] >= s[want[-1]] - 1e-4 for i in got), (r, got, want)
        assert all(s[a] >= s[b] - 1e-4 for a, b in zip(got, got[1:], strict=False)), (r, got, want)
    assert len(served) == N_USERS and exact >= 0.99 * N_USERS, f"{exact}/{N_USERS} identical top-10 lists"
