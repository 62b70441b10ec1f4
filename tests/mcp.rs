//! MCP-aware authorization through the whole stack, in front of the example's real
//! rmcp server on loopback: per-tool scopes and the step-up challenge, the operation
//! read from headers and body (and their disagreement refused), the body cap, bodies
//! handed on byte for byte, and `tools/list` filtered in JSON and SSE form.

#[path = "../examples/common/notes.rs"]
mod notes;
mod support;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::middleware::{Next, from_fn};
use http::request::Parts;
use http_body_util::BodyExt;
use mcp_gatekeeper::keys::LocalKeys;
use mcp_gatekeeper::{
    Argument, AudienceLayer, AudiencePolicy, AuthorizeLayer, BearerLayer, Decision,
    FilterToolsLayer, Issuer, JwtVerifier, McpOperation, OperationLayer, OperationSource,
    Principal, ProtectedResource, ResourceServer, ResourceServerBuilder, VerifyLayer,
};
use rmcp::transport::streamable_http_server::StreamableHttpService;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use serde_json::{Value, json};
use support::SigningKey;
use tower::layer::util::{Identity, Stack};

const ISSUER: &str = "https://idp.example.com";

fn issuer(key: &SigningKey) -> Issuer {
    let keys =
        LocalKeys::from_jwks(support::signing::jwks(&[key]).to_string().as_bytes()).expect("keys");
    Issuer::new(ISSUER).local_keys(keys).discovery(false)
}

/// What the MCP server behind the gatekeeper received: the operation the layers
/// noted on each request, and its body.
type Seen = Arc<Mutex<Vec<(Option<McpOperation>, Vec<u8>)>>>;

/// The example's rmcp server behind the whole stack, on 127.0.0.1.
struct Served {
    resource: String,
    key: SigningKey,
    seen: Seen,
}

impl Served {
    /// The example's rmcp server on loopback, behind the stack `build` makes for the
    /// resource it is given.
    async fn start_with<L>(json_answers: bool, build: impl FnOnce(&str, &SigningKey) -> L) -> Self
    where
        L: tower::Layer<axum::routing::Route> + Clone + Send + Sync + 'static,
        L::Service: tower::Service<Request, Error = std::convert::Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        <L::Service as tower::Service<Request>>::Response: axum::response::IntoResponse + 'static,
        <L::Service as tower::Service<Request>>::Future: Send + 'static,
    {
        let key = SigningKey::ec("mcp-test");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let resource = format!("http://{addr}/mcp");
        let stack = build(&resource, &key);

        let config = rmcp::transport::StreamableHttpServerConfig::default()
            .with_legacy_session_mode(false)
            .with_json_response(json_answers)
            .with_allowed_hosts(["127.0.0.1".to_owned()]);
        let server = notes::Notes::new();
        let mcp = StreamableHttpService::new(
            move || Ok(server.clone()),
            Arc::new(LocalSessionManager::default()),
            config,
        );
        let seen = Seen::default();
        let record = seen.clone();
        let capture = move |request: Request, next: Next| {
            let record = record.clone();
            async move {
                let (parts, body) = request.into_parts();
                let bytes = body
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let operation = parts.extensions.get::<McpOperation>().cloned();
                record
                    .lock()
                    .expect("lock")
                    .push((operation, bytes.to_vec()));
                next.run(Request::from_parts(parts, Body::from(bytes)))
                    .await
            }
        };
        let app = Router::new()
            .route_service("/mcp", mcp)
            .layer(from_fn(capture))
            .layer(stack);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            resource,
            key,
            seen,
        }
    }

    async fn start(
        json_answers: bool,
        configure: impl FnOnce(ResourceServerBuilder) -> ResourceServerBuilder,
    ) -> Self {
        Self::start_with(json_answers, |resource, key| {
            let builder = ResourceServer::builder(resource)
                .issuer(issuer(key))
                .mcp_scopes(notes::scope_rules());
            configure(builder)
                .build()
                .expect("valid configuration")
                .layer()
        })
        .await
    }

    fn token(&self, scope: &str) -> String {
        let mut claims = support::claims(ISSUER, &self.resource);
        claims["scope"] = json!(scope);
        self.key.sign(&claims)
    }

    fn post(&self, scope: &str) -> reqwest::RequestBuilder {
        reqwest::Client::new()
            .post(&self.resource)
            .bearer_auth(self.token(scope))
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
    }

    /// POSTs `message` with a token carrying `scope`.
    async fn ask(&self, scope: &str, message: &Value) -> reqwest::Response {
        self.post(scope).json(message).send().await.expect("send")
    }

    /// POSTs `message` without a token.
    async fn ask_without_token(&self, message: &Value) -> reqwest::Response {
        reqwest::Client::new()
            .post(&self.resource)
            .header("accept", "application/json, text/event-stream")
            .json(message)
            .send()
            .await
            .expect("send")
    }

    fn bodies_seen(&self) -> Vec<Vec<u8>> {
        self.seen
            .lock()
            .expect("lock")
            .iter()
            .map(|(_, body)| body.clone())
            .collect()
    }

    /// The operations the server saw, as (source, method, name).
    fn operations_seen(&self) -> Vec<(OperationSource, Option<String>, Option<String>)> {
        let owned = |s: Option<&str>| s.map(str::to_owned);
        let seen = self.seen.lock().expect("lock");
        seen.iter()
            .map(|(op, _)| op.as_ref().expect("the layers note an operation"))
            .map(|op| (op.source(), owned(op.method()), owned(op.name())))
            .collect()
    }

    fn metadata_url(&self) -> String {
        self.resource
            .replace("/mcp", "/.well-known/oauth-protected-resource/mcp")
    }
}

fn call(tool: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": arguments}})
}

fn list_tools() -> Value {
    json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list", "params": {}})
}

