//! The official MCP conformance suite (`@modelcontextprotocol/conformance`, pinned in
//! tests/conformance/package.json) against the example server. The suite sends no
//! token, so the example opens exactly the operations its scenarios need (`--public`,
//! `--public-tool`); everything else keeps the 401. `tests/conformance/run.mjs` runs
//! each scenario with Node.js 22 (the suite does not run on 20): target/node22, which
//! scripts/test.sh installs, or $MCP_GATEKEEPER_NODE22. Every check is asserted, so a
//! change in the server or the suite shows up here.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::process::{Running, start};
use tokio::process::Command;

/// What the scenarios reach without a token:
/// - `initialize`, `notifications/initialized`: dns-rebinding-protection at 2025-11-25
///   (the suite's default for it) initializes, then notifies;
/// - `server/discover`: the same scenario at 2026-07-28;
/// - `tools/list`: the header scenarios find their tool with it;
/// - `notes`: http-header-validation calls the first listed tool with `{}` (rmcp lists
///   tools sorted by name: notes, whoami, write), and notes' `contains` argument is
///   mirrored in `Mcp-Param-Contains` for http-custom-header-server-validation.
const PUBLIC: [&str; 10] = [
    "--public",
    "server/discover",
    "--public",
    "initialize",
    "--public",
    "notifications/initialized",
    "--public",
    "tools/list",
    "--public-tool",
    "notes",
];

const DNS: [&str; 2] = [
    "dns-rebinding-protection",
    "dns-rebinding-protection@2026-07-28",
];

async fn example(public: bool) -> Running {
    let mut args = vec!["--listen", "127.0.0.1:0"];
    if public {
        args.extend_from_slice(&PUBLIC);
    }
    start("mcp_server", &args, "try:").await
}

/// Runs the scenarios (`NAME` or `NAME@SPEC_VERSION`) against `resource`: run.mjs's
/// report.
async fn conformance(resource: &str, scenarios: &[&str]) -> Value {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/conformance");
    let mut command = Command::new("node");
    command
        .arg("run.mjs")
        .args(["--url", resource, "--timeout", "30"])
        .current_dir(dir)
        .kill_on_drop(true);
    for scenario in scenarios {
        command.args(["--scenario", scenario]);
    }
    // run.mjs kills a scenario 45 s after it starts (--timeout 30 + 15).
    let limit = Duration::from_secs(30 + 45 * scenarios.len() as u64);
    let output = tokio::time::timeout(limit, command.output())
        .await
        .expect("the conformance suite finished in time")
        .unwrap_or_else(|e| {
            panic!(
                "cannot run node ({e}): Node.js 20+, `npm ci` in tests/conformance and \
                 Node.js 22 under target/node22 (scripts/test.sh) are needed"
            )
        });
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the conformance suite did not run: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("no JSON report ({e}): {stdout}"));
    let major = report["node"]
        .as_str()
        .and_then(|v| v.strip_prefix('v')?.split('.').next()?.parse::<u32>().ok());
    assert!(major.is_some_and(|m| m >= 22), "{report}");
    assert_eq!(report["suite"], "0.2.0-alpha.12", "{report}");
    report
}

