// The dashboard's live feed: readings and presence over the best transport the network allows.
//
// Modes, best first: WebSocket, Server-Sent Events, long polling, interval polling. Every mode
// resumes after ONE cursor, the greatest reading id handed to the page, and deliver() drops
// anything at or below it; so a reconnect, or a fall back to the next mode, shows no gap and no
// duplicate (the bridge gives ids in commit order and replays everything after a given id).
//
// A mode that cannot be established twice in a row while /healthz answers is taken as blocked
// (a proxy that drops upgrades or buffers streams) and the next mode is tried. While /healthz does
// not answer either, the bridge itself is away: the same mode is retried with exponential backoff
// and jitter instead, so a bridge restart does not push the page down to polling.
//
// A stream the bridge refuses for its token (a 401 to the upgrade or to the event stream's
// request, or a stream ended because its token expired) looks to the page like any lost stream:
// the browser does not show the status. So when a stream fails while /healthz answers, the API
// is asked whether the token is still accepted; if not, or when the stream said its token expired
// (WebSocket close 1008 for the token, SSE `token_expired`), the page waits for a new token
// (api.js) and opens the same mode again after the same cursor, and the failure counts for
// nothing. The polling modes see their 401s themselves: their requests wait for the token.
import { get, getJson, streamUrl, tokenExpired, tokenWasRenewed, webSocketUrl } from './api.js';

export const MODES = ['websocket', 'sse', 'longpoll', 'poll'];
export const MODE_NAMES = {
  websocket: 'WebSocket',
  sse: 'Server-Sent Events',
  longpoll: 'long polling',
  poll: 'interval polling',
};

const LONG_POLL_TIMEOUT_S = 25;
const PRESENCE_POLL_MS = 5000;     // long-poll mode: /sensors revalidation for presence
const UPGRADE_RETRY_MS = 300_000;  // after a fall back, try the best mode again this often
const MAX_BACKOFF_MS = 30_000;

// Exponential backoff with jitter: attempt 1 waits about base, each further one twice as long,
// capped; the random half spreads many dashboards reconnecting to one bridge at once.
export function backoff(attempt, base = 500, cap = MAX_BACKOFF_MS) {
  const full = Math.min(cap, base * 2 ** Math.max(0, attempt - 1));
  return full / 2 + Math.random() * (full / 2);
}

export class LiveFeed {
  // handlers: onReadings(array, mode), onStatus(sensor, online), onSeries(seriesList),
  // onState({mode, state, attempt, retryAt, note}), onEpoch(reset): the database was replaced.
  constructor({ startMode = 'websocket', handlers }) {
    this.h = handlers;
    this.startIndex = Math.max(0, MODES.indexOf(startMode));
    this.index = this.startIndex;
    this.cursor = 0;         // the greatest reading id handed to the page
    this.epoch = '';         // the epoch those ids belong to ('': not known yet, the current one)
    this.failures = 0;       // consecutive failed attempts of the current mode
    this.stopHandle = null;  // closes the running mode
    this.timer = null;
    this.upgradeTimer = null;
    this.generation = 0;     // callbacks of a closed attempt carry an old generation and are ignored
    this.stats = { delivered: 0, duplicates: 0, fallbacks: [], lastMessageAt: 0 };
  }

  get mode() { return MODES[this.index]; }

  // `cursor` as the bridge hands it out: `N@E` (docs/api.md 2.1), or a bare id.
  start(cursor) {
    this.learn(cursor);
    this.connect();
  }

  // The cursor to resume after: the greatest id seen, with its epoch when known.
  get after() { return this.epoch ? `${this.cursor}@${this.epoch}` : `${this.cursor}`; }

  // A cursor from the bridge (a long poll's `cursor`, an SSE event id): at a timeout the cursor
  // moves to the newest id (everything up to it has been seen), and it names the epoch.
  learn(cursor) {
    const [id, epoch] = String(cursor).split('@');
    if (epoch) this.epoch = epoch;
    if (Number(id) > this.cursor) this.cursor = Number(id);
  }

  // A reset: retention deleted readings after the cursor (a warning), or the cursor was of another
  // epoch (a re-created or restored database): ids start again, so the cursor does too.
  reset(r) {
    if (r.reason === 'epoch') {
      this.cursor = 0;
      this.epoch = r.epoch;
      this.state('live', { note: 'the bridge\'s database was replaced: reloading its readings' });
      // What the page holds (charts, counts, history) is of the other database: the page starts
      // afresh (handlers.onEpoch), or at least the feed does.
      if (this.h.onEpoch) this.h.onEpoch(r);
    } else {
      this.state('live', { note: `retention deleted readings after ${r.after}` });
    }
  }

