"""More inputs for a student to learn its teacher from: copies of the training inputs with some
words swapped for near neighbours.

After TinyBERT's data augmentation (Jiao et al., 2020), which replaces words with GloVe or
masked-LM neighbours and lets the teacher label every new input. Here the neighbours come from
the teacher's own word-embedding table, so augmentation needs nothing the run does not already
have (no second model, no download). Only whole words of one WordPiece are replaced, by other
one-piece alphabetic words, so every copy has the same length and segments as its original.

The copies carry no gold label: a swapped word may change what a pair means, so they learn from
the teacher's outputs alone (see :func:`bertfit.train.losses.distillation_loss`).
"""

from __future__ import annotations

import numpy as np
import torch

from bertfit.text.ragged import RaggedPacked


def vocabulary_mask(vocabulary: dict[str, int], vocab_size: int, test) -> np.ndarray:
    """``vocab_size`` bools: which ids' tokens pass ``test``."""
    mask = np.zeros(vocab_size, dtype=bool)
    mask[[index for token, index in vocabulary.items() if test(token)]] = True
    return mask


def replaceable_tokens(vocabulary: dict[str, int], vocab_size: int) -> np.ndarray:
    """Which ids are whole alphabetic words (``vocab_size`` bools): not ``##`` pieces,
    punctuation, numbers or special tokens such as ``[SEP]``."""
    return vocabulary_mask(vocabulary, vocab_size, lambda token: token.isalpha() and len(token) > 1)


def continuation_tokens(vocabulary: dict[str, int], vocab_size: int) -> np.ndarray:
    """Which ids continue the word before them (``##`` pieces)."""
    return vocabulary_mask(vocabulary, vocab_size, lambda token: token.startswith("##"))


def nearest_words(
    embeddings: torch.Tensor,
    queries: np.ndarray,
    candidates: np.ndarray,
    count: int,
    chunk: int = 1024,
) -> np.ndarray:
    """For each id in ``queries``, the ``count`` ids of ``candidates`` whose embedding rows are
    nearest by cosine (itself left out), nearest first: an array [len(queries), count]."""
    table = torch.nn.functional.normalize(embeddings.detach().float(), dim=-1)
    pool = table[torch.from_numpy(candidates)]
    neighbours = np.empty((len(queries), count), dtype=np.int64)
    for start in range(0, len(queries), chunk):
        ids = torch.from_numpy(queries[start : start + chunk])
        similarity = table[ids] @ pool.T
        similarity[candidates[None, :] == ids.numpy()[:, None]] = -2.0  # never itself
        top = similarity.topk(count, dim=-1).indices.numpy()
        neighbours[start : start + len(ids)] = candidates[top]
    return neighbours


def whole_word_positions(ids: np.ndarray, offsets: np.ndarray, words, pieces) -> np.ndarray:
    """Positions in the flat ``ids`` that hold a one-piece word: a replaceable id not followed,
    within its own input, by a ``##`` piece."""
    follows = np.zeros(len(ids), dtype=bool)  # the next token continues this one
    follows[:-1] = pieces[ids[1:]]
    follows[offsets[1:-1] - 1] = False  # an input's last token has no next within it
    return np.flatnonzero(words[ids] & ~follows)


def augment_inputs(
    inputs: RaggedPacked,
    copies: int,
    rate: float,
    embeddings: torch.Tensor,
    vocabulary: dict[str, int],
    neighbours: int = 15,
    seed: int = 0,
) -> RaggedPacked:
    """The originals of ``inputs`` followed by ``copies`` augmented copies of them: copy 1 of
    every input, then copy 2 of every input, and so on.

    In each copy, each one-piece word is replaced with probability ``rate`` by one of its
    ``neighbours`` nearest words in ``embeddings`` (the teacher's word-embedding table), drawn
    uniformly. Type ids and lengths are the originals'. The draw is fixed by ``seed``.
    """
    vocab_size = embeddings.shape[0]
    words = replaceable_tokens(vocabulary, vocab_size)
    pieces = continuation_tokens(vocabulary, vocab_size)
    ids = np.asarray(inputs.ids)
    positions = whole_word_positions(ids, inputs.offsets, words, pieces)
    present = np.unique(ids[positions])
    table = np.zeros((vocab_size, neighbours), dtype=np.int64)
    table[present] = nearest_words(embeddings, present, np.flatnonzero(words), neighbours)
    rng = np.random.default_rng(seed)
    copied_ids = [ids]
    for _ in range(copies):
        new = ids.copy()
        chosen = positions[rng.random(len(positions)) < rate]
        new[chosen] = table[ids[chosen], rng.integers(neighbours, size=len(chosen))]
        copied_ids.append(new)
    return repeat_store(inputs, copied_ids)


def repeat_store(inputs: RaggedPacked, copied_ids: list[np.ndarray]) -> RaggedPacked:
    """A store of the inputs of ``inputs`` once per array of ``copied_ids`` (each the flat word
    ids of one copy), with the original type ids and lengths."""
    copies = len(copied_ids)
    total = int(inputs.offsets[-1])
    shifts = np.repeat(np.arange(copies, dtype=np.int64) * total, len(inputs))
    offsets = np.concatenate([np.tile(inputs.offsets[:-1], copies) + shifts, [copies * total]])
    return RaggedPacked(
        np.concatenate(copied_ids).astype(inputs.ids.dtype, copy=False),
        np.tile(inputs.type_ids, copies),
        offsets,
    )
