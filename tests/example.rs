//! The flagship example, run as a process the way the README says: a real rmcp MCP
//! server behind the stack, on the embedded issuer and on a real (loopback) issuer
//! through `--issuer`.

mod support;

use serde_json::{Value, json};
use support::process::{mcp_call, start, whoami};
use tokio::process::Command;

#[tokio::test]
async fn the_example_runs_on_its_embedded_issuer_and_prints_a_working_token() {
    let running = start("mcp_server", &["--listen", "127.0.0.1:0"], "try:").await;
    let resource = running.field("resource");
    let token = running.field("token");
    assert!(
        running
            .field("metadata")
            .ends_with("/.well-known/oauth-protected-resource/mcp")
    );

    // No token: 401 with the challenge a client discovers everything from.
    let answer = mcp_call(&resource, None, whoami()).await;
    assert_eq!(answer.status(), 401);
    let challenge = answer.headers()["www-authenticate"]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        challenge.contains(&format!(
            "resource_metadata=\"{}\"",
            running.field("metadata")
        )),
        "{challenge}"
    );

    // The metadata document names the resource and the embedded issuer.
    let doc: Value = support::process::get_json(&running.field("metadata")).await;
    assert_eq!(doc["resource"], resource);
    assert_eq!(
        doc["authorization_servers"][0],
        running
            .field("issuer")
            .split(' ')
            .next()
            .unwrap_or_default()
    );

    // The printed token works: the rmcp tool sees the verified principal.
    let answer = mcp_call(&resource, Some(&token), whoami()).await;
    assert_eq!(answer.status(), 200);
    let reply: Value = answer.json().await.expect("json-rpc reply");
    assert_eq!(reply["result"]["structuredContent"]["subject"], "demo-user");
    assert_eq!(reply["result"]["structuredContent"]["kind"], "Jwt");

    // A tampered token is refused before the MCP server sees it.
    let answer = mcp_call(&resource, Some(&format!("{token}x")), whoami()).await;
    assert_eq!(answer.status(), 401);
}

#[tokio::test]
async fn the_example_trusts_a_real_issuer_through_lazy_discovery() {
    let key = support::SigningKey::rsa("idp-key");
    let idp = support::TestIdp::start(&[&key]).await;
    let running = start(
        "mcp_server",
        &["--listen", "127.0.0.1:0", "--issuer", &idp.issuer],
        "issuer:",
    )
    .await;
    let resource = running.field("resource");
    assert_eq!(
        idp.counters().discovery(),
        0,
        "no discovery at start-up (R-KEY-2)"
    );
    let token = key.sign(&support::claims(&idp.issuer, &resource));
    let answer = mcp_call(&resource, Some(&token), whoami()).await;
    assert_eq!(answer.status(), 200);
    let reply: Value = answer.json().await.expect("json-rpc reply");
    assert_eq!(reply["result"]["structuredContent"]["issuer"], idp.issuer);
    assert_eq!(idp.counters().jwks(), 1);
}

#[tokio::test]
async fn the_example_prints_a_dpop_bound_token_and_a_proof_that_works_once() {
    let running = start(
        "mcp_server",
        &["--listen", "127.0.0.1:0", "--dpop", "required"],
        "dpop-proof:",
    )
    .await;
    let resource = running.field("resource");
    let token = running.field("dpop-token");
    let proof = running.field("dpop-proof");
    let key: Value = serde_json::from_str(&running.field("dpop-key")).expect("a JWK");
    assert_eq!(key["kty"], "EC");
    assert!(
        key["d"].is_string(),
        "the private key, for a DPoP client: {key}"
    );
    let dpop_call = |proof: String| {
        reqwest::Client::new()
            .post(&resource)
            .header("authorization", format!("DPoP {token}"))
            .header("dpop", proof)
            .header("accept", "application/json, text/event-stream")
            .json(&whoami())
            .send()
    };
    let answer = dpop_call(proof.clone()).await.expect("request");
    assert_eq!(answer.status(), 200);
    let reply: Value = answer.json().await.expect("json-rpc reply");
    assert_eq!(reply["result"]["structuredContent"]["subject"], "demo-user");
    // The same proof again: refused, it was good for one call.
    let again = dpop_call(proof).await.expect("request");
    assert_eq!(again.status(), 401);
    let challenges: Vec<&str> = again
        .headers()
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert_eq!(challenges.len(), 1, "required: DPoP only {challenges:?}");
    assert!(
        challenges[0].starts_with("DPoP error=\"invalid_dpop_proof\""),
        "{challenges:?}"
    );
    // --dpop required: the plain token is refused as Bearer.
    let bearer = mcp_call(&resource, Some(&running.field("token")), whoami()).await;
    assert_eq!(bearer.status(), 401);
    let doc = support::process::get_json(&running.field("metadata")).await;
    assert_eq!(doc["dpop_bound_access_tokens_required"], json!(true));
}

