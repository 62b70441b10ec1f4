//! [`FilterToolsLayer`]: removes from a `tools/list` answer the tools the caller could
//! not call, so clients do not offer a model tools that will be refused (a gateway
//! whose policy step failed on opaque tokens filtered every tool away; here the policy
//! that filters is the one that decides calls).
//!
//! A tool is kept when the authorization policy allows `tools/call` of it for this
//! caller. What a filter hides stays hidden (R-GW-4): a JSON answer to a `tools/list`
//! `POST` is that request's answer whatever `id` form it echoes; in an SSE stream
//! (the answer to a `POST`, or a `GET` that opens or resumes a stream with
//! `Last-Event-ID`) every event that carries a `tools` result is filtered; and an
//! answer the filter cannot read (compressed, cut off, over its limit, not JSON-RPC)
//! is withheld, never passed on unfiltered: a JSON answer becomes `502` with a
//! JSON-RPC error, an SSE stream ends with a JSON-RPC error event. `Accept-Encoding`
//! is taken off the requests whose answers are filtered, so servers answer
//! uncompressed.
//!
//! This module holds the layer and the filtering of JSON answers; SSE streams are
//! read and filtered event by event in the `sse` module.

use std::collections::BTreeMap;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::{ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use pin_project::pin_project;
use serde_json::Value;
use serde_json::value::RawValue;
use tower::{Layer, Service};

use crate::authorize::Authorize;
use crate::decision::Decision;
use crate::principal::Principal;

use super::operation::{McpOperation, OperationSource};
use super::sse::{EventData, SseFilter, classify};

/// The largest `tools/list` answer filtered, by default (16 MiB); a larger one is
/// withheld.
pub const DEFAULT_TOOLS_LIST_LIMIT: usize = 16 * 1024 * 1024;

/// The JSON-RPC error code of a withheld answer (internal error).
const WITHHELD_CODE: i64 = -32603;

/// A layer that filters `tools/list` answers by an [`Authorize`] policy; put it
/// inside the [`AuthorizeLayer`](crate::AuthorizeLayer), behind an
/// [`OperationLayer`](crate::OperationLayer).
#[derive(Debug)]
pub struct FilterToolsLayer<A> {
    authorize: Option<Arc<A>>,
    limit: usize,
}

impl<A> Clone for FilterToolsLayer<A> {
    fn clone(&self) -> Self {
        Self {
            authorize: self.authorize.clone(),
            limit: self.limit,
        }
    }
}

impl<A> FilterToolsLayer<A> {
    /// Filters by `authorize`.
    pub fn new(authorize: A) -> Self {
        Self {
            authorize: Some(Arc::new(authorize)),
            limit: DEFAULT_TOOLS_LIST_LIMIT,
        }
    }

    /// Passes every answer through untouched.
    pub fn off() -> Self {
        Self {
            authorize: None,
            limit: DEFAULT_TOOLS_LIST_LIMIT,
        }
    }

    /// The largest answer (or, in a stream, event) filtered; a larger one is withheld.
    pub fn limit(mut self, bytes: usize) -> Self {
        self.limit = bytes;
        self
    }
}

impl<S, A> Layer<S> for FilterToolsLayer<A> {
    type Service = FilterToolsService<S, A>;

    fn layer(&self, inner: S) -> Self::Service {
        FilterToolsService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`FilterToolsLayer`].
#[derive(Debug)]
pub struct FilterToolsService<S, A> {
    inner: S,
    layer: FilterToolsLayer<A>,
}

impl<S: Clone, A> Clone for FilterToolsService<S, A> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

/// Which answers of a request are filtered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    /// A `tools/list` `POST`: its JSON answer, or the events of its SSE answer.
    Answer,
    /// A `GET` stream (resumed or not): its events.
    Stream,
}

/// What filtering an answer needs to know of its request.
pub(super) struct Asked<A> {
    authorize: Arc<A>,
    principal: Principal,
    parts: Parts,
    pub(super) id: Option<Value>,
    pub(super) limit: usize,
    pub(super) target: Target,
}

impl<A> Asked<A> {
    fn of<B>(layer: &FilterToolsLayer<A>, req: &Request<B>) -> Option<Self>
    where
        A: Authorize,
    {
        let authorize = layer.authorize.as_ref()?;
        let operation = req.extensions().get::<McpOperation>()?;
        let target = if operation.is("tools/list") && operation.source() == OperationSource::Body {
            Target::Answer
        } else if req.method() == Method::GET {
            Target::Stream
        } else {
            return None;
        };
        let principal = req.extensions().get::<Principal>()?;
        if !authorize.needs_operation(principal) {
            return None; // this caller may call anything the policy could name
        }
        let mut copy = Request::new(());
        *copy.method_mut() = req.method().clone();
        *copy.uri_mut() = req.uri().clone();
        *copy.version_mut() = req.version();
        *copy.headers_mut() = req.headers().clone();
        *copy.extensions_mut() = req.extensions().clone();
        Some(Self {
            authorize: authorize.clone(),
            principal: principal.clone(),
            parts: copy.into_parts().0,
            id: operation.id().cloned(),
            limit: layer.limit,
            target,
        })
    }
}

impl<S, A, ReqBody, ResBody> Service<Request<ReqBody>> for FilterToolsService<S, A>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    A: Authorize,
    ResBody: Body + Send + 'static,
    ResBody::Data: Send,
    ResBody::Error: Send,
{
    type Response = Response<FilteredBody<ResBody>>;
    type Error = S::Error;
    type Future = FilterToolsFuture<S::Future, A, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let asked = Asked::of(&self.layer, &req).map(Box::new);
        if asked.is_some() {
            // An answer the filter must read is asked for uncompressed.
            req.headers_mut().remove(ACCEPT_ENCODING);
        }
        FilterToolsFuture {
            state: FutureState::Calling {
                future: self.inner.call(req),
                asked,
            },
        }
    }
}

