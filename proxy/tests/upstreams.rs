//! Real MCP servers in other languages behind the proxy binary, with tokens from a real
//! authorization server: the TypeScript SDK's (stateful and stateless) and the Python
//! SDK's (FastMCP, streamable-http), called over raw HTTP, by rmcp's client and by the
//! TypeScript SDK's client.

mod common;

use std::time::{Duration, Instant};

use common::{Mcp, Proxy, Sdk, Upstream, claims, idp, structured, token};
use serde_json::{Value, json};

/// The `[proxy]` and `[[issuers]]` part of a configuration.
fn head(port: u16, provider: &idp::Running) -> String {
    format!(
        r#"
[proxy]
listen = "127.0.0.1:{port}"
first_byte_timeout_seconds = 30
shutdown_grace_seconds = 10

[[issuers]]
issuer = "{}"
"#,
        provider.issuer()
    )
}

/// Whether any recorded request carried `token` in any header.
fn carries(seen: &[Value], token: &str) -> bool {
    seen.iter()
        .any(|request| request.to_string().contains(token))
}

#[tokio::test]
async fn typescript_servers_stateful_and_stateless_answer_through_the_proxy() {
    let port = common::free_port();
    let route = |id: &str| format!("http://127.0.0.1:{port}/servers/{id}/mcp");
    let (ts, tsless) = (route("ts"), route("tsless"));
    let provider = idp::oidc_provider(&["--resource", &ts, "--resource", &tsless]).await;
    let stateful = Upstream::start(Sdk::TypeScript, &[]).await;
    let stateless = Upstream::start(Sdk::TypeScript, &["--stateless"]).await;
    let audit_log = std::env::temp_dir().join(format!("gateway-audit-{port}.jsonl"));
    let _ = std::fs::remove_file(&audit_log);
    let config = format!(
        r#"{}
[servers.ts]
upstream = "{}"
scopes = ["mcp:read"]

[servers.tsless]
upstream = "{}"
scopes = ["mcp:read"]
credentials = {{ kind = "header", name = "x-api-key", value = {{ env = "TSLESS_KEY" }} }}
"#,
        head(port, &provider).replace(
            "[proxy]\n",
            &format!(
                "[proxy]\naudit_log = {:?}\nmetrics = \"127.0.0.1:0\"\n",
                audit_log.display().to_string()
            )
        ),
        stateful.url,
        stateless.url
    );
    let proxy = Proxy::start(&config, &[("TSLESS_KEY", "key-for-the-upstream")]).await;
    assert_eq!(proxy.origin, format!("http://127.0.0.1:{port}"));

    // Stateful: a session through the proxy, tools listed and called.
    let client_token = token(&provider, "mcp:read", &ts).await;
    let mut mcp = Mcp::new(&ts, Some(&client_token));
    mcp.initialize().await;
    assert!(mcp.session.is_some(), "the upstream's session id passes");
    let tools = mcp.tool_names(1).await;
    assert!(tools.contains(&"whoami".to_owned()), "{tools:?}");
    let echo = mcp.call(2, "echo", json!({"text": "grüße, 世界"})).await;
    assert_eq!(echo.status, 200, "{echo:?}");
    assert!(
        echo.result(2).to_string().contains("grüße, 世界"),
        "{echo:?}"
    );
    let whoami = mcp.call(3, "whoami", json!({})).await;
    let seen_by_tool = structured(whoami.result(3));
    assert!(
        seen_by_tool["authorization"].is_null(),
        "the upstream got credentials: {seen_by_tool}"
    );

    // A token for the other route is not good here (its own resource and audience).
    let other = token(&provider, "mcp:read", &tsless).await;
    let mut wrong = Mcp::new(&ts, Some(&other));
    wrong.session = mcp.session.clone();
    assert_eq!(wrong.call(4, "whoami", json!({})).await.status, 401);

    // DELETE ends the session at the upstream; the session is gone after it.
    let deleted = mcp
        .request(reqwest::Method::DELETE, None)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(deleted.status().as_u16(), 200);
    assert_eq!(mcp.call(5, "whoami", json!({})).await.status, 404);

    let seen = stateful.seen().await;
    assert!(
        !carries(&seen, &client_token),
        "the client's token reached the upstream"
    );
    assert!(
        seen.iter().all(|r| r["headers"]["authorization"].is_null()),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|r| r["method"] == "DELETE"),
        "the DELETE reached the upstream: {seen:?}"
    );

    // Stateless, with a static upstream header in place of the client's token; what
    // the client says about its way (X-Forwarded-*, X-Real-IP, Forwarded) is not
    // passed on, and Via names the gateway.
    let client_token = token(&provider, "mcp:read", &tsless).await;
    let mcp = Mcp::new(&tsless, Some(&client_token));
    let forged = mcp
        .request(
            reqwest::Method::POST,
            Some(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                         "params": {"name": "echo", "arguments": {"text": "stateless"}}})),
        )
        .header("x-forwarded-for", "10.0.0.1")
        .header("x-forwarded-port", "1")
        .header("x-real-ip", "10.0.0.2")
        .header("forwarded", "for=10.0.0.3")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "drop me")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "echo")
        .send()
        .await
        .expect("echo");
    assert_eq!(forged.status().as_u16(), 200);
    // A resumption's Last-Event-ID passes too (this stateless server answers GET 405).
    let resumed = mcp
        .request(reqwest::Method::GET, None)
        .header("last-event-id", "event-7")
        .send()
        .await
        .expect("GET");
    assert_eq!(resumed.status().as_u16(), 405);
    let seen = stateless.seen().await;
    let call = seen
        .iter()
        .rfind(|r| r["method"] == "POST")
        .expect("the call reached the upstream");
    let headers = &call["headers"];
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1", "{headers}");
    assert_eq!(
        headers["x-forwarded-host"],
        format!("127.0.0.1:{port}").as_str(),
        "{headers}"
    );
    assert_eq!(headers["via"], "1.1 mcp-gatekeeper-proxy", "{headers}");
    for gone in ["x-forwarded-port", "x-real-ip", "forwarded", "x-hop"] {
        assert!(headers[gone].is_null(), "{gone} passed: {headers}");
    }
    // The MCP headers and the content headers pass as the client sent them.
    for (name, value) in [
        ("mcp-method", "tools/call"),
        ("mcp-name", "echo"),
        ("mcp-protocol-version", "2025-11-25"),
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
    ] {
        assert_eq!(headers[name], value, "{name}: {headers}");
    }
    let get = seen
        .iter()
        .rfind(|r| r["method"] == "GET")
        .expect("the GET reached the upstream");
    assert_eq!(get["headers"]["last-event-id"], "event-7", "{get}");
    assert!(!carries(&seen, &client_token));
    assert!(
        seen.iter()
            .filter(|r| r["method"] == "POST")
            .all(|r| r["headers"]["x-api-key"] == "key-for-the-upstream"),
        "{seen:?}"
    );

    // The audit trail (`audit_log`): each decision above, and never a token.
    let text = std::fs::read_to_string(&audit_log).expect("the audit log was written");
    let _ = std::fs::remove_file(&audit_log);
    let events: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    let find = |what: &dyn Fn(&Value) -> bool| events.iter().any(what);
    assert!(
        find(&|e| e["decision"] == "allow"
            && e["path"] == "/servers/ts/mcp"
            && e["http_method"] == "POST"
            && e["subject"].is_string()
            && e["key_tier"] == "cache"),
        "{text}"
    );
    assert!(
        find(&|e| e["decision"] == "reject" && e["status"] == 401 && e["rule"] == "R-AUD-2"),
        "the token of the other route: {text}"
    );
    assert!(
        find(&|e| e["decision"] == "allow" && e["http_method"] == "DELETE"),
        "the session's end: {text}"
    );
    // The upstream's own answer (the session it ended) is its status, allowed here.
    assert!(
        find(&|e| e["decision"] == "allow" && e["status"] == 404),
        "{text}"
    );
    assert!(
        find(&|e| e["decision"] == "allow"
            && e["path"] == "/servers/tsless/mcp"
            && e["tool"] == "echo"),
        "{text}"
    );
    for token in [&client_token, &other] {
        for part in token.split('.').filter(|p| p.len() >= 12) {
            assert!(!text.contains(part), "the audit trail shows a token");
        }
    }

    // `[proxy] metrics`: served on its own address, the decisions counted.
    let metrics = proxy
        .banner
        .iter()
        .find_map(|line| line.trim().strip_prefix("metrics: "))
        .expect("the metrics line")
        .to_owned();
    let scrape = reqwest::get(&metrics).await.expect("scrape");
    assert_eq!(scrape.status().as_u16(), 200);
    let text = scrape.text().await.expect("text");
    let samples = common::prometheus::parse(&text);
    let wrong_route = common::prometheus::sample(
        "mcp_gatekeeper_decisions_total",
        &[
            ("decision", "reject"),
            ("issuer", &provider.issuer()),
            ("rule", "R-AUD-2"),
            ("status", "401"),
        ],
    );
    assert_eq!(samples.get(&wrong_route).copied(), Some(1.0), "{text}");
    for token in [&client_token, &other] {
        for part in token.split('.').filter(|p| p.len() >= 12) {
            assert!(!text.contains(part), "the metrics show a token");
        }
    }
    let elsewhere = reqwest::get(metrics.replace("/metrics", "/other"))
        .await
        .expect("another path");
    assert_eq!(elsewhere.status().as_u16(), 404);
    // A page that rebinds a DNS name to this address is not answered.
    let rebound = reqwest::Client::new()
        .get(&metrics)
        .header("host", "attacker.example:9464")
        .send()
        .await
        .expect("scrape by name");
    assert_eq!(rebound.status().as_u16(), 421);
}

