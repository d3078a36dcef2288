"""Finding a task's GLUE files: --data-dir, $BERTFIT_DATA, the cache, and the download."""

from __future__ import annotations

import functools
import http.server
import threading

import pytest

from bertfit.data import sources
from bertfit.data.sources import build_mrpc_splits, download_task, resolve_task_dir
from bertfit.data.tasks import MRPC
from bertfit.errors import DataError

from conftest import write_mrpc_split

SENTEVAL_TRAIN = (
    "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
    "1\t11\t12\tA cat sat .\tThe cat sat .\n"
    "0\t21\t22\tIt rained .\tIt was sunny .\n"
    "1\t31\t32\tHe left .\tHe went away .\n"
)
SENTEVAL_TEST = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t41\t42\tOne .\tUno .\n"
DEV_IDS = "21\t22\n"


@pytest.fixture
def senteval_server(tmp_path):
    """SentEval's MRPC files served over HTTP on 127.0.0.1."""
    root = tmp_path / "served"
    root.mkdir()
    (root / "msr_paraphrase_train.txt").write_text(SENTEVAL_TRAIN, encoding="utf-8")
    (root / "msr_paraphrase_test.txt").write_text(SENTEVAL_TEST, encoding="utf-8")
    (root / "mrpc_dev_ids.tsv").write_text(DEV_IDS, encoding="utf-8")
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    yield {
        "train": f"{base}/msr_paraphrase_train.txt",
        "test": f"{base}/msr_paraphrase_test.txt",
        "dev_ids": f"{base}/mrpc_dev_ids.tsv",
    }
    server.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_data_dir_accepts_task_dir_or_glue_root(tmp_path):
    write_mrpc_split(tmp_path / "glue" / "MRPC" / "train.tsv", [("1", "a", "b")])
    assert resolve_task_dir(MRPC, tmp_path / "glue") == tmp_path / "glue" / "MRPC"
    assert resolve_task_dir(MRPC, tmp_path / "glue" / "MRPC") == tmp_path / "glue" / "MRPC"


def test_missing_data_dir_says_how_to_get_data(tmp_path):
    with pytest.raises(DataError, match="does not exist.*--data-dir.*BERTFIT_DATA"):
        resolve_task_dir(MRPC, tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no train.tsv"):
        resolve_task_dir(MRPC, tmp_path / "empty")


def test_environment_variable_comes_before_cache(tmp_path, monkeypatch):
    write_mrpc_split(tmp_path / "env" / "MRPC" / "train.tsv", [("1", "a", "b")])
    monkeypatch.setenv("BERTFIT_DATA", str(tmp_path / "env"))
    assert resolve_task_dir(MRPC, None) == tmp_path / "env" / "MRPC"
    monkeypatch.setenv("BERTFIT_DATA", str(tmp_path / "elsewhere"))
    with pytest.raises(DataError, match="BERTFIT_DATA"):
        resolve_task_dir(MRPC, None)


def test_download_builds_glue_layout(tmp_path, senteval_server):
    target = tmp_path / "cache" / "MRPC"
    download_task(MRPC, target, urls=senteval_server)
    header = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
    assert (target / "train.tsv").read_text(encoding="utf-8") == (
        header + "1\t11\t12\tA cat sat .\tThe cat sat .\n1\t31\t32\tHe left .\tHe went away .\n"
    )
    assert (target / "dev.tsv").read_text(encoding="utf-8") == (
        header + "0\t21\t22\tIt rained .\tIt was sunny .\n"
    )
    assert (target / "test.tsv").read_text(encoding="utf-8") == (
        "index\t#1 ID\t#2 ID\t#1 String\t#2 String\n0\t41\t42\tOne .\tUno .\n"
    )
    assert sorted(p.name for p in target.iterdir()) == ["dev.tsv", "test.tsv", "train.tsv"]


def test_resolution_downloads_into_cache_when_nothing_else(tmp_path, monkeypatch, senteval_server):
    monkeypatch.delenv("BERTFIT_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(sources, "MRPC_URLS", senteval_server)
    found = resolve_task_dir(MRPC, None)
    assert found == tmp_path / "xdg" / "bertfit" / "glue" / "MRPC"
    assert (found / "dev.tsv").is_file()


def test_offline_download_fails_clearly_and_leaves_nothing(tmp_path, senteval_server):
    urls = dict(senteval_server, dev_ids="http://127.0.0.1:9/unreachable")
    target = tmp_path / "cache" / "MRPC"
    with pytest.raises(DataError, match="could not download.*offline.*--data-dir"):
        download_task(MRPC, target, urls=urls)
    assert not target.exists()
    assert list((tmp_path / "cache").iterdir()) == []


def test_build_splits_from_files(tmp_path):
    for name, text in [("t", SENTEVAL_TRAIN), ("s", SENTEVAL_TEST), ("d", DEV_IDS)]:
        (tmp_path / name).write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    build_mrpc_splits(tmp_path / "t", tmp_path / "s", tmp_path / "d", out)
    assert len((out / "train.tsv").read_text(encoding="utf-8").splitlines()) == 3
