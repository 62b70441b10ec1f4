//! [`ResourceServerBuilder`]: one description of the resource — its canonical URI,
//! how tokens are verified, the scopes — checked and turned into the pipeline by
//! `build()`, in named steps. Building checks the configuration (R-OPS-2) and does
//! no I/O (R-KEY-2).
//!
//! The builder's type says how tokens are verified, so settings that would be
//! ignored do not compile: [`ResourceServer::builder`] starts with the [`Issuers`]
//! the server trusts (and their verified-token cache, and routes to other
//! verifiers); [`ResourceServer::with_verifier`] starts with [`OwnVerifier`], which
//! has none of those.

use std::sync::Arc;

use crate::audience::{AudienceLayer, AudiencePolicy};
use crate::authorize::{Authorize, AuthorizeLayer, BoxAuthorize, ServerAuthorize};
use crate::bearer::{BearerLayer, DEFAULT_MAX_TOKEN_LEN};
use crate::cors::CorsLayer;
use crate::enrich::{Enrich, EnrichLayer, ServerEnrich};
use crate::error::ConfigError;
use crate::hierarchy::ScopeHierarchy;
use crate::mcp::{
    BindSessionsLayer, DEFAULT_MCP_BODY_LIMIT, FilterToolsLayer, McpScopes, OperationLayer,
};
use crate::metadata::MetadataLayer;
use crate::origin::{AllowedOrigins, OriginLayer};
use crate::pipeline::GatekeeperLayer;
use crate::principal::add_scopes;
use crate::resource::ProtectedResource;
use crate::server::ResourceServer;
mod checks;

use crate::sender::SenderChecks;
use crate::verify::{Issuer, TokenCacheOptions, TokenVerifier, VerifierChain, VerifyLayer};
use checks::check_arguments;

/// Builds a [`ResourceServer`]; see [`ResourceServer::builder`] and
/// [`ResourceServer::with_verifier`]. `V` is how tokens are verified: [`Issuers`] or
/// [`OwnVerifier`].
#[must_use]
pub struct ResourceServerBuilder<V = Issuers> {
    resource: ProtectedResource,
    verification: V,
    audience: AudiencePolicy,
    scopes: ScopeSettings,
    enrich: EnrichLayer<ServerEnrich>,
    max_token_len: usize,
    serve_root_metadata: bool,
    origins: OriginSettings,
    mcp: McpSettings,
    sessions: SessionSettings,
    sender: SenderChecks,
}

/// How a [`ResourceServerBuilder`] from [`ResourceServer::builder`] verifies tokens:
/// the JWT issuers it trusts, their verified-token cache, and the issuers routed to
/// other verifiers.
pub struct Issuers {
    issuers: Vec<Issuer>,
    routed: Vec<(String, Arc<dyn TokenVerifier>)>,
    token_cache: Option<TokenCacheOptions>,
}

/// How a [`ResourceServerBuilder`] from [`ResourceServer::with_verifier`] verifies
/// tokens: with that verifier alone.
pub struct OwnVerifier(Arc<dyn TokenVerifier>);

impl OwnVerifier {
    pub(crate) fn new(verifier: impl TokenVerifier) -> Self {
        Self(Arc::new(verifier))
    }
}

/// What the authorization stage requires.
struct ScopeSettings {
    required: Vec<String>,
    hierarchy: ScopeHierarchy,
    mcp: Option<McpScopes>,
    callback: Option<BoxAuthorize>,
    challenge_granted: bool,
    challenge_all: bool,
}

/// How MCP request bodies are read and answers filtered.
struct McpSettings {
    operations: bool,
    body_limit: usize,
    filter_tools: bool,
}

/// Whether `Origin` is checked, whether CORS answers browsers, and the origins allowed
/// besides the resource's own.
struct OriginSettings {
    check: bool,
    cors: bool,
    allowed: Vec<String>,
}

