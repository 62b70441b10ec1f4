//! JWT verification through the whole stack (R-JWT-1..5): algorithm allowlists and
//! confusion, exact `iss`, time claims, `crit`, header-supplied keys, ID tokens,
//! strict RFC 9068, key-bound tokens.

mod support;

use std::time::Duration;

use axum::Router;
use base64::Engine;
use http::StatusCode;
use jsonwebtoken::{Algorithm, Header};
use mcp_gatekeeper::keys::LocalKeys;
use mcp_gatekeeper::{Issuer, ResourceServer};
use serde_json::{Value, json};
use support::signing::{hmac_token, jwks, unsigned};
use support::{Answer, SigningKey, call, claims, now};

const RESOURCE: &str = "https://mcp.example.com/mcp";
const ISSUER: &str = "https://idp.example.com";

fn local(keys: &[&SigningKey]) -> LocalKeys {
    LocalKeys::from_jwks(jwks(keys).to_string().as_bytes()).expect("local keys")
}

fn protect(issuer: Issuer) -> Router {
    let server = ResourceServer::builder(RESOURCE)
        .issuer(issuer.discovery(false))
        .build();
    support::app(server.expect("valid configuration").layer())
}

async fn refused(app: &Router, token: &str, rule_words: &str) -> Answer {
    let answer = call(app, "/mcp", Some(token)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{answer:?}");
    assert!(
        answer.challenge().contains("error=\"invalid_token\""),
        "{answer:?}"
    );
    assert!(
        answer.description().contains(rule_words),
        "expected {rule_words:?} in {answer:?}"
    );
    answer
}

#[tokio::test]
async fn rs256_es256_es384_ps256_and_eddsa_tokens_verify() {
    // R-JWT-1: every default asymmetric algorithm works end to end.
    let keys = [
        SigningKey::rsa("rsa"),
        SigningKey::rsa_for("ps", Algorithm::PS256),
        SigningKey::ec("ec"),
        SigningKey::ec384("ec384"),
        SigningKey::ed("ed"),
    ];
    let app = protect(Issuer::new(ISSUER).local_keys(local(&keys.iter().collect::<Vec<_>>())));
    for key in &keys {
        let answer = call(&app, "/mcp", Some(&key.sign(&claims(ISSUER, RESOURCE)))).await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}: {answer:?}", key.alg);
    }
}

#[tokio::test]
async fn algorithms_outside_the_issuers_allowlist_are_refused() {
    // R-JWT-1
    let rsa = SigningKey::rsa("rsa");
    let ec = SigningKey::ec("ec");
    let app = protect(
        Issuer::new(ISSUER)
            .algorithms([Algorithm::ES256])
            .local_keys(local(&[&rsa, &ec])),
    );
    assert_eq!(
        call(&app, "/mcp", Some(&ec.sign(&claims(ISSUER, RESOURCE))))
            .await
            .status,
        StatusCode::OK
    );
    refused(&app, &rsa.sign(&claims(ISSUER, RESOURCE)), "RS256").await;
}

#[tokio::test]
async fn alg_none_is_refused() {
    // R-JWT-1
    let app = protect(Issuer::new(ISSUER).local_keys(local(&[&SigningKey::ec("ec")])));
    let token = unsigned(
        &json!({"alg": "none", "typ": "JWT"}),
        &claims(ISSUER, RESOURCE),
    );
    let token = token
        .rsplit_once('.')
        .map(|(head, _)| format!("{head}."))
        .unwrap_or_default();
    let answer = call(&app, "/mcp", Some(&token)).await;
    // "x.y." is not a b64token-valid bearer? It is; the verifier refuses it.
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{answer:?}");
    let token = unsigned(&json!({"alg": "none"}), &claims(ISSUER, RESOURCE));
    refused(&app, &token, "\"none\" is not accepted").await;
}

#[tokio::test]
async fn hmac_signed_with_the_public_key_is_refused() {
    // R-JWT-1: the algorithm-confusion attack — HS256 keyed with the RSA public key.
    let rsa = SigningKey::rsa("rsa");
    let app = protect(Issuer::new(ISSUER).local_keys(local(&[&rsa])));
    let public_pem = rsa.public_pem.clone().unwrap_or_default();
    let token = hmac_token(
        &json!({"alg": "HS256", "kid": "rsa"}),
        &claims(ISSUER, RESOURCE),
        public_pem.as_bytes(),
    );
    refused(&app, &token, "HS256").await;
}

