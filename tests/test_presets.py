"""Presets: the table, `bertfit models`, and the download code against a local HTTP server.

The server listens on 127.0.0.1 only and serves a zip made from the TF1 fixture, laid out as
Google's BERT zips are; each test's cache is a temporary ``XDG_CACHE_HOME``.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import io
import json
import shutil
import threading
import zipfile
from pathlib import Path

import google_crc32c
import pytest

from bertfit.cli import main
from bertfit.errors import CheckpointError
from bertfit.model import presets
from bertfit.model.presets import PRESETS, Preset, preset_dir, resolve_model_dir
from bertfit.model.sources import describe_source

from conftest import write_synthetic_glue

FIXTURES = Path(__file__).parent / "fixtures" / "tf"


def google_style_zip(folder: str = "uncased_L-2_H-32_A-2", corrupt: bool = False) -> bytes:
    """The TF1 fixture zipped as Google zips its checkpoints (one folder, a .meta file)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted((FIXTURES / "tf1").iterdir()):
            data = path.read_bytes()
            if corrupt and path.name.endswith("data-00000-of-00002"):
                data = data[:200] + bytes([data[200] ^ 0xFF]) + data[201:]
            archive.writestr(f"{folder}/{path.name}" if folder else path.name, data)
        archive.writestr(f"{folder}/bert_model.ckpt.meta", b"graph, not needed")
        archive.writestr(f"__MACOSX/{folder}/._vocab.txt", b"a macOS resource fork")
    return buffer.getvalue()


ARCHIVE = google_style_zip()
ARCHIVE_SHA256 = hashlib.sha256(ARCHIVE).hexdigest()


