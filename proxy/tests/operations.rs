//! The proxy as operators see it: an upstream that is down or silent (502/504 with a
//! JSON-RPC error, never a hang), `/healthz` and `/readyz`, and SIGTERM letting an open
//! SSE stream finish.

mod common;

use std::time::{Duration, Instant};

use common::{Mcp, Proxy, Sdk, Upstream, idp, token};
use serde_json::{Value, json};

/// A listener that accepts connections and never answers; its address.
async fn silent_upstream() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    (address, task)
}

/// A listener that answers every request `401` with its own challenge; its address.
async fn refusing_upstream() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 16 * 1024];
                let _ = stream.read(&mut buffer).await;
                let answer = "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer \
                    resource_metadata=\"http://internal.example/.well-known/oauth-protected-resource\"\r\n\
                    Content-Length: 0\r\nConnection: close\r\n\r\n";
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    (address, task)
}

#[tokio::test]
async fn an_upstream_that_refuses_the_gateways_credentials_is_502_without_its_challenge() {
    let port = common::free_port();
    let route = format!("http://127.0.0.1:{port}/servers/strict/mcp");
    let provider = idp::oidc_provider(&["--resource", &route]).await;
    let (refusing, _task) = refusing_upstream().await;
    let config = format!(
        "[proxy]\nlisten = \"127.0.0.1:{port}\"\n[[issuers]]\nissuer = \"{}\"\n[servers.strict]\nupstream = \"http://{refusing}/mcp\"\n",
        provider.issuer()
    );
    let _proxy = Proxy::start(&config, &[]).await;
    let client_token = token(&provider, "mcp:read", &route).await;
    let answer = Mcp::new(&route, Some(&client_token))
        .call(1, "whoami", json!({}))
        .await;
    assert_eq!(answer.status, 502, "{answer:?}");
    assert!(
        !answer
            .header("www-authenticate")
            .contains("internal.example"),
        "the upstream's challenge reached the client: {answer:?}"
    );
    assert!(
        answer.messages[0]["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("refused the gateway's credentials")
    );
}

#[tokio::test]
async fn a_down_upstream_is_502_a_silent_one_504_and_readyz_says_which() {
    let port = common::free_port();
    let route = |id: &str| format!("http://127.0.0.1:{port}/servers/{id}/mcp");
    let provider =
        idp::oidc_provider(&["--resource", &route("down"), "--resource", &route("silent")]).await;
    let closed = common::free_port();
    let (silent, _task) = silent_upstream().await;
    let config = format!(
        r#"
[proxy]
listen = "127.0.0.1:{port}"
connect_timeout_seconds = 2
first_byte_timeout_seconds = 1

[[issuers]]
issuer = "{}"

[servers.down]
upstream = "http://127.0.0.1:{closed}/mcp"

[servers.silent]
upstream = "http://{silent}/mcp"
"#,
        provider.issuer()
    );
    let proxy = Proxy::start(&config, &[]).await;

    for (id, status, words) in [
        ("down", 502, "could not be reached"),
        ("silent", 504, "did not answer in time"),
    ] {
        let client_token = token(&provider, "mcp:read", &route(id)).await;
        let mcp = Mcp::new(&route(id), Some(&client_token));
        let started = Instant::now();
        let answer = mcp.call(1, "whoami", json!({})).await;
        assert!(started.elapsed() < Duration::from_secs(5), "{id}: it hung");
        assert_eq!(answer.status, status, "{id}: {answer:?}");
        let error = &answer.messages[0]["error"];
        assert_eq!(error["code"], -32603, "{answer:?}");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains(words), "{message}");
        assert!(
            !message.contains("127.0.0.1"),
            "internals leaked: {message}"
        );
    }

    let health = reqwest::get(format!("{}/healthz", proxy.origin))
        .await
        .expect("healthz");
    assert_eq!(health.status().as_u16(), 200);
    let ready = reqwest::get(format!("{}/readyz", proxy.origin))
        .await
        .expect("readyz");
    assert_eq!(ready.status().as_u16(), 503);
    let report: Value = ready.json().await.expect("JSON");
    assert_eq!(
        report["issuers"][provider.issuer()]["ready"],
        true,
        "{report}"
    );
    assert_eq!(report["upstreams"]["down"]["ready"], false, "{report}");
    assert_eq!(report["upstreams"]["silent"]["ready"], true, "{report}");
    let unknown = reqwest::get(format!("{}/servers/nope/mcp", proxy.origin))
        .await
        .expect("404");
    assert_eq!(unknown.status().as_u16(), 404);
}

