//! [`Decision`] and [`Decide`]: what an [`Authorize`](crate::Authorize) policy
//! answers, and how (at once, or after waiting), and how two decisions combine into
//! one challenge.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::error::AuthError;
use crate::mcp::{McpOperation, shorten};
use crate::principal::add_scopes;
use crate::resource::OFFLINE_ACCESS;

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

    /// Both `self` and `other` must hold: a denial wins, and two step-ups ask for the
    /// scopes of both in one challenge.
    pub(crate) fn and(self, other: Decision) -> Decision {
        match (self, other) {
            (deny @ Self::Deny { .. }, _) | (_, deny @ Self::Deny { .. }) => deny,
            (Self::Allow, other) | (other, Self::Allow) => other,
            (Self::InsufficientScope { mut scopes }, Self::InsufficientScope { scopes: more }) => {
                add_scopes(&mut scopes, &more);
                Self::InsufficientScope { scopes }
            }
        }
    }

    pub(crate) fn into_error(self, operation: &McpOperation) -> Option<AuthError> {
        match self {
            Self::Allow => None,
            Self::Deny { reason } => Some(AuthError::forbidden(reason)),
            Self::InsufficientScope { mut scopes } => {
                // Never a requirement of a resource (R-MCP-5): a policy that asks for
                // it does not put it into the challenge.
                scopes.retain(|s| s != OFFLINE_ACCESS);
                if scopes.is_empty() {
                    return Some(AuthError::forbidden(
                        "the authorization policy asked only for offline_access, which no \
                         resource requires; a refresh token is not a scope of this server",
                    ));
                }
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

/// The decision of an [`Authorize`](crate::Authorize) policy: ready at once (scope rules: no
/// allocation, no future to wait on) or a boxed future for a policy that must wait.
/// Polled again after it gave its decision, it denies.
pub struct Decide(DecideState);

enum DecideState {
    Ready(Option<Decision>),
    Pending(Pin<Box<dyn Future<Output = Decision> + Send>>),
}

impl Decide {
    /// A decision made already.
    pub fn ready(decision: Decision) -> Self {
        Self(DecideState::Ready(Some(decision)))
    }

    /// A decision that has to wait (a remote policy, a database).
    pub fn pending<F>(future: F) -> Self
    where
        F: Future<Output = Decision> + Send + 'static,
    {
        Self(DecideState::Pending(Box::pin(future)))
    }

    /// This decision and `first` (made before it) together: see [`Decision::and`].
    pub(crate) fn and(self, first: Decision) -> Self {
        match self.now() {
            Ok(decision) => Self::ready(first.and(decision)),
            Err(pending) => Self::pending(async move { first.and(pending.await) }),
        }
    }

    /// The decision, if it is made already; else the pending decision back.
    pub(crate) fn now(self) -> Result<Decision, Self> {
        match self.0 {
            DecideState::Ready(Some(decision)) => Ok(decision),
            state => Err(Self(state)),
        }
    }
}

impl From<Decision> for Decide {
    fn from(decision: Decision) -> Self {
        Self::ready(decision)
    }
}

impl Future for Decide {
    type Output = Decision;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Decision> {
        match &mut self.0 {
            DecideState::Ready(decision) => Poll::Ready(
                decision
                    .take()
                    .unwrap_or_else(|| Decision::deny("the decision was asked for twice")),
            ),
            DecideState::Pending(future) => {
                let decision = std::task::ready!(future.as_mut().poll(cx));
                self.0 = DecideState::Ready(None);
                Poll::Ready(decision)
            }
        }
    }
}

impl std::fmt::Debug for Decide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            DecideState::Ready(decision) => f.debug_tuple("Decide::Ready").field(decision).finish(),
            DecideState::Pending(_) => f.write_str("Decide::Pending"),
        }
    }
}
