//! The audit trail: one structured event per request the gatekeeper answered, on its
//! own tracing target, [`TARGET`] (`mcp_gatekeeper::audit`).
//!
//! The event is emitted when the answer's head is ready (for an event stream, when
//! the stream starts), by the outermost layer of the stack: [`OriginLayer`] in a
//! [`ResourceServer`](crate::ResourceServer)'s stack, or [`BearerLayer`] in a stack
//! composed by hand without it. A request whose answer never came (the client went
//! away, the future was dropped) still gets its event, with `decision = "cancelled"`.
//! Its record is allocated only while some subscriber listens at `INFO` (whether that
//! subscriber takes this target is decided by the event's own filtering, as for any
//! event); the [`metrics`](crate::metrics) of a request need no allocation.
//!
//! Route it anywhere with `tracing-subscriber`; this writes the audit trail, and only
//! it, as JSON lines (`examples/mcp_server.rs --audit-log PATH` does the same):
//!
//! ```no_run
//! use tracing_subscriber::{filter::Targets, fmt, prelude::*};
//!
//! let audit_file = std::fs::File::create("audit.jsonl")?;
//! tracing_subscriber::registry()
//!     .with(
//!         fmt::layer()
//!             .json()
//!             .flatten_event(true)
//!             .with_current_span(false)
//!             .with_span_list(false)
//!             .with_writer(std::sync::Mutex::new(audit_file))
//!             .with_filter(Targets::new().with_target(mcp_gatekeeper::audit::TARGET, tracing::Level::INFO)),
//!     )
//!     .init();
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Fields
//!
//! The names and meanings below are stable across releases: fields may be added,
//! never renamed or given another meaning. A field without a value is left out.
//!
//! | field | value |
//! |---|---|
//! | `message` | always `"decision"` |
//! | `time_unix_ms` | when the request arrived, milliseconds since the Unix epoch |
//! | `decision` | `allow` (handed to the service), `reject` (refused by a rule), `metadata` (the RFC 9728 document was served), `preflight` (a CORS preflight was answered), `error` (the service behind returned an error instead of an answer), `cancelled` (no answer: the request was dropped first) |
//! | `status` | the HTTP status of the answer |
//! | `grpc_status` | the `grpc-status` of a gRPC answer (refusals of gRPC requests are HTTP `200`) |
//! | `rule` | for a refusal, the id of the [`Rule`](crate::Rule) that refused it (`R-JWT-2`, …) |
//! | `kind` | for a refusal: `missing_token`, `invalid_request`, `invalid_token`, `insufficient_scope`, `forbidden`, `unavailable`, `misconfigured`, `header_mismatch`, `invalid_dpop_proof`, `use_dpop_nonce`, or `not_found` (a session id of another principal, `R-GW-5`) |
//! | `issuer` | the trusted issuer whose key or endpoint verified the token (also on a refusal after that: an expired token, another audience) |
//! | `subject` | the token's `sub` |
//! | `client_id` | the token's `client_id` (or `azp`, `cid`) |
//! | `http_method` | the request's HTTP method |
//! | `path` | the request's path, never its query |
//! | `mcp_method` | the JSON-RPC method (`tools/call`, …), at most 64 characters, control characters as `?`; present when the stack read the operation, which it does only where a rule needs it (per-tool scopes, public methods, tool filtering, a policy) or the request names it in `Mcp-Method` |
//! | `tool` | what the method names: the tool or prompt (`params.name`), the resource URI (`params.uri`, without user information, query or fragment) or the task (`params.taskId`), shortened the same way |
//! | `key_tier` | what verified the token: `local`, `jwks`, `discovery`, `hmac-secret` (the key's tier; a key source of your own names its own), `cache` (a token verified before), `introspection`, `token-review`; absent for a verifier of your own |
//! | `latency_ms` | from the request's arrival to its answer's head, the service behind included |
//! | `decision_ms` | from the request's arrival to the decision: the refusal, or the moment the request was handed to the service; absent for `cancelled` |
//!
//! Never in an event: the token, a DPoP proof, the value of a header (but `Mcp-Method`
//! and `Mcp-Name`, which are `mcp_method` and `tool` when the body was not read), the
//! query string, a secret, or a refusal's free-text description (the `rule` and
//! `kind` say why). `http_method` is at most 32 characters, `path` 512.
//!
//! [`OriginLayer`]: crate::OriginLayer
//! [`BearerLayer`]: crate::BearerLayer

