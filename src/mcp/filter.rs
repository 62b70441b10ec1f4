//! [`FilterToolsLayer`]: removes from a `tools/list` answer the tools the caller could
//! not call, so clients do not offer a model tools that will be refused (seed 003's
//! gateway filtered everything away because its policy step failed; here the policy
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

use crate::authorize::{Authorize, Decision};
use crate::principal::Principal;

use super::operation::{McpOperation, OperationSource};

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
    type Service = FilterTools<S, A>;

    fn layer(&self, inner: S) -> Self::Service {
        FilterTools {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`FilterToolsLayer`].
#[derive(Debug)]
pub struct FilterTools<S, A> {
    inner: S,
    layer: FilterToolsLayer<A>,
}

impl<S: Clone, A> Clone for FilterTools<S, A> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

/// Which answers of a request are filtered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// A `tools/list` `POST`: its JSON answer, or the events of its SSE answer.
    Answer,
    /// A `GET` stream (resumed or not): its events.
    Stream,
}

/// What filtering an answer needs to know of its request.
struct Asked<A> {
    authorize: Arc<A>,
    principal: Principal,
    parts: Parts,
    id: Option<Value>,
    limit: usize,
    target: Target,
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

impl<S, A, ReqBody, ResBody> Service<Request<ReqBody>> for FilterTools<S, A>
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

/// The response future of [`FilterTools`].
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

fn withheld_message(id: Option<&Value>, reason: &str) -> String {
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
async fn filter_result<A: Authorize>(
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
        #[derive(serde::Deserialize)]
        struct Named {
            name: Option<Value>,
        }
        let name = serde_json::from_str::<Named>(tool.get())
            .ok()
            .and_then(|t| t.name)
            .and_then(|n| n.as_str().map(str::to_owned));
        let allowed = match name {
            Some(name) => {
                let call = McpOperation::tool_call(name);
                asked
                    .authorize
                    .authorize(&asked.principal, &call, &asked.parts)
                    .await
                    == Decision::Allow
            }
            // A tool whose name cannot be read (missing, not a string, given twice)
            // might still be called by a client that reads it: left out.
            None => false,
        };
        if allowed {
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

/// The lines of an SSE event (any of CRLF, LF, CR ends a line).
fn lines(event: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = event;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = rest
            .iter()
            .position(|&b| b == b'\n' || b == b'\r')
            .unwrap_or(rest.len());
        let line = &rest[..end];
        let mut skip = end;
        if rest.get(end) == Some(&b'\r') && rest.get(end + 1) == Some(&b'\n') {
            skip += 2;
        } else if end < rest.len() {
            skip += 1;
        }
        rest = &rest[skip..];
        Some(line)
    })
}

/// The data of an SSE event: its `data` lines joined by newlines.
fn event_data(event: &[u8]) -> Vec<u8> {
    let mut data = Vec::new();
    let mut first = true;
    for line in lines(event) {
        let value = match line.strip_prefix(b"data") {
            Some(v) if v.is_empty() => v,
            Some(v) if v[0] == b':' => v[1..].strip_prefix(b" ").unwrap_or(&v[1..]),
            _ => continue,
        };
        if !first {
            data.push(b'\n');
        }
        first = false;
        data.extend_from_slice(value);
    }
    data
}

/// What an event's data is, to the filter.
#[derive(Debug, PartialEq, Eq)]
enum EventData {
    /// A JSON-RPC answer whose result has a `tools` member: filtered.
    Tools,
    /// Anything else readable, or no JSON at all (a comment, a priming event): passed.
    Other,
    /// A JSON object the filter cannot read (invalid UTF-8, a member twice): it might
    /// list tools to a client that reads it, so it is withheld.
    Unreadable,
}

/// Reads an event's data far enough to know whether it lists tools.
fn classify(data: &[u8]) -> EventData {
    #[derive(serde::Deserialize)]
    struct Answer<'a> {
        #[serde(borrow)]
        result: Option<&'a RawValue>,
    }
    #[derive(serde::Deserialize)]
    struct Listing<'a> {
        #[serde(borrow)]
        tools: Option<&'a RawValue>,
    }
    let first = data.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        // A batch: a client may read the answers in it; this filter does not.
        return EventData::Unreadable;
    }
    let object = first == Some(&b'{');
    let Ok(answer) = serde_json::from_slice::<Answer<'_>>(data) else {
        return match object {
            true => EventData::Unreadable,
            false => EventData::Other,
        };
    };
    let Some(result) = answer.result else {
        return EventData::Other;
    };
    match serde_json::from_str::<Listing<'_>>(result.get()) {
        Ok(Listing { tools: Some(_) }) => EventData::Tools,
        Ok(Listing { tools: None }) => EventData::Other,
        // A result that is not an object cannot list tools; one that is but does not
        // read (a member twice) might.
        Err(_) if result.get().starts_with('{') => EventData::Unreadable,
        Err(_) => EventData::Other,
    }
}

