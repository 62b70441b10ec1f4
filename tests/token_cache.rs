//! The verified-token cache through the whole stack: a repeated JWT is served from the
//! cache (and the span says so), never past its `exp`, never after its key is gone,
//! never for a token that differs in any byte; audience and scope rules still run on
//! every request; the cache can be turned off, emptied for one token, and stays within
//! its bounds.

mod support;

use std::time::Duration;

use axum::http::StatusCode;
use mcp_gatekeeper::keys::{KeySet, LocalKeys};
use mcp_gatekeeper::{
    Algorithm, Issuer, McpScopes, ResourceServer, ResourceServerBuilder, TokenCacheOptions,
};
use serde_json::json;
use support::signing::{hmac_token, jwks};
use support::{SigningKey, call, capture_logs, claims};

const ISSUER: &str = "https://idp.example.com";
const RESOURCE: &str = "http://localhost/mcp";

fn local(keys: &[&SigningKey]) -> LocalKeys {
    LocalKeys::from_jwks(jwks(keys).to_string().as_bytes()).expect("local keys")
}

fn builder(keys: &LocalKeys) -> ResourceServerBuilder {
    ResourceServer::builder(RESOURCE).issuer(
        Issuer::new(ISSUER)
            .local_keys(keys.clone())
            .discovery(false),
    )
}

/// A server trusting `key` in process (configured further by `configure`), its app,
/// the key handle, and a valid token.
struct Fixture {
    key: SigningKey,
    keys: LocalKeys,
    server: ResourceServer,
    app: axum::Router,
    token: String,
}

fn fixture(
    key: SigningKey,
    configure: impl FnOnce(ResourceServerBuilder) -> ResourceServerBuilder,
) -> Fixture {
    let keys = local(&[&key]);
    let server = configure(builder(&keys)).build().expect("valid");
    let app = support::app(server.layer());
    let token = key.sign(&claims(ISSUER, RESOURCE));
    Fixture {
        key,
        keys,
        server,
        app,
        token,
    }
}

/// Asserts that `token` gets through to `path`.
async fn allowed(app: &axum::Router, path: &str, token: &str) {
    let answer = call(app, path, Some(token)).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
}

