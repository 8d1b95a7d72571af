// The dashboard: polls /metrics every 2 s while it is shown, keeps the last 60 scrapes and draws a
// models table, headline numbers and three charts (throughput, latency, queue) on <canvas>.
// A scrape reads the job queue's counts from SQLite, so hidden pages do not poll.
import { authHeaders } from './auth.js';
import { parseMetrics, summarize, latencyBetween, throughputBetween } from './metrics.js';

const $ = (id) => document.getElementById(id);
const POINTS = 60;
const PERIOD_MS = 2000;
const COLORS = { accent: '#ff7a2f', green: '#3fb950', yellow: '#d29922', blue: '#58a6ff', grid: '#2a313b', text: '#8d96a3' };

const history = [];  // {time, summary, throughput, latency}
let knownModels = [];
let timer = null;
let inFlight = false;

const dash = '—';
export function fmt(v, digits = 2) { return v === null || v === undefined || !Number.isFinite(v) ? dash : v.toFixed(digits); }
function fmtSeconds(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return dash;
  if (v === 0) return '0';
  return v < 1 ? `${(v * 1000).toFixed(v < 0.01 ? 1 : 0)} ms` : `${v.toFixed(2)} s`;
}
const int = (v) => (v === null || v === undefined ? dash : String(Math.round(v)));

function cell(text, cls) {
  const td = document.createElement('td');
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function renderTable(summary, throughput) {
  const rows = summary.models.map((m) => {
    const tr = document.createElement('tr');
    tr.dataset.model = m.model;
    const w = m.waiting;
    const split = [w.interactive, w.async, w.batch].some((v) => v) ? ` (${int(w.interactive)}/${int(w.async)}/${int(w.batch)})` : '';
    const ready = m.ready === null ? dash : m.ready ? 'ready' : 'not ready';
    tr.append(
      cell(m.model, 'model-name'),
      cell(ready, `ready ${m.ready ? 'ok' : m.ready === null ? '' : 'bad'}`),
      cell(int(m.replicas), 'replicas'),
      cell(int(m.desired), 'desired'),
      cell(int(m.waitingTotal) + split, 'waiting'),
      cell(int(m.running), 'running'),
      cell(fmt(m.backlog), 'backlog'),
      cell(`${int(m.jobs.queued)} / ${int(m.jobs.running)}`, 'jobs-active'),
      cell(`${int(m.jobs.succeeded)} / ${int(m.jobs.failed)} / ${int(m.jobs.cancelled)}`, 'jobs-ended'),
      cell(fmt(throughput.byModel.get(m.model) ?? null), 'throughput'));
    return tr;
  });
  $('models-table').tBodies[0].replaceChildren(...rows);
}

function renderStats(summary) {
  const last = history[history.length - 1];
  // Throughput over the last ~10 s: steadier than one 2 s interval.
  const from = history[Math.max(0, history.length - 6)];
  const recent = from !== last ? throughputBetween(from.summary, summary, last.time - from.time) : null;
  $('stat-throughput').textContent = recent ? fmt(recent.total) : dash;
  $('stat-throughput-note').textContent = recent ? `images/s, last ${Math.round(last.time - from.time)} s` : 'images/s';
  // Latency over the whole window, so that a quiet last interval does not blank the numbers.
  const window = history.length > 1 ? latencyBetween(history[0].summary, summary) : null;
  $('stat-p50').textContent = fmtSeconds(window && window.p50);
  $('stat-p95').textContent = fmtSeconds(window && window.p95);
  $('stat-mean').textContent = fmtSeconds(window && window.mean);
  $('stat-latency-note').textContent = window ? `${window.count} requests, last ${Math.round(last.time - history[0].time)} s` : 'no requests yet';
  $('stat-waiting').textContent = int(summary.waiting);
  $('stat-running').textContent = int(summary.running);
  $('stat-replicas').textContent = int(summary.replicas);
}

// Line chart of up to POINTS values per series, newest at the right; null values leave gaps.
// `floor` is the smallest top of the scale, so that an idle server draws a flat line, not noise.
function drawChart(canvas, series, { floor = 1, format = (v) => v.toPrecision(2) } = {}) {
  const dpr = window.devicePixelRatio || 1;
  const cssWidth = canvas.clientWidth || 520, cssHeight = canvas.clientHeight || 180;
  canvas.width = Math.round(cssWidth * dpr);
  canvas.height = Math.round(cssHeight * dpr);
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  const w = cssWidth, h = cssHeight, left = 52, right = 8, top = 8, bottom = 20;
  ctx.clearRect(0, 0, w, h);
  const values = series.flatMap((s) => s.values).filter((v) => v !== null && Number.isFinite(v));
  const max = Math.max(floor, ...values) * 1.15;
  ctx.font = '11px system-ui, sans-serif';
  ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = top + (h - top - bottom) * (i / 4);
    ctx.strokeStyle = COLORS.grid;
    ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(w - right, y); ctx.stroke();
    ctx.fillStyle = COLORS.text;
    ctx.textAlign = 'right';
    ctx.fillText(format(max * (1 - i / 4)), left - 6, y + 4);
  }
  ctx.textAlign = 'left';
  ctx.fillText(`${(POINTS * PERIOD_MS) / 60000} min ago`, left, h - 4);
  ctx.textAlign = 'right';
  ctx.fillText('now', w - right, h - 4);
  const x = (i, n) => left + (w - left - right) * ((POINTS - n + i) / (POINTS - 1));
  const y = (v) => top + (h - top - bottom) * (1 - v / max);
  for (const s of series) {
    ctx.strokeStyle = s.color;
    ctx.fillStyle = s.color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    let drawn = 0;
    s.values.forEach((v, i) => {
      if (v === null || !Number.isFinite(v)) { drawn = 0; return; }
      if (drawn++) ctx.lineTo(x(i, s.values.length), y(v)); else ctx.moveTo(x(i, s.values.length), y(v));
    });
    ctx.stroke();
    // A lone point (neighbours missing) would be invisible as a line: mark it.
    s.values.forEach((v, i) => {
      const alone = v !== null && Number.isFinite(v) && !Number.isFinite(s.values[i - 1] ?? NaN) && !Number.isFinite(s.values[i + 1] ?? NaN);
      if (alone) { ctx.beginPath(); ctx.arc(x(i, s.values.length), y(v), 2.5, 0, 2 * Math.PI); ctx.fill(); }
    });
  }
}

