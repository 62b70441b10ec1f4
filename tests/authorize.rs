//! Authorization callbacks and scope requirements through the whole stack (R-AZ-1,
//! R-ID-1), and the refusal of a stack composed in the wrong order.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::routing::get;
use http::StatusCode;
use http::request::Parts;
use mcp_gatekeeper::keys::LocalKeys;
use mcp_gatekeeper::{
    AudienceLayer, AudiencePolicy, AuthorizeLayer, BearerLayer, Decision, Issuer, JwtVerifier,
    McpOperation, Principal, ProtectedResource, RequireScopes, ResourceServer, VerifyLayer,
};
use serde_json::json;
use support::{SigningKey, call, claims};

const RESOURCE: &str = "https://mcp.example.com/mcp";
const ISSUER: &str = "https://idp.example.com";

fn issuer(key: &SigningKey) -> Issuer {
    let keys =
        LocalKeys::from_jwks(support::signing::jwks(&[key]).to_string().as_bytes()).expect("keys");
    Issuer::new(ISSUER).local_keys(keys).discovery(false)
}

fn with_scope(key: &SigningKey, scope: serde_json::Value) -> String {
    let mut c = claims(ISSUER, RESOURCE);
    c.as_object_mut().map(|o| o.remove("scope"));
    c["scp"] = scope;
    key.sign(&c)
}

#[tokio::test]
async fn required_scopes_allow_or_ask_for_exactly_the_needed_scopes() {
    // R-AZ-1, R-ERR-1, R-ID-1 (scp as array and as string)
    let key = SigningKey::ec("k");
    let server = ResourceServer::builder(RESOURCE)
        .issuer(issuer(&key))
        .scopes_supported(["mcp:read", "mcp:write"])
        .required_scopes(["mcp:read", "mcp:write"])
        .build()
        .expect("valid");
    let app = support::app(server.layer());
    let answer = call(
        &app,
        "/mcp",
        Some(&with_scope(&key, json!(["mcp:read", "mcp:write"]))),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body["scopes"], json!(["mcp:read", "mcp:write"]));
    assert_eq!(
        call(
            &app,
            "/mcp",
            Some(&with_scope(&key, json!("mcp:write mcp:read")))
        )
        .await
        .status,
        StatusCode::OK
    );
    let answer = call(&app, "/mcp", Some(&with_scope(&key, json!("mcp:read")))).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(
        answer.challenge(),
        "Bearer error=\"insufficient_scope\", error_description=\"this request needs the scopes: mcp:read mcp:write\", \
         resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\", scope=\"mcp:read mcp:write\""
    );
    assert_eq!(answer.body["scope"], "mcp:read mcp:write");
}

