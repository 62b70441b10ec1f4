//! Running the examples as processes, the way the README says, and talking MCP to
//! them over HTTP.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The example binary, built (or found up to date) with this test's features, so the
/// test never runs a stale build.
pub fn example_binary(name: &str) -> PathBuf {
    static BUILT: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());
    let mut built = BUILT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, path)) = built.iter().find(|(n, _)| n == name) {
        return path.clone();
    }
    let path = {
        let features: Vec<&str> = [
            (cfg!(feature = "aws-lc-rs"), "aws-lc-rs"),
            (cfg!(feature = "rust-crypto"), "rust-crypto"),
            (cfg!(feature = "rustls"), "rustls"),
            (cfg!(feature = "axum"), "axum"),
            (cfg!(feature = "metrics"), "metrics"),
            (cfg!(feature = "cedar"), "cedar"),
        ]
        .into_iter()
        .filter_map(|(on, feature)| on.then_some(feature))
        .collect();
        let status = std::process::Command::new(env!("CARGO"))
            .args([
                "build",
                "--quiet",
                "--example",
                name,
                "--no-default-features",
            ])
            .args(["--features", &features.join(",")])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build --example");
        assert!(status.success(), "the example does not build");
        let mut path = std::env::current_exe().expect("test binary path");
        path.pop(); // deps
        path.pop(); // debug
        path.push("examples");
        path.push(format!("{name}{}", std::env::consts::EXE_SUFFIX));
        path
    };
    built.push((name.to_owned(), path.clone()));
    path
}

pub struct Running {
    child: Child,
    pub lines: Vec<String>,
}

impl Running {
    /// The example's process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the example is running")
    }

    pub fn field(&self, name: &str) -> String {
        let prefix = format!("{name}:");
        self.lines
            .iter()
            .find_map(|l| l.trim().strip_prefix(&prefix).map(|v| v.trim().to_owned()))
            .unwrap_or_else(|| panic!("no {name:?} line in {:?}", self.lines))
    }
}

/// Starts the example with `args` and reads its banner up to `last` (a line prefix).
pub async fn start(example: &str, args: &[&str], last: &str) -> Running {
    let mut child = Command::new(example_binary(example))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the example (built by cargo test)");
    let stdout = child.stdout.take().expect("stdout");
    let mut reader = BufReader::new(stdout).lines();
    let mut lines = Vec::new();
    let read = async {
        while let Ok(Some(line)) = reader.next_line().await {
            let done = line.trim().starts_with(last);
            lines.push(line);
            if done {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("the example printed its banner");
    // Keep reading, so the example never writes into a closed pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = reader.next_line().await {} });
    Running { child, lines }
}

pub async fn mcp_call(resource: &str, token: Option<&str>, body: Value) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(resource)
        .header("accept", "application/json, text/event-stream")
        .json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("request to the example")
}

/// GETs `url` and reads its JSON.
pub async fn get_json(url: &str) -> Value {
    reqwest::get(url)
        .await
        .expect("GET")
        .json()
        .await
        .expect("a JSON answer")
}

/// A JSON-RPC `tools/call` of the examples' `whoami` tool.
pub fn whoami() -> Value {
    serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}})
}

/// One exchange a client report recorded (`[METHOD, PLACE, STATUS]`) as
/// `METHOD PLACE STATUS`, with the oidc-provider's interaction ids blanked.
pub fn exchange(e: &Value) -> String {
    let place = e[1].as_str().unwrap_or_default();
    let place = match place.rsplit_once('/') {
        Some((head, _)) if head == "IDP/interaction" || head == "IDP/auth" => {
            format!("{head}/ID")
        }
        _ => place.to_owned(),
    };
    format!("{} {place} {}", e[0].as_str().unwrap_or_default(), e[2])
}
