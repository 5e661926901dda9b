// wct studio: uploads, live preview that follows the alpha slider, background renders (SSE).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { session: null, starting: null, content: null, styles: [], mask: null, inflight: false, again: false, job: null, renders: 0 };

// An error stays until the next success of the same kind (upload, preview or render).
function showError(message, kind = "other") {
  if (!message && state.errorKind !== kind) return;
  state.errorKind = kind;
  $("error").textContent = message || "";
  $("error").hidden = !message;
}

// What the latest preview or render warned about (a tiny style stretched, a mask resized...).
function showNotes(notes) {
  $("notes").textContent = notes.join(" \u00b7 ");
  $("notes").hidden = !notes.length;
}

// fetch, with the browser's bare "Failed to fetch" (server stopped, network down) made clear.
async function reach(url, options = {}) {
  try {
    return await fetch(url, options);
  } catch (_) {
    throw new Error("no answer from the studio server: is wct serve still running?");
  }
}

async function api(path, options = {}) {
  if (!state.session) await startSession();  // the last try was refused (429: too many sessions)
  const response = await reach(`/api/sessions/${state.session}${path}`, options);
  if (!response.ok) {
    let detail = `${response.status} ${response.statusText}`;
    try { detail = (await response.json()).detail || detail; } catch (_) { /* not JSON */ }
    throw Object.assign(new Error(detail), { status: response.status });
  }
  return response;
}

// One try at a time: actions that come meanwhile wait for it.
function startSession() {
  state.starting ||= (async () => {
    try {
      const response = await reach("/api/sessions", { method: "POST" });
      if (!response.ok) throw new Error(`cannot start a session: ${(await response.json()).detail}`);
      state.session = (await response.json()).id;
    } finally {
      state.starting = null;
    }
  })();
  return state.starting;
}

function endSession(keepalive = false) {
  if (state.session) fetch(`/api/sessions/${state.session}`, { method: "DELETE", keepalive });
  state.session = null;
}

async function upload(file) {
  const response = await api(`/images?name=${encodeURIComponent(file.name)}`, { method: "POST", body: file });
  const info = await response.json();
  const thumbnail = `/api/sessions/${state.session}/images/${info.id}/thumbnail`;
  return { ...info, url: URL.createObjectURL(file), thumbnail, weight: 1 };
}

function forget(item) {
  if (!item) return;
  URL.revokeObjectURL(item.url);
  api(`/images/${item.id}`, { method: "DELETE" }).catch(() => {});
}

// An upload's name as wct/serve.py labels it: runs of spaces as one, at most 80 characters.
const label = (name) => Array.from(name.split(/\s+/).filter(Boolean).join(" ")).slice(0, 80).join("") || "image";

// A name no other image on the page has, so that its controls say which: "style.png (2)".
function unique(name) {
  const taken = new Set([state.content, ...state.styles, state.mask].filter(Boolean).map((item) => item.name));
  let n = 1;
  let out = name;
  while (taken.has(out)) out = `${name} (${++n})`;
  return out;
}

// Every refused file of the batch stays named (a later file's success must not hide it).
async function addFiles(kind, files) {
  let added = 0;
  const errors = [];
  for (const file of files) {
    try {
      const item = await upload(file);
      if (kind !== "style") { forget(state[kind]); state[kind] = null; }
      item.name = unique(item.name);
      if (kind === "style") state.styles.push(item);
      else state[kind] = item;
      added += 1;
    } catch (e) {
      const name = label(file.name);  // the server's errors about the file start with it
      errors.push(e.message.startsWith(`${name}: `) ? e.message : `${name}: ${e.message}`);
    }
    showError(errors.join(" \u00b7 "), "upload");
  }
  draw();
  if (added) preview();
}

function thumb(item, onRemove) {  // the remove button names what it removes
  const box = document.createElement("div");
  box.className = "thumb";
  const img = document.createElement("img");
  img.addEventListener("error", () => { img.src = item.thumbnail; }, { once: true });
  img.src = item.url;  // the file itself; one the browser cannot show (TIFF): the server's PNG of it
  img.alt = item.name;
  const name = document.createElement("span");
  name.textContent = `${item.name} (${item.width}x${item.height})`;
  const remove = document.createElement("button");
  remove.type = "button";
  remove.textContent = "remove";
  remove.setAttribute("aria-label", `remove ${item.name}`);
  remove.addEventListener("click", onRemove);
  box.append(img, name, remove);
  return box;
}

// After a removal the focus goes to the next thumbnail's remove button (else the last one), or
// to the zone's file picker when none is left.
function refocus(list, index, input) {
  const buttons = $(list).querySelectorAll(".thumb button");
  (buttons[Math.min(index, buttons.length - 1)] || $(input)).focus();
}

