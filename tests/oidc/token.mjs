#!/usr/bin/env node
// Obtains (or revokes, or introspects) tokens at a running provider.mjs and prints the endpoint's
// JSON response as one line on stdout. Errors go to stderr with a non-zero exit status.
//
//   node token.mjs --issuer URL --grant client_credentials [--client ID --secret S] [--scope S] [--resource URL]...
//   node token.mjs --issuer URL --grant authorization_code [--client ID --secret S | --client-id ID]
//                  [--scope S] [--resource URL]... [--redirect-uri URL]
//   node token.mjs --issuer URL --grant refresh_token --token RT [--client ID --secret S | --client-id ID] [--resource URL]
//   node token.mjs --issuer URL --grant revoke --token T [--client ID --secret S]
//   node token.mjs --issuer URL --grant introspect --token T [--client ID --secret S]
//
// Confidential clients authenticate with HTTP Basic: by default cc-client/cc-secret, for introspect
// rs-client/rs-secret; --secret may be left out for provider.mjs's static clients. --client-id ID
// makes a public client (token_endpoint_auth_method none) that sends client_id in the body instead,
// e.g. one created by dynamic registration.
//
// authorization_code runs PKCE (S256) headlessly: it follows every redirect by hand
// (fetch redirect: 'manual') with a small cookie jar, through provider.mjs's auto-approving
// interactions, until the redirect to redirect_uri carries the code, then exchanges the code.

import * as crypto from 'node:crypto';
import { parseArgs } from 'node:util';
import { CookieJar } from './cookie_jar.mjs';

function fail(message) {
  console.error(`token.mjs: ${message}`);
  process.exit(1);
}

let args;
try {
  ({ values: args } = parseArgs({
    options: {
      issuer: { type: 'string' },
      grant: { type: 'string' },
      client: { type: 'string' },
      secret: { type: 'string' },
      'client-id': { type: 'string' },
      scope: { type: 'string' },
      resource: { type: 'string', multiple: true, default: [] },
      'redirect-uri': { type: 'string', default: 'http://127.0.0.1/callback' },
      token: { type: 'string' },
    },
    strict: true,
  }));
} catch (err) {
  fail(err.message);
}

if (!args.issuer) fail('--issuer is required');
const issuer = args.issuer.replace(/\/$/, '');

// Secrets of provider.mjs's static clients, so --client alone is enough for them.
const STATIC_SECRETS = { 'cc-client': 'cc-secret', 'short-client': 'short-secret', 'rs-client': 'rs-secret' };

// Client authentication: a public client (--client-id) sends client_id in the body; a confidential
// one uses HTTP Basic with form-urlencoded id and secret (RFC 6749 section 2.3.1).
function clientAuth(defaultId, defaultSecret) {
  if (args['client-id']) {
    if (args.client || args.secret) fail('--client-id (public client) excludes --client/--secret');
    return { headers: {}, body: { client_id: args['client-id'] } };
  }
  const id = args.client ?? defaultId;
  const secret = args.secret ?? (args.client ? STATIC_SECRETS[id] : defaultSecret);
  if (secret === undefined) fail(`--secret is required with --client ${id}`);
  const basic = Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64');
  return { headers: { authorization: `Basic ${basic}` }, body: {} };
}

function form(params) {
  const body = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value === undefined) continue;
    for (const item of Array.isArray(value) ? value : [value]) body.append(name, item);
  }
  return body;
}

async function discover() {
  const res = await fetch(`${issuer}/.well-known/openid-configuration`);
  if (!res.ok) fail(`discovery failed: HTTP ${res.status}`);
  return res.json();
}

// POST a form to an endpoint; returns the parsed JSON body (or {} for an empty 200, as revocation
// answers), failing on any non-2xx status.
async function post(url, params, auth) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { ...auth.headers, 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: form({ ...params, ...auth.body }),
  });
  const text = await res.text();
  if (!res.ok) fail(`${url} answered HTTP ${res.status}: ${text}`);
  return text ? JSON.parse(text) : {};
}


