#!/usr/bin/env node
// Test-only OAuth 2.1 / OpenID Connect provider for mcp-gatekeeper's integration tests.
//
// A real panva/oidc-provider on 127.0.0.1 with an ephemeral port. When it is ready it prints exactly
// one JSON line on stdout (issuer and endpoints) and then serves until killed, or until its stdin
// closes when stdin is a pipe (so a parent that dies never leaves it behind). Logs go to stderr.
//
//   node provider.mjs [--alg RS256|ES256] [--resource URL]... [--opaque-resource URL]...
//                     [--short-ttl SECONDS] [--strict-registered-scope]
//                     [--dpop [--dpop-nonce]] [--mtls]
//
// --dpop turns on DPoP (RFC 9449): a token request with a `DPoP` proof header gets a token bound to
// the proof's key (cnf.jkt, token_type DPoP), and `dpop-client` must send one. --dpop-nonce also
// demands a server nonce in every proof (400 use_dpop_nonce + DPoP-Nonce first). --mtls turns on
// certificate-bound tokens (RFC 8705) for `mtls-client`; as the provider speaks plain HTTP, the
// client certificate comes in the test header `x-test-client-cert` (PEM, newlines may be `\n`).
//
// Besides the provider's own endpoints, two test hooks rotate the signing keys at run time:
//   POST /_test/rotate  new key (current --alg, new kid) signs from now on; old keys stay in jwks_uri
//   POST /_test/retire  drop every key but the newest from jwks_uri
// oidc-provider cannot change its keys at run time, so each rotation builds a new Provider with the
// new key set and the HTTP server dispatches to that one from then on. Every instance uses the same
// module-level in-memory store (tokens, grants, sessions, interactions, registered clients) and the
// same cookie keys, so whatever was issued before a rotation stays valid after it.
//
// OAuth 2.0 Token Exchange (RFC 8693), registered through oidc-provider's documented extension API
// `provider.registerGrantType` (docs/README.md "Custom Grant Types"): `proxy-client`/`proxy-secret`
// (HTTP Basic or client_secret_post) POSTs to the token endpoint
//   grant_type=urn:ietf:params:oauth:grant-type:token-exchange
//   subject_token=<access token issued by this provider: JWT (any --resource) or opaque>
//   subject_token_type=urn:ietf:params:oauth:token-type:access_token (or ...:jwt for a JWT)
//   resource=<one of --resource/--opaque-resource> (or audience=<same>; exactly one target)
//   [scope=...] [requested_token_type=urn:ietf:params:oauth:token-type:access_token]
// and gets {"access_token","issued_token_type":"urn:ietf:params:oauth:token-type:access_token",
// "token_type":"Bearer","expires_in","scope"}: a token for the target (aud = target) with the
// subject token's `sub`, a scope within both the subject token's scope and the target's, and
// `act: {"sub": "<exchanging client>"}` (RFC 8693 §4.1; nested when the subject token had one).
// The subject token must be active: a JWT is verified with this provider's own keys (iss, typ
// at+jwt, exp); an opaque one is looked up in the provider's AccessToken / ClientCredentials store.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';

const log = (...args) => console.error('[oidc-provider-test]', ...args);

// ---------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------

function usage(message) {
  if (message) console.error(`provider.mjs: ${message}`);
  console.error('usage: node provider.mjs [--alg RS256|ES256] [--resource URL]... [--opaque-resource URL]... [--short-ttl SECONDS] [--strict-registered-scope] [--dpop [--dpop-nonce]] [--mtls]');
  process.exit(2);
}

