#!/usr/bin/env node
// An MCP client built on the official TypeScript SDK (@modelcontextprotocol/sdk, pinned in
// package.json) that drives the OAuth flows against a server protected by mcp-gatekeeper,
// e.g. examples/mcp_server with --issuer pointing at tests/oidc/provider.mjs.
//
//   node mcp_client.mjs --server http://127.0.0.1:PORT/mcp \
//                       --flow client_credentials|authorization_code|step_up \
//                       [--timeout SECONDS] [--recheck-read]
//
// Nothing about the authorization server is given by hand: the SDK's auth() finds it from the
// server's 401 (or 403) WWW-Authenticate challenge, the RFC 9728 protected resource metadata
// it points at (authorization_servers, resource, scopes_supported), and the authorization
// server's RFC 8414 metadata.
//
// Flows:
//   client_credentials  confidential client cc-client/cc-secret through the SDK's
//                       ClientCredentialsProvider, scope mcp:read; calls whoami.
//   authorization_code  PKCE + dynamic client registration done by the SDK; the authorization
//                       URL is followed headlessly (cookie jar, redirect: 'manual') until the
//                       redirect to redirect_uri, then transport.finishAuth(code) and a new
//                       connection; calls whoami.
//   step_up             as authorization_code (the 401 challenge asks for mcp:read), calls
//                       whoami, then write: the server answers 403 insufficient_scope
//                       scope="mcp:write" and the SDK's transport itself re-runs auth() with the
//                       challenged scope; this script completes the (headless) redirect with
//                       finishAuth(code) and retries the call, exactly as for a 401. Should the
//                       authorization server refuse the SDK's re-authorization with invalid_scope
//                       (some only let a client ask for the scope it registered with; the test
//                       fixture does not), the script re-registers through the SDK's auth() and
//                       reports it in "client_fallbacks"; the tests require there be none.
//                       --recheck-read calls whoami once more afterwards, to show whether the
//                       stepped-up token still carries mcp:read.
//
// Every HTTP exchange goes through one recording fetch (passed to the transport, which hands it
// to auth(); also used for the headless authorization redirects). globalThis.fetch is wrapped
// too, so a request the SDK made without the custom fetch would still be recorded, and counted
// in "unrouted_fetches". Hosts are shown as SERVER (the --server origin) or IDP (an origin
// listed in the metadata's authorization_servers); query strings are dropped.
//
// Prints one JSON line on stdout:
//   {"flow":…,"ok":true|false,"results":{…},"exchanges":[["POST","SERVER/mcp",401],…],
//    "granted_scopes":[scope of each token response, in order],"authorization_scopes":[…],
//    "registered_scopes":[…],"client_fallbacks":[…],"sdk_warnings":[…]}
// and exits non-zero on failure, with the reason on stderr. A global timeout (default 30 s)
// fails the run.

