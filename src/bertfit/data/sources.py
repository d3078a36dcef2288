"""Where a task's GLUE files come from: ``--data-dir``, ``$BERTFIT_DATA``, or a download.

Resolution order for a task's directory (the one holding ``train.tsv``, ``dev.tsv``, ``test.tsv``):

1. the directory the user passed (either the task directory itself or a GLUE root holding
   ``<TASK>/``);
2. ``$BERTFIT_DATA/<TASK>/``;
3. the user cache (``$XDG_CACHE_HOME/bertfit/glue/<TASK>``), downloading into it when online.

Downloads go through :func:`bertfit.model.download.fetch` (a cut transfer or a checksum the
server sends that does not match fails), rebuild the files exactly as GLUE's
``download_glue_data.py`` does, land in a temporary directory first and are renamed into place
only when complete.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from bertfit.config import make_staging_dir, replace_directory
from bertfit.data.tasks import TaskSpec
from bertfit.errors import CheckpointError, DataError
from bertfit.model.download import fetch
from bertfit.paths import cache_root

DATA_ENV = "BERTFIT_DATA"

# The sources GLUE's own download script uses for MRPC (SentEval's copy of the Microsoft corpus
# plus GLUE's list of dev pairs).
MRPC_URLS = {
    "train": "https://dl.fbaipublicfiles.com/senteval/senteval_data/msr_paraphrase_train.txt",
    "test": "https://dl.fbaipublicfiles.com/senteval/senteval_data/msr_paraphrase_test.txt",
    "dev_ids": (
        "https://firebasestorage.googleapis.com/v0/b/mtl-sentence-representations.appspot.com/"
        "o/data%2Fmrpc_dev_ids.tsv?alt=media&token=ec5c0836-31d5-48f4-b431-7480817f1adc"
    ),
}


def how_to_get_data(task: TaskSpec) -> str:
    """The advice that ends every message about a task's missing GLUE files."""
    glue = task.glue_dir
    return (
        f"pass --data-dir DIR (a GLUE directory holding {glue}/train.tsv, dev.tsv, test.tsv) "
        f"or set ${DATA_ENV} to a directory holding {glue}/"
    )


def _has_split(directory: Path, split: str) -> bool:
    return (directory / f"{split}.tsv").is_file()


def _task_dir_in(root: Path, task: TaskSpec, split: str) -> Path | None:
    """``root`` itself if it holds the split, else ``root/<TASK>`` if that does."""
    for candidate in (root, root / task.glue_dir, root / task.glue_dir.lower()):
        if _has_split(candidate, split):
            return candidate
    return None


def resolve_task_dir(
    task: TaskSpec, data_dir: str | Path | None, split: str = "train", download: bool = True
) -> Path:
    """Find (or download) the directory holding ``task``'s GLUE files; see the module docs."""
    hint = how_to_get_data(task)
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        if not root.is_dir():
            raise DataError(f"data directory {root} does not exist; {hint}")
        found = _task_dir_in(root, task, split)
        if found is None:
            raise DataError(f"{root}: no {split}.tsv here or in {root / task.glue_dir}; {hint}")
        return found
    env_root = os.environ.get(DATA_ENV)
    if env_root:
        found = _task_dir_in(Path(env_root).expanduser(), task, split)
        if found is None:
            raise DataError(f"${DATA_ENV}={env_root} holds no {task.glue_dir}/{split}.tsv; {hint}")
        return found
    cached = cache_root() / "glue" / task.glue_dir
    if _has_split(cached, split):
        return cached
    if not download:
        raise DataError(f"no data for task {task.name}; {hint}")
    download_task(task, cached)
    return cached


def download_task(task: TaskSpec, target: Path, urls: dict[str, str] | None = None) -> None:
    """Download ``task``'s GLUE files into ``target`` (complete or not at all)."""
    if task.glue_dir != "MRPC":
        raise DataError(f"no download source known for {task.glue_dir}; {how_to_get_data(task)}")
    staging = make_staging_dir(target)
    try:
        sources = {name: staging / f"source-{name}" for name in ("train", "test", "dev_ids")}
        for name, path in sources.items():
            _download((urls or MRPC_URLS)[name], path, task)
        build_mrpc_splits(sources["train"], sources["test"], sources["dev_ids"], staging)
        for path in sources.values():
            path.unlink()
        replace_directory(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _download(url: str, path: Path, task: TaskSpec) -> None:
    """Fetch one source file with the model downloader's length and checksum checks."""
    print(f"downloading {url}", flush=True)
    try:
        fetch(url, path, label="downloading")
    except CheckpointError as error:
        raise DataError(f"{error}; you may be offline: {how_to_get_data(task)}") from None


def build_mrpc_splits(train_source: Path, test_source: Path, dev_ids: Path, out: Path) -> None:
    """Write GLUE's MRPC ``train.tsv``/``dev.tsv``/``test.tsv`` from SentEval's files.

    Mirrors GLUE's ``download_glue_data.py``: rows of the training file whose id pair is in
    the dev list go to ``dev.tsv``, the rest to ``train.tsv``; the test file gets an index.
    """
    dev_pairs = set()
    for row in dev_ids.read_text(encoding="utf-8").splitlines():
        if row.strip():
            dev_pairs.add(tuple(row.strip().split("\t")))
    with (
        open(train_source, encoding="utf-8") as source,
        open(out / "train.tsv", "w", encoding="utf-8") as train,
        open(out / "dev.tsv", "w", encoding="utf-8") as dev,
    ):
        header = source.readline()
        train.write(header)
        dev.write(header)
        for row in source:
            label, id1, id2, s1, s2 = row.strip().split("\t")
            (dev if (id1, id2) in dev_pairs else train).write(
                f"{label}\t{id1}\t{id2}\t{s1}\t{s2}\n"
            )
    with (
        open(test_source, encoding="utf-8") as source,
        open(out / "test.tsv", "w", encoding="utf-8") as test,
    ):
        source.readline()
        test.write("index\t#1 ID\t#2 ID\t#1 String\t#2 String\n")
        for index, row in enumerate(source):
            _label, id1, id2, s1, s2 = row.strip().split("\t")
            test.write(f"{index}\t{id1}\t{id2}\t{s1}\t{s2}\n")
