"""Which evaluation's model a run keeps: the best by the main metric on the first dev set
(``trainer.main_metric``, else the task's first metric)."""

from __future__ import annotations

import numpy as np


class BestModel:
    """The best evaluation record so far and its dev logits.

    ``key`` is the record key that decides, such as ``dev_accuracy`` (higher is better); None
    (no dev set) keeps the latest model. ``logits`` are the best evaluation's logits per dev
    split when this process computed them, None when the best came from before a resume
    (calibration fits on them, see :func:`bertfit.train.calibrate.calibrate_trained`).
    """

    def __init__(self, key: str | None = None, record: dict | None = None) -> None:
        self.key = key
        self.record = record
        self.logits: dict[str, np.ndarray] | None = None

    def is_better(self, record: dict) -> bool:
        """Whether ``record`` beats the best so far (ties keep the earlier one)."""
        if self.key is None:
            return True  # no dev set: the latest model is the one to keep
        return self.record is None or record[self.key] > self.record[self.key]

    def consider(self, record: dict, logits: dict[str, np.ndarray]) -> bool:
        """Keep ``record`` (and its logits) if it is better; returns whether it was."""
        if not self.is_better(record):
            return False
        self.record, self.logits = record, logits
        return True
