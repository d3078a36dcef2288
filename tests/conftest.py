"""Shared fixtures: paths to the real GLUE files and the packaged model, small synthetic data."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GLUE_DIR = REPO.parent / "shared" / "data" / "glue"

MRPC_HEADER = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"


def write_mrpc_split(path: Path, rows: list[tuple[str, str, str]], bom: bool = True) -> Path:
    """Write (label, sentence1, sentence2) rows in GLUE's MRPC layout."""
    header = MRPC_HEADER if bom else MRPC_HEADER.lstrip("\ufeff")
    lines = [f"{label}\t{i}\t{i + 1000}\t{a}\t{b}\n" for i, (label, a, b) in enumerate(rows)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "".join(lines), encoding="utf-8")
    return path


@pytest.fixture
def glue_dir() -> Path:
    """The real GLUE files beside the checkout; tests that need them skip when absent."""
    if not (GLUE_DIR / "MRPC" / "train.tsv").is_file():
        pytest.skip(f"real GLUE data not found at {GLUE_DIR}")
    return GLUE_DIR


@pytest.fixture
def minilm_dir() -> Path:
    """The packaged all-MiniLM-L6-v2 directory."""
    from bertfit.model.presets import default_model_dir

    return default_model_dir()


TINY_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ","] + [
    "red", "blue", "green", "yellow", "purple", "orange",
    "the", "a", "cat", "dog", "sat", "ran", "on", "mat", "big", "small", "and", "saw", "it",
]  # fmt: skip
# A cased vocabulary: upper-case and accented words, and a CJK character, as their own tokens.
CASED_VOCAB = TINY_VOCAB + ["Red", "Blue", "The", "Cat", "café", "cafe", "Über", "uber", "猫"]
WARM = ["red", "yellow", "orange"]
COOL = ["blue", "green", "purple"]
FILLERS = TINY_VOCAB[13:]


def synthetic_pairs(n: int, seed: int) -> tuple[list[list[str]], list[int]]:
    """Pairs where one sentence names a warm colour and the other a cool one; the label says
    whether the warm one is in the second sentence (balanced, and only learnable by telling
    the two segments apart)."""
    import random

    rng = random.Random(seed)
    first, second, labels = [], [], []
    for i in range(n):
        label = i % 2
        warm, cool = rng.choice(WARM), rng.choice(COOL)
        sentences = []
        for color in (cool, warm) if label else (warm, cool):
            words = rng.choices(FILLERS, k=rng.randint(2, 6))
            words.insert(rng.randint(0, len(words)), color)
            sentences.append(" ".join(words) + " .")
        first.append(sentences[0])
        second.append(sentences[1])
        labels.append(label)
    return [first, second], labels


# The start of a script (for ``python -c``) in which importing torch fails: what runs after it
# must work on a machine without PyTorch.
BLOCK_TORCH = """
import sys

class BlockTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is made unimportable by this test")

sys.meta_path.insert(0, BlockTorch())
"""


def make_tiny_classifier(
    tmp_path: Path,
    num_classes: int = 2,
    seed: int = 0,
    tokens: list[str] | None = None,
    max_seq_length: int = 32,
    problem_type: str = "single_label_classification",
    lower_case: bool = True,
):
    """A randomly initialised 2-layer, hidden-32 classifier with its tokenizer (over
    ``tokens``, by default :data:`TINY_VOCAB`; ``lower_case`` False for a cased vocabulary
    such as :data:`CASED_VOCAB`)."""
    import torch

    from bertfit.data.tasks import MRPC
    from bertfit.inference import ClassifierInfo, TextClassifier
    from bertfit.model.classifier import BertClassifier
    from bertfit.model.config import EncoderConfig
    from bertfit.text.tokenizer import WordpieceTokenizer

    tokens = TINY_VOCAB if tokens is None else tokens
    vocab = tmp_path / "tiny-vocab.txt"
    vocab.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    config = EncoderConfig(
        vocab_size=len(tokens),
        hidden_size=32,
        num_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        dropout_rate=0.0,
        attention_dropout_rate=0.0,
    )
    torch.manual_seed(seed)
    model = BertClassifier(config, num_classes, problem_type=problem_type)
    info = ClassifierInfo(
        task="mrpc",
        label_names=list(MRPC.label_names),
        max_seq_length=max_seq_length,
        lower_case=lower_case,
        input_names=list(MRPC.input_names),
    )
    return TextClassifier(model, WordpieceTokenizer(vocab, lower_case=lower_case), info)


