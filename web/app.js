// Kiln's web page: create jobs and follow them over SSE, browse recent results, edit an image,
// and watch the server on a dashboard fed by /metrics. Plain ES module, no dependencies.

const $ = (id) => document.getElementById(id);
const state = { models: [], job: null, events: null, source: null, history: [], lastScrape: null };

// ---- API helpers -----------------------------------------------------------------------------

// Throws an Error whose message is the server's error message (and the field it names).
async function api(path, options = {}) {
  const response = await fetch(path, options);
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = null; }
  if (!response.ok) {
    const err = body && body.error ? body.error : null;
    const message = err ? err.message + (err.param ? ` (field: ${err.param})` : '')
                        : `HTTP ${response.status}: ${text.slice(0, 200)}`;
    throw new Error(message);
  }
  return body;
}

function showError(message) {
  const box = $('error');
  box.textContent = message || '';
  box.hidden = !message;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') node.className = v; else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

// ---- Views -----------------------------------------------------------------------------------

function showView(name) {
  for (const tab of document.querySelectorAll('.tab')) tab.classList.toggle('active', tab.dataset.view === name);
  for (const view of document.querySelectorAll('.view')) view.hidden = view.id !== `view-${name}`;
  if (name === 'gallery') loadGallery();
  if (name === 'dashboard') scrape();
  history.replaceState(null, '', name === 'create' ? '/' : `/#${name}`);
}

// ---- Models and the form ---------------------------------------------------------------------

async function loadModels() {
  try {
    const body = await api('/v1/models');
    state.models = body.data || [];
  } catch (e) {
    showError(`Cannot list models: ${e.message}`);
    return;
  }
  const select = $('model');
  select.replaceChildren(...state.models.map((m) => el('option', { value: m.id }, m.id)));
  const preferred = state.models.find((m) => m.id === 'tiny-shapes');
  if (preferred) select.value = preferred.id;
  onModelChange();
}

function currentModel() { return state.models.find((m) => m.id === $('model').value); }

function onModelChange() {
  const model = currentModel();
  const sizes = (model && model.sizes) || [];
  $('size').replaceChildren(...sizes.map((s) => el('option', { value: s }, s)));
  const d = (model && model.defaults) || {};
  $('steps').placeholder = d.steps ? `default ${d.steps}` : 'default';
  $('guidance').placeholder = d.guidance_scale !== undefined ? `default ${d.guidance_scale}` : 'default';
  $('image-guidance').placeholder = d.image_guidance_scale !== undefined ? `default ${d.image_guidance_scale}` : 'default';
  const canEdit = !model || !model.tasks || model.tasks.includes('edit');
  $('mode-edit').disabled = !canEdit;
}

function editing() { return document.querySelector('input[name=mode]:checked').value === 'edit'; }

function onModeChange() {
  $('form').classList.toggle('editing', editing());
  $('prompt-label').textContent = editing() ? 'Instruction' : 'Prompt';
  $('submit').textContent = editing() ? 'Edit' : 'Generate';
}

function setSource(dataUrl, name) {
  state.source = dataUrl;
  $('source-preview').src = dataUrl;
  $('source-preview').hidden = false;
  $('source-name').textContent = name;
}

function readFile(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

// The job request from the form; only fields the person set are sent, so the model's defaults
// apply to the rest and the server validates everything.
function buildRequest() {
  const body = { model: $('model').value, prompt: $('prompt').value };
  const number = (id) => ($(id).value === '' ? undefined : Number($(id).value));
  const fields = { steps: number('steps'), guidance_scale: number('guidance'), seed: number('seed'), n: number('n') };
  for (const [k, v] of Object.entries(fields)) if (v !== undefined) body[k] = v;
  if ($('size').value) body.size = $('size').value;
  if ($('sampler').value) body.sampler = $('sampler').value;
  if (editing()) {
    if (!state.source) throw new Error('Choose an image to edit: upload one or pick one in the gallery.');
    body.image = state.source;
    const ig = number('image-guidance');
    if (ig !== undefined) body.image_guidance_scale = ig;
  } else if ($('negative-prompt').value) {
    body.negative_prompt = $('negative-prompt').value;
  }
  return body;
}

async function submit(event) {
  event.preventDefault();
  showError('');
  let request;
  try { request = buildRequest(); } catch (e) { showError(e.message); return; }
  $('submit').disabled = true;
  try {
    const job = await api('/v1/jobs', {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(request),
    });
    follow(job);
  } catch (e) {
    showError(e.message);
  } finally {
    $('submit').disabled = false;
  }
}

// ---- Following a job -------------------------------------------------------------------------

function renderJob(job) {
  state.job = job;
  $('job').hidden = false;
  $('job-id').textContent = job.id;
  const s = $('job-state');
  s.textContent = job.state;
  s.className = `state ${job.state}`;
  const p = job.progress || {};
  const fraction = p.num_steps ? p.step / p.num_steps : (job.state === 'succeeded' ? 1 : 0);
  $('progress-bar').style.width = `${Math.round(fraction * 100)}%`;
  const parts = [];
  if (p.num_steps) parts.push(`step ${p.step} / ${p.num_steps}`);
  if (job.state === 'queued' && job.queue_position !== undefined) parts.push(`${job.queue_position} ahead`);
  if (job.eta_seconds !== undefined && job.eta_seconds !== null && !isFinal(job.state)) parts.push(`ETA ${job.eta_seconds.toFixed(1)} s`);
  if (job.error) parts.push(`error: ${job.error.message || job.error}`);
  $('progress-text').textContent = parts.join(' · ');
  $('cancel').disabled = isFinal(job.state);
  if (job.state === 'succeeded') {
    $('preview').hidden = true;
    $('results').replaceChildren(...(job.data || []).map((d, i) =>
      el('img', { src: d.url, alt: `result ${i}`, class: 'result' })));
  }
}

function isFinal(s) { return s === 'succeeded' || s === 'failed' || s === 'cancelled'; }

function follow(job) {
  if (state.events) state.events.close();
  $('results').replaceChildren();
  $('preview').hidden = true;
  renderJob(job);
  const events = new EventSource(`/v1/jobs/${job.id}/events?previews=1`);
  state.events = events;
  const onState = (e) => {
    const j = JSON.parse(e.data);
    renderJob(j);
    if (isFinal(j.state)) {
      events.close();
      if (j.state === 'succeeded') loadGallery();
    }
  };
  for (const name of ['queued', 'running', 'succeeded', 'failed', 'cancelled']) events.addEventListener(name, onState);
  events.addEventListener('progress', (e) => {
    const p = JSON.parse(e.data);
    renderJob({ ...state.job, state: 'running', progress: { step: p.step, num_steps: p.num_steps } });
    if (p.preview) { $('preview').src = p.preview; $('preview').hidden = false; }
  });
  events.addEventListener('end', () => events.close());
  events.onerror = () => {
    // The stream ended (server restart or network): fall back to one poll.
    if (events.readyState === EventSource.CLOSED && !isFinal(state.job.state)) {
      api(`/v1/jobs/${job.id}`).then(renderJob).catch((e) => showError(e.message));
    }
  };
}

async function cancel() {
  if (!state.job) return;
  try {
    await api(`/v1/jobs/${state.job.id}`, { method: 'DELETE' });
    renderJob(await api(`/v1/jobs/${state.job.id}`));
  } catch (e) {
    showError(e.message);
  }
}

// ---- Gallery ---------------------------------------------------------------------------------

async function loadGallery() {
  let body;
  try { body = await api('/v1/jobs?state=succeeded&limit=24'); } catch (e) { showError(e.message); return; }
  const cards = (body.data || []).map((job) => {
    const r = job.request || {};
    const params = [`${job.model}`, r.size, `${r.steps} steps`, r.sampler, `seed ${r.seed}`,
                    r.guidance_scale !== undefined ? `cfg ${r.guidance_scale}` : null].filter(Boolean).join(' · ');
    const images = (job.data || []).map((d) => el('img', { src: d.url, alt: r.prompt || job.id, loading: 'lazy' }));
    const editButton = el('button', {
      type: 'button', class: 'edit-this',
      onclick: () => pickForEdit(job.data[0].url, r.prompt || job.id),
    }, 'Edit this');
    return el('div', { class: 'card', 'data-job': job.id }, ...images,
              el('div', { class: 'prompt' }, r.prompt || '(no prompt)'), el('div', { class: 'params' }, params), editButton);
  });
  $('gallery').replaceChildren(...cards);
  if (!cards.length) $('gallery').append(el('p', { class: 'muted' }, 'No finished jobs yet.'));
}

async function pickForEdit(url, label) {
  try {
    const blob = await (await fetch(url)).blob();
    setSource(await readFile(blob), `from the gallery: ${label}`);
  } catch (e) {
    showError(`Cannot load that image: ${e.message}`);
    return;
  }
  document.querySelector('input[name=mode][value=edit]').checked = true;
  onModeChange();
  showView('create');
}

// ---- Dashboard -------------------------------------------------------------------------------

// Prometheus text format -> [{name, labels, value}].
function parseMetrics(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = line.match(/^([a-zA-Z_:][\w:]*)(\{(.*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels = {};
    if (m[3]) for (const l of m[3].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    out.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return out;
}

const sum = (samples, name, filter = () => true) =>
  samples.filter((s) => s.name === name && filter(s.labels)).reduce((a, s) => a + s.value, 0);

// p-quantile from cumulative bucket deltas (upper bound of the bucket that holds it).
function quantile(buckets, q) {
  const total = buckets.length ? buckets[buckets.length - 1].count : 0;
  if (total <= 0) return null;
  for (const b of buckets) if (b.count >= q * total) return Number.isFinite(b.le) ? b.le : null;
  return null;
}

function latencyBuckets(samples) {
  const byLe = new Map();
  for (const s of samples) {
    if (s.name !== 'kiln_request_duration_seconds_bucket') continue;
    const le = s.labels.le === '+Inf' ? Infinity : Number(s.labels.le);
    byLe.set(le, (byLe.get(le) || 0) + s.value);
  }
  return [...byLe.entries()].sort((a, b) => a[0] - b[0]).map(([le, count]) => ({ le, count }));
}

async function scrape() {
  let text, scale;
  try {
    const response = await fetch('/metrics');
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    text = await response.text();
    scale = await api('/v1/autoscale').catch(() => null);
  } catch (e) {
    $('dashboard-status').textContent = `Cannot read /metrics: ${e.message}`;
    return;
  }
  const now = performance.now() / 1000;
  const samples = parseMetrics(text);
  const models = [...new Set(samples.filter((s) => s.name === 'kiln_replicas').map((s) => s.labels.model))];
  const desired = new Map(((scale && scale.models) || []).map((m) => [m.model, m.desired_replicas]));
  $('models-table').querySelector('tbody').replaceChildren(...models.map((model) => {
    const of = (s) => s.model === model;
    return el('tr', { 'data-model': model },
      el('td', {}, model),
      el('td', {}, sum(samples, 'kiln_model_ready', of) ? 'yes' : 'no'),
      el('td', { class: 'replicas' }, String(sum(samples, 'kiln_replicas', of))),
      el('td', {}, String(sum(samples, 'kiln_queue_depth', of))),
      el('td', {}, String(sum(samples, 'kiln_requests_running', of))),
      el('td', {}, sum(samples, 'kiln_queue_backlog_seconds', of).toFixed(2)),
      el('td', {}, desired.has(model) ? String(desired.get(model)) : '—'));
  }));
  const images = sum(samples, 'kiln_images_total');
  const buckets = latencyBuckets(samples);
  const prev = state.lastScrape;
  if (prev) {
    const dt = now - prev.time;
    const delta = buckets.map((b, i) => ({ le: b.le, count: b.count - ((prev.buckets[i] || {}).count || 0) }));
    state.history.push({
      throughput: dt > 0 ? Math.max(0, images - prev.images) / dt : 0,
      p50: quantile(delta, 0.5), p95: quantile(delta, 0.95),
    });
    if (state.history.length > 60) state.history.shift();
  }
  state.lastScrape = { time: now, images, buckets };
  drawChart($('chart-throughput'), [state.history.map((h) => h.throughput)], ['#ff7a2f'], 1);
  drawChart($('chart-latency'), [state.history.map((h) => h.p50), state.history.map((h) => h.p95)],
            ['#3fb950', '#d29922'], 0.01);
  $('dashboard-status').textContent = `Updated ${new Date().toLocaleTimeString()} · ${models.length} models · ` +
    `${sum(samples, 'kiln_http_requests_total')} HTTP requests served`;
}

// `floor`: the smallest top of the scale, so that an idle server draws a flat line, not noise.
function drawChart(canvas, series, colors, floor) {
  const ctx = canvas.getContext('2d');
  const w = canvas.width, h = canvas.height, pad = 28;
  ctx.clearRect(0, 0, w, h);
  const values = series.flat().filter((v) => v !== null && Number.isFinite(v));
  const max = Math.max(floor, ...values) * 1.1;
  ctx.strokeStyle = '#2a313b';
  ctx.fillStyle = '#8d96a3';
  ctx.font = '11px system-ui';
  for (let i = 0; i <= 4; i++) {
    const y = pad / 2 + (h - pad) * (i / 4);
    ctx.beginPath(); ctx.moveTo(pad, y); ctx.lineTo(w - 4, y); ctx.stroke();
    ctx.fillText((max * (1 - i / 4)).toPrecision(2), 2, y + 4);
  }
  series.forEach((points, k) => {
    ctx.strokeStyle = colors[k];
    ctx.lineWidth = 2;
    ctx.beginPath();
    let started = false;
    points.forEach((v, i) => {
      if (v === null || !Number.isFinite(v)) { started = false; return; }
      const x = pad + (w - pad - 4) * (i / 59);
      const y = pad / 2 + (h - pad) * (1 - v / max);
      if (started) ctx.lineTo(x, y); else { ctx.moveTo(x, y); started = true; }
    });
    ctx.stroke();
  });
}

// ---- Start -----------------------------------------------------------------------------------

function start() {
  for (const tab of document.querySelectorAll('.tab')) tab.addEventListener('click', () => showView(tab.dataset.view));
  for (const radio of document.querySelectorAll('input[name=mode]')) radio.addEventListener('change', onModeChange);
  $('model').addEventListener('change', onModelChange);
  $('form').addEventListener('submit', submit);
  $('cancel').addEventListener('click', cancel);
  $('refresh-gallery').addEventListener('click', loadGallery);
  $('image-file').addEventListener('change', async (e) => {
    const file = e.target.files[0];
    if (file) setSource(await readFile(file), file.name);
  });
  loadModels();
  const initial = location.hash.slice(1);
  showView(['gallery', 'dashboard'].includes(initial) ? initial : 'create');
  setInterval(() => { if (!$('view-dashboard').hidden) scrape(); }, 2000);
}

start();
