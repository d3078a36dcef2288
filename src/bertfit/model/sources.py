"""Every pretrained-encoder format bertfit reads, behind one entry point.

A *model source* is a path in one of these layouts:

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
report.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bertfit.errors import CheckpointError, ConfigError
from bertfit.model.config import CONFIG_FILE_NAMES, EncoderConfig

if TYPE_CHECKING:
    import torch

    from bertfit.model.tf_names import MappedCheckpoint

HF = "hf"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
KERAS_METADATA = "keras_metadata.pb"
VOCAB_FILE_NAME = "vocab.txt"


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
    from bertfit.model import tf_checkpoint
    from bertfit.model.presets import WEIGHT_FILE_NAMES

    path = Path(path).expanduser()
    if path.is_dir():
        for name in WEIGHT_FILE_NAMES:
            if (path / name).is_file():
                return HF, path / name, path
        prefix = tf_checkpoint.latest_checkpoint(path)
        if prefix is None:
            raise CheckpointError(
                f"{path}: no weights here ({' or '.join(WEIGHT_FILE_NAMES)}, a TensorFlow "
                "checkpoint PREFIX.index + PREFIX.data-*, or a SavedModel's variables/)"
            )
        return "tensorflow", prefix, _checkpoint_directory(prefix)
    if path.is_file() and path.suffix in WEIGHT_SUFFIXES:
        return HF, path, path.parent
    prefix = _prefix_of(path)
    if tf_checkpoint.is_checkpoint_prefix(prefix):
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
    from bertfit.model.presets import WEIGHT_FILE_NAMES
    from bertfit.model.tf_checkpoint import is_checkpoint_prefix

    path = Path(path).expanduser()
    if path.is_dir():
        if any((path / name).is_file() for name in WEIGHT_FILE_NAMES):
            return False
        return any(path.glob("*.index")) or (path / "variables" / "variables.index").is_file()
    return is_checkpoint_prefix(_prefix_of(path))


def describe_source(path: str | Path) -> ModelSource:
    """Find a model source's files and read its config (no weights are loaded)."""
    from bertfit.model.tf_checkpoint import CheckpointReader
    from bertfit.model.tf_names import map_checkpoint

    path = Path(path).expanduser()
    kind, weights, directory = find_weights(path)
    vocab = _find_vocab(directory)
    if kind == HF:
        config_file = _find_config(directory)
        if config_file is None:
            raise CheckpointError(f"{directory}: no {' or '.join(CONFIG_FILE_NAMES)} here")
        config = EncoderConfig.from_json_file(config_file)
        lower_case = _lower_case(directory, vocab)
        return ModelSource(
            path, HF, weights, directory, config, str(config_file), vocab, lower_case
        )
    mapped = map_checkpoint(CheckpointReader(weights), read=False)
    config, config_from = _tensorflow_config(directory, mapped)
    lower_case = mapped.lower_case
    if lower_case is None:
        lower_case = _lower_case(directory, vocab)
    return ModelSource(
        path, mapped.layout, weights, directory, config, config_from, vocab, lower_case
    )


def load_encoder_source(path: str | Path) -> EncoderSource:
    """Read a model source's config and weights; weights come back in Hugging Face's names.

    The entry point for anything that wants a pretrained encoder's contents whatever its
    format (``bertfit convert``, ``bertfit inspect``, :func:`bertfit.model.load_pretrained`).
    Raises :class:`CheckpointError` naming the file for unreadable or corrupt weights.
    """
    import torch

    from bertfit.model.tf_checkpoint import CheckpointReader
    from bertfit.model.tf_names import map_checkpoint
    from bertfit.model.weights import read_state_dict

    source = describe_source(path)
    if not source.is_tensorflow:
        return EncoderSource(source, read_state_dict(source.weights))
    mapped = map_checkpoint(CheckpointReader(source.weights))
    state = {name: torch.from_numpy(array) for name, array in mapped.tensors.items()}
    return EncoderSource(source, state, dict(mapped.source_names), list(mapped.ignored))


# --------------------------------------------------------------------------------------------


def _prefix_of(path: Path) -> Path:
    """The checkpoint prefix a path names: itself, its ``.index`` or one of its data shards."""
    import re

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


def _lower_case(directory: Path, vocab: Path | None) -> bool:
    from bertfit.model.presets import lower_case_from_files

    return lower_case_from_files(directory, vocab)


def _tensorflow_config(directory: Path, mapped: MappedCheckpoint) -> tuple[EncoderConfig, str]:
    """The config of a TensorFlow source: a config file, Keras metadata, or the shapes."""
    from bertfit.model.tf_names import config_from_shapes

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
    from bertfit.model.tf_checkpoint import parse_message

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
