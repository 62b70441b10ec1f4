//! The official MCP TypeScript SDK client (`@modelcontextprotocol/sdk`, pinned in
//! tests/browser) in a real browser: Debian's headless Chromium driven by playwright-core
//! (`tests/browser/run.mjs`), on a page of another origin than the example server.
//!
//! On the origin the server was told to allow (`--allow-origin`), the page reads the
//! 401 challenge's `WWW-Authenticate` from JS, the metadata document cross-origin, calls
//! `whoami` through the SDK, and reads the 403 `insufficient_scope` challenge of `write`.
//! On any other origin the page reads nothing: each of its fetches fails with a
//! `TypeError`. The server answers all it is sent from there, preflights, the metadata
//! `GET` and the CORS "simple" POST (sent without a preflight), with the `Origin`
//! check's 403, which the driver sees in the DevTools protocol.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::process::start;
use tokio::process::Command;

/// Runs tests/browser/run.mjs against `resource`; its JSON report.
async fn browser(resource: &str, token: &str, write_token: &str, page_port: u16) -> Value {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    let page_port = page_port.to_string();
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        Command::new("node")
            .arg("run.mjs")
            .args([
                "--mcp-resource",
                resource,
                "--token",
                token,
                "--write-token",
                write_token,
                "--page-port",
                &page_port,
                "--timeout",
                "90",
            ])
            .arg("--out")
            .arg(&out)
            .current_dir(dir)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the browser test finished in time")
    .unwrap_or_else(|e| {
        panic!(
            "cannot run node ({e}): Node.js 20+, `npm ci` in tests/browser and Debian's \
             chromium (apt-get install chromium) are needed"
        )
    });
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| {
            panic!(
                "no JSON report ({e}): {stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    assert!(output.status.success(), "{report}");
    assert_eq!(report["ok"], true, "{report}");
    report
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|v| v.as_str().unwrap_or_default())
        .collect()
}

/// One browser run covers both origins (Chromium is the slow part on two cores).
#[tokio::test]
async fn the_sdk_in_a_browser_reads_the_challenges_on_an_allowed_origin_and_nothing_on_another() {
    let page_port = support::closed_port().await.port();
    let page_origin = format!("http://localhost:{page_port}");
    let running = start(
        "mcp_server",
        &["--listen", "127.0.0.1:0", "--allow-origin", &page_origin],
        "try:",
    )
    .await;
    let resource = running.field("resource");
    let report = browser(
        &resource,
        &running.field("token"),
        &running.field("write-token"),
        page_port,
    )
    .await;

    // ---- the allowed origin ----
    let allowed = &report["allowed"];
    assert_eq!(allowed["page_origin"], page_origin.as_str());
    let steps = &allowed["steps"];
    // 1: the 401 challenge, readable from JS (WWW-Authenticate is exposed).
    assert_eq!(steps["challenge"]["http_status"], 401, "{report}");
    assert_eq!(
        steps["challenge"]["resource_metadata"],
        running.field("metadata").as_str()
    );
    assert_eq!(steps["challenge"]["scope"], "mcp:read");
    // 2: the metadata document, cross-origin.
    assert_eq!(steps["metadata"]["resource"], resource.as_str());
    assert_eq!(
        steps["metadata"]["scopes_supported"],
        serde_json::json!(["mcp:read", "mcp:write"])
    );
    // 3: the SDK's session.
    assert_eq!(steps["whoami"]["subject"], "demo-user");
    assert_eq!(steps["whoami"]["whoami"]["scopes"][0], "mcp:read");
    // 4: the step-up challenge as the page saw it, and the SDK's 403.
    assert_eq!(steps["step_up"]["sdk_error_code"], 403);
    assert_eq!(steps["step_up"]["challenge"]["error"], "insufficient_scope");
    assert_eq!(steps["step_up"]["challenge"]["scope"], "mcp:write");
    // 5: the write token writes.
    assert_eq!(steps["write"]["result"]["written_by"], "demo-user");

    // What the page's fetch saw, in the order it made the requests: the probe, the
    // metadata, the SDK's session (initialize, initialized, the SSE GET: 405, no
    // stream; tools/list, whoami), the 403, the write token's session and write, and
    // the text/plain POST without a token.
    let session = [
        "POST SERVER/mcp 200",
        "POST SERVER/mcp 202",
        "GET SERVER/mcp 405",
    ];
    let mut expected = vec![
        "POST SERVER/mcp 401",
        "GET SERVER/.well-known/oauth-protected-resource/mcp 200",
    ];
    expected.extend(session);
    expected.extend(["POST SERVER/mcp 200", "POST SERVER/mcp 200"]);
    expected.push("POST SERVER/mcp 403");
    expected.extend(session);
    expected.push("POST SERVER/mcp 200");
    expected.push("POST SERVER/mcp 401");
    assert_eq!(strings(&allowed["page_exchanges"]), expected, "{report}");

    // The browser's view: one preflight (its answer is cached for the rest), answered
    // without a token; every answer names the page's origin.
    let preflights: Vec<&str> = strings(&allowed["network"])
        .into_iter()
        .filter(|e| e.ends_with("(preflight)"))
        .collect();
    assert_eq!(
        preflights,
        ["OPTIONS SERVER/mcp 200 (preflight)"],
        "{report}"
    );
    for e in allowed["network_detail"]
        .as_array()
        .expect("network_detail")
    {
        assert_eq!(
            e["access_control_allow_origin"],
            page_origin.as_str(),
            "{e}"
        );
    }

    // ---- another origin (http://localhost:OTHER_PORT, picked by run.mjs) ----
    let foreign = &report["foreign"];
    assert_ne!(foreign["page_origin"], allowed["page_origin"]);
    for step in ["challenge", "metadata", "whoami", "write", "simple"] {
        assert_eq!(
            foreign["steps"][step]["error"], "TypeError: Failed to fetch",
            "{step}: {report}"
        );
    }
    // The page read no answer at all.
    for e in strings(&foreign["page_exchanges"]) {
        assert!(e.ends_with("TypeError: Failed to fetch"), "{e}");
    }
    // The server: the Origin check's 403 for the preflights (so the browser never
    // sent those requests), the metadata GET and the POST that needs no preflight.
    let network = strings(&foreign["network"]);
    assert!(
        network.contains(&"POST SERVER/mcp 403 (net::ERR_FAILED: MissingAllowOriginHeader)"),
        "{report}"
    );
    assert!(
        network.contains(
            &"GET SERVER/.well-known/oauth-protected-resource/mcp 403 (net::ERR_FAILED: MissingAllowOriginHeader)"
        ),
        "{report}"
    );
    assert_eq!(
        network
            .iter()
            .filter(|e| e.starts_with("OPTIONS SERVER/mcp 403"))
            .count(),
        3,
        "{report}"
    );
    assert_eq!(
        network
            .iter()
            .filter(|e| e.ends_with("(net::ERR_FAILED: PreflightMissingAllowOriginHeader)"))
            .count(),
        3,
        "the probe, the SDK's initialize and the write token's initialize: {report}"
    );
    for e in foreign["network_detail"]
        .as_array()
        .expect("network_detail")
    {
        assert!(e["access_control_allow_origin"].is_null(), "{e}");
    }
}
