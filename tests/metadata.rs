//! The RFC 9728 metadata endpoint through the stack (R-PRM-1..3).

mod support;

use axum::Router;
use axum::body::Body;
use axum::routing::post;
use http::{Request, StatusCode};
use mcp_gatekeeper::keys::LocalKeys;
use mcp_gatekeeper::{Issuer, ResourceServer};
use serde_json::json;
use support::{SigningKey, call, send};

const RESOURCE: &str = "https://mcp.example.com/mcp";

fn server(root: bool) -> ResourceServer {
    let key = SigningKey::ec("k");
    let keys =
        LocalKeys::from_jwks(support::signing::jwks(&[&key]).to_string().as_bytes()).expect("keys");
    let mut builder = ResourceServer::builder(RESOURCE)
        .issuer(
            Issuer::new("https://a.example.com")
                .local_keys(keys)
                .discovery(false),
        )
        .issuer(
            Issuer::new("https://b.example.com/tenant")
                .discovery(false)
                .jwks_uri("https://b.example.com/jwks"),
        )
        .scopes_supported(["mcp:read", "mcp:write"])
        .resource_name("Example MCP");
    if root {
        builder = builder.serve_root_metadata(true);
    }
    builder.build().expect("valid")
}

#[tokio::test]
async fn the_layer_serves_the_document_at_the_path_inserted_url_without_a_token() {
    // R-PRM-1, R-PRM-2
    let app = support::app(server(false).layer());
    let answer = call(&app, "/.well-known/oauth-protected-resource/mcp", None).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.body,
        json!({
            "resource": RESOURCE,
            "authorization_servers": ["https://a.example.com", "https://b.example.com/tenant"],
            "scopes_supported": ["mcp:read", "mcp:write"],
            "bearer_methods_supported": ["header"],
            "resource_name": "Example MCP",
        })
    );
    assert_eq!(answer.header("access-control-allow-origin"), "*");
    assert_eq!(
        call(&app, "/.well-known/oauth-protected-resource", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let root = support::app(server(true).layer());
    assert_eq!(
        call(&root, "/.well-known/oauth-protected-resource", None)
            .await
            .body["resource"],
        RESOURCE
    );
}

#[tokio::test]
async fn the_challenge_points_at_the_document_for_the_requested_resource() {
    // R-PRM-3
    let app = support::app(server(false).layer());
    let challenge = call(&app, "/mcp", None).await.challenge();
    assert!(challenge.contains(
        "resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\""
    ));
    let document = call(&app, "/.well-known/oauth-protected-resource/mcp", None).await;
    assert_eq!(document.body["resource"], RESOURCE);
}

#[tokio::test]
async fn preflight_and_wrong_methods_are_answered() {
    // R-PRM-1: browser clients fetch the document cross-origin.
    let app = support::app(server(false).layer());
    let preflight = Request::options("/.well-known/oauth-protected-resource/mcp")
        .body(Body::empty())
        .expect("request");
    let answer = send(&app, preflight).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    assert_eq!(answer.header("access-control-allow-origin"), "*");
    let post = Request::post("/.well-known/oauth-protected-resource/mcp")
        .body(Body::empty())
        .expect("request");
    assert_eq!(
        send(&app, post).await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
}

#[tokio::test]
async fn the_metadata_service_serves_the_document_alone() {
    // R-PRM-1: for routers where the layer sits on one route only.
    let server = server(false);
    async fn mcp() -> &'static str {
        "mcp"
    }
    let app = Router::new()
        .route("/mcp", post(mcp).route_layer(server.layer()))
        .route_service(
            "/.well-known/oauth-protected-resource/mcp",
            server.metadata_service(),
        );
    assert_eq!(
        call(&app, "/.well-known/oauth-protected-resource/mcp", None)
            .await
            .body["resource"],
        RESOURCE
    );
}
