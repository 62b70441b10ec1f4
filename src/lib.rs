//! # mcp-gatekeeper
//!
//! Composable [tower] layers that make any hyper, axum or tonic service a correct
//! OAuth 2.1 resource server for the Model Context Protocol: they accept exactly the
//! access tokens issued for this server by issuers it trusts, and tell clients exactly
//! how to get a better one.
//!
//! ## The pipeline
//!
//! A request meets eleven stages, in this order; [`ResourceServer`] builds them all
//! (the modules below are listed in the same order, and so are the re-exports):
//!
//! ```text
//!  request
//!    │
//!    ▼
//!  1 OriginLayer        a browser page of a foreign origin → 403, first of all (R-MCP-7)
//!  2 CorsLayer          preflights answered; allowed pages may read answers (R-MCP-7)
//!  3 MetadataLayer      GET of the RFC 9728 document → answered here       (R-PRM)
//!  4 BearerLayer        the token, from exactly one Authorization header   (R-BEAR)
//!                       (Bearer, or DPoP with its one proof header)
//!  5 VerifyLayer        signature, iss, exp… by a TokenVerifier → Principal (R-JWT, R-KEY, R-ISS, R-GW-3)
//!                       then a bound token's proof or client certificate   (R-DPOP-1, R-MTLS-1)
//!  6 AudienceLayer      is the token meant for this resource (this route)? (R-AUD)
//!  7 EnrichLayer        optional extra claims; its failure lets the request on (R-AZ-2)
//!  8 BindSessionsLayer  an Mcp-Session-Id works only for its principal    (R-GW-5)
//!  9 OperationLayer     the MCP method and tool, read from the body        (MCP-1, R-GW-1, R-GW-2)
//! 10 AuthorizeLayer     scopes and your policy: allow, 403, or step-up     (R-AZ-1, MCP-2)
//! 11 FilterToolsLayer   tools/list answers without what the caller cannot call (MCP-3, R-GW-4)
//!    │
//!    ▼
//!  your service
//!
//!  any stage refusing ─► AuthError ─► one renderer: 400 / 401 / 403 / 404 / 503 + challenge
//! ```
//!
//! Each stage is a [`tower::Layer`] usable on its own, whose service is named after
//! it (`BearerLayer` makes a [`BearerService`]); a stage reads what the one before put
//! into the request's extensions ([`BearerToken`], then [`Principal`], then
//! [`McpOperation`]). The stages that decide at once answer with a [`ResponseFuture`];
//! those that may wait (verification, reading the operation, a policy) with a
//! [`GateFuture`], which holds the inner service only while it waits. A layer used
//! without the one it needs answers `500` and logs which layer is missing, never lets
//! the request through. [`ResourceServer`] composes them in the right order from one
//! description of the resource, with the metadata endpoint.
//!
//! Keys come, per issuer, from in-process keys ([`keys::LocalKeys`]), an explicit
//! `jwks_uri`, then lazy discovery; the first tier that has the key wins, discovery
//! never runs at start-up and its failure never blocks another tier. An unreachable
//! identity provider gives `503` with `Retry-After`, not `401`.
//!
//! A JWT that was verified is kept in a cache keyed by the SHA-256 of its signature,
//! its header and payload compared byte for byte on each hit ([`TokenCacheOptions`]):
//! the token a client repeats on every request costs a short hash, a comparison and a
//! lookup, never past its `exp` nor once its key is gone, and the audience and
//! authorization steps still run every time.
//!
//! [`McpScopes`] declares which scopes each MCP operation needs (`tools/call` of
//! `write*` needs `mcp:write`, …): a call without them is answered `403
//! insufficient_scope` naming exactly those scopes, the MCP step-up challenge, and the
//! metadata document's `scopes_supported` comes from the same declaration. The
//! [`OperationLayer`] reads the operation from the JSON-RPC body (checked against the
//! `Mcp-Method` / `Mcp-Name` headers) only when a rule needs it, and hands the same
//! bytes on; [`FilterToolsLayer`] can leave out of `tools/list` what a caller cannot
//! call.
//!
//! In front of servers it did not write (a gateway), the stack reads each request as
//! the most lenient server behind it would: a body whose members a case-insensitive
//! reader would take differently is refused, a resource URI needs the scopes of every
//! way a server may resolve it, a filtered answer that cannot be read is withheld, and
//! a session id works only for the principal it was issued to ([`BindSessionsLayer`]).
//! Opaque tokens are shown only to the issuer whose pattern they match, and a discovery
//! document cannot point the server at internal addresses.
//!
//! Sender-constrained tokens are accepted from the issuers set up for them
//! ([`Issuer::dpop`], [`Issuer::certificate_bound_tokens`]; refused otherwise): a
//! DPoP-bound token with a proof checked in full on every request ([`SenderChecks`]:
//! [`DpopVerifier`], server nonces [`DpopNonces`], a replay store shared by replicas),
//! a certificate-bound one with the connection's [`ClientCertificate`].
//!
//! A gateway that calls an upstream MCP server sends it a token of its own: an
//! [`ExchangeLayer`] exchanges the verified token for one whose audience is the
//! upstream ([`TokenExchange`], RFC 8693) and never passes the client's token on.
//! The [`config`] module holds the serde types of a gateway's configuration file (the
//! one the `mcp-gatekeeper-proxy` binary of this workspace reads), mapped onto these
//! builders.
//!
//! ## Example
//!
//! ```no_run
//! use axum::{Router, routing::post};
//! use mcp_gatekeeper::{AudiencePolicy, Issuer, McpScopes, Principal, ResourceServer};
//!
//! async fn mcp(principal: Principal) -> String {
//!     format!("hello {}", principal.subject().unwrap_or("anonymous"))
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let server = ResourceServer::builder("https://mcp.example.com/mcp")
//!         .issuer(Issuer::new("https://idp.example.com"))
//!         // IdP without RFC 8707? It puts the client id into `aud`: opt in to that.
//!         .audience(AudiencePolicy::resource().accept_client_ids(["my-client"]))
//!         // tools/call of write* needs mcp:write, everything else mcp:read.
//!         .mcp_scopes(McpScopes::new(["mcp:read"]).tool("write*", ["mcp:write"]))
//!         .build()?; // checks the configuration; no network I/O
//!
//!     // The layer also answers GET /.well-known/oauth-protected-resource/mcp.
//!     let app = Router::new().route("/mcp", post(mcp)).layer(server.layer());
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//!     axum::serve(listener, app).await?;
//!     Ok(())
//! }
//! ```
//!
//! ## Features
//!
//! - `aws-lc-rs` (default): JWT signatures with AWS-LC.
//! - `rust-crypto`: JWT signatures with the pure-Rust RustCrypto crates. Enable exactly
//!   one backend; if both are on, AWS-LC is used.
//! - `rustls` (default): HTTPS to identity providers.
//! - `axum` (default): [`Principal`] as an axum extractor.
//! - `kubernetes`: the Kubernetes TokenReview verifier (`TokenReview`).
//! - `redis`: `RedisReplayStore`, the DPoP replay store shared by replicas.
//! - `fuzzing`: entry points for the fuzz targets under `fuzz/`; not a stable API.
//!
//! ## Observability
//!
//! Each request runs in a `mcp_gatekeeper` tracing span with the fields `decision`,
//! `rule` (the id of the [`Rule`] that refused it, as `docs/REQUIREMENTS.md` defines
//! it), `issuer`, `key_tier` (which tier gave the key, or `cache` for a token verified
//! before) and `subject`, and ends with one event on the target
//! `mcp_gatekeeper::audit`: the audit trail, whose fields [`audit`] documents. No
//! token, secret or key is ever logged.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(not(any(feature = "aws-lc-rs", feature = "rust-crypto")))]
compile_error!(
    "mcp-gatekeeper needs a crypto backend: enable the `aws-lc-rs` or the `rust-crypto` feature"
);