function draw() {
  const content = $("content");
  content.replaceChildren();
  if (state.content) content.append(thumb(state.content, () => { forget(state.content); state.content = null; draw(); preview(); refocus("content", 0, "content-input"); }));
  const several = state.styles.length > 1;
  $("mask-drop").hidden = !several;
  if (!several && state.mask) { forget(state.mask); state.mask = null; }
  const mask = $("mask");
  mask.replaceChildren();
  if (state.mask) mask.append(thumb(state.mask, () => { forget(state.mask); state.mask = null; draw(); preview(); refocus("mask", 0, "mask-input"); }));
  const list = $("styles");
  list.replaceChildren();
  state.styles.forEach((item, i) => {
    const li = document.createElement("li");
    li.append(thumb(item, () => { forget(item); state.styles.splice(i, 1); draw(); preview(); refocus("styles", i, "style-input"); }));
    if (several && !state.mask) {
      const weight = document.createElement("input");
      Object.assign(weight, { type: "range", min: 0, max: 1, step: 0.05, value: item.weight, title: `weight of ${item.name}` });
      weight.className = "weight";
      weight.setAttribute("aria-label", `weight of ${item.name}`);
      weight.addEventListener("input", () => { item.weight = Number(weight.value); preview(); });
      const label = document.createElement("label");
      label.append("weight ", weight);
      li.append(label);
    }
    list.append(li);
  });
  $("render").disabled = Boolean(state.job) || !(state.content && state.styles.length);
}

function params() {
  const levels = [...$("levels").querySelectorAll("input:checked")].map((c) => Number(c.value));
  const p = {
    content: state.content.id,
    styles: state.styles.map((s) => s.id),
    alpha: Number($("alpha").value),
    levels,
    size: Number($("size").value),
    preserve_color: $("preserve").checked,
  };
  if (state.mask) p.mask = state.mask.id;
  else if (state.styles.length > 1) p.weights = state.styles.map((s) => s.weight);
  return p;
}

const HINT = $("latency").textContent;  // what the page says before the first preview

// With no photo or no style the last preview goes, with what it said: it showed images since removed.
function clearPreview() {
  const img = $("preview");
  if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
  img.removeAttribute("src");
  $("latency").textContent = HINT;
  showNotes([]);
  showError("", "preview");
}

const json = (body) => ({ method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });

// One preview in flight at a time; moves during it are folded into one more request.
async function preview() {
  if (state.inflight) { state.again = true; return; }
  if (!state.content || !state.styles.length) { clearPreview(); return; }
  state.inflight = true;
  const p = params();
  const t0 = performance.now();
  try {
    const response = await api("/preview", json(p));
    const blob = await response.blob();
    const img = $("preview");
    const old = img.src;
    img.src = URL.createObjectURL(blob);
    if (old.startsWith("blob:")) URL.revokeObjectURL(old);
    img.dataset.alpha = p.alpha.toFixed(2);
    img.dataset.count = String(Number(img.dataset.count) + 1);
    const total = Math.round(performance.now() - t0);
    const how = response.headers.get("X-Prefetched") === "1" ? "prefetched" : `model ${response.headers.get("X-Compute-Ms")} ms`;
    $("latency").textContent = `preview at alpha ${p.alpha.toFixed(2)}: ${total} ms (${how})`;
    showNotes(JSON.parse(response.headers.get("X-Notes") || "[]"));
    showError("", "preview");
  } catch (e) {
    showError(e.message, "preview");
  } finally {
    state.inflight = false;
    if (state.again) { state.again = false; preview(); }
  }
}

// Focus on the button that goes (Render while rendering, Cancel after), or already lost, moves
// to the one that comes: Cancel once the server has named the job, Render at the end.
function rendering(job) {
  const lost = [document.body, $("render"), $("cancel"), null].includes(document.activeElement);
  state.job = job;
  $("progress").hidden = !job;
  $("cancel").hidden = !job || job === "starting";  // nothing to cancel before the server names the job
  $("cancel").removeAttribute("aria-disabled");
  $("render").disabled = Boolean(job) || !(state.content && state.styles.length);
  if (lost && job !== "starting") (job ? $("cancel") : $("render")).focus();
}

