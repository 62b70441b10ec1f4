//! Metrics (issue 17): a scripted run of mixed traffic through the whole stack, with a
//! real identity provider on loopback (discovery, JWK set, introspection), recorded
//! by the Prometheus exporter's recorder; its text is parsed (not grepped) and every
//! counter compared exactly. No label value may carry any part of a token.

#![cfg(feature = "metrics")]

mod support;

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use http::StatusCode;
use mcp_gatekeeper::{FetchOptions, Introspection, Issuer, ResourceServer};
use metrics_exporter_prometheus::PrometheusBuilder;
use serde_json::json;
use support::prometheus::{parse, sample};
use support::{INTROSPECTION_CLIENT, SigningKey, TestIdp, call, claims, now};

const RESOURCE: &str = "https://mcp.example.com/mcp";

#[tokio::test]
async fn a_scripted_run_gives_exactly_the_expected_counters_and_no_token_in_a_label() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);
    mcp_gatekeeper::metrics::enable();

    let key = SigningKey::ec("k");
    let idp = TestIdp::start(&[&key]).await;
    let issuer = idp.issuer.clone();
    idp.set_introspection(
        "opaque-active",
        json!({"active": true, "iss": issuer, "sub": "u", "aud": RESOURCE, "exp": now() + 600}),
    );
    let introspection = Introspection::new(INTROSPECTION_CLIENT.0, INTROSPECTION_CLIENT.1)
        .endpoint(idp.introspection_uri())
        .fetch_options(FetchOptions {
            timeout: Duration::from_millis(1500),
            ..FetchOptions::default()
        });
    let server = ResourceServer::builder(RESOURCE)
        .issuer(Issuer::new(&issuer).introspection(introspection))
        .build()
        .expect("valid configuration");
    let app = Router::new()
        .route("/mcp", get(|| async { "ok" }))
        .layer(server.layer());

    let good = key.sign(&claims(&issuer, RESOURCE));
    let mut expired_claims = claims(&issuer, RESOURCE);
    expired_claims["exp"] = json!(now() - 3600);
    let expired = key.sign(&expired_claims);
    let forged = SigningKey::ec("k").sign(&claims(&issuer, RESOURCE));

    // The script: (token, expected status), in order.
    let script: [(Option<&str>, StatusCode); 10] = [
        (None, StatusCode::UNAUTHORIZED),
        (None, StatusCode::UNAUTHORIZED),
        (Some(&good), StatusCode::OK),
        (Some(&good), StatusCode::OK),
        (Some(&good), StatusCode::OK),
        (Some(&expired), StatusCode::UNAUTHORIZED),
        (Some(&forged), StatusCode::UNAUTHORIZED),
        (Some("opaque-active"), StatusCode::OK),
        (Some("opaque-active"), StatusCode::OK),
        (Some("opaque-inactive"), StatusCode::UNAUTHORIZED),
    ];
    for (token, status) in script {
        let answer = call(&app, "/mcp", token).await;
        assert_eq!(answer.status, status, "{token:?}: {answer:?}");
    }

    let text = handle.render();
    let samples = parse(&text);
    let counter = |name: &str, labels: &[(&str, &str)]| {
        samples.get(&sample(name, labels)).copied().unwrap_or(0.0)
    };
    let decisions = "mcp_gatekeeper_decisions_total";
    let i = issuer.as_str();
    let expected = [
        (
            decisions,
            vec![
                ("decision", "reject"),
                ("issuer", "none"),
                ("rule", "R-BEAR-3"),
                ("status", "401"),
            ],
            2.0,
        ),
        (
            decisions,
            vec![
                ("decision", "allow"),
                ("issuer", i),
                ("rule", "none"),
                ("status", "200"),
            ],
            5.0,
        ),
        (
            decisions,
            vec![
                ("decision", "reject"),
                ("issuer", i),
                ("rule", "R-JWT-2"),
                ("status", "401"),
            ],
            1.0,
        ),
        (
            decisions,
            vec![
                ("decision", "reject"),
                ("issuer", "none"),
                ("rule", "R-JWT-1"),
                ("status", "401"),
            ],
            1.0,
        ),
        (
            decisions,
            vec![
                ("decision", "reject"),
                ("issuer", "none"),
                ("rule", "R-OPQ-1"),
                ("status", "401"),
            ],
            1.0,
        ),
        (
            "mcp_gatekeeper_token_cache_lookups_total",
            vec![("cache", "jwt"), ("result", "miss")],
            3.0,
        ),
        (
            "mcp_gatekeeper_token_cache_lookups_total",
            vec![("cache", "jwt"), ("result", "hit")],
            2.0,
        ),
        (
            "mcp_gatekeeper_token_cache_lookups_total",
            vec![("cache", "introspection"), ("result", "miss")],
            2.0,
        ),
        (
            "mcp_gatekeeper_token_cache_lookups_total",
            vec![("cache", "introspection"), ("result", "hit")],
            1.0,
        ),
        (
            "mcp_gatekeeper_discoveries_total",
            vec![("issuer", i), ("outcome", "ok")],
            1.0,
        ),
        (
            "mcp_gatekeeper_key_fetches_total",
            vec![("issuer", i), ("outcome", "ok"), ("tier", "discovery")],
            1.0,
        ),
        (
            "mcp_gatekeeper_introspections_total",
            vec![("issuer", i), ("outcome", "active")],
            1.0,
        ),
        (
            "mcp_gatekeeper_introspections_total",
            vec![("issuer", i), ("outcome", "inactive")],
            1.0,
        ),
        (
            "mcp_gatekeeper_token_cache_entries",
            vec![("cache", "jwt")],
            1.0,
        ),
        (
            "mcp_gatekeeper_token_cache_entries",
            vec![("cache", "introspection")],
            1.0,
        ),
    ];
    for (name, labels, value) in &expected {
        assert_eq!(
            counter(name, labels),
            *value,
            "{name} {labels:?} in\n{text}"
        );
    }
    // Nothing else was counted: every decision is one of the above.
    let total: f64 = samples
        .iter()
        .filter(|((name, _), _)| name == decisions)
        .map(|(_, v)| v)
        .sum();
    assert_eq!(total, 10.0, "{text}");
    let fetch_time = sample(
        "mcp_gatekeeper_key_fetch_duration_seconds_count",
        &[("outcome", "ok"), ("tier", "discovery")],
    );
    assert_eq!(samples.get(&fetch_time).copied(), Some(1.0), "{text}");
    // A token forgotten on purpose leaves its cache: an explicit eviction.
    server.forget_token(&good).await;
    let _ = server.token_cache_usage().await; // the cache catches up with its work
    let samples = parse(&handle.render());
    let evicted = sample(
        "mcp_gatekeeper_token_cache_evictions_total",
        &[("cache", "jwt"), ("cause", "explicit")],
    );
    assert_eq!(
        samples.get(&evicted).copied(),
        Some(1.0),
        "{}",
        handle.render()
    );
    let entries = sample("mcp_gatekeeper_token_cache_entries", &[("cache", "jwt")]);
    assert_eq!(samples.get(&entries).copied(), Some(0.0));

    // A cache that goes away takes its entries out of the gauges.
    drop(app);
    drop(server);
    let samples = parse(&handle.render());
    for cache in ["jwt", "introspection"] {
        for gauge in [
            "mcp_gatekeeper_token_cache_entries",
            "mcp_gatekeeper_token_cache_bytes",
        ] {
            let value = samples.get(&sample(gauge, &[("cache", cache)])).copied();
            assert_eq!(value, Some(0.0), "{gauge} {cache}");
        }
    }
    // No label value carries a token, or any long part of one.
    for (_, labels) in samples.keys() {
        for value in labels.values() {
            for token in [&good, &expired, &forged] {
                for part in token.split('.').filter(|p| p.len() >= 12) {
                    assert!(!value.contains(part), "a label shows a token: {value}");
                }
            }
            assert!(!value.contains("opaque-"), "a label shows a token: {value}");
        }
    }
}