/// `event` with its data replaced by `data` (its other fields kept, in order).
fn rewrite_event(event: &[u8], data: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(event.len());
    for line in lines(event) {
        if !line.starts_with(b"data") && !line.is_empty() {
            out.extend_from_slice(line);
            out.extend_from_slice(b"\n");
        }
    }
    // One data line per line: kept tools are copied as they were, newlines and all.
    for line in lines(data) {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line);
        out.extend_from_slice(b"\n");
    }
    out.extend_from_slice(b"\n");
    out.freeze()
}

/// The length of the first complete event in `buf` (up to and including the blank
/// line that ends it), if there is one.
fn event_len(buf: &[u8]) -> Option<usize> {
    let mut at = 0;
    let mut line_start = 0;
    while at < buf.len() {
        let newline = match buf[at] {
            b'\n' => 1,
            b'\r' if buf.get(at + 1) == Some(&b'\n') => 2,
            b'\r' if at + 1 < buf.len() => 1,
            b'\r' => return None, // a CR at the end may be half of a CRLF
            _ => {
                at += 1;
                continue;
            }
        };
        if at == line_start {
            return Some(at + newline);
        }
        at += newline;
        line_start = at;
    }
    None
}

type Filtered = Pin<Box<dyn Future<Output = Result<Option<Vec<u8>>, &'static str>> + Send>>;

/// Filters the `tools` result of one event's data; `A` erased so the body type has
/// none.
type EventFilter = Arc<dyn Fn(Vec<u8>) -> Filtered + Send + Sync>;

/// An SSE stream filtered event by event as it flows: events pass on whole, once
/// complete; one that lists tools is filtered first; one the filter cannot read ends
/// the stream with a JSON-RPC error event in its place.
struct SseFilter<B> {
    body: Option<Pin<Box<B>>>,
    buf: BytesMut,
    /// Where in `buf` the next scan for the end of an event starts: the start of a
    /// line, before which no event ends.
    scanned: usize,
    filtering: Option<(Bytes, Filtered)>,
    filter: EventFilter,
    trailers: Option<http::HeaderMap>,
    id: Option<Value>,
    limit: usize,
    /// Whether the start of the stream was checked for a byte order mark, which SSE
    /// clients drop (and which would hide the first line's field name from a scan).
    started: bool,
}

/// The UTF-8 byte order mark.
const BOM: &[u8] = b"\xEF\xBB\xBF";

impl<B: Body> SseFilter<B> {
    fn new<A: Authorize>(body: B, asked: Arc<Asked<A>>) -> Self {
        let id = match asked.target {
            Target::Answer => asked.id.clone(),
            Target::Stream => None,
        };
        let limit = asked.limit;
        let filter: EventFilter = Arc::new(move |data: Vec<u8>| {
            let asked = asked.clone();
            Box::pin(async move { filter_result(&data, &asked).await })
        });
        Self {
            body: Some(Box::pin(body)),
            buf: BytesMut::new(),
            scanned: 0,
            filtering: None,
            filter,
            trailers: None,
            id,
            limit,
            started: false,
        }
    }

    /// Ends the stream with an error event in place of what could not be filtered.
    fn fail(&mut self, reason: &str) -> Bytes {
        tracing::warn!(
            reason,
            "tools/list event withheld: it could not be filtered"
        );
        self.body = None;
        self.buf.clear();
        self.scanned = 0;
        let message = withheld_message(self.id.as_ref(), reason);
        Bytes::from(format!("event: message\ndata: {message}\n\n"))
    }

