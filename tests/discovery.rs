//! Key resolution against real identity providers on 127.0.0.1 (R-KEY-1..5): the
//! tiers, lazy non-fatal discovery (seed 004), the JWKS cache, rotation, kid-miss
//! floods, single flight, outages and recovery.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use http::StatusCode;
use mcp_gatekeeper::keys::{JwksOptions, KeySet, LocalKeys};
use mcp_gatekeeper::{Issuer, ResourceServer};
use serde_json::json;
use support::{SigningKey, TestIdp, app, call, claims, ms};

const RESOURCE: &str = "https://mcp.example.com/mcp";

/// Limits short enough for tests.
fn quick() -> JwksOptions {
    support::quick_jwks()
}

fn protect(issuer: Issuer) -> Router {
    let server = ResourceServer::builder(RESOURCE).issuer(issuer).build();
    app(server.expect("valid configuration").layer())
}

/// The stack with `idp`'s explicit `jwks_uri` as the only key tier.
fn protect_jwks(idp: &TestIdp, options: JwksOptions) -> Router {
    protect(
        Issuer::new(&idp.issuer)
            .jwks_uri(idp.jwks_uri())
            .jwks_options(options),
    )
}

/// The status of `/mcp` for a token of `issuer` signed by `key`.
async fn status(app: &Router, key: &SigningKey, issuer: &str) -> StatusCode {
    call(app, "/mcp", Some(&key.sign(&claims(issuer, RESOURCE))))
        .await
        .status
}

fn local(key: &SigningKey) -> LocalKeys {
    let doc = support::signing::jwks(&[key]).to_string();
    LocalKeys::from_jwks(doc.as_bytes()).expect("local keys")
}

#[tokio::test]
async fn seed_004_local_key_verifies_while_the_issuer_is_unreachable() {
    // R-KEY-1, R-KEY-2: the embedded issuer's URL does not reach it from here.
    let key = SigningKey::ec("embedded-1");
    let dead = support::closed_port().await;
    let issuer = format!("http://{dead}");
    let app = protect(
        Issuer::new(&issuer)
            .local_keys(local(&key))
            .jwks_options(quick()),
    );
    let answer = call(&app, "/mcp", Some(&key.sign(&claims(&issuer, RESOURCE)))).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body["sub"], "user-1");

    // A kid nobody has makes discovery run and fail: 503, not 401 (R-KEY-5) ...
    let stranger = SigningKey::ec("unknown-kid");
    let answer = call(
        &app,
        "/mcp",
        Some(&stranger.sign(&claims(&issuer, RESOURCE))),
    )
    .await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{answer:?}");
    // ... and that failure does not stop the local tier (non-fatal discovery).
    let answer = call(&app, "/mcp", Some(&key.sign(&claims(&issuer, RESOURCE)))).await;
    assert_eq!(answer.status, StatusCode::OK);
}

#[tokio::test]
async fn seed_004_no_request_waits_on_a_hung_discovery() {
    // R-KEY-2: discovery hangs (the issuer accepts connections and never answers).
    let key = SigningKey::ec("embedded-1");
    let (hole, _task) = support::black_hole().await;
    let issuer = format!("http://{hole}");
    let mut options = quick();
    options.fetch.timeout = Duration::from_secs(20);
    let app = protect(
        Issuer::new(&issuer)
            .local_keys(local(&key))
            .jwks_options(options),
    );

    // Start a discovery that will hang, in the background.
    let stranger = SigningKey::ec("unknown-kid");
    let hung = {
        let (app, token) = (app.clone(), stranger.sign(&claims(&issuer, RESOURCE)));
        tokio::spawn(async move { call(&app, "/mcp", Some(&token)).await })
    };
    tokio::time::sleep(ms(100)).await;
    // Requests with the local key do not wait for it.
    let token = key.sign(&claims(&issuer, RESOURCE));
    let answer =
        tokio::time::timeout(Duration::from_secs(5), call(&app, "/mcp", Some(&token))).await;
    assert_eq!(answer.map(|a| a.status).ok(), Some(StatusCode::OK));
    assert!(!hung.is_finished(), "the discovery is still hanging");
    hung.abort();
}

