//! mcp-gatekeeper-proxy: the [mcp-gatekeeper](mcp_gatekeeper) stack in front of any MCP
//! server (Streamable HTTP), in any language, configured by a TOML file.
//!
//! Each `[servers.{id}]` of the file is served at `/servers/{id}/mcp` with its own
//! protected resource, audience and scope rules; a request the stack lets through is
//! forwarded to the server's upstream, streamed both ways, with the upstream's own
//! credentials (none, a static header, or an RFC 8693 token exchange of the verified
//! token) in place of the client's, which never go on. `/healthz` and `/readyz` are
//! for the orchestrator; SIGTERM stops accepting and lets open streams finish within
//! a grace period.
//!
//! The binary is the usual way to run it (`mcp-gatekeeper-proxy --config FILE`); the
//! library is what the binary, its tests and benchmarks use:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = mcp_gatekeeper_proxy::load(std::path::Path::new("gateway.toml"), std::env::vars())?;
//! let listener = tokio::net::TcpListener::bind(&config.proxy.listen).await?;
//! let gateway = mcp_gatekeeper_proxy::Gateway::new(&config)?;
//! gateway.serve(listener, async { let _ = tokio::signal::ctrl_c().await; }).await;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod explain;
mod forward;
mod load;
pub mod metrics;
mod ready;
mod serve;

pub use forward::{BoxError, PeerAddr, ProxyBody};
pub use load::{ENV_PREFIX, LoadError, load};
pub use serve::Gateway;
