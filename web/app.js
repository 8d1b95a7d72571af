// Kiln's web page: create jobs and follow them over SSE with step previews, cancel them, browse
// recent results, edit an image, and watch the server on a dashboard fed by /metrics.
// Plain ES modules, no dependencies; the server validates every field and its messages are shown.
import { startDashboard, showDashboard } from './dashboard.js';
import { apiKey, authHeaders, setApiKey } from './auth.js';

const $ = (id) => document.getElementById(id);
const state = { models: [], job: null, events: null, source: null, cancelling: null };
const FINAL = new Set(['succeeded', 'failed', 'cancelled']);

// ---- API helpers -----------------------------------------------------------------------------

// Throws an Error whose message is the server's error message and the field it names. A 401
// (this server needs an API key, or the key is not valid) opens the key field.
async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: authHeaders(options.headers || {}) });
  if (response.status === 401) askForKey();
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = null; }
  if (!response.ok) {
    const err = body && body.error ? body.error : null;
    const message = err && err.message ? err.message + (err.param ? ` (field: ${err.param})` : '')
                                       : `HTTP ${response.status}: ${text.slice(0, 200) || response.statusText}`;
    throw new Error(message);
  }
  return body;
}

function askForKey() {
  $('key-form').hidden = false;
  $('key-form').classList.add('needed');
  if (!$('api-key').value) $('api-key').focus();
}

// A text/event-stream read with fetch (EventSource cannot send the key): `on[name]` gets each
// event ({data}), `on.closed` the end of a stream nobody closed. Returns {close()}.
function openEvents(url, on) {
  const controller = new AbortController();
  const stream = { closed: false, close() { this.closed = true; controller.abort(); } };
  const dispatch = (frame) => {
    let name = 'message';
    const data = [];
    for (const line of frame.split(/\r?\n/)) {
      if (!line || line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'event') name = value;
      else if (field === 'data') data.push(value);
    }
    if (data.length && on[name]) on[name]({ data: data.join('\n') });
  };
  (async () => {
    try {
      const response = await fetch(url, { headers: authHeaders({ Accept: 'text/event-stream' }), signal: controller.signal });
      if (response.status === 401) askForKey();
      if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        for (let end = buffer.search(/\r?\n\r?\n/); end >= 0; end = buffer.search(/\r?\n\r?\n/)) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, '');
          dispatch(frame);
          if (stream.closed) return;
        }
      }
    } catch { /* aborted, or the connection broke: as an end */ }
    if (!stream.closed) {
      stream.closed = true;
      if (on.closed) on.closed();
    }
  })();
  return stream;
}

function showError(message) {
  const box = $('error');
  box.textContent = message || '';
  box.hidden = !message;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null) continue;
    if (k === 'class') node.className = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

// Result URLs are absolute with the Host the request used; on this server, load them by path so
// that they stay same-origin behind a proxy (the page's CSP allows only this origin).
function fileUrl(url) {
  try {
    const u = new URL(url, location.href);
    return u.pathname.startsWith('/v1/files/') ? u.pathname + u.search : url;
  } catch { return url; }
}

// "model · 32x32 · 8 steps · euler · seed 7 · cfg 4" from a job's `request`.
function describe(model, r = {}) {
  return [model, r.mode && r.mode !== 'generate' ? r.mode : null, r.size,
    r.steps !== undefined ? `${r.steps} steps` : null, r.sampler,
    r.seed !== undefined ? `seed ${r.seed}` : null,
    r.guidance_scale !== undefined ? `cfg ${r.guidance_scale}` : null,
    r.image_guidance_scale !== undefined && r.mode === 'edit' ? `image cfg ${r.image_guidance_scale}` : null,
    r.strength !== undefined && r.mode === 'img2img' ? `strength ${r.strength}` : null,
    r.n > 1 ? `n ${r.n}` : null].filter((x) => x !== null && x !== undefined).join(' · ');
}

// ---- Views -----------------------------------------------------------------------------------

const VIEWS = ['create', 'gallery', 'dashboard'];

function showView(name) {
  for (const tab of document.querySelectorAll('.tab')) {
    const active = tab.dataset.view === name;
    tab.classList.toggle('active', active);
    tab.setAttribute('aria-selected', String(active));
  }
  for (const view of document.querySelectorAll('.view')) view.hidden = view.id !== `view-${name}`;
  if (name === 'gallery') loadGallery();
  if (name === 'dashboard') showDashboard();
  const hash = name === 'create' ? '' : `#${name}`;
  if (location.hash !== hash) history.replaceState(null, '', location.pathname + hash);
}

// ---- Models and the form ---------------------------------------------------------------------

