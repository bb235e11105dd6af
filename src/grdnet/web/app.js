// The grdnet review page: Inspect (POST /inspect), History (GET /api/records), Threshold (GET/POST /api/threshold).
// Plain browser JavaScript, no libraries; every error shows the service's one-line `detail`.
"use strict";

const $ = (selector) => document.querySelector(selector);

async function detailOf(response) {
  try {
    const body = await response.json();
    return body.detail || `${response.status} ${response.statusText}`;
  } catch (_) {
    return `${response.status} ${response.statusText}`;
  }
}

function fixed(value, digits = 4) {
  return value === null || value === undefined || !isFinite(value) ? "—" : Number(value).toFixed(digits);
}

// ------------------------------------------------------------------ tabs
const loaders = {};
document.querySelectorAll(".tab").forEach((button) => {
  button.addEventListener("click", () => {
    document.querySelectorAll(".tab").forEach((b) => b.classList.toggle("active", b === button));
    document.querySelectorAll(".panel").forEach((p) => p.classList.toggle("active", p.id === button.dataset.tab));
    if (loaders[button.dataset.tab]) loaders[button.dataset.tab]();
  });
});

fetch("/health").then((r) => r.json()).then((health) => {
  $("#model-info").textContent = `${health.model} · threshold ${fixed(health.threshold)} · ${health.device}`;
});

// ------------------------------------------------------------------ inspect
function drawResult(canvas, heatmapSrc, regions) {
  const picture = new Image();
  picture.onload = () => {
    const scale = Math.max(1, Math.floor(256 / Math.max(picture.width, picture.height)));
    canvas.width = picture.width * scale;
    canvas.height = picture.height * scale;
    const context = canvas.getContext("2d");
    context.imageSmoothingEnabled = false;
    context.drawImage(picture, 0, 0, canvas.width, canvas.height);
    context.strokeStyle = "#00ff00";
    context.lineWidth = 2;
    for (const region of regions) {
      const [x0, y0, x1, y1] = region.bbox;  // inclusive pixel coordinates at the model's resolution
      context.strokeRect(x0 * scale, y0 * scale, (x1 - x0 + 1) * scale, (y1 - y0 + 1) * scale);
    }
    canvas.dataset.drawn = "true";
  };
  picture.src = heatmapSrc;
}

async function inspectOne(file, roiFile) {
  const card = document.createElement("div");
  card.className = "result pending";
  card.innerHTML = `<div class="name"></div><div class="summary">inspecting…</div>`;
  card.querySelector(".name").textContent = file.name;
  $("#results").prepend(card);
  const form = new FormData();
  form.append("file", file, file.name);
  if (roiFile) form.append("roi", roiFile, roiFile.name);
  let response;
  try {
    response = await fetch("/inspect?heatmap=true", { method: "POST", body: form });
  } catch (error) {
    card.className = "result failed";
    card.querySelector(".summary").innerHTML = `<span class="error"></span>`;
    card.querySelector(".error").textContent = `cannot reach the service (${error})`;
    return;
  }
  if (!response.ok) {
    card.className = "result failed";
    card.querySelector(".summary").innerHTML = `<span class="error"></span>`;
    card.querySelector(".error").textContent = await detailOf(response);
    return;
  }
  const result = await response.json();
  card.className = "result done";
  card.innerHTML = `<div class="name"></div>
    <div class="images"><img class="original" alt="image"><canvas class="heatmap"></canvas></div>
    <div class="summary">score <b class="score"></b> · <span class="decision"></span> ·
      threshold <span class="threshold"></span> · <span class="region-count"></span> · <span class="latency"></span></div>`;
  card.querySelector(".name").textContent = file.name;
  card.querySelector(".original").src = URL.createObjectURL(file);
  const score = card.querySelector(".score");
  score.textContent = fixed(result.score);
  score.dataset.score = String(result.score);
  const decision = card.querySelector(".decision");
  decision.textContent = result.decision;
  decision.className = `decision decision-${result.decision}`;
  card.querySelector(".threshold").textContent = fixed(result.threshold);
  card.querySelector(".region-count").textContent = `${result.regions.length} region${result.regions.length === 1 ? "" : "s"}`;
  card.querySelector(".latency").textContent = `${Math.round(result.latency_ms)} ms`;
  drawResult(card.querySelector(".heatmap"), `data:image/png;base64,${result.heatmap_png}`, result.regions);
}

