//! What the benchmarks share: signing keys for each algorithm, realistic access
//! tokens (about 850 bytes for RS256, like a real IdP's), the mcp-gatekeeper stack
//! around a no-op service, and a driver that polls a service's future without a
//! scheduler in the way when it is ready at once.
#![allow(dead_code)]

#[path = "../../tests/support/signing.rs"]
pub mod signing;
pub mod wire;

use std::convert::Infallible;
use std::future::Future;
use std::task::{Context, Poll, Waker};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Empty;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use mcp_gatekeeper::keys::LocalKeys;
use mcp_gatekeeper::{AudiencePolicy, Issuer, ResourceServer};
use serde_json::{Value, json};
use tower::{Service, ServiceExt};

pub use signing::SigningKey;

pub const ISSUER: &str = "https://idp.example.com/realms/mcp";
pub const RESOURCE: &str = "https://mcp.example.com/mcp";
/// An HMAC secret of 32 bytes, the least the stack accepts.
pub const HMAC_SECRET: &[u8] = b"bench-hmac-secret-of-32-bytes!!!";

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// The algorithms benchmarked, by name.
pub fn algorithm(name: &str) -> Algorithm {
    match name {
        "RS256" => Algorithm::RS256,
        "ES256" => Algorithm::ES256,
        "EdDSA" => Algorithm::EdDSA,
        "HS256" => Algorithm::HS256,
        other => panic!("no benchmark for {other}"),
    }
}

/// A signer for one algorithm: an asymmetric key, or the HMAC secret.
pub enum Signer {
    Key(SigningKey),
    Hmac,
}

impl Signer {
    pub fn new(alg: &str) -> Self {
        match alg {
            "RS256" => Self::Key(SigningKey::rsa("bench-rs256")),
            "ES256" => Self::Key(SigningKey::ec("bench-es256")),
            "EdDSA" => Self::Key(SigningKey::ed("bench-eddsa")),
            "HS256" => Self::Hmac,
            other => panic!("no benchmark for {other}"),
        }
    }

    /// The `n`th distinct token: the claims an IdP such as Keycloak puts into an
    /// access token for an MCP client, valid for an hour.
    pub fn token(&self, n: u64) -> String {
        let claims = claims(n);
        match self {
            Self::Key(key) => key.sign(&claims),
            Self::Hmac => {
                let header = json!({"alg": "HS256", "typ": "at+jwt"});
                signing::hmac_token(&header, &claims, HMAC_SECRET)
            }
        }
    }

    /// The public key as PEM (SubjectPublicKeyInfo), for peers that take PEM.
    pub fn public_pem(&self) -> Option<String> {
        match self {
            Self::Key(key) => key.public_pem.clone().or_else(|| pem_of_jwk(&key.jwk())),
            Self::Hmac => None,
        }
    }

    /// The JWK set with the public key (empty for HMAC).
    pub fn jwks(&self) -> Value {
        match self {
            Self::Key(key) => signing::jwks(&[key]),
            Self::Hmac => json!({"keys": []}),
        }
    }

    /// The key for plain `jsonwebtoken::decode`.
    pub fn decoding_key(&self) -> DecodingKey {
        match self {
            Self::Key(key) => {
                let jwk = serde_json::from_value(key.jwk()).expect("JWK");
                DecodingKey::from_jwk(&jwk).expect("decoding key")
            }
            Self::Hmac => DecodingKey::from_secret(HMAC_SECRET),
        }
    }
}

