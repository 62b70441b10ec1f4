//! A multi-tenant MCP gateway behind mcp-gatekeeper: several trusted issuers, and one
//! protected resource per `/servers/{id}/mcp` route — the setup of seed 001, where the
//! public URL differs from the gateway's own and some IdPs put the client id in `aud`.
//!
//! ```text
//! cargo run --example gateway                          # two embedded issuers, prints tokens
//! cargo run --example gateway -- --public-url https://mcp.example.com \
//!     --issuer https://login.example.com/tenant-a --issuer https://idp.example.com \
//!     --accept-client-id alpha=my-authentik-client --server alpha --server beta
//! ```
//!
//! Flags: `--listen ADDR` (default `127.0.0.1:3001`), `--public-url URL` (the origin
//! clients use; default `http://ADDR`), `--server ID` (repeatable; default `alpha` and
//! `beta`), `--issuer URL` (repeatable; default two embedded issuers),
//! `--accept-client-id SERVER=ID` (repeatable; on `/servers/SERVER/mcp`, accept `aud` =
//! this client id, for IdPs without RFC 8707; a bare `ID` is accepted when there is
//! one server), `--help`.

mod common;
#[path = "common/embedded.rs"]
mod embedded;
#[path = "../tests/support/signing.rs"]
mod signing;

use std::fmt::Write as _;
use std::sync::Arc;

