"""The encoder's shape and hyper-parameters, read from any of the three BERT config dialects.

BERT checkpoints come with one of three config dialects:

* Google's original ``bert_config.json`` (``num_hidden_layers``, ``hidden_act``,
  ``hidden_dropout_prob``, ...), where ``"gelu"`` is the tanh approximation;
* TensorFlow Model Garden's ``BertEncoderConfig`` (``num_layers``, ``hidden_activation``,
  ``dropout_rate``, ..., as in the tutorial's checkpoint folder), where ``"gelu"`` is also the
  tanh approximation; the ``BertEncoder`` constructor's names (``inner_dim``,
  ``max_sequence_length``, ...) and the ``{"type": "bert", "bert": {...}}`` wrapper are accepted;
* Hugging Face's ``config.json`` (``model_type: bert``), where ``"gelu"`` is the exact erf form.

:class:`EncoderConfig` stores one unambiguous activation name, so the same word can never mean
two functions. This module does not import torch: a predictor without torch can read configs.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertfit.config import read_json
from bertfit.errors import CheckpointError, ConfigError

#: Activation names :class:`EncoderConfig` stores: ``gelu`` is exact (erf), ``gelu_tanh`` is the
#: tanh approximation used by Google's original BERT and Model Garden.
ACTIVATIONS = ("gelu", "gelu_tanh", "relu", "silu", "tanh")

#: Config file names a model directory may hold, in the order they are looked for.
CONFIG_FILE_NAMES = ("config.json", "bert_config.json")

#: The value of the ``dialect`` key that marks bertfit's own dialect (see ``to_dict``).
BERTFIT_DIALECT = "bertfit"

# Hugging Face's name for each of our activations. "gelu_new" rather than "gelu_pytorch_tanh":
# both are the tanh approximation and "gelu_new" is understood by every transformers version.
_HF_ACTIVATION_NAMES = {
    "gelu": "gelu",
    "gelu_tanh": "gelu_new",
    "relu": "relu",
    "silu": "silu",
    "tanh": "tanh",
}

_REQUIRED = ("vocab_size", "hidden_size", "num_layers", "num_attention_heads", "intermediate_size")


@dataclass(frozen=True)
class _Dialect:
    """How one config dialect names things.

    ``keys`` maps the dialect's keys to :class:`EncoderConfig` fields (aliases allowed);
    ``fixed`` lists keys for architecture variants bertfit does not build, with the values
    that mean "plain BERT"; ``ignored`` keys carry no information about the encoder.
    """

    title: str
    keys: Mapping[str, str]
    activations: Mapping[str, str]
    fixed: Mapping[str, tuple[Any, ...]] = dataclasses.field(default_factory=dict)
    ignored: frozenset[str] = frozenset()


_GOOGLE_KEYS = {
    "vocab_size": "vocab_size",
    "hidden_size": "hidden_size",
    "num_hidden_layers": "num_layers",
    "num_attention_heads": "num_attention_heads",
    "intermediate_size": "intermediate_size",
    "hidden_act": "hidden_activation",
    "hidden_dropout_prob": "dropout_rate",
    "attention_probs_dropout_prob": "attention_dropout_rate",
    "max_position_embeddings": "max_position_embeddings",
    "type_vocab_size": "type_vocab_size",
    "initializer_range": "initializer_range",
}

# Google's Chinese and multilingual releases carry these; the pooler they describe is the
# ordinary one (first token, dense, tanh), so they say nothing the encoder needs.
_GOOGLE_EXTRAS = frozenset(
    {
        "directionality",
        "pooler_fc_size",
        "pooler_num_attention_heads",
        "pooler_num_fc_layers",
        "pooler_size_per_head",
        "pooler_type",
    }
)

# Keys of transformers' generic PretrainedConfig and of BertConfig that do not change the
# encoder's computation (labels, generation, serialization, bookkeeping).
_HF_IGNORED = _GOOGLE_EXTRAS | {
    "architectures",
    "transformers_version",
    "_name_or_path",
    "name_or_path",
    "dtype",
    "torch_dtype",
    "use_cache",
    "gradient_checkpointing",
    "classifier_dropout",
    "output_attentions",
    "output_hidden_states",
    "output_past",
    "return_dict",
    "torchscript",
    "use_return_dict",
    "chunk_size_feed_forward",
    "is_encoder_decoder",
    "tie_word_embeddings",
    "tie_encoder_decoder",
    "pruned_heads",
    "id2label",
    "label2id",
    "num_labels",
    "problem_type",
    "finetuning_task",
    "task_specific_params",
    "tokenizer_class",
    "prefix",
    "bos_token_id",
    "eos_token_id",
    "sep_token_id",
    "cls_token_id",
    "decoder_start_token_id",
    "cross_attention_hidden_size",
    "label_smoothing",
}

GOOGLE = _Dialect(
    title="Google BERT bert_config.json",
    keys=_GOOGLE_KEYS,
    activations={"gelu": "gelu_tanh", "relu": "relu", "tanh": "tanh"},
    ignored=_GOOGLE_EXTRAS,
)

HUGGING_FACE = _Dialect(
    title="Hugging Face config.json",
    keys={**_GOOGLE_KEYS, "layer_norm_eps": "layer_norm_eps", "pad_token_id": "pad_token_id"},
    activations={
        "gelu": "gelu",
        "gelu_python": "gelu",
        "gelu_new": "gelu_tanh",
        "gelu_pytorch_tanh": "gelu_tanh",
        "gelu_python_tanh": "gelu_tanh",
        "gelu_fast": "gelu_tanh",
        "relu": "relu",
        "silu": "silu",
        "swish": "silu",
        "tanh": "tanh",
    },
    fixed={
        "model_type": ("bert",),
        "position_embedding_type": ("absolute",),
        "is_decoder": (False,),
        "add_cross_attention": (False,),
    },
    ignored=frozenset(_HF_IGNORED),
)

MODEL_GARDEN = _Dialect(
    title="Model Garden BERT encoder config",
    keys={
        "vocab_size": "vocab_size",
        "hidden_size": "hidden_size",
        "num_layers": "num_layers",
        "num_attention_heads": "num_attention_heads",
        "hidden_activation": "hidden_activation",
        "intermediate_size": "intermediate_size",
        "dropout_rate": "dropout_rate",
        "attention_dropout_rate": "attention_dropout_rate",
        "max_position_embeddings": "max_position_embeddings",
        "type_vocab_size": "type_vocab_size",
        "initializer_range": "initializer_range",
        # The names of Model Garden's BertEncoder constructor (its get_config()).
        "inner_dim": "intermediate_size",
        "inner_activation": "hidden_activation",
        "max_sequence_length": "max_position_embeddings",
        "output_dropout": "dropout_rate",
        "attention_dropout": "attention_dropout_rate",
    },
    # tf_utils.get_activation: "gelu" is the tanh approximation; swish is x * sigmoid(x).
    activations={
        "gelu": "gelu_tanh",
        "relu": "relu",
        "swish": "silu",
        "simple_swish": "silu",
        "tanh": "tanh",
    },
    fixed={"output_range": (None,), "norm_first": (False,)},
    ignored=frozenset(
        {"return_all_encoder_outputs", "return_attention_scores", "dict_outputs", "initializer"}
    ),
)

# Keys only Hugging Face writes: their presence tells an HF config without model_type from
# Google's original one (the two disagree on what "gelu" means).
_HF_MARKERS = frozenset(
    {
        "model_type",
        "architectures",
        "transformers_version",
        "layer_norm_eps",
        "pad_token_id",
        "position_embedding_type",
        "_name_or_path",
        "use_cache",
        "torch_dtype",
        "dtype",
    }
)
_MODEL_GARDEN_MARKERS = frozenset(MODEL_GARDEN.keys) - frozenset(_GOOGLE_KEYS) | {
    "embedding_size",
    "embedding_width",
    "norm_first",
}
_GOOGLE_MARKERS = frozenset(_GOOGLE_KEYS) - frozenset(MODEL_GARDEN.keys)
_DIALECTS = {"google": GOOGLE, "model_garden": MODEL_GARDEN, "hf": HUGGING_FACE}


@dataclass(frozen=True)
class EncoderConfig:
    """Shape and hyper-parameters of a BERT encoder (post-LayerNorm Transformer).

    Defaults are BERT-base's. ``hidden_activation`` is one of :data:`ACTIVATIONS`, where
    ``"gelu"`` always means the exact (erf) GELU and ``"gelu_tanh"`` its tanh approximation.
    """

    vocab_size: int = 30522
    hidden_size: int = 768
    num_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_activation: str = "gelu_tanh"
    dropout_rate: float = 0.1
    attention_dropout_rate: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0

    def __post_init__(self) -> None:
        _validate(dataclasses.asdict(self), "EncoderConfig", lambda field: field)

    @property
    def head_size(self) -> int:
        """Width of one attention head."""
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], source: str = "config", dialect: str | None = None
    ) -> EncoderConfig:
        """Build a config from a dict in any dialect, detecting which one unless ``dialect`` says.

        ``dialect`` is one of ``"bertfit"``, ``"google"``, ``"model_garden"``, ``"hf"``.
        ``source`` names the dict in errors (usually its file). Unknown keys, missing required
        keys and bad values raise :class:`ConfigError` naming the key as the dict spells it.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: expected a mapping, got {type(data).__name__}")
        data, source = _unwrap_model_garden(data, source)
        name = dialect or detect_dialect(data, source)
        if name == BERTFIT_DIALECT:
            return _from_bertfit_dict(data, source)
        if name not in _DIALECTS:
            known = [BERTFIT_DIALECT, *_DIALECTS]
            raise ConfigError(f"{source}: unknown dialect {name!r}; expected one of {known}")
        return _from_dialect(data, _DIALECTS[name], source)

    @classmethod
    def from_json_file(cls, path: str | Path) -> EncoderConfig:
        """Read a config JSON file of any dialect; errors name the file."""
        return cls.from_dict(read_json(path), source=str(path))

    @classmethod
    def from_model_dir(cls, directory: str | Path) -> EncoderConfig:
        """Read the config of a model directory (``config.json``, else ``bert_config.json``)."""
        return cls.from_json_file(find_config_file(directory))

    def to_dict(self) -> dict[str, Any]:
        """This config in bertfit's own dialect; :meth:`from_dict` reads it back unchanged."""
        return {"dialect": BERTFIT_DIALECT, **dataclasses.asdict(self)}

    def to_hf_dict(self) -> dict[str, Any]:
        """The body of a Hugging Face ``config.json`` for a ``BertModel`` of this shape."""
        return {
            "architectures": ["BertModel"],
            "model_type": "bert",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_attention_heads,
            "intermediate_size": self.intermediate_size,
            "hidden_act": _HF_ACTIVATION_NAMES[self.hidden_activation],
            "hidden_dropout_prob": self.dropout_rate,
            "attention_probs_dropout_prob": self.attention_dropout_rate,
            "max_position_embeddings": self.max_position_embeddings,
            "type_vocab_size": self.type_vocab_size,
            "initializer_range": self.initializer_range,
            "layer_norm_eps": self.layer_norm_eps,
            "pad_token_id": self.pad_token_id,
            "position_embedding_type": "absolute",
        }


