//! The multi-tenant gateway example, run as a process: several issuers, one resource
//! per `/servers/{id}/mcp` route (seed 001's setup; R-ISS-1, R-AUD-3, R-AUD-4, R-PRM-3).

mod support;

use serde_json::{Value, json};
use support::process::{mcp_call, start, whoami};

#[tokio::test]
async fn each_tenant_reaches_only_the_server_its_token_names() {
    let running = start("gateway", &["--listen", "127.0.0.1:0"], "ready").await;
    let alpha = running.field("server alpha");
    let beta = running.field("server beta");
    for tenant in ["tenant-a", "tenant-b"] {
        let token = running.field(&format!("token {tenant}/alpha"));
        let answer = mcp_call(&alpha, Some(&token), whoami()).await;
        assert_eq!(answer.status(), 200, "{tenant} on alpha");
        let reply: Value = answer.json().await.expect("json-rpc reply");
        assert_eq!(reply["result"]["structuredContent"]["server"], "alpha");
        assert_eq!(
            reply["result"]["structuredContent"]["subject"],
            format!("{tenant}-user")
        );
        // The same token is not for beta: 401, and the challenge names beta's metadata.
        let answer = mcp_call(&beta, Some(&token), whoami()).await;
        assert_eq!(answer.status(), 401);
        let challenge = answer.headers()["www-authenticate"]
            .to_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            challenge.contains("/.well-known/oauth-protected-resource/servers/beta/mcp"),
            "{challenge}"
        );
    }
    // Metadata per server lists both issuers.
    let doc: Value = support::process::get_json(&running.field("metadata")).await;
    assert_eq!(doc["resource"], alpha);
    assert_eq!(
        doc["authorization_servers"].as_array().map(Vec::len),
        Some(2)
    );
}

#[tokio::test]
async fn a_public_url_and_listed_client_ids_are_honoured() {
    // Seed 001: clients use the public origin; the IdP puts the client id in aud.
    let key = support::SigningKey::ec("k");
    let idp = support::TestIdp::start(&[&key]).await;
    let running = start(
        "gateway",
        &[
            "--listen",
            "127.0.0.1:0",
            "--public-url",
            "http://localhost:9/",
            "--issuer",
            &idp.issuer,
            "--accept-client-id",
            "authentik-client",
            "--server",
            "s1",
        ],
        "ready",
    )
    .await;
    assert_eq!(
        running.field("server s1"),
        "http://localhost:9/servers/s1/mcp"
    );
    let local = format!("http://{}/servers/s1/mcp", running.field("listening"));
    let mut claims = support::claims(&idp.issuer, "authentik-client");
    claims["sub"] = json!("authentik-user");
    let answer = mcp_call(&local, Some(&key.sign(&claims)), whoami()).await;
    assert_eq!(answer.status(), 200);
    let for_public = key.sign(&support::claims(
        &idp.issuer,
        "http://localhost:9/servers/s1/mcp",
    ));
    assert_eq!(
        mcp_call(&local, Some(&for_public), whoami()).await.status(),
        200
    );
    let other_client = key.sign(&support::claims(&idp.issuer, "another-client"));
    assert_eq!(
        mcp_call(&local, Some(&other_client), whoami())
            .await
            .status(),
        401
    );
    let unknown_server = format!("http://{}/servers/nope/mcp", running.field("listening"));
    assert_eq!(
        mcp_call(&unknown_server, Some(&for_public), whoami())
            .await
            .status(),
        401
    );
}

#[tokio::test]
async fn a_client_id_audience_opens_only_the_server_it_was_given_for() {
    // A token whose aud is server s1's OAuth client id is not a token for s2.
    let key = support::SigningKey::ec("k");
    let idp = support::TestIdp::start(&[&key]).await;
    let running = start(
        "gateway",
        &[
            "--listen",
            "127.0.0.1:0",
            "--issuer",
            &idp.issuer,
            "--accept-client-id",
            "s1=client-one",
            "--server",
            "s1",
            "--server",
            "s2",
        ],
        "ready",
    )
    .await;
    let token = key.sign(&support::claims(&idp.issuer, "client-one"));
    let at = |server: &str| format!("http://{}/servers/{server}/mcp", running.field("listening"));
    assert_eq!(
        mcp_call(&at("s1"), Some(&token), whoami()).await.status(),
        200
    );
    assert_eq!(
        mcp_call(&at("s2"), Some(&token), whoami()).await.status(),
        401
    );
    // A bare client id with several servers would open them all: refused at start.
    let output = tokio::process::Command::new(support::process::example_binary("gateway"))
        .args([
            "--accept-client-id",
            "client-one",
            "--server",
            "s1",
            "--server",
            "s2",
        ])
        .output()
        .await
        .expect("run the example");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--accept-client-id SERVER=client-one"),
        "{stderr}"
    );
}
