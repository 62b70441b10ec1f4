//! The official MCP Python SDK (PyPI `mcp` 2.3.0, pinned with everything it installs in
//! tests/python/requirements.txt) as the client of the example server, with a real
//! oidc-provider, on both wires: 2025-11-25 (the initialize handshake) and 2026-07-28
//! (`server/discover`, no initialize, `Mcp-Method` on every request). The SDK finds
//! everything from the server's 401 challenge and metadata document; each test asserts
//! the exact sequence of HTTP exchanges it made (`tests/python/mcp_client.py` records
//! them), so a change in what the server says shows up here.
//!
//! The Python is `MCP_GATEKEEPER_PYTHON`, else the venv scripts/test.sh makes,
//! `target/python-venv/bin/python`.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use support::idp;
use support::process::start;
use tokio::process::Command;

/// Both wires, each test runs on each.
const PROTOCOLS: [&str; 2] = ["2025-11-25", "2026-07-28"];

/// The example server trusting a fresh oidc-provider, on loopback.
struct Setup {
    resource: String,
    issuer: String,
    _provider: idp::Running,
    _server: support::process::Running,
}

async fn setup(extra: &[&str]) -> Setup {
    setup_with(&[], extra).await
}

/// [`setup`] with more options for the provider.
async fn setup_with(provider_args: &[&str], extra: &[&str]) -> Setup {
    // The provider only accepts resources named at start, so the port comes first.
    let port = support::closed_port().await.port();
    let resource = format!("http://127.0.0.1:{port}/mcp");
    let mut args = vec!["--resource", resource.as_str()];
    args.extend_from_slice(provider_args);
    let provider = idp::oidc_provider(&args).await;
    let listen = format!("127.0.0.1:{port}");
    let issuer = provider.issuer();
    let mut args = vec!["--listen", listen.as_str(), "--issuer", issuer.as_str()];
    args.extend_from_slice(extra);
    let server = start("mcp_server", &args, "issuer:").await;
    Setup {
        resource,
        issuer,
        _provider: provider,
        _server: server,
    }
}

fn python() -> PathBuf {
    std::env::var_os("MCP_GATEKEEPER_PYTHON").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/python-venv/bin/python"),
        PathBuf::from,
    )
}

/// What one run of the Python client left: whether it exited 0, its JSON report, its
/// stderr (the SDK's traceback on failure).
struct Ran {
    ok: bool,
    report: Value,
    stderr: String,
}

async fn run(setup: &Setup, flow: &str, protocol: &str, extra: &[&str]) -> Ran {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python");
    let python = python();
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new(&python)
            .arg("mcp_client.py")
            .args(["--server", &setup.resource, "--flow", flow])
            .args(["--protocol", protocol, "--timeout", "30"])
            .args(extra)
            .current_dir(dir)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the Python client finished in time")
    .unwrap_or_else(|e| {
        panic!(
            "cannot run {} ({e}): scripts/test.sh makes target/python-venv \
             (python3 -m venv, then pip install -r tests/python/requirements.txt); \
             or set MCP_GATEKEEPER_PYTHON",
            python.display()
        )
    });
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| {
            panic!("{flow} on {protocol}: no JSON report ({e}): {stdout}\n{stderr}")
        });
    assert_eq!(
        report["ok"],
        output.status.success(),
        "the report and the exit status disagree: {report}"
    );
    Ran {
        ok: output.status.success(),
        report,
        stderr,
    }
}

/// Runs a flow that must succeed on `protocol`, negotiated as asked; its report.
async fn flow(setup: &Setup, flow: &str, protocol: &str, extra: &[&str]) -> Value {
    let ran = run(setup, flow, protocol, extra).await;
    let report = ran.report;
    assert!(
        ran.ok,
        "{flow} on {protocol} failed: {report}\n{}",
        ran.stderr
    );
    assert_eq!(report["results"]["protocol_version"], protocol, "{report}");
    let negotiation = if protocol == "2025-11-25" {
        "initialize"
    } else {
        "server/discover"
    };
    assert_eq!(report["results"]["negotiation"], negotiation, "{report}");
    assert!(report.get("sdk_warnings").is_none(), "{report}");
    report
}

