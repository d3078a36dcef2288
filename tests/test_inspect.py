"""`bertfit inspect`: architecture, parameters per block and special tokens of any model source."""

from __future__ import annotations

import json

import pytest
import torch

from bertfit.cli import main
from bertfit.inspect import block_of, format_summary, inspect_model
from bertfit.model.classifier import BertClassifier
from bertfit.model.config import EncoderConfig
from bertfit.model.weights import to_hf_state_dict
from bertfit.text.tokenizer import WordpieceTokenizer

from conftest import make_tiny_classifier


def block_counts(model: BertClassifier) -> dict[str, int]:
    """Parameters of each block, counted on the PyTorch model bertfit builds."""

    def count(module):
        return sum(p.numel() for p in module.parameters())

    counts = {"embeddings": count(model.encoder.embeddings)}
    for index, layer in enumerate(model.encoder.layers):
        counts[f"layer {index}"] = count(layer)
    counts["pooler"] = count(model.encoder.pooler)
    counts["classifier"] = count(model.classifier)
    return counts


def test_preset_matches_the_encoder_bertfit_builds(minilm_dir):
    summary = inspect_model("minilm-l6")
    assert summary.kind == "preset" and summary.weights_format == "safetensors"
    config = EncoderConfig.from_model_dir(minilm_dir)
    assert summary.architecture["num_layers"] == config.num_layers == 6
    assert summary.architecture["hidden_size"] == 384
    assert summary.architecture["num_attention_heads"] == 12
    assert summary.architecture["head_size"] == 32
    with torch.device("meta"):
        expected = block_counts(BertClassifier(config, 2))
    del expected["classifier"]  # a pretrained encoder has no head yet
    assert dict(summary.blocks) == expected
    assert summary.total_parameters == sum(expected.values()) == 22_713_216
    assert dict(summary.unused) == {"buffers": 512}  # position_ids, not a parameter
    tokenizer = WordpieceTokenizer(minilm_dir / "vocab.txt")
    special = tokenizer.special_tokens_dict
    assert summary.special_tokens["[CLS]"]["id"] == special["start_of_sequence_id"] == 101
    assert summary.special_tokens["[SEP]"]["id"] == special["end_of_segment_id"]
    assert summary.special_tokens["[PAD]"]["id"] == special["padding_id"]
    assert summary.special_tokens["[MASK]"]["id"] == special["mask_id"]
    assert summary.vocabulary["size"] == special["vocab_size"] == 30522
    assert summary.vocabulary["lower_case"] is True


@pytest.fixture
def tiny(tmp_path):
    classifier = make_tiny_classifier(tmp_path)
    classifier.save_pretrained(tmp_path / "model")
    return classifier


def test_model_dir_weight_files_of_each_format_and_a_run_agree(tmp_path, tiny):
    expected = block_counts(tiny.model)
    model_dir = tmp_path / "model"
    # The same weights as a PyTorch file, in Hugging Face names and in bertfit's own.
    torch.save(to_hf_state_dict(tiny.model.state_dict()), tmp_path / "hf.bin")
    torch.save(tiny.model.state_dict(), tmp_path / "own.pt")
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    for item in model_dir.iterdir():
        (run / "model" / item.name).write_bytes(item.read_bytes())
    (run / "results.json").write_text(json.dumps({"best": {"epoch": 2, "dev_accuracy": 0.75}}))
    for source, kind in (
        (model_dir, "model directory"),
        (model_dir / "model.safetensors", "checkpoint"),
        (tmp_path / "hf.bin", "checkpoint"),
        (tmp_path / "own.pt", "checkpoint"),
        (run, "run"),
    ):
        summary = inspect_model(source)
        assert summary.kind == kind, source
        assert dict(summary.blocks) == expected, source
        assert summary.total_parameters == sum(p.numel() for p in tiny.model.parameters())
    assert summary.classifier["task"] == "mrpc"
    assert summary.classifier["label_names"] == ["not_equivalent", "equivalent"]
    assert summary.classifier["best"] == {"epoch": 2, "dev_accuracy": 0.75}


