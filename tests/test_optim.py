"""Tests for bertfit.train.optim: config round trips, Model Garden schedules, AdamW groups."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys

import pytest
import torch
from torch import nn

from bertfit.errors import ConfigError
from bertfit.train.optim import (
    LinearWarmup,
    OptimizationConfig,
    PolynomialDecay,
    build_optimizer,
    clip_gradients,
    learning_rate_schedule,
    parameter_groups,
)

from conftest import make_tiny_classifier


def close(actual: float, expected: float) -> bool:
    """Equal to float64 rounding; an absolute tolerance far below the 1e-5 scale of BERT LRs."""
    return math.isclose(actual, expected, rel_tol=1e-12, abs_tol=1e-24)


# --- a tiny model named like a BERT classifier ---------------------------------------------


class ScaleNorm(nn.Module):
    """A home-made norm whose parameter name matches none of the default patterns."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(width))

    def forward(self, x):
        return x * self.scale / x.norm(dim=-1, keepdim=True)


class Layer(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.attention = nn.Module()
        self.attention.query = nn.Linear(width, width)
        self.output = nn.Module()
        self.output.dense = nn.Linear(width, width)
        self.output.LayerNorm = nn.LayerNorm(width)

    def forward(self, x):
        x = self.attention.query(x)
        return self.output.LayerNorm(x + self.output.dense(x))


class TinyBert(nn.Module):
    def __init__(self, vocab: int = 11, width: int = 8, classes: int = 3) -> None:
        super().__init__()
        self.embeddings = nn.Module()
        self.embeddings.word_embeddings = nn.Embedding(vocab, width)
        self.embeddings.position_ids = nn.Parameter(torch.arange(4.0), requires_grad=False)
        self.embeddings.layer_norm = nn.LayerNorm(width)
        self.encoder = nn.ModuleList([Layer(width), Layer(width)])
        self.final_norm = ScaleNorm(width)
        self.pooler = nn.Linear(width, width)
        self.classifier = nn.Linear(width, classes)
        # Tied to the word embeddings: the optimizer must see this tensor once.
        self.decoder = nn.Linear(width, vocab, bias=False)
        self.decoder.weight = self.embeddings.word_embeddings.weight

    def forward(self, ids):
        x = self.embeddings.layer_norm(self.embeddings.word_embeddings(ids))
        for layer in self.encoder:
            x = layer(x)
        x = self.final_norm(x)
        pooled = torch.tanh(self.pooler(x[:, 0]))
        return self.classifier(pooled), self.decoder(x)


DECAYED = {
    "embeddings.word_embeddings.weight",
    "encoder.0.attention.query.weight",
    "encoder.0.output.dense.weight",
    "encoder.1.attention.query.weight",
    "encoder.1.output.dense.weight",
    "pooler.weight",
    "classifier.weight",
}
NOT_DECAYED = {
    "embeddings.layer_norm.weight",
    "embeddings.layer_norm.bias",
    "encoder.0.attention.query.bias",
    "encoder.0.output.dense.bias",
    "encoder.0.output.LayerNorm.weight",
    "encoder.0.output.LayerNorm.bias",
    "encoder.1.attention.query.bias",
    "encoder.1.output.dense.bias",
    "encoder.1.output.LayerNorm.weight",
    "encoder.1.output.LayerNorm.bias",
    "final_norm.scale",
    "pooler.bias",
    "classifier.bias",
}


def tiny_model(seed: int = 0) -> TinyBert:
    torch.manual_seed(seed)
    return TinyBert()


def groups_by_decay(groups) -> dict[float, set[str]]:
    return {group["weight_decay"]: set(group["param_names"]) for group in groups}


# --- schedules ------------------------------------------------------------------------------


def test_tutorial_schedule_matches_hand_computed_values():
    # The tutorial's shape: 2e-5, decay over all 1000 steps, warmup int(0.1 * 1000) = 100.
    schedule = learning_rate_schedule(OptimizationConfig(learning_rate=2e-5, total_steps=1000))
    # The warmup climbs to decay(100) = 2e-5 * (1 - 100/1000) = 1.8e-5, not to 2e-5,
    # because the decay counts the global step (Model Garden), not step - warmup.
    expected = {
        0: 0.0,
        1: 1.8e-5 / 100,
        99: 1.8e-5 * 99 / 100,
        100: 1.8e-5,
        101: 2e-5 * (1 - 101 / 1000),
        550: 9e-6,
        999: 2e-8,
        1000: 0.0,
        1500: 0.0,
    }
    for step, value in expected.items():
        assert close(schedule(step), value), (step, schedule(step), value)


def test_polynomial_decay_power_and_end_rate():
    decay = PolynomialDecay(1.0, decay_steps=10, end_learning_rate=0.1, power=2.0)
    assert close(decay(0), 1.0)
    assert close(decay(5), 0.9 * 0.25 + 0.1)
    assert close(decay(10), 0.1)
    assert close(decay(25), 0.1)
    assert close(decay(2.5), 0.9 * 0.75**2 + 0.1)


def test_linear_warmup_from_a_start_rate_to_a_constant():
    warmup = LinearWarmup(after_warmup_lr_sched=0.5, warmup_steps=4, warmup_learning_rate=0.1)
    expected = [0.1, 0.2, 0.3, 0.4, 0.5, 0.5]
    assert [warmup(s) for s in range(6)] == pytest.approx(expected, abs=1e-15)


def test_linear_warmup_targets_the_decay_at_the_warmup_step():
    decay = PolynomialDecay(1.0, 10)
    warmup = LinearWarmup(decay, warmup_steps=5)
    assert close(warmup(4), 0.8 * 0.5)
    assert close(warmup(5), 0.5)
    assert close(warmup(6), 0.4)


def test_zero_warmup_starts_at_the_full_rate():
    config = OptimizationConfig(learning_rate=1e-3, warmup_steps=0, total_steps=4)
    schedule = learning_rate_schedule(config)
    expected = [1e-3, 7.5e-4, 5e-4, 2.5e-4, 0.0]
    assert [schedule(s) for s in range(5)] == pytest.approx(expected, abs=1e-18)


def test_warmup_fraction_rounds_down_like_the_tutorial():
    config = OptimizationConfig(total_steps=29, warmup_fraction=0.1)
    assert config.resolved_warmup_steps() == 2  # int(2.9)
    schedule = learning_rate_schedule(config)
    assert close(schedule(2), 2e-5 * (1 - 2 / 29))
    assert close(schedule(1), 2e-5 * (1 - 2 / 29) / 2)


def test_warmup_steps_override_the_fraction():
    config = OptimizationConfig(total_steps=100, warmup_steps=30, warmup_fraction=0.5)
    assert config.resolved_warmup_steps() == 30
    assert close(learning_rate_schedule(config)(30), 2e-5 * 0.7)


def test_schedule_needs_total_steps():
    with pytest.raises(ConfigError, match="total_steps"):
        learning_rate_schedule(OptimizationConfig())
    with pytest.raises(ConfigError, match="total_steps"):
        build_optimizer(tiny_model(), OptimizationConfig())


def test_negative_step_is_refused():
    with pytest.raises(ValueError):
        learning_rate_schedule(OptimizationConfig(total_steps=10))(-1)


def test_schedule_does_not_need_torch():
    code = (
        "import sys\n"
        "sys.modules['torch'] = None\n"  # any `import torch` now raises ImportError
        "from bertfit.train.optim import OptimizationConfig, learning_rate_schedule\n"
        "import bertfit.train.metrics\n"
        "schedule = learning_rate_schedule(OptimizationConfig(total_steps=1000))\n"
        "print(schedule(100))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert close(float(result.stdout), 1.8e-5)


# --- config ---------------------------------------------------------------------------------


def custom_config() -> OptimizationConfig:
    return OptimizationConfig(
        learning_rate=3e-5,
        weight_decay=0.05,
        beta_1=0.85,
        beta_2=0.98,
        epsilon=1e-7,
        exclude_from_weight_decay=["LayerNorm", "bias", "^classifier\\."],
        warmup_steps=7,
        warmup_learning_rate=1e-7,
        total_steps=40,
        power=2.0,
        end_learning_rate=1e-6,
        clip_norm=0.5,
        implementation="for_loop",
    )


def test_default_config_follows_bert():
    config = OptimizationConfig()
    assert config.weight_decay == 0.01
    assert config.epsilon == 1e-6
    assert (config.beta_1, config.beta_2) == (0.9, 0.999)
    assert config.warmup_fraction == 0.1
    assert config.power == 1.0 and config.end_learning_rate == 0.0
    assert config.clip_norm == 1.0
    assert config.exclude_from_weight_decay == ["LayerNorm", "layer_norm", "bias"]


@pytest.mark.parametrize("make", [OptimizationConfig, custom_config])
def test_dict_json_round_trip_rebuilds_the_same_optimizer(make):
    config = make().with_total_steps(40)
    text = json.dumps(config.as_dict())
    rebuilt = OptimizationConfig.from_dict(json.loads(text))
    assert rebuilt == config

    model = tiny_model()
    opt_a, sched_a = build_optimizer(model, config)
    opt_b, sched_b = build_optimizer(model, rebuilt)
    assert len(opt_a.param_groups) == len(opt_b.param_groups) == 2
    for group_a, group_b in zip(opt_a.param_groups, opt_b.param_groups):
        assert [id(p) for p in group_a["params"]] == [id(p) for p in group_b["params"]]
        settings_a = {k: v for k, v in group_a.items() if k != "params"}
        settings_b = {k: v for k, v in group_b.items() if k != "params"}
        assert settings_a == settings_b
    lrs_a = [sched_a.lr_lambdas[0](step) for step in range(50)]
    lrs_b = [sched_b.lr_lambdas[0](step) for step in range(50)]
    assert lrs_a == lrs_b
    assert lrs_a == [learning_rate_schedule(config)(step) for step in range(50)]


def test_json_file_round_trip(tmp_path):
    config = custom_config()
    path = tmp_path / "optimizer.json"
    config.to_json(path)
    assert OptimizationConfig.from_json(path) == config
    assert json.loads(path.read_text())["learning_rate"] == 3e-5


def test_unknown_key_names_the_nearest_one():
    with pytest.raises(ConfigError, match=r"'learning_rat'.*did you mean 'learning_rate'"):
        OptimizationConfig.from_dict({"learning_rat": 1e-4})
    with pytest.raises(ConfigError, match=r"'warmup_step'.*did you mean 'warmup_steps'"):
        OptimizationConfig.from_dict({"warmup_step": 10})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("learning_rate", "2e-5"),
        ("learning_rate", True),
        ("total_steps", 10.5),
        ("warmup_steps", "10"),
        ("clip_norm", "1"),
        ("exclude_from_weight_decay", "bias"),
        ("exclude_from_weight_decay", [1]),
        ("exclude_norm_and_bias", 1),
        ("implementation", "fastest"),
    ],
)
def test_wrong_types_are_refused_with_the_key_named(key, value):
    with pytest.raises(ConfigError, match=key):
        OptimizationConfig.from_dict({key: value})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("learning_rate", 0.0),
        ("learning_rate", float("nan")),
        ("weight_decay", -0.1),
        ("beta_1", 1.0),
        ("beta_2", -0.5),
        ("epsilon", 0.0),
        ("warmup_fraction", 1.0),
        ("warmup_fraction", -0.1),
        ("warmup_steps", -1),
        ("total_steps", 0),
        ("power", 0.0),
        ("end_learning_rate", 1.0),
        ("clip_norm", 0.0),
        ("exclude_from_weight_decay", ["(unclosed"]),
        ("layer_decay", 0.0),
        ("layer_decay", -0.5),
        ("layer_decay", 1.01),
        ("layer_decay", float("nan")),
    ],
)
def test_out_of_range_values_are_refused_with_the_key_named(key, value):
    with pytest.raises(ConfigError, match=key):
        OptimizationConfig.from_dict({key: value})
    with pytest.raises(ConfigError, match=key):
        OptimizationConfig(**{key: value})


