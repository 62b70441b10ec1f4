//! Sessions are bound to their principal (R-GW-5): the example's real rmcp server
//! (sessions on, as in MCP 2025-11-25) behind the whole stack on loopback. A session
//! id issued to one user is useless to another, for POST, GET and DELETE alike.

#[path = "../examples/common/notes.rs"]
mod notes;
mod support;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use mcp_gatekeeper::keys::LocalKeys;
use mcp_gatekeeper::{BindSessionsLayer, Issuer, ProtectedResource, ResourceServer};
use rmcp::transport::streamable_http_server::StreamableHttpService;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use serde_json::{Value, json};
use support::SigningKey;
use tower::{Layer, Service, ServiceExt};

const ISSUER: &str = "https://idp.example.com";

struct Served {
    resource: String,
    key: SigningKey,
}

impl Served {
    async fn start(bind: bool) -> Self {
        Self::start_with(bind, notes::scope_rules()).await
    }

    async fn start_with(bind: bool, rules: mcp_gatekeeper::McpScopes) -> Self {
        let key = SigningKey::ec("sessions");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let resource = format!("http://{}/mcp", listener.local_addr().expect("addr"));
        let jwks = support::signing::jwks(&[&key]).to_string();
        let issuer = Issuer::new(ISSUER)
            .local_keys(LocalKeys::from_jwks(jwks.as_bytes()).expect("keys"))
            .discovery(false);
        let server = ResourceServer::builder(&resource)
            .issuer(issuer)
            .mcp_scopes(rules)
            .bind_sessions(bind)
            .build()
            .expect("valid");
        let config = rmcp::transport::StreamableHttpServerConfig::default()
            .with_json_response(true)
            .with_allowed_hosts(["127.0.0.1".to_owned()]);
        let notes = notes::Notes::new();
        let mcp = StreamableHttpService::new(
            move || Ok(notes.clone()),
            Arc::new(LocalSessionManager::default()),
            config,
        );
        let app = Router::new()
            .route_service("/mcp", mcp)
            .layer(server.layer());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { resource, key }
    }

    fn token(&self, subject: &str) -> String {
        let mut claims = support::claims(ISSUER, &self.resource);
        claims["sub"] = json!(subject);
        claims["scope"] = json!("mcp:read mcp:write");
        self.key.sign(&claims)
    }

    fn request(
        &self,
        method: reqwest::Method,
        subject: &str,
        session: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let mut request = reqwest::Client::new()
            .request(method, &self.resource)
            .bearer_auth(self.token(subject))
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .header("mcp-protocol-version", "2025-06-18");
        if let Some(session) = session {
            request = request.header("mcp-session-id", session);
        }
        request
    }

    /// Initializes a session for `subject`; its id.
    async fn initialize(&self, subject: &str) -> String {
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "sessions-test", "version": "1"}}});
        let answer = self
            .request(reqwest::Method::POST, subject, None)
            .json(&init)
            .send()
            .await
            .expect("send");
        assert_eq!(answer.status(), 200, "initialize");
        let session = answer.headers()["mcp-session-id"]
            .to_str()
            .expect("ascii")
            .to_owned();
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let answer = self
            .request(reqwest::Method::POST, subject, Some(&session))
            .json(&initialized)
            .send()
            .await
            .expect("send");
        assert_eq!(answer.status(), 202, "initialized");
        session
    }

    async fn whoami(&self, subject: &str, session: &str) -> (u16, Value) {
        let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "whoami", "arguments": {}}});
        let answer = self
            .request(reqwest::Method::POST, subject, Some(session))
            .json(&call)
            .send()
            .await
            .expect("send");
        let status = answer.status().as_u16();
        let text = answer.text().await.unwrap_or_default();
        // A session answers in SSE; a refusal in JSON.
        let json = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim)
            .find(|d| !d.is_empty())
            .unwrap_or(&text);
        (status, serde_json::from_str(json).unwrap_or(Value::Null))
    }

    async fn status(&self, method: reqwest::Method, subject: &str, session: &str) -> u16 {
        self.request(method, subject, Some(session))
            .send()
            .await
            .expect("send")
            .status()
            .as_u16()
    }
}

#[tokio::test]
async fn a_session_id_is_useless_to_another_principal_for_post_get_and_delete() {
    let served = Served::start(true).await;
    let session = served.initialize("alice").await;
    let (status, body) = served.whoami("alice", &session).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["structuredContent"]["subject"], "alice");

    // Mallory has a valid token of her own and alice's session id.
    let (status, body) = served.whoami("mallory", &session).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], -32001);
    assert_eq!(body["error"]["message"], "Session not found");
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let status = served.status(method.clone(), "mallory", &session).await;
        assert_eq!(status, 404, "{method}");
    }
    // Alice's session is untouched: Mallory's DELETE never reached the server.
    assert_eq!(served.whoami("alice", &session).await.0, 200);
    let closed = served
        .status(reqwest::Method::DELETE, "alice", &session)
        .await;
    assert!(
        (200..300).contains(&closed),
        "alice closes her session: {closed}"
    );
}

#[tokio::test]
async fn without_the_binding_the_server_alone_lets_another_principal_in() {
    // What the binding prevents: rmcp checks the session id, not who sends it.
    let served = Served::start(false).await;
    let session = served.initialize("alice").await;
    let (status, body) = served.whoami("mallory", &session).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["structuredContent"]["subject"], "mallory");
}

