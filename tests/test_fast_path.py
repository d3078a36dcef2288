"""The padding-free training path, its dropout and the precision choice.

The fast path must compute the same function as the plain padded one: the encoder's outputs
agree within 1e-5 in fp32, and one step's loss and gradients within 1e-4.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bertfit import precision
from bertfit.errors import ConfigError
from bertfit.inference import to_tensors
from bertfit.model import dropout as dropout_module
from bertfit.model.classifier import BertClassifier
from bertfit.model.config import EncoderConfig
from bertfit.model.dropout import Dropout, dropout, keep_mask
from bertfit.model.padding_free import batch_from_sequences, gather_rows


def random_examples(count: int, seed: int, vocab: int = 90) -> list[tuple[list[int], list[int]]]:
    """Packed-looking examples of very different lengths (2..40 tokens, two segments)."""
    rng = np.random.default_rng(seed)
    examples = []
    for length in rng.integers(2, 41, size=count):
        ids = rng.integers(5, vocab, size=length).tolist()
        split = int(rng.integers(1, length + 1))
        examples.append((ids, [0] * split + [1] * (length - split)))
    return examples


def small_classifier(seed: int = 0, layers: int = 3, classes: int = 3) -> BertClassifier:
    config = EncoderConfig(
        vocab_size=100,
        hidden_size=48,
        num_layers=layers,
        num_attention_heads=4,
        intermediate_size=96,
        max_position_embeddings=64,
    )
    torch.manual_seed(seed)
    return BertClassifier(config, classes)


@pytest.mark.parametrize("row_multiple, length_multiple", [(1, 1), (32, 1), (32, 16), (1, 96)])
def test_packed_encoder_matches_the_padded_one(row_multiple, length_multiple):
    model = small_classifier().eval()
    examples = random_examples(12, seed=1)
    padded = to_tensors(examples, 0, None)
    batch = batch_from_sequences(examples, row_multiple, length_multiple)
    # (a width of 96 is past max_position_embeddings, 64: only real lengths are checked)
    assert batch.max_length % length_multiple == 0
    with torch.no_grad():
        reference = model.encoder(**padded)
        packed = model.encoder.forward_padding_free(batch)
        pooled_only = model.encoder.pool_padding_free(batch)
    real = padded["input_mask"].bool()
    tokens = int(real.sum())
    rows = -(-tokens // row_multiple) * row_multiple
    assert packed.sequence_output.shape == (rows, 48)
    torch.testing.assert_close(
        packed.sequence_output[:tokens], reference.sequence_output[real], atol=1e-5, rtol=0
    )
    torch.testing.assert_close(packed.pooled_output, reference.pooled_output, atol=1e-5, rtol=0)
    torch.testing.assert_close(pooled_only, reference.pooled_output, atol=1e-5, rtol=0)


@pytest.mark.parametrize("row_multiple, length_multiple", [(1, 1), (64, 16)])
def test_one_step_loss_and_gradients_match_the_padded_path(row_multiple, length_multiple):
    examples = random_examples(16, seed=2)
    labels = torch.tensor(np.random.default_rng(3).integers(0, 3, size=16))

    def loss_and_grads(fast: bool):
        model = small_classifier(seed=4).eval()  # eval: no dropout, so both see the same function
        if fast:  # with spare rows too: they change neither the loss nor a gradient
            logits = model(
                padding_free=batch_from_sequences(examples, row_multiple, length_multiple)
            )
        else:
            logits = model(**to_tensors(examples, 0, None))
        loss = F.cross_entropy(logits, labels)
        loss.backward()
        return loss.detach(), {name: p.grad for name, p in model.named_parameters()}

    padded_loss, padded_grads = loss_and_grads(fast=False)
    fast_loss, fast_grads = loss_and_grads(fast=True)
    torch.testing.assert_close(fast_loss, padded_loss, atol=1e-4, rtol=0)
    assert fast_grads.keys() == padded_grads.keys()
    for name, grad in padded_grads.items():
        torch.testing.assert_close(fast_grads[name], grad, atol=1e-4, rtol=0, msg=name)
    # The last layer's query and feed-forward only see first tokens: still a real gradient.
    assert fast_grads["encoder.layers.2.feed_forward.output.weight"].abs().sum() > 0


def test_packed_batch_layout():
    batch = batch_from_sequences([([7, 8, 9], [0, 0, 1]), ([5], [0]), ([1, 2], [0, 1])])
    assert batch.input_word_ids.tolist() == [7, 8, 9, 5, 1, 2]
    assert batch.positions.tolist() == [0, 1, 2, 0, 0, 1]
    assert batch.first_token.tolist() == [0, 3, 4]
    assert batch.token_index.tolist() == [0, 1, 2, 3, 6, 7]  # rows of a [3, 3] padded layout
    assert batch.key_mask[:, 0, 0].tolist() == [
        [True, True, True],
        [True, False, False],
        [True, True, False],
    ]
    assert (batch.batch_size, batch.max_length, batch.num_tokens) == (3, 3, 6)
    assert (batch.num_rows, batch.spare_rows) == (6, 0)


def test_packed_batch_rounds_its_rows_up_with_spare_rows_after_the_real_tokens():
    batch = batch_from_sequences([([7, 8, 9], [0, 0, 1]), ([5], [0])], row_multiple=8)
    assert batch.input_word_ids.tolist() == [7, 8, 9, 5, 0, 0, 0, 0]
    assert batch.input_type_ids.tolist() == [0, 0, 1, 0, 0, 0, 0, 0]
    assert batch.positions.tolist() == [0, 1, 2, 0, 0, 0, 0, 0]
    assert batch.token_index.tolist() == [0, 1, 2, 3]  # real tokens only
    assert (batch.num_tokens, batch.num_rows, batch.spare_rows) == (4, 8, 4)
    assert batch_from_sequences([([1, 2, 3, 4], [0] * 4)], row_multiple=4).spare_rows == 0


def test_packed_batch_rounds_attentions_width_up_with_masked_keys():
    batch = batch_from_sequences([([7, 8, 9], [0, 0, 1]), ([5], [0])], length_multiple=4)
    assert (batch.max_length, batch.longest_sequence, batch.num_tokens) == (4, 3, 4)
    assert batch.to("cpu").longest_sequence == 3  # the length travels with the tensors
    assert batch.token_index.tolist() == [0, 1, 2, 4]  # rows of a [2, 4] padded layout
    assert batch.key_mask[:, 0, 0].tolist() == [
        [True, True, True, False],
        [True, False, False, False],
    ]


def test_gather_rows_has_index_selects_gradient():
    source = torch.randn(9, 4, requires_grad=True)
    index = torch.tensor([7, 0, 3, 4])
    weights = torch.randn(4, 4)
    (gather_rows(source, index) * weights).sum().backward()
    expected = torch.zeros(9, 4)
    expected[index] = weights
    torch.testing.assert_close(source.grad, expected)


@pytest.mark.parametrize("p", [0.1, 0.37, 0.5, 0.9])
def test_drop_mask_drops_with_probability_p(p):
    torch.manual_seed(0)
    n = 2_000_000
    rate = 1 - keep_mask(n, p).mean()
    assert abs(rate - p) < 5 * np.sqrt(p * (1 - p) / n)  # five standard errors


def test_dropout_is_reproducible_by_seed_and_scales_what_it_keeps():
    x = torch.ones(64, 50, requires_grad=True)
    torch.manual_seed(5)
    first = dropout(x, 0.25, training=True)
    torch.manual_seed(5)
    again = dropout(x, 0.25, training=True)
    torch.testing.assert_close(first, again)
    assert first.unique().tolist() == [0.0, pytest.approx(1 / 0.75)]
    first.sum().backward()
    torch.testing.assert_close(x.grad, first.detach())  # d(x * mask)/dx = mask


def test_dropout_keeps_only_a_one_byte_mask_for_backward():
    saved = []
    x = torch.randn(32, 40, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = dropout(x, 0.1, training=True)
    assert [(t.dtype, t.shape) for t in saved] == [(torch.uint8, x.shape)]
    y.backward(torch.ones_like(y))
    torch.testing.assert_close(x.grad, (y.detach() != 0).float() / 0.9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_dropout_multiplies_by_the_scale_rounded_to_the_dtype_or_by_zero(dtype):
    x = torch.full((300, 7), 3.0, dtype=dtype, requires_grad=True)
    y = dropout(x, 0.3, training=True)
    scale = torch.tensor(1 / 0.7, dtype=dtype)
    assert y.dtype == dtype
    assert set(y.detach().unique().tolist()) == {0.0, (3 * scale).item()}
    y.backward(torch.ones_like(y))
    assert set(x.grad.unique().tolist()) == {0.0, scale.item()}
    torch.testing.assert_close(x.grad != 0, y.detach() != 0, rtol=0, atol=0)


@pytest.mark.parametrize("queries", [7, 1])
def test_cpu_attention_with_dropout_scores_and_masks_as_pytorchs(monkeypatch, queries):
    # The CPU dropout path computes its own scores; with dropout made the identity, it must
    # give PyTorch's attention, forward and backward (and 1 query: the first-token path).
    monkeypatch.setattr(dropout_module, "dropout_and_recipe", lambda x, p: (x, lambda: x))
    torch.manual_seed(5)
    key_mask = torch.tensor([[True] * 7, [True] * 3 + [False] * 4])[:, None, None, :]
    tensors = [torch.randn(2, 4, n, 8, requires_grad=True) for n in (queries, 7, 7)]

    def output_and_grads(attention):
        out = attention(*tensors)
        (out * torch.linspace(-1, 1, out.numel()).view(out.shape)).sum().backward()
        grads = [t.grad.clone() for t in tensors]
        for t in tensors:
            t.grad = None
        return out.detach(), grads

    ours = output_and_grads(
        lambda q, k, v: dropout_module.scaled_dot_product_attention(q, k, v, key_mask, 0.1)
    )
    theirs = output_and_grads(
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)
    )
    torch.testing.assert_close(ours[0], theirs[0], atol=1e-6, rtol=1e-5)
    for mine, reference in zip(ours[1], theirs[1]):
        torch.testing.assert_close(mine, reference, atol=1e-6, rtol=1e-5)


def test_dropout_is_identity_in_eval_mode_and_at_zero_rate():
    x = torch.randn(8, 8)
    layer = Dropout(0.3).eval()
    assert layer(x) is x
    assert dropout(x, 0.0, training=True) is x
    assert Dropout(0.3).train()(x).dtype == x.dtype
    with pytest.raises(ValueError):
        Dropout(1.5)


def test_precision_auto_follows_native_bf16(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    assert precision.resolve_precision("auto", cpu) == "fp32"
    with pytest.raises(ConfigError, match="bf16 would be emulated"):
        precision.resolve_precision("bf16", cpu)
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    assert precision.resolve_precision("auto", cpu) == "bf16"
    assert precision.resolve_precision("fp32", cpu) == "fp32"
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        precision.resolve_precision("fp16", cpu)


def test_bf16_autocast_trains_on_the_fast_path():
    model = small_classifier().train()
    batch = batch_from_sequences(random_examples(8, seed=6))
    with precision.autocast("bf16", torch.device("cpu")):
        logits = model(padding_free=batch)
        loss = F.cross_entropy(logits.float(), torch.zeros(8, dtype=torch.long))
    assert logits.dtype == torch.bfloat16
    loss.backward()
    assert model.encoder.embeddings.word_embeddings.weight.grad.dtype == torch.float32
    assert torch.isfinite(loss)


def _training_step_grads(model, batch, seed):
    torch.manual_seed(seed)
    model.zero_grad()
    logits = model(padding_free=batch)
    F.cross_entropy(logits, torch.arange(len(logits)) % 3).backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def test_rebuilt_activations_give_identical_gradients(monkeypatch):
    import contextlib

    from bertfit.model import dropout, encoder, recompute

    model = small_classifier(seed=3, layers=3).train()
    batch = batch_from_sequences(random_examples(12, seed=9))
    rebuilds = []
    real = recompute.recompute_when_saved

    def counting(target, make):
        return real(target, lambda: rebuilds.append(target.shape) or make())

    # The feed-forward block rebuilds in encoder.py, the attention's dropout in dropout.py.
    monkeypatch.setattr(encoder, "recompute_when_saved", counting)
    monkeypatch.setattr(dropout, "recompute_when_saved", counting)
    rebuilt = _training_step_grads(model, batch, seed=4)
    # Per full layer, the GELU output and the dropped attention probabilities were not kept
    # but rebuilt in backward; the last layer (first token only) rebuilds them too.
    assert len(rebuilds) == 2 * 3
    monkeypatch.setattr(encoder, "recompute_when_saved", lambda *a: contextlib.nullcontext())
    monkeypatch.setattr(dropout, "recompute_when_saved", lambda *a: contextlib.nullcontext())
    plain = _training_step_grads(model, batch, seed=4)
    for name, grad in plain.items():
        assert torch.equal(rebuilt[name], grad), name


def test_recompute_when_saved_rebuilds_instead_of_keeping():
    from bertfit.model.recompute import recompute_when_saved

    x = torch.randn(6, 5, requires_grad=True)
    weight = torch.randn(5, 3, requires_grad=True)
    calls = []
    activated = torch.nn.functional.gelu(x)
    with recompute_when_saved(activated, lambda: calls.append(1) or F.gelu(x.detach())):
        out = activated @ weight  # matmul would keep `activated` for weight's gradient
    assert calls == []
    out.sum().backward()
    assert calls == [1]
    expected = F.gelu(x.detach()).T @ torch.ones(6, 3)
    torch.testing.assert_close(weight.grad, expected)
