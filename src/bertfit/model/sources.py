"""The files of a pretrained encoder on disk: every format bertfit reads, behind one entry point.

A *model directory* holds a config (``config.json`` or ``bert_config.json``), weights and a
WordPiece ``vocab.txt``; :func:`check_model_dir` says what is missing. A *model source* is a
path in one of these layouts:

``hf``
    A Hugging Face-style directory: ``config.json`` (or ``bert_config.json``), ``model.safetensors``
    or ``pytorch_model.bin``, ``vocab.txt``; or such a weight file itself.
``tf1``, ``tf2``
    A TensorFlow checkpoint directory, as Google's zips and Model Garden's folders hold it:
    ``bert_config.json`` (Google's or Model Garden's dialect), ``vocab.txt`` and
    ``bert_model.ckpt.index`` + ``.data-*`` (a ``checkpoint`` state file picks among several);
    or a checkpoint prefix (``DIR/model.ckpt-1000``) or its ``.index`` file, config and
    vocabulary taken from its directory. Which of the two layouts it is comes from the
    checkpoint's keys (:mod:`bertfit.model.tf_names`), never from the config's dialect.
``tf-hub``
    A TF Hub BERT SavedModel directory (``variables/variables.index``, ``assets/vocab.txt``).
    Its config comes from a ``bert_config.json`` beside it if there is one, else from the
    encoder's Keras config in ``keras_metadata.pb``, else from the tensor shapes (with the tanh
    GELU, the activation of every Google and Model Garden BERT).

:func:`describe_source` finds the files and reads the config without loading weights (and
without torch); :func:`load_encoder_source` also reads the weights, as a state dict in Hugging
Face's names, which :func:`bertfit.model.weights.restore_state_dict` restores with its strict
report. :func:`read_lower_case` tells whether a model's vocabulary is uncased. Only
:func:`read_state_dict` and :func:`load_encoder_source` import torch.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bertfit.errors import CheckpointError, ConfigError
from bertfit.model.config import CONFIG_FILE_NAMES, EncoderConfig
from bertfit.model.tf_checkpoint import (
    CheckpointReader,
    is_checkpoint_prefix,
    latest_tf_checkpoint,
    parse_message,
)
from bertfit.model.tf_names import MappedCheckpoint, config_from_shapes, map_checkpoint
from bertfit.text.tokenizer import VOCAB_FILE_NAME

if TYPE_CHECKING:
    import torch

HF = "hf"
#: Weight files a model directory may hold, in the order they are looked for.
WEIGHT_FILE_NAMES = ("model.safetensors", "pytorch_model.bin")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
KERAS_METADATA = "keras_metadata.pb"


@dataclass(frozen=True)
class ModelSource:
    """Where a pretrained encoder's files are and what its config says.

    ``format`` is ``hf``, ``tf1``, ``tf2`` or ``tf-hub``; ``weights`` the weight file or the
    TensorFlow checkpoint prefix; ``config_from`` names where the config came from (a file,
    ``keras_metadata.pb`` or ``tensor shapes``); ``lower_case`` whether the vocabulary expects
    lower-cased text.
    """

    path: Path
    format: str
    weights: Path
    directory: Path
    config: EncoderConfig
    config_from: str
    vocab: Path | None
    lower_case: bool

    @property
    def is_tensorflow(self) -> bool:
        """Whether the weights are a TensorFlow checkpoint."""
        return self.format != HF


@dataclass
class EncoderSource:
    """A model source with its weights read: ``state_dict`` in Hugging Face's names.

    ``source_names`` maps each state-dict name to the tensor's name in the file (its
    TensorFlow key); ``ignored`` lists file entries deliberately left out (optimizer state,
    step counters, pretraining heads).
    """

    source: ModelSource
    state_dict: dict[str, torch.Tensor]
    source_names: dict[str, str] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)

    @property
    def config(self) -> EncoderConfig:
        """The encoder's config."""
        return self.source.config

    @property
    def vocab_path(self) -> Path | None:
        """The WordPiece vocabulary, if the source has one."""
        return self.source.vocab

    @property
    def report_names(self) -> dict[str, str]:
        """How a load report names each tensor: its key in the file, and what bertfit read it
        as (shapes in reports are in PyTorch's layout, so the second name explains them)."""
        return {name: f"{key} as {name}" for name, key in self.source_names.items()}