async function inspectFiles(files) {
  const roiFile = $("#roi-input").files[0] || null;
  for (const file of files) await inspectOne(file, roiFile);  // one at a time: results appear in order
}

$("#image-input").addEventListener("change", (event) => inspectFiles(Array.from(event.target.files)));
$("#clear-results").addEventListener("click", () => { $("#results").innerHTML = ""; });
const zone = $("#drop-zone");
zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
zone.addEventListener("dragleave", () => zone.classList.remove("over"));
zone.addEventListener("drop", (event) => {
  event.preventDefault();
  zone.classList.remove("over");
  inspectFiles(Array.from(event.dataTransfer.files));
});

// ------------------------------------------------------------------ history
let historyPage = 1;
const PAGE_SIZE = 25;

function historyQuery() {
  const form = new FormData($("#history-filters"));
  const query = new URLSearchParams();
  for (const [key, value] of form.entries()) {
    if (value === "") continue;
    query.set(key, key === "until" ? `${value}T23:59:59.999` : value);  // "to" a date includes that whole day
  }
  return query;
}

async function loadHistory() {
  const query = historyQuery();
  $("#csv-link").href = `/api/records.csv?${query}`;
  query.set("page", historyPage);
  query.set("page_size", PAGE_SIZE);
  const response = await fetch(`/api/records?${query}`);
  const body = $("#history-table tbody");
  body.innerHTML = "";
  if (!response.ok) {
    $("#history-status").innerHTML = `<span class="error"></span>`;
    $("#history-status .error").textContent = await detailOf(response);
    return;
  }
  const data = await response.json();
  const pages = Math.max(1, Math.ceil(data.total / data.page_size));
  $("#history-status").textContent = `${data.total} record${data.total === 1 ? "" : "s"} match`;
  $("#page-info").textContent = `page ${data.page} of ${pages}`;
  $("#prev-page").disabled = data.page <= 1;
  $("#next-page").disabled = data.page >= pages;
  for (const row of data.rows) {
    const line = document.createElement("tr");
    const cells = [row.id, row.time.replace("T", " ").slice(0, 19), row.decision, fixed(row.score), fixed(row.threshold),
                   row.regions.length, row.model, row.image_path || row.image_sha256.slice(0, 12)];
    for (const value of cells) {
      const cell = document.createElement("td");
      cell.textContent = value;
      line.appendChild(cell);
    }
    line.addEventListener("click", () => openRecord(row.id));
    body.appendChild(line);
  }
}

async function openRecord(id) {
  const response = await fetch(`/api/records/${id}`);
  const detail = $("#record-detail");
  detail.innerHTML = `<h3></h3><table class="fields"></table>`;
  if (!response.ok) {
    detail.querySelector("h3").innerHTML = `<span class="error"></span>`;
    detail.querySelector(".error").textContent = await detailOf(response);
    return;
  }
  const record = await response.json();
  detail.querySelector("h3").textContent = `record ${record.id}: ${record.decision}, score ${fixed(record.score)}`;
  const regions = record.regions.map((r) => `[${r.bbox.join(", ")}] area ${r.area} peak ${fixed(r.peak)}`);
  const fields = [["time (UTC)", record.time], ["decision", record.decision], ["score", String(record.score)],
                  ["threshold", String(record.threshold)], ["model", record.model], ["image", record.image_path || "—"],
                  ["image SHA-256", record.image_sha256], ["checkpoint SHA-256", record.checkpoint_sha256],
                  ["regions (x0, y0, x1, y1 at the model's resolution)", regions.join("\n") || "none"]];
  for (const [name, value] of fields) {
    const line = document.createElement("tr");
    line.innerHTML = "<th></th><td></td>";
    line.querySelector("th").textContent = name;
    line.querySelector("td").textContent = value;
    detail.querySelector("table").appendChild(line);
  }
}

$("#history-filters").addEventListener("submit", (event) => { event.preventDefault(); historyPage = 1; loadHistory(); });
$("#prev-page").addEventListener("click", () => { historyPage -= 1; loadHistory(); });
$("#next-page").addEventListener("click", () => { historyPage += 1; loadHistory(); });
loaders.history = loadHistory;

// ------------------------------------------------------------------ threshold
let testResult = null;

