"""BERT encoder: embeddings, a stack of post-LayerNorm Transformer layers, and the pooler.

One readable file in the spirit of nanoGPT. The layout of the computation follows Google's
original BERT (and Hugging Face's ``BertModel``, which ports it), so pretrained weights load
one to one; ``bertfit.model.weights`` maps the parameter names.

Shapes: B batch, L sequence length, H hidden size, N heads, D = H / N head size.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from bertfit.model.config import EncoderConfig

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,
    "gelu_tanh": functools.partial(F.gelu, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
    "tanh": torch.tanh,
}


class EncoderOutput(NamedTuple):
    """What :class:`BertEncoder` returns.

    ``sequence_output`` [B, L, H] holds the last layer's vector for every token (padding
    positions included, their values meaningless); ``pooled_output`` [B, H] is the pooler's
    dense+tanh transform of the first ([CLS]) token.
    """

    sequence_output: torch.Tensor
    pooled_output: torch.Tensor


class Embeddings(nn.Module):
    """Sum of word, position and token-type embeddings, then LayerNorm and dropout."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout_rate)

    def forward(self, input_word_ids: torch.Tensor, input_type_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_word_ids.shape[1], device=input_word_ids.device)
        x = (
            self.word_embeddings(input_word_ids)
            + self.position_embeddings(positions)  # [L, H] broadcasts over the batch
            + self.token_type_embeddings(input_type_ids)
        )
        return self.dropout(self.layer_norm(x))


class SelfAttention(nn.Module):
    """Multi-head self-attention with one fused query/key/value projection.

    ``qkv`` holds the query, key and value projections stacked along its output dimension (in
    that order), so one matrix multiply computes all three.
    """

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_size = config.head_size
        self.dropout_rate = config.attention_dropout_rate
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.output = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """``x`` [B, L, H]; ``attention_mask`` [B, 1, 1, L] bool, True where a key may be seen."""
        batch, length, hidden = x.shape
        # [B, L, 3H] -> [3, B, N, L, D]: one tensor per projection, heads split out.
        qkv = self.qkv(x).view(batch, length, 3, self.num_heads, self.head_size)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        context = F.scaled_dot_product_attention(
            query,
            key,
            value,
            attn_mask=attention_mask,
            dropout_p=self.dropout_rate if self.training else 0.0,
        )
        # [B, N, L, D] -> [B, L, H]
        context = context.transpose(1, 2).reshape(batch, length, hidden)
        return self.output(context)


class FeedForward(nn.Module):
    """Position-wise feed-forward block: widen, activate, narrow."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.intermediate = nn.Linear(config.hidden_size, config.intermediate_size)
        self.activation = _ACTIVATIONS[config.hidden_activation]
        self.output = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.activation(self.intermediate(x)))


class TransformerLayer(nn.Module):
    """One BERT layer. Post-LN: each block's output is added to its input, then normalized."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.attention = SelfAttention(config)
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = FeedForward(config)
        self.output_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout_rate)

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        x = self.attention_norm(x + self.dropout(self.attention(x, attention_mask)))
        return self.output_norm(x + self.dropout(self.feed_forward(x)))


class Pooler(nn.Module):
    """Dense layer and tanh on the first token: the sentence vector BERT was pretrained with."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, sequence_output: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(sequence_output[:, 0]))


class BertEncoder(nn.Module):
    """A BERT encoder taking the three packed inputs of Model Garden's ``BertPackInputs``.

    Call it with ``input_word_ids``, ``input_mask`` (1 for real tokens, 0 for padding) and
    ``input_type_ids`` (segment of each token), all integer tensors [B, L]; the last two may be
    left out (no padding, one segment). Returns an :class:`EncoderOutput`.
    """

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList(TransformerLayer(config) for _ in range(config.num_layers))
        self.pooler = Pooler(config)
        self.apply(functools.partial(init_bert_weights, std=config.initializer_range))

    def forward(
        self,
        input_word_ids: torch.Tensor,
        input_mask: torch.Tensor | None = None,
        input_type_ids: torch.Tensor | None = None,
    ) -> EncoderOutput:
        """Encode a padded batch; see the class docstring for the inputs."""
        length = input_word_ids.shape[1]
        if length > self.config.max_position_embeddings:
            raise ValueError(
                f"sequence length {length} exceeds max_position_embeddings "
                f"{self.config.max_position_embeddings}"
            )
        if input_type_ids is None:
            input_type_ids = torch.zeros_like(input_word_ids)
        x = self.embeddings(input_word_ids, input_type_ids)
        attention_mask = key_padding_mask(input_mask)
        for layer in self.layers:
            x = layer(x, attention_mask)
        return EncoderOutput(sequence_output=x, pooled_output=self.pooler(x))


def key_padding_mask(input_mask: torch.Tensor | None) -> torch.Tensor | None:
    """Boolean [B, 1, 1, L] mask for ``scaled_dot_product_attention`` from ``input_mask`` [B, L].

    Every query may look at every real key and at no padding key. Padding queries still get
    (meaningless) outputs, which keeps every softmax row non-empty and so free of NaNs.
    """
    if input_mask is None:
        return None
    return input_mask.bool()[:, None, None, :]


def init_bert_weights(module: nn.Module, std: float) -> None:
    """BERT's initialization: weights ~ normal(0, std), zero biases, LayerNorm = identity."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=std)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
