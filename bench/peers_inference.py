"""Inference speed of what users pick instead of bertfit's export (run by export_inference.py).

Runs in the peers' own environment (``.peers/optimum``: torch, transformers, optimum-onnx,
onnxruntime; never bertfit's), on the same fine-tuned model directory and the same pairs that
``export_inference.py`` hands it, with the same protocol:

* throughput: examples/s over all pairs at batch 32 with ``--threads`` threads (median of 3
  timed passes after a warm-up pass);
* latency: one pair per call with ``--latency-threads`` threads, every pair once, p50 and p99.

Systems: Hugging Face ``pipeline("text-classification")`` in PyTorch fp32 and under bf16
autocast, and Optimum's ONNX Runtime export (``ORTModelForSequenceClassification``) fp32 and int8
(``ORTQuantizer``, ``AutoQuantizationConfig.avx512_vnni``, dynamic) through the same pipeline.
Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import time
from pathlib import Path


def timed_passes(run, passes: int = 3) -> float:
    """Median seconds of ``passes`` calls of ``run`` after one warm-up call."""
    run()
    times = []
    for _ in range(passes):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def latencies(call, instances: list, warmup: int = 20) -> dict:
    """p50/p99 milliseconds of ``call`` on each instance alone."""
    for instance in instances[:warmup]:
        call(instance)
    samples = []
    for instance in instances:
        start = time.perf_counter()
        call(instance)
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return {
        "p50_ms": samples[len(samples) // 2],
        "p99_ms": samples[min(len(samples) - 1, int(0.99 * len(samples)))],
        "calls": len(samples),
    }


def accuracy(outputs: list, labels: list[int], label2id: dict) -> float:
    predicted = [label2id[o["label"]] for o in outputs]
    return sum(p == y for p, y in zip(predicted, labels)) / len(labels)


def measure_pipeline(make_pipe, pairs, labels, label2id, threads, latency_threads, autocast):
    import torch

    inputs = [{"text": a, "text_pair": b} for a, b in pairs]
    kwargs = {"batch_size": 32, "truncation": True, "max_length": 128}
    context = (
        (lambda: torch.autocast("cpu", dtype=torch.bfloat16))
        if autocast
        else contextlib.nullcontext
    )
    pipe = make_pipe(threads)
    torch.set_num_threads(threads)
    with torch.inference_mode(), context():
        outputs = pipe(inputs, **kwargs)
        seconds = timed_passes(lambda: pipe(inputs, **kwargs))
    pipe = make_pipe(latency_threads)
    torch.set_num_threads(latency_threads)
    single = {"truncation": True, "max_length": 128}
    with torch.inference_mode(), context():
        latency = latencies(lambda x: pipe(x, **single), inputs)
    return {
        "examples_per_s": len(inputs) / seconds,
        **latency,
        "accuracy": accuracy(outputs, labels, label2id),
    }


def session_options(threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return options


def export_optimum(model_dir: Path, work: Path) -> tuple[Path, Path]:
    """Optimum's ONNX export of the model, and its dynamic int8 quantization for AVX-512 VNNI."""
    from optimum.onnxruntime import ORTModelForSequenceClassification, ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    fp32, int8 = work / "optimum-fp32", work / "optimum-int8"
    if not (fp32 / "model.onnx").is_file():
        model = ORTModelForSequenceClassification.from_pretrained(model_dir, export=True)
        model.save_pretrained(fp32)
    if not any(int8.glob("*quantized*.onnx")):
        quantizer = ORTQuantizer.from_pretrained(fp32)
        config = AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=True)
        quantizer.quantize(save_dir=int8, quantization_config=config)
    return fp32, int8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="fine-tuned Hugging Face model directory")
    parser.add_argument("--pairs", required=True, help="JSON file: {pairs: [[a, b]], labels: []}")
    parser.add_argument("--work", required=True, help="directory for Optimum's exports")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--latency-threads", type=int, default=1)
    parser.add_argument(
        "--systems", default="pipeline-fp32,pipeline-bf16,optimum-fp32,optimum-int8"
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch
    import transformers
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    data = json.loads(Path(args.pairs).read_text())
    pairs, labels = data["pairs"], data["labels"]
    model_dir = Path(args.model)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.model_max_length = 128
    torch_model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    label2id = {name: int(i) for name, i in torch_model.config.label2id.items()}
    results, versions = {}, {"torch": torch.__version__, "transformers": transformers.__version__}
    wanted = args.systems.split(",")

    def torch_pipe(threads):
        return pipeline("text-classification", model=torch_model, tokenizer=tokenizer, device=-1)

    for name, autocast in (("pipeline-fp32", False), ("pipeline-bf16", True)):
        if name in wanted:
            results[name] = measure_pipeline(
                torch_pipe, pairs, labels, label2id, args.threads, args.latency_threads, autocast
            )
    if any(name.startswith("optimum") for name in wanted):
        import onnxruntime
        import optimum.version
        from optimum.onnxruntime import ORTModelForSequenceClassification

        versions["optimum"] = optimum.version.__version__
        versions["onnxruntime"] = onnxruntime.__version__
        fp32, int8 = export_optimum(model_dir, Path(args.work))
        for name, directory in (("optimum-fp32", fp32), ("optimum-int8", int8)):
            if name not in wanted:
                continue
            file_name = next(directory.glob("*quantized*.onnx")).name if "int8" in name else None

            def ort_pipe(threads, directory=directory, file_name=file_name):
                extra = {"file_name": file_name} if file_name else {}
                model = ORTModelForSequenceClassification.from_pretrained(
                    directory, session_options=session_options(threads), **extra
                )
                return pipeline("text-classification", model=model, tokenizer=tokenizer, device=-1)

            results[name] = measure_pipeline(
                ort_pipe, pairs, labels, label2id, args.threads, args.latency_threads, False
            )
    print(json.dumps({"results": results, "versions": versions}))


if __name__ == "__main__":
    main()