type Filtering<B> = Pin<Box<dyn Future<Output = Response<FilteredBody<B>>> + Send>>;

/// The response future of [`FilterToolsService`].
#[pin_project]
pub struct FilterToolsFuture<F, A, B: Body> {
    #[pin]
    state: FutureState<F, A, B>,
}

#[pin_project(project = FutureStateProj)]
enum FutureState<F, A, B: Body> {
    Calling {
        #[pin]
        future: F,
        asked: Option<Box<Asked<A>>>,
    },
    Filtering {
        future: Filtering<B>,
    },
}

impl<F, A, B, E> Future for FilterToolsFuture<F, A, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    A: Authorize,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Send,
{
    type Output = Result<Response<FilteredBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let filtering = match this.state.as_mut().project() {
                FutureStateProj::Filtering { future } => return future.as_mut().poll(cx).map(Ok),
                FutureStateProj::Calling { future, asked } => {
                    let response = std::task::ready!(future.poll(cx))?;
                    match asked.take() {
                        Some(asked) if response.status().is_success() => {
                            match answer(response, *asked) {
                                Ok(response) => return Poll::Ready(Ok(response)),
                                Err(reading) => reading,
                            }
                        }
                        _ => return Poll::Ready(Ok(response.map(FilteredBody::inner))),
                    }
                }
            };
            this.state.set(FutureState::Filtering { future: filtering });
        }
    }
}

fn content_type(parts: &http::response::Parts) -> Option<&str> {
    let value = parts.headers.get(CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next().unwrap_or_default().trim())
}

/// What to answer: at once (a stream filtered as it flows, an answer withheld or
/// passed on), or after reading a JSON answer whole (`Err`).
fn answer<A, B>(
    response: Response<B>,
    asked: Asked<A>,
) -> Result<Response<FilteredBody<B>>, Filtering<B>>
where
    A: Authorize,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Send,
{
    let (mut parts, body) = response.into_parts();
    if let Some(encoding) = super::encoding(&parts.headers) {
        let reason = format!("it is encoded ({encoding}) and cannot be read");
        return Ok(withheld(parts, asked.id.as_ref(), &reason));
    }
    let sse = content_type(&parts).is_some_and(|t| t.eq_ignore_ascii_case("text/event-stream"));
    if sse {
        parts.headers.remove(CONTENT_LENGTH);
        let stream = SseFilter::new(body, Arc::new(asked));
        return Ok(Response::from_parts(parts, FilteredBody::stream(stream)));
    }
    match asked.target {
        // Whatever type it declares, a client may read it as JSON.
        Target::Answer => Err(Box::pin(filter_json(parts, body, asked))),
        Target::Stream => Ok(Response::from_parts(parts, FilteredBody::inner(body))),
    }
}

/// A `502` whose JSON-RPC error says why the `tools/list` answer was withheld.
fn withheld<B: Body>(
    mut parts: http::response::Parts,
    id: Option<&Value>,
    reason: &str,
) -> Response<FilteredBody<B>> {
    tracing::warn!(
        reason,
        "tools/list answer withheld: it could not be filtered"
    );
    parts.status = StatusCode::BAD_GATEWAY;
    parts.headers.remove(CONTENT_LENGTH);
    parts.headers.remove(CONTENT_ENCODING);
    parts
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let body = Bytes::from(withheld_message(id, reason));
    Response::from_parts(parts, FilteredBody::ended(body, None))
}