#[tokio::test]
async fn discovery_is_lazy_and_the_first_request_fetches_once() {
    // R-KEY-2: nothing is fetched when the stack is built.
    let key = SigningKey::rsa("k1");
    let idp = TestIdp::start(&[&key]).await;
    let app = protect(Issuer::new(&idp.issuer).jwks_options(quick()));
    tokio::time::sleep(ms(50)).await;
    assert_eq!((idp.counters().discovery(), idp.counters().jwks()), (0, 0));
    let token = key.sign(&claims(&idp.issuer, RESOURCE));
    assert_eq!(
        call(&app, "/mcp", Some(&token)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, "/mcp", Some(&token)).await.status,
        StatusCode::OK
    );
    assert_eq!(idp.counters().oidc.load(Ordering::SeqCst), 1);
    assert_eq!(idp.counters().jwks(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_first_requests_cause_one_discovery_and_one_jwks_fetch() {
    // R-KEY-3 single flight
    let key = SigningKey::ec("k1");
    let idp = TestIdp::start(&[&key]).await;
    idp.switches().delay_ms.store(100, Ordering::SeqCst);
    let app = protect(Issuer::new(&idp.issuer).jwks_options(quick()));
    let token = key.sign(&claims(&idp.issuer, RESOURCE));
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let (app, token) = (app.clone(), token.clone());
            tokio::spawn(async move { call(&app, "/mcp", Some(&token)).await.status })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.ok(), Some(StatusCode::OK));
    }
    assert_eq!(
        idp.counters().rfc8414.load(Ordering::SeqCst),
        1,
        "one RFC 8414 attempt (404)"
    );
    assert_eq!(
        idp.counters().oidc.load(Ordering::SeqCst),
        1,
        "one OIDC discovery"
    );
    assert_eq!(idp.counters().jwks(), 1, "one JWKS fetch");
}

#[tokio::test]
async fn rfc8414_is_tried_first_with_the_path_inserted_url() {
    // R-KEY-2: issuer with a path; RFC 8414 form first, OIDC form when it is absent.
    let key = SigningKey::ec("k1");
    let idp = TestIdp::start_with_path(&[&key], "/realms/a").await;
    idp.switches().serve_rfc8414.store(true, Ordering::SeqCst);
    let app = protect(Issuer::new(&idp.issuer).jwks_options(quick()));
    let token = key.sign(&claims(&idp.issuer, RESOURCE));
    assert_eq!(
        call(&app, "/mcp", Some(&token)).await.status,
        StatusCode::OK
    );
    assert_eq!(idp.counters().rfc8414.load(Ordering::SeqCst), 1);
    assert_eq!(idp.counters().oidc.load(Ordering::SeqCst), 0);

    let idp = TestIdp::start_with_path(&[&key], "/realms/b").await;
    let app = protect(Issuer::new(&idp.issuer).jwks_options(quick()));
    let token = key.sign(&claims(&idp.issuer, RESOURCE));
    assert_eq!(
        call(&app, "/mcp", Some(&token)).await.status,
        StatusCode::OK
    );
    assert_eq!(idp.counters().rfc8414.load(Ordering::SeqCst), 1);
    assert_eq!(idp.counters().oidc.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_discovery_document_naming_another_issuer_is_not_used() {
    // R-KEY-2: the document's issuer must equal the configured one exactly.
    let key = SigningKey::ec("k1");
    let idp = TestIdp::start(&[&key]).await;
    idp.switches().wrong_issuer.store(true, Ordering::SeqCst);
    let app = protect(Issuer::new(&idp.issuer).jwks_options(quick()));
    let answer = call(
        &app,
        "/mcp",
        Some(&key.sign(&claims(&idp.issuer, RESOURCE))),
    )
    .await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        idp.counters().jwks(),
        0,
        "no key set fetched from an unverified document"
    );
}

#[tokio::test]
async fn an_explicit_jwks_uri_still_checks_iss() {
    // R-KEY-2: configuring jwks_uri never disables the iss check.
    let key = SigningKey::ec("k1");
    let idp = TestIdp::start(&[&key]).await;
    let app = protect_jwks(&idp, quick());
    let good = key.sign(&claims(&idp.issuer, RESOURCE));
    assert_eq!(call(&app, "/mcp", Some(&good)).await.status, StatusCode::OK);
    assert_eq!(
        idp.counters().discovery(),
        0,
        "no discovery when jwks_uri is given"
    );
    let mut foreign = claims(&idp.issuer, RESOURCE);
    foreign["iss"] = json!("https://evil.example.com");
    let answer = call(&app, "/mcp", Some(&key.sign(&foreign))).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{answer:?}");
}

#[tokio::test]
async fn key_rotation_accepts_the_new_kid_after_one_refresh() {
    // R-KEY-3
    let old = SigningKey::ec("old");
    let new = SigningKey::ec("new");
    let idp = TestIdp::start(&[&old]).await;
    let app = protect_jwks(&idp, quick());
    assert_eq!(status(&app, &old, &idp.issuer).await, StatusCode::OK);
    idp.set_keys(&[&new]);
    tokio::time::sleep(ms(350)).await; // past the kid-miss cool-down
    let answer = call(
        &app,
        "/mcp",
        Some(&new.sign(&claims(&idp.issuer, RESOURCE))),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(idp.counters().jwks(), 2, "exactly one refresh");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kid_miss_flood_fetches_at_most_once_per_cooldown() {
    // R-KEY-3: unknown kids refresh at most once per cool-down and fail fast meanwhile.
    let key = SigningKey::ec("real");
    let idp = TestIdp::start(&[&key]).await;
    let mut options = quick();
    options.kid_miss_cooldown = Duration::from_secs(30);
    let app = protect_jwks(&idp, options);
    assert_eq!(status(&app, &key, &idp.issuer).await, StatusCode::OK);
    let attacker = SigningKey::ec("x");
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    let tasks: Vec<_> = (0..300)
        .map(|i| {
            header.kid = Some(format!("random-{i}"));
            let token = attacker.sign_with(header.clone(), &claims(&idp.issuer, RESOURCE));
            let app = app.clone();
            tokio::spawn(async move { call(&app, "/mcp", Some(&token)).await })
        })
        .collect();
    for task in tasks {
        let answer = task.await.expect("task");
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert!(answer.description().contains("kid"), "{answer:?}");
    }
    assert_eq!(
        idp.counters().jwks(),
        1,
        "inside the cool-down no refresh at all"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_cooldown_a_kid_miss_flood_shares_one_refresh() {
    // R-KEY-3: at most one refresh per cool-down, however long the flood lasts.
    let key = SigningKey::ec("real");
    let idp = TestIdp::start(&[&key]).await;
    let cooldown = Duration::from_secs(1);
    let mut options = quick();
    options.kid_miss_cooldown = cooldown;
    let app = protect_jwks(&idp, options);
    let good = key.sign(&claims(&idp.issuer, RESOURCE));
    assert_eq!(call(&app, "/mcp", Some(&good)).await.status, StatusCode::OK);
    let attacker = SigningKey::ec("x");
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    let tokens: Vec<String> = (0..200)
        .map(|i| {
            header.kid = Some(format!("random-{i}"));
            attacker.sign_with(header.clone(), &claims(&idp.issuer, RESOURCE))
        })
        .collect();
    tokio::time::sleep(cooldown + ms(50)).await;
    let started = std::time::Instant::now();
    let tasks: Vec<_> = tokens
        .into_iter()
        .map(|token| {
            let app = app.clone();
            tokio::spawn(async move { call(&app, "/mcp", Some(&token)).await.status })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.ok(), Some(StatusCode::UNAUTHORIZED));
    }
    let periods = 1 + started.elapsed().as_millis() / cooldown.as_millis();
    let refreshes = idp.counters().jwks() - 1;
    assert!(
        refreshes >= 1,
        "the first miss after the cool-down refreshes"
    );
    assert!(
        refreshes as u128 <= periods,
        "{refreshes} refreshes in {periods} cool-down periods"
    );
}

#[tokio::test]
async fn idp_down_gives_503_with_retry_after_and_recovers_without_restart() {
    // R-KEY-5, R-KEY-2 back-off
    let key = SigningKey::ec("k1");
    let idp = TestIdp::start(&[&key]).await;
    idp.switches().down.store(true, Ordering::SeqCst);
    let app = protect_jwks(&idp, quick());
    let token = key.sign(&claims(&idp.issuer, RESOURCE));
    let answer = call(&app, "/mcp", Some(&token)).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    let retry_after: u64 = answer.header("retry-after").parse().unwrap_or(0);
    assert!(retry_after >= 1, "{answer:?}");
    assert!(
        answer.challenge().is_empty(),
        "a 503 carries no invalid_token challenge"
    );
    // Inside the back-off: fail fast, do not ask the IdP again.
    let fetches = idp.counters().jwks();
    assert_eq!(
        call(&app, "/mcp", Some(&token)).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(idp.counters().jwks(), fetches);
    // IdP back: after the back-off the same stack recovers.
    idp.switches().down.store(false, Ordering::SeqCst);
    tokio::time::sleep(ms(1100)).await;
    assert_eq!(
        call(&app, "/mcp", Some(&token)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn idp_that_refuses_connections_gives_503() {
    // R-KEY-5
    let key = SigningKey::ec("k1");
    let idp = TestIdp::start(&[&key]).await;
    idp.stop();
    tokio::time::sleep(ms(50)).await;
    let app = protect_jwks(&idp, quick());
    let answer = call(
        &app,
        "/mcp",
        Some(&key.sign(&claims(&idp.issuer, RESOURCE))),
    )
    .await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{answer:?}");
    assert!(
        !answer.description().contains("127.0.0.1"),
        "no internals in the description: {answer:?}"
    );
}

#[tokio::test]
async fn a_hung_idp_times_out_into_503() {
    // R-KEY-4: every fetch has a timeout.
    let key = SigningKey::ec("k1");
    let (hole, _task) = support::black_hole().await;
    let issuer = format!("http://{hole}");
    let mut options = quick();
    options.fetch.timeout = ms(400);
    let app = protect(
        Issuer::new(&issuer)
            .jwks_uri(format!("{issuer}/jwks"))
            .jwks_options(options),
    );
    let token = key.sign(&claims(&issuer, RESOURCE));
    let answer =
        tokio::time::timeout(Duration::from_secs(5), call(&app, "/mcp", Some(&token))).await;
    assert_eq!(
        answer.map(|a| a.status).ok(),
        Some(StatusCode::SERVICE_UNAVAILABLE)
    );
}

#[tokio::test]
async fn stale_keys_serve_while_the_refresh_fails() {
    // R-KEY-3 stale-if-error, reads never wait on a refresh.
    let key = SigningKey::ec("k1");
    let idp = TestIdp::start(&[&key]).await;
    idp.set_cache_control(Some("max-age=0"));
    let mut options = quick();
    options.min_ttl = ms(100);
    let app = protect_jwks(&idp, options);
    let token = key.sign(&claims(&idp.issuer, RESOURCE));
    assert_eq!(
        call(&app, "/mcp", Some(&token)).await.status,
        StatusCode::OK
    );
    idp.switches().down.store(true, Ordering::SeqCst);
    tokio::time::sleep(ms(200)).await;
    for _ in 0..3 {
        assert_eq!(
            call(&app, "/mcp", Some(&token)).await.status,
            StatusCode::OK
        );
        tokio::time::sleep(ms(100)).await;
    }
    assert!(idp.counters().jwks() >= 2, "a background refresh was tried");
}

#[tokio::test]
async fn cache_control_sets_the_ttl_within_floor_and_ceiling() {
    // R-KEY-3: max-age=3600 is clamped to the 1 s ceiling, so a refresh follows.
    let key = SigningKey::ec("k1");
    let idp = TestIdp::start(&[&key]).await;
    idp.set_cache_control(Some("public, max-age=3600"));
    let mut options = quick();
    options.min_ttl = ms(100);
    options.max_ttl = ms(1000);
    let app = protect_jwks(&idp, options.clone());
    let token = key.sign(&claims(&idp.issuer, RESOURCE));
    assert_eq!(
        call(&app, "/mcp", Some(&token)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, "/mcp", Some(&token)).await.status,
        StatusCode::OK
    );
    assert_eq!(idp.counters().jwks(), 1, "fresh within the TTL");
    tokio::time::sleep(ms(1100)).await;
    assert_eq!(
        call(&app, "/mcp", Some(&token)).await.status,
        StatusCode::OK
    );
    tokio::time::sleep(ms(100)).await;
    assert_eq!(
        idp.counters().jwks(),
        2,
        "refreshed in the background after the ceiling"
    );

    // max-age=0 is raised to the floor: no refresh inside it.
    let idp = TestIdp::start(&[&key]).await;
    idp.set_cache_control(Some("no-store"));
    options.min_ttl = Duration::from_secs(60);
    options.max_ttl = Duration::from_secs(120);
    let app = protect_jwks(&idp, options);
    let token = key.sign(&claims(&idp.issuer, RESOURCE));
    for _ in 0..3 {
        assert_eq!(
            call(&app, "/mcp", Some(&token)).await.status,
            StatusCode::OK
        );
        tokio::time::sleep(ms(50)).await;
    }
    assert_eq!(idp.counters().jwks(), 1);
}

#[tokio::test]
async fn an_oversized_key_set_is_refused() {
    // R-KEY-3, R-KEY-4 body cap
    let key = SigningKey::ec("k1");
    let idp = TestIdp::start(&[&key]).await;
    idp.pad_jwks(64 * 1024);
    let mut options = quick();
    options.fetch.max_body_bytes = 16 * 1024;
    let app = protect_jwks(&idp, options);
    let answer = call(
        &app,
        "/mcp",
        Some(&key.sign(&claims(&idp.issuer, RESOURCE))),
    )
    .await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        answer.description().contains("could not be fetched"),
        "{answer:?}"
    );
}

#[tokio::test]
async fn a_bad_key_in_the_set_is_skipped_alone() {
    // R-KEY-3
    let key = SigningKey::ec("good");
    let idp = TestIdp::start(&[]).await;
    idp.set_jwks(
        json!({"keys": [{"kty": "EC", "kid": "broken", "crv": "P-256", "x": "!!"}, key.jwk()]}),
    );
    let app = protect_jwks(&idp, quick());
    assert_eq!(status(&app, &key, &idp.issuer).await, StatusCode::OK);
}

#[tokio::test]
async fn redirects_to_another_origin_are_not_followed() {
    // R-KEY-4
    let key = SigningKey::ec("k1");
    let other = TestIdp::start(&[&key]).await;
    let idp = TestIdp::start(&[&key]).await;
    idp.redirect_to(&other.jwks_uri());
    let jwks_uri = format!("http://{}/moved", idp.addr);
    let app = protect(
        Issuer::new(&idp.issuer)
            .jwks_uri(jwks_uri)
            .jwks_options(quick()),
    );
    let answer = call(
        &app,
        "/mcp",
        Some(&key.sign(&claims(&idp.issuer, RESOURCE))),
    )
    .await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        other.counters().jwks(),
        0,
        "the other origin was never asked"
    );

    // The same origin is followed.
    idp.redirect_to(&idp.jwks_uri());
    let app = protect(
        Issuer::new(&idp.issuer)
            .jwks_uri(format!("http://{}/moved", idp.addr))
            .jwks_options(quick()),
    );
    assert_eq!(status(&app, &key, &idp.issuer).await, StatusCode::OK);
}

#[tokio::test]
async fn local_keys_update_at_run_time() {
    // R-KEY-1: the embedding program rotates its keys through the handle.
    let key = SigningKey::ec("rotated-in");
    let keys = LocalKeys::new(KeySet::default());
    let issuer = "https://embedded.example.com";
    let app = protect(
        Issuer::new(issuer)
            .local_keys(keys.clone())
            .discovery(false),
    );
    let token = key.sign(&claims(issuer, RESOURCE));
    let answer = call(&app, "/mcp", Some(&token)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{answer:?}");
    keys.replace(
        KeySet::from_jwks(support::signing::jwks(&[&key]).to_string().as_bytes()).expect("jwks"),
    );
    assert_eq!(
        call(&app, "/mcp", Some(&token)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn local_tier_wins_over_jwks_for_the_same_kid() {
    // R-KEY-1: tiers are asked in order; the local tier answers without any fetch.
    let key = SigningKey::ec("shared");
    let idp = TestIdp::start(&[&key]).await;
    let app = protect(
        Issuer::new(&idp.issuer)
            .local_keys(local(&key))
            .jwks_uri(idp.jwks_uri())
            .jwks_options(quick()),
    );
    assert_eq!(status(&app, &key, &idp.issuer).await, StatusCode::OK);
    assert_eq!(idp.counters().jwks(), 0);
}

#[tokio::test]
async fn discovery_falls_back_to_oidc_when_the_rfc8414_url_answers_garbage() {
    // R-KEY-2: both forms are tried; a catch-all HTML page at the first is no dead end.
    let key = SigningKey::ec("k1");
    let idp = TestIdp::start(&[&key]).await;
    idp.switches().rfc8414_html.store(true, Ordering::SeqCst);
    let app = protect(Issuer::new(&idp.issuer).jwks_options(quick()));
    let token = key.sign(&claims(&idp.issuer, RESOURCE));
    assert_eq!(
        call(&app, "/mcp", Some(&token)).await.status,
        StatusCode::OK
    );
    assert_eq!(idp.counters().oidc.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_token_of_a_foreign_issuer_costs_no_fetch() {
    // R-ISS-1 / R-KEY-2: with one trusted issuer, a token naming another is refused
    // before any key lookup.
    let key = SigningKey::ec("k1");
    let idp = TestIdp::start(&[&key]).await;
    let app = protect(Issuer::new(&idp.issuer).jwks_options(quick()));
    let answer = call(
        &app,
        "/mcp",
        Some(&SigningKey::ec("other").sign(&claims("https://evil.example.com", RESOURCE))),
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(answer.description().contains("not trusted"), "{answer:?}");
    assert_eq!((idp.counters().discovery(), idp.counters().jwks()), (0, 0));
}

#[tokio::test]
async fn an_unknown_kid_while_the_idp_is_down_is_503_not_401() {
    // R-KEY-5: a rotated key cannot be fetched because the IdP is down; the client must
    // not throw its good token away.
    let old = SigningKey::ec("old");
    let new = SigningKey::ec("new");
    let idp = TestIdp::start(&[&old]).await;
    // The cool-down (1 s) outlasts the back-off (300 ms): the retry after the
    // back-off must ask the IdP again, not fail as an unknown kid.
    let mut options = quick();
    options.kid_miss_cooldown = Duration::from_secs(1);
    let app = protect_jwks(&idp, options);
    assert_eq!(status(&app, &old, &idp.issuer).await, StatusCode::OK);
    tokio::time::sleep(ms(1050)).await; // past the cool-down
    idp.set_keys(&[&new]);
    idp.switches().down.store(true, Ordering::SeqCst);
    let token = new.sign(&claims(&idp.issuer, RESOURCE));
    for _ in 0..2 {
        let answer = call(&app, "/mcp", Some(&token)).await;
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{answer:?}");
        tokio::time::sleep(ms(350)).await; // past the back-off, inside the cool-down
    }
    idp.switches().down.store(false, Ordering::SeqCst);
    tokio::time::sleep(ms(700)).await;
    assert_eq!(
        call(&app, "/mcp", Some(&token)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn an_empty_key_set_does_not_replace_the_last_good_one() {
    // R-KEY-3 stale-if-error: a set with no usable key is a failed refresh.
    let key = SigningKey::ec("k1");
    let idp = TestIdp::start(&[&key]).await;
    let mut options = quick();
    options.min_ttl = ms(100);
    options.max_ttl = ms(100);
    let app = protect_jwks(&idp, options);
    let token = key.sign(&claims(&idp.issuer, RESOURCE));
    assert_eq!(
        call(&app, "/mcp", Some(&token)).await.status,
        StatusCode::OK
    );
    idp.set_jwks(json!({"keys": []}));
    tokio::time::sleep(ms(150)).await;
    assert_eq!(
        call(&app, "/mcp", Some(&token)).await.status,
        StatusCode::OK
    ); // starts the refresh
    tokio::time::sleep(ms(100)).await;
    assert!(idp.counters().jwks() >= 2, "the refresh ran");
    assert_eq!(
        call(&app, "/mcp", Some(&token)).await.status,
        StatusCode::OK,
        "the last good set still answers"
    );
}