    /// The next complete event of `buf`, if any, or what is left when the body ended.
    fn next_event(&mut self) -> Option<Bytes> {
        if !self.started {
            let known = self.buf.len().min(BOM.len());
            if self.body.is_some() && self.buf[..known] == BOM[..known] && known < BOM.len() {
                return None; // perhaps the start of a byte order mark: wait
            }
            if self.buf.starts_with(BOM) {
                self.buf.advance(BOM.len());
            }
            self.started = true;
        }
        match event_len(&self.buf[self.scanned..]) {
            Some(len) => {
                let event = self.buf.split_to(self.scanned + len).freeze();
                self.scanned = 0;
                Some(event)
            }
            None if self.body.is_none() && !self.buf.is_empty() => {
                self.scanned = 0;
                Some(self.buf.split().freeze())
            }
            None => {
                // The next scan starts at the start of a line: after the last LF (a
                // line that ends in CR alone is scanned again, as its LF may follow).
                self.scanned = self
                    .buf
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |at| at + 1);
                None
            }
        }
    }

    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        loop {
            if let Some((event, future)) = self.filtering.as_mut() {
                let result = std::task::ready!(future.as_mut().poll(cx));
                let event = std::mem::take(event);
                self.filtering = None;
                let bytes = match result {
                    Ok(Some(filtered)) => rewrite_event(&event, &filtered),
                    Ok(None) => event,
                    Err(reason) => self.fail(reason),
                };
                return Poll::Ready(Some(Ok(Frame::data(bytes))));
            }
            if let Some(event) = self.next_event() {
                let data = event_data(&event);
                let bytes = match classify(&data) {
                    EventData::Tools => {
                        self.filtering = Some((event, (self.filter)(data)));
                        continue;
                    }
                    EventData::Other => event,
                    EventData::Unreadable => self.fail("an event in it is not readable JSON"),
                };
                return Poll::Ready(Some(Ok(Frame::data(bytes))));
            }
            let Some(body) = self.body.as_mut() else {
                return Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))));
            };
            if self.buf.len() > self.limit {
                let reason = format!(
                    "an event is larger than the {}-byte filter limit",
                    self.limit
                );
                return Poll::Ready(Some(Ok(Frame::data(self.fail(&reason)))));
            }
            match std::task::ready!(body.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(mut data) => self.buf.put(data.copy_to_bytes(data.remaining())),
                    Err(frame) => self.trailers = frame.into_trailers().ok(),
                },
                Some(Err(error)) => {
                    // What was read of an unfinished event is dropped, not passed on.
                    self.body = None;
                    self.buf.clear();
                    self.scanned = 0;
                    return Poll::Ready(Some(Err(error)));
                }
                None => self.body = None,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_none()
            && self.buf.is_empty()
            && self.filtering.is_none()
            && self.trailers.is_none()
    }
}