/// Whether sessions are bound, and whether unknown ones are refused.
struct SessionSettings {
    bind: bool,
    refuse_unknown: bool,
}

impl ResourceServerBuilder<Issuers> {
    /// Trusts an issuer of JWT access tokens (repeatable, R-ISS-1).
    pub fn issuer(mut self, issuer: Issuer) -> Self {
        self.verification.issuers.push(issuer);
        self
    }

    /// Sends the JWT-shaped tokens of `issuer` to `verifier` instead of checking
    /// them locally (R-ISS-2); see [`VerifierChain::route_issuer`]. The issuer is
    /// not listed in the metadata document; name the authorization server clients
    /// should use with [`ResourceServerBuilder::authorization_server`].
    pub fn route_issuer(mut self, issuer: impl Into<String>, verifier: impl TokenVerifier) -> Self {
        self.verification
            .routed
            .push((issuer.into(), Arc::new(verifier)));
        self
    }

    /// Reviews the service-account tokens of a Kubernetes cluster with its
    /// TokenReview API (feature `kubernetes`, R-ISS-2).
    #[cfg(feature = "kubernetes")]
    pub fn token_review(self, review: crate::TokenReview) -> Result<Self, ConfigError> {
        let issuer = review.issuer().to_owned();
        Ok(self.route_issuer(issuer, crate::TokenReviewVerifier::new(review)?))
    }

    /// The bounds of the verified-token cache of the issuers' JWTs (default
    /// [`TokenCacheOptions::default`]: 10,000 tokens, 16 MiB, 5 min).
    ///
    /// A repeated token (MCP clients send the same one until it expires) then costs a
    /// SHA-256 and a lookup instead of a signature check. An entry is reused only
    /// while the token has not expired and the key that verified it is still held by
    /// its issuer's tiers; the audience, enrichment and authorization layers run on
    /// every request all the same. [`TokenCacheOptions::disabled`] turns it off.
    /// Introspection and TokenReview have caches of their own
    /// ([`Introspection::cache`](crate::Introspection::cache)).
    pub fn token_cache(mut self, options: TokenCacheOptions) -> Self {
        self.verification.token_cache = Some(options);
        self
    }

    /// Checks the configuration and builds the server. Synchronous; no I/O.
    pub fn build(mut self) -> Result<ResourceServer, ConfigError> {
        let Issuers {
            issuers,
            routed,
            token_cache,
        } = std::mem::replace(&mut self.verification, Issuers::none());
        let policies: Vec<(String, AudiencePolicy)> = issuers
            .iter()
            .filter_map(|i| i.audience_policy().map(|p| (i.id().to_owned(), p.clone())))
            .collect();
        for issuer in &issuers {
            self.resource = self.resource.authorization_server(issuer.id());
        }
        self.resource =
            crate::sender::describe(self.resource, &issuers, !routed.is_empty(), &self.sender);
        let mut chain = VerifierChain::new(issuers)?;
        if let Some(options) = token_cache {
            chain = chain.token_cache(options);
        }
        for (issuer, verifier) in routed {
            chain = chain.route_issuer(issuer, verifier)?;
        }
        if chain.is_empty() {
            return Err(ConfigError::new(
                "no trusted issuer; add at least one Issuer",
            ));
        }
        self.finish(Arc::new(chain), policies)
    }
}

impl Issuers {
    /// No issuer yet.
    pub(crate) fn none() -> Self {
        Self {
            issuers: Vec::new(),
            routed: Vec::new(),
            token_cache: None,
        }
    }
}

impl ResourceServerBuilder<OwnVerifier> {
    /// Checks the configuration and builds the server. Synchronous; no I/O.
    pub fn build(self) -> Result<ResourceServer, ConfigError> {
        let verifier = self.verification.0.clone();
        self.finish(verifier, Vec::new())
    }
}

