//! Gateway-grade reading (R-GW-1, R-GW-2, R-GW-4): the whole stack in front of a
//! server that reads JSON-RPC the way Go's `encoding/json` does, case-insensitively
//! and last match wins (`tests/lenient/upstream.py`, a real HTTP server on loopback
//! behind a forwarding service). A caller holding only `mcp:read` tries every way
//! the issue found to run `write` or read a secret resource through it; the server's
//! own record of what it ran shows none of them got through.

mod support;

use std::process::Stdio;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use http_body_util::BodyExt;
use mcp_gatekeeper::keys::LocalKeys;
use mcp_gatekeeper::{Issuer, McpScopes, ResourceServer};
use serde_json::{Value, json};
use support::SigningKey;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const ISSUER: &str = "https://idp.example.com";
const RESOURCE: &str = "https://gateway.example.com/mcp";

/// The lenient server, running until dropped.
struct Upstream {
    url: String,
    _child: Child,
}

impl Upstream {
    async fn start() -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/lenient/upstream.py");
        let mut child = Command::new("python3")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs tests/lenient/upstream.py");
        let stdout = child.stdout.take().expect("piped");
        let line = tokio::time::timeout(
            Duration::from_secs(20),
            BufReader::new(stdout).lines().next_line(),
        )
        .await
        .expect("the upstream prints its port within 20 s")
        .expect("read")
        .expect("a line");
        let port = line.strip_prefix("port: ").expect("port: N");
        Self {
            url: format!("http://127.0.0.1:{port}"),
            _child: child,
        }
    }

    /// What the server ran: tools called, resource paths read.
    async fn ran(&self) -> (Vec<String>, Vec<String>) {
        let ran: Value = reqwest::get(format!("{}/ran", self.url))
            .await
            .expect("upstream")
            .json()
            .await
            .expect("json");
        let list = |key: &str| -> Vec<String> {
            ran[key]
                .as_array()
                .expect("list")
                .iter()
                .map(|v| v.as_str().unwrap_or("<not a string>").to_owned())
                .collect()
        };
        (list("tools"), list("resources"))
    }

    /// Sends `body` straight to the server, past the gatekeeper.
    async fn post_directly(&self, body: &str) -> Value {
        reqwest::Client::new()
            .post(format!("{}/mcp", self.url))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("upstream")
            .json()
            .await
            .expect("json")
    }
}

/// The forwarding service: the request as it came through the stack, sent on to the
/// upstream without the caller's token; the answer streamed back as it came.
async fn forward(State(upstream): State<String>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    let mut outbound = reqwest::Client::new()
        .request(parts.method, format!("{upstream}{}", parts.uri.path()))
        .body(bytes);
    for (name, value) in &parts.headers {
        if !matches!(name.as_str(), "host" | "authorization" | "content-length") {
            outbound = outbound.header(name, value);
        }
    }
    let answer = outbound.send().await.expect("upstream answers");
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if name != "transfer-encoding" {
            response = response.header(name, value);
        }
    }
    response
        .body(Body::from_stream(answer.bytes_stream()))
        .expect("response")
}

struct Gateway {
    app: Router,
    key: SigningKey,
    upstream: Upstream,
}

impl Gateway {
    async fn start() -> Self {
        let upstream = Upstream::start().await;
        let key = SigningKey::ec("lenient");
        let jwks = support::signing::jwks(&[&key]).to_string();
        let issuer = Issuer::new(ISSUER)
            .local_keys(LocalKeys::from_jwks(jwks.as_bytes()).expect("keys"))
            .discovery(false);
        let rules = McpScopes::new(["mcp:read"])
            .tool("write*", ["mcp:write"])
            .resource("file:///secret/*", ["files:secret"]);
        let server = ResourceServer::builder(RESOURCE)
            .issuer(issuer)
            .mcp_scopes(rules)
            .filter_tools(true)
            .build()
            .expect("valid configuration");
        let app = Router::new()
            .fallback(forward)
            .with_state(upstream.url.clone())
            .layer(server.layer());
        Self { app, key, upstream }
    }

    fn token(&self, scope: &str) -> String {
        let mut claims = support::claims(ISSUER, RESOURCE);
        claims["scope"] = json!(scope);
        self.key.sign(&claims)
    }

    fn request(&self, method: &str, scope: &str) -> http::request::Builder {
        http::Request::builder()
            .method(method)
            .uri("/mcp")
            .header("authorization", format!("Bearer {}", self.token(scope)))
            .header("content-type", "application/json")
    }

    async fn post(&self, scope: &str, body: &str) -> support::Answer {
        let request = self.request("POST", scope);
        support::send(
            &self.app,
            request.body(Body::from(body.to_owned())).expect("request"),
        )
        .await
    }
}