/// A verifier of the application's own: it makes up an issuer from the token.
struct OwnIssuers;

impl mcp_gatekeeper::TokenVerifier for OwnIssuers {
    fn verify(&self, token: &mcp_gatekeeper::BearerToken) -> mcp_gatekeeper::VerifyFuture {
        let claims = json!({"sub": "someone"})
            .as_object()
            .cloned()
            .unwrap_or_default();
        let principal = mcp_gatekeeper::Principal::from_claims(
            mcp_gatekeeper::TokenKind::Jwt,
            format!("https://issuer.example/{}", token.as_str()),
            claims,
        );
        mcp_gatekeeper::VerifyFuture::ready(Ok(principal))
    }
}

#[tokio::test]
async fn an_issuer_the_configuration_does_not_name_is_labelled_other() {
    use tower::{Layer, ServiceExt};
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);
    mcp_gatekeeper::metrics::enable();
    let resource = mcp_gatekeeper::ProtectedResource::new(RESOURCE);
    let stack = mcp_gatekeeper::BearerLayer::new(resource.clone()).layer(
        mcp_gatekeeper::VerifyLayer::new(resource, OwnIssuers).layer(tower::service_fn(
            |_: http::Request<axum::body::Body>| async {
                Ok::<_, std::convert::Infallible>(http::Response::new(axum::body::Body::empty()))
            },
        )),
    );
    for n in 0..3 {
        let request = http::Request::get("/mcp")
            .header("authorization", format!("Bearer chosen-by-the-client-{n}"))
            .body(axum::body::Body::empty())
            .expect("request");
        let answer = stack.clone().oneshot(request).await.expect("answer");
        assert_eq!(answer.status(), StatusCode::OK);
    }
    let text = handle.render();
    let samples = parse(&text);
    let allowed = sample(
        "mcp_gatekeeper_decisions_total",
        &[
            ("decision", "allow"),
            ("issuer", "other"),
            ("rule", "none"),
            ("status", "200"),
        ],
    );
    assert_eq!(samples.get(&allowed).copied(), Some(3.0), "{text}");
    assert!(!text.contains("chosen-by-the-client"), "{text}");
}

