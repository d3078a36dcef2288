"""docs/tutorial.md runs as written: every Python block in order in one interpreter, the files
its ``yaml title="NAME"`` blocks name, then its shell blocks (on the packaged MiniLM and a slice
of the real MRPC)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import GLUE_DIR, REPO

TUTORIAL = REPO / "docs" / "tutorial.md"
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```", flags=re.DOTALL | re.MULTILINE)


def blocks(markdown: str) -> list[tuple[str, str]]:
    """``(info string, body)`` of every fenced block, in order."""
    return [(info.strip(), body) for info, body in FENCE.findall(markdown)]


def test_blocks_are_found_and_every_one_is_of_a_kind_the_test_runs():
    found = blocks(TUTORIAL.read_text(encoding="utf-8"))
    kinds = {info.split()[0] for info, _ in found}
    assert kinds <= {"python", "bash", "yaml"}, kinds
    assert sum(info == "python" for info, _ in found) >= 10
    assert any(info.startswith("yaml title=") for info, _ in found)


def _shell_script(found: list[tuple[str, str]]) -> str:
    lines = ["set -euo pipefail"]
    for info, body in found:
        if info != "bash":
            continue
        # Installing is the reader's step; the test runs in the environment it already has.
        lines += [line for line in body.splitlines() if not line.startswith("pip install")]
    return "\n".join(lines) + "\n"


@pytest.mark.slow
def test_tutorial_runs_as_written(tmp_path):
    if not (GLUE_DIR / "MRPC" / "train.tsv").is_file():
        pytest.skip(f"real GLUE data not found at {GLUE_DIR}")
    found = blocks(TUTORIAL.read_text(encoding="utf-8"))
    for info, body in found:
        named = re.fullmatch(r'yaml title="([^"]+)"', info)
        if named:
            (tmp_path / named.group(1)).write_text(body, encoding="utf-8")
    env = {
        **os.environ,
        "BERTFIT_DATA": str(GLUE_DIR),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    code = "\n".join(body for info, body in found if info == "python")
    python = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert python.returncode == 0, python.stderr
    out = python.stdout
    assert "start_of_sequence_id" in out and "input_word_ids  shape: (32, 128)" in out
    assert "before:" in out and "after:" in out and "'dev_accuracy'" in out
    assert "mean |difference| " in out  # the exported model's logits against PyTorch's
    for name in ("inputs", "schedule", "history"):
        assert (tmp_path / "figures" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "runs" / "saved" / "model.safetensors").is_file()
    assert (tmp_path / "runs" / "exported").is_dir()

    shell = subprocess.run(
        ["bash", "-c", _shell_script(found)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert shell.returncode == 0, shell.stderr
    assert "total_steps: 2" in shell.stdout  # config show, resolved
    assert "did you mean 'optimizer.learning_rate'" in shell.stderr
    assert "special tokens" in shell.stdout and "22,713,216" in shell.stdout  # inspect
    assert '"label"' in shell.stdout  # predict
    assert any((tmp_path / "runs" / "cli" / "tensorboard").glob("events.out.tfevents.*"))
    for name in ("schedule", "history", "confusion"):
        assert (tmp_path / "figures" / f"cli-{name}.png").stat().st_size > 10_000
