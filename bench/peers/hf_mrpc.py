"""Fine-tune all-MiniLM-L6-v2 on MRPC with Hugging Face transformers' own ``Trainer``.

The peer that ``bench/train_speed.py`` measures bertfit against, as a user of transformers
would write it: a fast tokenizer, ``BertForSequenceClassification``, ``DataCollatorWithPadding``
and ``Trainer`` (batch 32, AdamW, 10% linear warmup then linear decay, its default fused
AdamW). Settings:

* ``default``: what ``TrainingArguments`` gives (fp32, random batches padded to their longest);
* ``grouped``: ``group_by_length=True`` (transformers' ``LengthGroupedSampler``);
* ``grouped-bf16``: grouped, and ``bf16=True`` (bf16 autocast), its best on a CPU;
* ``fixed-128``: every pair padded to 128 tokens, as the reference tutorial does (the stand-in
  for TensorFlow Model Garden's input pipeline).

Two modes. ``--timing-json FILE`` trains ``--steps`` steps and writes the wall time of the
steps after ``--warmup-steps`` with the examples and real tokens they held, and peak RSS.
``--whole`` does a user's whole job (tokenize, load, train ``--steps`` steps, evaluate on dev,
``save_pretrained``), for timing the whole process from outside.
"""

from __future__ import annotations

import argparse
import csv
import inspect
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import torch  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.utils import logging as hf_logging  # noqa: E402

SETTINGS = ("default", "grouped", "grouped-bf16", "fixed-128")


def read_mrpc(path: Path) -> tuple[list[str], list[str], list[int]]:
    """MRPC's TSV (BOM, quotes as text) -> first sentences, second sentences, labels."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    return [r[3] for r in rows], [r[4] for r in rows], [int(r[0]) for r in rows]


def encode(tokenizer, path: Path, setting: str) -> list[dict]:
    first, second, labels = read_mrpc(path)
    padding = "max_length" if setting == "fixed-128" else False
    encoded = tokenizer(first, second, truncation=True, max_length=128, padding=padding)
    return [
        {key: encoded[key][i] for key in encoded} | {"labels": labels[i]}
        for i in range(len(labels))
    ]


class CountingCollator:
    """``DataCollatorWithPadding`` that also remembers each batch's size and real tokens."""

    def __init__(self, tokenizer) -> None:
        self.collate = DataCollatorWithPadding(tokenizer)
        self.batches: list[tuple[int, int, int]] = []  # (examples, real tokens, padded tokens)

    def __call__(self, features):
        batch = self.collate(features)
        mask = batch["attention_mask"]
        self.batches.append((mask.shape[0], int(mask.sum()), mask.numel()))
        return batch


class StepClock(TrainerCallback):
    """The wall-clock time at the end of every optimizer step."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(time.perf_counter())


def version_arguments(grouped: bool) -> dict:
    """10% warmup and length grouping, spelled as this transformers version spells them."""
    parameters = inspect.signature(TrainingArguments.__init__).parameters
    if "group_by_length" in parameters:  # transformers 4.x and early 5.x
        return {"warmup_ratio": 0.1, "group_by_length": grouped}
    # Later 5.x: a float warmup_steps is a ratio; grouping is a sampling strategy.
    return {
        "warmup_steps": 0.1,
        "train_sampling_strategy": "group_by_length" if grouped else "random",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=SETTINGS, default="default")
    parser.add_argument("--model", required=True, help="all-MiniLM-L6-v2 directory")
    parser.add_argument("--data-dir", required=True, help="GLUE MRPC directory")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup-steps", type=int, default=3, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--timing-json", help="write the timed steps' figures here")
    parser.add_argument("--whole", action="store_true", help="also evaluate on dev and save")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()

    data_dir = Path(args.data_dir)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    train = encode(tokenizer, data_dir / "train.tsv", args.setting)
    model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=2)
    collator, clock = CountingCollator(tokenizer), StepClock()
    with tempfile.TemporaryDirectory() as output_dir:
        training_args = TrainingArguments(
            output_dir=output_dir,
            per_device_train_batch_size=32,
            per_device_eval_batch_size=64,
            learning_rate=5e-5,
            lr_scheduler_type="linear",
            max_steps=args.steps,
            bf16=args.setting == "grouped-bf16",
            **version_arguments(args.setting in ("grouped", "grouped-bf16")),
            use_cpu=True,
            seed=42,
            report_to=[],
            save_strategy="no",
            eval_strategy="no",
            logging_strategy="no",
            disable_tqdm=True,
        )
        trainer = Trainer(
            model=model,
            args=training_args,
            train_dataset=train,
            data_collator=collator,
            callbacks=[clock],
        )
        trainer.train()
        if args.whole:
            dev = encode(tokenizer, data_dir / "dev.tsv", args.setting)
            predictions = trainer.predict(dev)
            accuracy = float((predictions.predictions.argmax(-1) == predictions.label_ids).mean())
            trainer.save_model(os.path.join(output_dir, "model"))
            print(f"dev accuracy {accuracy:.4f}")
    if args.timing_json:
        write_timing(args, collator, clock)
    return 0


def write_timing(args, collator: CountingCollator, clock: StepClock) -> None:
    """The steps after the warm-up: seconds, examples, real and padded tokens, peak RSS."""
    timed = collator.batches[args.warmup_steps : args.steps]
    figures = {
        "system": f"hf-{args.setting}",
        "seconds": clock.ends[args.steps - 1] - clock.ends[args.warmup_steps - 1],
        "steps": args.steps - args.warmup_steps,
        "examples": int(sum(b[0] for b in timed)),
        "real_tokens": int(sum(b[1] for b in timed)),
        "padded_tokens": int(sum(b[2] for b in timed)),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "precision": "bf16" if args.setting == "grouped-bf16" else "fp32",
        "threads": torch.get_num_threads(),
    }
    Path(args.timing_json).write_text(json.dumps(figures))


if __name__ == "__main__":
    sys.exit(main())