@pytest.fixture
def tiny_model_dir(tmp_path) -> Path:
    """A saved tiny model directory (usable as ``--model``)."""
    directory = tmp_path / "tiny-model"
    make_tiny_classifier(tmp_path).save_pretrained(directory)
    return directory


def write_synthetic_glue(root: Path, n_train: int = 256, n_dev: int = 64) -> Path:
    """An MRPC-layout GLUE directory of synthetic pairs; returns the GLUE root."""
    for split, n, seed in (("train", n_train, 1), ("dev", n_dev, 2)):
        (a, b), labels = synthetic_pairs(n, seed)
        rows = [(str(y), s1, s2) for y, s1, s2 in zip(labels, a, b)]
        write_mrpc_split(root / "MRPC" / f"{split}.tsv", rows)
    return root


def write_glue_task(root: Path, task_name: str, n_train: int = 64, n_dev: int = 32) -> Path:
    """A GLUE directory for ``task_name`` in its exact file layout, from synthetic pairs.

    Labels follow :func:`synthetic_pairs` (mapped onto the task's label values; regression
    targets are 0.0 or 5.0; the first text alone carries the rule for single-sentence tasks).
    """
    from bertfit.data.tasks import get_task

    task = get_task(task_name)
    for split, n, seed in (("train", n_train, 1), *((s, n_dev, 2) for s in task.dev_splits)):
        (first, second), labels = synthetic_pairs(n, seed)
        lines = [] if not task.header else ["\t".join(_header(task))]
        for i, (a, b, y) in enumerate(zip(first, second, labels)):
            lines.append("\t".join(_row(task, i, a, b, y)))
        path = root / task.glue_dir / f"{split}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def _header(task) -> list[str]:
    return [*task.text_columns, "pad", task.label_column]


def _row(task, i: int, first: str, second: str, label: int) -> list[str]:
    if task.problem_type == "regression":
        value = "5.000" if label else "0.000"
    else:
        value = task.label_values[label % len(task.label_values)]
    if not task.header:  # CoLA: source, label, original mark, sentence
        return [f"src{i}", value, "", f"{first} {second}"]
    texts = [first, second][: len(task.text_columns)]
    if len(texts) == 1:
        texts = [f"{first} {second}"]
    return [*texts, "x", value]


def write_noisy_glue(root: Path, n_train: int = 1024, n_dev: int = 200) -> Path:
    """Synthetic MRPC pairs (:func:`synthetic_pairs`) with every tenth label flipped, so a
    model that learns the rule is right about 90% of the time and has something to calibrate."""
    for split, n, seed in (("train", n_train, 1), ("dev", n_dev, 2)):
        (a, b), labels = synthetic_pairs(n, seed)
        labels = [1 - y if i % 10 == 3 else y for i, y in enumerate(labels)]
        write_mrpc_split(root / "MRPC" / f"{split}.tsv", list(zip(map(str, labels), a, b)))
    return root


def train_tiny_run(root: Path, *extra: str) -> Path:
    """Fine-tune the tiny classifier on noisy synthetic pairs with ``bertfit train``.

    The pair rule (which sentence names a warm colour) is learnt in a few epochs, so tests get
    a model whose decisions depend on known words. Returns the run directory.
    """
    import os
    import subprocess
    import sys

    glue = write_noisy_glue(root / "glue")
    model_dir = root / "tiny-model"
    make_tiny_classifier(root).save_pretrained(model_dir)
    run_dir = root / "run"
    command = [
        sys.executable, "-m", "bertfit", "train", "--task", "mrpc", "--output", str(run_dir),
        "--data-dir", str(glue), "--model", str(model_dir), "--max-seq-length", "32",
        "--epochs", "3", "--batch-size", "32", "--learning-rate", "3e-3", "--precision", "fp32",
        "--quiet", *extra,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ})
    assert result.returncode == 0, result.stderr
    return run_dir


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A run directory of the tiny classifier fine-tuned on synthetic pairs (see
    :func:`train_tiny_run`), shared by the tests of one session."""
    return train_tiny_run(tmp_path_factory.mktemp("tiny-run"))
