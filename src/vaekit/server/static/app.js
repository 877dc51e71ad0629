// vaekit explorer: the page's behaviour. Plain JavaScript, no build step, nothing loaded from elsewhere.
// Everything it shows comes from the JSON API of the server that served it (see /openapi.json).
"use strict";

const $ = (id) => document.getElementById(id);
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                 "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const INACTIVE_NATS = 0.02;  // below this mean KL a latent dimension carries (almost) nothing

// One object holds the page's state; tests read it as window.vaekitExplorer.
const state = {
  ready: false,
  info: null,
  map: null,
  z: null,          // the decoder's current latent
  baseZ: null,      // where "Reset" goes back to
  selected: null,   // index of the example in the decoder, or null for a map point
  marker: null,     // [x, y] of the current latent on the map
  path: null,       // interpolation path on the map
  hover: -1,
  label: null,      // class to condition on (conditional models)
  table: false,     // a run trained on a table: rows instead of images
  ends: { a: null, b: null },
  decodes: 0,
  latencies: [],    // ms from a slider move to the new image on screen
  examples: new Map(),
};
window.vaekitExplorer = state;

// ---- talking to the server ------------------------------------------------------------------------

async function api(path, options = {}) {
  const res = await fetch(path, options);
  let body = null;
  try { body = await res.json(); } catch (e) { body = null; }
  if (!res.ok) {
    throw new Error(body && body.detail ? body.detail : `${res.status} ${res.statusText}`);
  }
  return body;
}

function postJSON(path, data) {
  return api(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(data),
  });
}

function postImage(path, params, blob) {
  return api(`${path}?${query(params)}`, {
    method: "POST",
    headers: { "Content-Type": blob.type || "application/octet-stream" },
    body: blob,
  });
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== null && v !== undefined) q.set(k, String(v));
  }
  return q.toString();
}

function condition() {
  return state.info && state.info.num_classes ? state.label : null;
}

function exampleData(index) {
  if (!state.examples.has(index)) {
    const pending = api(`/examples/${index}`);
    pending.catch(() => state.examples.delete(index));
    state.examples.set(index, pending);
  }
  return state.examples.get(index);
}

function dataURLToBlob(url) {
  const [head, b64] = url.split(",");
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  return new Blob([bytes], { type: head.slice(5).split(";")[0] });
}

// Errors go to the header (the server's "detail" says what to fix) and fade after a while.
let statusTimer = null;
function report(err) {
  console.error(err);
  const status = $("status");
  status.textContent = err.message || String(err);
  status.classList.add("error");
  clearTimeout(statusTimer);
  statusTimer = setTimeout(() => { status.textContent = ""; }, 9000);
}

function setImage(img, src) {
  img.src = src;
  return img.decode().catch(() => undefined);
}

function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v;
    else if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

const fmt = (v, digits = 2) => {
  if (typeof v !== "number") return String(v);
  return Number.isInteger(v) && Math.abs(v) >= 10 ? String(v) : v.toFixed(digits);
};
const colorOf = (label) => (label === null || label === undefined ? "#3b5bdb" : PALETTE[label % PALETTE.length]);
const MISSING_COLOR = "#c4c8d0";

// A table run's column colouring: a category's palette colour, or a numeric value on a blue-to-orange ramp.
function columnColors() {
  const { color, color_by: name } = state.map;
  if (!color) return null;
  const column = state.info.columns.find((c) => c.name === name);
  if (column.categories) return color.map((k) => (k === null ? MISSING_COLOR : colorOf(k)));
  const known = color.filter((v) => v !== null);
  const lo = Math.min(...known), hi = Math.max(...known);
  const ramp = (t) => `rgb(${Math.round(40 + 200 * t)}, ${Math.round(90 + 40 * t)}, ${Math.round(200 - 170 * t)})`;
  return color.map((v) => (v === null ? MISSING_COLOR : ramp(hi > lo ? (v - lo) / (hi - lo) : 0.5)));
}

// A table row as a two-column table: column name, value.
function renderRow(table, row) {
  table.replaceChildren(...Object.entries(row).map(([k, v]) => el("tr", {}, [
    el("th", { text: k }), el("td", { text: v === null ? "(missing)" : fmt(v) })])));
}

