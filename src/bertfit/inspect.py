"""``bertfit inspect``: what a model is, read from its files without building it.

The source may be a preset name, a model directory, a run directory (its ``model/``), or a
weight file (``model.safetensors``, ``pytorch_model.bin``, a TensorFlow checkpoint). The
summary gives the architecture (from the config beside the weights, or read off the tensor
shapes when there is none), the parameters of each block as stored in the weight file, the
special tokens of the vocabulary, and what a fine-tuned classifier was trained for.

Shapes are read from file headers (safetensors) or memory-mapped (PyTorch ``.bin``), so even a
large checkpoint is inspected in a moment.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertfit.config import read_json
from bertfit.errors import BertfitError, CheckpointError, ConfigError
from bertfit.model.config import EncoderConfig
from bertfit.model.presets import PRESETS, resolve_model_dir
from bertfit.model.sources import describe_source, read_lower_case
from bertfit.model.sources import find_weights as find_source_weights
from bertfit.model.tf_checkpoint import CheckpointReader
from bertfit.model.tf_names import map_checkpoint, variable_names
from bertfit.paths import BERTFIT_FILE
from bertfit.problem import stored_problem_type
from bertfit.text.tokenizer import SPECIAL_TOKENS, UNK_TOKEN, VOCAB_FILE_NAME, read_vocab

SAFETENSORS_SUFFIX = ".safetensors"
TORCH_SUFFIXES = (".bin", ".pt", ".pth")

# Entries that are buffers, not parameters (older transformers saved them).
_BUFFERS = re.compile(r"(^|[./])embeddings[./](position_ids|token_type_ids)$")
_LAYER = re.compile(r"(?:^|[./])(?:layer|layers)[._/]?(\d+)(?:[./]|$)")
# Names of the original BERT's and Model Garden's pretraining heads and of optimizer state.
_PRETRAINING = re.compile(r"(^|[./])(cls|predictions|masked_lm|next_sentence)[./]")
_INTERMEDIATE = re.compile(r"intermediate[./]dense[./]weight$|feed_forward\.intermediate\.weight$")
_BOOKKEEPING = re.compile(
    r"OPTIMIZER_SLOT|adam_[mv]$|(^|/)(global_step|save_counter|_CHECKPOINTABLE_OBJECT_GRAPH)"
)


@dataclass
class Tensor:
    """Name, shape and dtype of one stored tensor."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def size(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)


@dataclass
class ModelSummary:
    """What :func:`inspect_model` found; :func:`format_summary` prints it."""

    source: str
    kind: str
    path: str
    weights_file: str | None = None
    weights_format: str | None = None
    architecture: dict[str, Any] = field(default_factory=dict)
    architecture_from: str = ""
    blocks: list[tuple[str, int]] = field(default_factory=list)
    total_parameters: int = 0
    unused: list[tuple[str, int]] = field(default_factory=list)
    dtypes: dict[str, int] = field(default_factory=dict)
    special_tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    vocabulary: dict[str, Any] = field(default_factory=dict)
    classifier: dict[str, Any] = field(default_factory=dict)
    # Every stored tensor, in file order (``--tensors``).
    tensors: list[Tensor] = field(default_factory=list)

    def to_dict(self, tensors: bool = False) -> dict[str, Any]:
        """JSON-ready dict (``bertfit inspect --json``); ``tensors`` adds every tensor."""
        data = {k: v for k, v in self.__dict__.items() if k != "tensors"}
        data["blocks"] = dict(self.blocks)
        data["unused"] = dict(self.unused)
        if tensors:
            data["tensors"] = [
                {"name": t.name, "shape": list(t.shape), "dtype": t.dtype} for t in self.tensors
            ]
        return data


# -- reading tensor shapes ----------------------------------------------------------------------


