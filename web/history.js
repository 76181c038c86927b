// The history view of one series: a range, min/avg/max per bucket from /aggregate, kept live by
// the bridge's bucket stream while it is open (docs/api.md section 4.1), CSV export.
import { get, getJson, streamUrl } from './api.js';
import { historyChart } from './charts.js';

const RANGES = { '1h': 3_600_000, '24h': 86_400_000, '7d': 7 * 86_400_000 };

// Bucket sizes the chart may use, smallest first, in the API's duration syntax.
const BUCKETS = [
  ['1s', 1e3], ['2s', 2e3], ['5s', 5e3], ['10s', 1e4], ['15s', 15e3], ['30s', 3e4],
  ['1m', 6e4], ['2m', 12e4], ['5m', 3e5], ['10m', 6e5], ['15m', 9e5], ['30m', 18e5],
  ['1h', 36e5], ['2h', 72e5], ['3h', 108e5], ['6h', 216e5], ['12h', 432e5], ['1d', 864e5],
];

// The smallest nice bucket that gives at most one bucket per two pixels: finer would only draw
// more points than the chart can show.
export function chooseBucket(rangeMs, widthPx) {
  const wanted = rangeMs / Math.max(50, widthPx / 2);
  return BUCKETS.find(([, ms]) => ms >= wanted) ?? BUCKETS[BUCKETS.length - 1];
}

// uPlot columns from buckets. /aggregate omits empty buckets; where readings stop for clearly
// longer than usual (three times the median spacing, and more than a bucket) a null is put in, so
// the chart shows a gap instead of a line across time without readings.
export function toColumns(buckets, bucketMs) {
  const steps = buckets.slice(1).map((b, i) => b.t - buckets[i].t).sort((x, y) => x - y);
  const gap = Math.max(bucketMs, 3 * (steps[Math.floor(steps.length / 2)] ?? bucketMs));
  const cols = [[], [], [], []];
  let prev = null;
  for (const b of buckets) {
    if (prev !== null && b.t - prev > gap) {
      cols[0].push((prev + bucketMs) / 1000);
      cols[1].push(null); cols[2].push(null); cols[3].push(null);
    }
    cols[0].push(b.t / 1000);
    cols[1].push(b.min); cols[2].push(b.avg); cols[3].push(b.max);
    prev = b.t;
  }
  return cols;
}

// What a failed load or export says; a 403 is the token's grant, not a fault.
const failure = (what, e) =>
  (e.status === 403 ? 'This token does not cover this series.' : `${what}: ${e.message}`);

const localInput = (ms) => {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60_000);
  return d.toISOString().slice(0, 16);
};

export class HistoryView {
  constructor(dialog) {
    this.dialog = dialog;
    this.q = (sel) => dialog.querySelector(sel);
    this.chart = null;
    this.series = null;
    this.range = null;  // {from, to}
    this.abort = null;
    this.live = null;     // the EventSource keeping a range that ends now up to date
    this.buckets = null;  // Map t -> bucket, what the chart shows
    this.state = { loads: 0, buckets: 0, bucket: null, live: 0 };
    for (const b of dialog.querySelectorAll('[data-range]')) {
      b.addEventListener('click', () => this.loadRelative(b.dataset.range));
    }
    this.q('#h-custom').addEventListener('submit', (e) => {
      e.preventDefault();
      const from = new Date(this.q('#h-from').value).getTime();
      const to = new Date(this.q('#h-to').value).getTime();
      if (!(to > from)) return this.say('choose a "to" later than "from"');
      this.load(from, to);
    });
    this.q('#h-csv').addEventListener('click', () => this.exportCsv());
    this.q('#h-close').addEventListener('click', () => dialog.close());
    dialog.addEventListener('close', () => { this.abort?.abort(); this.stopLive(); });
  }

  open(series) {
    this.series = series;
    this.q('#h-title').textContent = `${series.sensor} / ${series.metric}`;
    this.dialog.showModal();
    this.loadRelative('1h');
  }

  say(text) { this.q('#h-status').textContent = text; }

  loadRelative(name) {
    const to = Date.now();
    this.load(to - RANGES[name], to);
  }