async fn reply(response: reqwest::Response) -> (u16, String, Value) {
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, challenge, body)
}

#[tokio::test]
async fn whoami_with_mcp_read_is_allowed() {
    let served = Served::start(true, |b| b).await;
    let (status, _, body) = reply(served.ask("mcp:read", &call("whoami", json!({}))).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["structuredContent"]["subject"], "user-1");
}

#[tokio::test]
async fn write_with_only_mcp_read_gets_the_exact_step_up_challenge() {
    let served = Served::start(true, |b| b).await;
    let (status, challenge, body) = reply(
        served
            .ask("mcp:read", &call("write", json!({"text": "hi"})))
            .await,
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(
        challenge,
        format!(
            "Bearer error=\"insufficient_scope\", error_description=\"tools/call of \
             'write' needs the scopes: mcp:write\", resource_metadata=\"{}\", scope=\"mcp:write\"",
            served.metadata_url()
        )
    );
    assert_eq!(body["error"], "insufficient_scope");
    assert!(
        served.bodies_seen().is_empty(),
        "the MCP server never saw it"
    );
}

#[tokio::test]
async fn write_with_mcp_write_is_allowed_and_reaches_the_tool() {
    let served = Served::start(true, |b| b).await;
    for scope in ["mcp:read mcp:write", "mcp:write"] {
        let (status, _, body) = reply(
            served
                .post(scope)
                .json(&call("write", json!({"text": "hi"})))
                .send()
                .await
                .expect("send"),
        )
        .await;
        assert_eq!(status, 200, "{scope}: {body}");
        assert_eq!(body["result"]["structuredContent"]["written_by"], "user-1");
    }
    // The default rule still applies to everything else.
    let (status, challenge, _) =
        reply(served.ask("mcp:write", &call("notes", json!({}))).await).await;
    assert_eq!(status, 403);
    assert!(challenge.ends_with("scope=\"mcp:read\""), "{challenge}");
}

#[tokio::test]
async fn the_metadata_and_the_401_challenge_come_from_the_same_rules() {
    let served = Served::start(true, |b| b).await;
    let doc: Value = reqwest::get(served.metadata_url())
        .await
        .expect("metadata")
        .json()
        .await
        .expect("json");
    assert_eq!(doc["scopes_supported"], json!(["mcp:read", "mcp:write"]));
    let (status, challenge, _) =
        reply(served.ask_without_token(&call("whoami", json!({}))).await).await;
    assert_eq!(status, 401);
    assert!(challenge.ends_with("scope=\"mcp:read\""), "{challenge}");
}

#[tokio::test]
async fn headers_that_disagree_with_the_body_are_400() {
    // R-MCP-6: the JSON-RPC HeaderMismatch error of MCP 2026-07-28, echoing the id.
    let served = Served::start(true, |b| b).await;
    let write = call("write", json!({"text": "smuggled"}));
    for (method, name) in [("tools/call", "whoami"), ("tools/list", "")] {
        let mut request = served
            .post("mcp:read")
            .header("mcp-method", method)
            .json(&write);
        if !name.is_empty() {
            request = request.header("mcp-name", name);
        }
        let (status, challenge, body) = reply(request.send().await.expect("send")).await;
        assert_eq!(status, 400, "{method} {name}");
        assert_eq!(challenge, "", "a header mismatch is not about the token");
        assert_eq!(body["jsonrpc"], "2.0");
        assert_eq!(body["id"], 1);
        assert_eq!(body["error"]["code"], -32020);
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|d| d.starts_with("Header mismatch: ")
                    && d.contains("does not match body value")),
            "{body}"
        );
    }
    assert!(served.bodies_seen().is_empty());
    // Headers that agree are fine.
    let response = served
        .post("mcp:read")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "whoami")
        .json(&call("whoami", json!({})))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_2_mib_body_with_the_default_cap_is_400_naming_the_cap() {
    let served = Served::start(true, |b| b).await;
    let big = call("write", json!({"text": "x".repeat(2 * 1024 * 1024)}));
    let bytes = serde_json::to_vec(&big).expect("json");
    // With a Content-Length, and streamed without one.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    for body in [
        reqwest::Body::from(bytes.clone()),
        reqwest::Body::wrap_stream(futures_stream(chunks)),
    ] {
        let (status, _, answer) = reply(
            served
                .post("mcp:read")
                .body(body)
                .send()
                .await
                .expect("the 400 arrives"),
        )
        .await;
        assert_eq!(status, 400, "{answer}");
        let description = answer["error_description"].as_str().unwrap_or_default();
        assert!(description.contains("1048576-byte limit"), "{description}");
    }
    assert!(served.bodies_seen().is_empty());
    // Unauthenticated, the body is not read at all: the answer is the 401.
    let response = reqwest::Client::new()
        .post(&served.resource)
        .header("content-type", "application/json")
        .body(bytes)
        .send()
        .await
        .expect("the 401 arrives");
    assert_eq!(response.status(), 401);
}

/// The chunks as a stream, so reqwest sends them chunked, without a length.
fn futures_stream(
    chunks: Vec<Result<Vec<u8>, std::io::Error>>,
) -> impl tokio_stream::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    tokio_stream::iter(chunks)
}

#[tokio::test]
async fn the_inner_service_receives_byte_identical_bodies() {
    let served = Served::start(true, |b| b).await;
    // Odd spacing, escapes and member order survive: the server gets what was sent.
    let sent = b" {\"params\": {\"arguments\" :{}, \"name\":\"who\\u0061mi\"},\n \"id\":9,\"method\":\"tools/call\",\"jsonrpc\":\"2.0\"}\t".to_vec();
    for scope in ["mcp:read", "mcp:read mcp:write"] {
        // mcp:read: the body is read to decide; both scopes: it streams through.
        // Whole, and in 5-byte chunks that are joined again.
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
            sent.chunks(5).map(|c| Ok(c.to_vec())).collect();
        for body in [
            reqwest::Body::from(sent.clone()),
            reqwest::Body::wrap_stream(futures_stream(chunks)),
        ] {
            let response = served.post(scope).body(body).send().await.expect("send");
            assert_eq!(response.status(), 200, "{scope}");
        }
    }
    assert_eq!(served.bodies_seen(), vec![sent; 4]);
}