#[tokio::test]
async fn the_example_explains_bad_flags() {
    let output = Command::new(support::process::example_binary("mcp_server"))
        .arg("--bogus")
        .output()
        .await
        .expect("run the example");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("unknown argument") && stderr.contains("--issuer URL"),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_example_accepts_opaque_tokens_through_introspection_flags() {
    let idp = support::TestIdp::start(&[]).await;
    let (id, secret) = support::INTROSPECTION_CLIENT;
    let running = start(
        "mcp_server",
        &[
            "--listen",
            "127.0.0.1:0",
            "--issuer",
            &idp.issuer,
            "--introspection-client-id",
            id,
            "--introspection-client-secret",
            secret,
        ],
        "issuer:",
    )
    .await;
    let resource = running.field("resource");
    idp.set_introspection(
        "opaque-token",
        json!({"active": true, "iss": idp.issuer, "sub": "opaque-user", "aud": resource, "scope": "mcp:read", "exp": support::now() + 600}),
    );
    let answer = mcp_call(&resource, Some("opaque-token"), whoami()).await;
    assert_eq!(answer.status(), 200);
    let reply: Value = answer.json().await.expect("json-rpc reply");
    assert_eq!(
        reply["result"]["structuredContent"]["subject"],
        "opaque-user"
    );
    assert_eq!(reply["result"]["structuredContent"]["kind"], "Introspected");
    assert_eq!(
        mcp_call(&resource, Some("unknown-token"), whoami())
            .await
            .status(),
        401
    );
}

#[tokio::test]
async fn the_example_shows_the_step_up_flow_and_filters_tools_on_request() {
    let running = start(
        "mcp_server",
        &["--listen", "127.0.0.1:0", "--filter-tools"],
        "try:",
    )
    .await;
    let resource = running.field("resource");
    let (read, write) = (running.field("token"), running.field("write-token"));
    let write_call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "write", "arguments": {"text": "hello"}}});

    // The printed token has mcp:read: write asks to step up to mcp:write.
    let answer = mcp_call(&resource, Some(&read), write_call.clone()).await;
    assert_eq!(answer.status(), 403);
    let challenge = answer.headers()["www-authenticate"]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        challenge.starts_with("Bearer error=\"insufficient_scope\"")
            && challenge.ends_with("scope=\"mcp:write\""),
        "{challenge}"
    );
    let answer = mcp_call(&resource, Some(&write), write_call).await;
    assert_eq!(answer.status(), 200);
    let reply: Value = answer.json().await.expect("json-rpc reply");
    assert_eq!(reply["result"]["structuredContent"]["notes"], 1);

    // --filter-tools: the read token is not offered `write`.
    let list = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"});
    for (token, expected) in [
        (&read, vec!["notes", "whoami"]),
        (&write, vec!["notes", "whoami", "write"]),
    ] {
        let reply: Value = mcp_call(&resource, Some(token), list.clone())
            .await
            .json()
            .await
            .expect("json-rpc reply");
        let mut names: Vec<&str> = reply["result"]["tools"]
            .as_array()
            .map(|t| t.iter().filter_map(|t| t["name"].as_str()).collect())
            .unwrap_or_default();
        names.sort_unstable();
        assert_eq!(names, expected);
    }
}

/// A `whoami` call to the example as a browser page of `origin` would make it.
async fn call_from(resource: &str, origin: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(resource)
        .header("accept", "application/json, text/event-stream")
        .header("origin", origin)
        .json(&whoami());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("request to the example")
}