#[tokio::test]
async fn a_callback_sees_principal_and_request_and_decides() {
    // R-AZ-1: allow, deny (403), step-up (403 insufficient_scope).
    let key = SigningKey::ec("k");
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    let server = ResourceServer::builder(RESOURCE)
        .issuer(issuer(&key))
        .authorize(
            move |principal: &Principal, _op: &McpOperation, parts: &Parts| {
                counter.fetch_add(1, Ordering::SeqCst);
                let path = parts.uri.path().to_owned();
                let admin = principal.claim("role").and_then(|r| r.as_str()) == Some("admin");
                let writer = principal.scopes().contains("mcp:write");
                async move {
                    match path.as_str() {
                        "/admin" if !admin => Decision::deny("only administrators may use /admin"),
                        "/write" if !writer => {
                            Decision::insufficient_scope(["mcp:read", "mcp:write"])
                        }
                        _ => Decision::Allow,
                    }
                }
            },
        )
        .build()
        .expect("valid");
    async fn ok() -> &'static str {
        "ok"
    }
    let app = Router::new()
        .route("/mcp", get(ok))
        .route("/admin", get(ok))
        .route("/write", get(ok))
        .layer(server.layer());
    let user = key.sign(&claims(ISSUER, RESOURCE));
    assert_eq!(call(&app, "/mcp", Some(&user)).await.status, StatusCode::OK);
    let answer = call(&app, "/admin", Some(&user)).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(
        answer.challenge().contains("only administrators"),
        "{answer:?}"
    );
    assert!(
        !answer.challenge().contains("scope"),
        "a plain denial is no step-up: {answer:?}"
    );
    assert_eq!(answer.body["error"], "access_denied");
    let answer = call(&app, "/write", Some(&user)).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(
        answer.challenge().ends_with("scope=\"mcp:read mcp:write\""),
        "{answer:?}"
    );
    let mut admin = claims(ISSUER, RESOURCE);
    admin["role"] = json!("admin");
    assert_eq!(
        call(&app, "/admin", Some(&key.sign(&admin))).await.status,
        StatusCode::OK
    );
    assert_eq!(
        seen.load(Ordering::SeqCst),
        4,
        "the callback ran once per verified request"
    );
    // An unverified request never reaches the callback.
    assert_eq!(
        call(&app, "/mcp", Some("garbage")).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(seen.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn layers_compose_by_hand() {
    // Each layer is usable on its own, in the documented order.
    let key = SigningKey::ec("k");
    let resource = ProtectedResource::new(RESOURCE).authorization_server(ISSUER);
    let verifier = JwtVerifier::new([issuer(&key)]).expect("valid");
    async fn ok(principal: Principal) -> String {
        principal.subject().unwrap_or_default().to_owned()
    }
    let app = Router::new().route("/mcp", get(ok)).layer(
        tower::ServiceBuilder::new()
            .layer(BearerLayer::new(resource.clone()))
            .layer(VerifyLayer::new(resource.clone(), verifier))
            .layer(AudienceLayer::new(
                resource.clone(),
                AudiencePolicy::resource(),
            ))
            .layer(AuthorizeLayer::new(
                resource,
                RequireScopes::all(["mcp:read"]),
            )),
    );
    let answer = call(&app, "/mcp", Some(&key.sign(&claims(ISSUER, RESOURCE)))).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, "user-1");
}

#[tokio::test]
async fn a_layer_without_the_one_it_needs_fails_closed_with_500() {
    // DESIGN: a missing layer is a loud 500, never an open door.
    let resource = ProtectedResource::new(RESOURCE).authorization_server(ISSUER);
    async fn ok() -> &'static str {
        "ok"
    }
    let key = SigningKey::ec("k");
    let token = key.sign(&claims(ISSUER, RESOURCE));
    let verify_only = Router::new().route("/mcp", get(ok)).layer(VerifyLayer::new(
        resource.clone(),
        JwtVerifier::new([issuer(&key)]).expect("valid"),
    ));
    let audience_only = Router::new()
        .route("/mcp", get(ok))
        .layer(AudienceLayer::new(
            resource.clone(),
            AudiencePolicy::resource(),
        ));
    let authorize_only = Router::new()
        .route("/mcp", get(ok))
        .layer(AuthorizeLayer::new(
            resource.clone(),
            RequireScopes::all(["mcp:read"]),
        ));
    // R-AUD-1 by hand: bearer, verify and authorize, but no audience check.
    let no_audience = Router::new().route("/mcp", get(ok)).layer(
        tower::ServiceBuilder::new()
            .layer(BearerLayer::new(resource.clone()))
            .layer(VerifyLayer::new(
                resource.clone(),
                JwtVerifier::new([issuer(&key)]).expect("valid"),
            ))
            .layer(AuthorizeLayer::new(
                resource,
                RequireScopes::all(["mcp:read"]),
            )),
    );
    let (_guard, logs) = support::capture_logs();
    let answer = call(&no_audience, "/mcp", Some(&token)).await;
    assert_eq!(
        answer.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{answer:?}"
    );
    let logs = String::from_utf8_lossy(&logs.lock().expect("logs")).into_owned();
    assert!(
        logs.contains("put AudienceLayer between VerifyLayer and AuthorizeLayer"),
        "the log names the fix: {logs}"
    );
    for app in [verify_only, audience_only, authorize_only, no_audience] {
        let answer = call(&app, "/mcp", Some(&token)).await;
        assert_eq!(
            answer.status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{answer:?}"
        );
        assert!(
            !answer.description().contains("Layer"),
            "no internals to the client: {answer:?}"
        );
    }
}