async function loadModels() {
  try {
    state.models = (await api('/v1/models')).data || [];
  } catch (e) {
    showError(`Cannot list models: ${e.message}`);
  }
  $('model').replaceChildren(...state.models.map((m) => el('option', { value: m.id }, m.id)));
  if (state.models.some((m) => m.id === 'tiny-shapes')) $('model').value = 'tiny-shapes';
  onModelChange();
}

function currentModel() { return state.models.find((m) => m.id === $('model').value); }

function onModelChange() {
  const model = currentModel() || {};
  const sizes = model.sizes || [];
  // A model that lists no sizes leaves the choice to the server's default.
  $('size').replaceChildren(...(sizes.length ? sizes : ['']).map((s) => el('option', { value: s }, s || 'model default')));
  const d = model.defaults || {};
  const hint = (id, v) => { $(id).placeholder = v !== undefined ? `default ${v}` : 'default'; };
  hint('steps', d.steps);
  hint('guidance', d.guidance_scale);
  hint('image-guidance', d.image_guidance_scale);
  $('sampler').options[0].textContent = d.sampler ? `default (${d.sampler})` : 'model default';
  $('model-description').textContent = model.description || '';
  const canEdit = !model.tasks || model.tasks.includes('edit') || model.tasks.includes('img2img');
  $('mode-edit').disabled = !canEdit;
  if (!canEdit && editing()) { $('mode-generate').checked = true; onModeChange(); }
}

function editing() { return $('mode-edit').checked; }

function onModeChange() {
  $('form').classList.toggle('editing', editing());
  $('prompt-label').textContent = editing() ? 'Instruction' : 'Prompt';
  $('prompt').placeholder = editing() ? 'make the circle green' : 'a red circle on a white background';
  $('submit').textContent = editing() ? 'Edit' : 'Generate';
}