use mcp_gatekeeper::{AudiencePolicy, Issuer, Principal, ResourceServer};
use rmcp::model::{CallToolResult, Implementation, ServerCapabilities, ServerConfig};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::StreamableHttpService;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::{ErrorData, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use serde_json::json;

const USAGE: &str = "\
usage: gateway [--listen ADDR] [--public-url URL] [--server ID]... [--issuer URL]...
               [--accept-client-id SERVER=ID]...

  --listen ADDR           address to listen on (default 127.0.0.1:3001)
  --public-url URL        origin clients connect to (default http://ADDR)
  --server ID             an MCP server behind the gateway, at /servers/ID/mcp
                          (repeatable; default alpha and beta)
  --issuer URL            trust this issuer, keys by lazy discovery (repeatable);
                          default: two embedded issuers whose tokens are printed
  --accept-client-id SERVER=ID
                          on /servers/SERVER/mcp, also accept tokens whose aud is
                          this OAuth client id (IdPs without RFC 8707 resource
                          indicators); a bare ID when there is one server
                          (repeatable)
";

struct Args {
    listen: String,
    public_url: Option<String>,
    servers: Vec<String>,
    issuers: Vec<String>,
    /// (server, client id): accepted as `aud` on that server's route only.
    client_ids: Vec<(String, String)>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: "127.0.0.1:3001".into(),
        public_url: None,
        servers: Vec::new(),
        issuers: Vec::new(),
        client_ids: Vec::new(),
    };
    let mut iter = std::env::args().skip(1);
    while let Some(flag) = iter.next() {
        let mut value = |name: &str| iter.next().ok_or_else(|| format!("{name} needs a value"));
        match flag.as_str() {
            "--listen" => args.listen = value("--listen")?,
            "--public-url" => args.public_url = Some(value("--public-url")?),
            "--server" => args.servers.push(value("--server")?),
            "--issuer" => args.issuers.push(value("--issuer")?),
            "--accept-client-id" => {
                let given = value("--accept-client-id")?;
                let (server, id) = given.split_once('=').unwrap_or(("", &given));
                args.client_ids.push((server.to_owned(), id.to_owned()));
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if args.servers.is_empty() {
        args.servers = vec!["alpha".into(), "beta".into()];
    }
    if let Some(bad) = args.servers.iter().find(|id| {
        id.is_empty()
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }) {
        return Err(format!(
            "--server {bad:?}: use letters, digits, '-' and '_'"
        ));
    }
    // A client id is one server's: accepted on every route, a token for one server's
    // OAuth client would open all of them.
    for (server, id) in &mut args.client_ids {
        if server.is_empty() {
            match args.servers.as_slice() {
                [only] => *server = only.clone(),
                _ => {
                    return Err(format!(
                        "--accept-client-id {id:?}: with several servers, say which one \
                         accepts it: --accept-client-id SERVER={id}"
                    ));
                }
            }
        }
        if id.is_empty() || !args.servers.contains(server) {
            return Err(format!(
                "--accept-client-id {server}={id}: {server:?} is not a --server of this gateway"
            ));
        }
    }
    Ok(args)
}

/// The MCP server behind every route: `whoami` names the caller and the server.
#[derive(Clone)]
struct Backend {
    tool_router: rmcp::handler::server::router::tool::ToolRouter<Self>,
}

#[tool_router]
impl Backend {
    fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
        }
    }

    #[tool(description = "Return the verified caller and the MCP server it reached")]
    async fn whoami(&self, ctx: RequestContext<RoleServer>) -> Result<CallToolResult, ErrorData> {
        let parts = ctx
            .extensions
            .get::<http::request::Parts>()
            .ok_or_else(|| ErrorData::internal_error("not served over HTTP", None))?;
        let principal = parts.extensions.get::<Principal>().ok_or_else(|| {
            ErrorData::internal_error("no verified principal for this request", None)
        })?;
        Ok(CallToolResult::structured(json!({
            "server": server_id(parts.uri.path()),
            "subject": principal.subject(),
            "issuer": principal.issuer(),
            "audiences": principal.audiences(),
            "kind": format!("{:?}", principal.kind()),
        })))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Backend {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build()).with_server_info(
            Implementation::new("mcp-gatekeeper-gateway", env!("CARGO_PKG_VERSION")),
        )
    }
}

/// The server id of a `/servers/{id}/mcp` path.
fn server_id(path: &str) -> Option<&str> {
    path.strip_prefix("/servers/")?.strip_suffix("/mcp")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = common::args_or_exit(parse_args, USAGE);
    let (listener, addr) = common::bind(&args.listen).await?;
    let origin = format!("http://{addr}");
    let public = args.public_url.clone().unwrap_or_else(|| origin.clone());
    let public = public.trim_end_matches('/').to_owned();

    // One resource per route, and only for the servers this gateway has.
    let servers: Arc<[String]> = args.servers.clone().into();
    let (route_public, route_servers) = (public.clone(), servers.clone());
    let mut builder = ResourceServer::per_route(move |parts| {
        let id = server_id(parts.uri.path())?;
        route_servers
            .iter()
            .any(|s| s == id)
            .then(|| format!("{route_public}/servers/{id}/mcp"))
    })
    .audience(
        args.client_ids
            .iter()
            .fold(AudiencePolicy::resource(), |policy, (server, id)| {
                policy.accept_client_ids_on(format!("{public}/servers/{server}/mcp"), [id.as_str()])
            }),
    )
    .scopes_supported(["mcp:read"])
    .resource_name("mcp-gatekeeper gateway");

    let mut embedded = Vec::new();
    if args.issuers.is_empty() {
        for tenant in ["tenant-a", "tenant-b"] {
            let (issuer, trusted) = embedded::Embedded::new(
                format!("{origin}/issuers/{tenant}"),
                &format!("{tenant}-key"),
            )?;
            builder = builder.issuer(trusted);
            embedded.push(issuer);
        }
    } else {
        for issuer in &args.issuers {
            builder = builder.issuer(Issuer::new(issuer));
        }
    }
    let gatekeeper = builder.build()?;

    let config = common::streamable_http_config(&public);
    let mcp = StreamableHttpService::new(
        || Ok(Backend::new()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let app = axum::Router::new()
        .route_service("/servers/{id}/mcp", mcp)
        .layer(gatekeeper.layer());

    let mut banner = String::new();
    let _ = writeln!(banner, "mcp-gatekeeper example gateway");
    let _ = writeln!(banner, "  listening: {addr}");
    for id in servers.iter() {
        let _ = writeln!(banner, "  server {id}: {public}/servers/{id}/mcp");
        let _ = writeln!(
            banner,
            "    metadata: {public}/.well-known/oauth-protected-resource/servers/{id}/mcp"
        );
    }
    for embedded in &embedded {
        let issuer = &embedded.issuer;
        let tenant = issuer.rsplit('/').next().unwrap_or_default();
        let _ = writeln!(banner, "  issuer {tenant}: {issuer} (embedded)");
        for id in servers.iter() {
            let audience = format!("{public}/servers/{id}/mcp");
            let token = embedded.token(&format!("{tenant}-user"), &audience, "mcp:read");
            let _ = writeln!(banner, "    token {tenant}/{id}: {token}");
        }
    }
    for issuer in &args.issuers {
        let _ = writeln!(banner, "  issuer: {issuer} (lazy discovery)");
    }
    let _ = writeln!(banner, "ready");
    common::print_banner(&banner);

    axum::serve(listener, app).await?;
    Ok(())
}
