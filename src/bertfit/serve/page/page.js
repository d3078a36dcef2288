// The try-it page: builds a text box per input column from the inlined model metadata, sends
// the texts to POST /explain, and shows the label, every class's probability and each word
// shaded by its attribution. A multi-label model gets one bar per label with the chosen ones
// marked; the words are shaded toward the most probable label, or the one picked in the
// "explain toward" list. Errors show the server's own message.
"use strict";

const meta = JSON.parse(document.getElementById("model-metadata").textContent);
const form = document.getElementById("form");
const submit = document.getElementById("submit");
const statusLine = document.getElementById("status");
const errorBox = document.getElementById("error");
const result = document.getElementById("result");
const multiLabel = meta.problem_type === "multi_label_classification";

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function buildForm() {
  document.getElementById("title").textContent = "bertfit: " + meta.task;
  document.title = "bertfit: " + meta.task;
  const exported = meta.export || {};
  let info = "labels: " + (meta.labels || []).join(", ");
  if (exported.format) info += " | " + exported.format + " " + (exported.precision || "");
  info += meta.calibrated
    ? " | probabilities calibrated (temperature " + meta.temperature.toFixed(3) + ")"
    : " | probabilities not calibrated (no fitted temperature)";
  document.getElementById("model-info").textContent = info;
  const inputs = document.getElementById("inputs");
  for (const name of meta.input_names) {
    const label = element("label", "", name);
    label.htmlFor = "input-" + name;
    const box = element("textarea");
    box.id = "input-" + name;
    box.name = name;
    box.rows = 3;
    inputs.append(label, box);
  }
  if (meta.problem_type === "regression") return;
  // Which label the words are shaded toward: the predicted (most probable) one by default.
  const picker = element("label", "", "explain toward");
  picker.htmlFor = "target";
  const select = element("select");
  select.id = "target";
  const choices = [["", multiLabel ? "the most probable label" : "the predicted label"]];
  for (const name of meta.labels) choices.push([name, name]);
  for (const [value, text] of choices) {
    const option = element("option", "", text);
    option.value = value;
    select.append(option);
  }
  inputs.append(picker, select);
}

function showError(message) {
  result.hidden = true;
  errorBox.textContent = message;
  errorBox.hidden = false;
}

function shade(attribution, largest) {
  // Every word gets some colour, so a word the model barely used still reads as scored.
  const strength = largest > 0 ? Math.abs(attribution) / largest : 0;
  const alpha = (0.12 + 0.68 * strength).toFixed(3);
  if (attribution > 0) return "rgba(46, 160, 67, " + alpha + ")";
  if (attribution < 0) return "rgba(215, 58, 73, " + alpha + ")";
  return "rgba(120, 130, 150, 0.12)";
}

function showProbabilities(explanation) {
  const box = document.getElementById("probabilities");
  box.replaceChildren();
  if (explanation.probabilities === null) {
    box.append(element("p", "", "score: " + explanation.score.toFixed(4)));
    return;
  }
  explanation.probabilities.forEach((p, i) => {
    const name = meta.labels[i];
    // Single-label: the predicted class; multi-label: every label above its threshold.
    const chosen = multiLabel ? explanation.labels.includes(name) : i === explanation.class_id;
    const row = element("div", "prob-row" + (chosen ? " chosen" : "") +
      (i === explanation.class_id ? " explained" : ""));
    row.dataset.label = name;
    row.dataset.probability = String(p);
    row.dataset.chosen = String(chosen);
    const track = element("div", "prob-track");
    const bar = element("div", "prob-bar");
    bar.style.width = (100 * p).toFixed(2) + "%";
    track.append(bar);
    row.append(element("span", "prob-name", (chosen ? "\u2713 " : "") + name), track,
      element("span", "prob-value", (100 * p).toFixed(1) + "%"));
    box.append(row);
  });
}

function showWords(explanation) {
  const box = document.getElementById("words");
  box.replaceChildren();
  const all = explanation.texts.flatMap((t) => t.words);
  const largest = Math.max(0, ...all.map((w) => Math.abs(w.attribution)));
  for (const text of explanation.texts) {
    const block = element("div", "text-block");
    block.dataset.name = text.name;
    block.append(element("span", "text-name", text.name));
    let at = 0;
    for (const word of text.words) {
      block.append(document.createTextNode(text.text.slice(at, word.start)));
      const span = element("span", "word" + (word.seen ? "" : " unseen"),
        text.text.slice(word.start, word.end));
      span.dataset.attribution = String(word.attribution);
      span.style.backgroundColor = shade(word.attribution, largest);
      span.title = "attribution " + word.attribution.toFixed(4) +
        (word.seen ? "" : " (beyond the model's length: not seen)");
      block.append(span);
      at = word.end;
    }
    block.append(document.createTextNode(text.text.slice(at)));
    box.append(block);
  }
}

async function classify(event) {
  event.preventDefault();
  const instance = {};
  for (const name of meta.input_names) {
    instance[name] = document.getElementById("input-" + name).value;
  }
  const request = { instances: [instance] };
  const target = document.getElementById("target");
  if (target && target.value) request.label = target.value;
  submit.disabled = true;
  document.body.dataset.state = "working";
  statusLine.textContent = "working\u2026";
  errorBox.hidden = true;
  try {
    const response = await fetch("explain", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(request),
    });
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    if (!response.ok) {
      const message = body && body.error ? body.error.message : response.statusText;
      showError("Error " + response.status + ": " + message);
      return;
    }
    const explanation = body.explanations[0];
    let shown = explanation.label === null ? "score" : explanation.label;
    if (multiLabel) shown = explanation.labels.length ? explanation.labels.join(", ") : "no label";
    document.getElementById("result-label").textContent = shown;
    document.getElementById("explained-label").textContent =
      explanation.label === null ? "a higher score" : explanation.label;
    showProbabilities(explanation);
    showWords(explanation);
    result.hidden = false;
  } catch (error) {
    showError("The server could not be reached: " + error.message);
  } finally {
    submit.disabled = false;
    statusLine.textContent = "";
    document.body.dataset.state = errorBox.hidden ? "result" : "error";
  }
}

buildForm();
form.addEventListener("submit", classify);
document.body.dataset.state = "ready";
