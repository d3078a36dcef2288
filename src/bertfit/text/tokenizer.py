"""BERT WordPiece tokenizer on the Hugging Face ``tokenizers`` Rust library.

It reproduces the original BERT tokenization (clean text, split CJK characters, lower-case and
strip accents for uncased vocabularies, split on whitespace and punctuation, greedy
longest-match WordPiece with ``[UNK]`` for words that cannot be covered or are over-long) and
returns ids *without* special tokens: packing them into model inputs is :mod:`bertfit.text.packing`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordPiece

from bertfit.config import atomic_write_bytes, write_json
from bertfit.errors import ConfigError

VOCAB_FILE_NAME = "vocab.txt"
UNK_TOKEN = "[UNK]"
# Words longer than this (in characters) become one [UNK], as in the original BERT.
MAX_INPUT_CHARS_PER_WORD = 100

# Model Garden's special-token dict: key -> token looked up in the vocabulary.
SPECIAL_TOKENS = {
    "start_of_sequence_id": "[CLS]",
    "end_of_segment_id": "[SEP]",
    "padding_id": "[PAD]",
    "mask_id": "[MASK]",
}
# The same tokens as transformers' tokenizer files name them.
HF_SPECIAL_TOKENS = {
    "unk_token": UNK_TOKEN,
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
}


class SpecialTokensDict(dict):
    """``special_tokens_dict``: a plain ``dict`` of ids that also knows its vocabulary file.

    It compares, copies and serialises as the dict it is; ``vocab_file`` lets whatever later
    needs a token the vocabulary lacks (the packer) name the file in its error.
    """

    def __init__(self, ids: dict[str, int], vocab_file: Path | None = None) -> None:
        super().__init__(ids)
        self.vocab_file = vocab_file


def read_vocab(vocab_file: str | os.PathLike) -> tuple[dict[str, int], int]:
    """Read a ``vocab.txt`` (one token a line, id = line number).

    Returns the token -> id dict and the number of lines (one past the largest id).

    Raises :class:`ConfigError` naming the file when it is missing, unreadable, not UTF-8 or
    holds no tokens.
    """
    path = Path(vocab_file)
    try:
        # Universal newlines end a line at LF, CRLF or CR only, like the original BERT's reader;
        # str.splitlines would also split at U+2028 and friends, which may be vocab entries.
        with open(path, encoding="utf-8", newline=None) as handle:
            lines = handle.read().split("\n")
    except FileNotFoundError:
        raise ConfigError(f"{path}: vocabulary file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: vocabulary file is a directory") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: vocabulary file is not UTF-8 ({error.reason})") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read vocabulary file ({error.strerror})") from None
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last token; it does not start a new one
    if not any(line.strip() for line in lines):
        raise ConfigError(f"{path}: vocabulary file is empty")
    # rstrip() like Model Garden and the Rust reader; a repeated token keeps its last id.
    return {line.rstrip(): index for index, line in enumerate(lines)}, len(lines)


class WordpieceTokenizer:
    """BERT WordPiece tokenizer built from a ``vocab.txt``.

    Args:
        vocab_file: path of the vocabulary, one token a line; the line number is the id.
        lower_case: lower-case and strip accents before splitting (uncased vocabularies).
            Cased vocabularies need ``False``, which also keeps accents, as in BERT.
    """

    def __init__(self, vocab_file: str | os.PathLike, lower_case: bool = True) -> None:
        self.vocab_file = Path(vocab_file)
        self.lower_case = bool(lower_case)
        self._vocab, self.vocab_size = read_vocab(self.vocab_file)
        if UNK_TOKEN not in self._vocab:
            # Without [UNK] the Rust model fails at the first unknown word; say so up front.
            raise ConfigError(f"{self.vocab_file}: vocabulary has no {UNK_TOKEN} token")
        self._tokenizer = self._build()

    @property
    def vocabulary(self) -> dict[str, int]:
        """The vocabulary as token -> id (a copy)."""
        return dict(self._vocab)

    def _build(self) -> Tokenizer:
        tokenizer = Tokenizer(
            WordPiece(
                self._vocab,
                unk_token=UNK_TOKEN,
                max_input_chars_per_word=MAX_INPUT_CHARS_PER_WORD,
            )
        )
        tokenizer.normalizer = normalizers.BertNormalizer(
            clean_text=True,
            handle_chinese_chars=True,
            # BERT strips accents exactly when it lower-cases.
            strip_accents=self.lower_case,
            lowercase=self.lower_case,
        )
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.no_truncation()
        tokenizer.no_padding()
        return tokenizer

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, without special tokens (batched in parallel in Rust)."""
        if isinstance(texts, str):
            # A lone string would otherwise be tokenized character by character.
            raise TypeError("tokenize() takes a sequence of strings; use encode() for one string")
        encode_batch = getattr(self._tokenizer, "encode_batch_fast", self._tokenizer.encode_batch)
        encodings = encode_batch(list(texts), add_special_tokens=False)
        return [encoding.ids for encoding in encodings]

    def encode(self, text: str) -> list[int]:
        """Token ids of one text, without special tokens."""
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def tokens(self, text: str) -> list[str]:
        """WordPiece strings of one text (``##`` marks a continuation), for display."""
        return self._tokenizer.encode(text, add_special_tokens=False).tokens

    def words(self, text: str) -> list[tuple[int, int, list[int]]]:
        """Each word of ``text`` as BERT splits it (at whitespace and punctuation): its
        character span ``(start, end)`` in ``text`` and its WordPiece ids, in order.

        The ids of all words together are :meth:`encode`'s. Explanations use this to merge
        per-token scores back into whole words.
        """
        encoding = self._tokenizer.encode(text, add_special_tokens=False)
        words: list[tuple[int, int, list[int]]] = []
        last = None
        for token_id, word, (start, end) in zip(encoding.ids, encoding.word_ids, encoding.offsets):
            if word != last:
                words.append((start, end, []))
                last = word
            first, _, ids = words[-1]
            words[-1] = (first, max(end, words[-1][1]), ids)
            ids.append(token_id)
        return words

    def token_to_id(self, token: str) -> int | None:
        """Id of ``token`` in the vocabulary, or ``None`` when it is absent."""
        return self._vocab.get(token)

    @property
    def special_tokens_dict(self) -> SpecialTokensDict:
        """Model Garden's special-token ids, as its ``get_special_tokens_dict()`` gives them.

        ``start_of_sequence_id`` ([CLS]), ``end_of_segment_id`` ([SEP]), ``padding_id``
        ([PAD]) and ``mask_id`` ([MASK]) for each token the vocabulary holds (a key whose token
        is absent is left out), and always ``vocab_size`` (one past the largest id). What needs
        a missing token raises :class:`ConfigError` naming it and this vocabulary file when it
        is built: ``BertPacker`` needs [CLS], [SEP] and [PAD]; nothing in bertfit needs [MASK].
        """
        ids = {
            key: self._vocab[token] for key, token in SPECIAL_TOKENS.items() if token in self._vocab
        }
        ids["vocab_size"] = self.vocab_size
        return SpecialTokensDict(ids, self.vocab_file)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the vocabulary as ``directory/vocab.txt`` (an exact copy) and return its path.

        The file is written to a temporary name and renamed, so it is never half-written.
        """
        target = Path(directory) / VOCAB_FILE_NAME
        data = self.vocab_file.read_bytes()  # read first: the target may be the source itself
        atomic_write_bytes(target, data)
        return target

    def save_hf_settings(self, directory: str | os.PathLike, model_max_length: int) -> list[Path]:
        """Write transformers' ``tokenizer_config.json`` and ``special_tokens_map.json``.

        With them beside ``vocab.txt``, ``transformers.AutoTokenizer`` (and so ``pipeline``)
        tokenizes as this tokenizer does; without them it assumes an uncased vocabulary and
        would lower-case and strip the accents of a cased model's input. ``model_max_length``
        is the length the model was trained at. Each file is written atomically; returns
        their paths.
        """
        directory = Path(directory)
        special = {
            key: token
            for key, token in HF_SPECIAL_TOKENS.items()
            if token in self._vocab  # a token the vocabulary lacks would be added to it
        }
        config = {
            "tokenizer_class": "BertTokenizer",
            "do_lower_case": self.lower_case,
            # Stated, not left to follow do_lower_case: BERT strips accents exactly when it
            # lower-cases, and so does this tokenizer.
            "strip_accents": self.lower_case,
            "tokenize_chinese_chars": True,
            "do_basic_tokenize": True,
            "model_max_length": model_max_length,
            **special,
        }
        paths = [directory / "tokenizer_config.json", directory / "special_tokens_map.json"]
        for path, data in zip(paths, (config, special)):
            write_json(path, data)
        return paths

    def to_dict(self) -> dict[str, Any]:
        """Settings to store next to a saved vocabulary (the file name is relative)."""
        return {"vocab_file": VOCAB_FILE_NAME, "lower_case": self.lower_case}

    @classmethod
    def from_dict(
        cls, settings: dict[str, Any], directory: str | os.PathLike
    ) -> WordpieceTokenizer:
        """Rebuild a tokenizer from :meth:`to_dict` settings and the directory it was saved in."""
        unknown = sorted(set(settings) - {"vocab_file", "lower_case"})
        if unknown:
            raise ConfigError(f"tokenizer settings: unknown key {unknown[0]!r}")
        lower_case = settings.get("lower_case", True)
        if not isinstance(lower_case, bool):
            raise ConfigError(
                f"tokenizer settings: lower_case must be true or false, got {lower_case!r}"
            )
        vocab_name = settings.get("vocab_file", VOCAB_FILE_NAME)
        if not isinstance(vocab_name, str):
            raise ConfigError(
                f"tokenizer settings: vocab_file must be a string, got {vocab_name!r}"
            )
        return cls(Path(directory) / vocab_name, lower_case=lower_case)

    def __repr__(self) -> str:
        return (
            f"WordpieceTokenizer(vocab_file={str(self.vocab_file)!r}, "
            f"lower_case={self.lower_case}, vocab_size={self.vocab_size})"
        )
