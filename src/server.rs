//! [`ResourceServer`]: the front door. From one description of the resource — its
//! canonical URI, the trusted issuers, the scopes — it builds the layers in the only
//! correct order (metadata, bearer, verify, audience, enrich, session binding,
//! operation, authorize, tool filter) and the metadata endpoint. Building checks the configuration
//! (R-OPS-2) and does no I/O (R-KEY-2).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::request::Parts;
use tower::Layer;

use crate::audience::{Audience, AudienceLayer, AudiencePolicy};
use crate::authorize::{
    Authorize, AuthorizeLayer, AuthorizeService, BoxAuthorize, Decision, RequireScopes,
};
use crate::bearer::{Bearer, BearerLayer, DEFAULT_MAX_TOKEN_LEN};
use crate::enrich::{Enrich, EnrichLayer, EnrichService, ServerEnrich};
use crate::error::ConfigError;
use crate::mcp::{
    BindSessions, BindSessionsLayer, DEFAULT_MCP_BODY_LIMIT, FilterTools, FilterToolsLayer,
    McpOperation, McpScopes, Operation, OperationLayer,
};
use crate::metadata::{Metadata, MetadataLayer, MetadataService};
use crate::principal::Principal;
use crate::resource::ProtectedResource;
use crate::verify::{
    Issuer, TokenCacheOptions, TokenCacheUsage, TokenVerifier, VerifierChain, Verify, VerifyLayer,
};

/// Builds a [`ResourceServer`]; see [`ResourceServer::builder`].
#[must_use]
pub struct ResourceServerBuilder {
    resource: ProtectedResource,
    issuers: Vec<Issuer>,
    verifier: Option<Arc<dyn TokenVerifier>>,
    audience: AudiencePolicy,
    required_scopes: Vec<String>,
    authorize: Option<BoxAuthorize>,
    enrich: ServerEnrich,
    enrich_timeout: std::time::Duration,
    routed: Vec<(String, Arc<dyn TokenVerifier>)>,
    max_token_len: usize,
    serve_root_metadata: bool,
    mcp_scopes: Option<McpScopes>,
    mcp_operations: bool,
    mcp_body_limit: usize,
    filter_tools: bool,
    challenge_granted_scopes: bool,
    token_cache: Option<TokenCacheOptions>,
    bind_sessions: bool,
    refuse_unknown_sessions: bool,
}

