// Browser tests of the dashboard (web/): Debian's headless Chromium, driven by playwright-core,
// against a real Mosquitto, broker-bridge and sensor-sim started here on free loopback ports.
//
// Usage: node dashboard_test.mjs BUILD_DIR CASE
//   CASE: assets | live | fallback | history | start_modes | auth | tls | smoothness (a measurement, see
//   bench/dashboard.sh). Screenshots go to BUILD_DIR/tests/. Every wait is bounded and polls a
//   condition; nothing asserts on speed. Only the processes started here are stopped, by pid.
import { spawn, spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const [BUILD, CASE] = process.argv.slice(2);
if (!BUILD || !CASE) {
  console.error('usage: dashboard_test.mjs BUILD_DIR CASE');
  process.exit(2);
}
// playwright-core is installed by the build (npm ci in BUILD_DIR/web), not in the source tree.
const { chromium } = createRequire(path.join(path.resolve(BUILD), 'web', 'package.json'))('playwright-core');
const SHOTS = path.join(path.resolve(BUILD), 'tests');
const REPO = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..');
fs.mkdirSync(SHOTS, { recursive: true });

// ---------------------------------------------------------------- processes

const children = new Set();
const hasSetpriv = fs.existsSync('/usr/bin/setpriv');

// Starts a child that dies with us even if we are killed (setpriv --pdeathsig).
function start(argv, logFile) {
  const cmd = hasSetpriv ? ['/usr/bin/setpriv', '--pdeathsig', 'KILL', '--', ...argv] : argv;
  const log = fs.openSync(logFile, 'a');
  const p = spawn(cmd[0], cmd.slice(1), { stdio: ['ignore', 'pipe', log] });
  p.stdout.on('data', (d) => { p.out = (p.out ?? '') + d; fs.appendFileSync(logFile, d); });
  p.exited = new Promise((r) => p.on('exit', (code, sig) => { children.delete(p); r(code ?? sig); }));
  children.add(p);
  return p;
}

async function stop(p, signal = 'SIGTERM') {
  if (!children.has(p)) return;
  p.kill(signal);
  const t = setTimeout(() => p.kill('SIGKILL'), 10_000);
  await p.exited;
  clearTimeout(t);
}

function stopAllNow() {
  for (const p of children) p.kill('SIGKILL');
}
process.on('exit', stopAllNow);
for (const s of ['SIGINT', 'SIGTERM']) process.on(s, () => { stopAllNow(); process.exit(1); });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Polls `cond` until it returns a truthy value; throws naming `what` after `ms`.
async function until(what, cond, ms = 20_000) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await cond();
      if (last) return last;
    } catch (e) {
      last = e.message;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
    await sleep(100);
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

// fetch() for the test's own requests through HTTPS: Node's fetch cannot be given a CA to trust,
// node:https can (the test's CA, never "accept anything").
function fetchTrusting(ca, url, { headers = {} } = {}) {
  return new Promise((resolve, reject) => {
    https.get(url, { headers, ca }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString();
        resolve({ ok: res.statusCode >= 200 && res.statusCode < 300, status: res.statusCode,
                  json: async () => JSON.parse(body), text: async () => body });
      });
    }).on('error', reject);
  });
}

function portOpen(port) {
  return new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1');
    c.on('connect', () => { c.destroy(); resolve(true); });
    c.on('error', () => resolve(false));
  });
}