let options;
try {
  ({ values: options } = parseArgs({
    options: {
      alg: { type: 'string', default: 'RS256' },
      resource: { type: 'string', multiple: true, default: [] },
      'opaque-resource': { type: 'string', multiple: true, default: [] },
      'short-ttl': { type: 'string', default: '2' },
      'strict-registered-scope': { type: 'boolean', default: false },
      dpop: { type: 'boolean', default: false },
      'dpop-nonce': { type: 'boolean', default: false },
      mtls: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  }));
} catch (err) {
  usage(err.message);
}
if (options.help) usage();

const ALG = options.alg;
if (!['RS256', 'ES256'].includes(ALG)) usage(`unsupported --alg ${ALG}`);

const SHORT_TTL = Number(options['short-ttl']);
if (!Number.isInteger(SHORT_TTL) || SHORT_TTL <= 0) usage('--short-ttl must be a positive integer');
if (options['dpop-nonce'] && !options.dpop) usage('--dpop-nonce needs --dpop');

// Resource indicators are compared exactly as the client sends them. Tokens for RESOURCES are
// JWTs; tokens for OPAQUE_RESOURCES are opaque, stored, and introspect with aud = the resource.
const OPAQUE_RESOURCES = new Set(options['opaque-resource']);
const RESOURCES = new Set([...options.resource, ...OPAQUE_RESOURCES]);
for (const resource of RESOURCES) {
  if (!URL.canParse(resource)) usage(`--resource ${resource} is not an absolute URL`);
}

const SCOPES = ['openid', 'offline_access', 'mcp:read', 'mcp:write'];
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const TOKEN_TYPE_ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';
const TOKEN_TYPE_JWT = 'urn:ietf:params:oauth:token-type:jwt';
const RESOURCE_SCOPE = 'mcp:read mcp:write';
const ACCOUNT_ID = 'user-1';
// Cookie signing keys shared by every Provider instance, so an interaction or session started
// before a key rotation still works after it.
const COOKIE_KEYS = [crypto.randomBytes(32).toString('base64url')];
// DPoP nonces (--dpop-nonce) are stateless HMACs of a 60 s time step under this secret (32 bytes,
// as oidc-provider requires), shared by every Provider instance like the cookie keys.
const DPOP_NONCE_SECRET = crypto.randomBytes(32);

// ---------------------------------------------------------------------------------------------
// In-memory storage shared across Provider instances
// ---------------------------------------------------------------------------------------------

const store = new Map(); // `${model}:${id}` -> { payload, expiresAt (ms epoch or undefined) }
const grantIndex = new Map(); // grantId -> Set of store keys holding artifacts of that grant
const uidIndex = new Map(); // session uid -> store key
const userCodeIndex = new Map(); // device flow user code -> store key

function live(key) {
  const entry = store.get(key);
  if (!entry) return undefined;
  if (entry.expiresAt !== undefined && entry.expiresAt <= Date.now()) {
    store.delete(key);
    return undefined;
  }
  return entry.payload;
}

// Implements oidc-provider's adapter interface (see the package's lib/adapters/memory_adapter.js).
class SharedMemoryAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    const key = this.key(id);
    store.set(key, {
      payload: structuredClone(payload),
      expiresAt: expiresIn ? Date.now() + expiresIn * 1000 : undefined,
    });
    if (payload.grantId) {
      if (!grantIndex.has(payload.grantId)) grantIndex.set(payload.grantId, new Set());
      grantIndex.get(payload.grantId).add(key);
    }
    if (payload.uid) uidIndex.set(payload.uid, key);
    if (payload.userCode) userCodeIndex.set(payload.userCode, key);
  }

  async find(id) {
    const payload = live(this.key(id));
    return payload && structuredClone(payload);
  }

  async findByUid(uid) {
    const key = uidIndex.get(uid);
    const payload = key && live(key);
    return payload && structuredClone(payload);
  }

  async findByUserCode(userCode) {
    const key = userCodeIndex.get(userCode);
    const payload = key && live(key);
    return payload && structuredClone(payload);
  }

  async consume(id) {
    const entry = store.get(this.key(id));
    if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    store.delete(this.key(id));
  }

  async revokeByGrantId(grantId) {
    for (const key of grantIndex.get(grantId) ?? []) store.delete(key);
    grantIndex.delete(grantId);
  }
}

// ---------------------------------------------------------------------------------------------
// Signing keys
// ---------------------------------------------------------------------------------------------

// Newest first: oidc-provider signs with the first key that fits the algorithm, and publishes the
// public half of every key in jwks_uri.
let signingKeys = [];

function generateSigningKey(alg) {
  const { privateKey } = alg === 'ES256'
    ? crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: `${alg.toLowerCase()}-${crypto.randomBytes(6).toString('hex')}`, alg, use: 'sig' };
}

// ---------------------------------------------------------------------------------------------
// Provider
// ---------------------------------------------------------------------------------------------

function resourceServerInfo(resourceIndicator) {
  if (!RESOURCES.has(resourceIndicator)) throw new errors.InvalidTarget();
  if (OPAQUE_RESOURCES.has(resourceIndicator)) {
    return { scope: RESOURCE_SCOPE, audience: resourceIndicator, accessTokenFormat: 'opaque' };
  }
  return {
    scope: RESOURCE_SCOPE,
    audience: resourceIndicator,
    accessTokenFormat: 'jwt',
    jwt: { sign: { alg: ALG } },
  };
}