impl<V> ResourceServerBuilder<V> {
    /// A builder for `resource`, verifying tokens as `verification` says, with every
    /// other setting at its default.
    pub(crate) fn new(resource: ProtectedResource, verification: V) -> Self {
        Self {
            resource,
            verification,
            audience: AudiencePolicy::resource(),
            scopes: ScopeSettings {
                required: Vec::new(),
                hierarchy: ScopeHierarchy::new(),
                mcp: None,
                callback: None,
                challenge_granted: false,
                challenge_all: false,
            },
            enrich: EnrichLayer::new(ServerEnrich::default()),
            max_token_len: DEFAULT_MAX_TOKEN_LEN,
            serve_root_metadata: false,
            origins: OriginSettings {
                check: true,
                cors: true,
                allowed: Vec::new(),
            },
            mcp: McpSettings {
                operations: true,
                body_limit: DEFAULT_MCP_BODY_LIMIT,
                filter_tools: false,
            },
            sessions: SessionSettings {
                bind: true,
                refuse_unknown: false,
            },
            sender: SenderChecks::default(),
        }
    }

    /// Per-operation scopes for the MCP server (`tools/call` of `write*` needs
    /// `mcp:write`, everything else `mcp:read`): a request without them gets
    /// `403 insufficient_scope` naming exactly the scopes of its operation, the `401`
    /// challenge names the default scopes, and `scopes_supported` lists them all.
    ///
    /// ```
    /// use http::request::Parts;
    /// use mcp_gatekeeper::{Decision, Issuer, McpOperation, McpScopes, Principal, ResourceServer};
    ///
    /// let server = ResourceServer::builder("https://mcp.example.com/mcp")
    ///     .issuer(Issuer::new("https://idp.example.com"))
    ///     .mcp_scopes(McpScopes::new(["mcp:read"]).tool("write*", ["mcp:write"]))
    ///     .filter_tools(true)
    ///     .authorize(|p: &Principal, op: &McpOperation, _: &Parts| {
    ///         let refused = op.name() == Some("delete_repo") && p.subject() != Some("admin");
    ///         async move { if refused { Decision::deny("only admin deletes") } else { Decision::Allow } }
    ///     })
    ///     .build()?;
    /// let scopes = server.resource().supported_scopes();
    /// assert_eq!(scopes, ["mcp:read", "mcp:write"]);
    /// # Ok::<(), mcp_gatekeeper::ConfigError>(())
    /// ```
    pub fn mcp_scopes(mut self, scopes: McpScopes) -> Self {
        self.scopes.mcp = Some(scopes);
        self
    }

    /// Removes from `tools/list` answers the tools the caller could not call (by the
    /// [`mcp_scopes`](Self::mcp_scopes) and the [`authorize`](Self::authorize)
    /// callback). Off by default.
    pub fn filter_tools(mut self, on: bool) -> Self {
        self.mcp.filter_tools = on;
        self
    }

    /// Makes `insufficient_scope` challenges also name the scopes the token already
    /// has (those in `scopes_supported`), so that a client which *replaces* its scopes
    /// when it steps up keeps them. MCP since 2026-07-28 (SEP-2350) has clients add
    /// the challenged scopes to what they hold, and RFC 6750 asks for the scopes the
    /// request needs, which is the default; `@modelcontextprotocol/sdk` 1.x and other
    /// clients of earlier revisions replace them, and then lose `mcp:read` when they
    /// step up to `mcp:write`. Applies to the required scopes and
    /// [`mcp_scopes`](Self::mcp_scopes), not to decisions of a callback.
    pub fn challenge_granted_scopes(mut self, on: bool) -> Self {
        self.scopes.challenge_granted = on;
        self
    }

    /// Makes the `401` challenge name every scope in `scopes_supported`, not only
    /// the default ones (default `false`). For clients that register themselves
    /// (dynamic client registration) with exactly the scopes of the first `401` and
    /// then cannot step up beyond them, because the authorization server refuses a
    /// scope the client did not register (the MCP Python SDK does this). It never
    /// names `offline_access`, which `scopes_supported` cannot hold (R-MCP-5).
    pub fn challenge_all_scopes(mut self, on: bool) -> Self {
        self.scopes.challenge_all = on;
        self
    }

