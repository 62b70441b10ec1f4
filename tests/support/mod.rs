//! Shared test harness: signing keys, a real identity provider on 127.0.0.1 (discovery
//! and JWKS over HTTP, with switches for failure, delay, wrong issuer and rotation, and
//! counters of fetches), and helpers to drive an axum app in-process.
#![allow(dead_code)]

pub mod idp;
pub mod process;
pub mod prometheus;
pub mod signing;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http_body_util::BodyExt;
use mcp_gatekeeper::Principal;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tower::ServiceExt;

pub use signing::SigningKey;

/// `n` milliseconds.
pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Key-set limits short enough for tests: 1.5 s per fetch, a 300 ms kid-miss
/// cool-down, back-off from 300 to 600 ms.
pub fn quick_jwks() -> mcp_gatekeeper::keys::JwksOptions {
    mcp_gatekeeper::keys::JwksOptions {
        kid_miss_cooldown: ms(300),
        min_backoff: ms(300),
        max_backoff: ms(600),
        fetch: mcp_gatekeeper::FetchOptions {
            timeout: ms(1500),
            connect_timeout: ms(500),
            ..mcp_gatekeeper::FetchOptions::default()
        },
        ..mcp_gatekeeper::keys::JwksOptions::default()
    }
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// How the test identity provider misbehaves.
#[derive(Default)]
pub struct Switches {
    /// Answer every request with 503.
    pub down: AtomicBool,
    /// Delay every answer by this many milliseconds.
    pub delay_ms: AtomicU64,
    /// Name another issuer in the discovery documents.
    pub wrong_issuer: AtomicBool,
    /// Serve the RFC 8414 document (the OIDC one is always served).
    pub serve_rfc8414: AtomicBool,
    /// Answer the RFC 8414 URL with an HTML page (a catch-all front end).
    pub rfc8414_html: AtomicBool,
}

/// Counters of what the identity provider was asked.
#[derive(Default)]
pub struct Counters {
    pub introspection: AtomicUsize,
    pub rfc8414: AtomicUsize,
    pub oidc: AtomicUsize,
    pub jwks: AtomicUsize,
}

impl Counters {
    pub fn discovery(&self) -> usize {
        self.rfc8414.load(Ordering::SeqCst) + self.oidc.load(Ordering::SeqCst)
    }
    pub fn jwks(&self) -> usize {
        self.jwks.load(Ordering::SeqCst)
    }
}

struct IdpState {
    issuer: String,
    jwks: Mutex<Value>,
    cache_control: Mutex<Option<String>>,
    extra_jwks_bytes: AtomicUsize,
    redirect_to: Mutex<String>,
    /// Introspection answers by token; unknown tokens are inactive.
    introspected: Mutex<std::collections::HashMap<String, Value>>,
    /// Introspection error answers (status, JSON body) by token.
    refused: Mutex<std::collections::HashMap<String, (u16, Value)>>,
    /// Members that replace those of the discovery documents.
    metadata_extra: Mutex<serde_json::Map<String, Value>>,
    switches: Switches,
    counters: Counters,
}

/// Takes a [`TestIdp`] down (every answer 503) or up, from any task.
pub struct DownSwitch(Arc<IdpState>);

impl DownSwitch {
    pub fn set(&self, down: bool) {
        self.0.switches.down.store(down, Ordering::SeqCst);
    }
}

/// A real HTTP identity provider on 127.0.0.1:0 serving discovery and a JWK set.
pub struct TestIdp {
    pub issuer: String,
    pub addr: SocketAddr,
    state: Arc<IdpState>,
    task: tokio::task::JoinHandle<()>,
}

impl TestIdp {
    /// Starts an identity provider serving `keys`. Its issuer is `http://127.0.0.1:PORT`
    /// plus `path` (e.g. `""` or `"/realms/a"`).
    pub async fn start_with_path(keys: &[&SigningKey], path: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind test idp");
        let addr = listener.local_addr().expect("test idp address");
        let issuer = format!("http://{addr}{path}");
        let state = Arc::new(IdpState {
            issuer: issuer.clone(),
            jwks: Mutex::new(signing::jwks(keys)),
            cache_control: Mutex::new(None),
            extra_jwks_bytes: AtomicUsize::new(0),
            redirect_to: Mutex::new(String::new()),
            introspected: Mutex::new(std::collections::HashMap::new()),
            refused: Mutex::new(std::collections::HashMap::new()),
            metadata_extra: Mutex::new(serde_json::Map::new()),
            switches: Switches::default(),
            counters: Counters::default(),
        });
        let app = Router::new()
            .route(
                &format!("{path}/.well-known/openid-configuration"),
                get(oidc),
            )
            .route(
                &format!("/.well-known/oauth-authorization-server{path}"),
                get(rfc8414),
            )
            .route("/jwks", get(jwks))
            .route("/moved", get(moved))
            .route("/introspect", axum::routing::post(introspect))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            issuer,
            addr,
            state,
            task,
        }
    }

    pub async fn start(keys: &[&SigningKey]) -> Self {
        Self::start_with_path(keys, "").await
    }

    pub fn jwks_uri(&self) -> String {
        format!("http://{}/jwks", self.addr)
    }

    pub fn set_keys(&self, keys: &[&SigningKey]) {
        *self.state.jwks.lock().expect("jwks lock") = signing::jwks(keys);
    }

    pub fn set_jwks(&self, doc: Value) {
        *self.state.jwks.lock().expect("jwks lock") = doc;
    }

    pub fn set_cache_control(&self, value: Option<&str>) {
        *self.state.cache_control.lock().expect("cc lock") = value.map(str::to_owned);
    }

    /// Pads the JWKS answer with this many extra bytes of whitespace.
    pub fn pad_jwks(&self, bytes: usize) {
        self.state.extra_jwks_bytes.store(bytes, Ordering::SeqCst);
    }

    /// The introspection endpoint URL.
    pub fn introspection_uri(&self) -> String {
        format!("http://{}/introspect", self.addr)
    }

    /// Makes introspection answer `answer` (with `active`) for `token`.
    pub fn set_introspection(&self, token: &str, answer: Value) {
        self.state
            .introspected
            .lock()
            .expect("introspection lock")
            .insert(token.to_owned(), answer);
    }

    /// Makes introspection of `token` answer HTTP `status` with the JSON `body`, as
    /// providers answer what they refuse.
    pub fn refuse_introspection(&self, token: &str, status: u16, body: Value) {
        self.state
            .refused
            .lock()
            .expect("refusal lock")
            .insert(token.to_owned(), (status, body));
    }

    /// Makes the discovery documents say `value` for `member` (e.g. a `jwks_uri`
    /// pointing elsewhere).
    pub fn set_metadata(&self, member: &str, value: Value) {
        self.state
            .metadata_extra
            .lock()
            .expect("metadata lock")
            .insert(member.to_owned(), value);
    }

    /// Makes `/moved` answer `302` to `location`.
    pub fn redirect_to(&self, location: &str) {
        *self.state.redirect_to.lock().expect("redirect lock") = location.to_owned();
    }

    /// A handle that takes the provider down or up from another task.
    pub fn down_switch(&self) -> DownSwitch {
        DownSwitch(self.state.clone())
    }

    pub fn switches(&self) -> &Switches {
        &self.state.switches
    }

    pub fn counters(&self) -> &Counters {
        &self.state.counters
    }

    /// Stops serving: later connections are refused.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for TestIdp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn misbehave(state: &IdpState) -> Option<Response> {
    let delay = state.switches.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if state.switches.down.load(Ordering::SeqCst) {
        return Some(StatusCode::SERVICE_UNAVAILABLE.into_response());
    }
    None
}

