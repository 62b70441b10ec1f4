//! [`VerifyLayer`]: turns the [`BearerToken`] into a [`Principal`] with a
//! [`TokenVerifier`] (JWT is one implementation), or refuses the request.
//!
//! The verifier decides whether the token is genuine, current and from a trusted
//! issuer; whether it is meant for this resource is the audience layer's question.

mod cache;
mod chain;
mod claims;
mod introspection;
mod issuer;
mod jose;
mod jwt;
#[cfg(feature = "kubernetes")]
mod token_review;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::request::Parts;
use http::{Request, Response};
use tower::Service;

pub use cache::{TokenCacheOptions, TokenCacheUsage};
pub use chain::VerifierChain;
#[cfg(feature = "fuzzing")]
pub(crate) use introspection::parse_answer;
pub use introspection::{ClientAuth, DEFAULT_INACTIVE_TTL, Introspection, IntrospectionVerifier};
pub use issuer::Issuer;
pub(crate) use jose::parse_strict;
pub use jwt::JwtVerifier;
#[cfg(feature = "kubernetes")]
pub use token_review::{TokenReview, TokenReviewVerifier};

use crate::bearer::{BearerToken, NoToken};
use crate::body::ResponseBody;
use crate::error::AuthError;
use crate::future::{GateFuture, Sealed, Settle, Waiting};
use crate::principal::Principal;
use crate::resource::ProtectedResource;
use crate::rule::Rule;

/// Refuses verified claims that are not those of a plain bearer access token: an ID
/// token (R-JWT-4), a refresh token (as some introspection endpoints mark it), or a
/// token bound to a key (R-JWT-5). Shared by every verifier that sees claims.
pub(crate) fn refuse_non_bearer_access_tokens(
    claims: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), AuthError> {
    if claims.contains_key("nonce") || claims.contains_key("at_hash") {
        return Err(AuthError::invalid_token(
            Rule::Jwt4,
            "this is an OpenID Connect ID token (it has nonce or at_hash), not an access token",
        ));
    }
    // Cognito says `token_use`, some providers `token_type`, Keycloak a `typ` claim
    // (`Bearer` for access tokens; `ID`, `Refresh`, `Offline`, `Logout` otherwise).
    let other_kind = ["token_use", "token_type", "typ"].iter().find_map(|name| {
        claims
            .get(*name)
            .and_then(serde_json::Value::as_str)
            .map(|kind| (*name, kind))
            .filter(|(_, kind)| {
                let kind = kind.to_ascii_lowercase();
                kind.contains("refresh")
                    || matches!(
                        kind.as_str(),
                        "id" | "id_token" | "serialized-id" | "offline" | "logout"
                    )
            })
    });
    if let Some((name, kind)) = other_kind {
        return Err(AuthError::invalid_token(
            Rule::Jwt4,
            format!(
                "the token's {name} claim is {:?}: this is a refresh token, an ID token or \
                 another kind that is not an access token",
                crate::mcp::shorten(kind)
            ),
        ));
    }
    if claims.contains_key("cnf") {
        return Err(AuthError::invalid_token(
            Rule::Jwt5,
            "the token is bound to a key (cnf) and cannot be used as a plain bearer token",
        ));
    }
    Ok(())
}

/// The result of [`TokenVerifier::verify`]: ready at once (the hot path: keys at hand,
/// no allocation for the future) or a boxed future for work that must wait.
pub struct VerifyFuture(VerifyState);

enum VerifyState {
    Ready(Option<Result<Principal, AuthError>>),
    Pending(Pin<Box<dyn Future<Output = Result<Principal, AuthError>> + Send>>),
}

impl VerifyFuture {
    /// A verification that is already decided.
    pub fn ready(result: Result<Principal, AuthError>) -> Self {
        Self(VerifyState::Ready(Some(result)))
    }

    /// A verification that has to wait (a key fetch, a remote call).
    pub fn pending<F>(future: F) -> Self
    where
        F: Future<Output = Result<Principal, AuthError>> + Send + 'static,
    {
        Self(VerifyState::Pending(Box::pin(future)))
    }
}