    /// Whether MCP sessions are bound to the principal they were issued to (default
    /// `true`): a request carrying an `Mcp-Session-Id` issued to another issuer,
    /// subject or client id is answered `404`, as for an unknown session, so a
    /// leaked session id is useless to anyone else (R-GW-5; see
    /// [`BindSessionsLayer`]).
    pub fn bind_sessions(mut self, on: bool) -> Self {
        self.sessions.bind = on;
        self
    }

    /// With session binding on, also answers `404` to a session id the server was
    /// not seen issuing (default `false`: such an id is bound to the first principal
    /// that uses it, which keeps working after a restart and across replicas). Turn
    /// it on for a single replica; see [`BindSessionsLayer::refuse_unknown`].
    pub fn refuse_unknown_sessions(mut self, on: bool) -> Self {
        self.sessions.refuse_unknown = on;
        self
    }

    /// The most of a request body read to find its MCP operation; longer bodies are
    /// refused with `400` when a rule needs the operation. Default
    /// [`DEFAULT_MCP_BODY_LIMIT`](crate::DEFAULT_MCP_BODY_LIMIT) (1 MiB).
    pub fn mcp_body_limit(mut self, bytes: usize) -> Self {
        self.mcp.body_limit = bytes;
        self
    }

    /// Whether request bodies are MCP JSON-RPC, read to find the operation when the
    /// authorization needs it (default `true`): then every `POST` behind the layer
    /// (gRPC excepted) must be a JSON-RPC message when a rule needs it, or it is
    /// refused with `400`. Turn it off for a service that is not MCP (a REST API);
    /// callbacks then see [`McpOperation::unknown`](crate::McpOperation::unknown).
    pub fn mcp_operations(mut self, on: bool) -> Self {
        self.mcp.operations = on;
        self
    }

    /// An enrichment step after verification, before authorization (R-AZ-2); its
    /// failure is logged and the request goes on with the verified claims.
    pub fn enrich(mut self, enrich: impl Enrich) -> Self {
        self.enrich = self.enrich.step(ServerEnrich::new(enrich));
        self
    }

