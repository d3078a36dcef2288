"""The truncator and partial special tokens across a run: config, saved model, export, serving.

Every path that packs (the trainer's flat store, ``TextClassifier.encode``, the exported
predictor) must cut over-long pairs with the run's truncator, and a vocabulary without
``[MASK]`` must go through training-time packing, ``save_pretrained`` and export.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bertfit.cli import main
from bertfit.data.readers import TextExamples
from bertfit.data.tasks import MRPC
from bertfit.errors import CheckpointError, ConfigError
from bertfit.export.export import export_classifier
from bertfit.export.runtime import load_exported
from bertfit.export.spec import TRUNCATIONS
from bertfit.inference import BERTFIT_FILE, TextClassifier
from bertfit.text import TRUNCATORS, TextProcessor
from bertfit.text.packing import pad_packed
from bertfit.train.config import RunConfig
from bertfit.train.config_file import config_keys, load_run_config, parse_overrides
from bertfit.train.trainer import encode_examples

from conftest import TINY_VOCAB, make_tiny_classifier, write_synthetic_glue

LONG_A = " ".join(["the big cat sat on the mat and saw a small dog"] * 6)
LONG_B = " ".join(["a red dog ran and the blue cat sat"] * 6)
COLUMNS = [
    [LONG_A, "red", LONG_A, "the cat sat on the mat .", LONG_B],
    [LONG_B, LONG_A, "small", "a cat sat", LONG_A],
]


def _varied(classifier: TextClassifier, seed: int = 1) -> TextClassifier:
    """Weights far enough from BERT's initialization that inputs give different logits."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in classifier.model.parameters():
            if parameter.dim() > 1:
                parameter.normal_(0.0, 0.3, generator=generator)
    return classifier


def _with_truncator(classifier: TextClassifier, truncator: str) -> TextClassifier:
    info = dataclasses.replace(classifier.info, truncator=truncator)
    return TextClassifier(classifier.model, classifier.tokenizer, info)


