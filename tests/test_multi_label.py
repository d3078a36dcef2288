"""Multi-label data end to end: the two file layouts, training, thresholds, calibration,
predict, export, serve, and the one-line errors of bad input."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest

from bertfit.cli import main
from bertfit.data.user_files import Columns
from bertfit.data.user_stream import scan_label_ids, scan_task, scan_user_file
from bertfit.errors import DataError
from bertfit.inference import TextClassifier
from bertfit.problem import REGRESSION, SINGLE_LABEL

from conftest import COOL, FILLERS, WARM, make_tiny_classifier

PETS = ["cat", "dog"]
NAMES = ["cool", "pet", "warm"]  # sorted, as label names read from data are


def tagged_texts(n: int, seed: int) -> list[tuple[str, list[str]]]:
    """Texts with a warm colour, a cool one and a pet each in some rows (none in some), and
    their labels: which of the three the text names."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = rng.choices([w for w in FILLERS if w not in PETS], k=rng.randint(2, 5))
        labels = []
        for label, pool, share in (("warm", WARM, 0.5), ("cool", COOL, 0.4), ("pet", PETS, 0.2)):
            if rng.random() < share:
                words.insert(rng.randint(0, len(words)), rng.choice(pool))
                labels.append(label)
        rows.append((" ".join(words) + " .", labels))
    return rows


def write_jsonl(path: Path, rows) -> Path:
    lines = [json.dumps({"text": text, "tags": labels}) for text, labels in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_csv(path: Path, rows, separator: str = ";") -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "tags"])
        for text, labels in rows:
            writer.writerow([text, separator.join(labels)])
    return path


def write_columns(path: Path, rows) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", *NAMES])
        for text, labels in rows:
            writer.writerow([text, *(int(name in labels) for name in NAMES)])
    return path


def label_matrix(rows) -> np.ndarray:
    return np.array([[name in labels for name in NAMES] for _, labels in rows], dtype=np.float32)


# -- reading ------------------------------------------------------------------------------------

TAGS = Columns("text", None, "tags")


def write_parquet(path: Path, rows, indicators: type | None = None) -> Path:
    """Rows as Parquet: the labels a list<string> column, or (``indicators`` int or bool)
    one column per label of that type."""
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    table = {"text": [text for text, _ in rows]}
    if indicators is None:
        table["tags"] = pa.array([labels for _, labels in rows], pa.list_(pa.string()))
    else:
        for name in NAMES:
            table[name] = [indicators(name in labels) for _, labels in rows]
    pq.write_table(pa.table(table), path)
    return path


COLUMNS = Columns("text", None, "label", tuple(NAMES))


@pytest.mark.parametrize(
    "layout", ["jsonl", "csv", "columns", "parquet", "parquet-int-columns", "parquet-bool-columns"]
)
def test_the_layouts_read_as_the_same_multi_label_task(tmp_path, layout):
    rows = tagged_texts(40, 1)
    assert any(not labels for _, labels in rows) and any(len(labels) > 1 for _, labels in rows)
    if layout == "jsonl":
        path, columns = write_jsonl(tmp_path / "t.jsonl", rows), TAGS
    elif layout == "csv":
        path, columns = write_csv(tmp_path / "t.csv", rows), TAGS
    elif layout == "columns":
        path, columns = write_columns(tmp_path / "t.csv", rows), COLUMNS
    elif layout == "parquet":
        path, columns = write_parquet(tmp_path / "t.parquet", rows), TAGS
    else:
        kind = int if layout == "parquet-int-columns" else bool
        path, columns = write_parquet(tmp_path / "t.parquet", rows, kind), COLUMNS
    scan = scan_user_file(path, columns)
    task, how = scan_task(scan, columns)
    assert task.problem_type == "multi_label_classification"
    assert "multi-label" in how
    assert list(task.label_names) == NAMES
    assert task.metrics[0] == "micro_f1"
    np.testing.assert_array_equal(scan_label_ids(scan, task, "train"), label_matrix(rows))