const clientTtl = (defaultTtl) => (ctx, token, client) => (
  client.clientId === 'short-client' ? SHORT_TTL : token.resourceServer?.accessTokenTTL ?? defaultTtl
);

function buildProvider(issuer) {
  const configuration = {
    adapter: SharedMemoryAdapter,
    jwks: { keys: signingKeys },
    cookies: { keys: COOKIE_KEYS },
    clients: [
      {
        client_id: 'cc-client',
        client_secret: 'cc-secret',
        grant_types: ['client_credentials', 'authorization_code', 'refresh_token'],
        response_types: ['code'],
        redirect_uris: ['http://127.0.0.1/callback'],
        scope: SCOPES.join(' '),
      },
      {
        client_id: 'short-client',
        client_secret: 'short-secret',
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        scope: SCOPES.join(' '),
      },
      {
        // With --dpop, DPoP is required: a token request without a DPoP proof gets invalid_grant.
        // (Any other client gets a DPoP-bound token when it sends a proof, a Bearer token if not.)
        client_id: 'dpop-client',
        client_secret: 'dpop-secret',
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        scope: SCOPES.join(' '),
        ...(options.dpop ? { dpop_bound_access_tokens: true } : {}),
      },
      ...(options.mtls ? [{
        // --mtls only: certificate-bound tokens (RFC 8705 §3, cnf["x5t#S256"], token_type stays
        // Bearer); the certificate comes from the x-test-client-cert header (see getCertificate).
        client_id: 'mtls-client',
        client_secret: 'mtls-secret',
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        scope: SCOPES.join(' '),
        tls_client_certificate_bound_access_tokens: true,
      }] : []),
      {
        // The reverse proxy's client: exchanges the tokens it receives for upstream tokens
        // (RFC 8693). client_credentials too, so it can also get a token of its own.
        client_id: 'proxy-client',
        client_secret: 'proxy-secret',
        grant_types: [TOKEN_EXCHANGE, 'client_credentials'],
        response_types: [],
        redirect_uris: [],
        scope: SCOPES.join(' '),
      },
      {
        // Only authenticates the resource server at the introspection endpoint.
        client_id: 'rs-client',
        client_secret: 'rs-secret',
        grant_types: [],
        response_types: [],
        redirect_uris: [],
      },
    ],
    // Algorithms accepted for DPoP proofs (advertised as dpop_signing_alg_values_supported);
    // oidc-provider's default is ES256 and EdDSA only.
    enabledJWA: { dPoPSigningAlgValues: ['ES256', 'ES384', 'EdDSA', 'RS256', 'PS256'] },
    clientDefaults: {
      id_token_signed_response_alg: ALG,
    },
    // RFC 8693 §4.1 `act` for exchanged tokens: spread into a JWT access token's payload and into
    // the introspection response of an opaque one (oidc-provider's `extra`).
    extraTokenClaims(ctx, token) {
      return token.kind === 'AccessToken' ? exchangeActs.get(ctx) : undefined;
    },
    scopes: SCOPES,
    // email is released under openid so that scopes_supported stays exactly SCOPES.
    claims: { openid: ['sub', 'email'] },
    async findAccount(ctx, id) {
      if (id !== ACCOUNT_ID) return undefined;
      return {
        accountId: id,
        async claims() {
          return { sub: id, email: 'user-1@example.test' };
        },
      };
    },
    pkce: {
      methods: ['S256'],
      required: () => true,
    },
    // Dynamically registered clients may ask for any supported scope later, whatever
    // `scope` they registered with: MCP clients register with the scope of the first
    // challenge and must be able to step up (what MCP's authorization servers do).
    // With --strict-registered-scope a client is held to the scope it registered with,
    // as oidc-provider does by default (tests/python_sdk.rs). The validator runs for
    // every registration and may edit the metadata.
    extraClientMetadata: {
      properties: ['fixture_note'],
      validator(ctx, key, value, metadata) {
        if (ctx && !options['strict-registered-scope']) delete metadata.scope;
      },
    },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      // Open dynamic client registration (no initial access token), for MCP clients.
      registration: { enabled: true },
      // DPoP (RFC 9449) at the token endpoint: the proof comes in the `DPoP` request header.
      dPoP: {
        enabled: options.dpop,
        // Nonces only with --dpop-nonce: then every DPoP token request must carry one.
        ...(options['dpop-nonce'] ? { nonceSecret: DPOP_NONCE_SECRET, requireNonce: () => true } : {}),
      },
      // Certificate-bound access tokens (RFC 8705); no client authentication by certificate.
      mTLS: {
        enabled: options.mtls,
        certificateBoundAccessTokens: options.mtls,
        // The provider speaks plain HTTP: the test sends the client certificate (PEM, newlines
        // as \n or base64 DER) in a header instead of a TLS handshake.
        getCertificate: (ctx) => {
          const value = ctx.get('x-test-client-cert');
          return value ? value.replace(/\\n/g, '\n') : undefined;
        },
      },
      resourceIndicators: {
        enabled: true,
        // No resource requested => no resource: the access token is opaque (for authorization_code
        // with openid it is the userinfo token). Never default to a resource.
        defaultResource: (ctx, client, oneOf) => oneOf,
        // A resource granted at the authorization endpoint is only used at the token endpoint when
        // the token request names it again. (oidc-provider still uses the single granted resource
        // when the code's scope has no openid: RFC 8707 behaviour that it does not let us turn off.)
        useGrantedResource: () => false,
        async getResourceServerInfo(ctx, resourceIndicator) {
          return resourceServerInfo(resourceIndicator);
        },
      },
    },
    ttl: {
      AccessToken: clientTtl(60 * 60),
      ClientCredentials: clientTtl(10 * 60),
      AuthorizationCode: 60,
      IdToken: 60 * 60,
      RefreshToken: 24 * 60 * 60,
      Interaction: 10 * 60,
      Session: 24 * 60 * 60,
      Grant: 24 * 60 * 60,
    },
    // Any origin may call the provider from a browser: this is a test fixture.
    clientBasedCORS: () => true,
    // Default is `/interaction/${uid}`, handled by `interaction()` below before the provider sees it.
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    renderError(ctx, out) {
      ctx.type = 'json';
      ctx.body = out;
    },
  };

  const provider = new Provider(issuer, configuration);
  registerTokenExchange(provider);
  provider.on('server_error', (ctx, err) => log('server_error', err));
  provider.on('grant.error', (ctx, err) => log('grant.error', err.message, err.error_description ?? ''));
  return provider;
}

