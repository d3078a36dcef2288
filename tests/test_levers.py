"""The two fine-tuning levers as run settings: ``reinit_layers`` (the top layers and the pooler
start afresh) and ``optimizer.layer_decay`` (see tests/test_optim.py for its groups): flags,
config keys, refusals. Resuming a run with both on is in tests/test_checkpoint.py."""

from __future__ import annotations

import json

import pytest
import torch

from bertfit.cli import _parse, _train_flag_overrides, main
from bertfit.data.tasks import MRPC
from bertfit.errors import ConfigError
from bertfit.train.config import RunConfig
from bertfit.train.config_file import describe_keys, load_run_config
from bertfit.train.run import build_classifier

from conftest import make_tiny_classifier


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A saved 2-layer model whose every weight is off BERT's init (as pretrained weights are:
    norms not 1, biases not 0), so a re-initialized tensor is told from a loaded one."""
    root = tmp_path_factory.mktemp("pretrained")
    classifier = make_tiny_classifier(root)
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for param in classifier.model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.5)
    classifier.save_pretrained(root / "model")
    return root / "model"


def weights(pretrained, reinit: int, seed: int = 42) -> dict[str, torch.Tensor]:
    config = RunConfig(model=str(pretrained), reinit_layers=reinit, max_seq_length=32)
    config.trainer.seed = seed
    return dict(build_classifier(config, MRPC).model.state_dict())


def test_reinit_changes_exactly_the_top_layers_and_the_pooler(pretrained):
    loaded, reinit = weights(pretrained, 0), weights(pretrained, 1)
    fresh = {name for name in loaded if not torch.equal(loaded[name], reinit[name])}
    top = {name for name in loaded if name.startswith(("encoder.layers.1.", "encoder.pooler."))}
    assert fresh == top  # the embeddings, layer 0 and the head are exactly as before
    # BERT's init with the config's initializer_range (0.02): zero biases, identity norms.
    assert torch.equal(reinit["encoder.pooler.dense.bias"], torch.zeros(32))
    assert torch.equal(reinit["encoder.layers.1.output_norm.weight"], torch.ones(32))
    spread = reinit["encoder.layers.1.feed_forward.intermediate.weight"].std().item()
    assert 0.015 < spread < 0.025  # the loaded one is about 0.5
    everything = weights(pretrained, 2)
    changed = {name for name in loaded if not torch.equal(loaded[name], everything[name])}
    assert changed == {name for name in loaded if name.startswith("encoder.layers.") or
                       name.startswith("encoder.pooler.")}  # fmt: skip


def test_reinit_is_the_same_under_the_same_seed(pretrained):
    first, again, other = (weights(pretrained, 1, seed) for seed in (3, 3, 4))
    assert all(torch.equal(first[name], again[name]) for name in first)
    name = "encoder.layers.1.attention.qkv.weight"
    assert not torch.equal(first[name], other[name])


def test_reinit_beyond_the_model_layers_is_refused(pretrained):
    with pytest.raises(ConfigError, match=r"^reinit_layers: 3 is more than the model's 2 layers"):
        weights(pretrained, 3)
    with pytest.raises(ConfigError, match=r"^reinit_layers must be 0 or more, got -1"):
        RunConfig(reinit_layers=-1).validate()


def test_a_distilled_student_refuses_reinit():
    config = RunConfig(reinit_layers=1)
    config.distill.teacher, config.distill.layers = "/teacher", [0]
    with pytest.raises(ConfigError, match=r"^reinit_layers: a distilled student"):
        config.validate()


def test_flags_set_the_config_keys_and_round_trip(tmp_path):
    args = _parse(["train", "--output", "x", "--layer-decay", "0.8", "--reinit-layers", "2"])
    config = load_run_config(None, _train_flag_overrides(args))
    assert (config.optimizer.layer_decay, config.reinit_layers) == (0.8, 2)
    assert load_run_config(None, [("optimizer.layer_decay", "0.8"), ("reinit_layers", "2")]) == (
        config
    )
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config.to_dict()))
    assert RunConfig.from_json_file(path) == config
    # A config.json written before the levers existed reads as both off.
    data = config.to_dict()
    del data["reinit_layers"], data["optimizer"]["layer_decay"]
    old = RunConfig.from_dict(data)
    assert (old.optimizer.layer_decay, old.reinit_layers) == (1.0, 0)


def test_config_keys_lists_both_with_their_defaults(capsys):
    rows = {key: (kind, default) for key, kind, default in describe_keys()}
    assert rows["optimizer.layer_decay"] == ("float", 1.0)
    assert rows["reinit_layers"] == ("int", 0)
    assert main(["config", "keys"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.split() == ["reinit_layers", "int", "0"] for line in lines)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--layer-decay", "0"], "must be in (0, 1], got 0"),
        (["--layer-decay", "1.5"], "must be in (0, 1], got 1.5"),
        (["--reinit-layers", "-1"], "must be 0 or more, got -1"),
        (["optimizer.layer_decay=1.5"], "optimizer.layer_decay: must be in (0, 1]"),
        (["optimizer.layer_decay=0"], "optimizer.layer_decay: must be in (0, 1]"),
    ],
)
def test_bad_values_are_one_line_and_exit_2(tmp_path, capsys, argv, message):
    try:
        code = main(["train", "--output", str(tmp_path / "run"), *argv])
    except SystemExit as exit_:  # argparse refuses a flag's value itself
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert "Traceback" not in err and not (tmp_path / "run").exists()


def test_help_reads_the_defaults_from_the_config(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert f"(default: {RunConfig().optimizer.layer_decay:g}, off)" in out
    assert f"(default: {RunConfig().reinit_layers}, off)" in out
