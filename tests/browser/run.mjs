#!/usr/bin/env node
// Drives page/ (the official MCP TypeScript SDK client, bundled for the browser) in
// headless Chromium against an MCP server protected by mcp-gatekeeper that a caller
// started, e.g. tests/browser.rs with
//
//   examples/mcp_server --listen 127.0.0.1:0 --allow-origin http://localhost:PAGE_PORT
//
//   node run.mjs --mcp-resource http://127.0.0.1:PORT/mcp --token JWT \
//                [--write-token JWT] --page-port PAGE_PORT [--out DIR] \
//                [--chromium /usr/bin/chromium] [--timeout SECONDS]
//
// It bundles the page (build.mjs), serves it from two static servers on 127.0.0.1 and
// opens it in one Chromium (Debian's, never a downloaded one) twice, each time in a
// fresh browser context:
//
//   allowed  from http://localhost:PAGE_PORT, the origin the server was told to allow
//            (localhost, not 127.0.0.1, so the page and the server are different
//            origins); every step of the page must pass (see page/app.js).
//   foreign  the same page from http://localhost:OTHER_PORT (a port picked here, which
//            the server was not told about): the page must get nothing from the
//            server. Its fetches fail with a TypeError (CORS): for a preflighted
//            request (JSON, Authorization) the server's preflight answer names no
//            origin, so the browser never sends the request; the page's "simple"
//            request (text/plain POST, no preflight) does reach the server, which
//            answers 403, and the browser keeps that answer from the page. The driver
//            sees that 403 in the DevTools protocol's Network events.
//
// Requests are recorded three ways: by the page's own fetch wrapper (what JS saw), by
// Playwright's page.on('request'/'response'/'requestfailed') (which does not report
// CORS preflights), and by a DevTools protocol session's Network events, which do
// report the preflights (type "Preflight"), the CORS errors, and (ExtraInfo) the status
// and CORS headers the server sent even where the browser kept the answer from the page.
// The allowed run shows a single preflight: its answer (Access-Control-Max-Age 600,
// every header and method the SDK uses) is cached, and the DevTools event of a request
// comes before that of its preflight.
//
// Screenshots go to DIR/allowed.png and DIR/foreign.png (default DIR: a new folder under
// the system temp dir, named in the report). Prints ONE JSON line on stdout:
//
//   {"ok":true|false,"failures":[…],"screenshots":{…},"chromium":"…",
//    "allowed":{"page_origin":…,"steps":{name:{status,…}},"page_exchanges":["POST SERVER/mcp 401",…],
//               "playwright":[…],"network":[…incl. "OPTIONS SERVER/mcp 200 (preflight)"],…},
//    "foreign":{…}}
//
// and exits non-zero on failure (the reasons are also on stderr). Everything it starts
// (the page servers, Chromium) is stopped before it exits; a global timeout (default
// 60 s) fails the run. Chromium talks to Playwright over a pipe and exits when this
// process dies, even by SIGKILL (a caller's kill_on_drop leaves no browser behind).

