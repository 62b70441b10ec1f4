// Self-test of the fixture: starts provider.mjs and drives it with token.mjs, as the Rust tests do.
//   cd tests/oidc && node --test provider.test.mjs
// Loopback only: every request goes to the provider's 127.0.0.1 address.

import * as assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import * as crypto from 'node:crypto';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { describe, it, before, after } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const here = fileURLToPath(new URL('.', import.meta.url));
const RESOURCE = 'http://127.0.0.1:9/mcp';
const SHORT_TTL = 2;

// Starts provider.mjs with a piped stdin (closing it ends the provider) and resolves with the child
// and its ready line.
async function startProvider(args, stdin = 'pipe') {
  const child = spawn(process.execPath, ['provider.mjs', ...args], {
    cwd: here,
    stdio: [stdin, 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout });
  const [line] = await Promise.race([
    once(lines, 'line'),
    once(child, 'exit').then(([code]) => { throw new Error(`provider.mjs exited with ${code}`); }),
  ]);
  return { child, ready: JSON.parse(line) };
}

async function stopProvider(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  await once(child, 'exit');
}

// Runs token.mjs and returns its parsed JSON line; rejects (with stderr) on a non-zero exit.
// Generated values (tokens, client ids) go as --name=value: one starting with '-' would
// otherwise be taken by parseArgs for an option (a random client id did, once in a while).
async function token(issuer, ...args) {
  const { stdout } = await promisify(execFile)(process.execPath, ['token.mjs', '--issuer', issuer, ...args], { cwd: here });
  const lines = stdout.trim().split('\n');
  assert.equal(lines.length, 1, 'token.mjs prints exactly one line');
  return JSON.parse(lines[0]);
}

function decodeJwt(jwt) {
  const parts = jwt.split('.');
  assert.equal(parts.length, 3, `not a compact JWS: ${jwt}`);
  const [header, payload] = parts.slice(0, 2).map((part) => JSON.parse(Buffer.from(part, 'base64url')));
  return { header, payload, parts };
}

async function getJson(url, init) {
  const res = await fetch(url, init);
  assert.ok(res.ok, `${url}: HTTP ${res.status}`);
  return res.json();
}

const jwksKids = async (ready) => (await getJson(ready.jwks_uri)).keys.map((key) => key.kid);

// Checks the JWS signature against the provider's published key with that kid.
async function assertSignedByJwks(ready, jwt, alg) {
  const { header, parts } = decodeJwt(jwt);
  assert.equal(header.alg, alg);
  const jwk = (await getJson(ready.jwks_uri)).keys.find((key) => key.kid === header.kid);
  assert.ok(jwk, `kid ${header.kid} is in jwks_uri`);
  const ok = crypto.verify(
    'sha256',
    Buffer.from(`${parts[0]}.${parts[1]}`),
    { key: crypto.createPublicKey({ key: jwk, format: 'jwk' }), dsaEncoding: 'ieee-p1363' },
    Buffer.from(parts[2], 'base64url'),
  );
  assert.ok(ok, 'signature verifies with the published key');
  return header.kid;
}

async function introspect(ready, value) {
  const basic = Buffer.from('rs-client:rs-secret').toString('base64');
  return getJson(ready.introspection_endpoint, {
    method: 'POST',
    headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token: value }),
  });
}