fn metadata(state: &IdpState) -> Value {
    let issuer = if state.switches.wrong_issuer.load(Ordering::SeqCst) {
        format!("{}/other", state.issuer)
    } else {
        state.issuer.clone()
    };
    let origin = state
        .issuer
        .split('/')
        .take(3)
        .collect::<Vec<_>>()
        .join("/");
    let mut document = json!({
        "issuer": issuer,
        "jwks_uri": format!("{origin}/jwks"),
        "token_endpoint": format!("{origin}/token"),
        "introspection_endpoint": format!("{origin}/introspect"),
    });
    for (member, value) in state.metadata_extra.lock().expect("metadata lock").iter() {
        document[member] = value.clone();
    }
    document
}

async fn oidc(State(state): State<Arc<IdpState>>) -> Response {
    state.counters.oidc.fetch_add(1, Ordering::SeqCst);
    if let Some(r) = misbehave(&state).await {
        return r;
    }
    axum::Json(metadata(&state)).into_response()
}

async fn rfc8414(State(state): State<Arc<IdpState>>) -> Response {
    state.counters.rfc8414.fetch_add(1, Ordering::SeqCst);
    if state.switches.rfc8414_html.load(Ordering::SeqCst) {
        return axum::response::Html("<html>Welcome</html>").into_response();
    }
    if !state.switches.serve_rfc8414.load(Ordering::SeqCst) {
        return StatusCode::NOT_FOUND.into_response();
    }
    if let Some(r) = misbehave(&state).await {
        return r;
    }
    axum::Json(metadata(&state)).into_response()
}