import { parseArgs } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { auth, extractWWWAuthenticateParams, UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { ClientCredentialsProvider } from '@modelcontextprotocol/sdk/client/auth-extensions.js';
import { CookieJar } from '../oidc/cookie_jar.mjs';

const FLOWS = ['client_credentials', 'authorization_code', 'step_up'];

let args;
try {
  ({ values: args } = parseArgs({
    options: {
      server: { type: 'string' },
      flow: { type: 'string' },
      timeout: { type: 'string', default: '30' },
      'recheck-read': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  }));
} catch (err) {
  usage(err.message);
}
if (args.help) usage();
if (!args.server) usage('--server is required');
if (!FLOWS.includes(args.flow)) usage(`--flow must be one of ${FLOWS.join(', ')}`);
const timeoutSeconds = Number(args.timeout);
if (!(timeoutSeconds > 0)) usage('--timeout must be a positive number of seconds');

function usage(message) {
  if (message) console.error(`mcp_client.mjs: ${message}`);
  console.error(`usage: node mcp_client.mjs --server URL --flow ${FLOWS.join('|')} [--timeout SECONDS] [--recheck-read]`);
  process.exit(2);
}

const serverUrl = new URL(args.server);
const flow = args.flow;

// ---------------------------------------------------------------------------------------------
// Recording of HTTP exchanges.

const exchanges = [];
const idpOrigins = new Set();
const grantedScopes = [];
const sdkWarnings = [];
const authorizationScopes = [];
const registeredScopes = [];
let unroutedFetches = 0;
let lastChallenge;

function label(url) {
  const u = new URL(url);
  let host;
  if (u.origin === serverUrl.origin) host = 'SERVER';
  else if (idpOrigins.has(u.origin)) host = 'IDP';
  else host = u.origin; // an origin nobody told us about: shown as is, so it stands out
  return `${host}${u.pathname}`;
}

// An error's message with its cause (fetch failures say only "fetch failed").
function describe(err) {
  const cause = err?.cause;
  const detail = cause ? (cause.code ?? cause.errors?.[0]?.code ?? cause.message) : undefined;
  return `${err?.message ?? err}${detail ? ` (${detail})` : ''}`;
}

function requestUrl(input) {
  if (input instanceof Request) return input.url;
  return String(input);
}

function requestMethod(input, init) {
  return (init?.method ?? (input instanceof Request ? input.method : 'GET')).toUpperCase();
}

const originalFetch = globalThis.fetch;

// Records one exchange. Protected resource metadata documents are read (from a clone) to learn
// which origins are the authorization servers, so that they can be labelled IDP.
async function recorded(input, init) {
  const url = requestUrl(input);
  const method = requestMethod(input, init);
  let response;
  try {
    response = await originalFetch(input, init);
  } catch (err) {
    exchanges.push([method, label(url), `error: ${describe(err)}`]);
    throw err;
  }
  exchanges.push([method, label(url), response.status]);
  if ((response.status === 401 || response.status === 403) && new URL(url).origin === serverUrl.origin) {
    lastChallenge = response; // its headers, for extractWWWAuthenticateParams()
  }
  if (response.ok && new URL(url).pathname.startsWith('/.well-known/oauth-protected-resource')) {
    try {
      const document = await response.clone().json();
      for (const issuer of document.authorization_servers ?? []) idpOrigins.add(new URL(issuer).origin);
      // Relabel what was recorded before we knew (nothing, normally).
    } catch {
      // Not JSON: the SDK reports that itself.
    }
  }
  return response;
}

// The fetches not answered yet. The SDK starts its SSE GET without waiting for it; closing
// the client before it is answered would abort it, and the recorded sequence would depend
// on timing. So the client is closed once they are all answered.
const inFlight = new Set();
function tracked(answer) {
  inFlight.add(answer);
  answer.finally(() => inFlight.delete(answer)).catch(() => {});
  return answer;
}

// The fetch handed to the SDK (transport, and through it auth()) and used for the redirects.
const recordingFetch = (input, init) => tracked(recorded(input, init));

// Anything the SDK fetched without the custom fetch would land here.
globalThis.fetch = (input, init) => {
  unroutedFetches += 1;
  return recorded(input, init);
};

// The SDK warns through console.warn (e.g. a deprecated option); keep those in the report.
const originalWarn = console.warn;
console.warn = (...parts) => {
  sdkWarnings.push(parts.map(String).join(' '));
  originalWarn(...parts);
};

// ---------------------------------------------------------------------------------------------
// Headless authorization: a tiny cookie jar and a redirect follower.


const REDIRECT_URL = 'http://127.0.0.1/callback'; // never contacted: the code is read from Location

// The authorization server sent the user agent back to redirect_uri with ?error=… .
class AuthorizationError extends Error {
  constructor(code, description) {
    super(`authorization answered error=${code}${description ? `: ${description}` : ''}`);
    this.code = code;
  }
}

function isRedirectTarget(url) {
  const target = new URL(REDIRECT_URL);
  return url.origin === target.origin && url.pathname === target.pathname;
}

// An OAuthClientProvider for a public client that registers itself (the SDK does the dynamic
// client registration) and completes the authorization headlessly, as a browser would.
class HeadlessOAuthProvider {
  #clientInformation;
  #tokens;
  #codeVerifier;
  #state;
  #jar = new CookieJar();
  pendingCode;
  authorizations = 0;

  get redirectUrl() {
    return REDIRECT_URL;
  }

  get clientMetadata() {
    return {
      client_name: 'mcp-gatekeeper node test client',
      redirect_uris: [REDIRECT_URL],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }

  state() {
    this.#state = crypto.randomUUID();
    return this.#state;
  }

  clientInformation() {
    return this.#clientInformation;
  }

  saveClientInformation(info) {
    // Called with a fresh registration, and again (same client_id) to stamp it with the issuer.
    if (info.client_id !== this.#clientInformation?.client_id) registeredScopes.push(info.scope ?? null);
    this.#clientInformation = info;
  }

  // Drops the dynamically registered client (and its tokens), so the next auth() registers anew.
  invalidateCredentials(scope) {
    if (scope === 'all' || scope === 'client') this.#clientInformation = undefined;
    if (scope === 'all' || scope === 'tokens') this.#tokens = undefined;
    if (scope === 'all' || scope === 'verifier') this.#codeVerifier = undefined;
  }

  tokens() {
    return this.#tokens;
  }

  saveTokens(tokens) {
    this.#tokens = tokens;
    grantedScopes.push(scopeOf(tokens));
  }

  saveCodeVerifier(verifier) {
    this.#codeVerifier = verifier;
  }

  codeVerifier() {
    if (!this.#codeVerifier) throw new Error('no PKCE code verifier saved');
    return this.#codeVerifier;
  }

  // Follows the authorization URL like a browser: GET with cookies, no automatic redirects,
  // until the Location is the redirect_uri; keeps the code for finishAuth().
  async redirectToAuthorization(authorizationUrl) {
    this.authorizations += 1;
    let url = new URL(authorizationUrl);
    authorizationScopes.push(url.searchParams.get('scope'));
    for (let hop = 0; hop < 10; hop += 1) {
      const headers = {};
      const cookie = this.#jar.header(url);
      if (cookie) headers.cookie = cookie;
      const response = await recordingFetch(url, { method: 'GET', headers, redirect: 'manual' });
      this.#jar.store(response, url);
      const location = response.headers.get('location');
      if (response.status < 300 || response.status > 399 || !location) {
        const body = (await response.text().catch(() => '')).replace(/\s+/g, ' ').slice(0, 300);
        throw new Error(`authorization stopped at ${label(url)} with HTTP ${response.status}: ${body}`);
      }
      await response.body?.cancel();
      const next = new URL(location, url);
      if (isRedirectTarget(next)) {
        const params = next.searchParams;
        if (params.get('error')) throw new AuthorizationError(params.get('error'), params.get('error_description'));
        if (params.get('state') !== this.#state) throw new Error('authorization response has the wrong state');
        const code = params.get('code');
        if (!code) throw new Error('authorization response has no code');
        this.pendingCode = code;
        return;
      }
      url = next;
    }
    throw new Error('authorization did not reach the redirect_uri within 10 redirects');
  }

  takeCode() {
    const code = this.pendingCode;
    this.pendingCode = undefined;
    return code;
  }
}

// The SDK's client-credentials provider, with the token responses recorded.
class RecordingClientCredentialsProvider extends ClientCredentialsProvider {
  saveTokens(tokens) {
    super.saveTokens(tokens);
    grantedScopes.push(scopeOf(tokens));
  }
}

// The scope of a token response; from the JWT's claims when the response leaves it out.
function scopeOf(tokens) {
  if (typeof tokens.scope === 'string') return tokens.scope;
  try {
    const payload = JSON.parse(Buffer.from(tokens.access_token.split('.')[1], 'base64url').toString());
    return typeof payload.scope === 'string' ? payload.scope : null;
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------------
// Connecting and calling, completing an interactive authorization when the SDK asks for one.

const MAX_AUTHORIZATIONS = 3;

function isAuthRedirect(err, provider) {
  return err instanceof UnauthorizedError && provider instanceof HeadlessOAuthProvider && provider.pendingCode !== undefined;
}

// client.connect(); when the SDK answered the 401 by redirecting to the authorization server,
// finish with the code and connect again on a new transport (a started one cannot restart).
async function connect(provider) {
  for (let attempt = 0; ; attempt += 1) {
    const transport = new StreamableHTTPClientTransport(serverUrl, { authProvider: provider, fetch: recordingFetch });
    const client = new Client({ name: 'mcp-gatekeeper-node-test', version: '1.0.0' });
    try {
      await client.connect(transport);
      return { client, transport };
    } catch (err) {
      await client.close().catch(() => {});
      if (!isAuthRedirect(err, provider) || attempt >= MAX_AUTHORIZATIONS) throw err;
      await transport.finishAuth(provider.takeCode());
    }
  }
}

// Notes on what this script had to do itself, beyond completing redirects (see callTool).
const fallbacks = [];

// client.callTool(); when the SDK answered a 401 or a 403 insufficient_scope by redirecting to
// the authorization server, finish with the code on the same transport and call again.
//
// The one step this script adds to the SDK's own step-up: the SDK registers its client (DCR)
// with the scope of the first challenge and reuses that registration when it steps up, and an
// authorization server that holds a client to its registered `scope` (oidc-provider does)
// answers the step-up authorization request with error=invalid_scope. Then this drops the
// registration and runs the SDK's auth() once more with the scope of the server's last
// challenge, so that the SDK registers a client for it and authorizes again.
async function callTool(session, provider, name, toolArguments = {}) {
  for (let attempt = 0; ; attempt += 1) {
    let result;
    try {
      result = await session.client.callTool({ name, arguments: toolArguments });
    } catch (err) {
      if (attempt >= MAX_AUTHORIZATIONS) throw err;
      if (err instanceof AuthorizationError && err.code === 'invalid_scope' && provider instanceof HeadlessOAuthProvider
          && lastChallenge) {
        const { resourceMetadataUrl, scope, error } = extractWWWAuthenticateParams(lastChallenge);
        fallbacks.push(`${name}: the SDK's re-authorization (${error ?? 'challenge'}, scope="${scope}") with its `
          + `client registered for "${registeredScopes.at(-1)}" got invalid_scope; re-registered via auth()`);
        provider.invalidateCredentials('client');
        const outcome = await auth(provider, { serverUrl, resourceMetadataUrl, scope, fetchFn: recordingFetch });
        if (outcome !== 'REDIRECT' || provider.pendingCode === undefined) throw new Error(`auth() answered ${outcome} without a code`);
      } else if (!isAuthRedirect(err, provider)) {
        throw err;
      }
      await session.transport.finishAuth(provider.takeCode());
      continue;
    }
    if (result.isError) {
      const text = (result.content ?? []).map((item) => item.text ?? '').join(' ');
      throw new Error(`tool ${name} answered isError: ${text}`);
    }
    if (result.structuredContent !== undefined) return result.structuredContent;
    const text = (result.content ?? []).filter((item) => item.type === 'text').map((item) => item.text).join('');
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  }
}

async function run() {
  const results = {};
  let provider;
  if (flow === 'client_credentials') {
    provider = new RecordingClientCredentialsProvider({
      clientId: 'cc-client',
      clientSecret: 'cc-secret',
      scope: 'mcp:read',
      clientName: 'mcp-gatekeeper node test client (client_credentials)',
    });
  } else {
    provider = new HeadlessOAuthProvider();
  }
  const session = await connect(provider);
  try {
    results.whoami = await callTool(session, provider, 'whoami');
    if (flow === 'step_up') {
      const before = provider.authorizations;
      results.write = await callTool(session, provider, 'write', { text: `step-up from node at ${new Date().toISOString()}` });
      results.step_up_authorization_requests = provider.authorizations - before;
      if (results.step_up_authorization_requests < 1) throw new Error('write succeeded without a step-up: the first token already had mcp:write');
      if (args['recheck-read']) {
        const beforeRecheck = provider.authorizations;
        results.whoami_after_write = await callTool(session, provider, 'whoami');
        results.recheck_authorization_requests = provider.authorizations - beforeRecheck;
      }
    }
  } finally {
    await Promise.allSettled([...inFlight]);
    await session.client.close().catch(() => {});
  }
  return results;
}

function report(ok, results, error) {
  const line = {
    flow,
    ok,
    results,
    exchanges,
    granted_scopes: grantedScopes,
  };
  if (authorizationScopes.length) line.authorization_scopes = authorizationScopes;
  if (registeredScopes.length) line.registered_scopes = registeredScopes;
  if (fallbacks.length) line.client_fallbacks = fallbacks;
  if (unroutedFetches) line.unrouted_fetches = unroutedFetches;
  if (sdkWarnings.length) line.sdk_warnings = sdkWarnings;
  if (error) line.error = error;
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

const timer = setTimeout(() => {
  console.error(`mcp_client.mjs: ${flow}: timed out after ${timeoutSeconds} s`);
  report(false, {}, `timeout after ${timeoutSeconds} s`);
  process.exit(1);
}, timeoutSeconds * 1000);

try {
  const results = await run();
  clearTimeout(timer);
  report(true, results);
  process.exit(0);
} catch (err) {
  clearTimeout(timer);
  const message = err?.stack ?? String(err);
  console.error(`mcp_client.mjs: ${flow} failed: ${message}`);
  report(false, {}, describe(err));
  process.exit(1);
}
