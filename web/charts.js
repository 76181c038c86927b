// Live sparklines: one small uPlot per series card, fed with the last few minutes of readings.
// uPlot (from npm, embedded into the bridge) is loaded as a classic script and found on window.

const uPlot = window.uPlot;

export const LIVE_WINDOW_MS = 5 * 60_000;

// The readings of one series inside the live window, ordered by ts, each id once.
// Readings arrive in id order, which is ts order except for late readings: those are inserted.
export class SeriesBuffer {
  constructor() {
    this.ts = [];
    this.values = [];
    this.ids = new Set();
  }

  add(r) {
    if (this.ids.has(r.id)) return false;  // a back-filled reading the stream delivers again
    this.ids.add(r.id);
    let at = this.ts.length;
    while (at > 0 && this.ts[at - 1] > r.ts) at--;
    this.ts.splice(at, 0, r.ts);
    this.values.splice(at, 0, { id: r.id, v: r.value });
    return true;
  }

  // Drops what slid out of the window.
  trim(now) {
    const oldest = now - LIVE_WINDOW_MS;
    let n = 0;
    while (n < this.ts.length && this.ts[n] < oldest) n++;
    if (!n) return;
    for (const x of this.values.slice(0, n)) this.ids.delete(x.id);
    this.ts.splice(0, n);
    this.values.splice(0, n);
  }

  // uPlot's columnar data: x in seconds (uPlot's time unit), y.
  data() {
    return [this.ts.map((t) => t / 1000), this.values.map((x) => x.v)];
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
