"""Augmented distillation inputs: which words a copy replaces, by what, and how the copies
(which have no gold label) enter the loss and a distilled run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bertfit.cli import main
from bertfit.problem import REGRESSION, SINGLE_LABEL
from bertfit.text.ragged import RaggedPacked
from bertfit.train.augment import augment_inputs, whole_word_positions
from bertfit.train.losses import NO_LABEL_CLASS, distillation_loss, labelled_task_loss, task_loss

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", ".", "cat", "dog", "run", "ran", "##s", "a", "7"]
IDS = {token: index for index, token in enumerate(VOCAB)}


def _embeddings() -> torch.Tensor:
    """cat ~ dog and run ~ ran; the rest far from everything."""
    table = torch.eye(len(VOCAB))
    table[IDS["dog"]] = table[IDS["cat"]] + 0.1 * table[IDS["dog"]]
    table[IDS["ran"]] = table[IDS["run"]] + 0.1 * table[IDS["ran"]]
    return table


def _store(*texts: list[str]) -> RaggedPacked:
    return RaggedPacked.from_packed([([IDS[t] for t in text], [0] * len(text)) for text in texts])


def test_only_one_piece_alphabetic_words_are_replaceable():
    # "cat ##s" is one word of two pieces; "a" is one letter; "7" and "." are not words.
    store = _store(
        ["[CLS]", "cat", "##s", "run", "a", "7", ".", "[SEP]"], ["[CLS]", "dog", "[SEP]"]
    )
    vocab_size = len(VOCAB)
    words = np.zeros(vocab_size, bool)
    words[[IDS["cat"], IDS["dog"], IDS["run"], IDS["ran"]]] = True
    pieces = np.zeros(vocab_size, bool)
    pieces[IDS["##s"]] = True
    positions = whole_word_positions(np.asarray(store.ids), store.offsets, words, pieces)
    assert positions.tolist() == [3, 9]  # "run", and "dog" of the second input


def test_every_replaced_word_becomes_its_nearest_neighbour_and_nothing_else_changes():
    store = _store(
        ["[CLS]", "cat", "run", "7", "[SEP]", "dog", "[SEP]"], ["[CLS]", "cat", "##s", "[SEP]"]
    )
    store.type_ids[5:7] = 1
    out = augment_inputs(store, 2, 1.0, _embeddings(), dict(IDS), neighbours=1, seed=0)
    assert len(out) == 3 * len(store)
    assert [list(out[i][0]) for i in range(len(store))] == [list(store[i][0]) for i in range(2)]
    swapped = [IDS[t] for t in ["[CLS]", "dog", "ran", "7", "[SEP]", "cat", "[SEP]"]]
    for copy in (1, 2):
        first, second = out[2 * copy], out[2 * copy + 1]
        assert list(first[0]) == swapped
        assert list(second[0]) == list(store[1][0])  # "cat ##s" is two pieces: kept
        assert list(first[1]) == list(store[0][1])  # the segments are the original's


def test_the_replacement_rate_and_the_seed():
    text = ["[CLS]"] + ["cat", "run"] * 200 + ["[SEP]"]
    store = _store(text)
    out = augment_inputs(store, 1, 0.3, _embeddings(), dict(IDS), neighbours=1, seed=5)
    changed = np.mean(np.asarray(out[1][0]) != np.asarray(store[0][0])) * len(text) / 400
    assert 0.2 < changed < 0.4
    again = augment_inputs(store, 1, 0.3, _embeddings(), dict(IDS), neighbours=1, seed=5)
    other = augment_inputs(store, 1, 0.3, _embeddings(), dict(IDS), neighbours=1, seed=6)
    assert list(again[1][0]) == list(out[1][0]) != list(other[1][0])


def test_rows_without_a_gold_label_learn_from_the_teacher_alone():
    torch.manual_seed(0)
    logits, teacher = torch.randn(4, 2), torch.randn(4, 2)
    labels = torch.tensor([1, NO_LABEL_CLASS, 0, NO_LABEL_CLASS])
    assert torch.allclose(
        labelled_task_loss(logits, labels, SINGLE_LABEL),
        F.cross_entropy(logits[[0, 2]], labels[[0, 2]]),
    )
    full = torch.tensor([1, 0, 0, 1])
    assert torch.equal(
        labelled_task_loss(logits, full, SINGLE_LABEL), task_loss(logits, full, SINGLE_LABEL)
    )
    scores = torch.tensor([0.5, float("nan"), 2.0, float("nan")])
    expected = F.mse_loss(logits[[0, 2], 0], scores[[0, 2]])
    assert torch.allclose(labelled_task_loss(logits[:, :1], scores, REGRESSION), expected)
    # A batch of copies only: the gold term is 0 and the loss is the teacher's term halved.
    none = torch.full((4,), NO_LABEL_CLASS)
    mixed = distillation_loss(logits, none, teacher, 2.0, 0.5, SINGLE_LABEL)
    soft = distillation_loss(logits, none, teacher, 2.0, 0.0, SINGLE_LABEL)
    assert torch.allclose(mixed, 0.5 * soft)


def test_an_augmented_distillation_trains_on_the_copies(tiny_run, tmp_path, capsys):
    output = tmp_path / "augmented"
    args = ["distill", str(tiny_run), "--output", str(output), "--layers", "1", "--epochs", "1"]
    assert main([*args, "--augment", "2", "--augment-rate", "0.5", "--quiet"]) == 0
    out = capsys.readouterr().out
    teacher = json.loads((tiny_run / "config.json").read_text())
    train_file = Path(teacher["data_dir"]) / "train.tsv"
    originals = len(train_file.read_text(encoding="utf-8-sig").splitlines()) - 1
    assert f": {3 * originals} train / " in out  # each input and its 2 copies
    assert "2 augmented copies of each input (0.5 of words replaced)" in out
    config = json.loads((output / "config.json").read_text())
    assert config["distill"]["augment"] == 2 and config["distill"]["augment_rate"] == 0.5
    steps = (output / "steps.jsonl").read_text().splitlines()
    assert len(steps) == -(-3 * originals // config["trainer"]["batch_size"])
    info = json.loads((output / "model" / "bertfit.json").read_text())
    assert info["distilled_from"]["augment"] == 2


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--augment", "2", "--alpha", "1"], r"augment needs distill\.alpha below 1"),
        (["--augment", "-1"], r"--augment: must be 0 or more"),
        (["--augment", "1", "--augment-rate", "0"], r"augment_rate must be in \(0, 1\]"),
    ],
)
def test_bad_augmentation_options_are_user_errors(tiny_run, tmp_path, capsys, flags, message):
    args = ["distill", str(tiny_run), "--output", str(tmp_path / "s"), "--layers", "1", *flags]
    try:
        code = main(args)
    except SystemExit as exit_info:  # argparse's own checks exit from inside main
        code = exit_info.code
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and re.search(message, err), err
    assert not (tmp_path / "s").exists()