def safetensors_shapes(path: Path) -> list[Tensor]:
    """Tensors listed in a safetensors header (8-byte length, then JSON), data left unread."""
    try:
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > 100_000_000:
                raise ValueError(f"header of {length} bytes")
            header = json.loads(handle.read(length))
    except (OSError, struct.error, ValueError) as error:
        raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from None
    return [
        Tensor(name, tuple(entry["shape"]), entry["dtype"])
        for name, entry in header.items()
        if name != "__metadata__"
    ]


def torch_shapes(path: Path) -> list[Tensor]:
    """Tensors of a PyTorch weight file, loaded memory-mapped and never unpickling code."""
    import torch  # here, not above: safetensors and TensorFlow files are inspected without it

    try:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # the legacy (non-zip) format cannot be memory-mapped
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds for a file that is not its own
        raise CheckpointError(f"{path}: not a readable PyTorch weight file ({error})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: holds a {type(state).__name__}, not a state dict")
    return [
        Tensor(name, tuple(value.shape), str(value.dtype).replace("torch.", ""))
        for name, value in state.items()
        if hasattr(value, "shape")
    ]


def tensorflow_shapes(prefix: Path) -> list[Tensor]:
    """Tensors of a TensorFlow checkpoint, under Hugging Face's names where they map to BERT
    weights (so they group like any other checkpoint's) and their own keys otherwise."""
    reader = CheckpointReader(prefix)
    mapped = map_checkpoint(reader, read=False)
    tensors = [
        Tensor(name, tuple(shape), reader.dtype(mapped.source_names.get(name, name)))
        for name, shape in mapped.shapes.items()
    ]
    # Left-out entries go by their variable names (a Hub SavedModel's keys are positions).
    names = variable_names(reader)
    for key in mapped.ignored:
        name = names.get(key) or key
        name = key if name == "Variable" else name  # an unnamed variable: its key says more
        tensors.append(Tensor(name, tuple(reader.shape(key)), reader.dtype(key)))
    return tensors


# -- grouping into blocks -----------------------------------------------------------------------


def block_of(name: str) -> str:
    """The block a tensor belongs to: ``embeddings``, ``layer N``, ``pooler``, ``classifier``,
    or, for tensors a classifier does not use, ``pretraining heads``, ``buffers``,
    ``training state`` (optimizer slots, step counters) or ``other``."""
    if _BUFFERS.search(name):
        return "buffers"
    if _BOOKKEEPING.search(name):
        return "training state"
    if _PRETRAINING.search(name):
        return "pretraining heads"
    match = _LAYER.search(name)
    if match:
        return f"layer {int(match.group(1))}"
    if "embedding" in name:
        return "embeddings"
    if "pooler" in name:
        return "pooler"
    if re.search(r"(^|[./])classifier[./]", name):
        return "classifier"
    return "other"


_UNUSED_BLOCKS = ("pretraining heads", "buffers", "training state", "other")


def _block_order(name: str) -> tuple[int, int]:
    if name.startswith("layer "):
        return (1, int(name.split()[1]))
    return {"embeddings": (0, 0), "pooler": (2, 0), "classifier": (3, 0)}.get(name, (4, 0))


def count_blocks(tensors: Iterable[Tensor]) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """Parameters per block in model order, and the tensors a classifier would not use."""
    counts: dict[str, int] = {}
    for tensor in tensors:
        block = block_of(tensor.name)
        counts[block] = counts.get(block, 0) + tensor.size
    used = sorted((b for b in counts if b not in _UNUSED_BLOCKS), key=_block_order)
    unused = [b for b in _UNUSED_BLOCKS if b in counts]
    return [(b, counts[b]) for b in used], [(b, counts[b]) for b in unused]