// A private Mosquitto + bridge + simulators in a temporary folder. `config`: the bridge's
// configuration file (TOML), or a function of the folder that returns it, if any. `token`: sent
// by api() once set. `ca`: the CA to trust when the bridge speaks HTTPS.
class System {
  async up(config = null) {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'telemetry-dash-'));
    this.token = null;
    if (typeof config === 'function') config = config(this);
    if (config) {
      this.config = path.join(this.dir, 'bridge.toml');
      fs.writeFileSync(this.config, config);
    }
    this.mqttPort = await freePort();
    const conf = path.join(this.dir, 'mosquitto.conf');
    fs.writeFileSync(conf, [
      `listener ${this.mqttPort} 127.0.0.1`, 'allow_anonymous true', 'set_tcp_nodelay true',
      'max_queued_messages 1000000', 'persistence false', ...(process.getuid() === 0 ? ['user root'] : []), '',
    ].join('\n'));
    this.mosquitto = start(['mosquitto', '-c', conf], path.join(this.dir, 'mosquitto.log'));
    await until('mosquitto', () => portOpen(this.mqttPort), 10_000);
    this.mqtt = `tcp://127.0.0.1:${this.mqttPort}`;
    this.sims = [];
    await this.startBridge('127.0.0.1:0');
    return this;
  }

  async startBridge(listen) {
    const b = start([path.join(BUILD, 'broker-bridge', 'broker-bridge'), '--mqtt', this.mqtt, '--http', listen,
                     '--db', path.join(this.dir, 'bridge.db'), ...(this.config ? ['--config', this.config] : [])],
                    path.join(this.dir, 'bridge.log'));
    const m = await until('the bridge to print its address', () => {
      if (b.exitCode !== null) throw new Error(`bridge exited: ${fs.readFileSync(path.join(this.dir, 'bridge.log'))}`);
      return /serving (https?):\/\/127\.0\.0\.1:(\d+)/.exec(b.out ?? '');
    });
    this.bridge = b;
    this.port = Number(m[2]);
    // Through HTTPS by the name in the certificate.
    this.url = m[1] === 'https' ? `https://localhost:${this.port}` : `http://127.0.0.1:${this.port}`;
    await until('the bridge to be ready', async () => (await this.fetch(`${this.url}/readyz`)).ok);
  }

  fetch(url, options = {}) {
    return this.ca ? fetchTrusting(this.ca, url, options) : fetch(url, options);
  }

  // A bridge restart on the same port (streams and polls in progress are cut).
  async restartBridge(between = async () => {}) {
    await stop(this.bridge);
    await between();
    await this.startBridge(`127.0.0.1:${this.port}`);
  }

  sim(prefix, sensors, rate) {
    const p = start([path.join(BUILD, 'sensor-sim', 'sensor-sim'), '--mqtt', this.mqtt, '--sensors', String(sensors),
                     '--rate', String(rate), '--id-prefix', prefix, '--quiet'], path.join(this.dir, `sim-${prefix}.log`));
    this.sims.push(p);
    return p;
  }

  async api(p) {
    const r = await this.fetch(this.url + p, this.token ? { headers: { Authorization: `Bearer ${this.token}` } } : {});
    if (!r.ok) throw new Error(`${p}: HTTP ${r.status}`);
    return r.json();
  }

  // Every stored id of a series (with ts >= from, if given), oldest first.
  async storedIds(key, from = null) {
    const ids = [];
    let cursor = null;
    do {
      const page = await this.api(`/api/v1/sensors/${key}/readings?limit=10000${from === null ? '' : `&from=${from}`}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
      ids.push(...page.readings.map((r) => r.id));
      cursor = page.next;
    } while (cursor);
    return ids.sort((a, b) => a - b);
  }

  async down() {
    for (const s of this.sims) await stop(s);
    if (this.bridge) await stop(this.bridge);
    if (this.mosquitto) await stop(this.mosquitto);
    if (this.dir && !process.env.KEEP_TEST_DIR) fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

async function browser(extraArgs = []) {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    // No sandbox as root; no background traffic to the internet this machine does not have.
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--no-proxy-server',
           '--disable-background-networking', '--disable-component-update', '--disable-sync', ...extraArgs],
  });
}

// A page in a new context, loaded; Content-Security-Policy violations are collected, from the
// console and from securitypolicyviolation events, for checkNoCspViolation().
async function newPage(b, url, { size = { width: 1280, height: 820 }, setup = async () => {} } = {}) {
  const context = await b.newContext({ viewport: size });
  await setup(context);
  await context.addInitScript(() => {
    window.__csp = [];
    document.addEventListener('securitypolicyviolation',
                              (e) => window.__csp.push(`${e.effectiveDirective} blocked ${e.blockedURI || 'inline'}`));
  });
  const page = await context.newPage();
  page.cspConsole = [];
  page.on('pageerror', (e) => console.error('page error:', e.message));
  page.on('console', (m) => {
    if (m.type() === 'error') console.error('console:', m.text());
    if (/Content Security Policy/i.test(m.text())) page.cspConsole.push(m.text());
  });
  await page.goto(url);
  return { context, page };
}

async function openPage(b, url, options = {}) {
  const opened = await newPage(b, url, options);
  await until('the dashboard to start', () => opened.page.evaluate(() => window.__dashboard?.ready));
  return opened;
}

// The document's policy allowed everything the page did since it was loaded.
async function checkNoCspViolation(page, what) {
  const seen = [...page.cspConsole, ...await page.evaluate(() => window.__csp)];
  if (seen.length) throw new Error(`${what}: Content-Security-Policy violations: ${seen.join('; ')}`);
  check(true, `${what}: no Content-Security-Policy violation reported`);
}

const dash = (page) => page.evaluate(() => ({
  mode: __dashboard.mode, state: __dashboard.state, cursor: __dashboard.cursor,
  delivered: __dashboard.delivered, duplicates: __dashboard.duplicates, fallbacks: __dashboard.fallbacks,
  series: __dashboard.series(), history: __dashboard.history,
}));

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  console.log(`ok - ${what}`);
}

// Each series' ids received live, compared with storage over the same id range: equal lists mean
// no gap and no duplicate.
async function checkNoGap(sys, d) {
  let compared = 0;
  for (const [key, s] of Object.entries(d.series)) {
    if (!s.ids.length) continue;
    const first = s.ids[0], last = s.ids[s.ids.length - 1];
    const stored = (await sys.storedIds(key)).filter((id) => id >= first && id <= last);
    if (JSON.stringify(stored) !== JSON.stringify(s.ids)) {
      const missing = stored.filter((id) => !s.ids.includes(id));
      const extra = s.ids.filter((id, i) => !stored.includes(id) || s.ids.indexOf(id) !== i);
      throw new Error(`${key}: received ${s.ids.length} ids, stored ${stored.length}; missing ${missing.slice(0, 10)}; extra or repeated ${extra.slice(0, 10)}`);
    }
    compared += s.ids.length;
  }
  check(compared > 0 && d.duplicates === 0, `${compared} ids received live match storage: no gap, no duplicate`);
}

// Publishes readings with explicit timestamps (JSON lines) to sensors/<key>.
function publish(sys, key, readings) {
  const pub = spawnSync('mosquitto_pub', ['-p', String(sys.mqttPort), '-q', '1', '-t', `sensors/${key}`, '-l'],
                        { input: readings.map((r) => JSON.stringify(r)).join('\n') + '\n' });
  if (pub.status !== 0) throw new Error(`mosquitto_pub: ${pub.stderr}`);
}

// A sparkline's readings: each id once, ascending ts, and every stored reading of the series from
// `from` (default: all of it) up to the newest one shown.
async function checkSparkline(sys, page, key, what, from = null) {
  const sp = await page.evaluate((k) => __dashboard.sparkline(k), key);
  check(new Set(sp.ids).size === sp.ids.length && sp.ts.every((t, i) => i === 0 || sp.ts[i - 1] <= t),
        `${key}: ${sp.ids.length} points on the sparkline, each id once, ascending ts`);
  const newest = Math.max(...sp.ids);
  const stored = (await sys.storedIds(key, from)).filter((id) => id <= newest);
  const shown = [...sp.ids].sort((a, b) => a - b);
  if (JSON.stringify(stored) !== JSON.stringify(shown)) {
    throw new Error(`${key}: sparkline ids ${shown.slice(0, 20)}... differ from stored ${stored.slice(0, 20)}...`);
  }
  check(true, `${key}: ${what}: the sparkline holds exactly the ${stored.length} stored readings up to id ${newest}`);
  return sp;
}

// ---------------------------------------------------------------- cases

// Authentication for the auth case: a static token for everything, one for a single sensor, and
// HS256 JWTs that expire (no leeway, so they end when the test says).
const AUTH = {
  all: 'dashboard-test-token-everything',
  one: 'dashboard-test-token-au-0001-only',
  key: 'dashboard-test-key-0123456789abcdef0123456789',
};
const bridgeConfig = {
  auth: `
[auth]
jwt_hs256_keys = ["${AUTH.key}"]
leeway_s = 0
[[auth.tokens]]
name = "dashboard test, everything"
token = "${AUTH.all}"
topics = ["#"]
[[auth.tokens]]
name = "dashboard test, au-0001"
token = "${AUTH.one}"
topics = ["sensors/au-0001/#"]
`,
  // HTTPS and WSS with a certificate from a CA made here (tools/make-certs.sh).
  tls: (sys) => {
    const certs = path.join(sys.dir, 'certs');
    const made = spawnSync(path.join(REPO, 'tools', 'make-certs.sh'), [certs], { encoding: 'utf8' });
    if (made.status !== 0) throw new Error(`make-certs.sh failed: ${made.stderr}`);
    sys.ca = fs.readFileSync(path.join(certs, 'ca.pem'));
    return `[http]\ntls_cert = "${certs}/server.pem"\ntls_key = "${certs}/server.key"\n`;
  },
};

// A JWT for every topic, valid for `seconds` from now.
function jwt(seconds) {
  const b64 = (x) => Buffer.from(x).toString('base64url');
  const head = b64(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64(JSON.stringify({ exp: Math.floor(Date.now() / 1000) + seconds, topics: ['#'] }));
  const sig = crypto.createHmac('sha256', AUTH.key).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

const cases = {
  // The bridge serves the page and its assets itself, with validators, revalidation, gzip and HEAD.
  async assets(sys) {
    const index = await fetch(`${sys.url}/`, { headers: { 'Accept-Encoding': 'identity' } });
    const html = await index.text();
    check(index.status === 200 && index.headers.get('content-type').startsWith('text/html'), 'GET / is the HTML page');
    check(!/(src|href)="(https?:)?\/\//.test(html), 'the page loads nothing from another host');
    const tag = index.headers.get('etag');
    check(/^"[0-9a-f]+"$/.test(tag) && index.headers.get('cache-control') === 'no-cache', 'strong ETag, Cache-Control: no-cache');
    const csp = index.headers.get('content-security-policy') ?? '';
    check(/default-src 'self'/.test(csp) && /script-src 'self'/.test(csp) && /frame-ancestors 'none'/.test(csp),
          `Content-Security-Policy: ${csp}`);
    const again = await fetch(`${sys.url}/?transport=sse`, { headers: { 'If-None-Match': tag, 'Accept-Encoding': 'identity' } });
    check(again.status === 304 && again.headers.get('etag') === tag && (await again.text()) === '', 'revalidation answers 304 with the same tag');
    const head = await fetch(`${sys.url}/`, { method: 'HEAD', headers: { 'Accept-Encoding': 'identity' } });
    check(head.status === 200 && Number(head.headers.get('content-length')) === Buffer.byteLength(html), 'HEAD: same length, no body');
    const refs = [...html.matchAll(/(?:src|href)="(assets\/[^"]+)"/g)].map((m) => m[1]);
    check(refs.length >= 4, `the page references ${refs.length} assets`);
    for (const ref of [...refs, 'assets/api.js', 'assets/transport.js', 'assets/token.js', 'assets/charts.js', 'assets/history.js']) {
      const r = await fetch(`${sys.url}/${ref}`, { headers: { 'Accept-Encoding': 'gzip' } });
      const type = ref.endsWith('.css') ? 'text/css' : 'text/javascript';
      check(r.status === 200 && r.headers.get('content-type').startsWith(type) && (await r.text()).length > 100,
            `${ref}: 200 ${type}${r.headers.get('content-encoding') ? ', gzip' : ''}`);
    }
    const big = await fetch(`${sys.url}/assets/uPlot.iife.min.js`, { headers: { 'Accept-Encoding': 'gzip' } });
    await big.arrayBuffer();
    check(big.headers.get('content-encoding') === 'gzip' && big.headers.get('etag').endsWith('-gz"'), 'uPlot is gzipped with its own tag');
    const missing = await fetch(`${sys.url}/assets/nothing.js`);
    const err = await missing.json();
    check(missing.status === 404 && err.error.code === 'not_found', 'an unknown asset is a 404 JSON error');
  },

  // Values, charts and presence on the default (WebSocket) transport; sparklines filled with the
  // minutes before the page opened; the screenshot.
  async live(sys) {
    // A series whose last minutes were published before the page opens: 10 readings older than
    // the sparkline's 5 minutes, 40 inside them (the oldest a minute inside, so it stays there
    // while the test runs, even on a slow machine).
    const t0 = Date.now();
    const past = [];
    for (let i = 0; i < 10; i++) past.push({ value: 18 + i * 0.1, ts: t0 - 600_000 + i * 25_000, unit: 'Cel' });
    for (let i = 0; i < 40; i++) past.push({ value: 21 + Math.sin(i / 5) * 2, ts: t0 - 240_000 + i * 6_000, unit: 'Cel' });
    publish(sys, 'warm/temperature', past);
    sys.sim('room-', 8, 2);
    const doomed = sys.sim('doomed-', 1, 2);
    sys.sim('fast-', 1, 10);  // 3000 readings per 5 minutes: its history comes as 1 s averages
    await until('series in storage', async () => (await sys.api('/api/v1/sensors')).series.length >= 11);
    await until('the past readings stored', async () => (await sys.storedIds('warm/temperature')).length === 50);
    await sleep(1500);  // some readings of the simulated series before the page opens
    const b = await browser();
    try {
      // The history of room-0001 is fetched from the bridge at once but handed to the page only
      // after the page received live readings of it; room-0002's first fetch fails (it is retried
      // once, later).
      let failedOnce = false, page = null, liveWhileHeld = -1;
      const liveCount = async () => (page ? page.evaluate(() => __dashboard.series()['room-0001/temperature']?.count ?? 0) : 0);
      const setup = (context) => context.route(/\/readings\?/, async (route) => {
        const u = route.request().url();
        if (u.includes('/room-0002/') && !failedOnce) { failedOnce = true; return route.abort('failed'); }
        if (!u.includes('/room-0001/')) return route.continue();
        const response = await route.fetch();
        try {
          await until('live readings of room-0001 while its history is held', async () => (await liveCount()) >= 3, 15_000);
        } finally {
          liveWhileHeld = await liveCount().catch(() => -1);
          await route.fulfill({ response });
        }
      });
      ({ page } = await openPage(b, sys.url + '/?trace=1', { setup }));
      const loaded = Date.now();
      const warm = await until('the sparkline of warm/temperature to show its last minutes', async () => {
        const s = (await dash(page)).series['warm/temperature'];
        return s?.recent === 'done' && s.drawn === 40 && s;
      }, 10_000);
      check(warm.points === 40 && warm.count === 0,
            `${warm.drawn} readings published before the page opened are on the sparkline ${((Date.now() - loaded) / 1000).toFixed(1)} s after load (none older than its window)`);
      await until('WebSocket live', async () => { const d = await dash(page); return d.mode === 'websocket' && d.state === 'live'; });
      check(true, 'the page connects by WebSocket');
      for (let i = 0; i < 5; i++) {
        publish(sys, 'warm/temperature', [{ value: 22 + i * 0.2, ts: Date.now(), unit: 'Cel' }]);
        await sleep(200);
      }
      await until('live readings appended to warm/temperature', async () => {
        const s = (await dash(page)).series['warm/temperature'];
        return s.count === 5 && s.drawn === 45;
      });
      await checkSparkline(sys, page, 'warm/temperature', 'history then live', t0 - 300_000);

      const held = await until('the late history of room-0001', async () => (await dash(page)).series['room-0001/temperature'].recent === 'done');
      const sp = await checkSparkline(sys, page, 'room-0001/temperature', 'history answered late, live readings arriving meanwhile');
      const live1 = (await dash(page)).series['room-0001/temperature'].ids;
      check(held && liveWhileHeld >= 3 && sp.ids.includes(live1[0]) && Math.min(...sp.ids) < live1[0],
            `room-0001: readings from before the page opened merged with ${liveWhileHeld} that arrived live while the fetch was in flight`);
      await until('room-0002 history after a failure and a retry',
                  async () => (await dash(page)).series['room-0002/temperature'].recent === 'done', 20_000);
      await checkSparkline(sys, page, 'room-0002/temperature', 'history retried once after a failure');
      const recent = await page.evaluate(() => __dashboard.recent);
      check(recent.failures === 1 && recent.maxInFlight <= 3,
            `history requests: ${recent.requests}, at most ${recent.maxInFlight} at once, ${recent.failures} failure`);
      const fast = await until('the history of the dense series', async () => {
        const s = (await dash(page)).series['fast-0000/temperature'];
        return s.recent === 'done' && s;
      });
      // The chart draws on animation frames while readings arrive at 10 Hz: compare what it drew
      // with the buffer in one snapshot taken once the last frame caught up.
      let fastSp = null, drawn = -1;
      await until('the dense series drawn up to date', async () => {
        ({ fastSp, drawn } = await page.evaluate(() => ({
          fastSp: __dashboard.sparkline('fast-0000/temperature'),
          drawn: __dashboard.series()['fast-0000/temperature'].drawn,
        })));
        return drawn === fastSp.past + fastSp.ids.length;
      }, 10_000);
      check(fast && fastSp.past >= 1 && drawn === fastSp.past + fastSp.ids.length && new Set(fastSp.ids).size === fastSp.ids.length,
            `fast-0000 (10 Hz): ${fastSp.past} 1 s averages from before the page opened, then ${fastSp.ids.length} live readings`);
      await checkNoGap(sys, await dash(page));
      const card = page.locator('[data-series="room-0000/temperature"]');
      const value1 = await card.locator('.value').textContent();
      const spark1 = await card.locator('.spark').screenshot();
      const count1 = (await dash(page)).series['room-0000/temperature'].count;
      await until('new readings on the card', async () => (await dash(page)).series['room-0000/temperature'].count >= count1 + 4);
      await until('the value to change', async () => (await card.locator('.value').textContent()) !== value1);
      check(/^-?\d+\.\d\d$/.test(await card.locator('.value').textContent()) && (await card.locator('.unit').textContent()) === '°C',
            'the card shows a value with its unit');
      check(/s ago|min ago/.test(await card.locator('.age').textContent()), 'the card shows the age of the last reading');
      await until('the sparkline to move', async () => !(await card.locator('.spark').screenshot()).equals(spark1));
      check(true, 'the sparkline redraws as readings arrive');
      check(await page.locator('#transport').getAttribute('data-state') === 'live' &&
            (await page.locator('#t-mode').textContent()) === 'WebSocket', 'the transport indicator says WebSocket, live');

      const doomedCard = page.locator('[data-series="doomed-0000/temperature"] .presence');
      await until('the doomed sensor online', async () => (await doomedCard.textContent()) === 'online');
      await stop(doomed, 'SIGKILL');  // no DISCONNECT: the broker publishes its last will
      await until('presence to flip to offline', async () => (await doomedCard.textContent()) === 'offline');
      check(true, 'a killed sensor shows offline (last will)');
      check(await page.locator('[data-series="room-0001/temperature"] .presence').textContent() === 'online', 'the others stay online');
      check(!(await page.locator('#token').isVisible()) && !(await page.evaluate(() => __dashboard.waitingForToken)),
            'authentication off: no token form');
      await checkNoCspViolation(page, 'WebSocket, cards, sparklines and their history');
      await sleep(1500);  // let the sparklines gather a few more points for the picture
      await page.screenshot({ path: path.join(SHOTS, 'dashboard.png') });
      console.log(`screenshot: ${path.join(SHOTS, 'dashboard.png')}`);
    } finally {
      await b.close();
    }
  },

  // The WebSocket path fails for real (the socket is dropped and new ones refused): SSE takes over.
  // Then the bridge restarts with SSE blocked: long polling takes over; then again with long polls
  // blocked: interval polling. At the end every series' received ids equal storage's.
  async fallback(sys) {
    sys.sim('fb-', 5, 4);
    await until('series in storage', async () => (await sys.api('/api/v1/sensors')).series.length >= 5);
    const b = await browser();
    try {
      const context = await b.newContext({ viewport: { width: 1280, height: 820 } });
      let wsBlocked = false;
      const open = [];
      await context.routeWebSocket(/\/api\/v1\/ws/, (ws) => {
        if (wsBlocked) return ws.close({ code: 1011, reason: 'blocked by the test' });
        ws.connectToServer();  // pass-through, both ways
        open.push(ws);
      });
      let sseBlocked = false, longPollBlocked = false;
      await context.route(/\/api\/v1\/(stream|updates)/, (route) => {
        const u = route.request().url();
        if (sseBlocked && u.includes('/stream')) return route.abort('connectionrefused');
        if (longPollBlocked && u.includes('/updates') && !u.includes('timeout=0')) return route.abort('connectionrefused');
        return route.continue();
      });
      const page = await context.newPage();
      page.on('pageerror', (e) => console.error('page error:', e.message));
      await page.goto(sys.url + '/?trace=1');
      await until('WebSocket live', async () => { const d = await dash(page); return d.mode === 'websocket' && d.state === 'live' && d.delivered > 20; });
      check(true, 'WebSocket live, readings flowing');

      wsBlocked = true;
      for (const ws of open) await ws.close({ code: 1011, reason: 'dropped by the test' });
      const atDrop = (await dash(page)).delivered;
      await until('SSE to take over', async () => { const d = await dash(page); return d.mode === 'sse' && d.state === 'live' && d.delivered > atDrop + 20; }, 30_000);
      check(true, 'WebSocket dropped and refused: Server-Sent Events took over');
      await checkNoGap(sys, await dash(page));

      sseBlocked = true;
      await sys.restartBridge(() => sleep(500));
      const atRestart = (await dash(page)).delivered;
      await until('long polling to take over', async () => { const d = await dash(page); return d.mode === 'longpoll' && d.delivered > atRestart + 20; }, 40_000);
      check(true, 'bridge restarted with streams blocked: long polling took over');
      await checkNoGap(sys, await dash(page));

      longPollBlocked = true;
      await sys.restartBridge(() => sleep(500));
      const atRestart2 = (await dash(page)).delivered;
      await until('interval polling to take over', async () => { const d = await dash(page); return d.mode === 'poll' && d.delivered > atRestart2 + 20; }, 40_000);
      check(await page.locator('#t-mode').textContent() === 'interval polling', 'long polls blocked: interval polling took over and says so');

      const d = await dash(page);
      check(JSON.stringify(d.fallbacks.map((f) => f.to)) === '["sse","longpoll","poll"]', `fell back WebSocket -> SSE -> long poll -> poll`);
      await checkNoGap(sys, d);
      await page.screenshot({ path: path.join(SHOTS, 'dashboard-fallback.png') });
    } finally {
      await b.close();
    }
  },

  // Each mode started directly (?transport=...) delivers readings without a gap; the polling
  // modes learn presence from /api/v1/sensors.
  async start_modes(sys) {
    sys.sim('m-', 3, 4);
    const doomed = sys.sim('gone-', 1, 1);
    await until('series in storage', async () => (await sys.api('/api/v1/sensors')).series.length >= 4);
    const b = await browser();
    try {
      for (const mode of ['sse', 'longpoll', 'poll']) {
        const { context, page } = await openPage(b, `${sys.url}/?transport=${mode}&trace=1`);
        await until(`${mode} live with readings`, async () => { const d = await dash(page); return d.mode === mode && d.state === 'live' && d.delivered > 30; }, 30_000);
        check(true, `?transport=${mode} starts in that mode and receives readings`);
        await checkNoGap(sys, await dash(page));
        if (mode === 'poll') {
          const p = page.locator('[data-series="gone-0000/temperature"] .presence');
          await until('gone-0000 online', async () => (await p.textContent()) === 'online');
          await stop(doomed, 'SIGKILL');
          await until('presence offline by polling', async () => (await p.textContent()) === 'offline');
          check(true, 'interval polling shows a killed sensor offline');
        }
        await context.close();
      }
    } finally {
      await b.close();
    }
  },

  // History: a series with an hour of past readings; the ranges; a custom range; CSV export.
  async history(sys) {
    sys.sim('live-', 2, 1);
    // 720 readings, one every 5 s over the last hour, with explicit timestamps and some noise.
    const now = Date.now();
    const lines = [];
    for (let i = 720; i >= 1; i--) {
      lines.push(JSON.stringify({ value: 20 + Math.sin(i / 60) * 3 + Math.sin(i * 7.3) * 0.4, ts: now - i * 5_000, unit: 'Cel' }));
    }
    const pub = spawnSync('mosquitto_pub', ['-p', String(sys.mqttPort), '-q', '1', '-t', 'sensors/archive/temperature', '-l'],
                          { input: lines.join('\n') + '\n' });
    check(pub.status === 0, 'published an hour of past readings');
    await until('the past readings stored', async () => (await sys.api('/api/v1/sensors/archive/temperature/aggregate?bucket=1d')).buckets.reduce((n, x) => n + x.count, 0) === 720);
    const b = await browser();
    try {
      const { page } = await openPage(b, sys.url + '/');
      await page.locator('[data-series="archive/temperature"]').click();
      await until('the last hour loaded', async () => (await dash(page)).history.loads >= 1);
      let h = (await dash(page)).history;
      // "The last hour" ends when it is clicked: the readings older than an hour by then are out.
      const aged = Math.ceil((Date.now() - now) / 5_000) + 1;
      check(h.readings >= 720 - aged && h.buckets >= 300, `last hour: ${h.buckets} buckets of ${h.bucket}, ${h.readings} readings`);
      check(await page.locator('#h-chart canvas').count() > 0, 'the history chart is drawn');
      await page.screenshot({ path: path.join(SHOTS, 'dashboard-history.png') });

      // The last hour stays live while the view is open: a new reading shows in its bucket.
      const fresh = spawnSync('mosquitto_pub', ['-p', String(sys.mqttPort), '-q', '1', '-t', 'sensors/archive/temperature',
                                                '-m', JSON.stringify({ value: 99.5, ts: Date.now(), unit: 'Cel' })]);
      check(fresh.status === 0, 'published a new reading');
      h = await until('the new reading in the live history', async () => {
        const now = (await dash(page)).history;
        return now.live >= 1 && now.newest?.max === 99.5 && now;
      });
      check(h.newest.count >= 1 && h.newest.final === false, `the open bucket, provisional: ${JSON.stringify(h.newest)}`);

      await page.locator('[data-range="24h"]').click();
      await until('the last day loaded', async () => (await dash(page)).history.loads >= 2);
      h = (await dash(page)).history;
      // The 720 past readings and the one published while the last hour was open.
      check(h.readings === 721 && h.bucket !== '10s' && h.buckets < 100, `last day: ${h.buckets} buckets of ${h.bucket} (a coarser bucket), ${h.readings} readings`);

      // Custom: the first half hour of the past readings.
      const local = (ms) => new Date(ms - new Date(ms).getTimezoneOffset() * 60_000).toISOString().slice(0, 16);
      const from = Math.ceil((now - 3_600_000) / 60_000) * 60_000;
      await page.fill('#h-from', local(from));
      await page.fill('#h-to', local(from + 30 * 60_000));
      await page.locator('#h-custom button[type=submit]').click();
      await until('the custom range loaded', async () => (await dash(page)).history.loads >= 3);
      h = (await dash(page)).history;
      check(h.readings >= 358 && h.readings <= 361, `custom half hour: ${h.readings} readings in ${h.buckets} buckets of ${h.bucket}`);

      const [download] = await Promise.all([page.waitForEvent('download'), page.locator('#h-csv').click()]);
      const csv = fs.readFileSync(await download.path(), 'utf8').trim().split(/\r?\n/);
      check(csv[0] === 'id,sensor,metric,ts,value,unit,seq' && csv.length - 1 === h.readings,
            `CSV export: header and ${csv.length - 1} rows (${download.suggestedFilename()})`);
      await checkNoCspViolation(page, 'history chart and CSV export');
    } finally {
      await b.close();
    }
  },

  // Authentication on (bridgeConfig.auth): the token form, a refused token, the right one; the
  // token kept for the tab; tokens expiring mid-stream (WebSocket 1008, SSE token_expired) asked
  // for again and the same mode resumed after the same cursor; a narrower token's 403s shown on
  // the card and history they concern; a token for one sensor shows only its card.
  async auth(sys) {
    sys.sim('au-', 8, 2);
    sys.token = AUTH.all;
    await until('series in storage', async () => (await sys.api('/api/v1/sensors')).series.length >= 8);
    const bare = await fetch(`${sys.url}/api/v1/sensors`);
    check(bare.status === 401 && /^Bearer/.test(bare.headers.get('www-authenticate')), 'the API answers 401 without a token');
    const b = await browser();
    const form = (page) => ({
      shown: () => page.locator('#token').isVisible(),
      why: () => page.locator('#token-why').textContent(),
      async enter(token, submit = 'click') {
        await page.fill('#token-input', token);
        if (submit === 'click') await page.locator('#token button[type=submit]').click();
        else await page.press('#token-input', 'Enter');
      },
    });
    const liveWith = (page, mode, n) => until(`${mode} live with readings`, async () => {
      const d = await dash(page);
      if (d.mode === mode && d.state === 'live' && d.delivered > n) return d;
      throw new Error(`${d.mode} ${d.state}, ${d.delivered} delivered, fallbacks ${JSON.stringify(d.fallbacks)}, token form ${await page.locator('#token').isVisible() ? 'shown' : 'hidden'}`);
    }, 30_000);
    try {
      // The form; a wrong token; the right one; a reload in the same tab.
      const { context, page } = await newPage(b, `${sys.url}/?trace=1`);
      const f = form(page);
      await until('the token form', f.shown);
      check(/requires a token/.test(await f.why()) && await page.getByLabel('Bearer token').getAttribute('type') === 'password',
            `the page asks for a token: "${await f.why()}", a labelled password field`);
      check(!(await page.evaluate(() => __dashboard.ready)) && (await page.locator('#t-health').textContent()) === 'waiting for a token',
            'nothing is loaded meanwhile; the transport pill says it waits for a token');
      await f.enter('not-a-token-of-this-bridge', 'enter');
      await until('the refusal', async () => (await f.shown()) && /refused/.test(await f.why()));
      check(true, `a wrong token is refused: "${await f.why()}"`);
      await page.screenshot({ path: path.join(SHOTS, 'dashboard-token.png') });
      await f.enter(AUTH.all);
      await liveWith(page, 'websocket', 20);
      await until('values on every card', async () => {
        const s = Object.values((await dash(page)).series);
        return s.length === 8 && s.every((x) => x.value !== null);
      });
      check(!(await f.shown()), 'the right token: the form closes, all 8 cards show live values over WebSocket');
      check(await page.evaluate(() => sessionStorage.getItem('telemetry.token')) === AUTH.all, 'the token is kept in sessionStorage');
      await page.reload();
      await until('the dashboard to start again', () => page.evaluate(() => window.__dashboard?.ready));
      await liveWith(page, 'websocket', 10);
      check(!(await f.shown()), 'a reload in the same tab uses the kept token: no form, live again');
      await checkNoCspViolation(page, 'token form and live page');
      await context.close();

      // Tokens expiring mid-stream. WebSocket: the narrower token replaces it, so the cards of the
      // other sensors meet 403s. SSE: a fresh token for everything; no gap, no duplicate.
      for (const [mode, next] of [['websocket', AUTH.one], ['sse', jwt(3600)]]) {
        // One card per row, so the last cards are off screen and ask for their history late.
        const { context, page } = await newPage(b, `${sys.url}/?transport=${mode}&trace=1`, { size: { width: 420, height: 400 } });
        const f = form(page);
        await until('the token form', f.shown);
        await f.enter(jwt(15));  // long enough to go live first on a slow machine
        const before = await liveWith(page, mode, 10);
        await until('the form again when the token expires', f.shown, 30_000);
        const atExpiry = await dash(page);
        check(atExpiry.delivered > before.delivered && /refused/.test(await f.why()),
              `${mode}: the token expired mid-stream after ${atExpiry.delivered} readings; the form asks again: "${await f.why()}"`);
        await sleep(1500);  // readings committed while the page has no token
        await f.enter(next);
        const after = await liveWith(page, mode, atExpiry.delivered + 10);
        check(after.fallbacks.length === 0, `${mode}: the same mode resumed after the cursor (no fall back)`);
        await checkNoGap(sys, after);
        if (mode === 'websocket') {
          const resumed = Object.entries(after.series).filter(([, s]) => s.ids.some((id) => id > atExpiry.cursor)).map(([k]) => k);
          check(JSON.stringify(resumed) === '["au-0001/temperature"]', 'after it only au-0001 is delivered, the one sensor the new token grants');
          const last = page.locator('[data-series="au-0007/temperature"]');
          await last.scrollIntoViewIfNeeded();
          await until('the 403 on the last card', async () => (await dash(page)).series['au-0007/temperature'].recent === 'forbidden');
          check(await last.locator('.note').isVisible() && /does not cover/.test(await last.locator('.note').textContent()) && !(await f.shown()),
                `a card outside the grant says "${await last.locator('.note').textContent()}", no token form`);
          await page.locator('[data-series="au-0000/temperature"]').click();
          await until('the 403 in the history view', async () => /does not cover/.test(await page.locator('#h-status').textContent()));
          check(!(await f.shown()), 'the history of a series outside the grant says the token does not cover it, no token form');
        }
        await checkNoCspViolation(page, `${mode}: expiry and renewal`);
        await context.close();
      }

      // A token for one sensor: only its card.
      {
        const { context, page } = await newPage(b, `${sys.url}/`);
        await until('the token form', form(page).shown);
        await form(page).enter(AUTH.one);
        await liveWith(page, 'websocket', 10);
        await sleep(1000);
        const keys = Object.keys((await dash(page)).series);
        check(JSON.stringify(keys) === '["au-0001/temperature"]' && await page.locator('.card').count() === 1,
              `a token for sensors/au-0001/#: only its card (${keys})`);
        await page.screenshot({ path: path.join(SHOTS, 'dashboard-auth.png') });
        await context.close();
      }
    } finally {
      await b.close();
    }
  },

  // The dashboard over HTTPS and WSS. Chromium trusts exactly the bridge's key
  // (--ignore-certificate-errors-spki-list, the key's SHA-256), and refuses the page without it.
  async tls(sys) {
    check(sys.url.startsWith('https://localhost:'), `the bridge serves HTTPS (${sys.url})`);
    sys.sim('tls-', 2, 5);
    await until('series in storage', async () => (await sys.api('/api/v1/sensors')).series.length >= 2);
    const untrusting = await browser();
    try {
      const page = await (await untrusting.newContext()).newPage();
      const err = await page.goto(`${sys.url}/`).then(() => null, (e) => e.message);
      check(/ERR_CERT/.test(err ?? ''), `without trusting the certificate Chromium refuses the page (${(err ?? 'loaded').split('\n')[0]})`);
    } finally {
      await untrusting.close();
    }
    const cert = new crypto.X509Certificate(fs.readFileSync(path.join(sys.dir, 'certs', 'server.pem')));
    const spki = crypto.createHash('sha256').update(cert.publicKey.export({ type: 'spki', format: 'der' })).digest('base64');
    const b = await browser([`--ignore-certificate-errors-spki-list=${spki}`]);
    try {
      for (const mode of ['websocket', 'sse', 'longpoll']) {
        const { context, page } = await openPage(b, `${sys.url}/?transport=${mode}&trace=1`);
        await until(`${mode} live over TLS`, async () => {
          const d = await dash(page);
          return d.mode === mode && d.state === 'live' && d.delivered > 20;
        }, 30_000);
        check(await page.evaluate(() => location.protocol) === 'https:', `${mode}: the page came over HTTPS and receives readings`);
        await checkNoGap(sys, await dash(page));
        await checkNoCspViolation(page, `${mode} over TLS`);
        await context.close();
      }
    } finally {
      await b.close();
    }
  },

  // Not a test: frame timing with many series updating (bench/dashboard.sh prints the figures).
  async smoothness(sys) {
    const sensors = Number(process.env.SENSORS ?? 200), seconds = Number(process.env.DURATION ?? 20);
    sys.sim('load-', sensors, 1);
    await until('all series in storage', async () => (await sys.api('/api/v1/sensors')).series.length >= sensors, 60_000);
    const b = await browser();
    try {
      const { page } = await openPage(b, sys.url + '/', { size: { width: 1600, height: Number(process.env.HEIGHT ?? 1000) } });
      await until('backfill done', () => page.evaluate(() => __dashboard.backfilled), 60_000);
      await sleep(3000);
      const before = (await dash(page)).delivered;
      const m = await page.evaluate((ms) => new Promise((resolve) => {
        const frames = [];
        let busy = 0, longTasks = 0, last = performance.now();
        const obs = new PerformanceObserver((l) => { for (const e of l.getEntries()) { busy += e.duration; longTasks++; } });
        obs.observe({ type: 'longtask' });
        const t0 = performance.now();
        // Main-thread busy time: how late a 0 ms timer chain runs adds up the time others held it.
        let lateness = 0, expected = performance.now();
        const probe = () => { const n = performance.now(); lateness += Math.max(0, n - expected - 4); expected = n; if (n - t0 < ms) setTimeout(probe, 0); };
        setTimeout(probe, 0);
        const tick = (t) => {
          frames.push(t - last);
          last = t;
          if (t - t0 < ms) requestAnimationFrame(tick);
          else { obs.disconnect(); resolve({ frames, busy, longTasks, lateness, elapsed: t - t0 }); }
        };
        requestAnimationFrame(tick);
      }), seconds * 1000);
      const d = await dash(page);
      const f = m.frames.slice(1).sort((x, y) => x - y);
      const q = (p) => f[Math.min(f.length - 1, Math.floor(p * f.length))].toFixed(1);
      const visible = await page.evaluate(() => [...document.querySelectorAll('.card')].filter((c) => c.series.visible).length);
      console.log(`series: ${Object.keys(d.series).length} (${visible} on screen), transport: ${d.mode}, readings during the run: ${d.delivered - before} in ${(m.elapsed / 1000).toFixed(1)} s`);
      console.log(`frames: ${f.length}, interval median ${q(0.5)} ms, p99 ${q(0.99)} ms, max ${f[f.length - 1].toFixed(1)} ms`);
      console.log(`chart draw cost (moving average): ${(await page.evaluate(() => __dashboard.drawCostMs)).toFixed(2)} ms`);
      const recent = await page.evaluate(() => __dashboard.recent);
      console.log(`sparkline history: ${recent.requests} requests (cards near the screen only), at most ${recent.maxInFlight} at once, ${recent.failures} failed`);
      console.log(`long tasks (>50 ms): ${m.longTasks}, ${m.busy.toFixed(0)} ms; main thread busy (timer lateness): ${(100 * m.lateness / m.elapsed).toFixed(1)} %`);
    } finally {
      await b.close();
    }
  },
};

// ---------------------------------------------------------------- main

if (!cases[CASE]) {
  console.error(`unknown case ${CASE}; one of ${Object.keys(cases).join(', ')}`);
  process.exit(2);
}
const sys = new System();
let failed = false;
try {
  await sys.up(bridgeConfig[CASE]);
  await cases[CASE](sys);
} catch (e) {
  failed = true;
  console.error(`not ok - ${CASE}: ${e.stack ?? e}`);
  if (sys.dir) process.env.KEEP_TEST_DIR = '1';
  if (sys.dir) console.error(`logs kept in ${sys.dir}`);
} finally {
  await sys.down().catch((e) => console.error(e));
}
process.exit(failed ? 1 : 0);