// ---------------------------------------------------------------------------------------------
// OAuth 2.0 Token Exchange (RFC 8693)
// ---------------------------------------------------------------------------------------------

// ctx -> the `act` claim of the token being issued in that request (read by extraTokenClaims).
const exchangeActs = new WeakMap();

const b64json = (part) => JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));

// A JWT access token issued by this provider, verified with its own keys (current and rotated
// ones, as published in jwks_uri). Returns its claims, or undefined when it does not verify.
function verifyOwnJwt(issuer, token) {
  const parts = token.split('.');
  if (parts.length !== 3) return undefined;
  let header;
  let claims;
  try {
    header = b64json(parts[0]);
    claims = b64json(parts[1]);
  } catch {
    return undefined;
  }
  if (header.typ !== 'at+jwt' || !['RS256', 'ES256'].includes(header.alg)) return undefined;
  const jwk = signingKeys.find((key) => key.kid === header.kid && key.alg === header.alg);
  if (!jwk) return undefined;
  const key = crypto.createPublicKey({ key: jwk, format: 'jwk' });
  const ok = crypto.verify(
    'sha256',
    Buffer.from(`${parts[0]}.${parts[1]}`),
    header.alg === 'ES256' ? { key, dsaEncoding: 'ieee-p1363' } : key,
    Buffer.from(parts[2], 'base64url'),
  );
  const now = Math.floor(Date.now() / 1000);
  if (!ok || claims.iss !== issuer || typeof claims.exp !== 'number' || claims.exp <= now) return undefined;
  if (typeof claims.sub !== 'string') return undefined;
  return claims;
}

// The subject token as { sub, scope, aud, act } when it is an active access token of this provider.
async function findSubject(provider, token, tokenType) {
  if (tokenType === TOKEN_TYPE_JWT || token.split('.').length === 3) {
    const claims = verifyOwnJwt(provider.issuer, token);
    return claims && {
      sub: claims.sub, scope: claims.scope ?? '', aud: claims.aud, act: claims.act, exp: claims.exp, format: 'jwt',
    };
  }
  const stored = (await provider.AccessToken.find(token)) ?? (await provider.ClientCredentials.find(token));
  if (!stored || !stored.isValid) return undefined;
  return {
    sub: stored.accountId ?? stored.clientId,
    scope: stored.scope ?? '',
    aud: stored.aud,
    act: stored.extra?.act,
    exp: stored.exp,
    format: 'opaque',
  };
}

