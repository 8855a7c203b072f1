// The dfdetect page: upload a file to /api/analyze and show what came back.
"use strict";

const $ = (id) => document.getElementById(id);
let maxUploadBytes = null;

function show(id, visible) { $(id).hidden = !visible; }

function formatBytes(n) {
  return n >= 1048576 ? (n / 1048576).toFixed(1) + " MB" : Math.max(1, Math.round(n / 1024)) + " kB";
}

function showError(message) {
  show("progress", false);
  show("result", false);
  $("error").textContent = message;
  show("error", true);
}

function setStatus(text, percent) {
  show("progress", true);
  $("status").textContent = text;
  const bar = $("upload-progress");
  if (percent === null) bar.removeAttribute("value"); else bar.value = percent;
}

async function loadConfig() {
  try {
    const response = await fetch("/api/config");
    const config = await response.json();
    maxUploadBytes = config.max_upload_bytes;
    $("limit").textContent = "up to " + formatBytes(maxUploadBytes) + ", checked by its content";
  } catch (e) {
    $("limit").textContent = "";
  }
}

function analyze(file) {
  show("error", false);
  show("result", false);
  if (file.size === 0) { showError(file.name + " is empty: choose an image or a video."); return; }
  if (maxUploadBytes !== null && file.size > maxUploadBytes) {
    showError(file.name + " is " + formatBytes(file.size) + ", larger than the limit of " + formatBytes(maxUploadBytes) + ".");
    return;
  }
  const form = new FormData();
  form.append("file", file, file.name);
  const request = new XMLHttpRequest();
  request.open("POST", "/api/analyze?thumbnails=true");
  request.responseType = "json";
  request.upload.onprogress = (event) => {
    if (event.lengthComputable) {
      setStatus("Uploading " + file.name + "…", Math.round(100 * event.loaded / event.total));
    }
  };
  request.upload.onload = () => setStatus("Finding faces and scoring them…", null);
  request.onerror = () => showError("The upload failed: the server could not be reached.");
  request.onload = () => {
    const body = request.response;
    if (request.status === 200 && body) { render(body); return; }
    const message = body && body.error ? body.error.message : "the server answered " + request.status;
    showError("Could not analyse " + file.name + ": " + message);
  };
  setStatus("Uploading " + file.name + "…", 0);
  request.send(form);
}

const VERDICT_TEXT = { fake: "Likely fake", real: "Likely real", no_face: "No face found" };
const LOW_EVIDENCE_TEXT = { fake: "Possibly fake (low evidence)", real: "Not enough evidence" };

function renderPeople(result) {
  // One line per person when there are several: which face is fake.
  const people = $("people");
  people.replaceChildren();
  show("people-block", result.tracks.length > 1);
  for (const track of result.tracks) {
    const item = document.createElement("li");
    item.dataset.verdict = track.verdict;
    item.textContent = "Person " + (track.id + 1) + ": " + VERDICT_TEXT[track.verdict] + " (" +
      track.fake_probability.toFixed(3) + ", " + track.frames + " frame" + (track.frames === 1 ? "" : "s") + ")";
    people.append(item);
  }
}

function render(result) {
  show("progress", false);
  const verdict = $("verdict");
  verdict.textContent = result.low_evidence ? LOW_EVIDENCE_TEXT[result.verdict] : VERDICT_TEXT[result.verdict] || result.verdict;
  verdict.dataset.verdict = result.low_evidence ? "low_evidence" : result.verdict;
  show("evidence", result.low_evidence);
  $("evidence").textContent = result.low_evidence ?
    "A face was found in only " + result.frames_with_face + " of " + result.frames_sampled +
    " sampled frames: too few to judge this video with confidence. Review it by eye." : "";
  $("score").textContent = result.fake_probability === undefined ? "–" : result.fake_probability.toFixed(3);
  $("threshold").textContent = result.threshold.toFixed(3);
  $("model").textContent = result.model_name + (result.model_version === null ? "" : " version " + result.model_version);
  $("source").textContent = result.source + " (" + result.kind + ")";
  $("frames").textContent = result.frames_with_face + " of " + result.frames_sampled + " sampled frame" +
    (result.frames_sampled === 1 ? "" : "s") + " with a face";
  renderPeople(result);
  renderFaces(result);
  show("timeline-block", result.kind === "video");
  if (result.kind === "video") renderTimeline(result);
  show("result", true);
}

