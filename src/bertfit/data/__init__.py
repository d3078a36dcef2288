"""Tasks, data files and batch orders."""

from bertfit.data.readers import TextExamples, read_glue_split, read_prediction_input
from bertfit.data.tasks import MRPC, TASKS, TaskSpec, get_task

__all__ = [
    "MRPC",
    "TASKS",
    "TaskSpec",
    "TextExamples",
    "get_task",
    "read_glue_split",
    "read_prediction_input",
]
