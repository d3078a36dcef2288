"""``bertfit distill``: the student cut from its teacher, the distillation loss, the distilled run
as an ordinary run (evaluate, export, transformers), other task kinds, and the user's errors."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import re
import shutil

import numpy as np
import pytest
import torch

from bertfit.cli import main
from bertfit.data.tasks import MRPC
from bertfit.errors import ConfigError
from bertfit.export.export import export_classifier
from bertfit.export.runtime import load_exported
from bertfit.inference import TextClassifier, batch_tensors
from bertfit.model.classifier import BertClassifier
from bertfit.model.config import EncoderConfig
from bertfit.model.padding_free import batch_from_sequences
from bertfit.model.student import build_student, choose_layers
from bertfit.model.taps import FirstTokenTap, LayerRows, TeacherShadow, TokenTap
from bertfit.problem import REGRESSION, SINGLE_LABEL
from bertfit.train.config import TrainerConfig
from bertfit.train.distillation import teacher_outputs
from bertfit.train.evaluate import EncodedExamples
from bertfit.train.losses import (
    DistillationLoss,
    distillation_loss,
    layer_match_loss,
    token_match_loss,
)
from bertfit.train.optim import OptimizationConfig
from bertfit.train.student_run import distill_run
from bertfit.train.trainer import Trainer

from conftest import make_tiny_classifier, synthetic_pairs, write_glue_task

PAIRS = {
    "sentence1": ["the red cat sat on the mat .", "a blue dog ran", "green and big ."],
    "sentence2": ["a purple cat sat", "the orange dog ran on it .", "small yellow"],
}
COLUMNS = [PAIRS["sentence1"], PAIRS["sentence2"]]


# -- the student's layers and weights -------------------------------------------------------------


@pytest.mark.parametrize(
    "choice, teacher, student, expected",
    [
        ("spread", 6, 3, [1, 3, 5]),
        ("spread", 6, 2, [2, 5]),
        ("spread", 6, 4, [1, 2, 4, 5]),
        ("spread", 12, 6, [1, 3, 5, 7, 9, 11]),
        ("spread", 2, 1, [1]),
        ("first", 6, 3, [0, 1, 2]),
        ("last", 6, 3, [3, 4, 5]),
        ("0,2,4", 6, 3, [0, 2, 4]),
    ],
)
def test_layer_choices(choice, teacher, student, expected):
    assert choose_layers(teacher, student, choice) == expected


@pytest.mark.parametrize(
    "teacher, student, choice, message",
    [
        (6, 0, "spread", r"--layers must be in 1\.\.5 .*got 0"),
        (6, 6, "spread", r"--layers must be in 1\.\.5 .*got 6"),
        (6, 7, "first", r"--layers must be in 1\.\.5"),
        (6, 3, "0,2", r"name 2 layers for a 3-layer student"),
        (6, 3, "4,2,0", r"distinct and increasing"),
        (6, 3, "0,2,6", r"teacher's layers are 0\.\.5"),
        (6, 3, "middle", r"expected one of spread, first, last"),
    ],
)
def test_bad_layer_choices_are_config_errors(teacher, student, choice, message):
    with pytest.raises(ConfigError, match=message):
        choose_layers(teacher, student, choice)


def test_student_is_the_teacher_with_fewer_layers_and_exactly_its_chosen_weights():
    config = EncoderConfig(
        vocab_size=31, hidden_size=32, num_layers=4, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64,
    )  # fmt: skip
    torch.manual_seed(0)
    teacher = BertClassifier(config, num_classes=3).eval()
    layers = [1, 3]
    student = build_student(teacher, layers).eval()
    assert student.config == dataclasses.replace(config, num_layers=2)
    assert len(student.encoder.layers) == 2 and student.num_classes == 3
    teacher_state = teacher.state_dict()
    student_state = student.state_dict()
    kept = {
        name for name in teacher_state if not re.match(r"encoder\.layers\.[02]\.", name)
    }  # embeddings, layers 1 and 3, pooler and head
    assert len(student_state) == len(kept)
    for name, tensor in student_state.items():
        source = re.sub(
            r"encoder\.layers\.(\d+)\.", lambda m: f"encoder.layers.{layers[int(m[1])]}.", name
        )
        assert source in kept
        assert torch.equal(tensor, teacher_state[source]), name
    # The same function as the teacher with its layers 0 and 2 left out.
    teacher.encoder.layers = torch.nn.ModuleList([teacher.encoder.layers[i] for i in layers])
    ids = torch.tensor([[2, 7, 8, 9, 3, 10, 11, 3]])
    types = torch.tensor([[0, 0, 0, 0, 0, 1, 1, 1]])
    with torch.no_grad():
        expected = teacher(ids, torch.ones_like(ids), types)
        assert torch.equal(student(ids, torch.ones_like(ids), types), expected)


# -- the loss -------------------------------------------------------------------------------------


def _softmax(values: list[float]) -> list[float]:
    exps = [math.exp(v) for v in values]
    return [e / sum(exps) for e in exps]


def test_distillation_loss_equals_the_hand_computed_value():
    student = [[1.0, -0.5], [0.2, 0.3], [-1.0, 2.0]]
    teacher = [[2.0, 0.0], [0.0, 1.0], [0.5, 0.4]]
    labels = [0, 1, 1]
    temperature, alpha = 2.0, 0.3
    cross_entropy = -sum(math.log(_softmax(s)[y]) for s, y in zip(student, labels)) / 3
    kl = 0.0
    for s, t in zip(student, teacher):
        p = _softmax([v / temperature for v in t])
        q = _softmax([v / temperature for v in s])
        kl += sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q))
    expected = alpha * cross_entropy + (1 - alpha) * temperature**2 * kl / 3
    loss = distillation_loss(
        torch.tensor(student), torch.tensor(labels), torch.tensor(teacher),
        temperature, alpha, problem_type=SINGLE_LABEL,
    )  # fmt: skip
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_regression_distills_the_teachers_scores_by_squared_error():
    student, teacher, gold = [[1.0], [2.0]], [[1.5], [1.0]], [0.5, 2.5]
    alpha = 0.25
    hard = ((1.0 - 0.5) ** 2 + (2.0 - 2.5) ** 2) / 2
    soft = ((1.0 - 1.5) ** 2 + (2.0 - 1.0) ** 2) / 2
    loss = distillation_loss(
        torch.tensor(student), torch.tensor(gold), torch.tensor(teacher),
        temperature=4.0, alpha=alpha, problem_type=REGRESSION,
    )  # fmt: skip
    assert loss.item() == pytest.approx(alpha * hard + (1 - alpha) * soft, rel=1e-6)


def _loss_and_gradients(tmp_path, loss_function):
    """The trainer's loss on one batch of the tiny classifier, and its parameters' gradients."""
    classifier = make_tiny_classifier(tmp_path, seed=3)
    columns, labels = synthetic_pairs(8, seed=5)
    targets = np.random.default_rng(0).normal(size=(8, 2)).astype(np.float32)
    data = EncodedExamples(
        classifier.encode(columns), np.asarray(labels, dtype=np.int64), soft_targets=targets
    )
    config = TrainerConfig(precision="fp32", device="cpu")
    trainer = Trainer(classifier, MRPC, config, OptimizationConfig(), loss_function=loss_function)
    model = classifier.model.train()
    loss = trainer._batch_loss(model, data, list(range(8)))
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


def test_alpha_1_is_exactly_ordinary_training(tmp_path):
    plain_loss, plain_grads = _loss_and_gradients(tmp_path, None)
    loss, grads = _loss_and_gradients(
        tmp_path, DistillationLoss(2.0, 1.0, problem_type=SINGLE_LABEL)
    )
    assert torch.equal(loss, plain_loss)
    assert all(torch.equal(a, b) for a, b in zip(grads, plain_grads))
    # ... and a teacher's share does change them (this comparison can fail).
    mixed_loss, mixed_grads = _loss_and_gradients(
        tmp_path, DistillationLoss(2.0, 0.5, problem_type=SINGLE_LABEL)
    )
    assert not torch.equal(mixed_loss, plain_loss)
    assert not all(torch.equal(a, b) for a, b in zip(mixed_grads, plain_grads))


# -- matching the teacher's layers (Patient KD) ---------------------------------------------------


def test_tap_reads_each_layers_first_tokens_on_the_padded_and_packed_paths(tmp_path):
    classifier = make_tiny_classifier(tmp_path, seed=2)
    encoder = classifier.model.encoder.eval()
    examples = classifier.encode(COLUMNS)
    padded = batch_tensors(examples, [0, 1, 2], classifier.padding_id, None)
    with torch.no_grad(), FirstTokenTap(encoder, [0, 1]) as tap:
        # The padded path: every layer's output is [B, L, H]; read position 0 by hand.
        x = encoder.embeddings(padded["input_word_ids"], padded["input_type_ids"])
        mask = padded["input_mask"].bool()[:, None, None, :]
        expected = []
        for layer in encoder.layers:
            x = layer(x, mask)
            expected.append(x[:, 0].clone())
        torch.testing.assert_close(tap.stacked(), torch.stack(expected, dim=1))
        # The padding-free path, whose last layer computes first tokens only: the same vectors.
        encoder.pool_padding_free(batch_from_sequences(list(examples)))
        torch.testing.assert_close(tap.stacked(), torch.stack(expected, dim=1))
    assert not any(layer._forward_hooks for layer in encoder.layers)  # removed on exit


def test_layer_match_loss_equals_the_hand_computed_value():
    student = torch.tensor([[[3.0, 4.0], [1.0, 0.0]], [[0.0, 2.0], [1.0, 1.0]]])
    teacher = torch.tensor([[[4.0, 3.0], [0.0, 5.0]], [[0.0, 1.0], [-1.0, -1.0]]])
    # Unit vectors' squared distances: |(.6,.8)-(.8,.6)|^2, |(1,0)-(0,1)|^2, 0, |2u|^2 = 4.
    expected = (0.08 + 2.0 + 0.0 + 4.0) / 4
    assert layer_match_loss(student, teacher).item() == pytest.approx(expected, rel=1e-6)


def test_layer_weight_adds_the_layer_term_to_the_output_loss(tmp_path):
    classifier = make_tiny_classifier(tmp_path, seed=3)
    model = classifier.model.eval()
    batch = batch_from_sequences(list(classifier.encode(COLUMNS)))
    labels = torch.tensor([0, 1, 1])
    teacher_logits = torch.randn(3, 2)
    teacher_vectors = torch.randn(3, 2, model.config.hidden_size)
    targets = torch.cat([teacher_logits, teacher_vectors.flatten(1)], dim=1)
    with torch.no_grad(), FirstTokenTap(model.encoder, [0, 1]) as tap:
        logits = model(padding_free=batch)
        loss = DistillationLoss(2.0, 0.5, SINGLE_LABEL, layer_weight=10.0, tap=tap)
        expected = distillation_loss(logits, labels, teacher_logits, 2.0, 0.5, SINGLE_LABEL)
        expected = expected + 10.0 * layer_match_loss(tap.stacked(), teacher_vectors)
        torch.testing.assert_close(loss(logits, labels, targets), expected)


def test_teacher_outputs_carry_the_chosen_layers_first_tokens(tmp_path):
    teacher = make_tiny_classifier(tmp_path, seed=4)
    data = EncodedExamples(teacher.encode(COLUMNS), np.zeros(3, dtype=np.int64))
    cpu = torch.device("cpu")
    logits = teacher_outputs(teacher, data, cpu, "fp32", batch_size=2)
    rows = teacher_outputs(teacher, data, cpu, "fp32", batch_size=2, layers=[1])
    hidden = teacher.model.config.hidden_size
    assert logits.shape == (3, 2) and rows.shape == (3, 2 + hidden)
    np.testing.assert_allclose(rows[:, :2], logits, rtol=1e-6)
    with torch.no_grad(), FirstTokenTap(teacher.model.encoder, [1]) as tap:
        teacher.model.eval()(padding_free=batch_from_sequences(list(data.inputs)))
        np.testing.assert_allclose(rows[:, 2:], tap.stacked()[:, 0].numpy(), rtol=1e-5)


def test_distill_with_layer_weight_trains_records_it_and_rejects_bad_values(
    tiny_run, tmp_path, capsys
):
    output = tmp_path / "matched"
    args = ["distill", str(tiny_run), "--output", str(output), "--layers", "1", "--max-steps", "3"]
    assert main([*args, "--layer-weight", "50", "--quiet"]) == 0
    assert "[CLS] vectors matched with weight 50" in capsys.readouterr().out
    assert json.loads((output / "config.json").read_text())["distill"]["layer_weight"] == 50.0
    info = json.loads((output / "model" / "bertfit.json").read_text())
    assert info["distilled_from"]["layer_weight"] == 50.0
    assert main(["evaluate", str(output), "--quiet"]) == 0
    _assert_user_error(
        main([*args, "--layer-weight", "5", "--alpha", "1", "--overwrite"]),
        capsys,
        r"distill.layer_weight needs distill.alpha below 1",
    )
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--layer-weight", "-1"])
    assert exit_info.value.code == 2 and "--layer-weight" in capsys.readouterr().err


# -- matching every token's vector (TinyBERT), the teacher run beside the student ----------------


def test_token_tap_reads_every_real_token_on_the_padded_and_packed_paths(tmp_path):
    classifier = make_tiny_classifier(tmp_path, seed=5)
    encoder = classifier.model.encoder.eval()
    examples = classifier.encode(COLUMNS)
    padded = batch_tensors(examples, [0, 1, 2], classifier.padding_id, None)
    real = padded["input_mask"].bool()
    assert not real.all()  # the batch has padding to leave out
    with torch.no_grad(), TokenTap(encoder, [0, 1]) as tap:
        # The padded path, by hand: each layer's [B, L, H] at the real tokens, in order.
        x = encoder.embeddings(padded["input_word_ids"], padded["input_type_ids"])
        expected = []
        for layer in encoder.layers:
            x = layer(x, real[:, None, None, :])
            expected.append((x[real].clone(), x[:, 0].clone()))
        for rows, (tokens, first) in zip(tap.readings(), expected, strict=True):
            torch.testing.assert_close(rows.tokens, tokens)
            torch.testing.assert_close(rows.first, first)
        # Packed with spare rows: the same real tokens, the spare rows left out.
        batch = batch_from_sequences(list(examples), row_multiple=64)
        assert batch.spare_rows > 0
        encoder.forward_padding_free(batch)
        for rows, (tokens, first) in zip(tap.readings(), expected, strict=True):
            torch.testing.assert_close(rows.tokens, tokens)
            torch.testing.assert_close(rows.first, first)
        # Packed, pooled only: the last layer computes first tokens, and says so.
        encoder.pool_padding_free(batch)
        last = tap.readings()[-1]
        assert last.tokens is None
        torch.testing.assert_close(last.first, expected[-1][1])
    assert not any(layer._forward_hooks for layer in encoder.layers)


def test_token_match_loss_equals_the_hand_computed_value():
    tokens = LayerRows(torch.tensor([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0]]), torch.zeros(1, 2))
    teacher_tokens = LayerRows(torch.tensor([[4.0, 3.0], [0.0, 5.0], [0.0, 1.0]]), torch.ones(1, 2))
    first_only = LayerRows(None, torch.tensor([[1.0, 1.0]]))
    teacher_first = LayerRows(torch.ones(3, 2), torch.tensor([[-1.0, -1.0]]))
    # Unit vectors' squared distances: tokens .08, 2 and 0 (mean 2.08 / 3); first tokens 4.
    expected = (2.08 / 3 + 4.0) / 2
    loss = token_match_loss([(tokens, teacher_tokens), (first_only, teacher_first)])
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_teacher_shadow_runs_the_teacher_on_training_batches_only(tmp_path):
    teacher = make_tiny_classifier(tmp_path, seed=6)
    student = build_student(teacher.model, [1])
    shadow = TeacherShadow(student, teacher.model, [1])
    calls = []
    teacher.model.register_forward_hook(lambda *_: calls.append(1))
    batch = batch_from_sequences(list(teacher.encode(COLUMNS)))
    student.eval()(padding_free=batch)
    assert calls == []  # evaluating the student needs no teacher
    student.train()
    logits = student(padding_free=batch)
    assert calls == [1]
    ((student_rows, teacher_rows),) = shadow.pairs()
    with torch.no_grad(), FirstTokenTap(teacher.model.encoder, [1]) as tap:
        teacher.model(padding_free=batch)  # the teacher alone, in evaluation mode
        torch.testing.assert_close(teacher_rows.first, tap.stacked()[:, 0])
    assert not teacher_rows.first.requires_grad and student_rows.first.requires_grad
    # The loss hook adds the weighted term; its gradient reaches the student only.
    labels, targets = torch.tensor([0, 1, 1]), torch.randn(3, 2)
    loss = DistillationLoss(2.0, 0.5, SINGLE_LABEL, token_weight=3.0, shadow=shadow)
    value = loss(logits, labels, targets)
    expected = distillation_loss(logits, labels, targets, 2.0, 0.5, SINGLE_LABEL)
    expected = expected + 3.0 * token_match_loss(shadow.pairs())
    torch.testing.assert_close(value, expected)
    value.backward()
    assert student.encoder.layers[0].output_norm.weight.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in teacher.model.parameters())
    assert len(student.state_dict()) == len(build_student(teacher.model, [1]).state_dict())
    calls.clear()
    shadow.remove()
    student(padding_free=batch)
    assert calls == [] and not student._forward_pre_hooks


def test_a_student_identical_to_its_teacher_matches_every_token_exactly(tmp_path):
    teacher = make_tiny_classifier(tmp_path, seed=7)  # no dropout: train mode is deterministic
    student = copy.deepcopy(teacher.model).train()
    shadow = TeacherShadow(student, teacher.model, [0, 1])
    examples = list(teacher.encode(COLUMNS))
    padded = batch_tensors(examples, [0, 1, 2], teacher.padding_id, None)
    for inputs in ({"padding_free": batch_from_sequences(examples, row_multiple=64)}, padded):
        student(**inputs)
        pairs = shadow.pairs()
        assert pairs[0][0].tokens.shape[0] == sum(len(ids) for ids, _ in examples)
        assert token_match_loss(pairs).item() == pytest.approx(0.0, abs=1e-10)
    # ... and a different student does not (this comparison can fail).
    student_one = build_student(teacher.model, [1]).train()
    shadow_one = TeacherShadow(student_one, teacher.model, [0])
    student_one(**padded)
    assert token_match_loss(shadow_one.pairs()).item() > 1e-5  # random tiny layers differ little


@pytest.mark.parametrize("padding_free", [True, False])
def test_distill_with_token_weight_trains_records_it_and_rejects_bad_values(
    tiny_run, tmp_path, capsys, padding_free
):
    output = tmp_path / "tokens"
    overrides = [("trainer.max_steps", 3), ("trainer.padding_free", padding_free)]
    result = distill_run(tiny_run, output, 1, token_weight=2.0, overrides=overrides, progress=False)
    assert result.steps == 3
    assert "every token's vectors matched with weight 2" in capsys.readouterr().out
    assert json.loads((output / "config.json").read_text())["distill"]["token_weight"] == 2.0
    info = json.loads((output / "model" / "bertfit.json").read_text())
    assert info["distilled_from"]["token_weight"] == 2.0
    assert main(["evaluate", str(output), "--quiet"]) == 0
    args = ["distill", str(tiny_run), "--output", str(output), "--layers", "1", "--overwrite"]
    _assert_user_error(
        main([*args, "--token-weight", "1", "--alpha", "1"]),
        capsys,
        r"distill.token_weight needs distill.alpha below 1",
    )
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--token-weight", "-1"])
    assert exit_info.value.code == 2 and "--token-weight" in capsys.readouterr().err


# -- a distilled run ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def student_run(tiny_run, tmp_path_factory):
    """A 1-layer student of the 2-layer tiny run (fp32, as the teacher ran)."""
    output = tmp_path_factory.mktemp("student") / "run"
    code = main([
        "distill", str(tiny_run), "--output", str(output), "--layers", "1", "--init", "first",
        "--epochs", "2", "--temperature", "3", "--alpha", "0.25", "--seed", "7", "--quiet",
    ])  # fmt: skip
    assert code == 0
    return output


def test_distilled_run_is_a_run_that_says_how_it_was_made(student_run, tiny_run):
    config = json.loads((student_run / "config.json").read_text())
    teacher_config = json.loads((tiny_run / "config.json").read_text())
    assert config["distill"] == {
        "teacher": str(tiny_run.resolve()),
        "layers": [0],
        "init": "first",
        "temperature": 3.0,
        "alpha": 0.25,
        "augment": 0,
        "augment_rate": 0.3,
        "layer_weight": 0.0,
        "token_weight": 0.0,
    }
    assert config["trainer"]["seed"] == 7 and config["trainer"]["epochs"] == 2
    assert config["model"] == str((tiny_run / "model").resolve())
    assert config["optimizer"]["learning_rate"] == teacher_config["optimizer"]["learning_rate"]
    info = json.loads((student_run / "model" / "bertfit.json").read_text())
    assert info["distilled_from"] == {
        "teacher": str(tiny_run.resolve()),
        "teacher_layers": 2,
        "layers": [0],
        "init": "first",
        "temperature": 3.0,
        "alpha": 0.25,
        "augment": 0,
        "augment_rate": 0.3,
        "layer_weight": 0.0,
        "token_weight": 0.0,
        "seed": 7,
    }
    assert info["temperature"] is not None  # calibrated after training, as every run is
    assert json.loads((student_run / "model" / "config.json").read_text())["num_hidden_layers"] == 1
    assert len(json.loads((student_run / "results.json").read_text())["best"]) > 0
    assert "teacher outputs" in (student_run / "timings.json").read_text()


def test_distilled_run_has_a_model_card_naming_its_teachers_base_model(student_run, tiny_run):
    from huggingface_hub import ModelCard  # parses the card as the Hub does

    card = ModelCard.load(student_run / "model" / "README.md")
    teacher = ModelCard.load(tiny_run / "model" / "README.md")
    assert card.data.base_model == teacher.data.base_model  # the encoder, not the teacher run
    assert "distillation" in card.data.tags and "distillation" not in teacher.data.tags
    best = json.loads((student_run / "results.json").read_text())["best"]
    assert {r.metric_type: r.metric_value for r in card.data.eval_results} == {
        "accuracy": best["dev_accuracy"],
        "f1": best["dev_f1"],
    }
    assert card.text.lstrip().startswith(f"# {student_run.name}\n\nA text classifier distilled")
    assert f"teacher run `{tiny_run.name}`" in card.text and "alpha 0.25" in card.text


def test_distilled_run_evaluates_predicts_and_inspects(student_run, capsys):
    capsys.readouterr()
    assert main(["evaluate", str(student_run), "--json", "--quiet"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    best = json.loads((student_run / "results.json").read_text())["best"]
    assert metrics["accuracy"] == pytest.approx(best["dev_accuracy"])  # the best model was kept
    args = ["predict", str(student_run), "--sentence1", "red cat", "--sentence2", "blue dog"]
    assert main(args) == 0
    assert main(["inspect", str(student_run)]) == 0


def test_distilled_run_exports_with_parity_to_its_torch_logits(student_run, tmp_path):
    classifier = TextClassifier.from_pretrained(student_run / "model")
    expected = classifier.logits(COLUMNS)
    fp32 = export_classifier(student_run, tmp_path / "fp32")
    assert fp32.check.max_abs_diff < 1e-4
    np.testing.assert_allclose(
        load_exported(fp32.directory)(PAIRS)["logits"], expected, atol=1e-4, rtol=0
    )
    int8 = export_classifier(student_run, tmp_path / "int8", quantize="int8")
    assert np.asarray(load_exported(int8.directory)(PAIRS)["logits"]).shape == expected.shape


def test_distilled_model_loads_in_transformers(student_run):
    from transformers import BertForSequenceClassification  # the test oracle, only here

    classifier = TextClassifier.from_pretrained(student_run / "model")
    ours = classifier.logits(COLUMNS)
    hf = BertForSequenceClassification.from_pretrained(student_run / "model").eval()
    assert hf.config.num_hidden_layers == 1
    with torch.no_grad():
        for i, (ids, types) in enumerate(classifier.encode(COLUMNS)):
            logits = hf(input_ids=torch.tensor([ids]), token_type_ids=torch.tensor([types])).logits
            assert torch.allclose(logits[0], torch.from_numpy(ours[i]), atol=1e-4)


@pytest.mark.parametrize("task", ["stsb", "sst2"])
def test_regression_and_single_sentence_tasks_distill(task, tmp_path, capsys):
    glue = write_glue_task(tmp_path / "glue", task)
    model_dir = tmp_path / "tiny-model"
    make_tiny_classifier(tmp_path).save_pretrained(model_dir)
    teacher, student = tmp_path / "teacher", tmp_path / "student"
    code = main([
        "train", "--task", task, "--output", str(teacher), "--data-dir", str(glue),
        "--model", str(model_dir), "--max-seq-length", "32", "--epochs", "1",
        "--precision", "fp32", "--quiet",
    ])  # fmt: skip
    assert code == 0
    assert main(["distill", str(teacher), "--output", str(student), "--layers", "1"]) == 0
    classifier = TextClassifier.from_pretrained(student / "model")
    teacher_model = TextClassifier.from_pretrained(teacher / "model")
    assert classifier.model.config.num_layers == 1
    assert classifier.model.num_classes == teacher_model.model.num_classes
    assert classifier.info.input_names == teacher_model.info.input_names
    capsys.readouterr()
    assert main(["evaluate", str(student), "--json", "--quiet"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert ("pearson" if task == "stsb" else "accuracy") in metrics


# -- errors ---------------------------------------------------------------------------------------


def _assert_user_error(code: int, capsys, pattern: str) -> None:
    assert code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert re.search(pattern, lines[0]), lines[0]


def test_teacher_must_be_a_finished_run(tiny_run, tmp_path, capsys):
    unfinished = tmp_path / "unfinished"
    shutil.copytree(tiny_run, unfinished)
    (unfinished / "results.json").unlink()
    (tmp_path / "empty").mkdir()
    cases = [
        (unfinished, r"not a finished run \(no results\.json\).*--resume"),
        (tmp_path / "empty", r"not a bertfit run directory \(no config\.json\)"),
        (tiny_run / "model", r"a saved model directory, not a bertfit run directory"),
        (tmp_path / "missing", r"not a bertfit run directory"),
    ]
    for teacher, pattern in cases:
        output = tmp_path / "out"
        code = main(["distill", str(teacher), "--output", str(output)])
        _assert_user_error(code, capsys, pattern)
        assert not output.exists()


@pytest.mark.parametrize("layers", ["0", "-1", "2", "5"])
def test_layers_must_be_fewer_than_the_teachers(tiny_run, tmp_path, capsys, layers):
    output = tmp_path / "out"
    code = main(["distill", str(tiny_run), "--output", str(output), "--layers", layers])
    _assert_user_error(code, capsys, rf"--layers must be in 1\.\.1 .*got {layers}")
    assert not output.exists()


def test_bad_init_is_a_user_error(tiny_run, tmp_path, capsys):
    args = ["distill", str(tiny_run), "--output", str(tmp_path / "o"), "--layers", "1"]
    code = main([*args, "--init", "top"])
    _assert_user_error(code, capsys, r"init layers: expected one of spread, first, last")


@pytest.mark.parametrize("flag, value", [("--alpha", "1.5"), ("--temperature", "0")])
def test_alpha_and_temperature_out_of_range(tiny_run, tmp_path, capsys, flag, value):
    with pytest.raises(SystemExit) as exit_info:
        main(["distill", str(tiny_run), "--output", str(tmp_path / "o"), flag, value])
    assert exit_info.value.code == 2
    assert flag in capsys.readouterr().err


def test_existing_output_needs_overwrite(tiny_run, tmp_path, capsys):
    output = tmp_path / "out"
    output.mkdir()
    (output / "notes.txt").write_text("mine")
    args = ["distill", str(tiny_run), "--output", str(output), "--layers", "1", "--max-steps", "2"]
    _assert_user_error(main(args), capsys, r"already exists; choose another --output or --over")
    assert (output / "notes.txt").read_text() == "mine"
    _assert_user_error(
        main(["distill", str(tiny_run), "--output", str(tiny_run), "--layers", "1", "--overwrite"]),
        capsys,
        r"is the teacher run itself",
    )
    assert main([*args, "--overwrite", "--quiet"]) == 0
    assert not (output / "notes.txt").exists() and (output / "results.json").is_file()


def test_alpha_1_trains_without_computing_the_teachers_outputs(tiny_run, tmp_path):
    output = tmp_path / "alpha1"
    args = ["distill", str(tiny_run), "--output", str(output), "--layers", "1", "--alpha", "1"]
    assert main([*args, "--max-steps", "2", "--quiet"]) == 0
    assert json.loads((output / "config.json").read_text())["distill"]["alpha"] == 1.0
    assert "teacher outputs" not in (output / "timings.json").read_text()


def test_an_interrupted_distilled_run_resumes_as_a_distilled_run(student_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(student_run, run)
    checkpoints = sorted((run / "checkpoints").iterdir(), key=lambda p: int(p.name.split("-")[1]))
    assert len(checkpoints) == 2  # the end of each of its 2 epochs
    shutil.rmtree(checkpoints[-1])  # as if stopped after epoch 1
    (run / "results.json").unlink()
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "distilling" in out and "resuming from step" in out
    resumed = json.loads((run / "results.json").read_text())
    assert resumed == json.loads((student_run / "results.json").read_text())
