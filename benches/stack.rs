//! Per-request cost of verifying a bearer token, side by side in one run:
//!
//! - `stack/first_sight/<alg>`: the whole mcp-gatekeeper stack (`ResourceServer::layer`)
//!   around a no-op service, for a token it has never seen (each one is forgotten
//!   before it is timed, so the verified-token cache misses, then stores it);
//! - `stack/repeat/<alg>`: the same stack, the same token again (a cache hit);
//! - `raw/jsonwebtoken/<alg>`: plain `jsonwebtoken::decode` of the same tokens with
//!   the equivalent `Validation` (issuer, audience, expiry), no HTTP at all;
//! - `peer/<crate>/{first_sight,repeat}/<alg>`: `jwt-authorizer` and
//!   `tower-oauth2-resource-server` as tower layers around the same no-op service,
//!   keys in process (a PEM, a static JWK set), checking issuer, audience and expiry.
//!   Neither caches verified tokens, so their first sight and repeat differ only in
//!   the token.
//!
//! - `stack/dpop/ES256`: the stack with the issuer's DPoP allowed, a DPoP-bound token it
//!   has verified before (a cache hit) and a fresh ES256 proof each time (made before
//!   the timing), and beside it `stack/dpop_baseline/ES256`: the same stack with an
//!   unbound token of the same issuer (a cache hit) plus one raw ES256 verification
//!   (AWS-LC, public key and signature bytes at hand) of such a proof, i.e. what
//!   checking a proof cannot do without; and `stack/dpop_baseline_jwt/ES256`: the same
//!   unbound token plus `jsonwebtoken::decode` of the proof with a key made from its
//!   `jwk` (a raw ES256 JWT verification: decoding and parsing included);
//! - `dpop/replay/in_memory`: one `first_use` of a new proof in the in-process replay
//!   store.
//! - `stack/tools_call/ES256` and `stack/cedar/10`: a `tools/call` `POST` with a
//!   repeated ES256 token through the stack with per-tool scope rules (the body read
//!   for them), and the same with one and with ten Cedar policies deciding too
//!   (`cedar/1`, `cedar/10`): the difference is a Cedar decision. `cedar/10/rebuilt`
//!   calls three tools in turn, more than a principal keeps the requests of, so each
//!   decision builds its Cedar entities again (a token's first call of a tool).
//!
//! What observing costs (metrics, the audit trail) is `benches/observed.rs`.
//!
//! Every case has its keys in process: no network. `benches/report.sh` runs this and
//! prints medians and ratios.

mod common;

use std::hint::black_box;

use common::{RESOURCE, Signer, drive, request};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use serde_json::{Map, Value};
use tower::Layer;

/// Distinct tokens per algorithm for the first-sight cases, used round-robin.
const POOL: u64 = 512;
/// First-sight batches: each batch's tokens are distinct and forgotten before it runs.
const BATCH: u64 = 64;

const ALGORITHMS: [&str; 4] = ["RS256", "ES256", "EdDSA", "HS256"];

struct Case {
    alg: &'static str,
    signer: Signer,
    pool: Vec<String>,
}

