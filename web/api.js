// Every request of the dashboard to the bridge: the bearer token, conditional GETs, and the stream
// URLs that carry the token as access_token (EventSource and WebSocket cannot set headers).
//
// With authentication on, the bridge answers 401 to a request without a valid token. A request
// that gets one waits for a new token, asked once however many requests are waiting (the page
// sets the prompt with setTokenPrompt), and is then sent again: callers only ever see answers
// to an accepted token. The token is kept in sessionStorage, for this tab and its reloads only.
// With authentication off no 401 comes, so nothing is ever asked.

const STORAGE_KEY = 'telemetry.token';

let token = sessionStorage.getItem(STORAGE_KEY);
let renewals = 0;        // tokens entered since the page loaded
let askForToken = null;  // ({refused, message}) => Promise<token>; null: a 401 is an ordinary error
let asking = null;       // the prompt in progress: every refused request waits for this one

// A status other than the one wanted; `message` is the bridge's own (docs/api.md 3.9).
export class HttpError extends Error {
  constructor(url, status, message) {
    super(`${url}: HTTP ${status}${message ? ` (${message})` : ''}`);
    this.status = status;
  }
}

export function setTokenPrompt(fn) { askForToken = fn; }

// A request carrying `sent` (a token or null) was refused: resolves once a newer token is in.
function tokenRefused(sent, message) {
  if (token !== sent) return Promise.resolve();  // another request already got a new one
  if (!asking) {
    sessionStorage.removeItem(STORAGE_KEY);  // a reload asks afresh instead of sending it again
    asking = askForToken({ refused: sent !== null, message }).then((t) => {
      token = t;
      renewals++;
      sessionStorage.setItem(STORAGE_KEY, t);
      asking = null;
    });
  }
  return asking;
}

// `promise`, or the signal's reason as soon as it aborts.
function unlessAborted(promise, signal) {
  if (!signal) return promise;
  signal.throwIfAborted();
  return new Promise((resolve, reject) => {
    const abort = () => reject(signal.reason);
    signal.addEventListener('abort', abort, { once: true });
    promise.then((v) => { signal.removeEventListener('abort', abort); resolve(v); }, reject);
  });
}

async function bridgeMessage(r) {
  try { return (await r.json()).error?.message ?? ''; } catch { return ''; }
}

// GET `url` (relative to the page); resolves with the Response of a 200 or a 304, throws HttpError
// for any other status. `etag` makes it conditional.
export async function get(url, { signal, etag } = {}) {
  for (;;) {
    const sent = token;
    const headers = {};
    if (etag) headers['If-None-Match'] = etag;
    if (sent !== null) headers.Authorization = `Bearer ${sent}`;
    // no-store: we revalidate ourselves, so the 304 is seen (the HTTP cache would hide it).
    const r = await fetch(url, { cache: 'no-store', headers, signal });
    if (r.ok || r.status === 304) return r;
    const message = await bridgeMessage(r);
    if (r.status !== 401 || !askForToken) throw new HttpError(url, r.status, message);
    await unlessAborted(tokenRefused(sent, message), signal);
  }
}

// GET of a JSON document: {status: 200, etag, body}, or {status: 304, etag} when `etag` matched.
export async function getJson(url, { signal, etag } = {}) {
  const r = await get(url, { signal, etag });
  if (r.status === 304) return { status: 304, etag };
  return { status: 200, etag: r.headers.get('ETag'), body: await r.json() };
}

// The bridge ended a stream because its token expired: resolves once a new token is in. The token
// is not tried again: requests may still pass with it until the end of that second.
export function tokenExpired() {
  return tokenRefused(token, 'the token has expired');
}

// After a stream ended for no visible reason: whether the bridge had refused the token. If it
// does now, this waits for a new one, like any request, and resolves true; false when the token
// is accepted or the bridge does not answer.
export async function tokenWasRenewed() {
  const before = renewals;
  try {
    await get('api/v1/sensors');
  } catch {
    return false;
  }
  return renewals !== before;
}

// The absolute URL of a stream, with the token as access_token.
export function streamUrl(path) {
  const u = new URL(path, location.href);
  if (token !== null) u.searchParams.set('access_token', token);
  return u.href;
}

export function webSocketUrl(path) {
  const u = new URL(streamUrl(path));
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  return u.href;
}