def _resign(directory: Path, name: str) -> None:
    """Update ``manifest.json``'s checksum of ``name`` after editing it on purpose."""
    manifest = json.loads((directory / "manifest.json").read_text())
    data = (directory / name).read_bytes()
    manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (directory / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture(scope="module")
def waterfall(tmp_path_factory) -> TextClassifier:
    classifier = make_tiny_classifier(tmp_path_factory.mktemp("tiny"))
    return _with_truncator(_varied(classifier), "waterfall")


@pytest.fixture(scope="module")
def waterfall_export(waterfall, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("exports") / "waterfall"
    export_classifier(waterfall, output, check_columns=COLUMNS, check_examples=len(COLUMNS[0]))
    return output


# -- the run config -----------------------------------------------------------------------------


def test_the_run_config_has_one_truncator_key_defaulting_to_round_robin(tmp_path):
    assert TRUNCATORS == TRUNCATIONS == ("round_robin", "waterfall")
    assert config_keys()["truncator"] is not None
    assert RunConfig().truncator == "round_robin"
    assert load_run_config(None).truncator == "round_robin"
    overridden = load_run_config(None, parse_overrides(["truncator=waterfall"]))
    assert overridden.truncator == "waterfall"
    path = tmp_path / "run.yaml"
    path.write_text("truncator: waterfall\n", encoding="utf-8")
    assert load_run_config(path).truncator == "waterfall"
    # A run's config.json written before the key existed repeats as round robin.
    data = RunConfig().to_dict()
    del data["truncator"]
    (tmp_path / "old.json").write_text(json.dumps(data), encoding="utf-8")
    assert load_run_config(tmp_path / "old.json").truncator == "round_robin"


def test_a_wrong_truncator_is_an_error_naming_the_key(tmp_path):
    expected = "expected one of ['round_robin', 'waterfall'], got 'longest_first'"
    with pytest.raises(ConfigError) as error:
        load_run_config(None, parse_overrides(["truncator=longest_first"]))
    assert str(error.value) == f"override truncator: {expected}"
    path = tmp_path / "bad.yaml"
    path.write_text("truncator: longest_first\n", encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_run_config(path)
    assert str(error.value) == f"{path}.truncator: {expected}"
    with pytest.raises(ConfigError, match=r"^truncator: expected one of"):
        RunConfig(truncator="longest_first").validate()


def test_the_cli_refuses_a_wrong_truncator_in_one_line_with_status_2():
    result = subprocess.run(
        [sys.executable, "-m", "bertfit", "config", "show", "--no-resolve", "truncator=bogus"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "truncator" in lines[0] and "'bogus'" in lines[0], result.stderr
    flag = subprocess.run(
        [sys.executable, "-m", "bertfit", "train", "--truncator", "bogus", "--output", "x"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert flag.returncode == 2 and "Traceback" not in flag.stderr
    assert "--truncator" in flag.stderr


# -- the saved model ----------------------------------------------------------------------------


def test_save_pretrained_records_the_truncator_and_loads_it(waterfall, tmp_path):
    waterfall.save_pretrained(tmp_path / "model")
    assert json.loads((tmp_path / "model" / BERTFIT_FILE).read_text())["truncator"] == "waterfall"
    loaded = TextClassifier.from_pretrained(tmp_path / "model")
    assert loaded.info.truncator == "waterfall" and loaded.processor.truncator == "waterfall"
    assert loaded.encode(COLUMNS) == waterfall.encode(COLUMNS)


def test_a_model_saved_before_the_truncator_loads_as_round_robin(waterfall, tmp_path):
    waterfall.save_pretrained(tmp_path / "model")
    info_path = tmp_path / "model" / BERTFIT_FILE
    info = json.loads(info_path.read_text())
    del info["truncator"]
    info_path.write_text(json.dumps(info))
    loaded = TextClassifier.from_pretrained(tmp_path / "model")
    assert loaded.info.truncator == "round_robin" and loaded.processor.truncator == "round_robin"
    info["truncator"] = "longest_first"
    info_path.write_text(json.dumps(info))
    with pytest.raises(ConfigError, match=r"bertfit.json.truncator: expected one of"):
        TextClassifier.from_pretrained(tmp_path / "model")


# -- every packing path agrees ------------------------------------------------------------------


def test_training_time_and_exported_packing_agree_with_waterfall(waterfall, waterfall_export):
    examples = TextExamples([list(c) for c in COLUMNS], [0, 1, 0, 1, 0], "long pairs")
    store = encode_examples(waterfall, MRPC, examples).inputs  # the trainer's flat fast path
    listed = waterfall.encode(COLUMNS)  # evaluate and predict
    predictor = load_exported(waterfall_export)
    assert predictor.truncator == "waterfall"
    exported = predictor.encode(COLUMNS)  # numpy + tokenizers, no torch
    assert store.to_list() == listed == exported
    seq_length = waterfall.info.max_seq_length
    padded = store.gather_padded(range(len(store)), waterfall.padding_id, seq_length)
    for name, array in pad_packed(exported, predictor._padding_id, seq_length).items():
        assert np.array_equal(array, padded[name]), name
    # Texts long enough to truncate, cut the waterfall way: a long first text fills the budget
    # and the second keeps nothing but its [SEP], which round robin would never do.
    first_words, first_types = exported[0]
    assert len(first_words) == seq_length and first_words[-2:] == [3, 3]
    assert first_types[-1] == 1 and first_types.count(1) == 1
    round_robin = TextProcessor(waterfall.tokenizer, seq_length).encode(COLUMNS)
    assert round_robin[0] != exported[0] and round_robin[3] == exported[3]
    # And the model answers the same through both.
    np.testing.assert_allclose(predictor.logits(COLUMNS), waterfall.logits(COLUMNS), atol=1e-4)


def test_the_export_records_the_truncator_and_refuses_an_unknown_one(waterfall_export, tmp_path):
    spec = json.loads((waterfall_export / "classifier.json").read_text())
    assert spec["packing"]["truncation"] == "waterfall"
    directory = tmp_path / "copy"
    directory.mkdir()
    for path in waterfall_export.iterdir():
        (directory / path.name).write_bytes(path.read_bytes())
    spec["packing"]["truncation"] = "longest_first"
    (directory / "classifier.json").write_text(json.dumps(spec))
    _resign(directory, "classifier.json")
    with pytest.raises(CheckpointError, match=r"packing.truncation must be one of"):
        load_exported(directory)


def test_an_export_written_before_the_truncator_loads_as_round_robin(tmp_path):
    classifier = _varied(make_tiny_classifier(tmp_path))
    export_classifier(classifier, tmp_path / "old", check_examples=0)
    spec = json.loads((tmp_path / "old" / "classifier.json").read_text())
    del spec["packing"]["truncation"]
    (tmp_path / "old" / "classifier.json").write_text(json.dumps(spec))
    _resign(tmp_path / "old", "classifier.json")
    predictor = load_exported(tmp_path / "old")
    assert predictor.truncator == "round_robin"
    assert predictor.encode(COLUMNS) == classifier.encode(COLUMNS)


# -- a vocabulary without [MASK] ----------------------------------------------------------------


def test_a_vocab_without_mask_trains_saves_and_exports(tmp_path):
    tokens = [t for t in TINY_VOCAB if t != "[MASK]"]
    classifier = make_tiny_classifier(tmp_path, tokens=tokens, max_seq_length=16)
    tokenizer = classifier.tokenizer
    assert "mask_id" not in tokenizer.special_tokens_dict
    classifier = _varied(classifier)
    classifier.model.eval()
    classifier.save_pretrained(tmp_path / "model")
    loaded = TextClassifier.from_pretrained(tmp_path / "model")
    assert loaded.tokenizer.special_tokens_dict == tokenizer.special_tokens_dict
    np.testing.assert_allclose(loaded.logits(COLUMNS), classifier.logits(COLUMNS), atol=1e-6)
    export_classifier(tmp_path / "model", tmp_path / "export", check_columns=COLUMNS)
    spec = json.loads((tmp_path / "export" / "classifier.json").read_text())
    assert spec["packing"]["special_tokens"] == dict(tokenizer.special_tokens_dict)
    predictor = load_exported(tmp_path / "export")
    assert predictor.encode(COLUMNS) == loaded.encode(COLUMNS)
    np.testing.assert_allclose(predictor.logits(COLUMNS), loaded.logits(COLUMNS), atol=1e-4)


# -- a run end to end ---------------------------------------------------------------------------


def test_train_with_the_truncator_flag_records_it_for_the_model_and_its_export(tmp_path, capsys):
    make_tiny_classifier(tmp_path).save_pretrained(tmp_path / "tiny")
    glue = write_synthetic_glue(tmp_path / "glue", n_train=32, n_dev=16)
    run = tmp_path / "run"
    args = ["train", "--model", str(tmp_path / "tiny"), "--data-dir", str(glue), "--quiet",
            "--output", str(run), "--max-seq-length", "12", "--truncator", "waterfall",
            "--max-steps", "2", "--batch-size", "16"]  # fmt: skip
    assert main(args) == 0
    assert json.loads((run / "config.json").read_text())["truncator"] == "waterfall"
    assert json.loads((run / "model" / BERTFIT_FILE).read_text())["truncator"] == "waterfall"
    assert main(["export", str(run), "--output", str(tmp_path / "export")]) == 0
    predictor = load_exported(tmp_path / "export")
    assert predictor.truncator == "waterfall"
    model = TextClassifier.from_pretrained(run / "model")
    assert predictor.encode(COLUMNS) == model.encode(COLUMNS)
    capsys.readouterr()


def test_plot_inputs_packs_with_the_models_truncator(waterfall, tmp_path):
    from bertfit.viz.plots import text_setup

    waterfall.save_pretrained(tmp_path / "model")
    *_, truncator = text_setup(tmp_path / "model")
    assert truncator == "waterfall"
