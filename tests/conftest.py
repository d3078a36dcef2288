"""Shared fixtures: paths to the real GLUE files and the packaged model, small synthetic data."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GLUE_DIR = REPO.parent / "shared" / "data" / "glue"

MRPC_HEADER = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"


def write_mrpc_split(path: Path, rows: list[tuple[str, str, str]], bom: bool = True) -> Path:
    """Write (label, sentence1, sentence2) rows in GLUE's MRPC layout."""
    header = MRPC_HEADER if bom else MRPC_HEADER.lstrip("\ufeff")
    lines = [f"{label}\t{i}\t{i + 1000}\t{a}\t{b}\n" for i, (label, a, b) in enumerate(rows)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "".join(lines), encoding="utf-8")
    return path


@pytest.fixture
def glue_dir() -> Path:
    """The real GLUE files beside the checkout; tests that need them skip when absent."""
    if not (GLUE_DIR / "MRPC" / "train.tsv").is_file():
        pytest.skip(f"real GLUE data not found at {GLUE_DIR}")
    return GLUE_DIR


@pytest.fixture
def minilm_dir() -> Path:
    """The packaged all-MiniLM-L6-v2 directory."""
    from bertfit.model.presets import default_model_dir

    return default_model_dir()
