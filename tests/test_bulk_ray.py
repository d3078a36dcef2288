"""``--engine ray``: the same rows as the in-process engine, on a local Ray with 2 CPUs."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray

from bertfit.bulk import BulkOptions, predict_bulk
from bertfit.bulk.ray_engine import predict_bulk_ray, read_blocks
from bertfit.bulk.sources import Layout, input_files
from bertfit.cli import main
from bertfit.errors import ConfigError
from bertfit.export.export import export_classifier

from conftest import make_tiny_classifier, synthetic_pairs


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.slow
def test_ray_rows_equal_the_in_process_rows(local_ray, tmp_path, capsys):
    classifier = make_tiny_classifier(tmp_path)
    classifier.info.temperature = 1.3
    export = tmp_path / "export"
    export_classifier(classifier, export)
    (first, second), _ = synthetic_pairs(300, 5)
    rows = [{"id": 5000 + i, "sentence1": a * (1 + i % 3), "sentence2": b}
            for i, (a, b) in enumerate(zip(first, second))]  # fmt: skip
    source = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(rows), source, row_group_size=64)
    common = {"input": str(source), "chunk_rows": 50, "logits": True}
    predict_bulk(export, BulkOptions(output=str(tmp_path / "local.jsonl"), **common))
    summary = predict_bulk_ray(export, BulkOptions(output=str(tmp_path / "ray.jsonl"), **common))
    assert summary.rows == 300
    local = (tmp_path / "local.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in local] == [row["id"] for row in rows]
    assert (tmp_path / "ray.jsonl").read_text().splitlines() == local
    # the command: complete on a rerun; an export is required
    out = str(tmp_path / "ray.jsonl")
    args = ["predict", str(export), "--input", str(source), "--output", out, "--quiet",
            "--chunk-rows", "50", "--logits", "--engine", "ray"]  # fmt: skip
    assert main(args) == 0
    assert "is complete (300 rows)" in capsys.readouterr().err
    model_dir = tmp_path / "model"
    classifier.save_pretrained(model_dir)
    with pytest.raises(ConfigError, match="--engine ray runs an exported model"):
        predict_bulk_ray(model_dir, BulkOptions(output=str(tmp_path / "x.jsonl"), **common))


@pytest.mark.slow
def test_ray_reads_a_folder_of_shards_as_the_in_process_engine(local_ray, tmp_path):
    # Ray lists several files on threads that each import fsspec's HTTP file system; without
    # aiohttp (which ray[data] does not bring) those imports race and fail ("cannot import
    # name 'HTTPFileSystem'", Ray 2.60; with 16 files nearly always), so the ray extra names it.
    classifier = make_tiny_classifier(tmp_path)
    export = tmp_path / "export"
    export_classifier(classifier, export)
    (first, second), _ = synthetic_pairs(128, 7)
    shards = tmp_path / "shards"
    shards.mkdir()
    for k in range(16):
        rows = [{"id": i, "sentence1": first[i], "sentence2": second[i]}
                for i in range(8 * k, 8 * k + 8)]  # fmt: skip
        pq.write_table(pa.Table.from_pylist(rows), shards / f"part-{k:02d}.parquet")
    common = {"input": str(shards), "chunk_rows": 40}
    predict_bulk(export, BulkOptions(output=str(tmp_path / "local.jsonl"), **common))
    predict_bulk_ray(export, BulkOptions(output=str(tmp_path / "ray.jsonl"), **common), workers=2)
    local = (tmp_path / "local.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in local] == list(range(128))
    assert (tmp_path / "ray.jsonl").read_text().splitlines() == local


def test_every_actor_gets_blocks_when_the_reader_makes_one(local_ray, tmp_path):
    # Ray 2.60 reads these 4 small files as one block; the actor pool gives a block to one
    # actor, so without the split a pool of 2 would run on one actor.
    shards = tmp_path / "shards"
    shards.mkdir()
    for k in range(4):
        rows = [{"id": i, "sentence1": f"text {i}"} for i in range(50 * k, 50 * k + 50)]
        pq.write_table(pa.Table.from_pylist(rows), shards / f"part-{k}.parquet")
    files = input_files(str(shards))
    blocks = read_blocks(files, Layout(("sentence1",)), rows_per_block=30).materialize()
    assert blocks.num_blocks() == 7  # 200 rows in blocks of at most 30
    assert [row["id"] for row in blocks.iter_rows()] == list(range(200))
