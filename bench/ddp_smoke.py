"""Smoke check of data-parallel training on GPUs: P processes of batch B train as 1 of batch P*B.

Trains the packaged MiniLM on MRPC (max length 128, fp32, dropout off: processes draw their own
dropout masks, so only without dropout are the two runs the same numbers) for ``--steps``
steps, with an evaluation every 10 steps and a checkpoint every 5 (each a collective besides
DDP's gradient reduction), once as 1 process of batch ``P * B`` and once as
``torchrun --nproc-per-node P`` of batch ``B``. It prints the largest difference of the
per-step losses, gradient norms and final weights, and exits 1 when one exceeds
``--tolerance``.

    python bench/ddp_smoke.py --data-dir ../shared/data/glue            # 2 GPUs, nccl
    python bench/ddp_smoke.py --device cpu --steps 6 --batch-size 4     # CPU processes, gloo

On CUDA every process takes the GPU of its ``LOCAL_RANK``, so P GPUs must be visible. The
default is the run docs/scaling.md asks for: 2 processes on 2 GPUs for 20 steps of batch 16.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def without_dropout(model_dir: Path, target: Path) -> Path:
    """``model_dir`` with dropout set to 0 in its config; weights and vocabulary linked."""
    target.mkdir()
    config = json.loads((model_dir / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (target / "config.json").write_text(json.dumps(config, indent=2))
    for name in ("model.safetensors", "vocab.txt"):
        (target / name).symlink_to(model_dir / name)
    return target


def train(launcher: list[str], run_dir: Path, batch_size: int, model: Path, args) -> None:
    command = [
        *launcher, "train", "--task", "mrpc", "--data-dir", args.data_dir, "--model", str(model),
        "--output", str(run_dir), "--device", args.device, "--precision", "fp32",
        "--epochs", "1", "--max-steps", str(args.steps), "--batch-size", str(batch_size),
        "--checkpoint-every", "5", "--keep-checkpoints", "1", "--quiet",
        "trainer.eval_every_steps=10",
    ]  # fmt: skip
    paths = [str(REPO / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}  # this checkout's bertfit
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)


def compare(run_dir: Path, reference: Path) -> dict[str, float]:
    """The largest absolute difference of each per-step figure and of the final weights."""
    from safetensors.torch import load_file

    def steps(run: Path) -> list[dict]:
        return [json.loads(line) for line in (run / "steps.jsonl").read_text().splitlines()]

    ours, theirs = steps(run_dir), steps(reference)
    if [r["step"] for r in ours] != [r["step"] for r in theirs]:
        raise SystemExit("the two runs logged different steps")
    differences = {
        name: max(abs(a[name] - b[name]) for a, b in zip(ours, theirs))
        for name in ("loss", "grad_norm", "learning_rate")
    }

    def final(run: Path) -> dict:
        (checkpoint,) = (run / "checkpoints").iterdir()
        return load_file(checkpoint / "model.safetensors")

    weights, expected = final(run_dir), final(reference)
    differences["weights"] = max(
        (weights[name].double() - expected[name].double()).abs().max().item() for name in weights
    )
    return differences


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "glue"))
    parser.add_argument("--device", default="cuda", help="cuda (default: nccl) or cpu (gloo)")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16, help="per process (default: 16)")
    parser.add_argument("--tolerance", type=float, default=1e-4)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    from bertfit.model.presets import default_model_dir

    single = [sys.executable, "-m", "bertfit"]
    multi = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        "--nproc-per-node", str(args.processes), "-m", "bertfit",
    ]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        model = without_dropout(default_model_dir(), Path(tmp) / "model")
        one, many = Path(tmp) / "one", Path(tmp) / "many"
        train(single, one, args.batch_size * args.processes, model, args)
        train(multi, many, args.batch_size, model, args)
        differences = compare(many, one)
    layout = f"{args.processes} processes x batch {args.batch_size} on {args.device}"
    print(f"{layout} against 1 process x batch {args.batch_size * args.processes}, "
          f"{args.steps} steps; largest differences:")  # fmt: skip
    for name, value in differences.items():
        print(f"  {name:>13}: {value:.3g}")
    failed = [name for name, value in differences.items() if value > args.tolerance]
    print("FAILED: " + ", ".join(failed) if failed else f"ok (tolerance {args.tolerance:g})")
    print(json.dumps(differences))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
