// Drives Kiln's web page in Debian's Chromium (playwright-core, which never downloads a browser):
// (a) create a job and see its step previews and images, then find it in the gallery; (b) cancel
// a queued job; (c) see the server's 400 message; (d) edit an uploaded image (img2img) and a
// gallery image (instruction edit); (e) the dashboard's models, replicas, throughput and latency;
// plus the page's /metrics parser on awkward input. The server has API keys: the page first asks
// for one, then sends it on every call, its event streams included, and shows signed image URLs. Starts its own `kiln serve` on a free loopback
// port and always stops it; screenshots go to $ARTIFACTS.
//
//   KILN_BIN=build/kiln KILN_MODELS=build/test-models node tests/browser/ui_test.mjs
// Optional: KILN_WEB_DIR (serve web/ from disk), CHROMIUM, KILN_UI_SCREENSHOT (copy the main
// screenshot there, e.g. docs/ui.png).
import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = dirname(fileURLToPath(import.meta.url));
const KILN = process.env.KILN_BIN || 'build/kiln';
const MODELS = process.env.KILN_MODELS || 'build/test-models';
const ARTIFACTS = resolve(process.env.ARTIFACTS || 'build/test-artifacts/browser');
const WAIT_MS = 20000;     // any one condition
const TOTAL_MS = 115000;   // the whole test, cleanup included
const MODEL = 'test-pixel';
const KEY = 'ui-test-key-0123456789';  // a user key (tenant "ui")

const check = (condition, message) => { if (!condition) throw new Error(message); };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what, condition, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try { if (await condition()) return; } catch (e) { last = e; }
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? ` (${last.message})` : ''}`);
    await sleep(50);
  }
}

function freePort() {
  return new Promise((ok, bad) => {
    const s = createServer();
    s.on('error', bad);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => ok(port)); });
  });
}

// ---- The server and cleanup ------------------------------------------------------------------

const run = { server: null, exited: null, log: '', data: null, browser: null };

async function startServer() {
  run.data = mkdtempSync(join(tmpdir(), 'kiln-ui-'));
  const port = await freePort();
  writeFileSync(join(run.data, 'keys.yaml'), `keys:\n  - {key: "${KEY}", tenant: ui}\n`);
  const args = ['serve', '--host', '127.0.0.1', '--port', String(port), '--models', MODELS,
                '--data', run.data, '--log-level', 'warn', '--api-keys', join(run.data, 'keys.yaml')];
  if (process.env.KILN_WEB_DIR) args.push('--web-dir', process.env.KILN_WEB_DIR);
  run.server = spawn(KILN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  run.server.stdout.on('data', (d) => { run.log = (run.log + d).slice(-8000); });
  run.server.stderr.on('data', (d) => { run.log = (run.log + d).slice(-8000); });
  run.server.on('error', (e) => { run.exited = `could not start ${KILN}: ${e.message}`; });
  run.server.on('exit', (code, signal) => { run.exited = run.exited || `kiln exited (code ${code}, signal ${signal})`; });
  const base = `http://127.0.0.1:${port}`;
  await waitFor('GET /readyz to answer 200', async () => {
    if (run.exited) throw Object.assign(new Error(run.exited), { fatal: true });
    return (await fetch(`${base}/readyz`)).status === 200;
  }, 60000).catch((e) => { throw new Error(run.exited || e.message); });
  return base;
}

async function cleanup() {
  if (run.browser) await run.browser.close().catch(() => {});
  run.browser = null;
  if (run.server && run.server.exitCode === null && run.server.signalCode === null) {
    const gone = new Promise((r) => run.server.once('exit', r));
    run.server.kill('SIGTERM');
    if (await Promise.race([gone.then(() => true), sleep(8000).then(() => false)]) === false) run.server.kill('SIGKILL');
  }
  if (run.data) rmSync(run.data, { recursive: true, force: true });
  run.data = null;
}

// ---- The page's /metrics parser, in Node ------------------------------------------------------