function metricsAt(threshold) {
  // Same rule and formulas as grdnet.review.threshold_metrics: defect when score >= threshold.
  let tp = 0, fp = 0, fn = 0;
  testResult.scores.forEach((score, i) => {
    const flagged = score >= threshold, defect = testResult.labels[i] === 1;
    if (flagged && defect) tp += 1;
    else if (flagged) fp += 1;
    else if (defect) fn += 1;
  });
  const n = testResult.scores.length;
  const precision = tp + fp ? tp / (tp + fp) : null;
  const recall = tp + fn ? tp / (tp + fn) : null;
  const f1 = precision === null || recall === null ? null : (precision + recall ? 2 * precision * recall / (precision + recall) : 0);
  return { precision, recall, f1, accuracy: n ? (n - fp - fn) / n : null, flagged: tp + fp };
}

function drawHistogram(threshold) {
  const canvas = $("#histogram"), context = canvas.getContext("2d");
  const scores = testResult.scores, bins = 30;
  const low = Math.min(...scores, threshold), high = Math.max(...scores, threshold);
  const width = (high - low) / bins || 1;
  const counts = [new Array(bins).fill(0), new Array(bins).fill(0)];
  scores.forEach((score, i) => {
    counts[testResult.labels[i]][Math.min(bins - 1, Math.floor((score - low) / width))] += 1;
  });
  const tallest = Math.max(1, ...counts[0], ...counts[1]);
  const pad = 24, plotWidth = canvas.width - 2 * pad, plotHeight = canvas.height - 2 * pad;
  context.fillStyle = "#fff";
  context.fillRect(0, 0, canvas.width, canvas.height);
  const colours = ["rgba(38,120,178,0.7)", "rgba(230,120,20,0.7)"];
  for (const label of [0, 1]) {
    context.fillStyle = colours[label];
    counts[label].forEach((count, b) => {
      const h = (count / tallest) * plotHeight;
      context.fillRect(pad + (b * plotWidth) / bins, pad + plotHeight - h, plotWidth / bins - 1, h);
    });
  }
  context.strokeStyle = "#333";
  context.strokeRect(pad, pad, plotWidth, plotHeight);
  const x = pad + ((threshold - low) / (high - low || 1)) * plotWidth;
  context.strokeStyle = "#d50000";
  context.lineWidth = 2;
  context.beginPath();
  context.moveTo(x, pad - 6);
  context.lineTo(x, pad + plotHeight);
  context.stroke();
  context.lineWidth = 1;
  context.fillStyle = "#333";
  context.font = "12px sans-serif";
  context.fillText(fixed(low, 3), pad, canvas.height - 6);
  context.fillText(fixed(high, 3), canvas.width - pad - 40, canvas.height - 6);
}

function showThreshold() {
  const threshold = Number($("#threshold-slider").value);
  $("#threshold-value").textContent = fixed(threshold);
  const metrics = metricsAt(threshold);
  for (const name of ["precision", "recall", "f1", "accuracy"]) $(`#m-${name}`).textContent = fixed(metrics[name]);
  $("#m-flagged").textContent = `${metrics.flagged} of ${testResult.scores.length}`;
  drawHistogram(threshold);
}

async function loadThreshold() {
  if (testResult) return;
  const response = await fetch("/api/threshold");
  if (!response.ok) {
    $("#threshold-status").innerHTML = `<span class="error"></span>`;
    $("#threshold-status .error").textContent = await detailOf(response);
    return;
  }
  testResult = await response.json();
  const scores = testResult.scores;
  const low = Math.min(...scores), high = Math.max(...scores);
  const slider = $("#threshold-slider");
  slider.min = low;
  slider.max = high;
  slider.step = (high - low) / 1000 || 0.001;
  slider.value = testResult.threshold === null ? (low + high) / 2 : testResult.threshold;
  $("#serving-threshold").textContent = fixed(testResult.threshold);
  $("#threshold-status").textContent = `${scores.length} test images from ${testResult.scores_csv}`;
  $("#threshold-body").hidden = false;
  showThreshold();
}

$("#threshold-slider").addEventListener("input", showThreshold);
$("#save-threshold").addEventListener("click", async () => {
  const status = $("#save-status");
  const response = await fetch("/api/threshold", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ threshold: Number($("#threshold-slider").value), user: $("#user-name").value }),
  });
  if (!response.ok) {
    status.innerHTML = `<span class="error"></span>`;
    status.querySelector(".error").textContent = await detailOf(response);
    return;
  }
  const saved = await response.json();
  status.textContent = `threshold ${fixed(saved.to)} saved by ${saved.by} at ${saved.at} to ${saved.checkpoint} ` +
    `(the original is unchanged); serve it with: grdnet serve ${saved.checkpoint}`;
});
loaders.threshold = loadThreshold;