def detect_dialect(data: Mapping[str, Any], source: str = "config") -> str:
    """Name the dialect of a config dict: ``bertfit``, ``hf``, ``model_garden`` or ``google``."""
    if "dialect" in data:
        if data["dialect"] != BERTFIT_DIALECT:
            raise ConfigError(
                f"{source}.dialect: expected {BERTFIT_DIALECT!r}, got {data['dialect']!r}"
            )
        return BERTFIT_DIALECT
    keys = set(data)
    if keys & _HF_MARKERS:
        return "hf"
    if keys & _MODEL_GARDEN_MARKERS:
        return "model_garden"
    if keys & _GOOGLE_MARKERS:
        return "google"
    raise ConfigError(
        f"{source}: cannot tell which BERT config dialect this is (no num_hidden_layers, "
        f"num_layers or model_type key); keys: {sorted(keys)}"
    )


def find_config_file(directory: str | Path) -> Path:
    """The config file of a model directory, raising :class:`CheckpointError` if it has none."""
    directory = Path(directory)
    for name in CONFIG_FILE_NAMES:
        if (directory / name).is_file():
            return directory / name
    raise CheckpointError(f"{directory}: no {' or '.join(CONFIG_FILE_NAMES)} in this directory")


def _unwrap_model_garden(data: Mapping[str, Any], source: str) -> tuple[Mapping[str, Any], str]:
    """Accept Model Garden's ``EncoderConfig({"type": "bert", "bert": {...}})`` wrapper."""
    kind = data.get("type")
    if not isinstance(kind, str) or not isinstance(data.get(kind), Mapping):
        return data, source
    extra = set(data) - {"type", kind}
    if extra:
        raise ConfigError(f"{source}: unknown key {sorted(extra)[0]!r} next to 'type'")
    if kind != "bert":
        raise ConfigError(f"{source}.type: only 'bert' encoders are supported, got {kind!r}")
    return data[kind], f"{source}.{kind}"