#[tokio::test]
async fn a_session_id_not_seen_issued_belongs_to_its_first_user_and_memory_is_bounded() {
    // A service that issues a new session id to every request without one.
    let issued = Arc::new(AtomicUsize::new(0));
    let counter = issued.clone();
    let service = tower::service_fn(move |request: http::Request<String>| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move {
            let mut response = http::Response::new(String::new());
            if !request.headers().contains_key("mcp-session-id") {
                response
                    .headers_mut()
                    .insert("mcp-session-id", format!("s-{n}").parse().expect("value"));
            }
            Ok::<_, Infallible>(response)
        }
    });
    let layer = BindSessionsLayer::with_bounds(
        ProtectedResource::new("https://mcp.example.com/mcp"),
        100,
        Duration::from_secs(60),
    );
    let mut service = layer.layer(service);
    let principal = |sub: &str| {
        let claims = json!({"sub": sub}).as_object().cloned().expect("object");
        mcp_gatekeeper::Principal::from_claims(mcp_gatekeeper::TokenKind::Jwt, ISSUER, claims)
    };
    let mut send = async |sub: &str, session: Option<&str>| {
        let mut request = http::Request::new(String::new());
        request.extensions_mut().insert(principal(sub));
        if let Some(session) = session {
            request
                .headers_mut()
                .insert("mcp-session-id", session.parse().expect("value"));
        }
        let ready = service.ready().await.expect("ready");
        ready
            .call(request)
            .await
            .expect("infallible")
            .status()
            .as_u16()
    };
    assert_eq!(send("bob", Some("restored-after-restart")).await, 200);
    assert_eq!(send("eve", Some("restored-after-restart")).await, 404);
    assert_eq!(send("bob", Some("restored-after-restart")).await, 200);
    for _ in 0..1000 {
        assert_eq!(send("bob", None).await, 200);
    }
    assert!(layer.bindings() <= 100, "{} bindings", layer.bindings());
    // An id that is not visible ASCII is refused: an HTTP/2 client can keep
    // whitespace around it that HTTP/1 servers behind would trim.
    for odd in [
        "restored-after-restart\t",
        " restored-after-restart",
        "caf\u{e9}",
    ] {
        let mut request = http::Request::new(String::new());
        request.extensions_mut().insert(principal("eve"));
        request.headers_mut().insert(
            "mcp-session-id",
            http::HeaderValue::from_bytes(odd.as_bytes()).expect("value"),
        );
        let ready = service.ready().await.expect("ready");
        let status = ready.call(request).await.expect("infallible").status();
        assert_eq!(status, 400, "{odd:?}");
    }
    // Strict: an id not seen issued is nobody's.
    let strict = BindSessionsLayer::new(ProtectedResource::new("https://mcp.example.com/mcp"))
        .refuse_unknown(true);
    let mut strict = strict.layer(tower::service_fn(|_: http::Request<String>| async {
        Ok::<_, Infallible>(http::Response::new(String::new()))
    }));
    let mut request = http::Request::new(String::new());
    request.extensions_mut().insert(principal("bob"));
    request
        .headers_mut()
        .insert("mcp-session-id", "never-issued".parse().expect("value"));
    let status = strict.ready().await.expect("ready").call(request).await;
    assert_eq!(status.expect("infallible").status(), 404);
    // Without a principal in front, it fails closed.
    let mut bare = layer.layer(tower::service_fn(|_: http::Request<String>| async {
        Ok::<_, Infallible>(http::Response::new(String::new()))
    }));
    let request = http::Request::new(String::new());
    let status = bare.ready().await.expect("ready").call(request).await;
    assert_eq!(status.expect("infallible").status(), 500);
}

#[tokio::test]
async fn a_caller_without_a_token_cannot_use_a_token_holders_session_nor_claim_one() {
    // Issue 14, item 7 with R-GW-5: public operations let callers without a token in;
    // a session opened with a token still answers only to that token.
    let rules =
        notes::scope_rules().public(["initialize", "notifications/initialized", "tools/list"]);
    let served = Served::start_with(true, rules).await;
    let session = served.initialize("alice").await;
    let anonymous = |method: reqwest::Method, session: &str| {
        reqwest::Client::new()
            .request(method, &served.resource)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .header("mcp-protocol-version", "2025-06-18")
            .header("mcp-session-id", session)
    };
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    for method in [
        reqwest::Method::POST,
        reqwest::Method::GET,
        reqwest::Method::DELETE,
    ] {
        let answer = anonymous(method.clone(), &session)
            .json(&list)
            .send()
            .await
            .expect("send");
        assert_eq!(answer.status(), 401, "{method}");
    }
    // Alice's session still works for her.
    let (status, body) = served.whoami("alice", &session).await;
    assert_eq!(status, 200, "{body}");
    // An id nobody was seen using goes on to the server, which knows no such session.
    let unknown = "0123456789abcdef0123456789abcdef";
    let answer = anonymous(reqwest::Method::POST, unknown)
        .json(&list)
        .send()
        .await
        .expect("send");
    assert_eq!(answer.status(), 404);
}