function onEditKindChange() {
  const model = currentModel() || {};
  const kind = $('edit-kind').value || (model.tasks && !model.tasks.includes('edit') ? 'img2img' : 'edit');
  document.querySelector('.kind-edit').hidden = kind !== 'edit';
  document.querySelector('.kind-img2img').hidden = kind !== 'img2img';
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

async function useFile(file) {
  if (!file) return;
  try { setSource(await readFile(file), file.name); } catch (e) { showError(`Cannot read ${file.name}: ${e.message}`); }
}

// The job request from the form. Only fields the person set are sent, so the model's defaults
// apply to the rest; values are sent as typed and the server says what is out of range.
function buildRequest() {
  const body = { model: $('model').value, prompt: $('prompt').value };
  const number = (id) => ($(id).value.trim() === '' ? undefined : Number($(id).value));
  const set = (key, value) => { if (value !== undefined && value !== '') body[key] = value; };
  set('steps', number('steps'));
  set('guidance_scale', number('guidance'));
  set('seed', number('seed'));
  set('n', number('n'));
  set('size', $('size').value);
  set('sampler', $('sampler').value);
  if (editing()) {
    if (!state.source) throw new Error('Choose an image to edit: upload one or pick one in the gallery.');
    body.image = state.source;
    set('mode', $('edit-kind').value);
    if (!document.querySelector('.kind-edit').hidden) set('image_guidance_scale', number('image-guidance'));
    if (!document.querySelector('.kind-img2img').hidden) set('strength', number('strength'));
  } else {
    set('negative_prompt', $('negative-prompt').value);
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
  $('job-empty').hidden = true;
  const box = $('job');
  box.hidden = false;
  box.dataset.state = job.state;
  $('job-id').textContent = job.id;
  const badge = $('job-state');
  badge.textContent = job.state;
  badge.className = `state ${job.state}`;
  $('job-params').textContent = describe(job.model, job.request);
  const p = job.progress || {};
  const fraction = job.state === 'succeeded' ? 1 : p.num_steps ? p.step / p.num_steps : 0;
  const bar = $('progress-bar');
  bar.classList.toggle('final', FINAL.has(job.state));
  bar.style.width = `${Math.round(fraction * 100)}%`;
  $('progress').setAttribute('aria-valuenow', String(Math.round(fraction * 100)));
  const parts = [];
  if (p.num_steps) parts.push(`step ${p.step} / ${p.num_steps}`);
  if (job.state === 'queued' && Number.isFinite(job.queue_position)) parts.push(`${job.queue_position} ahead in the queue`);
  if (Number.isFinite(job.eta_seconds) && !FINAL.has(job.state)) parts.push(`about ${job.eta_seconds.toFixed(1)} s left`);
  if (FINAL.has(job.state) && job.finished_at && job.created_at) parts.push(`took ${(job.finished_at - job.created_at).toFixed(2)} s`);
  $('progress-text').textContent = parts.join(' · ');
  const err = $('job-error');
  err.hidden = !(job.error || job.state === 'cancelled');
  const why = job.error ? job.error.message || JSON.stringify(job.error) : '';
  err.textContent = job.state === 'cancelled' ? `Cancelled${why ? `: ${why}` : ''}. No images were made.`
                                              : `Failed: ${why}${job.error && job.error.code ? ` (${job.error.code})` : ''}`;
  $('cancel').disabled = FINAL.has(job.state) || state.cancelling === job.id;
  if (FINAL.has(job.state)) $('preview-box').hidden = true;
  if (job.state === 'succeeded') {
    $('results').replaceChildren(...(job.data || []).map((d, i) =>
      el('a', { href: fileUrl(d.url), target: '_blank', rel: 'noopener', title: `image ${i}, seed ${d.seed ?? ''}` },
         el('img', { src: fileUrl(d.url), alt: `result ${i + 1} of ${job.data.length}`, class: 'result' }))));
  }
}

function follow(job) {
  if (state.events) state.events.close();
  state.cancelling = null;
  $('results').replaceChildren();
  $('preview-box').hidden = true;
  const box = $('job');
  box.dataset.previews = '0';
  box.dataset.seen = '';
  renderJob(job);
  const handlers = {};
  const events = openEvents(`/v1/jobs/${encodeURIComponent(job.id)}/events?previews=1`, handlers);
  state.events = events;
  const seen = (name) => { if (!box.dataset.seen.split(' ').includes(name)) box.dataset.seen = `${box.dataset.seen} ${name}`.trim(); };
  const onState = (e) => {
    const j = JSON.parse(e.data);
    seen(j.state);
    renderJob(j);
    if (FINAL.has(j.state)) {
      events.close();
      if (j.state === 'succeeded') loadGallery();
    }
  };
  for (const name of ['queued', 'running', ...FINAL]) handlers[name] = onState;
  handlers.progress = (e) => {
    const p = JSON.parse(e.data);
    if (p.id !== state.job.id || FINAL.has(state.job.state)) return;
    seen('progress');
    renderJob({ ...state.job, state: 'running', progress: { step: p.step, num_steps: p.num_steps } });
    if (p.preview) {
      $('preview').src = p.preview;
      $('preview-box').hidden = false;
      box.dataset.previews = String(Number(box.dataset.previews) + 1);
    }
  };
  // The server is shutting down: the job goes on after a restart; poll it once for its state.
  handlers.end = () => { events.close(); refreshJob(job.id); };
  // The stream ended before the job did (a broken connection): read the job once.
  handlers.closed = () => { if (state.job && state.job.id === job.id && !FINAL.has(state.job.state)) refreshJob(job.id); };
}

async function refreshJob(id) {
  try {
    const j = await api(`/v1/jobs/${encodeURIComponent(id)}`);
    if (state.job && state.job.id === id) renderJob(j);
  } catch (e) { showError(e.message); }
}

async function cancel() {
  const job = state.job;
  if (!job) return;
  state.cancelling = job.id;
  $('cancel').disabled = true;
  try {
    await api(`/v1/jobs/${encodeURIComponent(job.id)}`, { method: 'DELETE' });
    // Queued jobs are cancelled at once; running ones stop at the next step and the final state
    // arrives as an event. Read it back so the page does not depend on the stream.
    const now = await api(`/v1/jobs/${encodeURIComponent(job.id)}`);
    if (state.job && state.job.id === job.id && !FINAL.has(state.job.state)) renderJob(now);
  } catch (e) {
    showError(e.message);
    state.cancelling = null;
    if (state.job) renderJob(state.job);
  }
}

// ---- Gallery ---------------------------------------------------------------------------------

async function loadGallery() {
  let body;
  try { body = await api('/v1/jobs?state=succeeded&limit=24'); } catch (e) { showError(`Gallery: ${e.message}`); return; }
  const cards = (body.data || []).map((job) => {
    const r = job.request || {};
    const label = r.prompt || job.id;
    const images = (job.data || []).slice(0, 4).map((d, i) => el('button', {
      type: 'button', class: 'thumb', title: 'Edit this image',
      onclick: () => pickForEdit(d.url, `${label} (#${i + 1})`),
    }, el('img', { src: fileUrl(d.url), alt: `${label} #${i + 1}`, loading: 'lazy' })));
    const took = job.finished_at && job.created_at ? `${(job.finished_at - job.created_at).toFixed(2)} s` : null;
    const when = job.created_at ? new Date(job.created_at * 1000).toLocaleTimeString() : null;
    return el('article', { class: 'card', 'data-job': job.id, 'data-testid': 'gallery-card' },
      el('div', { class: `thumbs count-${Math.min(images.length, 4)}` }, ...images),
      el('div', { class: 'prompt' }, r.prompt || '(no prompt)'),
      el('div', { class: 'params' }, describe(job.model, r)),
      el('div', { class: 'meta' }, [when, took, job.data.length > 4 ? `${job.data.length} images, 4 shown` : null].filter(Boolean).join(' · ')),
      el('div', { class: 'card-actions' },
        el('button', { type: 'button', class: 'edit-this', onclick: () => pickForEdit(job.data[0].url, label) }, 'Edit'),
        el('button', { type: 'button', class: 'reuse', onclick: () => reuse(job) }, 'Reuse settings')));
  });
  $('gallery').replaceChildren(...cards);
  if (!cards.length) $('gallery').append(el('p', { class: 'muted' }, 'No finished jobs yet: create one.'));
  // The newest images on the Create view; a click picks one for editing.
  const recent = (body.data || []).flatMap((job) => (job.data || []).map((d) => ({ job, d }))).slice(0, 12);
  $('recent').replaceChildren(...recent.map(({ job, d }) => el('button', {
    type: 'button', class: 'thumb', title: `${(job.request || {}).prompt || job.id}: click to edit`,
    onclick: () => pickForEdit(d.url, (job.request || {}).prompt || job.id),
  }, el('img', { src: fileUrl(d.url), alt: (job.request || {}).prompt || job.id, loading: 'lazy' }))));
  if (!recent.length) $('recent').append(el('p', { class: 'muted' }, 'Nothing yet.'));
}

async function pickForEdit(url, label) {
  try {
    const response = await fetch(fileUrl(url), { headers: authHeaders() });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    setSource(await readFile(await response.blob()), `from the gallery: ${label}`);
    $('image-file').value = '';
  } catch (e) {
    showError(`Cannot load that image: ${e.message}`);
    return;
  }
  $('mode-edit').checked = true;
  onModeChange();
  showView('create');
  $('prompt').value = '';
  $('prompt').focus();
}

// Puts a finished job's parameters back into the form.
function reuse(job) {
  const r = job.request || {};
  if (state.models.some((m) => m.id === job.model)) { $('model').value = job.model; onModelChange(); }
  $('prompt').value = r.prompt || '';
  $('negative-prompt').value = r.negative_prompt || '';
  if (r.size) $('size').value = r.size;
  for (const [id, v] of [['steps', r.steps], ['guidance', r.guidance_scale], ['seed', r.seed], ['n', r.n]]) $(id).value = v ?? '';
  $('sampler').value = [...$('sampler').options].some((o) => o.value === r.sampler) ? r.sampler : '';
  $('mode-generate').checked = true;
  onModeChange();
  showView('create');
}

// ---- Start -----------------------------------------------------------------------------------

// The key field: shown when a call needs a key (401) or one is set; "Use" keeps it for this tab
// and loads the page's data again, "Forget" drops it.
function setUpKeyField() {
  const placeholder = () => {
    $('api-key').placeholder = apiKey() ? 'a key is set for this tab' : 'this server needs a key';
  };
  if (apiKey()) $('key-form').hidden = false;
  placeholder();
  $('key-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    setApiKey($('api-key').value.trim());
    $('api-key').value = '';
    placeholder();
    $('key-form').classList.remove('needed');
    showError('');
    await loadModels();
    onEditKindChange();
    loadGallery();
  });
  $('key-forget').addEventListener('click', () => { setApiKey(''); $('api-key').value = ''; placeholder(); });
}

async function start() {
  setUpKeyField();
  for (const tab of document.querySelectorAll('.tab')) tab.addEventListener('click', () => showView(tab.dataset.view));
  for (const radio of document.querySelectorAll('input[name=mode]')) radio.addEventListener('change', onModeChange);
  $('model').addEventListener('change', () => { onModelChange(); onEditKindChange(); });
  $('edit-kind').addEventListener('change', onEditKindChange);
  $('form').addEventListener('submit', submit);
  $('cancel').addEventListener('click', cancel);
  $('refresh-gallery').addEventListener('click', loadGallery);
  $('image-file').addEventListener('change', (e) => useFile(e.target.files[0]));
  const drop = $('drop-zone');
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => { e.preventDefault(); drop.classList.remove('over'); useFile(e.dataTransfer.files[0]); });
  window.addEventListener('hashchange', () => showView(VIEWS.includes(location.hash.slice(1)) ? location.hash.slice(1) : 'create'));
  const initial = location.hash.slice(1);
  showView(VIEWS.includes(initial) ? initial : 'create');
  await loadModels();
  onEditKindChange();
  loadGallery();
  startDashboard(state.models.map((m) => m.id));
  document.body.dataset.ready = 'true';
}

start();
