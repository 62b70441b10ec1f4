//! [`AuthorizeLayer`]: the last word on a verified request (R-AZ-1). An [`Authorize`]
//! callback — a closure works — sees the [`Principal`], the [`McpOperation`] and the
//! request parts and allows, denies (`403`), or asks for more scopes
//! (`403 insufficient_scope`, the MCP step-up challenge). [`RequireScopes`] and
//! [`McpScopes`](crate::McpScopes) are the built-in ones.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::request::Parts;
use http::{Method, Request, Response};
use tower::{Layer, Service};

mod boxed;
pub use boxed::BoxAuthorize;

use crate::bearer::BearerToken;
use crate::body::ResponseBody;
use crate::decision::{Decide, Decision};
use crate::error::{AuthError, ConfigError};
use crate::future::{GateFuture, Sealed, Settle, Waiting};
use crate::hierarchy::ScopeHierarchy;
use crate::mcp::{Argument, McpOperation, McpScopes, OperationSource};
use crate::principal::{Principal, add_scopes};
use crate::resource::{OFFLINE_ACCESS, ProtectedResource};

/// An authorization policy. Implemented for closures
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
///
/// A policy that decides without waiting returns [`Decide::ready`]; the request then
/// goes on with no future allocated:
///
/// ```
/// use http::request::Parts;
/// use mcp_gatekeeper::{Authorize, Decide, Decision, McpOperation, Principal};
///
/// struct WeekdaysOnly;
///
/// impl Authorize for WeekdaysOnly {
///     fn authorize(&self, p: &Principal, _: &McpOperation, _: &Parts) -> Decide {
///         let weekend = p.claim("weekend").and_then(|w| w.as_bool()) == Some(true);
///         Decide::ready(if weekend { Decision::deny("closed on weekends") } else { Decision::Allow })
///     }
///
///     fn needs_operation(&self, _: &Principal) -> bool {
///         false
///     }
/// }
/// ```
pub trait Authorize: Send + Sync + 'static {
    /// Decides on a request whose token was verified.
    fn authorize(&self, principal: &Principal, operation: &McpOperation, parts: &Parts) -> Decide;

    /// Whether the decision for `principal` can depend on the MCP operation, so the
    /// request body must be read to find it. `true` unless the policy says otherwise;
    /// scope rules say `false` for a caller that holds every scope they mention.
    fn needs_operation(&self, principal: &Principal) -> bool {
        let _ = principal;
        true
    }

    /// The members of a `tools/call`'s `arguments` the policy reads, so the
    /// [`OperationLayer`](crate::OperationLayer) keeps them for
    /// [`McpOperation::argument`] and checks the `Mcp-Param-*` headers that mirror
    /// them (none unless the policy says otherwise).
    fn arguments(&self) -> Vec<Argument> {
        Vec::new()
    }

    /// Whether `operation` may be made without a token (a public operation,
    /// [`McpScopes::public`]): a request that sent none goes on, as an anonymous
    /// [`Principal`], only for these, and the rest get the `401` challenge. Only an
    /// operation read from the body counts. `false` unless the policy says otherwise.
    fn allows_anonymous(&self, operation: &McpOperation) -> bool {
        let _ = operation;
        false
    }

    /// Called with each tool of a `tools/list` answer the stack reads (to filter it,
    /// [`ResourceServerBuilder::filter_tools`](crate::ResourceServerBuilder::filter_tools)),
    /// before it is decided on: its name and its `annotations`, as the server sent
    /// them (never as a client claims them). The default does nothing; the Cedar
    /// policy keeps the hints for the calls of the tool.
    fn tool_listed(&self, name: &str, annotations: Option<&serde_json::Value>) {
        let _ = (name, annotations);
    }

    /// Whether `tools/list` answers are filtered through this policy even without
    /// [`ResourceServerBuilder::filter_tools`](crate::ResourceServerBuilder::filter_tools):
    /// for a policy that learns from the lists (the Cedar policy's tool hints) and
    /// must not show a tool it forbids. `false` unless the policy says otherwise.
    fn filters_tool_lists(&self) -> bool {
        false
    }
}

impl<F, Fut> Authorize for F
where
    F: Fn(&Principal, &McpOperation, &Parts) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Decision> + Send + 'static,
{
    fn authorize(&self, principal: &Principal, operation: &McpOperation, parts: &Parts) -> Decide {
        Decide::pending(self(principal, operation, parts))
    }
}

