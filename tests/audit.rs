//! The audit trail (issue 17): one event per request on the target
//! `mcp_gatekeeper::audit`, written as JSON lines the way the example writes them, for
//! every kind of answer the stack gives: an allowed call, a refusal of each layer that
//! refuses (scopes, Origin, a foreign session id, gRPC), the metadata document, a
//! preflight, an error of the service behind, and a request dropped before its answer.
//! The forged tokens of the attack suite are checked in `tests/attacks.rs`.

mod support;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use mcp_gatekeeper::keys::LocalKeys;
use mcp_gatekeeper::{
    BearerLayer, Issuer, JwtVerifier, McpScopes, ProtectedResource, ResourceServer, VerifyLayer,
};
use serde_json::{Value, json};
use support::{AuditLog, SigningKey};
use tower::{Layer, Service, ServiceExt};

const ISSUER: &str = "https://idp.example.com";
const RESOURCE: &str = "https://mcp.example.com/mcp";
const APP: &str = "https://app.example.com";

fn issuer(key: &SigningKey) -> Issuer {
    let keys =
        LocalKeys::from_jwks(support::signing::jwks(&[key]).to_string().as_bytes()).expect("keys");
    Issuer::new(ISSUER).local_keys(keys).discovery(false)
}

fn token(key: &SigningKey, sub: &str, scope: &str) -> String {
    let mut claims = support::claims(ISSUER, RESOURCE);
    claims["sub"] = json!(sub);
    claims["scope"] = json!(scope);
    key.sign(&claims)
}

/// The service behind: issues a session id to `initialize`, fails on the tool
/// `explode` (an error, not an answer), and answers everything else.
async fn behind(request: Request<Bytes>) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let body: Value = serde_json::from_slice(request.body()).unwrap_or(Value::Null);
    if body["params"]["name"] == "explode" {
        return Err(std::io::Error::other("the upstream broke"));
    }
    let mut response = Response::new(Full::new(Bytes::from_static(b"{}")));
    if body["method"] == "initialize" {
        response.headers_mut().insert(
            "mcp-session-id",
            http::HeaderValue::from_static("session-1"),
        );
    }
    Ok(response)
}

/// Collects a request body into bytes for [`behind`].
async fn collected<B: http_body::Body<Data = Bytes>>(request: Request<B>) -> Request<Bytes> {
    let (parts, body) = request.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    Request::from_parts(parts, bytes)
}

fn rpc(method: &str, params: Value) -> Full<Bytes> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    Full::new(Bytes::from(body.to_string()))
}

fn post(token: Option<&str>) -> http::request::Builder {
    let mut request = Request::post("/mcp")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    request
}

/// The only new event since `seen`, which it advances.
fn next_event(audit: &AuditLog, seen: &mut usize) -> Value {
    let events = audit.events();
    assert_eq!(
        events.len(),
        *seen + 1,
        "one event per request: {events:#?}"
    );
    *seen += 1;
    events[*seen - 1].clone()
}

