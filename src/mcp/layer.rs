//! [`OperationLayer`]: finds the [`McpOperation`] of each verified request and puts it
//! into the request's extensions for the authorization layer and the service.
//!
//! A `POST` whose decision depends on the operation is read, up to a limit, and the
//! exact bytes read (and trailers) are handed on ([`McpBody`]); every other request
//! keeps its body streaming. It runs after verification, so a request with a bad
//! token never makes the server buffer anything; a request without one (let on for
//! public operations) is read up to [`ANONYMOUS_BODY_LIMIT`] only. gRPC requests are
//! never read.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::header::CONTENT_LENGTH;
use http::request::Parts;
use http::{Method, Request, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project::pin_project;
use tower::Service;

use crate::authorize::{Authorize, BoxAuthorize};
use crate::body::ResponseBody;
use crate::challenge;
use crate::error::AuthError;
use crate::future::{Check, GateFuture, Sealed};
use crate::principal::Principal;
use crate::resource::ProtectedResource;
use crate::rule::Rule;

use super::argument::Argument;
use super::operation::{self, McpOperation};
use std::sync::Arc;

/// The most of a request body read to find its MCP operation, by default (1 MiB).
pub const DEFAULT_MCP_BODY_LIMIT: usize = 1024 * 1024;

/// The most of a body read for a caller without a token (public operations): an
/// MCP discovery request is a few hundred bytes.
pub const ANONYMOUS_BODY_LIMIT: usize = 64 * 1024;

/// The limit for the request `parts`: the layer's, or [`ANONYMOUS_BODY_LIMIT`] for a
/// caller without a token.
fn limit_for(parts: &Parts, limit: usize) -> usize {
    match parts.extensions.get::<Principal>() {
        Some(principal) if principal.is_anonymous() => limit.min(ANONYMOUS_BODY_LIMIT),
        _ => limit,
    }
}

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
    /// The members of a `tools/call`'s arguments the policy reads.
    arguments: Arc<[Argument]>,
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
            arguments: Arc::new([]),
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
    /// The members of `tools/call` arguments it names ([`Authorize::arguments`]) are
    /// read too.
    pub fn needed_by(mut self, authorize: impl Authorize) -> Self {
        self.arguments = authorize.arguments().into();
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

crate::pipeline::layer_service!(OperationLayer => OperationService);

/// What an [`OperationService`] does with a request.
enum Plan {
    /// Hands the body on streaming, with this operation.
    Stream(McpOperation),
    /// Reads the body, up to the limit.
    Read,
    /// Refuses the request.
    Refuse(AuthError),
}

impl OperationLayer {
    /// Whether `parts` and its body are read, streamed or refused.
    fn plan<B: Body>(&self, parts: &Parts, body: &B) -> Plan {
        // A JSON-RPC body sent with another method than POST (PUT, PATCH, a DELETE
        // with a body) reaches a server routed with axum's `any` just the same, so
        // it is read as well; only a body known to be empty is not.
        let post = parts.method == Method::POST;
        let reads = match &self.reads {
            Reads::Never => false,
            _ => post || !(body.is_end_stream() || body.size_hint().exact() == Some(0)),
        };
        if !reads {
            return Plan::Stream(McpOperation::unknown());
        }
        let needed = match (&self.reads, parts.extensions.get::<Principal>()) {
            (Reads::NeededBy(authorize), Some(principal)) => authorize.needs_operation(principal),
            _ => true,
        };
        if !needed {
            let claimed = super::headers::from_headers(&parts.headers).ok().flatten();
            return Plan::Stream(claimed.unwrap_or_else(McpOperation::unknown));
        }
        match unreadable(parts, limit_for(parts, self.limit)) {
            Some(error) => Plan::Refuse(error),
            None => Plan::Read,
        }
    }
}

/// Why the body of `parts` cannot be read the way every server behind would read it,
/// if it cannot.
fn unreadable(parts: &Parts, limit: usize) -> Option<AuthError> {
    if let Some(encoding) = super::encoding(&parts.headers) {
        return Some(AuthError::invalid_request(
            RULE,
            format!(
                "the request body is encoded ({encoding}), so its MCP operation cannot be \
                 read, and the authorization rules need it; send it without a \
                 Content-Encoding"
            ),
        ));
    }
    if let Some(charset) = super::foreign_charset(&parts.headers) {
        return Some(AuthError::invalid_request(
            RULE,
            format!(
                "the request body declares charset {charset:?}; only UTF-8 bodies are \
                 read the same way by every server, and the authorization rules need \
                 this one; send it as UTF-8"
            ),
        ));
    }
    if challenge::is_grpc(&parts.headers) {
        // A rule needs the operation, and a gRPC body is not JSON-RPC to read. An
        // MCP server that ignores the content type could still run what it says,
        // so the request cannot go on undecided: 400 (INVALID_ARGUMENT to gRPC).
        return Some(AuthError::invalid_request(
            RULE,
            "the request declares gRPC, so its MCP operation cannot be read, and the \
             authorization rules need it; send MCP messages as application/json (a \
             gRPC service behind these layers wants mcp_operations(false))",
        ));
    }
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    declared
        .is_some_and(|len| len > limit as u64)
        .then(|| too_large(limit))
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for OperationService<S>
where
    S: Service<Request<McpBody<ReqBody>>, Response = Response<ResBody>> + Clone,
    ReqBody: Body,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = GateFuture<ReadingOperation<ReqBody>, S, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        match self.layer.plan(&parts, &body) {
            // Until the body has to be read, the service that was polled ready is
            // called at once; only the reading path takes it into the future.
            Plan::Stream(operation) => {
                crate::audit::operation(operation.method(), operation.name());
                parts.extensions.insert(operation);
                let request = Request::from_parts(parts, McpBody::streaming(body));
                GateFuture::pass(request, &mut self.inner)
            }
            Plan::Refuse(error) => {
                GateFuture::refuse(error, &parts, Box::pin(body), &self.layer.resource)
            }
            Plan::Read => {
                let check = ReadingOperation {
                    body: Box::pin(body),
                    read: Collected::default(),
                    limit: limit_for(&parts, self.layer.limit),
                    empty_is_unknown: parts.method != Method::POST,
                    arguments: self.layer.arguments.clone(),
                };
                GateFuture::check(check, parts, &mut self.inner, &self.layer.resource)
            }
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

/// The pending [`Check`] of an [`OperationService`]: the request body being read, up
/// to the limit, to find its MCP operation.
pub struct ReadingOperation<B> {
    body: Pin<Box<B>>,
    read: Collected,
    limit: usize,
    /// Whether an empty body is no operation (the `GET` or `DELETE` that carries
    /// none) rather than a malformed message.
    empty_is_unknown: bool,
    /// The members of a `tools/call`'s arguments to read.
    arguments: Arc<[Argument]>,
}

impl<B> Sealed for ReadingOperation<B> {}

impl<B: Body> ReadingOperation<B> {
    /// Reads until the body ends (its bytes) or is refused.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Result<Bytes, AuthError>> {
        loop {
            match std::task::ready!(self.body.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => {
                    match frame.into_data() {
                        Ok(data) => self.read.push(data),
                        Err(frame) => self.read.trailers = frame.into_trailers().ok(),
                    }
                    if self.read.len > self.limit {
                        return Poll::Ready(Err(too_large(self.limit)));
                    }
                }
                Some(Err(_)) => {
                    return Poll::Ready(Err(AuthError::invalid_request(
                        RULE,
                        "the request body could not be read",
                    )));
                }
                None => return Poll::Ready(Ok(self.read.take_bytes())),
            }
        }
    }
}

impl<B: Body> Check for ReadingOperation<B> {
    type Body = McpBody<B>;
    type Refused = Pin<Box<B>>;
    /// What is left of an over-long body is still drained before answering.
    const DRAIN: usize = OVERSIZE_DRAIN_BYTES;

    fn poll_check(
        &mut self,
        parts: &mut Parts,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), AuthError>> {
        let bytes = std::task::ready!(self.poll_read(cx))?;
        let operation = if self.empty_is_unknown && bytes.iter().all(u8::is_ascii_whitespace) {
            McpOperation::unknown()
        } else {
            operation::from_body(&bytes, &parts.headers, &self.arguments).map_err(|refused| {
                match refused {
                    operation::Refused::Body(description) => {
                        AuthError::invalid_request(RULE, description)
                    }
                    operation::Refused::Headers { id, description } => {
                        AuthError::header_mismatch(id, description)
                    }
                }
            })?
        };
        crate::audit::operation(operation.method(), operation.name());
        parts.extensions.insert(operation);
        // The bytes go back as the only chunk, for `pass`.
        self.read.chunks = vec![bytes];
        Poll::Ready(Ok(()))
    }

    fn pass(mut self, parts: Parts) -> Request<McpBody<B>> {
        let body = McpBody::full(self.read.take_bytes()).with_trailers(self.read.trailers.take());
        Request::from_parts(parts, body)
    }

    fn refuse(self) -> Pin<Box<B>> {
        self.body
    }
}

/// The request body an [`OperationService`] hands on: the client's body still streaming, or
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
            BodyKindProj::Full(bytes, trailers) => crate::body::next_read_frame(bytes, trailers),
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