#[tokio::test]
async fn a_jwt_principal_carries_every_field_and_raw_claim() {
    // R-ID-1
    let key = SigningKey::ec("k");
    let server = ResourceServer::builder(RESOURCE)
        .issuer(issuer(&key))
        .build()
        .expect("valid");
    async fn show(principal: Principal) -> axum::Json<serde_json::Value> {
        axum::Json(json!({
            "sub": principal.subject(),
            "iss": principal.issuer(),
            "client_id": principal.client_id(),
            "aud": principal.audiences(),
            "exp": principal.expires_at().is_some(),
            "kind": format!("{:?}", principal.kind()),
            "tenant": principal.claim("tenant"),
        }))
    }
    let app = Router::new().route("/mcp", get(show)).layer(server.layer());
    let mut c = claims(ISSUER, RESOURCE);
    c.as_object_mut().map(|o| o.remove("client_id"));
    c["azp"] = json!("azp-client");
    c["tenant"] = json!({"id": 7});
    let answer = call(&app, "/mcp", Some(&key.sign(&c))).await;
    assert_eq!(
        answer.body,
        json!({"sub": "user-1", "iss": ISSUER, "client_id": "azp-client", "aud": [RESOURCE], "exp": true, "kind": "Jwt", "tenant": {"id": 7}})
    );
}

#[tokio::test]
async fn offline_access_is_never_a_requirement_of_the_resource() {
    // R-MCP-5: a configuration naming offline_access fails at build, saying why and
    // where; a callback asking for it does not get it into the challenge.
    let key = SigningKey::ec("k");
    let build_error = |builder: mcp_gatekeeper::ResourceServerBuilder| match builder.build() {
        Ok(_) => String::new(),
        Err(error) => error.to_string(),
    };
    for (builder, place) in [
        (
            ResourceServer::builder(RESOURCE)
                .issuer(issuer(&key))
                .required_scopes(["mcp:read", "offline_access"]),
            "required_scopes",
        ),
        (
            ResourceServer::builder(RESOURCE)
                .issuer(issuer(&key))
                .mcp_scopes(
                    mcp_gatekeeper::McpScopes::new(["mcp:read"]).tool("w*", ["offline_access"]),
                ),
            "mcp_scopes",
        ),
        (
            ResourceServer::builder(RESOURCE)
                .issuer(issuer(&key))
                .scopes_supported(["mcp:read", "offline_access"]),
            "scopes_supported",
        ),
    ] {
        let error = build_error(builder);
        assert!(
            error.contains("\"offline_access\" is named in") && error.contains(place),
            "{place}: {error}"
        );
    }

    let server = ResourceServer::builder(RESOURCE)
        .issuer(issuer(&key))
        .scopes_supported(["mcp:read", "mcp:write"])
        .authorize(|_: &Principal, _: &McpOperation, _: &Parts| async {
            Decision::insufficient_scope(["mcp:write", "offline_access"])
        })
        .build()
        .expect("valid");
    let app = support::app(server.layer());
    let answer = call(&app, "/mcp", Some(&with_scope(&key, json!(["mcp:read"])))).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    let challenge = answer.challenge();
    assert!(
        challenge.contains("scope=\"mcp:write\"") && !challenge.contains("offline_access"),
        "{challenge}"
    );
    assert!(
        !answer.body.to_string().contains("offline_access"),
        "{}",
        answer.body
    );

    // Asking for nothing but offline_access cannot be a step-up: it is a denial.
    let server = ResourceServer::builder(RESOURCE)
        .issuer(issuer(&key))
        .scopes_supported(["mcp:read"])
        .authorize(|_: &Principal, _: &McpOperation, _: &Parts| async {
            Decision::insufficient_scope(["offline_access"])
        })
        .build()
        .expect("valid");
    let app = support::app(server.layer());
    let answer = call(&app, "/mcp", Some(&with_scope(&key, json!(["mcp:read"])))).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(answer.body["error"], "access_denied", "{}", answer.body);
    assert!(!answer.challenge().contains("insufficient_scope"));
}
