//! [`AuthorizeLayer`]: the last word on a verified request (R-AZ-1). An [`Authorize`]
//! callback — a closure works — sees the [`Principal`], the [`McpOperation`] and the
//! request parts and allows, denies (`403`), or asks for more scopes
//! (`403 insufficient_scope`, the MCP step-up challenge). [`RequireScopes`] and
//! [`McpScopes`](crate::McpScopes) are the built-in ones.

use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::request::Parts;
use http::{Method, Request, Response};
use pin_project::pin_project;
use tower::{Layer, Service};

use crate::bearer::BearerToken;
use crate::body::ResponseBody;
use crate::challenge;
use crate::error::AuthError;
use crate::future::Rejection;
use crate::mcp::{McpOperation, OperationSource, shorten};
use crate::principal::Principal;
use crate::resource::ProtectedResource;

/// What an authorization callback decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Let the request through.
    Allow,
    /// Refuse with `403`; `reason` is sent as `error_description`, so keep it safe.
    Deny {
        /// Why, in words safe to show the client.
        reason: String,
    },
    /// Refuse with `403 insufficient_scope`, asking for `scopes` (step-up).
    InsufficientScope {
        /// The scopes this operation needs (all of them, not only the missing ones).
        scopes: Vec<String>,
    },
}

impl Decision {
    /// A denial with a reason safe to show.
    pub fn deny(reason: impl Into<String>) -> Self {
        Self::Deny {
            reason: reason.into(),
        }
    }

    /// A step-up challenge for `scopes`.
    pub fn insufficient_scope<I, T>(scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        Self::InsufficientScope {
            scopes: scopes.into_iter().map(Into::into).collect(),
        }
    }

    fn into_error(self, operation: &McpOperation) -> Option<AuthError> {
        match self {
            Self::Allow => None,
            Self::Deny { reason } => Some(AuthError::forbidden(reason)),
            Self::InsufficientScope { scopes } => {
                let asked = match (operation.method(), operation.name()) {
                    (Some(method), Some(name)) => {
                        format!("{} of {:?}", shorten(method), shorten(name))
                    }
                    (Some(method), None) => shorten(method).into_owned(),
                    _ => "this request".to_owned(),
                };
                let description = format!("{asked} needs the scopes: {}", scopes.join(" "));
                Some(AuthError::insufficient_scope(scopes, description))
            }
        }
    }
}

/// An authorization callback. Implemented for closures
/// `Fn(&Principal, &McpOperation, &Parts) -> impl Future<Output = Decision>`; the
/// future must not borrow the arguments, so copy what it needs before `async move`.
///
/// The operation is the one the request's body asks for (see
/// [`OperationLayer`](crate::OperationLayer)); it is [`McpOperation::unknown`] for
/// requests that carry none (an SSE `GET`, a non-JSON body) and when no operation
/// layer runs in front.
///
/// ```
/// use mcp_gatekeeper::{Decision, McpOperation, Principal};
/// use http::request::Parts;
///
/// let admins_delete = |principal: &Principal, op: &McpOperation, _parts: &Parts| {
///     let admin = principal.claim("role").and_then(|r| r.as_str()) == Some("admin");
///     let deleting = op.is("tools/call") && op.name() == Some("delete_repo");
///     async move {
///         if deleting && !admin { Decision::deny("only admins delete repositories") } else { Decision::Allow }
///     }
/// };
/// # fn check(_: impl mcp_gatekeeper::Authorize) {}
/// # check(admins_delete);
/// ```
pub trait Authorize: Send + Sync + 'static {
    /// The future of a decision.
    type Future: Future<Output = Decision> + Send + 'static;

    /// Decides on a request whose token was verified.
    fn authorize(
        &self,
        principal: &Principal,
        operation: &McpOperation,
        parts: &Parts,
    ) -> Self::Future;

    /// Whether the decision for `principal` can depend on the MCP operation, so the
    /// request body must be read to find it. `true` unless the policy says otherwise;
    /// scope rules say `false` for a caller that holds every scope they mention.
    fn needs_operation(&self, principal: &Principal) -> bool {
        let _ = principal;
        true
    }

    /// The decision, when it can be made without waiting; `None` (the default) means
    /// "run [`Authorize::authorize`]". Policies that decide synchronously (scope
    /// rules) return it here, so that the request goes on without a future to wait
    /// on. When it is `Some`, it must be what `authorize` would decide.
    fn decide_now(
        &self,
        principal: &Principal,
        operation: &McpOperation,
        parts: &Parts,
    ) -> Option<Decision> {
        let _ = (principal, operation, parts);
        None
    }
}

impl<F, Fut> Authorize for F
where
    F: Fn(&Principal, &McpOperation, &Parts) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Decision> + Send + 'static,
{
    type Future = Fut;

    fn authorize(&self, principal: &Principal, operation: &McpOperation, parts: &Parts) -> Fut {
        self(principal, operation, parts)
    }
}

