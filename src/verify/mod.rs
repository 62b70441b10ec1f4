//! [`VerifyLayer`]: turns the [`BearerToken`] into a [`Principal`] with a
//! [`TokenVerifier`] (JWT is one implementation), or refuses the request.
//!
//! The verifier decides whether the token is genuine, current and from a trusted
//! issuer; whether it is meant for this resource is the audience layer's question.

mod cache;
mod chain;
mod claims;
mod client_auth;
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
pub use client_auth::ClientAuth;
#[cfg(feature = "fuzzing")]
pub(crate) use introspection::parse_answer;
pub use introspection::{DEFAULT_INACTIVE_TTL, Introspection, IntrospectionVerifier};
pub use issuer::Issuer;
pub(crate) use jose::parse_strict;
pub use jwt::JwtVerifier;
#[cfg(feature = "kubernetes")]
pub use token_review::{TokenReview, TokenReviewVerifier};

use crate::bearer::{BearerToken, NoToken};
use crate::body::ResponseBody;
use crate::error::AuthError;
use crate::future::{AnswerNonce, GateFuture, Sealed, Settle, Waiting};
use crate::principal::Principal;
use crate::resource::ProtectedResource;
use crate::rule::Rule;
use crate::sender::{Outcome, SenderChecks};

/// Refuses verified claims that are not those of an access token this server can
/// take: an ID token (R-JWT-4), a refresh token (as some introspection endpoints mark
/// it), or a token bound to a key its issuer's `binding` does not accept (R-JWT-5).
/// Shared by every verifier that sees claims.
pub(crate) fn refuse_non_bearer_access_tokens(
    claims: &serde_json::Map<String, serde_json::Value>,
    binding: crate::sender::Binding,
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
    crate::sender::refuse_unbindable(claims, binding)
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
    sender: SenderChecks,
}

impl VerifyLayer {
    /// A verify layer using `verifier`, whose challenges describe `resource`.
    pub fn new(resource: ProtectedResource, verifier: impl TokenVerifier) -> Self {
        Self {
            resource,
            verifier: Arc::new(verifier),
            sender: SenderChecks::default(),
        }
    }

    /// How the bindings of sender-constrained tokens are checked (DPoP proofs, nonces,
    /// client certificates); default [`SenderChecks::new`]. Which issuers' bound
    /// tokens are accepted at all is the issuers' setting
    /// ([`Issuer::dpop`], [`Issuer::certificate_bound_tokens`]); for the `DPoP`
    /// scheme to be read, the resource names the proof algorithms
    /// ([`ProtectedResource::dpop_signing_algs`]).
    pub fn sender_checks(mut self, checks: SenderChecks) -> Self {
        self.sender = checks;
        self
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
        let token = req.extensions().get::<BearerToken>().cloned();
        let verification = match &token {
            Some(token) => self.layer.verifier.verify(token),
            // No credentials, let on by BearerLayer::allow_anonymous.
            None if req.extensions().get::<NoToken>().is_some() => {
                VerifyFuture::ready(Ok(Principal::anonymous()))
            }
            None => VerifyFuture::ready(Err(AuthError::misconfigured(
                "VerifyLayer found no BearerToken: put BearerLayer in front of it",
            ))),
        };
        let (parts, body) = req.into_parts();
        let layer = &self.layer;
        match (verification.0, token) {
            // The hot path (keys or a verified token at hand): decided now.
            (VerifyState::Ready(Some(Ok(principal))), token) => {
                self.decide_now(principal, token.as_ref(), parts, body)
            }
            (VerifyState::Ready(Some(Err(error))), _) => {
                GateFuture::refuse(error, &parts, body, &layer.resource)
            }
            (pending, token) => {
                let verification = VerifyFuture(pending);
                let sender = token.map(|token| {
                    let request = layer.sender.request(&parts, &token, &layer.resource);
                    (layer.sender.clone(), token, request)
                });
                let settled = async move {
                    let principal = verification.await?;
                    let renewal = match sender {
                        Some((checks, token, request))
                            if !SenderChecks::nothing_to_check(&principal, &token) =>
                        {
                            match checks.check(&principal, &request) {
                                Outcome::Pass(renewal) => renewal,
                                Outcome::Refuse(error) => return Err(error),
                                Outcome::Wait(replay) => replay.await?,
                            }
                        }
                        _ => None,
                    };
                    Ok((principal, renewal))
                };
                let check = Waiting::new(Verification(Box::pin(settled)), body);
                GateFuture::check(check, parts, &mut self.inner, &layer.resource)
            }
        }
    }
}

impl<S> VerifyService<S> {
    /// The hot path: the principal is known now; checks its token's binding and
    /// passes or refuses, waiting only for a shared replay store.
    fn decide_now<ReqBody, ResBody>(
        &mut self,
        principal: Principal,
        token: Option<&BearerToken>,
        mut parts: Parts,
        body: ReqBody,
    ) -> GateFuture<Verifying<ReqBody>, S, ResBody>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
        ReqBody: http_body::Body,
    {
        let layer = &self.layer;
        let outcome = match token {
            Some(token) if !SenderChecks::nothing_to_check(&principal, token) => {
                let request = layer.sender.request(&parts, token, &layer.resource);
                layer.sender.check(&principal, &request)
            }
            _ => Outcome::Pass(None),
        };
        match outcome {
            Outcome::Pass(renewal) => {
                crate::audit::principal(&principal);
                parts.extensions.insert(principal);
                let request = Request::from_parts(parts, body);
                GateFuture::pass(request, &mut self.inner).answer_header(renewal)
            }
            Outcome::Refuse(error) => GateFuture::refuse(error, &parts, body, &layer.resource),
            Outcome::Wait(replay) => {
                let settled = async move {
                    let renewal = replay.await?;
                    Ok((principal, renewal))
                };
                let check = Waiting::new(Verification(Box::pin(settled)), body);
                GateFuture::check(check, parts, &mut self.inner, &layer.resource)
            }
        }
    }
}

/// The pending [`Check`](crate::Check) of a [`VerifyService`]: a verification that
/// has to wait (a key fetch, a remote call, a shared replay store).
pub type Verifying<B> = Waiting<Verification, B>;

/// What a [`VerifyService`] waits on: the token's verification, then the check of
/// its binding; it gives the principal and, when the server's DPoP nonce changed, the
/// new one for the answer. Opaque.
pub struct Verification(Pin<Box<dyn Future<Output = VerificationOutput> + Send>>);

type VerificationOutput = Result<(Principal, Option<http::HeaderValue>), AuthError>;

impl Future for Verification {
    type Output = VerificationOutput;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

impl Sealed for Verification {}

impl Settle for Verification {
    fn settle(output: VerificationOutput, parts: &mut Parts) -> Result<(), AuthError> {
        let (principal, renewal) = output?;
        crate::audit::principal(&principal);
        parts.extensions.insert(principal);
        if let Some(nonce) = renewal {
            parts.extensions.insert(AnswerNonce(nonce));
        }
        Ok(())
    }
}
