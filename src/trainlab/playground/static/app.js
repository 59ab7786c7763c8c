// trainlab playground: the page. Plain JavaScript and canvas; the server trains, the page draws.
"use strict";

const $ = (id) => document.getElementById(id);
const PAGE_KEYS = ["race", "b_optimizer", "b_lr", "b_options", "mode"];  // URL keys the page keeps itself
let options = null;
let settings = {};
let page = {race: "0", b_optimizer: "adam", b_lr: "0.01", b_options: "", mode: "network"};
const runs = {};  // "a" (and "b" in race mode): {ws, frame, history, state}

// ---- URL state -------------------------------------------------------------------------------
function readUrl() {
  const q = new URLSearchParams(location.search);
  const s = {};
  for (const [k, v] of q) {
    if (k in options.defaults) s[k] = v;
    else if (PAGE_KEYS.includes(k)) page[k] = v;
  }
  return s;
}
function writeUrl() {
  const q = new URLSearchParams();
  for (const k of Object.keys(options.defaults)) {
    if (String(settings[k]) !== String(options.defaults[k])) q.set(k, settings[k]);
  }
  for (const k of PAGE_KEYS) if (page[k] && !(k === "race" && page[k] === "0") && !(k === "mode" && page[k] === "network")) {
    if (k.startsWith("b_") && page.race !== "1") continue;
    q.set(k, page[k]);
  }
  history.replaceState(null, "", location.pathname + (q.toString() ? "?" + q : ""));
}

// ---- messages --------------------------------------------------------------------------------
function showError(text) {
  const e = $("error");
  e.textContent = text || "";
  e.hidden = !text;
}
function notice(text) {
  const e = $("notice");
  e.textContent = text || "";
  e.hidden = !text;
}

function bSettings() {
  return Object.assign({}, settings, {optimizer: page.b_optimizer, lr: page.b_lr, optimizer_options: page.b_options});
}

function connect(which) {
  const ws = new WebSocket(`ws://${location.host}/ws`);
  const run = runs[which] = {ws, frame: null, history: [], state: "…", open: false, queue: []};
  ws.onopen = () => {
    run.open = true;
    ws.send(JSON.stringify({type: "init", settings: which === "a" ? settings : bSettings()}));
    for (const m of run.queue) ws.send(JSON.stringify(m));
    run.queue = [];
  };
  ws.onmessage = (ev) => onMessage(which, JSON.parse(ev.data));
  ws.onclose = () => { if (runs[which] === run) { run.open = false; if (which === "a") showError("the connection to the server closed; reload the page"); } };
}
function send(which, msg) {
  const run = runs[which];
  if (!run) return;
  if (run.open) run.ws.send(JSON.stringify(msg)); else run.queue.push(msg);
}
function sendAll(msg) { for (const w of Object.keys(runs)) send(w, msg); }

function onMessage(which, m) {
  const run = runs[which];
  if (m.type === "frame") {
    if (m.points) { run.points = m.points; run.bounds = m.bounds; run.history = []; }
    else if (run.frame && m.step < run.frame.step) run.history = [];
    if (!run.frame || m.step !== run.frame.step || run.history.length === 0) {
      run.history.push([m.step, m.train_loss, m.test_loss]);
      if (run.history.length > 4000) run.history = run.history.filter((_, i) => i % 2 === 0);
    }
    run.frame = m;
    run.state = m.state;
    scheduleDraw();
  } else if (m.type === "status") {
    run.state = m.state;
    if (which === "a") { $("state").textContent = m.state; playLabel(); }
    if (m.message) notice((which === "b" ? "B: " : "") + m.message);
  } else if (m.type === "error") {
    showError((which === "b" ? "B: " : "") + m.message);
  } else if (m.type === "settings") {
    if (which === "a") {
      showError("");
      // the server changes one setting itself: reset draws the next seed (later local edits are kept)
      if (!m.live && String(m.settings.seed) !== String(settings.seed) && m.reset) {
        settings.seed = m.settings.seed;
        fillInputs();
        writeUrl();
      }
    }
  } else if (m.type === "verdicts") {
    if (which === "a") drawVerdicts(m.items || []);
  } else if (m.type === "config") {
    $("config-yaml").textContent = m.yaml;
    if (navigator.clipboard) navigator.clipboard.writeText(m.yaml).catch(() => {});
  } else if (m.type === "saved") {
    $("saved").textContent = `saved: ${m.path} (report: ${m.report})`;
  } else if (m.type === "trajectory") {
    drawTrajectory(m);
  }
}

