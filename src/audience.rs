//! [`AudienceLayer`] and [`AudiencePolicy`]: is this verified token meant for this
//! resource (R-AUD-1..5)?
//!
//! On by construction: the policy starts from the resource the request is for (its
//! canonical URI, the same string the metadata document names), compared canonically.
//! Everything looser — other audiences, client ids of IdPs without RFC 8707, tokens
//! without `aud` — is an explicit opt-in with a name that says so.

use std::collections::HashMap;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::request::Parts;
use http::{Request, Response};
use tower::Service;

use crate::bearer::BearerToken;
use crate::body::ResponseBody;
use crate::challenge;
use crate::error::AuthError;
use crate::future::{Rejection, ResponseFuture};
use crate::principal::Principal;
use crate::resource::ProtectedResource;
use crate::rule::Rule;
use crate::uri::canonical;

/// Which `aud` values a token may carry to be accepted here.
///
/// ```
/// use mcp_gatekeeper::AudiencePolicy;
///
/// // The resource URI, plus the public URL behind a proxy, plus the client id that an
/// // IdP without RFC 8707 (Authentik, Keycloak) puts into `aud`.
/// let policy = AudiencePolicy::resource()
///     .also_accept("https://mcp.public.example.com/mcp")
///     .accept_client_ids(["my-oauth-client"]);
/// ```
#[derive(Clone, Debug, Default)]
pub struct AudiencePolicy {
    /// Canonical forms of the extra accepted audiences.
    extra: Vec<String>,
    client_ids: Vec<String>,
    /// Client ids accepted for one resource only: (canonical resource, client id).
    client_ids_on: Vec<(String, String)>,
    allow_missing: bool,
    any: bool,
}

/// Why a token's audience was accepted, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudienceMatch {
    /// `aud` names the resource of the request.
    Resource,
    /// `aud` names one of the extra accepted audiences.
    Listed,
    /// `aud` names a listed client id (opt-in, R-AUD-4).
    ClientId,
    /// The token has no `aud` and that was allowed (opt-in, R-AUD-5).
    Missing,
    /// Any audience was allowed (opt-in).
    Any,
}

impl AudiencePolicy {
    /// Accept tokens whose `aud` names the resource the request is for (R-AUD-2).
    pub fn resource() -> Self {
        Self::default()
    }

    /// Also accept this audience: another public URL of the resource (compared
    /// canonically), an `api://` id, a GUID (compared exactly) (R-AUD-3).
    pub fn also_accept(mut self, audience: impl AsRef<str>) -> Self {
        self.extra.push(canonical(audience.as_ref()).into_owned());
        self
    }

    /// Accept tokens whose `aud` is one of these OAuth client ids (R-AUD-4). For
    /// identity providers without RFC 8707 resource indicators (Authentik, Keycloak,
    /// Entra v1), which put the client id into `aud`. Only the listed ids pass.
    pub fn accept_client_ids<I, T>(mut self, client_ids: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.client_ids
            .extend(client_ids.into_iter().map(Into::into));
        self
    }

    /// Accept tokens whose `aud` is one of these OAuth client ids, but only on
    /// `resource` (compared canonically): for a gateway with one resource per route
    /// (`/servers/{id}/mcp`), where each server has its own OAuth client, a token
    /// for one server's client must not open the others (R-AUD-3, R-AUD-4).
    pub fn accept_client_ids_on<I, T>(mut self, resource: impl AsRef<str>, client_ids: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        let resource = canonical(resource.as_ref()).into_owned();
        self.client_ids_on.extend(
            client_ids
                .into_iter()
                .map(|id| (resource.clone(), id.into())),
        );
        self
    }

    /// Accept tokens with no `aud` at all (R-AUD-5). Such a token names no
    /// resource, so any resource server trusting the same issuer would accept it
    /// too; use only when the issuer serves this resource alone (e.g. an embedded
    /// authorization server whose clients send no RFC 8707 `resource`).
    pub fn allow_missing_audience(mut self) -> Self {
        self.allow_missing = true;
        self
    }

    /// Accept any audience. Tokens issued for other services will be accepted here;
    /// this disables the check MCP requires. For tests and migrations only.
    pub fn accept_any_audience_insecure() -> Self {
        Self {
            any: true,
            ..Self::default()
        }
    }

