"""BERT classifier: an encoder plus dropout and one dense layer on its pooled output.

The same head as Model Garden's ``BertClassifier`` and Hugging Face's
``BertForSequenceClassification``; ``problem_type`` (:mod:`bertfit.problem`) says what its
logits mean, a regression having one output (the score).
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from bertfit.model.config import EncoderConfig
from bertfit.model.dropout import Dropout
from bertfit.model.encoder import BertEncoder, init_bert_weights
from bertfit.model.padding_free import PaddingFreeBatch
from bertfit.problem import SINGLE_LABEL, ProblemType, outputs_mismatch


class ClassificationHead(nn.Module):
    """Dropout, then a dense layer from the pooled vector to one logit per class."""

    def __init__(self, hidden_size: int, num_classes: int, dropout_rate: float) -> None:
        super().__init__()
        self.dropout = Dropout(dropout_rate)
        self.dense = nn.Linear(hidden_size, num_classes)

    def forward(self, pooled_output: torch.Tensor) -> torch.Tensor:
        return self.dense(self.dropout(pooled_output))


class BertClassifier(nn.Module):
    """Sequence classifier (or regressor) on a :class:`BertEncoder`.

    ``num_classes`` is the number of logits (1 for a regression) and ``problem_type`` what
    they mean (:mod:`bertfit.problem`; single-label classification unless given).
    ``dropout_rate`` is the head's dropout; ``None`` uses the encoder's ``dropout_rate`` as
    Model Garden and Hugging Face do. Weights start from BERT's initialization; restore a
    pretrained encoder with :func:`bertfit.model.weights.load_pretrained`.
    """

    def __init__(
        self,
        config: EncoderConfig,
        num_classes: int,
        dropout_rate: float | None = None,
        problem_type: ProblemType = SINGLE_LABEL,
    ) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        mismatch = outputs_mismatch(problem_type, num_classes)
        if mismatch is not None:
            raise ValueError(mismatch)
        self.config = config
        self.num_classes = num_classes
        self.problem_type = problem_type
        self.dropout_rate = config.dropout_rate if dropout_rate is None else dropout_rate
        self.encoder = BertEncoder(config)
        self.classifier = ClassificationHead(config.hidden_size, num_classes, self.dropout_rate)
        self.classifier.apply(functools.partial(init_bert_weights, std=config.initializer_range))

    def forward(
        self,
        input_word_ids: torch.Tensor | None = None,
        input_mask: torch.Tensor | None = None,
        input_type_ids: torch.Tensor | None = None,
        *,
        padding_free: PaddingFreeBatch | None = None,
    ) -> torch.Tensor:
        """Logits [B, num_classes] (scores [B, 1] for regression).

        Takes a padded batch (the three [B, L] inputs) or, the fast path, a ``padding_free``
        batch (see :mod:`bertfit.model.padding_free`). Both go through ``forward`` so that
        wrappers (DDP, FSDP) see every call.
        """
        if padding_free is not None:
            return self.classifier(self.encoder.pool_padding_free(padding_free))
        if input_word_ids is None:
            raise ValueError("give input_word_ids (a padded batch) or padding_free=")
        pooled = self.encoder(input_word_ids, input_mask, input_type_ids).pooled_output
        return self.classifier(pooled)
