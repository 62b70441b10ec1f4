#!/usr/bin/env node
// Upstream MCP server fixture built on the official TypeScript SDK (@modelcontextprotocol/sdk,
// pinned in package.json with express and zod, which it imports directly): one of the upstream
// MCP servers put behind mcp-gatekeeper-proxy in proxy/tests (its Python twin is
// tests/python/upstream_server.py). Streamable HTTP on 127.0.0.1. It does no authorization
// itself: it records every request that reaches it (method, path, headers, Authorization
// included, even the ones its Host check refuses) so a test can check what the proxy forwarded.
//
//   node tests/node/upstream_server.mjs [--port N] [--path /mcp] [--stateless] [--json]
//                                       [--allowed-host NAME]... [--no-host-check] [--keep-alive-ms N]
//
//   --port N            default 0 (ephemeral); the ready line says which
//   --path P            the MCP endpoint, default /mcp
//   --stateless         sessionIdGenerator undefined: a new McpServer + transport per POST, no
//                       Mcp-Session-Id; GET and DELETE answer 405 (Allow: POST)
//   --json              enableJsonResponse: a POST is answered with one application/json body,
//                       sent when the tool is done, instead of an SSE stream (progress
//                       notifications are then dropped)
//   --allowed-host NAME createMcpExpressApp({ allowedHosts }) (repeatable, replaces the default):
//                       the Host header's hostname, port ignored, must be one of these. Default:
//                       the SDK's own for a 127.0.0.1 bind, i.e. localhost, 127.0.0.1, [::1]; any
//                       other Host gets 403 {"jsonrpc":"2.0","error":{"code":-32000,
//                       "message":"Invalid Host: …"},"id":null}. Origin is not checked.
//   --no-host-check     plain express app, no Host validation at all
//   --keep-alive-ms N   the transport's SSE keep-alive comment interval (SDK default 15000)
//
// Tools:
//   whoami                        {authorization, bearer_claims (JWT payload, decoded, NOT
//                                 verified), session_id} of the HTTP request that carried the call
//   echo {text}                   text
//   write {text}                  {written: text}; does nothing else. For a gateway configured to
//                                 require scope mcp:write for it (mcp_client.mjs --flow step_up)
//   slow_stream {duration_ms=1000, interval_ms=50}
//                                 one notification per interval while it runs: notifications/progress
//                                 when the call carried _meta.progressToken, else
//                                 notifications/message (logging); each says the elapsed ms.
//                                 Returns {sent, elapsed_ms, aborted}
//   seen_headers {last=20}        the last requests recorded, newest last: {requests: [{t, method,
//                                 path, headers (lower-case, duplicates joined), raw_headers}]}
// HTTP test hooks (not MCP, not recorded): GET /_test/seen returns {requests: [...]} (all
// records, at most 500), POST /_test/reset clears them and returns {"ok":true}.
//
// Ready line on stdout (one JSON line): {"url":"http://127.0.0.1:PORT/mcp","port":PORT,
//   "stateless":false,"json":false,"host_check":["localhost","127.0.0.1","[::1]"] (or the
//   --allowed-host names, or "off"),"sdk":"@modelcontextprotocol/sdk@1.32.2","pid":…}
// Each request is also logged to stderr as one JSON line ({"ts_server":true,"request":{method,
// path,authorization,session}}), and so is {"slow_stream_done":…}. Ends on SIGTERM/SIGINT or when
// stdin (a pipe) closes, like tests/oidc/provider.mjs, so a test that dies never leaves it behind.

import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import express from 'express';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { createMcpExpressApp } from '@modelcontextprotocol/sdk/server/express.js';
import { z } from 'zod';