def find_weights(path: str | Path) -> tuple[str, Path, Path]:
    """``(kind, weights, directory)`` for a model source path, without reading weights.

    ``kind`` is ``hf`` or ``tensorflow``; ``weights`` the weight file or checkpoint prefix;
    ``directory`` where its config and vocabulary are looked for.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        for name in WEIGHT_FILE_NAMES:
            if (path / name).is_file():
                return HF, path / name, path
        prefix = latest_tf_checkpoint(path)
        if prefix is None:
            raise CheckpointError(
                f"{path}: no weights here ({' or '.join(WEIGHT_FILE_NAMES)}, a TensorFlow "
                "checkpoint PREFIX.index + PREFIX.data-*, or a SavedModel's variables/)"
            )
        return "tensorflow", prefix, _checkpoint_directory(prefix)
    if path.is_file() and path.suffix in WEIGHT_SUFFIXES:
        return HF, path, path.parent
    prefix = _prefix_of(path)
    if is_checkpoint_prefix(prefix):
        return "tensorflow", prefix, _checkpoint_directory(prefix)
    if path.exists():
        raise CheckpointError(
            f"{path}: not a model directory, weight file ({', '.join(WEIGHT_SUFFIXES)}) "
            "or TensorFlow checkpoint"
        )
    raise CheckpointError(f"{path}: no such model directory, weight file or checkpoint prefix")


def is_tensorflow_source(path: str | Path) -> bool:
    """Whether ``path`` names TensorFlow weights (a checkpoint prefix, its ``.index`` or a data
    shard, or a directory holding a checkpoint or a SavedModel and no PyTorch weights)."""
    path = Path(path).expanduser()
    if path.is_dir():
        if any((path / name).is_file() for name in WEIGHT_FILE_NAMES):
            return False
        return any(path.glob("*.index")) or (path / "variables" / "variables.index").is_file()
    return is_checkpoint_prefix(_prefix_of(path))


def describe_source(path: str | Path) -> ModelSource:
    """Find a model source's files and read its config (no weights are loaded)."""
    path = Path(path).expanduser()
    kind, weights, directory = find_weights(path)
    vocab = _find_vocab(directory)
    if kind == HF:
        config_file = _find_config(directory)
        if config_file is None:
            raise CheckpointError(f"{directory}: no {' or '.join(CONFIG_FILE_NAMES)} here")
        config = EncoderConfig.from_json_file(config_file)
        lower_case = lower_case_from_files(directory, vocab)
        return ModelSource(
            path, HF, weights, directory, config, str(config_file), vocab, lower_case
        )
    mapped = map_checkpoint(CheckpointReader(weights), read=False)
    config, config_from = _tensorflow_config(directory, mapped)
    lower_case = mapped.lower_case
    if lower_case is None:
        lower_case = lower_case_from_files(directory, vocab)
    return ModelSource(
        path, mapped.layout, weights, directory, config, config_from, vocab, lower_case
    )