/// The built-in scope requirement: every listed scope must have been granted, else
/// `403 insufficient_scope` naming them all.
#[derive(Debug, Clone)]
pub struct RequireScopes {
    scopes: Arc<[String]>,
}

impl RequireScopes {
    /// Requires all of `scopes`.
    pub fn all<I, T>(scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        Self {
            scopes: scopes.into_iter().map(Into::into).collect(),
        }
    }

    /// The required scopes.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// Decides synchronously.
    pub fn decide(&self, principal: &Principal) -> Decision {
        if self.scopes.iter().all(|s| principal.scopes().contains(s)) {
            Decision::Allow
        } else {
            Decision::insufficient_scope(self.scopes.iter().cloned())
        }
    }
}

impl Authorize for RequireScopes {
    type Future = Ready<Decision>;

    fn authorize(&self, principal: &Principal, _: &McpOperation, _: &Parts) -> Self::Future {
        ready(self.decide(principal))
    }

    fn needs_operation(&self, _: &Principal) -> bool {
        false
    }

    fn decide_now(&self, principal: &Principal, _: &McpOperation, _: &Parts) -> Option<Decision> {
        Some(self.decide(principal))
    }
}

impl Authorize for crate::McpScopes {
    type Future = Ready<Decision>;

    fn authorize(
        &self,
        principal: &Principal,
        operation: &McpOperation,
        _: &Parts,
    ) -> Self::Future {
        ready(self.decide(principal, operation))
    }

    fn needs_operation(&self, principal: &Principal) -> bool {
        self.depends_on_operation(principal)
    }

    fn decide_now(
        &self,
        principal: &Principal,
        operation: &McpOperation,
        _: &Parts,
    ) -> Option<Decision> {
        Some(self.decide(principal, operation))
    }
}

/// A type-erased [`Authorize`], as the [`ResourceServer`](crate::ResourceServer) keeps it.
#[derive(Clone)]
pub struct BoxAuthorize(Arc<dyn DynAuthorize>);

type BoxDecision = Pin<Box<dyn Future<Output = Decision> + Send>>;

trait DynAuthorize: Send + Sync {
    fn authorize(
        &self,
        principal: &Principal,
        operation: &McpOperation,
        parts: &Parts,
    ) -> BoxDecision;
    fn needs_operation(&self, principal: &Principal) -> bool;
    fn decide_now(
        &self,
        principal: &Principal,
        operation: &McpOperation,
        parts: &Parts,
    ) -> Option<Decision>;
}

impl<A: Authorize> DynAuthorize for A {
    fn authorize(
        &self,
        principal: &Principal,
        operation: &McpOperation,
        parts: &Parts,
    ) -> BoxDecision {
        Box::pin(Authorize::authorize(self, principal, operation, parts))
    }

    fn needs_operation(&self, principal: &Principal) -> bool {
        Authorize::needs_operation(self, principal)
    }

    fn decide_now(
        &self,
        principal: &Principal,
        operation: &McpOperation,
        parts: &Parts,
    ) -> Option<Decision> {
        Authorize::decide_now(self, principal, operation, parts)
    }
}

impl BoxAuthorize {
    /// Erases the type of `authorize`.
    pub fn new(authorize: impl Authorize) -> Self {
        Self(Arc::new(authorize))
    }
}

impl Authorize for BoxAuthorize {
    type Future = BoxDecision;

    fn authorize(
        &self,
        principal: &Principal,
        operation: &McpOperation,
        parts: &Parts,
    ) -> Self::Future {
        self.0.authorize(principal, operation, parts)
    }

    fn needs_operation(&self, principal: &Principal) -> bool {
        self.0.needs_operation(principal)
    }

    fn decide_now(
        &self,
        principal: &Principal,
        operation: &McpOperation,
        parts: &Parts,
    ) -> Option<Decision> {
        self.0.decide_now(principal, operation, parts)
    }
}

/// The operation of requests no [`OperationLayer`](crate::OperationLayer) looked at.
static UNKNOWN: McpOperation = McpOperation::unknown();

/// A layer that runs an [`Authorize`] callback on each verified request.
#[derive(Clone, Debug)]
pub struct AuthorizeLayer<A> {
    resource: ProtectedResource,
    authorize: Arc<A>,
}

impl<A> AuthorizeLayer<A> {
    /// An authorize layer for `resource` running `authorize`.
    pub fn new(resource: ProtectedResource, authorize: A) -> Self {
        Self {
            resource,
            authorize: Arc::new(authorize),
        }
    }
}

impl<S, A> Layer<S> for AuthorizeLayer<A> {
    type Service = AuthorizeService<S, A>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthorizeService {
            inner,
            resource: self.resource.clone(),
            authorize: self.authorize.clone(),
        }
    }
}

/// The service made by [`AuthorizeLayer`].
#[derive(Debug)]
pub struct AuthorizeService<S, A> {
    inner: S,
    resource: ProtectedResource,
    authorize: Arc<A>,
}

impl<S: Clone, A> Clone for AuthorizeService<S, A> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            resource: self.resource.clone(),
            authorize: self.authorize.clone(),
        }
    }
}

