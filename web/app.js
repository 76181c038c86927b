// The dashboard's wiring: series cards, presence, the transport indicator and batched rendering.
// Readings may arrive by the hundred per second; the DOM and the charts are touched at most once
// per animation frame, only for cards on screen, and within a time budget per frame.
import { getJson, setTokenPrompt } from './api.js';
import { LiveFeed, MODE_NAMES } from './transport.js';
import { SeriesBuffer, sparkline, LIVE_WINDOW_MS } from './charts.js';
import { HistoryView } from './history.js';
import { TokenForm } from './token.js';

const params = new URLSearchParams(location.search);
const startMode = params.get('transport') in MODE_NAMES ? params.get('transport') : 'websocket';
const trace = params.has('trace');  // keep every received id per series (for tests)
const FRAME_BUDGET_MS = 8;

const $ = (id) => document.getElementById(id);
const grid = $('grid');
const cardTemplate = $('card').content.firstElementChild;
const history = new HistoryView($('history'));
const tokenForm = new TokenForm($('token'), $('token-open'), () => showTransport());
setTokenPrompt((why) => tokenForm.ask(why));

const series = new Map();  // "sensor/metric" -> series state
const presence = new Map();  // sensor -> true/false (a status may come before any reading)
const dirty = new Set();
let frameRequested = false;
let transportState = { mode: startMode, state: 'connecting' };
const rate = { count: 0, perSecond: 0, last: [] };  // readings/s over the last 5 s

const UNITS = { Cel: '°C', K: 'K', '%RH': '% RH', Pa: 'Pa', hPa: 'hPa', V: 'V', A: 'A', W: 'W' };

