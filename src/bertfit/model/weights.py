"""Pretrained weights: name mapping to and from Hugging Face, strict load reports, restoring.

Checkpoints are compared with the model in Hugging Face's names (the names nearly every BERT
checkpoint uses), so a report names tensors the way the checkpoint spells them:

Hugging Face name (``bert.`` prefix in a classifier)  bertfit name (``encoder.`` prefix)
----------------------------------------------------  -----------------------------------
embeddings.{word,position,token_type}_embeddings      the same
embeddings.LayerNorm                                  embeddings.layer_norm
encoder.layer.N.attention.self.{query,key,value}      layers.N.attention.qkv (q, k, v stacked)
encoder.layer.N.attention.output.dense                layers.N.attention.output
encoder.layer.N.attention.output.LayerNorm            layers.N.attention_norm
encoder.layer.N.intermediate.dense                    layers.N.feed_forward.intermediate
encoder.layer.N.output.dense                          layers.N.feed_forward.output
encoder.layer.N.output.LayerNorm                      layers.N.output_norm
pooler.dense                                          pooler.dense
classifier                                            classifier.dense

Weight files are read by :func:`bertfit.model.sources.read_state_dict` (safetensors, or
``torch.load(..., weights_only=True)`` for ``pytorch_model.bin``, so a weight file can never run
code). Saving and loading whole classifiers is :mod:`bertfit.model.hf_classifier`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from bertfit.errors import CheckpointError
from bertfit.model.classifier import BertClassifier
from bertfit.model.encoder import BertEncoder
from bertfit.model.sources import (
    EncoderSource,
    find_weights_file,
    is_tensorflow_source,
    load_encoder_source,
    read_state_dict,
)

# --------------------------------------------------------------------------------------------
# Name mapping
# --------------------------------------------------------------------------------------------

# Per-layer module names, ours -> Hugging Face's (the fused qkv is handled on its own).
_LAYER_TO_HF = {
    "attention.output": "attention.output.dense",
    "attention_norm": "attention.output.LayerNorm",
    "feed_forward.intermediate": "intermediate.dense",
    "feed_forward.output": "output.dense",
    "output_norm": "output.LayerNorm",
}
_LAYER_FROM_HF = {hf: ours for ours, hf in _LAYER_TO_HF.items()}
_QKV_HF = ("attention.self.query", "attention.self.key", "attention.self.value")
_OUR_LAYER = re.compile(r"layers\.(\d+)\.(.+)\.(weight|bias)")
_HF_LAYER = re.compile(r"encoder\.layer\.(\d+)\.(.+)\.(weight|bias)")
_ENCODER_PARTS = ("embeddings.", "encoder.", "pooler.")
_HEAD = ("classifier.weight", "classifier.bias")

# Checkpoint entries that are not weights of a BERT encoder and are safe to leave unused:
# index buffers older transformers versions saved, and the pretraining (masked LM and
# next-sentence) heads of BertForPreTraining checkpoints such as bert-base-uncased.
_HARMLESS_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")
_PRETRAINING_HEADS = "cls."


def _encoder_name_to_hf(name: str) -> list[str]:
    """HF names of one encoder-relative bertfit parameter (three for the fused qkv)."""
    if name.startswith("embeddings.layer_norm."):
        return ["embeddings.LayerNorm." + name.rsplit(".", 1)[1]]
    if name.startswith(("embeddings.", "pooler.")):
        return [name]
    match = _OUR_LAYER.fullmatch(name)
    if match:
        index, module, kind = match.groups()
        if module == "attention.qkv":
            return [f"encoder.layer.{index}.{part}.{kind}" for part in _QKV_HF]
        if module in _LAYER_TO_HF:
            return [f"encoder.layer.{index}.{_LAYER_TO_HF[module]}.{kind}"]
    raise KeyError(f"not a bertfit encoder parameter: {name}")


def _encoder_name_from_hf(name: str) -> tuple[str, int | None]:
    """bertfit name of one encoder-relative HF parameter, and its slot in the fused qkv."""
    if name.startswith("embeddings.LayerNorm."):
        return "embeddings.layer_norm." + name.rsplit(".", 1)[1], None
    if name.startswith(("embeddings.", "pooler.")):
        return name, None
    match = _HF_LAYER.fullmatch(name)
    if match:
        index, module, kind = match.groups()
        if module in _QKV_HF:
            return f"layers.{index}.attention.qkv.{kind}", _QKV_HF.index(module)
        if module in _LAYER_FROM_HF:
            return f"layers.{index}.{_LAYER_FROM_HF[module]}.{kind}", None
    raise KeyError(f"not a Hugging Face BERT encoder parameter: {name}")


def to_hf_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a bertfit state dict (encoder or classifier) to Hugging Face's names.

    A classifier's ``encoder.*`` becomes ``bert.*`` and ``classifier.dense.*`` becomes
    ``classifier.*``; fused qkv tensors are split into query, key and value (as views).
    """
    result = {}
    for name, tensor in state.items():
        if name.startswith("classifier.dense."):
            result["classifier." + name.rsplit(".", 1)[1]] = tensor
            continue
        prefix, rest = ("", name)
        if name.startswith("encoder."):
            prefix, rest = "bert.", name[len("encoder.") :]
        hf_names = _encoder_name_to_hf(rest)
        parts = tensor.chunk(len(hf_names)) if len(hf_names) > 1 else [tensor]
        result.update({prefix + hf: part for hf, part in zip(hf_names, parts)})
    return result