  // Hands readings newer than the cursor to the page, in id order.
  deliver(readings) {
    const fresh = [];
    for (const r of readings) {
      if (r.id <= this.cursor) { this.stats.duplicates++; continue; }
      this.cursor = r.id;
      fresh.push(r);
    }
    this.stats.lastMessageAt = performance.now();
    if (fresh.length) {
      this.stats.delivered += fresh.length;
      this.h.onReadings(fresh, this.mode);
    }
  }

  state(state, extra = {}) {
    this.h.onState({ mode: this.mode, state, attempt: this.failures, ...extra });
  }

  connect() {
    clearTimeout(this.timer);
    if (this.stopHandle) this.stopHandle();  // never two modes at once
    this.stopHandle = null;
    const gen = ++this.generation;
    const alive = () => gen === this.generation;
    let established = false;
    const ctl = {
      alive,
      opened: () => {
        if (!alive()) return;
        established = true;
        this.failures = 0;
        this.state('live');
      },
      failed: (why, expired = false) => { if (alive()) this.onFailure(established, why, expired); },
    };
    this.state('connecting');
    const run = { websocket: runWebSocket, sse: runSse, longpoll: runLongPoll, poll: runPoll }[this.mode];
    this.stopHandle = run(this, ctl);
  }

  close() {
    this.generation++;
    if (this.stopHandle) this.stopHandle();
    this.stopHandle = null;
  }

  // `expired`: the stream said its token expired.
  async onFailure(wasEstablished, why, expired) {
    this.close();
    const gen = this.generation;
    this.failures = wasEstablished ? 1 : this.failures + 1;
    const last = this.index === MODES.length - 1;
    const streaming = this.mode === 'websocket' || this.mode === 'sse';
    const answers = !expired && (streaming || (!last && this.failures >= 2)) && await serverAnswers();
    // A token expired or refused: once a new one is in, the same mode resumes, nothing counted.
    if (expired) await tokenExpired();
    if (expired || (answers && streaming && await tokenWasRenewed())) {
      if (gen !== this.generation) return;
      this.failures = 0;
      return this.connect();
    }
    if (gen !== this.generation) return;  // the upgrade timer reconnected meanwhile
    if (!last && this.failures >= 2 && answers) {
      this.stats.fallbacks.push({ from: this.mode, to: MODES[this.index + 1], why, cursor: this.cursor });
      this.index++;
      this.failures = 0;
      this.scheduleUpgrade();
      return this.connect();
    }
    const delay = backoff(this.failures);
    this.state('reconnecting', { retryAt: Date.now() + delay, note: why });
    this.timer = setTimeout(() => this.connect(), delay);
  }

  // A fall back is not for ever: a proxy may have been fixed or the failure was a fluke.
  scheduleUpgrade() {
    clearTimeout(this.upgradeTimer);
    this.upgradeTimer = setTimeout(() => {
      if (this.index === this.startIndex) return;
      this.close();
      this.index = this.startIndex;
      this.failures = 0;
      this.connect();
    }, UPGRADE_RETRY_MS);
  }
}

async function serverAnswers() {
  try {
    await get('healthz', { signal: AbortSignal.timeout(3000) });
    return true;
  } catch {
    return false;
  }
}

// WebSocket: one subscription to every topic, after the cursor. Established on `subscribed`, not on
// open, so a socket that opens and is dropped at once counts as a failure.
function runWebSocket(feed, ctl) {
  const ws = new WebSocket(webSocketUrl('api/v1/ws'));
  ws.onopen = () => ws.send(JSON.stringify({ op: 'subscribe', topic: '#', after: feed.after }));
  ws.onmessage = (e) => {
    if (!ctl.alive()) return;
    let m;
    try { m = JSON.parse(e.data); } catch { return; }
    if (m.op === 'reading') feed.deliver([m]);
    else if (m.op === 'status') feed.h.onStatus(m.sensor, m.online);
    else if (m.op === 'subscribed') { if (!feed.epoch) feed.epoch = m.epoch; ctl.opened(); }
    else if (m.op === 'reset') feed.reset(m);
    else if (m.op === 'error') console.warn('dashboard: WebSocket error message', m);
  };
  // 1008 is also a client too far behind: the reason tells. A refused upgrade is 1006 (onFailure).
  ws.onclose = (e) => ctl.failed(`WebSocket closed (${e.code}${e.reason ? ' ' + e.reason : ''})`,
                                 e.code === 1008 && e.reason.startsWith('token expired'));
  return () => { ws.onclose = null; ws.close(); };
}