impl ResourceServerBuilder {
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
        self.mcp_scopes = Some(scopes);
        self
    }

    /// Removes from `tools/list` answers the tools the caller could not call (by the
    /// [`mcp_scopes`](Self::mcp_scopes) and the [`authorize`](Self::authorize)
    /// callback). Off by default.
    pub fn filter_tools(mut self, on: bool) -> Self {
        self.filter_tools = on;
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
        self.challenge_granted_scopes = on;
        self
    }

    /// Whether MCP sessions are bound to the principal they were issued to (default
    /// `true`): a request carrying an `Mcp-Session-Id` issued to another issuer,
    /// subject or client id is answered `404`, as for an unknown session, so a
    /// leaked session id is useless to anyone else (R-GW-5; see
    /// [`BindSessionsLayer`]).
    pub fn bind_sessions(mut self, on: bool) -> Self {
        self.bind_sessions = on;
        self
    }

    /// With session binding on, also answers `404` to a session id the server was
    /// not seen issuing (default `false`: such an id is bound to the first principal
    /// that uses it, which keeps working after a restart and across replicas). Turn
    /// it on for a single replica; see [`BindSessionsLayer::refuse_unknown`].
    pub fn refuse_unknown_sessions(mut self, on: bool) -> Self {
        self.refuse_unknown_sessions = on;
        self
    }

    /// The most of a request body read to find its MCP operation; longer bodies are
    /// refused with `400` when a rule needs the operation. Default
    /// [`DEFAULT_MCP_BODY_LIMIT`](crate::DEFAULT_MCP_BODY_LIMIT) (1 MiB).
    pub fn mcp_body_limit(mut self, bytes: usize) -> Self {
        self.mcp_body_limit = bytes;
        self
    }

    /// Whether request bodies are MCP JSON-RPC, read to find the operation when the
    /// authorization needs it (default `true`): then every `POST` behind the layer
    /// (gRPC excepted) must be a JSON-RPC message when a rule needs it, or it is
    /// refused with `400`. Turn it off for a service that is not MCP (a REST API);
    /// callbacks then see [`McpOperation::unknown`].
    pub fn mcp_operations(mut self, on: bool) -> Self {
        self.mcp_operations = on;
        self
    }

    /// Sends the JWT-shaped tokens of `issuer` to `verifier` instead of checking
    /// them locally (R-ISS-2); see [`VerifierChain::route_issuer`]. The issuer is
    /// not listed in the metadata document; name the authorization server clients
    /// should use with [`ResourceServerBuilder::authorization_server`].
    pub fn route_issuer(mut self, issuer: impl Into<String>, verifier: impl TokenVerifier) -> Self {
        self.routed.push((issuer.into(), Arc::new(verifier)));
        self
    }

    /// Reviews the service-account tokens of a Kubernetes cluster with its
    /// TokenReview API (feature `kubernetes`, R-ISS-2).
    #[cfg(feature = "kubernetes")]
    pub fn token_review(self, review: crate::TokenReview) -> Result<Self, ConfigError> {
        let issuer = review.issuer().to_owned();
        Ok(self.route_issuer(issuer, crate::TokenReviewVerifier::new(review)?))
    }

    /// An enrichment step after verification, before authorization (R-AZ-2); its
    /// failure is logged and the request goes on with the verified claims.
    pub fn enrich(mut self, enrich: impl Enrich) -> Self {
        self.enrich = ServerEnrich::new(enrich);
        self
    }

    /// How long the enrichment step may take before it counts as failed. Default
    /// [`DEFAULT_ENRICH_TIMEOUT`](crate::DEFAULT_ENRICH_TIMEOUT).
    pub fn enrich_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.enrich_timeout = timeout;
        self
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
        self.token_cache = Some(options);
        self
    }

    /// Trusts an issuer of JWT access tokens (repeatable, R-ISS-1).
    pub fn issuer(mut self, issuer: Issuer) -> Self {
        self.issuers.push(issuer);
        self
    }

    /// Verifies tokens with a verifier of your own instead of the issuers' JWT
    /// verifier; name its authorization servers with
    /// [`ResourceServerBuilder::authorization_server`].
    pub fn verifier(mut self, verifier: impl TokenVerifier) -> Self {
        self.verifier = Some(Arc::new(verifier));
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
        self.required_scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// An authorization callback, run after the scope requirement (R-AZ-1).
    pub fn authorize(mut self, authorize: impl Authorize) -> Self {
        self.authorize = Some(BoxAuthorize::new(authorize));
        self
    }

    /// A `resource_name` for the metadata document.
    pub fn resource_name(mut self, name: impl Into<String>) -> Self {
        self.resource = self.resource.resource_name(name);
        self
    }

    /// The cap on token length (R-BEAR-4).
    pub fn max_token_len(mut self, len: usize) -> Self {
        self.max_token_len = len;
        self
    }

    /// Also serve the metadata at the root well-known URL.
    pub fn serve_root_metadata(mut self) -> Self {
        self.serve_root_metadata = true;
        self
    }

    /// Checks the configuration and builds the server. Synchronous; no I/O.
    pub fn build(self) -> Result<ResourceServer, ConfigError> {
        let mut resource = self.resource;
        let issuer_policies: Vec<(String, AudiencePolicy)> = self
            .issuers
            .iter()
            .filter_map(|i| i.audience_policy().map(|p| (i.id().to_owned(), p.clone())))
            .collect();
        let verifier: Arc<dyn TokenVerifier> = match (self.verifier, self.issuers.is_empty()) {
            (Some(_), false) => {
                return Err(ConfigError::new(
                    "both issuers and a custom verifier are configured; the issuers would be \
                     ignored. Use one or the other",
                ));
            }
            (Some(_), true) if self.token_cache.is_some() => {
                return Err(ConfigError::new(
                    "token_cache applies to the issuers' JWTs, and a custom verifier is \
                     configured instead of issuers; configure that verifier's own cache (e.g. \
                     VerifierChain::token_cache) and drop token_cache",
                ));
            }
            (Some(verifier), true) if self.routed.is_empty() => verifier,
            (Some(_), true) => {
                return Err(ConfigError::new(
                    "a custom verifier and routed issuers are configured; the routes would be \
                     ignored. Route issuers on a VerifierChain and pass that as the verifier",
                ));
            }
            (None, _) => {
                for issuer in &self.issuers {
                    resource = resource.authorization_server(issuer.id());
                }
                let mut chain = VerifierChain::new(self.issuers)?;
                if let Some(options) = self.token_cache {
                    chain = chain.token_cache(options);
                }
                for (issuer, verifier) in self.routed {
                    chain = chain.route_issuer(issuer, verifier)?;
                }
                if chain.is_empty() {
                    return Err(ConfigError::new(
                        "no trusted issuer; add at least one Issuer",
                    ));
                }
                Arc::new(chain)
            }
        };
        if !self.mcp_operations && (self.mcp_scopes.is_some() || self.filter_tools) {
            return Err(ConfigError::new(
                "mcp_scopes and filter_tools need the MCP operation of each request, but \
                 mcp_operations(false) turns reading it off; drop one of them",
            ));
        }
        let mut baseline = self.required_scopes.clone();
        let mut implied = self.required_scopes.clone();
        if let Some(rules) = &self.mcp_scopes {
            for scope in rules.default_scopes() {
                if !baseline.contains(scope) {
                    baseline.push(scope.clone());
                }
            }
            for scope in rules.all_scopes() {
                if !implied.contains(&scope) {
                    implied.push(scope);
                }
            }
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
        if self.max_token_len < 64 {
            return Err(ConfigError::new(format!(
                "max_token_len {} is too small for any real access token; use at least 1024",
                self.max_token_len
            )));
        }
        resource.validate()?;
        let mut metadata = MetadataLayer::new(resource.clone());
        if self.serve_root_metadata {
            metadata = metadata.serve_root();
        }
        let policy = ServerAuthorize {
            scopes: (!self.required_scopes.is_empty())
                .then(|| RequireScopes::all(self.required_scopes)),
            mcp: self.mcp_scopes,
            keep_granted: self
                .challenge_granted_scopes
                .then(|| resource.supported_scopes().into()),
            callback: self.authorize,
        };
        let operation = OperationLayer::new(resource.clone()).body_limit(self.mcp_body_limit);
        let operation = if self.mcp_operations {
            operation.needed_by(policy.clone())
        } else {
            operation.off()
        };
        let filter = if self.filter_tools {
            FilterToolsLayer::new(policy.clone())
        } else {
            FilterToolsLayer::off()
        };
        let layer = GatekeeperLayer {
            metadata: metadata.clone(),
            bearer: BearerLayer::new(resource.clone()).max_token_len(self.max_token_len),
            verify: VerifyLayer::new(resource.clone(), verifier),
            audience: issuer_policies.into_iter().fold(
                AudienceLayer::new(resource.clone(), self.audience),
                |layer, (issuer, policy)| layer.issuer_policy(issuer, policy),
            ),
            enrich: EnrichLayer::new(self.enrich).timeout(self.enrich_timeout),
            sessions: match (self.bind_sessions, self.refuse_unknown_sessions) {
                (true, true) => BindSessionsLayer::new(resource.clone()).refuse_unknown(),
                (true, false) => BindSessionsLayer::new(resource.clone()),
                (false, _) => BindSessionsLayer::off(resource.clone()),
            },
            operation,
            authorize: AuthorizeLayer::new(resource.clone(), policy),
            filter,
        };
        Ok(ResourceServer {
            resource,
            metadata,
            layer,
        })
    }
}

/// An MCP resource server: the whole stack and its metadata endpoint.
///
/// ```
/// use mcp_gatekeeper::{AudiencePolicy, Issuer, ResourceServer};
///
/// let server = ResourceServer::builder("https://mcp.example.com/mcp")
///     .issuer(Issuer::new("https://idp.example.com"))
///     .audience(AudiencePolicy::resource())
///     .scopes_supported(["mcp:read", "mcp:write"])
///     .required_scopes(["mcp:read"])
///     .build()?;
/// let layer = server.layer(); // put it on your router or service
/// # let _ = layer;
/// # Ok::<(), mcp_gatekeeper::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct ResourceServer {
    resource: ProtectedResource,
    metadata: MetadataLayer,
    layer: GatekeeperLayer,
}