async function authorizationCode() {
  const metadata = await discover();
  const publicClient = Boolean(args['client-id']);
  const clientId = args['client-id'] ?? args.client ?? 'cc-client';
  const redirectUri = args['redirect-uri'];
  const scope = args.scope ?? 'openid mcp:read';
  const scopes = scope.split(' ');

  const verifier = crypto.randomBytes(32).toString('base64url');
  const challenge = crypto.createHash('sha256').update(verifier).digest('base64url');
  const state = crypto.randomBytes(16).toString('base64url');

  const authorize = new URL(metadata.authorization_endpoint);
  authorize.search = form({
    client_id: clientId,
    response_type: 'code',
    redirect_uri: redirectUri,
    scope,
    state,
    nonce: scopes.includes('openid') ? crypto.randomBytes(16).toString('base64url') : undefined,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    resource: args.resource.length ? args.resource : undefined,
    // OpenID Connect only grants offline_access (a refresh token) together with prompt=consent.
    prompt: scopes.includes('offline_access') ? 'consent' : undefined,
  }).toString();

  const jar = new CookieJar();
  let url = authorize;
  let code;
  for (let hop = 0; ; hop += 1) {
    if (hop === 20) fail('too many redirects');
    const res = await fetch(url, { redirect: 'manual', headers: { cookie: jar.header(url) } });
    jar.store(res, url);
    const location = res.headers.get('location');
    if (res.status < 300 || res.status >= 400 || !location) {
      fail(`expected a redirect from ${url.href}, got HTTP ${res.status}: ${(await res.text()).slice(0, 500)}`);
    }
    await res.arrayBuffer(); // drain the body so the connection can be reused
    const next = new URL(location, url);
    if (`${next.origin}${next.pathname}` === redirectUri) {
      const params = next.searchParams;
      if (params.get('error')) fail(`authorization failed: ${params.get('error')}: ${params.get('error_description') ?? ''}`);
      if (params.get('state') !== state) fail('state mismatch in the authorization response');
      if (params.get('iss') && params.get('iss') !== metadata.issuer) fail('iss mismatch in the authorization response');
      code = params.get('code');
      if (!code) fail(`no code in ${next.href}`);
      break;
    }
    url = next;
  }

  const auth = publicClient ? clientAuth() : clientAuth('cc-client', 'cc-secret');
  return post(metadata.token_endpoint, {
    grant_type: 'authorization_code',
    code,
    redirect_uri: redirectUri,
    code_verifier: verifier,
    resource: args.resource.length ? args.resource : undefined,
  }, auth);
}

async function main() {
  switch (args.grant) {
    case 'client_credentials': {
      const metadata = await discover();
      return post(metadata.token_endpoint, {
        grant_type: 'client_credentials',
        scope: args.scope,
        resource: args.resource.length ? args.resource : undefined,
      }, clientAuth('cc-client', 'cc-secret'));
    }
    case 'authorization_code':
      return authorizationCode();
    case 'refresh_token': {
      if (!args.token) fail('--token is required for refresh_token');
      const metadata = await discover();
      return post(metadata.token_endpoint, {
        grant_type: 'refresh_token',
        refresh_token: args.token,
        scope: args.scope,
        resource: args.resource.length ? args.resource : undefined,
      }, clientAuth('cc-client', 'cc-secret'));
    }
    case 'revoke': {
      if (!args.token) fail('--token is required for revoke');
      const metadata = await discover();
      await post(metadata.revocation_endpoint, { token: args.token }, clientAuth('cc-client', 'cc-secret'));
      return { revoked: true };
    }
    case 'introspect': {
      if (!args.token) fail('--token is required for introspect');
      const metadata = await discover();
      return post(metadata.introspection_endpoint, { token: args.token }, clientAuth('rs-client', 'rs-secret'));
    }
    default:
      return fail('--grant must be client_credentials, authorization_code, refresh_token, revoke or introspect');
  }
}

main().then(
  (result) => process.stdout.write(`${JSON.stringify(result)}\n`),
  (err) => fail(err.stack ?? String(err)),
);
