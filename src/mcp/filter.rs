//! [`FilterToolsLayer`]: removes from a `tools/list` answer the tools the caller could
//! not call, so clients do not offer a model tools that will be refused (seed 003's
//! gateway filtered everything away because its policy step failed; here the policy
//! that filters is the one that decides calls).
//!
//! A tool is kept when the authorization policy allows `tools/call` of it for this
//! caller. Plain JSON answers and SSE-framed answers are both rewritten; the rest of
//! an SSE stream passes through untouched. Filtering is presentation, not
//! enforcement: calls are still decided one by one, and an answer too large to
//! filter is passed on unchanged (and logged).

use std::collections::BTreeMap;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::request::Parts;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use pin_project::pin_project;
use serde_json::Value;
use serde_json::value::RawValue;
use tower::{Layer, Service};

use crate::authorize::{Authorize, Decision};
use crate::principal::Principal;

use super::operation::{McpOperation, OperationSource};

/// The largest `tools/list` answer filtered, by default (16 MiB).
pub const DEFAULT_TOOLS_LIST_LIMIT: usize = 16 * 1024 * 1024;

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

    /// The largest answer filtered; a larger one passes unchanged.
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

/// What filtering an answer needs to know of its request.
struct Asked<A> {
    authorize: Arc<A>,
    principal: Principal,
    parts: Parts,
    id: Option<Value>,
    limit: usize,
}

impl<A> Asked<A> {
    fn of<B>(layer: &FilterToolsLayer<A>, req: &Request<B>) -> Option<Self>
    where
        A: Authorize,
    {
        let authorize = layer.authorize.as_ref()?;
        let operation = req.extensions().get::<McpOperation>()?;
        if !operation.is("tools/list") || operation.source() != OperationSource::Body {
            return None;
        }
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

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let asked = Asked::of(&self.layer, &req).map(Box::new);
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
                        Some(asked) if response.status() == StatusCode::OK => {
                            Box::pin(filter(response, *asked))
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

/// Reads the answer until the `tools/list` result is in hand, filters it, and hands
/// on the rest of the answer untouched.
async fn filter<A, B>(response: Response<B>, asked: Asked<A>) -> Response<FilteredBody<B>>
where
    A: Authorize,
    B: Body + Send + 'static,
{
    let (mut parts, body) = response.into_parts();
    let sse = match content_type(&parts) {
        Some(t) if t.eq_ignore_ascii_case("text/event-stream") => true,
        Some(t) if t.eq_ignore_ascii_case("application/json") => false,
        _ => return Response::from_parts(parts, FilteredBody::inner(body)),
    };
    let mut body = Box::pin(body);
    let mut buf = BytesMut::new();
    let mut scanned = 0;
    let mut trailers = None;
    let found = loop {
        match poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => buf.put(data),
                Err(frame) => trailers = frame.into_trailers().ok(),
            },
            Some(Err(error)) => {
                let failed = FilteredBody::failed(buf.freeze(), error);
                return Response::from_parts(parts, failed);
            }
            None if sse => break None,
            None => break Some((0, buf.len(), buf.to_vec())),
        }
        if sse && let Some(event) = next_response_event(&buf, &mut scanned, asked.id.as_ref()) {
            break Some(event);
        }
        if buf.len() > asked.limit {
            tracing::warn!(
                limit = asked.limit,
                "tools/list answer larger than the filter limit, passed on unfiltered"
            );
            let prefixed = FilteredBody::prefixed(buf.freeze(), body);
            return Response::from_parts(parts, prefixed);
        }
    };
    // Past here the body may have ended (always for JSON); it is not polled again.
    let ended = !sse || found.is_none();
    let rest = (!ended).then_some(body);
    let Some((start, end, data)) = found else {
        let whole = FilteredBody::ended(buf.freeze(), trailers);
        return Response::from_parts(parts, whole);
    };
    let Some(filtered) = filter_result(&data, &asked).await else {
        let unchanged = match rest {
            Some(rest) => FilteredBody::prefixed(buf.freeze(), rest),
            None => FilteredBody::ended(buf.freeze(), trailers),
        };
        return Response::from_parts(parts, unchanged);
    };
    let mut out = BytesMut::with_capacity(buf.len());
    out.extend_from_slice(&buf[..start]);
    if sse {
        for line in lines(&buf[start..end]) {
            if !line.starts_with(b"data") && !line.is_empty() {
                out.extend_from_slice(line);
                out.extend_from_slice(b"\n");
            }
        }
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&filtered);
        out.extend_from_slice(b"\n\n");
    } else {
        out.extend_from_slice(&filtered);
    }
    out.extend_from_slice(&buf[end..]);
    parts.headers.remove(CONTENT_LENGTH);
    let rewritten = match rest {
        Some(rest) => FilteredBody::prefixed(out.freeze(), rest),
        None => FilteredBody::ended(out.freeze(), trailers),
    };
    Response::from_parts(parts, rewritten)
}

