#!/usr/bin/env node
// A DPoP client (RFC 9449) for a server protected by mcp-gatekeeper, e.g. examples/mcp_server
// with --issuer pointing at tests/oidc/provider.mjs --dpop: gets a DPoP-bound access token with
// client_credentials, then talks MCP (streamable HTTP) with `Authorization: DPoP <token>` and a
// fresh `DPoP` proof on every request.
//
//   node dpop_client.mjs --issuer URL --mcp URL [--resource URL] --client-id ID --client-secret SECRET
//                        [--scope S] [--mode oauth4webapi|sdk] [--token-only] [--timeout SECONDS]
//
// Modes:
//   oauth4webapi  (default) panva's oauth4webapi: discovery of --issuer (RFC 8414, then OIDC),
//                 ES256 key, client_credentials with --scope and --resource (retried once on the
//                 AS's use_dpop_nonce), then by hand: POST initialize (protocol 2025-11-25), POST
//                 notifications/initialized, POST tools/call whoami, carrying the mcp-session-id
//                 of the initialize answer. A 401 `DPoP error="use_dpop_nonce"` challenge is
//                 retried once with the DPoP-Nonce it gave. JSON and SSE answers are understood.
//   sdk           @modelcontextprotocol/client 2.4.0 (SEP-1932 DPoP): a ClientCredentialsProvider
//                 whose dpop() is a DpopSession; Client.connect() over StreamableHTTPClientTransport
//                 finds the authorization server from the server's 401 and its RFC 9728 metadata
//                 (so the token's resource is the metadata's `resource`; --resource is not used),
//                 then listTools() and callTool(whoami). Nonce retries are the SDK's own.
// --token-only stops after the token. Plain http is allowed for loopback hosts only.
//
// Every HTTP exchange goes through one recording fetch (oauth4webapi's customFetch, or the
// transport's fetch, which the SDK wraps with its DPoP layer, so it sees the final headers).
//
// Prints one JSON line per event on stdout, as it happens (logs on stderr):
//   {"event":"http","target":"as"|"mcp"|"rs"|"other","method":"POST","url":"…"(no query),
//    "jsonrpc":"initialize"|null,"status":401,"authorization":"DPoP"|"Bearer"|null,
//    "proof":{"htm":"POST","htu":"…","nonce":"…"|null,"ath":true}|null (decoded DPoP header),
//    "mcp_protocol_version":…|null,"mcp_session_id":…|null (request headers),
//    "www_authenticate":"…"|null,"dpop_nonce":"…"|null (response headers)}  every HTTP exchange
//   {"event":"token","mode":…,"token_type":"DPoP" (as the AS sent it),"jkt":"<thumbprint of the key>",
//    "access_token":"…","expires_in":N,"scope":…,"cnf":{…}|null (of a JWT token),
//    "nonce_retry":bool (oauth4webapi mode),"private_jwk":{…} (the ES256 key, JWK with "d")}
//                                  in sdk mode once connected, i.e. after the initialize exchanges
//   oauth4webapi mode, per MCP request:
//   {"event":"request","method":"initialize","status":200,"www_authenticate":…|null,
//    "dpop_nonce":…|null (of the final answer),"nonce_retry":bool,
//    "challenge":{"status":401,"www_authenticate":…,"dpop_nonce":…}|null (the answer retried),
//    "proof":{…} (of the final attempt),"session_id":…|null,"result_excerpt":"…"}
//   (oauth4webapi sends `Authorization: DPoP` whatever the token_type: a Bearer token too.)
//   sdk mode: {"event":"tools","names":["whoami",…]}
//   both:     {"event":"call","text":"…","is_error":bool}
//   failure:  {"event":"error","message":"…","status":N|null}, exit status 1 (2 for usage).
// A global timeout (default 30 s) fails the run.

import { parseArgs } from 'node:util';
import * as oauth from 'oauth4webapi';

const MODES = ['oauth4webapi', 'sdk'];
const PROTOCOL_VERSION = '2025-11-25';

function usage(message) {
  if (message) console.error(`dpop_client.mjs: ${message}`);
  console.error('usage: node dpop_client.mjs --issuer URL --mcp URL [--resource URL] --client-id ID --client-secret SECRET '
    + `[--scope S] [--mode ${MODES.join('|')}] [--token-only] [--timeout SECONDS]`);
  process.exit(2);
}

