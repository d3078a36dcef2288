"""Explanations: words merged from WordPieces, occlusion, integrated gradients (Captum), and
the exported predictor's torch-free occlusion."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from bertfit.errors import ConfigError
from bertfit.explain.occlusion import occlusion
from bertfit.explain.words import WordRow, pack_row
from bertfit.inference import TextClassifier
from bertfit.text.tokenizer import WordpieceTokenizer

from conftest import BLOCK_TORCH, make_tiny_classifier

LONG = " ".join(["the big cat sat on the mat and saw a small dog ."] * 6)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> TextClassifier:
    """A random tiny classifier with weights large enough to give non-trivial logits."""
    import torch

    classifier = make_tiny_classifier(tmp_path_factory.mktemp("tiny"))
    with torch.no_grad():
        for parameter in classifier.model.parameters():
            if parameter.dim() > 1:
                parameter.normal_(0.0, 0.3, generator=torch.Generator().manual_seed(3))
    return classifier


@pytest.fixture(scope="module")
def trained(tiny_run) -> TextClassifier:
    return TextClassifier.from_pretrained(tiny_run / "model")


def test_words_merge_wordpieces_and_keep_their_spans(minilm_dir):
    tokenizer = WordpieceTokenizer(minilm_dir / "vocab.txt", lower_case=True)
    text = "Unbelievably,  tokenizable café!"
    row = WordRow(tokenizer, [text])
    assert [text[w.start : w.end] for w in row.words] == [
        "Unbelievably", ",", "tokenizable", "café", "!",
    ]  # fmt: skip
    assert len(row.words[0].token_ids) > 1  # several WordPieces, one word
    assert [i for w in row.words for i in w.token_ids] == tokenizer.encode(text)
    assert row.token_word.tolist() == [
        index for index, word in enumerate(row.words) for _ in word.token_ids
    ]


@pytest.mark.parametrize(
    ("stride", "truncator"), [(None, "round_robin"), (None, "waterfall"), (7, "round_robin")]
)
def test_a_packed_row_is_what_the_classifier_packs(tiny, stride, truncator):
    from bertfit.text.processor import TextProcessor

    texts = [LONG, "a cat sat on the mat ."]
    processor = TextProcessor(tiny.tokenizer, 32, truncator)
    examples, keys = WordRow(tiny.tokenizer, texts).pack(
        32, tiny.tokenizer.special_tokens_dict, stride, truncator
    )
    if stride is None:
        assert examples == processor.encode([[t] for t in texts])
    else:
        expected, owners = processor.encode_windows([[t] for t in texts], stride)
        assert len(expected) > 1 and examples == expected and owners.tolist() == [0] * len(owners)
    for (ids, _), window_keys in zip(examples, keys):
        assert len(ids) == len(window_keys)
        assert [k for i, k in zip(ids, window_keys) if i in (2, 3)] == [-1] * (
            ids.count(2) + ids.count(3)
        )


def _counting_model(token_id: int):
    """Logits [0, how often token_id occurs]: that token alone decides class 1."""

    def logits_of_packed(examples):
        return np.array([[0.0, float(ids.count(token_id))] for ids, _ in examples])

    return logits_of_packed


@pytest.mark.parametrize(("stride", "seq_length"), [(None, 32), (5, 16)])
def test_occlusion_picks_out_the_one_deciding_word_of_a_crafted_model(tiny, stride, seq_length):
    special = tiny.tokenizer.special_tokens_dict
    red = tiny.tokenizer.token_to_id("red")
    texts = ["the big cat sat on the mat and saw a small red dog .", "a cat ran"]
    row = WordRow(tiny.tokenizer, texts)
    logits, scores, target = occlusion(row, _counting_model(red), seq_length, special, stride)
    assert target == 1
    words = [texts[w.segment][w.start : w.end] for w in row.words]
    assert words[int(np.argmax(scores))] == "red"
    assert np.count_nonzero(scores) == 1
    # Masking it removes exactly its share of the (window-averaged) logit.
    assert scores[words.index("red")] == pytest.approx(logits[1])


def test_windowed_occlusion_equals_masking_each_word_and_running_every_window(tiny):
    special = tiny.tokenizer.special_tokens_dict
    texts = [LONG, "a red dog ran"]
    row = WordRow(tiny.tokenizer, texts)
    stride = 6
    logits, scores, target = occlusion(row, tiny.logits_of_packed, 32, special, stride)

    def row_logits(segments):
        return tiny.logits_of_packed(pack_row(segments, 32, special, stride)).mean(axis=0)

    np.testing.assert_allclose(logits, row_logits(row.segments()), atol=1e-5)
    brute = [
        logits[target] - row_logits(row.segments(w, special["mask_id"]))[target]
        for w in range(len(row.words))
    ]
    np.testing.assert_allclose(scores, brute, atol=1e-5)
    assert np.abs(scores).max() > 1e-4


def test_trimmed_words_are_marked_unseen_with_no_attribution(tiny):
    explanation = tiny.explain([LONG, "a red dog"], method="occlusion")
    words = explanation.texts[0].words
    assert [w.text for w in words][:3] == ["the", "big", "cat"]
    assert words[0].seen and not words[-1].seen
    assert all(w.attribution == 0.0 for w in words if not w.seen)
    assert all(w.seen for w in explanation.texts[1].words)


def test_occlusion_of_the_deciding_colour_changes_the_fine_tuned_logit_most(trained):
    # The rule: label 0 iff the warm colour (red) is in the first sentence; the model learnt
    # to look for a warm colour there, so masking "red" flips its decision.
    explanation = trained.explain(
        ["the cat sat on a red mat .", "a big dog ran and blue ."], method="occlusion"
    )
    assert explanation.label == "not_equivalent"
    scores = {w.text: w.attribution for w in explanation.words}
    assert max(scores, key=scores.get) == "red"
    others = [abs(w.attribution) for w in explanation.words if w.text != "red"]
    assert scores["red"] > 10 * max(others)


@pytest.mark.parametrize("texts", [["the cat sat red .", "a dog blue"], ["red " + LONG, "a dog"]])
def test_integrated_gradients_are_complete_and_finite(trained, texts):
    explanation = trained.explain(texts)
    assert explanation.method == "integrated_gradients"
    assert np.isfinite(explanation.attributions).all()
    # The baseline difference, computed here independently: text tokens -> [PAD].
    import torch

    special = trained.tokenizer.special_tokens_dict
    ((ids, types),) = trained.encode([[t] for t in texts])
    text_positions = [i for i, token in enumerate(ids) if token not in (2, 3)]
    baseline = [special["padding_id"] if i in text_positions else t for i, t in enumerate(ids)]
    with torch.no_grad():
        batch = torch.tensor([ids, baseline]), torch.ones(2, len(ids), dtype=torch.long)
        out = trained.model(batch[0], batch[1], torch.tensor([types, types])).numpy()
    target = explanation.class_id
    difference = out[0, target] - out[1, target]
    assert explanation.baseline_difference == pytest.approx(difference, abs=1e-5)
    assert abs(difference) > 0.1
    total = explanation.attributions.sum()
    assert abs(total - difference) <= 0.05 * abs(difference)


def test_windowed_integrated_gradients_add_up_to_the_mean_window_difference(tiny):
    import dataclasses

    windowed = TextClassifier(
        tiny.model, tiny.tokenizer, dataclasses.replace(tiny.info, window_stride=8)
    )
    explanation = windowed.explain([LONG, "a red dog"])
    words = explanation.texts[0].words
    assert len(words) == len(LONG.split()) and all(w.seen for w in words)  # windows see all
    assert np.isfinite(explanation.attributions).all()
    difference = explanation.baseline_difference
    assert abs(difference) > 0.01
    assert abs(explanation.attributions.sum() - difference) <= 0.05 * abs(difference)
    # The logits are the windows' mean, as the classifier itself computes them.
    np.testing.assert_allclose(
        explanation.logits, windowed.logits([[LONG], ["a red dog"]])[0], atol=1e-5
    )


def test_bad_explain_requests_name_the_problem(tiny):
    with pytest.raises(ConfigError, match="expected 2 text"):
        tiny.explain(["only one"])
    with pytest.raises(ConfigError, match="unknown input column 'text'"):
        tiny.explain({"text": "a", "sentence1": "b", "sentence2": "c"})
    with pytest.raises(ConfigError, match="unknown explanation method 'shap'"):
        tiny.explain(["a", "b"], method="shap")
    with pytest.raises(ConfigError, match="input column 'sentence2': expected a string"):
        tiny.explain(["a", 3])
    with pytest.raises(ConfigError, match="unknown label 'maybe'; expected one of"):
        tiny.explain(["a", "b"], target="maybe")
    with pytest.raises(ConfigError, match="target 2 is not a label index below 2"):
        tiny.explain(["a", "b"], target=2)


@pytest.mark.parametrize("method", ["occlusion", "integrated_gradients"])
def test_a_single_label_model_explains_the_class_it_is_given_by_name(tiny, method):
    texts = ["the cat sat on a red mat .", "a big dog ran ."]
    predicted = tiny.explain(texts, method=method)
    other = 1 - predicted.class_id
    name = tiny.info.label_names[other]
    by_name = tiny.explain(texts, method=method, target=name)
    assert (by_name.label, by_name.class_id) == (name, other)
    assert by_name.to_dict() == tiny.explain(texts, method=method, target=other).to_dict()
    # Two classes: the other logit's attributions are not the predicted one's.
    assert not np.allclose(by_name.attributions, predicted.attributions)
    assert by_name.labels is None  # chosen labels are a multi-label model's


# -- the exported predictor ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def onnx_dir(tiny_run, tmp_path_factory):
    from bertfit.export.export import export_classifier

    output = tmp_path_factory.mktemp("export") / "onnx"
    export_classifier(tiny_run, output, check_examples=8)
    return output


def test_the_exported_predictor_explains_by_occlusion_like_the_torch_model(trained, onnx_dir):
    from bertfit.export.runtime import load_exported

    predictor = load_exported(onnx_dir)
    pair = {"sentence1": "the cat sat on a mat and blue .", "sentence2": "a big dog ran and red ."}
    exported = predictor.explain(pair)
    reference = trained.explain(pair, method="occlusion")
    assert exported.method == "occlusion" and exported.label == reference.label
    assert [w.text for w in exported.words] == [w.text for w in reference.words]
    np.testing.assert_allclose(exported.attributions, reference.attributions, atol=1e-4)
    np.testing.assert_allclose(exported.probabilities, reference.probabilities, atol=1e-5)
    with pytest.raises(ConfigError, match="integrated_gradients needs the PyTorch model"):
        predictor.explain(pair, method="integrated_gradients")


NO_TORCH = (
    BLOCK_TORCH
    + """
