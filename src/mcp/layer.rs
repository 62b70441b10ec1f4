//! [`OperationLayer`]: finds the [`McpOperation`] of each verified request and puts it
//! into the request's extensions for the authorization layer and the service.
//!
//! A `POST` whose decision depends on the operation is read, up to a limit, and the
//! exact bytes read (and trailers) are handed on ([`McpBody`]); every other request
//! keeps its body streaming. It runs after verification, so unauthenticated clients
//! never make the server buffer anything. gRPC requests are never read.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::header::CONTENT_LENGTH;
use http::request::Parts;
use http::{Method, Request, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project::pin_project;
use tower::{Layer, Service};

use crate::authorize::{Authorize, BoxAuthorize};
use crate::body::ResponseBody;
use crate::challenge;
use crate::error::AuthError;
use crate::future::Rejection;
use crate::principal::Principal;
use crate::resource::ProtectedResource;
use crate::rule::Rule;

use super::operation::{self, McpOperation};

/// The most of a request body read to find its MCP operation, by default (1 MiB).
pub const DEFAULT_MCP_BODY_LIMIT: usize = 1024 * 1024;

/// The rule id this layer's refusals carry in logs and spans.
const RULE: Rule = Rule::Mcp1;

/// How much of an over-long body is still read (and dropped) before refusing it, so
/// the client receives the `400` instead of a connection reset.
const OVERSIZE_DRAIN_BYTES: usize = 16 * 1024 * 1024;

/// A layer that finds the [`McpOperation`] of each request; see the module docs.
#[derive(Clone)]
pub struct OperationLayer {
    resource: ProtectedResource,
    limit: usize,
    reads: Reads,
}

#[derive(Clone)]
enum Reads {
    Always,
    NeededBy(BoxAuthorize),
    Never,
}

impl std::fmt::Debug for OperationLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperationLayer")
            .field("resource", &self.resource)
            .field("limit", &self.limit)
            .field(
                "reads",
                &match self.reads {
                    Reads::Always => "always",
                    Reads::NeededBy(_) => "when the policy needs it",
                    Reads::Never => "never",
                },
            )
            .finish()
    }
}

impl OperationLayer {
    /// Reads the body of every `POST`, whatever its declared `Content-Type`, up to
    /// [`DEFAULT_MCP_BODY_LIMIT`]; one labelled gRPC cannot be read and is refused
    /// with 400.
    pub fn new(resource: ProtectedResource) -> Self {
        Self {
            resource,
            limit: DEFAULT_MCP_BODY_LIMIT,
            reads: Reads::Always,
        }
    }

    /// The most of a body read; a longer one is refused with `400` naming the limit.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.limit = bytes;
        self
    }

    /// Reads bodies only for callers whose decision by `authorize` depends on the
    /// operation ([`Authorize::needs_operation`]); the others keep streaming and get
    /// the operation the `Mcp-*` headers claim, unverified.
    pub fn needed_by(mut self, authorize: impl Authorize) -> Self {
        self.reads = Reads::NeededBy(BoxAuthorize::new(authorize));
        self
    }

    /// Reads nothing: every request gets [`McpOperation::unknown`]. For services that
    /// do not speak MCP.
    pub fn off(mut self) -> Self {
        self.reads = Reads::Never;
        self
    }
}