use std::borrow::Cow;
use std::cell::RefCell;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http::Response;
use http::request::Parts;
use tracing::Span;

use crate::challenge::Refused;
use crate::error::{AuthError, AuthErrorKind};
use crate::principal::Principal;

/// The tracing target of the audit events.
pub const TARGET: &str = "mcp_gatekeeper::audit";

/// What the metrics of a request need, learned without allocating.
#[derive(Clone, Copy, Default)]
struct Note {
    /// Whether a principal was made, by whichever verifier.
    verified: bool,
    /// The configured issuer whose key or endpoint verified the token.
    issuer: Option<&'static str>,
    key_tier: Option<&'static str>,
    /// The `mcp_method` and `tool` labels ([`crate::metrics::OperationLabels`]),
    /// when the operation was read.
    operation: Option<crate::metrics::OperationLabels>,
}

/// What the audit event of a request adds to its [`Note`]; made only when a
/// subscriber listens to [`TARGET`].
struct Detail {
    started: Instant,
    method: Box<str>,
    path: Box<str>,
    principal: Option<Principal>,
    mcp_method: Option<String>,
    tool: Option<String>,
    decided: Option<Instant>,
}

/// The request whose layers run on this thread now.
enum Current {
    /// None: a layer that starts a request owns it.
    Unowned,
    /// Its owner is calling or polling inside: what is learned so far.
    Owned(Note, Option<Detail>),
}

thread_local! {
    static CURRENT: RefCell<Current> = const { RefCell::new(Current::Unowned) };
}

/// A request's span, audit record and metrics, owned by the outermost layer's
/// future ([`WatchedFuture`](crate::WatchedFuture)). Nothing is allocated unless a
/// subscriber listens (to the span, or to the audit target).
pub(crate) struct Watch {
    /// Whether the metrics count this request.
    count: bool,
    finished: bool,
    note: Note,
    traced: Option<Box<Traced>>,
}

/// The span of a request that a subscriber listens to, and its audit detail when one
/// listens to [`TARGET`].
struct Traced {
    span: Span,
    detail: Option<Detail>,
}

/// While alive, the request of a [`Watch`] is current; dropping it takes back what
/// was learned and restores the request before.
pub(crate) struct Entered<'a> {
    note: &'a mut Note,
    detail: Option<&'a mut Option<Detail>>,
    previous: Option<Current>,
    _span: Option<tracing::span::Entered<'a>>,
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        let previous = self.previous.take().unwrap_or(Current::Unowned);
        // `try_with`: at a thread's teardown the slot may be gone; nothing to restore.
        let ours = CURRENT.try_with(|current| current.replace(previous));
        if let Ok(Current::Owned(note, detail)) = ours {
            *self.note = note;
            if let Some(slot) = self.detail.as_deref_mut() {
                *slot = detail;
            }
        }
    }
}

/// The record of a new request, or `None` when an outer layer owns it already.
pub(crate) fn start(parts: &Parts) -> Option<Watch> {
    if CURRENT.with(|current| matches!(*current.borrow(), Current::Owned(..))) {
        return None;
    }
    // Its own target: not this module's, which is the audit trail's.
    let span = tracing::info_span!(
        target: "mcp_gatekeeper",
        "mcp_gatekeeper",
        method = %parts.method,
        path = parts.uri.path(),
        decision = tracing::field::Empty,
        rule = tracing::field::Empty,
        issuer = tracing::field::Empty,
        key_tier = tracing::field::Empty,
        subject = tracing::field::Empty,
    );
    // Whether an audit event could be wanted: some subscriber listens at INFO. Not
    // `tracing::enabled!` for the target: with per-layer filters that call can make
    // a subscriber drop the next event of another layer (tokio-rs/tracing#2519); the
    // event itself, emitted at the end, is filtered as usual.
    let detail = tracing::level_enabled!(tracing::Level::INFO).then(|| Detail {
        started: Instant::now(),
        method: crate::mcp::shorten_to(parts.method.as_str(), 32).into(),
        path: crate::mcp::shorten_to(parts.uri.path(), 512).into(),
        principal: None,
        mcp_method: None,
        tool: None,
        decided: None,
    });
    let traced =
        (!span.is_disabled() || detail.is_some()).then(|| Box::new(Traced { span, detail }));
    Some(Watch {
        count: crate::metrics::on(),
        finished: false,
        note: Note::default(),
        traced,
    })
}

