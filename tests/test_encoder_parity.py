"""BertEncoder and BertClassifier: numerical parity with transformers' BertModel, masking, init."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from bertfit.model.classifier import BertClassifier
from bertfit.model.config import EncoderConfig
from bertfit.model.encoder import BertEncoder
from bertfit.model.presets import default_model_dir
from bertfit.model.weights import load_pretrained, to_hf_state_dict
from bertfit.problem import REGRESSION, SINGLE_LABEL

transformers = pytest.importorskip("transformers")

GLUE_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "glue"
ATOL = 1e-5


def tiny_config(**overrides) -> EncoderConfig:
    # A large initializer_range makes activations O(1), where the GELU variants differ by
    # ~1e-3; with BERT's 0.02 they would be too small for the test to tell them apart.
    values = dict(
        vocab_size=99,
        hidden_size=32,
        num_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
        type_vocab_size=3,
        initializer_range=0.5,
    )
    return EncoderConfig(**{**values, **overrides})


def hf_twin(encoder: BertEncoder, hidden_act: str | None = None):
    """A transformers BertModel holding ``encoder``'s weights (optionally another activation)."""
    hf_config = encoder.config.to_hf_dict()
    if hidden_act is not None:
        hf_config["hidden_act"] = hidden_act
    config = transformers.BertConfig(**hf_config, attn_implementation="eager")
    model = transformers.BertModel(config).eval()
    model.load_state_dict(to_hf_state_dict(encoder.state_dict()), strict=True)
    return model


