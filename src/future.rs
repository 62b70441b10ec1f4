//! The response futures of the layers, one home for each shape:
//!
//! - [`ResponseFuture`]: for the layers that decide at once (metadata, bearer,
//!   audience, session binding): the inner service's future, or a refusal.
//! - [`GateFuture`]: for the layers that may have to wait before deciding
//!   (verification, authorization, reading the MCP operation): a [`Check`] that is
//!   decided at once or pending, then the inner service or a refusal. It holds the
//!   inner service only while a check is pending, and answers `500` if it is polled
//!   again after it finished.
//! - `Rejection`: the refusal every layer returns.
//!
//! A refusal first reads what the client is still sending of the request body (a
//! bounded amount, for a bounded time) and drops it. Without that, hyper closes a
//! connection whose request body was not read, the kernel answers the unread bytes
//! with a reset, and the client may see "connection reset" instead of the `401` and
//! its challenge — the very answer an MCP client needs to start the OAuth flow.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::request::Parts;
use http::{Request, Response};
use http_body::Body;
use pin_project::pin_project;
use tower::Service;

use crate::audit::Watch;
use crate::body::ResponseBody;
use crate::challenge;
use crate::error::AuthError;
use crate::mcp::SessionBinding;
use crate::resource::ProtectedResource;

/// The most of a refused request's body that is read before answering.
pub(crate) const DRAIN_MAX_BYTES: usize = 64 * 1024;
/// The longest a refusal waits for the rest of the request body.
const DRAIN_MAX_TIME: Duration = Duration::from_secs(1);

/// Reads and drops a request body, within `max` bytes (normally [`DRAIN_MAX_BYTES`])
/// and [`DRAIN_MAX_TIME`].
#[pin_project]
struct Drain<ReqBody> {
    #[pin]
    body: ReqBody,
    #[pin]
    deadline: tokio::time::Sleep,
    read: usize,
    max: usize,
}

impl<ReqBody: Body> Future for Drain<ReqBody> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        loop {
            match this.body.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    *this.read += frame.data_ref().map_or(0, bytes::Buf::remaining);
                    if *this.read > *this.max {
                        return Poll::Ready(());
                    }
                }
                Poll::Ready(None | Some(Err(_))) => return Poll::Ready(()),
                Poll::Pending => return this.deadline.poll(cx),
            }
        }
    }
}

/// A refusal on its way out: drains the request body, then yields the response.
pub(crate) struct Rejection<ReqBody, B> {
    response: Option<Response<ResponseBody<B>>>,
    drain: Option<Pin<Box<Drain<ReqBody>>>>,
}

impl<ReqBody: Body, B> Rejection<ReqBody, B> {
    pub(crate) fn new(response: Response<ResponseBody<B>>, body: ReqBody) -> Self {
        Self::draining(response, body, DRAIN_MAX_BYTES)
    }

    /// Like [`Rejection::new`], reading up to `max` bytes of the body: for refusals
    /// made because the body is too long, whose sender is still sending it.
    pub(crate) fn draining(response: Response<ResponseBody<B>>, body: ReqBody, max: usize) -> Self {
        // Draining needs a Tokio timer; without a runtime the response goes at once.
        let drain =
            (!body.is_end_stream() && tokio::runtime::Handle::try_current().is_ok()).then(|| {
                Box::pin(Drain {
                    body,
                    deadline: tokio::time::sleep(DRAIN_MAX_TIME),
                    read: 0,
                    max,
                })
            });
        Self {
            response: Some(response),
            drain,
        }
    }

