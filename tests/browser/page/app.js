// The page: a browser app on another origin than the MCP server, using the official MCP
// TypeScript SDK client (bundled by build.mjs). It reads its parameters from the URL
// fragment (never sent to any server):
//
//   index.html#resource=http://127.0.0.1:PORT/mcp&token=JWT[&write_token=JWT]
//
// and runs these steps, each written into <li id="step-N" data-name=… data-status=
// ok|failed|skipped> (data-status says whether the step got what a permitted page
// gets; on a foreign origin "failed" is the expected outcome), then a JSON summary into
// <pre id="result"> and data-done="1" on <body>:
//
//   1 challenge   plain fetch POST initialize, no token: 401, WWW-Authenticate readable
//                 from JS (so it is exposed), resource_metadata and scope parsed from it
//   2 metadata    GET of the resource_metadata URL named there (cross-origin): resource,
//                 authorization_servers, scopes_supported
//   3 whoami      the SDK's Client + StreamableHTTPClientTransport with the token in
//                 requestInit's Authorization header: connect, tools/list, whoami
//   4 step-up     the SDK calls write with the same mcp:read token: it throws a 403
//                 StreamableHTTPError, and the page's fetch wrapper shows the response
//                 as the page saw it: WWW-Authenticate error="insufficient_scope",
//                 scope="mcp:write"
//   5 write       (only with write_token) the SDK calls write with an mcp:read mcp:write
//                 token: it succeeds
//   6 simple      a CORS "simple" POST (no custom header, text/plain body, so no
//                 preflight): the only kind of request a foreign page gets to the
//                 server at all, which then answers it 403; here 401 (no token)
//   7 requests    the requests the page made, as its fetch wrapper saw them, with the
//                 browser's resource timing entries beside them
//
// The token is handed in by the test, not obtained through the SDK's OAuth flow: the
// example's embedded issuer signs tokens in-process and has no authorization, token
// or registration endpoint, so the SDK's auth() (an OAuthClientProvider) has nothing to
// talk to. Without an authProvider the transport sends requestInit's headers as they are
// and surfaces a 401/403 as a StreamableHTTPError, which is what step 4 relies on.

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import {
  StreamableHTTPClientTransport,
  StreamableHTTPError,
} from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { extractWWWAuthenticateParams } from '@modelcontextprotocol/sdk/client/auth.js';

const params = new URLSearchParams(location.hash.slice(1));
const resource = params.get('resource');
const token = params.get('token');
const writeToken = params.get('write_token');
const serverOrigin = resource ? new URL(resource).origin : null;

const INITIALIZE = {
  jsonrpc: '2.0',
  id: 0,
  method: 'initialize',
  params: {
    protocolVersion: '2025-06-18',
    capabilities: {},
    clientInfo: { name: 'mcp-gatekeeper-browser-page', version: '0' },
  },
};

// Every request the page makes goes through this fetch (steps 1, 2, 6 call it; the SDK
// transports get it as their `fetch` option), so the log below is what the page saw.
const exchanges = [];
let currentStep = 0;

function place(url) {
  const u = new URL(url, location.href);
  const host = u.origin === serverOrigin ? 'SERVER' : u.origin === location.origin ? 'PAGE' : u.origin;
  return host + u.pathname;
}

// The fetches not answered yet. The SDK starts its SSE GET without waiting for it;
// closing a client before that GET is answered would abort it, and the sequence of
// exchanges would depend on timing. So a client is closed once they are all answered.
const inFlight = new Set();

function recordingFetch(input, init = {}) {
  const answered = recordedFetch(input, init);
  inFlight.add(answered);
  answered.finally(() => inFlight.delete(answered)).catch(() => {});
  return answered;
}

// Waits until every fetch made so far is answered (or failed).
async function settled() {
  await Promise.allSettled([...inFlight]);
}

async function recordedFetch(input, init = {}) {
  const url = input instanceof Request ? input.url : String(input);
  const method = (init.method ?? (input instanceof Request ? input.method : 'GET')).toUpperCase();
  const entry = { step: currentStep, method, place: place(url) };
  exchanges.push(entry);
  try {
    const response = await fetch(input, init);
    entry.status = response.status;
    // What the page can read of the answer: null where the header is not exposed.
    entry.www_authenticate = response.headers.get('www-authenticate');
    entry.mcp_session_id = response.headers.get('mcp-session-id');
    return response;
  } catch (error) {
    // A CORS refusal: the browser gives the page no status, only a TypeError.
    entry.error = `${error.name}: ${error.message}`;
    throw error;
  }
}

// ---- the DOM ----------------------------------------------------------------------