#[tokio::test]
async fn the_python_server_gets_an_exchanged_token_one_exchange_for_many_calls() {
    let port = common::free_port();
    let route = format!("http://127.0.0.1:{port}/servers/py/mcp");
    let upstream = Upstream::start(Sdk::Python, &[]).await;
    let provider = idp::oidc_provider(&["--resource", &route, "--resource", &upstream.url]).await;
    let config = format!(
        r#"{}
[servers.py]
upstream = "{}"
scopes = ["mcp:read"]

[servers.py.credentials]
kind = "exchange"
client_id = "proxy-client"
client_secret = {{ env = "PROXY_CLIENT_SECRET" }}
"#,
        head(port, &provider),
        upstream.url
    );
    let proxy = Proxy::start(&config, &[("PROXY_CLIENT_SECRET", "proxy-secret")]).await;
    let _ = &proxy;

    let client_token = token(&provider, "mcp:read", &route).await;
    let mut mcp = Mcp::new(&route, Some(&client_token));
    mcp.initialize().await;
    let whoami = mcp.call(1, "whoami", json!({})).await;
    assert_eq!(whoami.status, 200, "{whoami:?}");
    let got = structured(whoami.result(1));
    let authorization = got["authorization"].as_str().unwrap_or_default();
    let exchanged = authorization.strip_prefix("Bearer ").unwrap_or_default();
    assert!(!exchanged.is_empty(), "no token upstream: {got}");
    assert_ne!(exchanged, client_token);
    let (before, after) = (claims(&client_token), claims(exchanged));
    assert_eq!(after["aud"], upstream.url.as_str(), "{after}");
    assert_eq!(after["sub"], before["sub"]);
    assert_eq!(after["act"]["sub"], "proxy-client");

    // 100 concurrent calls with a new subject token: one exchange, one upstream token.
    let fresh = token(&provider, "mcp:read", &route).await;
    let mut mcp = Mcp::new(&route, Some(&fresh));
    mcp.initialize().await;
    let mcp = std::sync::Arc::new(mcp);
    let calls = (0..100u64).map(|id| {
        let mcp = mcp.clone();
        tokio::spawn(async move { mcp.call(100 + id, "echo", json!({"text": "x"})).await })
    });
    for call in calls {
        let answer = call.await.expect("task");
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    let seen = upstream.seen().await;
    assert!(!carries(&seen, &client_token) && !carries(&seen, &fresh));
    let tokens: std::collections::HashSet<&str> = seen
        .iter()
        .filter(|r| r["headers"]["mcp-session-id"] == mcp.session.as_deref().unwrap_or_default())
        .filter_map(|r| r["headers"]["authorization"].as_str())
        .collect();
    assert_eq!(tokens.len(), 1, "one exchange for 100 calls: {tokens:?}");
    assert!(
        !tokens.contains(authorization),
        "a new subject, a new exchange"
    );
}

#[tokio::test]
async fn tools_are_filtered_and_a_call_without_its_scope_is_challenged_for_step_up() {
    let port = common::free_port();
    let route = format!("http://127.0.0.1:{port}/servers/ts/mcp");
    let provider = idp::oidc_provider(&["--resource", &route]).await;
    let upstream = Upstream::start(Sdk::TypeScript, &["--stateless"]).await;
    let config = format!(
        r#"{}
[servers.ts]
upstream = "{}"
scopes = ["mcp:read"]
tools = {{ "echo" = ["mcp:write"] }}
filter_tools = true
"#,
        head(port, &provider),
        upstream.url
    );
    let proxy = Proxy::start(&config, &[]).await;

    let reader = token(&provider, "mcp:read", &route).await;
    let mcp = Mcp::new(&route, Some(&reader));
    let tools = mcp.tool_names(1).await;
    assert!(tools.contains(&"whoami".to_owned()), "{tools:?}");
    assert!(
        !tools.contains(&"echo".to_owned()),
        "echo needs mcp:write: {tools:?}"
    );
    let refused = mcp.call(2, "echo", json!({"text": "x"})).await;
    assert_eq!(refused.status, 403);
    let challenge = refused.header("www-authenticate");
    assert!(
        challenge.contains(r#"error="insufficient_scope""#),
        "{challenge}"
    );
    assert!(challenge.contains("mcp:write"), "{challenge}");
    let metadata_url = format!(
        "{}/.well-known/oauth-protected-resource/servers/ts/mcp",
        proxy.origin
    );
    assert!(challenge.contains(&metadata_url), "{challenge}");
    let metadata: Value = reqwest::get(&metadata_url)
        .await
        .expect("metadata")
        .json()
        .await
        .expect("JSON");
    assert_eq!(metadata["resource"], route.as_str());
    assert_eq!(
        metadata["authorization_servers"][0],
        provider.issuer().as_str()
    );

    // Stepped up: the tool is listed and answers.
    let writer = token(&provider, "mcp:read mcp:write", &route).await;
    let mcp = Mcp::new(&route, Some(&writer));
    assert!(mcp.tool_names(3).await.contains(&"echo".to_owned()));
    assert_eq!(mcp.call(4, "echo", json!({"text": "x"})).await.status, 200);
}

#[tokio::test]
async fn an_sse_event_reaches_the_client_as_the_upstream_sends_it() {
    let port = common::free_port();
    let route = format!("http://127.0.0.1:{port}/servers/ts/mcp");
    let provider = idp::oidc_provider(&["--resource", &route]).await;
    let upstream = Upstream::start(Sdk::TypeScript, &[]).await;
    let config = format!(
        "{}\n[servers.ts]\nupstream = \"{}\"\n",
        head(port, &provider),
        upstream.url
    );
    let _proxy = Proxy::start(&config, &[]).await;
    let client_token = token(&provider, "mcp:read", &route).await;
    let mut mcp = Mcp::new(&route, Some(&client_token));
    mcp.initialize().await;

    // Five events 300 ms apart; each says when (after the call began) it was sent.
    let started = Instant::now();
    let response = mcp
        .request(
            reqwest::Method::POST,
            Some(&json!({
                "jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": "slow_stream", "arguments": {"duration_ms": 1500, "interval_ms": 300}}
            })),
        )
        .send()
        .await
        .expect("call");
    assert_eq!(response.status().as_u16(), 200);
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    let mut late = Vec::new();
    let mut events = 0;
    let mut result_at = None;
    use futures_util::StreamExt as _;
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), body.next())
        .await
        .expect("the stream stalled")
    {
        buffer.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
        let arrived = started.elapsed();
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            for message in common::messages(&event) {
                if let Some(sent) = message["params"]["data"]["elapsed_ms"].as_u64() {
                    events += 1;
                    // When it arrived, after it was sent (the clocks start within
                    // the request's own transit of each other).
                    let after = arrived.saturating_sub(Duration::from_millis(sent));
                    if after > Duration::from_millis(100) {
                        late.push((sent, arrived));
                    }
                } else if message["id"] == 1 {
                    result_at = Some(arrived);
                }
            }
        }
    }
    assert!(events >= 4, "{events} events");
    assert!(late.is_empty(), "events held back by the proxy: {late:?}");
    let result_at = result_at.expect("the result");
    assert!(
        result_at >= Duration::from_millis(1400),
        "the stream stayed open until the tool was done: {result_at:?}"
    );
}