/// The exchanges as `METHOD PLACE STATUS`, in the order their answers arrived, with the
/// provider's interaction ids blanked. (The example's rmcp is stateless, gives no
/// session id, so the SDK opens no GET stream and sends no DELETE: nothing races.)
fn exchanges(report: &Value) -> Vec<String> {
    report["exchanges"]
        .as_array()
        .expect("exchanges")
        .iter()
        .map(support::process::exchange)
        .collect()
}

/// Each POST to the server as `JSON-RPC-METHOD MCP-PROTOCOL-VERSION MCP-METHOD STATUS`
/// (`-` for a header not sent).
fn wire(report: &Value) -> Vec<String> {
    report["mcp"]
        .as_array()
        .expect("mcp")
        .iter()
        .map(|e| {
            let text = |v: &Value| v.as_str().unwrap_or("-").to_owned();
            format!("{} {} {} {}", text(&e[0]), text(&e[1]), text(&e[2]), e[3])
        })
        .collect()
}

/// One request after the handshake, as `wire` shows it.
fn request(protocol: &str, method: &str, status: u16) -> String {
    if protocol == "2025-11-25" {
        format!("{method} {protocol} - {status}")
    } else {
        format!("{method} {protocol} {method} {status}")
    }
}

/// The session on the wire: the handshake (refused once, for the token), tools/list,
/// then a tools/call per status in `calls`.
fn expected_wire(protocol: &str, calls: &[u16]) -> Vec<String> {
    let mut expected: Vec<String> = if protocol == "2025-11-25" {
        vec![
            "initialize - - 401".into(),
            "initialize - - 200".into(),
            request(protocol, "notifications/initialized", 202),
        ]
    } else {
        vec![
            request(protocol, "server/discover", 401),
            request(protocol, "server/discover", 200),
        ]
    };
    expected.push(request(protocol, "tools/list", 200));
    expected.extend(calls.iter().map(|s| request(protocol, "tools/call", *s)));
    expected
}

const DISCOVERY: [&str; 3] = [
    "POST SERVER/mcp 401",
    "GET SERVER/.well-known/oauth-protected-resource/mcp 200",
    "GET IDP/.well-known/oauth-authorization-server 200",
];
/// Login and consent, followed headlessly.
const LOGIN: [&str; 5] = [
    "GET IDP/auth 303",
    "GET IDP/interaction/ID 303",
    "GET IDP/auth/ID 303",
    "GET IDP/interaction/ID 303",
    "GET IDP/auth/ID 303",
];
/// After the token: initialize (the refused request, retried), initialized, tools/list,
/// whoami.
const LEGACY_SESSION: [&str; 4] = [
    "POST SERVER/mcp 200",
    "POST SERVER/mcp 202",
    "POST SERVER/mcp 200",
    "POST SERVER/mcp 200",
];
/// After the token: server/discover (the refused request, retried), tools/list, whoami.
const MODERN_SESSION: [&str; 3] = [
    "POST SERVER/mcp 200",
    "POST SERVER/mcp 200",
    "POST SERVER/mcp 200",
];
/// The step-up: the 403, consent for the union of the scopes (the SDK reuses the
/// metadata it has: no rediscovery, unlike the TypeScript SDK), the token, the retry.
const STEP_UP: [&str; 6] = [
    "POST SERVER/mcp 403",
    "GET IDP/auth 303",
    "GET IDP/interaction/ID 303",
    "GET IDP/auth/ID 303",
    "POST IDP/token 200",
    "POST SERVER/mcp 200",
];

fn session(protocol: &str) -> &'static [&'static str] {
    if protocol == "2025-11-25" {
        &LEGACY_SESSION
    } else {
        &MODERN_SESSION
    }
}

fn sequence(parts: &[&[&str]]) -> Vec<String> {
    parts
        .iter()
        .flat_map(|p| p.iter().map(|s| (*s).to_owned()))
        .collect()
}