// ---- the map ----------------------------------------------------------------------------------------

const view = { w: 0, h: 0, pad: 30, x0: 0, x1: 1, y0: 0, y1: 1, sx: [], sy: [] };

function fitView() {
  const { x, y } = state.map;
  const all = [x, y].map((v) => [Math.min(...v), Math.max(...v)]);
  const [[xa, xb], [ya, yb]] = all.map(([a, b]) => {
    const span = b - a || 1;
    return [a - 0.05 * span, b + 0.05 * span];
  });
  Object.assign(view, { x0: xa, x1: xb, y0: ya, y1: yb });
}

function toScreen(x, y) {
  const { w, h, pad, x0, x1, y0, y1 } = view;
  return [pad + ((x - x0) / (x1 - x0)) * (w - 2 * pad), h - pad - ((y - y0) / (y1 - y0)) * (h - 2 * pad)];
}

function fromScreen(sx, sy) {
  const { w, h, pad, x0, x1, y0, y1 } = view;
  return [x0 + ((sx - pad) / (w - 2 * pad)) * (x1 - x0), y0 + ((h - pad - sy) / (h - 2 * pad)) * (y1 - y0)];
}

function drawMap() {
  if (!state.map) return;
  const canvas = $("map");
  const rect = canvas.getBoundingClientRect();
  const dpr = window.devicePixelRatio || 1;
  if (canvas.width !== Math.round(rect.width * dpr) || canvas.height !== Math.round(rect.height * dpr)) {
    canvas.width = Math.round(rect.width * dpr);
    canvas.height = Math.round(rect.height * dpr);
  }
  view.w = rect.width;
  view.h = rect.height;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, view.w, view.h);

  // axes through the origin of the map's coordinates, then the axis names
  ctx.strokeStyle = "#e3e6eb";
  ctx.lineWidth = 1;
  const [ox, oy] = toScreen(0, 0);
  ctx.beginPath();
  if (ox > view.pad && ox < view.w - view.pad) { ctx.moveTo(ox, view.pad); ctx.lineTo(ox, view.h - view.pad); }
  if (oy > view.pad && oy < view.h - view.pad) { ctx.moveTo(view.pad, oy); ctx.lineTo(view.w - view.pad, oy); }
  ctx.stroke();
  ctx.fillStyle = "#6b7280";
  ctx.font = "12px system-ui, sans-serif";
  ctx.textAlign = "center";
  ctx.fillText(state.map.axes[0], view.w / 2, view.h - 9);
  ctx.save();
  ctx.translate(13, view.h / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.fillText(state.map.axes[1], 0, 0);
  ctx.restore();

  const { x, y, label } = state.map;
  const colors = state.table ? columnColors() : null;
  view.sx = new Float32Array(x.length);
  view.sy = new Float32Array(x.length);
  ctx.globalAlpha = 0.72;
  for (let i = 0; i < x.length; i++) {
    const [px, py] = toScreen(x[i], y[i]);
    view.sx[i] = px;
    view.sy[i] = py;
    ctx.fillStyle = colors ? colors[i] : colorOf(label ? label[i] : null);
    ctx.beginPath();
    ctx.arc(px, py, 2.6, 0, 2 * Math.PI);
    ctx.fill();
  }
  ctx.globalAlpha = 1;

  if (state.path && state.path.length > 1) {
    ctx.strokeStyle = "#1b2233";
    ctx.lineWidth = 2;
    ctx.beginPath();
    state.path.forEach(([px, py], i) => {
      const [sx, sy] = toScreen(px, py);
      if (i === 0) ctx.moveTo(sx, sy); else ctx.lineTo(sx, sy);
    });
    ctx.stroke();
    for (const [px, py] of state.path) {
      const [sx, sy] = toScreen(px, py);
      ctx.fillStyle = "#1b2233";
      ctx.beginPath();
      ctx.arc(sx, sy, 3.5, 0, 2 * Math.PI);
      ctx.fill();
    }
  }
  const ring = (i, color, r) => {
    const pos = state.map.index.indexOf(i);
    if (pos < 0) return;
    ctx.strokeStyle = color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    ctx.arc(view.sx[pos], view.sy[pos], r, 0, 2 * Math.PI);
    ctx.stroke();
  };
  if (state.selected !== null) ring(state.selected, "#1b2233", 7);
  if (state.hover >= 0) ring(state.map.index[state.hover], "#1b2233", 5);
  if (state.marker) {
    const [mx, my] = toScreen(state.marker[0], state.marker[1]);
    ctx.strokeStyle = "#e03131";
    ctx.lineWidth = 2.5;
    ctx.beginPath();
    ctx.moveTo(mx - 8, my); ctx.lineTo(mx + 8, my);
    ctx.moveTo(mx, my - 8); ctx.lineTo(mx, my + 8);
    ctx.stroke();
  }
}