def load_encoder_source(path: str | Path) -> EncoderSource:
    """Read a model source's config and weights; weights come back in Hugging Face's names.

    The entry point for anything that wants a pretrained encoder's contents whatever its
    format (``bertfit convert``, ``bertfit inspect``, :func:`bertfit.model.load_pretrained`).
    Raises :class:`CheckpointError` naming the file for unreadable or corrupt weights.
    """
    import torch  # here, not above: describing sources works without torch

    source = describe_source(path)
    if not source.is_tensorflow:
        return EncoderSource(source, read_state_dict(source.weights))
    mapped = map_checkpoint(CheckpointReader(source.weights))
    state = {name: torch.from_numpy(array) for name, array in mapped.tensors.items()}
    return EncoderSource(source, state, dict(mapped.source_names), list(mapped.ignored))


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` file, or a ``torch.save``d state dict with ``weights_only=True``.

    Raises :class:`CheckpointError` naming the file when it is unreadable or not a flat
    mapping from names to tensors.
    """
    # here, not above: describing sources works without torch
    import torch
    from safetensors.torch import load_file

    path = Path(path)
    try:
        if _looks_like_safetensors(path):
            state = load_file(path, device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # safetensors, pickle and zip errors share no base class
        reason = f"{type(error).__name__}: {_first_line(error)}"
        raise CheckpointError(f"{path}: cannot read weights ({reason})") from error
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise CheckpointError(f"{path}: not a state dict (a mapping of names to tensors)")
    return dict(state)


def _first_line(error: Exception) -> str:
    """The cause an error states, on one line (the CLI prints one line per error)."""
    text = str(error)
    # torch's weights_only refusal opens with advice for torch.load's own callers (load it
    # unsafely), which bertfit never does; the cause comes after this marker.
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1]
    return next((line.strip() for line in text.splitlines() if line.strip()), "no detail")


def _looks_like_safetensors(path: Path) -> bool:
    """By name, or by content: an 8-byte header length, then the JSON header's ``{``."""
    if path.suffix == ".safetensors":
        return True
    with path.open("rb") as handle:
        return handle.read(9)[8:9] == b"{"


# --------------------------------------------------------------------------------------------
# Model directories
# --------------------------------------------------------------------------------------------


def check_model_dir(directory: Path) -> Path:
    """Return ``directory`` if it holds a config, weights and a vocabulary; else raise."""
    if is_tensorflow_source(directory):
        source = describe_source(directory)  # TensorFlow: its config must parse
        if source.vocab is None:
            raise CheckpointError(f"{directory}: not a model directory; missing {VOCAB_FILE_NAME}")
        return directory
    missing = []
    if not any((directory / name).is_file() for name in CONFIG_FILE_NAMES):
        missing.append(" or ".join(CONFIG_FILE_NAMES))
    if not any((directory / name).is_file() for name in WEIGHT_FILE_NAMES):
        missing.append(" or ".join(WEIGHT_FILE_NAMES) + _tensorflow_hint(directory))
    if not (directory / VOCAB_FILE_NAME).is_file():
        missing.append(VOCAB_FILE_NAME)
    if missing:
        raise CheckpointError(f"{directory}: not a model directory; missing {'; '.join(missing)}")
    return directory


def find_weights_file(source: str | Path) -> Path:
    """The weight file ``source`` names: itself if a file, else the one in that directory."""
    path = Path(source).expanduser()
    if path.is_file():
        return path
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such weight file or model directory")
    for name in WEIGHT_FILE_NAMES:
        if (path / name).is_file():
            return path / name
    raise CheckpointError(
        f"{path}: no {' or '.join(WEIGHT_FILE_NAMES)} in this directory{_tensorflow_hint(path)}"
    )


def _tensorflow_hint(directory: Path) -> str:
    """Where PyTorch weights were looked for and a TensorFlow checkpoint is there instead."""
    if any(directory.glob("*ckpt*.index")):
        return (
            " (found a TensorFlow checkpoint: load_pretrained and --model read it as it is, "
            "and `bertfit convert` turns it into PyTorch weights)"
        )
    return ""


# --------------------------------------------------------------------------------------------
# Cased or uncased
# --------------------------------------------------------------------------------------------


def read_lower_case(directory: str | Path) -> bool:
    """Whether the model in ``directory`` expects lower-cased, accent-stripped text.

    Taken from ``tokenizer_config.json`` (``do_lower_case``) or ``tokenizer.json`` (the
    normalizer's ``lowercase``) when the directory has one; otherwise read off ``vocab.txt``:
    an uncased vocabulary holds no upper-case ASCII letters outside its ``[SPECIAL]`` tokens.
    A TensorFlow checkpoint prefix or a TF Hub SavedModel (whose ``do_lower_case`` variable
    says it) is answered by :func:`describe_source`.
    """
    directory = Path(directory)
    hf_files = (directory / VOCAB_FILE_NAME).is_file() or _tokenizer_setting_files(directory)
    if not hf_files and directory.exists():
        return describe_source(directory).lower_case
    return lower_case_from_files(directory, directory / VOCAB_FILE_NAME)


def lower_case_from_files(directory: Path, vocab: Path | None) -> bool:
    """``do_lower_case`` from the tokenizer files in ``directory``, else from ``vocab``."""
    setting = _tokenizer_setting(directory)
    if setting is not None:
        return setting
    if vocab is None:
        raise CheckpointError(f"{directory}: no {VOCAB_FILE_NAME} to tell cased from uncased")
    try:
        tokens = vocab.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise CheckpointError(f"{vocab}: cannot read the vocabulary ({error})") from None
    words = (t for t in tokens if not (t.startswith("[") and t.endswith("]")))
    return not any(re.search("[A-Z]", word) for word in words)


def _tokenizer_setting_files(directory: Path) -> bool:
    return any((directory / name).is_file() for name in ("tokenizer_config.json", "tokenizer.json"))


def _tokenizer_setting(directory: Path) -> bool | None:
    """``do_lower_case`` as Hugging Face's tokenizer files state it, if they do."""
    for name, lookup in (
        ("tokenizer_config.json", lambda data: data.get("do_lower_case")),
        ("tokenizer.json", lambda data: (data.get("normalizer") or {}).get("lowercase")),
    ):
        path = directory / name
        if not path.is_file():
            continue
        try:
            value = lookup(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, AttributeError) as error:
            raise CheckpointError(f"{path}: not a valid tokenizer file ({error})") from None
        if isinstance(value, bool):
            return value
    return None


# --------------------------------------------------------------------------------------------


def _prefix_of(path: Path) -> Path:
    """The checkpoint prefix a path names: itself, its ``.index`` or one of its data shards."""
    name = path.name
    if name.endswith(".index"):
        return path.with_name(name[: -len(".index")])
    shard = re.search(r"\.data-\d{5}-of-\d{5}$", name)
    if shard:
        return path.with_name(name[: shard.start()])
    return path


def _checkpoint_directory(prefix: Path) -> Path:
    """Where a checkpoint's config and vocabulary live: beside it, or for a SavedModel's
    ``variables/variables``, the SavedModel directory."""
    parent = prefix.parent
    if parent.name == "variables" and prefix.name == "variables":
        return parent.parent
    return parent


def _find_config(directory: Path) -> Path | None:
    for name in CONFIG_FILE_NAMES:
        if (directory / name).is_file():
            return directory / name
    return None


def _find_vocab(directory: Path) -> Path | None:
    for candidate in (directory / VOCAB_FILE_NAME, directory / "assets" / VOCAB_FILE_NAME):
        if candidate.is_file():
            return candidate
    return None


def _tensorflow_config(directory: Path, mapped: MappedCheckpoint) -> tuple[EncoderConfig, str]:
    """The config of a TensorFlow source: a config file, Keras metadata, or the shapes."""
    config_file = _find_config(directory)
    if config_file is not None:
        return EncoderConfig.from_json_file(config_file), str(config_file)
    metadata = directory / KERAS_METADATA
    if metadata.is_file():
        keras = keras_encoder_config(metadata)
        if keras is not None:
            return keras, str(metadata)
    shapes = config_from_shapes(mapped)
    if "num_attention_heads" not in shapes:
        raise CheckpointError(
            f"{mapped.prefix}: no {' or '.join(CONFIG_FILE_NAMES)} in {directory}, and this "
            "checkpoint's shapes do not tell the number of attention heads; put the model's "
            "bert_config.json beside it"
        )
    config = EncoderConfig(**shapes, hidden_activation="gelu_tanh")
    return config, "tensor shapes (activation: the tanh GELU of Google's BERTs)"


# Keys of Model Garden's BertEncoder/BertEncoderV2 get_config() that say nothing about the
# computation of a plain BERT encoder.
_KERAS_IGNORED = {
    "initializer",
    "dict_outputs",
    "return_all_encoder_outputs",
    "return_attention_scores",
    "return_word_embeddings",
    "with_dense_inputs",
    "name",
    "trainable",
    "dtype",
    "embedding_layer",
}


def keras_encoder_config(path: Path) -> EncoderConfig | None:
    """The encoder config Keras saved in a SavedModel's ``keras_metadata.pb``, if it has one.

    Activations serialized as ``Text>gelu`` are Model Garden's (tanh approximation); a plain
    ``gelu`` there is Keras's own, which is exact.
    """
    metadata = parse_message("SavedMetadata", path.read_bytes(), str(path))
    for node in metadata.nodes:
        try:
            data = json.loads(node.metadata)
        except ValueError:
            continue
        name = data.get("class_name", "") if isinstance(data, dict) else ""
        if name.split(">")[-1] in ("BertEncoder", "BertEncoderV2"):
            return _from_keras_config(data.get("config") or {}, f"{path}: {name}")
    return None


def _from_keras_config(config: dict[str, Any], where: str) -> EncoderConfig:
    if config.get("embedding_layer") is not None:
        raise ConfigError(f"{where}: a custom embedding layer is not supported")
    values = {k: v for k, v in config.items() if k not in _KERAS_IGNORED}
    activation = values.pop("inner_activation", values.pop("activation", "Text>gelu"))
    if isinstance(activation, dict):  # newer Keras serializes functions as objects
        activation = activation.get("registered_name") or activation.get("config")
    if not isinstance(activation, str):
        raise ConfigError(f"{where}: cannot read the activation {activation!r}")
    model_garden = activation.startswith("Text>")
    values["inner_activation"] = activation.split(">")[-1]
    result = EncoderConfig.from_dict(values, source=where, dialect="model_garden")
    if activation == "gelu" and not model_garden:
        result = dataclasses.replace(result, hidden_activation="gelu")
    return result
