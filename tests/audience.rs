//! The audience policy through the whole stack (R-AUD-1..5): seeds 000 and 001,
//! several audiences, per-route resources.

mod support;

use axum::Router;
use http::StatusCode;
use mcp_gatekeeper::keys::LocalKeys;
use mcp_gatekeeper::{AudiencePolicy, Issuer, ResourceServer};
use serde_json::json;
use support::{SigningKey, call, claims};

const RESOURCE: &str = "https://mcp.example.com/mcp";
const ISSUER: &str = "https://idp.example.com/application/o/my-app/";

fn issuer(key: &SigningKey) -> Issuer {
    let keys =
        LocalKeys::from_jwks(support::signing::jwks(&[key]).to_string().as_bytes()).expect("keys");
    Issuer::new(ISSUER).local_keys(keys).discovery(false)
}

fn stack(key: &SigningKey, policy: AudiencePolicy) -> Router {
    let server = ResourceServer::builder(RESOURCE)
        .issuer(issuer(key))
        .audience(policy)
        .build();
    support::app(server.expect("valid").layer())
}

fn token(key: &SigningKey, aud: Option<serde_json::Value>) -> String {
    let mut c = claims(ISSUER, RESOURCE);
    match aud {
        Some(aud) => c["aud"] = aud,
        None => {
            c.as_object_mut().map(|o| o.remove("aud"));
        }
    }
    key.sign(&c)
}

