//! [`ProtectedResource`]: the one description of what is protected — the canonical
//! resource URI (fixed, or per route), the trusted authorization servers and the
//! scopes. The audience check, the challenges and the metadata document all read it,
//! so the three cannot disagree about the resource (R-AUD-2, R-PRM-2, R-PRM-3).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use http::request::Parts;

use crate::error::ConfigError;
use crate::uri;

/// The well-known suffix of RFC 9728 protected resource metadata.
pub(crate) const METADATA_WELL_KNOWN: &str = "oauth-protected-resource";

type RouteFn = dyn Fn(&Parts) -> Option<String> + Send + Sync;

#[derive(Clone)]
enum ResourceUri {
    Fixed { uri: String, metadata_url: String },
    PerRoute(Arc<RouteFn>),
}

#[derive(Clone)]
struct Inner {
    uri: ResourceUri,
    authorization_servers: Vec<String>,
    scopes_supported: Vec<String>,
    challenge_scope: Option<String>,
    resource_name: Option<String>,
    sender: SenderMetadata,
}

/// What the resource says of sender-constrained tokens (RFC 9728 §2, RFC 9449 §7.1):
/// the DPoP proof algorithms it accepts (none: no DPoP), whether every token must be
/// DPoP-bound, and whether certificate-bound tokens are accepted.
#[derive(Clone, Default)]
struct SenderMetadata {
    dpop_algorithms: Vec<jsonwebtoken::Algorithm>,
    dpop_required: bool,
    mtls: bool,
}

/// What this server protects, described once. Cheap to clone.
///
/// ```
/// use mcp_gatekeeper::ProtectedResource;
///
/// let resource = ProtectedResource::new("https://mcp.example.com/mcp")
///     .authorization_server("https://idp.example.com")
///     .scopes_supported(["mcp:read", "mcp:write"]);
/// assert_eq!(
///     resource.metadata_url("https://mcp.example.com/mcp"),
///     "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
/// );
/// ```
#[derive(Clone)]
pub struct ProtectedResource(Arc<Inner>);

impl From<&str> for ProtectedResource {
    /// [`ProtectedResource::new`].
    fn from(uri: &str) -> Self {
        Self::new(uri)
    }
}

impl From<String> for ProtectedResource {
    /// [`ProtectedResource::new`].
    fn from(uri: String) -> Self {
        Self::new(uri)
    }
}

impl ProtectedResource {
    /// A resource with one canonical URI: the exact URL clients connect to, e.g.
    /// `https://mcp.example.com/mcp`.
    pub fn new(uri: impl Into<String>) -> Self {
        let uri = uri.into();
        let metadata_url = uri::insert_well_known(&uri, METADATA_WELL_KNOWN);
        Self::from_uri(ResourceUri::Fixed { uri, metadata_url })
    }

    /// A resource per route, for gateways that serve several MCP servers
    /// (`/servers/{id}/mcp`): `route` maps a request to its canonical resource URI,
    /// or `None` when the request is not for a protected resource. The metadata
    /// endpoint calls it with the path that follows the well-known prefix.
    pub fn per_route<F>(route: F) -> Self
    where
        F: Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    {
        Self::from_uri(ResourceUri::PerRoute(Arc::new(route)))
    }

    fn from_uri(uri: ResourceUri) -> Self {
        Self(Arc::new(Inner {
            uri,
            authorization_servers: Vec::new(),
            scopes_supported: Vec::new(),
            challenge_scope: None,
            resource_name: None,
            sender: SenderMetadata::default(),
        }))
    }

    fn edit(mut self, f: impl FnOnce(&mut Inner)) -> Self {
        f(Arc::make_mut(&mut self.0));
        self
    }

    /// Adds an authorization server (issuer) to the metadata document.
    pub fn authorization_server(self, issuer: impl Into<String>) -> Self {
        let issuer = issuer.into();
        self.edit(|i| {
            if !i.authorization_servers.contains(&issuer) {
                i.authorization_servers.push(issuer);
            }
        })
    }