const { values: opts } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    path: { type: 'string', default: '/mcp' },
    stateless: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    'allowed-host': { type: 'string', multiple: true },
    'no-host-check': { type: 'boolean', default: false },
    'keep-alive-ms': { type: 'string' },
  },
  strict: true,
});
// The SDK's package.json is not in its exports map: find it from a resolved module path.
function sdkVersion() {
  let dir = path.dirname(createRequire(import.meta.url).resolve('@modelcontextprotocol/sdk/server/mcp.js'));
  for (; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const file = path.join(dir, 'package.json');
    if (fs.existsSync(file)) {
      const pkg = JSON.parse(fs.readFileSync(file, 'utf8'));
      if (pkg.name === '@modelcontextprotocol/sdk') return pkg.version;
    }
  }
  return 'unknown';
}
const SDK_VERSION = sdkVersion();
const log = (obj) => process.stderr.write(`${JSON.stringify({ ts_server: true, ...obj })}\n`);

// ------------------------------------------------------------------ request recording
const seen = [];
const MAX_SEEN = 500;
function record(req) {
  const entry = {
    t: Date.now(),
    method: req.method,
    path: req.originalUrl ?? req.url,
    headers: { ...req.headers }, // lower-cased names; duplicates joined by node
    raw_headers: req.rawHeaders, // as sent: order, case and duplicates kept
  };
  seen.push(entry);
  if (seen.length > MAX_SEEN) seen.shift();
  log({ request: { method: entry.method, path: entry.path, authorization: req.headers.authorization ?? null,
    session: req.headers['mcp-session-id'] ?? null } });
}

function bearerClaims(authorization) {
  const m = /^Bearer\s+([^.\s]+)\.([^.\s]+)\.([^.\s]*)$/i.exec(authorization ?? '');
  if (!m) return null;
  try { return JSON.parse(Buffer.from(m[2], 'base64url').toString('utf8')); } catch { return null; }
}

// ------------------------------------------------------------------ the MCP server
function buildServer() {
  const server = new McpServer(
    { name: 'ts-upstream', version: SDK_VERSION },
    { capabilities: { logging: {} } },
  );

  server.registerTool('whoami', {
    description: 'The Authorization header this upstream received with the call',
    inputSchema: {},
  }, async (_args, extra) => {
    const authorization = extra.requestInfo?.headers?.authorization ?? null;
    const result = { authorization, bearer_claims: bearerClaims(authorization), session_id: extra.sessionId ?? null };
    return { content: [{ type: 'text', text: JSON.stringify(result) }], structuredContent: result };
  });

  server.registerTool('echo', {
    description: 'Returns its text',
    inputSchema: { text: z.string() },
  }, async ({ text }) => ({ content: [{ type: 'text', text }] }));

  server.registerTool('write', {
    description: 'Pretends to write its text (a tool a gateway can put behind scope mcp:write)',
    inputSchema: { text: z.string() },
  }, async ({ text }) => {
    const result = { written: text };
    return { content: [{ type: 'text', text: JSON.stringify(result) }], structuredContent: result };
  });

  server.registerTool('slow_stream', {
    description: 'Sends a notification every interval_ms for duration_ms, then answers',
    inputSchema: { duration_ms: z.number().int().min(0).max(60_000).optional(), interval_ms: z.number().int().min(5).max(10_000).optional() },
  }, async ({ duration_ms: duration = 1000, interval_ms: interval = 50 }, extra) => {
    const start = Date.now();
    const token = extra._meta?.progressToken;
    const total = Math.max(1, Math.floor(duration / interval));
    let sent = 0;
    while (Date.now() - start < duration && !extra.signal.aborted) {
      await new Promise((r) => setTimeout(r, interval));
      sent += 1;
      const elapsed = Date.now() - start;
      if (token !== undefined) {
        await extra.sendNotification({ method: 'notifications/progress',
          params: { progressToken: token, progress: sent, total, message: `t=${elapsed}` } });
      } else {
        await extra.sendNotification({ method: 'notifications/message',
          params: { level: 'info', logger: 'slow_stream', data: { n: sent, elapsed_ms: elapsed } } });
      }
    }
    const result = { sent, elapsed_ms: Date.now() - start, aborted: extra.signal.aborted };
    log({ slow_stream_done: result });
    return { content: [{ type: 'text', text: JSON.stringify(result) }], structuredContent: result };
  });

  server.registerTool('seen_headers', {
    description: 'The last requests this upstream received (method, path, headers)',
    inputSchema: { last: z.number().int().min(1).max(MAX_SEEN).optional() },
  }, async ({ last = 20 }) => {
    const result = { requests: seen.slice(-last) };
    return { content: [{ type: 'text', text: JSON.stringify(result) }], structuredContent: result };
  });

  return server;
}

