"""The try-it page of ``bertfit serve`` in a real browser (headless Chromium via Selenium).

A tiny model fine-tuned in this session is exported to ONNX and served with torch made
unimportable; the page is loaded, a pair typed in and submitted, and what the page shows is
checked against the predictor. The tests fail, saying what to install, when Chromium is
missing; only BERTFIT_SKIP_BROWSER=1 turns that into a skip.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from bertfit.export.runtime import load_exported

from browser import SKIP_VARIABLE, chromium, missing_browser, serve, submit_pair

PAIR = {"sentence1": "the big cat saw the red dog .", "sentence2": "a small dog ran on blue mat"}


@pytest.fixture(scope="module")
def browser():
    problem = missing_browser()
    if problem is not None:
        if os.environ.get(SKIP_VARIABLE) == "1":
            pytest.skip(problem)
        pytest.fail(problem)
    with chromium() as driver:
        yield driver


@pytest.fixture(scope="module")
def export_dir(tiny_run, tmp_path_factory):
    from bertfit.export.export import export_classifier

    output = tmp_path_factory.mktemp("page") / "onnx"
    export_classifier(tiny_run, output, check_examples=8)
    return output


@pytest.fixture(scope="module")
def url(export_dir):
    with serve(export_dir, without_torch=True) as base:
        yield base


def _words(driver):
    from selenium.webdriver.common.by import By

    blocks = driver.find_elements(By.CSS_SELECTOR, "#words .text-block")
    return {
        block.get_attribute("data-name"): [
            (span.text, span.value_of_css_property("background-color"))
            for span in block.find_elements(By.CSS_SELECTOR, ".word")
        ]
        for block in blocks
    }


def test_the_page_classifies_a_pair_and_shades_every_word(browser, url, export_dir):
    from selenium.webdriver.common.by import By

    assert submit_pair(browser, url, PAIR) == "result"
    expected = load_exported(export_dir)({k: [v] for k, v in PAIR.items()})
    label = browser.find_element(By.ID, "result-label").text
    assert label == expected["class"][0]
    rows = browser.find_elements(By.CSS_SELECTOR, "#probabilities .prob-row")
    assert [row.get_attribute("data-label") for row in rows] == ["not_equivalent", "equivalent"]
    probabilities = [float(row.get_attribute("data-probability")) for row in rows]
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(probabilities, expected["probabilities"][0], atol=1e-5)
    words = _words(browser)
    assert list(words) == ["sentence1", "sentence2"]
    for name, text in PAIR.items():
        assert [word for word, _ in words[name]] == text.split()
        for word, colour in words[name]:
            # Shaded: a visible background, never transparent.
            assert colour.startswith("rgba(") and not colour.endswith(", 0)"), (word, colour)
    assert not browser.find_element(By.ID, "error").is_displayed()


def test_an_empty_field_shows_the_servers_message_on_the_page(browser, url):
    from selenium.webdriver.common.by import By

    state = submit_pair(browser, url, {"sentence1": "the cat sat .", "sentence2": ""})
    assert state == "error"
    error = browser.find_element(By.ID, "error")
    assert error.is_displayed()
    assert error.text == ("Error 422: instances[0].sentence2 is empty; give some text to classify")
    assert not browser.find_element(By.ID, "result").is_displayed()
    assert "Traceback" not in browser.page_source


def test_a_long_text_is_explained_word_by_word(browser, url):
    from selenium.webdriver.common.by import By

    long_text = " ".join(["the big cat sat on the mat and saw a small dog ."] * 8)
    assert submit_pair(browser, url, {"sentence1": long_text, "sentence2": "a red dog"}) == "result"
    words = _words(browser)
    assert [word for word, _ in words["sentence1"]] == long_text.split()
    # Words past the model's length were never seen: shown, marked, not scored.
    unseen = browser.find_elements(By.CSS_SELECTOR, "#words .word.unseen")
    assert 0 < len(unseen) < len(long_text.split())


# -- a multi-label export -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def multi_label_url(tmp_path_factory):
    """A tiny model fine-tuned on tagged texts (which colours and pets each names), exported
    to ONNX and served."""
    from test_multi_label import tagged_texts, write_jsonl

    from bertfit.cli import main
    from bertfit.export.export import export_classifier

    from conftest import make_tiny_classifier

    root = tmp_path_factory.mktemp("page-multi")
    make_tiny_classifier(root).save_pretrained(root / "model")
    args = ["train", "--train", str(write_jsonl(root / "train.jsonl", tagged_texts(1024, 1)))]
    args += ["--dev", str(write_jsonl(root / "dev.jsonl", tagged_texts(96, 2)))]
    args += ["--text-a", "text", "--label", "tags", "--model", str(root / "model")]
    args += ["--output", str(root / "run"), "--epochs", "8", "--batch-size", "16"]
    args += ["--learning-rate", "3e-3", "--max-seq-length", "32", "--precision", "fp32"]
    assert main([*args, "--quiet"]) == 0
    export_classifier(root / "run", root / "onnx", check_examples=4)
    with serve(root / "onnx", without_torch=True) as base:
        yield base


def _bars(driver) -> list[tuple[str, bool, float]]:
    from selenium.webdriver.common.by import By

    rows = driver.find_elements(By.CSS_SELECTOR, "#probabilities .prob-row")
    return [
        (
            row.get_attribute("data-label"),
            row.find_element(By.CSS_SELECTOR, ".prob-name").value_of_css_property("font-weight")
            == "700",
            float(row.get_attribute("data-probability")),
        )
        for row in rows
    ]


def _strongest_word(driver) -> str:
    from selenium.webdriver.common.by import By

    spans = driver.find_elements(By.CSS_SELECTOR, "#words .word")
    return max(spans, key=lambda span: float(span.get_attribute("data-attribution"))).text


def test_a_multi_label_export_shows_a_bar_per_label_and_marks_the_chosen(browser, multi_label_url):
    import httpx
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    text = {"text": "the red cat sat ."}
    api = httpx.post(f"{multi_label_url}/predict", json={"instances": [text]}).json()
    expected = api["predictions"][0]
    labels = httpx.get(f"{multi_label_url}/metadata").json()["labels"]
    assert submit_pair(browser, multi_label_url, text) == "result"
    bars = _bars(browser)
    assert [name for name, _, _ in bars] == labels == list(expected["probabilities"])
    # Shown in bold (and ticked): exactly the labels the API chooses, some but not all.
    marked = [name for name, bold, _ in bars if bold]
    assert marked == expected["labels"] and 0 < len(marked) < len(labels)
    ticked = browser.find_elements(By.CSS_SELECTOR, "#probabilities .prob-row.chosen")
    assert [row.get_attribute("data-label") for row in ticked] == marked
    np.testing.assert_allclose(
        [p for _, _, p in bars], list(expected["probabilities"].values()), atol=1e-6
    )
    assert browser.find_element(By.ID, "result-label").text == ", ".join(expected["labels"])
    # The words are shaded toward the most probable label, then toward the one picked.
    top = max(expected["probabilities"], key=expected["probabilities"].get)
    assert browser.find_element(By.ID, "explained-label").text == top
    for label, word in (("pet", "cat"), ("warm", "red")):
        Select(browser.find_element(By.ID, "target")).select_by_value(label)
        browser.find_element(By.ID, "submit").click()
        # The click sets the state to "working"; the answer sets it back to "result".
        WebDriverWait(browser, 60).until(
            lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "result"
        )
        assert browser.find_element(By.ID, "explained-label").text == label
        assert _strongest_word(browser) == word
        assert [name for name, bold, _ in _bars(browser) if bold] == marked