def test_errors_name_where_the_config_came_from(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"learning_rate": -1.0}))
    with pytest.raises(ConfigError, match=r"run\.json\.learning_rate: must be > 0"):
        OptimizationConfig.from_json(path)
    with pytest.raises(ConfigError, match=r"^config\.optimizer\.power"):
        OptimizationConfig.from_dict({"power": -1.0}, where="config.optimizer")


def test_schedule_rechecks_a_config_changed_after_construction():
    config = OptimizationConfig(total_steps=10)
    config.learning_rate = -1.0
    with pytest.raises(ConfigError, match="learning_rate"):
        learning_rate_schedule(config)


def test_patterns_given_as_a_tuple_survive_a_round_trip():
    config = OptimizationConfig(exclude_from_weight_decay=("bias",))
    assert OptimizationConfig.from_dict(json.loads(json.dumps(config.as_dict()))) == config


def test_warmup_longer_than_training_is_refused():
    with pytest.raises(ConfigError, match="warmup_steps"):
        OptimizationConfig(warmup_steps=11).with_total_steps(10)


def test_none_values_are_allowed_where_documented():
    data = {"clip_norm": None, "total_steps": None, "warmup_steps": None}
    config = OptimizationConfig.from_dict(data)
    assert config.clip_norm is None and config.total_steps is None


