// corral dashboard: polls corral's own JSON endpoints and draws with plain SVG (no CDN).
"use strict";

const REFRESH_MS = 3000;
const SVG = "http://www.w3.org/2000/svg";
let selectedTrace = null;

function apiKey() { return localStorage.getItem("corral-api-key") || ""; }

async function api(path) {
  const headers = apiKey() ? { Authorization: `Bearer ${apiKey()}` } : {};
  const reply = await fetch(path, { headers });
  if (reply.status === 401) {
    document.getElementById("key-form").hidden = false;
    throw new Error("this server needs an API key");
  }
  if (!reply.ok) throw new Error(`${path}: HTTP ${reply.status}`);
  return reply.json();
}

// --- small DOM and format helpers ------------------------------------------------------
function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}
function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) tr.append(cell instanceof Node ? cell : el("td", cell));
  return tr;
}
function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}
const ms = (s) => (s === null || s === undefined ? "–" : (s * 1000).toFixed(1));
const money = (v) => (v === null || v === undefined ? "–" : v.toPrecision(2));
const mib = (b) => (b ? `${(b / 2 ** 20).toFixed(0)} MiB` : "–");
const time = (t) => new Date(t * 1000).toLocaleTimeString();

// --- sections --------------------------------------------------------------------------
function renderExperts(experts) {
  const body = document.querySelector("#experts tbody");
  body.replaceChildren(...experts.map((e) => {
    const state = el("td");
    state.append(el("span", e.state, `badge ${e.state}`));
    if (e.reason) state.title = e.reason;
    return row([e.name, e.task ?? "?", state, e.device ?? "–", mib(e.memory_bytes),
      ms(e.p50_seconds), ms(e.p95_seconds), e.requests_per_second.toFixed(2), e.requests]);
  }));
}

function renderTotals(usage) {
  const t = usage.totals;
  const saved = t.cost > 0 && t.llm_only_requests ? `${(t.llm_only_cost / t.cost).toFixed(1)}x` : "–";
  const cards = [["requests", t.requests], ["errors", t.errors], ["cost", money(t.cost)],
    ["LLM alone would cost", money(t.llm_only_cost)], ["cheaper by", saved],
    ["compute s", t.compute_seconds.toFixed(2)]];
  document.getElementById("totals").replaceChildren(...cards.map(([label, value]) => {
    const card = el("div", null, "card");
    card.append(el("div", value, "value"), el("div", label, "muted"));
    return card;
  }));
}

function renderRequests(traces) {
  const body = document.querySelector("#requests tbody");
  body.replaceChildren(...traces.map((t) => {
    const tr = row([time(t.started_at), t.path, t.status, t.expert ?? "–", t.route ?? "–",
      ms(t.seconds), money(t.cost), money(t.llm_only_cost)]);
    tr.className = t.id === selectedTrace ? "selected" : "";
    tr.dataset.trace = t.id;
    tr.addEventListener("click", () => showTrace(t.id));
    return tr;
  }));
}

function lineChart(target, series, colors, xLabels) {
  const [w, h, pad] = [520, 220, 44];
  const chart = document.getElementById(target);
  const points = series.flatMap((s) => s.values);
  if (points.length === 0) {
    chart.replaceChildren(svg("text", { x: w / 2, y: h / 2, "text-anchor": "middle", class: "muted" }, "no requests yet"));
    return;
  }
  const maxY = Math.max(...points.map((p) => p[1])) || 1;
  const maxX = Math.max(...points.map((p) => p[0])) || 1;
  const x = (v) => pad + (v / maxX) * (w - pad - 10);
  const y = (v) => h - pad + 10 - (v / maxY) * (h - pad - 10);
  const nodes = [svg("line", { x1: pad, y1: y(0), x2: w - 10, y2: y(0), class: "axis" }),
    svg("text", { x: 4, y: y(maxY) + 4, class: "tick" }, money(maxY)),
    svg("text", { x: pad, y: h - 16, class: "tick" }, xLabels[0]),
    svg("text", { x: w - 10, y: h - 16, "text-anchor": "end", class: "tick" }, xLabels[1])];
  series.forEach((s, i) => {
    const d = s.values.map(([a, b], j) => `${j ? "L" : "M"}${x(a).toFixed(1)},${y(b).toFixed(1)}`).join("");
    nodes.push(svg("path", { d, fill: "none", stroke: colors[i], "stroke-width": 2 }));
    nodes.push(svg("text", { x: w - 14, y: h - pad - 4 - 16 * i, fill: colors[i], "text-anchor": "end", class: "legend" }, s.name));
  });
  chart.replaceChildren(...nodes);
}

function renderCostChart(traces) {
  const priced = traces.filter((t) => t.cost !== null).reverse(); // oldest first
  if (priced.length === 0) return lineChart("cost-chart", [], [], []);
  const t0 = priced[0].started_at - (priced[0].seconds || 0);
  let [cost, alone] = [0, 0];
  const actual = [[0, 0]], llm = [[0, 0]]; // cumulative, from zero at the first request
  for (const t of priced) {
    cost += t.cost;
    alone += t.llm_only_cost ?? t.cost;
    actual.push([t.started_at - t0, cost]);
    llm.push([t.started_at - t0, alone]);
  }
  lineChart("cost-chart", [{ name: "LLM alone", values: llm }, { name: "corral", values: actual }],
    ["#c0392b", "#1f77b4"], [time(t0), time(priced[priced.length - 1].started_at)]);
}