fn cases() -> Vec<Case> {
    ALGORITHMS
        .iter()
        .map(|alg| {
            let signer = Signer::new(alg);
            let pool = (0..POOL).map(|n| signer.token(n)).collect();
            Case { alg, signer, pool }
        })
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn ours(c: &mut Criterion, cases: &[Case], rt: &tokio::runtime::Runtime) {
    let _entered = rt.enter();
    let mut first = c.benchmark_group("stack/first_sight");
    for case in cases {
        let server = common::server(case.alg, &case.signer);
        let mut service = server.layer().layer(common::Noop);
        assert_eq!(drive(&mut service, request(&case.pool[0]), rt), 200);
        let mut next = 0usize;
        first.bench_function(case.alg, |b| {
            b.iter_batched(
                || {
                    let token = &case.pool[next % case.pool.len()];
                    next += 1;
                    rt.block_on(server.forget_token(token));
                    request(token)
                },
                |req| drive(&mut service, black_box(req), rt),
                BatchSize::NumIterations(BATCH),
            )
        });
    }
    first.finish();

    let mut repeat = c.benchmark_group("stack/repeat");
    for case in cases {
        let server = common::server(case.alg, &case.signer);
        let mut service = server.layer().layer(common::Noop);
        let token = &case.pool[0];
        assert_eq!(drive(&mut service, request(token), rt), 200);
        repeat.bench_function(case.alg, |b| {
            b.iter_batched(
                || request(token),
                |req| drive(&mut service, black_box(req), rt),
                BatchSize::SmallInput,
            )
        });
    }
    repeat.finish();
}

fn raw(c: &mut Criterion, cases: &[Case]) {
    let mut group = c.benchmark_group("raw/jsonwebtoken");
    for case in cases {
        let key = case.signer.decoding_key();
        let validation = common::validation(common::algorithm(case.alg));
        let decode = |token: &str| {
            jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
                .expect("valid token")
        };
        decode(&case.pool[0]);
        let mut next = 0usize;
        group.bench_function(case.alg, |b| {
            b.iter(|| {
                let token = &case.pool[next % case.pool.len()];
                next += 1;
                decode(black_box(token))
            })
        });
    }
    group.finish();
}

/// One peer's service around the no-op service, per algorithm it supports.
fn peer_cases<S>(
    c: &mut Criterion,
    name: &str,
    cases: &[Case],
    rt: &tokio::runtime::Runtime,
    mut make: impl FnMut(&Case) -> Option<S>,
) where
    S: tower::Service<http::Request<http_body_util::Empty<bytes::Bytes>>>,
    S::Response: StatusOf,
    S::Error: std::fmt::Debug,
{
    let services: Vec<(&Case, S)> = cases
        .iter()
        .filter_map(|case| make(case).map(|s| (case, s)))
        .collect();
    let mut services: Vec<(&Case, S)> = services
        .into_iter()
        .map(|(case, mut service)| {
            assert_eq!(peer_status(&mut service, &case.pool[0], rt), 200, "{name}");
            (case, service)
        })
        .collect();
    let mut first = c.benchmark_group(format!("peer/{name}/first_sight"));
    for (case, service) in &mut services {
        let mut next = 0usize;
        first.bench_function(case.alg, |b| {
            b.iter_batched(
                || {
                    let token = &case.pool[next % case.pool.len()];
                    next += 1;
                    request(token)
                },
                |req| peer_drive(service, black_box(req), rt),
                BatchSize::NumIterations(BATCH),
            )
        });
    }
    first.finish();
    let mut repeat = c.benchmark_group(format!("peer/{name}/repeat"));
    for (case, service) in &mut services {
        let token = &case.pool[0];
        repeat.bench_function(case.alg, |b| {
            b.iter_batched(
                || request(token),
                |req| peer_drive(service, black_box(req), rt),
                BatchSize::SmallInput,
            )
        });
    }
    repeat.finish();
}

/// The status of a peer's answer (their response types differ).
trait StatusOf {
    fn status_code(&self) -> u16;
}

impl<B> StatusOf for http::Response<B> {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

fn peer_drive<S>(
    service: &mut S,
    req: http::Request<http_body_util::Empty<bytes::Bytes>>,
    rt: &tokio::runtime::Runtime,
) -> u16
where
    S: tower::Service<http::Request<http_body_util::Empty<bytes::Bytes>>>,
    S::Response: StatusOf,
    S::Error: std::fmt::Debug,
{
    use std::task::{Context, Poll, Waker};
    let mut cx = Context::from_waker(Waker::noop());
    if service.poll_ready(&mut cx).is_pending() {
        rt.block_on(std::future::poll_fn(|cx| service.poll_ready(cx)))
            .expect("ready");
    }
    let mut future = std::pin::pin!(service.call(req));
    let response = match future.as_mut().poll(&mut cx) {
        Poll::Ready(response) => response,
        Poll::Pending => rt.block_on(future),
    };
    response.expect("response").status_code()
}

fn peer_status<S>(service: &mut S, token: &str, rt: &tokio::runtime::Runtime) -> u16
where
    S: tower::Service<http::Request<http_body_util::Empty<bytes::Bytes>>>,
    S::Response: StatusOf,
    S::Error: std::fmt::Debug,
{
    peer_drive(service, request(token), rt)
}

/// A no-op service answering with axum 0.7's response type, which jwt-authorizer
/// needs to render its refusals.
#[derive(Clone, Copy)]
struct Noop07;

impl<B> tower::Service<http::Request<B>> for Noop07 {
    type Response = axum07::response::Response;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<B>) -> Self::Future {
        std::future::ready(Ok(axum07::response::Response::new(
            axum07::body::Body::empty(),
        )))
    }
}

fn peers(c: &mut Criterion, cases: &[Case], rt: &tokio::runtime::Runtime) {
    let _entered = rt.enter();
    // jwt-authorizer: the key as PEM (or the HMAC secret), issuer and audience checked.
    peer_cases(c, "jwt-authorizer", cases, rt, |case| {
        use jwt_authorizer::{IntoLayer, JwtAuthorizer, Validation};
        let builder = match case.alg {
            "RS256" => JwtAuthorizer::<Value>::from_rsa_pem_text(&case.signer.public_pem()?),
            "ES256" => JwtAuthorizer::<Value>::from_ec_pem_text(&case.signer.public_pem()?),
            "EdDSA" => JwtAuthorizer::<Value>::from_ed_pem_text(&case.signer.public_pem()?),
            "HS256" => {
                JwtAuthorizer::<Value>::from_secret(std::str::from_utf8(common::HMAC_SECRET).ok()?)
            }
            _ => return None,
        };
        let validation = Validation::new().iss(&[common::ISSUER]).aud(&[RESOURCE]);
        let authorizer = rt
            .block_on(builder.validation(validation).build())
            .expect("jwt-authorizer");
        Some([authorizer].into_layer().layer(Noop07))
    });
    // tower-oauth2-resource-server: a static JWK set; it has no HMAC support.
    peer_cases(c, "tower-oauth2-resource-server", cases, rt, |case| {
        use tower_oauth2_resource_server::server::OAuth2ResourceServer;
        use tower_oauth2_resource_server::tenant::TenantConfiguration;
        if case.alg == "HS256" {
            return None;
        }
        let tenant = TenantConfiguration::static_builder(case.signer.jwks().to_string())
            .identifier(common::ISSUER)
            .audiences(&[RESOURCE])
            .allowed_algorithms(&[common::algorithm(case.alg)])
            .build()
            .expect("tenant");
        let server = rt
            .block_on(
                OAuth2ResourceServer::<Value>::builder()
                    .add_tenant(tenant)
                    .build(),
            )
            .expect("tower-oauth2-resource-server");
        Some(server.into_layer().layer(common::Noop))
    });
}

/// A DPoP client of the benchmark: its ES256 key, and fresh proofs for a token.
struct DpopClient {
    key: common::SigningKey,
    jwk: Value,
    next: std::cell::Cell<u64>,
}

impl DpopClient {
    fn new() -> Self {
        let key = common::SigningKey::ec("bench-dpop-client");
        let public = key.jwk();
        let jwk = serde_json::json!({
            "kty": public["kty"], "crv": public["crv"], "x": public["x"], "y": public["y"],
        });
        Self {
            key,
            jwk,
            next: std::cell::Cell::new(0),
        }
    }

    /// A new proof (a new `jti`) for `GET RESOURCE` with `token`.
    fn proof(&self, token: &str) -> String {
        let n = self.next.get();
        self.next.set(n + 1);
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.typ = Some("dpop+jwt".into());
        header.jwk = serde_json::from_value(self.jwk.clone()).ok();
        let claims = serde_json::json!({
            "jti": format!("bench-{n}"),
            "htm": "GET",
            "htu": common::RESOURCE,
            "iat": common::now(),
            "ath": mcp_gatekeeper::access_token_hash(token),
        });
        self.key.sign_with(header, &claims)
    }

    /// The public key point (uncompressed) and the signature bytes and signed part of
    /// `proof`, for a raw verification.
    fn raw_parts(&self, proof: &str) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let coordinate = |name: &str| b64.decode(self.jwk[name].as_str().unwrap_or_default());
        let mut point = vec![0x04];
        point.extend(coordinate("x").expect("x"));
        point.extend(coordinate("y").expect("y"));
        let (signed, signature) = proof.rsplit_once('.').expect("a JWS");
        let signature = b64.decode(signature).expect("signature");
        (point, signature, signed.as_bytes().to_vec())
    }
}