function nearestPoint(sx, sy, radius = 7) {
  let best = -1;
  let bestD = radius * radius;
  for (let i = 0; i < view.sx.length; i++) {
    const d = (view.sx[i] - sx) ** 2 + (view.sy[i] - sy) ** 2;
    if (d <= bestD) { bestD = d; best = i; }
  }
  return best;
}

function canvasXY(event) {
  const rect = $("map").getBoundingClientRect();
  return [event.clientX - rect.left, event.clientY - rect.top];
}

async function onMapMove(event) {
  const [sx, sy] = canvasXY(event);
  const i = nearestPoint(sx, sy);
  const tip = $("map-tooltip");
  if (i !== state.hover) {
    state.hover = i;
    drawMap();
  }
  if (i < 0) { tip.classList.add("hidden"); return; }
  const index = state.map.index[i];
  tip.style.left = `${Math.min(sx + 14, view.w - 100)}px`;
  tip.style.top = `${Math.max(sy - 110, 4)}px`;
  tip.classList.remove("hidden");
  try {
    if (state.table) {
      const m = state.map;
      $("tooltip-text").textContent = m.values ? `#${index} · ${m.color_by} ${fmt(m.values[i])}` : `#${index}`;
      return;
    }
    const ex = await exampleData(index);
    if (state.hover !== i) return;
    $("tooltip-img").src = ex.image;
    $("tooltip-text").textContent = ex.label === null ? `#${index}` : `#${index} · label ${ex.label}`;
  } catch (err) { report(err); }
}

async function onMapClick(event) {
  const [sx, sy] = canvasXY(event);
  const i = nearestPoint(sx, sy);
  try {
    if (i >= 0) await selectExample(state.map.index[i]);
    else await decodePoint(fromScreen(sx, sy));
  } catch (err) { report(err); }
}

function drawLegend() {
  const box = $("map-legend");
  box.replaceChildren();
  if (state.table) { drawColumnLegend(box); return; }
  if (!state.map.label) return;
  const labels = [...new Set(state.map.label)].sort((a, b) => a - b);
  for (const l of labels) {
    const dot = el("i");
    dot.style.background = colorOf(l);
    box.append(el("span", {}, [dot, String(l)]));
  }
}

function drawColumnLegend(box) {
  const { color, color_by: name } = state.map;
  if (!color) return;
  const column = state.info.columns.find((c) => c.name === name);
  const colors = columnColors();
  const shown = new Map();
  color.forEach((v, i) => {
    const text = v === null ? "(missing)" : column.categories ? column.categories[v] : null;
    if (text !== null && !shown.has(text)) shown.set(text, colors[i]);
  });
  if (!column.categories) {
    const known = color.map((v, i) => [v, colors[i]]).filter(([v]) => v !== null).sort((a, b) => a[0] - b[0]);
    if (known.length) {
      shown.set(`${fmt(known[0][0])} (low)`, known[0][1]);
      shown.set(`${fmt(known[known.length - 1][0])} (high)`, known[known.length - 1][1]);
    }
  }
  for (const [text, c] of shown) {
    const dot = el("i");
    dot.style.background = c;
    box.append(el("span", {}, [dot, text]));
  }
}

async function colorBy(name) {
  state.map = await api(`/map?${query({ color_by: name })}`);
  drawMap();
  drawLegend();
}

// ---- decoder and sliders ----------------------------------------------------------------------------

function isInactive(d) {
  const { activity, activity_kind: kind } = state.info;
  const top = Math.max(...activity);
  return kind === "kl" ? activity[d] < INACTIVE_NATS : activity[d] < 0.01 * top;
}

