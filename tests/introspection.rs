//! Opaque tokens by RFC 7662 introspection, and the verifier chain (R-OPQ-1, R-OPQ-2,
//! R-AUD-6, R-ID-1, R-ISS-1), against a real introspection endpoint on 127.0.0.1.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use http::StatusCode;
use mcp_gatekeeper::keys::JwksOptions;
use mcp_gatekeeper::{
    ClientAuth, FetchOptions, Introspection, Issuer, Principal, ResourceServer, TokenCacheOptions,
};
use serde_json::{Value, json};
use support::{INTROSPECTION_CLIENT, SigningKey, TestIdp, call, claims, now};

const RESOURCE: &str = "https://mcp.example.com/mcp";

fn introspection(idp: &TestIdp) -> Introspection {
    Introspection::new(INTROSPECTION_CLIENT.0, INTROSPECTION_CLIENT.1)
        .endpoint(idp.introspection_uri())
        .fetch_options(FetchOptions {
            timeout: Duration::from_millis(1500),
            ..FetchOptions::default()
        })
}

fn quick() -> JwksOptions {
    JwksOptions {
        min_backoff: Duration::from_millis(300),
        max_backoff: Duration::from_millis(600),
        ..JwksOptions::default()
    }
}

/// The app: `/mcp` answers with the whole principal.
fn protect(issuers: Vec<Issuer>) -> Router {
    let mut builder = ResourceServer::builder(RESOURCE);
    for issuer in issuers {
        builder = builder.issuer(issuer);
    }
    async fn show(principal: Principal) -> axum::Json<Value> {
        axum::Json(json!({
            "sub": principal.subject(),
            "iss": principal.issuer(),
            "aud": principal.audiences(),
            "client_id": principal.client_id(),
            "scopes": principal.scopes().iter().collect::<Vec<_>>(),
            "exp": principal.expires_at().map(|t| t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)),
            "kind": format!("{:?}", principal.kind()),
            "claims": principal.claims(),
        }))
    }
    Router::new()
        .route("/mcp", get(show))
        .layer(builder.build().expect("valid").layer())
}

fn active(issuer: &str) -> Value {
    json!({
        "active": true,
        "iss": issuer,
        "sub": "user-1",
        "aud": RESOURCE,
        "client_id": "client-1",
        "scope": "mcp:read",
        "exp": now() + 600,
        "tenant": {"id": 7},
    })
}

#[tokio::test]
async fn an_active_opaque_token_is_accepted_with_every_field_kept() {
    // R-OPQ-1, R-ID-1
    let idp = TestIdp::start(&[]).await;
    idp.set_introspection("ya29.opaque-token", active(&idp.issuer));
    let app = protect(vec![
        Issuer::new(&idp.issuer)
            .introspection(introspection(&idp))
            .discovery(false)
            .introspect_jwts(true),
    ]);
    let answer = call(&app, "/mcp", Some("ya29.opaque-token")).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body["kind"], "Introspected");
    assert_eq!(answer.body["sub"], "user-1");
    assert_eq!(
        answer.body["claims"]["tenant"],
        json!({"id": 7}),
        "custom fields survive"
    );
}

