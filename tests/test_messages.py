"""Every error the data and model sources raise reads finished: no ``{name}`` left unfilled.

The modules that find, download and check data and models
(:data:`MODULES`) are read with :mod:`ast`; every ``raise`` in them is a site, and
:data:`SCENARIOS` holds one real way to reach each (a task with no download source offline, a
missing model directory, an unknown preset, a download cut short, ...). The tests run every
scenario and check its message, check that every site is reached by one (so a new message
cannot go unchecked), and check that no string in those modules is a ``str.format``
template, the kind of string that leaks its placeholders when it is printed as it is.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import http.server
import io
import re
import shutil
import threading
import traceback
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

import bertfit.model.presets as presets
from bertfit.cli import main
from bertfit.data import sources as data_sources
from bertfit.data.tasks import get_task
from bertfit.errors import BertfitError
from bertfit.model import download
from bertfit.model import sources as model_sources

SRC = Path(__file__).resolve().parents[1] / "src"
MODULES = [
    SRC / "bertfit" / "data" / "sources.py",
    SRC / "bertfit" / "model" / "sources.py",
    SRC / "bertfit" / "model" / "presets.py",
    SRC / "bertfit" / "model" / "download.py",
]
FIXTURES = Path(__file__).parent / "fixtures" / "tf"
# A placeholder of str.format left in a message: {glue}, {env}, {task_name}.
PLACEHOLDER = re.compile(r"\{[A-Za-z_]\w*\}")


def raise_sites() -> set[tuple[str, int]]:
    """(module file name, line) of every ``raise`` with an exception in :data:`MODULES`."""
    sites = set()
    for path in MODULES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        sites |= {
            (_short(path), node.lineno)
            for node in ast.walk(tree)
            if isinstance(node, ast.Raise) and node.exc is not None
        }
    return sites


def _short(path: str | Path) -> str:
    return "/".join(Path(path).parts[-2:])


# -- a local server for the download paths --------------------------------------------------------


class Server(http.server.ThreadingHTTPServer):
    """Serves ``routes``: path -> (body, extra headers, bytes actually sent or None)."""

    routes: dict[str, tuple[bytes, dict[str, str], int | None]]

    def url(self, path: str, body: bytes = b"", headers=None, sent=None) -> str:
        self.routes[path] = (body, headers or {}, sent)
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the name http.server calls
        if self.path not in self.server.routes:
            self.send_error(404)
            return
        body, headers, sent = self.server.routes[self.path]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body if sent is None else body[:sent])

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.routes = {}
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _tf1_without(tmp: Path, *left_out: str) -> Path:
    """A copy of the TF1 checkpoint fixture without the named files."""
    directory = tmp / "tf1"
    shutil.copytree(FIXTURES / "tf1", directory, ignore=shutil.ignore_patterns(*left_out))
    return directory


# -- the scenarios: one real way to each message ---------------------------------------------------

Scenario = Callable[[Path, pytest.MonkeyPatch, Server], object]
SCENARIOS: dict[str, Scenario] = {}


def scenario(function: Scenario) -> Scenario:
    SCENARIOS[function.__name__] = function
    return function


MRPC, QQP = get_task("mrpc"), get_task("qqp")


@scenario
def data_dir_missing(tmp, mp, server):
    data_sources.resolve_task_dir(MRPC, tmp / "nowhere")


@scenario
def data_dir_without_the_split(tmp, mp, server):
    data_sources.resolve_task_dir(MRPC, tmp)


@scenario
def data_env_without_the_task(tmp, mp, server):
    mp.setenv(data_sources.DATA_ENV, str(tmp))
    data_sources.resolve_task_dir(MRPC, None)


@scenario
def no_data_and_no_download(tmp, mp, server):
    data_sources.resolve_task_dir(QQP, None, download=False)


@scenario
def task_without_a_download_source(tmp, mp, server):
    data_sources.resolve_task_dir(QQP, None)  # nothing cached: it would download, and cannot


@scenario
def data_download_offline(tmp, mp, server):
    missing = server.url("/gone") + "-missing"
    urls = dict.fromkeys(("train", "test", "dev_ids"), missing)
    data_sources.download_task(MRPC, tmp / "MRPC", urls)


@scenario
def download_not_found(tmp, mp, server):
    download.fetch(server.url("/x") + "-missing", tmp / "file", progress=False)


@scenario
def download_cut_short(tmp, mp, server):
    download.fetch(server.url("/cut", b"x" * 1000, sent=10), tmp / "file", progress=False)


@scenario
def download_of_the_wrong_size(tmp, mp, server):
    download.fetch(server.url("/size", b"abc"), tmp / "file", size=5, progress=False)


@scenario
def download_sha256_mismatch(tmp, mp, server):
    download.fetch(server.url("/sha", b"abc"), tmp / "file", sha256="0" * 64, progress=False)


@scenario
def download_md5_mismatch(tmp, mp, server):
    wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    url = server.url("/md5", b"abc", {"x-goog-hash": f"md5={wrong}"})
    download.fetch(url, tmp / "file", progress=False)


@scenario
def download_crc32c_mismatch(tmp, mp, server):
    url = server.url("/crc", b"abc", {"x-goog-hash": "crc32c=AAAAAA=="})
    download.fetch(url, tmp / "file", progress=False)


@scenario
def archive_without_a_checkpoint_folder(tmp, mp, server):
    url = server.url("/empty.zip", _zip({"README.md": b"no checkpoint here"}))
    download.install_archive(url, tmp / "model", progress=False)


@scenario
def archive_that_is_not_a_zip(tmp, mp, server):
    download.install_archive(server.url("/page", b"<html>"), tmp / "model", progress=False)


def _hf_cache(tmp: Path, mp) -> None:
    import huggingface_hub.constants

    mp.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp / "hf"))


@scenario
def hugging_face_id_offline(tmp, mp, server):
    _hf_cache(tmp, mp)
    download.download_hf_model("acme/absent", offline=True)


@scenario
def hugging_face_unreachable(tmp, mp, server):
    import huggingface_hub

    def unreachable(*args, **kwargs):
        raise OSError("connection refused")  # what a machine without a network gets

    mp.setattr(huggingface_hub, "snapshot_download", unreachable)
    download.download_hf_model("acme/absent", offline=False)


@scenario
def hugging_face_repo_without_weights(tmp, mp, server):
    import huggingface_hub

    (tmp / "snapshot").mkdir()
    mp.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: str(tmp / "snapshot"))
    download.download_hf_model("acme/tokenizer-only", offline=False)


@scenario
def weights_dir_without_weights(tmp, mp, server):
    model_sources.find_weights(tmp)


@scenario
def weights_path_of_the_wrong_kind(tmp, mp, server):
    (tmp / "notes.txt").write_text("hello")
    model_sources.find_weights(tmp / "notes.txt")


@scenario
def weights_path_missing(tmp, mp, server):
    model_sources.find_weights(tmp / "nothing")


@scenario
def model_dir_without_config(tmp, mp, server):
    (tmp / "model.safetensors").write_bytes(b"")
    model_sources.describe_source(tmp)


@scenario
def weights_unreadable(tmp, mp, server):
    (tmp / "weights.bin").write_bytes(b"not a pickle")
    model_sources.read_state_dict(tmp / "weights.bin")


@scenario
def weights_not_a_state_dict(tmp, mp, server):
    import torch

    torch.save([1, 2, 3], tmp / "list.bin")
    model_sources.read_state_dict(tmp / "list.bin")


@scenario
def checkpoint_dir_without_vocabulary(tmp, mp, server):
    directory = _tf1_without(tmp, "vocab.txt")
    (directory / "tokenizer_config.json").write_text('{"do_lower_case": true}')
    model_sources.check_model_dir(directory)


@scenario
def model_dir_missing_files(tmp, mp, server):
    model_sources.check_model_dir(tmp)


@scenario
def weights_file_missing(tmp, mp, server):
    model_sources.find_weights_file(tmp / "nothing")


@scenario
def weights_file_not_in_the_dir(tmp, mp, server):
    model_sources.find_weights_file(tmp)


@scenario
def casing_unknown_without_vocabulary(tmp, mp, server):
    model_sources.lower_case_from_files(tmp, None)


@scenario
def vocabulary_unreadable(tmp, mp, server):
    model_sources.lower_case_from_files(tmp, tmp / "vocab.txt")


@scenario
def tokenizer_settings_not_json(tmp, mp, server):
    (tmp / "tokenizer_config.json").write_text("{not json")
    model_sources.lower_case_from_files(tmp, None)


@scenario
def checkpoint_without_config_or_heads(tmp, mp, server):
    model_sources.describe_source(_tf1_without(tmp, "bert_config.json"))


@scenario
def keras_config_with_its_own_embeddings(tmp, mp, server):
    model_sources._from_keras_config({"embedding_layer": {"class_name": "X"}}, "keras_metadata.pb")


@scenario
def keras_config_with_an_unreadable_activation(tmp, mp, server):
    model_sources._from_keras_config({"activation": 3}, "keras_metadata.pb")


@scenario
def default_model_not_installed(tmp, mp, server):
    mp.setattr(presets, "_DEFAULT_PACKAGE", "bertfit_no_such_package")
    presets.default_model_dir()


@scenario
def default_model_package_without_its_files(tmp, mp, server):
    mp.setattr(presets, "_DEFAULT_PACKAGE", "json")  # a package, but with no model/ in it
    presets.default_model_dir()


@scenario
def preset_offline(tmp, mp, server):
    mp.setenv("BERTFIT_OFFLINE", "1")
    presets.resolve_model_dir("bert-uncased-L-2-H-128")


@scenario
def preset_download_fails(tmp, mp, server):
    preset = presets.Preset("test-bert", "a test", 2, 32, 2, url=server.url("/p") + "-missing")
    presets.preset_dir(preset, progress=False)


@scenario
def checkpoint_prefix_without_vocabulary(tmp, mp, server):
    directory = _tf1_without(tmp, "vocab.txt")
    (directory / "tokenizer_config.json").write_text('{"do_lower_case": true}')
    presets.resolve_model_dir(directory / "bert_model.ckpt")


@scenario
def model_given_as_a_plain_file(tmp, mp, server):
    (tmp / "model.txt").write_text("hello")
    presets.resolve_model_dir(tmp / "model.txt")


@scenario
def unknown_preset(tmp, mp, server):
    presets.resolve_model_dir("minilm-l5")


# -- the tests -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def outcomes(server, tmp_path_factory) -> dict[str, tuple[tuple[str, int] | None, str]]:
    """Each scenario's raise site (module, line) and message; a scenario that raised no
    bertfit error has no site and a message saying what happened instead."""
    results = {}
    for name, run in SCENARIOS.items():
        tmp = tmp_path_factory.mktemp(name)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("XDG_CACHE_HOME", str(tmp / "cache"))
            for variable in (data_sources.DATA_ENV, "BERTFIT_OFFLINE", "HF_HUB_OFFLINE"):
                mp.delenv(variable, raising=False)
            work = tmp / "work"
            work.mkdir()
            try:
                run(work, mp, server)
            except BertfitError as error:
                frame = traceback.extract_tb(error.__traceback__)[-1]
                results[name] = ((_short(frame.filename), frame.lineno), str(error))
            else:
                results[name] = (None, "raised nothing")
    return results


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_each_message_is_finished(outcomes, name):
    site, message = outcomes[name]
    assert site is not None, f"{name}: {message}"
    assert site in raise_sites(), f"{name} was raised at {site}, outside {MODULES}"
    assert not PLACEHOLDER.search(message), f"{name}: unfilled placeholder in: {message}"
    assert message.strip() and "\n" not in message


def test_every_raise_in_the_sources_is_reached_by_a_scenario(outcomes):
    reached = {site for site, _ in outcomes.values() if site is not None}
    missing = sorted(raise_sites() - reached)
    assert not missing, f"raises no scenario of {__name__} reaches (add one): {missing}"


def test_the_placeholder_check_sees_the_old_qqp_advice():
    """The message ``bertfit train --task qqp`` printed before it was fixed fails the check."""
    old = (
        "no download source known for QQP; pass --data-dir DIR (a GLUE directory holding "
        "{glue}/train.tsv, dev.tsv, test.tsv) or set ${env} to a directory holding {glue}/"
    )
    assert PLACEHOLDER.findall(old) == ["{glue}", "{env}", "{glue}"]


def _format_templates(path: Path) -> list[str]:
    """Strings in ``path`` holding a ``{name}`` outside an f-string's fields: the templates of
    ``str.format``, which print their placeholders wherever they are used without it."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        f"{_short(path)}:{node.lineno}: {node.value!r}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and PLACEHOLDER.search(node.value)
    ]


def test_no_string_in_the_sources_is_a_format_template():
    found = [line for path in MODULES for line in _format_templates(path)]
    assert not found, "use f-strings (or a function) for messages:\n" + "\n".join(found)


def test_the_template_check_sees_a_template(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        '"""Docs may say {name}."""\nHINT = "set ${env}"\nGOOD = f"set ${HINT}"\n'
        'BRACES = f"a literal {{name}} in an f-string"\n'
    )
    assert [line.split(": ", 1)[1] for line in _format_templates(sample)] == [
        "'set ${env}'",
        "'a literal {name} in an f-string'",
    ]


def test_train_on_a_task_without_a_download_source_says_how_in_full(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(data_sources.DATA_ENV, raising=False)
    assert main(["train", "--task", "qqp", "--output", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.strip() == (
        "bertfit: error: no download source known for QQP; pass --data-dir DIR (a GLUE "
        "directory holding QQP/train.tsv, dev.tsv, test.tsv) or set $BERTFIT_DATA to a "
        "directory holding QQP/"
    )
    assert not (tmp_path / "run").exists()