#[tokio::test]
async fn rmcp_client_calls_a_python_server_through_the_proxy() {
    use rmcp::ServiceExt as _;
    use rmcp::model::CallToolRequestParams;
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

    let port = common::free_port();
    let route = format!("http://127.0.0.1:{port}/servers/py/mcp");
    let provider = idp::oidc_provider(&["--resource", &route]).await;
    let upstream = Upstream::start(Sdk::Python, &["--stateless"]).await;
    let config = format!(
        "{}\n[servers.py]\nupstream = \"{}\"\nscopes = [\"mcp:read\"]\n",
        head(port, &provider),
        upstream.url
    );
    let _proxy = Proxy::start(&config, &[]).await;
    let client_token = token(&provider, "mcp:read", &route).await;
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(route.as_str())
            .auth_header(client_token.clone()),
    );
    let mcp = ().serve(transport).await.expect("MCP session through the proxy");
    let tools = mcp.list_tools(None).await.expect("tools/list");
    assert!(tools.tools.iter().any(|t| t.name == "echo"));
    let echo = mcp
        .call_tool(
            CallToolRequestParams::new("echo").with_arguments(
                json!({"text": "from rmcp"})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ),
        )
        .await
        .expect("echo");
    assert!(format!("{echo:?}").contains("from rmcp"));
    let _ = mcp.cancel().await;
    assert!(!carries(&upstream.seen().await, &client_token));
}

