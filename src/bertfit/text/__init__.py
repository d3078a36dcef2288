"""Text to BERT inputs: WordPiece tokenization and Model Garden-style packing.

Nothing here imports torch, so the exported predictor can use it with ONNX Runtime alone.
"""

from bertfit.text.packing import (
    TRUNCATORS,
    BertPacker,
    PackedExample,
    pack_example,
    pad_packed,
    round_robin_trim,
    trim_segments,
    waterfall_trim,
)
from bertfit.text.processor import TextProcessor
from bertfit.text.ragged import RaggedBuilder, RaggedPacked
from bertfit.text.tokenizer import SPECIAL_TOKENS, WordpieceTokenizer, read_vocab

__all__ = [
    "SPECIAL_TOKENS",
    "TRUNCATORS",
    "BertPacker",
    "PackedExample",
    "RaggedBuilder",
    "RaggedPacked",
    "TextProcessor",
    "WordpieceTokenizer",
    "pack_example",
    "pad_packed",
    "read_vocab",
    "round_robin_trim",
    "trim_segments",
    "waterfall_trim",
]