function buildSliders() {
  const { dim_order: order, activity, activity_kind: kind } = state.info;
  const top = Math.max(...activity, 1e-12);
  $("slider-note").textContent = kind === "kl" ? "(most active first, by mean KL)" : "(most active first, by Var E[z|x])";
  const box = $("sliders");
  box.replaceChildren();
  for (const d of order) {
    const bar = el("div");
    bar.style.width = `${(100 * activity[d]) / top}%`;
    const input = el("input", { type: "range", min: "-4", max: "4", step: "0.01", value: "0", "data-dim": String(d),
                                "aria-label": `latent dimension ${d}` });
    const out = el("output", { text: "0.00" });
    const unit = kind === "kl" ? "nats" : "";
    const row = el("div", { class: "slider-row", title: `z${d}: ${fmt(activity[d], 3)} ${unit}`.trim() }, [
      el("span", { class: "name", text: `z${d}` }),
      el("div", { class: "kl" }, [bar]),
      input,
      out,
    ]);
    if (isInactive(d)) row.classList.add("inactive");
    input.addEventListener("input", () => {
      state.z[d] = parseFloat(input.value);
      $("decoded-caption").textContent = "decoded from the sliders";
      out.textContent = fmt(state.z[d]);
      requestDecode();
    });
    box.append(row);
  }
}

function setSliders(z) {
  state.z = z.slice();
  for (const input of $("sliders").querySelectorAll("input")) {
    const d = Number(input.dataset.dim);
    const reach = Math.max(4, Math.ceil(Math.abs(z[d])));
    input.min = String(-reach);
    input.max = String(reach);
    input.value = String(z[d]);
    input.nextElementSibling.textContent = fmt(z[d]);
  }
}

let decodeBusy = false;
let decodePending = false;

// Moving a slider fires many events; one request is in flight at a time and the newest z goes next.
function requestDecode() {
  if (decodeBusy) { decodePending = true; return; }
  runDecode();
}

async function runDecode() {
  decodeBusy = true;
  decodePending = false;
  const t0 = performance.now();
  try {
    const r = await postJSON("/decode", { z: state.z, label: condition() });
    if (r.row) renderRow($("decoded-row"), r.row);
    else await setImage($("decoded"), r.image);
    const ms = performance.now() - t0;
    state.latencies.push(ms);
    state.decodes += 1;
    $("decode-time").textContent = `${r.row ? "row" : "image"} updated in ${ms.toFixed(0)} ms`;
    state.marker = r.point;
    drawMap();
  } catch (err) {
    report(err);
  } finally {
    decodeBusy = false;
    if (decodePending) runDecode();
  }
}

// Load a latent into the decoder: sliders, "Reset" target, and what the image shows (``source``).
async function showLatent(z, source, original = null) {
  state.baseZ = z.slice();
  setSliders(z);
  const orig = $("original");
  orig.closest("figure").classList.toggle("hidden", !original);
  if (original && original.row) {
    renderRow($("original-row"), original.row);
    $("original-caption").textContent = original.caption;
  } else if (original) {
    await setImage(orig, original.image);
    $("original-caption").textContent = original.caption;
  }
  $("decoded-caption").textContent = source;
  requestDecode();
}

async function selectExample(index) {
  const ex = await exampleData(index);
  state.selected = index;
  if (state.info.num_classes && ex.label !== null) {
    state.label = ex.label;
    $("label-select").value = String(ex.label);
  }
  const caption = ex.label === null ? `${state.info.split} #${index}` : `${state.info.split} #${index} · label ${ex.label}`;
  await showLatent(ex.z, "decoded from its posterior mean", { image: ex.image, row: ex.row, caption });
}

async function decodePoint(point) {
  const r = await postJSON("/decode", { point, label: condition() });
  state.selected = null;
  state.marker = point;
  await showLatent(r.z, `decoded at map point (${fmt(point[0])}, ${fmt(point[1])})`);
}

// ---- interpolation ----------------------------------------------------------------------------------

function endBox(which) {
  return document.querySelector(`.end[data-end="${which}"]`);
}

async function setEndIndex(which, index) {
  const ex = await exampleData(index);
  state.ends[which] = { index, image: ex.image, desc: ex.label === null ? `#${index}` : `#${index} · label ${ex.label}` };
  renderEnd(which);
}