class Server(http.server.ThreadingHTTPServer):
    """Serves ``routes``: path -> (body, extra headers, bytes actually sent or None)."""

    routes: dict[str, tuple[bytes, dict[str, str], int | None]]
    requests: list[str]


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the name http.server calls
        self.server.requests.append(self.path)
        if self.path not in self.server.routes:
            self.send_error(404)
            return
        body, headers, sent = self.server.routes[self.path]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body if sent is None else body[:sent])  # a cut transfer stops early

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.routes, httpd.requests = {}, []
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("BERTFIT_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return tmp_path / "cache" / "bertfit" / "models"


def serve(server, path="/bert.zip", body=ARCHIVE, headers=None, sent=None) -> str:
    server.routes[path] = (body, headers or {}, sent)
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


def tiny_preset(url: str, **fields) -> Preset:
    return Preset("test-bert", "a tiny test BERT", 2, 32, 2, 39, url=url, **fields)


def assert_nothing_cached(cache: Path) -> None:
    assert not cache.exists() or list(cache.iterdir()) == [], list(cache.iterdir())


def goog_hash(data: bytes, md5: bytes | None = None) -> str:
    crc = google_crc32c.Checksum(data).digest()
    md5 = md5 or hashlib.md5(data).digest()
    return f"crc32c={base64.b64encode(crc).decode()},md5={base64.b64encode(md5).decode()}"


# ---- the table --------------------------------------------------------------------------------


def test_preset_table():
    small = [name for name in PRESETS if name.startswith("bert-uncased-L-")]
    assert len(small) == 24
    assert PRESETS["bert-uncased-L-2-H-128"].url == (
        "https://storage.googleapis.com/bert_models/2020_02_20/uncased_L-2_H-128_A-2.zip"
    )
    assert PRESETS["bert-uncased-L-12-H-768"].heads == 12
    for name, url_end in (
        ("bert-base-uncased", "2018_10_18/uncased_L-12_H-768_A-12.zip"),
        ("bert-large-uncased", "2018_10_18/uncased_L-24_H-1024_A-16.zip"),
        ("bert-base-cased", "2018_10_18/cased_L-12_H-768_A-12.zip"),
        ("bert-large-cased", "2018_10_18/cased_L-24_H-1024_A-16.zip"),
    ):
        assert PRESETS[name].url.endswith(url_end), name
    # BERT-Base has 109,482,240 parameters (transformers' BertModel of the same config).
    assert PRESETS["bert-base-uncased"].parameters == 109_482_240
    assert PRESETS["minilm-l6"].url is None and PRESETS["minilm-l6"].is_cached()
    # No checksum is published for Google's zips; none is made up either.
    assert all(p.sha256 is None and p.size is None for p in PRESETS.values())


def test_models_command_lists_sizes_and_cache_state(cache, capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "bert-uncased-L-4-H-512" in out and "BERT-Small" in out
    assert "109.5M" in out and str(cache) in out
    minilm = next(line for line in out.splitlines() if line.startswith("minilm-l6 "))
    assert " yes " in minilm
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == len(PRESETS) == 31
    base = next(row for row in rows if row["name"] == "bert-base-uncased")
    assert base["cached"] is False and base["archive_sha256"] is None


# ---- downloading --------------------------------------------------------------------------------


def test_download_verifies_and_installs(server, cache, monkeypatch, capsys):
    url = serve(server, headers={"x-goog-hash": goog_hash(ARCHIVE)})
    preset = tiny_preset(url, sha256=ARCHIVE_SHA256, size=len(ARCHIVE))
    monkeypatch.setitem(PRESETS, preset.name, preset)
    directory = resolve_model_dir(preset.name)
    assert directory == cache / "test-bert"
    assert sorted(p.name for p in directory.iterdir()) == [
        "bert_config.json",
        "bert_model.ckpt.data-00000-of-00002",
        "bert_model.ckpt.data-00001-of-00002",
        "bert_model.ckpt.index",
        "bertfit-download.json",
        "vocab.txt",
    ]  # fmt: skip, the .meta graph is left out
    record = json.loads((directory / "bertfit-download.json").read_text())
    assert record["sha256"] == ARCHIVE_SHA256 and record["bytes"] == len(ARCHIVE)
    checks = ["length", "sha256", "md5", "crc32c", "zip-crc32", "tensor-crc32c"]
    assert record["verified"] == checks
    assert describe_source(directory).format == "tf1"
    assert resolve_model_dir(preset.name) == directory  # cached: no second request
    assert server.requests == ["/bert.zip"]
    assert main(["models", "--json"]) == 0
    row = next(r for r in json.loads(capsys.readouterr().out) if r["name"] == "test-bert")
    assert row["cached"] and row["downloaded"]["sha256"] == ARCHIVE_SHA256


def test_zip_without_a_folder_and_a_progress_bar(server, cache, capsys):
    url = serve(server, body=google_style_zip(folder=""))
    directory = preset_dir(tiny_preset(url), progress=True)
    assert (directory / "bert_config.json").is_file()
    assert "test-bert" in capsys.readouterr().err  # the bar, labelled with the preset
    record = json.loads((directory / "bertfit-download.json").read_text())
    assert record["verified"] == ["length", "zip-crc32", "tensor-crc32c"]  # no digest known


def test_truncated_transfer_leaves_nothing(server, cache):
    url = serve(server, sent=len(ARCHIVE) // 2)
    with pytest.raises(CheckpointError, match="transfer was cut short") as error:
        preset_dir(tiny_preset(url), progress=False)
    assert "if you are offline" in str(error.value) and str(cache / "test-bert") in str(error.value)
    assert_nothing_cached(cache)


def test_checksum_mismatch_leaves_nothing(server, cache):
    url = serve(server)
    with pytest.raises(CheckpointError, match="SHA-256 mismatch"):
        preset_dir(tiny_preset(url, sha256="0" * 64), progress=False)
    assert_nothing_cached(cache)
    wrong_md5 = goog_hash(ARCHIVE, md5=hashlib.md5(b"something else").digest())
    url = serve(server, path="/md5.zip", headers={"x-goog-hash": wrong_md5})
    with pytest.raises(CheckpointError, match="MD5 mismatch"):
        preset_dir(tiny_preset(url), progress=False)
    assert_nothing_cached(cache)
    with pytest.raises(CheckpointError, match="got .* bytes, but this file has 5"):
        preset_dir(tiny_preset(serve(server), size=5), progress=False)
    assert_nothing_cached(cache)


def test_corrupt_checkpoint_inside_a_good_zip_leaves_nothing(server, cache):
    url = serve(server, body=google_style_zip(corrupt=True))
    with pytest.raises(CheckpointError, match="checksum mismatch in bert/"):
        preset_dir(tiny_preset(url), progress=False)
    assert_nothing_cached(cache)
    url = serve(server, path="/notzip", body=b"<html>not a zip</html>")
    with pytest.raises(CheckpointError, match="not a valid zip archive"):
        preset_dir(tiny_preset(url), progress=False)
    assert_nothing_cached(cache)


def test_unreachable_server_says_where_to_put_the_files(server, cache):
    url = serve(server).replace("/bert.zip", "/missing.zip")
    with pytest.raises(CheckpointError, match="could not download .*404.*put its bert_config"):
        preset_dir(tiny_preset(url), progress=False)
    closed = Server(("127.0.0.1", 0), Handler)
    port = closed.server_address[1]
    closed.server_close()  # nothing listens there now
    with pytest.raises(CheckpointError, match="could not download"):
        preset_dir(tiny_preset(f"http://127.0.0.1:{port}/bert.zip"), progress=False)
    assert_nothing_cached(cache)


def test_offline_fails_at_once_saying_where_to_put_the_files(
    server, cache, monkeypatch, tmp_path, capsys
):
    monkeypatch.setenv("BERTFIT_OFFLINE", "1")
    preset = tiny_preset(serve(server))
    monkeypatch.setitem(PRESETS, preset.name, preset)
    with pytest.raises(CheckpointError, match="not downloaded yet and downloads are off") as error:
        resolve_model_dir(preset.name)
    message = str(error.value)
    assert preset.url in message and str(cache / "test-bert") in message
    assert server.requests == []  # not even tried
    # Files put there by hand are used as they are.
    shutil.copytree(FIXTURES / "tf1", cache / "test-bert")
    assert resolve_model_dir(preset.name) == cache / "test-bert"
    # On the command line: one line, exit status 2.
    glue = write_synthetic_glue(tmp_path / "glue", n_train=8, n_dev=8)
    args = ["train", "--output", str(tmp_path / "run"), "--data-dir", str(glue)]
    assert main([*args, "--model", "bert-uncased-L-2-H-128"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bert-uncased-L-2-H-128 is not downloaded yet" in err


def test_offline_google_preset_on_the_command_line(cache, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("BERTFIT_OFFLINE", "1")
    args = ["convert", "bert-uncased-L-2-H-128", "--output", str(tmp_path / "out")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "uncased_L-2_H-128_A-2.zip" in err and str(cache / "bert-uncased-L-2-H-128") in err


# ---- Hugging Face ids ----------------------------------------------------------------------------


def test_hugging_face_ids_from_the_local_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants

    from bertfit.model.convert import convert_to_hf

    repo = tmp_path / "hf" / "models--acme--tiny-bert"
    convert_to_hf(FIXTURES / "tf1", repo / "snapshots" / "abc123")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_model_dir("acme/tiny-bert") == repo / "snapshots" / "abc123"
    with pytest.raises(CheckpointError, match="acme/other: not in the Hugging Face cache"):
        resolve_model_dir("acme/other")
    with pytest.raises(CheckpointError, match="did you mean 'bert-base-uncased'"):
        resolve_model_dir("bert-base-uncase")


def test_offline_switch_reads_common_spellings(monkeypatch):
    for value, expected in (("1", True), ("true", True), ("0", False), ("", False)):
        monkeypatch.setenv("BERTFIT_OFFLINE", value)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        assert presets.is_offline() is expected