async function checkMetricsParser() {
  const m = await import(pathToFileURL(join(HERE, '../../web/metrics.js')).href);
  const text = [
    '# HELP kiln_replicas Engine replicas', '# TYPE kiln_replicas gauge',
    'kiln_replicas{model="a"} 2', 'kiln_replicas{model="b\\"}, x"} 1 1700000000000',
    'kiln_queue_depth{model="a",priority="async"} 3', 'kiln_queue_depth{model="a",priority="batch"} 4',
    'kiln_request_duration_seconds_bucket{model="a",kind="job",le="0.1"} 2',
    'kiln_request_duration_seconds_bucket{model="a",kind="job",le="1"} 4',
    'kiln_request_duration_seconds_bucket{model="a",kind="job",le="+Inf"} 4',
    'kiln_request_duration_seconds_sum{model="a",kind="job"} 1.2', 'kiln_request_duration_seconds_count{model="a",kind="job"} 4',
    'kiln_images_total{model="a"} 10', 'not a sample', 'kiln_x{model="a"} NaN',
  ].join('\n');
  const s = m.parseMetrics(text);
  check(m.total(s, 'kiln_replicas', { model: 'b"}, x' }) === 1, 'metrics: escaped label values');
  check(m.total(s, 'kiln_queue_depth', { model: 'a' }) === 7, 'metrics: a sum over priorities');
  check(m.total(s, 'kiln_jobs', { model: 'a' }) === null, 'metrics: a missing metric is null, not 0');
  const sum = m.summarize(s, ['c']);
  check(sum.models.map((x) => x.model).join() === 'a,b"}, x,c', `metrics: models ${sum.models.map((x) => x.model)}`);
  check(sum.models[2].replicas === null && sum.models[2].images === 0 && sum.models[0].waiting.batch === 4, 'metrics: per-model gauges');
  const later = m.summarize(m.parseMetrics(text.replace('le="1"} 4', 'le="1"} 8').replace('le="+Inf"} 4', 'le="+Inf"} 8')
    .replace('_sum{model="a",kind="job"} 1.2', '_sum{model="a",kind="job"} 3.2').replace('_count{model="a",kind="job"} 4', '_count{model="a",kind="job"} 8')
    .replace('kiln_images_total{model="a"} 10', 'kiln_images_total{model="a"} 14')));
  const lat = m.latencyBetween(sum, later);
  check(lat.count === 4 && Math.abs(lat.mean - 0.5) < 1e-9, `metrics: mean latency ${JSON.stringify(lat)}`);
  check(Math.abs(lat.p50 - 0.55) < 1e-9 && Math.abs(lat.p95 - 0.955) < 1e-9, `metrics: interpolated quantiles ${JSON.stringify(lat)}`);
  const tp = m.throughputBetween(sum, later, 2);
  check(tp.total === 2 && tp.byModel.get('a') === 2, `metrics: throughput ${tp.total}`);
  check(m.throughputBetween(later, sum, 2).total === 5, 'metrics: a counter reset counts from zero');
}

// ---- Scenarios ---------------------------------------------------------------------------------