function renderFaces(result) {
  const faces = $("faces");
  faces.replaceChildren();
  for (const frame of result.frames) {
    // With several people, each frame's faces in person order (they come most confident first).
    const ordered = [...frame.faces].sort((a, b) => a.track - b.track);
    for (const face of ordered) {
      const figure = document.createElement("figure");
      figure.className = "face";
      figure.dataset.fake = face.fake_probability >= result.threshold ? "true" : "false";
      if (face.thumbnail) {
        const img = document.createElement("img");
        img.className = "face-thumb";
        img.src = face.thumbnail;
        img.alt = "face in frame " + frame.index;
        figure.append(img);
      }
      const caption = document.createElement("figcaption");
      caption.textContent = face.fake_probability.toFixed(3) +
        (result.kind === "video" ? " · " + frame.timestamp.toFixed(1) + " s" : "") +
        (result.tracks.length > 1 ? " · person " + (face.track + 1) : "") + (face.rescued ? " · dim" : "");
      if (face.rescued) caption.title = "found a little under the detector's threshold, kept because the same face is found with confidence before and after";
      figure.append(caption);
      faces.append(figure);
    }
  }
  if (!faces.children.length) {
    faces.textContent = "No face was found in the sampled frames, so no score was made.";
  }
}

const SVG = "http://www.w3.org/2000/svg";

function svg(name, attributes, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  if (parent) parent.append(node);
  return node;
}

function renderTimeline(result) {
  const plot = $("timeline");
  plot.replaceChildren();
  const width = 640, height = 220, left = 44, right = 24, top = 12, bottom = 34;
  plot.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const frames = result.frames;
  const end = Math.max(...frames.map((f) => f.timestamp), 1e-6);
  const x = (t) => left + (width - left - right) * t / end;
  const y = (p) => top + (height - top - bottom) * (1 - p);

  // Axes and grid.
  for (const p of [0, 0.25, 0.5, 0.75, 1]) {
    svg("line", { x1: left, x2: width - right, y1: y(p), y2: y(p), class: "grid" }, plot);
    svg("text", { x: left - 6, y: y(p) + 4, class: "tick", "text-anchor": "end" }, plot).textContent = p.toFixed(2);
  }
  for (let i = 0; i <= 4; i++) {
    const t = end * i / 4;
    svg("text", { x: x(t), y: height - bottom + 16, class: "tick", "text-anchor": "middle" }, plot).textContent = t.toFixed(1) + " s";
  }

  // The threshold line.
  svg("line", { x1: left, x2: width - right, y1: y(result.threshold), y2: y(result.threshold), class: "threshold-line" }, plot);
  svg("text", { x: width - right, y: y(result.threshold) - 5, class: "threshold-label", "text-anchor": "end" }, plot)
    .textContent = "threshold " + result.threshold.toFixed(2);

  // Per-frame scores: a line through frames with a face (broken where none was found), a dot per
  // scored frame, and a tick at the bottom for frames without a face.
  let d = "";
  let pen = "M";
  for (const frame of frames) {
    if (frame.fake_probability === undefined) {
      pen = "M";
      svg("line", { x1: x(frame.timestamp), x2: x(frame.timestamp), y1: y(0) - 4, y2: y(0), class: "no-face" }, plot);
      continue;
    }
    d += `${pen}${x(frame.timestamp).toFixed(1)},${y(frame.fake_probability).toFixed(1)} `;
    pen = "L";
  }
  if (d) svg("path", { d: d.trim(), class: "timeline-line" }, plot);
  for (const frame of frames) {
    if (frame.fake_probability === undefined) continue;
    const dot = svg("circle", {
      cx: x(frame.timestamp), cy: y(frame.fake_probability), r: 3.5,
      class: "frame-dot" + (frame.fake_probability >= result.threshold ? " suspicious" : ""),
    }, plot);
    svg("title", {}, dot).textContent = `frame ${frame.index} at ${frame.timestamp.toFixed(2)} s: ${frame.fake_probability.toFixed(3)}`;
  }
}

function init() {
  const input = $("file");
  const drop = $("drop");
  input.addEventListener("change", () => { if (input.files.length) analyze(input.files[0]); });
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (event) => { event.preventDefault(); drop.classList.add("over"); });
  }
  for (const name of ["dragleave", "drop"]) {
    drop.addEventListener(name, (event) => { event.preventDefault(); drop.classList.remove("over"); });
  }
  drop.addEventListener("drop", (event) => {
    if (event.dataTransfer.files.length) analyze(event.dataTransfer.files[0]);
  });
  drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); input.click(); }
  });
  loadConfig();
}

document.addEventListener("DOMContentLoaded", init);