def test_a_separator_other_than_semicolons_and_duplicate_names(tmp_path):
    rows = [("red cat .", ["warm", "pet", "warm"]), ("blue .", ["cool"]), ("a .", [])]
    path = write_csv(tmp_path / "t.tsv".replace("tsv", "csv"), rows, separator="|")
    columns = Columns("text", None, "tags", separator="|")
    scan = scan_user_file(path, columns)
    task, _ = scan_task(scan, columns)
    assert list(task.label_names) == NAMES
    assert scan_label_ids(scan, task, "train").tolist() == [[0, 1, 1], [1, 0, 0], [0, 0, 0]]
    # With the default separator the same file is one label per row, and "" is no label.
    with pytest.raises(DataError, match=r"t.csv:4: empty label in column 'tags' \(rows without"):
        scan_task(scan_user_file(path, TAGS), TAGS)


def test_one_label_per_row_stays_single_label(tmp_path):
    rows = [(text, labels[:1] or ["none"]) for text, labels in tagged_texts(30, 2)]
    path = write_csv(tmp_path / "t.csv", rows)
    task, how = scan_task(scan_user_file(path, TAGS), TAGS)
    assert task.problem_type == "single_label_classification"
    assert how == "labels are not all numbers: classification"


@pytest.mark.parametrize(
    ("lines", "columns", "asked", "message"),
    [
        (['{"text": "a", "tags": ["x"]}', '{"text": "b", "tags": "x"}'], TAGS, None,
         r"t.jsonl:2: column 'tags' must hold a JSON array of label names \(a multi-label "
         r'column\), got x'),
        (['{"text": "a", "tags": ["x", 3]}'], TAGS, None,
         "t.jsonl:1: column 'tags': a label list holds 3, not a label name"),
        (['{"text": "a", "tags": ["x"]}'], TAGS, "single_label_classification",
         r"t.jsonl:1: column 'tags' holds a list of labels \(multi-label\), not a "
         "classification label; leave out --classification"),
        (['{"text": "a", "tags": ["x"]}'], TAGS, "regression",
         "t.jsonl:1: column 'tags' holds a list of labels .* leave out --regression"),
        (['{"text": "a", "x": 1, "y": 0}', '{"text": "b", "x": 2, "y": 0}'],
         Columns("text", None, "label", ("x", "y")), None,
         "t.jsonl:2: column 'x' must hold 0 or 1, got '2'"),
        (['{"text": "a", "x": 1}'], Columns("text", None, "label", ("x", "y")), None,
         r"t.jsonl:1: missing column 'y' \(found: text, x\)"),
        (['{"text": ["a"], "tags": ["x"]}'], TAGS, None,
         r"t.jsonl:1: text in column 'text' is list \['a'\], not a string"),
    ],
)  # fmt: skip
def test_bad_multi_label_input_names_file_line_and_column(tmp_path, lines, columns, asked, message):
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=message):
        scan_task(scan_user_file(path, columns), columns, asked)


@pytest.mark.parametrize(
    ("asked", "word"), [(SINGLE_LABEL, "classification"), (REGRESSION, "regression")]
)
def test_a_problem_type_asked_for_separated_label_lists_is_refused(tmp_path, asked, word):
    path = write_csv(
        tmp_path / "t.csv", [("red cat .", ["warm"]), ("a red dog .", ["pet", "warm"])]
    )
    with pytest.raises(DataError) as error:
        scan_task(scan_user_file(path, TAGS), TAGS, asked)
    assert str(error.value) == (
        f"{path}:3: column 'tags' holds labels separated by ';' (multi-label), not a {word} "
        f"label; leave out --{word} (or give --multi-label), or another --label-separator if "
        "it is part of a name"
    )
    # A separator that is part of the class names: another one leaves them whole.
    bars = Columns("text", None, "tags", separator="|")
    task, _ = scan_task(scan_user_file(path, bars), bars, SINGLE_LABEL)
    assert list(task.label_names) == ["pet;warm", "warm"]