/// Key fetches that fail are counted by their outcome: a JWK set endpoint nothing
/// listens on is `unreachable`, one that answers `500` is `status`.
#[tokio::test]
async fn failed_key_fetches_are_counted_by_outcome() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);
    mcp_gatekeeper::metrics::enable();
    // A port nothing listens on, and a JWK set endpoint that answers 500.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let failing = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let failing_at = failing.local_addr().expect("address");
    let router = Router::new().route(
        "/jwks",
        get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "down") }),
    );
    let served = tokio::spawn(async move { axum::serve(failing, router).await });
    let down = "https://down.example.com";
    let broken = "https://broken.example.com";
    let options = || mcp_gatekeeper::keys::JwksOptions {
        fetch: FetchOptions {
            timeout: Duration::from_millis(1500),
            ..FetchOptions::default()
        },
        ..Default::default()
    };
    let server = ResourceServer::builder(RESOURCE)
        .issuer(
            Issuer::new(down)
                .jwks_uri(format!("http://{closed}/jwks"))
                .jwks_options(options()),
        )
        .issuer(
            Issuer::new(broken)
                .jwks_uri(format!("http://{failing_at}/jwks"))
                .jwks_options(options()),
        )
        .build()
        .expect("valid configuration");
    let app = Router::new()
        .route("/mcp", get(|| async { "ok" }))
        .layer(server.layer());
    let key = SigningKey::ec("k");
    for issuer in [down, broken] {
        let answer = call(&app, "/mcp", Some(&key.sign(&claims(issuer, RESOURCE)))).await;
        assert_ne!(answer.status, StatusCode::OK, "{issuer}: {answer:?}");
    }
    served.abort();
    let text = handle.render();
    let samples = parse(&text);
    for (issuer, outcome) in [(down, "unreachable"), (broken, "status")] {
        let fetched = sample(
            "mcp_gatekeeper_key_fetches_total",
            &[("issuer", issuer), ("outcome", outcome), ("tier", "jwks")],
        );
        assert_eq!(samples.get(&fetched).copied(), Some(1.0), "{text}");
    }
}
