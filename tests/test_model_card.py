"""A saved model describes itself: the Hugging Face model card, and transformers' tokenizer files.

The card (``README.md``) is parsed with ``huggingface_hub.ModelCard``, as the Hub reads it, and
checked against the run's ``results.json``; the tokenizer files are checked by running
``transformers.pipeline`` (the test oracle) on the saved directory and comparing its ids and
probabilities with bertfit's.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import ModelCard

from bertfit.errors import CheckpointError
from bertfit.export.export import export_classifier
from bertfit.export.runtime import load_exported
from bertfit.inference import TextClassifier
from bertfit.model.presets import PRESETS, default_model_dir, hub_id_of
from bertfit.model.sources import read_lower_case
from bertfit.model_card import CardFacts, base_model_of, render_model_card, write_model_card
from bertfit.train.run import calibrate_run, resume_run

from conftest import CASED_VOCAB, make_tiny_classifier, write_glue_task

# Upper case, accents, a CJK character run into a word, punctuation: what casing settings change.
PAIRS = [
    ("Red cat sat on the mat.", "The Cat saw it, café Über."),
    ("the big red dog", "blue Blue cafe uber"),
    ("猫sat and ran", "Café, über alles"),
    ("a", "B"),
]


def load_card(path: Path) -> ModelCard:
    """The card as the Hub parses it (metadata validated, model-index read into results)."""
    return ModelCard.load(path)


# -- tokenizer files --------------------------------------------------------------------------


@pytest.mark.parametrize("lower_case", [True, False], ids=["uncased", "cased"])
def test_saved_model_holds_transformers_tokenizer_settings(tmp_path, lower_case):
    classifier = make_tiny_classifier(
        tmp_path, tokens=CASED_VOCAB, lower_case=lower_case, max_seq_length=24
    )
    classifier.save_pretrained(tmp_path / "model")
    config = json.loads((tmp_path / "model" / "tokenizer_config.json").read_text())
    special = {
        "unk_token": "[UNK]",
        "sep_token": "[SEP]",
        "pad_token": "[PAD]",
        "cls_token": "[CLS]",
        "mask_token": "[MASK]",
    }
    assert config == {
        "tokenizer_class": "BertTokenizer",
        "do_lower_case": lower_case,
        "strip_accents": lower_case,
        "tokenize_chinese_chars": True,
        "do_basic_tokenize": True,
        "model_max_length": 24,
        **special,
    }
    assert json.loads((tmp_path / "model" / "special_tokens_map.json").read_text()) == special
    assert read_lower_case(tmp_path / "model") is lower_case  # bertfit reads them back alike


@pytest.mark.parametrize("lower_case", [True, False], ids=["uncased", "cased"])
def test_transformers_pipeline_tokenizes_and_scores_as_bertfit(tmp_path, lower_case):
    from transformers import pipeline  # the test oracle, only here

    classifier = make_tiny_classifier(tmp_path, tokens=CASED_VOCAB, lower_case=lower_case)
    classifier.info.temperature = 2.5  # the pipeline knows none: it must match the raw softmax
    classifier.save_pretrained(tmp_path / "model")
    ours = TextClassifier.from_pretrained(tmp_path / "model")
    columns = [[a for a, _ in PAIRS], [b for _, b in PAIRS]]
    packed = ours.encode(columns)
    cased_ids = {ours.tokenizer.token_to_id(t) for t in ("Red", "Cat", "café", "Über", "Blue")}
    used = {i for ids, _ in packed for i in ids}
    assert bool(cased_ids & used) is not lower_case  # the inputs do exercise the casing

    pipe = pipeline("text-classification", model=str(tmp_path / "model"), device="cpu")
    for (a, b), (ids, types) in zip(PAIRS, packed):
        encoded = pipe.tokenizer(a, b)
        assert encoded["input_ids"] == ids, (a, b)
        assert encoded["token_type_ids"] == types, (a, b)
    answers = pipe([{"text": a, "text_pair": b} for a, b in PAIRS], top_k=None)
    expected = ours.predict(columns, calibrated=False)
    for answer, row in zip(answers, expected):
        scores = {item["label"]: item["score"] for item in answer}
        names = ours.info.label_names
        np.testing.assert_allclose(
            [scores[name] for name in names], row["probabilities"], atol=1e-5, rtol=0
        )
    calibrated = ours.predict(columns)
    assert not np.allclose(
        [r["probabilities"] for r in calibrated], [r["probabilities"] for r in expected]
    )


# -- the card of a run ------------------------------------------------------------------------


def test_a_trained_run_has_a_card_whose_metadata_matches_its_results(tiny_run):
    card_path = tiny_run / "model" / "README.md"
    card = load_card(card_path)
    results = json.loads((tiny_run / "results.json").read_text())
    config = json.loads((tiny_run / "config.json").read_text())
    info = json.loads((tiny_run / "model" / "bertfit.json").read_text())
    data = card.data
    assert data.library_name == "bertfit"
    assert data.pipeline_tag == "text-classification"
    assert data.base_model == config["model"]  # a local directory: its path, as the run says
    assert data.datasets == ["nyu-mll/glue"]
    assert data.metrics == ["accuracy", "f1"]
    assert data.model_name == tiny_run.name
    found = {(r.dataset_split, r.metric_type): r for r in data.eval_results}
    assert set(found) == {("validation", "accuracy"), ("validation", "f1")}
    for (_, metric), result in found.items():
        assert result.task_type == "text-classification"
        assert result.dataset_type == "nyu-mll/glue" and result.dataset_config == "mrpc"
        assert result.metric_value == results["best"][f"dev_{metric}"]
    body = card.text
    assert f"{info['temperature']:.4f}" in body
    assert f"{results['calibration']['examples']} dev examples" in body
    assert all(f"`{name}`" in body for name in info["label_names"])
    assert f"{results['examples']['train']:,} train, {results['examples']['dev']} dev" in body
    assert f"learning rate {config['optimizer']['learning_rate']:g}" in body
    assert f"seed {config['trainer']['seed']}" in body
    assert ", the best by Accuracy)" in body  # the main metric that chose the model
    assert 'pipeline("text-classification"' in body and "from_pretrained" in body
    assert "dev set" in body and "no test-set figure" in body


def test_a_regression_run_has_a_card_with_its_correlations(tmp_path):
    glue = write_glue_task(tmp_path / "glue", "stsb", n_train=64, n_dev=32)
    make_tiny_classifier(tmp_path).save_pretrained(tmp_path / "tiny-model")
    run = tmp_path / "stsb-run"
    command = [
        sys.executable, "-m", "bertfit", "train", "--task", "stsb", "--output", str(run),
        "--data-dir", str(glue), "--model", str(tmp_path / "tiny-model"),
        "--max-seq-length", "32", "--epochs", "1", "--precision", "fp32", "--quiet",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    card = load_card(run / "model" / "README.md")
    best = json.loads((run / "results.json").read_text())["best"]
    assert card.data.metrics == ["pearsonr", "spearmanr"]
    values = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert values == {"pearsonr": best["dev_pearson"], "spearmanr": best["dev_spearman"]}
    assert {r.dataset_config for r in card.data.eval_results} == {"stsb"}
    assert "regression" in card.text and 'function_to_apply="none"' in card.text
    assert "## Calibration" not in card.text  # a score has no temperature


def test_mnli_card_reports_both_dev_files_under_the_hubs_split_names():
    best = {"dev_matched_accuracy": 0.8125, "dev_mismatched_accuracy": 0.75}
    facts = CardFacts(
        name="mnli-run",
        info={
            "task": "mnli",
            "label_names": ["entailment", "neutral", "contradiction"],
            "input_names": ["premise", "hypothesis"],
            "max_seq_length": 128,
            "lower_case": True,
            "temperature": None,
        },
        encoder={"problem_type": "single_label_classification", "num_hidden_layers": 6},
        run={"model": None, "trainer": {}, "optimizer": {"learning_rate": 2e-5}},
        results={"best": best, "examples": {"dev_matched": 9815, "dev_mismatched": 9832}},
        base_model="sentence-transformers/all-MiniLM-L6-v2",
    )
    card = ModelCard(render_model_card(facts))
    found = {r.dataset_split: r.metric_value for r in card.data.eval_results}
    assert found == {"validation_matched": 0.8125, "validation_mismatched": 0.75}
    assert {r.dataset_config for r in card.data.eval_results} == {"mnli"}
    assert card.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert "| dev_matched | 9,815 | 0.8125 |" in card.text
    assert "No temperature was fitted" in card.text


@pytest.mark.parametrize("dev", [True, False], ids=["with-dev", "without-dev"])
def test_a_run_on_the_users_own_files_names_them_and_claims_no_glue(dev):
    best = {"epoch": 1, "step": 4, **({"dev_accuracy": 0.5, "dev_f1": 0.25} if dev else {})}
    facts = CardFacts(
        name="reviews",
        info={"task": "custom", "label_names": ["bad", "good"], "input_names": ["text"]},
        encoder={"problem_type": "single_label_classification"},
        run={"data": {"train_file": "/data/reviews-train.csv", "dev_file": "/data/dev.csv"}},
        results={"best": best, "examples": {"train": 10, **({"dev": 4} if dev else {})}},
    )
    card = ModelCard(render_model_card(facts))
    assert card.data.datasets is None and card.data.language is None
    assert "`reviews-train.csv`; 10 train" in card.text and "GLUE" not in card.text
    if dev:
        found = {(r.dataset_name, r.dataset_split, r.metric_type) for r in card.data.eval_results}
        assert found == {("dev.csv", "dev", "accuracy"), ("dev.csv", "dev", "f1")}
        assert "from the dev set" in card.text
    else:
        assert card.data.eval_results is None and card.data.metrics is None
        assert "no dev set" in card.text and "from the dev set" not in card.text


def test_base_model_is_the_hub_id_of_a_preset_a_cached_model_or_a_teachers(tmp_path):
    assert hub_id_of(None) == hub_id_of("minilm-l6") == "sentence-transformers/all-MiniLM-L6-v2"
    assert hub_id_of(str(default_model_dir())) == "sentence-transformers/all-MiniLM-L6-v2"
    assert PRESETS["bert-base-cased"].hub_id == "google-bert/bert-base-cased"
    assert PRESETS["bert-uncased-L-4-H-256"].hub_id == "google/bert_uncased_L-4_H-256_A-4"
    snapshot = tmp_path / "hub" / "models--google-bert--bert-base-cased" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    assert hub_id_of(str(snapshot)) == "google-bert/bert-base-cased"
    assert hub_id_of(str(tmp_path)) is None  # a directory of one's own has no Hub id
    # A student of a student of a run on a snapshot: the snapshot's id.
    teacher, middle = tmp_path / "teacher", tmp_path / "middle"
    for run, config in (
        (teacher, {"model": str(snapshot), "distill": {"teacher": None}}),
        (middle, {"model": str(teacher / "model"), "distill": {"teacher": str(teacher)}}),
    ):
        run.mkdir()
        (run / "config.json").write_text(json.dumps(config))
    student = {"model": str(middle / "model"), "distill": {"teacher": str(middle)}}
    assert base_model_of(student) == "google-bert/bert-base-cased"
    shutil.rmtree(middle)  # teacher gone: the saved model the student was cut from
    assert base_model_of(student) == str(middle / "model")


def test_calibrate_rewrites_the_card_with_the_new_temperature(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    card = run / "model" / "README.md"
    card.write_text("stale\n")
    info_path = run / "model" / "bertfit.json"
    info = json.loads(info_path.read_text())
    info["temperature"] = None
    info_path.write_text(json.dumps(info))
    calibration = calibrate_run(run)
    assert f"**{calibration.temperature:.4f}**" in load_card(card).text


def test_a_finished_run_resumed_writes_a_missing_card(tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "model" / "README.md").unlink()
    assert resume_run(run) is None  # finished: nothing trained
    assert load_card(run / "model" / "README.md").data.library_name == "bertfit"


def test_write_model_card_serves_a_bare_model_directory(tmp_path):
    classifier = make_tiny_classifier(tmp_path)
    classifier.save_pretrained(tmp_path / "model")
    card = load_card(write_model_card(tmp_path / "model"))
    assert card.data.library_name == "bertfit" and card.data.eval_results is None
    assert card.data.base_model is None  # nothing records what it was fine-tuned from
    assert "no run results" in card.text


# -- the card of an export ------------------------------------------------------------------


def test_export_copies_the_card_and_its_manifest_covers_it(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    card = run / "model" / "README.md"
    card.write_text(card.read_text() + "\nA note the user added.\n")  # edits are kept
    output = export_classifier(run, tmp_path / "export", check_examples=4).directory
    exported = (output / "README.md").read_text()
    assert exported.startswith(card.read_text().rstrip("\n"))
    assert "## This export" in exported and "load_exported" in exported
    assert load_card(output / "README.md").data.eval_results  # still a valid card
    manifest = json.loads((output / "manifest.json").read_text())
    assert "README.md" in manifest["files"]
    load_exported(output)  # loads as written
    (output / "README.md").write_text(exported.replace("0.9", "0.99"))
    with pytest.raises(CheckpointError, match="README.md"):
        load_exported(output)


def test_export_of_a_model_saved_without_a_card_writes_one(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "model" / "README.md").unlink()  # as saved before cards were written
    output = export_classifier(run, tmp_path / "export", quantize="int8", check_examples=4)
    card = load_card(output.directory / "README.md")
    best = json.loads((run / "results.json").read_text())["best"]
    assert {r.metric_value for r in card.data.eval_results} == {
        best["dev_accuracy"],
        best["dev_f1"],
    }
    assert "The results above are the fp32 model's" in card.text


def test_the_recipe_names_the_fine_tuning_levers_only_when_on():
    def recipe(run: dict) -> str:
        facts = CardFacts(
            name="levers",
            info={"task": "mrpc", "label_names": ["0", "1"], "input_names": ["a", "b"]},
            encoder={"problem_type": "single_label_classification"},
            run=run,
            results={"best": {"epoch": 1}, "examples": {"train": 10}},
        )
        text = ModelCard(render_model_card(facts)).text
        return next(line for line in text.splitlines() if line.startswith("- Recipe:"))

    on = {
        "reinit_layers": 2,
        "trainer": {},
        "optimizer": {"learning_rate": 1e-4, "layer_decay": 0.8},
    }
    assert recipe(on).startswith(
        "- Recipe: top 2 layers and pooler re-initialized, AdamW, learning rate 0.0001, "
        "layer-wise decay 0.8"
    )
    off = {
        "reinit_layers": 0,
        "trainer": {},
        "optimizer": {"learning_rate": 1e-4, "layer_decay": 1.0},
    }
    assert "re-initialized" not in recipe(off) and "layer-wise" not in recipe(off)
