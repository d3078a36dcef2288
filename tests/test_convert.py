"""Loading, converting and training from TensorFlow BERTs, checked against TensorFlow's outputs.

The fixtures in tests/fixtures/tf are tiny random BERTs that TensorFlow 2.20 and Model Garden
2.20 wrote in the three layouts, with the encoder outputs TensorFlow computed for them
(tools/make_tf_fixtures.py; versions in MANIFEST.json).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from tf_bundle import write_bundle

from bertfit.cli import main
from bertfit.errors import CheckpointError
from bertfit.model.classifier import BertClassifier
from bertfit.model.config import EncoderConfig
from bertfit.model.convert import convert_to_hf
from bertfit.model.encoder import BertEncoder
from bertfit.model.sources import describe_source, load_encoder_source
from bertfit.model.tf_checkpoint import CheckpointReader
from bertfit.model.weights import load_pretrained
from bertfit.text.tokenizer import WordpieceTokenizer

from conftest import write_synthetic_glue

FIXTURES = Path(__file__).parent / "fixtures" / "tf"
EXPECTED = np.load(FIXTURES / "outputs.npz", allow_pickle=False)
LAYOUTS = ("tf1", "tf2", "hub")
LAYOUT_OF = {"tf1": "tf1", "tf2": "tf2", "hub": "tf-hub"}
TOLERANCE = 1e-5


def inputs() -> dict[str, torch.Tensor]:
    names = ("input_word_ids", "input_mask", "input_type_ids")
    return {name: torch.from_numpy(EXPECTED[f"inputs_{name}"].astype(np.int64)) for name in names}


def assert_matches_tensorflow(layout: str, sequence, pooled) -> None:
    # Every position, padding included: TensorFlow and bertfit mask keys, not queries.
    np.testing.assert_allclose(sequence, EXPECTED[f"{layout}_sequence_output"], atol=TOLERANCE)
    np.testing.assert_allclose(pooled, EXPECTED[f"{layout}_pooled_output"], atol=TOLERANCE)


def encode(model: BertEncoder):
    with torch.no_grad():
        out = model.eval()(**inputs())
    return out.sequence_output.numpy(), out.pooled_output.numpy()


# ---- loading each layout matches TensorFlow -------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
def test_load_pretrained_matches_tensorflow(layout):
    source = describe_source(FIXTURES / layout)
    assert source.format == LAYOUT_OF[layout]
    # Google's and Model Garden's "gelu" is the tanh approximation.
    assert source.config.hidden_activation == "gelu_tanh"
    model = BertEncoder(source.config)
    report = load_pretrained(model, FIXTURES / layout)
    assert report.ok and report.restored == 39
    assert_matches_tensorflow(layout, *encode(model))


def test_the_activation_matters_at_this_tolerance():
    # The check above could not tell the GELUs apart if they agreed to 1e-5; they do not.
    config = dataclasses.replace(describe_source(FIXTURES / "tf1").config, hidden_activation="gelu")
    model = BertEncoder(config)
    load_pretrained(model, FIXTURES / "tf1")
    sequence, _ = encode(model)
    assert np.abs(sequence - EXPECTED["tf1_sequence_output"]).max() > 10 * TOLERANCE


@pytest.mark.parametrize(
    "path",
    ["tf1/bert_model.ckpt", "tf1/bert_model.ckpt.index", "tf2/bert_model.ckpt.data-00001-of-00002",
     "hub/variables/variables.index"],
)  # fmt: skip
def test_prefixes_and_index_files_name_the_same_checkpoint(path):
    layout = path.split("/")[0]
    source = load_encoder_source(FIXTURES / path)
    assert source.source.format == LAYOUT_OF[layout]
    model = BertEncoder(source.config)
    load_pretrained(model, FIXTURES / path)
    assert_matches_tensorflow(layout, *encode(model))


def test_report_names_what_was_ignored():
    report = load_pretrained(
        BertEncoder(describe_source(FIXTURES / "tf1").config), FIXTURES / "tf1"
    )
    assert "global_step" in report.ignored
    assert "cls/predictions/output_bias" in report.ignored  # the masked-LM head
    assert "bert/pooler/dense/kernel/adam_m" in report.ignored  # optimizer state
    hub = load_encoder_source(FIXTURES / "hub")
    assert "do_lower_case/.ATTRIBUTES/VARIABLE_VALUE" in hub.ignored
    assert all(name.startswith(("mlm/", "do_lower_case/")) for name in hub.ignored)
    assert hub.source_names["encoder.layer.0.attention.self.query.weight"].startswith("variables/")


def test_classifier_gets_the_encoder_and_a_fresh_head():
    config = describe_source(FIXTURES / "tf2").config
    model = BertClassifier(config, num_classes=3)
    report = load_pretrained(model, FIXTURES / "tf2")
    assert report.initialized == ["classifier.weight", "classifier.bias"]
    assert_matches_tensorflow("tf2", *encode(model.encoder))


# ---- layout from the keys, config from wherever it is -----------------------------------------


def test_layout_comes_from_the_keys_not_the_config_dialect(tmp_path):
    tf1 = Path(shutil.copytree(FIXTURES / "tf1", tmp_path / "tf1"))
    tf2 = Path(shutil.copytree(FIXTURES / "tf2", tmp_path / "tf2"))
    tf1_config = (tf1 / "bert_config.json").read_text()
    (tf1 / "bert_config.json").write_text((tf2 / "bert_config.json").read_text())
    (tf2 / "bert_config.json").write_text(tf1_config)
    for directory, layout in ((tf1, "tf1"), (tf2, "tf2")):
        source = describe_source(directory)
        assert source.format == layout
        model = BertEncoder(source.config)
        load_pretrained(model, directory)
        assert_matches_tensorflow(layout, *encode(model))


def test_hub_config_from_keras_metadata_or_from_shapes(tmp_path):
    assert describe_source(FIXTURES / "hub").config_from.endswith("keras_metadata.pb")
    hub = Path(shutil.copytree(FIXTURES / "hub", tmp_path / "hub"))
    (hub / "keras_metadata.pb").unlink()
    source = describe_source(hub)
    assert source.config_from.startswith("tensor shapes")
    assert source.config.num_attention_heads == 2  # read off the per-head kernels
    assert source.lower_case is True  # the SavedModel's do_lower_case variable
    assert source.vocab == hub / "assets" / "vocab.txt"
    model = BertEncoder(source.config)
    load_pretrained(model, hub)
    assert_matches_tensorflow("hub", *encode(model))


def test_tf1_checkpoint_without_config_says_what_is_missing(tmp_path):
    tf1 = Path(shutil.copytree(FIXTURES / "tf1", tmp_path / "tf1"))
    (tf1 / "bert_config.json").unlink()
    with pytest.raises(CheckpointError, match="put the model's bert_config.json beside it"):
        describe_source(tf1)


# ---- the strict report --------------------------------------------------------------------------


def test_config_that_does_not_fit_fails_loudly_naming_tensorflow_keys(tmp_path):
    tf1 = Path(shutil.copytree(FIXTURES / "tf1", tmp_path / "tf1"))
    config = json.loads((tf1 / "bert_config.json").read_text())
    (tf1 / "bert_config.json").write_text(json.dumps({**config, "num_hidden_layers": 1}))
    model = BertEncoder(describe_source(tf1).config)
    with pytest.raises(CheckpointError, match="unexpected 16: bert/encoder/layer_1/") as error:
        load_pretrained(model, tf1)
    assert "bert_model.ckpt does not fit the model" in str(error.value)
    (tf1 / "bert_config.json").write_text(json.dumps({**config, "intermediate_size": 40}))
    model = BertEncoder(describe_source(tf1).config)
    with pytest.raises(
        CheckpointError, match="wrong shape 6: bert/encoder/layer_0/intermediate"
    ) as error:
        load_pretrained(model, tf1)
    shown = "layer_0/intermediate/dense/kernel as encoder.layer.0.intermediate.dense.weight"
    assert f"{shown} (checkpoint [48, 32], model [40, 32])" in str(error.value)
    report = load_pretrained(model, tf1, strict=False)  # without strict: what fits is restored
    assert not report.ok and report.restored == 33


def test_unknown_tensors_are_unexpected_and_duplicates_are_refused(tmp_path):
    reader = CheckpointReader(FIXTURES / "tf1" / "bert_model.ckpt")
    tensors = {k: reader.read(k) for k in reader if reader.dtype(k) == "float32"}
    directory = tmp_path / "extra"
    shutil.copytree(FIXTURES / "tf1", directory, ignore=shutil.ignore_patterns("*.ckpt*"))
    extra = {**tensors, "bert/encoder/layer_0/attention/self/relative/kernel": np.ones(3, "f4")}
    write_bundle(directory / "bert_model.ckpt", extra)
    model = BertEncoder(describe_source(directory).config)
    with pytest.raises(
        CheckpointError, match="unexpected 1: bert/encoder/layer_0/attention/self/rel"
    ):
        load_pretrained(model, directory)
    twice = {
        **tensors,
        "other/bert/embeddings/word_embeddings": tensors["bert/embeddings/word_embeddings"],
    }
    write_bundle(directory / "bert_model.ckpt", twice)
    with pytest.raises(CheckpointError, match="more than one encoder"):
        load_pretrained(model, directory)


def test_run_classifier_heads_and_training_state(tmp_path):
    # A checkpoint of Google's run_classifier.py: the encoder, its classification head
    # (output_weights [labels, hidden]) and Adam's state.
    reader = CheckpointReader(FIXTURES / "tf1" / "bert_model.ckpt")
    tensors = {k: reader.read(k) for k in reader if k.startswith("bert/") and "adam" not in k}
    head = np.arange(64, dtype="f4").reshape(2, 32) / 64
    extra = {"output_weights": head, "output_bias": np.array([0.5, -0.5], "f4")}
    extra |= {"beta1_power": np.array(0.9, "f4"), "output_weights/adam_v": head}
    directory = tmp_path / "finetuned"
    shutil.copytree(FIXTURES / "tf1", directory, ignore=shutil.ignore_patterns("*.ckpt*"))
    write_bundle(directory / "model.ckpt-1000", {**tensors, **extra})
    classifier = BertClassifier(describe_source(directory).config, num_classes=2)
    report = load_pretrained(classifier, directory)
    assert report.initialized == [] and report.restored == 41
    assert sorted(report.ignored) == ["beta1_power", "output_weights/adam_v"]
    assert torch.equal(classifier.classifier.dense.weight, torch.from_numpy(head))
    encoder = BertEncoder(describe_source(directory).config)
    report = load_pretrained(encoder, directory)  # an encoder has no use for the head
    assert "output_weights as classifier.weight" in report.ignored and report.ok
    assert_matches_tensorflow("tf1", *encode(encoder))


def test_corrupt_weights_fail_with_the_file_named(tmp_path):
    tf2 = Path(shutil.copytree(FIXTURES / "tf2", tmp_path / "tf2"))
    shard = tf2 / "bert_model.ckpt.data-00000-of-00002"
    data = bytearray(shard.read_bytes())
    data[100] ^= 0xFF
    shard.write_bytes(bytes(data))
    model = BertEncoder(describe_source(tf2).config)
    with pytest.raises(CheckpointError, match=r"data-00000-of-00002: checksum mismatch"):
        load_pretrained(model, tf2)


# ---- bertfit convert ---------------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
def test_converted_directory_loads_in_transformers_and_matches_tensorflow(layout, tmp_path):
    from transformers import AutoTokenizer, BertModel

    result = convert_to_hf(FIXTURES / layout, tmp_path / "out")
    assert sorted(p.name for p in result.output.iterdir()) == [
        "config.json", "model.safetensors", "special_tokens_map.json", "tokenizer_config.json",
        "vocab.txt",
    ]  # fmt: skip
    config = json.loads((result.output / "config.json").read_text())
    assert config["hidden_act"] == "gelu_new"  # the tanh GELU, in Hugging Face's words
    tokenizer_config = json.loads((result.output / "tokenizer_config.json").read_text())
    assert tokenizer_config["do_lower_case"] and tokenizer_config["strip_accents"]
    assert tokenizer_config["model_max_length"] == config["max_position_embeddings"]
    # transformers' tokenizer, read from those files, splits text as bertfit's does.
    hf_tokenizer = AutoTokenizer.from_pretrained(result.output)
    ours = WordpieceTokenizer(result.output / "vocab.txt", lower_case=True)
    text = "The Café sat on the MAT, unknownword."
    assert hf_tokenizer(text, add_special_tokens=False)["input_ids"] == ours.encode(text)
    model = BertModel.from_pretrained(result.output).eval()
    ids = inputs()
    with torch.no_grad():
        out = model(
            input_ids=ids["input_word_ids"],
            attention_mask=ids["input_mask"],
            token_type_ids=ids["input_type_ids"],
        )
    assert_matches_tensorflow(layout, out.last_hidden_state.numpy(), out.pooler_output.numpy())
    # ... and bertfit reads it back as an ordinary model directory.
    again = BertEncoder(EncoderConfig.from_model_dir(result.output))
    load_pretrained(again, result.output).assert_consumed()
    assert_matches_tensorflow(layout, *encode(again))


def test_convert_command(tmp_path, capsys):
    output = tmp_path / "converted"
    assert (
        main(["convert", str(FIXTURES / "tf1" / "bert_model.ckpt"), "--output", str(output)]) == 0
    )
    printed = capsys.readouterr().out
    assert "Google's original BERT names" in printed and "restored 39 tensors" in printed
    assert (
        "hidden_act gelu_new" in printed and "ignored: bert/pooler/dense/kernel/adam_m" in printed
    )
    assert main(["convert", str(FIXTURES / "tf2"), "--output", str(output)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["convert", str(FIXTURES / "tf2"), "--output", str(output), "--overwrite"]) == 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left
    assert main(["convert", str(tmp_path / "nothing"), "--output", str(tmp_path / "x")]) == 2
    assert "neither a preset" in capsys.readouterr().err


def test_failed_conversion_leaves_no_output(tmp_path):
    tf1 = Path(shutil.copytree(FIXTURES / "tf1", tmp_path / "tf1"))
    config = json.loads((tf1 / "bert_config.json").read_text())
    (tf1 / "bert_config.json").write_text(json.dumps({**config, "num_hidden_layers": 3}))
    with pytest.raises(CheckpointError, match="missing 16"):
        convert_to_hf(tf1, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tf1"]


# ---- bertfit train --model on each format --------------------------------------------------------


@pytest.mark.parametrize("path", ["tf1/bert_model.ckpt", "tf2", "hub"])
def test_train_accepts_tensorflow_sources(path, tmp_path):
    root = write_synthetic_glue(tmp_path / "glue", n_train=32, n_dev=16)
    run = tmp_path / "run"
    args = ["train", "--output", str(run), "--data-dir", str(root), "--model", str(FIXTURES / path)]
    # No --quiet: it would switch bars off for the rest of this test process.
    args += ["--max-steps", "1", "--batch-size", "8", "--max-seq-length", "32"]
    assert main(args) == 0
    saved = json.loads((run / "model" / "config.json").read_text())
    assert saved["hidden_act"] == "gelu_new" and saved["hidden_size"] == 32
    # One small step from the TensorFlow weights: still (almost) those weights.
    from safetensors.torch import load_file

    trained = load_file(run / "model" / "model.safetensors")[
        "bert.embeddings.word_embeddings.weight"
    ]
    original = load_encoder_source(FIXTURES / path).state_dict["embeddings.word_embeddings.weight"]
    assert torch.allclose(trained, original.float(), atol=1e-3)


def test_docs_conversion_example_runs(tmp_path):
    import re

    from conftest import REPO

    doc = (REPO / "docs" / "encoders.md").read_text(encoding="utf-8")
    (block,) = re.findall(r"```python3\n(.*?)```", doc, re.S)
    code = block.replace('"uncased_L-12_H-768_A-12"', repr(str(FIXTURES / "tf1")))
    code = code.replace('"bert-base-hf"', repr(str(tmp_path / "hf")))
    exec(compile(code, "docs/encoders.md", "exec"), {})
    assert (tmp_path / "hf" / "model.safetensors").is_file()
