//! Arbitrary bytes as the JSON-RPC body of an MCP request, and the resource URI it
//! names run through scope rules: never a panic, and a body that is accepted says
//! what any JSON reader takes from it (no member a case-insensitive reader would take
//! for another, so a plain last-wins reading agrees).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_gatekeeper::{McpOperation, McpScopes};
use serde_json::Value;

const NAMED_BY: &[(&str, &str)] = &[
    ("tools/call", "name"),
    ("prompts/get", "name"),
    ("resources/read", "uri"),
    ("resources/subscribe", "uri"),
    ("resources/unsubscribe", "uri"),
    ("tasks/get", "taskId"),
    ("tasks/update", "taskId"),
    ("tasks/cancel", "taskId"),
];

fuzz_target!(|data: &[u8]| {
    let Some((method, name)) = mcp_gatekeeper::fuzzing::mcp_operation(data) else {
        return;
    };
    let message: Value = serde_json::from_slice(data).expect("an accepted body is JSON");
    assert_eq!(
        message.get("method").and_then(Value::as_str),
        method.as_deref()
    );
    let member = method
        .as_deref()
        .and_then(|m| NAMED_BY.iter().find(|(named, _)| *named == m))
        .map(|(_, member)| *member);
    let expected = member.and_then(|member| message["params"].get(member)?.as_str());
    assert_eq!(expected, name.as_deref());
    if let (Some(method), Some(uri)) = (method, name) {
        let rules = McpScopes::new(["files:secret"])
            .resource("file:///public/*", Vec::<String>::new())
            .resource("file:///secret/*", ["files:secret"]);
        let needed = rules.scopes_for(&McpOperation::new(method, Some(uri.clone())));
        // Whatever else a reading finds, the URI as sent is one of them.
        if uri.starts_with("file:///secret/") {
            assert!(needed.iter().any(|s| s == "files:secret"), "{uri}");
        }
    }
});
