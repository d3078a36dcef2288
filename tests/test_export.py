"""``bertfit export`` and ``load_exported``: files, parity, checksums, atomicity, no torch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import bertfit
from bertfit.errors import CheckpointError, ConfigError, DataError
from bertfit.export import export as export_module
from bertfit.export import onnx_export
from bertfit.export.export import export_classifier
from bertfit.export.runtime import load_exported
from bertfit.paths import sha256_file

from conftest import BLOCK_TORCH, GLUE_DIR, make_tiny_classifier

LONG = " ".join(["the big cat sat on the mat and saw a small dog"] * 12)
PAIRS = {
    "sentence1": ["the cat sat on the mat .", "a dog ran", LONG, "red", "Blue , GREEN ."],
    "sentence2": ["a cat sat", "the dog ran on it .", "small", LONG, "purple and orange"],
}


def _columns(inputs: dict) -> list[list[str]]:
    return [inputs["sentence1"], inputs["sentence2"]]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny classifier whose logits vary from input to input (BERT's initialization makes
    them nearly constant, which would hide mistakes)."""
    classifier = make_tiny_classifier(tmp_path_factory.mktemp("tiny"))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in classifier.model.parameters():
            if parameter.dim() > 1:
                parameter.normal_(0.0, 0.3, generator=generator)
    return classifier


@pytest.fixture(scope="module")
def onnx_dir(tiny, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("exports") / "fp32"
    export_classifier(tiny, output)
    return output


@pytest.fixture(scope="module")
def int8_dir(tiny, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("exports") / "int8"
    export_classifier(tiny, output, quantize="int8")
    return output


def copy_of(directory: Path, tmp_path: Path) -> Path:
    target = tmp_path / directory.name
    shutil.copytree(directory, target)
    return target


# -- the directory --------------------------------------------------------------------------------


def test_export_writes_model_tokenizer_settings_and_manifest(onnx_dir, tiny):
    assert sorted(p.name for p in onnx_dir.iterdir()) == [
        "README.md", "classifier.json", "manifest.json", "model.onnx", "vocab.txt",
    ]  # fmt: skip
    spec = json.loads((onnx_dir / "classifier.json").read_text())
    assert spec["task"] == "mrpc"
    assert spec["input_names"] == ["sentence1", "sentence2"]
    assert spec["label_names"] == ["not_equivalent", "equivalent"]
    assert spec["tokenizer"]["lower_case"] is True
    assert spec["packing"]["seq_length"] == tiny.info.max_seq_length
    assert spec["packing"]["special_tokens"] == tiny.tokenizer.special_tokens_dict
    assert (onnx_dir / "vocab.txt").read_bytes() == tiny.tokenizer.vocab_file.read_bytes()
    manifest = json.loads((onnx_dir / "manifest.json").read_text())
    assert manifest["format"] == "bertfit-export" and manifest["format_version"] == 1
    assert {"bertfit", "torch", "onnx", "onnxruntime", "tokenizers"} <= set(manifest["versions"])
    assert manifest["export"]["format"] == "onnx" and manifest["export"]["precision"] == "fp32"
    assert sorted(manifest["files"]) == ["README.md", "classifier.json", "model.onnx", "vocab.txt"]
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == sha256_file(onnx_dir / name)
        assert entry["bytes"] == (onnx_dir / name).stat().st_size
    assert manifest["check"]["max_abs_diff"] <= 1e-4
    assert not [p for p in onnx_dir.parent.iterdir() if p.name.startswith(".")]


def test_onnx_model_is_the_built_graph_with_dynamic_axes_and_opset_23(onnx_dir, tiny):
    import onnx

    model = onnx.load(str(onnx_dir / "model.onnx"))
    assert {o.version for o in model.opset_import if o.domain in ("", "ai.onnx")} == {23}
    for graph_input in model.graph.input:
        dims = graph_input.type.tensor_type.shape.dim
        assert [d.dim_param for d in dims] == ["batch", "sequence"], graph_input.name
    assert [o.name for o in model.graph.output] == ["logits"]
    ops = [node.op_type for node in model.graph.node]
    layers = tiny.model.config.num_layers
    # One Attention per layer and no head reshapes around it; in the last layer the query,
    # attention output and feed-forward see only the first token, sliced from its input.
    assert ops.count("Attention") == layers and "Transpose" not in ops
    assert ops.count("Slice") == 3  # position rows, the last layer's first token, the pooler's
    export = json.loads((onnx_dir / "manifest.json").read_text())["export"]
    assert export["opset"] == 23 and export["transformer_fusions"] is None


def test_transformer_fusions_fuse_every_layer_and_keep_parity(tiny, tmp_path):
    import onnx

    result = export_classifier(tiny, tmp_path / "fused", transformer_fusions=True)
    fused = {name: result.fusions[name] for name in ("EmbedLayerNormalization", "Attention")}
    assert fused == {"EmbedLayerNormalization": 1, "Attention": 2}  # one per layer
    ops = {node.op_type for node in onnx.load(str(result.directory / "model.onnx")).graph.node}
    assert {"Attention", "EmbedLayerNormalization", "SkipLayerNormalization"} <= ops
    assert json.loads((result.directory / "manifest.json").read_text())["export"]["opset"] == 17
    out = load_exported(result.directory)(PAIRS)["logits"]
    np.testing.assert_allclose(out, tiny.logits(_columns(PAIRS)), atol=1e-4, rtol=0)


# -- the predictor --------------------------------------------------------------------------------


def test_predictor_matches_the_pytorch_model(onnx_dir, tiny):
    predictor = load_exported(onnx_dir)
    result = predictor(PAIRS)
    expected = tiny.logits(_columns(PAIRS))
    assert result["logits"].shape == (5, 2) and result["logits"].dtype == np.float32
    np.testing.assert_allclose(result["logits"], expected, atol=1e-4, rtol=0)
    assert np.ptp(expected[:, 0]) > 0.1  # the inputs really give different logits
    assert result["class_id"].tolist() == expected.argmax(-1).tolist()
    names = ["not_equivalent", "equivalent"]
    assert result["class"].tolist() == [names[i] for i in expected.argmax(-1)]
    np.testing.assert_allclose(result["probabilities"].sum(-1), 1.0, rtol=1e-6)


def test_predictor_batches_any_number_of_examples_and_keeps_their_order(onnx_dir):
    predictor = load_exported(onnx_dir, batch_size=2)
    widths = []
    run = predictor.backend.run
    predictor.backend.run = lambda feed: widths.append(feed["input_word_ids"].shape) or run(feed)
    inputs = {key: values * 3 for key, values in PAIRS.items()}  # 15 examples
    batched = predictor(inputs)["logits"]
    assert [shape[0] for shape in widths] == [2] * 7 + [1]
    # Sorted by length: the longest examples come first, so no batch is padded beyond need.
    assert [shape[1] for shape in widths] == sorted((shape[1] for shape in widths), reverse=True)
    one_by_one = np.concatenate(
        [predictor({k: [v[i]] for k, v in inputs.items()})["logits"] for i in range(15)]
    )
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    assert predictor.batch_size == 2 and load_exported(onnx_dir).batch_size == 32


def test_predictor_takes_single_strings_and_empty_columns(onnx_dir):
    predictor = load_exported(onnx_dir)
    one = predictor({"sentence1": "the cat sat", "sentence2": "a dog ran"})
    assert one["logits"].shape == (1, 2) and one["class"].shape == (1,)
    empty = predictor({"sentence1": [], "sentence2": []})
    assert empty["logits"].shape == (0, 2) and empty["class_id"].shape == (0,)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"sentence1": ["a"]}, "missing input column 'sentence2'"),
        ({"sentence1": ["a"], "sentence2": ["b"], "label": ["1"]}, "unknown input column 'label'"),
        ({"sentence1": ["a", "b"], "sentence2": ["c"]}, "differ in length"),
        ({"sentence1": ["a", 3], "sentence2": ["c", "d"]}, "'sentence1', row 1: expected a string"),
        ([["a"], ["b"]], "expected a mapping"),
    ],
)
def test_predictor_names_the_bad_input(onnx_dir, inputs, message):
    with pytest.raises(DataError, match=message):
        load_exported(onnx_dir)(inputs)


