//! [`ResourceServer`]: the front door. It is built from one description of the
//! resource ([`ResourceServerBuilder`]), holds the pipeline in the only correct order
//! (see the crate docs) and the metadata endpoint, and answers for the caches of its
//! verifiers.

use http::request::Parts;

use crate::builder::{Issuers, OwnVerifier, ResourceServerBuilder};
use crate::cors::CorsLayer;
use crate::metadata::{MetadataEndpoint, MetadataLayer};
use crate::pipeline::GatekeeperLayer;
use crate::resource::ProtectedResource;
use crate::verify::{TokenCacheUsage, TokenVerifier};

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
    pub(crate) resource: ProtectedResource,
    pub(crate) metadata: MetadataLayer,
    pub(crate) layer: GatekeeperLayer,
}

impl ResourceServer {
    /// Starts describing a resource with one canonical URI: the exact URL clients
    /// connect to (`https://mcp.example.com/mcp`), whose tokens come from the
    /// [`Issuers`] you add.
    pub fn builder(resource_uri: impl Into<String>) -> ResourceServerBuilder {
        ResourceServerBuilder::new(ProtectedResource::new(resource_uri), Issuers::none())
    }

    /// Starts describing a resource per route (a gateway serving `/servers/{id}/mcp`);
    /// see [`ProtectedResource::per_route`].
    pub fn per_route<F>(route: F) -> ResourceServerBuilder
    where
        F: Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    {
        ResourceServerBuilder::new(ProtectedResource::per_route(route), Issuers::none())
    }

    /// Starts describing `resource` (a URI, or [`ProtectedResource::per_route`]) whose
    /// tokens are verified by a verifier of your own instead of the issuers' JWT
    /// verifier. Issuers, routes and the verified-token cache belong to that verifier
    /// (a [`VerifierChain`](crate::VerifierChain) has them), so the builder has no methods for them; what
    /// the builder learns from [`Issuers`] it cannot learn from a verifier, so say it
    /// here: name the authorization servers clients should use with
    /// [`ResourceServerBuilder::authorization_server`], and give the audience policy
    /// with [`ResourceServerBuilder::audience`] (an [`Issuer::audience`](crate::Issuer::audience) inside the
    /// verifier is not seen by the audience stage).
    ///
    /// ```
    /// use mcp_gatekeeper::{Issuer, ResourceServer, TokenCacheOptions, VerifierChain};
    ///
    /// let chain = VerifierChain::new([Issuer::new("https://idp.example.com")])?
    ///     .token_cache(TokenCacheOptions::default());
    /// let server = ResourceServer::with_verifier("https://mcp.example.com/mcp", chain)
    ///     .authorization_server("https://idp.example.com")
    ///     .build()?;
    /// # Ok::<(), mcp_gatekeeper::ConfigError>(())
    /// ```
    ///
    /// Each of the following is that example with one line added, and does not
    /// compile: the line would be ignored next to a verifier of your own.
    ///
    /// ```compile_fail
    /// # use mcp_gatekeeper::{Issuer, ResourceServer, TokenCacheOptions, VerifierChain};
    /// # let chain = VerifierChain::new([Issuer::new("https://idp.example.com")])?
    /// #     .token_cache(TokenCacheOptions::default());
    /// let server = ResourceServer::with_verifier("https://mcp.example.com/mcp", chain)
    ///     .authorization_server("https://idp.example.com")
    ///     .token_cache(TokenCacheOptions::default())
    ///     .build()?;
    /// # Ok::<(), mcp_gatekeeper::ConfigError>(())
    /// ```
    ///
    /// ```compile_fail
    /// # use mcp_gatekeeper::{Issuer, ResourceServer, TokenCacheOptions, VerifierChain};
    /// # let chain = VerifierChain::new([Issuer::new("https://idp.example.com")])?
    /// #     .token_cache(TokenCacheOptions::default());
    /// let server = ResourceServer::with_verifier("https://mcp.example.com/mcp", chain)
    ///     .authorization_server("https://idp.example.com")
    ///     .issuer(Issuer::new("https://other.example.com"))
    ///     .build()?;
    /// # Ok::<(), mcp_gatekeeper::ConfigError>(())
    /// ```
    ///
    /// ```compile_fail
    /// # use mcp_gatekeeper::{Issuer, JwtVerifier, ResourceServer, TokenCacheOptions, VerifierChain};
    /// # let chain = VerifierChain::new([Issuer::new("https://idp.example.com")])?
    /// #     .token_cache(TokenCacheOptions::default());
    /// # let other = JwtVerifier::new([Issuer::new("https://other.example.com")])?;
    /// let server = ResourceServer::with_verifier("https://mcp.example.com/mcp", chain)
    ///     .authorization_server("https://idp.example.com")
    ///     .route_issuer("https://other.example.com", other)
    ///     .build()?;
    /// # Ok::<(), mcp_gatekeeper::ConfigError>(())
    /// ```
    pub fn with_verifier(
        resource: impl Into<ProtectedResource>,
        verifier: impl TokenVerifier,
    ) -> ResourceServerBuilder<OwnVerifier> {
        ResourceServerBuilder::new(resource.into(), OwnVerifier::new(verifier))
    }

    /// The whole pipeline as one layer, its stages in order (see the crate docs).
    pub fn layer(&self) -> GatekeeperLayer {
        self.layer.clone()
    }

    /// A service that serves only the metadata document, for routers where the
    /// stack's layer does not see the well-known path.
    pub fn metadata_service(&self) -> MetadataEndpoint {
        MetadataEndpoint::new(self.metadata.clone())
    }

    /// The server's CORS stage alone, to put around what the stack's layer does not
    /// cover (the [`metadata_service`](Self::metadata_service) on a router of its own,
    /// say): the same origins, headers and switch.
    pub fn cors(&self) -> CorsLayer {
        self.layer.cors.clone()
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
