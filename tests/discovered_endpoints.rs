//! What a discovery document may point at (R-GW-3): a remote issuer's document may
//! not send this server to loopback, private or link-local addresses, by IP literal
//! or by a name that resolves there, and this server's client secret goes only to an
//! introspection endpoint on the issuer's origin or one allowed by name. Each
//! refusal is a 503 with the cause in the log, and nothing is fetched.
//!
//! The issuer looks remote (`http://idp.test:PORT`, a name no DNS knows, pinned to
//! the test provider on 127.0.0.1 with `FetchOptions::pinned_hosts`), so the rules
//! apply to it; its documents then name the URLs under test.

mod support;

use std::sync::atomic::Ordering;

use axum::Router;
use http::StatusCode;
use mcp_gatekeeper::keys::JwksOptions;
use mcp_gatekeeper::{FetchOptions, Introspection, Issuer, ResourceServer};
use serde_json::json;
use support::{INTROSPECTION_CLIENT, SigningKey, TestIdp, app, call, claims, now};

const RESOURCE: &str = "https://mcp.example.com/mcp";

/// The test provider, presented as the remote issuer `http://idp.test:PORT`.
struct Remote {
    idp: TestIdp,
    issuer: String,
    key: SigningKey,
}

impl Remote {
    async fn start() -> Self {
        let key = SigningKey::ec("remote-1");
        let idp = TestIdp::start(&[&key]).await;
        let issuer = format!("http://idp.test:{}", idp.addr.port());
        idp.set_metadata("issuer", json!(issuer));
        idp.set_metadata("jwks_uri", json!(format!("{issuer}/jwks")));
        idp.set_metadata(
            "introspection_endpoint",
            json!(format!("{issuer}/introspect")),
        );
        Self { idp, issuer, key }
    }

    fn fetch(&self) -> FetchOptions {
        FetchOptions {
            pinned_hosts: vec![("idp.test".to_owned(), self.idp.addr)],
            ..support::quick_jwks().fetch
        }
    }

    fn issuer(&self) -> Issuer {
        Issuer::new(&self.issuer)
            .allow_insecure_http()
            .jwks_options(JwksOptions {
                fetch: self.fetch(),
                ..support::quick_jwks()
            })
    }

    fn app(&self, issuer: Issuer) -> Router {
        let server = ResourceServer::builder(RESOURCE).issuer(issuer).build();
        app(server.expect("valid configuration").layer())
    }

    async fn jwt_status(&self, app: &Router) -> StatusCode {
        let token = self.key.sign(&claims(&self.issuer, RESOURCE));
        call(app, "/mcp", Some(&token)).await.status
    }

    fn jwks_fetches(&self) -> usize {
        self.idp.counters().jwks()
    }
}

#[tokio::test]
async fn a_remote_issuers_jwks_uri_on_its_own_host_or_a_public_name_is_used() {
    let remote = Remote::start().await;
    let app = remote.app(remote.issuer());
    assert_eq!(remote.jwt_status(&app).await, StatusCode::OK);
    assert_eq!(remote.jwks_fetches(), 1);
}

#[tokio::test]
async fn a_remote_issuers_document_cannot_send_us_to_internal_addresses() {
    let (_guard, logs) = support::capture_logs();
    for jwks_uri in [
        // IP literals: refused before any connection. (Only loopback ones here, so
        // that a broken check sends nothing off this machine; the other internal
        // ranges, 169.254.169.254 among them, are unit-tested in src/fetch.rs.)
        "http://127.0.0.1:{port}/jwks".to_owned(),
        "http://[::1]:{port}/jwks".to_owned(),
        "http://[::ffff:127.0.0.1]:{port}/jwks".to_owned(),
        "http://127.1:{port}/jwks".to_owned(),
        "http://2130706433:{port}/jwks".to_owned(),
        // A name that resolves to loopback: refused in the resolver.
        "http://localhost:{port}/jwks".to_owned(),
    ] {
        let remote = Remote::start().await;
        let jwks_uri = jwks_uri.replace("{port}", &remote.idp.addr.port().to_string());
        remote.idp.set_metadata("jwks_uri", json!(jwks_uri));
        let app = remote.app(remote.issuer());
        assert_eq!(
            remote.jwt_status(&app).await,
            StatusCode::SERVICE_UNAVAILABLE,
            "{jwks_uri}"
        );
        assert_eq!(remote.jwks_fetches(), 0, "{jwks_uri}: nothing fetched");
    }
    let logs = String::from_utf8_lossy(&logs.lock().expect("logs")).into_owned();
    assert!(logs.contains("127.0.0.1 is an internal address"), "{logs}");
    assert!(logs.contains("localhost resolves to"), "{logs}");
}

#[tokio::test]
async fn an_internal_issuer_may_name_internal_endpoints() {
    // The issuer is itself on loopback: its document may point there.
    let key = SigningKey::ec("local-1");
    let idp = TestIdp::start(&[&key]).await;
    idp.set_metadata(
        "jwks_uri",
        json!(format!("http://localhost:{}/jwks", idp.addr.port())),
    );
    let server = ResourceServer::builder(RESOURCE)
        .issuer(Issuer::new(&idp.issuer).jwks_options(support::quick_jwks()))
        .build()
        .expect("valid");
    let app = app(server.layer());
    let token = key.sign(&claims(&idp.issuer, RESOURCE));
    assert_eq!(
        call(&app, "/mcp", Some(&token)).await.status,
        StatusCode::OK
    );
    assert_eq!(idp.counters().jwks(), 1);
}

#[tokio::test]
async fn the_client_secret_goes_only_to_an_introspection_endpoint_on_the_issuers_origin() {
    let (_guard, logs) = support::capture_logs();
    let remote = Remote::start().await;
    let elsewhere = format!("http://localhost:{}/introspect", remote.idp.addr.port());
    remote
        .idp
        .set_metadata("introspection_endpoint", json!(elsewhere));
    let answer = json!({"active": true, "iss": remote.issuer, "sub": "u", "aud": RESOURCE, "exp": now() + 600});
    remote.idp.set_introspection("opaque-1", answer);
    let introspection = || {
        Introspection::new(INTROSPECTION_CLIENT.0, INTROSPECTION_CLIENT.1)
            .fetch_options(remote.fetch())
    };
    let refused = remote.app(remote.issuer().introspection(introspection()));
    let answer = call(&refused, "/mcp", Some("opaque-1")).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{answer:?}");
    assert_eq!(
        remote.idp.counters().introspection.load(Ordering::SeqCst),
        0
    );
    let logs_now = String::from_utf8_lossy(&logs.lock().expect("logs")).into_owned();
    assert!(
        logs_now.contains("introspection_endpoint on another origin"),
        "{logs_now}"
    );
    assert!(
        !logs_now.contains(INTROSPECTION_CLIENT.1),
        "no secret in the logs"
    );
    // Allowed by name, it is used.
    let allowed = remote.app(
        remote
            .issuer()
            .introspection(introspection().allow_discovered_endpoint_host("localhost")),
    );
    assert_eq!(
        call(&allowed, "/mcp", Some("opaque-1")).await.status,
        StatusCode::OK
    );
    // On the issuer's own origin, it is used without asking.
    remote.idp.set_metadata(
        "introspection_endpoint",
        json!(format!("{}/introspect", remote.issuer)),
    );
    let own = remote.app(remote.issuer().introspection(introspection()));
    assert_eq!(
        call(&own, "/mcp", Some("opaque-1")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        remote.idp.counters().introspection.load(Ordering::SeqCst),
        2
    );
}
