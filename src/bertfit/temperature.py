"""Temperature scaling: probabilities whose confidence matches how often they are right.

A fine-tuned classifier is usually over-confident. One temperature ``T`` divides every logit
before the softmax (Guo et al., 2017): it leaves the predicted class unchanged and only
stretches or flattens the probabilities. :func:`fit_temperature` finds the ``T`` that minimizes
the negative log-likelihood of a labelled (dev) set with ``torch.optim.LBFGS``; :func:`ece` and
:func:`nll` measure calibration before and after.

A multi-label model's labels are 0/1 rows [n, labels] instead of class ids: its temperature
divides the logits before each label's sigmoid and minimizes the binary cross-entropy, and
ECE and NLL are each label's (as a two-class problem), averaged over the labels.
"""

from __future__ import annotations

import numpy as np

from bertfit.errors import ConfigError
from bertfit.probabilities import softmax

#: Equal-width confidence bins of the expected calibration error.
ECE_BINS = 15
#: Temperatures are searched in this range (log-parametrized); beyond it the set is degenerate.
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0


def _check(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels)
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise ConfigError(f"calibration needs class logits [n, classes >= 2], got {logits.shape}")
    if labels.shape != (len(logits),):
        raise ConfigError(f"{len(logits)} logits rows but labels of shape {labels.shape}")
    if len(logits) == 0:
        raise ConfigError("calibration needs at least one labelled example")
    if not np.isfinite(logits).all():
        raise ConfigError("calibration: the logits hold NaN or infinite values")
    if labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() >= logits.shape[1]:
        raise ConfigError(f"labels must be class ids in 0..{logits.shape[1] - 1}")
    return logits, labels.astype(np.int64)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` under ``softmax(logits / temperature)``."""
    logits, labels = _check(logits, labels)
    scaled = logits / temperature
    shifted = scaled - scaled.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())


def ece(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error: over equal-width bins of the top probability, the mean
    |accuracy - confidence| weighted by the share of examples in each bin."""
    probabilities, labels = _check(probabilities, labels)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    # Bin b holds confidences in (b/bins, (b+1)/bins]; a confidence of exactly 0 joins bin 0.
    which = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            gap = abs(correct[members].mean() - confidence[members].mean())
            total += members.mean() * gap
    return float(total)


def _multi_label_check(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels)
    if logits.ndim != 2 or labels.shape != logits.shape or len(logits) == 0:
        raise ConfigError(
            f"multi-label calibration needs logits and 0/1 labels of one shape [n, labels], "
            f"got {logits.shape} and {labels.shape}"
        )
    if not np.isfinite(logits).all():
        raise ConfigError("calibration: the logits hold NaN or infinite values")
    if not np.isin(labels, (0, 1)).all():
        raise ConfigError("multi-label calibration needs labels of 0 and 1")
    return logits, labels.astype(np.int64)


def multi_label_metrics(
    logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0
) -> dict[str, float]:
    """``{"ece": ..., "nll": ...}`` of a multi-label model: each label as a two-class problem
    (``[1 - p, p]``, ``p = sigmoid(logit / temperature)``), averaged over the labels."""
    logits, labels = _multi_label_check(logits, labels)
    eces, nlls = [], []
    for column, targets in zip(logits.T, labels.T):
        pair = np.stack([np.zeros_like(column), column], axis=1)  # softmax([0, x]) = [1-p, p]
        eces.append(ece(softmax(pair, temperature), targets))
        nlls.append(nll(pair, targets, temperature))
    return {"ece": float(np.mean(eces)), "nll": float(np.mean(nlls))}


def calibration_metrics(
    logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0
) -> dict[str, float]:
    """``{"ece": ..., "nll": ...}`` of ``logits`` scaled by ``temperature`` (a multi-label
    model's, when ``labels`` are 0/1 rows [n, labels]: :func:`multi_label_metrics`)."""
    if np.ndim(labels) == 2:
        return multi_label_metrics(logits, labels, temperature)
    return {
        "ece": ece(softmax(np.asarray(logits, dtype=np.float64), temperature), labels),
        "nll": nll(logits, labels, temperature),
    }


def fit_temperature(logits: np.ndarray, labels: np.ndarray, max_iter: int = 100) -> float:
    """The temperature minimizing the NLL of ``labels`` under ``softmax(logits / T)`` (for
    0/1 rows [n, labels], the binary cross-entropy under ``sigmoid(logits / T)``).

    Optimizes ``log T`` (so ``T`` stays positive) in float64 with ``torch.optim.LBFGS`` and a
    strong-Wolfe line search, from ``T = 1``; the result is clipped to
    [:data:`MIN_TEMPERATURE`, :data:`MAX_TEMPERATURE`] (a set the model gets all right pushes
    ``T`` toward 0, one it gets all wrong toward infinity).
    """
    import torch  # only fitting needs it; the torch-free runtime applies a stored temperature

    multi_label = np.ndim(labels) == 2  # 0/1 rows: each label's sigmoid and its BCE
    logits, labels = (_multi_label_check if multi_label else _check)(logits, labels)
    x = torch.from_numpy(logits)
    y = torch.from_numpy(labels)
    if multi_label:
        y = y.double()
        loss_of = torch.nn.functional.binary_cross_entropy_with_logits
    else:
        loss_of = torch.nn.functional.cross_entropy
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    # Tight tolerances: on a set the model gets (almost) all right the NLL is nearly flat in T,
    # and the default ones stop far from its minimum.
    optimizer = torch.optim.LBFGS(
        [log_t],
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=1e-12,
        tolerance_change=1e-12,
        line_search_fn="strong_wolfe",
    )
    low, high = np.log(MIN_TEMPERATURE), np.log(MAX_TEMPERATURE)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        # Outside the range the clamp's gradient is 0, so the search stops at its edge.
        temperature = log_t.clamp(low, high).exp()
        loss = loss_of(x / temperature, y)
        loss.backward()
        return loss

    optimizer.step(closure)
    temperature = float(log_t.detach().exp())
    if not np.isfinite(temperature):
        raise ConfigError("temperature fit diverged (the logits may be degenerate)")
    return float(np.clip(temperature, MIN_TEMPERATURE, MAX_TEMPERATURE))