for (const alg of ['RS256', 'ES256']) {
  describe(`provider.mjs --alg ${alg}`, () => {
    let child;
    let ready;
    let issuer;

    before(async () => {
      ({ child, ready } = await startProvider(['--alg', alg, '--resource', RESOURCE, '--short-ttl', String(SHORT_TTL)]));
      issuer = ready.issuer;
    });
    after(() => stopProvider(child));

    it('prints its issuer and endpoints as one JSON line', async () => {
      assert.match(issuer, /^http:\/\/127\.0\.0\.1:\d+$/);
      const discovery = await getJson(`${issuer}/.well-known/openid-configuration`);
      for (const name of ['token_endpoint', 'introspection_endpoint', 'revocation_endpoint', 'registration_endpoint', 'jwks_uri', 'authorization_endpoint']) {
        assert.equal(ready[name], discovery[name], name);
      }
      assert.equal(ready.alg, alg);
      assert.deepEqual(ready.resources, [RESOURCE]);
      assert.deepEqual(discovery.scopes_supported, ['openid', 'offline_access', 'mcp:read', 'mcp:write']);
      assert.deepEqual(discovery.code_challenge_methods_supported, ['S256']);
      assert.deepEqual(await jwksKids(ready), [ready.kid]);
      assert.deepEqual(await getJson(`${issuer}/.well-known/oauth-authorization-server`), discovery);
    });

    it('(a) client_credentials with a resource gives a JWT for that audience', async () => {
      const res = await token(issuer, '--grant', 'client_credentials', '--scope', 'mcp:read', '--resource', RESOURCE);
      const { header, payload } = decodeJwt(res.access_token);
      assert.equal(header.typ, 'at+jwt');
      assert.equal(payload.aud, RESOURCE);
      assert.equal(payload.iss, issuer);
      assert.equal(payload.client_id, 'cc-client');
      assert.equal(payload.scope, 'mcp:read');
      assert.equal(await assertSignedByJwks(ready, res.access_token, alg), ready.kid);
      // oidc-provider does not store JWT access tokens, so introspection does not know them.
      assert.deepEqual(await introspect(ready, res.access_token), { active: false });
    });

    it('(a) refuses a resource it does not know with invalid_target', async () => {
      await assert.rejects(
        token(issuer, '--grant', 'client_credentials', '--scope', 'mcp:read', '--resource', 'http://127.0.0.1:9/other'),
        /invalid_target/,
      );
    });

    it('(b) no resource gives an opaque token that introspects until revoked', async () => {
      const res = await token(issuer, '--grant', 'client_credentials', '--scope', 'mcp:read mcp:write');
      assert.equal(res.access_token.split('.').length, 1, 'opaque');
      const active = await introspect(ready, res.access_token);
      assert.equal(active.active, true);
      assert.equal(active.scope, 'mcp:read mcp:write');
      assert.equal(active.client_id, 'cc-client');
      assert.equal(active.iss, issuer);
      assert.deepEqual(await token(issuer, '--grant', 'introspect', `--token=${res.access_token}`), active);

      assert.deepEqual(await token(issuer, '--grant', 'revoke', `--token=${res.access_token}`), { revoked: true });
      assert.deepEqual(await introspect(ready, res.access_token), { active: false });
    });

    it('(c) authorization_code with openid gives an id_token and an access token', async () => {
      const plain = await token(issuer, '--grant', 'authorization_code', '--scope', 'openid mcp:read');
      const id = decodeJwt(plain.id_token).payload;
      assert.equal(id.sub, 'user-1');
      assert.equal(id.aud, 'cc-client');
      assert.equal(id.iss, issuer);
      await assertSignedByJwks(ready, plain.id_token, alg);
      assert.equal(plain.access_token.split('.').length, 1, 'no resource => opaque');
      const userinfo = await getJson(ready.userinfo_endpoint, { headers: { authorization: `Bearer ${plain.access_token}` } });
      assert.deepEqual(userinfo, { sub: 'user-1', email: 'user-1@example.test' });

      const withResource = await token(issuer, '--grant', 'authorization_code', '--scope', 'openid mcp:read mcp:write offline_access', '--resource', RESOURCE);
      assert.ok(withResource.id_token);
      assert.ok(withResource.refresh_token, 'offline_access gives a refresh token');
      const at = decodeJwt(withResource.access_token).payload;
      assert.equal(at.aud, RESOURCE);
      assert.equal(at.sub, 'user-1');
      assert.equal(at.scope, 'mcp:read mcp:write');
      await assertSignedByJwks(ready, withResource.access_token, alg);

      const refreshed = await token(issuer, '--grant', 'refresh_token', `--token=${withResource.refresh_token}`, '--resource', RESOURCE);
      assert.equal(decodeJwt(refreshed.access_token).payload.aud, RESOURCE);
    });

    it('(d) short-client tokens live --short-ttl seconds', async () => {
      const res = await token(issuer, '--grant', 'client_credentials', '--client', 'short-client', '--secret', 'short-secret', '--scope', 'mcp:read');
      assert.equal(res.expires_in, SHORT_TTL);
      assert.equal((await introspect(ready, res.access_token)).active, true);
      const jwt = await token(issuer, '--grant', 'client_credentials', '--client', 'short-client', '--secret', 'short-secret', '--scope', 'mcp:read', '--resource', RESOURCE);
      assert.equal(jwt.expires_in, SHORT_TTL);
      const { payload } = decodeJwt(jwt.access_token);
      assert.equal(payload.exp - payload.iat, SHORT_TTL);
      await new Promise((resolve) => { setTimeout(resolve, (SHORT_TTL + 1) * 1000); });
      assert.deepEqual(await introspect(ready, res.access_token), { active: false });
    });

    it('(g) dynamic registration of a public client, then authorization_code + PKCE', async () => {
      const redirectUri = 'http://127.0.0.1:7777/callback';
      const res = await fetch(ready.registration_endpoint, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          client_name: 'mcp test client',
          redirect_uris: [redirectUri],
          token_endpoint_auth_method: 'none',
          grant_types: ['authorization_code', 'refresh_token'],
          response_types: ['code'],
        }),
      });
      assert.equal(res.status, 201);
      const client = await res.json();
      assert.equal(client.token_endpoint_auth_method, 'none');
      assert.equal(client.client_secret, undefined);

      const tokens = await token(issuer, '--grant', 'authorization_code', `--client-id=${client.client_id}`, '--redirect-uri', redirectUri, '--scope', 'openid mcp:read', '--resource', RESOURCE);
      assert.equal(decodeJwt(tokens.id_token).payload.aud, client.client_id);
      const at = decodeJwt(tokens.access_token).payload;
      assert.equal(at.aud, RESOURCE);
      assert.equal(at.client_id, client.client_id);
    });

    it('(e) rotate then retire signing keys at run time', async () => {
      const oldKid = ready.kid;
      const before = await token(issuer, '--grant', 'client_credentials', '--scope', 'mcp:read');
      const oldJwt = await token(issuer, '--grant', 'client_credentials', '--scope', 'mcp:read', '--resource', RESOURCE);

      const rotated = await getJson(ready.rotate_endpoint, { method: 'POST' });
      assert.notEqual(rotated.kid, oldKid);
      assert.deepEqual(rotated.kids, [rotated.kid, oldKid]);
      assert.deepEqual((await jwksKids(ready)).sort(), [rotated.kid, oldKid].sort());
      for (const key of (await getJson(ready.jwks_uri)).keys) assert.equal(key.d, undefined, 'public keys only');

      const after = await token(issuer, '--grant', 'client_credentials', '--scope', 'mcp:read', '--resource', RESOURCE);
      assert.equal(await assertSignedByJwks(ready, after.access_token, alg), rotated.kid);
      assert.equal(await assertSignedByJwks(ready, oldJwt.access_token, alg), oldKid);
      const code = await token(issuer, '--grant', 'authorization_code', '--scope', 'openid mcp:read');
      assert.equal(decodeJwt(code.id_token).header.kid, rotated.kid);
      assert.equal((await introspect(ready, before.access_token)).active, true, 'tokens survive the swap');

      const retired = await getJson(ready.retire_endpoint, { method: 'POST' });
      assert.deepEqual(retired, { kid: rotated.kid, kids: [rotated.kid] });
      assert.deepEqual(await jwksKids(ready), [rotated.kid]);
      assert.equal((await introspect(ready, before.access_token)).active, true);

      const second = await getJson(ready.rotate_endpoint, { method: 'POST' });
      assert.deepEqual(second.kids, [second.kid, rotated.kid]);
    });
  });
}