def test_without_a_config_the_shapes_still_tell_the_architecture(tmp_path, tiny):
    bare = tmp_path / "bare"
    bare.mkdir()
    weights = (tmp_path / "model" / "model.safetensors").read_bytes()
    (bare / "model.safetensors").write_bytes(weights)
    summary = inspect_model(bare / "model.safetensors")
    config = tiny.model.config
    assert summary.architecture == {
        "num_layers": config.num_layers,
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "max_position_embeddings": config.max_position_embeddings,
        "type_vocab_size": config.type_vocab_size,
        "intermediate_size": config.intermediate_size,
        "num_labels": 2,
    }
    assert summary.architecture_from.startswith("tensor shapes")
    text = format_summary(summary)
    assert "num_attention_heads      not recorded" in text and "no vocab.txt" in text


@pytest.mark.parametrize(
    "name, block",
    [
        ("bert.encoder.layer.3.attention.self.query.weight", "layer 3"),
        ("encoder.layers.11.attention.qkv.weight", "layer 11"),
        ("bert/encoder/layer_2/output/dense/kernel", "layer 2"),
        ("bert/embeddings/word_embeddings", "embeddings"),
        ("bert.pooler.dense.bias", "pooler"),
        ("classifier.dense.weight", "classifier"),
        ("cls.predictions.transform.dense.weight", "pretraining heads"),
        ("bert/encoder/layer_0/output/dense/kernel/adam_m", "training state"),
        ("global_step", "training state"),
        ("embeddings.position_ids", "buffers"),
    ],
)
def test_tensor_names_of_every_naming_scheme_find_their_block(name, block):
    assert block_of(name) == block


def test_command_prints_text_json_tensors_and_modules(tmp_path, tiny, capsys):
    assert main(["inspect", str(tmp_path / "model")]) == 0
    text = capsys.readouterr().out
    assert "layers 0-1 (2 x 8,544)" in text and "total" in text and "[CLS]" in text
    assert "fine-tuned classifier" in text
    assert main(["inspect", str(tmp_path / "model"), "--json", "--tensors"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["blocks"] == block_counts(tiny.model)
    assert len(data["tensors"]) == len(to_hf_state_dict(tiny.model.state_dict()))
    assert main(["inspect", str(tmp_path / "model"), "--modules", "--tensors"]) == 0
    out = capsys.readouterr().out
    assert "BertClassifier(" in out and "(qkv): Linear(in_features=32, out_features=96" in out
    assert "bert.pooler.dense.weight" in out


def test_what_is_not_a_model_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("hello")
    for source, message in (
        (tmp_path / "absent", "not a preset"),
        (tmp_path / "empty", "empty: no weight"),
        (tmp_path / "notes.txt", "notes.txt: "),
    ):
        assert main(["inspect", str(source)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x01\x02")
    assert main(["inspect", str(broken)]) == 2
    assert "not a readable safetensors file" in capsys.readouterr().err


@pytest.mark.parametrize("layout", ["tf1", "tf2", "hub"])
def test_tensorflow_checkpoints_of_every_layout(layout):
    pytest.importorskip("bertfit.model.tf_names")
    from conftest import REPO

    directory = REPO / "tests" / "fixtures" / "tf" / layout
    if not directory.is_dir():
        pytest.skip(f"no TensorFlow fixture at {directory}")
    summary = inspect_model(directory)
    assert summary.weights_format == "tensorflow"
    config = EncoderConfig(
        **{key: summary.architecture[key] for key in EncoderConfig.__dataclass_fields__}
    )
    with torch.device("meta"):
        expected = block_counts(BertClassifier(config, 2))
    del expected["classifier"]
    assert dict(summary.blocks) == expected
    assert summary.special_tokens["[CLS]"]["id"] is not None
    # Optimizer slots, step counters and pretraining heads are reported, never counted.
    unused = {name for name, _ in summary.unused}
    assert unused <= {"pretraining heads", "training state", "buffers", "other"}
