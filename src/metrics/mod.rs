//! Metrics, through the [`metrics`](https://docs.rs/metrics) facade (feature
//! `metrics`, on by default): install a recorder (an exporter such as
//! `metrics-exporter-prometheus`), then call [`enable`] once. Until then nothing is
//! recorded, and each place that would record costs one atomic load.
//!
//! ```no_run
//! # fn install_your_recorder() {}
//! install_your_recorder(); // e.g. PrometheusBuilder::new().install_recorder()
//! mcp_gatekeeper::metrics::enable();
//! ```
//!
//! Every label has a bounded set of values: no subject, client id, token, path or key
//! id is ever a label, and a tool's name is one only for the tools named in
//! [`enable_with_tools`]. Issuers are those the configuration trusts.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `mcp_gatekeeper_decisions_total` | counter | `decision` (as in [`crate::audit`]), `status` (HTTP status, or `none`), `rule` (the refusing [`Rule`](crate::Rule)'s id, or `none`), `issuer` (the trusted issuer whose key or endpoint verified the token, also when the request was refused after that, e.g. for an expired token; `other` for a verifier of your own; `none` when no issuer verified it) |
//! | `mcp_gatekeeper_mcp_requests_total` | counter | `mcp_method` (a method of the MCP specification, or `other`), `tool` (a tool named in [`enable_with_tools`], `other`, or `none` for a method that names none), `decision`; only requests whose operation the stack read (it reads it only where a rule needs it, or from `Mcp-Method`) |
//! | `mcp_gatekeeper_token_cache_lookups_total` | counter | `cache` (`jwt`, `introspection`, `token_review`), `result` (`hit`, `miss`, `stale`: found past its `exp` or its key) |
//! | `mcp_gatekeeper_token_cache_evictions_total` | counter | `cache`, `cause` (`expired`, `size`, `explicit`, `replaced`) |
//! | `mcp_gatekeeper_token_cache_entries` | gauge | `cache`: entries held, summed over the caches of that kind |
//! | `mcp_gatekeeper_token_cache_bytes` | gauge | `cache`: their estimated size in bytes |
//! | `mcp_gatekeeper_key_fetches_total` | counter | `issuer`, `tier` (`jwks`, `discovery`), `outcome` (`ok`, `unreachable`, `status`, `too_large`, `invalid`, `forbidden`) |
//! | `mcp_gatekeeper_key_fetch_duration_seconds` | histogram | `tier`, `outcome` |
//! | `mcp_gatekeeper_discoveries_total` | counter | `issuer`, `outcome` (`ok`, `unreachable`, `failed`) |
//! | `mcp_gatekeeper_discovery_duration_seconds` | histogram | `outcome` |
//! | `mcp_gatekeeper_introspections_total` | counter | `issuer`, `outcome` (`active`, `inactive`, `refused_token`, `client_rejected`, `unavailable`, `invalid_answer`) |
//! | `mcp_gatekeeper_introspection_duration_seconds` | histogram | `outcome` |
//! | `mcp_gatekeeper_dpop_proofs_refused_total` | counter | `reason` (`replay`: a proof used twice; `store_unavailable`: the replay store could not be asked) |
//!
//! Histograms are in seconds; an exporter chooses their buckets:
//! [`REMOTE_CALL_BUCKETS`] are what the example's `--metrics` and the proxy's
//! `[proxy] metrics` set. (How long a request took to be decided is in each audit
//! event, `decision_ms`: a histogram of it would cost every request more than the
//! counters do.)