async function setEndFile(which, file) {
  const r = await postImage("/encode", { label: condition(), invert: $("interp-invert").checked }, file);
  state.ends[which] = { z: r.z, image: r.image, desc: `upload: ${file.name}` };
  renderEnd(which);
}

function renderEnd(which) {
  const box = endBox(which);
  const end = state.ends[which];
  box.querySelector(".end-img").src = end.image;
  box.querySelector(".end-desc").textContent = end.desc;
  box.querySelector(".end-index").value = end.index !== undefined ? String(end.index) : "";
}

function endSpec(end) {
  return end.index !== undefined ? { index: end.index } : { z: end.z };
}

async function runInterpolation() {
  const { a, b } = state.ends;
  if (!a || !b) throw new Error("choose both ends first");
  const steps = Number($("interp-steps").value);
  const r = await postJSON("/interpolate", {
    a: endSpec(a), b: endSpec(b), steps, path: $("interp-path").value, label: condition(),
  });
  const strip = $("interp-strip");
  strip.replaceChildren();
  r.images.forEach((src, i) => {
    const img = el("img", { class: "pixel", alt: `t = ${fmt(r.t[i])}`, src });
    const fig = el("figure", { class: i === 0 || i === r.images.length - 1 ? "endpoint" : "" },
                   [img, el("figcaption", { text: `t=${fmt(r.t[i])}` })]);
    fig.addEventListener("click", () => {
      state.selected = null;
      showLatent(r.z[i], `decoded at t = ${fmt(r.t[i])} of the interpolation`).catch(report);
    });
    strip.append(fig);
  });
  state.path = r.points;
  drawMap();
}

// ---- traversal --------------------------------------------------------------------------------------

async function runTraversal() {
  const listed = $("trav-dims").value.trim();
  const body = {
    range: Number($("trav-range").value), steps: Number($("trav-steps").value), label: condition(),
  };
  if (listed) body.dims = listed.split(",").map((d) => Number(d.trim()));
  else body.top = Number($("trav-top").value);
  if ($("trav-from").checked) {
    if (state.selected === null) throw new Error("click a dot on the map first, or untick 'start from'");
    body.index = state.selected;
  }
  const r = await postJSON("/traverse", body);
  const grid = $("trav-grid");
  grid.replaceChildren();
  grid.style.gridTemplateColumns = `auto repeat(${r.values.length}, auto)`;
  const unit = r.activity_kind === "kl" ? "nats" : "var";
  for (const row of r.rows) {
    grid.append(el("span", { class: "row-label", text: `z${row.dim} · ${fmt(row.activity, 2)} ${unit}` }));
    row.images.forEach((src, i) => {
      const img = el("img", { class: "pixel", src, alt: `z${row.dim} at ${fmt(r.values[i])}` });
      img.addEventListener("click", () => {
        state.selected = null;
        showLatent(row.z[i], `step ${fmt(r.values[i])} of the traversal of z${row.dim}`).catch(report);
      });
      grid.append(img);
    });
  }
  $("trav-hint").textContent = `Each row moves one unit over ${fmt(r.values[0])} … ${fmt(r.values.at(-1))}: ${r.meaning}.`;
}

// ---- samples ----------------------------------------------------------------------------------------

async function drawSamples() {
  const n = Number($("sample-n").value);
  const seed = Number($("sample-seed").value);
  const r = await api(`/samples?${query({ n, seed })}`);
  const grid = $("sample-grid");
  grid.replaceChildren();
  const rowLabels = r.labels !== null;
  grid.style.gridTemplateColumns = `${rowLabels ? "24px " : ""}repeat(${r.columns}, auto)`;
  r.images.forEach((src, i) => {
    if (rowLabels && i % r.columns === 0) grid.append(el("span", { class: "row-label", text: String(r.labels[i]) }));
    grid.append(el("img", { class: "pixel", src, alt: "sample" }));
  });
}

// ---- reconstruction ---------------------------------------------------------------------------------

