//! RFC 8693 token exchange against a real authorization server (issue 16, first
//! part): panva's oidc-provider with the grant registered through its extension API
//! (`tests/oidc/provider.mjs`, client `proxy-client`).

mod support;

use base64::Engine as _;
use mcp_gatekeeper::{ExchangeError, TokenExchange};
use serde_json::Value;
use support::idp;

const CLIENT: &str = "http://127.0.0.1:9/mcp";
const UPSTREAM: &str = "http://127.0.0.1:10/upstream";

/// An exchange at `provider` as `proxy-client` with `secret`, for the upstream.
fn exchange_at(provider: &idp::Running, secret: &str) -> mcp_gatekeeper::TokenExchangeBuilder {
    TokenExchange::builder(provider.field("token_endpoint"), "proxy-client", secret)
        .resource(UPSTREAM)
}

fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap_or_default();
    serde_json::from_slice(&bytes).unwrap_or_default()
}

async fn subject_token(provider: &idp::Running) -> String {
    let endpoint = provider.field("token_endpoint");
    let answer = idp::client_credentials(
        &endpoint,
        ("cc-client", "cc-secret"),
        "mcp:read",
        Some(CLIENT),
    )
    .await;
    answer["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_verified_token_is_exchanged_once_for_one_whose_audience_is_the_upstream() {
    let provider = idp::oidc_provider(&["--resource", CLIENT, "--resource", UPSTREAM]).await;
    let exchange = exchange_at(&provider, "proxy-secret")
        .build()
        .expect("config");
    let subject = subject_token(&provider).await;
    let upstream = exchange.exchange(&subject).await.expect("exchanged");
    let (before, after) = (claims(&subject), claims(&upstream));
    assert_eq!(after["aud"], UPSTREAM, "{after}");
    assert_eq!(after["sub"], before["sub"]);
    assert_eq!(after["act"]["sub"], "proxy-client");

    // 100 concurrent calls with one new subject token: one exchange, one token.
    let subject = subject_token(&provider).await;
    let calls = (0..100).map(|_| {
        let (exchange, subject) = (exchange.clone(), subject.clone());
        tokio::spawn(async move { exchange.exchange(&subject).await })
    });
    let mut tokens = std::collections::HashSet::new();
    for call in calls {
        tokens.insert(call.await.expect("task").expect("exchanged"));
    }
    assert_eq!(tokens.len(), 1, "one exchange for 100 calls");

    // A refused subject token is an error, never the subject token passed on.
    let forged = format!("{}AAAA", &subject[..subject.len() - 4]);
    assert_eq!(
        exchange.exchange(&forged).await,
        Err(ExchangeError::Refused("invalid_grant".into()))
    );
}

#[tokio::test]
async fn an_exchanged_token_near_its_expiry_is_exchanged_again() {
    let provider = idp::oidc_provider(&["--resource", CLIENT, "--resource", UPSTREAM]).await;
    // A margin longer than any token's life: nothing is reused.
    let exchange = exchange_at(&provider, "proxy-secret")
        .margin(std::time::Duration::from_secs(1_000_000))
        .build()
        .expect("config");
    let subject = subject_token(&provider).await;
    let first = exchange.exchange(&subject).await.expect("exchanged");
    let second = exchange.exchange(&subject).await.expect("exchanged");
    assert_ne!(first, second);
    // A wrong client secret: the authorization server is the problem, not the token.
    let wrong = exchange_at(&provider, "nope").build().expect("config");
    assert!(matches!(
        wrong.exchange(&subject).await,
        Err(ExchangeError::Unavailable(_))
    ));
}

/// The gatekeeper stack for `CLIENT`, then the exchange, in front of an upstream that
/// records the `Authorization` it receives.
fn gateway(provider: &idp::Running, exchange: TokenExchange) -> (axum::Router, Seen) {
    gateway_with(provider, mcp_gatekeeper::ExchangeLayer::new(exchange))
}

/// The `Authorization` values the upstream received.
type Seen = std::sync::Arc<std::sync::Mutex<Vec<Option<String>>>>;

/// Calls `app` with `subject`; the one bearer token the upstream then received.
async fn upstream_token(app: &axum::Router, seen: &Seen, subject: &str) -> String {
    let answer = support::call(app, "/mcp", Some(subject)).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let received = seen.lock().expect("seen").clone();
    let [Some(authorization)] = received.as_slice() else {
        panic!("the upstream saw {received:?}");
    };
    let token = authorization.strip_prefix("Bearer ").unwrap_or_default();
    token.to_owned()
}

/// [`gateway`] with the layer given.
fn gateway_with(
    provider: &idp::Running,
    layer: mcp_gatekeeper::ExchangeLayer,
) -> (axum::Router, Seen) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let server = mcp_gatekeeper::ResourceServer::builder(CLIENT)
        .issuer(mcp_gatekeeper::Issuer::new(provider.issuer()))
        .build()
        .expect("config");
    let upstream = axum::routing::get(move |headers: http::HeaderMap| {
        let authorization = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        record.lock().expect("record").push(authorization);
        async { "upstream" }
    });
    let app = axum::Router::new()
        .route("/mcp", upstream)
        .layer(layer)
        .layer(server.layer());
    (app, seen)
}

