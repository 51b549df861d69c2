// mmie web page: reads /model and /health to adapt the form, posts multipart to /predict or
// /extract, and renders entities inline (span.entity[data-type]) and relations as tables.
// Offsets on the wire are Python character offsets (code points), not UTF-16 indices.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { info: null, health: null, task: null };

function codePoints(s) { return Array.from(s); }

// First occurrence of `needle` in `text`, as code-point offsets [start, end), or null.
function findMention(text, needle) {
  const idx = text.indexOf(needle);
  if (needle === "" || idx < 0) return null;
  const start = codePoints(text.slice(0, idx)).length;
  return [start, start + codePoints(needle).length];
}

function hueOf(label) {
  let h = 0;
  for (const ch of String(label)) h = (h * 31 + ch.codePointAt(0)) % 360;
  return h;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k === "style") node.setAttribute("style", v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

const fmt = (x) => (typeof x === "number" ? x.toFixed(3) : String(x));

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
  // an error replaces the result: never leave the previous post's result on the page
  if (message) { $("output").hidden = true; $("tables").replaceChildren(); $("annotated").replaceChildren(); $("raw").textContent = ""; }
}

function errorText(status, body) {
  if (body && body.detail !== undefined) {
    if (Array.isArray(body.detail)) {
      return `${status}: ` + body.detail.map((d) => `${(d.loc || []).slice(1).join(".") || "body"}: ${d.msg}`).join("; ");
    }
    return `${status}: ${body.detail}`;
  }
  return `HTTP ${status}`;
}

// ---------------------------------------------------------------- setup from /model
// the bearer token of a service started with --token: from the page's address
// (#token=...) or typed into the token field; kept for this tab only
function token() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) sessionStorage.setItem("mmie-token", decodeURIComponent(m[1]));
  return sessionStorage.getItem("mmie-token") || "";
}
function authHeaders() { const t = token(); return t ? { Authorization: `Bearer ${t}` } : {}; }

async function loadModel() {
  try {
    const health = await fetch("/health").then((r) => r.json());
    $("token-field").hidden = !health.auth;
    const resp = await fetch("/model", { headers: authHeaders() });
    if (resp.status === 401) {
      showError("This service needs an access token: type it above and press 'Use token'.");
      return;
    }
    const info = await resp.json();
    state.info = info; state.health = health; state.task = info.task;
    const enc = info.encoders || {};
    const names = { ner: "named entity recognition", re: "relation extraction", typing: "entity typing" };
    $("model-info").textContent =
      `${names[info.task] || info.task}${info.zero_shot ? " (zero-shot)" : ""} · text: ${enc.text || "?"} · vision: ${enc.vision || "?"}` +
      (info.labels && info.labels.length ? ` · ${info.labels.length} labels: ${info.labels.slice(0, 12).join(", ")}${info.labels.length > 12 ? ", …" : ""}` : "");
    $("mention-fields").hidden = !(info.task === "re" || info.task === "typing");
    $("tail-field").hidden = info.task !== "re";
    $("labels-field").hidden = !info.zero_shot;
    $("mode-field").hidden = !health.extract;
    if (health.limits) $("char-limit").textContent = health.limits.max_text_chars;
    document.body.dataset.task = info.task;
    document.body.dataset.ready = "1";
  } catch (e) {
    showError(`Cannot read /model: ${e}`);
  }
}

// ---------------------------------------------------------------- rendering
function renderAnnotated(text, spans) {
  // spans: [{start, end, type, score, index?}] in code points; overlapping ones are skipped.
  const cps = codePoints(text);
  const box = $("annotated");
  box.replaceChildren();
  let pos = 0;
  const sorted = [...spans].sort((a, b) => a.start - b.start || b.end - a.end);
  for (const s of sorted) {
    if (s.start < pos || s.end > cps.length || s.start >= s.end) continue;
    if (s.start > pos) box.append(cps.slice(pos, s.start).join(""));
    const span = el("span", {
      class: "entity", title: `${s.type} ${fmt(s.score)}`, style: `--hue: ${hueOf(s.type)}`,
      dataset: { type: s.type, score: fmt(s.score), start: s.start, end: s.end },
    });
    if (s.index !== undefined) span.append(el("span", { class: "entity-index" }, `${s.index}`));
    span.append(el("span", { class: "entity-text" }, cps.slice(s.start, s.end).join("")));
    span.append(el("span", { class: "entity-type" }, s.type));
    if (typeof s.score === "number") span.append(el("span", { class: "entity-score" }, s.score.toFixed(2)));
    box.append(span);
    pos = s.end;
  }
  if (pos < cps.length) box.append(cps.slice(pos).join(""));
}