const steps = {};

function step(n, name, title) {
  const li = document.createElement('li');
  li.id = `step-${n}`;
  li.dataset.name = name;
  li.dataset.status = 'pending';
  li.innerHTML = '<span class="name"></span><span class="status"></span><span class="detail"></span>';
  li.querySelector('.name').textContent = title;
  document.getElementById('steps').append(li);
  return li;
}

function show(li, status, detail) {
  li.dataset.status = status;
  li.querySelector('.status').textContent = status;
  li.querySelector('.detail').textContent =
    typeof detail === 'string'
      ? detail
      : Object.entries(detail)
          .filter(([k]) => k !== 'status')
          .map(([k, v]) => `${k}: ${typeof v === 'string' ? v : JSON.stringify(v)}`)
          .join('\n');
}

/** Runs step `n`: `body` returns its facts (ok) or throws (failed). */
async function run(n, name, title, body) {
  const li = step(n, name, title);
  currentStep = n;
  show(li, 'running', '');
  let outcome;
  try {
    outcome = { status: 'ok', ...(await body()) };
  } catch (error) {
    outcome = {
      status: 'failed',
      error: `${error?.name ?? 'Error'}: ${error?.message ?? error}`,
      ...(error?.facts ?? {}),
    };
  }
  steps[name] = outcome;
  show(li, outcome.status, outcome);
  return outcome;
}

/** An Error that still carries what the step learnt. */
function failure(message, facts) {
  const e = new Error(message);
  e.facts = facts;
  return e;
}

function challengeParams(header) {
  const out = {};
  for (const m of (header ?? '').matchAll(/([a-z_]+)="([^"]*)"/g)) {
    out[m[1]] = m[2];
  }
  return out;
}

// ---- the steps --------------------------------------------------------------------

