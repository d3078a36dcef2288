"""Tests for bertfit.train.metrics against hand-computed values (and sklearn/scipy if present)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bertfit.errors import ConfigError
from bertfit.train.metrics import (
    METRICS,
    accuracy,
    compute_metrics,
    f1_score,
    matthews_corrcoef,
    pearson,
    spearman,
)

PRED = [1, 1, 0, 0, 1]
LABELS = [1, 0, 0, 1, 1]  # tp = 2, fp = 1, fn = 1, tn = 1


def test_accuracy():
    assert accuracy([1, 0, 1, 1], [1, 1, 1, 0]) == 0.5
    assert accuracy(np.array([2, 0, 1]), np.array([2, 0, 1])) == 1.0


def test_f1_of_the_positive_class():
    assert f1_score(PRED, LABELS) == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    # Class 0: predicted at 2 and 3, labelled at 1 and 2 -> tp 1, fp 1, fn 1.
    assert f1_score(PRED, LABELS, positive=0) == pytest.approx(0.5)


def test_f1_is_zero_when_nothing_positive_is_predicted():
    assert f1_score([0, 0, 0], [1, 0, 1]) == 0.0
    # Undefined (no positive label nor prediction): 0.0 by definition, not NaN.
    assert f1_score([0, 0, 0], [0, 0, 0]) == 0.0


def test_mcc_binary():
    # (tp*tn - fp*fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)) = (2 - 1) / sqrt(3*3*2*2)
    assert matthews_corrcoef(PRED, LABELS) == pytest.approx(1 / 6)
    assert matthews_corrcoef([0, 1, 1, 0], [0, 1, 1, 0]) == pytest.approx(1.0)
    assert matthews_corrcoef([1, 0, 0, 1], [0, 1, 1, 0]) == pytest.approx(-1.0)


def test_mcc_is_zero_for_a_single_class():
    assert matthews_corrcoef([1, 1, 1, 1], [0, 1, 1, 0]) == 0.0
    assert matthews_corrcoef([0, 1, 1, 0], [1, 1, 1, 1]) == 0.0
    assert matthews_corrcoef([1, 1], [1, 1]) == 0.0


def test_mcc_multiclass():
    labels = [0, 1, 2, 0, 1, 2]
    pred = [0, 2, 1, 0, 0, 2]
    # Confusion trace 3 of 6; true counts (2, 2, 2); predicted counts (3, 1, 2):
    # (3*6 - 12) / sqrt((36 - 14) * (36 - 12)) = 6 / sqrt(528)
    assert matthews_corrcoef(pred, labels) == pytest.approx(6 / math.sqrt(528))


def test_pearson():
    # dx = (-1.5, -.5, .5, 1.5), dy = (-3, -1, 0, 4): 11 / sqrt(5 * 26)
    assert pearson([1, 2, 3, 4], [2, 4, 5, 9]) == pytest.approx(11 / math.sqrt(130))
    assert pearson([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)


def test_correlations_of_a_constant_are_zero():
    assert pearson([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) == 0.0
    assert spearman([1.0, 2.0, 3.0], [5.0, 5.0, 5.0]) == 0.0


def test_correlations_of_non_finite_inputs_are_nan():
    assert math.isnan(pearson([1.0, float("nan"), 3.0], [1.0, 2.0, 3.0]))
    assert math.isnan(spearman([1.0, 2.0, 3.0], [1.0, float("inf"), 3.0]))


def test_spearman_averages_tied_ranks():
    # Ranks of x are (1, 2.5, 2.5, 4); of y (1, 3, 2, 4): 4.5 / sqrt(4.5 * 5).
    # Ranking ties in order of appearance would give 0.8 instead.
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(4.5 / math.sqrt(22.5))
    # Three-way and two-way ties, against ranks written out by hand.
    x = [10, 20, 10, 30, 20, 10]
    y = [6, 5, 4, 3, 2, 1]
    ranks = [2, 4.5, 2, 6, 4.5, 2]
    assert spearman(x, y) == pytest.approx(pearson(ranks, [6, 5, 4, 3, 2, 1]))


def test_spearman_ignores_monotone_transforms():
    x = np.array([0.3, -1.2, 2.5, 0.0, 7.0])
    y = np.array([1.0, 0.1, 3.0, 0.5, 2.0])
    assert spearman(np.exp(x), y) == pytest.approx(spearman(x, y))
    assert spearman(x, y) == pytest.approx(0.9)  # one swapped pair: 1 - 6*2 / (5*24)


def test_compute_metrics_gives_plain_floats_in_order():
    result = compute_metrics(["f1", "accuracy"], np.array(PRED), np.array(LABELS))
    assert list(result) == ["f1", "accuracy"]
    assert result == {"f1": pytest.approx(2 / 3), "accuracy": pytest.approx(0.6)}
    assert all(type(value) is float for value in result.values())

    scores = compute_metrics(["pearson", "spearman"], np.float32([1, 2, 3]), [1.0, 2.0, 4.0])
    assert all(type(value) is float for value in scores.values())
    assert scores["spearman"] == pytest.approx(1.0)
    assert compute_metrics([], PRED, LABELS) == {}


GLUE_METRICS = ["accuracy", "f1", "matthews_correlation", "pearson", "spearman"]
MULTI_LABEL_METRICS = ["micro_f1", "macro_f1", "subset_accuracy"]


def test_every_glue_metric_name_is_known():
    assert sorted(METRICS) == sorted(GLUE_METRICS + MULTI_LABEL_METRICS)
    assert set(compute_metrics(GLUE_METRICS, PRED, LABELS)) == set(GLUE_METRICS)


def test_multi_label_metrics_agree_with_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    labels = (rng.random((200, 5)) < [0.5, 0.3, 0.1, 0.05, 0.0]).astype(int)
    pred = np.where(rng.random((200, 5)) < 0.8, labels, 1 - labels)
    pred[:, 4] = 0  # a label neither present nor predicted: its F1 is 0
    scores = compute_metrics(MULTI_LABEL_METRICS, pred, labels)
    assert scores["micro_f1"] == pytest.approx(metrics.f1_score(labels, pred, average="micro"))
    assert scores["macro_f1"] == pytest.approx(
        metrics.f1_score(labels, pred, average="macro", zero_division=0)
    )
    assert scores["subset_accuracy"] == pytest.approx(metrics.accuracy_score(labels, pred))


@pytest.mark.parametrize("name", MULTI_LABEL_METRICS)
def test_multi_label_metrics_refuse_rows_of_other_shapes(name):
    with pytest.raises(ValueError, match="of one shape"):
        METRICS[name]([[1, 0]], [[1, 0, 1]])
    with pytest.raises(ValueError, match="of one shape"):
        METRICS[name]([1, 0], [1, 0])
    with pytest.raises(ValueError, match="no predictions"):
        METRICS[name](np.zeros((0, 2)), np.zeros((0, 2)))


def test_unknown_metric_names_the_closest():
    with pytest.raises(ConfigError, match=r"'acuracy'.*did you mean 'accuracy'"):
        compute_metrics(["acuracy"], PRED, LABELS)
    with pytest.raises(ConfigError, match="'mcc'"):
        compute_metrics(["mcc"], PRED, LABELS)


@pytest.mark.parametrize("metric", [METRICS[name] for name in GLUE_METRICS])
def test_mismatched_or_empty_inputs_are_refused(metric):
    with pytest.raises(ValueError, match="3 predictions for 2 labels"):
        metric([1, 0, 1], [1, 0])
    with pytest.raises(ValueError, match="no predictions"):
        metric([], [])
    with pytest.raises(ValueError, match="1-D"):
        metric([[0.1, 0.9]], [1])


def test_against_sklearn_and_scipy():
    metrics = pytest.importorskip("sklearn.metrics")
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    pred = np.where(rng.random(200) < 0.7, labels, 1 - labels)
    assert accuracy(pred, labels) == pytest.approx(metrics.accuracy_score(labels, pred))
    assert f1_score(pred, labels) == pytest.approx(metrics.f1_score(labels, pred))
    assert matthews_corrcoef(pred, labels) == pytest.approx(metrics.matthews_corrcoef(labels, pred))
    labels3, pred3 = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    assert matthews_corrcoef(pred3, labels3) == pytest.approx(
        metrics.matthews_corrcoef(labels3, pred3)
    )
    # Scores rounded to one decimal to create many ties.
    x = np.round(rng.normal(size=300), 1)
    y = np.round(x + rng.normal(size=300), 1)
    assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0])
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0])
