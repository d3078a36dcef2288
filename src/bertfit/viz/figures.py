"""Matplotlib figures of :mod:`bertfit.viz.data`, drawn headless and saved atomically.

Figures are built with ``matplotlib.figure.Figure`` directly, never ``pyplot``: no GUI backend,
no global figure registry to leak, safe on a server without a display. In a notebook, a
returned figure displays itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bertfit.config import atomic_path
from bertfit.errors import ConfigError
from bertfit.viz.data import (
    INPUT_NAMES,
    ConfusionData,
    HistoryData,
    InputsData,
    ScheduleData,
    moving_average,
)

#: Image formats :func:`save_figure` writes, by file suffix.
FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
DEFAULT_DPI = 120


def _figure(width: float, height: float):
    try:  # matplotlib is the viz extra, loaded only when a figure is drawn
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError(
            "plots need matplotlib: pip install matplotlib (or bertfit[viz])"
        ) from None
    return Figure(figsize=(width, height), layout="constrained")


def save_figure(figure, path: str | Path, dpi: int = DEFAULT_DPI) -> Path:
    """Write ``figure`` to ``path`` (``.png``, ``.svg`` or ``.pdf``), complete or not at all."""
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(f"{path}: expected a file name ending in {', '.join(FORMATS)}")
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format=fmt, dpi=dpi)
    return path


# -- schedule -----------------------------------------------------------------------------------


def schedule_figure(data: ScheduleData):
    """The learning rate against the train step, as in the reference tutorial's plot.

    ``axes[0].lines[0]`` holds the schedule's points; a second line, when present, the rates a
    run used.
    """
    figure = _figure(7.0, 4.0)
    ax = figure.add_subplot()
    ax.plot(data.steps, data.learning_rates, color="tab:blue", label="schedule")
    if data.used_steps is not None:
        ax.plot(
            data.used_steps,
            data.used_learning_rates,
            linestyle="none",
            marker=".",
            markersize=3,
            color="tab:orange",
            label="used in training",
        )
        ax.legend(loc="upper right")
    if data.warmup_steps:
        ax.axvline(data.warmup_steps, color="grey", linestyle=":", linewidth=1)
        ax.annotate(
            f"warmup ends: step {data.warmup_steps}, peak {data.peak_learning_rate:.3g}",
            xy=(data.warmup_steps, data.peak_learning_rate),
            xytext=(6, 6),
            textcoords="offset points",
            va="bottom",
            fontsize=9,
        )
    ax.set_xlabel("Train step")
    ax.set_ylabel("Learning rate")
    ax.set_title(f"Learning-rate schedule ({data.total_steps} steps)")
    ax.set_xlim(0, data.total_steps)
    # Headroom above the peak for the annotation.
    ax.set_ylim(0, max(float(np.max(data.learning_rates)), data.peak_learning_rate) * 1.15 or 1)
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    ax.grid(alpha=0.3)
    return figure


# -- packed inputs ------------------------------------------------------------------------------


def inputs_figure(data: InputsData):
    """The three packed inputs of a batch as heat maps (rows: examples, columns: positions).

    ``axes[i].images[0]`` holds ``INPUT_NAMES[i]``'s array exactly.
    """
    rows, width = data.input_word_ids.shape
    figure = _figure(8.0, 2.2 + 3 * max(1.4, min(3.2, rows * 0.09)))
    axes = figure.subplots(3, 1, sharex=True)
    styles = {
        "input_word_ids": ("viridis", "token id"),
        "input_mask": ("Greys", "1: token, 0: padding"),
        "input_type_ids": ("coolwarm", "segment"),
    }
    for ax, name in zip(axes, INPUT_NAMES):
        array = getattr(data, name)
        cmap, label = styles[name]
        image = ax.imshow(array, aspect="auto", interpolation="nearest", cmap=cmap)
        ax.set_title(name, loc="left", fontsize=10, family="monospace")
        ax.set_ylabel("example")
        bar = figure.colorbar(image, ax=ax, pad=0.01, fraction=0.04)
        bar.set_label(label, fontsize=8)
        if name != "input_word_ids":
            bar.set_ticks(sorted({int(v) for v in np.unique(array)}))
    axes[-1].set_xlabel("position")
    title = f"Packed inputs: {rows} examples x {width} positions"
    figure.suptitle(f"{title}\n{data.source}" if data.source else title, fontsize=10)
    return figure


# -- history ------------------------------------------------------------------------------------


def _smoothing_window(count: int) -> int:
    return max(1, count // 25)


def _mark_epochs(ax, data: HistoryData) -> None:
    for record in data.evaluations:
        ax.axvline(record["step"], color="grey", linestyle=":", linewidth=0.8)


def history_figure(data: HistoryData):
    """A run's curves against the step: loss, evaluation metrics, learning rate, gradient norm.

    Axes in order: loss (``lines[0]`` the per-step loss, then its moving average, then the
    mean loss of each epoch; the average only for runs long enough to need smoothing), metrics
    (one line per metric key, a point per evaluation),
    learning rate and gradient norm (per step). Dotted lines mark the evaluations.
    """
    figure = _figure(11.0, 7.0)  # first: it says how to install matplotlib when it is missing
    from matplotlib.ticker import MaxNLocator  # after _figure, which checked matplotlib is there

    (loss_ax, metric_ax), (lr_ax, norm_ax) = figure.subplots(2, 2, sharex=True)
    steps, losses = data.series("loss")
    if steps.size:
        few = {"marker": ".", "alpha": 0.8} if steps.size <= 50 else {"alpha": 0.35}
        loss_ax.plot(steps, losses, color="tab:blue", linewidth=0.8, label="step", **few)
        window = _smoothing_window(steps.size)
        if window > 1:
            smooth = moving_average(losses, window)
            loss_ax.plot(steps, smooth, color="tab:blue", label=f"mean of {window} steps")
    epoch_steps, epoch_losses = data.series("train_loss", "evaluations")
    loss_ax.plot(epoch_steps, epoch_losses, "o-", color="tab:red", markersize=4, label="epoch mean")
    loss_ax.set_title("Training loss")
    loss_ax.legend(fontsize=8)
    for key in data.metric_keys:
        x, y = data.series(key, "evaluations")
        metric_ax.plot(x, y, "o-", markersize=4, label=key)
    # The last evaluation of an epoch is its end (trainer.eval_every_steps adds others).
    epoch_ends = {record["epoch"]: record["step"] for record in data.evaluations}
    for epoch, step in epoch_ends.items():
        metric_ax.annotate(
            f"epoch {epoch}",
            xy=(step, 0),
            xycoords=("data", "axes fraction"),
            xytext=(2, 2),
            textcoords="offset points",
            fontsize=7,
            color="grey",
        )
    metric_ax.set_title("Evaluation metrics")
    if data.metric_keys:
        metric_ax.legend(fontsize=8)
    for ax, key, title in (
        (lr_ax, "learning_rate", "Learning rate"),
        (norm_ax, "grad_norm", "Gradient norm (before clipping)"),
    ):
        x, y = data.series(key)
        marker = "." if x.size <= 50 else None
        ax.plot(x, y, color="tab:green" if key == "learning_rate" else "tab:purple", marker=marker)
        ax.set_title(title)
        ax.set_xlabel("step")
    lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    for ax in (loss_ax, metric_ax, lr_ax, norm_ax):
        _mark_epochs(ax, data)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
    figure.suptitle(_history_title(data), fontsize=10)
    return figure


def _history_title(data: HistoryData) -> str:
    title = f"Training history: {data.source}" if data.source else "Training history"
    _, rates = data.series("examples_per_second")
    if rates.size:
        title += f"  ({np.mean(rates):.1f} examples/s on average)"
    if not data.steps:
        title += "\n(no steps.jsonl: per-epoch records only)"
    return title


# -- tune ---------------------------------------------------------------------------------------


def tune_figure(data):
    """A search (:class:`bertfit.tune.report.TuneData`): its optimization history beside the
    searched keys' importances.

    ``axes[0]``: each COMPLETE trial's value (``collections[0]``), each PRUNED trial's last
    reported value (``collections[1]``) and the best so far (``lines[0]``). ``axes[1]``: one
    bar per key, most important on top, or the note that says why there are none.
    """
    figure = _figure(11.0, 4.5)
    from matplotlib.ticker import MaxNLocator  # after _figure, which checked matplotlib is there

    history_ax, importance_ax = figure.subplots(1, 2)
    for state, style in (
        ("COMPLETE", {"color": "tab:blue", "marker": "o", "label": "complete"}),
        ("PRUNED", {"color": "grey", "marker": "x", "label": "pruned (last evaluation)"}),
    ):
        points = [(n, v) for n, s, v in zip(data.numbers, data.states, data.values)
                  if s == state and v is not None]  # fmt: skip
        x, y = zip(*points) if points else ((), ())
        history_ax.scatter(x, y, s=24, **style)
    best = [(n, v) for n, v in zip(data.numbers, data.best_so_far) if v is not None]
    x, y = zip(*best) if best else ((), ())
    history_ax.step(x, y, where="post", color="tab:red", label="best so far")
    history_ax.set_title(f"Optimization history ({len(data.numbers)} trials)")
    history_ax.set_xlabel("trial")
    history_ax.set_ylabel(data.metric)
    history_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    history_ax.grid(alpha=0.3)
    history_ax.legend(fontsize=8)
    importance_ax.set_title("Parameter importances (fANOVA)")
    if data.importances:
        keys = list(data.importances)[::-1]  # the most important on top
        importance_ax.barh(keys, [data.importances[key] for key in keys], color="tab:blue")
        importance_ax.set_xlabel("share of the value's variance")
        importance_ax.grid(alpha=0.3, axis="x")
    else:
        importance_ax.set_axis_off()
        importance_ax.text(
            0.5, 0.5, data.note or "no importances", ha="center", va="center", wrap=True,
            fontsize=9, transform=importance_ax.transAxes,
        )  # fmt: skip
    figure.suptitle(f"Study {data.study}", fontsize=10)
    return figure


# -- confusion matrix ---------------------------------------------------------------------------


def confusion_figure(data: ConfusionData, normalize: bool = False):
    """The confusion matrix as a heat map with counts (``axes[0].images[0]`` holds it)."""
    size = len(data.label_names)
    figure = _figure(2.0 + 1.2 * size, 1.6 + 1.1 * size)
    ax = figure.add_subplot()
    shown = data.normalized() if normalize else data.matrix
    image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    shares = data.normalized()
    threshold = (shown.max() if shown.size else 0) / 2
    for (row, col), count in np.ndenumerate(data.matrix):
        value = shown[row, col]
        ax.text(
            col,
            row,
            f"{count}\n{shares[row, col]:.0%}",
            ha="center",
            va="center",
            fontsize=9,
            color="white" if value > threshold else "black",
        )
    ticks = range(size)
    ax.set_xticks(ticks, data.label_names, rotation=30 if size > 3 else 0, ha="right")
    ax.set_yticks(ticks, data.label_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    split = f" on {data.split}" if data.split else ""
    total = int(data.matrix.sum())
    ax.set_title(f"Confusion matrix{split}\n{total} examples, accuracy {data.accuracy:.3f}")
    return figure


# -- explanations -------------------------------------------------------------------------------


def explanation_figure(explanation):
    """Word attributions of a :class:`bertfit.explain.Explanation` as heat maps: one row of
    words per input text, coloured by attribution (green toward the label, red away), on one
    colour scale symmetric around 0 as in the Captum tutorials.

    ``axes[i].images[0]`` holds text ``i``'s attributions [1, words] exactly.
    """
    texts = explanation.texts
    longest = max((len(text.words) for text in texts), default=1)
    figure = _figure(min(24.0, 2.0 + 0.42 * max(longest, 6)), 1.3 + 1.5 * len(texts))
    axes = np.atleast_1d(figure.subplots(len(texts), 1))
    scale = float(np.abs(explanation.attributions).max()) if explanation.words else 0.0
    scale = scale or 1.0
    image = None
    for ax, text in zip(axes, texts):
        values = np.asarray([[w.attribution for w in text.words]], dtype=np.float64)
        image = ax.imshow(
            values if values.size else np.zeros((1, 1)),
            aspect="auto",
            cmap="RdYlGn",
            vmin=-scale,
            vmax=scale,
            interpolation="nearest",
        )
        ax.set_xticks(range(len(text.words)))
        ax.set_xticklabels([w.text for w in text.words], rotation=60, ha="right", fontsize=9)
        for tick, word in zip(ax.get_xticklabels(), text.words):
            if not word.seen:
                tick.set_color("grey")  # beyond the model's length: not seen, no attribution
        ax.set_yticks([])
        ax.set_title(text.name, loc="left", fontsize=10, family="monospace")
    bar = figure.colorbar(image, ax=list(axes), pad=0.01, fraction=0.03)
    bar.set_label("attribution", fontsize=8)
    label = explanation.label if explanation.label is not None else "score"
    if explanation.probabilities is not None:
        label += f" (p={explanation.probabilities[explanation.class_id]:.3f})"
    method = explanation.method.replace("_", " ")
    figure.suptitle(f"Why {label}: word attributions by {method}", fontsize=10)
    return figure
