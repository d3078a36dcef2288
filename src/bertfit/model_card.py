"""A saved model's Hugging Face model card: ``README.md`` with YAML metadata and a short body.

The card is how a fine-tuned model describes itself wherever it goes (the Hugging Face Hub
renders and indexes it; ``transformers``' Trainer writes one). Its metadata holds
``library_name``, ``base_model`` (the encoder's Hub id where it has one, else the name or
path given), ``datasets`` for GLUE tasks, ``metrics``, ``pipeline_tag`` and a ``model-index``
with the dev results in the Hub's schema; its body the task and labels, the data sizes, the
recipe, the calibration temperature, how to load the model in bertfit and in transformers,
and the limits a user should know.

Everything comes from the files a run leaves (``model/bertfit.json``, ``model/config.json``,
``config.json``, ``results.json``, ``calibration.json``), so :func:`write_model_card` is the
one writer for every caller: ``bertfit train`` and ``bertfit distill`` once their results are
final, ``bertfit calibrate`` when it changes the temperature, and any later command that keeps
a run's model (a search's best trial). A bare model directory gets the card of what it knows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCardData

from bertfit.config import atomic_write_text, read_json
from bertfit.data.tasks import TASKS
from bertfit.errors import ConfigError
from bertfit.model.presets import hub_id_of
from bertfit.paths import (
    BERTFIT_FILE,
    CALIBRATION_FILE,
    MODEL_CARD_FILE,
    RUN_MODEL_DIR,
    find_model_dir,
)
from bertfit.problem import MULTI_LABEL, REGRESSION, stored_problem_type

#: Where the GLUE tasks live on the Hugging Face Hub; each task is a config of it.
GLUE_DATASET = "nyu-mll/glue"

#: bertfit's metric names -> (the Hub's metric id, the name it shows).
HUB_METRICS = {
    "accuracy": ("accuracy", "Accuracy"),
    "f1": ("f1", "F1"),
    "matthews_correlation": ("matthews_correlation", "Matthews correlation"),
    "pearson": ("pearsonr", "Pearson correlation"),
    "spearman": ("spearmanr", "Spearman correlation"),
    # A multi-label model's (the Hub tells micro from macro averaging by the metric's config).
    "micro_f1": ("f1", "Micro F1"),
    "macro_f1": ("f1", "Macro F1"),
    "subset_accuracy": ("accuracy", "Subset accuracy"),
}
#: The Hub's ``metric_config`` of the metrics that need one.
HUB_METRIC_CONFIGS = {"micro_f1": "micro", "macro_f1": "macro"}

# What each GLUE task asks, in a phrase for the card's first line.
_GLUE_QUESTIONS = {
    "cola": "whether an English sentence is grammatically acceptable",
    "sst2": "the sentiment of a movie-review sentence",
    "mrpc": "whether two sentences are paraphrases of each other",
    "stsb": "how similar two sentences are in meaning, a score from 0 to 5",
    "qqp": "whether two Quora questions ask the same thing",
    "mnli": "whether a premise entails, contradicts or is neutral to a hypothesis",
    "qnli": "whether a sentence answers a question",
    "rte": "whether one text entails another",
    "wnli": "whether a sentence with its pronoun replaced follows from the original",
}

#: Where the card's usage examples point; the reader puts the model's own path there.
_PLACEHOLDER = "path/to/model"


@dataclass
class CardFacts:
    """What a model card is written from: a saved model's files and, in a run, the run's.

    ``info`` is ``bertfit.json``, ``encoder`` the model's Hugging Face ``config.json``;
    ``run``, ``results`` and ``calibration`` are the run's ``config.json``, ``results.json``
    and ``calibration.json`` (None for a bare model directory, or a run without them).
    ``base_model`` is the encoder fine-tuned (for a distilled model, its teacher's).
    """

    name: str
    info: dict[str, Any]
    encoder: dict[str, Any]
    run: dict[str, Any] | None = None
    results: dict[str, Any] | None = None
    calibration: dict[str, Any] | None = None
    base_model: str | None = None

    @property
    def problem_type(self) -> str:
        """The model's problem type: its ``bertfit.json`` says, else its ``config.json``, as
        loading decides."""
        stored = self.info.get("problem_type", self.encoder.get("problem_type"))
        outputs = self.encoder.get("num_labels", len(self.encoder.get("id2label") or {}) or 2)
        return stored_problem_type(stored, outputs, "the model's bertfit.json")

    @property
    def regression(self) -> bool:
        """Whether the model outputs one score rather than class probabilities."""
        return self.problem_type == REGRESSION

    @property
    def multi_label(self) -> bool:
        """Whether the model gives each label its own probability (sigmoids, thresholds)."""
        return self.problem_type == MULTI_LABEL

    @property
    def glue_task(self) -> str | None:
        """The GLUE task's name, or None for the user's own data."""
        task = self.info.get("task")
        return task if task in TASKS else None


def write_model_card(path: str | Path) -> Path:
    """Write (or rewrite) the model card of a run's model, or of a saved model directory.

    ``path`` is a run directory or a model directory; the card goes to ``README.md`` in the
    model directory, atomically. Returns its path.
    """
    model_dir = find_model_dir(path)
    target = model_dir / MODEL_CARD_FILE
    atomic_write_text(target, render_model_card(card_facts(model_dir)))
    return target


def card_facts(model_dir: str | Path) -> CardFacts:
    """The facts of the saved model in ``model_dir`` and of its run, if it is a run's model."""
    model_dir = Path(model_dir)
    info = read_json(model_dir / BERTFIT_FILE)
    encoder = read_json(model_dir / "config.json")
    run_dir = model_dir.parent
    is_run = model_dir.name == RUN_MODEL_DIR and (run_dir / "config.json").is_file()
    if not is_run:
        return CardFacts(model_dir.resolve().name, info, encoder)
    run = read_json(run_dir / "config.json")
    results = _read_optional(run_dir / "results.json")
    calibration = _read_optional(run_dir / CALIBRATION_FILE)
    if calibration is None and results is not None:
        calibration = results.get("calibration")
    return CardFacts(
        run_dir.resolve().name, info, encoder, run, results, calibration, base_model_of(run)
    )


def base_model_of(run: dict[str, Any]) -> str | None:
    """The encoder a run fine-tuned, as the Hub knows it where it can: the preset's or
    cache's Hub id, else the name or path the run recorded. A distilled run's is its
    teacher's (followed back through teachers that are themselves distilled)."""
    seen: set[str] = set()
    while True:
        teacher = (run.get("distill") or {}).get("teacher")
        if not teacher or teacher in seen:
            break
        seen.add(teacher)
        teacher_config = Path(teacher) / "config.json"
        if not teacher_config.is_file():
            break  # the teacher run is gone: its saved model, recorded as "model", is all we know
        run = read_json(teacher_config)
    model = run.get("model")
    return hub_id_of(model) or (None if model is None else str(model))


def render_model_card(facts: CardFacts) -> str:
    """The whole ``README.md``: YAML metadata between ``---`` lines, then the body."""
    metadata = card_metadata(facts).to_yaml()
    return f"---\n{metadata}\n---\n\n{_body(facts)}"


def card_metadata(facts: CardFacts) -> ModelCardData:
    """The card's metadata in Hugging Face's schema (``model-index`` from the dev results)."""
    results = dev_results(facts)
    glue = facts.glue_task
    metrics = list(dict.fromkeys(result.metric_type for result in results))
    return ModelCardData(
        library_name="bertfit",
        base_model=facts.base_model,
        datasets=[GLUE_DATASET] if glue else None,
        language="en" if glue else None,
        metrics=metrics or None,
        pipeline_tag="text-classification",
        tags=["bertfit", "text-classification"]
        + (["distillation"] if facts.info.get("distilled_from") else []),
        model_name=facts.name,
        eval_results=results or None,
    )


def dev_results(facts: CardFacts) -> list[EvalResult]:
    """One :class:`EvalResult` per dev metric of the run's best evaluation (for MNLI, per dev
    file), in the Hub's names; none without a run's results."""
    glue = facts.glue_task
    found = []
    for split, scores in dev_scores(facts).items():
        for metric, value in scores.items():
            hub_type, hub_name = HUB_METRICS[metric]
            found.append(
                EvalResult(
                    task_type="text-classification",
                    task_name="Text Classification",
                    dataset_type=GLUE_DATASET if glue else "custom",
                    dataset_name=f"GLUE {TASKS[glue].glue_dir}" if glue else _dev_file(facts),
                    dataset_config=glue,
                    dataset_split=_hub_split(split) if glue else split,
                    dataset_args=glue,
                    metric_type=hub_type,
                    metric_name=hub_name,
                    metric_config=HUB_METRIC_CONFIGS.get(metric),
                    metric_value=value,
                )
            )
    return found


def dev_scores(facts: CardFacts) -> dict[str, dict[str, float]]:
    """Dev split -> metric -> value of the run's best evaluation, in the task's metric order
    (bertfit's names; splits without a score left out)."""
    best = (facts.results or {}).get("best") or {}
    glue = facts.glue_task
    names = TASKS[glue].metrics if glue else tuple(HUB_METRICS)
    splits = TASKS[glue].dev_splits if glue else ("dev",)
    scores = {}
    for split in splits:
        values = {name: best.get(f"{split}_{name}") for name in names}
        found = {name: float(value) for name, value in values.items() if _is_number(value)}
        if found:
            scores[split] = found
    return scores


def _hub_split(split: str) -> str:
    """bertfit's dev split -> the Hub dataset's: ``dev`` -> ``validation``,
    ``dev_matched`` -> ``validation_matched``."""
    return "validation" + split.removeprefix("dev")


def _dev_file(facts: CardFacts) -> str:
    data = (facts.run or {}).get("data") or {}
    return Path(data["dev_file"]).name if data.get("dev_file") else "dev"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _read_optional(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    data = read_json(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return data


# --------------------------------------------------------------------------------------------
# The body
# --------------------------------------------------------------------------------------------


def _body(facts: CardFacts) -> str:
    sections = [
        f"# {facts.name}\n\n{_summary(facts)}",
        _task_section(facts),
        _results_section(facts),
        _training_section(facts),
        _calibration_section(facts),
        _usage_section(facts),
        _limits_section(facts),
    ]
    return "\n\n".join(section for section in sections if section) + "\n"


def _summary(facts: CardFacts) -> str:
    glue = facts.glue_task
    what = "A regression model" if facts.regression else "A text classifier"
    if facts.multi_label:
        what = "A multi-label text classifier"
    how = "distilled" if facts.info.get("distilled_from") else "fine-tuned"
    base = f" from `{facts.base_model}`" if facts.base_model else ""
    data = f"GLUE {TASKS[glue].glue_dir}" if glue else "the user's own data"
    question = _GLUE_QUESTIONS.get(glue or "")
    purpose = f", telling {question}" if question else ""
    return f"{what} {how}{base} on {data} with bertfit{purpose}."


def _task_section(facts: CardFacts) -> str:
    info = facts.info
    inputs = ", ".join(f"`{name}`" for name in info.get("input_names", []))
    kind = "a pair of texts" if len(info.get("input_names", [])) == 2 else "one text"
    lines = ["## Task and labels", "", f"- Task: `{info.get('task')}`; input: {kind} ({inputs})."]
    if facts.regression:
        lines.append("- Output: one score (regression), with no probabilities.")
    elif facts.multi_label:
        names = info.get("label_names", [])
        labels = ", ".join(f"{i} `{name}`" for i, name in enumerate(names))
        lines.append(f"- Labels (output, name), any number per text (one sigmoid each): {labels}.")
        thresholds = info.get("thresholds")
        cuts = (
            ", ".join(f"`{name}` {value:.4f}" for name, value in zip(names, thresholds))
            if thresholds
            else "0.5 for every label (none were fitted)"
        )
        lines.append(f"- A label is chosen when its probability reaches its threshold: {cuts}.")
    else:
        labels = ", ".join(f"{i} `{name}`" for i, name in enumerate(info.get("label_names", [])))
        lines.append(f"- Labels (class id, name): {labels}.")
    lines.append(
        f"- Inputs are packed into at most {info.get('max_seq_length')} tokens, [CLS] and "
        f"[SEP] included ({_casing(info)} WordPiece vocabulary)."
    )
    return "\n".join(lines)


def _casing(info: dict[str, Any]) -> str:
    return "lower-cased, accent-stripped" if info.get("lower_case", True) else "cased"


def _results_section(facts: CardFacts) -> str:
    scores = dev_scores(facts)
    if not scores:
        return "" if facts.results is None else "## Results\n\nThe run had no dev set to score."
    best = (facts.results or {}).get("best") or {}
    examples = (facts.results or {}).get("examples") or {}
    metrics = list(dict.fromkeys(name for split in scores.values() for name in split))
    counted = all(split in examples for split in scores)  # runs before it was recorded: not
    table = [
        ["dev split", *(["examples"] if counted else []), *(HUB_METRICS[m][1] for m in metrics)],
        ["---"] * (1 + counted + len(metrics)),
    ]
    for split, values in scores.items():
        cells = [f"{values[name]:.4f}" if name in values else "" for name in metrics]
        table.append([split, *([f"{examples[split]:,}"] if counted else []), *cells])
    place = f"epoch {best.get('epoch')}, step {best.get('step')}"
    main = ((facts.run or {}).get("trainer") or {}).get("main_metric")
    if main in HUB_METRICS:  # runs before trainer.main_metric was recorded name none
        place += f", the best by {HUB_METRICS[main][1]}"
    return "\n".join(
        [
            "## Results",
            "",
            f"The run's best evaluation on the dev set ({place}), which chose this model:",
            "",
            *("| " + " | ".join(row) + " |" for row in table),
        ]
    )


def _training_section(facts: CardFacts) -> str:
    run = facts.run
    if run is None:
        return ""
    trainer, optimizer = run.get("trainer") or {}, run.get("optimizer") or {}
    examples = (facts.results or {}).get("examples") or {}
    lines = ["## Training", ""]
    lines.append(f"- Data: {_data_line(facts, examples)}.")
    lines.append(f"- Encoder: {_encoder_line(facts)}.")
    lines.append(f"- Recipe: {_recipe_line(run, trainer, optimizer, facts.results)}.")
    distill = run.get("distill") or {}
    if distill.get("teacher"):
        lines.append(f"- Distillation: {_distill_line(distill)}.")
    return "\n".join(lines)


def _data_line(facts: CardFacts, examples: dict[str, int]) -> str:
    glue = facts.glue_task
    data = (facts.run or {}).get("data") or {}
    if glue:
        source = f"GLUE {TASKS[glue].glue_dir} ([{GLUE_DATASET}](https://huggingface.co/datasets/{GLUE_DATASET}), config `{glue}`)"  # noqa: E501
    else:
        source = f"`{Path(data['train_file']).name}`" if data.get("train_file") else "own files"
    counts = ", ".join(f"{count:,} {split}" for split, count in examples.items())
    return f"{source}; {counts} examples" if counts else source


def _encoder_line(facts: CardFacts) -> str:
    encoder = facts.encoder
    shape = (
        f"{encoder.get('num_hidden_layers')} layers, hidden size {encoder.get('hidden_size')}, "
        f"{encoder.get('num_attention_heads')} attention heads"
    )
    base = f"`{facts.base_model}`, " if facts.base_model else ""
    return f"{base}{shape}"


def _recipe_line(run, trainer, optimizer, results) -> str:
    """The settings that shaped the model, each left out where the run does not record it."""
    warmup = optimizer.get("warmup_steps")
    if warmup is None and optimizer.get("warmup_fraction") is not None:
        warmup = f"{optimizer['warmup_fraction']:g} of the steps"
    elif warmup is not None:
        warmup = f"{warmup} steps"
    power = optimizer.get("power")
    decay = "linear decay" if power == 1 else f"polynomial decay (power {power})"
    batch = trainer.get("batch_size")
    if batch is not None and (trainer.get("grad_accum_steps") or 1) > 1:
        batch = f"{batch} x {trainer['grad_accum_steps']} accumulated"
    steps = (results or {}).get("steps", optimizer.get("total_steps"))
    # The fine-tuning levers are named only when on (layer decay 1 and 0 layers are off).
    layer_decay = optimizer.get("layer_decay")
    reinit = run.get("reinit_layers")
    parts = [
        ("top {} layers and pooler re-initialized", reinit or None),
        ("AdamW, learning rate {:g}", optimizer.get("learning_rate")),
        ("layer-wise decay {:g}", layer_decay if layer_decay not in (None, 1) else None),
        ("weight decay {:g}", optimizer.get("weight_decay")),
        ("linear warmup over {}", warmup),
        (f"then {decay} to {{:g}}", optimizer.get("end_learning_rate") if power else None),
        ("{} epochs", trainer.get("epochs")),
        ("at most {} steps", trainer.get("max_steps")),
        ("{} steps", steps),
        ("batch size {}", batch),
        ("max_seq_length {}", run.get("max_seq_length")),
        ("truncation {}", run.get("truncator")),
        ("windows every {} tokens", run.get("window_stride")),
        ("seed {}", trainer.get("seed")),
        ("precision {}", trainer.get("precision")),
    ]
    return ", ".join(template.format(value) for template, value in parts if value is not None)


def _distill_line(distill: dict[str, Any]) -> str:
    line = (
        f"a student of the teacher's layers {distill.get('layers')} "
        f"(teacher run `{Path(distill['teacher']).name}`), "
        f"temperature {distill.get('temperature')}, alpha {distill.get('alpha')}"
    )
    if distill.get("augment"):
        line += f", {distill['augment']} augmented copies of each input"
    for name in ("layer_weight", "token_weight"):
        if distill.get(name):
            line += f", {name.replace('_', ' ')} {distill[name]:g}"
    return line


def _calibration_section(facts: CardFacts) -> str:
    if facts.regression:
        return ""
    temperature = facts.info.get("temperature")
    if temperature is None:
        plain = "sigmoids" if facts.multi_label else "softmax"
        return (
            "## Calibration\n\nNo temperature was fitted: bertfit's probabilities are the plain "
            f"{plain} of the logits."
        )
    function = "each sigmoid" if facts.multi_label else "the softmax"
    text = (
        f"## Calibration\n\nbertfit divides the logits by the temperature **{temperature:.4f}** "
        f"before {function} (`predict`, `evaluate`, exports and the server), so that the "
        "probabilities match how often the model is right"
    )
    fit = facts.calibration or {}
    before, after = fit.get("before") or {}, fit.get("after") or {}
    if _is_number(before.get("ece")) and _is_number(after.get("ece")):
        text += (
            f": fitted on {fit.get('examples')} dev examples, expected calibration error "
            f"{before['ece']:.4f} -> {after['ece']:.4f}, NLL {before['nll']:.4f} -> "
            f"{after['nll']:.4f}"
        )
    return text + "."


def _usage_section(facts: CardFacts) -> str:
    names = facts.info.get("input_names") or ["sentence1"]
    pair = len(names) == 2
    columns = '[["The first text."], ["The second text."]]' if pair else '[["A text."]]'
    flags = '--sentence1 "The first text." --sentence2 "The second text."'
    flags = flags if pair else '--sentence1 "A text."'
    pipe_input = (
        '{"text": "The first text.", "text_pair": "The second text."}' if pair else '"A text."'
    )
    pipe_args = 'function_to_apply="none"' if facts.regression else "top_k=None"
    answer = (
        "`score` is the prediction"
        if facts.regression
        else "scores are sigmoid(logits), without the temperature or the thresholds"
        if facts.multi_label
        else "scores are softmax(logits), without the temperature"
    )
    return "\n".join(
        [
            "## How to use",
            "",
            "In bertfit, on the command line or in Python:",
            "",
            "```bash",
            f"bertfit predict {_PLACEHOLDER} {flags}",
            "```",
            "",
            "```python",
            "import bertfit",
            "",
            f'classifier = bertfit.TextClassifier.from_pretrained("{_PLACEHOLDER}")',
            f"print(classifier.predict({columns}))  # one list per input column",
            "```",
            "",
            "In transformers, which reads the same directory (its tokenizer files say how "
            f"bertfit tokenizes); {answer}:",
            "",
            "```python",
            "from transformers import pipeline",
            "",
            f'classifier = pipeline("text-classification", model="{_PLACEHOLDER}")',
            f"print(classifier({pipe_input}, {pipe_args}))",
            "```",
        ]
    )


def _limits_section(facts: CardFacts) -> str:
    info = facts.info
    length = info.get("max_seq_length")
    lines = ["## Limits", ""]
    if dev_scores(facts):
        lines.append(
            "- Every figure here is from the dev set, which also chose the best evaluation"
            + (
                ""
                if facts.regression
                else " and fitted the temperature and the thresholds"
                if facts.multi_label
                else " and fitted the temperature"
            )
            + ": it is an optimistic estimate, and no test-set figure was measured."
        )
    elif facts.results is not None:
        lines.append("- The run had no dev set: nothing here measures how well the model does.")
    else:
        lines.append("- This directory holds no run results: no figure was recorded with it.")
    cut = info.get("truncator", "round_robin").replace("_", " ")
    lines.append(
        f"- Texts longer than {length} tokens: bertfit trims them ({cut})"
        + (
            f", or with windows every {info['window_stride']} tokens averages the windows"
            if info.get("window_stride")
            else ""
        )
        + "; transformers' pipeline trims only with `truncation=True`, and may cut a pair "
        "one token differently. Shorter inputs get the same tokens, and the same logits up to "
        "rounding, in both."
    )
    if facts.glue_task:
        lines.append(
            "- Trained on English GLUE data only; it carries the base model's limits and "
            "biases, and other domains or languages may score far lower."
        )
    else:
        lines.append(
            "- Trained on the user's own data only; it carries the base model's limits and biases."
        )
    if info.get("distilled_from"):
        lines.append(
            "- A distilled student: smaller and faster than its teacher, and usually a few "
            "points less accurate."
        )
    return "\n".join(lines)
