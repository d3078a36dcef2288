"""``bertfit predict SOURCE --input IN --output OUT``: formats, order, parity, resume, bad rows."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from bertfit import cli, predictors
from bertfit.bulk import BulkOptions, engine, parts, predict_bulk
from bertfit.bulk.model import load_model
from bertfit.cli import main
from bertfit.errors import ConfigError, DataError
from bertfit.export.export import export_classifier
from bertfit.export.runtime import load_exported

from conftest import BLOCK_TORCH, make_tiny_classifier, synthetic_pairs

N = 90


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny classifier whose logits vary from input to input (BERT's initialization makes
    them nearly constant, which would hide rows written in the wrong order)."""
    classifier = make_tiny_classifier(tmp_path_factory.mktemp("tiny"))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in classifier.model.parameters():
            if parameter.dim() > 1:
                parameter.normal_(0.0, 0.3, generator=generator)
    # A fitted temperature, so that calibrated probabilities differ from the raw softmax.
    classifier.info.temperature = 1.7
    return classifier


@pytest.fixture(scope="module")
def model_dir(tiny, tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("model") / "model"
    tiny.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def export_dir(tiny, tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("export") / "export"
    export_classifier(tiny, directory)
    return directory


def pairs(n: int = N, seed: int = 3) -> list[dict]:
    """Rows with ids whose texts' lengths vary a lot, so that length-sorted batches reorder them."""
    (first, second), _ = synthetic_pairs(n, seed)
    rows = []
    for i, (a, b) in enumerate(zip(first, second)):
        repeat = 1 + (i * 7) % 5
        rows.append({"id": 1000 + i, "sentence1": " ".join([a] * repeat), "sentence2": b})
    return rows


def write_input(path: Path, rows: list[dict]) -> Path:
    kind = path.suffix
    if kind == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=25)
    elif kind == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    else:
        with open(path, "w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(
                handle, list(rows[0]), delimiter="\t" if kind == ".tsv" else ","
            )
            writer.writeheader()
            writer.writerows(rows)
    return path


def read_output(path: Path) -> list[dict]:
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pylist()
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def expected_rows(predictor, rows: list[dict]) -> list[dict]:
    """What the in-memory predictor says of every row at once."""
    columns = [[row["sentence1"] for row in rows], [row["sentence2"] for row in rows]]
    if hasattr(predictor, "predict"):
        return predictor.predict(columns)
    out = predictor({"sentence1": columns[0], "sentence2": columns[1]})
    return [
        {"label": str(c), "class_id": int(i), "probabilities": p.tolist(), "logits": z.tolist()}
        for c, i, p, z in zip(out["class"], out["class_id"], out["probabilities"], out["logits"])
    ]


def options(tmp_path: Path, source: Path, output: str, **extra) -> BulkOptions:
    return BulkOptions(input=str(source), output=str(tmp_path / output), **extra)


# -- formats, order and parity --------------------------------------------------------------------


@pytest.mark.parametrize("source_kind", ["model", "export"])
@pytest.mark.parametrize("in_suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_rows_equal_the_in_memory_predictor_in_input_order(
    source_kind, in_suffix, model_dir, export_dir, tiny, tmp_path
):
    rows = pairs()
    source = write_input(tmp_path / f"in{in_suffix}", rows)
    model = model_dir if source_kind == "model" else export_dir
    predictor = tiny if source_kind == "model" else load_exported(export_dir)
    summary = predict_bulk(
        model, options(tmp_path, source, "out.jsonl", chunk_rows=16, logits=True)
    )
    assert summary.rows == N and summary.rejected == 0
    out = read_output(tmp_path / "out.jsonl")
    expected = expected_rows(predictor, rows)
    ids = [row["id"] for row in rows]
    assert [
        row["id"] if in_suffix in (".jsonl", ".parquet") else int(row["id"]) for row in out
    ] == ids
    assert [row["label"] for row in out] == [row["label"] for row in expected]
    np.testing.assert_allclose(
        [row["probabilities"] for row in out], [row["probabilities"] for row in expected], atol=1e-5
    )
    np.testing.assert_allclose(
        [row["logits"] for row in out], [row["logits"] for row in expected], atol=1e-5
    )
    assert set(out[0]) == {"id", "label", "class_id", "probabilities", "logits"}


@pytest.mark.parametrize("out_suffix", [".jsonl", ".csv", ".parquet"])
def test_each_output_format_holds_the_same_rows(out_suffix, export_dir, tmp_path):
    rows = pairs()
    source = write_input(tmp_path / "in.parquet", rows)
    predict_bulk(export_dir, options(tmp_path, source, "ref.jsonl", chunk_rows=32))
    reference = read_output(tmp_path / "ref.jsonl")
    out = tmp_path / f"out{out_suffix}"
    predict_bulk(export_dir, options(tmp_path, source, out.name, chunk_rows=32))
    got = read_output(out)
    if out_suffix == ".csv":  # one column per class; every cell text
        header = list(got[0])
        assert header == ["id", "label", "class_id"] + [
            f"probability_{name}" for name in ("not_equivalent", "equivalent")
        ]
        got = [
            {"id": int(r["id"]), "label": r["label"], "class_id": int(r["class_id"]),
             "probabilities": [float(r["probability_not_equivalent"]),
                               float(r["probability_equivalent"])]}
            for r in got
        ]  # fmt: skip
    if out_suffix == ".parquet":
        assert pq.read_metadata(out).num_rows == N
    assert got == reference


def test_order_is_restored_across_chunks_and_length_sorted_batches(export_dir, tmp_path):
    """Each output row is the prediction of its own input row: rows predicted one at a time
    agree with the bulk rows, at any chunk size."""
    rows = pairs(40)
    source = write_input(tmp_path / "in.jsonl", rows)
    predictor = load_exported(export_dir)
    one_by_one = [expected_rows(predictor, [row])[0]["probabilities"] for row in rows]
    for chunk_rows in (1, 7, 40, 1000):
        out = tmp_path / f"out-{chunk_rows}.jsonl"
        predict_bulk(
            export_dir, options(tmp_path, source, out.name, chunk_rows=chunk_rows, batch_size=4)
        )
        got = read_output(out)
        assert [row["id"] for row in got] == [row["id"] for row in rows]
        np.testing.assert_allclose([row["probabilities"] for row in got], one_by_one, atol=1e-5)


def test_text_columns_by_flag_keep_and_a_label_column_kept_beside(export_dir, tmp_path, capsys):
    rows = [{"q": r["sentence1"], "a": r["sentence2"], "label": "x", "id": r["id"], "extra": 1}
            for r in pairs(10)]  # fmt: skip
    source = write_input(tmp_path / "in.csv", rows)
    predict_bulk(export_dir, options(tmp_path, source, "all.jsonl", text_a="q", text_b="a"))
    out = read_output(tmp_path / "all.jsonl")
    assert list(out[0])[:3] == ["input_label", "id", "extra"] and out[0]["input_label"] == "x"
    assert "kept as input_label" in capsys.readouterr().err
    expected = [r["probabilities"] for r in read_output(tmp_path / "all.jsonl")]
    predict_bulk(
        export_dir, options(tmp_path, source, "some.jsonl", text_a="q", text_b="a", keep=["id"])
    )
    some = read_output(tmp_path / "some.jsonl")
    assert [list(r)[0] for r in some] == ["id"] * 10 and "extra" not in some[0]
    assert [r["probabilities"] for r in some] == expected
    with pytest.raises(ConfigError, match=r"reads 2 text\(s\) \(sentence1, sentence2\)"):
        predict_bulk(export_dir, options(tmp_path, source, "x.jsonl", text_a="q"))
    with pytest.raises(DataError, match="no column 'nope' to keep"):
        predict_bulk(export_dir, options(tmp_path, source, "x.jsonl", keep=["nope"]))


def test_shards_in_a_folder_or_glob_equal_the_one_file(export_dir, tmp_path):
    rows = pairs()
    whole = write_input(tmp_path / "whole.jsonl", rows)
    predict_bulk(export_dir, options(tmp_path, whole, "whole-out.jsonl", chunk_rows=16))
    shards = tmp_path / "shards"
    shards.mkdir()
    for i, start in enumerate(range(0, N, 40)):
        write_input(shards / f"part-{i}.parquet", rows[start : start + 40])
    (shards / "_SUCCESS").write_text("")
    predict_bulk(export_dir, options(tmp_path, shards, "folder.jsonl", chunk_rows=16))
    predict_bulk(
        export_dir, options(tmp_path, f"{shards}/part-*.parquet", "glob.jsonl", chunk_rows=16)
    )
    reference = read_output(tmp_path / "whole-out.jsonl")
    assert read_output(tmp_path / "folder.jsonl") == reference
    assert read_output(tmp_path / "glob.jsonl") == reference


# -- resume -------------------------------------------------------------------------------------


class Killed(Exception):
    """Stands for the process dying at a point of the run."""


def _kill_after(k: int):
    def hook(index: int) -> None:
        if index == k:
            raise Killed

    return hook


@pytest.mark.parametrize("out_suffix", [".jsonl", ".csv", ".parquet"])
def test_a_run_stopped_after_any_part_continues_to_the_same_output(
    out_suffix, export_dir, tmp_path
):
    source = write_input(tmp_path / "in.parquet", pairs())
    reference = tmp_path / f"ref{out_suffix}"
    predict_bulk(export_dir, options(tmp_path, source, reference.name, chunk_rows=20))
    chunks = -(-N // 20)
    for k in (0, 2, chunks - 1):
        out = tmp_path / f"out-{k}{out_suffix}"
        with pytest.raises(Killed):
            predict_bulk(
                export_dir,
                options(tmp_path, source, out.name, chunk_rows=20),
                after_part=_kill_after(k),
            )
        assert not out.exists()  # a stopped run leaves no output that looks complete
        summary = predict_bulk(export_dir, options(tmp_path, source, out.name, chunk_rows=20))
        assert summary.resumed_parts == k + 1 and summary.rows == N
        if out_suffix == ".parquet":
            assert pq.read_table(out).equals(pq.read_table(reference))
        else:
            assert out.read_bytes() == reference.read_bytes()


def test_a_part_written_but_not_yet_listed_is_written_again(export_dir, tmp_path, monkeypatch):
    source = write_input(tmp_path / "in.jsonl", pairs())
    predict_bulk(export_dir, options(tmp_path, source, "ref.jsonl", chunk_rows=20))
    calls = []
    real = parts.PartStore._write_manifest

    def dies_on_third_commit(self, output=None):
        calls.append(1)
        if len(calls) == 4:  # the store's first manifest, then parts 0 and 1 are listed
            raise Killed
        real(self, output)

    monkeypatch.setattr(parts.PartStore, "_write_manifest", dies_on_third_commit)
    with pytest.raises(Killed):
        predict_bulk(export_dir, options(tmp_path, source, "out.jsonl", chunk_rows=20))
    monkeypatch.undo()
    folder = tmp_path / "out.jsonl.parts"
    assert (folder / "part-000002.jsonl").is_file()  # on disk, not committed
    assert len(json.loads((folder / "manifest.json").read_text())["parts"]) == 2
    summary = predict_bulk(export_dir, options(tmp_path, source, "out.jsonl", chunk_rows=20))
    assert summary.resumed_parts == 2
    assert (tmp_path / "out.jsonl").read_bytes() == (tmp_path / "ref.jsonl").read_bytes()


def test_a_run_stopped_while_joining_the_parts_leaves_no_output(export_dir, tmp_path, monkeypatch):
    source = write_input(tmp_path / "in.jsonl", pairs())
    predict_bulk(export_dir, options(tmp_path, source, "ref.parquet", chunk_rows=20))

    def dies_before_rename(temporary, output):
        raise Killed

    monkeypatch.setattr("bertfit.bulk.sinks.os.replace", dies_before_rename)
    with pytest.raises(Killed):
        predict_bulk(export_dir, options(tmp_path, source, "out.parquet", chunk_rows=20))
    monkeypatch.undo()
    assert not (tmp_path / "out.parquet").exists()
    assert [p.name for p in tmp_path.iterdir() if "assembling" in p.name] == []
    predict_bulk(export_dir, options(tmp_path, source, "out.parquet", chunk_rows=20))
    assert pq.read_table(tmp_path / "out.parquet").equals(pq.read_table(tmp_path / "ref.parquet"))


KILLABLE = """
import sys, time
from bertfit.bulk import BulkOptions, predict_bulk
source, input_path, output = sys.argv[1:4]
# Slow each part down so that the parent can kill the process between two of them.
predict_bulk(source, BulkOptions(input=input_path, output=output, chunk_rows=10),
             after_part=lambda index: time.sleep(0.3))
"""


def test_killed_with_sigkill_then_the_same_command_gives_the_same_output(export_dir, tmp_path):
    source = write_input(tmp_path / "in.parquet", pairs())
    out = tmp_path / "out.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-c", KILLABLE, str(export_dir), str(source), str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    manifest = tmp_path / "out.jsonl.parts" / "manifest.json"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if manifest.is_file() and len(json.loads(manifest.read_text())["parts"]) >= 3:
                break
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    committed = len(json.loads(manifest.read_text())["parts"])
    assert 3 <= committed < -(-N // 10) and not out.exists()
    assert main(["predict", str(export_dir), "--input", str(source), "--output", str(out),
                 "--chunk-rows", "10", "--quiet"]) == 0  # fmt: skip
    predict_bulk(export_dir, options(tmp_path, source, "ref.jsonl", chunk_rows=10))
    assert out.read_bytes() == (tmp_path / "ref.jsonl").read_bytes()


def _cli(*args: str) -> int:
    return main(["predict", *args, "--quiet"])


def test_a_finished_output_is_complete_and_changes_are_refused(
    export_dir, model_dir, tmp_path, capsys
):
    source = write_input(tmp_path / "in.jsonl", pairs())
    out = tmp_path / "out.csv"
    command = [str(export_dir), "--input", str(source), "--output", str(out), "--chunk-rows", "20"]
    assert _cli(*command) == 0
    first = out.read_bytes()
    assert f"wrote {N} rows to {out}" in capsys.readouterr().err
    assert _cli(*command) == 0
    assert f"{out} is complete ({N} rows); nothing to do" in capsys.readouterr().err
    assert out.read_bytes() == first
    # another model (the same weights in PyTorch form are other files)
    assert _cli(str(model_dir), *command[1:]) == 2
    err = capsys.readouterr().err
    assert "is not the one that wrote" in err and "--overwrite" in err and err.count("\n") == 1
    # other options
    assert _cli(*command[:-1], "10") == 2
    assert "chunk_rows: 20 then 10" in capsys.readouterr().err
    # a changed input, before the run is complete
    with pytest.raises(Killed):
        predict_bulk(export_dir, options(tmp_path, source, "half.csv", chunk_rows=20),
                     after_part=_kill_after(1))  # fmt: skip
    time.sleep(0.01)
    write_input(source, pairs(seed=4))
    assert _cli(*command[:-3], str(tmp_path / "half.csv"), "--chunk-rows", "20") == 2
    err = capsys.readouterr().err
    parts_folder = tmp_path / "half.csv.parts"
    changed = (
        f"the input changed since {parts_folder} was written ({source.resolve()} was modified)"
    )
    assert changed in err
    # and over a completed output: refused too, then --overwrite starts over
    assert _cli(*command) == 2
    capsys.readouterr()
    assert _cli(*command, "--overwrite") == 0
    assert out.read_bytes() != first
    assert read_output(out)[0]["label"] in ("equivalent", "not_equivalent")


def test_an_output_that_this_command_did_not_write_is_not_replaced(export_dir, tmp_path, capsys):
    source = write_input(tmp_path / "in.jsonl", pairs(5))
    out = tmp_path / "mine.jsonl"
    out.write_text("precious\n")
    assert _cli(str(export_dir), "--input", str(source), "--output", str(out)) == 2
    assert "is not the output of an earlier bulk predict" in capsys.readouterr().err
    assert out.read_text() == "precious\n"
    assert (
        _cli(str(export_dir), "--input", str(source), "--output", str(source), "--overwrite") == 2
    )
    assert "is an input file" in capsys.readouterr().err
    assert _cli(str(export_dir), "--input", str(source), "--output", str(out), "--overwrite") == 0
    assert len(read_output(out)) == 5


def test_a_completed_output_changed_afterwards_is_not_called_complete(export_dir, tmp_path, capsys):
    source = write_input(tmp_path / "in.jsonl", pairs(5))
    out = tmp_path / "out.jsonl"
    command = [str(export_dir), "--input", str(source), "--output", str(out)]
    assert _cli(*command) == 0
    out.write_text("edited\n")
    assert _cli(*command) == 2
    assert "has changed since; rerun with --overwrite" in capsys.readouterr().err


# -- bad rows -----------------------------------------------------------------------------------


def _bad_jsonl(path: Path) -> Path:
    lines = [json.dumps(row).encode() for row in pairs(6)]
    lines[1] = json.dumps({"id": 1, "sentence1": None, "sentence2": "b"}).encode()
    lines[3] = b'{"id": 3, "sentence1": "caf\xe9", "sentence2": "b"}'
    lines[4] = json.dumps({"id": 4, "sentence1": "a", "sentence2": 5}).encode()
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_bad_jsonl, r"bad.jsonl: line 2, column 'sentence1': missing text \(--on-error skip"),
        (
            lambda p: write_input(p.with_suffix(".parquet"), [{"id": 1, "text": "a"}]),
            r"bad.parquet: row 1, column 'sentence1': no such column in the file",
        ),
        (
            lambda p: (p.with_suffix(".csv").write_bytes(b"sentence1,sentence2\na,b\n\xff,c\n")
                       and p.with_suffix(".csv")),
            r"bad.csv: line 3, column 'sentence1': not UTF-8 text",
        ),
    ],
)  # fmt: skip
def test_a_bad_row_stops_the_run_with_one_line(make, message, export_dir, tmp_path, capsys):
    source = make(tmp_path / "bad.jsonl")
    out = tmp_path / "out.jsonl"
    assert _cli(str(export_dir), "--input", str(source), "--output", str(out)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("bertfit: error: ")
    assert __import__("re").search(message, err), err
    assert not out.exists()


def test_skip_sets_bad_rows_aside_with_their_reasons(export_dir, tmp_path, capsys):
    source = _bad_jsonl(tmp_path / "bad.jsonl")
    out = tmp_path / "out.parquet"
    args = [str(export_dir), "--input", str(source), "--output", str(out), "--chunk-rows", "4"]
    assert _cli(*args, "--on-error", "skip") == 0
    rejects = tmp_path / "out.rejects.jsonl"
    err = capsys.readouterr().err
    assert f"wrote 3 rows to {out}; 3 rows rejected, see {rejects}" in err
    assert [row["id"] for row in read_output(out)] == [1000, 1002, 1005]
    assert read_output(rejects) == [
        {"file": str(source), "line": 2, "column": "sentence1", "reason": "missing text"},
        {"file": str(source), "line": 4, "column": None, "reason": "not UTF-8 text"},
        {
            "file": str(source),
            "line": 5,
            "column": "sentence2",
            "reason": "expected a string, got int",
        },
    ]
    assert _cli(*args, "--on-error", "skip") == 0
    assert "is complete (3 rows; 3 rows rejected" in capsys.readouterr().err


def test_a_run_stopped_by_a_bad_row_goes_on_with_skip(export_dir, tmp_path, capsys):
    rows = pairs(30)
    rows[25]["sentence2"] = None
    source = write_input(tmp_path / "in.jsonl", rows)
    args = [str(export_dir), "--input", str(source), "--output", str(tmp_path / "o.jsonl"),
            "--chunk-rows", "10"]  # fmt: skip
    assert _cli(*args) == 2
    assert "line 26, column 'sentence2': missing text" in capsys.readouterr().err
    assert _cli(*args, "--on-error", "skip") == 0
    assert "after 2 parts committed before; 1 rows rejected" in capsys.readouterr().err
    assert len(read_output(tmp_path / "o.jsonl")) == 29


# -- the command --------------------------------------------------------------------------------


def test_bulk_flags_need_output_and_the_old_forms_are_unchanged(model_dir, tmp_path, capsys):
    assert _cli(str(model_dir), "--sentence1", "a cat", "--sentence2", "a dog", "--keep", "id") == 2
    assert "--keep goes with --output" in capsys.readouterr().err
    assert _cli(str(model_dir), "--sentence1", "a cat", "--sentence2", "a dog") == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert set(row) == {"label", "class_id", "probabilities", "logits"}
    tsv = tmp_path / "plain.tsv"
    tsv.write_text("a cat\ta dog\nred\tblue\n", encoding="utf-8")
    assert _cli(str(model_dir), "--input", str(tsv)) == 0
    stdout_rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    # the same headerless TSV, read by position in the bulk form
    assert (
        _cli(str(model_dir), "--input", str(tsv), "--output", str(tmp_path / "o.jsonl"), "--logits")
        == 0
    )
    bulk_rows = read_output(tmp_path / "o.jsonl")
    assert [r["label"] for r in bulk_rows] == [r["label"] for r in stdout_rows]
    np.testing.assert_allclose(
        [r["probabilities"] for r in bulk_rows],
        [r["probabilities"] for r in stdout_rows],
        atol=1e-6,
    )
    assert cli.BULK_CHUNK_ROWS == engine.DEFAULT_CHUNK_ROWS
    assert BulkOptions("in", "out").batch_size == cli._EVAL_BATCH_SIZE
    assert _cli(str(model_dir), "--output", str(tmp_path / "x.jsonl")) == 2
    assert "--output needs --input" in capsys.readouterr().err
    assert _cli(str(model_dir), "--input", str(tsv), "--output", str(tmp_path / "x.xlsx")) == 2
    assert "unknown output type '.xlsx'" in capsys.readouterr().err


def test_threads_reach_the_onnx_session_in_both_forms(export_dir, tmp_path, monkeypatch):
    opened = []

    def recording(*args, **kwargs):
        opened.append(load_exported(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(predictors, "load_exported", recording)
    source = write_input(tmp_path / "in.parquet", pairs(6))
    out = str(tmp_path / "out.parquet")
    assert _cli(str(export_dir), "--input", str(source), "--output", out, "--threads", "1") == 0
    assert _cli(str(export_dir), "--sentence1", "a", "--sentence2", "b", "--threads", "1") == 0
    assert _cli(str(export_dir), "--sentence1", "a", "--sentence2", "b") == 0
    threads = [p.backend.session.get_session_options().intra_op_num_threads for p in opened]
    assert threads == [1, 1, 0]  # 0: ONNX Runtime's default, one per core


def test_regression_models_write_a_score(tmp_path):
    classifier = make_tiny_classifier(tmp_path, num_classes=1, problem_type="regression")
    classifier.info.label_names = ["score"]
    directory = tmp_path / "regression"
    classifier.save_pretrained(directory)
    source = write_input(tmp_path / "in.jsonl", pairs(8))
    predict_bulk(directory, options(tmp_path, source, "out.jsonl"))
    got = read_output(tmp_path / "out.jsonl")
    expected = classifier.predict(
        [[r["sentence1"] for r in pairs(8)], [r["sentence2"] for r in pairs(8)]]
    )
    assert [set(r) for r in got] == [{"id", "score"}] * 8
    np.testing.assert_allclose([r["score"] for r in got], [r["score"] for r in expected], atol=1e-5)


NO_TORCH = (
    BLOCK_TORCH
    + """
from bertfit.cli import main
code = main(["predict", sys.argv[1], "--input", sys.argv[2], "--output", sys.argv[3], "--quiet"])
assert "torch" not in sys.modules
sys.exit(code)
"""
)


def test_an_export_runs_in_bulk_without_torch(export_dir, tmp_path):
    source = write_input(tmp_path / "in.parquet", pairs(12))
    out = tmp_path / "out.parquet"
    result = subprocess.run(
        [sys.executable, "-c", NO_TORCH, str(export_dir), str(source), str(out)],
        capture_output=True, text=True, timeout=120, env={**os.environ},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert pq.read_table(out).column("id").to_pylist() == [r["id"] for r in pairs(12)]


def test_load_model_fingerprints_the_model_files(model_dir, export_dir, tmp_path):
    assert load_model(model_dir, 8).fingerprint != load_model(export_dir, 8).fingerprint
    assert load_model(model_dir, 8).fingerprint == load_model(str(model_dir) + "/", 8).fingerprint


def test_probabilities_are_calibrated_unless_raw_is_asked(export_dir, tmp_path):
    source = write_input(tmp_path / "in.jsonl", pairs(6))
    predict_bulk(export_dir, options(tmp_path, source, "cal.jsonl", logits=True))
    predict_bulk(export_dir, options(tmp_path, source, "raw.jsonl", calibrated=False))
    calibrated, raw = read_output(tmp_path / "cal.jsonl"), read_output(tmp_path / "raw.jsonl")
    logits = np.array([row["logits"] for row in calibrated])
    for rows, temperature in ((calibrated, 1.7), (raw, 1.0)):
        expected = np.exp(logits / temperature)
        expected /= expected.sum(axis=1, keepdims=True)
        np.testing.assert_allclose([row["probabilities"] for row in rows], expected, atol=1e-6)