  async load(from, to) {
    for (const b of this.dialog.querySelectorAll('[data-range]')) {
      b.classList.toggle('active', RANGES[b.dataset.range] === to - from && Math.abs(Date.now() - to) < 5000);
    }
    this.q('#h-from').value = localInput(from);
    this.q('#h-to').value = localInput(to);
    this.range = { from, to };
    this.abort?.abort();
    this.stopLive();
    this.abort = new AbortController();
    const box = this.q('#h-chart');
    const width = Math.max(300, box.clientWidth || 800);
    const [bucket, bucketMs] = chooseBucket(to - from, width);
    const s = this.series;
    const path = `api/v1/sensors/${encodeURIComponent(s.sensor)}/${encodeURIComponent(s.metric)}`;
    this.say('loading…');
    const signal = this.abort.signal;
    try {
      // A range that ends now stays live: the newest id first, so that every bucket that changes
      // after the aggregate was read comes on the stream (a later event replaces its bucket).
      const live = Math.abs(Date.now() - to) < 5000;
      const cursor = live ? (await getJson('api/v1/updates?timeout=0', { signal })).body.cursor : null;
      const { body } = await getJson(`${path}/aggregate?from=${from}&to=${to}&bucket=${bucket}`, { signal });
      if (!this.chart) this.chart = historyChart(box, width);
      else this.chart.setSize({ width, height: 320 });
      this.buckets = new Map(body.buckets.map((b) => [b.t, b]));
      this.bucketMs = body.bucket_ms;
      this.draw();
      const readings = body.buckets.reduce((n, b) => n + b.count, 0);
      this.state = { loads: this.state.loads + 1, buckets: body.buckets.length, bucket, readings, live: 0 };
      this.say(`${body.buckets.length} buckets of ${bucket} · ${readings} readings · ${s.unit ?? ''}`);
      if (live && !signal.aborted) this.startLive(bucket, cursor);
    } catch (e) {
      if (e.name !== 'AbortError') this.say(failure('could not load', e));
    }
  }

  draw() {
    const buckets = [...this.buckets.values()].sort((a, b) => a.t - b.t);
    this.chart.setData(toColumns(buckets, this.bucketMs));
    const { from, to } = this.range;
    this.chart.setScale('x', { min: from / 1000, max: to / 1000 });
  }

  // Bucket events of this series after `cursor`, provisional ones included, each replacing its
  // bucket; the range slides with the clock. The stream's filter is every topic (the page does
  // not know the bridge's topic prefix), the events of other series are ignored. EventSource
  // resumes by itself after a lost connection (Last-Event-ID), without gap or double count.
  startLive(bucket, cursor) {
    const s = this.series;
    const es = new EventSource(streamUrl(`api/v1/stream?topic=%23&bucket=${bucket}&provisional=true&after=${cursor}`));
    this.live = es;
    let pending = false;
    es.addEventListener('bucket', (ev) => {
      const b = JSON.parse(ev.data);
      if (b.sensor !== s.sensor || b.metric !== s.metric || this.live !== es) return;
      this.buckets.set(b.t, b);
      this.state.live += 1;
      this.state.newest = b;
      const span = this.range.to - this.range.from;
      const now = Date.now();
      if (now > this.range.to) this.range = { from: now - span, to: now };
      for (const t of this.buckets.keys()) if (t + this.bucketMs <= this.range.from) this.buckets.delete(t);
      if (pending) return;
      pending = true;  // one redraw per animation frame however many events arrive
      requestAnimationFrame(() => { pending = false; if (this.live === es) this.draw(); });
    });
  }

  stopLive() {
    this.live?.close();
    this.live = null;
  }

  // Every page of the range as one CSV file. The bridge pages CSV like JSON, with the next page's
  // cursor in X-Next-Cursor; pages are joined here, keeping the header row once.
  async exportCsv() {
    if (!this.range) return;
    const s = this.series;
    const { from, to } = this.range;
    const base = `api/v1/sensors/${encodeURIComponent(s.sensor)}/${encodeURIComponent(s.metric)}` +
                 `/readings?format=csv&limit=10000&from=${from}&to=${to}`;
    const button = this.q('#h-csv');
    const parts = [];
    let cursor = null;
    let rows = 0;
    button.disabled = true;
    try {
      do {
        const r = await get(cursor ? `${base}&cursor=${encodeURIComponent(cursor)}` : base,
                            { signal: this.abort.signal });
        let text = await r.text();
        if (parts.length) text = text.slice(text.indexOf('\n') + 1);
        parts.push(text);
        rows += text.split('\n').length - 1 - (parts.length === 1 ? 1 : 0);
        cursor = r.headers.get('X-Next-Cursor');
        this.say(`exporting… ${rows} rows`);
      } while (cursor);
      const a = document.createElement('a');
      a.href = URL.createObjectURL(new Blob(parts, { type: 'text/csv' }));
      a.download = `${s.sensor}_${s.metric}_${new Date(from).toISOString()}_${new Date(to).toISOString()}.csv`.replaceAll(':', '');
      a.click();
      setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
      this.say(`exported ${rows} rows`);
    } catch (e) {
      if (e.name !== 'AbortError') this.say(failure('export failed', e));
    } finally {
      button.disabled = false;
    }
  }
}