async function reconstruct(blob) {
  const params = { label: condition(), invert: $("recon-invert").checked, k: Number($("recon-k").value) };
  const r = await postImage("/reconstruct", params, blob);
  await setImage($("recon-in"), r.image);
  await setImage($("recon-out"), r.reconstruction);
  const test = (state.info.evaluation || {}).test || {};
  const rows = [
    ["ELBO", r.elbo, test.elbo],
    ["reconstruction −E log p(x|z)", r.recon, test.recon],
    ["KL(q(z|x) ‖ p(z))", r.kl, test.kl],
    [`NLL −log p(x) (k = ${r.k})`, r.nll, test.nll],
    ["bits per dimension", r.bits_per_dim, null],
  ];
  const table = $("recon-table");
  table.replaceChildren(el("tr", {}, [el("th", { text: "nats" }), el("th", { text: "this image" }),
                                      el("th", { text: "test set mean" })]));
  for (const [name, v, ref] of rows) {
    table.append(el("tr", {}, [el("td", { text: name }), el("td", { class: "num", text: fmt(v, 3) }),
                               el("td", { class: "num", text: ref === null || ref === undefined ? "–" : fmt(ref, 3) })]));
  }
}

function setupDrawPad() {
  const pad = $("draw-pad");
  const ctx = pad.getContext("2d");
  const clear = () => { ctx.fillStyle = "#000"; ctx.fillRect(0, 0, pad.width, pad.height); };
  clear();
  let drawing = false;
  const at = (e) => {
    const rect = pad.getBoundingClientRect();
    return [((e.clientX - rect.left) * pad.width) / rect.width, ((e.clientY - rect.top) * pad.height) / rect.height];
  };
  pad.addEventListener("pointerdown", (e) => {
    drawing = true;
    pad.setPointerCapture(e.pointerId);
    ctx.beginPath();
    ctx.moveTo(...at(e));
  });
  pad.addEventListener("pointermove", (e) => {
    if (!drawing) return;
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = 14;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.lineTo(...at(e));
    ctx.stroke();
  });
  pad.addEventListener("pointerup", () => { drawing = false; });
  $("draw-clear").addEventListener("click", clear);
  $("draw-run").addEventListener("click", () => {
    pad.toBlob((blob) => reconstruct(blob).catch(report), "image/png");
  });
}

// ---- model facts ------------------------------------------------------------------------------------

// evaluation.json's numbers: what each is called, its unit (per example unless a count or a time)
const METRICS = {
  elbo: ["ELBO", "nats"],
  recon: ["reconstruction −E log p(x|z)", "nats"],
  kl: ["KL(q(z|x) ‖ p(z))", "nats"],
  nll: ["NLL −log p(x)", "nats"],
  nll_sem: ["NLL standard error", "nats"],
  bpd: ["NLL in bits per dimension", "bits/dim"],
  active_units: ["active latent units", "count"],
  active_threshold: ["activity threshold", ""],
  K: ["importance samples K", "count"],
  n: ["examples", "count"],
  seed: ["seed", ""],
  wall_seconds: ["evaluation time (wall)", "s"],
  cpu_seconds: ["evaluation time (CPU)", "s"],
  seconds: ["evaluation time", "s"],  // evaluation.json files written before wall/CPU were split
};
const SECONDS = new Set(["wall_seconds", "cpu_seconds", "seconds"]);
const COUNTS = new Set(["active_units", "K", "n", "seed"]);
const metricOrder = (k) => (k in METRICS ? Object.keys(METRICS).indexOf(k) : 1000);

function formatMetric(key, v) {
  if (typeof v !== "number") return v === undefined || v === null ? "" : String(v);
  if (COUNTS.has(key) || (Number.isInteger(v) && !(key in METRICS))) return String(v);
  if (SECONDS.has(key)) return v.toFixed(1);
  return fmt(v, 3);
}

