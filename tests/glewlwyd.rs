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

    // The token for this resource verifies, in strict RFC 9068 mode too (typ at+jwt,
    // client_id, jti, iat), with keys found through OpenID discovery.
    let strict = app(
        Issuer::new(&issuer).strict_rfc9068(),
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
}
