"""Run configs from YAML/JSON files with dotted overrides; `config show` reproduces a run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from safetensors.numpy import load_file

from bertfit.cli import _parse, main
from bertfit.errors import ConfigError
from bertfit.train.config import RunConfig
from bertfit.train.config_file import (
    apply_overrides,
    config_defaults,
    config_keys,
    dump_config,
    load_run_config,
    parse_overrides,
    read_config_file,
)
from bertfit.train.optim import OptimizationConfig

from conftest import make_tiny_classifier, write_synthetic_glue

TIMING = ("examples_per_second", "train_seconds")


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


# -- files and overrides ------------------------------------------------------------------------


def test_yaml_file_keeps_defaults_it_leaves_out_and_reads_3e_5_as_a_number(tmp_path):
    path = write(
        tmp_path / "run.yaml",
        "task: mrpc\ntrainer:\n  epochs: 5\noptimizer:\n  warmup_fraction: 0.2\n"
        "  learning_rate: 3e-5\n",
    )
    config = load_run_config(path)
    assert config.trainer.epochs == 5 and config.trainer.batch_size == 32
    assert config.optimizer.learning_rate == 3e-5  # PyYAML alone would read the string "3e-5"
    assert config.optimizer.warmup_fraction == 0.2
    defaults = RunConfig()
    assert config.optimizer.weight_decay == defaults.optimizer.weight_decay
    # A partial optimizer section starts from the run's defaults (the default task's recipe
    # included), not OptimizationConfig's.
    partial = load_run_config(write(tmp_path / "p.yaml", "optimizer:\n  power: 2.0\n"))
    mrpc = load_run_config(None, [("task", "mrpc")])
    assert partial.optimizer.learning_rate == mrpc.optimizer.learning_rate
    assert partial.optimizer.learning_rate != OptimizationConfig().learning_rate


def test_json_file_and_run_directory_are_read_alike(tmp_path):
    data = RunConfig(task="rte").to_dict()
    (tmp_path / "run").mkdir()
    write(tmp_path / "run" / "config.json", json.dumps(data))
    assert load_run_config(tmp_path / "run" / "config.json") == load_run_config(tmp_path / "run")
    assert load_run_config(tmp_path / "run").task == "rte"


def test_a_config_written_before_the_logging_section_still_loads(tmp_path):
    data = RunConfig().to_dict()
    del data["logging"]
    config = load_run_config(write(tmp_path / "old.json", json.dumps(data)))
    assert config.logging.tensorboard is False and config.logging.log_every_steps == 1


def test_overrides_set_typed_values_by_dotted_key():
    overrides = parse_overrides(
        [
            "optimizer.learning_rate=3e-5",
            "trainer.epochs=5",
            "trainer.max_steps=null",
            "optimizer.exclude_from_weight_decay=[LayerNorm, bias]",
            "model=1234",  # a text field keeps the text, even when it looks like a number
            "logging.tensorboard=true",
            "optimizer.clip_norm=none",
        ]
    )
    config = load_run_config(None, overrides)
    assert config.optimizer.learning_rate == 3e-5 and config.trainer.epochs == 5
    assert config.trainer.max_steps is None and config.model == "1234"
    assert config.optimizer.exclude_from_weight_decay == ["LayerNorm", "bias"]
    assert config.logging.tensorboard is True and config.optimizer.clip_norm is None


@pytest.mark.parametrize(
    "override, message",
    [
        ("optimizer.learnig_rate=3e-5", "unknown key 'optimizer.learnig_rate' (did you mean "
         "'optimizer.learning_rate'?)"),
        ("epochs=5", "did you mean 'trainer.epochs'?"),
        ("lr=1e-4", "did you mean 'optimizer.learning_rate'?"),
        ("trainer.batch-size=8", "did you mean 'trainer.batch_size'?"),
        ("trainer.epochs=five", "override trainer.epochs: expected an integer, got 'five'"),
        ("trainer.epochs=2.5", "override trainer.epochs: expected an integer, got 2.5"),
        ("logging.tensorboard=maybe", "override logging.tensorboard: expected true or false"),
        ("optimizer.implementation=fast", "expected one of ['foreach', 'fused', 'for_loop']"),
        ("optimizer.learning_rate=-1", "override optimizer.learning_rate: must be > 0"),
        ("trainer=3", "'trainer' is a section; set its keys one by one, e.g. trainer.epochs"),
        ("trainer.epochs", "expected KEY=VALUE"),
    ],
)  # fmt: skip
def test_bad_overrides_name_the_key_and_the_nearest_valid_one(override, message):
    with pytest.raises(ConfigError) as error:
        load_run_config(None, parse_overrides([override]))
    assert message in str(error.value)


def test_bad_keys_and_values_in_a_file_name_the_file_and_key(tmp_path):
    typo = write(tmp_path / "typo.yaml", "trainer:\n  epoch: 5\n")
    expected = r"typo.yaml.trainer: unknown key 'epoch' \(did you mean 'epochs'"
    with pytest.raises(ConfigError, match=expected):
        load_run_config(typo)
    wrong = write(tmp_path / "wrong.json", '{"trainer": {"batch_size": "big"}}')
    with pytest.raises(ConfigError, match=r"wrong.json.trainer.batch_size: expected an integer"):
        load_run_config(wrong)
    broken = write(tmp_path / "broken.yaml", "trainer:\n  epochs: [1\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: not valid YAML \(line 3"):
        read_config_file(broken)
    with pytest.raises(ConfigError, match=r"expected a .yaml, .yml or .json"):
        read_config_file(write(tmp_path / "run.toml", "x = 1"))
    with pytest.raises(ConfigError, match="config file not found"):
        load_run_config(tmp_path / "absent.yaml")


def test_optimizer_section_round_trips_like_the_tutorials_as_dict(tmp_path):
    config = load_run_config(None, parse_overrides(["optimizer.warmup_steps=7"]))
    data = config.to_dict()
    assert data["optimizer"] == config.optimizer.as_dict()
    assert OptimizationConfig.from_dict(data["optimizer"]) == config.optimizer
    for fmt, name in (("json", "c.json"), ("yaml", "c.yaml")):
        path = write(tmp_path / name, dump_config(data, fmt))
        assert load_run_config(path) == config
        assert RunConfig.from_dict(read_config_file(path)) == config


def test_every_key_is_listed_with_its_default(capsys):
    keys = config_keys()
    assert {"optimizer.learning_rate", "trainer.epochs", "logging.tensorboard"} <= set(keys)
    assert main(["config", "keys"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(keys)
    row = next(line for line in lines if line.startswith("trainer.epochs "))
    assert row.split()[-1] == str(config_defaults()["trainer"]["epochs"])


def test_overrides_may_follow_flags():
    args = _parse(["train", "a.b=1", "--output", "x", "trainer.epochs=2", "--quiet", "c=3"])
    assert args.overrides == ["a.b=1", "trainer.epochs=2", "c=3"]
    with pytest.raises(SystemExit):
        _parse(["evaluate", "run", "x=1"])


def test_apply_overrides_leaves_its_input_alone():
    data = config_defaults()
    changed = apply_overrides(data, [("trainer.epochs", "9")])
    assert changed["trainer"]["epochs"] == 9 and data["trainer"]["epochs"] == 3


# -- the command line ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("config")
    make_tiny_classifier(root).save_pretrained(root / "tiny")
    write_synthetic_glue(root / "glue", n_train=96, n_dev=32)
    write(
        root / "run.yaml",
        f"model: {root / 'tiny'}\ndata_dir: {root / 'glue'}\nmax_seq_length: 32\n"
        "trainer:\n  epochs: 2\n  batch_size: 16\noptimizer:\n  learning_rate: 3e-3\n",
    )
    return root


def _records(path):
    return [
        {k: v for k, v in json.loads(line).items() if k not in TIMING}
        for line in path.read_text().splitlines()
    ]


def test_flags_and_overrides_win_over_the_file_in_order(setup, capsys):
    args = ["config", "show", "--config", str(setup / "run.yaml"), "--no-resolve"]
    assert main(args) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["trainer"]["epochs"] == 2 and shown["optimizer"]["learning_rate"] == 3e-3
    assert main([*args, "trainer.epochs=4", "--format", "yaml"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["trainer"]["epochs"] == 4


def test_bad_override_on_the_command_line_is_one_line_and_exit_2(setup, capsys):
    code = main(["train", "--config", str(setup / "run.yaml"), "--output",
                 str(setup / "never"), "optimizer.learnig_rate=3e-5"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "did you mean 'optimizer.learning_rate'?" in err[0]
    assert not (setup / "never").exists()


@pytest.mark.slow
def test_config_show_is_what_the_run_writes_and_reproduces_it(setup, capsys):
    config, overrides = str(setup / "run.yaml"), ["trainer.max_steps=9", "trainer.seed=3"]
    assert main(["config", "show", "--config", config, *overrides]) == 0
    shown = capsys.readouterr().out
    first = setup / "first"
    assert main(["train", "--config", config, "--output", str(first), "--quiet", *overrides]) == 0
    written = (first / "config.json").read_text()
    assert json.loads(shown) == json.loads(written)
    assert json.loads(written)["optimizer"]["total_steps"] == 9
    # Fed back, the resolved config repeats the run exactly.
    again = setup / "again"
    write(setup / "shown.json", shown)
    assert main(["train", "--config", str(setup / "shown.json"), "--output", str(again)]) == 0
    assert (again / "config.json").read_text() == written
    assert _records(again / "history.jsonl") == _records(first / "history.jsonl")
    assert _records(again / "steps.jsonl") == _records(first / "steps.jsonl")
    a = load_file(first / "model" / "model.safetensors")
    b = load_file(again / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    # The run directory itself is a config, too.
    capsys.readouterr()
    assert main(["config", "show", "--config", str(first)]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(written)