# --- parameter groups -----------------------------------------------------------------------


def test_no_decay_on_norms_and_biases():
    groups = parameter_groups(tiny_model(), OptimizationConfig())
    assert groups_by_decay(groups) == {0.01: DECAYED, 0.0: NOT_DECAYED}


def test_groups_hold_each_trainable_tensor_once():
    model = tiny_model()
    groups = parameter_groups(model, OptimizationConfig())
    grouped = [p for group in groups for p in group["params"]]
    trainable = [p for p in model.parameters() if p.requires_grad]  # deduplicates tied weights
    assert len(grouped) == len({id(p) for p in grouped}) == len(trainable)
    assert {id(p) for p in grouped} == {id(p) for p in trainable}
    for group in groups:
        assert len(group["params"]) == len(group["param_names"])
        named = dict(model.named_parameters())
        assert all(named[n] is p for n, p in zip(group["param_names"], group["params"]))


def test_patterns_and_the_structural_rule_can_be_changed():
    config = OptimizationConfig(exclude_from_weight_decay=[], exclude_norm_and_bias=False)
    groups = parameter_groups(tiny_model(), config)
    assert groups_by_decay(groups) == {0.01: DECAYED | NOT_DECAYED}

    config = OptimizationConfig(exclude_from_weight_decay=["^classifier\\."])
    by_decay = groups_by_decay(parameter_groups(tiny_model(), config))
    assert by_decay[0.0] == NOT_DECAYED | {"classifier.weight"}

    # The structural rule alone still catches norms and biases under any name.
    config = OptimizationConfig(exclude_from_weight_decay=[])
    assert groups_by_decay(parameter_groups(tiny_model(), config))[0.0] == NOT_DECAYED