impl<S, A, ReqBody, ResBody> Service<Request<ReqBody>> for AuthorizeService<S, A>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    A: Authorize,
    ReqBody: http_body::Body,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = AuthorizeFuture<S, A::Future, ReqBody, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let (parts, body) = req.into_parts();
        let decision = match parts.extensions.get::<Principal>() {
            Some(_)
                if !parts
                    .extensions
                    .get::<BearerToken>()
                    .is_some_and(BearerToken::audience_checked) =>
            {
                Err(AuthError::misconfigured(
                    "AuthorizeLayer found a principal whose audience no AudienceLayer checked: \
                     put AudienceLayer between VerifyLayer and AuthorizeLayer (with \
                     AudiencePolicy::resource(), or accept_any_audience_insecure() to spell \
                     out that any audience goes)",
                ))
            }
            Some(principal) => {
                let operation = parts.extensions.get::<McpOperation>();
                // A policy that needs the operation of a POST must get one read from its
                // body; deciding on headers, or on nothing, would fail open.
                let unread = parts.method == Method::POST
                    && operation.is_none_or(|op| op.source() == OperationSource::Headers)
                    && self.authorize.needs_operation(principal);
                if unread {
                    Err(AuthError::misconfigured(
                        "the authorization policy needs the MCP operation of this POST but \
                         no OperationLayer read it for this policy: put \
                         OperationLayer::new(..).needed_by(<the same policy>) in front of \
                         AuthorizeLayer (OperationLayer::new(..).off() for a service that \
                         is not MCP)",
                    ))
                } else {
                    let operation = operation.unwrap_or(&UNKNOWN);
                    match self.authorize.decide_now(principal, operation, &parts) {
                        Some(decision) => decision.into_error(operation).map_or(Ok(None), Err),
                        None => Ok(Some(self.authorize.authorize(principal, operation, &parts))),
                    }
                }
            }
            None => Err(AuthError::misconfigured(
                "AuthorizeLayer found no Principal: put VerifyLayer in front of it",
            )),
        };
        let resource = self.resource.clone();
        let state = match decision {
            // Allowed at once: the service that was polled ready is called now.
            Ok(None) => State::Calling {
                future: self.inner.call(Request::from_parts(parts, body)),
            },
            Ok(Some(decision)) => {
                // The service that was polled ready goes into the future; a clone stays.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                return AuthorizeFuture {
                    state: State::Deciding { decision },
                    request: Some(Box::new((parts, body, inner))),
                    resource,
                };
            }
            Err(error) => {
                let response = challenge::reject(error, &resource, &parts);
                State::Rejecting {
                    rejection: Rejection::new(response, body),
                }
            }
        };
        AuthorizeFuture {
            state,
            request: None,
            resource,
        }
    }
}

/// The response future of [`AuthorizeService`].
#[pin_project]
pub struct AuthorizeFuture<S, D, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>>,
{
    #[pin]
    state: State<S::Future, D, ReqBody, ResBody>,
    /// Kept only while a decision is pending (boxed: the hot path has none).
    request: Option<Box<(Parts, ReqBody, S)>>,
    resource: ProtectedResource,
}

#[pin_project(project = StateProj)]
enum State<F, D, ReqBody, B> {
    Deciding {
        #[pin]
        decision: D,
    },
    Calling {
        #[pin]
        future: F,
    },
    Rejecting {
        rejection: Rejection<ReqBody, B>,
    },
}

impl<S, D, ReqBody, ResBody> Future for AuthorizeFuture<S, D, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    D: Future<Output = Decision>,
    ReqBody: http_body::Body,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let error = match this.state.as_mut().project() {
                StateProj::Deciding { decision } => {
                    let decided = std::task::ready!(decision.poll(cx));
                    let operation = this
                        .request
                        .as_ref()
                        .and_then(|pending| pending.0.extensions.get::<McpOperation>())
                        .unwrap_or(&UNKNOWN);
                    match decided.into_error(operation) {
                        Some(error) => error,
                        None => {
                            let Some(pending) = this.request.take() else {
                                panic!("AuthorizeFuture polled after completion");
                            };
                            let (parts, body, mut inner) = *pending;
                            let future = inner.call(Request::from_parts(parts, body));
                            this.state.set(State::Calling { future });
                            continue;
                        }
                    }
                }
                StateProj::Calling { future } => {
                    let response = std::task::ready!(future.poll(cx))?;
                    return Poll::Ready(Ok(response.map(ResponseBody::inner)));
                }
                StateProj::Rejecting { rejection } => {
                    return rejection.poll_response(cx).map(Ok);
                }
            };
            let Some(pending) = this.request.take() else {
                panic!("AuthorizeFuture polled after completion");
            };
            let (parts, body, _inner) = *pending;
            let response = challenge::reject(error, this.resource, &parts);
            this.state.set(State::Rejecting {
                rejection: Rejection::new(response, body),
            });
        }
    }
}
