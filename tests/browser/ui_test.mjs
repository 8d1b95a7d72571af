// Drives Kiln's web page in Debian's Chromium (playwright-core): create a job and see its image,
// cancel a job, see the server's error message, edit an image from the gallery, and open the
// dashboard. Starts its own `kiln serve` on a free loopback port; screenshots go to $ARTIFACTS.
//
//   KILN_BIN=build/kiln KILN_MODELS=build/test-models node tests/browser/ui_test.mjs
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, copyFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';

const KILN = process.env.KILN_BIN || 'build/kiln';
const MODELS = process.env.KILN_MODELS || 'build/test-models';
const ARTIFACTS = resolve(process.env.ARTIFACTS || 'build/test-artifacts/browser');
const DOCS_SHOT = process.env.KILN_UI_SCREENSHOT;  // when set, the main screenshot is copied here
const TIMEOUT_MS = 20000;

function fail(message) { throw new Error(message); }
function check(condition, message) { if (!condition) fail(message); }

function freePort() {
  return new Promise((ok, bad) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => ok(port)); });
    s.on('error', bad);
  });
}

async function waitFor(what, condition, ms = TIMEOUT_MS) {
  const deadline = Date.now() + ms;
  for (;;) {
    try { if (await condition()) return; } catch { /* not yet */ }
    if (Date.now() > deadline) fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function main() {
  mkdirSync(ARTIFACTS, { recursive: true });
  const data = mkdtempSync(join(tmpdir(), 'kiln-ui-'));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const args = ['serve', '--host', '127.0.0.1', '--port', String(port), '--models', MODELS, '--data', data];
  if (process.env.KILN_WEB_DIR) args.push('--web-dir', process.env.KILN_WEB_DIR);
  const server = spawn(KILN, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  server.stderr.on('data', (d) => { log += d; });
  let browser;
  try {
    await waitFor('the server to be ready', async () => (await fetch(`${base}/readyz`)).status === 200, 60000);
    browser = await chromium.launch({
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
             '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
    const consoleErrors = [];
    page.on('pageerror', (e) => consoleErrors.push(String(e)));
    // Console errors other than the expected failed responses (the 400 of scenario c), such as
    // Content-Security-Policy violations, fail the test.
    page.on('console', (m) => {
      if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) consoleErrors.push(m.text());
    });
    await page.goto(base + '/');
    await page.waitForSelector('#model option[value="test-pixel"]', { state: 'attached', timeout: TIMEOUT_MS });

    // (a) Create a job and see the finished image, then find it in the gallery.
    await page.selectOption('#model', 'test-pixel');
    await page.fill('#prompt', 'a red circle on a white background');
    await page.fill('#steps', '4');
    await page.fill('#seed', '7');
    await page.fill('#n', '2');
    await page.click('#submit');
    await page.waitForSelector('#job-state.succeeded', { timeout: TIMEOUT_MS });
    await page.waitForFunction(() => {
      const imgs = [...document.querySelectorAll('#results img')];
      return imgs.length === 2 && imgs.every((i) => i.complete && i.naturalWidth > 0);
    }, null, { timeout: TIMEOUT_MS });
    const src = await page.getAttribute('#results img', 'src');
    check(src.includes('/v1/files/jobs/'), `result image URL ${src}`);
    const jobId = (await page.textContent('#job-id')).trim();
    const job = await (await fetch(`${base}/v1/jobs/${jobId}`)).json();
    check(job.state === 'succeeded' && job.request.steps === 4 && job.request.seed === 7,
          `the job as the server has it: ${JSON.stringify(job).slice(0, 300)}`);
    await page.screenshot({ path: join(ARTIFACTS, 'create.png'), fullPage: true });
    if (DOCS_SHOT) copyFileSync(join(ARTIFACTS, 'create.png'), DOCS_SHOT);
    await page.click('#tab-gallery');
    await page.waitForSelector(`#gallery .card[data-job="${jobId}"] img`, { timeout: TIMEOUT_MS });
    const params = await page.textContent(`#gallery .card[data-job="${jobId}"] .params`);
    check(params.includes('4 steps') && params.includes('seed 7'), `gallery parameters: ${params}`);
    await page.screenshot({ path: join(ARTIFACTS, 'gallery.png'), fullPage: true });

    // (b) Cancel a job: a slow one queued behind another slow one.
    const slow = { model: 'test-pixel', prompt: 'slow', steps: 150, n: 8 };
    const blocker = await (await fetch(`${base}/v1/jobs`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(slow),
    })).json();
    await page.click('#tab-create');
    await page.fill('#prompt', 'a job to cancel');
    await page.fill('#steps', '150');
    await page.fill('#n', '8');
    await page.click('#submit');
    await page.waitForSelector('#cancel:not([disabled])', { timeout: TIMEOUT_MS });
    const cancelId = (await page.textContent('#job-id')).trim();
    await page.click('#cancel');
    await page.waitForSelector('#job-state.cancelled', { timeout: TIMEOUT_MS });
    const cancelled = await (await fetch(`${base}/v1/jobs/${cancelId}`)).json();
    check(cancelled.state === 'cancelled', `cancelled job's state on the server: ${cancelled.state}`);
    await fetch(`${base}/v1/jobs/${blocker.id}`, { method: 'DELETE' });
    await page.screenshot({ path: join(ARTIFACTS, 'cancel.png'), fullPage: true });

    // (c) The server's error message reaches the person.
    await page.fill('#steps', '100000');
    await page.fill('#n', '1');
    await page.click('#submit');
    await page.waitForSelector('#error:not([hidden])', { timeout: TIMEOUT_MS });
    const error = await page.textContent('#error');
    check(/steps/.test(error) && /field: steps/.test(error), `error shown: ${error}`);
    await page.screenshot({ path: join(ARTIFACTS, 'error.png'), fullPage: true });
    await page.fill('#steps', '4');

    // (d) Edit mode: pick the first result in the gallery and give an instruction.
    await page.click('#tab-gallery');
    await page.click(`#gallery .card[data-job="${jobId}"] .edit-this`);
    await page.waitForSelector('#source-preview:not([hidden])', { timeout: TIMEOUT_MS });
    check(await page.isChecked('#mode-edit'), 'edit mode is on after picking an image');
    await page.fill('#prompt', 'make the circle green');
    await page.click('#submit');
    await page.waitForSelector('#job-state.succeeded', { timeout: TIMEOUT_MS });
    const editId = (await page.textContent('#job-id')).trim();
    const edit = await (await fetch(`${base}/v1/jobs/${editId}`)).json();
    check(edit.state === 'succeeded' && edit.id !== jobId, 'the edit job succeeded');
    check(JSON.stringify(edit.request).includes('edit'), `the job is an edit: ${JSON.stringify(edit.request)}`);
    await page.screenshot({ path: join(ARTIFACTS, 'edit.png'), fullPage: true });

    // (e) The dashboard lists the models with their replicas and draws charts.
    await page.click('#tab-dashboard');
    await page.waitForSelector('#models-table tr[data-model="test-pixel"] .replicas', { timeout: TIMEOUT_MS });
    const replicas = await page.textContent('#models-table tr[data-model="test-pixel"] .replicas');
    check(replicas.trim() === '1', `replicas shown: ${replicas}`);
    const rows = await page.$$eval('#models-table tbody tr', (trs) => trs.map((t) => t.dataset.model));
    check(['test-identity', 'test-latent', 'test-pixel'].every((m) => rows.includes(m)), `models: ${rows}`);
    await waitFor('two dashboard scrapes', async () =>
      (await page.textContent('#dashboard-status')).includes('HTTP requests served'));
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard.png'), fullPage: true });

    check(consoleErrors.length === 0, `errors in the page: ${consoleErrors.join('; ')}`);
    console.log(`ui_test: 5 scenarios passed; screenshots in ${ARTIFACTS}`);
  } finally {
    if (browser) await browser.close();
    server.kill('SIGTERM');
    await new Promise((r) => { server.on('exit', r); setTimeout(r, 5000); });
    rmSync(data, { recursive: true, force: true });
  }
}

const timer = setTimeout(() => { console.error('ui_test: took longer than 3 minutes'); process.exit(1); }, 180000);
main().then(() => { clearTimeout(timer); process.exit(0); }, (e) => {
  console.error(`ui_test: FAILED: ${e.message}`);
  clearTimeout(timer);
  process.exit(1);
});