async function main() {
  mkdirSync(ARTIFACTS, { recursive: true });
  await checkMetricsParser();
  const base = await startServer();
  const api = async (path, options = {}) => {
    const r = await fetch(base + path, { ...options, headers: { ...(options.headers || {}), Authorization: `Bearer ${KEY}` } });
    return { status: r.status, body: await r.json().catch(() => null) };
  };
  const postJob = (body) => api('/v1/jobs', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  // Slow jobs ahead of the page's: priority 10 is served before the page's 0 in the async class.
  const block = async (count) => (await Promise.all(Array.from({ length: count }, () =>
    postJob({ model: MODEL, prompt: 'blocker', steps: 150, n: 8, priority: 10 })))).map((r) => r.body.id);
  const unblock = (ids) => Promise.all(ids.map((id) => api(`/v1/jobs/${id}`, { method: 'DELETE' })));

  run.browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = await run.browser.newPage({ viewport: { width: 1280, height: 820 } });
  page.setDefaultTimeout(WAIT_MS);
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  // Console errors fail the test (CSP violations, script errors), except the browser's own line
  // for the failed responses the scenarios provoke (the 400 of (c)).
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !msg.text().startsWith('Failed to load resource')) pageErrors.push(msg.text());
  });
  const shot = (name) => page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
  const jobIdOnPage = async () => (await page.textContent('#job-id')).trim();
  const imagesLoaded = (selector, count) => page.waitForFunction(([sel, n]) => {
    const imgs = [...document.querySelectorAll(sel)];
    return imgs.length === n && imgs.every((i) => i.complete && i.naturalWidth > 0);
  }, [selector, count]);

  await page.goto(base + '/');
  // (f) Without a key the models cannot be listed: the page asks for one, then loads with it.
  await page.waitForSelector('#key-form.needed');
  const asked = (await page.textContent('#error')).trim();
  check(asked.includes('API key'), `(f) the page says why it cannot start: "${asked}"`);
  await page.fill('#api-key', KEY);
  await page.click('#key-use');
  await page.waitForSelector(`body[data-ready=true] #model option[value="${MODEL}"]`, { state: 'attached' }).catch(async () => {
    const module = (await fetch(`${base}/ui/metrics.js`)).status;
    throw new Error(`the page did not start (model ${MODEL} not listed)` +
      (module !== 200 ? `; GET /ui/metrics.js answers ${module}: the binary embeds an older web/, rebuild it` : '') +
      (pageErrors.length ? `; errors in the page: ${pageErrors.join('; ')}` : ''));
  });

  // (a) A job with live previews, then its two images, then the gallery.
  const blockers = await block(3);  // so that the page's stream is open before its job runs
  await page.selectOption('#model', MODEL);
  await page.fill('#prompt', 'a red circle on a white background');
  await page.fill('#steps', '60');
  await page.fill('#seed', '7');
  await page.fill('#n', '2');
  await page.click('#submit');
  await page.waitForSelector('#job-state.succeeded');
  await imagesLoaded('#results img', 2);
  const jobId = await jobIdOnPage();
  const seen = await page.getAttribute('#job', 'data-seen');
  const previews = Number(await page.getAttribute('#job', 'data-previews'));
  check(seen.includes('progress') && previews > 0, `(a) no step previews shown: events seen "${seen}", previews ${previews}`);
  const src = await page.getAttribute('#results img', 'src');
  check(src.startsWith(`/v1/files/jobs/${jobId}/`) && src.includes('signature=') && !src.includes(KEY),
        `(a) result image URL ${src}: the job's file, signed, without the key`);
  check((await page.textContent('#progress-text')).includes('step 60 / 60'), '(a) the progress text shows 60 / 60');
  const job = (await api(`/v1/jobs/${jobId}`)).body;
  check(job.state === 'succeeded' && job.request.steps === 60 && job.request.seed === 7 && job.data.length === 2,
        `(a) the job as the server has it: ${JSON.stringify(job).slice(0, 300)}`);
  await unblock(blockers);
  await shot('create');
  if (process.env.KILN_UI_SCREENSHOT) copyFileSync(join(ARTIFACTS, 'create.png'), process.env.KILN_UI_SCREENSHOT);
  await page.click('#tab-gallery');
  await imagesLoaded(`#gallery .card[data-job="${jobId}"] img`, 2);
  const params = await page.textContent(`#gallery .card[data-job="${jobId}"] .params`);
  check(params.includes('60 steps') && params.includes('seed 7') && params.includes('32x32'), `(a) gallery parameters: ${params}`);
  await shot('gallery');

  // (b) Cancel a job that waits behind slow ones.
  const queue = await block(30);
  try {
    await page.click('#tab-create');
    await page.fill('#prompt', 'a job to cancel');
    await page.fill('#steps', '20');
    await page.fill('#n', '1');
    await page.click('#submit');
    await page.waitForSelector('#job-state.queued');
    await page.waitForSelector('#progress-text:has-text("ahead in the queue")');
    const cancelId = await jobIdOnPage();
    check(cancelId !== jobId, '(b) the page follows the new job');
    await page.click('#cancel');
    await page.waitForSelector('#job-state.cancelled');
    check((await page.textContent('#job-error')).includes('Cancelled'), '(b) the page says the job was cancelled');
    const cancelled = (await api(`/v1/jobs/${cancelId}`)).body;
    check(cancelled.state === 'cancelled', `(b) the cancelled job's state on the server: ${cancelled.state}`);
    await shot('cancel');
  } finally {
    await unblock(queue);
  }

  // (c) The server's 400 reaches the page, word for word, with the field it names.
  await page.fill('#steps', '0');
  await page.click('#submit');
  await page.waitForSelector('#error:not([hidden])');
  const shown = (await page.textContent('#error')).trim();
  const refused = await postJob({ model: MODEL, prompt: 'a job to cancel', steps: 0, n: 1, size: '32x32', seed: 7 });
  check(refused.status === 400, `(c) steps 0 answers ${refused.status}`);
  const expected = `${refused.body.error.message} (field: ${refused.body.error.param})`;
  check(shown === expected, `(c) error shown "${shown}", the server says "${expected}"`);
  await shot('error');

  // (d1) Edit an uploaded PNG (img2img with a strength).
  const png = Buffer.from(await (await fetch(base + src)).arrayBuffer());
  await page.fill('#steps', '6');
  await page.check('#mode-edit');
  await page.setInputFiles('#image-file', { name: 'source.png', mimeType: 'image/png', buffer: png });
  await page.waitForSelector('#source-preview[src^="data:image/png"]');
  await page.selectOption('#edit-kind', 'img2img');
  await page.fill('#strength', '0.5');
  await page.fill('#prompt', 'a green square');
  await page.click('#submit');
  await page.waitForSelector('#job-state.succeeded');
  check(await page.isHidden('#error'), '(d) the error from (c) is cleared by a good submission');
  const img2img = (await api(`/v1/jobs/${await jobIdOnPage()}`)).body;
  check(img2img.request.mode === 'img2img' && img2img.request.strength === 0.5,
        `(d) the uploaded image made an img2img job: ${JSON.stringify(img2img.request)}`);
  await imagesLoaded('#results img', 1);

  // (d2) Pick a gallery image and give an instruction.
  await page.click('#tab-gallery');
  await page.click(`#gallery .card[data-job="${jobId}"] .edit-this`);
  await page.waitForSelector('#view-create:not([hidden]) #source-preview[src^="data:image/png"]');
  check(await page.isChecked('#mode-edit'), '(d) edit mode is on after picking a gallery image');
  await page.selectOption('#edit-kind', 'edit');
  await page.fill('#prompt', 'make the circle green');
  // The img2img job above also ended "succeeded": wait for the page to show the new job first.
  const img2imgId = await jobIdOnPage();
  await page.click('#submit');
  await page.waitForFunction(
      (prev) => document.querySelector('#job-id').textContent.trim() !== prev, img2imgId);
  await page.waitForSelector('#job-state.succeeded');
  await imagesLoaded('#results img', 1);
  const edit = (await api(`/v1/jobs/${await jobIdOnPage()}`)).body;
  check(edit.state === 'succeeded' && edit.request.mode === 'edit' && edit.request.prompt === 'make the circle green',
        `(d) the instruction edit: ${JSON.stringify(edit.request)}`);
  await shot('edit');

  // (e) The dashboard: every model with its replicas, then throughput and latency under load.
  const metrics = await fetch(`${base}/metrics`);
  check(metrics.status === 200, `(e) GET /metrics answers ${metrics.status}`);
  await page.click('#tab-dashboard');
  check(new URL(page.url()).hash === '#dashboard', `(e) the dashboard has its own address: ${page.url()}`);
  for (const model of ['test-identity', 'test-latent', MODEL]) {
    await page.waitForSelector(`#models-table tr[data-model="${model}"] td.replicas:text-is("1")`);
  }
  const ready = await page.textContent(`#models-table tr[data-model="${MODEL}"] td.ready`);
  check(ready.trim() === 'ready', `(e) ${MODEL} shown as ${ready}`);
  const scrapes = Number(await page.getAttribute('#dashboard-status', 'data-scrapes'));
  for (let i = 0; i < 4; i++) {
    await api('/v1/images/generations', { method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: MODEL, prompt: 'load', steps: 20, n: 2 }) });
  }
  await page.waitForFunction((before) => Number(document.getElementById('dashboard-status').dataset.scrapes) > before &&
    Number(document.getElementById('stat-throughput').textContent) > 0 && document.getElementById('stat-p50').textContent !== '—',
  scrapes, { timeout: 15000 }).catch(async () => {
    throw new Error(`(e) no throughput/latency shown: throughput "${await page.textContent('#stat-throughput')}", ` +
                    `p50 "${await page.textContent('#stat-p50')}", status "${await page.textContent('#dashboard-status')}"`);
  });
  const ended = await page.textContent(`#models-table tr[data-model="${MODEL}"] td.jobs-ended`);
  const [succeeded, , cancelledJobs] = ended.split('/').map((x) => Number(x.trim()));
  check(succeeded >= 3 && cancelledJobs >= 1, `(e) ${MODEL}'s ended jobs shown as "${ended}"`);
  // Some more scrapes under a mixed load (sync requests and queued jobs) for the screenshot.
  const loadJobs = [];
  const enough = Number(await page.getAttribute('#dashboard-status', 'data-scrapes')) + 4;
  let round = 0;
  await waitFor('four more dashboard scrapes under load', async () => {
    if (round++ % 4 === 0) loadJobs.push(...await block(1));
    await api('/v1/images/generations', { method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: 'test-latent', prompt: 'load', steps: 30, n: 2 }) });
    return Number(await page.getAttribute('#dashboard-status', 'data-scrapes')) >= enough;
  });
  await unblock(loadJobs);
  await shot('dashboard');

  check(pageErrors.length === 0, `errors in the page: ${pageErrors.join('; ')}`);
}

const timer = setTimeout(async () => {
  console.error(`ui_test: FAILED: took longer than ${TOTAL_MS / 1000} s`);
  await cleanup();
  process.exit(1);
}, TOTAL_MS);

main().then(async () => {
  await cleanup();
  clearTimeout(timer);
  console.log(`ui_test: passed (metrics parser, API key, create, cancel, error, edit, dashboard); screenshots in ${ARTIFACTS}`);
  process.exit(0);
}, async (e) => {
  console.error(`ui_test: FAILED: ${e.message}`);
  if (run.log) console.error(`--- kiln's log (last lines) ---\n${run.log.slice(-3000)}`);
  await cleanup();
  clearTimeout(timer);
  process.exit(1);
});
