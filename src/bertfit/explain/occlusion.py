"""Word occlusion: how much the explained logit drops when one word is masked.

Needs forward passes only (no gradients), so it works on any predictor, the torch-free ONNX
runtime included. Every word's tokens are replaced by ``[MASK]`` in turn and the row is run
again; all the masked copies go through the model in one batched call. With windows, a masked
word changes only the windows that hold it, so only those are run again and the others keep
their logits.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bertfit.explain.words import SPECIAL, WordRow
from bertfit.text.packing import DEFAULT_TRUNCATOR, PackedExample

LogitsOfPacked = Callable[[list[PackedExample]], np.ndarray]


def occlusion(
    row: WordRow,
    logits_of_packed: LogitsOfPacked,
    seq_length: int,
    special_tokens: dict[str, int],
    stride: int | None = None,
    target: int | None = None,
    truncator: str = DEFAULT_TRUNCATOR,
    mask_id: int | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Occlusion scores of each word of ``row``.

    Args:
        row: the input row, split into words.
        logits_of_packed: runs packed inputs through the model, logits [n, classes].
        seq_length, special_tokens, stride, truncator: the classifier's packing (``stride``
            for windows).
        target: the class whose logit is explained; default the predicted one.
        mask_id: what a masked word's tokens become (default ``special_tokens["mask_id"]``).

    Returns:
        The row's logits [classes] (window-averaged), each word's score (the target logit
        minus the target logit with that word masked; 0 for words the model never sees) and
        the target class.
    """
    windows, keys = row.pack(seq_length, special_tokens, stride, truncator)
    mask_id = special_tokens["mask_id"] if mask_id is None else mask_id
    masked, owners = _masked_windows(row, windows, keys, mask_id)
    logits = logits_of_packed(windows + masked)
    base = logits[: len(windows)]
    row_logits = base.mean(axis=0)
    target = int(row_logits.argmax()) if target is None else target
    # Masking word w replaces the logits of the windows that hold it; the others stay.
    change = np.zeros(len(row.words), dtype=np.float64)
    for (word, window), masked_logits in zip(owners, logits[len(windows) :]):
        change[word] += masked_logits[target] - base[window, target]
    return row_logits, -change / len(windows), target


def _masked_windows(
    row: WordRow, windows: list[PackedExample], keys: list[list[int]], mask_id: int
) -> tuple[list[PackedExample], list[tuple[int, int]]]:
    """A copy of each window with one of its words masked, and (word, window) of each copy."""
    masked: list[PackedExample] = []
    owners: list[tuple[int, int]] = []
    for window, ((ids, types), window_keys) in enumerate(zip(windows, keys)):
        key_array = np.asarray(window_keys, dtype=np.int64)
        words = np.full(len(key_array), SPECIAL, dtype=np.int64)
        real = key_array != SPECIAL
        words[real] = row.token_word[key_array[real]]
        for word in np.unique(words[real]):
            copy = np.where(words == word, mask_id, np.asarray(ids, dtype=np.int64))
            masked.append((copy.tolist(), list(types)))
            owners.append((int(word), window))
    return masked, owners
