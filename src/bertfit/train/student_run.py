"""``bertfit distill RUN --output RUN2``: a smaller student of a finished run, as a run of its own.

:func:`distill_run` checks the teacher run and the options, writes the student run's config
(the teacher's own, with ``distill`` set: teacher, layers, temperature, alpha, ...) and trains it
with :func:`bertfit.train.run.train_run`, so ``RUN2`` is an ordinary run directory (see
:mod:`bertfit.train.distillation` for what distillation changes in it).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from bertfit.errors import ConfigError
from bertfit.model.config import EncoderConfig
from bertfit.model.student import LAYER_CHOICES, choose_layers
from bertfit.paths import BERTFIT_FILE, find_model_dir
from bertfit.train.config import DEFAULT_STUDENT_LAYERS, DistillConfig, RunConfig
from bertfit.train.config_file import Override, load_run_config
from bertfit.train.phases import PhaseTimer
from bertfit.train.run import train_run
from bertfit.train.trainer import TrainResult

# The keyword defaults below are DistillConfig's own, read once here so they are never repeated.
_DEFAULTS = DistillConfig()


def distill_config(
    teacher: str | Path,
    layers: int = DEFAULT_STUDENT_LAYERS,
    *,
    init: str = _DEFAULTS.init,
    temperature: float = _DEFAULTS.temperature,
    alpha: float = _DEFAULTS.alpha,
    augment: int = _DEFAULTS.augment,
    augment_rate: float = _DEFAULTS.augment_rate,
    layer_weight: float = _DEFAULTS.layer_weight,
    token_weight: float = _DEFAULTS.token_weight,
    seed: int | None = None,
    epochs: int | None = None,
    overrides: Sequence[Override] = (),
) -> RunConfig:
    """The run config of a ``layers``-layer student of the finished run ``teacher``.

    It is the teacher's config (task, data, recipe, precision) with ``distill`` set and
    ``model`` the teacher's saved model; ``seed`` and ``epochs`` default to the teacher's.
    ``init`` picks the teacher layers the student starts from (one of
    :data:`bertfit.model.student.LAYER_CHOICES`, or indices such as ``"0,2,4"``).
    ``augment`` adds that many teacher-labelled copies of each training input with some words
    replaced (:mod:`bertfit.train.augment`), each replacing ``augment_rate`` of its words.
    ``layer_weight`` > 0 also matches each student layer's first-token vector to its teacher
    layer's (:func:`bertfit.train.losses.layer_match_loss`); ``token_weight`` > 0 matches every
    token's vector instead, running the teacher on each training batch
    (:func:`bertfit.train.losses.token_match_loss`; each step costs about 1.7x as long).
    Every default is :class:`~bertfit.train.config.DistillConfig`'s.
    ``overrides`` sets other dotted config keys as ``bertfit train``'s ``KEY=VALUE`` do
    (``[("trainer.max_steps", 5)]``). Raises :class:`ConfigError` for a teacher that is not a
    finished run and for options out of range.
    """
    teacher = Path(teacher)
    model_dir = check_finished_run(teacher)
    teacher_layers = EncoderConfig.from_model_dir(model_dir).num_layers
    chosen = choose_layers(teacher_layers, layers, init)
    distill = {
        "model": str(model_dir.resolve()),
        # The teacher's re-initialized layers were its own start; the student starts from
        # the teacher's fine-tuned layers (RunConfig refuses re-initializing them).
        "reinit_layers": 0,
        "distill.teacher": str(teacher.resolve()),
        "distill.layers": chosen,
        "distill.init": init if init in LAYER_CHOICES else "custom",
        "distill.temperature": temperature,
        "distill.alpha": alpha,
        "distill.augment": augment,
        "distill.augment_rate": augment_rate,
        "distill.layer_weight": layer_weight,
        "distill.token_weight": token_weight,
        "trainer.seed": seed,
        "trainer.epochs": epochs,
    }
    given = [(key, value) for key, value in distill.items() if value is not None]
    # The teacher's config.json, then the student's settings, then the caller's overrides.
    config = load_run_config(teacher, [*given, *overrides])
    config.validate()
    if config.data.task_type == "multi_label":
        # The soft-target loss is a softmax's KL divergence; a multi-label teacher's outputs
        # are independent sigmoids, which it does not match.
        raise ConfigError(f"{teacher}: distilling a multi-label model is not supported")
    return config


def check_finished_run(run: Path) -> Path:
    """The saved model directory of ``run`` if it is a finished training run; otherwise
    :class:`ConfigError` says what it is missing."""
    if (run / BERTFIT_FILE).is_file():
        raise ConfigError(
            f"{run}: a saved model directory, not a bertfit run directory; distill needs the "
            "teacher's run (its config.json holds the task, data and recipe)"
        )
    if not (run / "config.json").is_file():
        raise ConfigError(
            f"{run}: not a bertfit run directory (no config.json); distill needs the teacher's "
            "run directory as `bertfit train --output` wrote it"
        )
    if not (run / "results.json").is_file():
        raise ConfigError(
            f"{run}: not a finished run (no results.json); finish it with "
            f"`bertfit train --resume {run}` first"
        )
    return find_model_dir(run)


def check_output(output: Path, teacher: Path, overwrite: bool) -> None:
    """``output`` may be written: new or empty, or ``overwrite`` given; never the teacher."""
    if output.resolve() == teacher.resolve():
        raise ConfigError(f"--output {output} is the teacher run itself; choose another")
    if output.exists() and not overwrite and (not output.is_dir() or any(output.iterdir())):
        raise ConfigError(f"{output} already exists; choose another --output or --overwrite")


def distill_run(
    teacher: str | Path,
    output: str | Path,
    layers: int = DEFAULT_STUDENT_LAYERS,
    *,
    init: str = _DEFAULTS.init,
    temperature: float = _DEFAULTS.temperature,
    alpha: float = _DEFAULTS.alpha,
    augment: int = _DEFAULTS.augment,
    augment_rate: float = _DEFAULTS.augment_rate,
    layer_weight: float = _DEFAULTS.layer_weight,
    token_weight: float = _DEFAULTS.token_weight,
    seed: int | None = None,
    epochs: int | None = None,
    overrides: Sequence[Override] = (),
    overwrite: bool = False,
    progress: bool | None = None,
    phases: PhaseTimer | None = None,
) -> TrainResult:
    """Distill the finished run ``teacher`` into a ``layers``-layer student run in ``output``.

    The options are :func:`distill_config`'s. Everything is checked before anything is
    written; ``overwrite`` replaces an existing ``output`` entirely (a stale checkpoint of an
    earlier run there could otherwise be resumed).
    """
    teacher, output = Path(teacher), Path(output)
    config = distill_config(
        teacher,
        layers,
        init=init,
        temperature=temperature,
        alpha=alpha,
        augment=augment,
        augment_rate=augment_rate,
        layer_weight=layer_weight,
        token_weight=token_weight,
        seed=seed,
        epochs=epochs,
        overrides=overrides,
    )
    check_output(output, teacher, overwrite)
    if overwrite and output.is_dir():
        shutil.rmtree(output)
    elif overwrite and output.exists():
        output.unlink()
    return train_run(config, output, progress, phases=phases)
