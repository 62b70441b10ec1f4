//! Sending the token through a stack, as a request would go, and reading the answer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http_body_util::BodyExt as _;
use mcp_gatekeeper::config::GatewayConfig;
use mcp_gatekeeper::{AudiencePolicy, Principal, ResourceServer};
use serde_json::{Value, json};
use tower::{Layer as _, ServiceExt as _};

use super::trace::Fields;

/// The outcome of a token sent through a stack.
pub(super) struct Outcome {
    /// The principal the stack let through.
    pub(super) principal: Option<Principal>,
    pub(super) status: u16,
    /// `error: error_description` of the challenge, or the body's message.
    pub(super) error: String,
    /// What the stack recorded on its span (`key_tier`, `rule`, ...).
    pub(super) fields: BTreeMap<String, String>,
}

/// The request: a `tools/call` of `tool` (or a `tools/list`) with the token, to the
/// resource's path.
fn request_for(
    server: &ResourceServer,
    token: &str,
    tool: Option<&str>,
) -> Option<http::Request<http_body_util::Full<bytes::Bytes>>> {
    let resource = server.resource().fixed_uri().unwrap_or("/");
    let path = resource
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
        .unwrap_or("/");
    let body = match tool {
        Some(tool) => json!({
            "jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": tool, "arguments": {}}
        }),
        None => json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
    };
    http::Request::post(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))
        .ok()
}

/// Sends `token` through `server` as a `tools/call` of `tool` (or a `tools/list`).
pub(super) async fn run_stack(
    server: &ResourceServer,
    token: &str,
    tool: Option<&str>,
    fields: &Fields,
) -> Outcome {
    let Some(request) = request_for(server, token, tool) else {
        return Outcome {
            principal: None,
            status: 400,
            error: "the token cannot be sent in an Authorization header".into(),
            fields: BTreeMap::new(),
        };
    };
    let seen: Arc<Mutex<Option<Principal>>> = Arc::default();
    let record = seen.clone();
    let inner = tower::service_fn(move |request: http::Request<_>| {
        let record = record.clone();
        async move {
            if let Ok(mut slot) = record.lock() {
                *slot = request.extensions().get::<Principal>().cloned();
            }
            let empty = http_body_util::Empty::<bytes::Bytes>::new();
            Ok::<_, std::convert::Infallible>(http::Response::new(empty))
        }
    });
    fields.clear();
    let answer = match server.layer().layer(inner).oneshot(request).await {
        Ok(answer) => answer,
        Err(never) => match never {},
    };
    let fields = fields.take();
    let principal = seen.lock().ok().and_then(|mut slot| slot.take());
    let status = answer.status().as_u16();
    let error = refusal(answer).await;
    Outcome {
        principal,
        status,
        error,
        fields,
    }
}

/// Why an answer refuses: its challenge's `error` and `error_description`, else its
/// body's (OAuth or JSON-RPC) error; empty for a success.
async fn refusal<B: http_body::Body>(answer: http::Response<B>) -> String {
    let challenge = answer
        .headers()
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(", ");
    if let Some(error) = param(&challenge, "error") {
        return match param(&challenge, "error_description") {
            Some(description) => format!("{error}: {description}"),
            None => error,
        };
    }
    if answer.status().as_u16() < 400 {
        return String::new();
    }
    let body = answer
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| match (&v["error"], v["error_description"].as_str()) {
            (Value::String(error), Some(description)) => Some(format!("{error}: {description}")),
            (Value::String(error), None) => Some(error.clone()),
            (error, _) => error["message"].as_str().map(str::to_owned),
        })
        .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(300).collect())
}

/// A quoted parameter of a challenge.
fn param(challenge: &str, name: &str) -> Option<String> {
    let start = challenge.find(&format!("{name}=\""))? + name.len() + 2;
    let mut value = String::new();
    let mut chars = challenge[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => value.extend(chars.next()),
            '"' => return Some(value),
            c => value.push(c),
        }
    }
    None
}

/// Server `id`'s issuers, with any audience and no scope rule: what the issuer
/// vouches for, alone.
pub(super) fn lenient_server(
    config: &GatewayConfig,
    id: &str,
    resource: &str,
) -> Result<ResourceServer, String> {
    let names: Vec<&String> = match &config.servers[id].issuers {
        Some(names) => names.iter().collect(),
        None => config.issuers.iter().map(|i| &i.issuer).collect(),
    };
    let mut builder =
        ResourceServer::builder(resource).audience(AudiencePolicy::accept_any_audience_insecure());
    for (i, issuer) in config.issuers.iter().enumerate() {
        if names.contains(&&issuer.issuer) {
            let built = issuer
                .to_issuer(&format!("issuers[{i}]"))
                .map_err(|e| e.to_string())?;
            builder = builder.issuer(built);
        }
    }
    builder.build().map_err(|e| e.to_string())
}