def architecture_from_shapes(tensors: list[Tensor]) -> dict[str, Any]:
    """What the tensor shapes tell without a config (heads cannot be read off shapes)."""
    shapes = {t.name: t.shape for t in tensors}
    found: dict[str, Any] = {}
    layers = {int(m.group(1)) for n in shapes if (m := _LAYER.search(n))}
    if layers:
        found["num_layers"] = max(layers) + 1
    for name, shape in shapes.items():
        if name.endswith("word_embeddings.weight") or name.endswith("word_embeddings"):
            found["vocab_size"], found["hidden_size"] = shape
        elif "position_embedding" in name and len(shape) == 2:
            found["max_position_embeddings"] = shape[0]
        elif ("token_type_embeddings" in name or "type_embeddings" in name) and len(shape) == 2:
            found["type_vocab_size"] = shape[0]
        elif _INTERMEDIATE.search(name):
            found["intermediate_size"] = shape[0]
        elif re.search(r"(^|[./])classifier(\.dense)?\.weight$", name):
            found["num_labels"] = shape[0]
    return found


# -- the summary --------------------------------------------------------------------------------


def _format_of(path: Path) -> str:
    if path.suffix == SAFETENSORS_SUFFIX:
        return "safetensors"
    if path.suffix in TORCH_SUFFIXES:
        return "pytorch"
    raise CheckpointError(
        f"{path}: unknown weight file type; expected {SAFETENSORS_SUFFIX}, "
        f"{', '.join(TORCH_SUFFIXES)} or a TensorFlow checkpoint"
    )


def _read_tensors(path: Path, fmt: str) -> list[Tensor]:
    if fmt == "safetensors":
        return safetensors_shapes(path)
    if fmt == "pytorch":
        return torch_shapes(path)
    return tensorflow_shapes(path)


def find_weights(path: Path) -> tuple[Path, str, Path]:
    """``(weights, format, directory)``: the weight file or TensorFlow checkpoint prefix that
    ``path`` names, its format (``safetensors``, ``pytorch`` or ``tensorflow``), and the
    directory where its config and vocabulary are looked for."""
    kind, weights, directory = find_source_weights(path)
    return weights, "tensorflow" if kind == "tensorflow" else _format_of(weights), directory


