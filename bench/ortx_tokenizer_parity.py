"""Would ONNX Runtime Extensions' ``BertTokenizer`` op tokenize MRPC exactly as bertfit does?

A single ONNX file whose graph takes strings needs the tokenizer inside the graph; ONNX Runtime
Extensions offers a BERT WordPiece op for that. This script tokenizes every sentence of MRPC
(train, dev and test) with bertfit's tokenizer (in this environment) and with the op (in
``--ortx-python``, an environment with onnxruntime and onnxruntime-extensions, never bertfit's),
and reports how many sentences get different token ids, with examples. Such a single-file
export would only be worth shipping if the count were zero::

    python3 -m venv .peers/ortx
    .peers/ortx/bin/pip install onnxruntime onnxruntime-extensions onnx numpy
    .venv/bin/python bench/ortx_tokenizer_parity.py --ortx-python .peers/ortx/bin/python

Writes ``bench/results/ortx_tokenizer_parity.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

# Run by --ortx-python: tokenizes the sentences of a JSON file with the BertTokenizer op.
ORTX_WORKER = r"""
import json, sys
import numpy as np, onnxruntime as ort
from onnx import TensorProto, helper
from onnxruntime_extensions import get_library_path
import onnxruntime_extensions

job = json.load(open(sys.argv[1]))
node = helper.make_node(
    "BertTokenizer", ["text"], ["input_ids", "token_type_ids", "attention_mask"],
    domain="ai.onnx.contrib", vocab_file=job["vocab"], do_lower_case=1, strip_accents=1,
)
graph = helper.make_graph(
    [node], "tokenizer", [helper.make_tensor_value_info("text", TensorProto.STRING, [None])],
    [helper.make_tensor_value_info(n, TensorProto.INT64, [None])
     for n in ("input_ids", "token_type_ids", "attention_mask")],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                helper.make_opsetid("ai.onnx.contrib", 1)])
options = ort.SessionOptions()
options.register_custom_ops_library(get_library_path())
session = ort.InferenceSession(model.SerializeToString(), options,
                               providers=["CPUExecutionProvider"])
ids = []
for text in job["sentences"]:
    out = session.run(["input_ids"], {"text": np.array([text], dtype=object)})[0]
    ids.append(out.reshape(-1).tolist()[1:-1])  # without [CLS] ... [SEP]
print(json.dumps({"ids": ids, "version": onnxruntime_extensions.__version__}))
"""


# Texts outside MRPC that exercise BERT's normalisation: CJK, control and zero-width characters,
# case folding beyond ASCII, compatibility characters.
PROBES = [
    "Café déjà vu naïve résumé", "東京は日本の首都です", "a" * 150 + " b",
    "Hello\u0000world\u200b tab\there", "ﬁne ligature", "Ünïcödé ÅNGSTRÖM", "emoji 😀 test",
    "İstanbul ß ẞ", "\u00adsoft\u00adhyphen", "a\u3000b ideographic space",
    "Ω ohm Å angstrom sign",
]  # fmt: skip


def mrpc_sentences(data_dir: Path) -> list[str]:
    from bertfit.data.readers import read_glue_split
    from bertfit.data.tasks import MRPC

    root = data_dir / "MRPC" if (data_dir / "MRPC").is_dir() else data_dir
    sentences = []
    for split in ("train", "dev", "test"):
        examples = read_glue_split(root / f"{split}.tsv", MRPC, split)
        for column in examples.columns:
            sentences.extend(column)
    return sentences


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ortx-python", default=".peers/ortx/bin/python")
    parser.add_argument("--data-dir", default="../shared/data/glue")
    parser.add_argument("--output", default="bench/results/ortx_tokenizer_parity.json")
    args = parser.parse_args()

    import bertfit
    from bertfit.text.tokenizer import WordpieceTokenizer

    vocab = bertfit.default_model_dir() / "vocab.txt"
    sentences = mrpc_sentences(Path(args.data_dir))
    mrpc_count = len(sentences)
    sentences = sentences + PROBES
    ours = WordpieceTokenizer(vocab, lower_case=True).tokenize(sentences)
    with tempfile.TemporaryDirectory() as tmp:
        job = Path(tmp) / "job.json"
        job.write_text(
            json.dumps({"vocab": vocab.read_text(encoding="utf-8"), "sentences": sentences})
        )
        worker = Path(tmp) / "worker.py"
        worker.write_text(ORTX_WORKER)
        result = subprocess.run(
            [args.ortx_python, str(worker), str(job)], capture_output=True, text=True, timeout=1800
        )
    if result.returncode != 0:
        sys.exit(f"onnxruntime-extensions worker failed:\n{result.stderr[-3000:]}")
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    tokenizer = WordpieceTokenizer(vocab, lower_case=True)
    differences, probes = [], []
    for index, (text, mine, theirs) in enumerate(zip(sentences, ours, answer["ids"])):
        if mine != theirs:
            (differences if index < mrpc_count else probes).append({
                "text": text,
                "bertfit": tokenizer.tokens(text),
                "ortx_ids": theirs,
                "bertfit_ids": mine,
            })  # fmt: skip
    report = {
        "sentences": mrpc_count,
        "different": len(differences),
        "onnxruntime_extensions": answer["version"],
        "examples": differences[:20],
        "probes": len(PROBES),
        "probes_different": probes,
    }
    print(f"{len(differences)} of {mrpc_count} MRPC sentences tokenize differently")
    print(f"{len(probes)} of {len(PROBES)} probe texts outside MRPC tokenize differently:")
    for example in (differences + probes)[:8]:
        print(json.dumps({k: example[k] for k in ("text", "bertfit_ids", "ortx_ids")})[:600])
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