def _from_bertfit_dict(data: Mapping[str, Any], source: str) -> EncoderConfig:
    fields = {f.name for f in dataclasses.fields(EncoderConfig)}
    values = {}
    for key, value in data.items():
        if key == "dialect":
            continue
        if key not in fields:
            raise ConfigError(f"{source}: unknown key {key!r}{_suggest(key, fields)}")
        values[key] = value
    _check_required(values, source, lambda field: field, fields)
    _validate(values, source, lambda field: field)
    return EncoderConfig(**_as_floats(values))


def _from_dialect(data: Mapping[str, Any], dialect: _Dialect, source: str) -> EncoderConfig:
    values: dict[str, Any] = {}
    key_of: dict[str, str] = {}  # field -> the key the dict used, for error messages
    widths = ("embedding_size", "embedding_width") if dialect is MODEL_GARDEN else ()
    valid = [*dialect.keys, *dialect.fixed, *dialect.ignored, *widths]
    for key, value in data.items():
        if key in dialect.keys:
            field = dialect.keys[key]
            if field in values and values[field] != value:
                raise ConfigError(
                    f"{source}: {key!r}={value!r} contradicts {key_of[field]!r}={values[field]!r}"
                )
            values[field], key_of[field] = value, key
        elif key in dialect.fixed:
            _check_fixed(key, value, dialect.fixed[key], source)
        elif key in dialect.ignored or (dialect is HUGGING_FACE and key.startswith("_")):
            continue
        elif key in widths:
            continue  # checked below, once hidden_size is known
        else:
            raise ConfigError(
                f"{source}: unknown key {key!r} for a {dialect.title}{_suggest(key, valid)}"
            )

    def name_of(field: str) -> str:
        return key_of.get(field, _dialect_key(dialect, field))

    _check_required(values, source, name_of, set(dialect.keys.values()))
    _check_embedding_width(data, values.get("hidden_size"), source)
    if "hidden_activation" in values:
        values["hidden_activation"] = _map_activation(
            values["hidden_activation"], dialect, f"{source}.{name_of('hidden_activation')}"
        )
    else:
        # Every dialect's default is "gelu", which means what that dialect says it means.
        values["hidden_activation"] = dialect.activations["gelu"]
    if values.get("pad_token_id", 0) is None:
        values.pop("pad_token_id")  # HF writes null when a vocabulary has no padding token
    _validate(values, source, name_of)
    return EncoderConfig(**_as_floats(values))


