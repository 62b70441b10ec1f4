//! Streaming answers filtered as they flow: the Server-Sent Events side of the
//! [`FilterToolsLayer`](crate::FilterToolsLayer).
//!
//! An SSE stream (`text/event-stream`: the answer to a `POST`, or a `GET` stream,
//! resumed or not) is a series of events, each a few `field: value` lines ended by a
//! blank line (CRLF, LF or CR ends a line). [`SseFilter`] reads the stream as it
//! arrives and passes each event on whole: once its blank line has come, or when the
//! stream ends. It reads an event as SSE clients do: its data is its `data` lines
//! joined by newlines, and a byte order mark at the start of the stream is dropped.
//!
//! - An event whose data is a JSON-RPC answer with a `tools` member in its result is
//!   filtered by the policy and passed on with its `data` lines rewritten (its other
//!   fields kept, in order).
//! - Any other readable event, and one whose data is not JSON at all (a comment, a
//!   priming event), passes on as it came.
//!
//! It fails closed: an event it cannot read (a JSON object that does not parse, a
//! member twice, a batch, `tools` that are not a list, an event over the limit) might
//! list tools to a client that reads it, so it is not passed on. The stream ends there,
//! with a JSON-RPC error event in its place, and nothing after it is read. A stream cut
//! off mid-event ends with the body's error; what was read of that event is dropped.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http_body::{Body, Frame};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::authorize::Authorize;

use super::filter::{Asked, Target, filter_result, withheld_message};

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
pub(super) enum EventData {
    /// A JSON-RPC answer whose result has a `tools` member: filtered.
    Tools,
    /// Anything else readable, or no JSON at all (a comment, a priming event): passed.
    Other,
    /// A JSON object the filter cannot read (invalid UTF-8, a member twice): it might
    /// list tools to a client that reads it, so it is withheld.
    Unreadable,
}

/// Reads an event's data far enough to know whether it lists tools.
pub(super) fn classify(data: &[u8]) -> EventData {
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
pub(super) struct SseFilter<B> {
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
    pub(super) fn new<A: Authorize>(body: B, asked: Arc<Asked<A>>) -> Self {
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

    pub(super) fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
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

    pub(super) fn is_end_stream(&self) -> bool {
        self.body.is_none()
            && self.buf.is_empty()
            && self.filtering.is_none()
            && self.trailers.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::filter::{
        DEFAULT_TOOLS_LIST_LIMIT, Frames, TOOLS, answer_of, asked, asked_for, filter, text,
        with_frames,
    };
    use http_body_util::BodyExt;

    /// `stream`, arriving `chunk` bytes at a time, as filtered for a `read` caller.
    async fn sse_for_read(stream: &str, chunk: usize) -> String {
        text(filter(answer_of("text/event-stream", stream, chunk), asked("read")).await).await
    }

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