function barChart(target, bars) {
  const [w, rowH] = [520, 22];
  const chart = document.getElementById(target);
  if (bars.length === 0) {
    chart.replaceChildren(svg("text", { x: w / 2, y: 110, "text-anchor": "middle", class: "muted" }, "no requests yet"));
    return;
  }
  const max = Math.max(...bars.map((b) => b.value)) || 1;
  chart.setAttribute("viewBox", `0 0 ${w} ${Math.max(220, bars.length * rowH + 10)}`);
  chart.replaceChildren(...bars.flatMap((b, i) => [
    svg("text", { x: 150, y: 18 + i * rowH, "text-anchor": "end", class: "tick" }, b.label),
    svg("rect", { x: 156, y: 6 + i * rowH, width: Math.max(2, (b.value / max) * 320), height: 16, class: "bar" }),
    svg("text", { x: 162 + (b.value / max) * 320, y: 18 + i * rowH, class: "tick" }, b.value),
  ]));
}

async function showTrace(id) {
  selectedTrace = id;
  document.querySelectorAll("#requests tr").forEach((tr) => tr.classList.toggle("selected", tr.dataset.trace === id));
  const t = await api(`/v1/traces/${encodeURIComponent(id)}`);
  document.getElementById("trace-id").textContent = `${t.id.slice(0, 12)}… ${t.method} ${t.path} → ${t.status}`;
  drawTimeline(t);
  const body = document.getElementById("trace-body");
  const decisions = el("table");
  decisions.append(row(["stage", "choice", "reason", "score", "ms"].map((h) => el("th", h))));
  t.decisions.forEach((d) => decisions.append(row([d.stage, d.choice || "–", d.reason,
    d.score === null ? "–" : d.score.toFixed(3), ms(d.seconds)])));
  const charges = el("table");
  charges.append(row(["expert", "device", "compute ms", "tokens in/out", "cost"].map((h) => el("th", h))));
  t.charges.forEach((c) => charges.append(row([c.expert, c.device, ms(c.seconds),
    `${c.tokens_in}/${c.tokens_out}`, money(c.cost)])));
  const summary = el("p", `answered by ${t.expert ?? "–"} via ${t.route ?? "–"} in ${ms(t.seconds)} ms; ` +
    `cost ${money(t.cost)}, the LLM alone ${money(t.counterfactual_cost)}`);
  body.replaceChildren(summary, el("h3", "Decisions"), decisions, el("h3", "Expert calls"), charges);
}

function drawTimeline(t) {
  const chart = document.getElementById("trace-chart");
  const total = t.seconds || 1e-9;
  const lanes = [{ label: "request", start: 0, seconds: total, cls: "request" },
    ...t.steps.map((s) => ({ label: `${s.kind} ${s.name}`, start: s.started, seconds: s.seconds, cls: s.error ? "error" : s.kind })),
    ...t.charges.map((c) => ({ label: `compute ${c.expert}`, start: Math.max(0, c.ended - c.seconds), seconds: c.seconds, cls: "compute" }))];
  const [w, rowH, left] = [520, 20, 130];
  chart.setAttribute("viewBox", `0 0 ${w} ${lanes.length * rowH + 8}`);
  chart.replaceChildren(...lanes.flatMap((lane, i) => [
    svg("text", { x: left - 6, y: 15 + i * rowH, "text-anchor": "end", class: "tick" }, lane.label),
    svg("rect", { x: left + (lane.start / total) * (w - left - 10), y: 4 + i * rowH,
      width: Math.max(2, (lane.seconds / total) * (w - left - 10)), height: 14, class: `span ${lane.cls}` }),
  ]));
}

// --- polling ---------------------------------------------------------------------------
async function refresh() {
  const status = document.getElementById("status");
  try {
    const [experts, traces, usage, routes] = await Promise.all([
      api("/v1/experts"), api("/v1/traces?limit=200"),
      api("/v1/usage?group_by=day&since=7d"), api("/v1/usage?group_by=route&since=7d")]);
    renderExperts(experts.data);
    renderTotals(usage);
    renderRequests(traces.data.slice(0, 25));
    renderCostChart(traces.data);
    barChart("routes-chart", routes.data.map((r) => ({ label: r.route || "(none)", value: r.requests })));
    status.textContent = `updated ${new Date().toLocaleTimeString()}`;
    status.className = "muted";
  } catch (err) {
    status.textContent = err.message;
    status.className = "error";
  }
}

document.getElementById("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  localStorage.setItem("corral-api-key", document.getElementById("key").value);
  document.getElementById("key-form").hidden = true;
  refresh();
});
refresh();
setInterval(refresh, REFRESH_MS);