impl<S> Layer<S> for OperationLayer {
    type Service = Operation<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Operation {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`OperationLayer`].
#[derive(Clone, Debug)]
pub struct Operation<S> {
    inner: S,
    layer: OperationLayer,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Operation<S>
where
    S: Service<Request<McpBody<ReqBody>>, Response = Response<ResBody>> + Clone,
    ReqBody: Body,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = OperationFuture<S, ReqBody, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // Until the body has to be read, the service that was polled ready is called
        // at once; only the reading path takes it into the future.
        let inner = &mut self.inner;
        let (mut parts, body) = req.into_parts();
        // A JSON-RPC body sent with another method than POST (PUT, PATCH, a DELETE
        // with a body) reaches a server routed with axum's `any` just the same, so
        // it is read as well; only a body known to be empty is not.
        let post = parts.method == Method::POST;
        let reads = match &self.layer.reads {
            Reads::Never => false,
            _ => post || !(body.is_end_stream() || body.size_hint().exact() == Some(0)),
        };
        if !reads {
            parts.extensions.insert(McpOperation::unknown());
            return OperationFuture::calling(inner, parts, McpBody::streaming(body));
        }
        let needed = match (&self.layer.reads, parts.extensions.get::<Principal>()) {
            (Reads::NeededBy(authorize), Some(principal)) => authorize.needs_operation(principal),
            _ => true,
        };
        if !needed {
            let claimed = operation::from_headers(&parts.headers).ok().flatten();
            parts
                .extensions
                .insert(claimed.unwrap_or_else(McpOperation::unknown));
            return OperationFuture::calling(inner, parts, McpBody::streaming(body));
        }
        if let Some(encoding) = super::encoding(&parts.headers) {
            let error = AuthError::invalid_request(
                RULE,
                format!(
                    "the request body is encoded ({encoding}), so its MCP operation cannot be \
                     read, and the authorization rules need it; send it without a \
                     Content-Encoding"
                ),
            );
            return OperationFuture::rejecting(error, &self.layer.resource, parts, Box::pin(body));
        }
        if let Some(charset) = super::foreign_charset(&parts.headers) {
            let error = AuthError::invalid_request(
                RULE,
                format!(
                    "the request body declares charset {charset:?}; only UTF-8 bodies are \
                     read the same way by every server, and the authorization rules need \
                     this one; send it as UTF-8"
                ),
            );
            return OperationFuture::rejecting(error, &self.layer.resource, parts, Box::pin(body));
        }
        if challenge::is_grpc(&parts.headers) {
            // A rule needs the operation, and a gRPC body is not JSON-RPC to read. An
            // MCP server that ignores the content type could still run what it says,
            // so the request cannot go on undecided: 400 (INVALID_ARGUMENT to gRPC).
            let error = AuthError::invalid_request(
                RULE,
                "the request declares gRPC, so its MCP operation cannot be read, and the \
                 authorization rules need it; send MCP messages as application/json (a \
                 gRPC service behind these layers wants mcp_operations(false))",
            );
            return OperationFuture::rejecting(error, &self.layer.resource, parts, Box::pin(body));
        }
        let limit = self.layer.limit;
        let declared = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limit as u64) {
            let error = too_large(limit);
            return OperationFuture::rejecting(error, &self.layer.resource, parts, Box::pin(body));
        }
        // The service that was polled ready goes into the future; a clone stays.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        OperationFuture {
            state: State::Reading {
                body: Some(Box::pin(body)),
                read: Collected::default(),
            },
            request: Some(Box::new((parts, inner))),
            resource: Some(self.layer.resource.clone()),
            limit,
            empty_is_unknown: !post,
        }
    }
}

fn too_large(limit: usize) -> AuthError {
    AuthError::invalid_request(
        RULE,
        format!(
            "the request body is larger than the {limit}-byte limit read to find its MCP \
             operation (ResourceServerBuilder::mcp_body_limit)"
        ),
    )
}

/// The chunks of a body read so far.
#[derive(Default)]
struct Collected {
    chunks: Vec<Bytes>,
    len: usize,
    trailers: Option<http::HeaderMap>,
}

impl Collected {
    fn push(&mut self, mut data: impl Buf) {
        let chunk = data.copy_to_bytes(data.remaining());
        self.len += chunk.len();
        if !chunk.is_empty() {
            self.chunks.push(chunk);
        }
    }

    /// The bytes read, as one buffer (without copying when they came in one chunk).
    fn take_bytes(&mut self) -> Bytes {
        match self.chunks.len() {
            0 => Bytes::new(),
            1 => self.chunks.remove(0),
            _ => {
                let mut all = BytesMut::with_capacity(self.len);
                for chunk in self.chunks.drain(..) {
                    all.extend_from_slice(&chunk);
                }
                all.freeze()
            }
        }
    }
}

/// The response future of [`Operation`].
#[pin_project]
pub struct OperationFuture<S, ReqBody, ResBody>
where
    S: Service<Request<McpBody<ReqBody>>>,
{
    #[pin]
    state: State<S::Future, ReqBody, ResBody>,
    /// Kept only while the body is read (boxed: requests that are not read have none).
    request: Option<Box<(Parts, S)>>,
    resource: Option<ProtectedResource>,
    limit: usize,
    /// Whether an empty body is no operation (the `GET` or `DELETE` that carries
    /// none) rather than a malformed message.
    empty_is_unknown: bool,
}

#[pin_project(project = StateProj)]
enum State<F, ReqBody, B> {
    Reading {
        body: Option<Pin<Box<ReqBody>>>,
        read: Collected,
    },
    Calling {
        #[pin]
        future: F,
    },
    Rejecting {
        rejection: Rejection<Pin<Box<ReqBody>>, B>,
    },
}

impl<S, ReqBody, ResBody> OperationFuture<S, ReqBody, ResBody>
where
    S: Service<Request<McpBody<ReqBody>>>,
    ReqBody: Body,
{
    fn calling(inner: &mut S, parts: Parts, body: McpBody<ReqBody>) -> Self {
        Self {
            state: State::Calling {
                future: inner.call(Request::from_parts(parts, body)),
            },
            request: None,
            resource: None,
            limit: 0,
            empty_is_unknown: false,
        }
    }

    fn rejecting(
        error: AuthError,
        resource: &ProtectedResource,
        parts: Parts,
        body: Pin<Box<ReqBody>>,
    ) -> Self {
        let response = challenge::reject(error, resource, &parts);
        Self {
            state: State::Rejecting {
                rejection: Rejection::draining(response, body, OVERSIZE_DRAIN_BYTES),
            },
            request: None,
            resource: None,
            limit: 0,
            empty_is_unknown: false,
        }
    }
}