def from_hf_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a Hugging Face BERT state dict to bertfit's names, fusing query, key and value.

    ``bert.*`` names become a classifier's ``encoder.*``; names without the prefix stay
    encoder-relative. Raises :class:`CheckpointError` for names it cannot map or incomplete
    query/key/value triples.
    """
    result: dict[str, torch.Tensor] = {}
    pending: dict[str, list[torch.Tensor | None]] = {}  # fused name -> [q, k, v]
    for name, tensor in state.items():
        if name in _HEAD:
            result["classifier.dense." + name.rsplit(".", 1)[1]] = tensor
            continue
        prefix, rest = ("", name)
        if name.startswith("bert."):
            prefix, rest = "encoder.", name[len("bert.") :]
        try:
            ours, slot = _encoder_name_from_hf(rest)
        except KeyError as error:
            raise CheckpointError(str(error.args[0])) from None
        if slot is None:
            result[prefix + ours] = tensor
        else:
            pending.setdefault(prefix + ours, [None, None, None])[slot] = tensor
    for name, parts in pending.items():
        if any(part is None for part in parts):
            raise CheckpointError(f"{name}: needs query, key and value; some are missing")
        result[name] = torch.cat(parts)  # type: ignore[arg-type]
    return result


# --------------------------------------------------------------------------------------------
# Load report
# --------------------------------------------------------------------------------------------


@dataclass
class LoadReport:
    """What restoring a checkpoint into a model matched, in the checkpoint's tensor names.

    ``missing``: model tensors the checkpoint lacks. ``unexpected``: checkpoint tensors the
    model has no place for. ``mismatched``: ``(name, checkpoint shape, model shape)``.
    ``initialized``: tensors deliberately left at their fresh initialization (a classifier's
    head, when the checkpoint holds an encoder only). ``ignored``: checkpoint entries that are
    not encoder weights and are known to be safe to drop (index buffers, pretraining heads).
    Only the first three make a load fail.
    """

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    initialized: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    restored: int = 0
    source: str = "checkpoint"

    @property
    def ok(self) -> bool:
        """True when every model tensor was restored and every checkpoint tensor used."""
        return not (self.missing or self.unexpected or self.mismatched)

    def __str__(self) -> str:
        lines = [f"{self.source}: restored {self.restored} tensors"]
        lines += self._problems()
        if self.initialized:
            lines.append(f"left initialized (not in checkpoint): {_names(self.initialized)}")
        if self.ignored:
            lines.append(f"ignored: {_names(self.ignored)}")
        return "\n  ".join(lines)

    def assert_consumed(self) -> LoadReport:
        """Raise :class:`CheckpointError` unless the checkpoint and the model matched exactly.

        Like ``tf.train.Checkpoint(...).read(path).assert_consumed()``; returns ``self``.
        """
        problems = self._problems()
        if problems:
            raise CheckpointError(f"{self.source} does not fit the model: " + "; ".join(problems))
        return self

    def assert_existing_objects_matched(self) -> LoadReport:
        """Raise unless every model tensor was restored; unused checkpoint tensors are allowed.

        Like TensorFlow's method of the same name; returns ``self``.
        """
        problems = self._problems(include_unexpected=False)
        if problems:
            raise CheckpointError(f"{self.source} does not fit the model: " + "; ".join(problems))
        return self

    def _problems(self, include_unexpected: bool = True) -> list[str]:
        problems = []
        if self.missing:
            problems.append(f"missing {len(self.missing)}: {_names(self.missing)}")
        if self.unexpected and include_unexpected:
            problems.append(f"unexpected {len(self.unexpected)}: {_names(self.unexpected)}")
        if self.mismatched:
            shapes = [
                f"{name} (checkpoint {list(have)}, model {list(want)})"
                for name, have, want in self.mismatched
            ]
            problems.append(f"wrong shape {len(shapes)}: {_names(shapes)}")
        return problems


def _names(names: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... and {len(names) - limit} more" if len(names) > limit else "")


# --------------------------------------------------------------------------------------------
# Restoring
# --------------------------------------------------------------------------------------------


def load_pretrained(
    model: BertEncoder | BertClassifier, source: str | Path, strict: bool = True
) -> LoadReport:
    """Restore pretrained weights from a model directory or weight file into ``model``.

    ``source`` is a directory (``model.safetensors``, else ``pytorch_model.bin``) or a weight
    file, in Hugging Face's names (with or without the ``bert.`` prefix) or bertfit's own.
    An encoder-only checkpoint restores a classifier's encoder and leaves its head initialized
    (listed in ``report.initialized``, not an error). With ``strict`` anything else missing,
    unexpected or mis-shaped raises :class:`CheckpointError` before the model is touched;
    without it the matching tensors are restored and the report says what was not.
    ``source`` may also be a TensorFlow checkpoint directory, prefix or SavedModel (see
    :mod:`bertfit.model.sources`); the report then names tensors by their TensorFlow keys.
    """
    if is_tensorflow_source(source):
        return restore_encoder_source(model, load_encoder_source(source), strict)
    path = find_weights_file(source)
    return restore_state_dict(model, read_state_dict(path), strict=strict, source=str(path))


def restore_encoder_source(
    model: BertEncoder | BertClassifier, loaded: EncoderSource, strict: bool = True
) -> LoadReport:
    """Restore an :class:`~bertfit.model.sources.EncoderSource` (any checkpoint format) into
    ``model``; the report names tensors as the source file spells them."""
    return restore_state_dict(
        model,
        loaded.state_dict,
        strict=strict,
        source=str(loaded.source.weights),
        names=loaded.report_names,
        ignored=loaded.ignored,
    )


def restore_state_dict(
    model: BertEncoder | BertClassifier,
    checkpoint: Mapping[str, torch.Tensor],
    strict: bool = True,
    source: str = "checkpoint",
    names: Mapping[str, str] | None = None,
    ignored: Sequence[str] = (),
) -> LoadReport:
    """Restore an in-memory state dict; see :func:`load_pretrained` for the rules.

    ``names`` maps state-dict names to how the source file spells them (a converted
    TensorFlow checkpoint's keys), for the report; ``ignored`` lists source entries the caller
    already left out on purpose, which the report shows as ignored.
    """
    is_classifier = isinstance(model, BertClassifier)
    expected = to_hf_state_dict(model.state_dict())
    found, original = _canonical_checkpoint(checkpoint, is_classifier, source)
    if names:
        original = {canonical: names.get(name, name) for canonical, name in original.items()}
    report = _compare(expected, found, original, is_classifier, source)
    report.ignored.extend(ignored)
    if strict:
        report.assert_consumed()
    merged = dict(expected)
    for name, tensor in found.items():
        target = expected.get(name)
        if target is not None and target.shape == tensor.shape:
            merged[name] = tensor.to(device=target.device, dtype=target.dtype)
            report.restored += 1
    model.load_state_dict(from_hf_state_dict(merged))
    return report


def _canonical_checkpoint(
    checkpoint: Mapping[str, torch.Tensor], is_classifier: bool, source: str
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Checkpoint in HF names as the model sees them, and each name's spelling in the file."""
    if any(name.endswith("attention.qkv.weight") for name in checkpoint):
        checkpoint = _bertfit_names_to_hf(checkpoint)
    encoder_prefix = "bert." if is_classifier else ""
    found: dict[str, torch.Tensor] = {}
    original: dict[str, str] = {}
    for name, tensor in checkpoint.items():
        rest = name[len("bert.") :] if name.startswith("bert.") else name
        # Very old checkpoints (pytorch-pretrained-bert) call LayerNorm's parameters gamma/beta.
        rest = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", rest)
        rest = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", rest)
        canonical = encoder_prefix + rest if rest.startswith(_ENCODER_PARTS) else rest
        if canonical in found:
            raise CheckpointError(f"{source}: holds both {original[canonical]} and {name}")
        found[canonical], original[canonical] = tensor, name
    return found, original


def _bertfit_names_to_hf(checkpoint: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HF names for a checkpoint saved from a bertfit model's own ``state_dict()``."""
    result = {}
    for name, tensor in checkpoint.items():
        try:
            result.update(to_hf_state_dict({name: tensor}))
        except KeyError:
            result[name] = tensor  # left for the report to call unexpected
    return result


def _compare(
    expected: Mapping[str, torch.Tensor],
    found: Mapping[str, torch.Tensor],
    original: Mapping[str, str],
    is_classifier: bool,
    source: str,
) -> LoadReport:
    report = LoadReport(source=source)
    head_absent = is_classifier and not any(name in found for name in _HEAD)
    for name in expected:
        if name in found:
            have, want = tuple(found[name].shape), tuple(expected[name].shape)
            if have != want:
                report.mismatched.append((original[name], have, want))
        elif head_absent and name in _HEAD:
            report.initialized.append(name)
        else:
            report.missing.append(name)
    for name in found:
        if name in expected:
            continue
        if _is_harmless(name, is_classifier):
            report.ignored.append(original[name])
        else:
            report.unexpected.append(original[name])
    return report


def _is_harmless(name: str, is_classifier: bool) -> bool:
    rest = name[len("bert.") :] if name.startswith("bert.") else name
    if rest in _HARMLESS_BUFFERS or name.startswith(_PRETRAINING_HEADS):
        return True
    # A bare encoder restored from a fine-tuned classifier has no use for its head.
    return not is_classifier and name in _HEAD