def locate(source: str | Path) -> tuple[str, Path]:
    """What ``source`` is (``preset``, ``run``, ``model directory`` or ``checkpoint``) and
    the path whose weights to read."""
    text = str(source)
    path = Path(text).expanduser()
    if text in PRESETS and not path.exists():
        return "preset", resolve_model_dir(text)
    if (path / "model" / BERTFIT_FILE).is_file():
        return "run", path / "model"
    if path.is_dir():
        return "model directory", path
    if path.exists() or path.with_name(path.name + ".index").is_file():
        return "checkpoint", path
    close = difflib.get_close_matches(text, list(PRESETS), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise CheckpointError(
        f"{source}: not a preset{hint}, a model or run directory, or a weight file or "
        "checkpoint; `bertfit models` lists the presets"
    )


def _uncached_preset(source: str | Path) -> ModelSummary | None:
    """A summary from the preset table, for a preset that is not downloaded yet: inspecting
    should not fetch hundreds of megabytes."""
    preset = PRESETS.get(str(source))
    if preset is None or Path(str(source)).exists() or not hasattr(preset, "is_cached"):
        return None
    if preset.is_cached():
        return None
    summary = ModelSummary(source=str(source), kind="preset (not downloaded)", path=preset.url)
    summary.architecture = {
        "num_layers": preset.layers,
        "hidden_size": preset.hidden,
        "num_attention_heads": preset.heads,
        "vocab_size": preset.vocab_size,
    }
    summary.architecture_from = "the preset table; it downloads on first use"
    summary.total_parameters = preset.parameters
    return summary


def _architecture(path: Path, directory: Path, tensors: list[Tensor]):
    """``(architecture, where it came from, vocabulary file, lower_case)`` of a model."""
    vocab = directory / VOCAB_FILE_NAME if (directory / VOCAB_FILE_NAME).is_file() else None
    lower_case = _lower_case(directory) if vocab else None
    try:
        source = describe_source(path)  # configs of every format, TensorFlow's included
        config, origin = source.config, source.config_from
        vocab, lower_case = source.vocab, source.lower_case
    except BertfitError:
        # No config beside a bare checkpoint (or another tool's): the shapes still tell a lot.
        return (
            architecture_from_shapes(tensors),
            "tensor shapes (no config file)",
            vocab,
            lower_case,
        )
    fields = {k: v for k, v in config.to_dict().items() if k != "dialect"}
    fields["head_size"] = config.head_size
    return fields, origin, vocab, lower_case


def _special_tokens(vocab_path: Path | None, lower_case: bool | None):
    if vocab_path is None:
        return {}, {}
    vocab, size = read_vocab(vocab_path)
    tokens = {**{token: key for key, token in SPECIAL_TOKENS.items()}, UNK_TOKEN: "unknown"}
    special = {token: {"id": vocab.get(token), "role": role} for token, role in tokens.items()}
    info = {"file": str(vocab_path), "size": size, "lower_case": lower_case}
    return special, info


def _classifier_info(directory: Path) -> dict[str, Any]:
    info: dict[str, Any] = {}
    if (directory / BERTFIT_FILE).is_file():
        data = read_json(directory / BERTFIT_FILE)
        for key in ("task", "problem_type", "label_names", "max_seq_length", "input_names"):
            if key in data:
                info[key] = data[key]
    results = directory.parent / "results.json"
    if (directory / BERTFIT_FILE).is_file() and results.is_file():
        best = (read_json(results) or {}).get("best") or {}
        from bertfit.viz.data import metric_keys  # viz.data needs torch; inspect must not

        shown = ["epoch", "step", *metric_keys([best])]
        info["best"] = {k: best[k] for k in shown if k in best}
    config = directory / "config.json"
    if not info and config.is_file():
        data = read_json(config)
        if isinstance(data.get("id2label"), dict) and "Classification" in str(
            data.get("architectures")
        ):
            info["label_names"] = [data["id2label"][k] for k in sorted(data["id2label"], key=int)]
            if data.get("problem_type") is not None:
                info["problem_type"] = data["problem_type"]
    return info


def _lower_case(directory: Path) -> bool | None:
    if (directory / BERTFIT_FILE).is_file():
        return read_json(directory / BERTFIT_FILE).get("lower_case")
    try:
        return read_lower_case(directory) if (directory / VOCAB_FILE_NAME).is_file() else None
    except BertfitError:
        return None


def inspect_model(source: str | Path) -> ModelSummary:
    """Summarize a preset, model directory, run directory or weight file (see the module doc)."""
    summary = _uncached_preset(source)
    if summary is not None:
        return summary
    kind, path = locate(source)
    weights, fmt, directory = find_weights(path)
    summary = ModelSummary(source=str(source), kind=kind, path=str(path))
    summary.weights_file, summary.weights_format = str(weights), fmt
    summary.tensors = _read_tensors(weights, fmt)
    architecture = _architecture(path, directory, summary.tensors)
    summary.architecture, summary.architecture_from, vocab, lower_case = architecture
    if (directory / BERTFIT_FILE).is_file():  # what a fine-tuned model was trained with
        lower_case = _lower_case(directory)
    summary.blocks, summary.unused = count_blocks(summary.tensors)
    summary.total_parameters = sum(count for _, count in summary.blocks)
    for tensor in summary.tensors:
        summary.dtypes[tensor.dtype] = summary.dtypes.get(tensor.dtype, 0) + 1
    summary.special_tokens, summary.vocabulary = _special_tokens(vocab, lower_case)
    summary.classifier = _classifier_info(directory)
    return summary


# -- printing -----------------------------------------------------------------------------------


def _count(n: int) -> str:
    return f"{n:,}"


def _layer_rows(blocks: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Blocks with runs of identical layers folded into one row (``layers 0-5 (6 x N)``)."""
    rows: list[tuple[str, int]] = []
    index = 0
    while index < len(blocks):
        name, count = blocks[index]
        end = index
        while (
            name.startswith("layer ")
            and end + 1 < len(blocks)
            and blocks[end + 1][0].startswith("layer ")
            and blocks[end + 1][1] == count
        ):
            end += 1
        if end > index:
            first, last, times = name.split()[1], blocks[end][0].split()[1], end - index + 1
            rows.append((f"layers {first}-{last} ({times} x {_count(count)})", times * count))
        else:
            rows.append((name, count))
        index = end + 1
    return rows


def format_summary(summary: ModelSummary) -> str:
    """The summary as aligned text, one fact per line."""
    lines = [f"{summary.source}: {summary.kind} at {summary.path}"]
    if summary.weights_file:
        lines.append(f"  weights      {summary.weights_file} ({summary.weights_format})")
    lines.append(f"architecture (from {summary.architecture_from})")
    for key, value in summary.architecture.items():
        lines.append(f"  {key:<24} {value}")
    if "num_attention_heads" not in summary.architecture and summary.architecture:
        lines.append(f"  {'num_attention_heads':<24} not recorded in the weights")
    if summary.blocks:
        lines.append("parameters")
        rows = _layer_rows(summary.blocks)
        width = max(len(name) for name, _ in rows)
        for name, count in rows:
            lines.append(f"  {name:<{width}}  {_count(count):>12}")
        lines.append(f"  {'total':<{width}}  {_count(summary.total_parameters):>12}")
        dtypes = ", ".join(f"{k} ({v} tensors)" for k, v in summary.dtypes.items())
        lines.append(f"  stored as {dtypes}")
    for name, count in summary.unused:
        lines.append(f"  not used by a classifier: {name} ({_count(count)} values)")
    if summary.special_tokens:
        vocab = summary.vocabulary
        lines.append(f"vocabulary   {vocab['size']:,} tokens, lower_case={vocab['lower_case']}")
        lines.append("special tokens")
        for token, entry in summary.special_tokens.items():
            found = entry["id"] if entry["id"] is not None else "missing"
            lines.append(f"  {token:<8} {found!s:>6}  {entry['role']}")
    else:
        lines.append("vocabulary   no vocab.txt beside the weights")
    if summary.classifier:
        lines.append("fine-tuned classifier")
        for key, value in summary.classifier.items():
            if key == "best":
                value = ", ".join(f"{k} {_number(v)}" for k, v in value.items())
            lines.append(f"  {key:<16} {value}")
    return "\n".join(lines)


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def format_tensors(summary: ModelSummary) -> str:
    """One line per stored tensor: name, shape, dtype and block."""
    width = max((len(t.name) for t in summary.tensors), default=0)
    return "\n".join(
        f"{t.name:<{width}}  {'x'.join(map(str, t.shape)) or 'scalar':>14}  {t.dtype:<8} "
        f"{block_of(t.name)}"
        for t in summary.tensors
    )


def module_tree(summary: ModelSummary) -> str:
    """The PyTorch module tree bertfit builds for this architecture (built on the meta
    device: no memory, no weights), like the reference tutorial's look at the encoder."""
    # here, not above: every other summary is read without torch
    import torch

    from bertfit.model.classifier import BertClassifier

    if summary.architecture_from.startswith("tensor shapes"):
        raise ConfigError(f"{summary.source}: the module tree needs a config file beside it")
    config = EncoderConfig(
        **{name: summary.architecture[name] for name in EncoderConfig.__dataclass_fields__}
    )
    num_labels = len(summary.classifier.get("label_names") or []) or 2
    problem_type = stored_problem_type(
        summary.classifier.get("problem_type"), num_labels, summary.source
    )
    with torch.device("meta"):
        model = BertClassifier(config, num_labels, problem_type=problem_type)
    return str(model)