    /// How long the enrichment step may take before it counts as failed. Default
    /// [`DEFAULT_ENRICH_TIMEOUT`](crate::DEFAULT_ENRICH_TIMEOUT).
    pub fn enrich_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.enrich = self.enrich.timeout(timeout);
        self
    }

    /// Lists an authorization server in the metadata document (issuers added with
    /// [`ResourceServerBuilder::issuer`] are listed already).
    pub fn authorization_server(mut self, issuer: impl Into<String>) -> Self {
        self.resource = self.resource.authorization_server(issuer);
        self
    }

    /// The audience policy (R-AUD-1..5). Default: [`AudiencePolicy::resource`], the
    /// resource URI of the request.
    pub fn audience(mut self, policy: AudiencePolicy) -> Self {
        self.audience = policy;
        self
    }

    /// `scopes_supported` of the metadata document.
    pub fn scopes_supported<I, T>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.resource = self.resource.scopes_supported(scopes);
        self
    }

    /// Scopes every request needs; missing ones get `403 insufficient_scope`, and the
    /// `401` challenge names them so clients ask for them up front.
    pub fn required_scopes<I, T>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.scopes.required = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// An authorization callback (R-AZ-1), asked with the scope requirement: its
    /// denial wins, and a step-up it asks for joins the scopes' in one challenge (see
    /// [`ServerAuthorize`](crate::ServerAuthorize)). It is asked even when the scopes
    /// are missing, and for public operations.
    pub fn authorize(mut self, authorize: impl Authorize) -> Self {
        self.scopes.callback = Some(BoxAuthorize::new(authorize));
        self
    }

    /// How the bindings of sender-constrained tokens are checked: the DPoP proof
    /// verifier (algorithms, time window, replay store, e.g. a
    /// `RedisReplayStore` shared by replicas), server nonces, and where client
    /// certificates come from. Default [`SenderChecks::new`]. Which issuers' bound
    /// tokens are accepted is each [`Issuer`]'s setting ([`Issuer::dpop`],
    /// [`Issuer::certificate_bound_tokens`]).
    pub fn sender_checks(mut self, checks: SenderChecks) -> Self {
        self.sender = checks;
        self
    }

    /// A `resource_name` for the metadata document.
    pub fn resource_name(mut self, name: impl Into<String>) -> Self {
        self.resource = self.resource.resource_name(name);
        self
    }

    /// Which scopes imply which (R-MCP-4): with `mcp:admin` ⊇ `mcp:write` ⊇
    /// `mcp:read`, a token with `mcp:admin` passes every rule that needs `mcp:write`
    /// or `mcp:read`, in the required scopes, the MCP scope rules and the tool-list
    /// filter; challenges still name the scopes an operation needs. A cycle is a
    /// build error.
    ///
    /// ```
    /// use mcp_gatekeeper::{Issuer, McpScopes, ResourceServer, ScopeHierarchy};
    ///
    /// let server = ResourceServer::builder("https://mcp.example.com/mcp")
    ///     .issuer(Issuer::new("https://idp.example.com"))
    ///     .mcp_scopes(McpScopes::new(["mcp:read"]).tool("write*", ["mcp:write"]))
    ///     .scope_hierarchy(
    ///         ScopeHierarchy::new()
    ///             .implies("mcp:admin", ["mcp:write"])
    ///             .implies("mcp:write", ["mcp:read"]),
    ///     )
    ///     .build()?;
    /// # Ok::<(), mcp_gatekeeper::ConfigError>(())
    /// ```
    pub fn scope_hierarchy(mut self, hierarchy: ScopeHierarchy) -> Self {
        self.scopes.hierarchy = hierarchy;
        self
    }

    /// The cap on token length (R-BEAR-4).
    pub fn max_token_len(mut self, len: usize) -> Self {
        self.max_token_len = len;
        self
    }

    /// Also lets the pages of `origin` (`http://localhost:6274`, the MCP Inspector)
    /// call the server (repeatable); the resource's own origin is always allowed. A
    /// browser request from any other origin is answered `403` before its token is
    /// looked at (R-MCP-7; see [`OriginLayer`](crate::OriginLayer)). What is not an
    /// origin is a build error.
    pub fn allow_origin(mut self, origin: impl Into<String>) -> Self {
        self.origins.allowed.push(origin.into());
        self
    }

    /// Whether the `Origin` header is checked (default `true`: the transport requires
    /// it, against DNS rebinding; R-MCP-7). Turn it off only when a proxy in front
    /// checks it, or no browser can reach the server.
    pub fn check_origin(mut self, on: bool) -> Self {
        self.origins.check = on;
        self
    }

    /// Whether CORS answers browser-based MCP clients (default `true`): preflights are
    /// answered without a token, and the pages of the allowed origins (the resource's
    /// own and those of [`allow_origin`](Self::allow_origin)) may read every answer,
    /// the `401` challenge included (see [`CorsLayer`](crate::CorsLayer)). Turn it off
    /// only for a service with a CORS layer of its own.
    pub fn cors(mut self, on: bool) -> Self {
        self.origins.cors = on;
        self
    }

    /// Whether the metadata is also served at the root well-known URL (default
    /// `false`).
    pub fn serve_root_metadata(mut self, on: bool) -> Self {
        self.serve_root_metadata = on;
        self
    }

    /// The steps of `build` after the verifier is made: the scopes, the checks, the
    /// policy and the layers in order.
    fn finish(
        self,
        verifier: Arc<dyn TokenVerifier>,
        issuer_policies: Vec<(String, AudiencePolicy)>,
    ) -> Result<ResourceServer, ConfigError> {
        self.check_mcp()?;
        self.check_offline_access()?;
        self.scopes.hierarchy.validate()?;
        let resource = self.scopes.describe(self.resource.clone())?;
        self.check_token_len()?;
        resource.validate()?;
        let metadata = MetadataLayer::new(resource.clone()).serve_root(self.serve_root_metadata);
        // Allowed origins are checked even with the check off: a typo stays an error.
        let origins = AllowedOrigins::new(resource.clone()).allow(&self.origins.allowed)?;
        let origin = OriginLayer::with_origins(origins.clone(), self.origins.check);
        let cors = CorsLayer::with_origins(origins, self.origins.cors);
        let policy = self.scopes.policy(&resource);
        check_arguments(&policy)?;

        let operation = OperationLayer::new(resource.clone()).body_limit(self.mcp.body_limit);
        let operation = match self.mcp.operations {
            true => operation.needed_by(policy.clone()),
            false => operation.off(),
        };
        let audience = issuer_policies.into_iter().fold(
            AudienceLayer::new(resource.clone(), self.audience),
            |layer, (issuer, policy)| layer.issuer_policy(issuer, policy),
        );
        let sessions = match self.sessions.bind {
            true => BindSessionsLayer::new(resource.clone())
                .refuse_unknown(self.sessions.refuse_unknown),
            false => BindSessionsLayer::off(resource.clone()),
        };
        let layer = GatekeeperLayer {
            cors,
            metadata: metadata.clone(),
            origin,
            bearer: BearerLayer::new(resource.clone())
                .max_token_len(self.max_token_len)
                .allow_anonymous(policy.has_public()),
            verify: VerifyLayer::new(resource.clone(), verifier).sender_checks(self.sender),
            audience,
            enrich: self.enrich,
            sessions,
            operation,
            authorize: AuthorizeLayer::new(resource.clone(), policy.clone()),
            filter: match self.mcp.filter_tools || policy.filters_tool_lists() {
                true => FilterToolsLayer::new(policy),
                false => FilterToolsLayer::off(),
            },
        };
        Ok(ResourceServer {
            resource,
            metadata,
            layer,
        })
    }
}