function formatAge(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

// Cards are only drawn while on screen; one observer tells which are. A card's first time on
// screen also asks for the history of its sparkline's window.
let visibilityKnown = false;  // the observer has reported at least once
const visibility = new IntersectionObserver((entries) => {
  visibilityKnown = true;
  for (const e of entries) {
    const s = e.target.series;
    s.visible = e.isIntersecting;
    if (s.visible) {
      markDirty(s);
      wantRecent(s);
    }
  }
}, { rootMargin: '200px' });

// ---------------------------------------------------------------- sparkline history
// The live feed only brings what happens after the page opened; the sparkline's window (the last
// LIVE_WINDOW_MS) before that comes from /readings, fetched when a card is first on (or near) the
// screen, a few requests at a time, so 200 cards do not ask at once and cards never scrolled to
// never ask. What the fetch returns is merged with what the feed delivered meanwhile (by id, see
// SeriesBuffer.merge); the feed's own accounting (cursor, delivered, duplicates) is not touched.
// A series denser than RAW_LIMIT readings per window gets 1 s bucket averages from /aggregate
// instead: about one point per pixel of a sparkline, a few KB instead of hundreds per card.
// A failed fetch is retried once, RETRY_MS later; the card stays live either way. A series the
// token does not cover (403) says so on its card and is not asked again.
const RECENT_CONCURRENCY = 3;
const RAW_LIMIT = 1500;
const PAST_BUCKET = ['1s', 1000];
const RETRY_MS = 8000;
const recentQueue = [];
const recentStats = { requests: 0, failures: 0, inFlight: 0, maxInFlight: 0 };

// s.recent: 'new' (not asked yet) -> 'queued' -> 'loading' -> 'done'; on a failure 'retry' (once,
// back to 'new' after RETRY_MS), then 'failed'; 'forbidden' after a 403. A card that leaves the
// screen while queued goes back to 'new' and is asked for again when it returns.
function wantRecent(s) {
  if (s.recent !== 'new') return;
  s.recent = 'queued';
  recentQueue.push(s);
  pumpRecent();
}

function pumpRecent() {
  while (recentStats.inFlight < RECENT_CONCURRENCY && recentQueue.length) {
    const s = recentQueue.shift();
    if (!s.visible) { s.recent = 'new'; continue; }
    s.recent = 'loading';
    recentStats.inFlight++;
    recentStats.maxInFlight = Math.max(recentStats.maxInFlight, recentStats.inFlight);
    loadRecent(s)
      .then(() => { s.recent = 'done'; })
      .catch((e) => {
        recentStats.failures++;
        if (e.status === 403) {
          s.recent = 'forbidden';
          s.note.textContent = 'This token does not cover this series.';
          s.el.classList.add('denied');
          return;
        }
        if (++s.recentFailures > 1) { s.recent = 'failed'; return; }
        s.recent = 'retry';
        setTimeout(() => { s.recent = 'new'; if (s.visible) wantRecent(s); }, RETRY_MS * (0.75 + Math.random() / 2));
      })
      .finally(() => {
        recentStats.inFlight--;
        markDirty(s);
        pumpRecent();
      });
  }
}

async function loadRecent(s) {
  const from = Date.now() - LIVE_WINDOW_MS;
  const path = `api/v1/sensors/${encodeURIComponent(s.sensor)}/${encodeURIComponent(s.metric)}`;
  // The interval says whether the window fits in one page of readings; if it is unknown or wrong,
  // a page that does not hold the whole window (a `next` cursor) says so.
  const dense = s.interval_ms > 0 && LIVE_WINDOW_MS / s.interval_ms > RAW_LIMIT;
  const body = async (url) => {
    recentStats.requests++;
    return (await getJson(url)).body;
  };
  if (!dense) {
    const page = await body(`${path}/readings?from=${from}&order=asc&limit=${RAW_LIMIT}`);
    if (!page.next) {
      s.buffer.merge(page.readings);
      return;
    }
  }
  const [bucket, bucketMs] = PAST_BUCKET;
  const agg = await body(`${path}/aggregate?from=${from}&bucket=${bucket}`);
  s.buffer.setPast(agg.buckets.map((b) => [b.t + bucketMs / 2, b.avg]));
}

function ensureSeries(sensor, metric) {
  const key = `${sensor}/${metric}`;
  let s = series.get(key);
  if (s) return s;
  const el = cardTemplate.cloneNode(true);
  el.dataset.series = key;
  el.querySelector('.name').textContent = sensor;
  el.querySelector('.metric').textContent = metric;
  s = {
    key, sensor, metric, unit: null, latest: null, interval_ms: null, count: 0, ids: [],
    el, visible: false, chart: null, buffer: new SeriesBuffer(), recent: 'new', recentFailures: 0,
    value: el.querySelector('.value'), unitEl: el.querySelector('.unit'),
    age: el.querySelector('.age'), presence: el.querySelector('.presence'), note: el.querySelector('.note'),
  };
  el.series = s;
  el.addEventListener('click', () => history.open(s));
  el.addEventListener('keydown', (e) => { if (e.key === 'Enter') history.open(s); });
  // Sorted by name: insert before the first card that sorts after this one.
  const next = [...series.values()].filter((o) => o.key > key).sort((a, b) => (a.key < b.key ? -1 : 1))[0];
  grid.insertBefore(el, next ? next.el : null);
  series.set(key, s);
  applyFilter(s);
  showPresence(s);
  visibility.observe(el);
  $('empty').hidden = true;
  return s;
}

function showPresence(s) {
  const on = presence.get(s.sensor);
  const label = on === undefined ? 'unknown' : on ? 'online' : 'offline';
  s.presence.dataset.online = label;
  s.presence.textContent = label;
  s.el.classList.toggle('offline', on === false);
}

function setPresence(sensor, online) {
  if (online === null || online === undefined) return;
  presence.set(sensor, online);
  for (const s of series.values()) if (s.sensor === sensor) showPresence(s);
}

function markDirty(s) {
  dirty.add(s);
  if (!frameRequested) {
    frameRequested = true;
    requestAnimationFrame(render);
  }
}

// Draws dirty cards on screen, as many per frame as fit the frame's budget; the rest wait for the
// next frame. uPlot draws in a microtask after setData, so the cost of a card is measured by a
// microtask queued after the frame's draws (it runs after theirs) and averaged.
let drawCostMs = 1;
function render() {
  frameRequested = false;
  const start = performance.now();
  const now = Date.now();
  const limit = Math.max(1, Math.floor(FRAME_BUDGET_MS / drawCostMs));
  let drawn = 0;
  for (const s of dirty) {
    dirty.delete(s);
    if (!s.visible) continue;  // drawn again when it scrolls into view
    draw(s, now);
    if (++drawn >= limit) break;
  }
  if (drawn) {
    queueMicrotask(() => {
      drawCostMs = 0.8 * drawCostMs + 0.2 * ((performance.now() - start) / drawn);
    });
  }
  if (dirty.size && !frameRequested) {
    frameRequested = true;
    requestAnimationFrame(render);
  }
}

function draw(s, now) {
  if (s.latest) {
    s.value.textContent = Number(s.latest.value).toFixed(2);
    s.age.textContent = formatAge(now - s.latest.ts);
  }
  s.unitEl.textContent = s.unit ? UNITS[s.unit] ?? s.unit : '';
  s.buffer.trim(now);
  if (!s.chart) {
    const box = s.el.querySelector('.spark');
    s.chart = sparkline(box, box.clientWidth || 220);
  }
  s.chart.update(s.buffer, now);
}

function onReadings(readings) {
  for (const r of readings) {
    const s = ensureSeries(r.sensor, r.metric);
    if (!s.latest || r.ts >= s.latest.ts) s.latest = r;  // current value: the greatest ts
    if (r.unit) s.unit = r.unit;
    s.buffer.add(r);
    s.count++;
    if (trace) s.ids.push(r.id);
    markDirty(s);
  }
  rate.count += readings.length;
}

// A /api/v1/sensors list: series, units, presence, intervals and latest readings.
function onSeries(list) {
  for (const x of list) {
    const s = ensureSeries(x.sensor, x.metric);
    if (x.unit) s.unit = x.unit;
    s.interval_ms = x.interval_ms;
    if (x.latest && (!s.latest || x.latest.ts > s.latest.ts)) s.latest = x.latest;
    setPresence(x.sensor, x.online);
    markDirty(s);
  }
}

function onState(st) {
  transportState = st;
  showTransport();
}

function showTransport() {
  const st = transportState;
  $('transport').dataset.state = tokenForm.waiting ? 'token' : st.state;
  $('t-mode').textContent = MODE_NAMES[st.mode];
  let health = st.state;
  if (tokenForm.waiting) {
    health = 'waiting for a token';
  } else if (st.state === 'live') {
    const since = (performance.now() - feed.stats.lastMessageAt) / 1000;
    health = `live · ${rate.perSecond}/s` + (feed.stats.lastMessageAt ? ` · last ${since.toFixed(0)} s ago` : '');
  } else if (st.state === 'reconnecting') {
    health = `reconnecting in ${Math.max(0, Math.ceil((st.retryAt - Date.now()) / 1000))} s (attempt ${st.attempt})`;
  }
  if (st.note && st.state !== 'live') health += ` · ${st.note}`;
  $('t-health').textContent = health;
}

function applyFilter(s) {
  const f = $('filter').value.trim().toLowerCase();
  s.el.hidden = f !== '' && !s.key.toLowerCase().includes(f);
}
$('filter').addEventListener('input', () => { for (const s of series.values()) applyFilter(s); });

function showSummary() {
  let on = 0, off = 0;
  for (const s of series.values()) {
    const p = presence.get(s.sensor);
    if (p === true) on++;
    else if (p === false) off++;
  }
  $('summary').textContent = `${series.size} series · ${on} online · ${off} offline`;
}

// Once a second: ages move, sparklines slide, the summary and the transport line refresh.
setInterval(() => {
  rate.last.push(rate.count);
  if (rate.last.length > 5) rate.last.shift();
  rate.count = 0;
  rate.perSecond = Math.round(rate.last.reduce((a, b) => a + b, 0) / rate.last.length);
  const now = Date.now();
  for (const s of series.values()) {
    if (s.visible) markDirty(s);
    else s.buffer.trim(now);  // off screen: not drawn, but kept to the window
  }
  showSummary();
  showTransport();
}, 1000);

let resizeTimer = null;
addEventListener('resize', () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => {
    for (const s of series.values()) if (s.chart) s.chart.resize(s.el.querySelector('.spark').clientWidth);
  }, 150);
});

