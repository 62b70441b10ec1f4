//! The parts the proxy's tests put together, all real and on 127.0.0.1: panva's
//! oidc-provider (`tests/oidc`), the MCP servers of the TypeScript and Python SDKs
//! (`tests/node/upstream_server.mjs`, `tests/python/upstream_server.py`), and the
//! `mcp-gatekeeper-proxy` binary itself, run with a configuration file as a user
//! would. Every process stops when its handle is dropped.
#![allow(dead_code)]

#[path = "../../../tests/support/idp.rs"]
pub mod idp;
#[path = "../../../tests/support/prometheus.rs"]
pub mod prometheus;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The repository's root.
pub fn root() -> PathBuf {
    let package = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    package.parent().map(PathBuf::from).unwrap_or(package)
}

/// Which SDK's server.
#[derive(Clone, Copy, Debug)]
pub enum Sdk {
    TypeScript,
    Python,
}

/// A running upstream MCP server.
pub struct Upstream {
    /// Its MCP endpoint.
    pub url: String,
    child: Child,
}

impl Upstream {
    /// Starts the `sdk`'s server with `args` (`--stateless`, `--json`, ...).
    pub async fn start(sdk: Sdk, args: &[&str]) -> Self {
        let mut command = match sdk {
            Sdk::TypeScript => {
                let mut c = Command::new("node");
                c.arg(root().join("tests/node/upstream_server.mjs"));
                c
            }
            Sdk::Python => {
                let mut c = Command::new(root().join("target/python-venv/bin/python"));
                c.arg(root().join("tests/python/upstream_server.py"));
                c
            }
        };
        command.args(args);
        let (child, line) = spawn(command, &format!("the {sdk:?} upstream server"), 60).await;
        let info: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the upstream printed {line:?} ({e})"));
        let url = info["url"]
            .as_str()
            .expect("url in the ready line")
            .to_owned();
        Self { url, child }
    }

    /// The requests it received, as it recorded them (method, path, headers).
    pub async fn seen(&self) -> Vec<Value> {
        let origin = &self.url[..self.url.find("/mcp").unwrap_or(self.url.len())];
        let answer: Value = reqwest::get(format!("{origin}/_test/seen"))
            .await
            .expect("seen")
            .json()
            .await
            .expect("seen JSON");
        match answer {
            Value::Array(items) => items,
            other => other["requests"].as_array().cloned().unwrap_or_default(),
        }
    }
}

/// Spawns `command` (stdin piped: the fixtures stop when it closes), waits up to
/// `patience` seconds for its first stdout line; the rest is drained.
async fn spawn(mut command: Command, what: &str, patience: u64) -> (Child, String) {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e} (scripts/test.sh installs it)"));
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(patience), lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("{what} printed nothing within {patience} s"))
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("{what} exited before it was ready"));
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, line)
}

/// A port free on 127.0.0.1 right now (the proxy's, so that its resource URIs can be
/// registered at the provider before it starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A running `mcp-gatekeeper-proxy`.
pub struct Proxy {
    /// `http://127.0.0.1:PORT`.
    pub origin: String,
    child: Child,
    /// What it printed on stdout after its address.
    pub banner: Vec<String>,
    _config: TempFile,
}

/// A file removed when dropped.
pub struct TempFile(pub PathBuf);

impl TempFile {
    pub fn new(content: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "mcp-gatekeeper-proxy-test-{}-{}.toml",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, content).expect("write the configuration");
        Self(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The proxy binary with `args`.
pub fn proxy_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mcp-gatekeeper-proxy"));
    command.args(args).env("RUST_LOG", "info");
    command
}

impl Proxy {
    /// Runs the proxy with `config` and the environment `env`; returns when it is ready.
    pub async fn start(config: &str, env: &[(&str, &str)]) -> Self {
        let file = TempFile::new(config);
        let path = file.0.to_string_lossy().into_owned();
        let mut command = proxy_command(&["--config", &path]);
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start mcp-gatekeeper-proxy");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let mut banner = Vec::new();
        let ready = async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line == "ready" {
                    return true;
                }
                banner.push(line);
            }
            false
        };
        let ok = tokio::time::timeout(Duration::from_secs(30), ready).await;
        assert!(
            matches!(ok, Ok(true)),
            "the proxy did not get ready: {banner:?}"
        );
        let address = banner
            .first()
            .and_then(|l| l.strip_prefix("mcp-gatekeeper-proxy listening on "))
            .expect("the listening line")
            .to_owned();
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            origin: format!("http://{address}"),
            child,
            banner,
            _config: file,
        }
    }

    /// Sends SIGTERM.
    pub async fn terminate(&self) {
        let pid = self.child.id().expect("running").to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .expect("kill");
        assert!(status.success());
    }

    /// Waits (up to `limit`) for it to exit; its exit code.
    pub async fn exited(&mut self, limit: Duration) -> Option<i32> {
        tokio::time::timeout(limit, self.child.wait())
            .await
            .ok()
            .and_then(Result::ok)
            .and_then(|status| status.code())
    }
}