function table(id, headers, rows) {
  const t = el("table", { id });
  t.append(el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", {}, h)))));
  const body = el("tbody");
  for (const r of rows) {
    const tr = el("tr", r.cls ? { class: r.cls } : {});
    for (const c of r.cells) tr.append(el("td", typeof c === "number" ? { class: "num" } : {}, typeof c === "number" ? fmt(c) : c));
    body.append(tr);
  }
  t.append(body);
  return t;
}

function sliceCp(text, span) { return codePoints(text).slice(span[0], span[1]).join(""); }

function render(text, kind, data) {
  const tables = $("tables");
  tables.replaceChildren();
  $("raw").textContent = JSON.stringify(data, null, 2);
  if (kind === "extract") {
    const ents = data.entities || [];
    renderAnnotated(text, ents.map((e, i) => ({ ...e, index: i })));
    tables.append(table("entities-table", ["#", "mention", "type", "start", "end", "score"],
      ents.map((e, i) => ({ cells: [String(i), e.text, e.type, String(e.start), String(e.end), e.score] }))));
    const rels = data.relations || [];
    tables.append(el("h2", {}, `Relations (${rels.length})`));
    tables.append(table("relations-table", ["head", "relation", "tail", "score"],
      rels.map((r) => ({ cells: [`${r.head}: ${ents[r.head] ? ents[r.head].text : "?"}`, r.label,
                                  `${r.tail}: ${ents[r.tail] ? ents[r.tail].text : "?"}`, r.score] }))));
    return;
  }
  const result = data.result;
  if (data.task === "ner") {
    renderAnnotated(text, result);
    tables.append(table("entities-table", ["mention", "type", "start", "end", "score"],
      result.map((e) => ({ cells: [e.text, e.type, String(e.start), String(e.end), e.score] }))));
  } else if (data.task === "re") {
    renderAnnotated(text, [
      { start: result.head[0], end: result.head[1], type: "head" },
      { start: result.tail[0], end: result.tail[1], type: "tail" },
    ]);
    tables.append(table("relations-table", ["head", "relation", "tail", "score"],
      [{ cells: [sliceCp(text, result.head), result.relation, sliceCp(text, result.tail), result.score] }]));
  } else if (data.task === "typing") {
    const head = data.head || state.lastHead;
    renderAnnotated(text, head ? [{ start: head[0], end: head[1], type: result.type, score: result.score }] : []);
    const scores = Object.entries(result.scores || {}).sort((a, b) => b[1] - a[1]);
    tables.append(table("types-table", ["type", "score"],
      scores.map(([label, score]) => ({ cells: [label, score], cls: label === result.type ? "best" : "" }))));
  }
}

// ---------------------------------------------------------------- form
function updatePreview() {
  const file = $("image").files[0];
  const img = $("preview");
  if (img.src) URL.revokeObjectURL(img.src);
  if (file) { img.src = URL.createObjectURL(file); img.hidden = false; }
  else { img.removeAttribute("src"); img.hidden = true; }
  $("clear-image").hidden = !file;
}

async function submit(ev) {
  ev.preventDefault();
  showError("");
  const text = $("text").value;
  if (!text.trim()) { showError("Type a post first."); return; }
  const useExtract = !$("mode-field").hidden && $("use-extract").checked;
  const form = new FormData();
  form.append("text", text);
  const file = $("image").files[0];
  if (file) form.append("image", file, file.name);
  if (!useExtract && (state.task === "re" || state.task === "typing")) {
    const names = state.task === "re" ? ["head", "tail"] : ["head"];
    for (const name of names) {
      const mention = $(name).value;
      const span = findMention(text, mention);
      if (!span) { showError(`The ${name} mention ${JSON.stringify(mention)} does not occur in the post.`); return; }
      form.append(name, span.join(","));
      if (name === "head") state.lastHead = span;
    }
  }
  if (state.info && state.info.zero_shot && $("labels").value.trim()) {
    form.append("candidate_labels", $("labels").value);
  }
  const button = $("submit");
  button.disabled = true;
  $("status").textContent = "Working…";
  const t0 = performance.now();
  try {
    const resp = await fetch(useExtract ? "/extract" : "/predict",
                             { method: "POST", body: form, headers: authHeaders() });
    let body = null;
    try { body = await resp.json(); } catch (_) { /* not JSON */ }
    if (!resp.ok) { showError(errorText(resp.status, body)); $("status").textContent = ""; return; }
    render(text, useExtract ? "extract" : "predict", body);
    $("output").hidden = false;
    $("status").textContent = `Done in ${Math.round(performance.now() - t0)} ms.`;
    document.body.dataset.rendered = String(Number(document.body.dataset.rendered || 0) + 1);
  } catch (e) {
    showError(`Request failed: ${e}`);
    $("status").textContent = "";
  } finally {
    button.disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("form").addEventListener("submit", submit);
  $("image").addEventListener("change", updatePreview);
  $("clear-image").addEventListener("click", () => { $("image").value = ""; updatePreview(); });
  $("text").addEventListener("input", () => { $("char-count").textContent = codePoints($("text").value).length; });
  $("token-apply").addEventListener("click", () => {
    sessionStorage.setItem("mmie-token", $("token").value.trim()); showError(""); loadModel();
  });
  loadModel();
});