def test_int8_export_is_quantized_smaller_and_close(int8_dir, onnx_dir, tiny):
    import onnx

    ops = {node.op_type for node in onnx.load(str(int8_dir / "model.onnx")).graph.node}
    assert "MatMulInteger" in ops and "DynamicQuantizeLinear" in ops
    manifest = json.loads((int8_dir / "manifest.json").read_text())
    assert manifest["export"]["precision"] == "int8"
    assert manifest["check"]["tolerance"] is None and manifest["check"]["max_abs_diff"] > 0
    assert (int8_dir / "model.onnx").stat().st_size < (onnx_dir / "model.onnx").stat().st_size
    logits = load_exported(int8_dir)(PAIRS)["logits"]
    np.testing.assert_allclose(logits, tiny.logits(_columns(PAIRS)), atol=0.2)


# -- checksums and completeness -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["model.onnx", "vocab.txt", "classifier.json"])
def test_load_refuses_a_changed_file(onnx_dir, tmp_path, name):
    directory = copy_of(onnx_dir, tmp_path)
    data = bytearray((directory / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (directory / name).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=rf"{name}: sha256 does not match manifest.json"):
        load_exported(directory)


@pytest.mark.parametrize(
    ("remove", "message"),
    [
        ("vocab.txt", r"vocab.txt: missing \(listed in manifest.json\)"),
        ("model.onnx", r"model.onnx: missing"),
        ("manifest.json", r"manifest.json: missing; .* is not a complete bertfit export"),
    ],
)
def test_load_refuses_an_incomplete_directory(onnx_dir, tmp_path, remove, message):
    directory = copy_of(onnx_dir, tmp_path)
    (directory / remove).unlink()
    with pytest.raises(CheckpointError, match=message):
        load_exported(directory)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.update(format_version=99), "format_version 99 is not supported"),
        (lambda m: m["files"].pop("vocab.txt"), "does not list vocab.txt"),
        (lambda m: m["files"].update({"../x": m["files"]["vocab.txt"]}), "is not plain"),
        (lambda m: m.update(format="other"), "not a bertfit export manifest"),
    ],
)
def test_load_refuses_a_bad_manifest(onnx_dir, tmp_path, change, message):
    directory = copy_of(onnx_dir, tmp_path)
    manifest = json.loads((directory / "manifest.json").read_text())
    change(manifest)
    (directory / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=message):
        load_exported(directory)


