//! The stack in front of a tonic gRPC service. Refusals are gRPC statuses
//! (`UNAUTHENTICATED`, `PERMISSION_DENIED`, `UNAVAILABLE`) with the `WWW-Authenticate`
//! challenge in the response metadata (R-ERR-3).
//!
//! ```text
//! cargo run --example grpc                   # embedded issuer, prints tokens
//! cargo run --example grpc -- --issuer https://idp.example.com
//! ```
//!
//! Flags: `--listen ADDR` (default `127.0.0.1:3003`), `--issuer URL` (repeatable;
//! without it an embedded issuer), `--help`. `WhoAmI` needs scope `mcp:read`, `Write`
//! needs `mcp:write`. HTTP/1 is accepted too, so the metadata document answers curl.

mod common;
#[path = "common/embedded.rs"]
mod embedded;
#[path = "../tests/support/signing.rs"]
mod signing;
#[path = "common/small.rs"]
mod small;

/// The code generated from `examples/grpc/notes.proto`.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod proto {
    include!("grpc/notes.v1.rs");
}

use std::sync::Mutex;

use http::request::Parts;
use mcp_gatekeeper::{Decision, McpOperation, Principal, ResourceServer};
use proto::notes_server::{Notes, NotesServer};
use proto::{WhoAmIReply, WhoAmIRequest, WriteReply, WriteRequest};
use tonic::{Request, Response, Status};

const USAGE: &str = "\
usage: grpc [--listen ADDR] [--issuer URL]...

  --listen ADDR   address to listen on (default 127.0.0.1:3003; port 0 picks one)
  --issuer URL    trust this OAuth/OIDC issuer, keys by lazy discovery (repeatable);
                  without it an embedded issuer is used and tokens are printed

methods: WhoAmI needs scope mcp:read, Write needs mcp:write
";

/// The notebook service; the verified caller is in each request's extensions.
#[derive(Default)]
struct Notebook {
    notes: Mutex<Vec<String>>,
}

fn caller<T>(request: &Request<T>) -> Result<Principal, Status> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| Status::internal("no verified principal for this request"))
}

#[tonic::async_trait]
impl Notes for Notebook {
    async fn who_am_i(
        &self,
        request: Request<WhoAmIRequest>,
    ) -> Result<Response<WhoAmIReply>, Status> {
        let principal = caller(&request)?;
        Ok(Response::new(WhoAmIReply {
            subject: principal.subject().unwrap_or_default().to_owned(),
            issuer: principal.issuer().to_owned(),
            scopes: principal.scopes().iter().map(str::to_owned).collect(),
        }))
    }

    async fn write(&self, request: Request<WriteRequest>) -> Result<Response<WriteReply>, Status> {
        caller(&request)?;
        let mut notes = self
            .notes
            .lock()
            .map_err(|_| Status::internal("the notebook is unusable"))?;
        notes.push(request.into_inner().text);
        Ok(Response::new(WriteReply {
            notes: u32::try_from(notes.len()).unwrap_or(u32::MAX),
        }))
    }
}

/// Per-method scopes for gRPC: the method is the request path.
fn method_scopes(
    principal: &Principal,
    _: &McpOperation,
    parts: &Parts,
) -> std::future::Ready<Decision> {
    let writing = parts.uri.path() == "/notes.v1.Notes/Write";
    let allowed = !writing || principal.scopes().contains("mcp:write");
    std::future::ready(if allowed {
        Decision::Allow
    } else {
        Decision::insufficient_scope(["mcp:write"])
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = common::args_or_exit(|| small::parse("127.0.0.1:3003"), USAGE);
    let (listener, addr) = common::bind(&args.listen).await?;
    let resource = format!("http://{addr}/");
    let builder = ResourceServer::builder(&resource)
        .scopes_supported(["mcp:read", "mcp:write"])
        .required_scopes(["mcp:read"])
        .mcp_operations(false) // gRPC, not MCP JSON-RPC
        .authorize(method_scopes);
    let origin = format!("http://{addr}");
    let (builder, embedded) = small::trust(builder, &args, &origin, "grpc-1")?;
    let gatekeeper = builder.build()?;

    let banner = small::banner(
        "mcp-gatekeeper in front of tonic",
        &origin,
        &resource,
        embedded.as_ref(),
        "grpc-user",
        &[("token", "mcp:read"), ("write-token", "mcp:read mcp:write")],
    );
    common::print_banner(&banner);

    tonic::transport::Server::builder()
        .accept_http1(true)
        .layer(gatekeeper.layer())
        .add_service(NotesServer::new(Notebook::default()))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
        .await?;
    Ok(())
}