/// The built-in scope requirement: every listed scope must have been granted, else
/// `403 insufficient_scope` naming them all.
#[derive(Debug, Clone)]
pub struct RequireScopes {
    scopes: Arc<[String]>,
    hierarchy: ScopeHierarchy,
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
            hierarchy: ScopeHierarchy::new(),
        }
    }

    /// The same requirement, met also by scopes that imply the required ones
    /// (R-MCP-4); a hierarchy with a cycle is an error.
    pub fn with_hierarchy(mut self, hierarchy: ScopeHierarchy) -> Result<Self, ConfigError> {
        hierarchy.validate()?;
        self.hierarchy = hierarchy;
        Ok(self)
    }

    /// The required scopes.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// Decides synchronously.
    pub fn decide(&self, principal: &Principal) -> Decision {
        let granted = principal.scopes();
        if self
            .scopes
            .iter()
            .all(|s| self.hierarchy.satisfies(granted, s))
        {
            Decision::Allow
        } else {
            Decision::insufficient_scope(self.scopes.iter().cloned())
        }
    }
}

impl Authorize for RequireScopes {
    fn authorize(&self, principal: &Principal, _: &McpOperation, _: &Parts) -> Decide {
        Decide::ready(self.decide(principal))
    }

    fn needs_operation(&self, _: &Principal) -> bool {
        false
    }
}

impl Authorize for McpScopes {
    fn authorize(&self, principal: &Principal, operation: &McpOperation, _: &Parts) -> Decide {
        Decide::ready(self.decide(principal, operation))
    }

    fn needs_operation(&self, principal: &Principal) -> bool {
        self.depends_on_operation(principal)
    }

    fn arguments(&self) -> Vec<Argument> {
        McpScopes::arguments(self)
    }

    fn allows_anonymous(&self, operation: &McpOperation) -> bool {
        self.is_public(operation)
    }
}

/// The authorization of a [`ResourceServer`](crate::ResourceServer): the required
/// scopes, the MCP scope rules and the callback, in one decision. A denial by the
/// callback wins; otherwise every scope any of them asks for comes in one
/// `insufficient_scope` challenge (SEP-2350), so the callback is asked even when the
/// scopes are missing (a remote policy is called for requests that are then refused).
/// Public operations need no scope; the callback still decides them. Decides without
/// allocating when the scopes are there and there is no callback.
#[derive(Clone)]
pub struct ServerAuthorize {
    scopes: Option<RequireScopes>,
    mcp: Option<McpScopes>,
    /// With `challenge_granted_scopes`: the supported scopes a challenge may repeat.
    keep_granted: Option<Arc<[String]>>,
    callback: Option<BoxAuthorize>,
    hierarchy: ScopeHierarchy,
}

impl std::fmt::Debug for ServerAuthorize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerAuthorize")
            .field("scopes", &self.scopes)
            .field("mcp", &self.mcp)
            .field("keep_granted", &self.keep_granted)
            .field("callback", &self.callback.is_some())
            .field("hierarchy", &self.hierarchy)
            .finish()
    }
}

impl ServerAuthorize {
    /// The policy of the required scopes, the MCP rules and the callback, with
    /// `hierarchy` (validated already) for every scope check.
    pub(crate) fn new(
        required: Vec<String>,
        mcp: Option<McpScopes>,
        keep_granted: Option<Arc<[String]>>,
        callback: Option<BoxAuthorize>,
        hierarchy: ScopeHierarchy,
    ) -> Self {
        // The builder's hierarchy when one is set, else the one the rules carry.
        let hierarchy = match (&mcp, hierarchy.is_empty()) {
            (Some(rules), true) => rules.hierarchy().clone(),
            _ => hierarchy,
        };
        Self {
            scopes: (!required.is_empty()).then(|| RequireScopes::all(required)),
            mcp: mcp.map(|m| m.hierarchy_checked(hierarchy.clone())),
            keep_granted,
            callback,
            hierarchy,
        }
    }

    /// Whether some operations are public, so requests without a token go on to be
    /// decided here.
    pub(crate) fn has_public(&self) -> bool {
        self.mcp.as_ref().is_some_and(McpScopes::has_public)
    }

    /// The `insufficient_scope` refusal when the required scopes or the MCP scope
    /// rules are not all granted; `None` when they are.
    fn missing_scopes(&self, principal: &Principal, operation: &McpOperation) -> Option<Decision> {
        let required = self.scopes.as_ref().map_or(&[][..], RequireScopes::scopes);
        let rule = self.mcp.as_ref().map(|m| m.scopes_for(operation));
        let rule: &[String] = rule.as_deref().unwrap_or_default();
        let granted = principal.scopes();
        if required
            .iter()
            .chain(rule)
            .all(|s| self.hierarchy.satisfies(granted, s))
        {
            return None;
        }
        Some(Decision::insufficient_scope(
            self.challenged(principal, required, rule),
        ))
    }

