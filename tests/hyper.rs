//! The stack on a plain hyper 1.x server (`examples/hyper.rs`, no axum), run as a
//! process: challenges, verification, MCP operations and per-tool scopes, and a
//! refused oversized body that still reaches the client as a 400.

mod support;

use serde_json::{Value, json};
use support::process::{mcp_call, start, whoami};

#[tokio::test]
async fn a_plain_hyper_service_is_protected_by_the_whole_stack() {
    let running = start("hyper", &["--listen", "127.0.0.1:0"], "ready").await;
    let resource = running.field("resource");
    let token = running.field("token");

    let doc: Value = support::process::get_json(&running.field("metadata")).await;
    assert_eq!(doc["resource"], resource);
    assert_eq!(doc["scopes_supported"], json!(["mcp:read", "mcp:write"]));

    let answer = mcp_call(&resource, None, whoami()).await;
    assert_eq!(answer.status(), 401);
    assert!(
        answer.headers()["www-authenticate"]
            .to_str()
            .unwrap_or_default()
            .contains("resource_metadata=\""),
    );

    // The handler sees the principal and the operation the stack read.
    let reply: Value = mcp_call(&resource, Some(&token), whoami())
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        reply,
        json!({"subject": "hyper-user", "scopes": ["mcp:read"], "method": "tools/call", "name": "whoami"})
    );

    let write = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "write_file", "arguments": {}}});
    let answer = mcp_call(&resource, Some(&token), write).await;
    assert_eq!(answer.status(), 403);
    assert!(
        answer.headers()["www-authenticate"]
            .to_str()
            .unwrap_or_default()
            .ends_with("scope=\"mcp:write\"")
    );

    // Over the body limit: hyper's connection survives long enough to deliver the 400.
    let big = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "whoami", "arguments": {"pad": "x".repeat(2 << 20)}}});
    let answer = mcp_call(&resource, Some(&token), big).await;
    assert_eq!(answer.status(), 400);
    let tampered = format!("{token}x");
    assert_eq!(
        mcp_call(&resource, Some(&tampered), whoami())
            .await
            .status(),
        401
    );
}