const asList = (value) => (value === undefined ? [] : [value].flat());

function registerTokenExchange(provider) {
  const parameters = [
    'audience', 'resource', 'scope', 'requested_token_type',
    'subject_token', 'subject_token_type', 'actor_token', 'actor_token_type',
  ];
  const allowedDuplicates = ['audience', 'resource'];

  async function tokenExchangeHandler(ctx, next) {
    const { params, client } = ctx.oidc; // client: authenticated by the token endpoint already

    // (errors.InvalidRequest's second argument is the HTTP status, not a parameter name.)
    if (!params.subject_token) throw new errors.InvalidRequest('missing required parameter subject_token');
    if (!params.subject_token_type) throw new errors.InvalidRequest('missing required parameter subject_token_type');
    if (![TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_JWT].includes(params.subject_token_type)) {
      throw new errors.InvalidRequest('unsupported subject_token_type');
    }
    if (params.requested_token_type && params.requested_token_type !== TOKEN_TYPE_ACCESS_TOKEN) {
      throw new errors.InvalidRequest('unsupported requested_token_type');
    }
    if (params.actor_token || params.actor_token_type) {
      throw new errors.InvalidRequest('actor_token is not supported: the authenticated client is the actor');
    }

    // Exactly one target, named by `resource` (RFC 8707) or `audience` (RFC 8693 §2.1).
    const targets = [...new Set([...asList(params.resource), ...asList(params.audience)])];
    if (targets.length !== 1) {
      throw new errors.InvalidTarget('exactly one resource or audience must be requested');
    }
    const [target] = targets;
    const info = resourceServerInfo(target); // InvalidTarget for unknown targets

    const subject = await findSubject(provider, params.subject_token, params.subject_token_type);
    if (!subject) throw new errors.InvalidGrant('subject_token is invalid, expired or not issued here');

    // Scope: what was asked for (default: all of the subject's), within the subject token's and
    // the target's scope.
    const subjectScope = new Set(subject.scope.split(' ').filter(Boolean));
    const targetScope = new Set(info.scope.split(' '));
    const requested = params.scope ? params.scope.split(' ').filter(Boolean) : [...subjectScope];
    const beyond = requested.filter((scope) => !subjectScope.has(scope));
    if (beyond.length) throw new errors.InvalidScope('scope exceeds the subject token', beyond.join(' '));
    const scope = requested.filter((scope) => targetScope.has(scope)).join(' ') || undefined;

    const act = subject.act ? { sub: client.clientId, act: subject.act } : { sub: client.clientId };
    exchangeActs.set(ctx, { act });

    // An AccessToken with accountId = the subject's sub (a user, or the client of a
    // client_credentials token). No grantId: the subject's grant belongs to another client,
    // and introspection drops tokens whose grant's client differs.
    const token = new provider.AccessToken({
      accountId: subject.sub,
      client,
      scope,
      gty: 'token_exchange',
    });
    token.resourceServer = new provider.ResourceServer(target, info);
    // Never outlive the subject token: expires_in = min(the usual TTL, what the subject has left).
    token.expiresIn = Math.min(token.expiration, subject.exp - Math.floor(Date.now() / 1000));
    ctx.oidc.entity('AccessToken', token);
    const value = await token.save();

    ctx.body = {
      access_token: value,
      issued_token_type: TOKEN_TYPE_ACCESS_TOKEN,
      token_type: token.tokenType,
      expires_in: token.expiration,
      scope: token.scope || undefined,
    };
    log(`token exchange: ${client.clientId} exchanged a ${subject.format} token of ${subject.sub} for ${target}`);
    await next();
  }

  provider.registerGrantType(TOKEN_EXCHANGE, tokenExchangeHandler, parameters, allowedDuplicates);
}

// ---------------------------------------------------------------------------------------------
// Headless, auto-approving interactions
// ---------------------------------------------------------------------------------------------

// GET /interaction/:uid. Logs in `user-1` (login prompt) or grants everything that was asked for
// (consent prompt), then redirects back into the authorization flow with 303.
async function interaction(provider, req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, session } = details;

  if (prompt.name === 'login') {
    await provider.interactionFinished(req, res, { login: { accountId: ACCOUNT_ID } }, {
      mergeWithLastSubmission: false,
    });
    return;
  }

  if (prompt.name === 'consent') {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });

    const missing = prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }

    const grantId = await grant.save();
    await provider.interactionFinished(req, res, { consent: { grantId } }, {
      mergeWithLastSubmission: true,
    });
    return;
  }

  throw new Error(`unexpected interaction prompt ${prompt.name}`);
}