impl ScopeSettings {
    /// `resource` with the scopes the `401` challenge names (the required ones and
    /// the MCP default) and `scopes_supported` (derived from every scope named, or
    /// checked to hold them all).
    fn describe(&self, mut resource: ProtectedResource) -> Result<ProtectedResource, ConfigError> {
        let mut baseline = self.required.clone();
        let mut implied = self.required.clone();
        if let Some(rules) = &self.mcp {
            add_scopes(&mut baseline, rules.default_scopes());
            add_scopes(&mut implied, &rules.all_scopes());
        }
        if !baseline.is_empty() {
            resource = resource.challenge_scope(baseline);
        }
        if resource.supported_scopes().is_empty() {
            resource = resource.scopes_supported(implied);
        } else if let Some(missing) = implied
            .iter()
            .find(|s| !resource.supported_scopes().contains(s))
        {
            return Err(ConfigError::new(format!(
                "scope {missing:?} is required but not in scopes_supported; add it to \
                 scopes_supported, or leave scopes_supported out to have it derived from the \
                 required scopes and the MCP scope rules"
            )));
        }
        if self.challenge_all && !resource.supported_scopes().is_empty() {
            let all = resource.supported_scopes().to_vec();
            resource = resource.challenge_scope(all);
        }
        Ok(resource)
    }

    /// The authorization policy these settings make, for `resource`.
    fn policy(&self, resource: &ProtectedResource) -> ServerAuthorize {
        ServerAuthorize::new(
            self.required.clone(),
            self.mcp.clone(),
            self.challenge_granted
                .then(|| resource.supported_scopes().into()),
            self.callback.clone(),
            self.hierarchy.clone(),
        )
    }
}