/// SPKI PEM of an EC P-256 or Ed25519 JWK (jwt-authorizer takes keys as PEM).
fn pem_of_jwk(jwk: &Value) -> Option<String> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let field = |name: &str| b64.decode(jwk[name].as_str()?).ok();
    let der: Vec<u8> = match jwk["kty"].as_str()? {
        "EC" => {
            // SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING 04||x||y }
            let mut der = hex("3059301306072a8648ce3d020106082a8648ce3d030107034200");
            der.push(0x04);
            der.extend(field("x")?);
            der.extend(field("y")?);
            der
        }
        "OKP" => {
            // SEQUENCE { SEQUENCE { id-Ed25519 }, BIT STRING x }
            let mut der = hex("302a300506032b6570032100");
            der.extend(field("x")?);
            der
        }
        _ => return None,
    };
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    Some(format!(
        "-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n"
    ))
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Claims of a realistic access token, distinct by `n`.
pub fn claims(n: u64) -> Value {
    let now = now();
    json!({
        "exp": now + 3600,
        "iat": now,
        "auth_time": now,
        "jti": format!("2f1c5d8e-7b3a-4c9e-9d2f-{n:012}"),
        "iss": ISSUER,
        "aud": RESOURCE,
        "sub": "8a6f3e2c-1d4b-4f7a-b9c8-5e2d1a0f3b7c",
        "typ": "Bearer",
        "azp": "mcp-inspector",
        "client_id": "mcp-inspector",
        "sid": "b7e4c1d9-3a2f-4e8b-9c6d-1f0a2b3c4d5e",
        "acr": "1",
        "scope": "openid profile email mcp:read mcp:write",
        "email_verified": true,
        "name": "Ada Lovelace",
        "preferred_username": "ada",
        "email": "ada@example.com",
    })
}

/// The plain jsonwebtoken validation equivalent to the stack's checks.
pub fn validation(alg: Algorithm) -> Validation {
    let mut validation = Validation::new(alg);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[RESOURCE]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    validation
}

/// The whole mcp-gatekeeper stack (bearer, verify, audience, authorize, and the
/// pass-through layers a `ResourceServer` adds) for tokens of `signer`, with keys in
/// process and the default verified-token cache.
pub fn server(alg: &str, signer: &Signer) -> ResourceServer {
    builder(alg, signer).build().expect("valid configuration")
}

/// The builder behind [`server`], for variations.
pub fn builder(alg: &str, signer: &Signer) -> mcp_gatekeeper::ResourceServerBuilder {
    let issuer = Issuer::new(ISSUER)
        .algorithms([algorithm(alg)])
        .discovery(false);
    let issuer = match signer {
        Signer::Key(_) => {
            let keys =
                LocalKeys::from_jwks(signer.jwks().to_string().as_bytes()).expect("local keys");
            issuer.local_keys(keys)
        }
        Signer::Hmac => issuer.hmac_secret(HMAC_SECRET),
    };
    ResourceServer::builder(RESOURCE)
        .issuer(issuer)
        .audience(AudiencePolicy::resource())
        .required_scopes(["mcp:read"])
}

/// The inner service: answers 200 with an empty body, at once.
#[derive(Clone, Copy)]
pub struct Noop;

impl<B> Service<Request<B>> for Noop {
    type Response = Response<Empty<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<B>) -> Self::Future {
        std::future::ready(Ok(Response::new(Empty::new())))
    }
}

/// A GET of the resource with `token` as its bearer token.
pub fn request(token: &str) -> Request<Empty<Bytes>> {
    Request::get(RESOURCE)
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Empty::new())
        .expect("request")
}

/// Calls `service` with `request` and returns the status. Futures that are ready at
/// once (every one here, with keys in process) are polled once with a no-op waker;
/// anything else goes through `runtime`.
pub fn drive<S, B, R>(
    service: &mut S,
    request: Request<B>,
    runtime: &tokio::runtime::Runtime,
) -> u16
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    let ready = match service.poll_ready(&mut cx) {
        Poll::Ready(ready) => ready,
        Poll::Pending => runtime.block_on(std::future::poll_fn(|cx| service.poll_ready(cx))),
    };
    ready.expect("ready");
    let mut future = std::pin::pin!(service.call(request));
    let response = match future.as_mut().poll(&mut cx) {
        Poll::Ready(response) => response,
        Poll::Pending => runtime.block_on(future),
    };
    response.expect("response").status().as_u16()
}

/// `service` made ready once, for callers that keep it.
pub fn ready<S, B>(service: S, runtime: &tokio::runtime::Runtime) -> S
where
    S: Service<Request<B>>,
    S::Error: std::fmt::Debug,
{
    runtime
        .block_on(service.ready_oneshot())
        .unwrap_or_else(|_| panic!("service not ready"))
}
