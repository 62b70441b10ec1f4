//! [`ResponseBody`]: the response body of every layer — the inner service's body, or
//! the small JSON body of a refusal. Generic over the inner body, so the layers work
//! with axum, hyper and tonic bodies alike.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project::pin_project;

/// The body of a response that passed through a layer of this crate: either the inner
/// service's body untouched, or the JSON body of a refusal (an
/// [`AuthError`](crate::AuthError)).
#[pin_project(project = ResponseBodyProj)]
#[derive(Debug)]
pub struct ResponseBody<B> {
    #[pin]
    kind: Kind<B>,
}

#[pin_project(project = KindProj)]
#[derive(Debug)]
enum Kind<B> {
    Inner(#[pin] B),
    Full(Option<Bytes>),
}

impl<B> ResponseBody<B> {
    pub(crate) fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner(body),
        }
    }

    pub(crate) fn full(bytes: Bytes) -> Self {
        Self {
            kind: Kind::Full(Some(bytes)),
        }
    }
}

/// An empty body (CORS preflight answers are made with it).
impl<B> Default for ResponseBody<B> {
    fn default() -> Self {
        Self {
            kind: Kind::Full(None),
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner(body) => body.poll_frame(cx),
            KindProj::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner(body) => body.is_end_stream(),
            Kind::Full(bytes) => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner(body) => body.size_hint(),
            Kind::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            Kind::Full(None) => SizeHint::with_exact(0),
        }
    }
}

/// The next frame of a body already read into memory: its bytes, then its
/// trailers, then the end.
pub(crate) fn next_read_frame<E>(
    bytes: &mut Option<Bytes>,
    trailers: &mut Option<http::HeaderMap>,
) -> Poll<Option<Result<Frame<Bytes>, E>>> {
    Poll::Ready(
        bytes
            .take()
            .map(Frame::data)
            .or_else(|| trailers.take().map(Frame::trailers))
            .map(Ok),
    )
}
