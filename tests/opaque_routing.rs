//! Opaque tokens go only where they can have come from (R-GW-3), and an
//! introspection refusal that concerns one token is a 401, not an outage (R-ERR-1,
//! R-KEY-5): two real introspection endpoints on 127.0.0.1, counted.

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use http::StatusCode;
use mcp_gatekeeper::{FetchOptions, Introspection, Issuer, Principal, ResourceServer};
use serde_json::{Value, json};
use support::{INTROSPECTION_CLIENT, TestIdp, call, now};

const RESOURCE: &str = "https://mcp.example.com/mcp";

fn introspection(idp: &TestIdp) -> Introspection {
    Introspection::new(INTROSPECTION_CLIENT.0, INTROSPECTION_CLIENT.1)
        .endpoint(idp.introspection_uri())
}

fn active(issuer: &str, subject: &str) -> Value {
    json!({
        "active": true,
        "iss": issuer,
        "sub": subject,
        "aud": RESOURCE,
        "scope": "mcp:read",
        "exp": now() + 600,
    })
}

fn protect(issuers: Vec<Issuer>) -> Router {
    let mut builder = ResourceServer::builder(RESOURCE);
    for issuer in issuers {
        builder = builder.issuer(issuer);
    }
    async fn show(principal: Principal) -> axum::Json<Value> {
        axum::Json(json!({"sub": principal.subject(), "iss": principal.issuer()}))
    }
    Router::new()
        .route("/mcp", get(show))
        .layer(builder.build().expect("valid").layer())
}

fn calls(idp: &TestIdp) -> usize {
    idp.counters().introspection.load(Ordering::SeqCst)
}

#[tokio::test]
async fn an_introspection_refusal_about_the_token_is_401_and_one_about_us_or_the_provider_503() {
    let idp = TestIdp::start(&[]).await;
    let app = protect(vec![
        Issuer::new(&idp.issuer).introspection(introspection(&idp)),
    ]);
    let cases = [
        (
            "malformed",
            400,
            json!({"error": "invalid_request", "error_description": "x"}),
            401,
        ),
        ("blamed", 400, json!({"error": "invalid_token"}), 401),
        ("bare-400", 400, json!("nothing useful"), 401),
        ("our-client", 400, json!({"error": "invalid_client"}), 503),
        ("our-secret", 401, json!({"error": "invalid_client"}), 503),
        ("forbidden", 403, json!({}), 503),
        ("not-there", 404, json!({}), 503),
        ("broken", 500, json!({"error": "server_error"}), 503),
    ];
    for (token, status, body, expected) in cases {
        idp.refuse_introspection(token, status, body);
        let answer = call(&app, "/mcp", Some(token)).await;
        assert_eq!(answer.status.as_u16(), expected, "{token}: {answer:?}");
        if expected == 401 {
            assert_eq!(answer.body["error"], "invalid_token", "{token}");
            assert!(
                answer.description().contains("malformed"),
                "{token}: {answer:?}"
            );
            assert!(
                answer.header("retry-after").is_empty(),
                "{token}: no retry for a bad token"
            );
        } else {
            assert_eq!(answer.header("retry-after"), "2", "{token}");
        }
    }
    // A refusal to answer is not the provider's word on the token: not remembered
    // (some providers answer 400 for their own failures too).
    let before = calls(&idp);
    assert_eq!(
        call(&app, "/mcp", Some("malformed")).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(calls(&idp), before + 1);
}

#[tokio::test]
async fn tokens_that_present_themselves_as_jwts_but_are_malformed_never_reach_introspection() {
    let idp = TestIdp::start(&[]).await;
    let app = protect(vec![
        Issuer::new(&idp.issuer).introspection(introspection(&idp)),
    ]);
    for token in [
        "eyJ.eyJ.eyJ",
        "eyJhb.e30.sig",
        "eyJ-.x.y",
        // `{ "alg":"~~~"}` in standard base64: no `eyJ`, and not base64url.
        "eyAiYWxnIjoifn5+In0.e30.sig",
    ] {
        let answer = call(&app, "/mcp", Some(token)).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{token}");
        // On the JWT path or refused before it: either way, about a JWT, no call.
        assert!(answer.description().contains("JWT"), "{token}: {answer:?}");
    }
    assert_eq!(calls(&idp), 0, "a malformed JWT is not an opaque token");
    // Opaque tokens are introspected, three-part ones that do not present themselves
    // as JWTs (Google's ya29.c.… service-account tokens) included.
    for token in ["opaque-1", "ya29.c.b0AXv0zTM", "a.b.c"] {
        idp.set_introspection(token, active(&idp.issuer, "u"));
        let answer = call(&app, "/mcp", Some(token)).await;
        assert_eq!(answer.status, StatusCode::OK, "{token}");
    }
    assert_eq!(calls(&idp), 3);
}

#[tokio::test]
async fn an_issuers_opaque_token_costs_the_other_issuer_no_call() {
    let (a, b) = (TestIdp::start(&[]).await, TestIdp::start(&[]).await);
    a.set_introspection("ya29.a-token", active(&a.issuer, "of-a"));
    b.set_introspection("b-token", active(&b.issuer, "of-b"));
    let app = protect(vec![
        Issuer::new(&a.issuer).introspection(introspection(&a).token_prefix("ya29.")),
        Issuer::new(&b.issuer).introspection(introspection(&b)),
    ]);
    let answer = call(&app, "/mcp", Some("ya29.a-token")).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body["sub"], "of-a");
    assert_eq!(
        (calls(&a), calls(&b)),
        (1, 0),
        "A's token was shown to A alone"
    );
    let answer = call(&app, "/mcp", Some("b-token")).await;
    assert_eq!(answer.body["sub"], "of-b");
    assert_eq!(
        (calls(&a), calls(&b)),
        (1, 1),
        "B's token was shown to B alone"
    );
    // A predicate serves formats a prefix cannot tell.
    let c = TestIdp::start(&[]).await;
    c.set_introspection("tok-C-17", active(&c.issuer, "of-c"));
    let app = protect(vec![
        Issuer::new(&c.issuer)
            .introspection(introspection(&c).token_matches(|t| t.contains("-C-"))),
        Issuer::new(&b.issuer).introspection(introspection(&b)),
    ]);
    assert_eq!(
        call(&app, "/mcp", Some("tok-C-17")).await.body["sub"],
        "of-c"
    );
    assert_eq!((calls(&c), calls(&b)), (1, 1));
}

