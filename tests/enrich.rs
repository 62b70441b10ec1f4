//! Enrichment after verification (R-AZ-2, seed 003): its failure is logged and the
//! request goes on with the verified claims; its claims never override them.

mod support;

use axum::Router;
use axum::routing::get;
use base64::Engine;
use http::StatusCode;
use http::request::Parts;
use mcp_gatekeeper::keys::LocalKeys;
use mcp_gatekeeper::{Decision, Issuer, McpOperation, Principal, ResourceServer};
use serde_json::{Map, Value, json};
use support::{SigningKey, call, capture_logs, claims};

const RESOURCE: &str = "https://mcp.example.com/mcp";
const ISSUER: &str = "https://gateway.example.com";

/// Reads the claims of an upstream JWT, as seed 003's gateway did — and fails on the
/// opaque tokens Google issues.
fn upstream_claims(
    principal: &Principal,
    _parts: &Parts,
) -> impl Future<Output = Result<Map<String, Value>, String>> + use<> {
    let upstream = principal
        .claim("upstream_token")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    async move {
        let payload = upstream.split('.').nth(1).ok_or(
            "upstream token is not a parseable JWT: token contains an invalid number of segments",
        )?;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|e| e.to_string())?;
        serde_json::from_slice::<Map<String, Value>>(&raw).map_err(|e| e.to_string())
    }
}

fn app(key: &SigningKey) -> Router {
    let keys =
        LocalKeys::from_jwks(support::signing::jwks(&[key]).to_string().as_bytes()).expect("keys");
    let server = ResourceServer::builder(RESOURCE)
        .issuer(Issuer::new(ISSUER).local_keys(keys).discovery(false))
        .enrich(upstream_claims)
        // A permit-all policy that still reads what it can.
        .authorize(
            |principal: &Principal, _op: &McpOperation, _parts: &Parts| {
                let department = principal
                    .enrichment()
                    .and_then(|e| e.get("department"))
                    .cloned();
                async move {
                    match department {
                        Some(Value::String(d)) if d == "blocked" => {
                            Decision::deny("department blocked")
                        }
                        _ => Decision::Allow,
                    }
                }
            },
        )
        .build()
        .expect("valid");
    async fn show(principal: Principal) -> axum::Json<Value> {
        axum::Json(json!({"sub": principal.subject(), "enrichment": principal.enrichment()}))
    }
    Router::new().route("/mcp", get(show)).layer(server.layer())
}

#[tokio::test]
async fn seed_003_an_opaque_upstream_token_does_not_lock_everyone_out() {
    // R-AZ-2: enrichment expects a JWT, gets Google's opaque ya29 token, fails;
    // the permit-all policy still permits, on the verified claims.
    let key = SigningKey::ec("k");
    let (_guard, logs) = capture_logs();
    let app = app(&key);
    let mut c = claims(ISSUER, RESOURCE);
    c["upstream_token"] = json!("ya29.a0AfH6SMBx-opaque");
    let answer = call(&app, "/mcp", Some(&key.sign(&c))).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body["sub"], "user-1");
    assert_eq!(answer.body["enrichment"], Value::Null);
    let logs = String::from_utf8_lossy(&logs.lock().expect("logs")).into_owned();
    assert!(
        logs.contains("enrichment failed") && logs.contains("R-AZ-2"),
        "the failure is logged: {logs}"
    );
    assert!(
        !logs.contains("ya29.a0AfH6SMBx"),
        "the upstream token is not logged"
    );
}

#[tokio::test]
async fn enriched_claims_reach_the_policy_and_never_override_verified_ones() {
    // R-AZ-2
    let key = SigningKey::ec("k");
    let app = app(&key);
    let upstream = SigningKey::ec("up")
        .sign(&json!({"department": "eng", "sub": "someone-else", "exp": support::now() + 60}));
    let mut c = claims(ISSUER, RESOURCE);
    c["upstream_token"] = json!(upstream);
    let answer = call(&app, "/mcp", Some(&key.sign(&c))).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body["sub"], "user-1", "the verified subject stands");
    assert_eq!(answer.body["enrichment"]["department"], "eng");

    let blocked =
        SigningKey::ec("up").sign(&json!({"department": "blocked", "exp": support::now() + 60}));
    c["upstream_token"] = json!(blocked);
    assert_eq!(
        call(&app, "/mcp", Some(&key.sign(&c))).await.status,
        StatusCode::FORBIDDEN,
        "the policy sees enrichment"
    );
}

#[tokio::test]
async fn a_hanging_enrichment_times_out_and_the_request_goes_on() {
    // R-AZ-2: a userinfo call that never answers must not hold everyone up.
    let key = SigningKey::ec("k");
    let keys =
        LocalKeys::from_jwks(support::signing::jwks(&[&key]).to_string().as_bytes()).expect("keys");
    let server = ResourceServer::builder(RESOURCE)
        .issuer(Issuer::new(ISSUER).local_keys(keys).discovery(false))
        .enrich(|_: &Principal, _: &Parts| async {
            std::future::pending::<()>().await;
            Ok(Map::new())
        })
        .enrich_timeout(std::time::Duration::from_millis(100))
        .build()
        .expect("valid");
    async fn ok() -> &'static str {
        "ok"
    }
    let app = Router::new().route("/mcp", get(ok)).layer(server.layer());
    let answer = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        call(&app, "/mcp", Some(&key.sign(&claims(ISSUER, RESOURCE)))),
    )
    .await
    .expect("the request finished");
    assert_eq!(answer.status, StatusCode::OK);
}
