"""The ``bertfit`` command: a real run end to end, evaluate/predict, and one-line user errors."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bertfit.cli import main
from bertfit.data.readers import read_glue_split
from bertfit.data.tasks import MRPC
from bertfit.inference import TextClassifier

from conftest import write_mrpc_split, write_synthetic_glue


def bertfit(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the command in a subprocess, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "bertfit", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, pattern: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "error" in lines[0], result.stderr
    assert re.search(pattern, lines[0]), lines[0]


def leftovers(run_dir: Path) -> list[Path]:
    """Temporary files or staging directories that a complete run must not leave behind."""
    return [p for p in run_dir.rglob(".*")]


# -- a real run -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mrpc_slice(tmp_path_factory, request):
    """The first 96 train and 48 dev pairs of the real MRPC, in GLUE's layout."""
    from conftest import GLUE_DIR

    if not (GLUE_DIR / "MRPC" / "train.tsv").is_file():
        pytest.skip(f"real GLUE data not found at {GLUE_DIR}")
    root = tmp_path_factory.mktemp("glue")
    for split, n in (("train", 96), ("dev", 48)):
        lines = (GLUE_DIR / "MRPC" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()
        (root / "MRPC").mkdir(exist_ok=True)
        (root / "MRPC" / f"{split}.tsv").write_text("\n".join(lines[: n + 1]) + "\n")
    return root


@pytest.fixture(scope="module")
def minilm_run(mrpc_slice, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "mrpc"
    result = bertfit(
        "train", "--task", "mrpc", "--output", str(run_dir), "--data-dir", str(mrpc_slice),
        "--max-steps", "3", "--batch-size", "16", "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return run_dir, result


@pytest.mark.slow
def test_train_writes_a_complete_run_directory(minilm_run):
    run_dir, result = minilm_run
    assert "best model" in result.stdout
    config = json.loads((run_dir / "config.json").read_text())
    assert config["task"] == "mrpc" and config["optimizer"]["total_steps"] == 3
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert len(history) == 1 and history[0]["step"] == 3
    assert set(history[0]) >= {"train_loss", "learning_rate", "dev_accuracy", "dev_f1"}
    model_dir = run_dir / "model"
    hf_config = json.loads((model_dir / "config.json").read_text())
    assert hf_config["architectures"] == ["BertForSequenceClassification"]
    assert hf_config["num_labels"] == 2
    assert hf_config["id2label"] == {"0": "not_equivalent", "1": "equivalent"}
    info = json.loads((model_dir / "bertfit.json").read_text())
    assert info["task"] == "mrpc" and info["max_seq_length"] == 128 and info["lower_case"]
    assert (model_dir / "vocab.txt").is_file() and (model_dir / "model.safetensors").is_file()
    assert leftovers(run_dir) == []


@pytest.mark.slow
def test_run_loads_back_here_and_in_transformers(minilm_run, mrpc_slice):
    import torch
    from transformers import BertForSequenceClassification

    run_dir, _ = minilm_run
    classifier = TextClassifier.from_pretrained(run_dir / "model")
    dev = read_glue_split(mrpc_slice / "MRPC" / "dev.tsv", MRPC, "dev").select(list(range(8)))
    ours = classifier.logits(dev.columns)
    hf = BertForSequenceClassification.from_pretrained(run_dir / "model").eval()
    with torch.no_grad():
        for i in range(len(dev)):
            ids = classifier.encode([[dev.columns[0][i]], [dev.columns[1][i]]])[0]
            logits = hf(
                input_ids=torch.tensor([ids[0]]), token_type_ids=torch.tensor([ids[1]])
            ).logits
            assert torch.allclose(logits[0], torch.from_numpy(ours[i]), atol=1e-4)


@pytest.mark.slow
def test_evaluate_json_matches_training_metrics(minilm_run):
    run_dir, _ = minilm_run
    result = bertfit("evaluate", str(run_dir), "--split", "dev", "--json")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    calibration = {"ece_before", "ece_after", "nll_before", "nll_after"}
    assert set(metrics) == {"accuracy", "f1"} | calibration
    history = json.loads((run_dir / "history.jsonl").read_text().splitlines()[-1])
    assert metrics["accuracy"] == pytest.approx(history["dev_accuracy"])
    assert metrics["f1"] == pytest.approx(history["dev_f1"])


@pytest.mark.slow
def test_predict_pairs_and_files(minilm_run, tmp_path):
    run_dir, _ = minilm_run
    one = bertfit(
        "predict", str(run_dir), "--sentence1", "The cat sat on the mat .",
        "--sentence2", "A cat was sitting on the mat .",
    )  # fmt: skip
    assert one.returncode == 0, one.stderr
    row = json.loads(one.stdout)
    assert row["label"] in ("equivalent", "not_equivalent")
    assert row["class_id"] == int(row["logits"][1] > row["logits"][0])
    assert sum(row["probabilities"]) == pytest.approx(1.0)
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        json.dumps({"sentence1": "The cat sat on the mat .", "sentence2": "A cat sat ."})
        + "\n"
        + json.dumps({"sentence1": "Stocks fell .", "sentence2": "It rained all day ."})
        + "\n"
    )
    many = bertfit("predict", str(run_dir), "--input", str(pairs))
    rows = [json.loads(line) for line in many.stdout.splitlines()]
    assert len(rows) == 2 and rows[0]["logits"] != rows[1]["logits"]
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("The cat sat on the mat .\tA cat was sitting on the mat .\n")
    again = bertfit("predict", str(run_dir), "--input", str(tsv))
    assert json.loads(again.stdout)["logits"] == pytest.approx(row["logits"], abs=1e-5)


# -- user errors: one line, exit 2, nothing half-written ---------------------------------------


def test_missing_data_directory(tmp_path):
    result = bertfit("train", "--output", str(tmp_path / "run"), "--data-dir", str(tmp_path / "x"))
    assert_one_line_error(result, r"does not exist.*--data-dir.*BERTFIT_DATA")


def test_offline_without_data_says_how_to_get_it(tmp_path):
    env = {
        "BERTFIT_DATA": "",
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "HTTPS_PROXY": "http://127.0.0.1:9",
    }
    result = bertfit("train", "--output", str(tmp_path / "run"), env=env)
    assert_one_line_error(result, r"could not download.*--data-dir")
    assert not (tmp_path / "cache" / "bertfit" / "glue" / "MRPC").exists()


def test_malformed_row_names_file_and_line(tmp_path, tiny_model_dir):
    root = write_synthetic_glue(tmp_path / "glue")
    train = root / "MRPC" / "train.tsv"
    lines = train.read_text(encoding="utf-8").splitlines()
    lines[5] = "1\tonly three\tfields"
    train.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = bertfit(
        "train", "--output", str(tmp_path / "run"), "--data-dir", str(root),
        "--model", str(tiny_model_dir), "--max-seq-length", "32",
    )  # fmt: skip
    assert_one_line_error(result, r"train\.tsv:6: expected 5 tab-separated fields, found 3")


def test_unknown_label_and_unknown_task(tmp_path, tiny_model_dir):
    root = write_synthetic_glue(tmp_path / "glue")
    write_mrpc_split(root / "MRPC" / "dev.tsv", [("1", "a", "b"), ("2", "c", "d")])
    args = ["train", "--output", str(tmp_path / "run"), "--data-dir", str(root)]
    result = bertfit(*args, "--model", str(tiny_model_dir), "--max-seq-length", "32")
    assert_one_line_error(result, r"dev\.tsv:3: unknown label '2'")
    assert_one_line_error(bertfit(*args, "--task", "nope"), r"unknown task 'nope'")


def test_bad_model_directories(tmp_path, tiny_model_dir):
    root = write_synthetic_glue(tmp_path / "glue")
    args = ["train", "--output", str(tmp_path / "run"), "--data-dir", str(root)]
    args += ["--max-seq-length", "32", "--model"]
    assert_one_line_error(bertfit(*args, str(tmp_path / "absent")), r"absent")
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "vocab.txt"):
        (broken / name).write_bytes((tiny_model_dir / name).read_bytes())
    (broken / "model.safetensors").write_bytes(b"\x00" * 100)
    assert_one_line_error(bertfit(*args, str(broken)), r"model\.safetensors")
    mismatched = tmp_path / "mismatched"
    mismatched.mkdir()
    for name in ("vocab.txt", "model.safetensors"):
        (mismatched / name).write_bytes((tiny_model_dir / name).read_bytes())
    config = json.loads((tiny_model_dir / "config.json").read_text())
    config["hidden_size"] = 64
    config["intermediate_size"] = 128
    (mismatched / "config.json").write_text(json.dumps(config))
    assert_one_line_error(bertfit(*args, str(mismatched)), r"shape|mismatch")
    for run in (tmp_path / "run",):
        assert not run.exists() or leftovers(run) == []


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--batch-size", "0", "must be positive"),
        ("--batch-size", "-3", "must be positive"),
        ("--learning-rate", "0", "must be a positive number"),
        ("--learning-rate", "-1e-5", "must be a positive number"),
        ("--learning-rate", "nan", "must be a positive number"),
    ],
)
def test_non_positive_settings(tmp_path, capsys, flag, value, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--output", str(tmp_path / "run"), f"{flag}={value}"])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_evaluate_and_predict_on_something_that_is_not_a_run(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "not a bertfit run" in capsys.readouterr().err
    assert main(["predict", str(tmp_path), "--sentence1", "a", "--sentence2", "b"]) == 2


def test_existing_run_is_not_overwritten_silently(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    assert main(["train", "--output", str(tmp_path / "run")]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_interrupted_training_leaves_only_complete_files(tmp_path, tiny_model_dir):
    root = write_synthetic_glue(tmp_path / "glue", n_train=2048, n_dev=32)
    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "bertfit", "train", "--output", str(run_dir), "--data-dir",
         str(root), "--model", str(tiny_model_dir), "--epochs", "50", "--batch-size", "8",
         "--max-seq-length", "32", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    saved = run_dir / "model" / "bertfit.json"
    deadline = time.monotonic() + 600  # a slow or busy machine may take minutes for an epoch
    while not saved.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert saved.exists(), "the first epoch's model was never saved; nothing to interrupt after"
    time.sleep(0.3)  # land somewhere inside the next epoch (or inside a save)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert leftovers(run_dir) == []
    json.loads((run_dir / "config.json").read_text())
    for line in (run_dir / "history.jsonl").read_text().splitlines():
        json.loads(line)
    TextClassifier.from_pretrained(run_dir / "model")  # the saved model is complete


def test_failed_save_keeps_the_previous_model(tmp_path, monkeypatch):
    from conftest import make_tiny_classifier

    classifier = make_tiny_classifier(tmp_path)
    target = tmp_path / "run" / "model"
    classifier.save_pretrained(target)
    before = (target / "model.safetensors").read_bytes()

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("bertfit.model.hf_classifier.save_file", fail)
    with pytest.raises(OSError):
        classifier.save_pretrained(target)
    assert (target / "model.safetensors").read_bytes() == before
    assert leftovers(tmp_path / "run") == []