/// Discovery from the 401, dynamic registration, login, the code for a token (the SDK
/// does not look up the metadata again in between), the session.
fn logged_in(protocol: &str) -> Vec<String> {
    sequence(&[
        &DISCOVERY,
        &["POST IDP/reg 201"],
        &LOGIN,
        &["POST IDP/token 200"],
        session(protocol),
    ])
}

#[tokio::test]
async fn the_python_sdk_gets_in_with_client_credentials_from_our_challenge_alone() {
    let setup = setup(&[]).await;
    for protocol in PROTOCOLS {
        // --issuer: the SDK's ClientCredentialsOAuthProvider(issuer=…), without which it
        // warns (deprecated); discovery still comes from the challenge.
        let report = flow(
            &setup,
            "client_credentials",
            protocol,
            &["--issuer", setup.issuer.as_str()],
        )
        .await;
        assert_eq!(
            exchanges(&report),
            sequence(&[&DISCOVERY, &["POST IDP/token 200"], session(protocol)]),
            "{protocol}: {report}"
        );
        assert_eq!(wire(&report), expected_wire(protocol, &[200]), "{report}");
        assert_eq!(report["results"]["whoami"]["subject"], "cc-client");
        assert_eq!(report["results"]["whoami"]["audiences"][0], setup.resource);
        assert_eq!(report["granted_scopes"], json!(["mcp:read"]));
    }
}

#[tokio::test]
async fn the_python_sdk_registers_itself_and_runs_authorization_code_with_pkce() {
    let setup = setup(&[]).await;
    for protocol in PROTOCOLS {
        let report = flow(&setup, "authorization_code", protocol, &[]).await;
        assert_eq!(
            exchanges(&report),
            logged_in(protocol),
            "{protocol}: {report}"
        );
        assert_eq!(wire(&report), expected_wire(protocol, &[200]), "{report}");
        assert_eq!(report["results"]["whoami"]["subject"], "user-1");
        assert_eq!(report["results"]["whoami"]["scopes"], json!(["mcp:read"]));
        // The 401's scope, and offline_access, which the SDK adds (SEP-2207) as the
        // provider offers it and the client may refresh.
        assert_eq!(
            report["registered_scopes"],
            json!(["mcp:read offline_access"])
        );
        assert_eq!(
            report["authorization_scopes"],
            json!(["mcp:read offline_access"])
        );
        assert_eq!(report["granted_scopes"], json!(["mcp:read"]));
    }
}