/// A scenario's checks in the suite's order, as `STATUS id name [HTTP status]` (ids
/// repeat within a scenario; names tell the cases apart).
fn checks(report: &Value, scenario: &str) -> Vec<String> {
    report["scenarios"][scenario]["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("no {scenario} in {report}"))
        .iter()
        .map(|c| {
            let text = |key: &str| c[key].as_str().unwrap_or_default().to_owned();
            let line = format!("{} {} {}", text("status"), text("id"), text("name"));
            match c["http"].as_u64() {
                Some(status) => format!("{line} {status}"),
                None => line,
            }
        })
        .collect()
}

/// A scenario's report, messages included, for assertion messages.
fn details(report: &Value, scenario: &str) -> String {
    serde_json::to_string_pretty(&report["scenarios"][scenario]).unwrap_or_default()
}

#[tokio::test]
async fn dns_rebinding_protection_passes_at_both_revisions() {
    let server = example(true).await;
    let report = conformance(&server.field("resource"), &DNS).await;
    for scenario in DNS {
        assert_eq!(
            checks(&report, scenario),
            [
                // Host and Origin evil.example.com: the Origin check's 403, first of all.
                "SUCCESS localhost-host-rebinding-rejected DNSRebindingRejected 403",
                // The server's own Host and Origin: initialize (then initialized) at
                // 2025-11-25, server/discover at 2026-07-28; public, so no token needed.
                "SUCCESS localhost-host-valid-accepted LocalhostHostAccepted 200",
            ],
            "{}",
            details(&report, scenario)
        );
    }
}

#[tokio::test]
async fn without_public_operations_the_suite_meets_the_challenge() {
    let server = example(false).await;
    let report = conformance(&server.field("resource"), &DNS).await;
    for scenario in DNS {
        assert_eq!(
            checks(&report, scenario),
            [
                "SUCCESS localhost-host-rebinding-rejected DNSRebindingRejected 403",
                "FAILURE localhost-host-valid-accepted LocalhostHostAccepted 401",
            ],
            "{}",
            details(&report, scenario)
        );
    }
}

#[tokio::test]
async fn the_standard_headers_are_validated_as_sep_2243_says() {
    let server = example(true).await;
    let report = conformance(&server.field("resource"), &["http-header-validation"]).await;
    assert_eq!(
        checks(&report, "http-header-validation"),
        [
            // Body tools/list, Mcp-Method: prompts/list.
            "SUCCESS sep-2243-server-reject-invalid-headers ServerRejectsMismatchedMethodHeader 400",
            "SUCCESS sep-2243-server-reject-error-code ServerRejectsMismatchedMethodHeaderErrorCode 400",
            // No Mcp-Method.
            "SUCCESS sep-2243-server-reject-invalid-headers ServerRejectsMissingMethodHeader 400",
            "SUCCESS sep-2243-server-reject-error-code ServerRejectsMissingMethodHeaderErrorCode 400",
            // tools/call notes with Mcp-Name: wrong_tool_name.
            "SUCCESS sep-2243-server-reject-invalid-headers ServerRejectsMismatchedNameHeader 400",
            "SUCCESS sep-2243-server-reject-error-code ServerRejectsMismatchedNameHeaderErrorCode 400",
            // Mcp-Name: "  notes  " (a public tool, so it runs).
            "SUCCESS sep-2243-server-accepts-whitespace-header-value ServerAcceptsWhitespaceHeaderValue 200",
            // tools/call notes without Mcp-Name.
            "SUCCESS sep-2243-server-reject-invalid-headers ServerRejectsMissingNameHeader 400",
            "SUCCESS sep-2243-server-reject-error-code ServerRejectsMissingNameHeaderErrorCode 400",
            // Header names in any case; values case-sensitive.
            "SUCCESS sep-2243-header-name-case-insensitive ServerAcceptsLowercaseHeaderName 200",
            "SUCCESS sep-2243-header-name-case-insensitive ServerAcceptsUppercaseHeaderName 200",
            "SUCCESS sep-2243-server-reject-invalid-headers ServerRejectsCaseMismatchValue 400",
            "SUCCESS sep-2243-server-reject-error-code ServerRejectsCaseMismatchValueErrorCode 400",
            // The anonymous tools/list answer is valid 2026-07-28 JSON-RPC.
            "SUCCESS wire-schema-valid WireSchemaValid",
        ],
        "{}",
        details(&report, "http-header-validation")
    );
}

#[tokio::test]
async fn the_custom_header_scenario_runs_against_notes_mcp_param_contains() {
    // notes' `contains` is mirrored in Mcp-Param-Contains (x-mcp-header). No rule of
    // the example reads it, so the layer forwards the header untouched, as SEP-2243
    // asks of intermediaries, and the rmcp server behind validates it.
    let server = example(true).await;
    let scenario = "http-custom-header-server-validation";
    let report = conformance(&server.field("resource"), &[scenario]).await;
    assert_eq!(
        checks(&report, scenario),
        [
            "SUCCESS sep-2243-server-decode-base64 ServerAcceptsValidBase64 200",
            "SUCCESS sep-2243-server-reject-invalid-param-chars ServerRejectsInvalidBase64Padding 400",
            "SUCCESS sep-2243-server-reject-param-mismatch ServerRejectsInvalidBase64PaddingErrorCode 400",
            "SUCCESS sep-2243-server-reject-invalid-param-chars ServerRejectsInvalidBase64Chars 400",
            "SUCCESS sep-2243-server-reject-param-mismatch ServerRejectsInvalidBase64CharsErrorCode 400",
            "SUCCESS sep-2243-server-validate-param-match ServerLiteralMissingBase64Prefix 200",
            "SUCCESS sep-2243-server-validate-param-match ServerLiteralMissingBase64Suffix 200",
            "SUCCESS sep-2243-server-validate-param-match ServerRejectsMissingCustomHeader 400",
            "SUCCESS sep-2243-server-reject-param-mismatch ServerRejectsMissingCustomHeaderErrorCode 400",
            "SUCCESS wire-schema-valid WireSchemaValid",
        ],
        "{}",
        details(&report, scenario)
    );
}