    /// Sets `scopes_supported` of the metadata document.
    pub fn scopes_supported<I, T>(self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        let scopes = scopes.into_iter().map(Into::into).collect();
        self.edit(|i| i.scopes_supported = scopes)
    }

    /// The `scope` parameter of `401` challenges: the scopes a client should ask for
    /// to use this resource at all (MCP scope selection).
    pub fn challenge_scope<I, T>(self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        let scopes: Vec<String> = scopes.into_iter().map(Into::into).collect();
        let scope = (!scopes.is_empty()).then(|| scopes.join(" "));
        self.edit(|i| i.challenge_scope = scope)
    }

    /// A human-readable `resource_name` for the metadata document.
    pub fn resource_name(self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.edit(|i| i.resource_name = Some(name))
    }

    /// The algorithms this resource accepts for DPoP proofs (RFC 9449): the
    /// `dpop_signing_alg_values_supported` of the metadata document, the `algs` of
    /// the `DPoP` challenge that `401` answers then carry beside the `Bearer` one, and
    /// whether the `DPoP` authorization scheme is read at all (none: DPoP is off).
    /// [`ResourceServer`](crate::ResourceServer) sets it from the proof verifier when
    /// an issuer accepts DPoP ([`Issuer::dpop`](crate::Issuer::dpop)).
    pub fn dpop_signing_algs(
        self,
        algorithms: impl IntoIterator<Item = jsonwebtoken::Algorithm>,
    ) -> Self {
        let algorithms = algorithms.into_iter().collect();
        self.edit(|i| i.sender.dpop_algorithms = algorithms)
    }

    /// Whether every token must be DPoP-bound (`dpop_bound_access_tokens_required`
    /// of the metadata document); `401` answers then carry only the `DPoP` challenge.
    pub fn dpop_bound_access_tokens_required(self, required: bool) -> Self {
        self.edit(|i| i.sender.dpop_required = required)
    }

    /// Whether certificate-bound tokens are accepted (RFC 8705,
    /// `tls_client_certificate_bound_access_tokens` of the metadata document).
    pub fn tls_client_certificate_bound_access_tokens(self, on: bool) -> Self {
        self.edit(|i| i.sender.mtls = on)
    }

    /// The DPoP proof algorithms accepted; empty when DPoP is off.
    pub fn dpop_algorithms(&self) -> &[jsonwebtoken::Algorithm] {
        &self.0.sender.dpop_algorithms
    }

    /// The `algs` of the `DPoP` challenge: the accepted algorithms' JWS names,
    /// separated by spaces.
    pub(crate) fn dpop_algs_param(&self) -> String {
        let names: Vec<String> = self
            .dpop_algorithms()
            .iter()
            .filter_map(|a| serde_json::to_value(a).ok())
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        names.join(" ")
    }

    /// Whether every token must be DPoP-bound.
    pub fn dpop_required(&self) -> bool {
        self.0.sender.dpop_required
    }

    /// Whether certificate-bound tokens are accepted.
    pub fn accepts_certificate_bound_tokens(&self) -> bool {
        self.0.sender.mtls
    }