function renderFacts() {
  const info = state.info;
  const facts = [
    ["run", info.run],
    ["data", `${info.data} (${info.event_shape.join(" × ")})`],
    ["latent dimensions", info.latent_dim],
    ["likelihood", info.likelihood],
    ["binarize", info.binarize],
    ["conditional", info.num_classes ? `yes, ${info.num_classes} classes` : "no"],
    ["map", `${info.map_points} of ${info.split_size} ${info.split} examples, ${info.projection}`],
  ];
  const dl = $("facts-list");
  dl.replaceChildren();
  for (const [k, v] of facts) dl.append(el("dt", { text: k }), el("dd", { text: String(v) }));

  const table = $("metrics-table");
  table.replaceChildren();
  const splits = Object.keys(info.evaluation);
  if (!splits.length) {
    table.append(el("tr", {}, [el("td", { text: "no evaluation.json in the run folder yet" })]));
  } else {
    // one row per number (a split per column keeps the table narrow), each with its own unit
    const keys = [...new Set(splits.flatMap((s) => Object.keys(info.evaluation[s])))]
      .filter((k) => splits.some((s) => typeof info.evaluation[s][k] === "number"))
      .sort((a, b) => metricOrder(a) - metricOrder(b));
    table.append(el("tr", {}, [el("th", { text: "" }), el("th", { text: "unit" }),
      ...splits.map((s) => el("th", { class: "num", text: s }))]));
    for (const k of keys) {
      const [name, unit] = METRICS[k] || [k, ""];
      table.append(el("tr", { "data-key": k }, [el("td", { text: name }), el("td", { class: "muted", text: unit }),
        ...splits.map((s) => el("td", { class: "num", text: formatMetric(k, info.evaluation[s][k]) }))]));
    }
  }
  $("config").textContent = JSON.stringify(info.config, null, 2);
  renderKLChart();
}

function renderKLChart() {
  const { dim_order: order, activity, activity_kind: kind } = state.info;
  $("kl-title").textContent = kind === "kl" ? "Mean KL per latent dimension (nats)" : "Var E[z|x] per latent dimension";
  const ns = "http://www.w3.org/2000/svg";
  const rowH = 16;
  const width = 380;
  const labelW = 40;
  const valueW = 46;
  const top = Math.max(...activity, 1e-12);
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", String(width));
  svg.setAttribute("height", String(order.length * rowH + 4));
  svg.setAttribute("role", "img");
  order.forEach((d, i) => {
    const y = i * rowH + 2;
    const text = (x, s, anchor) => {
      const t = document.createElementNS(ns, "text");
      t.setAttribute("x", String(x));
      t.setAttribute("y", String(y + 11));
      t.setAttribute("text-anchor", anchor);
      t.textContent = s;
      svg.append(t);
    };
    text(labelW - 6, `z${d}`, "end");
    const bar = document.createElementNS(ns, "rect");
    bar.setAttribute("x", String(labelW));
    bar.setAttribute("y", String(y + 2));
    bar.setAttribute("height", String(rowH - 5));
    bar.setAttribute("width", String(Math.max(1, ((width - labelW - valueW) * activity[d]) / top)));
    bar.setAttribute("class", isInactive(d) ? "bar inactive" : "bar");
    svg.append(bar);
    text(width - 2, fmt(activity[d], 2), "end");
  });
  $("kl-chart").replaceChildren(svg);
}

// ---- wiring -----------------------------------------------------------------------------------------

function setupTabs() {
  let sampled = false;
  for (const button of document.querySelectorAll(".tabs button")) {
    button.addEventListener("click", () => {
      for (const b of document.querySelectorAll(".tabs button")) b.classList.toggle("active", b === button);
      for (const p of document.querySelectorAll(".tab-panel")) {
        p.classList.toggle("hidden", p.id !== `tab-${button.dataset.tab}`);
      }
      if (button.dataset.tab === "sample" && !sampled) {
        sampled = true;
        drawSamples().catch(report);
      }
    });
  }
}