def _dialect_key(dialect: _Dialect, field: str) -> str:
    """The first key of ``dialect`` that names ``field``."""
    return next(key for key, target in dialect.keys.items() if target == field)


def _check_required(
    values: Mapping[str, Any], source: str, name_of: Callable[[str], str], known: set[str]
) -> None:
    # Shape keys have no safe default: guessing 12 layers for a 6-layer checkpoint would only
    # surface later as a confusing weight mismatch.
    for field in _REQUIRED:
        if field in known and field not in values:
            raise ConfigError(f"{source}: missing required key {name_of(field)!r}")


def _check_fixed(key: str, value: Any, allowed: tuple[Any, ...], source: str) -> None:
    if value not in allowed or isinstance(value, bool) != isinstance(allowed[0], bool):
        raise ConfigError(
            f"{source}.{key}: bertfit builds plain BERT encoders only, which need "
            f"{key}={allowed[0]!r}; got {value!r}"
        )


def _check_embedding_width(data: Mapping[str, Any], hidden_size: Any, source: str) -> None:
    # Model Garden can factorize embeddings (ALBERT style); bertfit's encoder does not.
    for key in ("embedding_size", "embedding_width"):
        value = data.get(key)
        if key in data and value is not None and value != hidden_size:
            raise ConfigError(
                f"{source}.{key}: embeddings narrower than hidden_size are not supported "
                f"(got {value!r}, hidden_size {hidden_size!r})"
            )