    /// The scopes a challenge for this operation names: all it needs (RFC 6750 §3.1,
    /// SEP-2350), and with `challenge_granted_scopes` the supported ones granted.
    fn challenged(
        &self,
        principal: &Principal,
        required: &[String],
        rule: &[String],
    ) -> Vec<String> {
        let mut needed = required.to_vec();
        needed.extend(rule.iter().filter(|s| !required.contains(s)).cloned());
        if let Some(supported) = &self.keep_granted {
            let granted = principal.scopes();
            add_scopes(
                &mut needed,
                supported.iter().filter(|s| granted.contains(s)),
            );
        }
        needed
    }

    /// A callback's decision for a caller that holds the scopes: a step-up it asks
    /// for also names the scopes the operation needs, so that a client that replaces
    /// its token with the challenged scopes keeps them (one challenge, SEP-2350).
    fn callback_decides(
        &self,
        decide: Decide,
        principal: &Principal,
        operation: &McpOperation,
    ) -> Decide {
        let needed = || {
            let required = self.scopes.as_ref().map_or(&[][..], RequireScopes::scopes);
            let rule = self.mcp.as_ref().map(|m| m.scopes_for(operation));
            self.challenged(principal, required, rule.as_deref().unwrap_or_default())
        };
        match decide.now() {
            Ok(decision) if !asks_more(&decision, principal, &self.hierarchy) => {
                Decide::ready(decision)
            }
            Ok(decision) => Decide::ready(Decision::insufficient_scope(needed()).and(decision)),
            Err(pending) => {
                let (needed, principal, hierarchy) =
                    (needed(), principal.clone(), self.hierarchy.clone());
                Decide::pending(async move {
                    let decision = pending.await;
                    match asks_more(&decision, &principal, &hierarchy) {
                        true => Decision::insufficient_scope(needed).and(decision),
                        false => decision,
                    }
                })
            }
        }
    }
}

