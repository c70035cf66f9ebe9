// The admin's Live page: every process' figures each second, and charts of the last 10 minutes.
//
// Events (streamsite/observability/dashboard.py): `sample` {t, total: {...}, processes:
// [{process, ...}]}, one a second. Figures are set with textContent, never as HTML. The
// charts (uPlot, vendored) plot the totals; a gap in the stream is a gap in the charts.
//
// Observable state, for people and tests: data-live-state="live|connecting|stopped" and
// data-live-samples (how many samples arrived) on #content-main.

import uPlot from "../vendor/uplot/uPlot.esm.js";
import { Backoff } from "./reconnect.js";

const WINDOW_SECONDS = 600;
const COLUMNS = [
  "streams", "sockets", "delivered_per_s", "p50_ms", "p99_ms",
  "slow_closed", "resyncs", "errors", "db", "redis",
];
const CHARTS = {
  connections: [["Streams", "streams", "#2f7ed8"], ["Sockets", "sockets", "#8e44ad"]],
  deliveries: [["Deliveries/s", "delivered_per_s", "#27ae60"]],
  latency: [["p50 ms", "p50_ms", "#2f7ed8"], ["p99 ms", "p99_ms", "#c0392b"]],
  trouble: [
    ["Slow closed/s", "slow_closed_per_s", "#e67e22"],
    ["Resyncs/s", "resyncs_per_s", "#8e44ad"],
    ["Errors/s", "errors_per_s", "#c0392b"],
  ],
};

const root = document.getElementById("content-main");
const statusText = root.querySelector("[data-live='status']");
const processRows = root.querySelector("[data-live='processes']");
const totalRow = root.querySelector("[data-live='total']");
const history = { t: [] };
let previousTotal = null;
let samples = 0;

function setState(state, text) {
  root.dataset.liveState = state;
  statusText.textContent = text;
}

function formatted(name, value) {
  if (value === null || value === undefined) return "–";
  if (name === "db" || name === "redis") return String(value);
  return Number(value).toLocaleString(undefined, { maximumFractionDigits: 2 });
}

function row(label, figures, header) {
  const tr = document.createElement("tr");
  const first = document.createElement("th");
  first.scope = "row";
  first.textContent = label;
  tr.append(first);
  for (const name of COLUMNS) {
    const td = document.createElement(header ? "th" : "td");
    if (header) td.scope = "row";
    td.dataset.figure = name;
    td.textContent = formatted(name, figures[name]);
    if (figures[name] === "down") td.className = "live-health-down";
    tr.append(td);
  }
  return tr;
}

function renderTable(sample) {
  processRows.replaceChildren(...sample.processes.map((p) => row(p.process, p, false)));
  const label = `Total (${sample.total.processes} process${sample.total.processes === 1 ? "" : "es"})`;
  const total = row(label, sample.total, false);
  total.dataset.live = "total-row";
  totalRow.replaceChildren(total);
}

// Counters arrive as totals; the charts want what happened in each second.
function perSecond(total) {
  const rates = {};
  for (const name of ["slow_closed", "resyncs", "errors"]) {
    const before = previousTotal ? previousTotal[name] : total[name];
    rates[`${name}_per_s`] = Math.max(0, total[name] - before);
  }
  previousTotal = total;
  return rates;
}

function themeColour(variable, fallback) {
  return getComputedStyle(document.documentElement).getPropertyValue(variable).trim() || fallback;
}

function makeCharts() {
  const axisColour = themeColour("--body-fg", "#333");
  const gridColour = themeColour("--hairline-color", "#ddd");
  const charts = {};
  for (const [name, series] of Object.entries(CHARTS)) {
    const target = root.querySelector(`[data-chart='${name}']`);
    for (const [, key] of series) history[key] = [];
    const axis = { stroke: axisColour, grid: { stroke: gridColour }, ticks: { stroke: gridColour } };
    const chart = new uPlot(
      {
        width: Math.max(300, target.clientWidth || 420),
        height: 200,
        series: [{}, ...series.map(([label, , stroke]) => ({ label, stroke, width: 2 }))],
        axes: [axis, { ...axis, size: 60 }],
        scales: { y: { range: (u, min, max) => [0, Math.max(1, max)] } },
      },
      [history.t, ...series.map(([, key]) => history[key])],
      target,
    );
    charts[name] = { chart, series, target };
  }
  return charts;
}

function record(charts, sample) {
  const figures = { ...sample.total, ...perSecond(sample.total) };
  history.t.push(sample.t);
  for (const { series } of Object.values(charts)) {
    for (const [, key] of series) history[key].push(figures[key] ?? null);
  }
  while (history.t.length && history.t[0] < sample.t - WINDOW_SECONDS) {
    for (const values of Object.values(history)) values.shift();
  }
  for (const { chart, series } of Object.values(charts)) {
    chart.setData([history.t, ...series.map(([, key]) => history[key])]);
  }
}

function resizeCharts(charts) {
  for (const { chart, target } of Object.values(charts)) {
    chart.setSize({ width: Math.max(300, target.clientWidth), height: 200 });
  }
}

function connect(charts, backoff) {
  setState("connecting", "Connecting…");
  const source = new EventSource(root.dataset.streamUrl);
  source.onopen = () => {
    backoff.reset();
    setState("live", "Live: updated every second.");
  };
  source.addEventListener("sample", (event) => {
    const sample = JSON.parse(event.data);
    samples += 1;
    root.dataset.liveSamples = String(samples);
    renderTable(sample);
    record(charts, sample);
  });
  source.onerror = () => {
    // CONNECTING: the browser retries by itself. CLOSED: refused (not staff, a proxy's
    // error page): try again later, with backoff, in case it was a passing failure.
    previousTotal = null;
    if (source.readyState !== EventSource.CLOSED) {
      setState("connecting", "Disconnected; reconnecting…");
      return;
    }
    setState("stopped", "Refused or unreachable; trying again shortly (staff only).");
    backoff.schedule(() => connect(charts, backoff));
  };
}

const charts = makeCharts();
window.addEventListener("resize", () => resizeCharts(charts));
connect(charts, new Backoff());