// A DPoP proof (RFC 9449 §4.2) signed with an ES256 key from node:crypto, as a client would send it.
function dpopKey() {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const { kty, crv, x, y } = publicKey.export({ format: 'jwk' });
  // RFC 7638 thumbprint: the required members in lexicographic order, no whitespace.
  const jkt = crypto.createHash('sha256').update(JSON.stringify({ crv, kty, x, y })).digest('base64url');
  const proof = (htu, htm, nonce) => {
    const header = { typ: 'dpop+jwt', alg: 'ES256', jwk: { kty, crv, x, y } };
    const payload = { jti: crypto.randomUUID(), htm, htu, iat: Math.floor(Date.now() / 1000), ...(nonce ? { nonce } : {}) };
    const input = [header, payload].map((part) => Buffer.from(JSON.stringify(part)).toString('base64url')).join('.');
    const signature = crypto.sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' });
    return `${input}.${signature.toString('base64url')}`;
  };
  return { jkt, proof };
}

// client_credentials at the token endpoint with an optional DPoP proof and extra headers.
async function clientCredentials(ready, { client = 'cc-client', secret = 'cc-secret', dpop, headers = {}, resource = RESOURCE } = {}) {
  const res = await fetch(ready.token_endpoint, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`${client}:${secret}`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
      ...(dpop ? { dpop } : {}),
      ...headers,
    },
    body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'mcp:read', resource }),
  });
  return { status: res.status, nonce: res.headers.get('dpop-nonce'), body: await res.json() };
}