// ---- inputs ----------------------------------------------------------------------------------
function fillSelect(sel, names, keep) {
  for (const n of names) { const o = document.createElement("option"); o.value = o.textContent = n; sel.appendChild(o); }
}
function buildInputs() {
  const q = (k) => document.querySelector(`[data-setting="${k}"]`);
  fillSelect(q("norm"), options.norms);
  fillSelect(q("dropout_kind"), options.dropout_kinds);
  fillSelect(q("init_weight"), options.weight_inits);
  fillSelect(q("init_bias"), options.bias_inits);
  fillSelect(q("optimizer"), options.optimizers);
  fillSelect($("b-optimizer"), options.optimizers);
  fillSelect(q("schedule"), options.schedules);
  fillSelect($("t-function"), options.functions);
  for (const a of options.activations) { const o = document.createElement("option"); o.value = a; $("activations").appendChild(o); }
  for (const f of options.features) {
    const l = document.createElement("label");
    l.className = "check";
    l.innerHTML = `<input type="checkbox" value="${f}" data-testid="feature-${f}"> ${f}`;
    $("features").appendChild(l);
    l.querySelector("input").addEventListener("change", () => {
      const on = [...$("features").querySelectorAll("input:checked")].map((i) => i.value);
      change("features", on.join(","));
    });
  }
  for (const el of document.querySelectorAll("[data-setting]")) {
    el.addEventListener("change", () => change(el.dataset.setting, el.type === "checkbox" ? el.checked : el.value));
  }
}
function fillInputs() {
  for (const el of document.querySelectorAll("[data-setting]")) {
    const v = settings[el.dataset.setting];
    if (el.type === "checkbox") el.checked = v === true || v === "true" || v === "1";
    else el.value = v;
  }
  const on = String(settings.features).split(",");
  for (const i of $("features").querySelectorAll("input")) i.checked = on.includes(i.value);
  $("race").checked = page.race === "1";
  $("b-optimizer").value = page.b_optimizer; $("b-lr").value = page.b_lr; $("b-options").value = page.b_options;
  $("mode").value = page.mode;
  $("race-panel").hidden = $("b-board").hidden = page.race !== "1";
  $("network-mode").hidden = page.mode !== "network";
  $("trajectory-mode").hidden = page.mode !== "trajectory";
}
function change(key, value) {
  settings[key] = value;
  writeUrl();
  showError("");
  notice("");
  send("a", {type: "settings", settings});
  if (runs.b) send("b", {type: "settings", settings: bSettings()});
}
function playLabel() {
  const s = runs.a ? runs.a.state : "";
  $("play").textContent = s === "running" ? "pause" : "play";
}

// ---- drawing ---------------------------------------------------------------------------------
const C0 = [245, 147, 34], C1 = [8, 119, 189];  // class 0 orange, class 1 blue (TF Playground's)
const PALETTE = [[245, 147, 34], [8, 119, 189], [62, 189, 147], [225, 45, 57], [132, 94, 194], [240, 180, 41],
  [23, 162, 184], [120, 120, 120], [199, 81, 172], [80, 160, 60]];
function bytes(b64) { const s = atob(b64); const a = new Uint8Array(s.length); for (let i = 0; i < s.length; i++) a[i] = s.charCodeAt(i); return a; }
function mix(a, b, t) { return [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t]; }
const offscreen = document.createElement("canvas");