/// Histogram buckets (seconds) for the calls to identity providers (key fetches,
/// discoveries, introspections), up to the default 5 s timeout and beyond.
pub const REMOTE_CALL_BUCKETS: &[f64] = &[
    0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[cfg(feature = "metrics")]
use std::sync::atomic::{AtomicBool, Ordering};

mod caches;
#[cfg(feature = "metrics")]
mod handles;
mod labels;

pub(crate) use caches::{CacheMeter, Lookup};
#[cfg(feature = "metrics")]
use labels::status_label;
pub(crate) use labels::{OperationLabels, intern};
use std::time::Duration;

#[cfg(feature = "metrics")]
static ON: AtomicBool = AtomicBool::new(false);

/// The tool names that are labels of their own ([`enable_with_tools`]).
#[cfg(feature = "metrics")]
static TOOLS: std::sync::OnceLock<Box<[Box<str>]>> = std::sync::OnceLock::new();

/// Describes the metrics to the installed recorder and starts recording them. Call
/// it once, after installing the recorder (a description sent before goes nowhere).
/// Without the `metrics` feature it only logs a warning that nothing will be recorded.
pub fn enable() {
    #[cfg(feature = "metrics")]
    {
        describe();
        handles::EPOCH.fetch_add(1, Ordering::Relaxed);
        ON.store(true, Ordering::Relaxed);
    }
    #[cfg(not(feature = "metrics"))]
    tracing::warn!(
        "mcp_gatekeeper::metrics::enable: built without the `metrics` feature, nothing is recorded"
    );
}

/// Stops recording (until [`enable`] is called again).
pub fn disable() {
    #[cfg(feature = "metrics")]
    ON.store(false, Ordering::Relaxed);
}

/// [`enable`], with `tools` (at most 100 names; more are ignored) as values of the
/// `tool` label of `mcp_gatekeeper_mcp_requests_total`; any other tool counts as
/// `other`. The first call's list stays.
pub fn enable_with_tools<I, T>(tools: I)
where
    I: IntoIterator<Item = T>,
    T: Into<String>,
{
    #[cfg(feature = "metrics")]
    {
        let tools = tools
            .into_iter()
            .take(100)
            .map(|t| t.into().into_boxed_str())
            .collect();
        let _ = TOOLS.set(tools);
    }
    #[cfg(not(feature = "metrics"))]
    drop(tools);
    enable();
}

#[cfg(feature = "metrics")]
fn describe() {
    use ::metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "mcp_gatekeeper_decisions_total",
        "Requests answered by the gatekeeper, by decision, status, refusing rule and issuer."
    );
    describe_counter!(
        "mcp_gatekeeper_mcp_requests_total",
        "MCP requests by method, tool (those listed) and decision."
    );
    describe_counter!(
        "mcp_gatekeeper_token_cache_lookups_total",
        "Lookups in the verified-token caches, by cache and result."
    );
    describe_counter!(
        "mcp_gatekeeper_token_cache_evictions_total",
        "Entries leaving the verified-token caches, by cache and cause."
    );
    describe_gauge!(
        "mcp_gatekeeper_token_cache_entries",
        "Entries held by the verified-token caches."
    );
    describe_gauge!(
        "mcp_gatekeeper_token_cache_bytes",
        Unit::Bytes,
        "Estimated bytes held by the verified-token caches."
    );
    describe_counter!(
        "mcp_gatekeeper_key_fetches_total",
        "Fetches of JWK sets, by issuer, tier and outcome."
    );
    describe_histogram!(
        "mcp_gatekeeper_key_fetch_duration_seconds",
        Unit::Seconds,
        "Time a JWK set fetch took."
    );
    describe_counter!(
        "mcp_gatekeeper_discoveries_total",
        "Discoveries of issuer metadata, by issuer and outcome."
    );
    describe_histogram!(
        "mcp_gatekeeper_discovery_duration_seconds",
        Unit::Seconds,
        "Time a discovery took."
    );
    describe_counter!(
        "mcp_gatekeeper_introspections_total",
        "RFC 7662 introspection calls, by issuer and outcome."
    );
    describe_histogram!(
        "mcp_gatekeeper_introspection_duration_seconds",
        Unit::Seconds,
        "Time an introspection call took."
    );
    describe_counter!(
        "mcp_gatekeeper_dpop_proofs_refused_total",
        "DPoP proofs refused by the replay check, by reason."
    );
}