impl Future for VerifyFuture {
    type Output = Result<Principal, AuthError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.0 {
            VerifyState::Ready(result) => match result.take() {
                Some(result) => Poll::Ready(result),
                None => Poll::Ready(Err(AuthError::misconfigured(
                    "VerifyFuture polled after completion",
                ))),
            },
            VerifyState::Pending(future) => future.as_mut().poll(cx),
        }
    }
}

/// Checks a token and says who it belongs to. [`JwtVerifier`] is the built-in one;
/// implement this for other kinds of tokens.
pub trait TokenVerifier: Send + Sync + 'static {
    /// Verifies `token`. Errors are refusals ([`AuthError`]), rendered by the layer.
    fn verify(&self, token: &BearerToken) -> VerifyFuture;

    /// Drops any result this verifier cached for `token` (see
    /// [`ResourceServer::forget_token`](crate::ResourceServer::forget_token)). The
    /// default does nothing: a verifier without a cache has nothing to forget.
    fn forget(&self, token: &str) -> CacheFuture<()> {
        let _ = token;
        Box::pin(std::future::ready(()))
    }

    /// How full this verifier's caches are. The default: empty.
    fn cache_usage(&self) -> CacheFuture<TokenCacheUsage> {
        Box::pin(std::future::ready(TokenCacheUsage::default()))
    }
}

/// The futures of [`TokenVerifier::forget`] and [`TokenVerifier::cache_usage`].
pub type CacheFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<V: TokenVerifier + ?Sized> TokenVerifier for Arc<V> {
    fn verify(&self, token: &BearerToken) -> VerifyFuture {
        (**self).verify(token)
    }

    fn forget(&self, token: &str) -> CacheFuture<()> {
        (**self).forget(token)
    }

    fn cache_usage(&self) -> CacheFuture<TokenCacheUsage> {
        (**self).cache_usage()
    }
}

/// A layer that verifies the token put into the extensions by
/// [`BearerLayer`](crate::BearerLayer) and inserts the [`Principal`].
#[derive(Clone)]
pub struct VerifyLayer {
    resource: ProtectedResource,
    verifier: Arc<dyn TokenVerifier>,
}

impl VerifyLayer {
    /// A verify layer using `verifier`, whose challenges describe `resource`.
    pub fn new(resource: ProtectedResource, verifier: impl TokenVerifier) -> Self {
        Self {
            resource,
            verifier: Arc::new(verifier),
        }
    }

    /// The verifier this layer runs.
    pub fn verifier(&self) -> &dyn TokenVerifier {
        &*self.verifier
    }
}

impl std::fmt::Debug for VerifyLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyLayer")
            .field("resource", &self.resource)
            .finish_non_exhaustive()
    }
}

crate::pipeline::layer_service!(VerifyLayer => VerifyService);

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for VerifyService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ReqBody: http_body::Body,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = GateFuture<Verifying<ReqBody>, S, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let verification = match req.extensions().get::<BearerToken>() {
            Some(token) => self.layer.verifier.verify(token),
            // No credentials, let on by BearerLayer::allow_anonymous.
            None if req.extensions().get::<NoToken>().is_some() => {
                VerifyFuture::ready(Ok(Principal::anonymous()))
            }
            None => VerifyFuture::ready(Err(AuthError::misconfigured(
                "VerifyLayer found no BearerToken: put BearerLayer in front of it",
            ))),
        };
        let (mut parts, body) = req.into_parts();
        match verification.0 {
            // The hot path (keys or a verified token at hand): decided now.
            VerifyState::Ready(Some(Ok(principal))) => {
                parts.extensions.insert(principal);
                GateFuture::pass(Request::from_parts(parts, body), &mut self.inner)
            }
            VerifyState::Ready(Some(Err(error))) => {
                GateFuture::refuse(error, &parts, body, &self.layer.resource)
            }
            pending => {
                let check = Waiting::new(VerifyFuture(pending), body);
                GateFuture::check(check, parts, &mut self.inner, &self.layer.resource)
            }
        }
    }
}

/// The pending [`Check`](crate::Check) of a [`VerifyService`]: a verification that
/// has to wait (a key fetch, a remote call).
pub type Verifying<B> = Waiting<VerifyFuture, B>;

impl Sealed for VerifyFuture {}

impl Settle for VerifyFuture {
    fn settle(output: Result<Principal, AuthError>, parts: &mut Parts) -> Result<(), AuthError> {
        parts.extensions.insert(output?);
        Ok(())
    }
}
