//! Response futures shared by the layers: [`ResponseFuture`] for the layers that decide
//! synchronously, and [`Rejection`], the refusal every layer returns.
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

use http::Response;
use http_body::Body;
use pin_project::pin_project;
use tracing::Span;

use crate::body::ResponseBody;
use crate::challenge;

/// The most of a refused request's body that is read before answering.
const DRAIN_MAX_BYTES: usize = 64 * 1024;
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

    pub(crate) fn poll_response(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Response<ResponseBody<B>>> {
        if let Some(drain) = &mut self.drain {
            std::task::ready!(drain.as_mut().poll(cx));
            self.drain = None;
        }
        match self.response.take() {
            Some(response) => Poll::Ready(response),
            None => panic!("a rejection was polled after it completed"),
        }
    }
}

/// The response future of the layers that decide without waiting
/// ([`Bearer`](crate::bearer::Bearer), [`Audience`](crate::audience::Audience),
/// [`Metadata`](crate::metadata::Metadata)).
#[pin_project]
pub struct ResponseFuture<F, B, ReqBody> {
    #[pin]
    state: State<F, B, ReqBody>,
    span: Span,
}

#[pin_project(project = StateProj)]
enum State<F, B, ReqBody> {
    Inner {
        #[pin]
        future: F,
    },
    Rejected {
        rejection: Rejection<ReqBody, B>,
    },
}

impl<F, B, ReqBody> ResponseFuture<F, B, ReqBody> {
    pub(crate) fn inner(future: F) -> Self {
        Self {
            state: State::Inner { future },
            span: Span::none(),
        }
    }

    pub(crate) fn rejected(rejection: Rejection<ReqBody, B>) -> Self {
        Self {
            state: State::Rejected { rejection },
            span: Span::none(),
        }
    }

    /// Polls within `span`, and records on it whether the request was allowed.
    pub(crate) fn in_span(mut self, span: Span) -> Self {
        self.span = span;
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
        let _entered = this.span.enter();
        match this.state.project() {
            StateProj::Inner { future } => {
                let response = std::task::ready!(future.poll(cx))?;
                if !challenge::is_rejection(&response) {
                    this.span.record("decision", "allow");
                }
                Poll::Ready(Ok(response.map(ResponseBody::inner)))
            }
            StateProj::Rejected { rejection } => rejection.poll_response(cx).map(Ok),
        }
    }
}