/// Makes the request of `watch` the current one until the guard drops. Its owner
/// enters it while it calls and polls what is inside.
pub(crate) fn enter(watch: &mut Watch) -> Entered<'_> {
    let Watch { note, traced, .. } = watch;
    let (span, mut detail) = match traced.as_deref_mut() {
        Some(Traced { span, detail }) => (Some(&*span), Some(detail)),
        None => (None, None),
    };
    let here = Current::Owned(*note, detail.as_mut().and_then(|d| d.take()));
    let previous = CURRENT.with(|current| current.replace(here));
    Entered {
        note,
        detail,
        previous: Some(previous),
        _span: span.map(Span::enter),
    }
}

impl Watch {
    /// Emits the event of the answer `response`.
    pub(crate) fn answered<B>(mut self, response: &Response<B>) {
        let ending = Ending::of(response);
        if let (Some(traced), "allow") = (&self.traced, ending.decision) {
            traced.span.record("decision", "allow");
        }
        self.finish(&ending);
    }

    /// Emits the event of a request whose service failed.
    pub(crate) fn failed(mut self) {
        self.finish(&Ending::bare("error"));
    }

    fn finish(&mut self, ending: &Ending) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let note = &self.note;
        if self.count {
            crate::metrics::decided(&crate::metrics::Decided {
                decision: ending.decision,
                status: ending.status,
                rule: ending.rule,
                issuer: match (note.issuer, note.verified) {
                    (Some(issuer), _) => issuer,
                    (None, true) => "other",
                    (None, false) => "none",
                },
                operation: note.operation,
            });
        }
        if let Some(detail) = self.traced.as_ref().and_then(|t| t.detail.as_ref()) {
            emit(note, detail, ending);
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.finish(&Ending::bare("cancelled"));
    }
}

/// Tells the current request what `learn` writes, if a layer owns it.
fn learn(learn: impl FnOnce(&mut Note, Option<&mut Detail>)) {
    CURRENT.with(|current| {
        if let Current::Owned(note, detail) = &mut *current.borrow_mut() {
            learn(note, detail.as_mut());
        }
    });
}

/// The token was verified by the configured issuer `issuer` (`label`: the same,
/// interned by [`crate::metrics::intern`]) with `key_tier`. Recorded on the span too.
pub(crate) fn verified(
    issuer: &str,
    label: &'static str,
    key_tier: &'static str,
    subject: Option<&str>,
) {
    let span = Span::current();
    span.record("issuer", issuer);
    span.record("key_tier", key_tier);
    if let Some(subject) = subject {
        span.record("subject", subject);
    }
    learn(|note, _| {
        note.key_tier = Some(key_tier);
        note.issuer = Some(label);
    });
}

/// The request's caller, once verified.
pub(crate) fn principal(principal: &Principal) {
    learn(|note, detail| {
        note.verified = !principal.is_anonymous();
        if let Some(detail) = detail {
            detail.principal = Some(principal.clone());
        }
    });
}

/// The MCP operation read from the request.
pub(crate) fn operation(method: Option<&str>, name: Option<&str>) {
    learn(|note, detail| {
        // An MCP request (not a GET of the event stream, say): counted by its method.
        if method.is_some() {
            note.operation = Some(crate::metrics::OperationLabels::of(method, name));
        }
        if let Some(detail) = detail {
            detail.mcp_method = method.map(|m| crate::mcp::shorten(m).into_owned());
            detail.tool = name.map(|n| crate::mcp::shorten(&without_credentials(n)).into_owned());
        }
    });
}

/// `name` without what a URI may carry besides its identity: the user information
/// (`user:password@`) and the query (`?token=…`), for a resource URI in the trail.
fn without_credentials(name: &str) -> Cow<'_, str> {
    let name = name.split(['?', '#']).next().unwrap_or(name);
    let Some((scheme, rest)) = name.split_once("://") else {
        return Cow::Borrowed(name);
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => Cow::Owned(format!("{scheme}://{}", &rest[at + 1..])),
        None => Cow::Borrowed(name),
    }
}