#[tokio::test]
async fn a_thousand_junk_tokens_cost_at_most_a_thousand_calls_and_none_to_an_issuer_they_do_not_match()
 {
    let (a, b) = (TestIdp::start(&[]).await, TestIdp::start(&[]).await);
    let app = protect(vec![
        Issuer::new(&a.issuer).introspection(introspection(&a).token_prefix("ya29.")),
        Issuer::new(&b.issuer).introspection(introspection(&b)),
    ]);
    for round in 0..2 {
        for i in 0..1000 {
            let answer = call(&app, "/mcp", Some(&format!("junk-{i}"))).await;
            assert_eq!(
                answer.status,
                StatusCode::UNAUTHORIZED,
                "round {round}, {i}"
            );
        }
        // The second round repeats the same tokens: remembered as inactive.
        assert_eq!(calls(&a), 0, "none match A's pattern");
        assert_eq!(
            calls(&b),
            1000,
            "round {round}: one call per distinct token"
        );
    }
}

/// A black-hole introspection endpoint: accepts connections, never answers.
async fn hanging() -> (Introspection, tokio::task::JoinHandle<()>) {
    let (addr, task) = support::black_hole().await;
    let introspection = Introspection::new(INTROSPECTION_CLIENT.0, INTROSPECTION_CLIENT.1)
        .endpoint(format!("http://{addr}/introspect"))
        .fetch_options(FetchOptions {
            timeout: Duration::from_secs(10),
            ..FetchOptions::default()
        });
    (introspection, task)
}

#[tokio::test]
async fn with_one_issuer_hanging_the_others_tokens_are_answered_at_once() {
    let a = TestIdp::start(&[]).await;
    a.set_introspection("ya29.a-token", active(&a.issuer, "of-a"));
    let b_issuer = "https://b.example.com";
    // A's tokens are routed by their pattern: B, hanging, is never asked.
    let (hung, _task) = hanging().await;
    let app = protect(vec![
        Issuer::new(&a.issuer).introspection(introspection(&a).token_prefix("ya29.")),
        Issuer::new(b_issuer).introspection(hung),
    ]);
    let started = Instant::now();
    assert_eq!(
        call(&app, "/mcp", Some("ya29.a-token")).await.status,
        StatusCode::OK
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // Two issuers that opted in to share unmatched tokens are asked at once: the
    // first that knows the token answers, whatever the other does.
    a.set_introspection("shared-token", active(&a.issuer, "shared"));
    let (hung, _task) = hanging().await;
    let app = protect(vec![
        Issuer::new(b_issuer).introspection(hung.also_receives_other_issuers_tokens()),
        Issuer::new(&a.issuer)
            .introspection(introspection(&a).also_receives_other_issuers_tokens()),
    ]);
    let started = Instant::now();
    let answer = call(&app, "/mcp", Some("shared-token")).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body["sub"], "shared");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn two_issuers_without_a_token_pattern_are_a_build_error_naming_the_disclosure() {
    let issuer = |name: &str, introspection: Introspection| {
        Issuer::new(name).introspection(introspection.endpoint(format!("{name}/introspect")))
    };
    let plain = || Introspection::new("rs", "secret");
    let build = |issuers: Vec<Issuer>| {
        let mut builder = ResourceServer::builder(RESOURCE);
        for i in issuers {
            builder = builder.issuer(i);
        }
        builder.build().map(|_| ()).map_err(|e| e.to_string())
    };
    let error = build(vec![
        issuer("https://a.example.com", plain()),
        issuer("https://b.example.com", plain()),
    ])
    .expect_err("two catch-all issuers");
    for says in [
        "https://a.example.com",
        "https://b.example.com",
        "shown",
        "token_prefix",
    ] {
        assert!(error.contains(says), "{says}: {error}");
    }
    // One opting in is not enough: the other did not agree to see its tokens.
    assert!(
        build(vec![
            issuer(
                "https://a.example.com",
                plain().also_receives_other_issuers_tokens()
            ),
            issuer("https://b.example.com", plain()),
        ])
        .is_err()
    );
    let overlapping = build(vec![
        issuer("https://a.example.com", plain().token_prefix("ya29.")),
        issuer("https://b.example.com", plain().token_prefix("ya29.c.")),
    ])
    .expect_err("overlapping prefixes");
    assert!(overlapping.contains("overlapping"), "{overlapping}");
    for fine in [
        vec![
            issuer(
                "https://a.example.com",
                plain().also_receives_other_issuers_tokens(),
            ),
            issuer(
                "https://b.example.com",
                plain().also_receives_other_issuers_tokens(),
            ),
        ],
        vec![
            issuer("https://a.example.com", plain().token_prefix("ya29.")),
            issuer("https://b.example.com", plain()),
        ],
        vec![issuer("https://a.example.com", plain())],
    ] {
        assert_eq!(build(fine), Ok(()));
    }
}
