"""Progress bars on a terminal; one line per epoch with --quiet or when output is not a terminal."""

from __future__ import annotations

import pytest

from bertfit import progress
from bertfit.cli import main

from conftest import make_tiny_classifier, synthetic_pairs, write_synthetic_glue


@pytest.fixture(autouse=True)
def _reset_quiet():
    yield
    progress.set_quiet(False)


def test_policy_terminal_quiet_and_explicit_choice(monkeypatch):
    monkeypatch.setattr(progress, "_interactive", lambda: True)
    assert progress.enabled() and not progress.bar(range(3), desc="x").disable
    progress.set_quiet(True)
    assert not progress.enabled() and progress.bar(range(3), desc="x").disable
    assert progress.enabled(True)  # an explicit request wins
    progress.set_quiet(False)
    monkeypatch.setattr(progress, "_interactive", lambda: False)
    assert not progress.enabled() and progress.enabled(True) and not progress.enabled(False)


@pytest.fixture
def glue_and_model(tmp_path):
    make_tiny_classifier(tmp_path).save_pretrained(tmp_path / "tiny")
    return write_synthetic_glue(tmp_path / "glue", n_train=64, n_dev=16), tmp_path / "tiny"


def _train(tmp_path, glue_and_model, *extra):
    glue, model = glue_and_model
    return main(["train", "--model", str(model), "--data-dir", str(glue), "--output",
                 str(tmp_path / "run"), "--epochs", "2", "--batch-size", "16",
                 "--max-seq-length", "32", *extra])  # fmt: skip


def test_quiet_training_prints_one_line_per_epoch(tmp_path, glue_and_model, capsys, monkeypatch):
    monkeypatch.setattr(progress, "_interactive", lambda: True)  # even on a terminal
    assert _train(tmp_path, glue_and_model, "--quiet") == 0
    captured = capsys.readouterr()
    epochs = [line for line in captured.out.splitlines() if line.startswith("epoch ")]
    assert len(epochs) == 2
    # Besides the epochs: the header, the temperature fit, where the time went, the result.
    others = [line for line in captured.out.splitlines() if line not in epochs]
    assert [line.split()[0] for line in others] == ["training", "calibrated:", "time:", "best"]
    assert others[2].startswith("time: start-up")
    assert "epoch 1/2" not in captured.err and "\r" not in captured.err


def test_training_shows_bars_on_a_terminal_only(tmp_path, glue_and_model, capsys, monkeypatch):
    monkeypatch.setattr(progress, "_interactive", lambda: False)  # piped to a file
    assert _train(tmp_path, glue_and_model) == 0
    assert "epoch 1/2" not in capsys.readouterr().err
    monkeypatch.setattr(progress, "_interactive", lambda: True)
    monkeypatch.setattr(progress, "REFRESH_SECONDS", 0)  # draw every step, however fast
    assert _train(tmp_path, glue_and_model, "--overwrite") == 0
    err = capsys.readouterr().err
    assert "epoch 1/2" in err and "epoch 2/2" in err and "loss=" in err and "gnorm=" in err


def test_large_inputs_are_tokenized_in_chunks_with_the_same_result(tmp_path, monkeypatch):
    import bertfit.inference as inference

    classifier = make_tiny_classifier(tmp_path)
    columns, _ = synthetic_pairs(50, 3)
    whole = classifier.encode(columns)
    monkeypatch.setattr(inference, "ENCODE_CHUNK", 16)
    shown = []
    real_bar = inference.progress_bar

    def spy(*args, **kwargs):
        shown.append(kwargs)
        return real_bar(*args, **kwargs)

    monkeypatch.setattr(inference, "progress_bar", spy)
    assert classifier.encode(columns) == whole
    assert [kwargs["desc"] for kwargs in shown] == ["tokenizing"]
    assert shown[0]["total"] == 50
    with pytest.raises(ValueError, match="same number of rows"):
        classifier.encode([columns[0], columns[1][:-1]])