#[tokio::test]
async fn hmac_works_only_with_an_explicit_shared_secret() {
    // R-JWT-1
    let secret = b"0123456789abcdef0123456789abcdef-shared";
    let app = protect(
        Issuer::new(ISSUER)
            .algorithms([Algorithm::HS256])
            .hmac_secret(secret.to_vec()),
    );
    let token = hmac_token(&json!({"alg": "HS256"}), &claims(ISSUER, RESOURCE), secret);
    assert_eq!(
        call(&app, "/mcp", Some(&token)).await.status,
        StatusCode::OK
    );
    let forged = hmac_token(
        &json!({"alg": "HS256"}),
        &claims(ISSUER, RESOURCE),
        b"another secret of enough length!!",
    );
    refused(&app, &forged, "signature").await;
}

#[tokio::test]
async fn a_jwk_alg_must_match_the_header_alg() {
    // R-JWT-1: a key published for RS256 does not verify a PS256 token.
    let key = SigningKey::rsa_for("k", Algorithm::PS256);
    let mut jwk = key.jwk();
    jwk["alg"] = json!("RS256");
    let app = protect(Issuer::new(ISSUER).local_keys(
        LocalKeys::from_jwks(json!({"keys": [jwk]}).to_string().as_bytes()).expect("keys"),
    ));
    refused(&app, &key.sign(&claims(ISSUER, RESOURCE)), "kid").await;
}

#[tokio::test]
async fn iss_must_match_exactly() {
    // R-JWT-2: no trailing slash, no case folding, no arrays.
    let key = SigningKey::ec("ec");
    let app = protect(Issuer::new(ISSUER).local_keys(local(&[&key])));
    for iss in [
        json!("https://idp.example.com/"),
        json!("https://IDP.example.com"),
        json!([ISSUER]),
        Value::Null,
    ] {
        let mut c = claims(ISSUER, RESOURCE);
        c["iss"] = iss.clone();
        if iss.is_null() {
            c.as_object_mut().map(|o| o.remove("iss"));
        }
        refused(&app, &key.sign(&c), "iss").await;
    }
}

#[tokio::test]
async fn exp_is_required_and_enforced_with_leeway() {
    // R-JWT-2
    let key = SigningKey::ec("ec");
    let app = protect(
        Issuer::new(ISSUER)
            .local_keys(local(&[&key]))
            .leeway(Duration::from_secs(30)),
    );
    let mut c = claims(ISSUER, RESOURCE);
    c.as_object_mut().map(|o| o.remove("exp"));
    refused(&app, &key.sign(&c), "no exp claim").await;
    c["exp"] = json!(now() - 120);
    refused(&app, &key.sign(&c), "expired").await;
    c["exp"] = json!(now() - 10); // inside the leeway
    assert_eq!(
        call(&app, "/mcp", Some(&key.sign(&c))).await.status,
        StatusCode::OK
    );
    c["exp"] = json!("tomorrow");
    refused(&app, &key.sign(&c), "exp").await;
}

