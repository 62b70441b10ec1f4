//! Operations (R-OPS-1..3): no secret in any log line or answer, configuration
//! mistakes caught at build with a fix, and tracing fields for every decision.

mod support;

use std::time::Duration;

use http::StatusCode;
use jsonwebtoken::Algorithm;
use mcp_gatekeeper::keys::{JwksOptions, LocalKeys};
use mcp_gatekeeper::{Issuer, McpScopes, ResourceServer};
use support::{SigningKey, call, capture_logs, claims};

const RESOURCE: &str = "https://mcp.example.com/mcp";
const ISSUER: &str = "https://idp.example.com";

fn local(key: &SigningKey) -> LocalKeys {
    LocalKeys::from_jwks(support::signing::jwks(&[key]).to_string().as_bytes()).expect("keys")
}

fn build_error(builder: mcp_gatekeeper::ResourceServerBuilder) -> String {
    match builder.build() {
        Ok(_) => panic!("expected a configuration error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn insecure_or_contradictory_configuration_fails_at_build_with_a_fix() {
    // R-OPS-2, R-AUD-1, R-JWT-1
    let cases: Vec<(mcp_gatekeeper::ResourceServerBuilder, &str)> = vec![
        (ResourceServer::builder(RESOURCE), "no trusted issuer"),
        (
            ResourceServer::builder("http://mcp.example.com/mcp").issuer(Issuer::new(ISSUER)),
            "use https",
        ),
        (
            ResourceServer::builder("/mcp").issuer(Issuer::new(ISSUER)),
            "absolute URL",
        ),
        (
            ResourceServer::builder(RESOURCE).issuer(Issuer::new("http://idp.example.com")),
            "use https",
        ),
        (
            ResourceServer::builder(RESOURCE).issuer(Issuer::new(ISSUER).algorithms([])),
            "allows no algorithm",
        ),
        (
            ResourceServer::builder(RESOURCE)
                .issuer(Issuer::new(ISSUER).algorithms([Algorithm::HS256])),
            "Issuer::hmac_secret",
        ),
        (
            ResourceServer::builder(RESOURCE).issuer(Issuer::new(ISSUER).hmac_secret(vec![7; 32])),
            "add HS256",
        ),
        (
            ResourceServer::builder(RESOURCE).issuer(
                Issuer::new(ISSUER)
                    .algorithms([Algorithm::HS256])
                    .hmac_secret(b"short".to_vec()),
            ),
            "at least 32",
        ),
        (
            ResourceServer::builder(RESOURCE).issuer(Issuer::new(ISSUER).discovery(false)),
            "no way to get keys",
        ),
        (
            ResourceServer::builder(RESOURCE)
                .issuer(Issuer::new(ISSUER).leeway(Duration::from_secs(3600))),
            "at most 300",
        ),
        (
            ResourceServer::builder(RESOURCE)
                .issuer(Issuer::new(ISSUER))
                .issuer(Issuer::new(ISSUER)),
            "configured twice",
        ),
        (
            ResourceServer::builder(RESOURCE)
                .issuer(Issuer::new(ISSUER))
                .scopes_supported(["a"])
                .required_scopes(["b"]),
            "not in scopes_supported",
        ),
        (
            ResourceServer::builder(RESOURCE)
                .issuer(Issuer::new(ISSUER).jwks_uri("http://idp.example.com/jwks")),
            "use https",
        ),
        (
            ResourceServer::builder(RESOURCE).issuer(Issuer::new(ISSUER).jwks_options(
                JwksOptions {
                    min_ttl: Duration::from_secs(10),
                    max_ttl: Duration::from_secs(1),
                    ..JwksOptions::default()
                },
            )),
            "minimum above its maximum",
        ),
        (
            ResourceServer::builder(RESOURCE)
                .issuer(Issuer::new(ISSUER))
                .max_token_len(10),
            "too small",
        ),
        (
            ResourceServer::builder(RESOURCE)
                .issuer(Issuer::new(ISSUER))
                .scopes_supported(["mcp:read"])
                .mcp_scopes(McpScopes::new(["mcp:read"]).tool("write", ["mcp:write"])),
            "\"mcp:write\" is required but not in scopes_supported",
        ),
        (
            ResourceServer::builder(RESOURCE)
                .issuer(Issuer::new(ISSUER))
                .mcp_operations(false)
                .filter_tools(true),
            "mcp_operations(false) turns reading it off",
        ),
        // An HMAC algorithm beside public keys of any source.
        (
            ResourceServer::builder(RESOURCE).issuer(
                Issuer::new(ISSUER)
                    .algorithms([Algorithm::HS256, Algorithm::RS256])
                    .hmac_secret(vec![7; 32]),
            ),
            "Give HMAC tokens an issuer of their own",
        ),
        (
            ResourceServer::builder(RESOURCE).issuer(
                Issuer::new(ISSUER)
                    .algorithms([Algorithm::HS256])
                    .hmac_secret(vec![7; 32])
                    .jwks_uri("https://idp.example.com/jwks"),
            ),
            "remove HS* from Issuer::algorithms",
        ),
        (
            ResourceServer::builder(RESOURCE).issuer(
                Issuer::new(ISSUER)
                    .algorithms([Algorithm::HS256])
                    .hmac_secret(vec![7; 32])
                    .local_keys(local(&SigningKey::ec("k"))),
            ),
            "also takes public keys",
        ),
        (
            ResourceServer::builder(RESOURCE).issuer(
                Issuer::new(ISSUER)
                    .algorithms([Algorithm::HS256])
                    .hmac_secret(vec![7; 32])
                    .discovery(true),
            ),
            "also takes public keys",
        ),
        // Plain http off loopback names the way out, which must be spelled out.
        (
            ResourceServer::builder(RESOURCE).issuer(Issuer::new("http://keycloak.internal")),
            "Issuer::allow_insecure_http()",
        ),
        (
            ResourceServer::builder(RESOURCE)
                .issuer(Issuer::new(ISSUER).jwks_uri("http://keycloak.internal/certs")),
            "Issuer::allow_insecure_http()",
        ),
    ];
    for (builder, expected) in cases {
        let message = build_error(builder);
        assert!(
            message.contains(expected),
            "expected {expected:?} in {message:?}"
        );
    }
}

#[test]
fn what_the_errors_suggest_builds() {
    // The fixes the messages name are accepted.
    for builder in [
        ResourceServer::builder(RESOURCE).issuer(
            Issuer::new("http://keycloak.internal")
                .jwks_uri("http://keycloak.internal/certs")
                .allow_insecure_http(),
        ),
        ResourceServer::builder(RESOURCE).issuer(
            Issuer::new(ISSUER)
                .algorithms([Algorithm::HS256])
                .hmac_secret(vec![7; 32]),
        ),
        ResourceServer::builder(RESOURCE)
            .issuer(
                Issuer::new("https://hmac.example.com")
                    .algorithms([Algorithm::HS256])
                    .hmac_secret(vec![7; 32]),
            )
            .issuer(Issuer::new(ISSUER).algorithms([Algorithm::RS256])),
    ] {
        if let Err(error) = builder.build() {
            panic!("{error}");
        }
    }
}

#[test]
fn building_is_synchronous_and_needs_no_runtime() {
    // R-KEY-2: no I/O (and no Tokio runtime) at construction.
    let server = ResourceServer::builder(RESOURCE)
        .issuer(Issuer::new(ISSUER))
        .build();
    assert!(server.is_ok());
}

#[tokio::test]
async fn no_token_appears_in_logs_or_answers() {
    // R-OPS-1
    let key = SigningKey::ec("k");
    let (_guard, logs) = capture_logs();
    let server = ResourceServer::builder(RESOURCE)
        .issuer(Issuer::new(ISSUER).local_keys(local(&key)).discovery(false))
        .required_scopes(["mcp:admin"])
        .build()
        .expect("valid");
    let app = support::app(server.layer());
    let mut expired = claims(ISSUER, RESOURCE);
    expired["exp"] = serde_json::json!(support::now() - 3600);
    let tokens = [
        key.sign(&claims(ISSUER, RESOURCE)),                 // 403: scope
        key.sign(&expired),                                  // 401: expired
        format!("{}x", key.sign(&claims(ISSUER, RESOURCE))), // 401: signature
        "opaque-secret-token-value".to_owned(),
    ];
    for token in &tokens {
        let answer = call(&app, "/mcp", Some(token)).await;
        assert!(answer.status.is_client_error(), "{answer:?}");
        let shown = format!("{:?} {}", answer.headers, answer.body);
        assert!(
            !shown.contains(token.as_str()),
            "token echoed in the answer"
        );
    }
    let logs = String::from_utf8_lossy(&logs.lock().expect("logs")).into_owned();
    assert!(
        logs.contains("request refused"),
        "refusals are logged: {logs}"
    );
    for token in &tokens {
        for part in token.split('.') {
            assert!(
                part.len() < 8 || !logs.contains(part),
                "a token part leaked into the logs"
            );
        }
    }
}

#[tokio::test]
async fn spans_record_decision_rule_issuer_and_key_tier() {
    // R-OPS-3
    let key = SigningKey::ec("k");
    let (_guard, logs) = capture_logs();
    let server = ResourceServer::builder(RESOURCE)
        .issuer(Issuer::new(ISSUER).local_keys(local(&key)).discovery(false))
        .build()
        .expect("valid");
    let app = support::app(server.layer());
    assert_eq!(
        call(&app, "/mcp", Some(&key.sign(&claims(ISSUER, RESOURCE))))
            .await
            .status,
        StatusCode::OK
    );
    let mut expired = claims(ISSUER, RESOURCE);
    expired["exp"] = serde_json::json!(support::now() - 3600);
    assert_eq!(
        call(&app, "/mcp", Some(&key.sign(&expired))).await.status,
        StatusCode::UNAUTHORIZED
    );
    let logs = String::from_utf8_lossy(&logs.lock().expect("logs")).into_owned();
    let allowed = logs
        .lines()
        .find(|l| l.contains("decision=\"allow\"") || l.contains("decision=allow"));
    let allowed = allowed.unwrap_or_else(|| panic!("no allow span in {logs}"));
    assert!(
        allowed.contains("key_tier") && allowed.contains("local"),
        "{allowed}"
    );
    assert!(allowed.contains(ISSUER), "{allowed}");
    let refused = logs
        .lines()
        .find(|l| l.contains("close") && l.contains("reject"));
    let refused = refused.unwrap_or_else(|| panic!("no reject span in {logs}"));
    assert!(
        refused.contains("R-JWT-2"),
        "the rule that refused is named: {refused}"
    );
}

#[test]
fn an_allowed_origin_that_is_not_an_origin_is_a_build_error_even_with_the_check_off() {
    // R-MCP-7: a typo in the allow-list does not wait for the day the check is on.
    for check in [true, false] {
        let error = ResourceServer::builder(RESOURCE)
            .issuer(Issuer::new(ISSUER))
            .allow_origin("https://app.example.com/path")
            .check_origin(check)
            .build()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("is not an origin"), "check {check}: {error}");
    }
}

#[tokio::test]
async fn a_refused_session_id_is_a_rejection_on_the_span_not_an_allowed_request() {
    // R-OPS-3, R-GW-5: the 404 of a session id the server was not seen issuing.
    let key = SigningKey::ec("k");
    let (_guard, logs) = capture_logs();
    let server = ResourceServer::builder(RESOURCE)
        .issuer(Issuer::new(ISSUER).local_keys(local(&key)).discovery(false))
        .refuse_unknown_sessions(true)
        .build()
        .expect("valid");
    let app = support::app(server.layer());
    let request = http::Request::get("/mcp")
        .header(
            "authorization",
            format!("Bearer {}", key.sign(&claims(ISSUER, RESOURCE))),
        )
        .header("mcp-session-id", "never-issued")
        .body(axum::body::Body::empty())
        .expect("request");
    assert_eq!(
        support::send(&app, request).await.status,
        StatusCode::NOT_FOUND
    );
    let logs = String::from_utf8_lossy(&logs.lock().expect("logs")).into_owned();
    let closed: Vec<&str> = logs.lines().filter(|l| l.contains("close")).collect();
    assert!(
        closed
            .iter()
            .any(|l| l.contains("reject") && l.contains("R-GW-5")),
        "no rejection by R-GW-5 on the span: {logs}"
    );
    assert!(
        !closed.iter().any(|l| l.contains("allow")),
        "the refused request was recorded as allowed: {logs}"
    );
}