pub(super) fn withheld_message(id: Option<&Value>, reason: &str) -> String {
    serde_json::json!({
        "jsonrpc": "2.0",
        "id": id.cloned().unwrap_or(Value::Null),
        "error": {
            "code": WITHHELD_CODE,
            "message": format!(
                "the tools/list answer was withheld: {reason}, so the tools this caller \
                 may not call could not be left out"
            ),
        },
    })
    .to_string()
}

/// Reads a JSON answer whole (up to the limit), filters it, and answers with it.
async fn filter_json<A, B>(
    mut parts: http::response::Parts,
    body: B,
    asked: Asked<A>,
) -> Response<FilteredBody<B>>
where
    A: Authorize,
    B: Body + Send + 'static,
{
    let mut body = Box::pin(body);
    let mut buf = BytesMut::new();
    let mut trailers = None;
    loop {
        match poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => buf.put(data),
                Err(frame) => trailers = frame.into_trailers().ok(),
            },
            Some(Err(_)) => {
                return withheld(parts, asked.id.as_ref(), "it was cut off");
            }
            None => break,
        }
        if buf.len() > asked.limit {
            let reason = format!("it is larger than the {}-byte filter limit", asked.limit);
            return withheld(parts, asked.id.as_ref(), &reason);
        }
    }
    if buf.iter().all(u8::is_ascii_whitespace) {
        // Nothing to hide (a 202 to a notification, say).
        return Response::from_parts(parts, FilteredBody::ended(buf.freeze(), trailers));
    }
    if classify(&buf) == EventData::Unreadable {
        // A member twice, say: readers differ in which they take.
        return withheld(parts, asked.id.as_ref(), "it is not readable JSON");
    }
    match filter_result(&buf, &asked).await {
        Ok(Some(filtered)) => {
            parts.headers.remove(CONTENT_LENGTH);
            Response::from_parts(parts, FilteredBody::ended(filtered.into(), trailers))
        }
        Ok(None) => Response::from_parts(parts, FilteredBody::ended(buf.freeze(), trailers)),
        Err(reason) => withheld(parts, asked.id.as_ref(), reason),
    }
}

/// The JSON-RPC answer in `data` without the tools `asked.principal` may not call:
/// `Ok(None)` when it lists no tools (an error answer, say: passed on as it is), `Err`
/// when it cannot be read. The tools kept are copied byte for byte, so their schemas
/// keep their member order.
pub(super) async fn filter_result<A: Authorize>(
    data: &[u8],
    asked: &Asked<A>,
) -> Result<Option<Vec<u8>>, &'static str> {
    type Object = BTreeMap<String, Box<RawValue>>;
    const UNREADABLE: &str = "it is not a JSON-RPC answer";
    let mut message: Object = serde_json::from_slice(data).map_err(|_| UNREADABLE)?;
    let Some(result) = message.get("result") else {
        return match message.contains_key("error") {
            true => Ok(None),
            false => Err(UNREADABLE),
        };
    };
    let mut result: Object = serde_json::from_str(result.get()).map_err(|_| UNREADABLE)?;
    let Some(tools) = result.get("tools") else {
        return Ok(None);
    };
    let listed: Vec<Box<RawValue>> =
        serde_json::from_str(tools.get()).map_err(|_| "its tools are not a list")?;
    let total = listed.len();
    let mut kept = Vec::with_capacity(total);
    for tool in listed {
        if may_call(&tool, asked).await {
            kept.push(tool);
        }
    }
    tracing::debug!(
        listed = total,
        kept = kept.len(),
        "tools/list filtered by policy"
    );
    const UNWRITABLE: &str = "it could not be written again";
    result.insert(
        "tools".into(),
        serde_json::value::to_raw_value(&kept).map_err(|_| UNWRITABLE)?,
    );
    message.insert(
        "result".into(),
        serde_json::value::to_raw_value(&result).map_err(|_| UNWRITABLE)?,
    );
    serde_json::to_vec(&message)
        .map(Some)
        .map_err(|_| UNWRITABLE)
}

