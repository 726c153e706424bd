"""`LoopTrainer`: the training layer a model is handed (implements soutui.models.fitting.Trainer).

It carries the run-time things a fit needs besides data and hyper-parameters (checkpoint
directory, resume, progress, a simulated interruption for tests) and answers every
question a model asks of validation through the one evaluation protocol. Torch and the
loop are imported only when a model trains, so `soutui evaluate --model popularity`
can hand one over without torch installed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from soutui.data.sequences import EvalSplit
from soutui.evaluation.protocol import ranking_metrics, target_ranks
from soutui.models.base import Recommender
from soutui.models.fitting import BatchFn, PartsFn, TrainConfig, TrainOutcome

if TYPE_CHECKING:
    import torch

VALID_METRIC = "NDCG@10"


@dataclass
class LoopTrainer:
    """Runs soutui.training.loop.train; validation = NDCG@10, full ranking, pessimistic ties.

    `progress` None keeps the model's own setting; True / False overrides it.
    `stop_after_epochs` returns early leaving a checkpoint behind (tests of resume).
    `with_optimizer` is handed the loop's optimizer before the first step (federated clients
    carry their AdamW moments from round to round through it).
    """

    checkpoint_dir: Path | None = None
    resume: bool = False
    progress: bool | None = None
    stop_after_epochs: int | None = None
    with_optimizer: Callable[[torch.optim.Optimizer], None] | None = None  # handed the AdamW first

    def train(
        self,
        model: Recommender,
        net: torch.nn.Module,
        batches: BatchFn,
        n_batches: int,
        cfg: TrainConfig,
        valid: EvalSplit | None,
        *,
        spent_s: float = 0.0,
        after_validations: float = 0.0,
    ) -> TrainOutcome:
        from soutui.training import loop

        if self.progress is not None:
            cfg = replace(cfg, progress=self.progress)
        validate = (lambda: self.validate(model, valid)) if valid is not None and len(valid) else None
        ckpt = Path(self.checkpoint_dir) if self.checkpoint_dir is not None else None
        return loop.train(
            net, batches, n_batches, validate, cfg, ckpt, self.resume, self.stop_after_epochs,
            spent_s=spent_s, after_validations=after_validations, with_optimizer=self.with_optimizer,
        )  # fmt: skip

    def validate(self, model: Recommender, valid: EvalSplit) -> float:
        ranks, _ = target_ranks(model, valid)
        return ranking_metrics(ranks, (10,))[VALID_METRIC]

    def blend_weights(
        self, parts: PartsFn, valid: EvalSplit, weights: Sequence[float]
    ) -> list[dict[float, float]]:
        from soutui.training.cooc import blend_weights

        return blend_weights(parts, valid, weights)