def _map_activation(value: Any, dialect: _Dialect, where: str) -> str:
    if not isinstance(value, str) or value.lower() not in dialect.activations:
        raise ConfigError(
            f"{where}: unsupported activation {value!r} for a {dialect.title}; "
            f"expected one of {sorted(dialect.activations)}"
        )
    return dialect.activations[value.lower()]


def _as_floats(values: dict[str, Any]) -> dict[str, Any]:
    """JSON writes 0 for 0.0; store float fields as floats so configs compare and print alike."""
    return {k: float(v) if k in _FLOATS else v for k, v in values.items()}


def _suggest(key: str, valid: Any) -> str:
    close = difflib.get_close_matches(key, list(valid), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _validate(values: Mapping[str, Any], source: str, name_of: Callable[[str], str]) -> None:
    """Check types and ranges, naming the key as the source spells it."""

    def fail(field: str, expected: str) -> None:
        raise ConfigError(f"{source}.{name_of(field)}: expected {expected}, got {values[field]!r}")

    for field, value in values.items():
        if field in _POSITIVE_INTS:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                fail(field, "a positive integer")
        elif field == "pad_token_id":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                fail(field, "a non-negative integer")
        elif field in _RATES:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                fail(field, "a number in [0, 1)")
        elif field in ("initializer_range", "layer_norm_eps"):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                fail(field, "a positive number")
        elif field == "hidden_activation" and value not in ACTIVATIONS:
            fail(field, f"one of {list(ACTIVATIONS)}")
    hidden, heads = values.get("hidden_size"), values.get("num_attention_heads")
    if isinstance(hidden, int) and isinstance(heads, int) and hidden % heads:
        raise ConfigError(
            f"{source}.{name_of('num_attention_heads')}: hidden_size {hidden} is not "
            f"divisible by {heads} attention heads"
        )


_POSITIVE_INTS = frozenset(
    {
        "vocab_size",
        "hidden_size",
        "num_layers",
        "num_attention_heads",
        "intermediate_size",
        "max_position_embeddings",
        "type_vocab_size",
    }
)
_RATES = frozenset({"dropout_rate", "attention_dropout_rate"})
_FLOATS = _RATES | {"initializer_range", "layer_norm_eps"}
