"""Write the TensorFlow checkpoint fixtures in tests/fixtures/tf/ (needs TensorFlow; not bertfit).

Run it only in its own environment, never bertfit's (TensorFlow is no dependency of bertfit):

    python3 -m venv .peers/tf
    .peers/tf/bin/pip install "tensorflow-cpu==2.20.*" "tf-models-official==2.20.*" \
        "tf-keras==2.20.*"
    TF_USE_LEGACY_KERAS=1 .peers/tf/bin/python tools/make_tf_fixtures.py

It writes tiny random BERTs (2 layers, hidden 32, 2 heads) in the three layouts bertfit reads,
each with the encoder outputs TensorFlow computes for a few packed inputs:

* ``tf1/``: Google's original layout (``bert/embeddings/...`` names, ``bert_config.json`` in
  Google's dialect, pretraining heads, ``global_step`` and Adam slots as in a training
  checkpoint), split over two data shards by TensorFlow's own ``MergeV2Checkpoints``. Its
  outputs come from Model Garden's ``BertEncoder`` after Model Garden's own TF1 -> TF2
  converter (``tf2_bert_encoder_checkpoint_converter``), so bertfit's name mapping is checked
  against Google's, not against itself.
* ``tf2/``: ``tf.train.Checkpoint(encoder=...)`` of Model Garden's ``BertEncoder`` built by
  ``build_encoder`` (``bert_config.json`` in Model Garden's dialect, as in the tutorial's folder),
  sharded by ``MaxShardSizePolicy`` into several data files, some tensors partitioned across them.
* ``hub/``: a TF Hub-style SavedModel exported by Model Garden's ``export_tfhub_lib`` with the
  masked-LM head, ``assets/vocab.txt`` and ``do_lower_case``. Its ``saved_model.pb`` (the traced
  graph, over 1 MB and never read by bertfit) is left out; its outputs come from
  ``tf.saved_model.load`` of the complete export.
* ``dtypes/``: tensors of each dtype and of ranks 0 to 4 (float32, float16, bfloat16, ints,
  bool, strings), over two shards, for the reader's own tests.

``outputs.npz`` holds each fixture's inputs and outputs (and the ``dtypes`` values);
``tensors.json`` the dtype, shape and SHA-256 of every numeric tensor as TensorFlow's own
reader returns it; ``MANIFEST.json`` records the versions that made them and every file's size
and SHA-256.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # Model Garden 2.20 needs tf-keras

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from official.legacy.bert import configs as legacy_configs  # noqa: E402
from official.nlp.configs import encoders  # noqa: E402
from official.nlp.modeling import models  # noqa: E402
from official.nlp.tools import export_tfhub_lib  # noqa: E402
from official.nlp.tools import tf2_bert_encoder_checkpoint_converter as converter  # noqa: E402

SEED = 20240611
HIDDEN, LAYERS, HEADS, INTERMEDIATE, POSITIONS = 32, 2, 2, 48, 64

VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "!", "?", "'",
    "the", "a", "cat", "dog", "sat", "on", "mat", "hello", "tensorflow", "goodbye",
    "rain", "spain", "falls", "plain", "it", "was", "##s", "##ing", "##ed", "un",
    "##able", "bert", "fine", "tune", "small", "big", "red", "blue", "green",
]  # fmt: skip

# Three packed sentence pairs of length 12: [CLS] a [SEP] b [SEP] then padding.
WORDS = [
    ["hello", "tensorflow", "!"],
    ["goodbye", "tensorflow"],
    ["the", "cat", "sat", "on", "the", "mat"],
    ["a", "dog", "sat"],
    ["rain", "falls"],
    ["it", "was", "un", "##able", ",", "the", "small", "red", "cat", "."],
]
SEQ_LENGTH = 12


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--output",
        type=Path,
        default=Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "tf",
    )
    args = parser.parse_args()
    out: Path = args.output
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    tf.keras.utils.set_random_seed(SEED)
    inputs = packed_inputs()
    arrays = {f"inputs_{name}": value for name, value in inputs.items()}
    for name, make in (("tf1", make_tf1), ("tf2", make_tf2), ("hub", make_hub)):
        outputs = make(out / name, inputs, np.random.default_rng([SEED, len(name), ord(name[-1])]))
        arrays.update({f"{name}_{key}": value for key, value in outputs.items()})
    arrays.update({f"dtypes_{key}": value for key, value in make_dtypes(out / "dtypes").items()})
    np.savez(out / "outputs.npz", **arrays)
    write_tensor_digests(out)
    write_manifest(out)
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out} ({total} bytes)")


def packed_inputs() -> dict[str, np.ndarray]:
    """input_word_ids, input_mask, input_type_ids [3, SEQ_LENGTH] for the WORDS pairs."""
    ids = {token: i for i, token in enumerate(VOCAB)}
    word_ids = np.zeros((3, SEQ_LENGTH), np.int32)
    mask = np.zeros_like(word_ids)
    types = np.zeros_like(word_ids)
    for row in range(3):
        first, second = WORDS[2 * row], WORDS[2 * row + 1]
        tokens = ["[CLS]", *first, "[SEP]", *second, "[SEP]"][:SEQ_LENGTH]
        segment = [0] * (len(first) + 2) + [1] * (len(second) + 1)
        word_ids[row, : len(tokens)] = [ids[t] for t in tokens]
        mask[row, : len(tokens)] = 1
        types[row, : len(tokens)] = segment[: len(tokens)]
    return {"input_word_ids": word_ids, "input_mask": mask, "input_type_ids": types}


def model_garden_config() -> dict:
    """The encoder's config in Model Garden's dialect (the tutorial folder's bert_config.json)."""
    return {
        "vocab_size": len(VOCAB),
        "hidden_size": HIDDEN,
        "num_layers": LAYERS,
        "num_attention_heads": HEADS,
        "intermediate_size": INTERMEDIATE,
        "hidden_activation": "gelu",
        "dropout_rate": 0.1,
        "attention_dropout_rate": 0.1,
        "max_position_embeddings": POSITIONS,
        "type_vocab_size": 2,
        "initializer_range": 0.02,
    }


def google_config() -> dict:
    """The same encoder in Google's original bert_config.json dialect."""
    return {
        "attention_probs_dropout_prob": 0.1,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": HIDDEN,
        "initializer_range": 0.02,
        "intermediate_size": INTERMEDIATE,
        "max_position_embeddings": POSITIONS,
        "num_attention_heads": HEADS,
        "num_hidden_layers": LAYERS,
        "type_vocab_size": 2,
        "vocab_size": len(VOCAB),
    }


def randomize(variables, rng: np.random.Generator) -> None:
    """Give every weight a distinct random value (zero biases or unit LayerNorm scales would
    hide a mapping that swaps them)."""
    for variable in variables:
        shape = variable.shape.as_list()
        value = rng.normal(0.0, 0.2, shape)
        if variable.name.split("/")[-1].startswith("gamma"):
            value = 1.0 + 0.1 * rng.normal(size=shape)
        variable.assign(value.astype(variable.dtype.as_numpy_dtype))


def encode(encoder, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    result = encoder({k: tf.constant(v) for k, v in inputs.items()}, training=False)
    if isinstance(result, (list, tuple)):  # BertEncoder without dict_outputs
        result = {"sequence_output": result[0], "pooled_output": result[1]}
    return {
        "sequence_output": result["sequence_output"].numpy(),
        "pooled_output": result["pooled_output"].numpy(),
    }


def write_common(directory: Path, config: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "bert_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (directory / "vocab.txt").write_text("\n".join(VOCAB) + "\n")


# --------------------------------------------------------------------------------------------


def tf1_variables(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random weights under Google's original BERT names and shapes (modeling.py)."""

    def normal(*shape):
        return rng.normal(0.0, 0.2, shape).astype(np.float32)

    def norm(prefix):
        return {
            f"{prefix}/gamma": (1.0 + 0.1 * rng.normal(size=HIDDEN)).astype(np.float32),
            f"{prefix}/beta": normal(HIDDEN),
        }

    def dense(prefix, n_in, n_out):
        return {f"{prefix}/kernel": normal(n_in, n_out), f"{prefix}/bias": normal(n_out)}

    v = {
        "bert/embeddings/word_embeddings": normal(len(VOCAB), HIDDEN),
        "bert/embeddings/position_embeddings": normal(POSITIONS, HIDDEN),
        "bert/embeddings/token_type_embeddings": normal(2, HIDDEN),
        **norm("bert/embeddings/LayerNorm"),
    }
    for i in range(LAYERS):
        layer = f"bert/encoder/layer_{i}"
        for part in ("query", "key", "value"):
            v.update(dense(f"{layer}/attention/self/{part}", HIDDEN, HIDDEN))
        v.update(dense(f"{layer}/attention/output/dense", HIDDEN, HIDDEN))
        v.update(norm(f"{layer}/attention/output/LayerNorm"))
        v.update(dense(f"{layer}/intermediate/dense", HIDDEN, INTERMEDIATE))
        v.update(dense(f"{layer}/output/dense", INTERMEDIATE, HIDDEN))
        v.update(norm(f"{layer}/output/LayerNorm"))
    v.update(dense("bert/pooler/dense", HIDDEN, HIDDEN))
    # What else Google's pretraining checkpoints hold: the masked-LM and next-sentence heads.
    v.update(dense("cls/predictions/transform/dense", HIDDEN, HIDDEN))
    v.update(norm("cls/predictions/transform/LayerNorm"))
    v["cls/predictions/output_bias"] = normal(len(VOCAB))
    v["cls/seq_relationship/output_weights"] = normal(2, HIDDEN)
    v["cls/seq_relationship/output_bias"] = normal(2)
    # Training state, as run_pretraining.py / run_classifier.py checkpoints carry it.
    v["bert/pooler/dense/kernel/adam_m"] = normal(HIDDEN, HIDDEN)
    v["bert/pooler/dense/kernel/adam_v"] = np.abs(normal(HIDDEN, HIDDEN))
    v["global_step"] = np.array(1000, np.int64)
    return v


def save_two_shards(prefix: Path, tensors: dict[str, np.ndarray]) -> None:
    """SaveV2 half the tensors to each of two bundles, then MergeV2Checkpoints them: the
    multi-shard layout a sharded tf.compat.v1.train.Saver writes."""
    names = sorted(tensors)
    with tempfile.TemporaryDirectory() as tmp:
        parts = []
        for index, chunk in enumerate((names[::2], names[1::2])):
            part = os.path.join(tmp, f"part-{index}")
            tf.raw_ops.SaveV2(
                prefix=part,
                tensor_names=chunk,
                shape_and_slices=[""] * len(chunk),
                tensors=[tf.constant(tensors[n]) for n in chunk],
            )
            parts.append(part)
        tf.raw_ops.MergeV2Checkpoints(
            checkpoint_prefixes=parts, destination_prefix=str(prefix), delete_old_dirs=False
        )


def make_tf1(directory: Path, inputs, rng) -> dict[str, np.ndarray]:
    write_common(directory, google_config())
    prefix = directory / "bert_model.ckpt"
    save_two_shards(prefix, tf1_variables(rng))
    # TensorFlow's outputs for this checkpoint: Model Garden's converter, then its encoder.
    with tempfile.TemporaryDirectory() as tmp:
        bert_config = legacy_configs.BertConfig.from_json_file(str(directory / "bert_config.json"))
        converted = os.path.join(tmp, "converted", "ckpt")
        converter.convert_checkpoint(
            bert_config, converted, str(prefix), checkpoint_model_name="encoder"
        )
        encoder = converter._create_bert_model(bert_config)
        tf.train.Checkpoint(encoder=encoder).read(
            tf.train.latest_checkpoint(os.path.dirname(converted))
        ).assert_existing_objects_matched()
        return encode(encoder, inputs)


def build_model_garden_encoder(inputs):
    config = encoders.EncoderConfig({"type": "bert", "bert": model_garden_config()})
    encoder = encoders.build_encoder(config)
    encode(encoder, inputs)  # creates the variables
    return encoder, config


def make_tf2(directory: Path, inputs, rng) -> dict[str, np.ndarray]:
    write_common(directory, model_garden_config())
    encoder, _ = build_model_garden_encoder(inputs)
    randomize(encoder.variables, rng)
    options = tf.train.CheckpointOptions(
        experimental_sharding_callback=tf.train.experimental.MaxShardSizePolicy(
            max_shard_size=48_000
        )
    )
    tf.train.Checkpoint(encoder=encoder).write(str(directory / "bert_model.ckpt"), options=options)
    return encode(encoder, inputs)


def make_hub(directory: Path, inputs, rng) -> dict[str, np.ndarray]:
    encoder, config = build_model_garden_encoder(inputs)
    pretrainer = models.BertPretrainerV2(encoder_network=encoder)
    pretrainer({**{k: tf.constant(v) for k, v in inputs.items()},
                "masked_lm_positions": tf.constant([[1, 2]] * 3)})  # fmt: skip
    randomize(pretrainer.variables, rng)
    with tempfile.TemporaryDirectory() as tmp:
        vocab = Path(tmp) / "vocab.txt"
        vocab.write_text("\n".join(VOCAB) + "\n")
        checkpoint = tf.train.Checkpoint(**pretrainer.checkpoint_items).save(f"{tmp}/ckpt")
        export_tfhub_lib.export_model(
            str(directory),
            encoder_config=config,
            model_checkpoint_path=checkpoint,
            with_mlm=True,
            vocab_file=str(vocab),
            do_lower_case=True,
        )
    loaded = tf.saved_model.load(str(directory))
    outputs = encode(loaded, inputs)
    (directory / "saved_model.pb").unlink()  # the traced graph: large, and bertfit never reads it
    return outputs


def make_dtypes(directory: Path) -> dict[str, np.ndarray]:
    """A checkpoint of assorted dtypes and ranks over two shards, and the values TF read back."""
    rng = np.random.default_rng(SEED)
    tensors = {
        "rank0/float32": np.array(3.25, np.float32),
        "rank1/float32": rng.normal(size=7).astype(np.float32),
        "rank3/float32": rng.normal(size=(2, 3, 4)).astype(np.float32),
        "rank4/float32": rng.normal(size=(2, 1, 3, 2)).astype(np.float32),
        "float64": rng.normal(size=(3,)),
        "int32": rng.integers(-1000, 1000, size=(2, 5)).astype(np.int32),
        "int64": np.array([-(2**40), 0, 2**40], np.int64),
        "int8": np.array([-128, 0, 127], np.int8),
        "uint8": np.array([0, 200, 255], np.uint8),
        "bool": np.array([True, False, True]),
    }
    half = rng.normal(size=(4, 3)).astype(np.float16)
    bfloat = rng.normal(size=(3, 4)).astype(np.float32)
    strings = np.array([b"", b"hello", "\u00e9t\u00e9".encode(), b"\x00\xff" * 40], object)
    directory.mkdir(parents=True)
    prefix = str(directory / "model.ckpt")
    with tempfile.TemporaryDirectory() as tmp:
        first, second = os.path.join(tmp, "a"), os.path.join(tmp, "b")
        names = sorted(tensors)
        tf.raw_ops.SaveV2(
            prefix=first,
            tensor_names=[*names, "float16"],
            shape_and_slices=[""] * (len(names) + 1),
            tensors=[*(tf.constant(tensors[n]) for n in names), tf.constant(half)],
        )
        tf.raw_ops.SaveV2(
            prefix=second,
            tensor_names=["bfloat16", "strings"],
            shape_and_slices=["", ""],
            tensors=[tf.cast(tf.constant(bfloat), tf.bfloat16), tf.constant(list(strings))],
        )
        tf.raw_ops.MergeV2Checkpoints(
            checkpoint_prefixes=[first, second], destination_prefix=prefix, delete_old_dirs=False
        )
    # What TensorFlow itself reads back is the expected value.
    reader = tf.train.load_checkpoint(prefix)
    expected = {}
    for name in reader.get_variable_to_shape_map():
        value = reader.get_tensor(name)
        if name == "strings":  # as hex text: npz holds no bytes objects without pickling
            expected["strings_hex"] = np.array([s.hex() for s in value])
            continue
        if name == "bfloat16":
            value = tf.cast(tf.constant(value), tf.float32).numpy()
        expected[name.replace("/", "_")] = value
    return expected


def write_tensor_digests(out: Path) -> None:
    """What TensorFlow reads from each checkpoint: dtype, shape and SHA-256 of the bytes."""
    digests = {}
    for prefix in sorted(out.rglob("*.index")):
        checkpoint = str(prefix.with_suffix(""))
        reader = tf.train.load_checkpoint(checkpoint)
        tensors = {}
        for name, dtype in sorted(reader.get_variable_to_dtype_map().items()):
            if dtype in (tf.string, tf.bfloat16):
                continue  # compared through outputs.npz instead
            value = np.asarray(reader.get_tensor(name))
            tensors[name] = {
                "dtype": dtype.name,
                "shape": list(value.shape),
                "sha256": hashlib.sha256(value.tobytes()).hexdigest(),
            }
        digests[str(prefix.relative_to(out).with_suffix(""))] = tensors
    (out / "tensors.json").write_text(json.dumps(digests, indent=1) + "\n")


def write_manifest(out: Path) -> None:
    files = {}
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        data = path.read_bytes()
        files[str(path.relative_to(out))] = {
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
    versions = {
        name: importlib.metadata.version(name)
        for name in ("tensorflow-cpu", "tf-models-official", "tf-keras", "numpy")
    }
    manifest = {
        "made_by": "TF_USE_LEGACY_KERAS=1 .peers/tf/bin/python tools/make_tf_fixtures.py",
        "python": platform.python_version(),
        "versions": versions,
        "seed": SEED,
        "encoder": model_garden_config(),
        "files": files,
    }
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
