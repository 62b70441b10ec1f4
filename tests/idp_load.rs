//! Load on the identity provider, counted (correctness, not timing): a ten-second
//! flood of tokens with random `kid`s costs at most one JWKS fetch per cool-down, and
//! valid tokens keep being accepted all along. (A thousand concurrent first requests
//! costing one discovery and one JWKS fetch is in `tests/discovery.rs`; concurrent
//! requests with one opaque token sharing one introspection, in
//! `tests/introspection.rs`.)

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use mcp_gatekeeper::keys::JwksOptions;
use mcp_gatekeeper::{FetchOptions, Issuer, ResourceServer};
use support::{SigningKey, TestIdp, call, claims};

const RESOURCE: &str = "https://mcp.example.com/mcp";
const FLOOD: Duration = Duration::from_secs(10);
const COOLDOWN: Duration = Duration::from_secs(2);
/// Flooding tasks, each at most one request per millisecond.
const FLOODERS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_second_flood_of_random_kids_fetches_at_most_once_per_cooldown() {
    let key = SigningKey::ec("real");
    let idp = TestIdp::start(&[&key]).await;
    let options = JwksOptions {
        kid_miss_cooldown: COOLDOWN,
        fetch: FetchOptions {
            timeout: Duration::from_millis(1500),
            ..FetchOptions::default()
        },
        ..JwksOptions::default()
    };
    let server = ResourceServer::builder(RESOURCE)
        .issuer(Issuer::new(&idp.issuer).jwks_options(options))
        .build()
        .expect("valid");
    let app = support::app(server.layer());
    let good = key.sign(&claims(&idp.issuer, RESOURCE));
    assert_eq!(call(&app, "/mcp", Some(&good)).await.status, StatusCode::OK);
    let fetches_before = idp.counters().jwks();

    let attacker = SigningKey::ec("attacker");
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    let forged: Arc<Vec<String>> = Arc::new(
        (0..500)
            .map(|i| {
                header.kid = Some(format!("random-{i}-{}", i * 7919));
                attacker.sign_with(header.clone(), &claims(&idp.issuer, RESOURCE))
            })
            .collect(),
    );
    let started = Instant::now();
    let refused = Arc::new(AtomicUsize::new(0));
    let flooders: Vec<_> = (0..FLOODERS)
        .map(|task| {
            let (app, forged, refused) = (app.clone(), forged.clone(), refused.clone());
            tokio::spawn(async move {
                let mut n = task;
                while started.elapsed() < FLOOD {
                    let answer = call(&app, "/mcp", Some(&forged[n % forged.len()])).await;
                    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{answer:?}");
                    refused.fetch_add(1, Ordering::Relaxed);
                    n += FLOODERS;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
        })
        .collect();
    // Meanwhile a valid token, every 20 ms, is never refused.
    let mut valid = 0;
    while started.elapsed() < FLOOD {
        let answer = call(&app, "/mcp", Some(&good)).await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        valid += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for flooder in flooders {
        flooder.await.expect("flooder");
    }
    let elapsed = started.elapsed();
    let fetches = idp.counters().jwks() - fetches_before;
    let periods = elapsed.as_millis().div_ceil(COOLDOWN.as_millis()) as usize;
    let refused = refused.load(Ordering::Relaxed);
    println!("{refused} forged and {valid} valid requests in {elapsed:?}: {fetches} JWKS fetches");
    assert!(
        refused > 1_000,
        "the flood was a flood: {refused} forged requests"
    );
    assert!(valid > 100, "{valid} valid requests");
    assert!(
        fetches <= periods,
        "{fetches} JWKS fetches for {refused} unknown kids in {elapsed:?} ({periods} cool-downs)"
    );
    assert!(fetches >= 1, "unknown kids do refresh, once per cool-down");
}