#[tokio::test]
async fn a_page_of_a_foreign_origin_is_refused_403_before_its_token_is_looked_at() {
    // R-MCP-7: DNS rebinding. A page of http://evil.example that reached the server
    // through a rebound name sends its own origin; with or without a token it gets the
    // transport's 403 (a JSON-RPC error without id), never the 401 challenge.
    let running = start(
        "mcp_server",
        &[
            "--listen",
            "127.0.0.1:0",
            "--allow-origin",
            "http://localhost:6274",
        ],
        "try:",
    )
    .await;
    let resource = running.field("resource");
    let token = running.field("token");
    for token in [Some(token.as_str()), None] {
        let answer = call_from(&resource, "http://evil.example", token).await;
        assert_eq!(answer.status(), 403);
        assert!(answer.headers().get("www-authenticate").is_none());
        let body: Value = answer.json().await.expect("a JSON-RPC error");
        assert_eq!(body["jsonrpc"], "2.0");
        assert_eq!(body["error"]["code"], -32000);
        assert!(body.get("id").is_none(), "{body}");
    }
    // A sandboxed frame or file: page (origin `null`) is foreign too.
    let answer = call_from(&resource, "null", Some(&token)).await;
    assert_eq!(answer.status(), 403);

    // The resource's own origin and the allowed one pass to the tool.
    let own = resource.trim_end_matches("/mcp").to_owned();
    for origin in [own.as_str(), "http://localhost:6274"] {
        let answer = call_from(&resource, origin, Some(&token)).await;
        assert_eq!(answer.status(), 200, "{origin}");
        let reply: Value = answer.json().await.expect("json-rpc reply");
        assert_eq!(reply["result"]["structuredContent"]["subject"], "demo-user");
    }
    // Without a token, an allowed origin meets the usual challenge.
    let answer = call_from(&resource, "http://localhost:6274", None).await;
    assert_eq!(answer.status(), 401);

    // The Origin check comes first of all (R-MCP-7): a foreign page cannot even get
    // the metadata document; clients that are not browsers send no Origin and do.
    let metadata = running.field("metadata");
    let answer = reqwest::Client::new()
        .get(&metadata)
        .header("origin", "http://evil.example")
        .send()
        .await
        .expect("GET metadata");
    assert_eq!(answer.status(), 403);
    let answer = reqwest::get(&metadata).await.expect("GET metadata");
    assert_eq!(answer.status(), 200);

    // A value that is not an origin is a start-up error that says so.
    let output = Command::new(support::process::example_binary("mcp_server"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--allow-origin",
            "http://localhost:6274/app",
        ])
        .output()
        .await
        .expect("run the example");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not an origin"), "{stderr}");
}

#[tokio::test]
async fn a_browser_client_of_an_allowed_origin_preflights_without_a_token_and_reads_every_answer() {
    // R-MCP-7, CORS: the preflight needs no token; the 401's challenge, the tool's
    // answer and its session id are readable by the allowed page; a foreign page is
    // never told it may read anything, its 403 included.
    const APP: &str = "http://localhost:6274";
    let running = start(
        "mcp_server",
        &["--listen", "127.0.0.1:0", "--allow-origin", APP],
        "try:",
    )
    .await;
    let resource = running.field("resource");
    let token = running.field("token");
    let client = reqwest::Client::new();
    let preflight = client
        .request(reqwest::Method::OPTIONS, &resource)
        .header("origin", APP)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type, mcp-protocol-version, mcp-session-id",
        )
        .send()
        .await
        .expect("preflight");
    assert_eq!(preflight.status(), 200);
    let header = |answer: &reqwest::Response, name: &str| {
        answer
            .headers()
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join(", ")
    };
    assert_eq!(header(&preflight, "access-control-allow-origin"), APP);
    assert!(header(&preflight, "access-control-allow-methods").contains("POST"));
    let allowed = header(&preflight, "access-control-allow-headers");
    for name in ["authorization", "mcp-protocol-version", "mcp-session-id"] {
        assert!(allowed.contains(name), "{allowed}");
    }
    assert_eq!(header(&preflight, "access-control-allow-credentials"), "");

    let refused = call_from(&resource, APP, None).await;
    assert_eq!(refused.status(), 401);
    assert_eq!(header(&refused, "access-control-allow-origin"), APP);
    assert!(header(&refused, "access-control-expose-headers").contains("www-authenticate"));
    assert!(header(&refused, "www-authenticate").starts_with("Bearer "));

    let answered = call_from(&resource, APP, Some(&token)).await;
    assert_eq!(answered.status(), 200);
    assert_eq!(header(&answered, "access-control-allow-origin"), APP);
    assert!(header(&answered, "access-control-expose-headers").contains("mcp-session-id"));

    let foreign = call_from(&resource, "http://evil.example", Some(&token)).await;
    assert_eq!(foreign.status(), 403);
    assert_eq!(header(&foreign, "access-control-allow-origin"), "");
    let foreign_preflight = client
        .request(reqwest::Method::OPTIONS, &resource)
        .header("origin", "http://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .expect("preflight");
    assert_eq!(foreign_preflight.status(), 403);
    assert_eq!(
        header(&foreign_preflight, "access-control-allow-origin"),
        ""
    );
    // The Mcp-Param-* headers of the tools behind may be sent by an allowed page.
    let params = client
        .request(reqwest::Method::OPTIONS, &resource)
        .header("origin", APP)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, mcp-param-region",
        )
        .send()
        .await
        .expect("preflight");
    assert!(header(&params, "access-control-allow-headers").contains("mcp-param-region"));
}