    /// Decides on a token's audiences for a request whose resource is `resource`
    /// (`None` when the request has no protected resource).
    pub fn check(
        &self,
        audiences: &[String],
        resource: Option<&str>,
    ) -> Result<AudienceMatch, AuthError> {
        if self.any {
            return Ok(AudienceMatch::Any);
        }
        if audiences.is_empty() {
            return if self.allow_missing {
                Ok(AudienceMatch::Missing)
            } else {
                Err(AuthError::invalid_token(
                    Rule::Aud5,
                    "the token has no aud claim, so it is not meant for this resource; the client \
                     probably sent no RFC 8707 'resource' parameter, or the authorization server \
                     ignored it",
                ))
            };
        }
        // The usual case first: the token names the resource exactly as configured.
        if let Some(resource) = resource
            && audiences.iter().any(|aud| aud == resource)
        {
            return Ok(AudienceMatch::Resource);
        }
        let resource = resource.map(canonical);
        for aud in audiences {
            let aud = canonical(aud);
            if resource.as_deref() == Some(&*aud) {
                return Ok(AudienceMatch::Resource);
            }
            if self.extra.iter().any(|e| *e == *aud) {
                return Ok(AudienceMatch::Listed);
            }
        }
        if audiences.iter().any(|aud| self.client_ids.contains(aud)) {
            return Ok(AudienceMatch::ClientId);
        }
        if let Some(resource) = resource.as_deref()
            && self
                .client_ids_on
                .iter()
                .any(|(on, id)| on == resource && audiences.contains(id))
        {
            return Ok(AudienceMatch::ClientId);
        }
        Err(AuthError::invalid_token(
            Rule::Aud2,
            match resource {
                Some(_) => {
                    "the token's aud does not name this resource; request a token with RFC 8707 'resource' set to this server's URL"
                }
                None => "this URL is not a protected resource of this server",
            },
        ))
    }
}

/// A layer that checks the [`Principal`]'s audiences against an [`AudiencePolicy`]
/// for the resource of each request (per route when the resource is per route).
#[derive(Clone, Debug)]
pub struct AudienceLayer {
    resource: ProtectedResource,
    policies: Arc<Policies>,
}

#[derive(Debug)]
struct Policies {
    default: AudiencePolicy,
    by_issuer: HashMap<String, AudiencePolicy>,
}

impl AudienceLayer {
    /// An audience layer for `resource` with `policy`.
    pub fn new(resource: ProtectedResource, policy: AudiencePolicy) -> Self {
        Self {
            resource,
            policies: Arc::new(Policies {
                default: policy,
                by_issuer: HashMap::new(),
            }),
        }
    }

    /// Uses `policy` instead of the default for tokens of `issuer` (R-ISS-1: each
    /// issuer has its own audience rules).
    pub fn issuer_policy(mut self, issuer: impl Into<String>, policy: AudiencePolicy) -> Self {
        if let Some(policies) = Arc::get_mut(&mut self.policies) {
            policies.by_issuer.insert(issuer.into(), policy);
        } else {
            let mut by_issuer = self.policies.by_issuer.clone();
            by_issuer.insert(issuer.into(), policy);
            self.policies = Arc::new(Policies {
                default: self.policies.default.clone(),
                by_issuer,
            });
        }
        self
    }
}

crate::pipeline::layer_service!(AudienceLayer => AudienceService);