function drawCharts() {
  const points = history.slice(1);  // the first scrape has no interval before it
  const pick = (f) => points.map(f);
  drawChart($('chart-throughput'), [{ values: pick((p) => p.throughput.total), color: COLORS.accent }],
            { floor: 1, format: (v) => v.toFixed(v < 10 ? 1 : 0) });
  drawChart($('chart-latency'), [
    { values: pick((p) => p.latency.p50), color: COLORS.green },
    { values: pick((p) => p.latency.p95), color: COLORS.yellow },
    { values: pick((p) => p.latency.mean), color: COLORS.blue },
  ], { floor: 0.01, format: (v) => fmtSeconds(v) });
  drawChart($('chart-queue'), [
    { values: history.map((p) => p.summary.waiting), color: COLORS.accent },
    { values: history.map((p) => p.summary.running), color: COLORS.green },
  ], { floor: 1, format: (v) => v.toFixed(v < 10 ? 1 : 0) });
}

export async function scrape() {
  if (inFlight) return;
  inFlight = true;
  try {
    const response = await fetch('/metrics', { headers: authHeaders() });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const summary = summarize(parseMetrics(await response.text()), knownModels);
    const time = performance.now() / 1000;
    // After a pause (view or tab hidden) the old points would squeeze time together: start over.
    if (history.length && time - history[history.length - 1].time > (5 * PERIOD_MS) / 1000) history.length = 0;
    const before = history[history.length - 1];
    const point = { time, summary, throughput: { total: null, byModel: new Map() }, latency: { p50: null, p95: null, mean: null } };
    if (before) {
      point.throughput = throughputBetween(before.summary, summary, time - before.time);
      point.latency = latencyBetween(before.summary, summary);
    }
    history.push(point);
    if (history.length > POINTS + 1) history.shift();
    renderTable(summary, point.throughput);
    renderStats(summary);
    drawCharts();
    const status = $('dashboard-status');
    status.textContent = `Updated ${new Date().toLocaleTimeString()} · ${summary.models.length} models · ` +
      `${int(summary.httpRequests)} HTTP requests served`;
    status.dataset.scrapes = String(Number(status.dataset.scrapes || 0) + 1);
    status.classList.remove('bad');
  } catch (e) {
    $('dashboard-status').textContent = `Cannot read /metrics: ${e.message}`;
    $('dashboard-status').classList.add('bad');
  } finally {
    inFlight = false;
  }
}

const shown = () => !$('view-dashboard').hidden && document.visibilityState === 'visible';

// Starts the 2 s poll, which scrapes only while the dashboard is shown.
export function startDashboard(models) {
  knownModels = models;
  if (timer) return;
  timer = setInterval(() => { if (shown()) scrape(); }, PERIOD_MS);
  window.addEventListener('resize', () => { if (shown() && history.length) drawCharts(); });
  if (shown()) scrape();
}

// The dashboard became visible: draw what is kept and scrape now.
export function showDashboard() {
  if (history.length) drawCharts();
  if (timer) scrape();
}
