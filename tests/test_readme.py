"""The README's Python example runs as written (on the real model and a slice of MRPC)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from conftest import GLUE_DIR, REPO


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.DOTALL)


@pytest.mark.slow
def test_readme_python_example_runs(tmp_path):
    if not (GLUE_DIR / "MRPC" / "train.tsv").is_file():
        pytest.skip(f"real GLUE data not found at {GLUE_DIR}")
    blocks = python_blocks((REPO / "README.md").read_text(encoding="utf-8"))
    assert len(blocks) == 1
    code = blocks[0].replace('"runs/api-example/model"', repr(str(tmp_path / "model")))
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "start_of_sequence_id" in result.stdout and "'accuracy'" in result.stdout
    assert "'label'" in result.stdout and "'probabilities'" in result.stdout
    assert (tmp_path / "model" / "model.safetensors").is_file()
