"""Length-grouped batch order: a permutation, reproducible, new each epoch, little padding."""

from __future__ import annotations

import numpy as np

from bertfit.data.batching import length_grouped_batches, random_batches, sorted_batches


def _padding_fraction(batches, lengths):
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return padded / sum(lengths) - 1


def test_grouped_batches_cover_every_example_once():
    lengths = np.random.default_rng(0).integers(10, 120, size=1000)
    batches = length_grouped_batches(lengths, 32, seed=1, epoch=1)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(1000))
    assert all(len(b) <= 32 for b in batches)


def test_grouped_batches_are_reproducible_and_change_between_epochs():
    lengths = np.random.default_rng(0).integers(10, 120, size=500)
    first = length_grouped_batches(lengths, 16, seed=3, epoch=1)
    assert first == length_grouped_batches(lengths, 16, seed=3, epoch=1)
    assert first != length_grouped_batches(lengths, 16, seed=3, epoch=2)
    assert first != length_grouped_batches(lengths, 16, seed=4, epoch=1)


def test_grouping_cuts_padding_against_random_batches():
    lengths = np.random.default_rng(0).integers(20, 110, size=3000).tolist()
    grouped = _padding_fraction(length_grouped_batches(lengths, 32, 0, 1), lengths)
    shuffled = _padding_fraction(random_batches(len(lengths), 32, 0, 1), lengths)
    assert grouped < 0.05 < 0.3 < shuffled


def test_sorted_batches_longest_first():
    batches = sorted_batches([3, 9, 1, 7], 2)
    assert batches == [[1, 3], [0, 2]]