// SSE: the browser's own reconnect would resume from its Last-Event-ID, but we close and reopen
// ourselves so that one policy (and one cursor) rules every mode.
function runSse(feed, ctl) {
  const es = new EventSource(streamUrl(`api/v1/stream?topic=%23&after=${feed.after}`));
  es.onopen = () => ctl.opened();
  es.addEventListener('reading', (e) => {
    if (!ctl.alive()) return;
    feed.deliver([JSON.parse(e.data)]);
    feed.learn(e.lastEventId);
  });
  es.addEventListener('status', (e) => {
    if (!ctl.alive()) return;
    const s = JSON.parse(e.data);
    feed.h.onStatus(s.sensor, s.online);
  });
  es.addEventListener('reset', (e) => { if (ctl.alive()) feed.reset(JSON.parse(e.data)); });
  // A lost connection, a refused request, or the bridge's own `event: error` (token_expired),
  // which EventSource dispatches to the same handler.
  es.onerror = (e) => {
    es.close();
    let code = null;
    try { code = JSON.parse(e.data).code; } catch { /* not the bridge's error event */ }
    ctl.failed(code ? `event stream ended: ${code}` : 'event stream lost', code === 'token_expired');
  };
  return () => es.close();
}

// /api/v1/sensors revalidated with If-None-Match: presence, new series and their intervals.
class SeriesPoller {
  constructor(feed) { this.feed = feed; this.etag = null; }
  async poll(signal) {
    const r = await getJson('api/v1/sensors', { signal, etag: this.etag });
    if (r.status === 200) {
      this.etag = r.etag;
      this.feed.h.onSeries(r.body.series);
    }
    return r;
  }
}

function runLongPoll(feed, ctl) {
  const abort = new AbortController();
  const presence = new SeriesPoller(feed);
  let presenceBusy = false;  // one at a time: a poll may wait minutes for a token
  const presenceTimer = setInterval(() => {
    if (presenceBusy) return;
    presenceBusy = true;
    presence.poll(abort.signal).catch(() => {}).finally(() => { presenceBusy = false; });
  }, PRESENCE_POLL_MS);
  (async () => {
    while (ctl.alive()) {
      try {
        const url = `api/v1/updates?topic=%23&limit=1000&timeout=${LONG_POLL_TIMEOUT_S}&after=${feed.after}`;
        const r = await getJson(url, { signal: abort.signal });
        if (!ctl.alive()) return;
        ctl.opened();
        if (r.body.reset) feed.reset(r.body.reset);
        feed.deliver(r.body.readings);
        feed.learn(r.body.cursor);
      } catch (e) {
        return ctl.failed(`long poll failed: ${e.message}`);
      }
    }
  })();
  return () => { clearInterval(presenceTimer); abort.abort(); };
}

// Interval polling: a conditional GET of /sensors each interval (a 304 when nothing changed); when
// it changed, the readings after the cursor are fetched, page by page. The interval follows the
// fastest series' observed interval, within bounds; errors back off with jitter.
function runPoll(feed, ctl) {
  const abort = new AbortController();
  const series = new SeriesPoller(feed);
  let interval = 2000;
  let errors = 0;
  let timer = null;
  const tick = async () => {
    try {
      const r = await series.poll(abort.signal);
      if (r.status === 200) {
        const ms = r.body.series.map((s) => s.interval_ms).filter((v) => v > 0);
        interval = Math.min(30_000, Math.max(500, ms.length ? Math.min(...ms) : 2000));
        for (;;) {
          const u = await getJson(`api/v1/updates?topic=%23&limit=1000&timeout=0&after=${feed.after}`,
                                  { signal: abort.signal });
          if (!ctl.alive()) return;
          if (u.body.reset) feed.reset(u.body.reset);
          feed.deliver(u.body.readings);
          feed.learn(u.body.cursor);
          if (u.body.readings.length < 1000) break;
        }
      }
      if (!ctl.alive()) return;
      errors = 0;
      ctl.opened();
      feed.state('live', { note: `every ${(interval / 1000).toFixed(1)} s`, lastPoll: r.status });
      timer = setTimeout(tick, interval);
    } catch (e) {
      if (!ctl.alive()) return;
      // The last mode never gives up: it backs off and tries again.
      errors++;
      const delay = backoff(errors, interval, 60_000);
      feed.state('reconnecting', { retryAt: Date.now() + delay, note: e.message, attempt: errors });
      timer = setTimeout(tick, delay);
    }
  };
  tick();
  return () => { clearTimeout(timer); abort.abort(); };
}