def test_a_model_without_trainable_parameters_is_an_error():
    model = tiny_model().requires_grad_(False)
    with pytest.raises(ConfigError, match="no trainable parameters"):
        parameter_groups(model, OptimizationConfig())


def test_decoupled_decay_touches_only_the_decay_group():
    # With zero gradients Adam's update is 0, so each weight moves only by its decay:
    # p <- p * (1 - lr * weight_decay) in the decay group, unchanged in the other.
    model = tiny_model()
    config = OptimizationConfig(learning_rate=0.1, weight_decay=0.5, warmup_steps=0, total_steps=10)
    optimizer, _ = build_optimizer(model, config)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    for name, p in model.named_parameters():
        if name in DECAYED:
            torch.testing.assert_close(p, before[name] * (1 - 0.1 * 0.5))
        else:
            assert torch.equal(p, before[name]), name


# --- optimizer and scheduler ----------------------------------------------------------------


def train_steps(model, optimizer, scheduler, steps: int, config=None) -> None:
    ids = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    for _ in range(steps):
        logits, lm = model(ids)
        loss = logits.square().mean() + lm.square().mean()
        optimizer.zero_grad()
        loss.backward()
        if config is not None:
            clip_gradients(optimizer, config)
        optimizer.step()
        scheduler.step()


def test_optimizer_settings_come_from_the_config():
    config = custom_config()
    optimizer, _ = build_optimizer(tiny_model(), config)
    assert isinstance(optimizer, torch.optim.AdamW)
    for group in optimizer.param_groups:
        assert group["betas"] == (0.85, 0.98)
        assert group["eps"] == 1e-7
        assert group["foreach"] is False
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.05, 0.0]

    optimizer, _ = build_optimizer(tiny_model(), OptimizationConfig(total_steps=10))
    for group in optimizer.param_groups:  # the default: one fused AdamW kernel
        assert (group["eps"], group["betas"], group["fused"]) == (1e-6, (0.9, 0.999), True)


