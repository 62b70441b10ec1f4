//! The verified-token cache's byte bound holds for real memory, measured by a
//! counting allocator: fat claims such as `[[],[],…]` take about ten times their
//! JSON text once parsed, and the cache weighs what they take, not their length;
//! an evicted entry's claims are freed at once, not when the cache's epoch
//! collector next runs.

mod support;

use std::alloc::System;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use mcp_gatekeeper::{Issuer, ResourceServer, TokenCacheOptions};
use serde_json::json;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use support::signing::hmac_token;
use support::{call, claims};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const RESOURCE: &str = "https://mcp.example.com/mcp";
const ISSUER: &str = "https://idp.example.com";
const MAX_BYTES: u64 = 8 * 1024 * 1024;

/// The tests measure the process's heap: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "current_thread")]
async fn fat_claims_from_a_trusted_issuer_stay_within_the_byte_bound_in_measured_heap() {
    let _serial = SERIAL.lock().await;
    let secret = b"0123456789abcdef0123456789abcdef";
    let server = ResourceServer::builder(RESOURCE)
        .issuer(
            Issuer::new(ISSUER)
                .algorithms([Algorithm::HS256])
                .hmac_secret(secret.to_vec()),
        )
        .max_token_len(64 * 1024)
        .token_cache(TokenCacheOptions {
            max_entries: 100_000,
            max_bytes: MAX_BYTES,
            max_ttl: Duration::from_secs(600),
        })
        .build()
        .expect("valid");
    let app = support::app(server.layer());
    let header = json!({"alg": "HS256"});
    // 10,000 empty arrays: 30 KB of JSON, about 330 KB once parsed.
    let fat: Vec<serde_json::Value> = (0..10_000).map(|_| json!([])).collect();
    let tokens: Vec<String> = (0..120)
        .map(|n| {
            let mut c = claims(ISSUER, RESOURCE);
            c["jti"] = json!(format!("jti-{n}"));
            c["fat"] = json!(fat);
            hmac_token(&header, &c, secret)
        })
        .collect();
    drop(fat);
    // Warm up what the first request allocates once (routing, tracing, the cache).
    let warm = hmac_token(&header, &claims(ISSUER, RESOURCE), secret);
    assert_eq!(call(&app, "/mcp", Some(&warm)).await.status, 200);
    let region = Region::new(GLOBAL);
    for token in &tokens {
        assert_eq!(call(&app, "/mcp", Some(token)).await.status, 200);
    }
    let usage = server.token_cache_usage().await;
    let change = region.change();
    let live = change.bytes_allocated as i64 - change.bytes_deallocated as i64;
    println!(
        "{} entries, weighed {} bytes; heap grew by {live} bytes (bound {MAX_BYTES})",
        usage.entries, usage.bytes
    );
    assert!(usage.bytes <= MAX_BYTES, "{usage:?}");
    assert!(usage.entries < 120, "the bound evicted some: {usage:?}");
    // What the entries really hold stays within the bound, evicted entries included
    // (a little slack for the cache's own tables and the allocator's rounding).
    assert!(
        live <= (MAX_BYTES + MAX_BYTES / 8) as i64,
        "heap grew by {live} bytes for a {MAX_BYTES}-byte bound ({usage:?})"
    );
}

/// One `first_use` of the replay store, polled once (the in-process store answers at
/// once).
fn first_use(store: &mcp_gatekeeper::InMemoryReplayStore, n: u64) -> Result<bool, String> {
    use mcp_gatekeeper::ReplayStore;
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&n.to_be_bytes());
    // Keys are SHA-256 digests: spread the counter over the bytes a store may hash.
    key[8..16].copy_from_slice(&n.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut future = store.first_use(key, Duration::from_secs(300));
    match std::future::Future::poll(future.as_mut(), &mut cx) {
        std::task::Poll::Ready(answer) => answer,
        std::task::Poll::Pending => Err("the in-process store made the request wait".into()),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_dpop_replay_store_never_forgets_a_proof_within_its_window_and_holds_its_memory_bound()
{
    let _serial = SERIAL.lock().await;
    const CAPACITY: u64 = 100_000;
    let region = Region::new(GLOBAL);
    let store = mcp_gatekeeper::InMemoryReplayStore::new(CAPACITY, Duration::from_secs(300));
    for n in 0..CAPACITY {
        assert_eq!(first_use(&store, n), Ok(true), "proof {n}");
    }
    // Full: a new proof is refused (the request gets 503), not let in by forgetting
    // an older one, which could then be replayed.
    let full = first_use(&store, CAPACITY);
    assert!(full.as_ref().is_err_and(|e| e.contains("full")), "{full:?}");
    for n in 0..CAPACITY {
        assert_eq!(first_use(&store, n), Ok(false), "proof {n} was forgotten");
    }
    let stats = region.change();
    let live = stats.bytes_allocated as i64 - stats.bytes_deallocated as i64;
    println!("{CAPACITY} proofs: {live} bytes of heap");
    assert!(live < 4 * 1024 * 1024, "{live} bytes for {CAPACITY} proofs");
}