/// The request was decided now: refused, or handed on after a check that waited.
pub(crate) fn decided() {
    learn(|_, detail| {
        if let Some(detail) = detail {
            detail.decided = Some(Instant::now());
        }
    });
}

/// The request was decided by now, unless a layer said when already: its owner's
/// call is over (a decision made without waiting).
pub(crate) fn decided_by_now() {
    learn(|_, detail| {
        if let Some(detail) = detail {
            detail.decided.get_or_insert_with(Instant::now);
        }
    });
}

/// How a request ended, as its event reports it.
struct Ending {
    decision: &'static str,
    status: Option<u16>,
    grpc_status: Option<u16>,
    rule: Option<&'static str>,
    kind: Option<&'static str>,
}

/// Marks an answer the gatekeeper gave without deciding about a token.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Served {
    /// The RFC 9728 metadata document.
    Metadata,
    /// A CORS preflight.
    Preflight,
}

impl Ending {
    fn bare(decision: &'static str) -> Self {
        Self {
            decision,
            status: None,
            grpc_status: None,
            rule: None,
            kind: None,
        }
    }

    fn of<B>(response: &Response<B>) -> Self {
        let extensions = response.extensions();
        let (decision, rule, kind) = if let Some(error) = extensions.get::<AuthError>() {
            (
                "reject",
                Some(error.rule().id()),
                Some(kind_name(error.kind())),
            )
        } else if let Some(refused) = extensions.get::<Refused>() {
            ("reject", Some(refused.rule.id()), Some(refused.kind))
        } else {
            match extensions.get::<Served>() {
                Some(Served::Metadata) => ("metadata", None, None),
                Some(Served::Preflight) => ("preflight", None, None),
                None => ("allow", None, None),
            }
        };
        // Refusals of gRPC requests are `200` with their status in this header.
        let grpc_status = rule.and_then(|_| {
            let value = response.headers().get("grpc-status")?;
            value.to_str().ok()?.parse().ok()
        });
        Self {
            decision,
            status: Some(response.status().as_u16()),
            grpc_status,
            rule,
            kind,
        }
    }
}

/// The `kind` field of a refusal.
pub(crate) fn kind_name(kind: AuthErrorKind) -> &'static str {
    match kind {
        AuthErrorKind::MissingToken => "missing_token",
        AuthErrorKind::InvalidRequest => "invalid_request",
        AuthErrorKind::InvalidToken => "invalid_token",
        AuthErrorKind::InsufficientScope => "insufficient_scope",
        AuthErrorKind::Forbidden => "forbidden",
        AuthErrorKind::Unavailable => "unavailable",
        AuthErrorKind::Misconfigured => "misconfigured",
        AuthErrorKind::HeaderMismatch => "header_mismatch",
        AuthErrorKind::InvalidDpopProof => "invalid_dpop_proof",
        AuthErrorKind::UseDpopNonce => "use_dpop_nonce",
    }
}

fn emit(note: &Note, detail: &Detail, ending: &Ending) {
    let principal = detail.principal.as_ref().filter(|p| !p.is_anonymous());
    let latency = detail.started.elapsed();
    // A request dropped before its answer may still have been waiting for its decision.
    let decided = detail
        .decided
        .filter(|_| ending.decision != "cancelled")
        .map(|at| at.duration_since(detail.started));
    let time_unix_ms = SystemTime::now()
        .checked_sub(latency)
        .and_then(|arrived| arrived.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    tracing::info!(
        target: TARGET,
        time_unix_ms,
        decision = ending.decision,
        status = ending.status,
        grpc_status = ending.grpc_status,
        rule = ending.rule,
        kind = ending.kind,
        issuer = principal.map(Principal::issuer).or(note.issuer),
        subject = principal.and_then(Principal::subject),
        client_id = principal.and_then(Principal::client_id),
        http_method = &*detail.method,
        path = &*detail.path,
        mcp_method = detail.mcp_method.as_deref(),
        tool = detail.tool.as_deref(),
        key_tier = note.key_tier,
        latency_ms = latency.as_secs_f64() * 1e3,
        decision_ms = decided.map(|d| d.as_secs_f64() * 1e3),
        "decision"
    );
}
