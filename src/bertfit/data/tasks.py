"""The task registry: which columns a task reads, its labels, splits and GLUE metrics.

A :class:`TaskSpec` says everything the readers, the trainer and the predictor need to know
about a task; nothing else in bertfit hard-codes a task's layout. The nine GLUE tasks are
registered here with the layouts of GLUE's own TSV files.
"""

from __future__ import annotations

from dataclasses import dataclass

from bertfit.errors import ConfigError
from bertfit.problem import REGRESSION, SINGLE_LABEL, ProblemType, num_outputs

# A column is named by its header field, or by its position in files without a header.
Column = str | int


@dataclass(frozen=True)
class SplitLayout:
    """Where a split's fields are: text columns, the label column (None: no labels)."""

    text_columns: tuple[Column, ...]
    label_column: Column | None
    header: bool = True


@dataclass(frozen=True)
class TaskSpec:
    """One classification (or regression) task in GLUE's file layout.

    ``problem_type`` says which (:mod:`bertfit.problem`). ``label_values`` are the label
    strings as written in the files and ``label_names`` the human-readable names in the same
    order (class id = position). A regression task has no label values and one output named
    by ``label_names[0]``.
    """

    name: str
    glue_dir: str
    text_columns: tuple[Column, ...]
    label_column: Column
    label_values: tuple[str, ...]
    label_names: tuple[str, ...]
    metrics: tuple[str, ...]
    # Short, stable names for the text fields in predict input and exported artifacts.
    input_names: tuple[str, ...] = ("sentence1", "sentence2")
    # Text fields of the label-less test split, which GLUE writes with other headers.
    test_text_columns: tuple[Column, ...] | None = None
    header: bool = True
    problem_type: ProblemType = SINGLE_LABEL
    dev_splits: tuple[str, ...] = ("dev",)
    test_splits: tuple[str, ...] = ("test",)

    @property
    def num_classes(self) -> int:
        """Number of outputs of the classifier head (1 for regression)."""
        return num_outputs(self.problem_type, len(self.label_names))

    @property
    def main_metric(self) -> str:
        """The metric that picks the best model (the first one GLUE lists)."""
        return self.metrics[0]

    @property
    def splits(self) -> tuple[str, ...]:
        """Every split name of the task, train first."""
        return ("train", *self.dev_splits, *self.test_splits)

    def split_file(self, split: str) -> str:
        """File name of ``split`` inside the task's directory."""
        if split not in self.splits:
            raise ConfigError(
                f"task {self.name} has no split {split!r}; expected one of {', '.join(self.splits)}"
            )
        return f"{split}.tsv"

    def layout(self, split: str) -> SplitLayout:
        """The field layout of ``split``'s file."""
        self.split_file(split)
        if split in self.test_splits:
            # GLUE's test files all carry a header, even CoLA's.
            return SplitLayout(self.test_text_columns or self.text_columns, None, header=True)
        return SplitLayout(self.text_columns, self.label_column, header=self.header)


_PAIR_ACC = ("accuracy",)
_PAIR_ACC_F1 = ("accuracy", "f1")
_ENTAILMENT = ("entailment", "not_entailment")

GLUE_TASKS = (
    TaskSpec(
        name="cola",
        glue_dir="CoLA",
        text_columns=(3,),
        label_column=1,
        header=False,
        label_values=("0", "1"),
        label_names=("unacceptable", "acceptable"),
        metrics=("matthews_correlation",),
        input_names=("sentence",),
        test_text_columns=("sentence",),
    ),
    TaskSpec(
        name="sst2",
        glue_dir="SST-2",
        text_columns=("sentence",),
        label_column="label",
        label_values=("0", "1"),
        label_names=("negative", "positive"),
        metrics=_PAIR_ACC,
        input_names=("sentence",),
    ),
    TaskSpec(
        name="mrpc",
        glue_dir="MRPC",
        text_columns=("#1 String", "#2 String"),
        label_column="Quality",
        label_values=("0", "1"),
        label_names=("not_equivalent", "equivalent"),
        metrics=_PAIR_ACC_F1,
    ),
    TaskSpec(
        name="stsb",
        glue_dir="STS-B",
        text_columns=("sentence1", "sentence2"),
        label_column="score",
        label_values=(),
        label_names=("score",),
        metrics=("pearson", "spearman"),
        problem_type=REGRESSION,
    ),
    TaskSpec(
        name="qqp",
        glue_dir="QQP",
        text_columns=("question1", "question2"),
        label_column="is_duplicate",
        label_values=("0", "1"),
        label_names=("not_duplicate", "duplicate"),
        metrics=_PAIR_ACC_F1,
        input_names=("question1", "question2"),
    ),
    TaskSpec(
        name="mnli",
        glue_dir="MNLI",
        text_columns=("sentence1", "sentence2"),
        label_column="gold_label",
        label_values=("entailment", "neutral", "contradiction"),
        label_names=("entailment", "neutral", "contradiction"),
        metrics=_PAIR_ACC,
        input_names=("premise", "hypothesis"),
        dev_splits=("dev_matched", "dev_mismatched"),
        test_splits=("test_matched", "test_mismatched"),
    ),
    TaskSpec(
        name="qnli",
        glue_dir="QNLI",
        text_columns=("question", "sentence"),
        label_column="label",
        label_values=_ENTAILMENT,
        label_names=_ENTAILMENT,
        metrics=_PAIR_ACC,
        input_names=("question", "sentence"),
    ),
    TaskSpec(
        name="rte",
        glue_dir="RTE",
        text_columns=("sentence1", "sentence2"),
        label_column="label",
        label_values=_ENTAILMENT,
        label_names=_ENTAILMENT,
        metrics=_PAIR_ACC,
    ),
    TaskSpec(
        name="wnli",
        glue_dir="WNLI",
        text_columns=("sentence1", "sentence2"),
        label_column="label",
        label_values=("0", "1"),
        label_names=("not_entailment", "entailment"),
        metrics=_PAIR_ACC,
    ),
)

TASKS: dict[str, TaskSpec] = {task.name: task for task in GLUE_TASKS}
MRPC = TASKS["mrpc"]


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "").replace("_", "")


def get_task(name: str) -> TaskSpec:
    """Look a task up by name, case-insensitively and with or without hyphens (``STS-B``)."""
    try:
        return TASKS[_key(name)]
    except KeyError:
        known = ", ".join(sorted(TASKS))
        raise ConfigError(f"unknown task {name!r}; known tasks: {known}") from None