#[tokio::test]
async fn the_upstream_gets_the_exchanged_token_never_the_clients() {
    let provider = idp::oidc_provider(&["--resource", CLIENT, "--resource", UPSTREAM]).await;
    let exchange = exchange_at(&provider, "proxy-secret")
        .build()
        .expect("config");
    let (app, seen) = gateway(&provider, exchange);
    let subject = subject_token(&provider).await;
    let token = upstream_token(&app, &seen, &subject).await;
    assert_ne!(token, subject, "the client's token reached the upstream");
    assert_eq!(claims(&token)["aud"], UPSTREAM);

    // No exchange possible (the proxy's secret is wrong): 503, nothing sent upstream.
    let broken = exchange_at(&provider, "wrong").build().expect("config");
    let (app, seen) = gateway(&provider, broken);
    let answer = support::call(&app, "/mcp", Some(&subject)).await;
    assert_eq!(answer.status, 503, "{answer:?}");
    assert_eq!(answer.body["error"]["code"], -32603, "{answer:?}");
    assert!(seen.lock().expect("seen").is_empty());
}

#[tokio::test]
async fn before_verification_the_layer_exchanges_nothing_and_sends_no_credentials() {
    let provider = idp::oidc_provider(&["--resource", CLIENT, "--resource", UPSTREAM]).await;
    let exchange = exchange_at(&provider, "proxy-secret")
        .build()
        .expect("config");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let upstream = axum::routing::get(move |headers: http::HeaderMap| {
        let sent = headers.get("authorization").is_some();
        record.lock().expect("record").push(sent);
        async { "upstream" }
    });
    // Composed by hand and wrongly: the token is extracted but never verified.
    let app = axum::Router::new()
        .route("/mcp", upstream)
        .layer(mcp_gatekeeper::ExchangeLayer::new(exchange))
        .layer(mcp_gatekeeper::BearerLayer::new(CLIENT.into()));
    let subject = subject_token(&provider).await;
    let answer = support::call(&app, "/mcp", Some(&subject)).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        *seen.lock().expect("seen"),
        [false],
        "an unverified token was exchanged"
    );
}

#[tokio::test]
async fn the_token_endpoint_is_discovered_from_the_issuers_metadata_on_first_need() {
    let provider = idp::oidc_provider(&["--resource", CLIENT, "--resource", UPSTREAM]).await;
    let exchange = TokenExchange::discover(provider.issuer(), "proxy-client", "proxy-secret")
        .resource(UPSTREAM)
        .build()
        .expect("config");
    assert_eq!(exchange.issuer(), Some(provider.issuer().as_str()));
    let subject = subject_token(&provider).await;
    let upstream = exchange.exchange(&subject).await.expect("exchanged");
    assert_eq!(claims(&upstream)["aud"], UPSTREAM);

    // An issuer that is not there: unavailable (503), not a refusal of the token.
    let gone = TokenExchange::discover("http://127.0.0.1:9", "proxy-client", "proxy-secret")
        .resource(UPSTREAM)
        .build()
        .expect("config");
    assert!(matches!(
        gone.exchange(&subject).await,
        Err(ExchangeError::Unavailable(_))
    ));
}

