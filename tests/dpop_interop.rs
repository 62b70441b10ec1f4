//! DPoP with real parts (issue 15): panva's oidc-provider with its DPoP feature issues
//! DPoP-bound JWTs and opaque tokens (whose introspection answers `cnf.jkt`), and real
//! DPoP clients call the example server through the whole stack: panva's
//! `oauth4webapi` (3.8.8) and the MCP TypeScript SDK's DPoP support, which is in
//! `@modelcontextprotocol/client` 2.4.0 (`@modelcontextprotocol/sdk` 1.32.2 has none).
//! `tests/node/dpop_client.mjs` records every HTTP exchange, with each proof decoded.

mod support;

use serde_json::Value;
use support::idp;
use support::process::start;
use tokio::process::Command;

/// The example server with `server_args`, trusting an oidc-provider started with
/// `provider_args`, on loopback.
struct Setup {
    resource: String,
    issuer: String,
    _provider: idp::Running,
    _server: support::process::Running,
}

async fn setup(provider_args: &[&str], server_args: &[&str]) -> Setup {
    // The provider only accepts resources named at start, so the port comes first.
    let port = support::closed_port().await.port();
    let resource = format!("http://127.0.0.1:{port}/mcp");
    let mut args = provider_args.to_vec();
    if !args.contains(&"--opaque-resource") {
        args.extend(["--resource", &resource]);
    } else {
        args.push(&resource);
    }
    let provider = idp::oidc_provider(&args).await;
    let listen = format!("127.0.0.1:{port}");
    let issuer = provider.issuer();
    let mut args = vec!["--listen", listen.as_str(), "--issuer", issuer.as_str()];
    args.extend_from_slice(server_args);
    let server = start("mcp_server", &args, "issuer:").await;
    Setup {
        resource,
        issuer,
        _provider: provider,
        _server: server,
    }
}

/// Runs the DPoP client with `extra`; its events, each checked to be JSON.
async fn client(setup: &Setup, client: (&str, &str), extra: &[&str]) -> Vec<Value> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/node");
    let output = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        Command::new("node")
            .arg("dpop_client.mjs")
            .args(["--issuer", &setup.issuer, "--mcp", &setup.resource])
            .args(["--client-id", client.0, "--client-secret", client.1])
            .args(["--scope", "mcp:read", "--timeout", "30"])
            .args(extra)
            .current_dir(dir)
            .output(),
    )
    .await
    .expect("the DPoP client finished in time")
    .unwrap_or_else(|e| panic!("cannot run node ({e}): Node.js 20+ and `npm ci` in tests/node"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the DPoP client failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
        .collect()
}

fn events<'a>(events: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> {
    events.iter().filter(move |e| e["event"] == kind)
}

/// The token event: DPoP-bound to the client's key.
fn bound_token(all: &[Value]) -> &Value {
    let token = events(all, "token").next().expect("a token event");
    assert_eq!(token["token_type"], "DPoP", "{token}");
    token
}

/// Every authenticated request to the server came with `Authorization: DPoP` and a
/// proof for the resource URI and the request's method.
fn assert_every_request_had_a_proof(all: &[Value], resource: &str) -> usize {
    let mut proved = 0;
    for exchange in events(all, "http").filter(|e| e["target"] == "mcp") {
        if exchange["authorization"].is_null() {
            assert_eq!(exchange["status"], 401, "{exchange}");
            continue;
        }
        assert_eq!(exchange["authorization"], "DPoP", "{exchange}");
        assert_eq!(exchange["proof"]["htu"], resource, "{exchange}");
        assert_eq!(exchange["proof"]["htm"], exchange["method"], "{exchange}");
        assert_eq!(exchange["proof"]["ath"], true, "{exchange}");
        proved += 1;
    }
    proved
}

fn whoami(all: &[Value]) -> String {
    let call = events(all, "call").next().expect("a call event");
    assert_eq!(call["is_error"], false, "{call}");
    call["text"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn oauth4webapi_calls_the_server_with_a_dpop_bound_jwt_of_oidc_provider() {
    let setup = setup(&["--alg", "ES256", "--dpop"], &["--dpop", "required"]).await;
    let all = client(
        &setup,
        ("dpop-client", "dpop-secret"),
        &["--resource", &setup.resource],
    )
    .await;
    let token = bound_token(&all);
    assert_eq!(token["cnf"]["jkt"], token["jkt"], "{token}");
    let statuses: Vec<(String, u64)> = events(&all, "request")
        .map(|r| {
            let method = r["method"].as_str().unwrap_or_default().to_owned();
            (method, r["status"].as_u64().unwrap_or_default())
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("initialize".to_owned(), 200),
            ("notifications/initialized".to_owned(), 202),
            ("tools/call".to_owned(), 200)
        ],
        "{all:?}"
    );
    assert_eq!(assert_every_request_had_a_proof(&all, &setup.resource), 3);
    assert!(whoami(&all).contains("dpop-client"), "{all:?}");
}

#[tokio::test]
async fn an_opaque_token_is_bound_by_introspection_and_server_nonces_are_retried() {
    let setup = setup(
        &["--dpop", "--dpop-nonce", "--opaque-resource"],
        &[
            "--dpop",
            "allowed",
            "--dpop-nonces",
            "--introspection-client-id",
            "rs-client",
            "--introspection-client-secret",
            "rs-secret",
        ],
    )
    .await;
    let all = client(
        &setup,
        ("cc-client", "cc-secret"),
        &["--resource", &setup.resource],
    )
    .await;
    let token = bound_token(&all);
    assert!(token["cnf"].is_null(), "opaque: {token}");
    assert_eq!(
        token["nonce_retry"], true,
        "the provider asked for its nonce"
    );
    let initialize = events(&all, "request").next().expect("initialize");
    // The server asked for its nonce; the retry carried it and passed.
    assert_eq!(initialize["status"], 200, "{initialize}");
    assert_eq!(initialize["nonce_retry"], true, "{initialize}");
    let challenge = &initialize["challenge"];
    assert_eq!(challenge["status"], 401, "{challenge}");
    let header = challenge["www_authenticate"].as_str().unwrap_or_default();
    assert!(header.contains("DPoP error=\"use_dpop_nonce\""), "{header}");
    assert!(challenge["dpop_nonce"].is_string(), "{challenge}");
    assert_eq!(initialize["proof"]["nonce"], challenge["dpop_nonce"]);
    assert!(whoami(&all).contains("cc-client"), "{all:?}");
}

#[tokio::test]
async fn the_mcp_typescript_sdk_finds_dpop_from_the_challenge_and_calls_with_proofs() {
    let setup = setup(
        &["--alg", "ES256", "--dpop"],
        &["--dpop", "allowed", "--dpop-nonces"],
    )
    .await;
    let all = client(&setup, ("cc-client", "cc-secret"), &["--mode", "sdk"]).await;
    let token = bound_token(&all);
    assert_eq!(token["cnf"]["jkt"], token["jkt"], "{token}");
    let tools = events(&all, "tools").next().expect("tools");
    assert!(
        tools["names"]
            .as_array()
            .is_some_and(|n| n.iter().any(|t| t == "whoami")),
        "{tools}"
    );
    assert!(whoami(&all).contains("cc-client"), "{all:?}");
    assert!(assert_every_request_had_a_proof(&all, &setup.resource) >= 3);
    // The SDK met the server's nonce challenge and answered it.
    let challenged = events(&all, "http").any(|e| {
        e["target"] == "mcp"
            && e["www_authenticate"]
                .as_str()
                .is_some_and(|h| h.contains("use_dpop_nonce"))
    });
    assert!(challenged, "{all:?}");
}