/// Whether the policy lets `asked.principal` call `tool`, one listed tool.
async fn may_call<A: Authorize>(tool: &RawValue, asked: &Asked<A>) -> bool {
    #[derive(serde::Deserialize)]
    struct Named {
        name: Option<Value>,
        annotations: Option<Value>,
    }
    let (name, annotations) = match serde_json::from_str::<Named>(tool.get()) {
        Ok(named) => (
            named.name.and_then(|n| n.as_str().map(str::to_owned)),
            named.annotations,
        ),
        Err(_) => (None, None),
    };
    match name {
        Some(name) => {
            asked.authorize.tool_listed(&name, annotations.as_ref());
            let call = McpOperation::tool_listing(name);
            asked
                .authorize
                .authorize(&asked.principal, &call, &asked.parts)
                .await
                == Decision::Allow
        }
        // A tool whose name cannot be read (missing, not a string, given twice)
        // might still be called by a client that reads it: left out.
        None => false,
    }
}

/// The response body of [`FilterToolsService`]: the inner body untouched, an SSE stream
/// filtered as it flows, or the whole answer, read (and perhaps rewritten).
#[pin_project]
pub struct FilteredBody<B: Body> {
    #[pin]
    kind: Kind<B>,
}

#[pin_project(project = KindProj)]
enum Kind<B: Body> {
    Inner(#[pin] B),
    Stream(Box<SseFilter<B>>),
    Ended {
        bytes: Option<Bytes>,
        trailers: Option<http::HeaderMap>,
    },
}

impl<B: Body> std::fmt::Debug for FilteredBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FilteredBody")
    }
}

impl<B: Body> FilteredBody<B> {
    fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner(body),
        }
    }

    fn stream(stream: SseFilter<B>) -> Self {
        Self {
            kind: Kind::Stream(Box::new(stream)),
        }
    }

    /// The whole body, read to its end.
    fn ended(bytes: Bytes, trailers: Option<http::HeaderMap>) -> Self {
        Self {
            kind: Kind::Ended {
                bytes: (!bytes.is_empty()).then_some(bytes),
                trailers,
            },
        }
    }
}

fn to_bytes<D: Buf>(frame: Frame<D>) -> Frame<Bytes> {
    frame.map_data(|mut d| d.copy_to_bytes(d.remaining()))
}

impl<B: Body> Body for FilteredBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner(body) => body.poll_frame(cx).map(|f| f.map(|f| f.map(to_bytes))),
            KindProj::Stream(stream) => stream.poll_frame(cx),
            KindProj::Ended { bytes, trailers } => crate::body::next_read_frame(bytes, trailers),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner(body) => body.is_end_stream(),
            Kind::Stream(stream) => stream.is_end_stream(),
            Kind::Ended { bytes, trailers } => bytes.is_none() && trailers.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner(body) => body.size_hint(),
            Kind::Stream(_) => SizeHint::default(),
            Kind::Ended { bytes, .. } => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}