def random_batch(config: EncoderConfig, lengths: list[int], seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.randint(1, config.vocab_size, (len(lengths), width), generator=generator)
    types = torch.randint(0, config.type_vocab_size, (len(lengths), width), generator=generator)
    mask = (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).long()
    return ids * mask, mask, types * mask


def assert_close_on_tokens(ours, theirs, mask):
    """Compare sequence outputs at real tokens only: padding positions carry no meaning."""
    keep = mask.bool()
    torch.testing.assert_close(
        ours.sequence_output[keep], theirs.last_hidden_state[keep], atol=ATOL, rtol=0
    )
    torch.testing.assert_close(ours.pooled_output, theirs.pooler_output, atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    ("activation", "hf_act", "wrong_hf_act"),
    [("gelu_tanh", "gelu_new", "gelu"), ("gelu", "gelu", "gelu_new"), ("relu", "relu", "gelu")],
)
def test_tiny_random_encoder_matches_transformers(activation, hf_act, wrong_hf_act):
    torch.manual_seed(0)
    encoder = BertEncoder(tiny_config(hidden_activation=activation)).eval()
    assert encoder.config.to_hf_dict()["hidden_act"] == hf_act
    ids, mask, types = random_batch(encoder.config, [7, 3, 12, 1])
    with torch.no_grad():
        ours = encoder(ids, mask, types)
        theirs = hf_twin(encoder)(input_ids=ids, attention_mask=mask, token_type_ids=types)
        other = hf_twin(encoder, wrong_hf_act)(
            input_ids=ids, attention_mask=mask, token_type_ids=types
        )
    assert_close_on_tokens(ours, theirs, mask)
    # Control: the other activation is measurably different, so the test can tell them apart.
    assert (ours.pooled_output - other.pooler_output).abs().max() > 10 * ATOL


def test_padding_does_not_change_real_tokens():
    torch.manual_seed(0)
    encoder = BertEncoder(tiny_config()).eval()
    ids, mask, types = random_batch(encoder.config, [5, 11])
    with torch.no_grad():
        batched = encoder(ids, mask, types)
        alone = encoder(ids[:1, :5], mask[:1, :5], types[:1, :5])
    torch.testing.assert_close(
        batched.sequence_output[0, :5], alone.sequence_output[0], atol=ATOL, rtol=0
    )
    torch.testing.assert_close(batched.pooled_output[0], alone.pooled_output[0], atol=ATOL, rtol=0)


def test_padding_tokens_are_masked_not_just_zero_ids():
    # Changing what sits in padded positions must not move the real tokens' outputs.
    torch.manual_seed(0)
    encoder = BertEncoder(tiny_config()).eval()
    ids, mask, types = random_batch(encoder.config, [4, 9])
    noisy = torch.where(mask.bool(), ids, torch.full_like(ids, 42))
    with torch.no_grad():
        clean_out, noisy_out = encoder(ids, mask, types), encoder(noisy, mask, types)
    keep = mask.bool()
    torch.testing.assert_close(
        clean_out.sequence_output[keep], noisy_out.sequence_output[keep], atol=ATOL, rtol=0
    )


def test_optional_inputs_default_to_no_padding_and_segment_zero():
    torch.manual_seed(0)
    encoder = BertEncoder(tiny_config()).eval()
    ids = torch.randint(1, 99, (2, 6))
    with torch.no_grad():
        implicit = encoder(ids)
        explicit = encoder(ids, torch.ones_like(ids), torch.zeros_like(ids))
    torch.testing.assert_close(implicit.sequence_output, explicit.sequence_output)


def test_too_long_input_is_refused():
    encoder = BertEncoder(tiny_config(max_position_embeddings=8))
    with pytest.raises(ValueError, match="exceeds max_position_embeddings 8"):
        encoder(torch.ones(1, 9, dtype=torch.long))


def test_dropout_is_active_only_in_training():
    torch.manual_seed(0)
    encoder = BertEncoder(tiny_config(dropout_rate=0.3, attention_dropout_rate=0.3))
    ids = torch.randint(1, 99, (2, 6))
    first, second = encoder(ids).pooled_output, encoder(ids).pooled_output
    assert not torch.allclose(first, second)
    encoder.eval()
    torch.testing.assert_close(encoder(ids).pooled_output, encoder(ids).pooled_output)


@pytest.mark.parametrize("num_classes", [1, 2, 3])
def test_classifier_outputs_one_logit_per_class(num_classes):
    torch.manual_seed(0)
    problem_type = REGRESSION if num_classes == 1 else SINGLE_LABEL
    model = BertClassifier(tiny_config(), num_classes, problem_type=problem_type).eval()
    ids, mask, types = random_batch(model.config, [4, 6, 2])
    logits = model(ids, mask, types)
    assert logits.shape == (3, num_classes)
    assert model.problem_type == problem_type
    with torch.no_grad():
        pooled = model.encoder(ids, mask, types).pooled_output
    expected = pooled @ model.classifier.dense.weight.T + model.classifier.dense.bias
    torch.testing.assert_close(logits, expected)


def test_classifier_head_dropout_defaults_to_encoder_dropout():
    config = tiny_config(dropout_rate=0.25)
    assert BertClassifier(config, 2).classifier.dropout.p == 0.25
    assert BertClassifier(config, 2, dropout_rate=0.0).classifier.dropout.p == 0.0


def test_classifier_rejects_bad_num_classes():
    with pytest.raises(ValueError, match="num_classes"):
        BertClassifier(tiny_config(), 0)


def test_classifier_outputs_must_fit_its_problem_type():
    """One output is a regression only when it says so: no guess from the count."""
    with pytest.raises(ValueError, match="single-label classifier needs at least 2 classes"):
        BertClassifier(tiny_config(), 1)
    with pytest.raises(ValueError, match="a regression model has one output, not 3"):
        BertClassifier(tiny_config(), 3, problem_type=REGRESSION)
    # Multi-label: one logit per label, any count of labels from one up.
    assert (
        BertClassifier(tiny_config(), 1, problem_type="multi_label_classification").num_classes == 1
    )
    with pytest.raises(ValueError, match="problem_type must be one of"):
        BertClassifier(tiny_config(), 3, problem_type="multi_class")


def test_weights_start_like_bert():
    torch.manual_seed(0)
    config = EncoderConfig(
        vocab_size=500, hidden_size=64, num_layers=2, num_attention_heads=4, initializer_range=0.05
    )
    model = BertClassifier(config, 3)
    for name, tensor in model.named_parameters():
        if "norm" in name and name.endswith("weight"):
            assert torch.all(tensor == 1), name
        elif name.endswith("bias"):
            assert torch.all(tensor == 0), name
        else:
            assert abs(tensor.std().item() - 0.05) < 0.01, name
            assert abs(tensor.mean().item()) < 0.01, name


def read_mrpc_pairs(count: int) -> tuple[list[str], list[str]]:
    path = GLUE_DIR / "MRPC" / "dev.tsv"
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    header, body = rows[0], rows[1 : count + 1]
    first, second = header.index("#1 String"), header.index("#2 String")
    return [row[first] for row in body], [row[second] for row in body]


@pytest.fixture(scope="module")
def minilm_pair():
    directory = default_model_dir()
    theirs = transformers.BertModel.from_pretrained(directory, attn_implementation="eager").eval()
    ours = BertEncoder(EncoderConfig.from_model_dir(directory)).eval()
    load_pretrained(ours, directory).assert_consumed()
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    return ours, theirs, tokenizer


@pytest.mark.slow
def test_packaged_minilm_matches_transformers_on_mrpc(minilm_pair):
    ours, theirs, tokenizer = minilm_pair
    sentences1, sentences2 = read_mrpc_pairs(16)
    batch = tokenizer(sentences1, sentences2, padding=True, return_tensors="pt")
    mask = batch["attention_mask"]
    assert (mask == 0).any(), "the batch should contain padding"
    with torch.no_grad():
        mine = ours(batch["input_ids"], mask, batch["token_type_ids"])
        reference = theirs(**batch)
    assert mine.sequence_output.shape == (16, mask.shape[1], 384)
    assert_close_on_tokens(mine, reference, mask)


@pytest.mark.slow
def test_packaged_minilm_single_sentences_match_transformers(minilm_pair):
    ours, theirs, tokenizer = minilm_pair
    sentences, _ = read_mrpc_pairs(8)
    batch = tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        mine = ours(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        reference = theirs(**batch)
    assert_close_on_tokens(mine, reference, batch["attention_mask"])
