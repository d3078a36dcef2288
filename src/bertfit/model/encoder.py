"""BERT encoder: embeddings, a stack of post-LayerNorm Transformer layers, and the pooler.

One readable file in the spirit of nanoGPT. The layout of the computation follows Google's
original BERT (and Hugging Face's ``BertModel``, which ports it), so pretrained weights load
one to one; ``bertfit.model.weights`` maps the parameter names.

Two ways through the same weights: :meth:`BertEncoder.forward` takes a padded batch [B, L]
(the layout of the original models and of ONNX export);
:meth:`BertEncoder.forward_padding_free` takes a
:class:`~bertfit.model.padding_free.PaddingFreeBatch` of real tokens only [T], spends no compute
on padding, and (:meth:`BertEncoder.pool_padding_free`) can skip what a classifier never reads:
in the last layer only the first ([CLS]) token's output feeds the pooler, so only its query,
attention output and feed-forward are computed (keys and values still come from every token).

Shapes: B batch, L sequence length, T real tokens in a padding-free batch, H hidden size, N heads,
D = H / N head size.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from bertfit.model.config import EncoderConfig
from bertfit.model.dropout import Dropout, scaled_dot_product_attention
from bertfit.model.padding_free import PaddingFreeBatch, gather_rows
from bertfit.model.recompute import recompute_when_saved

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
        self.dropout = Dropout(config.dropout_rate)

    def forward(
        self,
        input_word_ids: torch.Tensor,
        input_type_ids: torch.Tensor,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Embed [B, L] (positions 0..L-1) or padding-free [T] ids (``positions`` given, [T])."""
        if positions is None:
            # [L, H] position embeddings broadcast over the batch.
            positions = torch.arange(input_word_ids.shape[-1], device=input_word_ids.device)
        x = (
            self.word_embeddings(input_word_ids)
            + self.position_embeddings(positions)
            + self.token_type_embeddings(input_type_ids)
        )
        return self.dropout(self.layer_norm(x))


def attend(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    key_mask: torch.Tensor | None,
    dropout_rate: float,
) -> torch.Tensor:
    """Scaled dot-product attention of [B, N, Lq, D] queries over [B, N, L, D] keys and values.

    ``key_mask`` [B, 1, 1, L] is True where a key may be seen; ``dropout_rate`` > 0 (training)
    drops attention probabilities, on a CPU with bertfit's fast dropout
    (:func:`bertfit.model.dropout.scaled_dot_product_attention`).
    """
    return scaled_dot_product_attention(query, key, value, key_mask, dropout_rate)


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
        context = attend(query, key, value, attention_mask, self._dropout_rate())
        # [B, N, L, D] -> [B, L, H]
        context = context.transpose(1, 2).reshape(batch, length, hidden)
        return self.output(context)

    def forward_padding_free(self, x: torch.Tensor, batch: PaddingFreeBatch) -> torch.Tensor:
        """Self-attention of padding-free rows ``x`` [R, H]; returns [R, H] (zero context at spare
        rows, see :mod:`bertfit.model.padding_free`)."""
        query, key, value = self._padded_heads(self.qkv(x), batch, parts=3).unbind(0)
        context = attend(query, key, value, batch.key_mask, self._dropout_rate())
        # [B, N, L, D] -> [B * L, H] -> the real tokens' rows [T, H] -> [R, H]
        hidden = x.shape[-1]
        context = gather_rows(context.transpose(1, 2).reshape(-1, hidden), batch.token_index)
        if batch.spare_rows:
            context = F.pad(context, (0, 0, 0, batch.spare_rows))
        return self.output(context)

    def forward_first_tokens(
        self, x: torch.Tensor, first: torch.Tensor, batch: PaddingFreeBatch
    ) -> torch.Tensor:
        """Attention output [B, H] of each sequence's first token ``first`` [B, H] over ``x``."""
        hidden = x.shape[-1]
        weight, bias = self.qkv.weight, self.qkv.bias
        query = F.linear(first, weight[:hidden], bias[:hidden])
        query = query.view(-1, 1, self.num_heads, self.head_size).transpose(1, 2)  # [B, N, 1, D]
        key_value = F.linear(x, weight[hidden:], bias[hidden:])
        key, value = self._padded_heads(key_value, batch, parts=2).unbind(0)
        context = attend(query, key, value, batch.key_mask, self._dropout_rate())
        return self.output(context.reshape(-1, hidden))

    def _padded_heads(self, projected: torch.Tensor, batch: PaddingFreeBatch, parts: int):
        """[R, parts * H] padding-free projections -> [parts, B, N, L, D], zeros at padding (spare
        rows are left out)."""
        width = batch.batch_size * batch.max_length
        padded = projected.new_zeros(width, projected.shape[-1])
        padded = padded.index_copy(0, batch.token_index, projected[: batch.num_tokens])
        padded = padded.view(batch.batch_size, batch.max_length, parts, self.num_heads, -1)
        return padded.permute(2, 0, 3, 1, 4)

    def _dropout_rate(self) -> float:
        return self.dropout_rate if self.training else 0.0


