//! The stack on a plain hyper 1.x server: a `service_fn`, no axum, no router.
//!
//! ```text
//! cargo run --example hyper                  # embedded issuer, prints tokens
//! cargo run --example hyper -- --issuer https://idp.example.com
//! ```
//!
//! Flags: `--listen ADDR` (default `127.0.0.1:3002`), `--issuer URL` (repeatable;
//! without it an embedded issuer), `--help`. The handler answers every verified
//! request with the caller and the MCP operation it asked for; `tools/call` of
//! `write*` needs scope `mcp:write`, everything else `mcp:read`.

mod common;
#[path = "common/embedded.rs"]
mod embedded;
#[path = "../tests/support/signing.rs"]
mod signing;
#[path = "common/small.rs"]
mod small;

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use mcp_gatekeeper::{McpBody, McpOperation, McpScopes, Principal, ResourceServer};
use serde_json::json;

const USAGE: &str = "\
usage: hyper [--listen ADDR] [--issuer URL]...

  --listen ADDR   address to listen on (default 127.0.0.1:3002; port 0 picks one)
  --issuer URL    trust this OAuth/OIDC issuer, keys by lazy discovery (repeatable);
                  without it an embedded issuer is used and tokens are printed
";

/// The whole application: who asked, and for what. The body was read by the stack
/// when a rule needed it; either way it arrives here intact.
async fn handle(request: Request<McpBody<Incoming>>) -> Result<Response<Full<Bytes>>, Infallible> {
    let principal = request.extensions().get::<Principal>();
    let operation = request.extensions().get::<McpOperation>();
    let answer = json!({
        "subject": principal.and_then(Principal::subject),
        "scopes": principal.map(|p| p.scopes().iter().collect::<Vec<_>>()),
        "method": operation.and_then(McpOperation::method),
        "name": operation.and_then(McpOperation::name),
    });
    let mut response = Response::new(Full::new(Bytes::from(answer.to_string())));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = common::args_or_exit(|| small::parse("127.0.0.1:3002"), USAGE);
    let (listener, addr) = common::bind(&args.listen).await?;
    let resource = format!("http://{addr}/mcp");
    let builder = ResourceServer::builder(&resource)
        .mcp_scopes(McpScopes::new(["mcp:read"]).tool("write*", ["mcp:write"]));
    let origin = format!("http://{addr}");
    let (builder, embedded) = small::trust(builder, &args, &origin, "hyper-1")?;
    let gatekeeper = builder.build()?;

    // tower all the way down; hyper only sees a service.
    let service = tower::ServiceBuilder::new()
        .layer(gatekeeper.layer())
        .service(tower::service_fn(handle));

    let banner = small::banner(
        "mcp-gatekeeper on plain hyper",
        &origin,
        &resource,
        embedded.as_ref(),
        "hyper-user",
        &[("token", "mcp:read")],
    );
    common::print_banner(&banner);

    loop {
        let (stream, _) = listener.accept().await?;
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            if let Err(error) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
}
