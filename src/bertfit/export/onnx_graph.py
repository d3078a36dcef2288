"""The classifier re-expressed for ONNX export in the form ONNX Runtime's BERT fusions recognise.

bertfit's encoder computes attention with one fused query/key/value projection and
``scaled_dot_product_attention`` on a boolean mask. Exported as is, that becomes a graph that
ONNX Runtime's transformer optimizer cannot fuse. :class:`FusibleClassifier` computes the same
function, sharing the trained weights, in the layout of the original BERT graph: separate
query, key and value projections, ``softmax(QK^T / sqrt(d) + (1 - mask) * -10000) V``, and
position ids sliced from a ``[1, max_positions]`` range. After export the optimizer turns each
layer into one ``Attention`` node, the embeddings into ``EmbedLayerNormalization``, residual +
LayerNorm into ``SkipLayerNormalization`` and bias + GELU into ``BiasGelu``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from bertfit.model.classifier import BertClassifier
from bertfit.model.encoder import SelfAttention, TransformerLayer

# Added to the attention scores of padding keys; exp() of it is 0.0 in float32, so the result
# equals a -inf mask, and it is the constant the fusion pattern expects.
MASK_BIAS = -10000.0


def _split_linear(linear: nn.Linear, parts: int) -> list[nn.Linear]:
    """``parts`` Linear layers computing equal slices of ``linear``'s output (weights copied)."""
    size = linear.out_features // parts
    result = []
    for index in range(parts):
        rows = slice(index * size, (index + 1) * size)
        piece = nn.Linear(linear.in_features, size)
        piece.weight = nn.Parameter(linear.weight.detach()[rows].clone())
        piece.bias = nn.Parameter(linear.bias.detach()[rows].clone())
        result.append(piece)
    return result


class FusibleAttention(nn.Module):
    """Multi-head self-attention with separate Q, K, V projections and an additive mask."""

    def __init__(self, attention: SelfAttention) -> None:
        super().__init__()
        self.num_heads = attention.num_heads
        self.head_size = attention.head_size
        self.query, self.key, self.value = _split_linear(attention.qkv, 3)
        self.output = attention.output

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        # [B, L, H] -> [B, N, L, D]
        return x.view(x.size()[:-1] + (self.num_heads, self.head_size)).permute(0, 2, 1, 3)

    def forward(self, x: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
        query, key, value = (
            self._heads(self.query(x)),
            self._heads(self.key(x)),
            self._heads(self.value(x)),
        )
        scores = torch.matmul(query, key.transpose(-1, -2)) / math.sqrt(self.head_size)
        probabilities = torch.softmax(scores + mask_bias, dim=-1)
        context = torch.matmul(probabilities, value).permute(0, 2, 1, 3).contiguous()
        context = context.view(context.size()[:-2] + (self.num_heads * self.head_size,))
        return self.output(context)


class FusibleLayer(nn.Module):
    """One post-LayerNorm Transformer layer around :class:`FusibleAttention`."""

    def __init__(self, layer: TransformerLayer) -> None:
        super().__init__()
        self.attention = FusibleAttention(layer.attention)
        self.attention_norm = layer.attention_norm
        self.feed_forward = layer.feed_forward
        self.output_norm = layer.output_norm

    def forward(self, x: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
        x = self.attention_norm(self.attention(x, mask_bias) + x)
        return self.output_norm(self.feed_forward(x) + x)


class FusibleClassifier(nn.Module):
    """:class:`BertClassifier`'s inference function in a fusion-friendly graph layout.

    Takes ``input_word_ids``, ``input_mask`` and ``input_type_ids`` (int64 [B, L], right-padded
    as bertfit packs them) and returns logits [B, num_classes]. Eval mode only (no dropout).
    """

    def __init__(self, model: BertClassifier) -> None:
        super().__init__()
        encoder = model.encoder
        self.embeddings = encoder.embeddings
        positions = torch.arange(encoder.config.max_position_embeddings).unsqueeze(0)
        self.register_buffer("position_ids", positions, persistent=False)
        self.layers = nn.ModuleList(FusibleLayer(layer) for layer in encoder.layers)
        self.pooler = encoder.pooler
        self.classifier = model.classifier.dense
        self.eval()

    def forward(
        self, input_word_ids: torch.Tensor, input_mask: torch.Tensor, input_type_ids: torch.Tensor
    ) -> torch.Tensor:
        embeddings = self.embeddings
        positions = self.position_ids[:, : input_word_ids.size(1)]
        x = embeddings.word_embeddings(input_word_ids) + embeddings.token_type_embeddings(
            input_type_ids
        )
        x = embeddings.layer_norm(x + embeddings.position_embeddings(positions))
        mask = input_mask.unsqueeze(1).unsqueeze(2).to(x.dtype)
        mask_bias = (1.0 - mask) * MASK_BIAS
        for layer in self.layers:
            x = layer(x, mask_bias)
        return self.classifier(self.pooler(x[:, 0]))