function setupControls() {
  $("reset-sliders").addEventListener("click", () => {
    if (state.baseZ) { setSliders(state.baseZ); requestDecode(); }
  });
  $("zero-sliders").addEventListener("click", () => {
    setSliders(new Array(state.info.latent_dim).fill(0));
    requestDecode();
  });
  $("color-select").addEventListener("change", (e) => colorBy(e.target.value).catch(report));
  $("label-select").addEventListener("change", (e) => {
    state.label = Number(e.target.value);
    requestDecode();
  });
  const map = $("map");
  map.addEventListener("mousemove", (e) => onMapMove(e).catch(report));
  map.addEventListener("mouseleave", () => {
    state.hover = -1;
    $("map-tooltip").classList.add("hidden");
    drawMap();
  });
  map.addEventListener("click", onMapClick);
  window.addEventListener("resize", drawMap);

  for (const which of ["a", "b"]) {
    const box = endBox(which);
    box.append($("end-template").content.cloneNode(true));
    box.querySelector(".end-index").addEventListener("change", (e) => {
      setEndIndex(which, Number(e.target.value)).catch(report);
    });
    box.querySelector(".use-selected").addEventListener("click", () => {
      if (state.selected === null) { report(new Error("click a dot on the map first")); return; }
      setEndIndex(which, state.selected).catch(report);
    });
    box.querySelector(".end-file").addEventListener("change", (e) => {
      if (e.target.files.length) setEndFile(which, e.target.files[0]).catch(report);
      e.target.value = "";
    });
  }
  $("interp-steps").addEventListener("input", (e) => { $("interp-steps-out").textContent = e.target.value; });
  $("interp-run").addEventListener("click", () => runInterpolation().catch(report));

  $("trav-run").addEventListener("click", () => runTraversal().catch(report));

  $("sample-run").addEventListener("click", () => drawSamples().catch(report));
  $("sample-again").addEventListener("click", () => {
    $("sample-seed").value = String(Number($("sample-seed").value) + 1);
    drawSamples().catch(report);
  });

  $("recon-file").addEventListener("change", (e) => {
    if (e.target.files.length) reconstruct(e.target.files[0]).catch(report);
    e.target.value = "";
  });
  $("recon-selected").addEventListener("click", async () => {
    if (state.selected === null) { report(new Error("click a dot on the map first")); return; }
    try {
      const ex = await exampleData(state.selected);
      await reconstruct(dataURLToBlob(ex.image));
    } catch (err) { report(err); }
  });
  setupDrawPad();
}

function renderHeader() {
  const info = state.info;
  const test = (info.evaluation || {}).test;
  const parts = [info.run, `${info.data} ${info.event_shape.join("×")}`, `latent ${info.latent_dim}`];
  if (test && typeof test.elbo === "number") parts.push(`test ELBO ${fmt(test.elbo, 1)} nats`);
  $("run-summary").textContent = parts.join(" · ");
  document.title = `vaekit explorer · ${info.run}`;
  if (info.columns) setupTable(info.columns);
  if (info.num_classes) {
    const select = $("label-select");
    for (let c = 0; c < info.num_classes; c++) select.append(el("option", { value: String(c), text: String(c) }));
    state.label = 0;
    $("label-picker").classList.remove("hidden");
    $("sample-per-class").classList.remove("hidden");
    $("sample-n").value = "8";
    $("sample-hint").textContent = "The same latents in every row: each column keeps one style across the classes.";
  }
}

// A table run: rows instead of images in the decoder, a column picker for the map, no image-only tabs.
function setupTable(columns) {
  state.table = true;
  const select = $("color-select");
  for (const c of columns) select.append(el("option", { value: c.name, text: `${c.name} (${c.type})` }));
  $("color-picker").classList.remove("hidden");
  document.querySelector("#map-panel .hint").textContent = "Hover a dot to see its value · click a dot to "
    + "load its row into the decoder · click an empty spot to decode that place into a row.";
  for (const id of ["original", "decoded", "tooltip-img"]) $(id).classList.add("hidden");
  for (const id of ["original-row", "decoded-row"]) $(id).classList.remove("hidden");
  for (const b of document.querySelectorAll(".tabs button")) {
    if (b.dataset.tab !== "facts") b.classList.add("hidden");
  }
  document.querySelector('.tabs button[data-tab="facts"]').click();
}

async function main() {
  setupTabs();
  setupControls();
  state.info = await api("/info");
  renderHeader();
  buildSliders();
  renderFacts();
  state.map = await api(state.table ? `/map?${query({ color_by: state.info.columns[0].name })}` : "/map");
  $("map-caption").textContent = `${state.map.x.length} ${state.map.split} examples · ${state.map.projection}`;
  fitView();
  drawMap();
  drawLegend();
  const { index, label } = state.map;
  const first = index[0];
  const other = label ? index[label.findIndex((l) => l !== label[0])] ?? index[1] : index[1];
  await selectExample(first);
  if (!state.table) {
    await setEndIndex("a", first);
    await setEndIndex("b", other ?? first);
  }
  state.ready = true;
}

main().catch(report);
