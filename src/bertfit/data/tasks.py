"""The task registry: which columns a task reads, its labels and its GLUE metrics.

A :class:`TaskSpec` says everything the readers, the trainer and the predictor need to know
about a task; nothing else in bertfit hard-codes a task's layout.
"""

from __future__ import annotations

from dataclasses import dataclass

from bertfit.errors import ConfigError


@dataclass(frozen=True)
class TaskSpec:
    """One classification (or regression) task in GLUE's file layout.

    ``text_columns`` and ``label_column`` name header fields of the task's TSV files;
    ``label_values`` are the label strings as written in the files and ``label_names`` the
    human-readable names in the same order (class id = position).
    """

    name: str
    glue_dir: str
    text_columns: tuple[str, ...]
    label_column: str
    label_values: tuple[str, ...]
    label_names: tuple[str, ...]
    metrics: tuple[str, ...]
    # Text fields of the label-less test split, which GLUE writes with other headers.
    test_text_columns: tuple[str, ...] | None = None
    # Short, stable names for the text fields in predict input and exported artifacts.
    input_names: tuple[str, ...] = ("sentence1", "sentence2")

    @property
    def num_classes(self) -> int:
        """Number of outputs of the classifier head."""
        return len(self.label_names)

    @property
    def main_metric(self) -> str:
        """The metric that picks the best model (the first one GLUE lists)."""
        return self.metrics[0]

    def split_file(self, split: str) -> str:
        """File name of ``split`` inside the task's directory."""
        if split not in SPLITS:
            raise ConfigError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        return f"{split}.tsv"

    def text_columns_for(self, split: str) -> tuple[str, ...]:
        """Header names of the text fields in ``split``."""
        if split == "test" and self.test_text_columns is not None:
            return self.test_text_columns
        return self.text_columns


SPLITS = ("train", "dev", "test")

MRPC = TaskSpec(
    name="mrpc",
    glue_dir="MRPC",
    text_columns=("#1 String", "#2 String"),
    label_column="Quality",
    label_values=("0", "1"),
    label_names=("not_equivalent", "equivalent"),
    metrics=("accuracy", "f1"),
)

TASKS: dict[str, TaskSpec] = {task.name: task for task in (MRPC,)}


def get_task(name: str) -> TaskSpec:
    """Look a task up by name, case-insensitively and with or without hyphens (``STS-B``)."""
    key = name.strip().lower().replace("-", "").replace("_", "")
    try:
        return TASKS[key]
    except KeyError:
        known = ", ".join(sorted(TASKS))
        raise ConfigError(f"unknown task {name!r}; known tasks: {known}") from None