def test_bad_parquet_labels_name_the_row(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    path = tmp_path / "t.parquet"
    tags = pa.array([[], [3]], pa.list_(pa.int64()))  # Parquet lists hold one type
    pq.write_table(pa.table({"text": ["a", "b"], "tags": tags}), path)
    with pytest.raises(DataError, match="t.parquet, row 2: column 'tags': a label list holds 3"):
        scan_user_file(path, TAGS)
    pq.write_table(pa.table({"text": ["a", "b"], "tags": ["x", "y;z"]}), path)
    with pytest.raises(DataError, match="t.parquet, row 1: column 'tags' must hold a list of"):
        scan_task(scan_user_file(path, TAGS), TAGS, "multi_label_classification")
    pq.write_table(
        pa.table({"text": ["a", "b"], "cool": [0, 2], "pet": [1, 0], "warm": [0, 0]}), path
    )
    with pytest.raises(
        DataError, match="t.parquet, row 2: column 'cool' must hold 0 or 1, got '2'"
    ):
        scan_user_file(path, COLUMNS)


def test_a_label_only_in_dev_is_refused_with_its_line(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [("a .", ["x"]), ("b .", ["y"])])
    dev = write_jsonl(tmp_path / "dev.jsonl", [("a .", ["x"]), ("c .", ["y", "z"])])
    task, _ = scan_task(scan_user_file(train, TAGS), TAGS)
    with pytest.raises(
        DataError, match=r"dev.jsonl:2: column 'tags': label 'z' never seen in train \(x, y\)"
    ):
        scan_label_ids(scan_user_file(dev, TAGS), task, "dev")


# -- training end to end --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def multi_run(tmp_path_factory) -> dict:
    """A tiny model fine-tuned on JSON lines of tagged texts."""
    root = tmp_path_factory.mktemp("multi")
    model = root / "tiny-model"
    make_tiny_classifier(root).save_pretrained(model)
    train = write_jsonl(root / "train.jsonl", tagged_texts(1024, 1))
    dev_rows = tagged_texts(96, 2)
    dev = write_jsonl(root / "dev.jsonl", dev_rows)
    run = root / "run"
    args = ["train", "--train", str(train), "--dev", str(dev), "--text-a", "text"]
    args += ["--label", "tags", "--model", str(model), "--output", str(run), "--epochs", "8"]
    args += ["--batch-size", "16", "--learning-rate", "3e-3", "--max-seq-length", "32"]
    args += ["--precision", "fp32", "--quiet", "--class-weights", "balanced"]
    assert main(args) == 0
    return {"root": root, "run": run, "dev_rows": dev_rows, "model": model}


def test_training_learns_the_labels_and_records_the_problem_type(multi_run):
    run = multi_run["run"]
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["task_type"] == "multi_label"
    assert config["data"]["label_names"] == NAMES
    assert config["trainer"]["class_weights"] == "balanced"
    best = json.loads((run / "results.json").read_text())["best"]
    assert best["dev_micro_f1"] > 0.8
    assert {"dev_macro_f1", "dev_subset_accuracy"} <= set(best)
    hf = json.loads((run / "model" / "config.json").read_text())
    assert hf["problem_type"] == "multi_label_classification"
    assert hf["num_labels"] == 3


def test_thresholds_are_fitted_on_dev_and_recorded(multi_run):
    run = multi_run["run"]
    info = json.loads((run / "model" / "bertfit.json").read_text())
    thresholds = info["thresholds"]
    assert len(thresholds) == 3 and all(0 < t < 1 for t in thresholds)
    record = json.loads((run / "calibration.json").read_text())
    assert list(record["thresholds"]) == NAMES
    assert record["thresholds"] == dict(zip(NAMES, thresholds))
    fitted, at_half = record["decisions"]["fitted"], record["decisions"]["at_0.5"]
    # Each threshold maximizes its label's dev F1, so the macro F1 cannot fall.
    assert fitted["macro_f1"] >= at_half["macro_f1"]


def test_each_fitted_threshold_beats_every_other_cut_on_dev(multi_run):
    from bertfit.probabilities import sigmoid
    from bertfit.train.evaluate import encode_examples, logits_of_encoded
    from bertfit.train.run import load_run_model, read_split

    classifier, config, task = load_run_model(multi_run["run"])
    data = encode_examples(classifier, task, read_split(config, task, "dev"))
    probabilities = sigmoid(logits_of_encoded(classifier, data), classifier.temperature)

    def f1(column: int, cut: float) -> float:
        chosen, gold = probabilities[:, column] >= cut, data.labels[:, column] == 1
        total = chosen.sum() + gold.sum()
        return 2 * (chosen & gold).sum() / total if total else 0.0

    for column, threshold in enumerate(classifier.thresholds):
        best = f1(column, threshold)
        for cut in np.linspace(0.01, 0.99, 99):
            assert f1(column, cut) <= best + 1e-12


def test_evaluate_reports_multi_label_metrics_calibration_and_the_report(multi_run, capsys):
    run = multi_run["run"]
    assert main(["evaluate", str(run), "--json", "--report", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("micro_f1", "macro_f1", "subset_accuracy", "ece_before", "nll_after"):
        assert key in result
    report = result["report"]["dev"]
    assert list(report["labels"]) == NAMES
    gold = label_matrix(multi_run["dev_rows"])
    for name, column in zip(NAMES, gold.T):
        assert report["labels"][name]["support"] == int(column.sum())
        matrix = report["confusion_matrices"][name]
        assert matrix["tp"] + matrix["fn"] == int(column.sum())
    assert report["subset_accuracy"] == pytest.approx(result["subset_accuracy"])
    assert report["averages"]["micro"]["f1"] == pytest.approx(result["micro_f1"])


def test_predict_gives_each_labels_probability_by_name_and_the_chosen_labels(multi_run, capsys):
    run = multi_run["run"]
    assert main(["predict", str(run), "--sentence1", "the red cat sat on a mat ."]) == 0
    row = json.loads(capsys.readouterr().out)
    assert set(row) == {"labels", "probabilities", "logits"}
    assert list(row["probabilities"]) == NAMES
    assert {"pet", "warm"} <= set(row["labels"])
    classifier = TextClassifier.from_pretrained(run / "model")
    for name, threshold in zip(NAMES, classifier.thresholds):
        assert (row["probabilities"][name] >= threshold) == (name in row["labels"])
    # Raw probabilities change the numbers, not the labels.
    assert main(["predict", str(run), "--sentence1", "the red cat .", "--raw-probabilities"]) == 0
    raw = json.loads(capsys.readouterr().out)
    assert main(["predict", str(run), "--sentence1", "the red cat ."]) == 0
    calibrated = json.loads(capsys.readouterr().out)
    assert raw["labels"] == calibrated["labels"]
    assert raw["logits"] == calibrated["logits"]


def test_a_text_with_no_label_gets_an_empty_list(multi_run, capsys):
    assert main(["predict", str(multi_run["run"]), "--sentence1", "the big mat ."]) == 0
    assert json.loads(capsys.readouterr().out)["labels"] == []


def test_transformers_loads_the_model_with_the_same_logits(multi_run):
    transformers = pytest.importorskip("transformers")
    import torch

    model_dir = multi_run["run"] / "model"
    theirs = transformers.BertForSequenceClassification.from_pretrained(model_dir).eval()
    assert theirs.config.problem_type == "multi_label_classification"
    ours = TextClassifier.from_pretrained(model_dir)
    columns = [["the red cat sat .", "blue dog and a green mat ."]]
    inputs, _ = ours.encode_texts(columns)
    from bertfit.inference import to_tensors

    batch = to_tensors(inputs, ours.padding_id, None)
    with torch.no_grad():
        logits = theirs(
            input_ids=batch["input_word_ids"],
            attention_mask=batch["input_mask"],
            token_type_ids=batch["input_type_ids"],
        ).logits.numpy()
    np.testing.assert_allclose(logits, ours.logits(columns), atol=1e-5)


@pytest.mark.parametrize("export_format", ["onnx", "torch-export"])
def test_exports_carry_the_thresholds_and_answer_like_predict(multi_run, tmp_path, export_format):
    from bertfit.export.export import export_classifier
    from bertfit.export.runtime import load_exported

    run = multi_run["run"]
    export_classifier(run, tmp_path / "export", export_format=export_format, check_examples=8)
    predictor = load_exported(tmp_path / "export")
    classifier = TextClassifier.from_pretrained(run / "model")
    assert predictor.problem_type == "multi_label_classification"
    assert predictor.thresholds == pytest.approx(classifier.thresholds.tolist())
    texts = ["the red cat sat .", "blue mat .", "a big mat ."]
    columns = predictor({"text": texts})
    rows = classifier.predict([texts])
    assert [list(labels) for labels in columns["labels"]] == [row["labels"] for row in rows]
    expected = np.array([list(row["probabilities"].values()) for row in rows])
    np.testing.assert_allclose(columns["probabilities"], expected, atol=1e-4)
    # predict() gives predict's rows, and its labels obey the stored thresholds.
    exported_rows = predictor.predict([texts])
    assert [row["labels"] for row in exported_rows] == [row["labels"] for row in rows]
    assert {"pet", "warm"} <= set(exported_rows[0]["labels"])
    predictor.spec.thresholds = [1e-9] * 3  # as if fitted that low: every label is chosen
    assert [row["labels"] for row in predictor.predict([texts])] == [NAMES] * 3
    assert [list(labels) for labels in predictor({"text": texts})["labels"]] == [NAMES] * 3


def test_the_server_answers_with_the_same_rows(multi_run, tmp_path):
    from starlette.testclient import TestClient

    from bertfit.export.export import export_classifier
    from bertfit.export.runtime import load_exported
    from bertfit.serve.app import create_app

    run = multi_run["run"]
    export_classifier(run, tmp_path / "export", check_examples=4)
    predictor = load_exported(tmp_path / "export")
    with TestClient(create_app(predictor)) as client:
        metadata = client.get("/metadata").json()
        assert metadata["problem_type"] == "multi_label_classification"
        assert metadata["thresholds"] == predictor.thresholds
        answer = client.post("/predict", json={"instances": [{"text": "the red cat sat ."}]})
        explained = client.post("/explain", json={"instances": [{"text": "the red cat sat ."}]})
    assert answer.status_code == 200
    row = answer.json()["predictions"][0]
    expected = TextClassifier.from_pretrained(run / "model").predict([["the red cat sat ."]])[0]
    assert row["labels"] == expected["labels"]
    assert row["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-4)
    assert explained.status_code == 200
    explanation = explained.json()["explanations"][0]
    # Toward the most probable label, with each label's own sigmoid.
    assert explanation["label"] == max(expected["probabilities"], key=expected["probabilities"].get)
    assert explanation["probabilities"] == pytest.approx(
        list(expected["probabilities"].values()), abs=1e-4
    )


def test_the_model_card_reports_micro_and_macro_f1_and_the_thresholds(multi_run):
    from huggingface_hub import ModelCard

    run = multi_run["run"]
    card = ModelCard.load(run / "model" / "README.md")
    best = json.loads((run / "results.json").read_text())["best"]
    info = json.loads((run / "model" / "bertfit.json").read_text())
    assert card.data.metrics == ["f1", "accuracy"]
    found = {(r.metric_type, r.metric_config): r.metric_value for r in card.data.eval_results}
    assert found == {
        ("f1", "micro"): best["dev_micro_f1"],
        ("f1", "macro"): best["dev_macro_f1"],
        ("accuracy", None): best["dev_subset_accuracy"],
    }
    body = card.text
    assert body.count("A multi-label text classifier") == 1
    for name, threshold in zip(NAMES, info["thresholds"]):
        assert f"`{name}` {threshold:.4f}" in body
    assert f"| {best['dev_micro_f1']:.4f} | {best['dev_macro_f1']:.4f} |" in body
    assert "before each sigmoid" in body and "sigmoid(logits)" in body
    assert "softmax" not in body


@pytest.fixture(scope="module")
def low_thresholds(multi_run, tmp_path_factory) -> Path:
    """The run's model with every threshold at 1e-9, so that every label is chosen."""
    import shutil

    model = tmp_path_factory.mktemp("low") / "model"
    shutil.copytree(multi_run["run"] / "model", model)
    info = json.loads((model / "bertfit.json").read_text())
    (model / "bertfit.json").write_text(json.dumps({**info, "thresholds": [1e-9] * 3}))
    return model


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_bulk_predict_writes_the_chosen_labels_and_each_probability(
    multi_run, low_thresholds, tmp_path, suffix
):
    texts = [text for text, _ in multi_run["dev_rows"][:12]]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(texts)))
    expected = TextClassifier.from_pretrained(multi_run["run"] / "model").predict([texts])
    for model, chosen in ((multi_run["run"], [row["labels"] for row in expected]),
                          (low_thresholds, [NAMES] * len(texts))):  # fmt: skip
        out = tmp_path / f"out-{model.name}{suffix}"
        args = ["predict", str(model), "--input", str(source), "--output", str(out)]
        assert main([*args, "--keep", "id", "--quiet"]) == 0
        rows = _read_bulk(out)
        assert [row["id"] for row in rows] == list(range(len(texts)))
        assert [row["labels"] for row in rows] == chosen
        probabilities = [list(row["probabilities"].values()) for row in expected]
        np.testing.assert_allclose([row["probs"] for row in rows], probabilities, atol=1e-5)


def _read_bulk(path: Path) -> list[dict]:
    """A bulk output's rows: ``id``, ``labels`` (a list) and ``probs`` (in label order)."""
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            records = list(csv.DictReader(handle))
        assert list(records[0]) == ["id", "labels", *(f"probability_{n}" for n in NAMES)]
        return [
            {"id": int(r["id"]), "labels": [n for n in r["labels"].split(";") if n],
             "probs": [float(r[f"probability_{n}"]) for n in NAMES]}
            for r in records
        ]  # fmt: skip
    if path.suffix == ".parquet":
        records = pytest.importorskip("pyarrow.parquet").read_table(path).to_pylist()
    else:
        records = [json.loads(line) for line in path.read_text().splitlines()]
    assert list(records[0]) == ["id", "labels", "probabilities"]
    return [{**r, "probs": r["probabilities"]} for r in records]


def test_calibrate_refits_the_temperature_and_the_thresholds(multi_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(multi_run["run"], run)
    info_path = run / "model" / "bertfit.json"
    info = json.loads(info_path.read_text())
    fitted = info["thresholds"]
    info_path.write_text(json.dumps({**info, "thresholds": None, "temperature": None}))
    assert main(["calibrate", str(run)]) == 0
    out = capsys.readouterr().out
    assert "thresholds fitted on dev" in out
    refitted = json.loads(info_path.read_text())["thresholds"]
    assert refitted == pytest.approx(fitted, abs=1e-3)


# -- the other layouts and flags through the command ----------------------------------------------


def _train_args(multi_run, train: Path, dev: Path, run: Path, *extra: str) -> list[str]:
    return [
        "train", "--train", str(train), "--dev", str(dev), "--text-a", "text",
        "--model", str(multi_run["model"]), "--output", str(run), "--max-steps", "2",
        "--batch-size", "8", "--max-seq-length", "32", "--precision", "fp32", "--quiet", *extra,
    ]  # fmt: skip


def test_label_columns_and_a_separator_train_from_the_command(multi_run, tmp_path, capsys):
    rows = tagged_texts(24, 3)
    train = write_columns(tmp_path / "train.csv", rows)
    dev = write_columns(tmp_path / "dev.csv", rows[:8])
    run = tmp_path / "columns"
    assert main(_train_args(multi_run, train, dev, run, "--label-columns", "cool,pet,warm")) == 0
    assert "task type: 3 0/1 label columns: multi-label" in capsys.readouterr().err
    data = json.loads((run / "config.json").read_text())["data"]
    assert data["label_columns"] == NAMES and data["task_type"] == "multi_label"
    train = write_csv(tmp_path / "train-bar.csv", rows, separator="|")
    dev = write_csv(tmp_path / "dev-bar.csv", rows[:8], separator="|")
    run = tmp_path / "bars"
    args = _train_args(multi_run, train, dev, run, "--label", "tags", "--label-separator", "|")
    assert main([*args, "--multi-label"]) == 0
    assert json.loads((run / "config.json").read_text())["data"]["label_separator"] == "|"


def test_classification_flag_on_label_lists_is_one_line_and_writes_nothing(
    multi_run, tmp_path, capsys
):
    rows = tagged_texts(12, 4)
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    run = tmp_path / "run"
    args = _train_args(multi_run, train, train, run, "--label", "tags", "--classification")
    assert main(args) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith(f"bertfit: error: {train}:1: column 'tags'")
    assert not run.exists()


def test_class_weights_naming_an_unknown_label_in_multi_label_data(multi_run, tmp_path, capsys):
    rows = tagged_texts(12, 5)
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    args = _train_args(multi_run, train, train, tmp_path / "run", "--label", "tags")
    assert main([*args, "--class-weights", "pets=2"]) == 2
    assert "trainer.class_weights: unknown label 'pets'" in capsys.readouterr().err


# -- thresholds and calibration, unit by unit ----------------------------------------------------


def _f1_at(probabilities: np.ndarray, labels: np.ndarray, cut: float) -> float:
    chosen, gold = probabilities >= cut, labels.astype(bool)
    total = chosen.sum() + gold.sum()
    return 2 * (chosen & gold).sum() / total if total else 0.0


def test_best_threshold_is_the_best_cut_and_lies_between_examples():
    from bertfit.thresholds import best_threshold

    rng = np.random.default_rng(0)
    for _ in range(20):
        labels = (rng.random(50) < 0.2).astype(int)
        probabilities = np.round(np.clip(0.3 * labels + rng.random(50) * 0.7, 0, 1), 2)  # ties
        if not labels.any():
            continue
        threshold = best_threshold(probabilities, labels)
        best = max(_f1_at(probabilities, labels, cut) for cut in np.unique(probabilities))
        assert _f1_at(probabilities, labels, threshold) == pytest.approx(best)
        assert threshold not in probabilities


def test_a_label_without_positives_keeps_one_half():
    from bertfit.thresholds import best_threshold, fit_thresholds

    assert best_threshold(np.array([0.9, 0.2]), np.array([0, 0])) == 0.5
    assert fit_thresholds(np.array([[0.9, 0.8]]), np.array([[1, 0]])).tolist() == [0.45, 0.5]


def test_the_multi_label_temperature_minimizes_the_binary_cross_entropy():
    scipy_optimize = pytest.importorskip("scipy.optimize")
    from bertfit.probabilities import sigmoid
    from bertfit.temperature import fit_temperature, multi_label_metrics

    rng = np.random.default_rng(1)
    labels = (rng.random((300, 4)) < 0.3).astype(np.float32)
    logits = (labels * 2 - 1) * rng.gamma(2.0, 2.0, size=labels.shape)  # over-confident
    logits[rng.random(labels.shape) < 0.15] *= -1  # and sometimes wrong

    def bce(t: float) -> float:
        p = np.clip(sigmoid(logits, t), 1e-12, 1 - 1e-12)
        return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))

    fitted = fit_temperature(logits, labels)
    reference = scipy_optimize.minimize_scalar(bce, bounds=(0.05, 20), method="bounded").x
    assert fitted == pytest.approx(reference, rel=1e-3)
    assert fitted > 1  # over-confident logits are softened
    before, after = multi_label_metrics(logits, labels), multi_label_metrics(logits, labels, fitted)
    assert after["nll"] < before["nll"]
    assert before["nll"] == pytest.approx(bce(1.0), rel=1e-6)


def test_sigmoid_does_not_overflow():
    from bertfit.probabilities import sigmoid

    values = sigmoid(np.array([-1000.0, 0.0, 1000.0]))
    assert values.tolist() == [0.0, 0.5, 1.0]


def test_stored_thresholds_are_checked(multi_run, tmp_path):
    import shutil

    from bertfit.errors import CheckpointError

    model = tmp_path / "model"
    shutil.copytree(multi_run["run"] / "model", model)
    info = json.loads((model / "bertfit.json").read_text())
    for bad in ([0.5, 0.5], [0.5, 1.0, 0.5]):
        (model / "bertfit.json").write_text(json.dumps({**info, "thresholds": bad}))
        with pytest.raises(CheckpointError, match="bertfit.json: thresholds must"):
            TextClassifier.from_pretrained(model)


def test_a_multi_label_run_is_not_distilled(multi_run, tmp_path, capsys):
    run = multi_run["run"]
    assert main(["distill", str(run), "--output", str(tmp_path / "student"), "--layers", "1"]) == 2
    assert "distilling a multi-label model is not supported" in capsys.readouterr().err
    assert not (tmp_path / "student").exists()


# -- explaining one label -----------------------------------------------------------------------

RED_CAT = "the red cat sat ."


def _top_word(explanation: dict) -> str:
    words = [word for text in explanation["texts"] for word in text["words"]]
    return max(words, key=lambda word: word["attribution"])["text"]


def test_explain_attributes_toward_the_most_probable_or_the_named_label(multi_run):
    from bertfit.errors import ConfigError

    classifier = TextClassifier.from_pretrained(multi_run["run"] / "model")
    expected = classifier.predict([[RED_CAT]])[0]
    default = classifier.explain([RED_CAT], method="occlusion")
    assert default.label == max(expected["probabilities"], key=expected["probabilities"].get)
    assert default.labels == expected["labels"] and {"pet", "warm"} <= set(default.labels)
    # Each label's own evidence: the colour for "warm", the animal for "pet".
    for method in ("occlusion", "integrated_gradients"):
        pet = classifier.explain([RED_CAT], method=method, target="pet")
        warm = classifier.explain([RED_CAT], method=method, target="warm")
        assert (pet.label, pet.class_id, warm.label, warm.class_id) == ("pet", 1, "warm", 2)
        assert (_top_word(pet.to_dict()), _top_word(warm.to_dict())) == ("cat", "red")
    with pytest.raises(ConfigError, match=r"unknown label 'fish'; expected one of \['cool'"):
        classifier.explain([RED_CAT], target="fish")


def test_the_explain_command_takes_a_label_and_refuses_an_unknown_one(multi_run, capsys):
    run = str(multi_run["run"])
    args = ["explain", run, "--sentence1", RED_CAT, "--method", "occlusion"]
    assert main([*args, "--label", "pet", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["label"] == "pet" and _top_word(answer) == "cat"
    assert main([*args, "--label", "warm"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("label: warm (probability ")
    assert lines[1] == "chosen labels: " + ", ".join(answer["labels"])
    assert main([*args, "--label", "fish"]) == 2
    error = capsys.readouterr().err.strip()
    assert error == "bertfit: error: unknown label 'fish'; expected one of ['cool', 'pet', 'warm']"


def test_the_server_explains_the_label_a_request_names(multi_run, tmp_path):
    from starlette.testclient import TestClient

    from bertfit.export.export import export_classifier
    from bertfit.export.runtime import load_exported
    from bertfit.serve.app import create_app

    export_classifier(multi_run["run"], tmp_path / "export", check_examples=4)
    predictor = load_exported(tmp_path / "export")
    instances = [{"text": RED_CAT}]
    with TestClient(create_app(predictor)) as client:
        answers = {
            label: client.post("/explain", json={"instances": instances, "label": label})
            for label in ("pet", "warm", "fish")
        }
        predict = client.post("/predict", json={"instances": instances, "label": "pet"})
        chosen = client.post("/predict", json={"instances": instances}).json()["predictions"][0]
    for label, word in (("pet", "cat"), ("warm", "red")):
        assert answers[label].status_code == 200, answers[label].text
        explanation = answers[label].json()["explanations"][0]
        assert explanation["label"] == label and _top_word(explanation) == word
        assert explanation["labels"] == chosen["labels"]
        assert explanation == predictor.explain(instances[0], target=label).to_dict()
    assert answers["fish"].status_code == 422
    assert answers["fish"].json()["error"]["message"] == (
        "'label': unknown label 'fish'; expected one of ['cool', 'pet', 'warm']"
    )
    assert predict.status_code == 422 and "unknown field 'label'" in predict.text