@pytest.mark.parametrize("implementation", ["foreach", "for_loop", "fused"])
def test_learning_rate_after_k_real_steps_equals_the_schedule(implementation):
    config = OptimizationConfig(
        learning_rate=1e-3, warmup_steps=3, total_steps=10, implementation=implementation
    )
    schedule = learning_rate_schedule(config)
    model = tiny_model()
    try:
        optimizer, scheduler = build_optimizer(model, config)
    except RuntimeError as error:  # fused kernels need a build that has them
        pytest.skip(f"fused AdamW unavailable here: {error}")
    assert [g["lr"] for g in optimizer.param_groups] == [schedule(0)] * 2
    for k in range(1, 13):
        train_steps(model, optimizer, scheduler, 1, config)
        assert scheduler.get_last_lr() == [schedule(k)] * 2, k
        assert [g["lr"] for g in optimizer.param_groups] == [schedule(k)] * 2, k


def test_training_changes_weights_once_warmup_starts():
    model = tiny_model()
    config = OptimizationConfig(learning_rate=1e-2, total_steps=20)
    optimizer, scheduler = build_optimizer(model, config)
    before = model.pooler.weight.detach().clone()
    train_steps(model, optimizer, scheduler, 1)  # step 0 runs at schedule(0) = 0
    assert torch.equal(model.pooler.weight, before)
    train_steps(model, optimizer, scheduler, 2)
    assert not torch.equal(model.pooler.weight, before)


def test_scheduler_state_survives_a_weights_only_checkpoint():
    config = OptimizationConfig(learning_rate=1e-3, total_steps=20)
    schedule = learning_rate_schedule(config)
    model = tiny_model()
    optimizer, scheduler = build_optimizer(model, config)
    train_steps(model, optimizer, scheduler, 5)

    buffer = io.BytesIO()
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)

    resumed_opt, resumed_sched = build_optimizer(model, config)
    resumed_opt.load_state_dict(state["optimizer"])
    resumed_sched.load_state_dict(state["scheduler"])
    assert resumed_sched.get_last_lr() == [schedule(5)] * 2
    train_steps(model, resumed_opt, resumed_sched, 1)
    assert resumed_sched.get_last_lr() == [schedule(6)] * 2


def test_clip_gradients_caps_the_global_norm():
    model = tiny_model()
    optimizer, _ = build_optimizer(model, OptimizationConfig(total_steps=10, clip_norm=0.5))
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for p in params:
        p.grad = torch.full_like(p, 3.0)
    expected = 3.0 * math.sqrt(sum(p.numel() for p in params))
    norm = clip_gradients(optimizer, OptimizationConfig(clip_norm=0.5))
    assert norm == pytest.approx(expected, rel=1e-6)
    clipped = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))
    assert float(clipped) == pytest.approx(0.5, rel=1e-5)
    assert clip_gradients(optimizer, OptimizationConfig(clip_norm=None)) is None
    untouched = torch.stack([p.grad.norm() for p in params]).norm()
    assert float(untouched) == pytest.approx(0.5, rel=1e-5)


def test_importing_optim_does_not_import_torch():
    code = "import sys, bertfit.train.optim, bertfit.train.metrics; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


# --- layer-wise learning-rate decay ---------------------------------------------------------


def bert_classifier(tmp_path):
    """A 2-layer BertClassifier: embeddings, layers.0, layers.1, pooler, head."""
    return make_tiny_classifier(tmp_path).model


def expected_depth(name: str) -> int:
    """Head and pooler 0, top layer (layers.1) 1, layers.0 2, embeddings 3 (BEiT's rule)."""
    if name.startswith("encoder.embeddings."):
        return 3
    if name.startswith("encoder.layers."):
        return 2 - int(name.split(".")[2])
    assert name.startswith(("encoder.pooler.", "classifier.")), name
    return 0


def classifier_steps(model, optimizer, scheduler, steps: int) -> None:
    ids = torch.tensor([[2, 5, 6, 3], [2, 7, 8, 3]])
    for _ in range(steps):
        loss = model(ids, torch.ones_like(ids)).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()