fn decide(layer: &AudienceLayer, parts: &Parts) -> Result<(), AuthError> {
    let Some(principal) = parts.extensions.get::<Principal>() else {
        return Err(AuthError::misconfigured(
            "AudienceLayer found no Principal: put VerifyLayer in front of it",
        ));
    };
    // No token, no audience: an anonymous caller reaches public operations only.
    if principal.is_anonymous() {
        return Ok(());
    }
    let resource = layer.resource.resource_for(parts);
    let policies = &layer.policies;
    let policy = if policies.by_issuer.is_empty() {
        &policies.default
    } else {
        policies
            .by_issuer
            .get(principal.issuer())
            .unwrap_or(&policies.default)
    };
    let matched = policy.check(principal.audiences(), resource.as_deref())?;
    if matched != AudienceMatch::Resource {
        tracing::debug!(audience_match = ?matched, "audience accepted by an opt-in rule");
    }
    Ok(())
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for AudienceService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ReqBody: http_body::Body,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        match decide(&self.layer, &parts) {
            Ok(()) => {
                if let Some(token) = parts.extensions.get_mut::<BearerToken>() {
                    token.mark_audience_checked();
                }
                ResponseFuture::inner(self.inner.call(Request::from_parts(parts, body)))
            }
            Err(error) => ResponseFuture::rejected(Rejection::new(
                challenge::reject(error, &self.layer.resource, &parts),
                body,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESOURCE: &str = "https://mcp.example.com/mcp";

    fn auds(values: &[&str]) -> Vec<String> {
        values.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_client_id_accepted_on_one_resource_opens_no_other() {
        // R-AUD-4 per route
        let a = "https://gw.example.com/servers/a/mcp";
        let b = "https://gw.example.com/servers/b/mcp";
        let policy = AudiencePolicy::resource().accept_client_ids_on(a, ["client-a"]);
        assert_eq!(
            policy
                .check(
                    &auds(&["client-a"]),
                    Some("https://GW.example.com:443/servers/a/mcp/")
                )
                .ok(),
            Some(AudienceMatch::ClientId)
        );
        assert!(policy.check(&auds(&["client-a"]), Some(b)).is_err());
        assert!(policy.check(&auds(&["client-a"]), None).is_err());
        assert!(policy.check(&auds(&["client-b"]), Some(a)).is_err());
    }

    #[test]
    fn resource_is_compared_canonically() {
        // R-AUD-2
        let policy = AudiencePolicy::resource();
        for aud in [
            "https://mcp.example.com/mcp",
            "HTTPS://MCP.example.com:443/mcp/",
        ] {
            assert_eq!(
                policy.check(&auds(&[aud]), Some(RESOURCE)).ok(),
                Some(AudienceMatch::Resource),
                "{aud}"
            );
        }
        for aud in [
            "https://mcp.example.com/MCP",
            "https://mcp.example.com:8443/mcp",
            "https://other/mcp",
        ] {
            assert!(
                policy.check(&auds(&[aud]), Some(RESOURCE)).is_err(),
                "{aud}"
            );
        }
    }

    #[test]
    fn several_audiences_are_accepted_when_listed() {
        // R-AUD-3
        let policy = AudiencePolicy::resource()
            .also_accept("api://mcp")
            .also_accept("https://Public.example.com/mcp/");
        assert_eq!(
            policy
                .check(&auds(&["x", "api://mcp"]), Some(RESOURCE))
                .ok(),
            Some(AudienceMatch::Listed)
        );
        assert_eq!(
            policy
                .check(&auds(&["https://public.example.com/mcp"]), Some(RESOURCE))
                .ok(),
            Some(AudienceMatch::Listed)
        );
        assert!(
            policy.check(&auds(&["api://MCP"]), Some(RESOURCE)).is_err(),
            "non-URL ids compare exactly"
        );
    }

    #[test]
    fn client_id_audience_only_when_listed() {
        // R-AUD-4: an IdP that puts the client id in `aud` is accepted only by opt-in
        assert!(
            AudiencePolicy::resource()
                .check(&auds(&["my-client"]), Some(RESOURCE))
                .is_err()
        );
        let policy = AudiencePolicy::resource().accept_client_ids(["my-client"]);
        assert_eq!(
            policy.check(&auds(&["my-client"]), Some(RESOURCE)).ok(),
            Some(AudienceMatch::ClientId)
        );
        assert!(
            policy
                .check(&auds(&["other-client"]), Some(RESOURCE))
                .is_err()
        );
    }

    #[test]
    fn missing_audience_is_refused_with_the_rfc8707_hint_unless_allowed() {
        // R-AUD-5: a token without `aud` (no RFC 8707 `resource`) is refused with a hint
        let err = AudiencePolicy::resource().check(&[], Some(RESOURCE)).err();
        let description = err.map(|e| e.description().to_owned()).unwrap_or_default();
        assert!(
            description.contains("RFC 8707") && description.contains("resource"),
            "{description}"
        );
        let policy = AudiencePolicy::resource().allow_missing_audience();
        assert_eq!(
            policy.check(&[], Some(RESOURCE)).ok(),
            Some(AudienceMatch::Missing)
        );
        assert!(
            policy
                .check(&auds(&["https://other/mcp"]), Some(RESOURCE))
                .is_err(),
            "a wrong aud is still wrong"
        );
    }

    #[test]
    fn any_audience_must_be_spelled_out() {
        // R-AUD-1
        assert!(
            AudiencePolicy::default()
                .check(&auds(&["https://other"]), Some(RESOURCE))
                .is_err()
        );
        let policy = AudiencePolicy::accept_any_audience_insecure();
        assert_eq!(
            policy.check(&auds(&["https://other"]), Some(RESOURCE)).ok(),
            Some(AudienceMatch::Any)
        );
    }

    #[test]
    fn no_resource_for_the_route_is_refused() {
        // R-AUD-3 per route
        assert!(
            AudiencePolicy::resource()
                .check(&auds(&[RESOURCE]), None)
                .is_err()
        );
    }
}