// ---------------------------------------------------------------------------------------------
// HTTP server: dispatches to the current Provider instance
// ---------------------------------------------------------------------------------------------

let current; // { provider, handler }

function install(issuer) {
  const provider = buildProvider(issuer);
  current = { provider, handler: provider.callback() };
}

function sendJson(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

const keyReport = () => ({ kid: signingKeys[0].kid, kids: signingKeys.map((key) => key.kid) });

async function dispatch(issuer, req, res) {
  const { pathname } = new URL(req.url, issuer);

  if (pathname === '/_test/rotate' || pathname === '/_test/retire') {
    if (req.method !== 'POST') {
      sendJson(res, 405, { error: 'method_not_allowed' });
      return;
    }
    if (pathname === '/_test/rotate') {
      signingKeys = [generateSigningKey(ALG), ...signingKeys];
    } else {
      signingKeys = signingKeys.slice(0, 1);
    }
    install(issuer);
    log(`${pathname.slice(7)}: signing with ${signingKeys[0].kid}; jwks_uri has ${signingKeys.map((key) => key.kid).join(', ')}`);
    sendJson(res, 200, keyReport());
    return;
  }

  // RFC 8414 metadata, which MCP clients look up first: the same document as OIDC discovery.
  if (pathname === '/.well-known/oauth-authorization-server') {
    req.url = '/.well-known/openid-configuration';
  }

  if (req.method === 'GET' && /^\/interaction\/[^/]+$/.test(pathname)) {
    await interaction(current.provider, req, res);
    return;
  }

  current.handler(req, res);
}

// Exit when stdin is a pipe and it closes (the parent died or closed it on purpose). Not when stdin
// is a terminal or /dev/null, which would otherwise end the provider at once.
function exitWithParent() {
  let stat;
  try {
    stat = fs.fstatSync(0);
  } catch {
    return;
  }
  if (!stat.isFIFO() && !stat.isSocket()) return;
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
  process.stdin.on('data', () => {}); // consume and ignore whatever the parent writes
  process.stdin.resume();
}

async function main() {
  signingKeys = [generateSigningKey(ALG)];

  let issuer;
  const server = http.createServer((req, res) => {
    dispatch(issuer, req, res).catch((err) => {
      log('request failed', req.method, req.url, err);
      if (!res.headersSent) sendJson(res, 500, { error: 'server_error', error_description: String(err.message ?? err) });
      else res.destroy();
    });
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  issuer = `http://127.0.0.1:${server.address().port}`;
  install(issuer);

  // Take endpoint URLs from the provider's own discovery document instead of hard-coding its routes.
  const discovery = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json();
  const ready = {
    issuer: discovery.issuer,
    authorization_endpoint: discovery.authorization_endpoint,
    token_endpoint: discovery.token_endpoint,
    introspection_endpoint: discovery.introspection_endpoint,
    revocation_endpoint: discovery.revocation_endpoint,
    registration_endpoint: discovery.registration_endpoint,
    userinfo_endpoint: discovery.userinfo_endpoint,
    jwks_uri: discovery.jwks_uri,
    rotate_endpoint: `${issuer}/_test/rotate`,
    retire_endpoint: `${issuer}/_test/retire`,
    alg: ALG,
    kid: signingKeys[0].kid,
    resources: [...RESOURCES],
    short_ttl: SHORT_TTL,
    dpop: options.dpop,
    dpop_nonce: options['dpop-nonce'],
    mtls: options.mtls,
    token_exchange: discovery.grant_types_supported.includes(TOKEN_EXCHANGE),
  };
  process.stdout.write(`${JSON.stringify(ready)}\n`);
  const extras = [options.dpop && `dpop${options['dpop-nonce'] ? ' with nonces' : ''}`, options.mtls && 'mtls'].filter(Boolean);
  log(`ready at ${issuer} (alg ${ALG}, resources: ${[...RESOURCES].join(', ') || 'none'}${extras.length ? `; ${extras.join(', ')}` : ''})`);

  exitWithParent();
  process.on('SIGTERM', () => process.exit(0));
  process.on('SIGINT', () => process.exit(0));
}

main().catch((err) => {
  log('failed to start', err);
  process.exit(1);
});