pub mod audit;
#[cfg(feature = "cedar")]
pub mod cedar;
pub mod metrics;

// The stages, in the order a request meets them.
// 1. the Origin check
mod origin;
// 2. CORS
mod cors;
// 3. the RFC 9728 metadata document
mod metadata;
// 4. the bearer token (and DPoP proofs)
mod bearer;
mod dpop;
mod sender;
// 5. verification: the token becomes a principal
mod verify;
// 6. the audience
mod audience;
// 7. enrichment
mod enrich;
// 8. session binding, 9. the MCP operation, 11. the tools/list filter
mod mcp;
// 10. authorization
mod authorize;

// All the stages: the pipeline written once, the server that holds it, and the
// builder that makes it.
mod builder;
pub mod config;
mod pipeline;
mod server;

// What the stages share.
mod body;
mod challenge;
mod decision;
mod error;
mod exchange;
mod fetch;
mod future;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod hierarchy;
pub mod keys;
mod principal;
mod resource;
mod rule;
mod uri;

// 1. origin
pub use origin::{OriginLayer, OriginService};

// 2. CORS
pub use cors::{CorsFuture, CorsLayer, CorsService};

// 3. metadata
pub use metadata::{
    MetadataEndpoint, MetadataLayer, MetadataService, document as metadata_document, metadata_path,
};

