//! Against a real OpenID provider: panva's oidc-provider (certified), started on
//! 127.0.0.1 by the test. JWT and opaque access tokens, RFC 8707 audiences, ID tokens,
//! expiry, revocation and live key rotation, through the whole stack.

mod support;

use std::time::Duration;

use http::StatusCode;
use mcp_gatekeeper::keys::JwksOptions;
use mcp_gatekeeper::{Introspection, Issuer, ResourceServer};
use support::idp::{self, Running};
use support::{Answer, call};

const RESOURCE: &str = "https://mcp.example.test/mcp";
const OTHER: &str = "https://other.example.test/mcp";
const CC: (&str, &str) = ("cc-client", "cc-secret");

/// The whole stack for `RESOURCE`, trusting `provider` by lazy discovery; `issuer`
/// adjusts the issuer's settings.
fn app(provider: &Running, issuer: impl FnOnce(Issuer) -> Issuer) -> axum::Router {
    let server = ResourceServer::builder(RESOURCE)
        .issuer(issuer(Issuer::new(provider.issuer())))
        .build()
        .expect("valid configuration");
    support::app(server.layer())
}

async fn token(provider: &Running, client: (&str, &str), resource: Option<&str>) -> String {
    let answer = idp::client_credentials(
        &provider.field("token_endpoint"),
        client,
        "mcp:read",
        resource,
    )
    .await;
    answer["access_token"]
        .as_str()
        .expect("an access token")
        .to_owned()
}

fn refused(answer: &Answer, status: StatusCode, says: &str) {
    assert_eq!(answer.status, status, "{:?}", answer.body);
    assert!(
        answer.description().contains(says),
        "{:?} should say {says:?}",
        answer.description()
    );
}

#[tokio::test]
async fn jwts_for_this_resource_are_accepted_rs256_and_es256() {
    for alg in ["RS256", "ES256"] {
        let provider = idp::oidc_provider(&["--alg", alg, "--resource", RESOURCE]).await;
        let app = app(&provider, |i| i);
        let token = token(&provider, CC, Some(RESOURCE)).await;
        let answer = call(&app, "/mcp", Some(&token)).await;
        assert_eq!(answer.status, StatusCode::OK, "{alg}: {:?}", answer.body);
        assert_eq!(answer.body["client_id"], "cc-client", "{alg}");
        assert_eq!(answer.body["aud"][0], RESOURCE, "{alg}");
        assert_eq!(answer.body["iss"], provider.issuer(), "{alg}");
    }
}

#[tokio::test]
async fn a_jwt_for_another_resource_is_401() {
    let provider = idp::oidc_provider(&["--resource", RESOURCE, "--resource", OTHER]).await;
    let app = app(&provider, |i| i);
    let token = token(&provider, CC, Some(OTHER)).await;
    refused(
        &call(&app, "/mcp", Some(&token)).await,
        StatusCode::UNAUTHORIZED,
        "aud does not name this resource",
    );
}

#[tokio::test]
async fn a_token_requested_without_resource_gets_the_rfc8707_hint() {
    // Seed 000: the client sent no `resource`. oidc-provider then issues an opaque
    // token with no audience; introspection finds it active, the audience rule
    // refuses it and says why.
    let provider = idp::oidc_provider(&["--resource", RESOURCE]).await;
    let app = app(&provider, |i| {
        i.introspection(Introspection::new("rs-client", "rs-secret"))
    });
    let token = token(&provider, CC, None).await;
    assert_eq!(token.split('.').count(), 1, "opaque");
    refused(
        &call(&app, "/mcp", Some(&token)).await,
        StatusCode::UNAUTHORIZED,
        "the token has no aud claim, so it is not meant for this resource; the client probably sent no RFC 8707 'resource' parameter",
    );
}

#[tokio::test]
async fn an_opaque_token_is_introspected_and_refused_after_revocation_once_cached_out() {
    let provider = idp::oidc_provider(&["--opaque-resource", RESOURCE]).await;
    let app = app(&provider, |i| {
        i.introspection(
            Introspection::new("rs-client", "rs-secret").max_cache_ttl(Duration::from_secs(1)),
        )
    });
    let token = token(&provider, CC, Some(RESOURCE)).await;
    assert_eq!(token.split('.').count(), 1, "opaque");
    let answer = call(&app, "/mcp", Some(&token)).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    assert_eq!(answer.body["aud"][0], RESOURCE);

    // One argument: a token may start with '-', which parseArgs takes for an option.
    let revoked = idp::oidc_token(
        &provider,
        &["--grant", "revoke", &format!("--token={token}")],
    )
    .await;
    assert_eq!(revoked["revoked"], true);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    refused(
        &call(&app, "/mcp", Some(&token)).await,
        StatusCode::UNAUTHORIZED,
        "not active",
    );
}