#[tokio::test]
async fn nbf_and_iat_in_the_future_are_refused() {
    // R-JWT-2
    let key = SigningKey::ec("ec");
    let app = protect(Issuer::new(ISSUER).local_keys(local(&[&key])));
    let mut c = claims(ISSUER, RESOURCE);
    c["nbf"] = json!(now() + 600);
    refused(&app, &key.sign(&c), "not valid yet").await;
    let mut c = claims(ISSUER, RESOURCE);
    c["iat"] = json!(now() + 600);
    refused(&app, &key.sign(&c), "issued in the future").await;
    c["iat"] = json!(now() + 30); // inside the default 60 s leeway
    assert_eq!(
        call(&app, "/mcp", Some(&key.sign(&c))).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn unknown_crit_is_refused() {
    // R-JWT-3
    let key = SigningKey::ec("ec");
    let app = protect(Issuer::new(ISSUER).local_keys(local(&[&key])));
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("ec".into());
    header.crit = Some(vec!["exp-ext".into()]);
    refused(
        &app,
        &key.sign_with(header, &claims(ISSUER, RESOURCE)),
        "crit",
    )
    .await;
}

#[tokio::test]
async fn header_supplied_keys_never_select_a_key() {
    // R-JWT-3: an attacker embeds its own key in `jwk` / points `jku` at it.
    let trusted = SigningKey::ec("trusted");
    let attacker = SigningKey::ec("attacker");
    let app = protect(Issuer::new(ISSUER).local_keys(local(&[&trusted])));
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("attacker".into());
    header.jwk = serde_json::from_value(attacker.jwk()).ok();
    header.jku = Some("http://127.0.0.1:1/jwks".into());
    header.x5u = Some("http://127.0.0.1:1/cert".into());
    refused(
        &app,
        &attacker.sign_with(header.clone(), &claims(ISSUER, RESOURCE)),
        "kid",
    )
    .await;
    // Even with the trusted kid, the attacker's signature does not verify.
    header.kid = Some("trusted".into());
    refused(
        &app,
        &attacker.sign_with(header, &claims(ISSUER, RESOURCE)),
        "signature",
    )
    .await;
}

#[tokio::test]
async fn kid_is_only_a_lookup_key() {
    // R-JWT-3: path- or URL-shaped kids are just unknown kids.
    let key = SigningKey::ec("k");
    let app = protect(Issuer::new(ISSUER).local_keys(local(&[&key])));
    for kid in ["../../etc/passwd", "http://127.0.0.1:1/key", "k?x=1"] {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.into());
        refused(
            &app,
            &key.sign_with(header, &claims(ISSUER, RESOURCE)),
            "kid",
        )
        .await;
    }
}

#[tokio::test]
async fn id_tokens_are_refused() {
    // R-JWT-4: nonce or at_hash mark an OpenID Connect ID token.
    let key = SigningKey::ec("ec");
    let app = protect(Issuer::new(ISSUER).local_keys(local(&[&key])));
    for claim in ["nonce", "at_hash"] {
        let mut c = claims(ISSUER, RESOURCE);
        c[claim] = json!("abc");
        refused(&app, &key.sign(&c), "ID token").await;
    }
}

#[tokio::test]
async fn strict_rfc9068_requires_at_jwt_and_its_claims() {
    // R-JWT-4
    let key = SigningKey::ec("ec");
    let app = protect(
        Issuer::new(ISSUER)
            .local_keys(local(&[&key]))
            .strict_rfc9068(true),
    );
    assert_eq!(
        call(&app, "/mcp", Some(&key.sign(&claims(ISSUER, RESOURCE))))
            .await
            .status,
        StatusCode::OK
    );
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("ec".into());
    header.typ = Some("JWT".into());
    refused(
        &app,
        &key.sign_with(header.clone(), &claims(ISSUER, RESOURCE)),
        "at+jwt",
    )
    .await;
    header.typ = Some("application/at+jwt".into());
    assert_eq!(
        call(
            &app,
            "/mcp",
            Some(&key.sign_with(header, &claims(ISSUER, RESOURCE)))
        )
        .await
        .status,
        StatusCode::OK
    );
    let mut c = claims(ISSUER, RESOURCE);
    c.as_object_mut().map(|o| o.remove("jti"));
    refused(&app, &key.sign(&c), "jti").await;
    // Not strict: typ JWT and no jti pass.
    let lax = protect(Issuer::new(ISSUER).local_keys(local(&[&key])));
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("ec".into());
    assert_eq!(
        call(&lax, "/mcp", Some(&key.sign_with(header, &c)))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn key_bound_tokens_are_refused_as_bearer() {
    // R-JWT-5
    let key = SigningKey::ec("ec");
    let app = protect(Issuer::new(ISSUER).local_keys(local(&[&key])));
    let mut c = claims(ISSUER, RESOURCE);
    c["cnf"] = json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"});
    refused(&app, &key.sign(&c), "bound to a DPoP key").await;
}

#[tokio::test]
async fn tokens_from_untrusted_issuers_are_refused_without_network() {
    // R-JWT-2 / R-ISS-1: with several issuers, routing is by the unverified iss, and
    // an unknown one is refused at once.
    let a = SigningKey::ec("a");
    let b = SigningKey::ec("b");
    let server = ResourceServer::builder(RESOURCE)
        .issuer(
            Issuer::new("https://a.example.com")
                .local_keys(local(&[&a]))
                .discovery(false),
        )
        .issuer(
            Issuer::new("https://b.example.com")
                .local_keys(local(&[&b]))
                .discovery(false),
        )
        .build()
        .expect("valid");
    let app = support::app(server.layer());
    assert_eq!(
        call(
            &app,
            "/mcp",
            Some(&a.sign(&claims("https://a.example.com", RESOURCE)))
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(
        call(
            &app,
            "/mcp",
            Some(&b.sign(&claims("https://b.example.com", RESOURCE)))
        )
        .await
        .status,
        StatusCode::OK
    );
    refused(
        &app,
        &a.sign(&claims("https://c.example.com", RESOURCE)),
        "not trusted",
    )
    .await;
    // a's key does not verify for issuer b
    refused(
        &app,
        &a.sign(&claims("https://b.example.com", RESOURCE)),
        "kid",
    )
    .await;
}

#[tokio::test]
async fn malformed_tokens_get_a_clear_invalid_token() {
    // R-JWT-1
    let app = protect(Issuer::new(ISSUER).local_keys(local(&[&SigningKey::ec("ec")])));
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    for token in [
        "abc",
        "a.b",
        "a.b.c.d.e",
        &format!("{}.{}.sig", b64("not json"), b64("{}")),
    ] {
        refused(&app, token, "well-formed JWT").await;
    }
}

#[tokio::test]
async fn hmac_tokens_with_a_kid_verify_with_the_configured_secret() {
    // R-JWT-1: the shared secret has no kid; a token naming one still finds it.
    let secret = b"0123456789abcdef0123456789abcdef-shared";
    let app = protect(
        Issuer::new(ISSUER)
            .algorithms([Algorithm::HS256])
            .hmac_secret(secret.to_vec()),
    );
    let token = hmac_token(
        &json!({"alg": "HS256", "kid": "k1"}),
        &claims(ISSUER, RESOURCE),
        secret,
    );
    assert_eq!(
        call(&app, "/mcp", Some(&token)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn an_empty_crit_is_refused() {
    // R-JWT-3: RFC 7515 forbids an empty crit list.
    let key = SigningKey::ec("ec");
    let app = protect(Issuer::new(ISSUER).local_keys(local(&[&key])));
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("ec".into());
    header.crit = Some(vec![]);
    refused(
        &app,
        &key.sign_with(header, &claims(ISSUER, RESOURCE)),
        "crit",
    )
    .await;
}

#[tokio::test]
async fn keycloak_id_refresh_offline_and_logout_tokens_are_not_access_tokens() {
    // Keycloak marks its token kinds with a `typ` claim. Its ID tokens carry the
    // client id in `aud`, so with accept_client_ids and no nonce (an implicit or
    // refreshed ID token) one used to pass as an access token.
    let key = SigningKey::rsa("kc-1");
    let server = ResourceServer::builder(RESOURCE)
        .issuer(
            Issuer::new(ISSUER)
                .local_keys(local(&[&key]))
                .discovery(false),
        )
        .audience(mcp_gatekeeper::AudiencePolicy::resource().accept_client_ids(["mcp-client"]))
        .build()
        .expect("valid");
    let app = support::app(server.layer());
    let token = |typ: &str| {
        let mut claims = claims(ISSUER, "mcp-client");
        claims["typ"] = json!(typ);
        claims["azp"] = json!("mcp-client");
        key.sign(&claims)
    };
    for typ in ["ID", "Refresh", "Offline", "Logout", "id"] {
        let answer = refused(&app, &token(typ), "not an access token").await;
        assert!(answer.description().contains(typ), "{typ}: {answer:?}");
    }
    assert_eq!(
        call(&app, "/mcp", Some(&token("Bearer"))).await.status,
        StatusCode::OK
    );
}
