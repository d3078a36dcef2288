"""Which BERT weight each tensor of a TensorFlow checkpoint is, in Hugging Face's names.

Three layouts hold BERT encoders, told apart by the checkpoint's own keys:

``tf1``
    Google's original checkpoints (``bert_model.ckpt`` of BERT-Base/Large, the 24 small BERTs,
    multilingual, Chinese) and everything ``tf.compat.v1.train.Saver`` wrote: each key is a
    variable name, ``bert/embeddings/word_embeddings``, ``bert/encoder/layer_N/...``,
    ``bert/pooler/dense/...``. There is no object graph.
``tf2``
    Object-based checkpoints of Model Garden encoders, ``tf.train.Checkpoint(encoder=...)``:
    keys are object paths (``encoder/layer_with_weights-4/_attention_layer/_query_dense/
    kernel/.ATTRIBUTES/VARIABLE_VALUE``), and the ``_CHECKPOINTABLE_OBJECT_GRAPH`` entry
    records each variable's own name (``transformer/layer_0/self_attention/query/kernel``).
``tf-hub``
    The ``variables/variables.index`` of a TF Hub SavedModel exported from Model Garden: keys
    are ``variables/N/...`` positions, so the object graph's variable names are the only
    meaning there is. Its ``do_lower_case`` variable says how to tokenize.

Each tensor is mapped through its variable name: Google's names or Model Garden's Keras
names (whose attention kernels are per-head einsum tensors, ``[hidden, heads, head_size]``,
reshaped here). Optimizer state, step counters and pretraining heads are listed as ignored;
anything else not understood is kept under its checkpoint key, so a strict load reports it.
This module needs numpy, not torch.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bertfit.errors import CheckpointError
from bertfit.model.tf_checkpoint import CheckpointReader, parse_message

TF1, TF2, TF_HUB = "tf1", "tf2", "tf-hub"
OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
_VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"

# -- transforms from TensorFlow's layout to PyTorch's ------------------------------------------


def _same(array: np.ndarray) -> np.ndarray:
    return array


def _dense_kernel(array: np.ndarray) -> np.ndarray:
    # Keras and TF1 kernels are [in, out]; torch.nn.Linear keeps [out, in].
    return array.T if array.ndim == 2 else array


def _heads_in_kernel(array: np.ndarray) -> np.ndarray:
    # Model Garden's query/key/value EinsumDense kernel: [hidden, heads, head_size].
    return array.reshape(array.shape[0], -1).T if array.ndim == 3 else array


def _heads_bias(array: np.ndarray) -> np.ndarray:
    return array.reshape(-1) if array.ndim == 2 else array  # [heads, head_size]


def _heads_out_kernel(array: np.ndarray) -> np.ndarray:
    # The attention output EinsumDense kernel: [heads, head_size, hidden].
    return array.reshape(-1, array.shape[-1]).T if array.ndim == 3 else array


_PARAM = {"kernel": "weight", "bias": "bias", "gamma": "weight", "beta": "bias"}

# (variable name pattern, Hugging Face name template, transform of kernels, of biases).
# Patterns match the end of the name, after any scope such as "bert_encoder_v2/".
_Rule = tuple[str, str, Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]
_GOOGLE: list[_Rule] = [
    (r"bert/embeddings/word_embeddings", "embeddings.word_embeddings.weight", _same, _same),
    (r"bert/embeddings/position_embeddings", "embeddings.position_embeddings.weight", _same, _same),
    (r"bert/embeddings/token_type_embeddings", "embeddings.token_type_embeddings.weight", _same,
     _same),
    (r"bert/embeddings/LayerNorm/(gamma|beta)", "embeddings.LayerNorm.{p}", _same, _same),
    (r"bert/encoder/layer_(\d+)/attention/self/(query|key|value)/(kernel|bias)",
     "encoder.layer.{i}.attention.self.{part}.{p}", _dense_kernel, _same),
    (r"bert/encoder/layer_(\d+)/attention/output/dense/(kernel|bias)",
     "encoder.layer.{i}.attention.output.dense.{p}", _dense_kernel, _same),
    (r"bert/encoder/layer_(\d+)/attention/output/LayerNorm/(gamma|beta)",
     "encoder.layer.{i}.attention.output.LayerNorm.{p}", _same, _same),
    (r"bert/encoder/layer_(\d+)/intermediate/dense/(kernel|bias)",
     "encoder.layer.{i}.intermediate.dense.{p}", _dense_kernel, _same),
    (r"bert/encoder/layer_(\d+)/output/dense/(kernel|bias)",
     "encoder.layer.{i}.output.dense.{p}", _dense_kernel, _same),
    (r"bert/encoder/layer_(\d+)/output/LayerNorm/(gamma|beta)",
     "encoder.layer.{i}.output.LayerNorm.{p}", _same, _same),
    (r"bert/pooler/dense/(kernel|bias)", "pooler.dense.{p}", _dense_kernel, _same),
]  # fmt: skip
# run_classifier.py's classification head: [num_labels, hidden] already, as torch keeps it.
_GOOGLE_HEAD: list[_Rule] = [
    (r"output_weights", "classifier.weight", _same, _same),
    (r"output_bias", "classifier.bias", _same, _same),
]
_MODEL_GARDEN: list[_Rule] = [
    (r"word_embeddings/embeddings", "embeddings.word_embeddings.weight", _same, _same),
    (r"position_embedding/embeddings", "embeddings.position_embeddings.weight", _same, _same),
    (r"type_embeddings/embeddings", "embeddings.token_type_embeddings.weight", _same, _same),
    (r"embeddings/layer_norm/(gamma|beta)", "embeddings.LayerNorm.{p}", _same, _same),
    (r"transformer/layer_(\d+)/self_attention/(query|key|value)/(kernel|bias)",
     "encoder.layer.{i}.attention.self.{part}.{p}", _heads_in_kernel, _heads_bias),
    (r"transformer/layer_(\d+)/self_attention/attention_output/(kernel|bias)",
     "encoder.layer.{i}.attention.output.dense.{p}", _heads_out_kernel, _same),
    (r"transformer/layer_(\d+)/self_attention_layer_norm/(gamma|beta)",
     "encoder.layer.{i}.attention.output.LayerNorm.{p}", _same, _same),
    (r"transformer/layer_(\d+)/intermediate/(kernel|bias)",
     "encoder.layer.{i}.intermediate.dense.{p}", _dense_kernel, _same),
    (r"transformer/layer_(\d+)/output/(kernel|bias)",
     "encoder.layer.{i}.output.dense.{p}", _dense_kernel, _same),
    (r"transformer/layer_(\d+)/output_layer_norm/(gamma|beta)",
     "encoder.layer.{i}.output.LayerNorm.{p}", _same, _same),
    (r"pooler_transform/(kernel|bias)", "pooler.dense.{p}", _dense_kernel, _same),
]  # fmt: skip
_SCOPED = [(re.compile(rf"(?:.+/)?{pattern}"), *rest) for pattern, *rest in _GOOGLE + _MODEL_GARDEN]
_ROOT_ONLY = [(re.compile(pattern), *rest) for pattern, *rest in _GOOGLE_HEAD]

# Entries that are not encoder weights and are safe to drop: training state (step counters,
# optimizer slots and hyper-parameters) and pretraining heads (masked LM, next sentence).
_TRAINING_STATE = re.compile(
    r"(^|/)(global_step|save_counter|beta[12]_power)$|/(adam_[mv]|Adam(_\d+)?)$"
    r"|(^|/)\.OPTIMIZER_SLOT/|^optimizer/"
)
_PRETRAINING_HEAD = re.compile(
    r"(^|/)cls/|(^|/)(masked_lm|next_sentence|mlm)/|(^|/)predictions/transform/logits/"
)
_DROPPED = (_TRAINING_STATE, _PRETRAINING_HEAD)


@dataclass
class MappedCheckpoint:
    """A TensorFlow checkpoint's tensors in Hugging Face's BERT names, ready to restore.

    ``tensors`` maps HF names (and, for tensors not understood, their checkpoint keys) to
    arrays in PyTorch's layout (empty when mapped with ``read=False``); ``shapes`` holds the
    same names' shapes as the checkpoint stores them; ``source_names`` says which checkpoint
    key each HF name came from; ``ignored`` lists the keys deliberately left out.
    ``num_attention_heads`` is read off per-head kernels when the layout has them;
    ``lower_case`` comes from a Hub SavedModel's ``do_lower_case``.
    """

    layout: str
    prefix: Path
    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    source_names: dict[str, str] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)
    num_attention_heads: int | None = None
    lower_case: bool | None = None

    @property
    def unmapped(self) -> list[str]:
        """Checkpoint keys that are neither BERT weights nor known to be safe to drop."""
        return [name for name in self.shapes if name not in self.source_names]


def detect_layout(reader: CheckpointReader) -> str:
    """``tf1``, ``tf2`` or ``tf-hub``, from the checkpoint's keys (not from any config)."""
    if OBJECT_GRAPH_KEY not in reader:
        return TF1
    if any(re.match(r"variables/\d+/", key) for key in reader):
        return TF_HUB  # a Keras SavedModel tracks its variables as a list
    return TF2