async fn jwks(State(state): State<Arc<IdpState>>) -> Response {
    state.counters.jwks.fetch_add(1, Ordering::SeqCst);
    if let Some(r) = misbehave(&state).await {
        return r;
    }
    let mut body = state.jwks.lock().expect("jwks lock").to_string();
    body.push_str(&" ".repeat(state.extra_jwks_bytes.load(Ordering::SeqCst)));
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(cc) = state.cache_control.lock().expect("cc lock").as_deref() {
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_str(cc).expect("cache-control value"),
        );
    }
    response
}

async fn moved(State(state): State<Arc<IdpState>>) -> Response {
    let location = state.redirect_to.lock().expect("redirect lock").clone();
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

/// The client the test identity provider accepts at its introspection endpoint.
pub const INTROSPECTION_CLIENT: (&str, &str) = ("resource-server", "s3cret:with/odd chars");

/// RFC 7662: authenticated (Basic or in the form), `token` in the form.
async fn introspect(
    State(state): State<Arc<IdpState>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    state.counters.introspection.fetch_add(1, Ordering::SeqCst);
    if let Some(r) = misbehave(&state).await {
        return r;
    }
    let form: std::collections::HashMap<String, String> =
        serde_urlencoded::from_str(&body).unwrap_or_default();
    let (id, secret) = INTROSPECTION_CLIENT;
    let encode = |v: &str| form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{}:{}", encode(id), encode(secret))
        )
    );
    let by_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(basic.as_str());
    let by_form = form.get("client_id").map(String::as_str) == Some(id)
        && form.get("client_secret").map(String::as_str) == Some(secret);
    if !(by_header ^ by_form) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let token = form.get("token").cloned().unwrap_or_default();
    let refusal = state
        .refused
        .lock()
        .expect("refusal lock")
        .get(&token)
        .cloned();
    if let Some((status, body)) = refusal {
        let status = StatusCode::from_u16(status).expect("a status");
        return (status, axum::Json(body)).into_response();
    }
    let answer = state
        .introspected
        .lock()
        .expect("introspection lock")
        .get(&token)
        .cloned();
    axum::Json(answer.unwrap_or_else(|| json!({"active": false}))).into_response()
}

/// A TCP listener on 127.0.0.1 that accepts connections and never answers: a hung
/// identity provider.
pub async fn black_hole() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind black hole");
    let addr = listener.local_addr().expect("black hole address");
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (addr, task)
}

/// A port on 127.0.0.1 where nothing listens (connections are refused).
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    drop(listener);
    addr
}

/// The protected app used by the whole-stack tests: `/mcp` and `/servers/{id}/mcp`
/// answer with the principal they saw.
pub fn app(layer: mcp_gatekeeper::GatekeeperLayer) -> Router {
    async fn echo(principal: Principal) -> axum::Json<Value> {
        axum::Json(json!({
            "sub": principal.subject(),
            "iss": principal.issuer(),
            "aud": principal.audiences(),
            "client_id": principal.client_id(),
            "scopes": principal.scopes().iter().collect::<Vec<_>>(),
        }))
    }
    Router::new()
        .route("/mcp", get(echo).post(echo))
        .route("/servers/{id}/mcp", get(echo).post(echo))
        .layer(layer)
}