import json
import bertfit
explanation = bertfit.load_exported(sys.argv[1]).explain(json.loads(sys.argv[2]))
assert "torch" not in sys.modules
print(json.dumps(explanation.to_dict()))
"""
)


def test_exported_explanations_need_no_torch(onnx_dir):
    pair = {"sentence1": "the cat saw red .", "sentence2": "a dog ran blue ."}
    result = subprocess.run(
        [sys.executable, "-c", NO_TORCH, str(onnx_dir), json.dumps(pair)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert [w["text"] for w in answer["texts"][1]["words"]] == ["a", "dog", "ran", "blue", "."]
    assert sum(answer["probabilities"]) == pytest.approx(1.0)


# -- bertfit explain ------------------------------------------------------------------------------


def _bertfit(*args: str):
    return subprocess.run(
        [sys.executable, "-m", "bertfit", *args], capture_output=True, text=True, timeout=600
    )


PAIR_FLAGS = ["--sentence1", "the cat sat on a red mat .", "--sentence2", "a big dog ran ."]


def test_explain_command_on_a_run_prints_words_json_and_a_heat_map(tiny_run, tmp_path):
    from PIL import Image

    png = tmp_path / "why.png"
    result = _bertfit("explain", str(tiny_run), *PAIR_FLAGS, "--json", "--png", str(png))
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["method"] == "integrated_gradients" and answer["label"] == "not_equivalent"
    words = [w["text"] for t in answer["texts"] for w in t["words"]]
    assert words == [
        "the",
        "cat",
        "sat",
        "on",
        "a",
        "red",
        "mat",
        ".",
        "a",
        "big",
        "dog",
        "ran",
        ".",
    ]
    total = sum(w["attribution"] for t in answer["texts"] for w in t["words"])
    assert abs(total - answer["baseline_difference"]) <= 0.05 * abs(answer["baseline_difference"])
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size[0] > 200
    text = _bertfit("explain", str(tiny_run), *PAIR_FLAGS, "--method", "occlusion")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].startswith("label: not_equivalent (probability ")
    assert lines[1] == "attributions toward it (occlusion):"
    red = next(line for line in lines if line.split()[0] == "red")
    others = [abs(float(line.split()[1])) for line in lines[3:] if line.startswith("    ")]
    assert float(red.split()[1]) == max(others)


def test_explain_command_on_an_export_uses_occlusion_and_refuses_gradients(onnx_dir):
    result = _bertfit("explain", str(onnx_dir), *PAIR_FLAGS, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["method"] == "occlusion"
    refused = _bertfit("explain", str(onnx_dir), *PAIR_FLAGS, "--method", "integrated_gradients")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "integrated_gradients needs the PyTorch model" in refused.stderr
    missing = _bertfit("explain", str(onnx_dir), "--sentence1", "a cat")
    assert missing.returncode == 2
    assert missing.stderr.strip() == "bertfit: error: give --sentence1 and --sentence2"


def test_the_heat_map_draws_each_texts_attributions(trained):
    from bertfit.viz.figures import explanation_figure

    explanation = trained.explain(["the cat sat on a red mat .", "a big dog ran ."])
    figure = explanation_figure(explanation)
    axes = figure.axes[: len(explanation.texts)]
    for ax, text in zip(axes, explanation.texts):
        np.testing.assert_array_equal(
            ax.images[0].get_array()[0], [w.attribution for w in text.words]
        )
        assert [t.get_text() for t in ax.get_xticklabels()] == [w.text for w in text.words]


@pytest.mark.slow
def test_integrated_gradients_on_minilm_are_complete_within_five_percent():
    from bertfit.data.tasks import MRPC
    from bertfit.train.config import RunConfig
    from bertfit.train.run import build_classifier

    # The packaged MiniLM with a fresh head: the real encoder, its WordPieces and its depth.
    classifier = build_classifier(RunConfig(task="mrpc"), MRPC)
    explanation = classifier.explain(
        ["The company's unbelievably strong quarter lifted profits.", "Profits hit a record."]
    )
    words = [w.text for w in explanation.words]
    assert words[:5] == ["The", "company", "'", "s", "unbelievably"]  # WordPieces merged
    assert np.isfinite(explanation.attributions).all()
    difference = explanation.baseline_difference
    assert abs(difference) > 1e-3
    assert abs(explanation.attributions.sum() - difference) <= 0.05 * abs(difference)
