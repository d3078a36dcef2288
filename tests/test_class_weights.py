"""Class weights: ``--class-weights balanced``, weights by label name, none; recorded, resumed."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from bertfit.cli import main
from bertfit.data.tasks import MRPC, TASKS
from bertfit.data.user_files import Columns, build_user_task
from bertfit.errors import ConfigError
from bertfit.train.checkpoint import list_checkpoints
from bertfit.train.class_weights import class_weight_vector
from bertfit.train.config_file import load_run_config
from bertfit.train.losses import task_loss

from conftest import make_tiny_classifier, synthetic_pairs

MULTI = build_user_task(Columns("text", None, "tags"), "multi_label_classification", "abc")


def test_balanced_weights_are_scikit_learns():
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.array([0] * 70 + [1] * 30)
    ours = class_weight_vector("balanced", TASKS["cola"], labels)
    theirs = compute_class_weight("balanced", classes=np.array([0, 1]), y=labels)
    assert ours == pytest.approx(theirs)
    assert ours[1] > ours[0]  # the rare class weighs more
    mnli = np.array([0] * 5 + [1] * 3 + [2] * 2)
    theirs = compute_class_weight("balanced", classes=np.arange(3), y=mnli)
    assert class_weight_vector("balanced", TASKS["mnli"], mnli) == pytest.approx(theirs)


def test_weights_by_name_leave_the_others_at_one_and_none_is_none():
    weights = class_weight_vector({"equivalent": 0.5}, MRPC, np.array([0, 1]))
    assert weights.tolist() == [1.0, 0.5]
    assert class_weight_vector(None, MRPC, np.array([0, 1])) is None


def test_multi_label_balanced_weighs_each_labels_positives_by_its_negatives():
    labels = np.array([[1, 0, 1], [0, 0, 1], [0, 1, 1], [0, 0, 0]], dtype=np.float32)
    weights = class_weight_vector("balanced", MULTI, labels)
    assert weights == pytest.approx([3 / 1, 3 / 1, 1 / 3])


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"paraphrase": 2.0}, "trainer.class_weights: unknown label 'paraphrase' (the labels are"),
        ("balanced", "balanced weights need every label in the training set; 'equivalent'"),
        ({"equivalent": -1.0}, "trainer.class_weights.equivalent: expected a positive number"),
    ],
)
def test_bad_weights_name_the_key(setting, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        class_weight_vector(setting, MRPC, np.array([0, 0, 0]))


def test_a_regression_has_no_classes_to_weigh():
    with pytest.raises(ConfigError, match="stsb is a regression"):
        class_weight_vector("balanced", TASKS["stsb"], np.array([0.5, 1.0]))


def test_weighted_losses_weigh_each_example_by_its_class_or_each_positive_by_its_label():
    torch.manual_seed(0)
    logits, labels = torch.randn(6, 2), torch.tensor([0, 1, 1, 0, 1, 1])
    weights = torch.tensor([3.0, 0.5])
    per_example = F.cross_entropy(logits, labels, reduction="none") * weights[labels]
    expected = per_example.mean()  # a mean over examples: shards add up to the whole batch
    assert task_loss(logits, labels, "single_label_classification", weights) == pytest.approx(
        float(expected)
    )
    assert task_loss(logits, labels, "single_label_classification") != pytest.approx(
        float(expected)
    )
    targets = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    scores = torch.randn(3, 2)
    p = torch.sigmoid(scores)
    by_hand = -(weights * targets * p.log() + (1 - targets) * (1 - p).log()).mean()
    loss = task_loss(scores, targets, "multi_label_classification", weights)
    assert float(loss) == pytest.approx(float(by_hand), rel=1e-5)


def test_the_config_takes_balanced_or_a_mapping_from_a_file_or_an_override(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("trainer:\n  class_weights: {'no': 1.0, 'yes': 3}\n")
    assert load_run_config(path).trainer.class_weights == {"no": 1.0, "yes": 3}
    path.write_text("trainer:\n  class_weights: {no: 1.0}\n")  # YAML 1.1: no is false
    with pytest.raises(ConfigError, match="label names must be text, got False"):
        load_run_config(path).validate()
    config = load_run_config(None, [("trainer.class_weights", "balanced")])
    assert config.trainer.class_weights == "balanced"
    config = load_run_config(None, [("trainer.class_weights", "{neg: 1, pos: 4}")])
    assert config.trainer.class_weights == {"neg": 1, "pos": 4}
    with pytest.raises(ConfigError, match="trainer.class_weights: expected one of"):
        load_run_config(None, [("trainer.class_weights", "balance")])


# -- end to end ---------------------------------------------------------------------------------


def _skewed_csv(path: Path, n: int, seed: int) -> Path:
    """Pairs whose label is 'rare' for one row in five, 'common' otherwise."""
    (first, second), _ = synthetic_pairs(n, seed)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["a", "b", "label"])
        for i, (a, b) in enumerate(zip(first, second)):
            writer.writerow([a, b, "rare" if i % 5 == 0 else "common"])
    return path


@pytest.fixture(scope="module")
def skewed(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("weights")
    model = root / "tiny-model"
    make_tiny_classifier(root).save_pretrained(model)
    return {
        "root": root,
        "model": model,
        "train": _skewed_csv(root / "train.csv", 64, 1),
        "dev": _skewed_csv(root / "dev.csv", 20, 2),
    }


def _train(skewed: dict, run: Path, *extra: str) -> list[str]:
    args = ["train", "--train", str(skewed["train"]), "--dev", str(skewed["dev"])]
    args += ["--text-a", "a", "--text-b", "b", "--model", str(skewed["model"])]
    args += ["--output", str(run), "--epochs", "2", "--batch-size", "8", "--precision", "fp32"]
    args += ["--max-seq-length", "32", "--learning-rate", "3e-3", "--quiet", *extra]
    return args


def _losses(run: Path) -> list[float]:
    lines = (run / "steps.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines]


def test_balanced_weights_train_are_recorded_as_given_and_survive_a_resume(
    skewed, tmp_path, capsys
):
    run = tmp_path / "weighted"
    args = _train(skewed, run, "--class-weights", "balanced", "--checkpoint-every", "4")
    assert main([*args, "--keep-checkpoints", "10"]) == 0
    out = capsys.readouterr().out
    # 64 rows, 13 of them rare: 64 / (2 * 51) and 64 / (2 * 13).
    assert f"class weights (balanced): common {64 / 102:.4g}, rare {64 / 26:.4g}" in out
    assert json.loads((run / "config.json").read_text())["trainer"]["class_weights"] == "balanced"
    assert main(_train(skewed, tmp_path / "plain")) == 0
    assert _losses(run)[0] != _losses(tmp_path / "plain")[0]  # the weights change the loss

    # Resume from the middle of the first epoch: the same steps, the same final weights.
    resumed = tmp_path / "resumed"
    shutil.copytree(run, resumed)
    for checkpoint in list_checkpoints(resumed / "checkpoints"):
        if checkpoint.name != "step-4":
            shutil.rmtree(checkpoint)
    (resumed / "results.json").unlink()
    assert main(["train", "--resume", str(resumed), "--quiet"]) == 0
    assert _losses(resumed) == _losses(run)
    ours = load_file(list_checkpoints(resumed / "checkpoints")[-1] / "model.safetensors")
    theirs = load_file(list_checkpoints(run / "checkpoints")[-1] / "model.safetensors")
    assert all(torch.equal(ours[name], theirs[name]) for name in ours)


def test_weights_by_name_from_the_flag_are_recorded_as_given(skewed, tmp_path, capsys):
    run = tmp_path / "run"
    assert main([*_train(skewed, run, "--class-weights", "rare=4"), "--max-steps", "1"]) == 0
    assert "class weights (as given): common 1, rare 4" in capsys.readouterr().out
    recorded = json.loads((run / "config.json").read_text())["trainer"]["class_weights"]
    assert recorded == {"rare": 4.0}


def test_a_weight_for_an_unknown_label_is_one_line_and_writes_nothing(skewed, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(_train(skewed, run, "--class-weights", "rare=4,typo=2")) == 2
    error = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert error == [
        "bertfit: error: trainer.class_weights: unknown label 'typo' (the labels are: common, rare)"
    ]
    assert not run.exists()
    with pytest.raises(SystemExit) as stopped:  # argparse's own usage error
        main(_train(skewed, run, "--class-weights", "rare=0"))
    assert stopped.value.code == 2
    assert "must be a positive number, got 0" in capsys.readouterr().err