async function main() {
  document.getElementById('origins').textContent =
    `page origin ${location.origin}, MCP server ${serverOrigin ?? '(none given)'}`;
  if (!resource || !token) {
    throw new Error('give #resource=…&token=… in the URL');
  }

  let metadataUrl;
  await run(1, 'challenge', 'POST without a token: the 401 challenge, read from JS', async () => {
    const response = await recordingFetch(resource, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify(INITIALIZE),
    });
    const header = response.headers.get('www-authenticate');
    // Read the body (only then does the browser make its resource timing entry).
    const body = await response.text();
    // The SDK's own parser, as its transport uses it on a 401.
    const sdk = extractWWWAuthenticateParams(response);
    const facts = {
      http_status: response.status,
      www_authenticate: header,
      resource_metadata: sdk.resourceMetadataUrl?.href ?? null,
      scope: sdk.scope ?? null,
      body,
    };
    if (response.status !== 401) throw failure(`expected 401, got ${response.status}`, facts);
    if (!header) throw failure('WWW-Authenticate is not readable (not exposed?)', facts);
    if (!facts.resource_metadata) throw failure('no resource_metadata in the challenge', facts);
    metadataUrl = facts.resource_metadata;
    return facts;
  });

  await run(2, 'metadata', 'GET the protected resource metadata (cross-origin)', async () => {
    // Where step 1 could not read the challenge (a foreign origin), the RFC 9728
    // well-known URL of the resource is tried all the same.
    const derived = !metadataUrl;
    const u = new URL(resource);
    const url = metadataUrl ?? `${u.origin}/.well-known/oauth-protected-resource${u.pathname}`;
    const response = await recordingFetch(url);
    const doc = await response.json();
    const facts = {
      url,
      url_derived: derived,
      http_status: response.status,
      resource: doc.resource,
      authorization_servers: doc.authorization_servers,
      scopes_supported: doc.scopes_supported,
    };
    if (response.status !== 200) throw failure(`expected 200, got ${response.status}`, facts);
    if (doc.resource !== resource) throw failure('the metadata names another resource', facts);
    if (!doc.authorization_servers?.length) throw failure('no authorization_servers', facts);
    return facts;
  });

  let readClient;
  await run(3, 'whoami', 'SDK client: connect, tools/list, whoami (mcp:read token)', async () => {
    // No authProvider (see the top of this file): the token goes in requestInit.
    const transport = new StreamableHTTPClientTransport(new URL(resource), {
      requestInit: { headers: { Authorization: `Bearer ${token}` } },
      fetch: recordingFetch,
    });
    const client = new Client({ name: 'mcp-gatekeeper-browser-page', version: '0' });
    await client.connect(transport);
    readClient = client;
    const facts = {
      // The example runs rmcp stateless: it sends no Mcp-Session-Id, so this is null
      // whether or not the header is exposed (run.mjs's network_detail shows that it is).
      session_id: transport.sessionId ?? null,
      protocol_version: transport.protocolVersion ?? null,
      server: client.getServerVersion() ?? null,
    };
    const { tools } = await client.listTools();
    facts.tools = tools.map((t) => t.name).sort();
    const who = await client.callTool({ name: 'whoami', arguments: {} });
    facts.whoami = who.structuredContent ?? who.content;
    facts.subject = who.structuredContent?.subject ?? null;
    if (who.isError) throw failure('whoami answered an error', facts);
    if (!facts.subject) throw failure('no subject in whoami', facts);
    return facts;
  });

  await run(4, 'step_up', 'SDK client: write with the mcp:read token → 403 step-up challenge', async () => {
    if (!readClient) throw new Error('no SDK session (step 3 failed)');
    const before = exchanges.length;
    let thrown = null;
    try {
      await readClient.callTool({ name: 'write', arguments: { text: 'from the browser' } });
    } catch (error) {
      thrown = error;
    }
    // The answer as the page's fetch saw it: the transport's POST of tools/call.
    const seen = exchanges.slice(before).find((e) => e.method === 'POST');
    const facts = {
      sdk_error: thrown ? `${thrown.name}: ${thrown.message}` : null,
      sdk_error_code: thrown instanceof StreamableHTTPError ? thrown.code : null,
      http_status: seen?.status ?? null,
      www_authenticate: seen?.www_authenticate ?? null,
      challenge: challengeParams(seen?.www_authenticate),
    };
    if (!thrown) throw failure('write succeeded with an mcp:read token', facts);
    if (facts.sdk_error_code !== 403) throw failure('the SDK did not surface a 403', facts);
    if (facts.challenge.error !== 'insufficient_scope') throw failure('no insufficient_scope challenge readable', facts);
    if (!(facts.challenge.scope ?? '').split(' ').includes('mcp:write')) {
      throw failure('the challenge does not ask for mcp:write', facts);
    }
    return facts;
  });
  await settled();
  await readClient?.close().catch(() => {});

  if (writeToken) {
    await run(5, 'write', 'SDK client: write with an mcp:read mcp:write token', async () => {
      const transport = new StreamableHTTPClientTransport(new URL(resource), {
        requestInit: { headers: { Authorization: `Bearer ${writeToken}` } },
        fetch: recordingFetch,
      });
      const client = new Client({ name: 'mcp-gatekeeper-browser-page', version: '0' });
      await client.connect(transport);
      try {
        const written = await client.callTool({ name: 'write', arguments: { text: 'from the browser' } });
        const facts = { result: written.structuredContent ?? written.content };
        if (written.isError) throw failure('write answered an error', facts);
        return facts;
      } finally {
        await settled();
        await client.close().catch(() => {});
      }
    });
  } else {
    const li = step(5, 'write', 'SDK client: write with an mcp:read mcp:write token');
    steps.write = { status: 'skipped' };
    show(li, 'skipped', 'no write_token given');
  }

  await run(6, 'simple', 'CORS simple request (text/plain POST, no preflight), no token', async () => {
    const response = await recordingFetch(resource, {
      method: 'POST',
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
    });
    const facts = {
      http_status: response.status,
      www_authenticate: response.headers.get('www-authenticate'),
      body: await response.text(),
    };
    if (response.status !== 401) throw failure(`expected 401, got ${response.status}`, facts);
    return facts;
  });

  currentStep = 7;
  const timing = performance
    .getEntriesByType('resource')
    .filter((e) => e.initiatorType === 'fetch')
    .map((e) => ({ place: place(e.name), response_status: e.responseStatus ?? null }));
  const li = step(7, 'requests', 'Requests as the page saw them (method place status)');
  steps.requests = { status: 'ok' };
  show(
    li,
    'ok',
    exchanges.map((e) => `${e.step}: ${e.method} ${e.place} ${e.status ?? e.error}`).join('\n'),
  );

  return { timing };
}

function finish(extra) {
  const names = ['challenge', 'metadata', 'whoami', 'step_up', 'write', 'simple'];
  const summary = {
    page_origin: location.origin,
    server_origin: serverOrigin,
    user_agent: navigator.userAgent,
    ok: names.every((n) => ['ok', 'skipped'].includes(steps[n]?.status)),
    steps,
    exchanges,
    ...extra,
  };
  document.getElementById('result').textContent = JSON.stringify(summary, null, 1);
  document.body.dataset.done = '1';
}

main().then(
  (extra) => finish(extra),
  (error) => finish({ fatal: `${error?.name}: ${error?.message}` }),
);
