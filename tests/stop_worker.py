"""A ``torchrun`` worker for ``tests/test_distributed.py``: a callback on process 0 only stops.

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/stop_worker.py OUT

Every process trains the tiny classifier with an evaluation every 2 steps; only process 0 has
a callback, which asks to stop at the second evaluation (as a search's pruner reporting from
process 0 would). Both processes must stop at the same step: one that trained on alone would
wait forever in the next collective. Each writes ``OUT/stopped-RANK.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bertfit.data.readers import TextExamples
from bertfit.data.tasks import MRPC
from bertfit.train import distributed
from bertfit.train.config import TrainerConfig
from bertfit.train.optim import OptimizationConfig
from bertfit.train.trainer import Trainer

from conftest import make_tiny_classifier, synthetic_pairs


def main(out: Path) -> None:
    context = distributed.init_from_env("cpu")
    scratch = out / f"rank-{context.rank}"
    scratch.mkdir(parents=True, exist_ok=True)
    evaluations = []

    def stop_at_the_second(evaluation):
        evaluations.append(evaluation.step)
        return len(evaluations) == 2

    trainer = Trainer(
        make_tiny_classifier(scratch),
        MRPC,
        TrainerConfig(epochs=2, batch_size=4, seed=0, precision="fp32", eval_every_steps=2),
        OptimizationConfig(learning_rate=3e-3),
        progress=False,
        callbacks=[stop_at_the_second] if context.is_main else [],
    )
    train = trainer.encode(TextExamples(*synthetic_pairs(40, 1), "train"))
    dev = trainer.encode(TextExamples(*synthetic_pairs(8, 2), "dev"))
    result = trainer.fit(train, dev)
    record = {"steps": result.steps, "stopped_early": result.stopped_early}
    record["evaluated_at"] = [r["step"] for r in result.history]
    (out / f"stopped-{context.rank}.json").write_text(json.dumps(record))
    distributed.shutdown(wait_for_others=True)
    distributed.exit_process(0)  # see exit_process: DDP keeps the group alive until teardown


if __name__ == "__main__":
    main(Path(sys.argv[1]))