// A self-signed P-256 certificate (CN=mtls-client, valid until 2126) for the --mtls client.
const CLIENT_CERT = `-----BEGIN CERTIFICATE-----
MIIBgzCCASmgAwIBAgIUYdam2CM+ROkz7bosoZBU4VAtkp0wCgYIKoZIzj0EAwIw
FjEUMBIGA1UEAwwLbXRscy1jbGllbnQwIBcNMjYxMjAxMjE1NzA5WhgPMjEyNjEx
MDcyMTU3MDlaMBYxFDASBgNVBAMMC210bHMtY2xpZW50MFkwEwYHKoZIzj0CAQYI
KoZIzj0DAQcDQgAED1rj+FoMqGLLRhJP8CKIDqR9kkZe5RUefEGtuFbL2qfzx1+b
FZrVWBZ2unmSJU4W0WX37IjMNgAFdl64/bEil6NTMFEwHQYDVR0OBBYEFH91XnZ4
2sM/FoCMo7oBOVM/lXxdMB8GA1UdIwQYMBaAFH91XnZ42sM/FoCMo7oBOVM/lXxd
MA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIhAIUBaD4fosKazQO3
0bM2dWbzkEztaazBYPwQvNqFqMCCAiBfZwnP7UoZNRizgjbCfGegAhS7pd4Vnwhr
ABDShk8l6g==
-----END CERTIFICATE-----
`;

describe('provider.mjs --dpop, --dpop-nonce, --mtls', () => {
  let plain;
  let nonces;

  before(async () => {
    [plain, nonces] = await Promise.all([
      startProvider(['--alg', 'ES256', '--resource', RESOURCE, '--dpop', '--mtls']),
      startProvider(['--alg', 'ES256', '--resource', RESOURCE, '--dpop', '--dpop-nonce']),
    ]);
  });
  after(() => Promise.all([plain, nonces].filter(Boolean).map(({ child }) => stopProvider(child))));

  it('binds a client_credentials JWT to the DPoP proof key (cnf.jkt, token_type DPoP)', async () => {
    const { ready } = plain;
    assert.equal(ready.dpop, true);
    assert.equal(ready.dpop_nonce, false);
    const discovery = await getJson(`${ready.issuer}/.well-known/openid-configuration`);
    assert.ok(discovery.dpop_signing_alg_values_supported.includes('ES256'));

    const key = dpopKey();
    const res = await clientCredentials(ready, { dpop: key.proof(ready.token_endpoint, 'POST') });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.token_type, 'DPoP');
    const { header, payload } = decodeJwt(res.body.access_token);
    assert.equal(header.typ, 'at+jwt');
    assert.equal(payload.aud, RESOURCE);
    assert.deepEqual(payload.cnf, { jkt: key.jkt });
    await assertSignedByJwks(ready, res.body.access_token, 'ES256');

    // Without a proof: a Bearer token for cc-client, invalid_grant for dpop-client.
    const bearer = await clientCredentials(ready);
    assert.equal(bearer.body.token_type, 'Bearer');
    assert.equal(decodeJwt(bearer.body.access_token).payload.cnf, undefined);
    const refused = await clientCredentials(ready, { client: 'dpop-client', secret: 'dpop-secret' });
    assert.equal(refused.status, 400);
    assert.equal(refused.body.error, 'invalid_grant');
    const bound = await clientCredentials(ready, { client: 'dpop-client', secret: 'dpop-secret', dpop: key.proof(ready.token_endpoint, 'POST') });
    assert.deepEqual(decodeJwt(bound.body.access_token).payload.cnf, { jkt: key.jkt });
  });

  it('--dpop-nonce answers use_dpop_nonce with a DPoP-Nonce first, then accepts the proof with it', async () => {
    const { ready } = nonces;
    const key = dpopKey();
    const first = await clientCredentials(ready, { dpop: key.proof(ready.token_endpoint, 'POST') });
    assert.equal(first.status, 400);
    assert.equal(first.body.error, 'use_dpop_nonce');
    assert.ok(first.nonce, 'DPoP-Nonce header');

    const second = await clientCredentials(ready, { dpop: key.proof(ready.token_endpoint, 'POST', first.nonce) });
    assert.equal(second.status, 200, JSON.stringify(second.body));
    assert.equal(second.body.token_type, 'DPoP');
    assert.deepEqual(decodeJwt(second.body.access_token).payload.cnf, { jkt: key.jkt });
  });

  it('--mtls binds mtls-client tokens to the x-test-client-cert certificate (cnf x5t#S256)', async () => {
    const { ready } = plain;
    const x5t = crypto.createHash('sha256').update(new crypto.X509Certificate(CLIENT_CERT).raw).digest('base64url');
    const res = await clientCredentials(ready, {
      client: 'mtls-client',
      secret: 'mtls-secret',
      headers: { 'x-test-client-cert': CLIENT_CERT.replace(/\n/g, '\\n') },
    });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.token_type, 'Bearer');
    assert.deepEqual(decodeJwt(res.body.access_token).payload.cnf, { 'x5t#S256': x5t });
  });
});