class FeedForward(nn.Module):
    """Position-wise feed-forward block: widen, activate, narrow."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.intermediate = nn.Linear(config.hidden_size, config.intermediate_size)
        self.activation = _ACTIVATIONS[config.hidden_activation]
        self.output = nn.Linear(config.intermediate_size, config.hidden_size)
        # Activations whose backward keeps their input (ReLU and tanh keep their output).
        self._rebuilds_activation = config.hidden_activation in ("gelu", "gelu_tanh", "silu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inner = self.intermediate(x)
        activated = self.activation(inner)
        if not (self.training and self._rebuilds_activation):
            return self.output(activated)
        # The activation keeps its input for backward; rebuild its output from that rather than
        # let the output layer keep a second [T, 4H] tensor.
        with recompute_when_saved(activated, lambda: self.activation(inner)):
            return self.output(activated)


class TransformerLayer(nn.Module):
    """One BERT layer. Post-LN: each block's output is added to its input, then normalized."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.attention = SelfAttention(config)
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = FeedForward(config)
        self.output_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.dropout_rate)

    def forward(
        self,
        x: torch.Tensor,
        attention_mask: torch.Tensor | PaddingFreeBatch | None,
        first_tokens_only: bool = False,
    ) -> torch.Tensor:
        """A padded batch ``x`` [B, L, H] with its key mask [B, 1, 1, L] (or None), or padding-free
        rows ``x`` [R, H] with their :class:`PaddingFreeBatch` in place of the mask.

        ``first_tokens_only`` (padding-free only) returns just each sequence's first token [B, H].
        One ``forward`` for both, so that hooks on the layer (FSDP's) run on either path.
        """
        if isinstance(attention_mask, PaddingFreeBatch):
            if first_tokens_only:
                return self._first_tokens(x, attention_mask)
            attended = self.attention.forward_padding_free(x, attention_mask)
        else:
            attended = self.attention(x, attention_mask)
        return self._feed_forward(self.attention_norm(x + self.dropout(attended)))

    def _first_tokens(self, x: torch.Tensor, batch: PaddingFreeBatch) -> torch.Tensor:
        first = gather_rows(x, batch.first_token)
        first = self.attention_norm(
            first + self.dropout(self.attention.forward_first_tokens(x, first, batch))
        )
        return self._feed_forward(first)

    def _feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_norm(x + self.dropout(self.feed_forward(x)))


class Pooler(nn.Module):
    """Dense layer and tanh on the first token: the sentence vector BERT was pretrained with."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, first_tokens: torch.Tensor) -> torch.Tensor:
        """Pooled [B, H] from the last layer's first-token vectors [B, H]."""
        return torch.tanh(self.dense(first_tokens))


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
        self._check_length(length)
        if input_type_ids is None:
            input_type_ids = torch.zeros_like(input_word_ids)
        x = self.embeddings(input_word_ids, input_type_ids)
        attention_mask = key_padding_mask(input_mask)
        for layer in self.layers:
            x = layer(x, attention_mask)
        return EncoderOutput(sequence_output=x, pooled_output=self.pooler(x[:, 0]))

    def forward_padding_free(self, batch: PaddingFreeBatch) -> EncoderOutput:
        """Encode a padding-free batch: ``sequence_output`` is [R, H], the real tokens' rows first
        and then any spare rows (see :mod:`bertfit.model.padding_free`)."""
        x = self._embed_padding_free(batch)
        for layer in self.layers:
            x = layer(x, batch)
        return EncoderOutput(x, self.pooler(gather_rows(x, batch.first_token)))

    def pool_padding_free(self, batch: PaddingFreeBatch) -> torch.Tensor:
        """Only the pooled output [B, H] of a padding-free batch, skipping what it does not need."""
        x = self._embed_padding_free(batch)
        *layers, last = self.layers
        for layer in layers:
            x = layer(x, batch)
        return self.pooler(last(x, batch, first_tokens_only=True))

    def _embed_padding_free(self, batch: PaddingFreeBatch) -> torch.Tensor:
        self._check_length(batch.longest_sequence)
        return self.embeddings(batch.input_word_ids, batch.input_type_ids, batch.positions)

    def _check_length(self, length: int) -> None:
        if length > self.config.max_position_embeddings:
            raise ValueError(
                f"sequence length {length} exceeds max_position_embeddings "
                f"{self.config.max_position_embeddings}"
            )


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