/// The response body of [`FilterTools`]: the inner body untouched, an SSE stream
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
            KindProj::Ended { bytes, trailers } => Poll::Ready(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::McpScopes;
    use crate::principal::TokenKind;
    use http_body_util::{BodyExt, StreamBody};

    fn asked_for(scope: &str, target: Target, limit: usize) -> Asked<McpScopes> {
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

    fn asked(scope: &str) -> Asked<McpScopes> {
        asked_for(scope, Target::Answer, DEFAULT_TOOLS_LIST_LIMIT)
    }

    type Frames = Vec<Result<Frame<Bytes>, &'static str>>;

    /// A response whose body arrives `chunk` bytes at a time.
    fn answer_of(
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

    fn with_frames(
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
    async fn filter<B>(response: Response<B>, asked: Asked<McpScopes>) -> Response<FilteredBody<B>>
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

    /// `stream`, arriving `chunk` bytes at a time, as filtered for a `read` caller.
    async fn sse_for_read(stream: &str, chunk: usize) -> String {
        text(filter(answer_of("text/event-stream", stream, chunk), asked("read")).await).await
    }

    async fn text<B: Body>(response: Response<FilteredBody<B>>) -> String
    where
        B::Error: std::fmt::Debug,
    {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    const TOOLS: &str = r#"{"jsonrpc":"2.0","id":5,"result":{"tools":[{"name":"read_a","inputSchema":{"properties":{"z":{},"a":{}}}},{"name":"write_b"},{"title":"no name"}],"nextCursor":"c"}}"#;

    #[tokio::test]
    async fn sse_answers_split_into_tiny_chunks_are_filtered_and_framed() {
        let stream = format!(
            "id: 0\r\nretry: 3000\r\ndata:\r\n\r\nevent: message\r\nid: 1\r\ndata: {TOOLS}\r\n\r\n: bye\r\n\r\n"
        );
        for chunk in [1, 3, 7, 64, 4096] {
            let out = sse_for_read(&stream, chunk).await;
            assert!(
                out.starts_with("id: 0\r\nretry: 3000\r\ndata:\r\n\r\n"),
                "{out}"
            );
            assert!(out.ends_with(": bye\r\n\r\n"), "{out}");
            let event = out.split("event: message").nth(1).unwrap();
            assert!(event.starts_with("\nid: 1\ndata: {"), "{event}");
            assert!(
                !event.contains("write_b") && event.contains("read_a"),
                "{event}"
            );
            // Kept tools are copied as they were: member order survives.
            assert!(
                event.contains(r#"{"properties":{"z":{},"a":{}}}"#),
                "{event}"
            );
            // A tool whose name cannot be read is left out; the rest of the result stays.
            assert!(
                !event.contains("no name") && event.contains("nextCursor"),
                "{event}"
            );
        }
    }

    #[tokio::test]
    async fn kept_tools_with_newlines_stay_inside_their_event() {
        // A pretty-printed answer: its newlines become one data line each.
        let pretty = "{\n  \"jsonrpc\": \"2.0\", \"id\": 5,\n  \"result\": {\"tools\": [\n    {\"name\": \"read_a\",\n\n \"x\": 1},\n    {\"name\": \"write_b\"}\n  ]}\n}";
        let data: String = pretty.lines().map(|l| format!("data: {l}\n")).collect();
        let stream = format!("{data}\nid: 9\ndata: {{}}\n\n");
        let out =
            text(filter(answer_of("text/event-stream", &stream, 4), asked("read")).await).await;
        let events: Vec<&str> = out.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert_eq!(events.len(), 2, "{out}");
        let kept = event_data(events[0].as_bytes());
        let kept: Value = serde_json::from_slice(&kept).unwrap();
        assert_eq!(
            kept["result"]["tools"].as_array().unwrap().len(),
            1,
            "{out}"
        );
        assert_eq!(kept["result"]["tools"][0]["x"], 1);
        assert_eq!(events[1], "id: 9\ndata: {}");
    }

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

    #[tokio::test]
    async fn every_event_listing_tools_is_filtered_in_a_resumed_stream() {
        let other_id = TOOLS.replace("\"id\":5", "\"id\":1.0");
        let stream = format!(
            "id: 7\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}}\n\n\
             id: 8\ndata: {other_id}\n\nid: 9\ndata: {TOOLS}\n\ndata: not json\n\n"
        );
        let resumed = asked_for("read", Target::Stream, DEFAULT_TOOLS_LIST_LIMIT);
        let out = text(filter(answer_of("text/event-stream", &stream, 3), resumed).await).await;
        assert!(!out.contains("write_b"), "{out}");
        assert_eq!(out.matches("read_a").count(), 2, "{out}");
        assert!(
            out.starts_with("id: 7\ndata: {\"jsonrpc\":\"2.0\",\"method\""),
            "{out}"
        );
        assert!(out.ends_with("data: not json\n\n"), "{out}");
        // A GET whose answer is not a stream is not the filter's.
        let plain = asked_for("read", Target::Stream, DEFAULT_TOOLS_LIST_LIMIT);
        let out = text(filter(answer_of("application/json", TOOLS, 3), plain).await).await;
        assert_eq!(out, TOOLS);
    }

    #[tokio::test]
    async fn an_event_the_filter_cannot_read_ends_the_stream_with_an_error_in_its_place() {
        let stream = format!("id: 1\ndata: {{}}\n\nid: 2\ndata: {TOOLS}\n\nid: 3\ndata: {{}}\n\n");
        let small = asked_for("read", Target::Answer, 100);
        let out = text(filter(answer_of("text/event-stream", &stream, 9), small).await).await;
        assert!(out.starts_with("id: 1\ndata: {}\n\n"), "{out}");
        assert!(!out.contains("write_b") && !out.contains("read_a"), "{out}");
        assert!(
            out.contains("100-byte filter limit") && out.contains(r#""id":5"#),
            "{out}"
        );
        assert!(!out.contains("id: 3"), "the stream ends there: {out}");
        // A tools result that is not a list.
        let odd = "data: {\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{\"tools\":{\"name\":\"write_b\"}}}\n\n";
        let out = text(filter(answer_of("text/event-stream", odd, 9), asked("read")).await).await;
        assert!(
            out.contains("not a list") && !out.contains("write_b"),
            "{out}"
        );
        // Cut off in the middle of the tools event: nothing of it is passed on.
        let frames: Frames = vec![
            Ok(Frame::data(Bytes::from("id: 1\ndata: {}\n\n"))),
            Ok(Frame::data(Bytes::from(format!("data: {}", &TOOLS[..60])))),
            Err("reset"),
        ];
        let response = filter(with_frames("text/event-stream", frames), asked("read")).await;
        let mut body = response.into_body();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first, "id: 1\ndata: {}\n\n");
        assert_eq!(body.frame().await.unwrap().unwrap_err(), "reset");
        assert!(body.frame().await.is_none());
    }

    #[tokio::test]
    async fn a_byte_order_mark_cannot_hide_the_first_event_from_the_filter() {
        let stream = format!("\u{FEFF}data: {TOOLS}\n\n");
        for chunk in [1, 2, 3, 4, 4096] {
            let out = sse_for_read(&stream, chunk).await;
            assert!(
                out.contains("read_a") && !out.contains("write_b"),
                "{chunk}: {out}"
            );
        }
    }

    #[test]
    fn events_end_at_a_blank_line_with_any_line_ending() {
        assert_eq!(event_len(b"data: x\n\nrest"), Some(9));
        assert_eq!(event_len(b"data: x\r\n\r\n"), Some(11));
        assert_eq!(event_len(b"data: x\r\rdata"), Some(9));
        assert_eq!(event_len(b"data: x\n"), None);
        assert_eq!(event_len(b"data: x\r\n\r"), None);
        assert_eq!(event_len(b"\n"), Some(1));
    }

    #[test]
    fn event_data_joins_data_lines_and_tools_results_are_recognised() {
        let event = b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":2,\ndata: \"result\":{\"tools\":[]}}\n\n";
        let data = event_data(event);
        assert_eq!(
            classify(&data),
            EventData::Tools,
            "{}",
            String::from_utf8_lossy(&data)
        );
        assert_eq!(
            classify(br#"{"jsonrpc":"2.0","id":2,"result":{}}"#),
            EventData::Other
        );
        let changed = br#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#;
        assert_eq!(classify(changed), EventData::Other);
        let odd = br#"{"jsonrpc":"2.0","id":2,"result":{"tools":7}}"#;
        assert_eq!(classify(odd), EventData::Tools);
        assert_eq!(classify(b"ping"), EventData::Other);
        assert_eq!(classify(b""), EventData::Other);
        for unreadable in [
            &br#"{"jsonrpc":"2.0","id":2,"result":{"tools":[]},"result":{"tools":[]}}"#[..],
            br#"{"jsonrpc":"2.0","id":2,"result":{"tools":[],"tools":[]}}"#,
            br#"[{"jsonrpc":"2.0","id":2,"result":{"tools":[]}}]"#,
            b"{\"jsonrpc\":\"2.0\",\"result\":{\"tools\":[\"\xff\"]}}",
        ] {
            let shown = String::from_utf8_lossy(unreadable);
            assert_eq!(classify(unreadable), EventData::Unreadable, "{shown}");
        }
    }
}