#[tokio::test]
async fn readyz_is_200_when_issuers_and_upstreams_answer() {
    let port = common::free_port();
    let route = format!("http://127.0.0.1:{port}/servers/ts/mcp");
    let provider = idp::oidc_provider(&["--resource", &route]).await;
    let upstream = Upstream::start(Sdk::TypeScript, &["--stateless"]).await;
    let config = format!(
        "[proxy]\nlisten = \"127.0.0.1:{port}\"\n[[issuers]]\nissuer = \"{}\"\n[servers.ts]\nupstream = \"{}\"\n",
        provider.issuer(),
        upstream.url
    );
    let proxy = Proxy::start(&config, &[]).await;
    let ready = reqwest::get(format!("{}/readyz", proxy.origin))
        .await
        .expect("readyz");
    assert_eq!(ready.status().as_u16(), 200);
    drop(provider);
    // The result of a check serves for 5 s (the providers see one check per interval,
    // however often the orchestrator asks); then the issuer is found gone.
    let status = |origin: String| async move {
        reqwest::get(format!("{origin}/readyz"))
            .await
            .expect("readyz")
            .status()
            .as_u16()
    };
    assert_eq!(
        status(proxy.origin.clone()).await,
        200,
        "served from the last check"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while status(proxy.origin.clone()).await != 503 {
        assert!(
            std::time::Instant::now() < deadline,
            "the issuer is gone, still ready"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn sigterm_lets_an_open_sse_stream_finish_and_takes_no_new_connection() {
    let port = common::free_port();
    let route = format!("http://127.0.0.1:{port}/servers/ts/mcp");
    let provider = idp::oidc_provider(&["--resource", &route]).await;
    let upstream = Upstream::start(Sdk::TypeScript, &[]).await;
    let config = format!(
        "[proxy]\nlisten = \"127.0.0.1:{port}\"\nshutdown_grace_seconds = 10\n[[issuers]]\nissuer = \"{}\"\n[servers.ts]\nupstream = \"{}\"\n",
        provider.issuer(),
        upstream.url
    );
    let mut proxy = Proxy::start(&config, &[]).await;
    let client_token = token(&provider, "mcp:read", &route).await;
    let mut mcp = Mcp::new(&route, Some(&client_token));
    mcp.initialize().await;
    let call = json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "slow_stream", "arguments": {"duration_ms": 1500, "interval_ms": 100}}
    });
    let response = mcp
        .request(reqwest::Method::POST, Some(&call))
        .send()
        .await
        .expect("the stream opens");
    assert_eq!(response.status().as_u16(), 200);
    proxy.terminate().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // No new connection is taken while the stream goes on.
    let refused = reqwest::Client::new()
        .get(format!("{}/healthz", proxy.origin))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(refused.is_err(), "a new connection was served: {refused:?}");
    let body = tokio::time::timeout(Duration::from_secs(10), response.text())
        .await
        .expect("the stream ended")
        .expect("the stream finished cleanly");
    let messages = common::messages(&body);
    let result = messages
        .iter()
        .find(|m| m["id"] == 1)
        .unwrap_or_else(|| panic!("no result: {body}"));
    assert_eq!(result["result"]["isError"], Value::Null, "{result}");
    assert_eq!(proxy.exited(Duration::from_secs(5)).await, Some(0));
}