describe('provider.mjs token exchange (RFC 8693, proxy-client)', () => {
  const UPSTREAM = 'http://127.0.0.1:10/upstream';
  const OPAQUE_UPSTREAM = 'http://127.0.0.1:11/opaque-upstream';
  let provider;

  before(async () => {
    provider = await startProvider(['--resource', RESOURCE, '--resource', UPSTREAM, '--opaque-resource', OPAQUE_UPSTREAM]);
  });
  after(() => provider && stopProvider(provider.child));

  async function exchange(ready, params, { client = 'proxy-client', secret = 'proxy-secret' } = {}) {
    const res = await fetch(ready.token_endpoint, {
      method: 'POST',
      headers: {
        authorization: `Basic ${Buffer.from(`${client}:${secret}`).toString('base64')}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: new URLSearchParams({
        grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
        subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
        ...params,
      }),
    });
    return { status: res.status, body: await res.json() };
  }

  it('exchanges a token for the proxy for one for the upstream: aud the upstream, same sub, act the proxy', async () => {
    const { ready } = provider;
    const subject = await clientCredentials(ready);
    assert.equal(subject.status, 200, JSON.stringify(subject.body));
    const res = await exchange(ready, { subject_token: subject.body.access_token, resource: UPSTREAM });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.issued_token_type, 'urn:ietf:params:oauth:token-type:access_token');
    assert.equal(res.body.token_type, 'Bearer');
    const before = decodeJwt(subject.body.access_token).payload;
    const after = decodeJwt(res.body.access_token).payload;
    assert.equal(after.aud, UPSTREAM);
    assert.equal(after.sub, before.sub);
    assert.deepEqual(after.act, { sub: 'proxy-client' });
    assert.ok(after.exp <= before.exp, 'never outlives the subject token');
    // An opaque upstream token introspects with the upstream as audience.
    const opaque = await exchange(ready, { subject_token: subject.body.access_token, resource: OPAQUE_UPSTREAM });
    assert.equal(opaque.status, 200, JSON.stringify(opaque.body));
    assert.equal(opaque.body.access_token.split('.').length, 1);
  });

  it('refuses a forged subject token, an unknown target, a wider scope and other clients', async () => {
    const { ready } = provider;
    const subject = (await clientCredentials(ready)).body.access_token;
    const forged = `${subject.slice(0, -4)}AAAA`;
    assert.equal((await exchange(ready, { subject_token: forged, resource: UPSTREAM })).body.error, 'invalid_grant');
    assert.equal((await exchange(ready, { subject_token: subject, resource: 'http://127.0.0.1:12/nope' })).body.error, 'invalid_target');
    assert.equal((await exchange(ready, { subject_token: subject, resource: UPSTREAM, scope: 'mcp:write' })).body.error, 'invalid_scope');
    const other = await exchange(ready, { subject_token: subject, resource: UPSTREAM }, { client: 'cc-client', secret: 'cc-secret' });
    // oidc-provider answers a grant type the client is not registered for so.
    assert.equal(other.body.error, 'invalid_request');
    assert.match(other.body.error_description, /grant type is not allowed/);
    const wrong = await exchange(ready, { subject_token: subject, resource: UPSTREAM }, { secret: 'nope' });
    assert.equal(wrong.status, 401);
  });
});

describe('provider.mjs lifetime', () => {
  it('exits when its stdin pipe closes', async () => {
    const { child } = await startProvider([]);
    const exited = once(child, 'exit');
    child.stdin.end();
    const [code] = await Promise.race([
      exited,
      new Promise((_, reject) => { setTimeout(() => reject(new Error('still running 5 s after stdin closed')), 5000); }),
    ]).finally(() => stopProvider(child));
    assert.equal(code, 0);
  });

  it('keeps running with stdin from /dev/null', async () => {
    const { child, ready } = await startProvider([], 'ignore');
    try {
      await new Promise((resolve) => { setTimeout(resolve, 1000); });
      assert.equal(child.exitCode, null);
      assert.ok((await fetch(ready.jwks_uri)).ok);
    } finally {
      await stopProvider(child);
    }
  });

  it('without --resource every access token is opaque and resources are refused', async () => {
    const { child, ready } = await startProvider([]);
    try {
      const res = await token(ready.issuer, '--grant', 'client_credentials', '--scope', 'mcp:read');
      assert.equal(res.access_token.split('.').length, 1);
      await assert.rejects(token(ready.issuer, '--grant', 'client_credentials', '--resource', RESOURCE), /invalid_target/);
    } finally {
      await stopProvider(child);
    }
  });
});