#[tokio::test]
async fn the_resource_uri_is_accepted_canonically_and_others_are_refused() {
    // R-AUD-1, R-AUD-2
    let key = SigningKey::ec("k");
    let app = stack(&key, AudiencePolicy::resource());
    for aud in [
        json!(RESOURCE),
        json!("HTTPS://MCP.EXAMPLE.COM:443/mcp/"),
        json!(["other", RESOURCE]),
    ] {
        assert_eq!(
            call(&app, "/mcp", Some(&token(&key, Some(aud.clone()))))
                .await
                .status,
            StatusCode::OK,
            "{aud}"
        );
    }
    let answer = call(
        &app,
        "/mcp",
        Some(&token(&key, Some(json!("https://other.example.com/mcp")))),
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(
        answer.description().contains("does not name this resource"),
        "{answer:?}"
    );
}

#[tokio::test]
async fn seed_000_missing_aud_is_refused_with_the_rfc8707_hint() {
    // R-AUD-5
    let key = SigningKey::ec("k");
    let app = stack(&key, AudiencePolicy::resource());
    for aud in [None, Some(json!([]))] {
        let answer = call(&app, "/mcp", Some(&token(&key, aud))).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert!(
            answer.description().contains("RFC 8707 'resource'"),
            "{answer:?}"
        );
        assert!(
            answer.challenge().contains("RFC 8707"),
            "the hint is in the challenge too"
        );
    }
}

#[tokio::test]
async fn seed_000_missing_aud_is_accepted_only_as_an_opt_in() {
    // R-AUD-5
    let key = SigningKey::ec("k");
    let app = stack(&key, AudiencePolicy::resource().allow_missing_audience());
    assert_eq!(
        call(&app, "/mcp", Some(&token(&key, None))).await.status,
        StatusCode::OK
    );
    let wrong = token(&key, Some(json!("https://other.example.com/mcp")));
    assert_eq!(
        call(&app, "/mcp", Some(&wrong)).await.status,
        StatusCode::UNAUTHORIZED,
        "a wrong aud stays wrong"
    );
}

#[tokio::test]
async fn seed_001_client_id_audience_passes_only_when_listed() {
    // R-AUD-4: Authentik puts the client id into aud.
    let key = SigningKey::ec("k");
    let strict = stack(&key, AudiencePolicy::resource());
    let client_aud = token(&key, Some(json!("my-oauth-client-id")));
    assert_eq!(
        call(&strict, "/mcp", Some(&client_aud)).await.status,
        StatusCode::UNAUTHORIZED
    );
    let opted = stack(
        &key,
        AudiencePolicy::resource().accept_client_ids(["my-oauth-client-id"]),
    );
    assert_eq!(
        call(&opted, "/mcp", Some(&client_aud)).await.status,
        StatusCode::OK
    );
    let unlisted = token(&key, Some(json!("another-client")));
    assert_eq!(
        call(&opted, "/mcp", Some(&unlisted)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn seed_001_public_url_differs_from_the_internal_one() {
    // R-AUD-3: several accepted audiences.
    let key = SigningKey::ec("k");
    let app = stack(
        &key,
        AudiencePolicy::resource()
            .also_accept("https://mcp.public.example.com/mcp")
            .also_accept("api://6f1c2b9e"),
    );
    for aud in [
        "https://mcp.public.example.com/mcp",
        "api://6f1c2b9e",
        RESOURCE,
    ] {
        assert_eq!(
            call(&app, "/mcp", Some(&token(&key, Some(json!(aud)))))
                .await
                .status,
            StatusCode::OK,
            "{aud}"
        );
    }
    assert_eq!(
        call(&app, "/mcp", Some(&token(&key, Some(json!("api://other")))))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn per_route_resources_check_each_servers_own_audience() {
    // R-AUD-3, R-PRM-3: a gateway serving /servers/{id}/mcp.
    let key = SigningKey::ec("k");
    let server = ResourceServer::per_route(|parts| {
        let id = parts
            .uri
            .path()
            .strip_prefix("/servers/")?
            .strip_suffix("/mcp")?;
        Some(format!("https://gw.example.com/servers/{id}/mcp"))
    })
    .issuer(issuer(&key))
    .build()
    .expect("valid");
    let app = support::app(server.layer());
    let for_a = token(&key, Some(json!("https://gw.example.com/servers/a/mcp")));
    assert_eq!(
        call(&app, "/servers/a/mcp", Some(&for_a)).await.status,
        StatusCode::OK
    );
    let answer = call(&app, "/servers/b/mcp", Some(&for_a)).await;
    assert_eq!(
        answer.status,
        StatusCode::UNAUTHORIZED,
        "a token for server a is not for server b"
    );
    assert!(
        answer.challenge().contains("resource_metadata=\"https://gw.example.com/.well-known/oauth-protected-resource/servers/b/mcp\""),
        "the challenge points at server b's metadata: {answer:?}"
    );
    let metadata = call(
        &app,
        "/.well-known/oauth-protected-resource/servers/b/mcp",
        None,
    )
    .await;
    assert_eq!(
        metadata.body["resource"],
        "https://gw.example.com/servers/b/mcp"
    );
    let answer = call(&app, "/mcp", Some(&for_a)).await;
    assert_eq!(
        answer.status,
        StatusCode::UNAUTHORIZED,
        "no resource for this route"
    );
}

#[tokio::test]
async fn accepting_any_audience_must_be_spelled_out() {
    // R-AUD-1
    let key = SigningKey::ec("k");
    let app = stack(&key, AudiencePolicy::accept_any_audience_insecure());
    assert_eq!(
        call(
            &app,
            "/mcp",
            Some(&token(&key, Some(json!("https://other/mcp"))))
        )
        .await
        .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn each_issuer_can_have_its_own_audience_rules() {
    // R-ISS-1: the client-id opt-in applies only to the IdP without RFC 8707.
    let authentik = SigningKey::ec("authentik");
    let entra = SigningKey::ec("entra");
    let keys = |key: &SigningKey| {
        LocalKeys::from_jwks(support::signing::jwks(&[key]).to_string().as_bytes()).expect("keys")
    };
    let server = ResourceServer::builder(RESOURCE)
        .issuer(
            Issuer::new("https://authentik.example.com/application/o/mcp/")
                .local_keys(keys(&authentik))
                .discovery(false)
                .audience(AudiencePolicy::resource().accept_client_ids(["authentik-client"])),
        )
        .issuer(
            Issuer::new("https://login.example.com/tenant")
                .local_keys(keys(&entra))
                .discovery(false),
        )
        .build()
        .expect("valid");
    let app = support::app(server.layer());
    let with_aud = |key: &SigningKey, iss: &str, aud: &str| {
        let mut c = claims(iss, RESOURCE);
        c["aud"] = json!(aud);
        key.sign(&c)
    };
    let authentik_token = with_aud(
        &authentik,
        "https://authentik.example.com/application/o/mcp/",
        "authentik-client",
    );
    assert_eq!(
        call(&app, "/mcp", Some(&authentik_token)).await.status,
        StatusCode::OK
    );
    let entra_token = with_aud(
        &entra,
        "https://login.example.com/tenant",
        "authentik-client",
    );
    assert_eq!(
        call(&app, "/mcp", Some(&entra_token)).await.status,
        StatusCode::UNAUTHORIZED,
        "not for the other issuer"
    );
    let entra_ok = with_aud(&entra, "https://login.example.com/tenant", RESOURCE);
    assert_eq!(
        call(&app, "/mcp", Some(&entra_ok)).await.status,
        StatusCode::OK
    );
}