fn tool_names(answer: &Value) -> Vec<String> {
    let mut names: Vec<String> = answer["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("a tools list: {answer}"))
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

/// The issue's table: with `mcp:read`, each of these ran `write` on a Go server.
const SMUGGLED: &[(&str, &str)] = &[
    (
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","Name":"write"}}"#,
        "Name",
    ),
    (
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","Method":"tools/call","params":{"name":"write"}}"#,
        "Method",
    ),
    (
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","NAME":"write"}}"#,
        "NAME",
    ),
    (
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{},"paramſ":{"name":"write"},"Method":"tools/call"}"#,
        "paramſ",
    ),
    (
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami"},"paramſ":{"name":"write"}}"#,
        "paramſ",
    ),
];

#[tokio::test]
async fn the_lenient_server_would_run_write_for_each_smuggled_body_sent_to_it_directly() {
    // Without this, the test below could pass against a server that is not lenient.
    let gateway = Gateway::start().await;
    for (body, _) in SMUGGLED {
        gateway.upstream.post_directly(body).await;
    }
    let (tools, _) = gateway.upstream.ran().await;
    assert_eq!(tools, vec!["write"; SMUGGLED.len()]);
}

#[tokio::test]
async fn case_folded_members_are_400_naming_the_member_and_the_server_never_runs_write() {
    let gateway = Gateway::start().await;
    for (body, member) in SMUGGLED {
        let answer = gateway.post("mcp:read", body).await;
        assert_eq!(answer.status, 400, "{body}: {answer:?}");
        assert_eq!(answer.body["error"], "invalid_request", "{body}");
        assert!(
            answer.description().contains(&format!("{member:?}")),
            "{body}: {}",
            answer.description()
        );
        assert!(answer.challenge().contains("error=\"invalid_request\""));
    }
    // The same server runs what the caller may run.
    let whoami = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami"}}"#;
    assert_eq!(gateway.post("mcp:read", whoami).await.status, 200);
    let (tools, _) = gateway.upstream.ran().await;
    assert_eq!(tools, ["whoami"], "only whoami ever ran");
}

#[tokio::test]
async fn a_body_sent_with_put_or_patch_is_judged_like_a_post() {
    let gateway = Gateway::start().await;
    let write = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"write"}}"#;
    for method in ["PUT", "PATCH"] {
        let request = gateway.request(method, "mcp:read");
        let answer = support::send(
            &gateway.app,
            request.body(Body::from(write)).expect("request"),
        )
        .await;
        assert_eq!(answer.status, 403, "{method}: {answer:?}");
        assert!(
            answer.challenge().ends_with("scope=\"mcp:write\""),
            "{method}"
        );
    }
    // An encoded body cannot be read here, though the server would decode it.
    let request = gateway
        .request("POST", "mcp:read")
        .header("content-encoding", "gzip");
    let answer = support::send(
        &gateway.app,
        request.body(Body::from(write)).expect("request"),
    )
    .await;
    assert_eq!(answer.status, 400, "{answer:?}");
    assert!(
        answer.description().contains("encoded (gzip)"),
        "{}",
        answer.description()
    );
    let (tools, _) = gateway.upstream.ran().await;
    assert!(tools.is_empty(), "{tools:?}");
}

#[tokio::test]
async fn a_secret_resource_needs_its_scope_under_every_reading_the_server_takes() {
    let gateway = Gateway::start().await;
    for uri in [
        "file:///public//../secret/k",
        "FILE:///secret/k",
        "file://localhost/secret/k",
        "file:/secret/k",
        "file:////secret/k",
        "file:///public/%2e%2e/secret/k",
        "file:///public\\..\\secret\\k",
        "file:///public/x?/../../secret/k",
        "file://evil.example/secret/k",
    ] {
        let body =
            json!({"jsonrpc": "2.0", "id": 1, "method": "resources/read", "params": {"uri": uri}});
        let answer = gateway.post("mcp:read", &body.to_string()).await;
        assert_eq!(answer.status, 403, "{uri}: {answer:?}");
        assert!(
            answer
                .challenge()
                .ends_with("scope=\"mcp:read files:secret\""),
            "{uri}: {}",
            answer.challenge()
        );
        // With the scope, the server reads the secret file: the URI did lead there.
        let answer = gateway
            .post("mcp:read files:secret", &body.to_string())
            .await;
        assert_eq!(answer.status, 200, "{uri}");
    }
    // A URI a server would trim is refused outright: no reading can follow every
    // way servers trim.
    for trimmed in [" file:///secret/k", "%20file:///secret/k"] {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "resources/read", "params": {"uri": trimmed}});
        let answer = gateway
            .post("mcp:read files:secret", &body.to_string())
            .await;
        assert_eq!(answer.status, 400, "{trimmed:?}");
        assert!(
            answer.description().contains("whitespace"),
            "{}",
            answer.description()
        );
    }
    let (_, read) = gateway.upstream.ran().await;
    assert_eq!(
        read,
        vec!["/secret/k"; 9],
        "only callers with files:secret read it"
    );
}