def variable_names(reader: CheckpointReader) -> dict[str, str]:
    """Each tensor's variable name, by checkpoint key (the key itself in a TF1 checkpoint).

    Object-based checkpoints record every variable's name in the object graph (the
    ``full_name`` of its ``VARIABLE_VALUE`` attribute); where one is missing, the object path
    stands in.
    """
    if OBJECT_GRAPH_KEY not in reader:
        return {key: key for key in reader}
    graph = parse_message(
        "TrackableObjectGraph", reader.read_strings(OBJECT_GRAPH_KEY)[0], f"{reader.prefix}"
    )
    names = {}
    for node in graph.nodes:
        for attribute in node.attributes:
            names[attribute.checkpoint_key] = attribute.full_name.removesuffix(":0")
    result = {}
    for key in reader:
        if key == OBJECT_GRAPH_KEY:
            continue
        result[key] = names.get(key) or key.removesuffix(_VALUE_SUFFIX)
    return result


def map_checkpoint(reader: CheckpointReader, read: bool = True) -> MappedCheckpoint:
    """Map every tensor of ``reader`` to Hugging Face's BERT names, reading them if ``read``.

    Raises :class:`CheckpointError` when two tensors claim the same weight (a checkpoint
    holding two encoders) or when a tensor cannot be read.
    """
    mapped = MappedCheckpoint(layout=detect_layout(reader), prefix=reader.prefix)
    for key, name in variable_names(reader).items():
        if key.startswith("do_lower_case/"):
            mapped.lower_case = bool(reader.read(key))  # Hub SavedModels carry it
            mapped.ignored.append(key)
        elif not key.endswith(_VALUE_SUFFIX) and mapped.layout != TF1:
            mapped.ignored.append(key)  # metadata of an object, not a variable
        elif any(rule.search(text) for rule in _DROPPED for text in (key, name)):
            mapped.ignored.append(key)
        else:
            _add(mapped, key, name, reader, read)
    return mapped


