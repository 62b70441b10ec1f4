//! The response future shared by the layers that decide synchronously: either the
//! inner service's future, or a refusal that is ready at once.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use pin_project::pin_project;
use tracing::Span;

use crate::body::ResponseBody;
use crate::challenge;

/// The response future of the layers that decide without waiting
/// ([`Bearer`](crate::bearer::Bearer), [`Audience`](crate::audience::Audience)).
#[pin_project]
pub struct ResponseFuture<F, B> {
    #[pin]
    state: State<F, B>,
    span: Span,
}

#[pin_project(project = StateProj)]
enum State<F, B> {
    Inner {
        #[pin]
        future: F,
    },
    Rejected {
        response: Option<Response<ResponseBody<B>>>,
    },
}

impl<F, B> ResponseFuture<F, B> {
    pub(crate) fn inner(future: F) -> Self {
        Self {
            state: State::Inner { future },
            span: Span::none(),
        }
    }

    pub(crate) fn rejected(response: Response<ResponseBody<B>>) -> Self {
        Self {
            state: State::Rejected {
                response: Some(response),
            },
            span: Span::none(),
        }
    }

    /// Polls within `span`, and records on it whether the request was allowed.
    pub(crate) fn in_span(mut self, span: Span) -> Self {
        self.span = span;
        self
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
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
            StateProj::Rejected { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => panic!("ResponseFuture polled after completion"),
            },
        }
    }
}