    /// The response, once the body is drained; `500` if polled again after that.
    pub(crate) fn poll_response(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Response<ResponseBody<B>>> {
        if let Some(drain) = &mut self.drain {
            std::task::ready!(drain.as_mut().poll(cx));
            self.drain = None;
        }
        Poll::Ready(
            self.response
                .take()
                .unwrap_or_else(challenge::after_completion),
        )
    }
}

/// The response future of the layers that decide without waiting
/// ([`MetadataService`](crate::MetadataService), [`BearerService`](crate::BearerService),
/// [`AudienceService`](crate::AudienceService),
/// [`BindSessionsService`](crate::BindSessionsService)).
#[pin_project]
pub struct ResponseFuture<F, B, ReqBody> {
    #[pin]
    state: State<F, B, ReqBody>,
    /// Where a session id the answer issues is bound, and to whom.
    binding: Option<SessionBinding>,
}

#[pin_project(project = StateProj)]
enum State<F, B, ReqBody> {
    Inner {
        #[pin]
        future: F,
    },
    Rejected {
        rejection: Box<Rejection<ReqBody, B>>,
    },
}

impl<F, B, ReqBody> ResponseFuture<F, B, ReqBody> {
    pub(crate) fn inner(future: F) -> Self {
        Self {
            state: State::Inner { future },
            binding: None,
        }
    }

    pub(crate) fn rejected(rejection: Rejection<ReqBody, B>) -> Self {
        Self {
            state: State::Rejected {
                rejection: Box::new(rejection),
            },
            binding: None,
        }
    }

    /// Binds the session id the answer issues, if any, as `binding` says.
    pub(crate) fn binding(mut self, binding: Option<SessionBinding>) -> Self {
        self.binding = binding;
        self
    }
}

impl<F, B, ReqBody, E> Future for ResponseFuture<F, B, ReqBody>
where
    F: Future<Output = Result<Response<B>, E>>,
    ReqBody: Body,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.state.project() {
            StateProj::Inner { future } => {
                let answer = std::task::ready!(future.poll(cx));
                if let (Ok(response), Some(binding)) = (&answer, this.binding.take()) {
                    binding.record(response.headers());
                }
                Poll::Ready(answer.map(|response| response.map(ResponseBody::inner)))
            }
            StateProj::Rejected { rejection } => rejection.poll_response(cx).map(Ok),
        }
    }
}

/// The response future of the layers that own a request's span, audit event and
/// metrics ([`OriginService`](crate::OriginService), and
/// [`BearerService`](crate::BearerService) in a stack without it): the stage's own
/// [`ResponseFuture`], polled within them, ended with the answer.
#[pin_project]
pub struct WatchedFuture<F> {
    #[pin]
    inner: F,
    /// The request's record; none when an outer layer owns it.
    watch: Option<Watch>,
}

impl<F> WatchedFuture<F> {
    pub(crate) fn new(inner: F, watch: Option<Watch>) -> Self {
        Self { inner, watch }
    }
}

impl<F, B, E> Future for WatchedFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let entered = this.watch.as_mut().map(crate::audit::enter);
        let answer = std::task::ready!(this.inner.poll(cx));
        drop(entered);
        if let Some(watch) = this.watch.take() {
            match &answer {
                Ok(response) => watch.answered(response),
                Err(_) => watch.failed(),
            }
        }
        Poll::Ready(answer)
    }
}

mod sealed {
    pub trait Sealed {}
}

/// The part of a gate that may have to wait: it holds what it needs of the request
/// (never the headers, which the gate keeps), decides, and then hands the request on
/// or gives back the body to drain. Implemented by [`Waiting`] (as
/// [`Verifying`](crate::Verifying) and [`Deciding`](crate::Deciding)) and
/// [`ReadingOperation`](crate::ReadingOperation); sealed.
pub trait Check: sealed::Sealed {
    /// The request body the inner service receives.
    type Body;
    /// The request body that is drained when the check refuses.
    type Refused: Body;
    /// How much of the body is read and dropped before a refusal is answered.
    const DRAIN: usize = DRAIN_MAX_BYTES;

    /// Decides, putting what it learned into `parts` (the principal, the operation).
    fn poll_check(
        &mut self,
        parts: &mut Parts,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), AuthError>>;

    /// The request for the inner service, once the check passed.
    fn pass(self, parts: Parts) -> Request<Self::Body>;

    /// The body to drain, once the check refused.
    fn refuse(self) -> Self::Refused;
}

pub(crate) use sealed::Sealed;