#[tokio::test]
async fn an_id_token_presented_as_an_access_token_is_401() {
    let provider = idp::oidc_provider(&["--resource", RESOURCE]).await;
    let app = app(&provider, |i| i);
    let tokens = idp::oidc_token(
        &provider,
        &[
            "--grant",
            "authorization_code",
            "--scope",
            "openid mcp:read",
        ],
    )
    .await;
    let id_token = tokens["id_token"].as_str().expect("an ID token");
    refused(
        &call(&app, "/mcp", Some(id_token)).await,
        StatusCode::UNAUTHORIZED,
        "ID token",
    );
}

#[tokio::test]
async fn an_expired_token_is_401() {
    let provider = idp::oidc_provider(&["--resource", RESOURCE, "--short-ttl", "1"]).await;
    let app = app(&provider, |i| i.leeway(Duration::ZERO));
    let token = token(&provider, ("short-client", "short-secret"), Some(RESOURCE)).await;
    assert_eq!(
        call(&app, "/mcp", Some(&token)).await.status,
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    refused(
        &call(&app, "/mcp", Some(&token)).await,
        StatusCode::UNAUTHORIZED,
        "expired",
    );
}

#[tokio::test]
async fn a_key_rotated_at_the_provider_is_used_at_once_and_the_retired_one_dropped() {
    let provider = idp::oidc_provider(&["--resource", RESOURCE, "--alg", "ES256"]).await;
    let options = JwksOptions {
        default_ttl: Duration::from_secs(1),
        min_ttl: Duration::from_secs(1),
        kid_miss_cooldown: Duration::ZERO,
        ..JwksOptions::default()
    };
    let app = app(&provider, |i| i.jwks_options(options));
    let old = token(&provider, CC, Some(RESOURCE)).await;
    assert_eq!(call(&app, "/mcp", Some(&old)).await.status, StatusCode::OK);

    let rotated = idp::poke(&provider, "rotate_endpoint").await;
    let new = token(&provider, CC, Some(RESOURCE)).await;
    assert_ne!(rotated["kid"], provider.info["kid"]);
    let answer = call(&app, "/mcp", Some(&new)).await;
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "new kid on first use: {:?}",
        answer.body
    );
    assert_eq!(call(&app, "/mcp", Some(&old)).await.status, StatusCode::OK);

    // Retired: once the cached set's TTL is over, the stale set answers while one
    // background refresh runs (no request waits on it); after that the old key is
    // gone.
    idp::poke(&provider, "retire_endpoint").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut accepted_after_ttl = 0;
    let last = loop {
        let answer = call(&app, "/mcp", Some(&old)).await;
        if answer.status != StatusCode::OK || accepted_after_ttl == 20 {
            break answer;
        }
        accepted_after_ttl += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    refused(&last, StatusCode::UNAUTHORIZED, "no key");
    assert!(
        accepted_after_ttl <= 1,
        "accepted {accepted_after_ttl} times"
    );
    assert_eq!(call(&app, "/mcp", Some(&new)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn forged_and_malformed_tokens_are_401_never_an_outage() {
    // Replayed JWT attack shapes against a healthy provider with introspection on:
    // each is about one token, so each is 401 invalid_token, never a 503 that
    // reports an outage and invites retries. Malformed JWTs never reach it.
    let provider = idp::oidc_provider(&["--opaque-resource", RESOURCE]).await;
    let app = app(&provider, |i| {
        i.introspection(Introspection::new("rs-client", "rs-secret"))
    });
    let long = "A".repeat(8000);
    for token in [
        "eyJhbGciOiJub25lIn0.e30.",
        "eyJhbGciOiJub25lIn0.e30",
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
        "a.b.c",
        "eyJ.eyJ.eyJ",
        "x..y",
        "-_-",
        "x+y/z==",
        "opaque-but-unknown",
        &long,
    ] {
        let answer = call(&app, "/mcp", Some(token)).await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "{}: {:?}",
            &token[..token.len().min(40)],
            answer.body
        );
        assert_eq!(answer.body["error"], "invalid_token");
    }
}
