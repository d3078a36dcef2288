"""The trainer's per-evaluation hook: callbacks that see each evaluation and may stop training.

After each evaluation (every epoch, and every ``trainer.eval_every_steps`` steps) the trainer
calls each of its callbacks with an :class:`Evaluation`. A callback that returns True, or a
string saying why, asks to stop: the run then ends after this evaluation, as a finished run
(its last checkpoint says so, the best model so far is the run's model, and
``TrainResult.stopped`` says where and why). :class:`EarlyStopping` is one; a hyperparameter
search's pruning hangs here too, without editing the loop::

    def prune(evaluation):
        trial.report(evaluation.record[evaluation.key], len(evaluation.history))
        return trial.should_prune()  # then raise optuna.TrialPruned after fit returns

Under ``torchrun`` every process evaluates the same model on the same dev data, so the
records agree; the decision is agreed too (stop if any process's callbacks ask), so a callback
may run on one process only, such as a search's reporting on process 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bertfit.train import distributed


@dataclass(frozen=True)
class Evaluation:
    """One evaluation, as a callback sees it.

    ``record`` is its ``history.jsonl`` record (metrics named ``dev_<metric>``, or
    ``<split>_<metric>`` for several dev sets); ``history`` every record so far, this one last
    (restored with a resumed run, so a callback that reads it needs no state of its own);
    ``best`` the best record after this one; ``improved`` whether this one is the new best;
    ``key`` the record key of the main metric that picks the best model (``dev_accuracy``;
    None without a dev set), the value a search reports.
    """

    step: int
    epoch: int
    record: dict
    history: tuple[dict, ...]
    best: dict | None
    improved: bool
    key: str | None = None


#: A per-evaluation callback: True, or a reason (a string), asks to stop training after this
#: evaluation.
EvaluationCallback = Callable[[Evaluation], "bool | str | None"]


def asked_to_stop(
    callbacks: Sequence[EvaluationCallback], evaluation: Evaluation, device
) -> str | None:
    """Call every callback with ``evaluation``; why to stop if any of them, on any process,
    asked to (the first asking callback's reason on this process), else None. Every process
    of a job must call this at each evaluation (it is a collective, on the training
    ``device``)."""
    reasons = []
    for callback in callbacks:  # each sees every evaluation, even after one asked to stop
        answer = callback(evaluation)
        if answer:
            reasons.append(answer if isinstance(answer, str) else "a callback asked to stop")
    (stops,) = distributed.all_reduce_sum([float(bool(reasons))], device=device)
    if stops == 0:
        return None
    return reasons[0] if reasons else "a callback on another process asked to stop"


@dataclass(frozen=True)
class EarlyStopping:
    """Stop when ``key`` (the main metric, such as ``dev_accuracy``; higher is better) has not
    beaten the best value before it by more than ``delta`` in ``patience`` evaluations in a
    row, as Hugging Face's ``EarlyStoppingCallback`` does.

    It reads the evaluation's whole history, which a resumed run restores, so it keeps no
    state of its own and decides the same on every process. An evaluation without a finite
    value of ``key`` counts as one without improvement.
    """

    key: str
    patience: int
    delta: float = 0.0

    def __call__(self, evaluation: Evaluation) -> str | None:
        best, best_step, waited = None, None, 0
        for record in evaluation.history:
            value = record.get(self.key)
            usable = isinstance(value, (int, float)) and math.isfinite(value)
            if usable and (best is None or value > best + self.delta):
                waited = 0
            else:
                waited += 1
            if usable and (best is None or value > best):
                best, best_step = value, record.get("step")
        if waited < self.patience:
            return None
        by = f" by more than {self.delta:g}" if self.delta else ""
        found = f"best {best:.4f} at step {best_step}" if best is not None else "no value yet"
        return (
            f"{self.key} did not improve{by} in {self.patience} "
            f"evaluation{'s' * (self.patience != 1)} ({found})"
        )
