//! A bounded soak on loopback (issue 7): for `SOAK_SECONDS` (default 20), eight
//! clients send a mix of valid, expired and forged JWTs and active and inactive opaque
//! tokens to the stack over real HTTP, while the identity provider (JWKS and
//! introspection) flaps between up and down. At the end: the requests, the answers by
//! kind and status, and the process's memory before and after. The rules: no 5xx but
//! the 503 of an unreachable provider; a valid token is never refused (401/403), and
//! once keys were fetched a valid JWT is never even delayed (stale keys serve); bad
//! tokens are never accepted. Run with `--nocapture` to see the counts.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mcp_gatekeeper::keys::JwksOptions;
use mcp_gatekeeper::{FetchOptions, Introspection, Issuer, ResourceServer, TokenCacheOptions};
use serde_json::json;
use support::{INTROSPECTION_CLIENT, SigningKey, TestIdp, claims, ms};

const CLIENTS: usize = 8;
/// Each client sends at most this many requests (the time limit usually comes first).
const MAX_PER_CLIENT: usize = 200_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    ValidJwt,
    ExpiredJwt,
    ForgedSignature,
    UnknownKid,
    ActiveOpaque,
    InactiveOpaque,
}

const KINDS: [Kind; 6] = [
    Kind::ValidJwt,
    Kind::ExpiredJwt,
    Kind::ForgedSignature,
    Kind::UnknownKid,
    Kind::ActiveOpaque,
    Kind::InactiveOpaque,
];

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                line.strip_prefix("VmRSS:")?
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .ok()
            })
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soak_with_a_flapping_provider_refuses_no_valid_token_and_accepts_no_bad_one() {
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let key = SigningKey::ec("k");
    let idp = TestIdp::start(&[&key]).await;
    idp.set_cache_control(Some("max-age=1"));
    let jwks = JwksOptions {
        min_ttl: ms(500),
        kid_miss_cooldown: ms(500),
        min_backoff: ms(100),
        max_backoff: ms(400),
        fetch: FetchOptions {
            timeout: ms(1000),
            ..FetchOptions::default()
        },
        ..JwksOptions::default()
    };
    let introspection = Introspection::new(INTROSPECTION_CLIENT.0, INTROSPECTION_CLIENT.1)
        .endpoint(idp.introspection_uri())
        .cache(TokenCacheOptions {
            max_ttl: ms(700),
            ..TokenCacheOptions::default()
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let resource = format!("http://{addr}/mcp");
    for n in 0..50 {
        let mut active = claims(&idp.issuer, &resource);
        active["active"] = json!(true);
        idp.set_introspection(&format!("opaque-active-{n}"), active);
    }
    let server = ResourceServer::builder(&resource)
        .issuer(
            Issuer::new(&idp.issuer)
                .jwks_uri(idp.jwks_uri())
                .jwks_options(jwks)
                .introspection(introspection),
        )
        .build()
        .expect("valid configuration");
    let app = support::app(server.layer());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    // Tokens of each kind, made before the clock starts.
    let for_us = |n: u64| {
        let mut c = claims(&idp.issuer, &resource);
        c["jti"] = json!(format!("jti-{n}"));
        c
    };
    let valid: Vec<String> = (0..50).map(|n| key.sign(&for_us(n))).collect();
    let expired: Vec<String> = (0..20)
        .map(|n| {
            let mut c = for_us(n);
            c["exp"] = json!(support::now() - 3600);
            key.sign(&c)
        })
        .collect();
    let attacker = SigningKey::ec("k");
    let forged: Vec<String> = (0..20).map(|n| attacker.sign(&for_us(n))).collect();
    let unknown_kid: Vec<String> = (0..200)
        .map(|n| {
            let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
            header.kid = Some(format!("random-{n}"));
            attacker.sign_with(header, &for_us(n))
        })
        .collect();
    let tokens: Arc<BTreeMap<Kind, Vec<String>>> = Arc::new(BTreeMap::from([
        (Kind::ValidJwt, valid),
        (Kind::ExpiredJwt, expired),
        (Kind::ForgedSignature, forged),
        (Kind::UnknownKid, unknown_kid),
        (
            Kind::ActiveOpaque,
            (0..50).map(|n| format!("opaque-active-{n}")).collect(),
        ),
        (
            Kind::InactiveOpaque,
            (0..50).map(|n| format!("opaque-inactive-{n}")).collect(),
        ),
    ]));

    let rss_at_start = rss_kib();
    let started = Instant::now();
    let end = started + Duration::from_secs(seconds);
    // The provider flaps: up 600 to 2,000 ms (first), down 200 to 800 ms,
    // pseudo-random.
    let ever_fetched = Arc::new(AtomicBool::new(false));
    let flapper = {
        let switch = idp.down_switch();
        tokio::spawn(async move {
            let mut state: u64 = 0x2545_F491_4F6C_DD1D;
            let mut down = false;
            while Instant::now() < end {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let period = if down {
                    200 + state % 600
                } else {
                    600 + state % 1400
                };
                tokio::time::sleep(ms(period)).await;
                down = !down;
                switch.set(down);
            }
            switch.set(false);
        })
    };
    let counts: Arc<Mutex<BTreeMap<(Kind, u16), u64>>> = Arc::default();
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let (tokens, counts, failures) = (tokens.clone(), counts.clone(), failures.clone());
            let ever_fetched = ever_fetched.clone();
            let url = resource.clone();
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                for n in 0..MAX_PER_CLIENT {
                    if Instant::now() >= end {
                        break;
                    }
                    let kind = KINDS[(n + client) % KINDS.len()];
                    let list = &tokens[&kind];
                    let token = &list[(n * 7 + client) % list.len()];
                    let status = match http.get(&url).bearer_auth(token).send().await {
                        Ok(response) => response.status().as_u16(),
                        Err(error) => {
                            failures
                                .lock()
                                .expect("lock")
                                .push(format!("{kind:?}: {error}"));
                            continue;
                        }
                    };
                    *counts
                        .lock()
                        .expect("lock")
                        .entry((kind, status))
                        .or_default() += 1;
                    if kind == Kind::ValidJwt && status == 200 {
                        ever_fetched.store(true, Ordering::SeqCst);
                    }
                    let allowed: &[u16] = match kind {
                        // Once a set was fetched, stale keys serve through any outage.
                        Kind::ValidJwt if ever_fetched.load(Ordering::SeqCst) => &[200],
                        Kind::ValidJwt | Kind::ActiveOpaque => &[200, 503],
                        Kind::ExpiredJwt | Kind::ForgedSignature => &[401],
                        Kind::UnknownKid | Kind::InactiveOpaque => &[401, 503],
                    };
                    if !allowed.contains(&status) {
                        failures
                            .lock()
                            .expect("lock")
                            .push(format!("{kind:?} answered {status}"));
                    }
                }
            })
        })
        .collect();
    for client in clients {
        client.await.expect("client");
    }
    flapper.await.expect("flapper");
    let elapsed = started.elapsed();
    let rss_at_end = rss_kib();
    let counts = counts.lock().expect("lock").clone();
    let total: u64 = counts.values().sum();
    println!(
        "soak: {total} requests in {elapsed:.1?} over {CLIENTS} connections; \
         {} JWKS fetches, {} introspections; RSS {} MiB at start, {} MiB at end",
        idp.counters().jwks(),
        idp.counters().introspection.load(Ordering::SeqCst),
        rss_at_start / 1024,
        rss_at_end / 1024
    );
    for ((kind, status), count) in &counts {
        println!("  {kind:?} {status}: {count}");
    }
    let failures = failures.lock().expect("lock").clone();
    assert!(
        failures.is_empty(),
        "{} broken rules, first: {:?}",
        failures.len(),
        failures.first()
    );
    assert!(total > 1_000, "the soak was a soak: {total} requests");
    for kind in KINDS {
        assert!(
            counts.keys().any(|(k, _)| *k == kind),
            "{kind:?} was never sent"
        );
    }
    let unavailable: u64 = counts
        .iter()
        .filter(|((_, status), _)| *status == 503)
        .map(|(_, count)| count)
        .sum();
    assert!(unavailable > 0, "the provider's outages were seen");
    assert!(
        counts.get(&(Kind::ActiveOpaque, 200)).copied().unwrap_or(0) > 0,
        "opaque tokens were accepted while the provider was up"
    );
}