async function render() {
  if (state.job) return;  // one render at a time: a double click must not start two
  $("progress").value = 0;
  rendering("starting");
  try {
    const { job } = await (await api("/render", json(params()))).json();
    rendering(job);
    const events = new EventSource(`/api/sessions/${state.session}/jobs/${job}/events`);
    events.onmessage = (event) => {
      const s = JSON.parse(event.data);
      $("progress").value = s.progress;
      if (s.status === "done" || s.status === "error" || s.status === "cancelled") {
        events.close();
        rendering(null);
        if (s.status === "done") {
          addResult(s.result);
          showNotes(s.notes);
          showError("", "render");
          syncGallery().catch(() => {});
        }
        else if (s.status === "error") showError(s.error, "render");
        else $("latency").textContent = "render cancelled";
      }
    };
    events.onerror = () => { events.close(); rendering(null); showError("lost the connection to the server", "render"); };
  } catch (e) {
    rendering(null);
    showError(e.message, "render");
  }
}

async function cancelRender() {
  if (!state.job || $("cancel").hasAttribute("aria-disabled")) return;
  $("cancel").setAttribute("aria-disabled", "true");  // stops at its next level; keeps the focus till then
  try { await api(`/jobs/${state.job}`, { method: "DELETE" }); } catch (e) { showError(e.message, "render"); }
}

function addResult(result) {
  const link = $("download");
  link.dataset.id = result.id;
  link.href = result.url;
  link.download = `wct-${result.id.slice(0, 8)}.png`;
  link.textContent = `Download PNG (${result.width}x${result.height}, ${result.seconds} s)`;
  link.hidden = false;
  const figure = document.createElement("figure");
  figure.dataset.id = result.id;
  const n = ++state.renders;  // this page's renders are numbered: their controls say which
  const img = document.createElement("img");
  img.src = result.url;
  img.alt = `render ${n}`;
  const caption = document.createElement("figcaption");
  const a = document.createElement("a");
  a.href = result.url;
  a.download = link.download;
  a.textContent = "download";
  a.setAttribute("aria-label", `download render ${n}`);
  const remove = document.createElement("button");
  remove.type = "button";
  remove.textContent = "delete";
  remove.setAttribute("aria-label", `delete render ${n} (alpha ${result.alpha})`);
  remove.addEventListener("click", () => deleteResult(figure));
  caption.append(`#${n}: alpha ${result.alpha}, levels ${result.levels.join(",")}, ${result.styles.join(" + ")} `, a, " ", remove);
  figure.append(img, caption);
  $("gallery").prepend(figure);
  $("latency").textContent = `rendered in ${result.seconds} s`;
}

// Focus inside the render that goes moves to the next one's delete button (else the previous
// one's), or to the gallery's heading when none is left.
function dropFigure(figure) {
  if ($("download").dataset.id === figure.dataset.id) $("download").hidden = true;
  const next = figure.nextElementSibling || figure.previousElementSibling;
  const focused = figure.contains(document.activeElement);
  figure.remove();
  if (focused) (next ? next.querySelector("button") : $("gallery-heading")).focus();
}

// Delete one render of this session on the server, then here (also when the server had dropped it).
async function deleteResult(figure) {
  try {
    await api(`/results/${figure.dataset.id}`, { method: "DELETE" });
  } catch (e) {
    if (e.status !== 404) { showError(e.message); return; }
  }
  dropFigure(figure);
}

// The server keeps a session's latest renders, within a byte budget all sessions share (see
// wct/serve.py's MAX_RESULTS and MAX_RESULT_BYTES): drop here what it no longer holds.
async function syncGallery() {
  const held = new Set((await (await api("/results")).json()).map((r) => r.id));
  for (const figure of $("gallery").querySelectorAll("figure")) if (!held.has(figure.dataset.id)) dropFigure(figure);
}

function dropZone(id, kind) {
  const zone = $(id);
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    const files = [...e.dataTransfer.files];
    addFiles(kind, kind === "style" ? files : files.slice(0, 1));
  });
}

function wire() {
  for (const [input, kind] of [["content-input", "content"], ["style-input", "style"], ["mask-input", "mask"]]) {
    $(input).addEventListener("change", (e) => { addFiles(kind, [...e.target.files]); e.target.value = ""; });
  }
  dropZone("content-drop", "content");
  dropZone("style-drop", "style");
  dropZone("mask-drop", "mask");
  $("alpha").addEventListener("input", () => { $("alpha-value").textContent = Number($("alpha").value).toFixed(2); preview(); });
  for (const el of [$("size"), $("preserve"), ...$("levels").querySelectorAll("input")]) el.addEventListener("change", preview);
  $("render").addEventListener("click", render);
  $("cancel").addEventListener("click", cancelRender);
  $("end").addEventListener("click", () => { endSession(); location.reload(); });
  window.addEventListener("pagehide", () => endSession(true));
}

wire();
startSession().catch((e) => showError(e.message));  // the next action tries again