impl<S, ReqBody, ResBody> Future for OperationFuture<S, ReqBody, ResBody>
where
    S: Service<Request<McpBody<ReqBody>>, Response = Response<ResBody>>,
    ReqBody: Body,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                StateProj::Calling { future } => {
                    let response = std::task::ready!(future.poll(cx))?;
                    return Poll::Ready(Ok(response.map(ResponseBody::inner)));
                }
                StateProj::Rejecting { rejection } => {
                    return rejection.poll_response(cx).map(Ok);
                }
                StateProj::Reading { body, read } => {
                    let Some(stream) = body.as_mut() else {
                        panic!("OperationFuture polled after completion");
                    };
                    let outcome = match std::task::ready!(stream.as_mut().poll_frame(cx)) {
                        Some(Ok(frame)) => {
                            match frame.into_data() {
                                Ok(data) => read.push(data),
                                Err(frame) => read.trailers = frame.into_trailers().ok(),
                            }
                            if read.len <= *this.limit {
                                continue;
                            }
                            Err(too_large(*this.limit))
                        }
                        Some(Err(_)) => Err(AuthError::invalid_request(
                            RULE,
                            "the request body could not be read",
                        )),
                        None => Ok(read.take_bytes()),
                    };
                    let Some(pending) = this.request.take() else {
                        panic!("OperationFuture polled after completion");
                    };
                    let (mut parts, mut inner) = *pending;
                    let empty_is_unknown = *this.empty_is_unknown;
                    let found = outcome.and_then(|bytes| {
                        if empty_is_unknown && bytes.iter().all(u8::is_ascii_whitespace) {
                            return Ok((McpOperation::unknown(), bytes));
                        }
                        operation::from_body(&bytes, &parts.headers)
                            .map(|op| (op, bytes))
                            .map_err(|description| AuthError::invalid_request(RULE, description))
                    });
                    match found {
                        Ok((op, bytes)) => {
                            parts.extensions.insert(op);
                            let body = McpBody::full(bytes).with_trailers(read.trailers.take());
                            let request = Request::from_parts(parts, body);
                            State::Calling {
                                future: inner.call(request),
                            }
                        }
                        Err(error) => {
                            let Some(resource) = this.resource.as_ref() else {
                                panic!("OperationFuture read a body without its resource");
                            };
                            let response = challenge::reject(error, resource, &parts);
                            // What is left of the body is drained before answering.
                            let Some(body) = body.take() else {
                                panic!("OperationFuture polled after completion");
                            };
                            State::Rejecting {
                                rejection: Rejection::draining(
                                    response,
                                    body,
                                    OVERSIZE_DRAIN_BYTES,
                                ),
                            }
                        }
                    }
                }
            };
            this.state.set(next);
        }
    }
}

/// The request body an [`Operation`] hands on: the client's body still streaming, or
/// the exact bytes that were read from it.
#[pin_project]
#[derive(Debug)]
pub struct McpBody<B> {
    #[pin]
    kind: BodyKind<B>,
}

#[pin_project(project = BodyKindProj)]
#[derive(Debug)]
enum BodyKind<B> {
    Streaming(#[pin] B),
    Full(Option<Bytes>, Option<http::HeaderMap>),
}

impl<B> McpBody<B> {
    /// The client's body, untouched.
    pub fn streaming(body: B) -> Self {
        Self {
            kind: BodyKind::Streaming(body),
        }
    }

    /// A body already read.
    pub fn full(bytes: Bytes) -> Self {
        Self {
            kind: BodyKind::Full((!bytes.is_empty()).then_some(bytes), None),
        }
    }

    /// The same, with the trailers that followed the bytes, if any.
    pub fn with_trailers(mut self, trailers: Option<http::HeaderMap>) -> Self {
        if let BodyKind::Full(_, slot) = &mut self.kind {
            *slot = trailers;
        }
        self
    }
}

impl<B: Body> Body for McpBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            BodyKindProj::Streaming(body) => body.poll_frame(cx).map(|frame| {
                frame.map(|frame| frame.map(|f| f.map_data(|mut d| d.copy_to_bytes(d.remaining()))))
            }),
            BodyKindProj::Full(bytes, trailers) => Poll::Ready(
                bytes
                    .take()
                    .map(Frame::data)
                    .or_else(|| trailers.take().map(Frame::trailers))
                    .map(Ok),
            ),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            BodyKind::Streaming(body) => body.is_end_stream(),
            BodyKind::Full(bytes, trailers) => bytes.is_none() && trailers.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            BodyKind::Streaming(body) => body.size_hint(),
            BodyKind::Full(bytes, _) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}