function fieldImage(f, n) {
  offscreen.width = offscreen.height = n;
  const ctx = offscreen.getContext("2d");
  const img = ctx.createImageData(n, n);
  const g = bytes(f.grid);
  const cls = f.grid_class ? bytes(f.grid_class) : null;
  for (let i = 0; i < n * n; i++) {
    let c;
    if (cls) c = mix([255, 255, 255], PALETTE[cls[i] % PALETTE.length], 0.25 + 0.6 * g[i] / 255);
    else c = mix(mix(C0, [255, 255, 255], 0.35), mix(C1, [255, 255, 255], 0.35), g[i] / 255);
    img.data[4 * i] = c[0]; img.data[4 * i + 1] = c[1]; img.data[4 * i + 2] = c[2]; img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  return offscreen;
}

function drawBoundary(canvas, f, points) {
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height;
  ctx.clearRect(0, 0, W, H);
  const b = f.bounds;
  if (!b) return;
  const oneD = !!f.curve;
  const [x0, x1] = [b[0], b[1]];
  let y0, y1;
  if (oneD) {
    const ys = points.train.concat(points.val || []).map((p) => p[1]).concat(f.curve.filter((v) => v !== null));
    y0 = Math.min(...ys); y1 = Math.max(...ys);
    const pad = (y1 - y0 || 1) * 0.1; y0 -= pad; y1 += pad;
  } else { y0 = b[2]; y1 = b[3]; }
  const sx = (x) => (x - x0) / (x1 - x0) * W, sy = (y) => H - (y - y0) / (y1 - y0) * H;
  if (!oneD) {
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(fieldImage(f, 64), 0, 0, W, H);
  } else {
    ctx.fillStyle = "#fafbfc"; ctx.fillRect(0, 0, W, H);
    ctx.strokeStyle = "#2186eb"; ctx.lineWidth = 2; ctx.beginPath();
    f.curve.forEach((v, i) => { const x = x0 + (x1 - x0) * i / (f.curve.length - 1); if (v === null) return; i ? ctx.lineTo(sx(x), sy(v)) : ctx.moveTo(sx(x), sy(v)); });
    ctx.stroke();
  }
  const reg = f.range || oneD;
  const parts = $("show-test").checked ? ["train", "val"] : ["train"];
  for (const part of parts) {
    for (const p of points[part] || []) {
      const x = sx(p[0]), y = sy(oneD ? p[1] : p[1]);
      const label = oneD ? null : p[2];
      let c;
      if (oneD) c = [60, 60, 60];
      else if (f.range) { const t = (label - f.range[0]) / (f.range[1] - f.range[0]); c = mix(C0, C1, Math.max(0, Math.min(1, t))); }
      else c = (f.grid_class ? PALETTE[label % PALETTE.length] : (label ? C1 : C0));
      ctx.beginPath(); ctx.arc(x, y, part === "train" ? 3 : 3.2, 0, 2 * Math.PI);
      ctx.fillStyle = `rgb(${c.map(Math.round).join(",")})`; ctx.fill();
      ctx.lineWidth = 1; ctx.strokeStyle = part === "train" ? "#fff" : "#000"; ctx.stroke();
    }
  }
  if (reg && !oneD) { ctx.fillStyle = "rgba(0,0,0,.6)"; ctx.fillText(`prediction ${f.range[0].toFixed(2)} … ${f.range[1].toFixed(2)}`, 6, 12); }
}

function drawCurves() {
  const cv = $("curves"), ctx = cv.getContext("2d"), W = cv.width, H = cv.height;
  ctx.clearRect(0, 0, W, H);
  const all = [];
  for (const w of Object.keys(runs)) for (const h of runs[w].history) for (const v of [h[1], h[2]]) if (v > 0) all.push(v);
  if (!all.length) return;
  const lo = Math.log10(Math.min(...all)), hi = Math.log10(Math.max(...all)) + 1e-9;
  const smax = Math.max(1, ...Object.values(runs).map((r) => r.history.length ? r.history[r.history.length - 1][0] : 1));
  ctx.fillStyle = "#7b8794"; ctx.fillText(Math.pow(10, hi).toPrecision(3), 2, 10); ctx.fillText(Math.pow(10, lo).toPrecision(3), 2, H - 2);
  const colors = {a: "#2186eb", b: "#e12d39"};
  for (const w of Object.keys(runs)) {
    for (const [k, dash] of [[1, []], [2, [4, 3]]]) {
      ctx.setLineDash(dash); ctx.strokeStyle = colors[w]; ctx.lineWidth = 1.5; ctx.beginPath();
      let first = true;
      for (const h of runs[w].history) {
        const v = h[k]; if (!(v > 0)) continue;
        const x = 30 + (W - 34) * h[0] / smax, y = 4 + (H - 8) * (1 - (Math.log10(v) - lo) / (hi - lo || 1));
        first ? ctx.moveTo(x, y) : ctx.lineTo(x, y); first = false;
      }
      ctx.stroke();
    }
  }
  ctx.setLineDash([]);
}

function drawBars(canvas, values, label) {
  const ctx = canvas.getContext("2d"), W = canvas.width, H = canvas.height;
  ctx.clearRect(0, 0, W, H);
  if (!values || !values.length) return;
  const logs = values.map((v) => (v > 0 ? Math.log10(v) : null));
  const ok = logs.filter((v) => v !== null);
  const lo = Math.min(-6, ...ok), hi = Math.max(1, ...ok);
  const bw = (W - 10) / values.length;
  values.forEach((v, i) => {
    const t = logs[i] === null ? 0 : (logs[i] - lo) / (hi - lo);
    ctx.fillStyle = "#2186eb";
    ctx.fillRect(5 + i * bw + 2, H - 14 - t * (H - 28), bw - 4, t * (H - 28));
    ctx.fillStyle = "#3e4c59";
    ctx.fillText(v === null ? "–" : v.toExponential(1), 5 + i * bw + 2, H - 16 - t * (H - 28) - 2 < 10 ? 10 : H - 16 - t * (H - 28));
    ctx.fillText(i === values.length - 1 ? "out" : `L${i + 1}`, 5 + i * bw + 4, H - 2);
  });
}

let netLayout = [];
function unitImage(b64, n) {
  const c = document.createElement("canvas"); c.width = c.height = n;
  const ctx = c.getContext("2d"), img = ctx.createImageData(n, n), g = bytes(b64);
  for (let i = 0; i < n * n; i++) {
    const c2 = mix(C0, C1, g[i] / 255);
    img.data[4 * i] = c2[0]; img.data[4 * i + 1] = c2[1]; img.data[4 * i + 2] = c2[2]; img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  return c;
}
function drawNetwork(f) {
  const cv = $("network"), ctx = cv.getContext("2d"), W = cv.width, H = cv.height;
  ctx.clearRect(0, 0, W, H);
  const widths = f.widths, L = widths.length;
  const size = Math.max(8, Math.min(28, (H - 20) / Math.max(...widths) - 4));
  const pos = widths.map((n, l) => Array.from({length: n}, (_, i) => [20 + (W - 40) * l / (L - 1), H / 2 + (i - (n - 1) / 2) * (size + 4)]));
  let wmax = 1e-9;
  for (const m of f.weights) for (const r of m) for (const v of r) wmax = Math.max(wmax, Math.abs(v));
  f.weights.forEach((m, l) => {
    const pieces = m.length / widths[l + 1];  // maxout: pieces per unit, drawn as their mean
    for (let j = 0; j < widths[l + 1]; j++) for (let i = 0; i < widths[l]; i++) {
      let v = 0; for (let k = 0; k < pieces; k++) v += m[j * pieces + k][i]; v /= pieces;
      ctx.strokeStyle = v >= 0 ? "rgba(8,119,189,.8)" : "rgba(245,147,34,.8)";
      ctx.lineWidth = 0.3 + 4 * Math.abs(v) / wmax;
      ctx.beginPath(); ctx.moveTo(pos[l][i][0], pos[l][i][1]); ctx.lineTo(pos[l + 1][j][0], pos[l + 1][j][1]); ctx.stroke();
    }
  });
  netLayout = [];
  const names = String(settings.features || "").split(",");
  pos.forEach((col, l) => col.forEach(([x, y], i) => {
    const hidden = l > 0 && l < L - 1;
    const maps = hidden && f.units[l - 1] ? f.units[l - 1] : null;
    if (maps && maps[i]) ctx.drawImage(unitImage(maps[i], 32), x - size / 2, y - size / 2, size, size);
    else { ctx.fillStyle = l === 0 ? "#e4e7eb" : "#cbd2d9"; ctx.fillRect(x - size / 2, y - size / 2, size, size); }
    ctx.strokeStyle = "#52606d"; ctx.lineWidth = 1; ctx.strokeRect(x - size / 2, y - size / 2, size, size);
    if (l === 0) { ctx.fillStyle = "#3e4c59"; ctx.fillText(names[i] || `x${i + 1}`, x - size / 2 - 2, y - size / 2 - 2); }
    if (hidden && f.dead[l - 1] && f.dead[l - 1][i]) {
      ctx.strokeStyle = "#e12d39"; ctx.lineWidth = 2; ctx.beginPath();
      ctx.moveTo(x - size / 2, y - size / 2); ctx.lineTo(x + size / 2, y + size / 2);
      ctx.moveTo(x + size / 2, y - size / 2); ctx.lineTo(x - size / 2, y + size / 2); ctx.stroke();
    }
    if (hidden && f.saturated[l - 1] && f.saturated[l - 1][i]) {
      ctx.strokeStyle = "#f0b429"; ctx.lineWidth = 2; ctx.beginPath(); ctx.arc(x, y, size / 2 + 3, 0, 2 * Math.PI); ctx.stroke();
    }
    if (maps) netLayout.push({x, y, size, layer: l, unit: i});
  }));
}

function drawVerdicts(items) {
  const ul = $("verdicts");
  ul.innerHTML = "";
  for (const v of items) {
    const li = document.createElement("li");
    li.className = v.severity === "error" ? "error" : v.severity === "warning" ? "warning" : v.kind === "healthy" ? "ok" : "info";
    li.dataset.kind = v.kind;
    li.innerHTML = `<b></b> <span></span><div class="fix"></div>`;
    li.querySelector("b").textContent = v.kind.replace(/_/g, " ");
    li.querySelector("span").textContent = v.message;
    li.querySelector(".fix").textContent = v.fix ? "fix: " + v.fix : "";
    ul.appendChild(li);
  }
}

const fmt = (v) => (v === null || v === undefined ? "–" : Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(3) : v.toFixed(4));
let drawPending = false;
function scheduleDraw() { if (!drawPending) { drawPending = true; requestAnimationFrame(draw); } }
let framesDrawn = 0;
function draw() {
  drawPending = false;
  const a = runs.a && runs.a.frame;
  if (a) {
    a.bounds = runs.a.bounds;
    $("iteration").textContent = a.step;
    $("epoch").textContent = a.epoch;
    $("state").textContent = runs.a.state;
    $("train-loss").textContent = fmt(a.train_loss);
    $("test-loss").textContent = fmt(a.test_loss);
    $("test-loss").dataset.value = a.test_loss;
    $("train-loss").dataset.value = a.train_loss;
    $("train-acc").textContent = a.train_acc == null ? "–" : a.train_acc.toFixed(3);
    $("test-acc").textContent = a.test_acc == null ? "–" : a.test_acc.toFixed(3);
    $("lr-now").textContent = a.lr;
    $("checksum").textContent = "weights #" + a.checksum;
    $("checksum").dataset.value = a.checksum;
    drawBoundary($("boundary"), a, runs.a.points);
    drawNetwork(a);
    drawBars($("grads"), a.grad_norms);
    drawBars($("ratios"), a.update_ratios);
    playLabel();
  }
  const b = runs.b && runs.b.frame;
  if (b) {
    b.bounds = runs.b.bounds;
    drawBoundary($("boundary-b"), b, runs.b.points);
    $("train-loss-b").textContent = fmt(b.train_loss);
    $("test-loss-b").textContent = fmt(b.test_loss);
  }
  drawCurves();
  framesDrawn++;
  document.body.dataset.frames = framesDrawn;
}

// ---- trajectories ----------------------------------------------------------------------------
function drawTrajectory(m) {
  const cv = $("t-canvas"), ctx = cv.getContext("2d"), W = cv.width, H = cv.height;
  const n = m.size, g = bytes(m.image);
  offscreen.width = offscreen.height = n;
  const octx = offscreen.getContext("2d"), img = octx.createImageData(n, n);
  for (let i = 0; i < n * n; i++) { const v = 255 - g[i] * 0.8; img.data[4 * i] = v; img.data[4 * i + 1] = v; img.data[4 * i + 2] = 255 - g[i] * 0.4; img.data[4 * i + 3] = 255; }
  octx.putImageData(img, 0, 0);
  ctx.drawImage(offscreen, 0, 0, W, H);
  const [x0, x1, y0, y1] = m.bounds;
  const sx = (x) => (x - x0) / (x1 - x0) * W, sy = (y) => H - (y - y0) / (y1 - y0) * H;
  const rows = ["<tr><th>optimizer</th><th>final f</th><th>steps to tol</th><th>stopped</th></tr>"];
  m.paths.forEach((p, k) => {
    const c = PALETTE[k % PALETTE.length];
    ctx.strokeStyle = `rgb(${c.join(",")})`; ctx.lineWidth = 2; ctx.beginPath();
    p.path.forEach(([x, y], i) => (i ? ctx.lineTo(sx(x), sy(y)) : ctx.moveTo(sx(x), sy(y))));
    ctx.stroke();
    rows.push(`<tr><td style="color:rgb(${c.join(",")})">${p.label.replace(/</g, "&lt;")}</td><td>${p.final === null ? "–" : p.final.toExponential(2)}</td><td>${p.steps_to_tol ?? "–"}</td><td>${p.stopped || ""}</td></tr>`);
  });
  if (m.minimum) { ctx.fillStyle = "#000"; ctx.beginPath(); ctx.arc(sx(m.minimum[0]), sy(m.minimum[1]), 4, 0, 7); ctx.fill(); }
  $("t-table").innerHTML = rows.join("");
  $("t-description").textContent = m.description;
}

// ---- wiring ----------------------------------------------------------------------------------
function startRace(on) {
  page.race = on ? "1" : "0";
  fillInputs();
  writeUrl();
  if (on && !runs.b) { connect("b"); if (runs.a.state === "running") send("b", {type: "play"}); }
  if (!on && runs.b) { runs.b.ws.close(); delete runs.b; }
}
function raceChange() {
  page.b_optimizer = $("b-optimizer").value; page.b_lr = $("b-lr").value; page.b_options = $("b-options").value;
  writeUrl();
  send("b", {type: "settings", settings: bSettings()});
}

async function main() {
  options = await (await fetch("/api/options")).json();
  settings = Object.assign({}, options.defaults, readUrl());
  buildInputs();
  fillInputs();
  writeUrl();
  connect("a");
  if (page.race === "1") connect("b");
  // the data points and bounds come with the first frame of each build
  $("play").onclick = () => sendAll({type: runs.a.state === "running" ? "pause" : "play"});
  $("step").onclick = () => sendAll({type: "step"});
  $("rewind").onclick = () => sendAll({type: "rewind"});
  $("reset").onclick = () => sendAll({type: "reset"});
  $("copy-config").onclick = () => send("a", {type: "config"});
  $("save-run").onclick = () => send("a", {type: "save"});
  $("show-test").onchange = scheduleDraw;
  $("race").onchange = () => startRace($("race").checked);
  for (const id of ["b-optimizer", "b-lr", "b-options"]) $(id).onchange = raceChange;
  $("mode").onchange = () => { page.mode = $("mode").value; fillInputs(); writeUrl(); };
  $("t-run").onclick = () => send("a", {type: "trajectory", function: $("t-function").value,
    optimizers: $("t-optimizers").value.split("\n").map((s) => s.trim()).filter(Boolean), steps: $("t-steps").value});
  $("csv-file").onchange = async () => {
    const file = $("csv-file").files[0];
    if (!file) return;
    const r = await fetch("/api/upload", {method: "POST", body: await file.text()});
    const j = await r.json();
    if (!r.ok) { showError("CSV: " + j.error); return; }
    notice(`CSV: ${j.rows} rows, ${j.features} feature column(s), ${j.task}`);
    settings.csv = j.id;
    settings.features = j.features === 1 ? "x1" : "x1,x2";
    settings.data = "csv";
    fillInputs();
    change("data", "csv");
  };
  $("network").onclick = (ev) => {
    const r = $("network").getBoundingClientRect(), sx = $("network").width / r.width;
    const x = (ev.clientX - r.left) * sx, y = (ev.clientY - r.top) * sx;
    const hit = netLayout.find((u) => Math.abs(u.x - x) <= u.size / 2 && Math.abs(u.y - y) <= u.size / 2);
    if (!hit || !runs.a.frame) return;
    const z = $("zoom-canvas").getContext("2d");
    z.imageSmoothingEnabled = false;
    z.drawImage(unitImage(runs.a.frame.units[hit.layer - 1][hit.unit], 32), 0, 0, 256, 256);
    $("zoom-label").textContent = `layer ${hit.layer}, unit ${hit.unit + 1}: its activation over the input plane (click to close)`;
    $("zoom").hidden = false;
  };
  $("zoom").onclick = () => { $("zoom").hidden = true; };
}
main();
