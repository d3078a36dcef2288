"""Long texts: overlapping windows in training, mean of window logits in evaluation/prediction."""

from __future__ import annotations

import random

import numpy as np
import pytest

from bertfit.data.readers import TextExamples
from bertfit.data.tasks import get_task
from bertfit.errors import ConfigError
from bertfit.inference import mean_by_owner
from bertfit.text.packing import window_segments
from bertfit.train.config import RunConfig, TrainerConfig
from bertfit.train.optim import OptimizationConfig
from bertfit.train.trainer import Trainer

from conftest import COOL, FILLERS, WARM, make_tiny_classifier


def test_windows_cover_the_text_with_the_given_stride():
    windows = window_segments([list(range(10))], seq_length=6, stride=2)
    assert windows == [[[0, 1, 2, 3]], [[2, 3, 4, 5]], [[4, 5, 6, 7]], [[6, 7, 8, 9]]]
    # The tail is always covered, even when the stride overshoots it.
    assert window_segments([list(range(9))], 6, 3)[-1] == [[5, 6, 7, 8]]
    # A second segment rides along in every window, cut to half the budget at most.
    pairs = window_segments([list(range(10)), [100, 101, 102, 103, 104, 105]], 9, 3)
    assert [w[1] for w in pairs] == [[100, 101, 102]] * 4
    assert [w[0] for w in pairs] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [7, 8, 9]]
    assert window_segments([[1, 2, 3]], 6, 2) == [[[1, 2, 3]]]  # fits: one window
    with pytest.raises(ConfigError):
        window_segments([[1]], 6, 0)


def test_mean_by_owner_averages_each_texts_windows():
    logits = np.array([[1.0, 0.0], [3.0, 2.0], [0.0, 5.0]], dtype=np.float32)
    out = mean_by_owner(logits, np.array([0, 0, 1]), 2)
    assert out.tolist() == [[2.0, 1.0], [0.0, 5.0]]


def long_texts(n: int, seed: int) -> TextExamples:
    """600-word texts of filler; the label is the kind of colour named only after word 530."""
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        label = i % 2
        words = rng.choices(FILLERS, k=600)
        for position in rng.sample(range(530, 600), 30):  # only the tail names a colour
            words[position] = rng.choice(WARM if label else COOL)
        texts.append(" ".join(words))
        labels.append(label)
    return TextExamples([texts], labels, "synthetic")


EPOCHS = 2


def _trainer(tmp_path, window_stride):
    classifier = make_tiny_classifier(tmp_path)
    classifier.info.input_names = ["sentence"]
    classifier.info.window_stride = window_stride
    return Trainer(
        classifier,
        get_task("sst2"),
        TrainerConfig(epochs=EPOCHS, batch_size=32, seed=0),
        OptimizationConfig(learning_rate=3e-3),
        progress=False,
    )


@pytest.mark.slow
def test_a_label_far_past_the_window_is_learned_only_with_windows(tmp_path):
    train, dev = long_texts(160, 1), long_texts(60, 2)
    windowed = _trainer(tmp_path, window_stride=16)
    encoded_dev = windowed.encode(dev)
    assert len(encoded_dev) > 30 * len(dev)  # many windows per 600-token text
    result = windowed.fit(windowed.encode(train), encoded_dev)
    assert result.best["dev_accuracy"] >= 0.9
    # Prediction from raw strings aggregates the same way.
    predictions = windowed.classifier.logits(dev.columns).argmax(axis=-1)
    assert np.mean(predictions == np.array(dev.labels)) == result.history[-1]["dev_accuracy"]
    truncated = _trainer(tmp_path, window_stride=None)
    result = truncated.fit(truncated.encode(train), truncated.encode(dev))
    assert result.best["dev_accuracy"] <= 0.7  # the first 32 tokens say nothing


def test_window_stride_is_validated():
    with pytest.raises(ConfigError, match="window_stride"):
        RunConfig(max_seq_length=64, window_stride=64).validate()


def test_cli_records_the_stride_and_exports_windowed_models(tmp_path, tiny_model_dir):
    import json

    from bertfit.cli import main
    from bertfit.export.runtime import load_exported
    from bertfit.inference import TextClassifier

    from conftest import write_glue_task

    root = write_glue_task(tmp_path / "glue", "sst2")
    run = tmp_path / "run"
    args = ["train", "--task", "sst2", "--output", str(run), "--data-dir", str(root), "--quiet"]
    args += ["--model", str(tiny_model_dir), "--max-seq-length", "8", "--window-stride", "4"]
    assert main([*args, "--max-steps", "2"]) == 0
    assert json.loads((run / "model" / "bertfit.json").read_text())["window_stride"] == 4
    assert json.loads((run / "config.json").read_text())["window_stride"] == 4
    assert main(["evaluate", str(run), "--json"]) == 0
    assert main(["export", str(run), "--output", str(tmp_path / "export")]) == 0
    # The exported runtime averages the same windows as the PyTorch model.
    spec = json.loads((tmp_path / "export" / "classifier.json").read_text())
    assert spec["packing"]["window_stride"] == 4
    texts = ["the big cat sat on the mat and saw a small red dog .", "a cat"]
    exported = load_exported(tmp_path / "export")({"sentence": texts})["logits"]
    reference = TextClassifier.from_pretrained(run / "model").logits([texts])
    np.testing.assert_allclose(exported, reference, atol=1e-5)