/// The tools/list result in `data`, without the tools `asked.principal` may not call;
/// `None` when `data` is not that result (it is then passed on as it was). The tools
/// kept are copied byte for byte, so their schemas keep their member order.
async fn filter_result<A: Authorize>(data: &[u8], asked: &Asked<A>) -> Option<Vec<u8>> {
    type Object = BTreeMap<String, Box<RawValue>>;
    let mut message: Object = serde_json::from_slice(data).ok()?;
    if let Some(id) = &asked.id {
        let answered: Value = serde_json::from_str(message.get("id")?.get()).ok()?;
        if &answered != id {
            return None;
        }
    }
    let mut result: Object = serde_json::from_str(message.get("result")?.get()).ok()?;
    let listed: Vec<Box<RawValue>> = serde_json::from_str(result.get("tools")?.get()).ok()?;
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
            None => true, // not a callable tool; not this filter's to judge
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
    result.insert("tools".into(), serde_json::value::to_raw_value(&kept).ok()?);
    message.insert(
        "result".into(),
        serde_json::value::to_raw_value(&result).ok()?,
    );
    serde_json::to_vec(&message).ok()
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

/// Scans complete SSE events in `buf` from `*scanned` on; returns the byte range and
/// data of the first one that is the JSON-RPC answer to `id`.
fn next_response_event(
    buf: &[u8],
    scanned: &mut usize,
    id: Option<&Value>,
) -> Option<(usize, usize, Vec<u8>)> {
    while let Some(len) = event_len(&buf[*scanned..]) {
        let (start, end) = (*scanned, *scanned + len);
        *scanned = end;
        let mut data = Vec::new();
        for line in lines(&buf[start..end]) {
            let value = match line.strip_prefix(b"data") {
                Some(v) if v.is_empty() => v,
                Some(v) if v[0] == b':' => v[1..].strip_prefix(b" ").unwrap_or(&v[1..]),
                _ => continue,
            };
            if !data.is_empty() {
                data.push(b'\n');
            }
            data.extend_from_slice(value);
        }
        let Ok(message) = serde_json::from_slice::<Value>(&data) else {
            continue;
        };
        let answers = message.get("result").is_some() || message.get("error").is_some();
        if answers && (id.is_none() || message.get("id") == id) {
            return Some((start, end, data));
        }
    }
    None
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

/// The response body of [`FilterTools`]: the inner body untouched, or bytes already
/// read (perhaps rewritten) followed by the rest of the inner body.
#[pin_project]
pub struct FilteredBody<B: Body> {
    #[pin]
    kind: Kind<B>,
}

#[pin_project(project = KindProj)]
enum Kind<B: Body> {
    Inner(#[pin] B),
    Prefixed {
        prefix: Option<Bytes>,
        rest: Pin<Box<B>>,
    },
    Ended {
        bytes: Option<Bytes>,
        trailers: Option<http::HeaderMap>,
    },
    Failed {
        prefix: Option<Bytes>,
        error: Option<B::Error>,
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

    fn prefixed(prefix: Bytes, rest: Pin<Box<B>>) -> Self {
        Self {
            kind: Kind::Prefixed {
                prefix: (!prefix.is_empty()).then_some(prefix),
                rest,
            },
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

    fn failed(prefix: Bytes, error: B::Error) -> Self {
        Self {
            kind: Kind::Failed {
                prefix: (!prefix.is_empty()).then_some(prefix),
                error: Some(error),
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
            KindProj::Prefixed { prefix, rest } => match prefix.take() {
                Some(bytes) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
                None => rest
                    .as_mut()
                    .poll_frame(cx)
                    .map(|f| f.map(|f| f.map(to_bytes))),
            },
            KindProj::Ended { bytes, trailers } => Poll::Ready(
                bytes
                    .take()
                    .map(Frame::data)
                    .or_else(|| trailers.take().map(Frame::trailers))
                    .map(Ok),
            ),
            KindProj::Failed { prefix, error } => match prefix.take() {
                Some(bytes) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
                None => Poll::Ready(error.take().map(Err)),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner(body) => body.is_end_stream(),
            Kind::Prefixed { prefix, rest } => prefix.is_none() && rest.is_end_stream(),
            Kind::Ended { bytes, trailers } => bytes.is_none() && trailers.is_none(),
            Kind::Failed { prefix, error } => prefix.is_none() && error.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner(body) => body.size_hint(),
            Kind::Prefixed { prefix, rest } => {
                let extra = prefix.as_ref().map_or(0, |p| p.len() as u64);
                let inner = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower() + extra);
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper + extra);
                }
                hint
            }
            Kind::Ended { bytes, .. } => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Kind::Failed { .. } => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::McpScopes;
    use crate::principal::TokenKind;
    use http_body_util::{BodyExt, StreamBody};

    fn asked(scope: &str) -> Asked<McpScopes> {
        let claims = serde_json::json!({"sub": "u", "scope": scope});
        let claims = claims.as_object().cloned().unwrap_or_default();
        Asked {
            authorize: Arc::new(McpScopes::new(["read"]).tool("write*", ["write"])),
            principal: Principal::from_claims(TokenKind::Jwt, "https://idp", claims),
            parts: Request::new(()).into_parts().0,
            id: Some(Value::from(5)),
            limit: DEFAULT_TOOLS_LIST_LIMIT,
        }
    }

    /// A response whose body arrives `chunk` bytes at a time.
    fn answer(
        content_type: &str,
        body: &str,
        chunk: usize,
    ) -> Response<impl Body<Data = Bytes, Error = std::convert::Infallible> + Send + 'static> {
        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = body
            .as_bytes()
            .chunks(chunk)
            .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        let mut response = Response::new(StreamBody::new(tokio_stream::iter(frames)));
        response
            .headers_mut()
            .insert(CONTENT_TYPE, content_type.parse().unwrap());
        response
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
            let out =
                text(filter(answer("text/event-stream", &stream, chunk), asked("read")).await)
                    .await;
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
            assert!(
                event.contains("no name") && event.contains("nextCursor"),
                "{event}"
            );
        }
    }

    #[tokio::test]
    async fn json_answers_are_filtered_and_other_answers_pass_unchanged() {
        let out = text(filter(answer("application/json", TOOLS, 5), asked("read")).await).await;
        assert!(!out.contains("write_b") && out.contains("read_a"), "{out}");
        let out =
            text(filter(answer("application/json", TOOLS, 5), asked("read write")).await).await;
        assert!(out.contains("write_b"), "{out}");
        let other = r#"{"jsonrpc":"2.0","id":6,"result":{"tools":[{"name":"write_b"}]}}"#;
        let out = text(filter(answer("application/json", other, 5), asked("read")).await).await;
        assert_eq!(out, other, "an answer to another request is not touched");
        let out = text(filter(answer("text/plain", TOOLS, 5), asked("read")).await).await;
        assert_eq!(out, TOOLS);
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
    fn the_answer_event_is_found_by_id_among_others() {
        let stream = b"id: 0\nretry: 3000\ndata:\n\n\
            data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n\
            event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":2,\ndata: \"result\":{\"tools\":[]}}\n\n";
        let mut scanned = 0;
        let (start, end, data) =
            next_response_event(stream, &mut scanned, Some(&Value::from(2))).unwrap();
        assert_eq!(&stream[end..], b"");
        assert!(stream[start..].starts_with(b"event: message"));
        let message: Value = serde_json::from_slice(&data).unwrap();
        assert_eq!(message["id"], 2);
        let mut scanned = 0;
        assert!(next_response_event(stream, &mut scanned, Some(&Value::from(3))).is_none());
        assert_eq!(scanned, stream.len());
    }
}
