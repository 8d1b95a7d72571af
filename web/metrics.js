// Prometheus text exposition (format 0.0.4) parsing and the arithmetic the dashboard draws:
// per-model gauges, rates between two scrapes and latency quantiles from histogram buckets.
// Pure functions without the DOM, so that tests/browser/ui_test.mjs can import them in Node.
// A metric the server does not export reads as null (shown as "—"), never as a made-up 0.

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*/;

export function parseValue(text) {
  if (text === '+Inf' || text === 'Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  if (text === 'NaN') return NaN;
  const v = Number(text);
  return text !== '' && !Number.isNaN(v) ? v : undefined;
}

// One sample line -> {name, labels, value}, or null when the line is not a sample.
function parseLine(line) {
  const name = NAME.exec(line);
  if (!name) return null;
  let i = name[0].length;
  const labels = {};
  if (line[i] === '{') {
    i++;
    for (;;) {
      while (line[i] === ' ' || line[i] === ',') i++;
      if (line[i] === '}') { i++; break; }
      const key = LABEL.exec(line.slice(i));
      if (!key) return null;
      i += key[0].length;
      while (line[i] === ' ') i++;
      if (line[i++] !== '=') return null;
      while (line[i] === ' ') i++;
      if (line[i++] !== '"') return null;
      let value = '';
      while (i < line.length && line[i] !== '"') {
        if (line[i] === '\\' && i + 1 < line.length) {
          value += line[i + 1] === 'n' ? '\n' : line[i + 1];
          i += 2;
        } else {
          value += line[i++];
        }
      }
      if (line[i++] !== '"') return null;
      labels[key[0]] = value;
    }
  }
  const fields = line.slice(i).trim().split(/\s+/);  // value [timestamp]
  const value = parseValue(fields[0] || '');
  return value === undefined ? null : { name: name[0], labels, value };
}

// The whole exposition -> [{name, labels, value}]; comments and malformed lines are skipped.
export function parseMetrics(text) {
  const out = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const sample = parseLine(line);
    if (sample) out.push(sample);
  }
  return out;
}

const matches = (labels, match) => Object.entries(match).every(([k, v]) => labels[k] === v);

// Sum of the samples of `name` whose labels include `match`; null when there is none.
export function total(samples, name, match = {}) {
  let sum = null;
  for (const s of samples) {
    if (s.name === name && matches(s.labels, match) && Number.isFinite(s.value)) sum = (sum || 0) + s.value;
  }
  return sum;
}

// Cumulative buckets of histogram `base` summed over the series that match:
// {buckets: Map(le string -> count), sum, count}.
export function histogram(samples, base, match = {}) {
  const buckets = new Map();
  for (const s of samples) {
    if (s.name !== `${base}_bucket` || !matches(s.labels, match) || s.labels.le === undefined) continue;
    buckets.set(s.labels.le, (buckets.get(s.labels.le) || 0) + s.value);
  }
  return { buckets, sum: total(samples, `${base}_sum`, match), count: total(samples, `${base}_count`, match) };
}

// p-quantile of cumulative buckets, interpolated linearly inside the bucket as Prometheus's
// histogram_quantile does; the largest finite bound when it falls into +Inf; null without data.
export function quantile(buckets, q) {
  const sorted = [...buckets.entries()].map(([le, count]) => ({ le: parseValue(le), count }))
    .filter((b) => b.le !== undefined).sort((a, b) => a.le - b.le);
  if (!sorted.length) return null;
  const count = sorted[sorted.length - 1].count;
  if (!(count > 0)) return null;
  const rank = q * count;
  let lower = 0, below = 0;
  for (const b of sorted) {
    if (b.count >= rank) {
      if (!Number.isFinite(b.le)) return lower;
      const inside = b.count - below;
      return inside > 0 ? lower + (b.le - lower) * ((rank - below) / inside) : b.le;
    }
    lower = b.le;
    below = b.count;
  }
  return lower;
}

// What one scrape says, per model and in total. `knownModels` (from GET /v1/models) are listed
// even when /metrics names none of them.
export function summarize(samples, knownModels = []) {
  const names = new Set(knownModels);
  for (const s of samples) if (s.name.startsWith('kiln_') && s.labels.model) names.add(s.labels.model);
  // A counter's series appear with their first increment: when the family exists, a model
  // without a series has counted 0.
  const imagesExported = samples.some((s) => s.name === 'kiln_images_total');
  const models = [...names].sort().map((model) => {
    const m = { model };
    const waiting = {};
    for (const p of ['interactive', 'async', 'batch']) waiting[p] = total(samples, 'kiln_queue_depth', { model, priority: p });
    const jobs = {};
    for (const st of ['queued', 'running', 'succeeded', 'failed', 'cancelled']) jobs[st] = total(samples, 'kiln_jobs', { model, state: st });
    return Object.assign(m, {
      ready: total(samples, 'kiln_model_ready', { model }),
      replicas: total(samples, 'kiln_replicas', { model }),
      desired: total(samples, 'kiln_autoscale_desired_replicas', { model }),
      waiting, waitingTotal: total(samples, 'kiln_queue_depth', { model }),
      backlog: total(samples, 'kiln_queue_backlog_seconds', { model }),
      running: total(samples, 'kiln_requests_running', { model }),
      jobs,
      images: total(samples, 'kiln_images_total', { model }) ?? (imagesExported ? 0 : null),
    });
  });
  return {
    models,
    images: total(samples, 'kiln_images_total'),
    waiting: total(samples, 'kiln_queue_depth'),
    running: total(samples, 'kiln_requests_running'),
    replicas: total(samples, 'kiln_replicas'),
    latency: histogram(samples, 'kiln_request_duration_seconds'),
    httpRequests: total(samples, 'kiln_http_requests_total'),
  };
}

// Counter increase; a decrease means the server restarted, and counts since then are the value.
const increase = (now, before) => (now === null ? null : before === null || now < before ? now : now - before);

// Latency between two summaries: mean, p50 and p95 of the requests that finished in between.
export function latencyBetween(before, after) {
  const a = after.latency, b = before.latency;
  const buckets = new Map();
  let reset = false;
  for (const [le, count] of a.buckets) {
    const d = count - (b.buckets.get(le) || 0);
    if (d < 0) reset = true;
    buckets.set(le, d);
  }
  const delta = reset ? a.buckets : buckets;
  const count = increase(a.count, reset ? null : b.count);
  const sum = increase(a.sum, reset ? null : b.sum);
  return {
    count: count || 0,
    mean: count > 0 && sum !== null ? sum / count : null,
    p50: quantile(delta, 0.5),
    p95: quantile(delta, 0.95),
  };
}

// Throughput (images/s) in total and per model between two summaries `dt` seconds apart.
export function throughputBetween(before, after, dt) {
  if (!(dt > 0)) return { total: null, byModel: new Map() };
  const rate = (now, then) => { const d = increase(now, then); return d === null ? null : d / dt; };
  const byModel = new Map();
  const previous = new Map(before.models.map((m) => [m.model, m.images]));
  for (const m of after.models) byModel.set(m.model, rate(m.images, previous.has(m.model) ? previous.get(m.model) : null));
  return { total: rate(after.images, before.images), byModel };
}
