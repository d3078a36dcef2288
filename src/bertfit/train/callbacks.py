"""The trainer's per-evaluation hook: callbacks that see each evaluation and may stop training.

After each evaluation (every epoch, and every ``trainer.eval_every_steps`` steps) the trainer
calls each of its callbacks with an :class:`Evaluation`. A callback that returns True asks to
stop: the run then ends after this evaluation, as a finished run (its last checkpoint says so,
the best model so far is the run's model, and ``TrainResult.stopped_early`` is True). This is
where early stopping and a hyperparameter search's pruning hang, without editing the loop::

    def prune(evaluation):
        trial.report(evaluation.record["dev_accuracy"], evaluation.step)
        return trial.should_prune()  # then raise optuna.TrialPruned after fit returns

Under ``torchrun`` every process evaluates the same model on the same dev data, so the
records agree; the decision is agreed too (stop if any process's callbacks ask), so a callback
may run on one process only, such as a search's reporting on process 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bertfit.train import distributed


@dataclass(frozen=True)
class Evaluation:
    """One evaluation, as a callback sees it.

    ``record`` is its ``history.jsonl`` record (metrics named ``dev_<metric>``, or
    ``<split>_<metric>`` for several dev sets); ``history`` every record so far, this one last
    (restored with a resumed run, so a callback that reads it needs no state of its own);
    ``best`` the best record after this one; ``improved`` whether this one is the new best.
    """

    step: int
    epoch: int
    record: dict
    history: tuple[dict, ...]
    best: dict | None
    improved: bool


#: A per-evaluation callback: True asks to stop training after this evaluation.
EvaluationCallback = Callable[[Evaluation], "bool | None"]


def asked_to_stop(callbacks: Sequence[EvaluationCallback], evaluation: Evaluation, device) -> bool:
    """Call every callback with ``evaluation``; whether any of them, on any process, asked to
    stop. Every process of a job must call this at each evaluation (it is a collective, on the
    training ``device``)."""
    asked = [bool(callback(evaluation)) for callback in callbacks]  # each sees every evaluation
    (stops,) = distributed.all_reduce_sum([float(any(asked))], device=device)
    return stops > 0
