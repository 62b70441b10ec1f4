//! What observing requests costs, measured the way a noisy machine allows: the same
//! stack (`stack/repeat/ES256`'s: the whole `ResourceServer` stack, a repeated token)
//! driven in alternating rounds with nothing listening (`off`), with the metrics on
//! and the Prometheus exporter's recorder (`metrics`), and with the audit trail
//! written as JSON lines to a sink (`audit`). Each round times `REQUESTS` requests
//! per case; the medians per request and the median of the per-round ratios are
//! printed. `benches/report.sh` runs it.
//!
//!     cargo bench -p mcp-gatekeeper-benches --bench observed [-- ROUNDS] [metrics] [audit]

mod common;

use std::time::Instant;

use common::{Signer, drive, request};
use tower::Layer;

/// Requests per case and round.
const REQUESTS: u32 = 20_000;

fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(41);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _entered = rt.enter();
    let signer = Signer::new("ES256");
    let token = signer.token(0);
    let server = common::server("ES256", &signer);
    let mut service = server.layer().layer(common::Noop);
    assert_eq!(drive(&mut service, request(&token), &rt), 200);

    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(mcp_gatekeeper::metrics::REMOTE_CALL_BUCKETS)
        .expect("buckets")
        .build_recorder();
    let handle = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);
    let audit = {
        use tracing_subscriber::prelude::*;
        let only_audit = tracing_subscriber::filter::Targets::new()
            .with_target(mcp_gatekeeper::audit::TARGET, tracing::Level::INFO);
        tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .with_writer(std::io::sink)
                .with_filter(only_audit),
        )
    };
    let audit = tracing::Dispatch::new(audit);

    let mut run = |case: &str| {
        let requests: Vec<_> = (0..REQUESTS).map(|_| request(&token)).collect();
        let timed = |service: &mut _| {
            let started = Instant::now();
            for request in requests {
                std::hint::black_box(drive(service, request, &rt));
            }
            started.elapsed().as_secs_f64() * 1e9 / f64::from(REQUESTS)
        };
        match case {
            "metrics" => {
                mcp_gatekeeper::metrics::enable();
                let ns = timed(&mut service);
                mcp_gatekeeper::metrics::disable();
                handle.run_upkeep();
                ns
            }
            "audit" => tracing::dispatcher::with_default(&audit, || {
                tracing::callsite::rebuild_interest_cache();
                timed(&mut service)
            }),
            _ => {
                tracing::callsite::rebuild_interest_cache();
                timed(&mut service)
            }
        }
    };
    let all = ["off", "metrics", "audit"];
    let picked: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| all.contains(&a.as_str()))
        .collect();
    let cases: Vec<&str> = all
        .iter()
        .copied()
        .filter(|c| *c == "off" || picked.is_empty() || picked.iter().any(|p| p == c))
        .collect();
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    run("off");
    for _ in 0..rounds {
        for (i, case) in cases.iter().enumerate() {
            times[i].push(run(case));
        }
    }
    let ratios = |i: usize| {
        let mut r: Vec<f64> = times[i]
            .iter()
            .zip(&times[0])
            .map(|(t, off)| t / off)
            .collect();
        common::wire::median(&mut r)
    };
    println!("{rounds} rounds of {REQUESTS} requests per case, alternating (ns per request):");
    for (i, case) in cases.iter().enumerate() {
        let median = common::wire::median(&mut times[i].clone());
        println!(
            "  {case:8} median {median:8.1} ns   median ratio to off {:.3}",
            ratios(i)
        );
    }
}