/// A token of oidc-provider's `cc-client` for `resource` with `scope`.
pub async fn token(provider: &idp::Running, scope: &str, resource: &str) -> String {
    let answer = idp::client_credentials(
        &provider.field("token_endpoint"),
        ("cc-client", "cc-secret"),
        scope,
        Some(resource),
    )
    .await;
    answer["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

/// The claims of a JWT, not verified.
pub fn claims(jwt: &str) -> Value {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1).unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap_or_default();
    serde_json::from_slice(&bytes).unwrap_or_default()
}

/// An answer: status, headers and the JSON-RPC messages of its body (JSON or SSE).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub messages: Vec<Value>,
}

impl Answer {
    /// The message with `id`.
    pub fn result(&self, id: u64) -> &Value {
        self.messages
            .iter()
            .find(|m| m["id"] == id)
            .unwrap_or_else(|| panic!("no answer to {id} in {self:?}"))
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

/// The JSON-RPC messages of a body, JSON or SSE.
pub fn messages(body: &str) -> Vec<Value> {
    if let Ok(value) = serde_json::from_str::<Value>(body) {
        return match value {
            Value::Array(items) => items,
            one => vec![one],
        };
    }
    body.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .filter_map(|data| serde_json::from_str(data.trim()).ok())
        .collect()
}

/// An MCP session over raw HTTP, as a client would hold it.
pub struct Mcp {
    pub http: reqwest::Client,
    pub url: String,
    pub token: Option<String>,
    pub session: Option<String>,
}

impl Mcp {
    pub fn new(url: &str, token: Option<&str>) -> Self {
        Self {
            http: reqwest::Client::new(),
            url: url.to_owned(),
            token: token.map(str::to_owned),
            session: None,
        }
    }

    /// The request of `method` with `body`, with the token and session.
    pub fn request(
        &self,
        method: reqwest::Method,
        body: Option<&Value>,
    ) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .request(method, &self.url)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25");
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(session) = &self.session {
            request = request.header("mcp-session-id", session);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        request
    }

    /// POSTs `body`; the whole answer.
    pub async fn post(&self, body: &Value) -> Answer {
        let response = self
            .request(reqwest::Method::POST, Some(body))
            .send()
            .await
            .expect("POST through the proxy");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        Answer {
            status,
            headers,
            messages: messages(&text),
        }
    }

    /// `initialize` and `notifications/initialized`; keeps the session id.
    pub async fn initialize(&mut self) -> Answer {
        let answer = self
            .post(&json!({
                "jsonrpc": "2.0", "id": 0, "method": "initialize",
                "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "proxy-test", "version": "1"}
                }
            }))
            .await;
        assert_eq!(answer.status, 200, "initialize: {answer:?}");
        let session = answer.header("mcp-session-id");
        self.session = (!session.is_empty()).then(|| session.to_owned());
        let notified = self
            .post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        assert_eq!(notified.status, 202, "initialized: {notified:?}");
        answer
    }

    /// `tools/call` of `name` with `arguments`, as request `id`.
    pub async fn call(&self, id: u64, name: &str, arguments: Value) -> Answer {
        self.post(&json!({
            "jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": name, "arguments": arguments}
        }))
        .await
    }

    /// `tools/list` as request `id`: the tool names.
    pub async fn tool_names(&self, id: u64) -> Vec<String> {
        let answer = self
            .post(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/list"}))
            .await;
        assert_eq!(answer.status, 200, "tools/list: {answer:?}");
        answer.result(id)["result"]["tools"]
            .as_array()
            .map(|tools| {
                tools
                    .iter()
                    .filter_map(|t| t["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The structured result of a tool call (or its text parsed as JSON).
pub fn structured(message: &Value) -> Value {
    let result = &message["result"];
    if !result["structuredContent"].is_null() {
        return result["structuredContent"].clone();
    }
    result["content"][0]["text"]
        .as_str()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(Value::Null)
}