/// An operation as a callback saw it: method, name, source.
type SeenOp = (Option<String>, Option<String>, OperationSource);

#[tokio::test]
async fn callbacks_see_the_operation_and_sse_gets_and_deletes_pass_as_unknown() {
    let seen_ops: Arc<Mutex<Vec<SeenOp>>> = Arc::default();
    let record = seen_ops.clone();
    let served = Served::start(true, move |b| {
        b.authorize(move |_: &Principal, op: &McpOperation, _: &Parts| {
            record.lock().expect("lock").push((
                op.method().map(str::to_owned),
                op.name().map(str::to_owned),
                op.source(),
            ));
            let notes = op.is("tools/call") && op.name() == Some("notes");
            async move {
                if notes {
                    Decision::deny("notes are closed today")
                } else {
                    Decision::Allow
                }
            }
        })
    })
    .await;
    let client = reqwest::Client::new();
    let token = served.token("mcp:read mcp:write");
    assert_eq!(
        served
            .ask("mcp:read mcp:write", &call("whoami", json!({})))
            .await
            .status(),
        200
    );
    let (status, _, body) = reply(
        served
            .ask("mcp:read mcp:write", &call("notes", json!({})))
            .await,
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(body["error_description"], "notes are closed today");
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let status = client
            .request(method.clone(), &served.resource)
            .bearer_auth(&token)
            .header("accept", "text/event-stream")
            .send()
            .await
            .expect("send")
            .status();
        assert!(status != 400 && status != 403, "{method}: {status}");
    }
    let ops = seen_ops.lock().expect("lock").clone();
    let call_op = |name: &str| {
        (
            Some("tools/call".to_owned()),
            Some(name.to_owned()),
            OperationSource::Body,
        )
    };
    assert_eq!(
        ops,
        vec![
            call_op("whoami"),
            call_op("notes"),
            (None, None, OperationSource::Unknown),
            (None, None, OperationSource::Unknown),
        ]
    );
}

#[tokio::test]
async fn a_tool_call_cannot_hide_behind_another_content_type() {
    // Some MCP SDKs take `text/plain, application/json` as JSON: the declared type is
    // not trusted, every POST a rule needs is read. Only gRPC is never read.
    let served = Served::start(true, |b| b).await;
    let write = serde_json::to_vec(&call("write", json!({"text": "x"}))).expect("json");
    let with_type = |content_types: &[&str]| {
        let mut request = reqwest::Client::new()
            .post(&served.resource)
            .bearer_auth(served.token("mcp:read"))
            .header("accept", "application/json, text/event-stream")
            .body(write.clone());
        for content_type in content_types {
            request = request.header("content-type", *content_type);
        }
        request.send()
    };
    for types in [
        &["text/plain"][..],
        &["text/plain, application/json"],
        &["text/plain", "application/json"],
        &["text/plain;x=application/json"],
        &[],
    ] {
        let answer = with_type(types).await.expect("send");
        assert_eq!(answer.status(), 403, "{types:?}: {answer:?}");
    }
    // gRPC (any application/grpc+… type, JSON included: one rule for reading and for
    // rendering) is not MCP: its body is never read. A server that ignored the type
    // could still run it, so when a rule needs the operation it is refused, as the
    // gRPC status INVALID_ARGUMENT naming the cause.
    for grpc in ["application/grpc", "application/grpc+json"] {
        let answer = with_type(&[grpc]).await.expect("send");
        assert_eq!(answer.headers()["grpc-status"], "3", "{grpc}: {answer:?}");
        let message = answer.headers()["grpc-message"].to_str().expect("ascii");
        assert!(message.contains("declares gRPC"), "{message}");
    }
    assert!(served.bodies_seen().is_empty());
    // With every scope it goes through unread (and rmcp refuses the type itself).
    let status = reqwest::Client::new()
        .post(&served.resource)
        .bearer_auth(served.token("mcp:read mcp:write"))
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/grpc")
        .body(write.clone())
        .send()
        .await
        .expect("send")
        .status();
    assert_eq!(status, 415);
    assert_eq!(served.bodies_seen(), vec![write]);
}

#[tokio::test]
async fn a_caller_holding_every_scope_streams_past_the_cap_unread() {
    // No rule can refuse this caller, so the body is not read: 2 MiB, over the
    // default cap, reaches the server whole.
    let served = Served::start(true, |b| b).await;
    let big = serde_json::to_vec(&call("write", json!({"text": "x".repeat(2 * 1024 * 1024)})))
        .expect("json");
    // The Mcp-Method / Mcp-Name headers are all that is known of its operation: the
    // service sees them, marked as unverified. A caller a rule could refuse has the
    // body read: the same headers are then checked against it, and the operation
    // comes from the body.
    let write = serde_json::to_vec(&call("write", json!({"text": "short"}))).expect("json");
    for (scope, body) in [("mcp:read mcp:write", &big), ("mcp:write", &write)] {
        let response = served
            .post(scope)
            .header("mcp-method", "tools/call")
            .header("mcp-name", "write")
            .body(body.clone())
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 200, "{scope}");
    }
    assert_eq!(served.bodies_seen(), vec![big, write]);
    let write_from = |source| {
        (
            source,
            Some("tools/call".to_owned()),
            Some("write".to_owned()),
        )
    };
    assert_eq!(
        served.operations_seen(),
        vec![
            write_from(OperationSource::Headers),
            write_from(OperationSource::Body)
        ]
    );
}

