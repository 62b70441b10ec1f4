//! The official MCP TypeScript SDK (`@modelcontextprotocol/sdk`, pinned in
//! tests/node) as the client of the example server, with a real oidc-provider. The
//! SDK finds everything from the server's 401 challenge and metadata document; each
//! test asserts the exact sequence of HTTP exchanges it made (`tests/node/mcp_client.mjs`
//! records them), so a change in what the server says shows up here.

mod support;

use serde_json::Value;
use support::idp;
use support::process::start;
use tokio::process::Command;

/// The example server trusting a fresh oidc-provider, on loopback.
struct Setup {
    resource: String,
    _provider: idp::Running,
    _server: support::process::Running,
}

async fn setup(extra: &[&str]) -> Setup {
    // The provider only accepts resources named at start, so the port comes first.
    let port = support::closed_port().await.port();
    let resource = format!("http://127.0.0.1:{port}/mcp");
    let provider = idp::oidc_provider(&["--resource", &resource]).await;
    let listen = format!("127.0.0.1:{port}");
    let issuer = provider.issuer();
    let mut args = vec!["--listen", listen.as_str(), "--issuer", issuer.as_str()];
    args.extend_from_slice(extra);
    let server = start("mcp_server", &args, "issuer:").await;
    Setup {
        resource,
        _provider: provider,
        _server: server,
    }
}

/// Runs one flow of the Node client; its JSON report.
async fn flow(setup: &Setup, flow: &str, extra: &[&str]) -> Value {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/node");
    let output = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        Command::new("node")
            .arg("mcp_client.mjs")
            .args([
                "--server",
                &setup.resource,
                "--flow",
                flow,
                "--timeout",
                "30",
            ])
            .args(extra)
            .current_dir(dir)
            .output(),
    )
    .await
    .expect("the Node client finished in time")
    .unwrap_or_else(|e| {
        panic!("cannot run node ({e}): Node.js 20+ and `npm ci` in tests/node are needed")
    });
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{flow} failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{flow}: no JSON report ({e}): {stdout}"));
    assert_eq!(report["ok"], true, "{report}");
    assert!(report.get("client_fallbacks").is_none(), "{report}");
    report
}

/// The SDK's SSE stream request, which it sends without waiting after `initialized`.
const SSE_GET: &str = "GET SERVER/mcp 405";

/// The exchanges as `METHOD PLACE STATUS`, in the order their answers arrived, with the
/// provider's interaction ids blanked.
///
/// The SDK opens its SSE stream (`GET SERVER/mcp`) in the background once the
/// `initialized` notification is accepted (202), so that GET races the next POST. Each
/// such GET is moved to just after the 202 it follows; it must follow one.
fn exchanges(report: &Value) -> Vec<String> {
    let arrived = report["exchanges"]
        .as_array()
        .expect("exchanges")
        .iter()
        .map(support::process::exchange);
    let mut ordered: Vec<String> = Vec::new();
    for exchange in arrived {
        if exchange == SSE_GET {
            let accepted = ordered
                .iter()
                .rposition(|e| e == "POST SERVER/mcp 202")
                .unwrap_or_else(|| panic!("the SSE GET came before any initialized: {report}"));
            ordered.insert(accepted + 1, exchange);
        } else {
            ordered.push(exchange);
        }
    }
    ordered
}

const DISCOVERY: [&str; 3] = [
    "POST SERVER/mcp 401",
    "GET SERVER/.well-known/oauth-protected-resource/mcp 200",
    "GET IDP/.well-known/oauth-authorization-server 200",
];
const REDISCOVERY: [&str; 2] = [
    "GET SERVER/.well-known/oauth-protected-resource/mcp 200",
    "GET IDP/.well-known/oauth-authorization-server 200",
];
/// The SDK's session: initialize, initialized, the SSE GET (405: no stream), the call.
const SESSION: [&str; 4] = [
    "POST SERVER/mcp 200",
    "POST SERVER/mcp 202",
    SSE_GET,
    "POST SERVER/mcp 200",
];
/// Login and consent, followed headlessly.
const LOGIN: [&str; 5] = [
    "GET IDP/auth 303",
    "GET IDP/interaction/ID 303",
    "GET IDP/auth/ID 303",
    "GET IDP/interaction/ID 303",
    "GET IDP/auth/ID 303",
];
/// Consent for more scope, the login session being known.
const CONSENT: [&str; 3] = [
    "GET IDP/auth 303",
    "GET IDP/interaction/ID 303",
    "GET IDP/auth/ID 303",
];