/// A [`Check`] that waits on one future (a verification, a policy's decision) with
/// the request body set aside until it settles the request.
pub struct Waiting<F, B> {
    future: F,
    body: B,
}

impl<F, B> Waiting<F, B> {
    pub(crate) fn new(future: F, body: B) -> Self {
        Self { future, body }
    }
}

/// What a [`Waiting`] check waits on: a future whose output settles the request,
/// putting what it learned into the request's parts or refusing it. Sealed.
pub trait Settle: Future + Unpin + Sealed {
    /// Puts what `output` says into `parts`, or refuses.
    fn settle(output: Self::Output, parts: &mut Parts) -> Result<(), AuthError>;
}

impl<F, B> Sealed for Waiting<F, B> {}

impl<F: Settle, B: Body> Check for Waiting<F, B> {
    type Body = B;
    type Refused = B;

    fn poll_check(
        &mut self,
        parts: &mut Parts,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), AuthError>> {
        let output = std::task::ready!(Pin::new(&mut self.future).poll(cx));
        Poll::Ready(F::settle(output, parts))
    }

    fn pass(self, parts: Parts) -> Request<B> {
        Request::from_parts(parts, self.body)
    }

    fn refuse(self) -> B {
        self.body
    }
}

/// The response future of the layers that may wait before deciding
/// ([`VerifyService`](crate::VerifyService), [`AuthorizeService`](crate::AuthorizeService),
/// [`OperationService`](crate::OperationService)): the check `C`, then the inner
/// service `S` or a refusal. A decision made at once costs no allocation and no clone
/// of the service.
#[pin_project]
pub struct GateFuture<C, S, ResBody>
where
    C: Check,
    S: Service<Request<C::Body>>,
{
    #[pin]
    state: Gate<C, S, S::Future, C::Refused, ResBody>,
}

/// A new DPoP nonce for the answer (RFC 9449 §8.2), put into the request's parts by
/// a check that passed; the gate sets it as the answer's `DPoP-Nonce`.
#[derive(Clone, Debug)]
pub(crate) struct AnswerNonce(pub(crate) http::HeaderValue);

/// The states of a [`GateFuture`]. Only `Calling` is the hot path; the others are
/// boxed, so that a future decided at once stays as small as the inner one.
#[pin_project(project = GateProj, project_replace = GateOwn)]
enum Gate<C, S, F, R, B> {
    Checking(Box<Pending<C, S>>),
    Calling {
        #[pin]
        future: F,
        nonce: Option<Box<http::HeaderValue>>,
    },
    Rejecting(Box<Rejection<R, B>>),
    Done,
}

/// A pending check, with what it needs to go on: the request's parts, the service
/// that was polled ready, and the resource to render a refusal for.
struct Pending<C, S> {
    check: C,
    parts: Parts,
    inner: S,
    resource: ProtectedResource,
}

impl<C, S, ResBody> GateFuture<C, S, ResBody>
where
    C: Check,
    S: Service<Request<C::Body>>,
{
    /// Passed at once: calls the service that was polled ready.
    pub(crate) fn pass(request: Request<C::Body>, inner: &mut S) -> Self {
        Self {
            state: Gate::Calling {
                future: inner.call(request),
                nonce: None,
            },
        }
    }

    /// Sets `nonce` as the `DPoP-Nonce` of the inner service's answer.
    pub(crate) fn answer_header(mut self, nonce: Option<http::HeaderValue>) -> Self {
        if let (Some(value), Gate::Calling { nonce, .. }) = (nonce, &mut self.state) {
            *nonce = Some(Box::new(value));
        }
        self
    }

    /// Refused at once.
    pub(crate) fn refuse(
        error: AuthError,
        parts: &Parts,
        body: C::Refused,
        resource: &ProtectedResource,
    ) -> Self {
        let response = challenge::reject(error, resource, parts);
        Self {
            state: Gate::Rejecting(Box::new(Rejection::draining(response, body, C::DRAIN))),
        }
    }

    /// Decided by `check`, later: the service that was polled ready goes into the
    /// future, a clone of it stays.
    pub(crate) fn check(check: C, parts: Parts, inner: &mut S, resource: &ProtectedResource) -> Self
    where
        S: Clone,
    {
        let clone = inner.clone();
        Self {
            state: Gate::Checking(Box::new(Pending {
                check,
                parts,
                inner: std::mem::replace(inner, clone),
                resource: resource.clone(),
            })),
        }
    }
}