#[tokio::test]
async fn tools_list_is_filtered_whatever_the_id_form_or_answer_shape() {
    let gateway = Gateway::start().await;
    for id in ["1", "1.0", "\"1\"", "-0", "1e0"] {
        let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list"}}"#);
        for shape in ["json", "sse"] {
            let request = gateway
                .request("POST", "mcp:read")
                .header("x-answer", shape);
            let answer = support::send(
                &gateway.app,
                request.body(Body::from(body.clone())).expect("request"),
            )
            .await;
            assert_eq!(answer.status, 200, "{id} {shape}");
            let message = match &answer.body {
                Value::String(sse) => {
                    let data = sse
                        .lines()
                        .find_map(|l| l.strip_prefix("data: "))
                        .expect("data");
                    serde_json::from_str(data).expect("json event")
                }
                json => json.clone(),
            };
            assert_eq!(tool_names(&message), ["notes", "whoami"], "{id} {shape}");
        }
    }
    // A resumed stream (Last-Event-ID) replays the answer: filtered too.
    let request = gateway
        .request("GET", "mcp:read")
        .header("accept", "text/event-stream")
        .header("last-event-id", "1");
    let answer = support::send(&gateway.app, request.body(Body::empty()).expect("request")).await;
    let sse = answer.body.as_str().expect("an SSE stream");
    let data = sse
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .expect("data");
    let message: Value = serde_json::from_str(data).expect("json");
    assert_eq!(tool_names(&message), ["notes", "whoami"]);
    // With both scopes nothing is hidden.
    let body = r#"{"jsonrpc":"2.0","id":1.0,"method":"tools/list"}"#;
    let answer = gateway.post("mcp:read mcp:write", body).await;
    assert_eq!(tool_names(&answer.body), ["notes", "whoami", "write"]);
}

#[tokio::test]
async fn a_compressed_tools_list_answer_is_withheld_not_passed_on_unfiltered() {
    let gateway = Gateway::start().await;
    let body = r#"{"jsonrpc":"2.0","id":9,"method":"tools/list"}"#;
    let request = gateway
        .request("POST", "mcp:read")
        .header("x-answer", "gzip")
        .header("accept-encoding", "gzip");
    let answer = support::send(
        &gateway.app,
        request.body(Body::from(body)).expect("request"),
    )
    .await;
    assert_eq!(answer.status, 502, "{answer:?}");
    assert_eq!(answer.body["id"], 9);
    assert_eq!(answer.body["error"]["code"], -32603);
    let message = answer.body["error"]["message"].as_str().expect("message");
    assert!(message.contains("encoded (gzip)"), "{message}");
}

#[tokio::test]
async fn a_body_in_another_charset_is_refused_where_the_server_would_decode_it_differently() {
    // In UTF-7, `n+AGE-me` is `name`: read as UTF-8 this is a call of whoami with an
    // odd member, decoded by its charset it is a call of write.
    let gateway = Gateway::start().await;
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","n+AGE-me":"write"}}"#;
    let direct = reqwest::Client::new()
        .post(format!("{}/mcp", gateway.upstream.url))
        .header("content-type", "application/json; charset=utf-7")
        .body(body)
        .send()
        .await
        .expect("upstream");
    assert_eq!(direct.status(), 200);
    assert_eq!(
        gateway.upstream.ran().await.0,
        ["write"],
        "the server runs write"
    );
    for content_type in [
        "application/json; charset=utf-7",
        "application/json;charset=\"UTF-7\"",
        "application/json; charset=shift_jis",
    ] {
        let request = gateway
            .request("POST", "mcp:read")
            .header("content-type", content_type);
        let answer = support::send(
            &gateway.app,
            request.body(Body::from(body)).expect("request"),
        )
        .await;
        assert_eq!(answer.status, 400, "{content_type}: {answer:?}");
        assert!(
            answer.description().contains("charset"),
            "{}",
            answer.description()
        );
    }
    // UTF-8, said or not, is read as usual.
    let request = gateway
        .request("POST", "mcp:read")
        .header("content-type", "application/json; charset=UTF-8");
    let whoami = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami"}}"#;
    let answer = support::send(
        &gateway.app,
        request.body(Body::from(whoami)).expect("request"),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(gateway.upstream.ran().await.0, ["write", "whoami"]);
}