#[tokio::test]
async fn every_answer_of_the_stack_gets_one_event_with_its_fields_and_no_token() {
    let (_guard, _logs, audit) = support::capture_logs_and_audit();
    let key = SigningKey::ec("k");
    let server = ResourceServer::builder(RESOURCE)
        .issuer(issuer(&key))
        .mcp_scopes(McpScopes::new(["mcp:read"]).tool("write*", ["mcp:write"]))
        .bind_sessions(true)
        .allow_origin(APP)
        .cors(true)
        .build()
        .expect("valid configuration");
    let service = server
        .layer()
        .layer(tower::service_fn(|request: Request<_>| async move {
            behind(collected(request).await).await
        }));
    let alice = token(&key, "alice", "mcp:read");
    let bob = token(&key, "bob", "mcp:read");
    let mut seen = 0;
    let send = |request: Request<Full<Bytes>>| service.clone().oneshot(request);

    // Allowed: the caller, the operation, the key tier.
    let body = rpc("initialize", json!({}));
    let answer = send(post(Some(&alice)).body(body).expect("request")).await;
    assert_eq!(answer.expect("answer").status(), StatusCode::OK);
    let event = next_event(&audit, &mut seen);
    assert_eq!(event["decision"], "allow", "{event}");
    assert_eq!(event["status"], 200, "{event}");
    assert_eq!(event["issuer"], ISSUER, "{event}");
    assert_eq!(event["subject"], "alice", "{event}");
    assert_eq!(event["client_id"], "client-1", "{event}");
    assert_eq!(event["http_method"], "POST", "{event}");
    assert_eq!(event["path"], "/mcp", "{event}");
    assert_eq!(event["mcp_method"], "initialize", "{event}");
    assert_eq!(event["key_tier"], "local", "{event}");
    assert!(event.get("rule").is_none(), "{event}");
    assert!(
        event["decision_ms"].as_f64() <= event["latency_ms"].as_f64(),
        "{event}"
    );

    // The same token again comes from the cache.
    let body = rpc("tools/call", json!({"name": "read_notes", "arguments": {}}));
    let answer = send(post(Some(&alice)).body(body).expect("request")).await;
    assert_eq!(answer.expect("answer").status(), StatusCode::OK);
    let event = next_event(&audit, &mut seen);
    assert_eq!(event["decision"], "allow", "{event}");
    assert_eq!(event["key_tier"], "cache", "{event}");
    assert_eq!(event["mcp_method"], "tools/call", "{event}");
    assert_eq!(event["tool"], "read_notes", "{event}");

    // Refused for its scopes: the rule, the kind, the tool.
    let body = rpc(
        "tools/call",
        json!({"name": "write_notes", "arguments": {}}),
    );
    let answer = send(post(Some(&alice)).body(body).expect("request")).await;
    assert_eq!(answer.expect("answer").status(), StatusCode::FORBIDDEN);
    let event = next_event(&audit, &mut seen);
    assert_eq!(event["decision"], "reject", "{event}");
    assert_eq!(event["status"], 403, "{event}");
    assert_eq!(event["rule"], "R-AZ-1", "{event}");
    assert_eq!(event["kind"], "insufficient_scope", "{event}");
    assert_eq!(event["tool"], "write_notes", "{event}");
    assert_eq!(event["subject"], "alice", "{event}");

    // Another principal's session id: 404, R-GW-5.
    let body = rpc("tools/list", json!({}));
    let request = post(Some(&bob))
        .header("mcp-session-id", "session-1")
        .body(body)
        .expect("request");
    let answer = send(request).await.expect("answer");
    assert_eq!(answer.status(), StatusCode::NOT_FOUND);
    let event = next_event(&audit, &mut seen);
    assert_eq!(event["decision"], "reject", "{event}");
    assert_eq!(event["status"], 404, "{event}");
    assert_eq!(event["rule"], "R-GW-5", "{event}");
    assert_eq!(event["kind"], "not_found", "{event}");
    assert_eq!(event["subject"], "bob", "{event}");

    // A page of a foreign origin: 403, R-MCP-7, before any token is read.
    let body = rpc("tools/list", json!({}));
    let request = post(Some(&alice))
        .header("origin", "https://evil.example.com")
        .body(body)
        .expect("request");
    let answer = send(request).await.expect("answer");
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
    let event = next_event(&audit, &mut seen);
    assert_eq!(event["decision"], "reject", "{event}");
    assert_eq!(event["rule"], "R-MCP-7", "{event}");
    assert_eq!(event["kind"], "forbidden", "{event}");
    assert!(event.get("subject").is_none(), "{event}");

    // The allowed page's preflight, and the metadata document: answers, not decisions.
    let request = Request::options("/mcp")
        .header("origin", APP)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .body(Full::default())
        .expect("request");
    let answer = send(request).await.expect("answer");
    assert!(answer.status().is_success(), "{:?}", answer.status());
    let event = next_event(&audit, &mut seen);
    assert_eq!(event["decision"], "preflight", "{event}");
    assert_eq!(event["http_method"], "OPTIONS", "{event}");
    let request = Request::get("/.well-known/oauth-protected-resource/mcp")
        .body(Full::default())
        .expect("request");
    assert_eq!(
        send(request).await.expect("answer").status(),
        StatusCode::OK
    );
    let event = next_event(&audit, &mut seen);
    assert_eq!(event["decision"], "metadata", "{event}");
    assert_eq!(
        event["path"], "/.well-known/oauth-protected-resource/mcp",
        "{event}"
    );

    // A gRPC refusal is HTTP 200: its grpc-status says what happened.
    let request = Request::post("/mcp")
        .header("content-type", "application/grpc")
        .body(Full::default())
        .expect("request");
    assert_eq!(
        send(request).await.expect("answer").status(),
        StatusCode::OK
    );
    let event = next_event(&audit, &mut seen);
    assert_eq!(event["decision"], "reject", "{event}");
    assert_eq!(event["status"], 200, "{event}");
    assert_eq!(event["grpc_status"], 16, "{event}");
    assert_eq!(event["kind"], "missing_token", "{event}");

    // The service behind fails: an error, with what was known.
    let body = rpc("tools/call", json!({"name": "explode", "arguments": {}}));
    let answer = send(post(Some(&alice)).body(body).expect("request")).await;
    assert!(answer.is_err());
    let event = next_event(&audit, &mut seen);
    assert_eq!(event["decision"], "error", "{event}");
    assert!(event.get("status").is_none(), "{event}");
    assert_eq!(event["tool"], "explode", "{event}");

    // A resource URI is recorded without its user information and query.
    let body = rpc(
        "resources/read",
        json!({"uri": "https://reader:hunter2-secret@files.example.com/doc?sig=sig-secret-123"}),
    );
    let _ = send(post(Some(&alice)).body(body).expect("request")).await;
    let event = next_event(&audit, &mut seen);
    assert_eq!(event["mcp_method"], "resources/read", "{event}");
    assert_eq!(event["tool"], "https://files.example.com/doc", "{event}");

    // The query is never recorded, nor is any part of a token.
    let request = Request::get("/mcp?access_token=in-the-query-0123456789")
        .header("authorization", format!("Bearer {alice}"))
        .body(Full::default())
        .expect("request");
    let _ = send(request).await;
    let event = next_event(&audit, &mut seen);
    assert_eq!(event["path"], "/mcp", "{event}");
    let text = audit.text();
    assert!(!text.contains("in-the-query"), "{text}");
    assert!(!text.contains("secret"), "{text}");
    for secret in [&alice, &bob].iter().flat_map(|t| t.split('.')) {
        assert!(!text.contains(secret), "the audit trail shows {secret:?}");
    }
}

