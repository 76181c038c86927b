// Live sparklines: one small uPlot per series card, fed with the last few minutes of readings.
// uPlot (from npm, embedded into the bridge) is loaded as a classic script and found on window.

const uPlot = window.uPlot;

export const LIVE_WINDOW_MS = 5 * 60_000;

// The readings of one series inside the live window, ordered by ts, each id once: the ones the
// live feed delivers plus the ones fetched from history when the card is first shown (merge()).
// Readings arrive in id order, which is ts order except for late readings: those are inserted.
// A series too dense to fetch reading by reading gets its history as bucket averages instead
// (setPast()); those have no ids, so they are only drawn left of the first live reading, where
// the feed has nothing: a bucket and the readings it summarises are never both on the chart.
export class SeriesBuffer {
  constructor() {
    this.ts = [];
    this.values = [];
    this.ids = new Set();
    this.pastTs = [];       // bucket averages (dense series only), ascending
    this.pastValues = [];
    this.liveFrom = Infinity;  // ts of the first reading the live feed delivered
  }

  // A reading from the live feed.
  add(r) {
    if (this.liveFrom === Infinity) this.liveFrom = r.ts;
    return this.insert(r);
  }

  insert(r) {
    if (this.ids.has(r.id)) return false;  // already here (fetched history and live overlap)
    this.ids.add(r.id);
    let at = this.ts.length;
    while (at > 0 && this.ts[at - 1] > r.ts) at--;
    this.ts.splice(at, 0, r.ts);
    this.values.splice(at, 0, { id: r.id, v: r.value });
    return true;
  }

  // Fetched history (any order): readings not here yet are merged in, in one pass. Live readings
  // that arrived while the fetch was in flight stay; ones the fetch also returned are kept once.
  merge(readings) {
    const fresh = readings.filter((r) => !this.ids.has(r.id));
    if (!fresh.length) return 0;
    const all = this.ts.map((t, i) => ({ ts: t, id: this.values[i].id, v: this.values[i].v }));
    for (const r of fresh) {
      this.ids.add(r.id);
      all.push({ ts: r.ts, id: r.id, v: r.value });
    }
    all.sort((a, b) => a.ts - b.ts || a.id - b.id);
    this.ts = all.map((x) => x.ts);
    this.values = all.map((x) => ({ id: x.id, v: x.v }));
    return fresh.length;
  }

  // Fetched history of a dense series: [ts, value] points, ascending.
  setPast(points) {
    this.pastTs = points.map((p) => p[0]);
    this.pastValues = points.map((p) => p[1]);
  }

  // How many past points are drawn: those left of the live feed's first reading.
  pastShown() {
    let n = 0;
    while (n < this.pastTs.length && this.pastTs[n] < this.liveFrom) n++;
    return n;
  }

  get length() { return this.pastShown() + this.ts.length; }

  // Drops what slid out of the window.
  trim(now) {
    const oldest = now - LIVE_WINDOW_MS;
    let p = 0;
    while (p < this.pastTs.length && this.pastTs[p] < oldest) p++;
    if (p) {
      this.pastTs.splice(0, p);
      this.pastValues.splice(0, p);
    }
    let n = 0;
    while (n < this.ts.length && this.ts[n] < oldest) n++;
    if (!n) return;
    for (const x of this.values.slice(0, n)) this.ids.delete(x.id);
    this.ts.splice(0, n);
    this.values.splice(0, n);
  }

  // uPlot's columnar data: x in seconds (uPlot's time unit), y.
  data() {
    const p = this.pastShown();
    const x = new Array(p + this.ts.length), y = new Array(p + this.ts.length);
    for (let i = 0; i < p; i++) { x[i] = this.pastTs[i] / 1000; y[i] = this.pastValues[i]; }
    for (let i = 0; i < this.ts.length; i++) { x[p + i] = this.ts[i] / 1000; y[p + i] = this.values[i].v; }
    return [x, y];
  }
}

// A sparkline in `el`, `width` pixels wide. The x range is the window ending now, so the line moves
// left as time passes, even between readings.
export function sparkline(el, width) {
  let nowSec = Date.now() / 1000;
  const css = getComputedStyle(document.documentElement);
  const chart = new uPlot({
    width,
    height: 56,
    pxAlign: false,
    cursor: { show: false },
    legend: { show: false },
    select: { show: false },
    axes: [{ show: false }, { show: false }],
    scales: {
      x: { time: true, range: () => [nowSec - LIVE_WINDOW_MS / 1000, nowSec] },
      // A flat series still gets some height, centred.
      y: { range: (u, min, max) => (min === max ? [min - 1, max + 1] : [min - (max - min) * 0.1, max + (max - min) * 0.1]) },
    },
    series: [
      {},
      {
        stroke: css.getPropertyValue('--accent').trim() || '#2a7ae2',
        fill: css.getPropertyValue('--accent-fill').trim() || 'rgba(42,122,226,0.12)',
        width: 1.5,
        points: { show: false },
      },
    ],
  }, [[], []], el);
  return {
    update(buffer, now) {
      nowSec = now / 1000;
      chart.setData(buffer.data());
    },
    // Points on the chart now (for tests).
    get points() { return chart.data[0].length; },
    resize(w) { chart.setSize({ width: w, height: 56 }); },
  };
}

// The history chart: min-max band with the average line, one point per bucket.
export function historyChart(el, width) {
  const css = getComputedStyle(document.documentElement);
  const accent = css.getPropertyValue('--accent').trim() || '#2a7ae2';
  const band = css.getPropertyValue('--band').trim() || 'rgba(42,122,226,0.18)';
  const fmt = (u, v) => (v == null ? '–' : v.toFixed(2));
  return new uPlot({
    width,
    height: 320,
    series: [
      {},
      { label: 'min', stroke: band, width: 1, value: fmt, points: { show: false } },
      { label: 'avg', stroke: accent, width: 2, value: fmt },
      { label: 'max', stroke: band, width: 1, value: fmt, points: { show: false } },
    ],
    bands: [{ series: [3, 1], fill: band }],
    axes: [{ stroke: css.getPropertyValue('--muted').trim() }, { stroke: css.getPropertyValue('--muted').trim() }],
  }, [[], [], [], []], el);
}
