"""EncoderConfig: the three BERT config dialects, activation names, errors, round trips."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bertfit.config import write_json
from bertfit.errors import CheckpointError, ConfigError
from bertfit.model.config import EncoderConfig, detect_dialect, find_config_file

# Google's original bert_config.json for BERT-base uncased.
GOOGLE_BASE = {
    "attention_probs_dropout_prob": 0.1,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": 768,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "max_position_embeddings": 512,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "type_vocab_size": 2,
    "vocab_size": 30522,
}

# The bert_config.json of the tutorial's uncased_L-12_H-768_A-12 folder (Model Garden keys).
MODEL_GARDEN_BASE = {
    "attention_dropout_rate": 0.1,
    "dropout_rate": 0.1,
    "hidden_activation": "gelu",
    "hidden_size": 768,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "max_position_embeddings": 512,
    "num_attention_heads": 12,
    "num_layers": 12,
    "type_vocab_size": 2,
    "vocab_size": 30522,
}

# A Hugging Face config.json as transformers writes it (all-MiniLM-L6-v2's).
HF_MINILM = {
    "_name_or_path": "nreimers/MiniLM-L6-H384-uncased",
    "architectures": ["BertModel"],
    "attention_probs_dropout_prob": 0.1,
    "gradient_checkpointing": False,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": 384,
    "initializer_range": 0.02,
    "intermediate_size": 1536,
    "layer_norm_eps": 1e-12,
    "max_position_embeddings": 512,
    "model_type": "bert",
    "num_attention_heads": 12,
    "num_hidden_layers": 6,
    "pad_token_id": 0,
    "position_embedding_type": "absolute",
    "transformers_version": "4.8.2",
    "type_vocab_size": 2,
    "use_cache": True,
    "vocab_size": 30522,
}

BERT_BASE = EncoderConfig(
    vocab_size=30522,
    hidden_size=768,
    num_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    hidden_activation="gelu_tanh",
    dropout_rate=0.1,
    attention_dropout_rate=0.1,
    max_position_embeddings=512,
    type_vocab_size=2,
    initializer_range=0.02,
    layer_norm_eps=1e-12,
)


def test_google_original_config_means_tanh_gelu():
    config = EncoderConfig.from_dict(GOOGLE_BASE, source="bert_config.json")
    assert config == BERT_BASE
    assert detect_dialect(GOOGLE_BASE) == "google"


def test_model_garden_tutorial_config_matches_google_one():
    config = EncoderConfig.from_dict(MODEL_GARDEN_BASE, source="bert_config.json")
    assert config == BERT_BASE
    assert detect_dialect(MODEL_GARDEN_BASE) == "model_garden"


def test_model_garden_encoder_config_wrapper():
    # The tutorial wraps the dict: EncoderConfig({"type": "bert", "bert": config_dict}).
    config = EncoderConfig.from_dict({"type": "bert", "bert": MODEL_GARDEN_BASE})
    assert config == BERT_BASE


def test_model_garden_encoder_constructor_names():
    data = {
        "vocab_size": 100,
        "hidden_size": 64,
        "num_layers": 3,
        "num_attention_heads": 4,
        "inner_dim": 256,
        "inner_activation": "relu",
        "max_sequence_length": 128,
        "type_vocab_size": 16,
        "output_dropout": 0.2,
        "attention_dropout": 0.3,
        "embedding_width": 64,
        "norm_first": False,
        "output_range": None,
        "return_all_encoder_outputs": False,
    }
    config = EncoderConfig.from_dict(data)
    assert (config.intermediate_size, config.hidden_activation) == (256, "relu")
    assert (config.max_position_embeddings, config.type_vocab_size) == (128, 16)
    assert (config.dropout_rate, config.attention_dropout_rate) == (0.2, 0.3)


def test_hugging_face_config_means_exact_gelu():
    config = EncoderConfig.from_dict(HF_MINILM, source="config.json")
    assert detect_dialect(HF_MINILM) == "hf"
    assert config == EncoderConfig(
        vocab_size=30522,
        hidden_size=384,
        num_layers=6,
        num_attention_heads=12,
        intermediate_size=1536,
        hidden_activation="gelu",
        max_position_embeddings=512,
        layer_norm_eps=1e-12,
    )


def test_hugging_face_config_without_model_type_is_still_hugging_face():
    # Old transformers configs lack model_type; layer_norm_eps still gives them away, and
    # their "gelu" is the exact one.
    data = {k: v for k, v in HF_MINILM.items() if k not in ("model_type", "architectures")}
    data = {k: v for k, v in data.items() if k not in ("_name_or_path", "transformers_version")}
    assert EncoderConfig.from_dict(data).hidden_activation == "gelu"


@pytest.mark.parametrize(
    ("dialect_dict", "key", "given", "stored"),
    [
        (HF_MINILM, "hidden_act", "gelu", "gelu"),
        (HF_MINILM, "hidden_act", "gelu_python", "gelu"),
        (HF_MINILM, "hidden_act", "gelu_new", "gelu_tanh"),
        (HF_MINILM, "hidden_act", "gelu_pytorch_tanh", "gelu_tanh"),
        (HF_MINILM, "hidden_act", "relu", "relu"),
        (HF_MINILM, "hidden_act", "silu", "silu"),
        (HF_MINILM, "hidden_act", "swish", "silu"),
        (GOOGLE_BASE, "hidden_act", "gelu", "gelu_tanh"),
        (GOOGLE_BASE, "hidden_act", "relu", "relu"),
        (MODEL_GARDEN_BASE, "hidden_activation", "gelu", "gelu_tanh"),
        (MODEL_GARDEN_BASE, "hidden_activation", "swish", "silu"),
    ],
)
def test_activation_names_are_mapped_per_dialect(dialect_dict, key, given, stored):
    assert EncoderConfig.from_dict({**dialect_dict, key: given}).hidden_activation == stored


@pytest.mark.parametrize(
    ("dialect_dict", "key"), [(GOOGLE_BASE, "hidden_act"), (MODEL_GARDEN_BASE, "hidden_activation")]
)
def test_missing_activation_defaults_to_the_dialects_gelu(dialect_dict, key):
    data = {k: v for k, v in dialect_dict.items() if k != key}
    assert EncoderConfig.from_dict(data).hidden_activation == "gelu_tanh"
    hf = {k: v for k, v in HF_MINILM.items() if k != "hidden_act"}
    assert EncoderConfig.from_dict(hf).hidden_activation == "gelu"


@pytest.mark.parametrize(
    ("activation", "hf_name"),
    [("gelu", "gelu"), ("gelu_tanh", "gelu_new"), ("relu", "relu"), ("silu", "silu")],
)
def test_to_hf_dict_names_the_same_function(activation, hf_name):
    config = EncoderConfig(hidden_size=64, num_attention_heads=4, hidden_activation=activation)
    hf = config.to_hf_dict()
    assert hf["hidden_act"] == hf_name
    assert hf["model_type"] == "bert"
    assert (hf["num_hidden_layers"], hf["hidden_size"]) == (12, 64)
    assert EncoderConfig.from_dict(hf) == config


def test_to_hf_dict_is_accepted_by_transformers():
    transformers = pytest.importorskip("transformers")
    config = EncoderConfig(vocab_size=99, hidden_size=32, num_layers=2, num_attention_heads=4)
    hf = transformers.BertConfig(**config.to_hf_dict())
    assert (hf.num_hidden_layers, hf.hidden_act, hf.vocab_size) == (2, "gelu_new", 99)


def test_bertfit_dialect_round_trip(tmp_path):
    config = EncoderConfig(
        vocab_size=99,
        hidden_size=32,
        num_layers=2,
        num_attention_heads=4,
        hidden_activation="gelu",
        dropout_rate=0.0,
        layer_norm_eps=1e-5,
    )
    data = config.to_dict()
    assert data["dialect"] == "bertfit"
    assert EncoderConfig.from_dict(data) == config
    # "gelu" in our dialect stays exact even though Model Garden's keys look alike.
    write_json(tmp_path / "encoder.json", data)
    assert EncoderConfig.from_json_file(tmp_path / "encoder.json") == config


def test_explicit_dialect_overrides_detection():
    config = EncoderConfig.from_dict(GOOGLE_BASE, dialect="hf")
    assert config.hidden_activation == "gelu"
    with pytest.raises(ConfigError, match="unknown dialect 'tf'"):
        EncoderConfig.from_dict(GOOGLE_BASE, dialect="tf")


def test_unknown_key_is_named_with_source_and_suggestion():
    with pytest.raises(ConfigError) as error:
        EncoderConfig.from_dict({**GOOGLE_BASE, "hiden_act": "gelu"}, source="my/bert_config.json")
    message = str(error.value)
    assert "my/bert_config.json" in message
    assert "'hiden_act'" in message and "did you mean 'hidden_act'" in message


def test_keys_of_another_dialect_are_unknown():
    with pytest.raises(ConfigError, match="unknown key 'hidden_act'"):
        EncoderConfig.from_dict({**MODEL_GARDEN_BASE, "hidden_act": "gelu"})


@pytest.mark.parametrize(
    ("base", "key"),
    [
        (GOOGLE_BASE, "num_hidden_layers"),
        (MODEL_GARDEN_BASE, "num_layers"),
        (HF_MINILM, "vocab_size"),
    ],
)
def test_missing_shape_key_is_named(base, key):
    data = {k: v for k, v in base.items() if k != key}
    with pytest.raises(ConfigError, match=f"x.json: missing required key '{key}'"):
        EncoderConfig.from_dict(data, source="x.json")


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("hidden_size", "768", "x.json.hidden_size: expected a positive integer"),
        ("num_hidden_layers", 0, "x.json.num_hidden_layers: expected a positive integer"),
        ("vocab_size", True, "x.json.vocab_size: expected a positive integer"),
        ("hidden_dropout_prob", 1.5, "x.json.hidden_dropout_prob: expected a number in"),
        ("initializer_range", -1, "x.json.initializer_range: expected a positive number"),
        ("hidden_act", "gelu_new", "x.json.hidden_act: unsupported activation 'gelu_new'"),
        ("num_attention_heads", 7, "x.json.num_attention_heads: hidden_size 768 is not divisible"),
    ],
)
def test_bad_values_name_the_key(key, value, expected):
    with pytest.raises(ConfigError) as error:
        EncoderConfig.from_dict({**GOOGLE_BASE, key: value}, source="x.json")
    assert expected in str(error.value)


@pytest.mark.parametrize(
    ("base", "key", "value"),
    [
        (HF_MINILM, "position_embedding_type", "relative_key"),
        (HF_MINILM, "is_decoder", True),
        (HF_MINILM, "model_type", "roberta"),
        (MODEL_GARDEN_BASE, "norm_first", True),
        (MODEL_GARDEN_BASE, "embedding_size", 128),
    ],
)
def test_architecture_variants_bertfit_does_not_build_are_refused(base, key, value):
    with pytest.raises(ConfigError, match=f"c.json.{key}"):
        EncoderConfig.from_dict({**base, key: value}, source="c.json")


def test_contradicting_aliases_are_refused():
    with pytest.raises(ConfigError, match="'inner_dim'=1024 contradicts 'intermediate_size'"):
        EncoderConfig.from_dict({**MODEL_GARDEN_BASE, "inner_dim": 1024})


def test_wrapper_of_another_encoder_type_is_refused():
    with pytest.raises(ConfigError, match="only 'bert' encoders"):
        EncoderConfig.from_dict({"type": "mobilebert", "mobilebert": {"num_layers": 2}})


def test_undetectable_dialect_is_refused():
    with pytest.raises(ConfigError, match="cannot tell which BERT config dialect"):
        EncoderConfig.from_dict({"vocab_size": 10, "hidden_size": 8}, source="x.json")


def test_direct_construction_is_validated():
    with pytest.raises(ConfigError, match="EncoderConfig.hidden_activation"):
        EncoderConfig(hidden_activation="gelu_new")
    with pytest.raises(ConfigError, match="EncoderConfig.num_attention_heads"):
        EncoderConfig(hidden_size=100, num_attention_heads=3)


def test_bad_json_file_is_named(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError, match=str(path)):
        EncoderConfig.from_json_file(path)


def test_model_dir_config_prefers_config_json(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json or bert_config.json"):
        find_config_file(tmp_path)
    (tmp_path / "bert_config.json").write_text(json.dumps(GOOGLE_BASE), encoding="utf-8")
    assert EncoderConfig.from_model_dir(tmp_path) == BERT_BASE
    (tmp_path / "config.json").write_text(json.dumps(HF_MINILM), encoding="utf-8")
    assert EncoderConfig.from_model_dir(tmp_path).hidden_size == 384


def test_packaged_default_model_config_reads():
    from bertfit.model.presets import default_model_dir

    config = EncoderConfig.from_model_dir(default_model_dir())
    assert (config.num_layers, config.hidden_size, config.hidden_activation) == (6, 384, "gelu")


def test_config_and_presets_do_not_import_torch():
    # An ONNX predictor must be able to read configs and find models without torch.
    code = (
        "import sys, bertfit.model, bertfit.model.config, bertfit.model.presets\n"
        "bertfit.model.EncoderConfig; bertfit.model.resolve_model_dir\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent)