let args;
try {
  ({ values: args } = parseArgs({
    options: {
      issuer: { type: 'string' },
      mcp: { type: 'string' },
      resource: { type: 'string' },
      'client-id': { type: 'string' },
      'client-secret': { type: 'string' },
      scope: { type: 'string' },
      mode: { type: 'string', default: 'oauth4webapi' },
      'token-only': { type: 'boolean', default: false },
      timeout: { type: 'string', default: '30' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  }));
} catch (err) {
  usage(err.message);
}
if (args.help) usage();
for (const name of ['issuer', 'mcp', 'client-id', 'client-secret']) {
  if (args[name] === undefined) usage(`--${name} is required`);
}
for (const name of ['issuer', 'mcp', 'resource']) {
  if (args[name] !== undefined && !URL.canParse(args[name])) usage(`--${name} ${args[name]} is not an absolute URL`);
}
if (!MODES.includes(args.mode)) usage(`--mode must be one of ${MODES.join(', ')}`);
const timeoutSeconds = Number(args.timeout);
if (!(timeoutSeconds > 0)) usage('--timeout must be a positive number of seconds');

const issuerUrl = new URL(args.issuer);
const mcpUrl = new URL(args.mcp);
const log = (...parts) => console.error('[dpop_client]', ...parts);
const emit = (event) => process.stdout.write(`${JSON.stringify(event)}\n`);

// A failure with the HTTP status that caused it, for the error line.
class HttpError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

// oauth4webapi refuses http unless told otherwise: allowed when every plain http URL is loopback.
const isLoopback = (url) => ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);
const allowHttp = [issuerUrl, mcpUrl].every((url) => url.protocol === 'https:' || isLoopback(url));

// ---------------------------------------------------------------------------------------------
// Recording of HTTP exchanges.

function decodeJwtPayload(jwt) {
  try {
    return JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString());
  } catch {
    return null;
  }
}

function proofOf(headers) {
  const proof = headers.get('dpop');
  if (!proof) return null;
  const payload = decodeJwtPayload(proof) ?? {};
  return { htm: payload.htm ?? null, htu: payload.htu ?? null, nonce: payload.nonce ?? null, ath: payload.ath !== undefined };
}

function target(url) {
  if (url.origin === mcpUrl.origin && url.pathname === mcpUrl.pathname) return 'mcp';
  if (url.origin === mcpUrl.origin) return 'rs';
  if (url.origin === issuerUrl.origin) return 'as';
  return 'other';
}

function jsonRpcMethod(body) {
  if (typeof body !== 'string') return null;
  try {
    const message = JSON.parse(body);
    return typeof message?.method === 'string' ? message.method : null;
  } catch {
    return null;
  }
}

let lastExchange; // the http event of the most recent exchange
let tokenTypeAsSent; // token_type of the last successful token response, before any client lowercases it
const inFlight = new Set();

async function recorded(input, init) {
  const url = new URL(input instanceof Request ? input.url : String(input));
  const method = (init?.method ?? (input instanceof Request ? input.method : 'GET')).toUpperCase();
  const headers = new Headers(input instanceof Request ? input.headers : undefined);
  for (const [name, value] of new Headers(init?.headers)) headers.set(name, value);
  const exchange = {
    event: 'http',
    target: target(url),
    method,
    url: `${url.origin}${url.pathname}`,
    jsonrpc: jsonRpcMethod(init?.body),
    status: null,
    authorization: headers.get('authorization')?.split(' ')[0] ?? null,
    proof: proofOf(headers),
    mcp_protocol_version: headers.get('mcp-protocol-version'),
    mcp_session_id: headers.get('mcp-session-id'),
    www_authenticate: null,
    dpop_nonce: null,
  };
  let response;
  try {
    response = await fetch(input, init);
  } catch (err) {
    exchange.error = describe(err);
    emit(exchange);
    throw err;
  }
  exchange.status = response.status;
  exchange.www_authenticate = response.headers.get('www-authenticate');
  exchange.dpop_nonce = response.headers.get('dpop-nonce');
  if (exchange.target === 'as' && response.ok && /json/.test(response.headers.get('content-type') ?? '')) {
    const body = await response.clone().json().catch(() => undefined);
    if (typeof body?.token_type === 'string') tokenTypeAsSent = body.token_type;
  }
  emit(exchange);
  lastExchange = exchange;
  log(method, exchange.url, response.status, exchange.www_authenticate ?? '');
  return response;
}

// The SDK starts some requests without waiting for them (its SSE GET); the client is closed
// only once every one is answered.
function recordingFetch(input, init) {
  const answer = recorded(input, init);
  inFlight.add(answer);
  answer.finally(() => inFlight.delete(answer)).catch(() => {});
  return answer;
}

// An error's message with its cause (fetch failures say only "fetch failed").
function describe(err) {
  const cause = err?.cause;
  const detail = cause instanceof Error ? (cause.code ?? cause.message) : undefined;
  return `${err?.message ?? err}${detail ? ` (${detail})` : ''}`;
}

