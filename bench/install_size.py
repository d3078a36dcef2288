"""Installed size of the exported predictor's runtime, against Optimum's ONNX Runtime path.

Creates fresh virtual environments in a temporary directory and installs, with pip:

* ``bertfit-runtime``: onnxruntime, tokenizers and numpy, plus bertfit itself without its
  training dependencies (``pip install --no-deps``), which is what ``load_exported`` needs;
* ``optimum-onnxruntime``: what ``ORTModelForSequenceClassification`` + a transformers pipeline
  needs: optimum-onnx with onnxruntime, which pulls in torch and transformers (torch pinned to
  this project's CPU build by ``constraints.txt``).

Reports the size of each environment's site-packages, without pip and setuptools, and the
largest packages. Writes ``bench/results/install_size.json``::

    .venv/bin/python bench/install_size.py
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENVIRONMENTS = {
    "bertfit-runtime": [["onnxruntime", "tokenizers", "numpy"], ["--no-deps", str(REPO)]],
    # The same without what the predictor never uses: tokenizers' huggingface_hub stack (only
    # for downloading tokenizers) and pip's byte-compiled caches.
    "bertfit-runtime-trimmed": [
        ["--no-compile", "onnxruntime", "numpy"],
        ["--no-compile", "--no-deps", "tokenizers", str(REPO)],
    ],
    "optimum-onnxruntime": [["optimum-onnx[onnxruntime]"]],
}
# Run in each bertfit environment on --check-export: the predictor works there, without torch.
SMOKE = (
    "import sys, bertfit; p = bertfit.load_exported(sys.argv[1]); "
    "print(p({n: ['The cat sat on the mat .'] for n in p.input_names})['class'][0], "
    "'torch' in sys.modules)"
)
NOT_COUNTED = ("pip", "setuptools", "pkg_resources", "_distutils_hack", "distutils-precedence.pth")


def tree_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def measure(name: str, installs: list[list[str]], root: Path, check_export: str | None) -> dict:
    env = root / name
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    pip = [
        str(env / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
    ]
    for packages in installs:
        subprocess.run([*pip, "-c", str(REPO / "constraints.txt"), *packages], check=True)
    site = next((env / "lib").glob("python3*/site-packages"))
    sizes = {}
    for entry in site.iterdir():
        if entry.name.startswith(NOT_COUNTED) or entry.name == "__pycache__":
            continue
        sizes[entry.name] = tree_size(entry)
    total = sum(sizes.values())
    smoke = None
    if check_export and name.startswith("bertfit"):
        python = str(env / "bin" / "python")
        run = subprocess.run([python, "-c", SMOKE, check_export], capture_output=True, text=True)
        smoke = (run.stdout or run.stderr).strip().splitlines()[-1]
    largest = sorted(sizes.items(), key=lambda item: -item[1])[:8]
    return {
        "bytes": total,
        "MB": round(total / 1e6, 1),
        "largest_MB": {k: round(v / 1e6, 1) for k, v in largest},
        "smoke": smoke,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default="bench/results/install_size.json")
    parser.add_argument("--check-export", help="an exported directory to load in each runtime")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="bertfit-install-size-") as tmp:
        for name, installs in ENVIRONMENTS.items():
            results[name] = measure(name, installs, Path(tmp), args.check_export)
            row = results[name]
            print(f"{name:24} {row['MB']:7.1f} MB  {row['largest_MB']}  smoke: {row['smoke']}")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