/// The key tier each allowed request's span recorded, in order.
fn tiers(logs: &std::sync::Mutex<Vec<u8>>) -> Vec<String> {
    let logs = String::from_utf8_lossy(&logs.lock().expect("logs")).into_owned();
    logs.lines()
        .filter(|l| l.contains("decision=\"allow\"") || l.contains("decision=allow"))
        .map(|l| {
            let tier = l.split("key_tier=").nth(1).unwrap_or_default();
            tier.split([' ', '}'])
                .next()
                .unwrap_or_default()
                .trim_matches('"')
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn a_repeated_token_is_served_from_the_cache_and_the_span_says_so() {
    let Fixture {
        server, app, token, ..
    } = fixture(SigningKey::ec("k"), |b| b);
    let (_guard, logs) = capture_logs();
    for _ in 0..3 {
        let answer = call(&app, "/mcp", Some(&token)).await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        assert_eq!(answer.body["sub"], "user-1");
    }
    assert_eq!(tiers(&logs), ["local", "cache", "cache"]);
    assert_eq!(server.token_cache_usage().await.entries, 1);
}

#[tokio::test]
async fn a_cached_token_is_refused_once_it_expires() {
    // No leeway, so that the token's own exp is the end of its acceptance.
    let key = SigningKey::ec("k");
    let keys = local(&[&key]);
    let server = ResourceServer::builder(RESOURCE)
        .issuer(
            Issuer::new(ISSUER)
                .local_keys(keys)
                .discovery(false)
                .leeway(Duration::ZERO),
        )
        .build()
        .expect("valid");
    let app = support::app(server.layer());
    let mut c = claims(ISSUER, RESOURCE);
    c["exp"] = json!(support::now() + 2);
    let token = key.sign(&c);
    allowed(&app, "/mcp", &token).await;
    allowed(&app, "/mcp", &token).await;
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let answer = call(&app, "/mcp", Some(&token)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{answer:?}");
    assert!(answer.description().contains("expired"), "{answer:?}");
}

#[tokio::test]
async fn removing_the_key_drops_the_tokens_it_verified_at_once() {
    let Fixture {
        keys, app, token, ..
    } = fixture(SigningKey::ec("k"), |b| b);
    allowed(&app, "/mcp", &token).await;
    keys.replace(KeySet::default());
    let answer = call(&app, "/mcp", Some(&token)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{answer:?}");
    assert!(answer.description().contains("kid"), "{answer:?}");
}

#[tokio::test]
async fn a_new_key_set_verifies_cached_tokens_again() {
    let other = SigningKey::ed("other");
    let Fixture {
        key,
        keys,
        app,
        token,
        ..
    } = fixture(SigningKey::ec("k"), |b| b);
    let (_guard, logs) = capture_logs();
    allowed(&app, "/mcp", &token).await;
    allowed(&app, "/mcp", &token).await;
    // A rotation that keeps the key: the token is checked against the new set once.
    keys.replace(KeySet::from_jwks(jwks(&[&key, &other]).to_string().as_bytes()).expect("set"));
    allowed(&app, "/mcp", &token).await;
    allowed(&app, "/mcp", &token).await;
    assert_eq!(tiers(&logs), ["local", "cache", "local", "cache"]);
}

#[tokio::test]
async fn audience_and_scopes_still_apply_to_a_cached_token() {
    let key = SigningKey::ec("k");
    let keys = local(&[&key]);
    let server = ResourceServer::per_route(|parts| {
        let id = parts
            .uri
            .path()
            .strip_prefix("/servers/")?
            .strip_suffix("/mcp")?;
        Some(format!("http://localhost/servers/{id}/mcp"))
    })
    .issuer(Issuer::new(ISSUER).local_keys(keys).discovery(false))
    .required_scopes(["mcp:read"])
    .build()
    .expect("valid");
    let app = support::app(server.layer());
    let for_a = key.sign(&claims(ISSUER, "http://localhost/servers/a/mcp"));
    allowed(&app, "/servers/a/mcp", &for_a).await;
    // Cached now; still not a token for server b.
    let answer = call(&app, "/servers/b/mcp", Some(&for_a)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{answer:?}");
    assert_eq!(server.token_cache_usage().await.entries, 1);
    // A cached token without the required scope is still asked for it.
    let mut c = claims(ISSUER, "http://localhost/servers/a/mcp");
    c["scope"] = json!("other");
    let weak = key.sign(&c);
    for _ in 0..2 {
        let answer = call(&app, "/servers/a/mcp", Some(&weak)).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{answer:?}");
        assert!(
            answer.challenge().contains("insufficient_scope"),
            "{answer:?}"
        );
    }
}

#[tokio::test]
async fn mcp_scope_rules_run_on_cached_tokens() {
    let Fixture { app, token, .. } = fixture(SigningKey::ec("k"), |b| {
        b.mcp_scopes(McpScopes::new(["mcp:read"]).tool("write", ["mcp:write"]))
    });
    let post = |tool: &str| {
        let body =
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool}});
        http::Request::post("/mcp")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.to_string()))
            .expect("request")
    };
    assert_eq!(
        support::send(&app, post("read")).await.status,
        StatusCode::OK
    );
    let answer = support::send(&app, post("write")).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{answer:?}");
    assert!(
        answer.challenge().contains("scope=\"mcp:write\""),
        "{answer:?}"
    );
}

#[tokio::test]
async fn a_token_differing_in_any_part_is_not_a_hit() {
    let Fixture {
        key, app, token, ..
    } = fixture(SigningKey::rsa("k"), |b| b);
    let (_guard, logs) = capture_logs();
    allowed(&app, "/mcp", &token).await;
    let [header, payload, signature] = {
        let parts: Vec<&str> = token.split('.').collect();
        [parts[0], parts[1], parts[2]]
    };
    let flip = |segment: &str| {
        let mut bytes = segment.as_bytes().to_vec();
        let last = bytes.len() - 2;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        String::from_utf8(bytes).expect("ascii")
    };
    let mut other_claims = claims(ISSUER, RESOURCE);
    other_claims["sub"] = json!("admin");
    let other_payload = key.sign(&other_claims);
    let other_payload = other_payload.split('.').nth(1).expect("payload");
    for forged in [
        format!("{header}.{payload}.{}", flip(signature)),
        format!("{header}.{other_payload}.{signature}"),
        format!("{}.{payload}.{signature}", flip(header)),
    ] {
        let answer = call(&app, "/mcp", Some(&forged)).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{answer:?}");
    }
    // The forgeries neither hit the genuine token's entry nor evicted it.
    allowed(&app, "/mcp", &token).await;
    assert_eq!(tiers(&logs), ["local", "cache"]);
}

#[tokio::test]
async fn the_cache_can_be_turned_off() {
    let Fixture {
        server, app, token, ..
    } = fixture(SigningKey::ec("k"), |b| {
        b.token_cache(TokenCacheOptions::disabled())
    });
    let (_guard, logs) = capture_logs();
    for _ in 0..2 {
        allowed(&app, "/mcp", &token).await;
    }
    assert_eq!(tiers(&logs), ["local", "local"]);
    assert_eq!(server.token_cache_usage().await.entries, 0);
}

#[tokio::test]
async fn a_forgotten_token_is_verified_again() {
    let Fixture {
        server, app, token, ..
    } = fixture(SigningKey::ec("k"), |b| b);
    let (_guard, logs) = capture_logs();
    allowed(&app, "/mcp", &token).await;
    server.forget_token(&token).await;
    assert_eq!(server.token_cache_usage().await.entries, 0);
    allowed(&app, "/mcp", &token).await;
    assert_eq!(tiers(&logs), ["local", "local"]);
}

#[tokio::test]
async fn the_cache_stays_within_its_entry_and_byte_bounds() {
    let secret = b"0123456789abcdef0123456789abcdef";
    let bounds = TokenCacheOptions {
        max_entries: 100,
        max_bytes: 256 * 1024,
        max_ttl: Duration::from_secs(60),
    };
    let server = ResourceServer::builder(RESOURCE)
        .issuer(
            Issuer::new(ISSUER)
                .algorithms([Algorithm::HS256])
                .hmac_secret(secret.to_vec()),
        )
        .token_cache(bounds)
        .build()
        .expect("valid");
    let app = support::app(server.layer());
    let header = json!({"alg": "HS256", "typ": "at+jwt"});
    for n in 0..3_000 {
        let mut c = claims(ISSUER, RESOURCE);
        c["jti"] = json!(format!("jti-{n}"));
        let token = hmac_token(&header, &c, secret);
        allowed(&app, "/mcp", &token).await;
    }
    let usage = server.token_cache_usage().await;
    assert!(usage.entries > 0 && usage.entries <= 100, "{usage:?}");
    assert!(usage.bytes <= 256 * 1024, "{usage:?}");
}