const feed = new LiveFeed({
  startMode,
  // A reset for another epoch: the bridge's database was re-created or restored, and every id
  // the page holds means other readings there. A reload starts afresh (the token is kept).
  handlers: { onReadings, onStatus: setPresence, onSeries, onState, onEpoch: () => location.reload() },
});

// Start: the newest id first, then the series list (which is at least as new), then the feed
// after that id: whatever is committed in between comes through the feed, nothing is missed.
async function start() {
  for (let attempt = 1; ; attempt++) {
    try {
      const { cursor } = (await getJson('api/v1/updates?timeout=0')).body;
      onSeries((await getJson('api/v1/sensors')).body.series);
      if (!series.size) $('empty').hidden = false;
      showSummary();
      feed.start(cursor);
      window.__dashboard.ready = true;
      return;
    } catch (e) {
      $('t-health').textContent = `bridge unreachable (${e.message}); retrying`;
      await new Promise((r) => setTimeout(r, Math.min(30_000, 1000 * 2 ** attempt)));
    }
  }
}

// For tests and the curious: what the page received, over which transport.
window.__dashboard = {
  ready: false,
  // Every card on screen has its sparkline's history (or gave up on it); cards off screen have
  // not asked for theirs.
  get backfilled() {
    if (!this.ready || (series.size && !visibilityKnown)) return false;
    for (const s of series.values()) if (s.visible && ['new', 'queued', 'loading'].includes(s.recent)) return false;
    return true;
  },
  get recent() { return { ...recentStats, queued: recentQueue.length }; },
  get mode() { return feed.mode; },
  get state() { return transportState.state; },
  get waitingForToken() { return tokenForm.waiting; },
  get cursor() { return feed.cursor; },
  get delivered() { return feed.stats.delivered; },
  get duplicates() { return feed.stats.duplicates; },
  get fallbacks() { return feed.stats.fallbacks; },
  get history() { return history.state; },
  get drawCostMs() { return drawCostMs; },
  series() {
    const out = {};
    for (const s of series.values()) {
      out[s.key] = { count: s.count, ids: s.ids, value: s.latest?.value ?? null,
                     online: presence.get(s.sensor) ?? null, points: s.buffer.length,
                     drawn: s.chart ? s.chart.points : null, recent: s.recent };
    }
    return out;
  },
  // One sparkline's readings (the past bucket averages of a dense series have no ids).
  sparkline(key) {
    const b = series.get(key)?.buffer;
    return b && { ts: [...b.ts], ids: b.values.map((x) => x.id), past: b.pastShown() };
  },
};

start();
