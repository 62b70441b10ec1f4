//! Against a second, independent identity provider: Debian's glewlwyd, started on
//! 127.0.0.1 by the test and configured through its REST API. Its RFC 9068 `at+jwt`
//! tokens carry `nbf`, and put the scope name in `aud` when no `resource` is asked
//! for; it serves only OpenID discovery, so lazy discovery falls back to it.

mod support;

use http::StatusCode;
use mcp_gatekeeper::{AudiencePolicy, Issuer, ResourceServer};
use support::call;
use support::idp;

const RESOURCE: &str = "https://mcp.example.test/mcp";

fn app(issuer: Issuer, audience: AudiencePolicy) -> axum::Router {
    let server = ResourceServer::builder(RESOURCE)
        .issuer(issuer)
        .audience(audience)
        .build()
        .expect("valid configuration");
    support::app(server.layer())
}

#[tokio::test]
async fn glewlwyd_at_jwts_verify_or_are_refused_per_the_audience_rules() {
    let glewlwyd = idp::glewlwyd(&[RESOURCE]).await;
    let issuer = glewlwyd.issuer();
    let endpoint = glewlwyd.field("token_endpoint");
    let client = ("mcp-client", "mcp-secret");
    let for_us = idp::client_credentials(&endpoint, client, "mcp:read", Some(RESOURCE)).await;
    let for_us = for_us["access_token"].as_str().expect("token");
    let no_resource = idp::client_credentials(&endpoint, client, "mcp:read", None).await;
    let no_resource = no_resource["access_token"].as_str().expect("token");

    // What the cases below rest on, as glewlwyd issues it: `typ: at+jwt`, an `nbf`
    // (already reached, as it must be for the token to verify), and `aud` naming the
    // resource only when one was asked for.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let (header, claims) = (segment(for_us, 0), segment(for_us, 1));
    assert_eq!(header["typ"], "at+jwt", "{header}");
    let nbf = claims["nbf"].as_f64().expect("glewlwyd's tokens carry nbf");
    assert!(
        nbf <= now + 1.0 && now < claims["exp"].as_f64().expect("exp"),
        "{claims}"
    );
    assert_eq!(claims["aud"], serde_json::json!(RESOURCE), "{claims}");
    let aud = &segment(no_resource, 1)["aud"];
    assert!(aud == "mcp:read" || aud[0] == "mcp:read", "{aud}");
    // It serves OpenID discovery only (no RFC 8414 document, which is tried first, at
    // the path-inserted URL), so the keys below are found through the fallback.
    let url = reqwest::Url::parse(&issuer).expect("issuer URL");
    let origin = url.origin().ascii_serialization();
    let path = url.path().trim_end_matches('/');
    let rfc8414 = format!("{origin}/.well-known/oauth-authorization-server{path}");
    let rfc8414 = reqwest::get(rfc8414).await.expect("get");
    assert!(!rfc8414.status().is_success(), "{rfc8414:?}");
    let openid = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    assert!(
        reqwest::get(openid)
            .await
            .expect("get")
            .status()
            .is_success()
    );

    // The token for this resource verifies, in strict RFC 9068 mode too (typ at+jwt,
    // client_id, jti, iat), with keys found through OpenID discovery.
    let strict = app(
        Issuer::new(&issuer).strict_rfc9068(true),
        AudiencePolicy::resource(),
    );
    let answer = call(&strict, "/mcp", Some(for_us)).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    assert_eq!(answer.body["client_id"], "mcp-client");
    assert_eq!(answer.body["iss"], issuer);
    assert_eq!(answer.body["scopes"][0], "mcp:read");

    // Without `resource`, glewlwyd puts the scope name in `aud`: refused, with the
    // RFC 8707 hint.
    let answer = call(&strict, "/mcp", Some(no_resource)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(
        answer
            .description()
            .contains("aud does not name this resource"),
        "{}",
        answer.description()
    );

    // An operator who knows this IdP can accept that audience explicitly.
    let lenient = app(
        Issuer::new(&issuer),
        AudiencePolicy::resource().also_accept("mcp:read"),
    );
    assert_eq!(
        call(&lenient, "/mcp", Some(no_resource)).await.status,
        StatusCode::OK
    );
    // A tampered token is refused whatever the audience rules.
    let tampered = format!("{for_us}x");
    assert_eq!(
        call(&lenient, "/mcp", Some(&tampered)).await.status,
        StatusCode::UNAUTHORIZED
    );

    // Dropping the handle closes start.sh's stdin: it stops glewlwyd and removes its
    // temporary directory, so runs leave nothing behind.
    let dir = std::path::PathBuf::from(glewlwyd.field("dir"));
    assert!(dir.exists(), "{dir:?}");
    drop(glewlwyd);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while dir.exists() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(!dir.exists(), "{dir:?} was left behind");
}

/// Segment `index` (0 header, 1 claims) of a JWT, decoded.
fn segment(token: &str, index: usize) -> serde_json::Value {
    use base64::Engine as _;
    let part = token.split('.').nth(index).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON")
}