// 4. bearer
pub use bearer::{BearerLayer, BearerService, BearerToken, DEFAULT_MAX_TOKEN_LEN};
pub use dpop::{
    DEFAULT_DPOP_ALGORITHMS, DEFAULT_PROOF_LIFETIME, DEFAULT_PROOF_SKEW, DEFAULT_REPLAY_CAPACITY,
    DpopError, DpopVerifier, ProofRequest, ReplayStore, VerifiedProof, access_token_hash,
    thumbprint,
};
pub use sender::{
    CertificateHeader, ClientCertificate, ClientCertificates, DEFAULT_NONCE_ROTATION, Dpop,
    DpopNonces, InMemoryReplayStore, SenderChecks,
};
#[cfg(feature = "redis")]
pub use sender::{DEFAULT_REDIS_TIMEOUT, RedisReplayStore};

// 5. verify
pub use verify::{
    CacheFuture, ClientAuth, DEFAULT_INACTIVE_TTL, Introspection, IntrospectionVerifier, Issuer,
    JwtVerifier, TokenCacheOptions, TokenCacheUsage, TokenVerifier, Verification, VerifierChain,
    VerifyFuture, VerifyLayer, VerifyService, Verifying,
};
#[cfg(feature = "kubernetes")]
pub use verify::{TokenReview, TokenReviewVerifier};

// 6. audience
pub use audience::{AudienceLayer, AudienceMatch, AudiencePolicy, AudienceService};

// 7. enrich
pub use enrich::{
    DEFAULT_ENRICH_TIMEOUT, Enrich, EnrichFuture, EnrichLayer, EnrichService, ServerEnrich,
};

// 8. sessions, 9. the operation, 11. the tool filter
pub use mcp::{
    ANONYMOUS_BODY_LIMIT, Argument, ArgumentValue, BindSessionsLayer, BindSessionsService,
    DEFAULT_MCP_BODY_LIMIT, DEFAULT_SESSION_CAPACITY, DEFAULT_SESSION_IDLE,
    DEFAULT_TOOLS_LIST_LIMIT, FilterToolsFuture, FilterToolsLayer, FilterToolsService,
    FilteredBody, MCP_METHOD, MCP_NAME, MCP_PROTOCOL_VERSION, MCP_SESSION_ID, McpBody,
    McpOperation, McpScopes, OperationLayer, OperationService, OperationSource, ReadingOperation,
};

// 10. authorize
pub use authorize::{
    Authorize, AuthorizeLayer, AuthorizeService, BoxAuthorize, Deciding, RequireScopes,
    ServerAuthorize,
};
pub use decision::{Decide, Decision};

// All stages in order.
pub use builder::{Issuers, OwnVerifier, ResourceServerBuilder};
pub use pipeline::{Gatekeeper, GatekeeperLayer};
pub use server::ResourceServer;

// What the stages share.
pub use body::ResponseBody;
pub use error::{AuthError, AuthErrorKind, ConfigError};
pub use exchange::{
    DEFAULT_EXCHANGE_MARGIN, ExchangeError, ExchangeFuture, ExchangeLayer, ExchangeService,
    TokenExchange, TokenExchangeBuilder,
};
pub use fetch::FetchOptions;
pub use future::{Check, GateFuture, ResponseFuture, Settle, Waiting, WatchedFuture};
pub use hierarchy::ScopeHierarchy;
pub use jsonwebtoken::Algorithm;
#[cfg(feature = "axum")]
pub use principal::MissingPrincipal;
pub use principal::{Principal, Scopes, TokenKind};
pub use resource::ProtectedResource;
pub use rule::Rule;