#[tokio::test]
async fn the_body_cap_is_configurable() {
    let served = Served::start(true, |b| b.mcp_body_limit(4096)).await;
    let sized = |len: usize| {
        serde_json::to_vec(&call("whoami", json!({"pad": "x".repeat(len)}))).expect("json")
    };
    let (status, _, answer) = reply(
        served
            .post("mcp:read")
            .body(sized(8 * 1024))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    let description = answer["error_description"].as_str().unwrap_or_default();
    assert!(description.contains("4096-byte limit"), "{description}");
    let small = sized(2 * 1024);
    let response = served.post("mcp:read").body(small.clone()).send().await;
    assert_eq!(response.expect("send").status(), 200);
    assert_eq!(served.bodies_seen(), vec![small]);
}

#[tokio::test]
async fn batches_and_bodies_that_are_not_json_rpc_are_400_when_a_rule_needs_them() {
    let served = Served::start(true, |b| b).await;
    for body in [
        json!([call("whoami", json!({}))]).to_string(),
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"whoami\""
            .to_owned(),
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {}}).to_string(),
    ] {
        let (status, _, answer) = reply(
            served
                .post("mcp:read")
                .body(body.clone())
                .send()
                .await
                .expect("send"),
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(answer["error"], "invalid_request");
    }
    assert!(served.bodies_seen().is_empty());
}

/// The tool names of a `tools/list` answer to the request with id 5, from JSON or
/// from the SSE event that carries it.
async fn listed_tools(response: reqwest::Response) -> (String, Vec<String>) {
    listed_tools_answering(response, &json!(5)).await
}