impl Authorize for ServerAuthorize {
    fn authorize(&self, principal: &Principal, operation: &McpOperation, parts: &Parts) -> Decide {
        // A caller without a token may make public operations only (tools/list
        // filtering asks here too).
        let public = self.allows_anonymous(operation);
        if principal.is_anonymous() && !public {
            return Decide::ready(Decision::deny("this operation needs an access token"));
        }
        // A public operation needs no scope, from anyone (the callback still decides).
        if public {
            return match &self.callback {
                Some(callback) => callback.authorize(principal, operation, parts),
                None => Decide::ready(Decision::Allow),
            };
        }
        match (&self.callback, self.missing_scopes(principal, operation)) {
            (None, missing) => Decide::ready(missing.unwrap_or(Decision::Allow)),
            (Some(callback), None) => self.callback_decides(
                callback.authorize(principal, operation, parts),
                principal,
                operation,
            ),
            // The callback is asked too, so that a step-up it wants joins this one
            // in a single challenge (SEP-2350: the client steps up once per call).
            (Some(callback), Some(missing)) => {
                callback.authorize(principal, operation, parts).and(missing)
            }
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

    fn allows_anonymous(&self, operation: &McpOperation) -> bool {
        self.mcp.as_ref().is_some_and(|m| m.is_public(operation))
    }

    fn tool_listed(&self, name: &str, annotations: Option<&serde_json::Value>) {
        if let Some(callback) = &self.callback {
            callback.tool_listed(name, annotations);
        }
    }

    fn filters_tool_lists(&self) -> bool {
        self.callback
            .as_ref()
            .is_some_and(|c| c.filters_tool_lists())
    }

    fn arguments(&self) -> Vec<Argument> {
        let mut read = self
            .mcp
            .as_ref()
            .map(McpScopes::arguments)
            .unwrap_or_default();
        if let Some(callback) = &self.callback {
            for argument in callback.arguments() {
                if !read.iter().any(|a| a.same_read(&argument)) {
                    read.push(argument);
                }
            }
        }
        read
    }
}

/// The operation of requests no [`OperationLayer`](crate::OperationLayer) looked at.
static UNKNOWN: McpOperation = McpOperation::unknown();

/// A layer that runs an [`Authorize`] policy on each verified request.
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

impl<S, A> AuthorizeService<S, A>
where
    A: Authorize,
{
    /// The policy's decision on `parts`, or the refusal of a stack put together
    /// wrongly (no principal, no audience check, an operation nobody read).
    fn decide(&self, parts: &Parts) -> Result<Decide, AuthError> {
        let Some(principal) = parts.extensions.get::<Principal>() else {
            return Err(AuthError::misconfigured(
                "AuthorizeLayer found no Principal: put VerifyLayer in front of it",
            ));
        };
        if principal.is_anonymous() {
            // No token was sent: public operations only, read from the body; the
            // others get the challenge a request without a token always gets.
            // Only a POST carries an operation to run: a GET or DELETE with a public
            // body would open or end a session's stream.
            let operation = parts.extensions.get::<McpOperation>().unwrap_or(&UNKNOWN);
            if parts.method != Method::POST || !self.authorize.allows_anonymous(operation) {
                return Err(AuthError::missing_token());
            }
            return Ok(self.authorize.authorize(principal, operation, parts));
        }
        let audience_checked = parts
            .extensions
            .get::<BearerToken>()
            .is_some_and(BearerToken::audience_checked);
        if !audience_checked {
            return Err(AuthError::misconfigured(
                "AuthorizeLayer found a principal whose audience no AudienceLayer checked: \
                 put AudienceLayer between VerifyLayer and AuthorizeLayer (with \
                 AudiencePolicy::resource(), or accept_any_audience_insecure() to spell \
                 out that any audience goes)",
            ));
        }
        let operation = parts.extensions.get::<McpOperation>();
        // A policy that needs the operation of a POST must get one read from its
        // body; deciding on headers, or on nothing, would fail open.
        let unread = parts.method == Method::POST
            && operation.is_none_or(|op| op.source() == OperationSource::Headers)
            && self.authorize.needs_operation(principal);
        if unread {
            return Err(AuthError::misconfigured(
                "the authorization policy needs the MCP operation of this POST but \
                 no OperationLayer read it for this policy: put \
                 OperationLayer::new(..).needed_by(<the same policy>) in front of \
                 AuthorizeLayer (OperationLayer::new(..).off() for a service that \
                 is not MCP)",
            ));
        }
        let operation = operation.unwrap_or(&UNKNOWN);
        Ok(self.authorize.authorize(principal, operation, parts))
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
    type Future = GateFuture<Deciding<ReqBody>, S, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let (parts, body) = req.into_parts();
        let decided = self.decide(&parts).map(Decide::now);
        match decided {
            // Allowed at once: the service that was polled ready is called now.
            Ok(Ok(decision)) => match refusal(decision, &parts) {
                None => GateFuture::pass(Request::from_parts(parts, body), &mut self.inner),
                Some(error) => GateFuture::refuse(error, &parts, body, &self.resource),
            },
            Ok(Err(decide)) => {
                let check = Waiting::new(decide, body);
                GateFuture::check(check, parts, &mut self.inner, &self.resource)
            }
            Err(error) => GateFuture::refuse(error, &parts, body, &self.resource),
        }
    }
}

fn operation_of(parts: &Parts) -> &McpOperation {
    parts.extensions.get::<McpOperation>().unwrap_or(&UNKNOWN)
}

/// The pending [`Check`](crate::Check) of an [`AuthorizeService`]: a policy's
/// decision that has to wait.
pub type Deciding<B> = Waiting<Decide, B>;

impl Sealed for Decide {}

/// Whether `decision` is a step-up for a scope, other than `offline_access`, that
/// `principal` lacks: only then does it gain the operation's scopes (a step-up for
/// nothing, or for what is held, stays what it was).
fn asks_more(decision: &Decision, principal: &Principal, hierarchy: &ScopeHierarchy) -> bool {
    match decision {
        Decision::InsufficientScope { scopes } => scopes
            .iter()
            .any(|s| s != OFFLINE_ACCESS && !hierarchy.satisfies(principal.scopes(), s)),
        _ => false,
    }
}

/// The refusal a decision on `parts` makes, if any. A caller that sent no token is
/// asked for one (the `401` challenge) rather than for more scopes.
fn refusal(decision: Decision, parts: &Parts) -> Option<AuthError> {
    let error = decision.into_error(operation_of(parts))?;
    let anonymous = parts
        .extensions
        .get::<Principal>()
        .is_some_and(Principal::is_anonymous);
    match (anonymous, error.kind()) {
        (true, crate::error::AuthErrorKind::InsufficientScope) => Some(AuthError::missing_token()),
        _ => Some(error),
    }
}

impl Settle for Decide {
    fn settle(decision: Decision, parts: &mut Parts) -> Result<(), AuthError> {
        refusal(decision, parts).map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;

    fn poll(decide: &mut Decide) -> Poll<Decision> {
        Pin::new(decide).poll(&mut Context::from_waker(std::task::Waker::noop()))
    }

    #[test]
    fn a_decision_polled_again_after_it_was_given_denies() {
        // Issue 13: the server's decision used to answer Allow when polled again.
        for mut decide in [
            Decide::ready(Decision::Allow),
            Decide::pending(async { Decision::Allow }),
        ] {
            assert_eq!(poll(&mut decide), Poll::Ready(Decision::Allow));
            assert!(
                matches!(poll(&mut decide), Poll::Ready(Decision::Deny { .. })),
                "{decide:?}"
            );
        }
    }
}