/// A response as the tests look at it.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn challenge(&self) -> String {
        self.header(header::WWW_AUTHENTICATE.as_str())
    }

    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }

    pub fn description(&self) -> String {
        self.body["error_description"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// Sends `GET path` with an optional bearer token to `app`, in-process.
pub async fn call(app: &Router, path: &str, token: Option<&str>) -> Answer {
    let mut request = http::Request::get(path);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    send(app, request.body(Body::empty()).expect("request")).await
}

/// Sends any request to `app`, in-process.
pub async fn send(app: &Router, request: http::Request<Body>) -> Answer {
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Answer {
        status,
        headers,
        body,
    }
}

/// Standard claims for a token of `issuer` meant for `audience`.
pub fn claims(issuer: &str, audience: &str) -> Value {
    json!({
        "iss": issuer,
        "sub": "user-1",
        "aud": audience,
        "client_id": "client-1",
        "scope": "mcp:read",
        "iat": now(),
        "exp": now() + 600,
        "jti": "jti-1",
    })
}

/// Runs `f` with every tracing event of this thread's spans written into the
/// returned buffer.
pub fn capture_logs() -> (tracing::subscriber::DefaultGuard, Arc<Mutex<Vec<u8>>>) {
    let (guard, logs, _audit) = capture_logs_and_audit();
    (guard, logs)
}

/// The audit events (target `mcp_gatekeeper::audit`) written as JSON lines, the way
/// `examples/mcp_server.rs --audit-log` writes them.
#[derive(Clone, Default)]
pub struct AuditLog(Arc<Mutex<Vec<u8>>>);

impl AuditLog {
    /// Every event so far, parsed.
    pub fn events(&self) -> Vec<serde_json::Value> {
        let bytes = self.0.lock().expect("audit buffer").clone();
        String::from_utf8(bytes)
            .expect("audit lines are UTF-8")
            .lines()
            .map(|line| serde_json::from_str(line).expect("each audit line is one JSON object"))
            .collect()
    }

    /// The raw lines, for leak checks.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("audit buffer")).into_owned()
    }
}

/// [`capture_logs`], and the audit trail beside it as JSON lines.
pub fn capture_logs_and_audit() -> (
    tracing::subscriber::DefaultGuard,
    Arc<Mutex<Vec<u8>>>,
    AuditLog,
) {
    use tracing_subscriber::prelude::*;
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let writer = buffer.clone();
    let audit = AuditLog::default();
    let audit_writer = audit.0.clone();
    let subscriber = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
                .with_writer(move || BufferWriter(writer.clone()))
                // The audit trail goes to its own buffer, as the examples route it.
                .with_filter(
                    tracing_subscriber::filter::Targets::new()
                        .with_default(tracing::Level::TRACE)
                        .with_target(
                            mcp_gatekeeper::audit::TARGET,
                            tracing_subscriber::filter::LevelFilter::OFF,
                        ),
                ),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .with_writer(move || BufferWriter(audit_writer.clone()))
                .with_filter(
                    tracing_subscriber::filter::Targets::new()
                        .with_target(mcp_gatekeeper::audit::TARGET, tracing::Level::INFO),
                ),
        );
    // A callsite's interest is cached for the whole process by the first thread that
    // reaches it. While only one dispatcher is registered, tracing-core asks that
    // thread's default, so a sibling test thread without a subscriber caches `never`
    // and this thread's capture stays empty (tokio-rs/tracing#3611; one run in 30 of
    // tests/token_cache.rs). A bare registry as the global default keeps a second
    // dispatcher registered, so interest is always asked of every live one.
    static GLOBAL: std::sync::Once = std::sync::Once::new();
    GLOBAL.call_once(|| {
        // An error means some other global default is set, which serves as well.
        let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry());
    });
    let guard = tracing::subscriber::set_default(subscriber);
    tracing::callsite::rebuild_interest_cache();
    (guard, buffer, audit)
}

struct BufferWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for BufferWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