def test_load_refuses_a_missing_directory(tmp_path):
    with pytest.raises(CheckpointError, match="exported model directory not found"):
        load_exported(tmp_path / "nowhere")


# -- atomic writing and the check -----------------------------------------------------------------


def test_failed_export_leaves_nothing_and_keeps_the_old_directory(tiny, tmp_path, monkeypatch):
    output = tmp_path / "out"
    output.mkdir()
    (output / "keep.txt").write_text("old")

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(onnx_export, "export_onnx", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        export_classifier(tiny, output, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (output / "keep.txt").read_text() == "old"


def test_fp32_check_failure_is_an_error_and_writes_nothing(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(export_module, "FP32_TOLERANCE", -1.0)
    with pytest.raises(CheckpointError, match="export check failed: .* differ .* by up to"):
        export_classifier(tiny, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_an_existing_directory_and_bad_options(tiny, onnx_dir, tmp_path):
    with pytest.raises(ConfigError, match="already exists; choose another --output or --overwrite"):
        export_classifier(tiny, onnx_dir)
    with pytest.raises(ConfigError, match="needs --format onnx"):
        export_classifier(tiny, tmp_path / "x", export_format="torch-export", quantize="int8")
    with pytest.raises(ConfigError, match="unknown export format"):
        export_classifier(tiny, tmp_path / "x", export_format="tflite")
    assert list(tmp_path.iterdir()) == []


# -- without torch --------------------------------------------------------------------------------

NO_TORCH = (
    BLOCK_TORCH
    + """
import json
try:
    import torch
except ImportError:
    pass
else:
    raise SystemExit("the torch blocker does not work")
import bertfit
predictor = bertfit.load_exported(sys.argv[1])
out = predictor(json.loads(sys.argv[2]))
assert "torch" not in sys.modules
print(json.dumps({"logits": out["logits"].tolist(), "class": out["class"].tolist()}))
"""
)


def test_load_exported_works_with_torch_unimportable(onnx_dir):
    result = subprocess.run(
        [sys.executable, "-c", NO_TORCH, str(onnx_dir), json.dumps(PAIRS)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    expected = load_exported(onnx_dir)(PAIRS)
    np.testing.assert_allclose(answer["logits"], expected["logits"], atol=1e-6)
    assert answer["class"] == expected["class"].tolist()


def test_importing_bertfit_and_the_runtime_does_not_import_torch():
    code = (
        "import sys, bertfit, bertfit.cli, bertfit.export.runtime, bertfit.serve; "
        "bertfit.cli.build_parser(); bertfit.load_exported; "
        "print(sorted(m for m in ('torch', 'onnxruntime', 'starlette') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# -- torch.export format --------------------------------------------------------------------------


@pytest.mark.slow
def test_torch_export_format_has_the_same_interface_and_results(tiny, tmp_path):
    from bertfit.export.torch_runtime import check_archive

    result = export_classifier(tiny, tmp_path / "pt2", export_format="torch-export")
    assert result.check.max_abs_diff <= 1e-5
    directory = result.directory
    assert sorted(p.name for p in directory.iterdir()) == [
        "README.md", "classifier.json", "manifest.json", "model.pt2", "vocab.txt",
    ]  # fmt: skip
    out = load_exported(directory)(PAIRS)
    np.testing.assert_allclose(out["logits"], tiny.logits(_columns(PAIRS)), atol=1e-5)
    assert set(out) == {"logits", "probabilities", "class_id", "label", "class"}
    # An archive with a pickled payload is refused before torch.export.load could unpickle it.
    tampered = tmp_path / "tampered.pt2"
    with zipfile.ZipFile(directory / "model.pt2") as source, zipfile.ZipFile(tampered, "w") as out:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename.endswith("weights_config.json"):
                data = data.replace(b'"use_pickle": false', b'"use_pickle": true', 1)
            out.writestr(info, data)
    with pytest.raises(CheckpointError, match="stored as a pickle; refused"):
        check_archive(tampered)


# -- the command ----------------------------------------------------------------------------------


def test_cli_export_reports_the_check_and_refuses_mistakes(tiny, tmp_path, capsys):
    from bertfit.cli import main

    model_dir = tmp_path / "run" / "model"
    tiny.save_pretrained(model_dir)
    out = str(tmp_path / "out")
    assert main(["export", str(tmp_path / "run"), "--output", out, "--transformer-fusions"]) == 0
    printed = capsys.readouterr().out
    assert "exported onnx (fp32)" in printed
    assert "check on 64 examples (generated sentences): max |logit diff| vs PyTorch" in printed
    assert "fused: 1 EmbedLayerNormalization, 2 Attention" in printed
    assert bertfit.load_exported(tmp_path / "out").task == "mrpc"
    for args, pattern in [
        (["export", str(tmp_path / "nope"), "--output", str(tmp_path / "o2")], "not a bertfit run"),
        (["export", str(model_dir), "--output", str(tmp_path / "out")], "already exists"),
        (["export", str(model_dir), "--output", "x", "--format", "torch-export", "--quantize",
          "int8"], "needs --format onnx"),
        (["serve", str(tmp_path / "nope")], "exported model directory not found"),
    ]:  # fmt: skip
        assert main(args) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("bertfit: error:"), lines
        assert pattern in lines[0]


# -- the real model -------------------------------------------------------------------------------


@pytest.mark.slow
def test_minilm_export_matches_pytorch_on_the_whole_mrpc_dev_set(tmp_path):
    """The packaged all-MiniLM-L6-v2 with a classification head, exported and reloaded: logits
    on every MRPC dev pair within 1e-4 of the PyTorch model's."""
    if not (GLUE_DIR / "MRPC" / "dev.tsv").is_file():
        pytest.skip(f"real GLUE data not found at {GLUE_DIR}")
    from bertfit.data.readers import read_glue_split
    from bertfit.data.tasks import MRPC
    from bertfit.inference import ClassifierInfo, TextClassifier
    from bertfit.model.hf_classifier import classifier_from_pretrained
    from bertfit.text.tokenizer import WordpieceTokenizer

    model_dir = bertfit.default_model_dir()
    torch.manual_seed(0)
    model, _ = classifier_from_pretrained(model_dir, 2)
    with torch.no_grad():
        model.classifier.dense.weight.normal_(0.0, 0.5)  # logits of a useful size
    info = ClassifierInfo("mrpc", list(MRPC.label_names), 128, True, list(MRPC.input_names))
    classifier = TextClassifier(model.eval(), WordpieceTokenizer(model_dir / "vocab.txt"), info)
    result = export_classifier(classifier, tmp_path / "minilm", check_examples=8)
    dev = read_glue_split(GLUE_DIR / "MRPC" / "dev.tsv", MRPC, "dev")
    exported = load_exported(result.directory)(dict(zip(info.input_names, dev.columns)))
    reference = classifier.logits(dev.columns)
    assert len(reference) == 408
    assert np.abs(exported["logits"] - reference).max() <= 1e-4


def test_readme_export_example_runs(onnx_dir, tiny, tmp_path, capsys):
    """The README's ``py`` block (export section) runs as written, on the tiny model."""
    import re

    from conftest import REPO

    blocks = re.findall(r"```py\n(.*?)```", (REPO / "README.md").read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 1
    tiny.save_pretrained(tmp_path / "model")
    code = blocks[0].replace('"exports/mrpc"', repr(str(onnx_dir)))
    code = code.replace('"runs/mrpc/model"', repr(str(tmp_path / "model")))
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].endswith("(2, 2)")
    assert float(printed[1]) <= 1e-4


def test_export_shows_its_stages_on_a_terminal_and_is_quiet_otherwise(tmp_path, monkeypatch):
    from bertfit import progress
    from bertfit.export.export import export_classifier

    from conftest import make_tiny_classifier

    classifier = make_tiny_classifier(tmp_path)
    shown: list[bool] = []
    real_bar = progress.bar

    def spy(*args, **kwargs):
        bar = real_bar(*args, **kwargs)
        if kwargs.get("desc") == "exporting":
            shown.append(not bar.disable)
        return bar

    monkeypatch.setattr("bertfit.export.export.progress_bar", spy)
    monkeypatch.setattr(progress, "_interactive", lambda: True)
    export_classifier(classifier, tmp_path / "a", check_examples=2)
    progress.set_quiet(True)
    try:
        export_classifier(classifier, tmp_path / "b", check_examples=2)
    finally:
        progress.set_quiet(False)
    assert shown == [True, False]