// The helpers of the tests below, which the tests of `sse.rs` share.
#[cfg(test)]
pub(super) use tests::{Frames, TOOLS, answer_of, asked, asked_for, filter, text, with_frames};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::McpScopes;
    use crate::principal::TokenKind;
    use http_body_util::{BodyExt, StreamBody};

    pub(in crate::mcp) fn asked_for(scope: &str, target: Target, limit: usize) -> Asked<McpScopes> {
        let claims = serde_json::json!({"sub": "u", "scope": scope});
        let claims = claims.as_object().cloned().unwrap_or_default();
        Asked {
            authorize: Arc::new(McpScopes::new(["read"]).tool("write*", ["write"])),
            principal: Principal::from_claims(TokenKind::Jwt, "https://idp", claims),
            parts: Request::new(()).into_parts().0,
            id: Some(Value::from(5)),
            limit,
            target,
        }
    }

    pub(in crate::mcp) fn asked(scope: &str) -> Asked<McpScopes> {
        asked_for(scope, Target::Answer, DEFAULT_TOOLS_LIST_LIMIT)
    }

    pub(in crate::mcp) type Frames = Vec<Result<Frame<Bytes>, &'static str>>;

    /// A response whose body arrives `chunk` bytes at a time.
    pub(in crate::mcp) fn answer_of(
        content_type: &str,
        body: &str,
        chunk: usize,
    ) -> Response<impl Body<Data = Bytes, Error = &'static str> + Send + 'static> {
        let frames: Frames = body
            .as_bytes()
            .chunks(chunk)
            .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        with_frames(content_type, frames)
    }

    pub(in crate::mcp) fn with_frames(
        content_type: &str,
        frames: Frames,
    ) -> Response<impl Body<Data = Bytes, Error = &'static str> + Send + 'static> {
        let mut response = Response::new(StreamBody::new(tokio_stream::iter(frames)));
        response
            .headers_mut()
            .insert(CONTENT_TYPE, content_type.parse().unwrap());
        response
    }

    /// What the filter answers to `response`.
    pub(in crate::mcp) async fn filter<B>(
        response: Response<B>,
        asked: Asked<McpScopes>,
    ) -> Response<FilteredBody<B>>
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Send,
    {
        match answer(response, asked) {
            Ok(response) => response,
            Err(reading) => reading.await,
        }
    }

    pub(in crate::mcp) async fn text<B: Body>(response: Response<FilteredBody<B>>) -> String
    where
        B::Error: std::fmt::Debug,
    {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    pub(in crate::mcp) const TOOLS: &str = r#"{"jsonrpc":"2.0","id":5,"result":{"tools":[{"name":"read_a","inputSchema":{"properties":{"z":{},"a":{}}}},{"name":"write_b"},{"title":"no name"}],"nextCursor":"c"}}"#;

    #[tokio::test]
    async fn json_answers_are_filtered_whatever_id_they_echo_and_error_answers_pass() {
        let out = text(filter(answer_of("application/json", TOOLS, 5), asked("read")).await).await;
        assert!(!out.contains("write_b") && out.contains("read_a"), "{out}");
        let out =
            text(filter(answer_of("application/json", TOOLS, 5), asked("read write")).await).await;
        assert!(out.contains("write_b"), "{out}");
        // The answer to this POST, even when its id is written another way (1.0 for 1)
        // or is another id altogether.
        for id in ["5.0", "6", "\"5\""] {
            let other = format!(
                r#"{{"jsonrpc":"2.0","id":{id},"result":{{"tools":[{{"name":"write_b"}}]}}}}"#
            );
            let out =
                text(filter(answer_of("application/json", &other, 5), asked("read")).await).await;
            assert!(!out.contains("write_b"), "{id}: {out}");
        }
        // Any declared type is read as JSON: a client may read it so.
        let out = text(filter(answer_of("text/plain", TOOLS, 5), asked("read")).await).await;
        assert!(!out.contains("write_b"), "{out}");
        let error = r#"{"jsonrpc":"2.0","id":5,"error":{"code":-32601,"message":"no"}}"#;
        let out = text(filter(answer_of("application/json", error, 5), asked("read")).await).await;
        assert_eq!(out, error);
    }

    async fn assert_withheld<B>(response: Response<FilteredBody<B>>, why: &str)
    where
        B: Body,
        B::Error: std::fmt::Debug,
    {
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        let out = text(response).await;
        let message: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(message["id"], 5, "{out}");
        assert_eq!(message["error"]["code"], WITHHELD_CODE, "{out}");
        let text = message["error"]["message"].as_str().unwrap();
        assert!(text.contains(why), "{text}");
        assert!(!out.contains("write_b"), "{out}");
    }

    #[tokio::test]
    async fn json_answers_that_cannot_be_read_are_withheld_not_passed_on() {
        let big = asked_for("read", Target::Answer, 64);
        assert_withheld(
            filter(answer_of("application/json", TOOLS, 7), big).await,
            "64-byte",
        )
        .await;
        let cut = with_frames(
            "application/json",
            vec![Ok(Frame::data(Bytes::from(&TOOLS[..40]))), Err("reset")],
        );
        assert_withheld(filter(cut, asked("read")).await, "cut off").await;
        let twice =
            r#"{"jsonrpc":"2.0","id":5,"result":{"tools":[{"name":"write_b"}]},"result":{}}"#;
        let twice = answer_of("application/json", twice, 7);
        assert_withheld(filter(twice, asked("read")).await, "not readable JSON").await;
        let truncated = answer_of("application/json", &TOOLS[..TOOLS.len() - 3], 7);
        assert_withheld(filter(truncated, asked("read")).await, "not readable JSON").await;
        let not_rpc = answer_of("application/json", r#"{"jsonrpc":"2.0","id":5}"#, 7);
        assert_withheld(
            filter(not_rpc, asked("read")).await,
            "not a JSON-RPC answer",
        )
        .await;
        let mut gzip = answer_of("application/json", TOOLS, 7);
        gzip.headers_mut()
            .insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert_withheld(filter(gzip, asked("read")).await, "encoded (gzip)").await;
        let mut sse_gzip = answer_of("text/event-stream", "data: x\n\n", 7);
        sse_gzip
            .headers_mut()
            .insert(CONTENT_ENCODING, HeaderValue::from_static("br"));
        assert_withheld(filter(sse_gzip, asked("read")).await, "encoded (br)").await;
        let mut identity = answer_of("application/json", TOOLS, 7);
        identity
            .headers_mut()
            .insert(CONTENT_ENCODING, HeaderValue::from_static("identity"));
        let out = text(filter(identity, asked("read")).await).await;
        assert!(out.contains("read_a") && !out.contains("write_b"), "{out}");
    }
}