/// Whether metrics are recorded.
#[inline]
pub(crate) fn on() -> bool {
    #[cfg(feature = "metrics")]
    {
        ON.load(Ordering::Relaxed)
    }
    #[cfg(not(feature = "metrics"))]
    {
        false
    }
}

/// What a request's metrics say about it, from its audit record.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) struct Decided<'a> {
    pub(crate) decision: &'static str,
    pub(crate) status: Option<u16>,
    pub(crate) rule: Option<&'static str>,
    /// The trusted issuer, `other` or `none`.
    pub(crate) issuer: &'a str,
    pub(crate) operation: Option<OperationLabels>,
}

/// Records one answered request.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn decided(request: &Decided<'_>) {
    #[cfg(feature = "metrics")]
    if on() {
        let decision = ("decision", request.decision);
        let fixed = [
            decision,
            ("status", status_label(request.status)),
            ("rule", request.rule.unwrap_or("none")),
        ];
        handles::counter(
            0,
            "mcp_gatekeeper_decisions_total",
            &fixed,
            Some(("issuer", request.issuer)),
            |c| c.increment(1),
        );
        if let Some(operation) = request.operation {
            let fixed = [
                ("mcp_method", operation.method()),
                decision,
                ("tool", operation.tool()),
            ];
            handles::counter(1, "mcp_gatekeeper_mcp_requests_total", &fixed, None, |c| {
                c.increment(1)
            });
        }
    }
}

/// A fetch of a JWK set.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn key_fetch(issuer: &str, tier: &'static str, outcome: &'static str, took: Duration) {
    #[cfg(feature = "metrics")]
    if on() {
        ::metrics::counter!(
            "mcp_gatekeeper_key_fetches_total",
            "issuer" => issuer.to_owned(),
            "tier" => tier,
            "outcome" => outcome,
        )
        .increment(1);
        ::metrics::histogram!(
            "mcp_gatekeeper_key_fetch_duration_seconds",
            "tier" => tier,
            "outcome" => outcome,
        )
        .record(took);
    }
}

/// A discovery of an issuer's metadata.
pub(crate) fn discovery(issuer: &str, outcome: &'static str, took: Duration) {
    remote_call("discoveries", "discovery", issuer, outcome, took);
}

/// An introspection call.
pub(crate) fn introspection(issuer: &str, outcome: &'static str, took: Duration) {
    remote_call("introspections", "introspection", issuer, outcome, took);
}

/// A call to an identity provider: `mcp_gatekeeper_<counted>_total{issuer,outcome}`
/// and `mcp_gatekeeper_<timed>_duration_seconds{outcome}`.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
fn remote_call(
    counted: &'static str,
    timed: &'static str,
    issuer: &str,
    outcome: &'static str,
    took: Duration,
) {
    #[cfg(feature = "metrics")]
    if on() {
        let outcome = [("outcome", outcome)];
        let counter = format!("mcp_gatekeeper_{counted}_total");
        ::metrics::counter!(counter, handles::labels(&outcome, Some(("issuer", issuer))))
            .increment(1);
        let histogram = format!("mcp_gatekeeper_{timed}_duration_seconds");
        ::metrics::histogram!(histogram, handles::labels(&outcome, None)).record(took);
    }
}

/// A DPoP proof refused by the replay check.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn dpop_refused(reason: &'static str) {
    #[cfg(feature = "metrics")]
    if on() {
        ::metrics::counter!("mcp_gatekeeper_dpop_proofs_refused_total", "reason" => reason)
            .increment(1);
    }
}

/// The outcome label of a failed fetch.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) fn fetch_outcome(error: &crate::fetch::FetchError) -> &'static str {
    use crate::fetch::FetchError;
    match error {
        FetchError::Unreachable(_) => "unreachable",
        FetchError::Status(..) => "status",
        FetchError::TooLarge(_) => "too_large",
        FetchError::Invalid(_) => "invalid",
        FetchError::Forbidden(_) => "forbidden",
    }
}