#[tokio::test]
async fn the_python_sdk_steps_up_on_insufficient_scope_and_keeps_its_scopes() {
    let setup = setup(&[]).await;
    for protocol in PROTOCOLS {
        let report = flow(&setup, "step_up", protocol, &["--recheck-read"]).await;
        let mut expected = logged_in(protocol);
        expected.extend(sequence(&[&STEP_UP]));
        // This SDK asks for the union of its scopes and the challenged ones (SEP-2350):
        // whoami after write needs no second step-up.
        expected.push("POST SERVER/mcp 200".to_owned());
        assert_eq!(exchanges(&report), expected, "{protocol}: {report}");
        assert_eq!(
            wire(&report),
            expected_wire(protocol, &[200, 403, 200, 200]),
            "{report}"
        );
        let challenge = report["challenges"][1][1].as_str().unwrap_or_default();
        assert_eq!(report["challenges"][1][0], 403, "{report}");
        assert!(
            challenge.contains(r#"error="insufficient_scope""#)
                && challenge.contains(r#"scope="mcp:write""#),
            "{report}"
        );
        let results = &report["results"];
        assert_eq!(results["write"]["written_by"], "user-1");
        assert_eq!(results["step_up_authorization_requests"], 1);
        assert_eq!(results["recheck_authorization_requests"], 0);
        assert_eq!(results["token_before_write"]["jwt_scope"], "mcp:read");
        assert_eq!(
            results["token_after_write"]["jwt_scope"],
            "mcp:read mcp:write"
        );
        assert_eq!(
            report["authorization_scopes"],
            json!([
                "mcp:read offline_access",
                "mcp:read offline_access mcp:write"
            ])
        );
        assert_eq!(
            report["granted_scopes"],
            json!(["mcp:read", "mcp:read mcp:write"])
        );
    }
}

/// The SDK registers its client with exactly the scope of the first challenge (plus
/// offline_access) and steps up with that same registration, asking beyond it. The
/// fixture lets dynamically registered clients do that (provider.mjs drops their
/// registered `scope`), so here it passes; an authorization server that holds a client
/// to its registered scope answers the step-up with `invalid_scope`, which the SDK does
/// not recover from (it never registers again).
#[tokio::test]
async fn the_python_sdk_steps_up_beyond_the_scope_it_registered_with() {
    let setup = setup(&[]).await;
    for protocol in PROTOCOLS {
        let report = flow(&setup, "dcr_step_up", protocol, &["--recheck-read"]).await;
        let mut expected = logged_in(protocol);
        expected.extend(sequence(&[&STEP_UP]));
        expected.push("POST SERVER/mcp 200".to_owned());
        assert_eq!(exchanges(&report), expected, "{protocol}: {report}");
        assert_eq!(
            report["registered_scopes"],
            json!(["mcp:read offline_access"])
        );
        assert_eq!(
            report["scopes_beyond_registration"],
            json!([[], ["mcp:write"]])
        );
        assert_eq!(report["results"]["write"]["written_by"], "user-1");
    }
}

/// With `--challenge-all-scopes` the 401 names every supported scope: the SDK registers
/// with all of them, its first token has mcp:write, and write needs no step-up, so no
/// authorization request ever goes beyond the registration.
#[tokio::test]
async fn with_all_scopes_in_the_challenge_the_python_sdk_registers_for_all_and_needs_no_step_up() {
    let setup = setup(&["--challenge-all-scopes"]).await;
    for protocol in PROTOCOLS {
        let report = flow(&setup, "dcr_step_up", protocol, &["--recheck-read"]).await;
        let mut expected = logged_in(protocol);
        expected.extend([
            "POST SERVER/mcp 200".to_owned(),
            "POST SERVER/mcp 200".to_owned(),
        ]);
        assert_eq!(exchanges(&report), expected, "{protocol}: {report}");
        assert_eq!(
            wire(&report),
            expected_wire(protocol, &[200, 200, 200]),
            "{report}"
        );
        let challenge = report["challenges"][0][1].as_str().unwrap_or_default();
        assert!(
            challenge.contains(r#"scope="mcp:read mcp:write""#),
            "{report}"
        );
        assert_eq!(
            report["registered_scopes"],
            json!(["mcp:read mcp:write offline_access"])
        );
        assert_eq!(report["scopes_beyond_registration"], json!([[]]));
        assert_eq!(report["results"]["step_up_authorization_requests"], 0);
        assert_eq!(report["granted_scopes"], json!(["mcp:read mcp:write"]));
        assert_eq!(report["results"]["write"]["written_by"], "user-1");
    }
}

/// Issue 14, item 9: an authorization server that holds a dynamically registered client
/// to the scope it registered with refuses the Python SDK's step-up (the SDK registers
/// with exactly the first 401's scopes and never again); with `--challenge-all-scopes`
/// the same client registers for every supported scope and its write succeeds.
#[tokio::test]
async fn a_client_held_to_its_registered_scope_writes_only_when_the_401_named_every_scope() {
    const STRICT: &[&str] = &["--strict-registered-scope"];
    let plain = setup_with(STRICT, &[]).await;
    let ran = run(&plain, "dcr_step_up", "2026-07-28", &[]).await;
    assert!(!ran.ok, "{}", ran.report);
    let error = ran.report["error"].to_string();
    assert!(error.contains("invalid_scope"), "{}", ran.report);
    let all = setup_with(STRICT, &["--challenge-all-scopes"]).await;
    let report = flow(&all, "dcr_step_up", "2026-07-28", &[]).await;
    assert_eq!(
        report["registered_scopes"],
        json!(["mcp:read mcp:write offline_access"])
    );
    assert_eq!(report["results"]["write"]["written_by"], "user-1");
}
