//! The whole stack around a service that records whether it was reached, for the
//! token targets: one issuer with an HMAC secret known to the fuzz target (so that it
//! can sign what it fuzzes) and one with an in-process EC key.

use std::convert::Infallible;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Empty;
use mcp_gatekeeper::keys::{KeySet, LocalKeys, VerificationKey};
use mcp_gatekeeper::{Algorithm, AudiencePolicy, Gatekeeper, Issuer, ResourceServer};
use tower::{Layer, Service};

pub const HMAC_ISSUER: &str = "https://hmac.example.com";
pub const EC_ISSUER: &str = "https://ec.example.com";
pub const RESOURCE: &str = "https://mcp.example.com/mcp";
pub const SECRET: &[u8] = b"fuzzing-secret-of-at-least-32-bytes";

/// Answers 200 with an empty body.
#[derive(Clone, Copy)]
pub struct Reached;

impl<B> Service<Request<B>> for Reached {
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

fn ec_keys() -> LocalKeys {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("EC key");
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).expect("EC key");
    let point = pair.public_key().as_ref();
    let b64 =
        |b: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, b);
    let jwk = serde_json::json!({
        "kty": "EC", "crv": "P-256", "kid": "ec",
        "x": b64(&point[1..33]), "y": b64(&point[33..]),
    });
    let key = VerificationKey::from_jwk(&jwk).expect("EC JWK");
    LocalKeys::new(KeySet::new([key]))
}

/// The stack, built once per process.
pub fn stack() -> Gatekeeper<Reached> {
    static STACK: OnceLock<Gatekeeper<Reached>> = OnceLock::new();
    STACK
        .get_or_init(|| {
            let server = ResourceServer::builder(RESOURCE)
                .issuer(
                    Issuer::new(HMAC_ISSUER)
                        .algorithms([Algorithm::HS256])
                        .hmac_secret(SECRET.to_vec()),
                )
                .issuer(
                    Issuer::new(EC_ISSUER)
                        .local_keys(ec_keys())
                        .discovery(false),
                )
                .audience(AudiencePolicy::resource())
                .required_scopes(["mcp:read"])
                .build()
                .expect("valid configuration");
            server.layer().layer(Reached)
        })
        .clone()
}

/// Sends `authorization` as the Authorization header; the status, when the header
/// value is one http accepts. Everything here is ready at once (keys in process,
/// no runtime needed).
pub fn status(authorization: &[u8]) -> Option<u16> {
    let value = http::HeaderValue::from_bytes(authorization).ok()?;
    let request = Request::get(RESOURCE)
        .header(http::header::AUTHORIZATION, value)
        .body(Empty::<Bytes>::new())
        .ok()?;
    let mut service = stack();
    let mut cx = Context::from_waker(Waker::noop());
    let mut future = std::pin::pin!(service.call(request));
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(response)) => Some(response.status().as_u16()),
        Poll::Ready(Err(never)) => match never {},
        Poll::Pending => panic!("the stack waited with keys in process"),
    }
}