fn dpop_request(token: &str, proof: String) -> http::Request<http_body_util::Empty<bytes::Bytes>> {
    http::Request::get(RESOURCE)
        .header(http::header::AUTHORIZATION, format!("DPoP {token}"))
        .header("dpop", proof)
        .body(http_body_util::Empty::new())
        .expect("request")
}

fn dpop(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let _entered = rt.enter();
    let signer = Signer::new("ES256");
    let client = DpopClient::new();
    let Signer::Key(idp) = &signer else {
        unreachable!("ES256 has a key")
    };
    let mut claims = common::claims(0);
    let jkt = mcp_gatekeeper::thumbprint(&client.jwk).expect("thumbprint");
    claims["cnf"] = serde_json::json!({ "jkt": jkt });
    let bound = idp.sign(&claims);
    let unbound = signer.token(0);
    let keys = mcp_gatekeeper::keys::LocalKeys::from_jwks(signer.jwks().to_string().as_bytes())
        .expect("keys");
    let issuer = mcp_gatekeeper::Issuer::new(common::ISSUER)
        .algorithms([jsonwebtoken::Algorithm::ES256])
        .discovery(false)
        .local_keys(keys)
        .dpop(mcp_gatekeeper::Dpop::allowed());
    let server = mcp_gatekeeper::ResourceServer::builder(RESOURCE)
        .issuer(issuer)
        .required_scopes(["mcp:read"])
        .build()
        .expect("valid configuration");
    let mut service = server.layer().layer(common::Noop);
    assert_eq!(
        drive(&mut service, dpop_request(&bound, client.proof(&bound)), rt),
        200
    );
    assert_eq!(drive(&mut service, request(&unbound), rt), 200);

    let mut group = c.benchmark_group("stack/dpop");
    group.bench_function("ES256", |b| {
        b.iter_batched(
            || dpop_request(&bound, client.proof(&bound)),
            |req| drive(&mut service, black_box(req), rt),
            BatchSize::SmallInput,
        )
    });
    group.finish();

    let mut group = c.benchmark_group("stack/dpop_baseline");
    group.bench_function("ES256", |b| {
        b.iter_batched(
            || (request(&unbound), client.raw_parts(&client.proof(&bound))),
            |(req, (point, signature, signed))| {
                let status = drive(&mut service, black_box(req), rt);
                let key = aws_lc_rs::signature::UnparsedPublicKey::new(
                    &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
                    black_box(&point),
                );
                (
                    status,
                    key.verify(black_box(&signed), black_box(&signature))
                        .is_ok(),
                )
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();

    let mut group = c.benchmark_group("stack/dpop_baseline_jwt");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_aud = false;
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(client.jwk.clone()).expect("jwk");
    group.bench_function("ES256", |b| {
        b.iter_batched(
            || (request(&unbound), client.proof(&bound)),
            |(req, proof)| {
                let status = drive(&mut service, black_box(req), rt);
                let key = jsonwebtoken::DecodingKey::from_jwk(black_box(&jwk)).expect("key");
                let claims = jsonwebtoken::decode::<Map<String, Value>>(
                    black_box(&proof),
                    &key,
                    &validation,
                );
                (status, claims.is_ok())
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();

    let store =
        mcp_gatekeeper::InMemoryReplayStore::new(100_000, std::time::Duration::from_secs(305));
    let mut next = 0u64;
    let mut group = c.benchmark_group("dpop/replay");
    group.bench_function("in_memory", |b| {
        b.iter(|| {
            next += 1;
            let mut key = [0u8; 32];
            key[..8].copy_from_slice(&next.to_be_bytes());
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            let mut first = mcp_gatekeeper::ReplayStore::first_use(
                &store,
                black_box(key),
                std::time::Duration::from_secs(305),
            );
            std::future::Future::poll(first.as_mut(), &mut cx)
        })
    });
    group.finish();
}

/// Ten policies of the kinds a deployment writes: by tool, by hint, by group, by
/// subject, by claim, by resource URI.
const CEDAR_POLICIES: &str = r#"
permit(principal, action == Action::"call_tool", resource == Tool::"search");
permit(principal, action == Action::"call_tool", resource) when { resource.readOnlyHint };
permit(principal in THVGroup::"admins", action, resource);
forbid(principal, action == Action::"call_tool", resource)
  when { resource.destructiveHint && !(principal in THVGroup::"admins") };
permit(principal, action == Action::"get_prompt", resource);
permit(principal, action == Action::"read_resource", resource)
  when { resource.uri like "file:///public/*" };
forbid(principal == Client::"blocked", action, resource);
permit(principal, action == Action::"call_tool", resource == Tool::"whoami")
  when { principal.claim_scope like "*mcp:read*" };
permit(principal, action == Action::"call_tool", resource)
  when { principal.claim_email like "*@example.com" && context.claim_name != "" };
forbid(principal, action, resource) when { principal.claim_iss != "https://idp.example.com/realms/mcp" };
"#;

/// A `tools/call` of `whoami` with `token`.
fn tools_call(token: &str) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    tools_call_of(token, "whoami")
}

/// A `tools/call` of the tool `name` with `token`.
fn tools_call_of(token: &str, name: &str) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{name}","arguments":{{}}}}}}"#
    );
    http::Request::post(common::RESOURCE)
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json, text/event-stream")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .expect("request")
}

/// `stack/tools_call` and `stack/cedar/10`, side by side.
fn cedar(c: &mut Criterion, cases: &[Case], rt: &tokio::runtime::Runtime) {
    let Some(case) = cases.iter().find(|case| case.alg == "ES256") else {
        return;
    };
    let _entered = rt.enter();
    let rules = || mcp_gatekeeper::McpScopes::new(["mcp:read"]).tool("write*", ["mcp:write"]);
    let plain = common::builder(case.alg, &case.signer)
        .mcp_scopes(rules())
        .build()
        .expect("valid configuration");
    let policy = mcp_gatekeeper::cedar::CedarPolicy::builder()
        .policies(CEDAR_POLICIES)
        .build()
        .expect("valid policies");
    // As a `tools/list` answer of the server tells it.
    let hints = serde_json::json!({"readOnlyHint": true, "destructiveHint": false});
    for tool in ROTATED {
        mcp_gatekeeper::Authorize::tool_listed(&policy, tool, Some(&hints));
    }
    let with_cedar = common::builder(case.alg, &case.signer)
        .mcp_scopes(rules())
        .authorize(policy)
        .build()
        .expect("valid configuration");
    let one = mcp_gatekeeper::cedar::CedarPolicy::builder()
        .policies(
            r#"permit(principal, action == Action::"call_tool", resource == Tool::"whoami");"#,
        )
        .build()
        .expect("valid policy");
    let with_one = common::builder(case.alg, &case.signer)
        .mcp_scopes(rules())
        .authorize(one)
        .build()
        .expect("valid configuration");
    let token = &case.pool[0];
    let mut group = c.benchmark_group("stack");
    for (name, server) in [
        ("tools_call/ES256", plain),
        ("cedar/1", with_one),
        ("cedar/10", with_cedar),
    ] {
        let mut service = server.layer().layer(common::Noop);
        assert_eq!(drive(&mut service, tools_call(token), rt), 200, "{name}");
        group.bench_function(name, |b| {
            b.iter_batched(
                || tools_call(token),
                |req| drive(&mut service, black_box(req), rt),
                BatchSize::SmallInput,
            )
        });
        if name == "cedar/10" {
            for tool in ROTATED {
                let status = drive(&mut service, tools_call_of(token, tool), rt);
                assert_eq!(status, 200, "{name} {tool}");
            }
            // Three tools in turn: more than a principal keeps, so each request's
            // entities are built again (the first call of a tool by a token).
            let mut turn = 0;
            group.bench_function("cedar/10/rebuilt", |b| {
                b.iter_batched(
                    || {
                        turn = (turn + 1) % ROTATED.len();
                        tools_call_of(token, ROTATED[turn])
                    },
                    |req| drive(&mut service, black_box(req), rt),
                    BatchSize::SmallInput,
                )
            });
        }
    }
    group.finish();
}

/// The tools `cedar/10/rebuilt` calls in turn.
const ROTATED: [&str; 3] = ["whoami", "lookup", "fetch"];

fn benches(c: &mut Criterion) {
    let rt = runtime();
    let cases = cases();
    ours(c, &cases, &rt);
    cedar(c, &cases, &rt);
    raw(c, &cases);
    peers(c, &cases, &rt);
    dpop(c, &rt);
}

criterion_group!(stack, benches);
criterion_main!(stack);
