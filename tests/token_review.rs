//! The Kubernetes TokenReview verifier (R-ISS-2, R-ID-1) against a loopback API server
//! that speaks the real `authentication.k8s.io/v1` schema (built with k8s-openapi).
#![cfg(feature = "kubernetes")]

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use k8s_openapi::api::authentication::v1::{TokenReview as Review, TokenReviewStatus, UserInfo};
use mcp_gatekeeper::{FetchOptions, Principal, ResourceServer, TokenReview};
use serde_json::{Value, json};
use support::{SigningKey, call, claims, now};

const RESOURCE: &str = "https://mcp.example.com/mcp";
const CLUSTER: &str = "https://kubernetes.default.svc.cluster.local";
const REVIEWER: &str = "reviewer-service-account-token";

#[derive(Default)]
struct ApiServer {
    reviews: AtomicUsize,
    down: AtomicBool,
    seen_audiences: std::sync::Mutex<Vec<String>>,
    good: std::sync::Mutex<Vec<String>>,
}

async fn token_reviews(
    State(api): State<Arc<ApiServer>>,
    headers: HeaderMap,
    Json(review): Json<Review>,
) -> (StatusCode, Json<Value>) {
    api.reviews.fetch_add(1, Ordering::SeqCst);
    if api.down.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"kind": "Status", "status": "Failure"})),
        );
    }
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {REVIEWER}"))
    {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"kind": "Status", "status": "Failure", "code": 401})),
        );
    }
    let audiences = review.spec.audiences.clone().unwrap_or_default();
    *api.seen_audiences.lock().expect("lock") = audiences.clone();
    let good = api.good.lock().expect("lock").contains(&review.spec.token);
    let status = if good {
        TokenReviewStatus {
            authenticated: Some(true),
            audiences: Some(audiences),
            user: Some(UserInfo {
                username: Some("system:serviceaccount:tools:mcp-client".into()),
                uid: Some("8c7f3e7e-0000-4000-8000-000000000001".into()),
                groups: Some(vec![
                    "system:serviceaccounts".into(),
                    "system:serviceaccounts:tools".into(),
                ]),
                extra: Some(BTreeMap::from([(
                    "authentication.kubernetes.io/pod-name".into(),
                    vec!["client-0".into()],
                )])),
            }),
            error: None,
        }
    } else {
        TokenReviewStatus {
            authenticated: Some(false),
            error: Some("token has been invalidated".into()),
            ..Default::default()
        }
    };
    let answer = Review {
        status: Some(status),
        ..review
    };
    (
        StatusCode::CREATED,
        Json(serde_json::to_value(answer).expect("review json")),
    )
}

async fn start_api_server() -> (String, Arc<ApiServer>) {
    let api = Arc::new(ApiServer::default());
    let app = Router::new()
        .route(
            "/apis/authentication.k8s.io/v1/tokenreviews",
            post(token_reviews),
        )
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), api)
}

fn protect(url: &str) -> Router {
    protect_with(url, |review| review)
}

fn protect_with(url: &str, configure: impl FnOnce(TokenReview) -> TokenReview) -> Router {
    let review = TokenReview::new(url, CLUSTER)
        .bearer_token(REVIEWER)
        .audiences([RESOURCE])
        .fetch_options(FetchOptions {
            timeout: std::time::Duration::from_secs(2),
            ..FetchOptions::default()
        });
    let server = ResourceServer::builder(RESOURCE)
        .authorization_server("https://idp.example.com")
        .token_review(configure(review))
        .expect("valid review")
        .build()
        .expect("valid");
    async fn show(principal: Principal) -> Json<Value> {
        Json(json!({
            "sub": principal.subject(),
            "iss": principal.issuer(),
            "aud": principal.audiences(),
            "kind": format!("{:?}", principal.kind()),
            "groups": principal.claim("groups"),
            "uid": principal.claim("uid"),
            "extra": principal.claim("extra"),
        }))
    }
    Router::new().route("/mcp", get(show)).layer(server.layer())
}

/// A service-account token as the cluster issues it (its signature is the API
/// server's business).
fn service_account_token() -> String {
    let mut c = claims(CLUSTER, RESOURCE);
    c["sub"] = json!("system:serviceaccount:tools:mcp-client");
    c["exp"] = json!(now() + 600);
    SigningKey::ec("cluster-key").sign(&c)
}

#[tokio::test]
async fn an_authenticated_review_becomes_the_principal() {
    let (url, api) = start_api_server().await;
    let token = service_account_token();
    api.good.lock().expect("lock").push(token.clone());
    let app = protect(&url);
    let answer = call(&app, "/mcp", Some(&token)).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body["sub"], "system:serviceaccount:tools:mcp-client");
    assert_eq!(answer.body["iss"], CLUSTER);
    assert_eq!(answer.body["kind"], "TokenReview");
    assert_eq!(answer.body["uid"], "8c7f3e7e-0000-4000-8000-000000000001");
    assert_eq!(answer.body["groups"][1], "system:serviceaccounts:tools");
    assert_eq!(
        answer.body["extra"]["authentication.kubernetes.io/pod-name"][0],
        "client-0"
    );
    assert_eq!(answer.body["aud"], json!([RESOURCE]));
    assert_eq!(
        *api.seen_audiences.lock().expect("lock"),
        vec![RESOURCE.to_owned()],
        "the audiences were sent"
    );
    // Cached: a second request makes no second review.
    assert_eq!(
        call(&app, "/mcp", Some(&token)).await.status,
        StatusCode::OK
    );
    assert_eq!(api.reviews.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_unauthenticated_review_is_401() {
    let (url, api) = start_api_server().await;
    let app = protect(&url);
    let answer = call(&app, "/mcp", Some(&service_account_token())).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(
        answer.description().contains("did not authenticate"),
        "{answer:?}"
    );
    assert!(
        !answer.description().contains("invalidated"),
        "the API server's words stay in the log"
    );
    assert_eq!(api.reviews.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_unreachable_api_server_is_503() {
    let (url, api) = start_api_server().await;
    api.down.store(true, Ordering::SeqCst);
    let token = service_account_token();
    api.good.lock().expect("lock").push(token.clone());
    let app = protect(&url);
    let answer = call(&app, "/mcp", Some(&token)).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    api.down.store(false, Ordering::SeqCst);
    assert_eq!(
        call(&app, "/mcp", Some(&token)).await.status,
        StatusCode::OK,
        "recovers, the failure was not cached"
    );
}

#[tokio::test]
async fn tokens_of_other_issuers_are_never_sent_for_review() {
    let (url, api) = start_api_server().await;
    let app = protect(&url);
    let answer = call(
        &app,
        "/mcp",
        Some(&SigningKey::ec("x").sign(&claims("https://evil.example.com", RESOURCE))),
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(api.reviews.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_disabled_review_cache_reviews_every_request() {
    // Issue 6: the review cache follows the token cache's rules, off switch included.
    let (url, api) = start_api_server().await;
    let token = service_account_token();
    api.good.lock().expect("lock").push(token.clone());
    let app = protect_with(&url, |review| {
        review.cache(mcp_gatekeeper::TokenCacheOptions::disabled())
    });
    for _ in 0..3 {
        assert_eq!(
            call(&app, "/mcp", Some(&token)).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(api.reviews.load(Ordering::SeqCst), 3);
}