// ------------------------------------------------------------------ HTTP
const HOST = '127.0.0.1';
let app;
if (opts['no-host-check']) {
  app = express();
  app.use(express.json());
} else {
  app = createMcpExpressApp({ host: HOST, allowedHosts: opts['allowed-host'] });
}
// Record before anything can refuse the request (the Host check runs in createMcpExpressApp's
// first middleware, so prepend ours to the router stack).
app.use((req, _res, next) => { if (!req.path.startsWith('/_test/')) record(req); next(); });
app.router?.stack?.unshift(app.router.stack.pop());

app.get('/_test/seen', (_req, res) => res.json({ requests: seen }));
app.post('/_test/reset', (_req, res) => { seen.length = 0; res.json({ ok: true }); });

const transportOptions = {
  enableJsonResponse: opts.json,
  ...(opts['keep-alive-ms'] !== undefined ? { keepAliveMs: Number(opts['keep-alive-ms']) } : {}),
};

const sessions = new Map(); // session id -> transport
if (opts.stateless) {
  app.post(opts.path, async (req, res) => {
    const server = buildServer();
    const transport = new StreamableHTTPServerTransport({ ...transportOptions, sessionIdGenerator: undefined });
    res.on('close', () => { transport.close(); server.close(); });
    await server.connect(transport);
    await transport.handleRequest(req, res, req.body);
  });
  const notAllowed = (_req, res) => res.status(405).set('Allow', 'POST')
    .json({ jsonrpc: '2.0', error: { code: -32000, message: 'Method not allowed (stateless server)' }, id: null });
  app.get(opts.path, notAllowed);
  app.delete(opts.path, notAllowed);
} else {
  app.all(opts.path, async (req, res) => {
    const id = req.headers['mcp-session-id'];
    let transport = id ? sessions.get(id) : undefined;
    if (!transport) {
      if (id || req.method !== 'POST') {
        // Unknown session (or a GET/DELETE without one): what the SDK itself answers for a stale id.
        res.status(id ? 404 : 400).json({ jsonrpc: '2.0',
          error: { code: id ? -32001 : -32000, message: id ? 'Session not found' : 'Bad Request: Mcp-Session-Id header is required' }, id: null });
        return;
      }
      const server = buildServer();
      transport = new StreamableHTTPServerTransport({
        ...transportOptions,
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (sid) => { sessions.set(sid, transport); log({ session_initialized: sid }); },
        onsessionclosed: (sid) => { sessions.delete(sid); log({ session_closed: sid }); },
      });
      transport.onclose = () => { if (transport.sessionId) sessions.delete(transport.sessionId); };
      await server.connect(transport);
    }
    await transport.handleRequest(req, res, req.body);
  });
}

function exitWithParent() {
  let stat;
  try { stat = fs.fstatSync(0); } catch { return; }
  if (!stat.isFIFO() && !stat.isSocket()) return;
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
  process.stdin.on('data', () => {});
  process.stdin.resume();
}

const httpServer = app.listen(Number(opts.port), HOST, () => {
  const { port } = httpServer.address();
  process.stdout.write(`${JSON.stringify({
    url: `http://${HOST}:${port}${opts.path}`, port, stateless: opts.stateless, json: opts.json,
    host_check: opts['no-host-check'] ? 'off' : (opts['allowed-host'] ?? ['localhost', '127.0.0.1', '[::1]']),
    sdk: `@modelcontextprotocol/sdk@${SDK_VERSION}`, pid: process.pid,
  })}\n`);
  exitWithParent();
});
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