/// Discovery from the 401, dynamic registration, login, the code for a token, the
/// session.
fn logged_in() -> Vec<String> {
    sequence(&[
        &DISCOVERY,
        &["POST IDP/reg 201"],
        &LOGIN,
        &REDISCOVERY,
        &["POST IDP/token 200"],
        &SESSION,
    ])
}

fn sequence(parts: &[&[&str]]) -> Vec<String> {
    parts
        .iter()
        .flat_map(|p| p.iter().map(|s| (*s).to_owned()))
        .collect()
}

#[tokio::test]
async fn the_sdk_gets_in_with_client_credentials_from_our_challenge_alone() {
    let setup = setup(&[]).await;
    let report = flow(&setup, "client_credentials", &[]).await;
    assert_eq!(
        exchanges(&report),
        sequence(&[&DISCOVERY, &["POST IDP/token 200"], &SESSION])
    );
    assert_eq!(report["results"]["whoami"]["subject"], "cc-client");
    assert_eq!(report["results"]["whoami"]["audiences"][0], setup.resource);
}

#[tokio::test]
async fn the_sdk_registers_itself_and_runs_authorization_code_with_pkce() {
    let setup = setup(&[]).await;
    let report = flow(&setup, "authorization_code", &[]).await;
    assert_eq!(exchanges(&report), logged_in());
    assert_eq!(report["results"]["whoami"]["subject"], "user-1");
    assert_eq!(report["results"]["whoami"]["scopes"][0], "mcp:read");
}

/// The exchanges of the step-up: the 403, consent for the challenged scope, the retry.
const STEP_UP: [&[&str]; 5] = [
    &["POST SERVER/mcp 403"],
    &REDISCOVERY,
    &CONSENT,
    &REDISCOVERY,
    &["POST IDP/token 200", "POST SERVER/mcp 200"],
];

#[tokio::test]
async fn the_sdk_steps_up_on_insufficient_scope_and_the_write_succeeds() {
    let setup = setup(&[]).await;
    let report = flow(&setup, "step_up", &["--recheck-read"]).await;
    let mut expected = logged_in();
    expected.extend(sequence(&STEP_UP));
    // This SDK replaces its scopes with the challenged ones (as MCP before 2026-07-28
    // let it): the stepped-up token lacks mcp:read, so whoami steps up again.
    expected.extend(sequence(&[
        &["POST SERVER/mcp 403"],
        &REDISCOVERY,
        &["GET IDP/auth 303"],
        &REDISCOVERY,
        &["POST IDP/token 200", "POST SERVER/mcp 200"],
    ]));
    assert_eq!(exchanges(&report), expected);
    assert_eq!(report["results"]["write"]["written_by"], "user-1");
    assert_eq!(
        report["granted_scopes"],
        serde_json::json!(["mcp:read", "mcp:write", "mcp:read"])
    );
}

#[tokio::test]
async fn with_granted_scopes_in_the_challenge_one_step_up_is_enough() {
    let setup = setup(&["--challenge-granted-scopes"]).await;
    let report = flow(&setup, "step_up", &["--recheck-read"]).await;
    let mut expected = logged_in();
    expected.extend(sequence(&STEP_UP));
    expected.push("POST SERVER/mcp 200".to_owned()); // whoami again, no second step-up
    assert_eq!(exchanges(&report), expected);
    assert_eq!(report["results"]["recheck_authorization_requests"], 0);
    let mut stepped_up: Vec<&str> = report["granted_scopes"][1]
        .as_str()
        .unwrap_or_default()
        .split(' ')
        .collect();
    stepped_up.sort_unstable();
    assert_eq!(stepped_up, ["mcp:read", "mcp:write"]);
}