def test_layer_decay_scales_every_group_by_its_depth_at_every_step(tmp_path):
    decay = 0.6
    config = OptimizationConfig(
        learning_rate=1e-3, warmup_steps=4, total_steps=12, layer_decay=decay
    )
    schedule = learning_rate_schedule(config)
    model = bert_classifier(tmp_path)
    optimizer, scheduler = build_optimizer(model, config)
    depths = []
    for group in optimizer.param_groups:
        (depth,) = {expected_depth(name) for name in group["param_names"]}  # one depth a group
        depths.append(depth)
    assert depths == [0, 0, 1, 1, 2, 2, 3, 3]  # head first: its group follows the schedule
    for k in range(0, 15):  # warmup (0-3), decay (4-11) and after the horizon
        if k:
            classifier_steps(model, optimizer, scheduler, 1)
        rates = [group["lr"] for group in optimizer.param_groups]
        assert scheduler.get_last_lr() == rates
        assert rates[0] == schedule(k), k
        for rate, depth in zip(rates, depths):
            assert close(rate, schedule(k) * decay**depth), (k, depth)
            if schedule(k) > 0:
                assert close(rate / rates[0], decay**depth), (k, depth)


def test_layer_decay_keeps_the_no_decay_split(tmp_path):
    model = bert_classifier(tmp_path)
    plain = groups_by_decay(parameter_groups(model, OptimizationConfig()))
    groups = parameter_groups(model, OptimizationConfig(layer_decay=0.8))
    assert len(groups) == 8  # a weight-decay and a no-decay group at each of 4 depths
    merged: dict[float, set[str]] = {}
    for group in groups:
        merged.setdefault(group["weight_decay"], set()).update(group["param_names"])
    assert merged == plain
    assert "encoder.layers.0.attention_norm.weight" in plain[0.0]
    assert "encoder.embeddings.word_embeddings.weight" in plain[0.01]
    names = [name for group in groups for name in group["param_names"]]
    assert sorted(names) == sorted(plain[0.0] | plain[0.01])  # each parameter once


def test_layer_decay_is_the_update_each_group_gets(tmp_path):
    # With zero gradients AdamW moves a decayed weight only by p * (1 - lr * weight_decay):
    # the lr each group really uses, not only the one it reports.
    model = bert_classifier(tmp_path)
    config = OptimizationConfig(
        learning_rate=0.1, weight_decay=0.5, warmup_steps=0, total_steps=10, layer_decay=0.5
    )
    optimizer, _ = build_optimizer(model, config)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    named = dict(model.named_parameters())
    for name in ("classifier.dense.weight", "encoder.layers.1.attention.qkv.weight",
                 "encoder.layers.0.feed_forward.output.weight",
                 "encoder.embeddings.word_embeddings.weight"):  # fmt: skip
        rate = 0.1 * 0.5 ** expected_depth(name)
        torch.testing.assert_close(named[name], before[name] * (1 - rate * 0.5))


def test_layer_decay_resumes_from_a_weights_only_checkpoint(tmp_path):
    config = OptimizationConfig(learning_rate=1e-3, total_steps=20, layer_decay=0.7)
    model = bert_classifier(tmp_path)
    optimizer, scheduler = build_optimizer(model, config)
    classifier_steps(model, optimizer, scheduler, 5)
    buffer = io.BytesIO()
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    resumed_opt, resumed_sched = build_optimizer(model, config)
    resumed_opt.load_state_dict(state["optimizer"])
    resumed_sched.load_state_dict(state["scheduler"])
    assert resumed_sched.get_last_lr() == scheduler.get_last_lr()
    classifier_steps(model, optimizer, scheduler, 1)
    classifier_steps(model, resumed_opt, resumed_sched, 1)
    assert resumed_sched.get_last_lr() == scheduler.get_last_lr()


def test_layer_decay_needs_numbered_layers():
    # TinyBert's layers are encoder.0 and encoder.1: no "layers.N" to count depths by.
    with pytest.raises(ConfigError, match="layer_decay: the model has no numbered"):
        parameter_groups(tiny_model(), OptimizationConfig(layer_decay=0.9))
    assert len(parameter_groups(tiny_model(), OptimizationConfig(layer_decay=1.0))) == 2
