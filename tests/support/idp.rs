//! Real identity providers for the interop tests, started on 127.0.0.1 by the test:
//! panva's oidc-provider (`tests/oidc/provider.mjs`, Node.js) and Debian's glewlwyd
//! (`tests/glewlwyd/start.sh`). Each prints one JSON line when ready and stops when
//! its stdin closes, that is when the returned handle is dropped (oidc-provider,
//! which keeps nothing on disk, is also killed then). A provider that cannot start
//! fails the test with what to install; nothing is skipped.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running provider process and the JSON line it printed.
pub struct Running {
    pub info: Value,
    _child: Child,
}

impl Running {
    /// A string field of the ready line.
    pub fn field(&self, name: &str) -> String {
        self.info[name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name:?} in {}", self.info))
            .to_owned()
    }

    pub fn issuer(&self) -> String {
        self.field("issuer")
    }
}

/// `tests/{dir}` of the repository (these helpers also serve the tests of the
/// workspace's `proxy/` package, one directory down).
fn fixture(dir: &str) -> PathBuf {
    let package = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let here = package.join("tests").join(dir);
    match package.parent() {
        Some(root) if !here.exists() => root.join("tests").join(dir),
        _ => here,
    }
}

/// How a provider is stopped when its handle is dropped.
#[derive(Clone, Copy)]
enum Stop {
    /// Killed at once (it keeps nothing on disk).
    Kill,
    /// Its stdin closes and it stops by itself, cleaning up after itself (a kill
    /// would leave its files behind).
    CloseStdin,
}

/// Spawns `command`, waits up to `patience` for its ready line.
async fn start(
    mut command: Command,
    what: &str,
    fix: &str,
    patience: Duration,
    stop: Stop,
) -> Running {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(matches!(stop, Stop::Kill))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what} ({e}); {fix}"));
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(patience, lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("{what} printed nothing within {patience:?}; {fix}"))
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("{what} exited before it was ready; {fix}"));
    let info: Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("{what} printed {line:?}, not its JSON ready line ({e})"));
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Running {
        info,
        _child: child,
    }
}

/// panva's oidc-provider with `args` (see `tests/oidc/README.md`).
pub async fn oidc_provider(args: &[&str]) -> Running {
    let mut command = Command::new("node");
    command
        .arg("provider.mjs")
        .args(args)
        .current_dir(fixture("oidc"));
    start(
        command,
        "tests/oidc/provider.mjs",
        "it needs Node.js 20+ and `npm ci` in tests/oidc, which scripts/test.sh does",
        Duration::from_secs(30),
        Stop::Kill,
    )
    .await
}

/// Debian's glewlwyd allowing the RFC 8707 `resources` (see `tests/glewlwyd/README.md`).
pub async fn glewlwyd(resources: &[&str]) -> Running {
    let mut command = Command::new("bash");
    command
        .arg(fixture("glewlwyd").join("start.sh"))
        .env("GLEWLWYD_RESOURCES", resources.join(" "))
        .env("GLEWLWYD_MAX_SECONDS", "600");
    start(
        command,
        "tests/glewlwyd/start.sh",
        "it needs Debian's glewlwyd package, which scripts/test.sh installs with apt-get",
        Duration::from_secs(300),
        // start.sh stops glewlwyd and removes its temporary directory on stdin EOF
        // (within a second); GLEWLWYD_MAX_SECONDS stops it should that never come.
        Stop::CloseStdin,
    )
    .await
}

/// A client_credentials token from `token_endpoint` for `client`, as the provider's
/// JSON answer (which must be a success).
pub async fn client_credentials(
    token_endpoint: &str,
    (client, secret): (&str, &str),
    scope: &str,
    resource: Option<&str>,
) -> Value {
    let mut form = vec![("grant_type", "client_credentials"), ("scope", scope)];
    if let Some(resource) = resource {
        form.push(("resource", resource));
    }
    let body = serde_urlencoded::to_string(&form).expect("form");
    let response = reqwest::Client::new()
        .post(token_endpoint)
        .basic_auth(client, Some(secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("token request");
    let status = response.status();
    let answer: Value = response.json().await.expect("token answer");
    assert!(
        status.is_success(),
        "token request failed: {status} {answer}"
    );
    answer
}

/// Runs `tests/oidc/token.mjs` against `provider` (the authorization-code flow,
/// followed headlessly) and returns its JSON answer.
pub async fn oidc_token(provider: &Running, args: &[&str]) -> Value {
    let output = Command::new("node")
        .arg("token.mjs")
        .args(["--issuer", &provider.issuer()])
        .args(args)
        .current_dir(fixture("oidc"))
        .output()
        .await
        .expect("run node token.mjs");
    assert!(
        output.status.success(),
        "token.mjs {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("token.mjs prints JSON")
}

/// POSTs to one of the provider's test endpoints (`rotate_endpoint`, `retire_endpoint`).
pub async fn poke(provider: &Running, endpoint: &str) -> Value {
    reqwest::Client::new()
        .post(provider.field(endpoint))
        .send()
        .await
        .expect("test endpoint")
        .json()
        .await
        .expect("JSON answer")
}
