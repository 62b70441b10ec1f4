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
/// A browser-based MCP client's origin the server allows.
const BROWSER_APP: &str = "http://localhost:6274";

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
        .resource_name("Example MCP")
        .allow_origin(BROWSER_APP);
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
    // No Origin, no CORS; the answer varies by Origin for shared caches.
    assert_eq!(answer.header("access-control-allow-origin"), "");
    assert!(answer.header("vary").contains("origin"));
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
async fn allowed_pages_read_the_document_and_other_origins_get_no_cors() {
    // R-PRM-1, R-MCP-7: a browser-based client of an allowed origin fetches the
    // document cross-origin; a page of another origin is not told it may read it.
    let app = support::app(server(false).layer());
    let path = "/.well-known/oauth-protected-resource/mcp";
    let preflight = Request::options(path)
        .header("origin", BROWSER_APP)
        .header("access-control-request-method", "GET")
        .body(Body::empty())
        .expect("request");
    let answer = send(&app, preflight).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("access-control-allow-origin"), BROWSER_APP);
    let get = |origin: &'static str| {
        Request::get(path)
            .header("origin", origin)
            .body(Body::empty())
            .expect("request")
    };
    let answer = send(&app, get(BROWSER_APP)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body["resource"], RESOURCE);
    assert_eq!(answer.header("access-control-allow-origin"), BROWSER_APP);
    // A foreign page's request is refused first of all (R-MCP-7), with no CORS.
    let foreign = send(&app, get("http://evil.example")).await;
    assert_eq!(foreign.status, StatusCode::FORBIDDEN);
    assert_eq!(foreign.header("access-control-allow-origin"), "");
    let post = Request::post(path).body(Body::empty()).expect("request");
    let answer = send(&app, post).await;
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(answer.header("allow"), "GET, HEAD");
}

#[tokio::test]
async fn the_metadata_service_serves_the_document_alone() {
    // R-PRM-1: for routers where the layer sits on one route only; the server's CORS
    // stage wraps it for browser-based clients.
    let server = server(false);
    async fn mcp() -> &'static str {
        "mcp"
    }
    let app = Router::new()
        .route("/mcp", post(mcp).route_layer(server.layer()))
        .route_service(
            "/.well-known/oauth-protected-resource/mcp",
            tower::Layer::layer(&server.cors(), server.metadata_service()),
        );
    assert_eq!(
        call(&app, "/.well-known/oauth-protected-resource/mcp", None)
            .await
            .body["resource"],
        RESOURCE
    );
    let from_app = Request::get("/.well-known/oauth-protected-resource/mcp")
        .header("origin", BROWSER_APP)
        .body(Body::empty())
        .expect("request");
    let answer = send(&app, from_app).await;
    assert_eq!(answer.header("access-control-allow-origin"), BROWSER_APP);
}