/// The tool names of a `tools/list` answer, which must answer `id`.
async fn listed_tools_answering(response: reqwest::Response, id: &Value) -> (String, Vec<String>) {
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().await.expect("body");
    let message: Value = if content_type.starts_with("text/event-stream") {
        text.split("\n\n")
            .filter_map(|event| {
                let data: Vec<&str> = event
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                serde_json::from_str::<Value>(&data.join("\n")).ok()
            })
            .find(|m| m.get("result").is_some())
            .expect("an SSE event with the result")
    } else {
        serde_json::from_str(&text).expect("json")
    };
    assert_eq!(&message["id"], id, "{text}");
    let mut names: Vec<String> = message["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    (content_type, names)
}

#[tokio::test]
async fn filtering_removes_exactly_the_forbidden_tools_from_json_and_sse_answers() {
    for json_answers in [true, false] {
        let filtered = Served::start(json_answers, |b| b.filter_tools(true)).await;
        let (content_type, tools) =
            listed_tools(filtered.ask("mcp:read", &list_tools()).await).await;
        let expected_type = if json_answers {
            "application/json"
        } else {
            "text/event-stream"
        };
        assert!(content_type.starts_with(expected_type), "{content_type}");
        assert_eq!(tools, ["notes", "whoami"], "{content_type}");
        let (_, tools) =
            listed_tools(filtered.ask("mcp:read mcp:write", &list_tools()).await).await;
        assert_eq!(tools, ["notes", "whoami", "write"], "{content_type}");

        let unfiltered = Served::start(json_answers, |b| b).await;
        let (_, tools) = listed_tools(unfiltered.ask("mcp:read", &list_tools()).await).await;
        assert_eq!(tools, ["notes", "whoami", "write"], "off by default");
    }
}

#[tokio::test]
async fn filtering_holds_whatever_form_the_request_id_takes() {
    // The issue's row: `"id": 1.0` used to get the rmcp server's answer (id 1)
    // past the filter, `write` listed.
    for json_answers in [true, false] {
        let served = Served::start(json_answers, |b| b.filter_tools(true)).await;
        // The id as the server echoes it (rmcp reads 1.0 as 1).
        for (id, echoed) in [
            (json!(1.0), json!(1)),
            (json!(-0.0), json!(0)),
            (json!("1"), json!("1")),
        ] {
            let list = json!({"jsonrpc": "2.0", "id": id, "method": "tools/list", "params": {}});
            let answer = served.ask("mcp:read", &list).await;
            let (content_type, tools) = listed_tools_answering(answer, &echoed).await;
            assert_eq!(tools, ["notes", "whoami"], "{id} {content_type}");
        }
    }
}

#[tokio::test]
async fn filtering_asks_the_callback_too() {
    let served = Served::start(true, |b| {
        b.filter_tools(true)
            .authorize(|_: &Principal, op: &McpOperation, _: &Parts| {
                let allowed = op.name() != Some("notes");
                async move {
                    if allowed {
                        Decision::Allow
                    } else {
                        Decision::deny("no notes")
                    }
                }
            })
    })
    .await;
    let (_, tools) = listed_tools(served.ask("mcp:read mcp:write", &list_tools()).await).await;
    assert_eq!(tools, ["whoami", "write"]);
}

type Verified =
    tower::ServiceBuilder<Stack<AudienceLayer, Stack<VerifyLayer, Stack<BearerLayer, Identity>>>>;

/// Bearer, verify and audience layers for `protected`, composed by hand.
fn verified(protected: &ProtectedResource, key: &SigningKey) -> Verified {
    tower::ServiceBuilder::new()
        .layer(BearerLayer::new(protected.clone()))
        .layer(VerifyLayer::new(
            protected.clone(),
            JwtVerifier::new([issuer(key)]).expect("valid"),
        ))
        .layer(AudienceLayer::new(
            protected.clone(),
            AudiencePolicy::resource(),
        ))
}

#[tokio::test]
async fn the_mcp_layers_compose_by_hand() {
    // The public layers without ResourceServer: operation, scope rules, filter.
    let served = Served::start_with(false, |resource, key| {
        let protected = ProtectedResource::new(resource).authorization_server(ISSUER);
        let rules = notes::scope_rules();
        verified(&protected, key)
            .layer(OperationLayer::new(protected.clone()).needed_by(rules.clone()))
            .layer(AuthorizeLayer::new(protected, rules.clone()))
            .layer(FilterToolsLayer::new(rules))
    })
    .await;
    let (_, tools) = listed_tools(served.ask("mcp:read", &list_tools()).await).await;
    assert_eq!(tools, ["notes", "whoami"]);
    assert_write_steps_up_to_mcp_write(&served).await;
}

#[tokio::test]
async fn scope_rules_without_an_operation_layer_fail_closed() {
    // AuthorizeLayer with rules that need the operation, but nothing read it: 500,
    // never a decision on the default scopes.
    let served = Served::start_with(true, |resource, key| {
        let protected = ProtectedResource::new(resource).authorization_server(ISSUER);
        verified(&protected, key).layer(AuthorizeLayer::new(protected, notes::scope_rules()))
    })
    .await;
    let response = served
        .ask("mcp:read", &call("write", json!({"text": "x"})))
        .await;
    assert_eq!(response.status(), 500);
    assert!(served.bodies_seen().is_empty());
    // A caller holding every scope the rules name needs no operation: allowed.
    let response = served
        .ask("mcp:read mcp:write", &call("write", json!({"text": "x"})))
        .await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn challenges_can_repeat_the_granted_scopes_for_clients_that_replace_them() {
    let served = Served::start(true, |b| b.challenge_granted_scopes(true)).await;
    let (status, challenge, body) = reply(
        served
            .ask("mcp:read", &call("write", json!({"text": "x"})))
            .await,
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        challenge.ends_with("scope=\"mcp:write mcp:read\""),
        "{challenge}"
    );
    assert_eq!(body["scope"], "mcp:write mcp:read");
    // Only scopes of scopes_supported are repeated, never others the token has.
    let (_, challenge, _) = reply(
        served
            .ask("mcp:read other:thing", &call("write", json!({"text": "x"})))
            .await,
    )
    .await;
    assert!(!challenge.contains("other:thing"), "{challenge}");
}

#[tokio::test]
async fn a_grpc_labelled_call_cannot_skip_a_callback_that_needs_the_operation() {
    // A callback that refuses `delete` by name would see no name in a body labelled
    // gRPC; such a request is refused before the callback, and never forwarded.
    let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = asked.clone();
    let served = Served::start(true, move |b| {
        b.authorize(move |_: &Principal, op: &McpOperation, _: &Parts| {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let deleting = op.name() == Some("write");
            async move {
                if deleting {
                    Decision::deny("nobody writes")
                } else {
                    Decision::Allow
                }
            }
        })
    })
    .await;
    let write = serde_json::to_vec(&call("write", json!({"text": "x"}))).expect("json");
    let answer = reqwest::Client::new()
        .post(&served.resource)
        .bearer_auth(served.token("mcp:read mcp:write"))
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/grpc")
        .body(write)
        .send()
        .await
        .expect("send");
    assert_eq!(answer.headers()["grpc-status"], "3", "{answer:?}");
    assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert!(served.bodies_seen().is_empty());
}

#[tokio::test]
async fn a_read_body_is_handed_on_with_its_trailers() {
    // The layer reads the body to learn the operation; what it hands on is the same
    // bytes and then the same trailers, as the client sent them.
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    use tower::{Layer, ServiceExt};

    let message = serde_json::to_vec(&call("whoami", json!({}))).expect("json");
    let mut trailers = http::HeaderMap::new();
    trailers.insert("x-checksum", http::HeaderValue::from_static("abc123"));
    let (first, rest) = message.split_at(10);
    let frames: Vec<Result<Frame<bytes::Bytes>, std::convert::Infallible>> = vec![
        Ok(Frame::data(bytes::Bytes::copy_from_slice(first))),
        Ok(Frame::data(bytes::Bytes::copy_from_slice(rest))),
        Ok(Frame::trailers(trailers.clone())),
    ];
    let request = http::Request::post("http://127.0.0.1/mcp")
        .header("content-type", "application/json")
        .body(StreamBody::new(tokio_stream::iter(frames)))
        .expect("request");

    let protected = ProtectedResource::new("http://127.0.0.1/mcp");
    let seen = Arc::new(Mutex::new(None));
    let record = seen.clone();
    let inner = tower::service_fn(move |request: http::Request<mcp_gatekeeper::McpBody<_>>| {
        let record = record.clone();
        async move {
            let operation = request.extensions().get::<McpOperation>().cloned();
            let collected = request.into_body().collect().await?;
            let got = (
                operation,
                collected.trailers().cloned(),
                collected.to_bytes(),
            );
            *record.lock().expect("lock") = Some(got);
            Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<
                bytes::Bytes,
            >::new()))
        }
    });
    let response = OperationLayer::new(protected)
        .layer(inner)
        .oneshot(request)
        .await
        .expect("infallible");
    assert_eq!(response.status(), 200);
    let (operation, got_trailers, body) = seen.lock().expect("lock").take().expect("called");
    let operation = operation.expect("an operation");
    assert_eq!(operation.source(), OperationSource::Body);
    assert_eq!(
        (operation.method(), operation.name()),
        (Some("tools/call"), Some("whoami"))
    );
    assert_eq!(body, message, "the same bytes");
    assert_eq!(got_trailers, Some(trailers), "the same trailers");
}

fn mcp_hierarchy() -> mcp_gatekeeper::ScopeHierarchy {
    mcp_gatekeeper::ScopeHierarchy::new()
        .implies("mcp:admin", ["mcp:write"])
        .implies("mcp:write", ["mcp:read"])
}