impl ResourceServer {
    /// Starts describing a resource with one canonical URI: the exact URL clients
    /// connect to (`https://mcp.example.com/mcp`).
    pub fn builder(resource_uri: impl Into<String>) -> ResourceServerBuilder {
        Self::for_resource(ProtectedResource::new(resource_uri))
    }

    /// Starts describing a resource per route (a gateway serving `/servers/{id}/mcp`);
    /// see [`ProtectedResource::per_route`].
    pub fn per_route<F>(route: F) -> ResourceServerBuilder
    where
        F: Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    {
        Self::for_resource(ProtectedResource::per_route(route))
    }

    fn for_resource(resource: ProtectedResource) -> ResourceServerBuilder {
        ResourceServerBuilder {
            resource,
            issuers: Vec::new(),
            verifier: None,
            audience: AudiencePolicy::resource(),
            required_scopes: Vec::new(),
            authorize: None,
            enrich: ServerEnrich::default(),
            enrich_timeout: crate::enrich::DEFAULT_ENRICH_TIMEOUT,
            routed: Vec::new(),
            max_token_len: DEFAULT_MAX_TOKEN_LEN,
            serve_root_metadata: false,
            mcp_scopes: None,
            mcp_operations: true,
            mcp_body_limit: DEFAULT_MCP_BODY_LIMIT,
            filter_tools: false,
            challenge_granted_scopes: false,
            token_cache: None,
            bind_sessions: true,
            refuse_unknown_sessions: false,
        }
    }