#[tokio::test]
async fn a_request_dropped_before_its_answer_is_audited_as_cancelled() {
    let (_guard, _logs, audit) = support::capture_logs_and_audit();
    let key = SigningKey::ec("k");
    let server = ResourceServer::builder(RESOURCE)
        .issuer(issuer(&key))
        .build()
        .expect("valid configuration");
    let never = tower::service_fn(|_: Request<_>| {
        std::future::pending::<Result<Response<Full<Bytes>>, Infallible>>()
    });
    let service = server.layer().layer(never);
    let request = Request::get("/mcp")
        .header(
            "authorization",
            format!("Bearer {}", token(&key, "alice", "mcp:read")),
        )
        .body(Full::<Bytes>::default())
        .expect("request");
    let waited = tokio::time::timeout(Duration::from_millis(50), service.oneshot(request)).await;
    assert!(waited.is_err(), "the service never answers");
    let mut seen = 0;
    let event = next_event(&audit, &mut seen);
    assert_eq!(event["decision"], "cancelled", "{event}");
    assert!(event.get("status").is_none(), "{event}");
    assert!(event.get("decision_ms").is_none(), "never decided: {event}");
    assert_eq!(event["subject"], "alice", "{event}");
}

#[tokio::test]
async fn a_stack_composed_by_hand_is_audited_once_by_its_bearer_layer() {
    let (_guard, logs, audit) = support::capture_logs_and_audit();
    let key = SigningKey::ec("k");
    let resource = ProtectedResource::new(RESOURCE);
    let verifier = JwtVerifier::new([issuer(&key)]).expect("valid");
    let stack = tower::ServiceBuilder::new()
        .layer(BearerLayer::new(resource.clone()))
        .layer(VerifyLayer::new(resource, verifier))
        .service_fn(|_: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
        });
    let mut seen = 0;
    let request = Request::get("/mcp")
        .header(
            "authorization",
            format!("Bearer {}", token(&key, "carol", "mcp:read")),
        )
        .body(Full::default())
        .expect("request");
    let answer = stack.clone().oneshot(request).await.expect("answer");
    assert_eq!(answer.status(), StatusCode::OK);
    let event = next_event(&audit, &mut seen);
    assert_eq!(event["decision"], "allow", "{event}");
    assert_eq!(event["subject"], "carol", "{event}");
    assert_eq!(event["key_tier"], "local", "{event}");
    let request = Request::get("/mcp").body(Full::default()).expect("request");
    let mut stack = stack;
    let answer = stack
        .ready()
        .await
        .expect("ready")
        .call(request)
        .await
        .expect("answer");
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    let event = next_event(&audit, &mut seen);
    assert_eq!(event["decision"], "reject", "{event}");
    assert_eq!(event["kind"], "missing_token", "{event}");
    // The span still carries the decision for the human log.
    let logs = String::from_utf8_lossy(&logs.lock().expect("logs")).into_owned();
    assert!(logs.contains("decision=\"allow\""), "{logs}");
    assert!(logs.contains("decision=\"reject\""), "{logs}");
}