#[tokio::test]
async fn typescript_sdk_client_steps_up_through_the_proxy() {
    let port = common::free_port();
    let route = format!("http://127.0.0.1:{port}/servers/ts/mcp");
    let provider = idp::oidc_provider(&["--resource", &route]).await;
    let upstream = Upstream::start(Sdk::TypeScript, &[]).await;
    let config = format!(
        r#"{}
[servers.ts]
upstream = "{}"
scopes = ["mcp:read"]
tools = {{ "write" = ["mcp:write"] }}
"#,
        head(port, &provider),
        upstream.url
    );
    let _proxy = Proxy::start(&config, &[]).await;
    for flow in ["client_credentials", "step_up"] {
        let output = tokio::process::Command::new("node")
            .arg(common::root().join("tests/node/mcp_client.mjs"))
            .args(["--server", &route, "--flow", flow, "--timeout", "60"])
            .output()
            .await
            .expect("node mcp_client.mjs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{flow}: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let report: Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
        assert_eq!(report["ok"], true, "{report}");
        if flow == "step_up" {
            // 403 insufficient_scope from the gateway, re-authorization, and the call.
            assert!(
                report["client_fallbacks"]
                    .as_array()
                    .is_none_or(Vec::is_empty),
                "{report}"
            );
            assert!(
                report["exchanges"]
                    .to_string()
                    .contains(r#""SERVER/servers/ts/mcp",403"#),
                "{report}"
            );
            assert_eq!(
                report["results"]["write"]["written"]
                    .as_str()
                    .map(|t| t.starts_with("step-up")),
                Some(true),
                "{report}"
            );
        }
    }
}