    /// The whole stack as one layer: metadata, bearer, verify, audience, enrich,
    /// session binding, operation, authorize, tool filter.
    pub fn layer(&self) -> GatekeeperLayer {
        self.layer.clone()
    }

    /// A service that serves only the metadata document, for routers where the
    /// stack's layer does not see the well-known path.
    pub fn metadata_service(&self) -> MetadataService {
        MetadataService::new(self.metadata.clone())
    }

    /// The description of the protected resource.
    pub fn resource(&self) -> &ProtectedResource {
        &self.resource
    }

    /// Drops `token` from every cache of the server's verifiers (verified JWTs,
    /// introspection and TokenReview results): the next request with it is verified
    /// from scratch. For a token you learn was revoked, e.g. one you revoked
    /// yourself; a JWT whose key was removed is dropped without this.
    pub async fn forget_token(&self, token: &str) {
        self.layer.verify.verifier().forget(token).await;
    }

    /// How full the server's token caches are, summed over its verifiers.
    pub async fn token_cache_usage(&self) -> TokenCacheUsage {
        self.layer.verify.verifier().cache_usage().await
    }
}

/// The layer of a [`ResourceServer`]: the layers in order.
#[derive(Clone, Debug)]
pub struct GatekeeperLayer {
    metadata: MetadataLayer,
    bearer: BearerLayer,
    verify: VerifyLayer,
    audience: AudienceLayer,
    enrich: EnrichLayer<ServerEnrich>,
    sessions: BindSessionsLayer,
    operation: OperationLayer,
    authorize: AuthorizeLayer<ServerAuthorize>,
    filter: FilterToolsLayer<ServerAuthorize>,
}

/// The service of a [`GatekeeperLayer`] around `S`.
pub type Gatekeeper<S> = Metadata<
    Bearer<
        Verify<
            Audience<
                EnrichService<
                    BindSessions<
                        Operation<
                            AuthorizeService<FilterTools<S, ServerAuthorize>, ServerAuthorize>,
                        >,
                    >,
                    ServerEnrich,
                >,
            >,
        >,
    >,
>;

impl<S> Layer<S> for GatekeeperLayer {
    type Service = Gatekeeper<S>;