#[tokio::test]
async fn an_inactive_token_is_401() {
    // R-OPQ-1
    let idp = TestIdp::start(&[]).await;
    let app = protect(vec![
        Issuer::new(&idp.issuer)
            .introspection(introspection(&idp))
            .introspect_jwts(true),
    ]);
    let answer = call(&app, "/mcp", Some("revoked-token")).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(answer.description().contains("not active"), "{answer:?}");
    // The answer is remembered (by the token's SHA-256): a client repeating the
    // token costs the provider one call, and is refused the same way.
    let again = call(&app, "/mcp", Some("revoked-token")).await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);
    assert!(again.description().contains("not active"), "{again:?}");
    assert_eq!(idp.counters().introspection.load(Ordering::SeqCst), 1);
    // With the memory off, every request asks.
    let asking = protect(vec![
        Issuer::new(&idp.issuer)
            .introspection(introspection(&idp).inactive_cache_ttl(Duration::ZERO))
            .introspect_jwts(true),
    ]);
    call(&asking, "/mcp", Some("revoked-token")).await;
    call(&asking, "/mcp", Some("revoked-token")).await;
    assert_eq!(idp.counters().introspection.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_with_one_token_share_one_introspection() {
    // R-OPQ-1
    let idp = TestIdp::start(&[]).await;
    idp.set_introspection("shared", active(&idp.issuer));
    idp.switches().delay_ms.store(100, Ordering::SeqCst);
    let app = protect(vec![
        Issuer::new(&idp.issuer)
            .introspection(introspection(&idp))
            .introspect_jwts(true),
    ]);
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { call(&app, "/mcp", Some("shared")).await.status })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.ok(), Some(StatusCode::OK));
    }
    assert_eq!(idp.counters().introspection.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_disabled_result_cache_introspects_every_request() {
    // Issue 6: the result cache follows the token cache's rules, off switch included.
    let idp = TestIdp::start(&[]).await;
    idp.set_introspection("tok", active(&idp.issuer));
    let app = protect(vec![
        Issuer::new(&idp.issuer)
            .introspection(introspection(&idp).cache(TokenCacheOptions::disabled()))
            .introspect_jwts(true),
    ]);
    for _ in 0..5 {
        assert_eq!(call(&app, "/mcp", Some("tok")).await.status, StatusCode::OK);
    }
    assert_eq!(idp.counters().introspection.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn the_result_cache_stays_within_its_bounds() {
    let idp = TestIdp::start(&[]).await;
    let tokens: Vec<String> = (0..60).map(|n| format!("opaque-{n}")).collect();
    for token in &tokens {
        idp.set_introspection(token, active(&idp.issuer));
    }
    let bounds = TokenCacheOptions {
        max_entries: 10,
        max_bytes: 64 * 1024,
        max_ttl: Duration::from_secs(60),
    };
    let server = ResourceServer::builder(RESOURCE)
        .issuer(
            Issuer::new(&idp.issuer)
                .introspection(introspection(&idp).cache(bounds))
                .introspect_jwts(true),
        )
        .build()
        .expect("valid");
    let app = support::app(server.layer());
    for token in &tokens {
        assert_eq!(call(&app, "/mcp", Some(token)).await.status, StatusCode::OK);
    }
    let usage = server.token_cache_usage().await;
    assert!(usage.entries > 0 && usage.entries <= 10, "{usage:?}");
    assert!(usage.bytes <= 64 * 1024, "{usage:?}");
    // A cached token is answered without a call; a forgotten one asks again.
    let calls = idp.counters().introspection.load(Ordering::SeqCst);
    let _ = call(&app, "/mcp", Some(&tokens[59])).await;
    let _ = call(&app, "/mcp", Some(&tokens[59])).await;
    let after_hits = idp.counters().introspection.load(Ordering::SeqCst);
    assert!(after_hits <= calls + 1, "{calls} then {after_hits}");
    server.forget_token(&tokens[59]).await;
    let _ = call(&app, "/mcp", Some(&tokens[59])).await;
    assert_eq!(
        idp.counters().introspection.load(Ordering::SeqCst),
        after_hits + 1
    );
}

#[tokio::test]
async fn results_are_cached_no_longer_than_the_maximum_or_the_tokens_exp() {
    // R-OPQ-1: a revocation is seen once the cache entry expires.
    let idp = TestIdp::start(&[]).await;
    idp.set_introspection("tok", active(&idp.issuer));
    let config = introspection(&idp).max_cache_ttl(Duration::from_millis(300));
    let app = protect(vec![
        Issuer::new(&idp.issuer)
            .introspection(config)
            .introspect_jwts(true),
    ]);
    assert_eq!(call(&app, "/mcp", Some("tok")).await.status, StatusCode::OK);
    assert_eq!(call(&app, "/mcp", Some("tok")).await.status, StatusCode::OK);
    assert_eq!(
        idp.counters().introspection.load(Ordering::SeqCst),
        1,
        "cached"
    );
    idp.set_introspection("tok", json!({"active": false}));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        call(&app, "/mcp", Some("tok")).await.status,
        StatusCode::UNAUTHORIZED,
        "revocation seen after the TTL"
    );

    // A token expiring in 2 s is not served from the cache after that. (Not 1 s: the
    // clock may tick to exp between setting it and the first call.)
    let mut short = active(&idp.issuer);
    short["exp"] = json!(now() + 2);
    idp.set_introspection("short", short);
    let app = protect(vec![
        Issuer::new(&idp.issuer)
            .introspection(introspection(&idp))
            .introspect_jwts(true),
    ]);
    assert_eq!(
        call(&app, "/mcp", Some("short")).await.status,
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let answer = call(&app, "/mcp", Some("short")).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{answer:?}");
    assert!(answer.description().contains("expired"), "{answer:?}");
}

#[tokio::test]
async fn an_unreachable_introspection_endpoint_is_503_and_recovers() {
    // R-OPQ-1, R-KEY-5
    let idp = TestIdp::start(&[]).await;
    idp.set_introspection("tok", active(&idp.issuer));
    idp.switches().down.store(true, Ordering::SeqCst);
    let app = protect(vec![
        Issuer::new(&idp.issuer)
            .introspection(introspection(&idp))
            .introspect_jwts(true),
    ]);
    let answer = call(&app, "/mcp", Some("tok")).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(!answer.header("retry-after").is_empty());
    idp.switches().down.store(false, Ordering::SeqCst);
    assert_eq!(call(&app, "/mcp", Some("tok")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn client_secret_basic_and_post_both_authenticate() {
    // R-OPQ-1: the call is authenticated; wrong credentials are an operator problem (503).
    let idp = TestIdp::start(&[]).await;
    idp.set_introspection("tok", active(&idp.issuer));
    for auth in [ClientAuth::ClientSecretBasic, ClientAuth::ClientSecretPost] {
        let app = protect(vec![
            Issuer::new(&idp.issuer)
                .introspection(introspection(&idp).auth(auth))
                .introspect_jwts(true),
        ]);
        assert_eq!(
            call(&app, "/mcp", Some("tok")).await.status,
            StatusCode::OK,
            "{auth:?}"
        );
    }
    let wrong =
        Introspection::new(INTROSPECTION_CLIENT.0, "wrong").endpoint(idp.introspection_uri());
    let app = protect(vec![
        Issuer::new(&idp.issuer)
            .introspection(wrong)
            .introspect_jwts(true),
    ]);
    let answer = call(&app, "/mcp", Some("tok")).await;
    // Not the token's fault: the server cannot verify tokens now (503, logged as a
    // credentials problem), never a 401 that makes the client drop a good token.
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{answer:?}");
    assert!(answer.description().contains("credentials"), "{answer:?}");
    assert!(
        !answer.body.to_string().contains("wrong"),
        "no credentials in the answer"
    );
}

#[tokio::test]
async fn introspected_tokens_are_audience_checked() {
    // R-AUD-6
    let idp = TestIdp::start(&[]).await;
    let mut foreign = active(&idp.issuer);
    foreign["aud"] = json!("https://other.example.com/mcp");
    idp.set_introspection("foreign", foreign);
    let mut none = active(&idp.issuer);
    none.as_object_mut().map(|o| o.remove("aud"));
    idp.set_introspection("no-aud", none);
    let app = protect(vec![
        Issuer::new(&idp.issuer)
            .introspection(introspection(&idp))
            .introspect_jwts(true),
    ]);
    assert_eq!(
        call(&app, "/mcp", Some("foreign")).await.status,
        StatusCode::UNAUTHORIZED
    );
    let answer = call(&app, "/mcp", Some("no-aud")).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(answer.description().contains("RFC 8707"), "{answer:?}");
}

#[tokio::test]
async fn a_jwt_and_an_introspected_token_of_one_grant_give_equal_principals() {
    // R-ID-1, R-OPQ-2: JWTs take the JWT path, opaque tokens the introspection path.
    let key = SigningKey::ec("k1");
    let idp = TestIdp::start(&[&key]).await;
    let grant = claims(&idp.issuer, RESOURCE);
    let mut introspected = grant.clone();
    introspected["active"] = json!(true);
    idp.set_introspection("opaque-of-the-same-grant", introspected);
    let app = protect(vec![
        Issuer::new(&idp.issuer)
            .jwks_uri(idp.jwks_uri())
            .introspection(introspection(&idp)),
    ]);
    let jwt = call(&app, "/mcp", Some(&key.sign(&grant))).await;
    let opaque = call(&app, "/mcp", Some("opaque-of-the-same-grant")).await;
    assert_eq!(
        (jwt.status, opaque.status),
        (StatusCode::OK, StatusCode::OK),
        "{jwt:?} {opaque:?}"
    );
    assert_eq!(
        idp.counters().introspection.load(Ordering::SeqCst),
        1,
        "the JWT was not introspected"
    );
    let strip = |mut v: Value| {
        v["kind"] = Value::Null;
        v["claims"].as_object_mut().map(|c| c.remove("active"));
        v
    };
    assert_eq!(jwt.body["kind"], "Jwt");
    assert_eq!(opaque.body["kind"], "Introspected");
    assert_eq!(strip(jwt.body), strip(opaque.body));
}

#[tokio::test]
async fn an_untrusted_jwt_issuer_costs_no_outbound_call() {
    // R-ISS-1
    let idp = TestIdp::start(&[]).await;
    let app = protect(vec![
        Issuer::new(&idp.issuer)
            .introspection(introspection(&idp))
            .jwks_options(quick()),
    ]);
    let stranger = SigningKey::ec("x").sign(&claims("https://evil.example.com", RESOURCE));
    let answer = call(&app, "/mcp", Some(&stranger)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let counters = idp.counters();
    assert_eq!(
        (
            counters.introspection.load(Ordering::SeqCst),
            counters.discovery(),
            counters.jwks()
        ),
        (0, 0, 0)
    );
}

#[tokio::test]
async fn the_introspection_endpoint_is_discovered_lazily() {
    // R-OPQ-1: endpoint from the discovery document, on first need.
    let idp = TestIdp::start(&[]).await;
    idp.set_introspection("tok", active(&idp.issuer));
    let config = Introspection::new(INTROSPECTION_CLIENT.0, INTROSPECTION_CLIENT.1);
    let app = protect(vec![
        Issuer::new(&idp.issuer)
            .introspection(config)
            .jwks_options(quick()),
    ]);
    assert_eq!(idp.counters().discovery(), 0);
    assert_eq!(call(&app, "/mcp", Some("tok")).await.status, StatusCode::OK);
    assert_eq!(call(&app, "/mcp", Some("tok")).await.status, StatusCode::OK);
    assert_eq!(idp.counters().oidc.load(Ordering::SeqCst), 1);
    assert_eq!(idp.counters().introspection.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn jwts_of_an_issuer_can_be_sent_to_introspection() {
    // R-OPQ-2: which path a JWT takes is configurable per issuer.
    let key = SigningKey::ec("k1");
    let idp = TestIdp::start(&[&key]).await;
    let token = key.sign(&claims(&idp.issuer, RESOURCE));
    let mut answer = claims(&idp.issuer, RESOURCE);
    answer["active"] = json!(true);
    idp.set_introspection(&token, answer);
    let app = protect(vec![
        Issuer::new(&idp.issuer)
            .introspection(introspection(&idp))
            .introspect_jwts(true),
    ]);
    let answer = call(&app, "/mcp", Some(&token)).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body["kind"], "Introspected");
    assert_eq!(idp.counters().jwks(), 0);
}

#[tokio::test]
async fn refresh_id_and_key_bound_tokens_are_refused_even_when_active() {
    // R-JWT-4, R-JWT-5 on the introspection path: some servers say active for them.
    let idp = TestIdp::start(&[]).await;
    let cases = [
        ("refresh", json!({"token_use": "refresh_token"})),
        ("hydra-refresh", json!({"token_type": "refresh_token"})),
        ("id-token", json!({"nonce": "n-0S6_WzA2Mj"})),
        (
            "dpop-bound",
            json!({"cnf": {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}}),
        ),
    ];
    for (token, extra) in &cases {
        let mut answer = active(&idp.issuer);
        if let (Some(answer), Some(extra)) = (answer.as_object_mut(), extra.as_object()) {
            answer.extend(extra.clone());
        }
        idp.set_introspection(token, answer);
    }
    let app = protect(vec![
        Issuer::new(&idp.issuer)
            .introspection(introspection(&idp))
            .introspect_jwts(true),
    ]);
    for (token, _) in &cases {
        let answer = call(&app, "/mcp", Some(token)).await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "{token}: {answer:?}"
        );
    }
}

#[tokio::test]
async fn client_secrets_and_shared_keys_never_appear_in_logs_or_answers() {
    // R-OPS-1, beyond tokens: the introspection client's secret, an HMAC secret.
    let idp = TestIdp::start(&[]).await;
    idp.set_introspection("tok", active(&idp.issuer));
    let (_guard, logs) = support::capture_logs();
    let wrong = "wrong-secret-value-0123456789";
    let rejected = protect(vec![
        Issuer::new(&idp.issuer)
            .introspection(
                Introspection::new(INTROSPECTION_CLIENT.0, wrong).endpoint(idp.introspection_uri()),
            )
            .introspect_jwts(true),
    ]);
    let mut answers = Vec::new();
    answers.push(call(&rejected, "/mcp", Some("tok")).await);
    let good = protect(vec![
        Issuer::new(&idp.issuer)
            .introspection(introspection(&idp))
            .introspect_jwts(true),
    ]);
    idp.switches().down.store(true, Ordering::SeqCst);
    answers.push(call(&good, "/mcp", Some("tok")).await);
    idp.switches().down.store(false, Ordering::SeqCst);
    let hmac_secret = b"shared-secret-of-32-bytes-000001";
    let hmac = protect(vec![
        Issuer::new("https://hmac.example.com")
            .algorithms([jsonwebtoken::Algorithm::HS256])
            .hmac_secret(hmac_secret.to_vec()),
    ]);
    let forged = support::signing::hmac_token(
        &json!({"alg": "HS256"}),
        &claims("https://hmac.example.com", RESOURCE),
        b"another-secret-of-32-bytes-00002",
    );
    answers.push(call(&hmac, "/mcp", Some(&forged)).await);
    assert_eq!(
        answers
            .iter()
            .map(|a| a.status.as_u16())
            .collect::<Vec<_>>(),
        [503, 503, 401]
    );
    let debug = format!(
        "{:?} {:?}",
        introspection(&idp),
        Issuer::new("https://hmac.example.com").hmac_secret(hmac_secret.to_vec())
    );
    let logs = String::from_utf8_lossy(&logs.lock().expect("logs")).into_owned();
    assert!(logs.contains("request refused"), "{logs}");
    let secrets = [
        wrong,
        INTROSPECTION_CLIENT.1,
        std::str::from_utf8(hmac_secret).expect("ascii"),
    ];
    for secret in secrets {
        for answer in &answers {
            let shown = format!("{:?} {}", answer.headers, answer.body);
            assert!(!shown.contains(secret), "{secret:?} in an answer");
        }
        assert!(!logs.contains(secret), "{secret:?} in the logs");
        assert!(!debug.contains(secret), "{secret:?} in Debug output");
    }
}