#[tokio::test]
async fn a_token_goes_to_the_exchange_of_its_issuer_and_no_other() {
    let provider = idp::oidc_provider(&["--resource", CLIENT, "--resource", UPSTREAM]).await;
    let subject = subject_token(&provider).await;
    // Only an exchange for another issuer: the verified token is refused (502), and
    // nothing reaches the upstream.
    let elsewhere = exchange_at(&provider, "proxy-secret")
        .issuer("https://other.example.com")
        .build()
        .expect("config");
    let (app, seen) = gateway(&provider, elsewhere.clone());
    let answer = support::call(&app, "/mcp", Some(&subject)).await;
    assert_eq!(answer.status, 502, "{answer:?}");
    assert!(seen.lock().expect("seen").is_empty());

    // With the exchange of the token's issuer added, that one is used.
    let own = TokenExchange::discover(provider.issuer(), "proxy-client", "proxy-secret")
        .resource(UPSTREAM)
        .build()
        .expect("config");
    let layer = mcp_gatekeeper::ExchangeLayer::new(elsewhere).also(own);
    let (app, seen) = gateway_with(&provider, layer);
    let token = upstream_token(&app, &seen, &subject).await;
    assert_eq!(claims(&token)["aud"], UPSTREAM);
}

/// A token endpoint on loopback that answers every exchange with `answer`; its URL.
async fn answering(answer: Value) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let app = axum::Router::new().route(
        "/token",
        axum::routing::post(move || {
            let answer = answer.clone();
            async move { axum::Json(answer) }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{address}/token")
}

#[tokio::test]
async fn an_authorization_server_cannot_overflow_the_reuse_time_nor_slip_in_a_bad_header() {
    let huge = answering(serde_json::json!({
        "access_token": "upstream-token", "token_type": "Bearer",
        "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "expires_in": u64::MAX,
    }))
    .await;
    let exchange = TokenExchange::builder(huge, "proxy-client", "proxy-secret")
        .resource(UPSTREAM)
        .build()
        .expect("config");
    assert_eq!(
        exchange.exchange("subject").await.as_deref(),
        Ok("upstream-token")
    );
    assert_eq!(
        exchange.exchange("subject").await.as_deref(),
        Ok("upstream-token")
    );

    // A token that cannot be a header value: 502, nothing sent upstream.
    let provider = idp::oidc_provider(&["--resource", CLIENT, "--resource", UPSTREAM]).await;
    let bad = answering(serde_json::json!({
        "access_token": "line\nbreak", "token_type": "Bearer", "expires_in": 60,
    }))
    .await;
    let exchange = TokenExchange::builder(bad, "proxy-client", "proxy-secret")
        .resource(UPSTREAM)
        .build()
        .expect("config");
    let (app, seen) = gateway(&provider, exchange);
    let subject = subject_token(&provider).await;
    let answer = support::call(&app, "/mcp", Some(&subject)).await;
    assert_eq!(answer.status, 502, "{answer:?}");
    assert!(seen.lock().expect("seen").is_empty());
}

#[tokio::test]
async fn a_discovered_token_endpoint_on_another_origin_never_gets_the_secret() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    // The token endpoint the metadata names: counts what it receives.
    let received = std::sync::Arc::new(AtomicUsize::new(0));
    let count = received.clone();
    let elsewhere = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let elsewhere_url = format!("http://{}/token", elsewhere.local_addr().expect("address"));
    let app = axum::Router::new().route(
        "/token",
        axum::routing::post(move || {
            count.fetch_add(1, Ordering::SeqCst);
            async { "{}" }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(elsewhere, app).await;
    });
    // The issuer, whose metadata sends the token endpoint there.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let issuer = format!("http://{}", listener.local_addr().expect("address"));
    let metadata = serde_json::json!({ "issuer": issuer, "token_endpoint": elsewhere_url });
    let app = axum::Router::new().route(
        "/.well-known/oauth-authorization-server",
        axum::routing::get(move || {
            let metadata = metadata.clone();
            async move { axum::Json(metadata) }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let exchange = TokenExchange::discover(&issuer, "proxy-client", "proxy-secret")
        .resource(UPSTREAM)
        .build()
        .expect("config");
    let refused = exchange.exchange("subject").await;
    assert!(
        matches!(&refused, Err(ExchangeError::Unavailable(why)) if why.contains("another origin")),
        "{refused:?}"
    );
    assert_eq!(
        received.load(Ordering::SeqCst),
        0,
        "the secret went elsewhere"
    );
}