function tokenEvent(mode, tokens, jkt, privateJwk, extra = {}) {
  const claims = decodeJwtPayload(tokens.access_token);
  return {
    event: 'token',
    mode,
    token_type: tokenTypeAsSent ?? tokens.token_type,
    jkt,
    access_token: tokens.access_token,
    expires_in: tokens.expires_in ?? null,
    scope: tokens.scope ?? claims?.scope ?? null,
    cnf: claims?.cnf ?? null,
    ...extra,
    private_jwk: privateJwk,
  };
}

function callEvent(result) {
  const text = (result?.content ?? []).filter((item) => item.type === 'text').map((item) => item.text).join('');
  return { event: 'call', text, is_error: result?.isError === true };
}

// ---------------------------------------------------------------------------------------------
// Mode oauth4webapi.

// A JSON-RPC message from a JSON or an SSE answer: for a request, the response with its id.
async function readMessage(response, id) {
  const type = response.headers.get('content-type') ?? '';
  if (!type.startsWith('text/event-stream')) return response.json();
  // Read the stream event by event and stop at the answer: the server may keep it open.
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let data = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      const lines = buffer.split(/\r\n|\r|\n/);
      buffer = lines.pop();
      for (const line of lines) {
        if (line === '') {
          const text = data.join('\n');
          data = [];
          if (!text) continue; // e.g. a priming event with an empty data line
          const message = JSON.parse(text);
          if (message.id === id && ('result' in message || 'error' in message)) return message;
        } else if (line.startsWith('data:')) {
          data.push(line.slice(line.startsWith('data: ') ? 6 : 5));
        }
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
  throw new Error(`the SSE answer ended without the JSON-RPC response to id ${id}`);
}

async function runOauth4webapi() {
  const fetchOptions = { [oauth.customFetch]: recordingFetch, [oauth.allowInsecureRequests]: allowHttp };
  let as;
  for (const algorithm of ['oauth2', 'oidc']) {
    try {
      as = await oauth.processDiscoveryResponse(issuerUrl, await oauth.discoveryRequest(issuerUrl, { ...fetchOptions, algorithm }));
      break;
    } catch (err) {
      if (algorithm === 'oidc') throw err;
      log(`RFC 8414 discovery failed (${describe(err)}); trying OpenID Connect discovery`);
    }
  }

  const client = { client_id: args['client-id'] };
  const clientAuth = oauth.ClientSecretBasic(args['client-secret']);
  const keyPair = await oauth.generateKeyPair('ES256', { extractable: true });
  const DPoP = oauth.DPoP(client, keyPair);
  const options = { ...fetchOptions, DPoP };
  const parameters = new URLSearchParams();
  if (args.scope !== undefined) parameters.set('scope', args.scope);
  if (args.resource !== undefined) parameters.set('resource', args.resource);

  let tokens;
  let tokenNonceRetry = false;
  for (;;) {
    const response = await oauth.clientCredentialsGrantRequest(as, client, clientAuth, parameters, options);
    try {
      tokens = await oauth.processClientCredentialsResponse(as, client, response);
      break;
    } catch (err) {
      if (!tokenNonceRetry && oauth.isDPoPNonceError(err)) {
        tokenNonceRetry = true; // oauth4webapi kept the DPoP-Nonce of the answer for the next proof
        continue;
      }
      if (err instanceof oauth.ResponseBodyError) {
        throw new HttpError(`token endpoint: ${err.error}${err.error_description ? ` (${err.error_description})` : ''}`, err.status);
      }
      if (err instanceof oauth.WWWAuthenticateChallengeError) {
        throw new HttpError(`token endpoint: HTTP ${err.status}, WWW-Authenticate: ${err.response.headers.get('www-authenticate')}`, err.status);
      }
      throw new HttpError(`token endpoint: ${describe(err)}`, err.status ?? response.status);
    }
  }
  const privateJwk = await crypto.subtle.exportKey('jwk', keyPair.privateKey);
  emit(tokenEvent('oauth4webapi', tokens, await DPoP.calculateThumbprint(), privateJwk, { nonce_retry: tokenNonceRetry }));
  if (args['token-only']) return;

  let sessionId = null;
  let nextId = 1;

  async function mcpPost(message) {
    const headers = new Headers({
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      'mcp-protocol-version': PROTOCOL_VERSION,
    });
    if (sessionId) headers.set('mcp-session-id', sessionId);
    const body = JSON.stringify(message);
    let challenge = null;
    let response;
    for (;;) {
      try {
        response = await oauth.protectedResourceRequest(tokens.access_token, 'POST', mcpUrl, headers, body, options);
        break;
      } catch (err) {
        if (!(err instanceof oauth.WWWAuthenticateChallengeError)) throw err;
        if (err.status >= 200 && err.status < 300) {
          response = err.response; // a challenge on a success: not ours to refuse
          break;
        }
        const www = err.response.headers.get('www-authenticate');
        await err.response.body?.cancel().catch(() => {});
        if (challenge === null && oauth.isDPoPNonceError(err)) {
          challenge = { status: err.status, www_authenticate: www, dpop_nonce: err.response.headers.get('dpop-nonce') };
          continue; // the nonce is cached: the next proof carries it
        }
        throw new HttpError(`${message.method}: HTTP ${err.status}, WWW-Authenticate: ${www}`, err.status);
      }
    }
    const event = {
      event: 'request',
      method: message.method,
      status: response.status,
      www_authenticate: response.headers.get('www-authenticate'),
      dpop_nonce: response.headers.get('dpop-nonce'),
      nonce_retry: challenge !== null,
      challenge,
      proof: lastExchange?.proof ?? null,
      session_id: null,
      result_excerpt: null,
    };
    if (!response.ok) {
      const text = await response.text().catch(() => '');
      event.result_excerpt = text.slice(0, 300);
      emit(event);
      throw new HttpError(`${message.method}: HTTP ${response.status} ${text.slice(0, 200)}`, response.status);
    }
    event.session_id = response.headers.get('mcp-session-id');
    let answer = null;
    if (message.id !== undefined) {
      answer = await readMessage(response, message.id);
      event.result_excerpt = JSON.stringify(answer.result ?? answer.error).slice(0, 300);
    } else {
      await response.body?.cancel().catch(() => {});
    }
    emit(event);
    if (answer?.error) throw new HttpError(`${message.method}: JSON-RPC error ${JSON.stringify(answer.error)}`, response.status);
    return { response, answer };
  }

  const init = await mcpPost({
    jsonrpc: '2.0',
    id: nextId++,
    method: 'initialize',
    params: {
      protocolVersion: PROTOCOL_VERSION,
      capabilities: {},
      clientInfo: { name: 'mcp-gatekeeper-dpop-client', version: '1.0.0' },
    },
  });
  sessionId = init.response.headers.get('mcp-session-id');
  await mcpPost({ jsonrpc: '2.0', method: 'notifications/initialized' });
  const call = await mcpPost({ jsonrpc: '2.0', id: nextId++, method: 'tools/call', params: { name: 'whoami', arguments: {} } });
  emit(callEvent(call.answer.result));
}

// ---------------------------------------------------------------------------------------------
// Mode sdk.

async function runSdk() {
  const {
    Client, StreamableHTTPClientTransport, ClientCredentialsProvider, DpopSession, generateDpopKeyPair,
  } = await import('@modelcontextprotocol/client');
  if (args.resource !== undefined) log('--resource is not used in sdk mode: the SDK takes the resource from the server\'s metadata');

  const keyPair = await generateDpopKeyPair({ alg: 'ES256', extractable: true });
  const session = await DpopSession.create({ keyPair });
  class DpopClientCredentialsProvider extends ClientCredentialsProvider {
    dpop() {
      return session;
    }
  }
  const provider = new DpopClientCredentialsProvider({
    clientId: args['client-id'],
    clientSecret: args['client-secret'],
    expectedIssuer: args.issuer,
    ...(args.scope !== undefined ? { scope: args.scope } : {}),
    clientName: 'mcp-gatekeeper dpop client (sdk)',
  });
  const transport = new StreamableHTTPClientTransport(mcpUrl, { authProvider: provider, fetch: recordingFetch });
  const client = new Client({ name: 'mcp-gatekeeper-dpop-client', version: '1.0.0' });
  try {
    await client.connect(transport);
    const tokens = provider.tokens();
    if (!tokens) throw new Error('connected without a token');
    emit(tokenEvent('sdk', tokens, session.thumbprint, await crypto.subtle.exportKey('jwk', keyPair.privateKey)));
    if (args['token-only']) return;
    const { tools } = await client.listTools();
    emit({ event: 'tools', names: tools.map((tool) => tool.name) });
    emit(callEvent(await client.callTool({ name: 'whoami', arguments: {} })));
  } finally {
    await Promise.allSettled([...inFlight]);
    await client.close().catch(() => {});
  }
}

// ---------------------------------------------------------------------------------------------

const timer = setTimeout(() => {
  emit({ event: 'error', message: `timed out after ${timeoutSeconds} s`, status: null });
  process.exit(1);
}, timeoutSeconds * 1000);

try {
  await (args.mode === 'sdk' ? runSdk() : runOauth4webapi());
  clearTimeout(timer);
  process.exit(0);
} catch (err) {
  clearTimeout(timer);
  log('failed:', err?.stack ?? String(err));
  emit({ event: 'error', message: describe(err), status: err?.status ?? null });
  process.exit(1);
}
