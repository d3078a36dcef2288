"""Calibrate a run: fit its softmax temperature on the dev set and record it.

After training (:func:`bertfit.train.run.train_run`) and by ``bertfit calibrate RUN`` for a run
trained before (:func:`bertfit.train.run.calibrate_run`), the best model's dev logits give one
temperature (:func:`bertfit.temperature.fit_temperature`). After training they are the logits
of the evaluation that chose the best model, so calibrating costs no second pass over the dev
sets; ``bertfit calibrate`` evaluates the saved model again, in fp32. The temperature is
written into ``RUN/model/bertfit.json``, from where ``predict``, ``evaluate`` and every export
take it, and ``RUN/calibration.json`` records the fit: the temperature, the examples it was
fitted on, and the dev ECE and NLL before and after it.
Regression tasks have no class probabilities and are skipped.

A multi-label model's temperature is fitted by the binary cross-entropy, and then its decision
thresholds, one per label (:func:`bertfit.thresholds.fit_thresholds`), on the dev probabilities
at that temperature; ``bertfit.json`` records them beside it and ``calibration.json`` the dev
micro and macro F1 at 0.5 and at the fitted thresholds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bertfit.config import read_json, write_json
from bertfit.data.tasks import TaskSpec
from bertfit.errors import ConfigError
from bertfit.inference import TextClassifier
from bertfit.paths import BERTFIT_FILE, CALIBRATION_FILE, RUN_MODEL_DIR, find_model_dir
from bertfit.probabilities import chosen_labels, sigmoid
from bertfit.problem import REGRESSION
from bertfit.temperature import calibration_metrics, fit_temperature
from bertfit.thresholds import fit_thresholds
from bertfit.train.evaluate import EncodedExamples, logits_of_encoded
from bertfit.train.metrics import macro_f1, micro_f1


@dataclass
class Calibration:
    """One temperature fit: where, on how many examples, and what it changed."""

    temperature: float
    splits: list[str]
    examples: int
    before: dict[str, float]  # ece and nll at temperature 1
    after: dict[str, float]  # ece and nll at the fitted temperature
    # Multi-label: each label's fitted threshold, and the dev micro/macro F1 at 0.5 and at them.
    thresholds: dict[str, float] | None = None
    decisions: dict[str, dict[str, float]] | None = None

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return asdict(self)


def fit_calibration(
    classifier: TextClassifier, dev: Mapping[str, EncodedExamples], batch_size: int = 64
) -> Calibration:
    """Fit the temperature of ``classifier`` on its encoded dev sets (all of them together)."""
    if not dev:
        raise ConfigError("calibration needs a labelled dev set")
    logits = {split: logits_of_encoded(classifier, data, batch_size) for split, data in dev.items()}
    return calibration_of_logits(logits, dev, classifier.info.label_names)


def calibration_of_logits(
    logits: Mapping[str, np.ndarray],
    dev: Mapping[str, EncodedExamples],
    label_names: Sequence[str] | None = None,
) -> Calibration:
    """Fit one temperature on dev logits already computed (one row per text, per split); for
    a multi-label model (0/1 label rows) also its thresholds, named by ``label_names``."""
    labels = np.concatenate([data.labels for data in dev.values()])
    stacked = np.concatenate([logits[split] for split in dev])
    temperature = fit_temperature(stacked, labels)
    calibration = Calibration(
        temperature=temperature,
        splits=list(dev),
        examples=len(labels),
        before=calibration_metrics(stacked, labels),
        after=calibration_metrics(stacked, labels, temperature),
    )
    if labels.ndim == 2:
        names = list(label_names) if label_names is not None else list(range(labels.shape[1]))
        thresholds = fit_thresholds(sigmoid(stacked.astype(np.float64), temperature), labels)
        calibration.thresholds = dict(zip(names, thresholds.tolist()))
        calibration.decisions = {
            "at_0.5": _f1s(chosen_labels(stacked, temperature), labels),
            "fitted": _f1s(chosen_labels(stacked, temperature, thresholds), labels),
        }
    return calibration


def _f1s(chosen: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return {"micro_f1": micro_f1(chosen, labels), "macro_f1": macro_f1(chosen, labels)}


def record_calibration(model_dir: Path, calibration: Calibration) -> Path:
    """Write the temperature into the model's ``bertfit.json`` and the fit into the run's
    ``calibration.json`` (beside ``model/``; in a bare model directory, inside it). Each file
    is written atomically. Returns the path of ``calibration.json``."""
    info = read_json(model_dir / BERTFIT_FILE)
    info["temperature"] = calibration.temperature
    if calibration.thresholds is not None:  # in label order, as bertfit.json names them
        info["thresholds"] = [calibration.thresholds[name] for name in info["label_names"]]
    write_json(model_dir / BERTFIT_FILE, info)
    is_run = model_dir.name == RUN_MODEL_DIR and (model_dir.parent / "config.json").is_file()
    record = (model_dir.parent if is_run else model_dir) / CALIBRATION_FILE
    write_json(record, calibration.to_dict())
    return record


def calibrate_trained(
    run_dir: Path,
    task: TaskSpec,
    dev: Mapping[str, EncodedExamples],
    best_logits: Mapping[str, np.ndarray] | None = None,
    batch_size: int = 64,
) -> Calibration | None:
    """Calibrate the best model a run just saved, on the dev sets it was evaluated on.

    ``best_logits`` are that model's dev logits from the evaluation that chose it (in the run's
    precision); with them no second pass over the dev sets is needed. Without them (the best
    model was chosen before a resume) the saved model is loaded and evaluated again, in fp32.
    None when there is nothing to calibrate: a regression task, or no dev set.
    """
    if task.problem_type == REGRESSION or not dev:
        return None
    model_dir = find_model_dir(run_dir)
    if best_logits is not None and set(best_logits) == set(dev):
        calibration = calibration_of_logits(best_logits, dev, task.label_names)
    else:
        classifier = TextClassifier.from_pretrained(model_dir)
        calibration = fit_calibration(classifier, dev, batch_size)
    record_calibration(model_dir, calibration)
    return calibration