    fn layer(&self, inner: S) -> Self::Service {
        let inner = self.filter.layer(inner);
        let inner = self.authorize.layer(inner);
        let inner = self.operation.layer(inner);
        let inner = self.sessions.layer(inner);
        let inner = self.enrich.layer(inner);
        let inner = self.audience.layer(inner);
        let inner = self.verify.layer(inner);
        let inner = self.bearer.layer(inner);
        self.metadata.layer(inner)
    }
}

/// The authorization of a [`ResourceServer`]: the required scopes and the MCP scope
/// rules (one `insufficient_scope` naming both), then the callback. Decides without
/// allocating when the scopes are there and there is no callback.
#[derive(Clone)]
pub struct ServerAuthorize {
    scopes: Option<RequireScopes>,
    mcp: Option<McpScopes>,
    /// With `challenge_granted_scopes`: the supported scopes a challenge may repeat.
    keep_granted: Option<Arc<[String]>>,
    callback: Option<BoxAuthorize>,
}

impl std::fmt::Debug for ServerAuthorize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerAuthorize")
            .field("scopes", &self.scopes)
            .field("mcp", &self.mcp)
            .field("keep_granted", &self.keep_granted)
            .field("callback", &self.callback.is_some())
            .finish()
    }
}

/// The future of [`ServerAuthorize`].
pub struct ServerAuthorizeFuture(
    Option<Decision>,
    Option<<BoxAuthorize as Authorize>::Future>,
);

impl Future for ServerAuthorizeFuture {
    type Output = Decision;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Decision> {
        if let Some(decision) = self.0.take() {
            return Poll::Ready(decision);
        }
        match &mut self.1 {
            Some(future) => future.as_mut().poll(cx),
            None => Poll::Ready(Decision::Allow),
        }
    }
}

impl ServerAuthorize {
    /// The `insufficient_scope` refusal when the required scopes or the MCP scope
    /// rules are not all granted; `None` when they are.
    fn missing_scopes(&self, principal: &Principal, operation: &McpOperation) -> Option<Decision> {
        let required = self.scopes.as_ref().map_or(&[][..], RequireScopes::scopes);
        let rule = self.mcp.as_ref().map(|m| m.scopes_for(operation));
        let rule: &[String] = rule.as_deref().unwrap_or_default();
        let granted = principal.scopes();
        if !required.iter().chain(rule).all(|s| granted.contains(s)) {
            // The scopes this operation needs, all of them (RFC 6750 §3.1, SEP-2350).
            let mut needed = required.to_vec();
            needed.extend(rule.iter().filter(|s| !required.contains(s)).cloned());
            if let Some(supported) = &self.keep_granted {
                for scope in supported.iter() {
                    if granted.contains(scope) && !needed.contains(scope) {
                        needed.push(scope.clone());
                    }
                }
            }
            return Some(Decision::insufficient_scope(needed));
        }
        None
    }
}

impl Authorize for ServerAuthorize {
    type Future = ServerAuthorizeFuture;

    fn authorize(
        &self,
        principal: &Principal,
        operation: &McpOperation,
        parts: &Parts,
    ) -> Self::Future {
        if let Some(refusal) = self.missing_scopes(principal, operation) {
            return ServerAuthorizeFuture(Some(refusal), None);
        }
        match &self.callback {
            Some(callback) => {
                ServerAuthorizeFuture(None, Some(callback.authorize(principal, operation, parts)))
            }
            None => ServerAuthorizeFuture(Some(Decision::Allow), None),
        }
    }

    fn decide_now(
        &self,
        principal: &Principal,
        operation: &McpOperation,
        parts: &Parts,
    ) -> Option<Decision> {
        if let Some(refusal) = self.missing_scopes(principal, operation) {
            return Some(refusal);
        }
        match &self.callback {
            Some(callback) => callback.decide_now(principal, operation, parts),
            None => Some(Decision::Allow),
        }
    }

    fn needs_operation(&self, principal: &Principal) -> bool {
        self.mcp
            .as_ref()
            .is_some_and(|m| m.depends_on_operation(principal))
            || self
                .callback
                .as_ref()
                .is_some_and(|c| c.needs_operation(principal))
    }
}