import { createServer } from 'node:http';
import { constants } from 'node:fs';
import { access, mkdtemp, mkdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';
import { build } from './build.mjs';

const { values: args } = parseArgs({
  options: {
    'mcp-resource': { type: 'string' },
    token: { type: 'string' },
    'write-token': { type: 'string' },
    'page-port': { type: 'string' },
    out: { type: 'string' },
    chromium: { type: 'string', default: '/usr/bin/chromium' },
    timeout: { type: 'string', default: '60' },
  },
});
for (const required of ['mcp-resource', 'token', 'page-port']) {
  if (!args[required]) {
    console.error(`missing --${required}`);
    process.exit(2);
  }
}
const resource = args['mcp-resource'];
const serverOrigin = new URL(resource).origin;
const pagePort = Number(args['page-port']);

// The flags asked for on this machine: without the background-networking ones
// Chromium keeps trying to reach Google's services, which are refused here.
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const failures = [];
function check(condition, message) {
  if (!condition) failures.push(message);
  return condition;
}

// ---- the page servers --------------------------------------------------------------

function pageServer(dist, port) {
  const types = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8' };
  const served = [];
  const server = createServer(async (req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    served.push(`${req.method} ${path}`);
    const file = path === '/' ? '/index.html' : path;
    if (req.method !== 'GET' || !['/index.html', '/app.js'].includes(file)) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    try {
      const body = await readFile(join(dist, file));
      res.writeHead(200, {
        'content-type': types[file.slice(file.lastIndexOf('.'))],
        'cache-control': 'no-store',
      });
      res.end(body);
    } catch (error) {
      res.writeHead(500).end(String(error));
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve({ server, served, port: server.address().port }));
  });
}

// ---- one scenario ------------------------------------------------------------------

function place(url) {
  const u = new URL(url);
  return (u.origin === serverOrigin ? 'SERVER' : u.origin) + u.pathname;
}

async function scenario(browser, name, port, outDir) {
  const pageOrigin = `http://localhost:${port}`;
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const page = await context.newPage();
  const report = { page_origin: pageOrigin };

  // Playwright's view (no preflights), in the order the requests were sent.
  const playwright = [];
  const byRequest = new Map();
  page.on('request', (request) => {
    if (!request.url().startsWith(serverOrigin)) return;
    const entry = { method: request.method(), place: place(request.url()) };
    byRequest.set(request, entry);
    playwright.push(entry);
  });
  page.on('response', (response) => {
    const entry = byRequest.get(response.request());
    if (entry) entry.status = response.status();
  });
  page.on('requestfailed', (request) => {
    const entry = byRequest.get(request);
    if (entry) entry.failure = request.failure()?.errorText;
  });

  // The DevTools protocol's view: preflights included, CORS errors named.
  const network = [];
  const byId = new Map();
  const cdp = await context.newCDPSession(page);
  cdp.on('Network.requestWillBeSent', (e) => {
    if (!e.request.url.startsWith(serverOrigin)) return;
    const entry = { method: e.request.method, place: place(e.request.url), type: e.type, at: e.timestamp };
    byId.set(e.requestId, entry);
    network.push(entry);
  });
  cdp.on('Network.responseReceived', (e) => {
    const entry = byId.get(e.requestId);
    if (entry) {
      entry.status = e.response.status;
      entry.type = e.type;
    }
  });
  // The answer as the server sent it, also when CORS keeps it from the page (then no
  // responseReceived comes): status and the CORS headers.
  const raw = new Map();
  cdp.on('Network.responseReceivedExtraInfo', (e) => {
    const h = Object.fromEntries(Object.entries(e.headers).map(([k, v]) => [k.toLowerCase(), v]));
    raw.set(e.requestId, {
      status: e.statusCode,
      acao: h['access-control-allow-origin'] ?? null,
      expose: h['access-control-expose-headers'] ?? null,
    });
  });
  cdp.on('Network.loadingFailed', (e) => {
    const entry = byId.get(e.requestId);
    if (entry) {
      entry.failure = e.errorText;
      if (e.corsErrorStatus) entry.cors_error = e.corsErrorStatus.corsError;
    }
  });
  await cdp.send('Network.enable');

  const console_ = [];
  page.on('console', (m) => console_.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => console_.push(`pageerror: ${e.message}`));

  const fragment = new URLSearchParams({ resource, token: args.token });
  if (args['write-token']) fragment.set('write_token', args['write-token']);
  await page.goto(`${pageOrigin}/index.html#${fragment}`);
  await page.waitForSelector('body[data-done="1"]', { timeout: 30_000 });

  // The DOM, as the assertions read it.
  report.dom_steps = await page.$$eval('#steps > li', (lis) =>
    lis.map((li) => ({ id: li.id, name: li.dataset.name, status: li.dataset.status })),
  );
  const summary = JSON.parse(await page.textContent('#result'));
  await page.screenshot({ path: join(outDir, `${name}.png`), fullPage: true });

  report.page_ok = summary.ok;
  report.fatal = summary.fatal;
  report.steps = summary.steps;
  report.page_exchanges = summary.exchanges.map(
    (e) => `${e.method} ${e.place} ${e.status ?? e.error}`,
  );
  report.resource_timing = summary.timing;
  report.playwright = playwright.map((e) =>
    [e.method, e.place, e.status, e.failure && `(${e.failure})`].filter((x) => x !== undefined && x !== null).join(' '),
  );
  for (const [id, entry] of byId) Object.assign(entry, { raw: raw.get(id) ?? null });
  // In the order the browser sent them (a preflight's event may come after its request's).
  network.sort((a, b) => a.at - b.at);
  report.network = network.map(
    (e) =>
      `${e.method} ${e.place} ${e.status ?? e.raw?.status ?? '-'}` +
      (e.type === 'Preflight' ? ' (preflight)' : '') +
      (e.failure ? ` (${e.failure}${e.cors_error ? `: ${e.cors_error}` : ''})` : ''),
  );
  // What the server sent, CORS headers included, for each request to it.
  report.network_detail = network.map((e) => ({
    method: e.method,
    place: e.place,
    type: e.type,
    status: e.raw?.status ?? e.status ?? null,
    // Whether the answer was handed to the page (null for a preflight, which the
    // browser reads itself).
    read_by_page: e.type === 'Preflight' ? null : e.status !== undefined,
    access_control_allow_origin: e.raw?.acao ?? null,
    access_control_expose_headers: e.raw?.expose ?? null,
    failure: e.failure ?? null,
    cors_error: e.cors_error ?? null,
  }));
  report.console = console_;
  await context.close();
  return report;
}

// ---- the checks --------------------------------------------------------------------

function checkAllowed(r) {
  const s = r.steps ?? {};
  check(!r.fatal, `allowed: the page stopped: ${r.fatal}`);
  const expected = ['challenge', 'metadata', 'whoami', 'step_up', args['write-token'] ? 'write' : null, 'simple']
    .filter(Boolean);
  for (const name of expected) {
    check(s[name]?.status === 'ok', `allowed: step ${name} is ${s[name]?.status}: ${s[name]?.error ?? ''}`);
  }
  const dom = Object.fromEntries(r.dom_steps.map((li) => [li.name, li.status]));
  for (const name of expected) {
    check(dom[name] === 'ok', `allowed: the DOM shows step ${name} as ${dom[name]}`);
  }
  check(r.page_ok === true, 'allowed: the page does not report ok');
  const metadata = `${serverOrigin}/.well-known/oauth-protected-resource${new URL(resource).pathname}`;
  check(s.challenge?.resource_metadata === metadata, `allowed: resource_metadata ${s.challenge?.resource_metadata}, not ${metadata}`);
  check(s.metadata?.resource === resource, `allowed: the metadata names ${s.metadata?.resource}`);
  check(
    ['mcp:read', 'mcp:write'].every((x) => s.metadata?.scopes_supported?.includes(x)),
    'allowed: scopes_supported lacks mcp:read or mcp:write',
  );
  check(s.whoami?.tools?.includes('write'), 'allowed: tools/list lacks write');
  check(s.step_up?.http_status === 403, 'allowed: the page did not see the 403');
  check(s.step_up?.challenge?.error === 'insufficient_scope', 'allowed: no insufficient_scope in the challenge the page read');
  check(s.step_up?.challenge?.scope?.split(' ').includes('mcp:write'), 'allowed: the challenge does not ask for mcp:write');
  check(r.page_exchanges.every((e) => !/Error/.test(e)), 'allowed: a fetch of the page failed');
  check(r.network.some((e) => e.endsWith('(preflight)')), 'allowed: no preflight seen');
  // net::ERR_ABORTED after an answer is the SDK dropping a body it does not read (the
  // 202 of a notification, the 405 of the SSE GET); any other failure is one.
  for (const e of r.network_detail) {
    check(
      e.read_by_page !== false && (!e.failure || e.failure === 'net::ERR_ABORTED'),
      `allowed: ${e.method} ${e.place} failed in the browser: ${e.failure} ${e.cors_error ?? ''}`,
    );
    check(
      e.access_control_allow_origin === r.page_origin,
      `allowed: ${e.method} ${e.place} ${e.status}: Access-Control-Allow-Origin is ${e.access_control_allow_origin}`,
    );
  }
}

function checkForeign(r) {
  const s = r.steps ?? {};
  check(!r.fatal, `foreign: the page stopped: ${r.fatal}`);
  // Nothing the page did got it an answer it could read.
  for (const name of ['challenge', 'metadata', 'whoami', 'step_up', 'simple']) {
    check(s[name]?.status === 'failed', `foreign: step ${name} is ${s[name]?.status}`);
  }
  for (const name of ['challenge', 'whoami', 'simple']) {
    check(/^TypeError/.test(s[name]?.error ?? ''), `foreign: step ${name} failed with ${s[name]?.error}, not a TypeError`);
  }
  check(r.page_exchanges.every((e) => /TypeError/.test(e)), 'foreign: the page read an answer');
  check(r.page_ok === false, 'foreign: the page reports ok');
  // The server's refusal of the one request that reached it.
  // The server's refusal of the one request that reached it, as sent (DevTools).
  check(
    r.network_detail.some((e) => e.method === 'POST' && e.type !== 'Preflight' && e.status === 403),
    'foreign: the server did not answer the simple POST 403 (DevTools Network events)',
  );
  for (const e of r.network_detail) {
    check(e.read_by_page !== true, `foreign: the page read ${e.method} ${e.place} ${e.status}`);
    check(
      e.access_control_allow_origin === null,
      `foreign: ${e.method} ${e.place} ${e.status} names Access-Control-Allow-Origin ${e.access_control_allow_origin}`,
    );
  }
  check(!r.page_exchanges.some((e) => / 2\d\d$/.test(e)), 'foreign: a 2xx reached the page');
}

// ---- main --------------------------------------------------------------------------

const outDir = args.out ?? (await mkdtemp(join(tmpdir(), 'mcp-gatekeeper-browser-')));
await mkdir(outDir, { recursive: true });
const result = { ok: false, failures, screenshots: {} };
let browser;
const servers = [];
const timer = setTimeout(() => {
  failures.push(`timed out after ${args.timeout} s`);
  finish(1);
}, Number(args.timeout) * 1000);

let finished = false;
async function finish(code) {
  if (finished) return;
  finished = true;
  clearTimeout(timer);
  // Bounded: should Chromium hang, exiting is enough (Playwright kills the browser it
  // launched when this process exits).
  await Promise.race([browser?.close().catch(() => {}), new Promise((r) => setTimeout(r, 5000))]);
  for (const s of servers) s.server.close();
  result.ok = code === 0 && failures.length === 0;
  process.stdout.write(`${JSON.stringify(result)}\n`);
  if (!result.ok) console.error(`browser test failed:\n  ${failures.join('\n  ')}`);
  process.exit(result.ok ? 0 : 1);
}

try {
  try {
    await access(args.chromium, constants.X_OK);
  } catch {
    throw new Error(
      `no Chromium at ${args.chromium}: install Debian's (apt-get install -y --no-install-recommends chromium) or give --chromium PATH`,
    );
  }
  const dist = await build();
  const allowed = await pageServer(dist, pagePort);
  servers.push(allowed);
  const foreign = await pageServer(dist, 0);
  servers.push(foreign);
  // launch() starts Chromium on a fresh temporary profile (--user-data-dir is
  // Playwright's to set: a playwright_chromiumdev_profile-* folder it removes on close);
  // each scenario gets a fresh context in it, so no preflight cache or state carries over.
  browser = await chromium.launch({
    executablePath: args.chromium,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: 30_000,
  });
  result.chromium = browser.version();
  result.allowed = await scenario(browser, 'allowed', allowed.port, outDir);
  result.foreign = await scenario(browser, 'foreign', foreign.port, outDir);
  result.screenshots = { allowed: join(outDir, 'allowed.png'), foreign: join(outDir, 'foreign.png') };
  result.page_server_requests = { allowed: allowed.served, foreign: foreign.served };
  checkAllowed(result.allowed);
  checkForeign(result.foreign);
  await finish(0);
} catch (error) {
  failures.push(`${error?.stack ?? error}`);
  await finish(1);
}
