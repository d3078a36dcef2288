"""`bertfit plot`: valid images of sensible size, drawing exactly the numbers bertfit computes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from bertfit.cli import main
from bertfit.data.readers import read_glue_split
from bertfit.data.tasks import MRPC
from bertfit.errors import BertfitError, ConfigError
from bertfit.inference import TextClassifier, predict_logits
from bertfit.text.processor import TextProcessor
from bertfit.train.evaluate import evaluate_examples
from bertfit.train.optim import OptimizationConfig, learning_rate_schedule
from bertfit.viz import data as viz_data
from bertfit.viz import figures, plots

from conftest import make_tiny_classifier, write_synthetic_glue

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path, min_width=500, min_height=300):
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
    assert min_width <= width <= 4000 and min_height <= height <= 4000, image.size
    assert path.stat().st_size > 5_000  # drawn, not blank


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("plots")
    make_tiny_classifier(root).save_pretrained(root / "tiny")
    write_synthetic_glue(root / "glue", n_train=96, n_dev=40)
    run = root / "run"
    code = main(["train", "--model", str(root / "tiny"), "--data-dir", str(root / "glue"),
                 "--output", str(run), "--epochs", "2", "--batch-size", "16",
                 "--learning-rate", "3e-3", "--max-seq-length", "32", "--quiet"])  # fmt: skip
    assert code == 0
    return run


# -- schedule -----------------------------------------------------------------------------------


def test_schedule_plot_draws_the_schedules_points_and_the_rates_used(run, tmp_path):
    output, data_file = tmp_path / "schedule.png", tmp_path / "schedule.json"
    assert main(["plot", "schedule", str(run), "-o", str(output), "--data", str(data_file)]) == 0
    assert_png(output)
    config = json.loads((run / "config.json").read_text())["optimizer"]
    schedule = learning_rate_schedule(OptimizationConfig.from_dict(config))
    drawn = json.loads(data_file.read_text())
    total = config["total_steps"]
    assert drawn["total_steps"] == total == 12 and len(drawn["steps"]) == 1001
    np.testing.assert_array_equal(drawn["steps"], np.linspace(0, total, 1001))
    assert drawn["learning_rates"] == [schedule(step) for step in drawn["steps"]]
    # The rates training used, from steps.jsonl, lie on the schedule.
    assert drawn["used_learning_rates"] == [schedule(step) for step in drawn["used_steps"]]
    assert drawn["used_steps"] == list(range(total))


def test_schedule_figure_lines_hold_the_data(run):
    data, figure = plots.plot_schedule(run)
    xy = figure.axes[0].lines[0].get_xydata()
    np.testing.assert_array_equal(xy[:, 0], data.steps)
    np.testing.assert_array_equal(xy[:, 1], data.learning_rates)
    used = figure.axes[0].lines[1].get_xydata()
    np.testing.assert_array_equal(used[:, 1], data.used_learning_rates)


def test_schedule_of_an_optimizer_json_and_of_a_config_with_overrides(tmp_path, run):
    # The tutorial's serialized optimizer config, as_dict() to JSON.
    optimizer = OptimizationConfig(learning_rate=2e-5, total_steps=345, warmup_steps=34)
    (tmp_path / "optimizer.json").write_text(json.dumps(optimizer.as_dict()))
    data, _ = plots.plot_schedule(tmp_path / "optimizer.json", tmp_path / "o.png", points=346)
    assert list(data.steps) == list(range(346))
    assert list(data.learning_rates) == [learning_rate_schedule(optimizer)(s) for s in range(346)]
    assert data.warmup_steps == 34 and data.peak_learning_rate == pytest.approx(2e-5 * 311 / 345)
    # Overrides change the horizon: 4 epochs of 6 batches.
    data, _ = plots.plot_schedule(run / "config.json", overrides=[("trainer.epochs", "4")])
    assert data.total_steps == 24 and data.used_steps is None
    (tmp_path / "nodata.yaml").write_text(f"data_dir: {tmp_path / 'nowhere'}\n")
    with pytest.raises(BertfitError, match="--total-steps N"):
        plots.plot_schedule(tmp_path / "nodata.yaml")
    data, _ = plots.plot_schedule(tmp_path / "nodata.yaml", total_steps=100)
    assert data.total_steps == 100 and data.warmup_steps == 6  # MRPC's recipe: 6% warmup


# -- inputs -------------------------------------------------------------------------------------


def test_inputs_plot_draws_the_packers_arrays(run, tmp_path):
    output, data_file = tmp_path / "inputs.png", tmp_path / "inputs.json"
    code = main(["plot", "inputs", str(run), "--start", "8", "--batch-size", "20",
                 "-o", str(output), "--data", str(data_file)])  # fmt: skip
    assert code == 0
    assert_png(output)
    classifier = TextClassifier.from_pretrained(run / "model")
    glue = json.loads((run / "config.json").read_text())["data_dir"]
    rows = read_glue_split(f"{glue}/train.tsv", MRPC, "train").select(list(range(8, 28)))
    expected = TextProcessor(classifier.tokenizer, 32)(rows.columns)
    drawn = json.loads(data_file.read_text())
    for name, array in expected.items():
        assert drawn[name] == array.tolist()
        assert array.shape == (20, 32)


def test_inputs_figure_images_hold_the_arrays_and_can_pad_to_the_longest(run):
    data, figure = plots.plot_inputs(run, batch_size=8, pad_to_longest=True)
    width = data.input_mask.sum(axis=1).max()
    assert data.input_word_ids.shape == (8, width) and width < 32
    for ax, name in zip(figure.axes[:3], viz_data.INPUT_NAMES):  # then come the colorbars
        np.testing.assert_array_equal(ax.images[0].get_array(), getattr(data, name))


def test_inputs_from_a_preset_needs_only_data(tmp_path):
    glue = write_synthetic_glue(tmp_path / "glue", n_train=8, n_dev=4)
    data, _ = plots.plot_inputs("minilm-l6", data_dir=str(glue), batch_size=4, max_seq_length=16)
    assert data.input_word_ids.shape == (4, 16) and (data.input_word_ids[:, 0] == 101).all()


# -- history ------------------------------------------------------------------------------------


def test_history_plot_draws_the_logged_records(run, tmp_path):
    output, data_file = tmp_path / "history.png", tmp_path / "history.json"
    assert main(["plot", "history", str(run), "-o", str(output), "--data", str(data_file)]) == 0
    assert_png(output, min_width=900, min_height=600)
    steps = [json.loads(line) for line in (run / "steps.jsonl").read_text().splitlines()]
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    drawn = json.loads(data_file.read_text())
    assert drawn["steps"] == steps and drawn["evaluations"] == history
    assert drawn["metric_keys"] == ["dev_accuracy", "dev_f1"]

    data, figure = plots.plot_history(run)
    loss_ax, metric_ax, lr_ax, norm_ax = figure.axes
    np.testing.assert_array_equal(loss_ax.lines[0].get_ydata(), [r["loss"] for r in steps])
    np.testing.assert_array_equal(loss_ax.lines[0].get_xdata(), [r["step"] for r in steps])
    accuracy = metric_ax.lines[0].get_xydata()
    assert accuracy.tolist() == [[r["step"], r["dev_accuracy"]] for r in history]
    np.testing.assert_array_equal(lr_ax.lines[0].get_ydata(), [r["learning_rate"] for r in steps])
    np.testing.assert_array_equal(norm_ax.lines[0].get_ydata(), [r["grad_norm"] for r in steps])


def test_moving_average_is_a_trailing_mean():
    values = np.array([1.0, 3.0, 5.0, 7.0])
    np.testing.assert_allclose(viz_data.moving_average(values, 2), [1, 2, 4, 6])
    np.testing.assert_allclose(viz_data.moving_average(values, 1), values)


# -- confusion ----------------------------------------------------------------------------------


def test_confusion_plot_counts_the_models_predictions(run, tmp_path):
    output, data_file = tmp_path / "confusion.png", tmp_path / "confusion.json"
    assert main(["plot", "confusion", str(run), "-o", str(output), "--data", str(data_file)]) == 0
    assert_png(output, min_width=300, min_height=300)
    classifier = TextClassifier.from_pretrained(run / "model")
    glue = json.loads((run / "config.json").read_text())["data_dir"]
    dev = read_glue_split(f"{glue}/dev.tsv", MRPC, "dev")
    logits = predict_logits(classifier.model, classifier.encode(dev.columns))
    expected = np.zeros((2, 2), dtype=int)
    for truth, predicted in zip(dev.labels, logits.argmax(axis=-1)):
        expected[truth, predicted] += 1
    drawn = json.loads(data_file.read_text())
    assert drawn["matrix"] == expected.tolist() and sum(map(sum, drawn["matrix"])) == 40
    assert drawn["label_names"] == list(MRPC.label_names)
    accuracy = evaluate_examples(classifier, MRPC, dev)["accuracy"]
    assert drawn["accuracy"] == pytest.approx(accuracy)


def test_confusion_figure_image_holds_the_matrix_or_its_shares():
    data = viz_data.ConfusionData(np.array([[5, 1], [0, 4]]), ["no", "yes"], "dev")
    np.testing.assert_array_equal(
        figures.confusion_figure(data).axes[0].images[0].get_array(), data.matrix
    )
    shares = figures.confusion_figure(data, normalize=True).axes[0].images[0].get_array()
    np.testing.assert_allclose(shares, [[5 / 6, 1 / 6], [0, 1]])
    assert data.accuracy == 0.9


def test_confusion_needs_classes_and_labels(tmp_path):
    regression = make_tiny_classifier(tmp_path, num_classes=1, problem_type="regression")
    regression.info.label_names = ["score"]
    with pytest.raises(ConfigError, match="regression"):
        viz_data.confusion_data(regression, None)


# -- errors and headlessness --------------------------------------------------------------------


def test_user_mistakes_exit_2_with_one_line_and_write_nothing(run, tmp_path, capsys):
    cases = [
        (["plot", "history", str(run), "-o", str(tmp_path / "h.jpg")], "expected a name ending"),
        (["plot", "history", str(tmp_path), "-o", str(tmp_path / "h.png")], "no history.jsonl"),
        (["plot", "confusion", str(tmp_path), "-o", str(tmp_path / "c.png")], "not a bertfit run"),
        (["plot", "inputs", str(run), "--start", "500", "-o", str(tmp_path / "i.png")], "start"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert list(tmp_path.iterdir()) == []


def test_figures_are_drawn_headless_without_pyplot_or_torch(tmp_path):
    # A fresh interpreter, so that nothing else in the test session has imported them.
    code = (
        "import sys, bertfit.cli, bertfit.inspect, bertfit.train.config_file; "
        "from bertfit.viz import figures, data; "
        "from bertfit.train.optim import OptimizationConfig as O; "
        "f = figures.schedule_figure(data.schedule_data(O(total_steps=10))); "
        f"figures.save_figure(f, {str(tmp_path / 's.png')!r}); "
        "print('matplotlib.pyplot' in sys.modules, 'torch' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "MPLBACKEND")}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]
    assert_png(tmp_path / "s.png")