    /// The canonical resource URI for a request, or `None` when the request is not
    /// for a protected resource.
    pub fn resource_for<'a>(&'a self, parts: &Parts) -> Option<Cow<'a, str>> {
        match &self.0.uri {
            ResourceUri::Fixed { uri, .. } => Some(Cow::Borrowed(uri)),
            ResourceUri::PerRoute(route) => route(parts).map(Cow::Owned),
        }
    }

    /// The metadata URL (RFC 9728 path insertion) for a resource URI.
    pub fn metadata_url<'a>(&'a self, resource: &str) -> Cow<'a, str> {
        match &self.0.uri {
            ResourceUri::Fixed { uri, metadata_url } if uri == resource => {
                Cow::Borrowed(metadata_url)
            }
            _ => Cow::Owned(uri::insert_well_known(resource, METADATA_WELL_KNOWN)),
        }
    }

    /// The fixed resource URI, when there is one (not per route).
    pub fn fixed_uri(&self) -> Option<&str> {
        match &self.0.uri {
            ResourceUri::Fixed { uri, .. } => Some(uri),
            ResourceUri::PerRoute(_) => None,
        }
    }

    /// The trusted authorization servers listed in the metadata document.
    pub fn authorization_servers(&self) -> &[String] {
        &self.0.authorization_servers
    }

    /// `scopes_supported` of the metadata document.
    pub fn supported_scopes(&self) -> &[String] {
        &self.0.scopes_supported
    }

    /// The `scope` parameter of `401` challenges, if any.
    pub fn challenge_scope_value(&self) -> Option<&str> {
        self.0.challenge_scope.as_deref()
    }

    /// The `resource_name` of the metadata document, if any.
    pub fn name(&self) -> Option<&str> {
        self.0.resource_name.as_deref()
    }

    /// Checks the description for mistakes (R-OPS-2): a fixed URI that is not an
    /// absolute `https` URL, no authorization server, a challenge scope outside
    /// `scopes_supported`, `offline_access` among either (R-MCP-5).
    /// [`ResourceServer`](crate::ResourceServer) calls it; layers composed by hand
    /// should too.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let ResourceUri::Fixed { uri, .. } = &self.0.uri {
            uri::check_url(uri, "resource URI")?;
        }
        if self.0.authorization_servers.is_empty() {
            return Err(ConfigError::new(
                "no authorization server: the metadata document must list at least one \
                 (R-PRM-2); add a trusted issuer",
            ));
        }
        let named = self.0.challenge_scope.iter().flat_map(|s| s.split(' '));
        if named
            .chain(self.0.scopes_supported.iter().map(String::as_str))
            .any(|s| s == OFFLINE_ACCESS)
        {
            return Err(offline_access_named(
                "scopes_supported or the challenge scope",
            ));
        }
        if self.0.sender.dpop_required && self.0.sender.dpop_algorithms.is_empty() {
            return Err(ConfigError::new(
                "dpop_bound_access_tokens_required without DPoP proof algorithms: set \
                 dpop_signing_algs too",
            ));
        }
        if let Some(scope) = &self.0.challenge_scope
            && !self.0.scopes_supported.is_empty()
            && let Some(missing) = scope
                .split(' ')
                .find(|s| !self.0.scopes_supported.iter().any(|x| x == s))
        {
            return Err(ConfigError::new(format!(
                "scope {missing:?} is required but not in scopes_supported; add it to \
                 scopes_supported so clients know to ask for it"
            )));
        }
        Ok(())
    }
}

/// The OpenID Connect scope that asks for a refresh token: never a requirement of a
/// resource (R-MCP-5).
pub(crate) const OFFLINE_ACCESS: &str = "offline_access";

/// The build error of a configuration that names `offline_access` in `place`.
pub(crate) fn offline_access_named(place: &str) -> ConfigError {
    ConfigError::new(format!(
        "scope \"offline_access\" is named in {place}: it asks the authorization server \
         for a refresh token, which is not a requirement of this resource, and MCP \
         (2026-07-28) says a resource server should not name it in scopes_supported nor \
         in a challenge (R-MCP-5); remove it (clients that want refresh tokens ask the \
         authorization server for it themselves)"
    ))
}

impl fmt::Debug for ProtectedResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ProtectedResource");
        match &self.0.uri {
            ResourceUri::Fixed { uri, .. } => d.field("uri", uri),
            ResourceUri::PerRoute(_) => d.field("uri", &"<per route>"),
        };
        d.field("authorization_servers", &self.0.authorization_servers)
            .field("scopes_supported", &self.0.scopes_supported)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resource_naming_offline_access_does_not_validate() {
        // R-MCP-5, for a ProtectedResource used without the builder.
        let resource = ProtectedResource::new("https://mcp.example.com/mcp")
            .authorization_server("https://idp.example.com");
        assert!(resource.validate().is_ok());
        for named in [
            resource
                .clone()
                .scopes_supported(["mcp:read", "offline_access"]),
            resource.clone().challenge_scope(["offline_access"]),
        ] {
            let error = named
                .validate()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(error.contains("\"offline_access\" is named in"), "{error}");
        }
    }
}
