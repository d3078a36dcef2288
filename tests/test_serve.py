"""``bertfit serve``: endpoints, request limits and errors, and micro-batching across clients."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient

from bertfit.cli import build_parser
from bertfit.export.export import export_classifier
from bertfit.export.runtime import load_exported
from bertfit.serve import ServeConfig
from bertfit.serve.app import MicroBatcher, Overloaded, create_app

from conftest import make_tiny_classifier

PAIR = {"sentence1": "the cat sat on the mat .", "sentence2": "a cat sat"}
LONG = " ".join(["the big cat sat on the mat and saw a small dog"] * 40)


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory) -> Path:
    import torch

    classifier = make_tiny_classifier(tmp_path_factory.mktemp("tiny"))
    with torch.no_grad():
        for parameter in classifier.model.parameters():
            if parameter.dim() > 1:
                parameter.normal_(0.0, 0.3, generator=torch.Generator().manual_seed(2))
    output = tmp_path_factory.mktemp("export") / "model"
    export_classifier(classifier, output, check_examples=0)
    return output


@pytest.fixture(scope="module")
def predictor(export_dir):
    return load_exported(export_dir)


@pytest.fixture
def client(predictor):
    config = ServeConfig(max_instances=4, max_body_bytes=4000, max_wait_ms=1.0)
    with TestClient(create_app(predictor, config), raise_server_exceptions=False) as test_client:
        yield test_client


def test_health_and_metadata(client):
    assert client.get("/health").json() == {"status": "ok"}
    meta = client.get("/metadata").json()
    assert meta["task"] == "mrpc"
    assert meta["labels"] == ["not_equivalent", "equivalent"]
    assert meta["input_names"] == ["sentence1", "sentence2"]
    assert meta["max_seq_length"] == 32 and meta["truncator"] == "round_robin"
    assert meta["export"]["format"] == "onnx" and meta["export"]["precision"] == "fp32"
    assert {"bertfit", "onnxruntime", "tokenizers"} <= set(meta["runtime"])
    assert "torch" in meta["exported_with"]
    assert meta["limits"]["max_instances"] == 4


def test_predict_answers_each_instance_in_order(client, predictor):
    instances = [PAIR, {"sentence1": "red", "sentence2": "blue and green"}, PAIR]
    response = client.post("/predict", json={"instances": instances})
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    columns = {k: [i[k] for i in instances] for k in ("sentence1", "sentence2")}
    expected = predictor(columns)
    assert [p["class_id"] for p in predictions] == expected["class_id"].tolist()
    assert [p["label"] for p in predictions] == expected["class"].tolist()
    got = np.array([p["probabilities"] for p in predictions])
    np.testing.assert_allclose(got, expected["probabilities"], atol=1e-5)
    assert predictions[0] == predictions[2]
    assert predictions[0] != predictions[1]


def test_over_long_text_is_truncated_as_in_training_not_refused(client, predictor):
    response = client.post("/predict", json={"instances": [{"sentence1": LONG, "sentence2": "a"}]})
    assert response.status_code == 200
    expected = predictor({"sentence1": [LONG], "sentence2": ["a"]})["probabilities"][0]
    np.testing.assert_allclose(
        response.json()["predictions"][0]["probabilities"], expected, atol=1e-5
    )


def test_empty_instances_answer_an_empty_list(client):
    response = client.post("/predict", json={"instances": []})
    assert response.status_code == 200 and response.json() == {"predictions": []}


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b'{"instances": [', 400, "malformed JSON"),
        (b"\xff\xfe", 400, "malformed JSON"),
        (b"[1, 2]", 422, "expected a JSON object with 'instances', got a list"),
        (b'{"instances": "a b"}', 422, "'instances' must be a list, got a string"),
        (b'{"instance": []}', 422, "unknown field 'instance'"),
        (b'{"instances": [3]}', 422, r"instances\[0\] must be an object, got a number"),
        (b'{"instances": [{"sentence1": "a"}]}', 422, r"instances\[0\]: missing field 'sentence2'"),
        (
            b'{"instances": [{"sentence1": "a", "sentence2": null}]}',
            422,
            r"instances\[0\].sentence2 must be a string, got null",
        ),
        (
            b'{"instances": [{"sentence1": "a", "sentence2": "b", "label": 1}]}',
            422,
            r"instances\[0\]: unknown field 'label'",
        ),
        (b'{"instances": [{"sentence1": " ", "sentence2": "b"}]}', 422,
         r"instances\[0\].sentence1 is empty; give some text to classify"),
        (json.dumps({"instances": [PAIR] * 5}).encode(), 413, "5 instances in one request; "
         "the limit is 4"),
        (json.dumps({"instances": [{"sentence1": "a" * 5000, "sentence2": "b"}]}).encode(), 413,
         "exceeds the limit of 4000"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("route", ["/predict", "/explain"])
def test_bad_requests_get_a_clear_json_error(client, route, body, status, message):
    response = client.post(route, content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["status"] == status
    assert __import__("re").search(message, error["message"]), error["message"]


def test_explain_answers_each_instances_words_and_calibrated_probabilities(client, predictor):
    instances = [PAIR, {"sentence1": LONG, "sentence2": "a red dog"}]
    response = client.post("/explain", json={"instances": instances})
    assert response.status_code == 200, response.text
    explanations = response.json()["explanations"]
    assert len(explanations) == 2
    for instance, answer in zip(instances, explanations):
        expected = predictor.explain(instance).to_dict()
        assert answer["label"] == expected["label"] and answer["method"] == "occlusion"
        assert sum(answer["probabilities"]) == pytest.approx(1.0)
        np.testing.assert_allclose(answer["probabilities"], expected["probabilities"], atol=1e-6)
        for got, want in zip(answer["texts"], expected["texts"]):
            assert [w["text"] for w in got["words"]] == [w["text"] for w in want["words"]]
            assert [w["text"] for w in got["words"]] == instance[got["name"]].split()
            np.testing.assert_allclose(
                [w["attribution"] for w in got["words"]],
                [w["attribution"] for w in want["words"]],
                atol=1e-6,
            )


def test_explain_attributes_toward_the_label_a_request_names(client, predictor):
    for label in predictor.label_names:
        response = client.post("/explain", json={"instances": [PAIR], "label": label})
        assert response.status_code == 200, response.text
        answer = response.json()["explanations"][0]
        assert answer == predictor.explain(PAIR, target=label).to_dict()
        assert answer["label"] == label
    for label, message in (
        ("maybe", "'label': unknown label 'maybe'; expected one of "),
        (1, "'label' must be a label name, got a number"),
    ):
        response = client.post("/explain", json={"instances": [PAIR], "label": label})
        assert response.status_code == 422
        assert response.json()["error"]["message"].startswith(message)


def test_the_page_is_one_self_contained_document_built_from_the_metadata(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    # Nothing to fetch: no external script, stylesheet, image or font.
    for pattern in ("<script src", "<link", "<img", "@import", "url(", "http://", "https://"):
        assert pattern not in page, pattern
    assert "<title>bertfit: mrpc</title>" in page
    assert '"input_names": ["sentence1", "sentence2"]' in page
    assert 'fetch("explain"' in page


def test_the_page_escapes_metadata_that_looks_like_markup():
    from bertfit.serve.page import render_page

    page = render_page({"task": "</script><b>x", "input_names": ["a"], "labels": ["y"]})
    assert "</script><b>" not in page
    assert "<title>bertfit: &lt;/script&gt;&lt;b&gt;x</title>" in page
    assert "\\u003c/script\\u003e" in page


def test_a_body_without_content_length_is_bounded_too(client):
    def chunks():
        yield b'{"instances": [{"sentence1": "'
        for _ in range(10):
            yield b"a" * 1000
        yield b'", "sentence2": "b"}]}'

    response = client.post("/predict", content=chunks())
    assert response.status_code == 413
    assert "exceeds the limit of 4000 bytes" in response.json()["error"]["message"]


def test_unknown_routes_and_methods_answer_json(client):
    assert client.get("/predict").status_code == 405
    assert client.get("/predict").json()["error"]["status"] == 405
    assert client.get("/nowhere").json()["error"]["status"] == 404


class SlowPredictor:
    """Stands in for a model: 50 ms a call, logits = length of the first text; records calls."""

    input_names = ["sentence1", "sentence2"]
    label_names = ["no", "yes"]
    problem_type = "single_label_classification"
    task = "mrpc"
    max_seq_length = 128
    truncator = "round_robin"
    manifest = {"export": {"format": "onnx"}, "versions": {}}

    def __init__(self, fail_first: bool = False) -> None:
        self.calls: list[int] = []
        self.fail_first = fail_first

    def logits(self, columns, batch_size=None):
        self.calls.append(len(columns[0]))
        time.sleep(0.05)
        if self.fail_first and len(self.calls) == 1:
            raise RuntimeError("model failed")
        return np.array([[0.0, float(len(text))] for text in columns[0]], dtype=np.float32)


def test_concurrent_clients_are_batched_together_and_get_their_own_answers():
    fake = SlowPredictor()
    app = create_app(fake, ServeConfig(max_batch_size=8, max_wait_ms=20.0))
    answers = {}
    with TestClient(app) as client:

        def ask(n: int) -> None:
            instance = {"sentence1": "x" * n, "sentence2": "y"}
            answers[n] = client.post("/predict", json={"instances": [instance]}).json()

        threads = [threading.Thread(target=ask, args=(n,)) for n in range(1, 11)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sum(fake.calls) == 10
    assert len(fake.calls) < 10 and max(fake.calls) > 1  # batched across clients
    assert max(fake.calls) <= 8
    for n, answer in answers.items():
        assert answer["predictions"][0]["label"] == "yes"
        probability = answer["predictions"][0]["probabilities"][1]
        assert probability == pytest.approx(1 / (1 + np.exp(-n)), abs=1e-6)


def test_a_failed_model_call_is_a_500_and_the_server_carries_on():
    app = create_app(SlowPredictor(fail_first=True), ServeConfig(max_wait_ms=0.0))
    with TestClient(app, raise_server_exceptions=False) as client:
        first = client.post("/predict", json={"instances": [PAIR]})
        second = client.post("/predict", json={"instances": [PAIR]})
    assert first.status_code == 500 and first.json()["error"]["status"] == 500
    assert second.status_code == 200


def test_micro_batcher_splits_at_max_batch_size_and_refuses_past_its_queue():
    calls = []

    def run(columns):
        calls.append(len(columns[0]))
        return np.array([[float(text)] for text in columns[0]])

    async def scenario():
        batcher = MicroBatcher(run, max_batch_size=4, max_wait_ms=10.0, max_queued=10)
        await batcher.start()
        try:
            results = await asyncio.gather(*(batcher.submit([[str(i)], ["b"]]) for i in range(10)))
            with pytest.raises(Overloaded):
                await batcher.submit([[str(i) for i in range(11)], ["b"] * 11])
        finally:
            await batcher.stop()
        return results

    results = asyncio.run(scenario())
    assert calls == [4, 4, 2]
    assert [float(r[0, 0]) for r in results] == list(range(10))


def test_serve_binds_loopback_by_default_and_validates_limits():
    args = build_parser().parse_args(["serve", "some-dir"])
    assert args.host == "127.0.0.1" and args.port == 8000
    assert args.max_batch_size == 32
    from bertfit.errors import ConfigError

    with pytest.raises(ConfigError, match="max_batch_size must be a positive integer"):
        ServeConfig(max_batch_size=0).validate()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_bertfit_serve_command_answers_over_http(export_dir):
    import httpx

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "bertfit", "serve", str(export_dir), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ},
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, server.stdout.read()
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        response = httpx.post(f"{url}/predict", json={"instances": [PAIR]}, timeout=10)
        assert response.status_code == 200
        assert response.json()["predictions"][0]["label"] in ("not_equivalent", "equivalent")
        assert httpx.post(f"{url}/predict", content=b"{", timeout=10).status_code == 400
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def calibrated_export(tmp_path_factory) -> Path:
    import torch

    classifier = make_tiny_classifier(tmp_path_factory.mktemp("tiny-calibrated"))
    with torch.no_grad():
        for parameter in classifier.model.parameters():
            if parameter.dim() > 1:
                parameter.normal_(0.0, 0.3, generator=torch.Generator().manual_seed(2))
    classifier.info.temperature = 2.5
    output = tmp_path_factory.mktemp("export") / "calibrated"
    export_classifier(classifier, output, check_examples=0)
    return output


def test_served_probabilities_are_calibrated_unless_asked_for_raw(calibrated_export):
    predictor = load_exported(calibrated_export)
    assert predictor.temperature == 2.5
    with TestClient(create_app(predictor, ServeConfig()), raise_server_exceptions=False) as client:
        metadata = client.get("/metadata").json()
        assert metadata["temperature"] == 2.5 and metadata["calibrated"] is True
        logits = predictor({k: [v] for k, v in PAIR.items()})["logits"][0]
        for calibrated, temperature in ((None, 2.5), (True, 2.5), (False, 1.0)):
            body = {"instances": [PAIR]}
            if calibrated is not None:
                body["calibrated"] = calibrated
            expected = np.exp(logits / temperature) / np.exp(logits / temperature).sum()
            for route, key in (("/predict", "predictions"), ("/explain", "explanations")):
                answer = client.post(route, json=body).json()[key][0]
                np.testing.assert_allclose(answer["probabilities"], expected, atol=1e-5)
        refused = client.post("/predict", json={"instances": [PAIR], "calibrated": "no"})
        assert refused.status_code == 422
        assert (
            refused.json()["error"]["message"] == "'calibrated' must be true or false, got a string"
        )


def test_a_windowed_export_explains_every_word_of_a_long_text(tmp_path):
    import torch

    classifier = make_tiny_classifier(tmp_path)
    with torch.no_grad():
        for parameter in classifier.model.parameters():
            if parameter.dim() > 1:
                parameter.normal_(0.0, 0.3, generator=torch.Generator().manual_seed(4))
    classifier.info.window_stride = 8
    export_classifier(classifier, tmp_path / "windowed", check_examples=4)
    predictor = load_exported(tmp_path / "windowed")
    instance = {"sentence1": LONG, "sentence2": "a red dog"}
    with TestClient(create_app(predictor, ServeConfig()), raise_server_exceptions=False) as client:
        response = client.post("/explain", json={"instances": [instance]})
    assert response.status_code == 200, response.text
    words = response.json()["explanations"][0]["texts"][0]["words"]
    assert [w["text"] for w in words] == LONG.split()
    assert all(w["seen"] for w in words)  # windows cover the whole text
    expected = classifier.explain([LONG, "a red dog"], method="occlusion")
    np.testing.assert_allclose(
        [w["attribution"] for w in words],
        [w.attribution for w in expected.texts[0].words],
        atol=1e-4,
    )
