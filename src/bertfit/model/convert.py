"""``bertfit convert``: any supported encoder source as a Hugging Face-compatible directory.

The output holds ``config.json`` (``BertModel``; ``hidden_act`` names the GELU the source
used: ``gelu_new`` for the tanh approximation of Google's and Model Garden's BERTs, ``gelu``
for the exact one), ``model.safetensors`` (float32, Hugging Face's names), ``vocab.txt`` and
``tokenizer_config.json`` with ``special_tokens_map.json`` (as a saved classifier has them).
``transformers.BertModel.from_pretrained`` and ``AutoTokenizer`` load it, and so does every
bertfit command. The weights go through the same strict load as
training does, so a checkpoint that does not fit its config is refused, naming the tensors.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from safetensors.torch import save_file

from bertfit.config import make_staging_dir, replace_directory, write_json
from bertfit.errors import CheckpointError, ConfigError
from bertfit.model.encoder import BertEncoder
from bertfit.model.sources import ModelSource, load_encoder_source
from bertfit.model.weights import LoadReport, restore_encoder_source, to_hf_state_dict
from bertfit.text.tokenizer import WordpieceTokenizer


@dataclass
class ConversionResult:
    """What :func:`convert_to_hf` read and wrote; ``report`` is the strict load report."""

    source: ModelSource
    output: Path
    report: LoadReport


def convert_to_hf(
    source: str | Path, output: str | Path, overwrite: bool = False
) -> ConversionResult:
    """Write the encoder of ``source`` (any format) to ``output`` as a Hugging Face directory.

    ``output`` is written in a staging directory beside it and renamed into place, so it is
    either complete or untouched. An existing non-empty ``output`` is only replaced with
    ``overwrite``. Raises :class:`CheckpointError` if the weights do not fit the config.
    """
    output = Path(output)
    if output.exists() and not overwrite and (not output.is_dir() or any(output.iterdir())):
        raise ConfigError(f"{output} already exists; choose another --output or --overwrite")
    loaded = load_encoder_source(source)
    if loaded.vocab_path is None:
        raise CheckpointError(f"{loaded.source.directory}: no vocab.txt to go with the weights")
    encoder = BertEncoder(loaded.config)
    report = restore_encoder_source(encoder, loaded, strict=True)
    tensors = {
        name: tensor.detach().to("cpu").contiguous().clone()
        for name, tensor in to_hf_state_dict(encoder.state_dict()).items()
    }
    staging = make_staging_dir(output)
    try:
        save_file(tensors, staging / "model.safetensors", metadata={"format": "pt"})
        write_json(staging / "config.json", loaded.config.to_hf_dict())
        shutil.copyfile(loaded.vocab_path, staging / "vocab.txt")
        # The same tokenizer files a saved classifier gets, so transformers' AutoTokenizer
        # splits text exactly as bertfit does (accents, special tokens, maximum length).
        tokenizer = WordpieceTokenizer(staging / "vocab.txt", lower_case=loaded.source.lower_case)
        tokenizer.save_hf_settings(staging, loaded.config.max_position_embeddings)
        replace_directory(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ConversionResult(loaded.source, output, report)