def _add(
    mapped: MappedCheckpoint, key: str, name: str, reader: CheckpointReader, read: bool
) -> None:
    rule = _match(name)
    shape = reader.shape(key)
    if rule is None:
        mapped.shapes[key] = shape  # kept, so that the strict report calls it unexpected
        if read:
            mapped.tensors[key] = reader.read(key)
        return
    hf_name, kernel_transform, bias_transform = rule
    if hf_name in mapped.source_names:
        raise CheckpointError(
            f"{reader.prefix}: both {mapped.source_names[hf_name]} and {key} are {hf_name}; "
            "the checkpoint seems to hold more than one encoder"
        )
    transform = bias_transform if hf_name.endswith(".bias") else kernel_transform
    if transform is _heads_in_kernel and len(shape) == 3:
        mapped.num_attention_heads = shape[1]
    mapped.shapes[hf_name] = shape
    mapped.source_names[hf_name] = key
    if read:
        mapped.tensors[hf_name] = np.ascontiguousarray(transform(reader.read(key)))


def _match(name: str) -> tuple[str, Callable, Callable] | None:
    for pattern, template, kernel_transform, bias_transform in _SCOPED + _ROOT_ONLY:
        match = pattern.fullmatch(name)
        if match is None:
            continue
        groups = [g for g in match.groups() if g is not None]
        fields = {"p": _PARAM.get(groups[-1], "")} if groups else {}
        if len(groups) >= 2:
            fields["i"] = groups[0]
        if len(groups) == 3:
            fields["part"] = groups[1]
        return template.format(**fields), kernel_transform, bias_transform
    return None


def config_from_shapes(mapped: MappedCheckpoint) -> dict[str, int]:
    """The encoder's shape read off the checkpoint's tensors, in bertfit's dialect's keys.

    The number of attention heads is only known when the checkpoint stores per-head kernels
    (Model Garden); otherwise it is left out for a config file to supply.
    """
    where = str(mapped.prefix)

    def shape(name: str) -> tuple[int, ...]:
        if name not in mapped.shapes or len(mapped.shapes[name]) != 2:
            raise CheckpointError(f"{where}: cannot tell the encoder's shape without {name}")
        return mapped.shapes[name]

    vocab_size, hidden_size = shape("embeddings.word_embeddings.weight")
    layer = re.compile(r"encoder\.layer\.(\d+)\.")
    layers = {int(m[1]) for name in mapped.source_names if (m := layer.match(name))}
    config = {
        "vocab_size": vocab_size,
        "hidden_size": hidden_size,
        "num_layers": len(layers),
        # Stored [hidden, intermediate] in both Google's and Model Garden's layouts.
        "intermediate_size": shape("encoder.layer.0.intermediate.dense.weight")[1],
        "max_position_embeddings": shape("embeddings.position_embeddings.weight")[0],
        "type_vocab_size": shape("embeddings.token_type_embeddings.weight")[0],
    }
    if mapped.num_attention_heads:
        config["num_attention_heads"] = mapped.num_attention_heads
    return config