impl<C, S, ResBody> Future for GateFuture<C, S, ResBody>
where
    C: Check,
    S: Service<Request<C::Body>, Response = Response<ResBody>>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                GateProj::Checking(pending) => {
                    let Pending { check, parts, .. } = &mut **pending;
                    let checked = std::task::ready!(check.poll_check(parts, cx));
                    let GateOwn::Checking(pending) =
                        this.state.as_mut().project_replace(Gate::Done)
                    else {
                        return Poll::Ready(Ok(challenge::after_completion()));
                    };
                    let Pending {
                        check,
                        parts,
                        mut inner,
                        resource,
                    } = *pending;
                    let next = match checked {
                        Ok(()) => {
                            let mut parts = parts;
                            let nonce = parts.extensions.remove::<AnswerNonce>();
                            let future = inner.call(check.pass(parts));
                            crate::audit::decided();
                            Gate::Calling {
                                future,
                                nonce: nonce.map(|n| Box::new(n.0)),
                            }
                        }
                        Err(error) => {
                            let response = challenge::reject(error, &resource, &parts);
                            let rejection = Rejection::draining(response, check.refuse(), C::DRAIN);
                            Gate::Rejecting(Box::new(rejection))
                        }
                    };
                    this.state.set(next);
                }
                GateProj::Calling { future, nonce } => {
                    let mut response = std::task::ready!(future.poll(cx));
                    if let (Some(nonce), Ok(response)) = (nonce.take(), &mut response) {
                        response.headers_mut().insert(challenge::DPOP_NONCE, *nonce);
                    }
                    this.state.set(Gate::Done);
                    return Poll::Ready(response.map(|r| r.map(ResponseBody::inner)));
                }
                GateProj::Rejecting(rejection) => {
                    let response = std::task::ready!(rejection.poll_response(cx));
                    this.state.set(Gate::Done);
                    return Poll::Ready(Ok(response));
                }
                GateProj::Done => return Poll::Ready(Ok(challenge::after_completion())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http::StatusCode;
    use http_body_util::Empty;

    use super::*;
    use crate::verify::Verifying;

    #[derive(Clone)]
    struct Noop;

    impl Service<Request<Empty<Bytes>>> for Noop {
        type Response = Response<Empty<Bytes>>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Self::Response, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<Empty<Bytes>>) -> Self::Future {
            std::future::ready(Ok(Response::new(Empty::new())))
        }
    }

    type Gate = GateFuture<Verifying<Empty<Bytes>>, Noop, Empty<Bytes>>;

    fn status(gate: &mut Pin<Box<Gate>>) -> Option<StatusCode> {
        match gate
            .as_mut()
            .poll(&mut Context::from_waker(std::task::Waker::noop()))
        {
            Poll::Ready(Ok(response)) => Some(response.status()),
            _ => None,
        }
    }

    #[test]
    fn a_gate_polled_again_after_it_answered_fails_closed_with_500() {
        // Issue 13: the gate futures panicked here; the inner future is never polled
        // twice and nothing is allowed.
        let resource = ProtectedResource::new("https://mcp.example.com/mcp");
        let (parts, body) = Request::new(Empty::<Bytes>::new()).into_parts();
        let refused = Gate::refuse(AuthError::missing_token(), &parts, body, &resource);
        let passed = Gate::pass(Request::new(Empty::new()), &mut Noop);
        for (gate, first) in [
            (refused, StatusCode::UNAUTHORIZED),
            (passed, StatusCode::OK),
        ] {
            let mut gate = Box::pin(gate);
            assert_eq!(status(&mut gate), Some(first));
            assert_eq!(status(&mut gate), Some(StatusCode::INTERNAL_SERVER_ERROR));
        }
    }
}
