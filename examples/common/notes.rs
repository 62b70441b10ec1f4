//! The example MCP server (rmcp): a shared notebook. `whoami` and `notes` need
//! `mcp:read`, `write` needs `mcp:write` — declared once in [`scope_rules`], which
//! decides calls, filters `tools/list` and fills `scopes_supported`.
//!
//! Used by `examples/mcp_server.rs` and, in-process, by `tests/mcp.rs`.

use std::sync::{Arc, Mutex};

use mcp_gatekeeper::{McpScopes, Principal};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, Implementation, ServerCapabilities, ServerConfig};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use serde_json::json;

/// What each tool needs: `write*` tools `mcp:write`, everything else `mcp:read`.
pub fn scope_rules() -> McpScopes {
    McpScopes::new(["mcp:read"]).tool("write*", ["mcp:write"])
}

/// The arguments of `notes`.
#[derive(Debug, Default, serde::Deserialize, schemars::JsonSchema)]
pub struct NotesArgs {
    /// Only the notes containing this text (all of them when empty). Mirrored in
    /// the `Mcp-Param-Contains` header (MCP 2026-07-28, SEP-2243), which the MCP
    /// server checks.
    #[serde(default)]
    #[schemars(extend("x-mcp-header" = "Contains"))]
    pub contains: String,
}

/// The arguments of `write`.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct WriteArgs {
    /// The text of the note.
    pub text: String,
    /// `"public"` (the default) or `"private"`: who may read the note. The example
    /// does not act on it; tests put a scope rule on it (`McpScopes::tool_argument`).
    #[serde(default)]
    pub visibility: Option<String>,
}

/// The MCP server; clones share one notebook.
#[derive(Clone)]
pub struct Notes {
    notebook: Arc<Mutex<Vec<String>>>,
    tool_router: rmcp::handler::server::router::tool::ToolRouter<Self>,
}

fn principal(ctx: &RequestContext<RoleServer>) -> Result<Principal, ErrorData> {
    ctx.extensions
        .get::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Principal>())
        .cloned()
        .ok_or_else(|| ErrorData::internal_error("no verified principal for this request", None))
}

#[tool_router]
impl Notes {
    /// A server with an empty notebook.
    pub fn new() -> Self {
        Self {
            notebook: Arc::default(),
            tool_router: Self::tool_router(),
        }
    }

    #[tool(
        description = "Return the verified caller of this request: subject, issuer, client, scopes",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn whoami(&self, ctx: RequestContext<RoleServer>) -> Result<CallToolResult, ErrorData> {
        let principal = principal(&ctx)?;
        Ok(CallToolResult::structured(json!({
            "subject": principal.subject(),
            "issuer": principal.issuer(),
            "client_id": principal.client_id(),
            "audiences": principal.audiences(),
            "scopes": principal.scopes().iter().collect::<Vec<_>>(),
            "kind": format!("{:?}", principal.kind()),
        })))
    }

    #[tool(
        description = "List the notes in the notebook, or those containing a text",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn notes(
        &self,
        Parameters(args): Parameters<NotesArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let mut notes = self.notebook.lock().map(|n| n.clone()).unwrap_or_default();
        notes.retain(|note| note.contains(args.contains.as_str()));
        Ok(CallToolResult::structured(json!({ "notes": notes })))
    }

    #[tool(
        description = "Add a note to the notebook (needs scope mcp:write)",
        annotations(destructive_hint = false, open_world_hint = false)
    )]
    async fn write(
        &self,
        Parameters(args): Parameters<WriteArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let principal = principal(&ctx)?;
        let count = match self.notebook.lock() {
            Ok(mut notebook) => {
                notebook.push(args.text);
                notebook.len()
            }
            Err(_) => return Err(ErrorData::internal_error("the notebook is unusable", None)),
        };
        Ok(CallToolResult::structured(json!({
            "written_by": principal.subject(),
            "notes": count,
            "visibility": args.visibility.as_deref().unwrap_or("public"),
        })))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Notes {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "mcp-gatekeeper-example",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(
                "Call `whoami` to see the verified caller, `notes` to read, `write` to add a note.",
            )
    }
}