#[tokio::test]
async fn the_example_writes_the_audit_trail_as_json_lines() {
    let path =
        std::env::temp_dir().join(format!("mcp-gatekeeper-audit-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let log = path.to_string_lossy().into_owned();
    let running = start(
        "mcp_server",
        &["--listen", "127.0.0.1:0", "--audit-log", &log],
        "try:",
    )
    .await;
    let resource = running.field("resource");
    let token = running.field("token");
    assert_eq!(mcp_call(&resource, None, whoami()).await.status(), 401);
    assert_eq!(
        mcp_call(&resource, Some(&token), whoami()).await.status(),
        200
    );
    // Written when each answer's head was ready; the file is read after both answers.
    let text = std::fs::read_to_string(&path).expect("the audit log was written");
    let _ = std::fs::remove_file(&path);
    let events: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    assert_eq!(events.len(), 2, "{text}");
    assert_eq!(events[0]["decision"], "reject", "{text}");
    assert_eq!(events[0]["kind"], "missing_token", "{text}");
    assert_eq!(events[0]["status"], 401, "{text}");
    assert_eq!(events[1]["decision"], "allow", "{text}");
    assert_eq!(events[1]["subject"], "demo-user", "{text}");
    assert_eq!(events[1]["mcp_method"], "tools/call", "{text}");
    assert_eq!(events[1]["tool"], "whoami", "{text}");
    assert_eq!(events[1]["target"], "mcp_gatekeeper::audit", "{text}");
    assert!(events[1]["timestamp"].is_string(), "{text}");
    for part in token.split('.') {
        assert!(
            !text.contains(part),
            "the audit trail shows a part of the token"
        );
    }
}

#[cfg(feature = "metrics")]
#[tokio::test]
async fn the_example_serves_prometheus_metrics_that_count_its_decisions() {
    let running = start(
        "mcp_server",
        &["--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0"],
        "try:",
    )
    .await;
    let resource = running.field("resource");
    let token = running.field("token");
    for _ in 0..2 {
        assert_eq!(mcp_call(&resource, None, whoami()).await.status(), 401);
    }
    for _ in 0..3 {
        assert_eq!(
            mcp_call(&resource, Some(&token), whoami()).await.status(),
            200
        );
    }
    let scrape = reqwest::get(running.field("metrics"))
        .await
        .expect("scrape");
    assert_eq!(scrape.status(), 200);
    let text = scrape.text().await.expect("text");
    let samples = support::prometheus::parse(&text);
    let count = |labels: &[(&str, &str)]| {
        let key = support::prometheus::sample("mcp_gatekeeper_decisions_total", labels);
        samples.get(&key).copied().unwrap_or(0.0)
    };
    let issuer = running.field("issuer");
    let issuer = issuer.split(' ').next().unwrap_or_default();
    let refused = [
        ("decision", "reject"),
        ("issuer", "none"),
        ("rule", "R-BEAR-3"),
        ("status", "401"),
    ];
    let allowed = [
        ("decision", "allow"),
        ("issuer", issuer),
        ("rule", "none"),
        ("status", "200"),
    ];
    assert_eq!(count(&refused), 2.0, "{text}");
    assert_eq!(count(&allowed), 3.0, "{text}");
    let calls = support::prometheus::sample(
        "mcp_gatekeeper_mcp_requests_total",
        &[
            ("decision", "allow"),
            ("mcp_method", "tools/call"),
            ("tool", "whoami"),
        ],
    );
    assert_eq!(samples.get(&calls).copied(), Some(3.0), "{text}");
    assert!(
        text.contains("# TYPE mcp_gatekeeper_decisions_total counter"),
        "{text}"
    );
    assert!(!text.contains(&token[..20]), "a token in the metrics");
}

/// `--cedar FILE`: the policies of the file decide calls and filter `tools/list` (the
/// tools' hints as the example's server gives them), and the file is read again on
/// `SIGHUP`; a file that does not validate changes nothing.
#[cfg(feature = "cedar")]
#[tokio::test]
async fn the_example_decides_by_a_cedar_policy_file_read_again_on_sighup() {
    let path = std::env::temp_dir().join(format!(
        "mcp-gatekeeper-policies-{}.cedar",
        std::process::id()
    ));
    let read_only = r#"permit(principal, action == Action::"call_tool", resource)
                         when { resource.readOnlyHint };"#;
    std::fs::write(&path, read_only).expect("write the policy file");
    let file = path.to_string_lossy().into_owned();
    let running = start(
        "mcp_server",
        &["--listen", "127.0.0.1:0", "--cedar", &file],
        "try:",
    )
    .await;
    let resource = running.field("resource");
    let write = running.field("write-token");
    let list = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"});
    let write_call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "write", "arguments": {"text": "hello"}}});
    let listed = |reply: Value| {
        let mut names: Vec<String> = reply["result"]["tools"]
            .as_array()
            .map(|t| {
                t.iter()
                    .filter_map(|t| t["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        names.sort_unstable();
        names
    };
    let reply: Value = mcp_call(&resource, Some(&write), list.clone())
        .await
        .json()
        .await
        .expect("json-rpc reply");
    // Filtered without --filter-tools, by the hints the example's tools carry.
    assert_eq!(listed(reply), ["notes", "whoami"]);
    let answer = mcp_call(&resource, Some(&write), write_call.clone()).await;
    assert_eq!(answer.status(), 403);
    let challenge = answer.headers()["www-authenticate"]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!challenge.contains("insufficient_scope"), "{challenge}");
    assert_eq!(
        mcp_call(&resource, Some(&write), whoami()).await.status(),
        200
    );

    let hang_up = || {
        std::process::Command::new("kill")
            .args(["-HUP", &running.pid().to_string()])
            .status()
            .expect("kill -HUP")
    };
    // A file that names an attribute that does not exist: the policies stay.
    std::fs::write(
        &path,
        r#"permit(principal, action, resource) when { resource.owner == "me" };"#,
    )
    .expect("write the policy file");
    assert!(hang_up().success());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        mcp_call(&resource, Some(&write), write_call.clone())
            .await
            .status(),
        403
    );
    assert_eq!(
        mcp_call(&resource, Some(&write), whoami()).await.status(),
        200
    );

    std::fs::write(
        &path,
        format!("{read_only}\npermit(principal, action, resource == Tool::\"write\");"),
    )
    .expect("write the policy file");
    assert!(hang_up().success());
    let mut status = 0;
    for _ in 0..50 {
        status = mcp_call(&resource, Some(&write), write_call.clone())
            .await
            .status()
            .as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        status, 200,
        "the new policies are in force within 5 s of SIGHUP"
    );
    let reply: Value = mcp_call(&resource, Some(&write), list)
        .await
        .json()
        .await
        .expect("json-rpc reply");
    assert_eq!(listed(reply), ["notes", "whoami", "write"]);
    let _ = std::fs::remove_file(&path);
}