#[tokio::test]
async fn a_broader_scope_passes_the_rules_of_the_narrower_ones_and_challenges_stay_minimal() {
    // R-MCP-4: mcp:admin ⊇ mcp:write ⊇ mcp:read, through the real rmcp server.
    let served = Served::start(true, |b| {
        b.scope_hierarchy(mcp_hierarchy())
            .required_scopes(["mcp:read"])
            .filter_tools(true)
    })
    .await;
    for scope in ["mcp:admin", "mcp:write"] {
        let (status, _, body) = reply(
            served
                .ask(scope, &call("write", json!({"text": "hi"})))
                .await,
        )
        .await;
        assert_eq!(status, 200, "{scope}: {body}");
        let (status, _, body) = reply(served.ask(scope, &call("whoami", json!({}))).await).await;
        assert_eq!(status, 200, "{scope}: {body}");
        let (_, tools) = listed_tools(served.ask(scope, &list_tools()).await).await;
        assert_eq!(tools, ["notes", "whoami", "write"], "{scope}");
    }
    // Narrower never implies broader, and the challenge names what the call needs.
    let (status, challenge, _) = reply(
        served
            .ask("mcp:read", &call("write", json!({"text": "hi"})))
            .await,
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        challenge.ends_with("scope=\"mcp:read mcp:write\""),
        "{challenge}"
    );
    assert!(!challenge.contains("mcp:admin"), "{challenge}");
    let (_, tools) = listed_tools(served.ask("mcp:read", &list_tools()).await).await;
    assert_eq!(tools, ["notes", "whoami"]);

    // Without the hierarchy, mcp:admin is just another scope.
    let plain = Served::start(true, |b| b).await;
    let (status, _, _) = reply(plain.ask("mcp:admin", &call("whoami", json!({}))).await).await;
    assert_eq!(status, 403);

    // A hierarchy the rules carry themselves counts when the builder sets none.
    let own = Served::start(true, |b| {
        b.mcp_scopes(
            notes::scope_rules()
                .with_hierarchy(mcp_hierarchy())
                .expect("no cycle"),
        )
    })
    .await;
    let (status, _, body) = reply(
        own.ask("mcp:admin", &call("write", json!({"text": "hi"})))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn prefix_wildcards_and_cycles_in_the_scope_hierarchy() {
    // R-MCP-4: `mcp:*` stands for every mcp: scope only when wildcards are on; a
    // cycle is a build error.
    let served = Served::start(true, |b| {
        b.scope_hierarchy(mcp_gatekeeper::ScopeHierarchy::new().prefix_wildcards(true))
    })
    .await;
    let (status, _, body) = reply(
        served
            .ask("mcp:*", &call("write", json!({"text": "hi"})))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, _) = reply(served.ask("*", &call("whoami", json!({}))).await).await;
    assert_eq!(status, 403, "a bare * is no wildcard");
    let off = Served::start(true, |b| b.scope_hierarchy(mcp_hierarchy())).await;
    let (status, _, _) = reply(off.ask("mcp:*", &call("whoami", json!({}))).await).await;
    assert_eq!(status, 403, "wildcards are off by default");

    let error = ResourceServer::builder("https://mcp.example.com/mcp")
        .issuer(Issuer::new(ISSUER))
        .scope_hierarchy(mcp_hierarchy().implies("mcp:read", ["mcp:admin"]))
        .build()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("cycle through"), "{error}");
}

#[tokio::test]
async fn the_401_can_name_every_supported_scope_for_clients_that_register_with_it() {
    // Issue 14, item 9: a client that registers with exactly the first 401's scopes
    // can only step up if that 401 named them all.
    let served = Served::start(true, |b| b.challenge_all_scopes(true)).await;
    let (status, challenge, _) =
        reply(served.ask_without_token(&call("whoami", json!({}))).await).await;
    assert_eq!(status, 401);
    assert!(
        challenge.ends_with("scope=\"mcp:read mcp:write\""),
        "{challenge}"
    );
    // A step-up challenge still names what the call needs.
    assert_write_steps_up_to_mcp_write(&served).await;
}

/// A `write` call with only `mcp:read` is refused with the step-up to `mcp:write`.
async fn assert_write_steps_up_to_mcp_write(served: &Served) {
    let (status, challenge, _) = reply(
        served
            .ask("mcp:read", &call("write", json!({"text": "x"})))
            .await,
    )
    .await;
    assert_eq!(status, 403);
    assert!(challenge.ends_with("scope=\"mcp:write\""), "{challenge}");
}

/// The example's rules, and `write` with a `visibility` other than `"public"` also
/// needing `notes:private`.
fn rules_with_private_notes() -> mcp_gatekeeper::McpScopes {
    notes::scope_rules().tool_argument(
        "write",
        Argument::new("visibility")
            .unless(["public"])
            .header("Visibility"),
        ["notes:private"],
    )
}

#[tokio::test]
async fn a_call_whose_rules_need_two_missing_scopes_gets_one_challenge_naming_both() {
    // Issue 14, item 2 (SEP-2350): the tool's rule wants mcp:write, the argument rule
    // notes:private; a token with neither steps up once, for both.
    let served = Served::start(true, |b| b.mcp_scopes(rules_with_private_notes())).await;
    let private = call("write", json!({"text": "x", "visibility": "private"}));
    assert_step_up(
        &served,
        "mcp:read",
        &private,
        "scope=\"mcp:write notes:private\"",
    )
    .await;
    // Scopes depend on the arguments: a public note needs only mcp:write.
    let public = call("write", json!({"text": "x", "visibility": "public"}));
    let (status, _, body) = reply(served.ask("mcp:read mcp:write", &public).await).await;
    assert_eq!(status, 200, "{body}");
    assert_step_up(
        &served,
        "mcp:read mcp:write",
        &private,
        "scope=\"mcp:write notes:private\"",
    )
    .await;
    // Fail closed: a value spelled otherwise, or none, needs the scope too.
    for arguments in [
        json!({"text": "x", "visibility": "Public"}),
        json!({"text": "x"}),
    ] {
        let (status, _, _) = reply(
            served
                .ask("mcp:read mcp:write", &call("write", arguments))
                .await,
        )
        .await;
        assert_eq!(status, 403);
    }
    let (status, _, body) = reply(
        served
            .ask("mcp:read mcp:write notes:private", &private)
            .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["structuredContent"]["visibility"], "private");
    // A second, differently cased member a lenient server would read is refused.
    let sneaky = call(
        "write",
        json!({"text": "x", "visibility": "public", "Visibility": "private"}),
    );
    let (status, _, body) = reply(served.ask("mcp:read mcp:write", &sneaky).await).await;
    assert_eq!(status, 400, "{body}");
    // The scope is supported, and tools/list still lists write for mcp:write alone.
    let doc: Value = reqwest::get(served.metadata_url())
        .await
        .expect("metadata")
        .json()
        .await
        .expect("json");
    assert_eq!(
        doc["scopes_supported"],
        json!(["mcp:read", "mcp:write", "notes:private"])
    );
}

#[tokio::test]
async fn required_scopes_and_a_callbacks_step_up_come_in_one_challenge() {
    // Issue 14, item 2: the required scopes, the operation's and a callback's step-up
    // together, so the client never steps up twice for one call.
    let served = Served::start(true, |b| {
        b.required_scopes(["mcp:read"])
            .scopes_supported(["mcp:read", "mcp:write", "audit"])
            .authorize(|_: &Principal, op: &McpOperation, _: &Parts| {
                let write = op.is("tools/call") && op.name() == Some("write");
                async move {
                    match write {
                        true => Decision::insufficient_scope(["audit"]),
                        false => Decision::Allow,
                    }
                }
            })
    })
    .await;
    assert_step_up(
        &served,
        "other",
        &call("write", json!({"text": "x"})),
        "scope=\"mcp:read mcp:write audit\"",
    )
    .await;
    // A caller holding the scopes meets the callback's step-up alone; it still names
    // them, so a client that takes the challenged scopes for its next token keeps
    // what the call needs.
    let write = call("write", json!({"text": "x"}));
    let ends = "scope=\"mcp:read mcp:write audit\"";
    assert_step_up(&served, "mcp:read mcp:write", &write, ends).await;
}

#[tokio::test]
async fn mcp_param_headers_of_a_rules_argument_must_match_the_body() {
    // R-MCP-6: Mcp-Param-Visibility mirrors the argument a rule reads; a header
    // saying "public" over a private body is the HeaderMismatch 400, whenever the
    // body is read (here: the token lacks notes:private, so the rules need it).
    let served = Served::start(true, |b| b.mcp_scopes(rules_with_private_notes())).await;
    let send = |visibility: &'static str, header: &'static str| {
        served
            .post("mcp:read mcp:write")
            .header("mcp-method", "tools/call")
            .header("mcp-name", "write")
            .header("mcp-param-visibility", header)
            .json(&call(
                "write",
                json!({"text": "x", "visibility": visibility}),
            ))
            .send()
    };
    let (status, _, body) = reply(send("private", "public").await.expect("send")).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], -32020, "{body}");
    let (status, challenge, _) = reply(send("private", "private").await.expect("send")).await;
    assert_eq!(status, 403);
    assert!(
        challenge.ends_with("scope=\"mcp:write notes:private\""),
        "{challenge}"
    );
    let (status, _, body) = reply(send("public", "public").await.expect("send")).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_2026_07_28_request_without_its_headers_is_refused_and_older_ones_keep_todays_rules() {
    // R-MCP-6 (SEP-2243): Mcp-Method on every 2026-07-28 request, Mcp-Name on the
    // ones naming a tool, and the version header the body's; refused before the
    // server sees them. A 2025-11-25 request without the headers still works.
    let served = Served::start(true, |b| b).await;
    let modern = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
        "name": "whoami", "arguments": {},
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
        },
    }});
    let send = |headers: &[(&'static str, &'static str)]| {
        let mut request = served.post("mcp:read").json(&modern);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send()
    };
    let version = ("mcp-protocol-version", "2026-07-28");
    for (headers, cause) in [
        (&[version][..], "Mcp-Method header is missing"),
        (
            &[version, ("mcp-method", "tools/call")],
            "Mcp-Name header is missing",
        ),
        (
            &[
                ("mcp-protocol-version", "2025-11-25"),
                ("mcp-method", "tools/call"),
                ("mcp-name", "whoami"),
            ],
            "MCP-Protocol-Version header value '2025-11-25' does not match body value '2026-07-28'",
        ),
        (
            &[("mcp-method", "tools/call"), ("mcp-name", "whoami")],
            "MCP-Protocol-Version header is missing",
        ),
    ] {
        let (status, challenge, body) = reply(send(headers).await.expect("send")).await;
        assert_eq!(status, 400, "{headers:?}");
        assert_eq!(challenge, "");
        assert_eq!(body["id"], 3);
        assert_eq!(body["error"]["code"], -32020);
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(cause), "{message}");
    }
    assert!(served.bodies_seen().is_empty(), "refused before the server");
    let all = [
        version,
        ("mcp-method", "tools/call"),
        ("mcp-name", "whoami"),
    ];
    let (status, _, body) = reply(send(&all).await.expect("send")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["structuredContent"]["subject"], "user-1");
    let legacy = call("whoami", json!({}));
    let (status, _, body) = reply(
        served
            .post("mcp:read")
            .header("mcp-protocol-version", "2025-11-25")
            .json(&legacy)
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// `message` with a token of `scope` is refused `403` with a challenge ending `ends`.
async fn assert_step_up(served: &Served, scope: &str, message: &Value, ends: &str) {
    let (status, challenge, _) = reply(served.ask(scope, message).await).await;
    assert_eq!(status, 403);
    assert!(challenge.ends_with(ends), "{challenge}");
}

#[tokio::test]
async fn public_operations_pass_without_a_token_and_nothing_else_does() {
    // Issue 14, item 7 (opt-in): tools/list and whoami are public; without a token
    // they pass as an anonymous principal, and every other operation still gets the
    // 401 challenge; a bad token is still 401 and a low-scope token still 403.
    let served = Served::start(true, |b| {
        b.mcp_scopes(
            notes::scope_rules()
                .public(["tools/list"])
                .public_tool("whoami"),
        )
        .filter_tools(true)
    })
    .await;
    let (status, _, body) = reply(served.ask_without_token(&list_tools()).await).await;
    assert_eq!(status, 200, "{body}");
    let names: Vec<&str> = body["result"]["tools"]
        .as_array()
        .map(|t| t.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        names,
        ["whoami"],
        "an anonymous caller is listed the public tools"
    );
    let (status, _, body) = reply(served.ask_without_token(&call("whoami", json!({}))).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["structuredContent"]["kind"], "Anonymous");
    assert_eq!(body["result"]["structuredContent"]["subject"], Value::Null);
    for private in [
        call("notes", json!({})),
        call("write", json!({"text": "x"})),
    ] {
        let (status, challenge, _) = reply(served.ask_without_token(&private).await).await;
        assert_eq!(status, 401);
        assert!(!challenge.contains("error="), "{challenge}");
        assert!(challenge.contains("scope=\"mcp:read\""), "{challenge}");
    }
    // Only the body counts: a header naming a public method over another body.
    let (status, _, _) = reply(
        reqwest::Client::new()
            .post(&served.resource)
            .header("mcp-method", "tools/list")
            .json(&call("notes", json!({})))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(status, 400);
    // Only a POST: a GET, DELETE or PUT whose body names a public operation is 401.
    for method in [
        reqwest::Method::GET,
        reqwest::Method::DELETE,
        reqwest::Method::PUT,
    ] {
        let answer = reqwest::Client::new()
            .request(method.clone(), &served.resource)
            .header("accept", "application/json, text/event-stream")
            .json(&list_tools())
            .send()
            .await
            .expect("send");
        assert_eq!(answer.status(), 401, "{method}");
    }
    // No operation (the SSE GET) is not public.
    let get = reqwest::Client::new()
        .get(&served.resource)
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("send");
    assert_eq!(get.status(), 401);
    // A token that fails verification is 401 even for a public operation.
    let (status, challenge, _) = reply(
        reqwest::Client::new()
            .post(&served.resource)
            .bearer_auth("not-a-token")
            .json(&list_tools())
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(status, 401);
    assert!(challenge.contains("invalid_token"), "{challenge}");
    // With a token: public operations need no scope, the others what they always did.
    let (status, _, body) = reply(served.ask("other", &call("whoami", json!({}))).await).await;
    assert_eq!(status, 200, "{body}");
    assert_step_up(
        &served,
        "mcp:read",
        &call("write", json!({"text": "x"})),
        "scope=\"mcp:write\"",
    )
    .await;
}

#[tokio::test]
async fn without_public_operations_a_request_without_a_token_is_401_as_before() {
    let served = Served::start(true, |b| b.filter_tools(true)).await;
    let (status, challenge, _) = reply(served.ask_without_token(&list_tools()).await).await;
    assert_eq!(status, 401);
    assert!(challenge.contains("scope=\"mcp:read\""), "{challenge}");
}

#[tokio::test]
async fn a_caller_without_a_token_is_listed_only_public_tools_even_when_others_need_no_scope() {
    let rules = mcp_gatekeeper::McpScopes::new(Vec::<String>::new())
        .public(["tools/list"])
        .public_tool("whoami");
    let served = Served::start(true, |b| b.mcp_scopes(rules).filter_tools(true)).await;
    let (status, _, body) = reply(served.ask_without_token(&list_tools()).await).await;
    assert_eq!(status, 200, "{body}");
    let names: Vec<&str> = body["result"]["tools"]
        .as_array()
        .map(|t| t.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["whoami"]);
    let (status, _, _) = reply(served.ask_without_token(&call("notes", json!({}))).await).await;
    assert_eq!(status, 401);
    // With a token (any scope), notes needs none.
    let (status, _, body) = reply(served.ask("other", &call("notes", json!({}))).await).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_caller_without_a_token_gets_its_body_read_only_up_to_64_kib() {
    // Issue 14, item 7: a public operation lets callers without a token make the server
    // read their body; ANONYMOUS_BODY_LIMIT bounds what they can make it buffer.
    let served = Served::start(true, |b| {
        b.mcp_scopes(notes::scope_rules().public(["tools/list"]))
    })
    .await;
    let padding = "x".repeat(mcp_gatekeeper::ANONYMOUS_BODY_LIMIT);
    let mut big = list_tools();
    big["params"]["_meta"] = json!({ "padding": padding });
    let (status, _, body) = reply(served.ask_without_token(&big).await).await;
    assert_eq!(status, 400, "{body}");
    let description = body["error_description"].as_str().unwrap_or_default();
    assert!(description.contains("65536"), "{description}");
    // The same body with a token is under the usual 1 MiB limit.
    let (status, _, body) = reply(served.ask("mcp:read", &big).await).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = reply(served.ask_without_token(&list_tools()).await).await;
    assert_eq!(status, 200, "{body}");
}
