//! Certificate-bound tokens (issue 15; RFC 8705 §3, R-MTLS-1): a real TLS handshake
//! on loopback with client certificates (the `mtls` example: rustls server,
//! tokio-rustls acceptor; reqwest clients with an identity), and the proxy-header
//! mode in process, which is used only when configured.
#![cfg(feature = "rustls")]

mod support;

use std::path::PathBuf;

use axum::body::Body;
use axum::http::StatusCode;
use http::HeaderName;
use mcp_gatekeeper::keys::LocalKeys;
use mcp_gatekeeper::{
    CertificateHeader, ClientCertificate, ClientCertificates, Issuer, ResourceServer, SenderChecks,
};
use serde_json::json;
use support::process;
use support::signing::jwks;
use support::{SigningKey, claims};

fn pki(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/mtls")
        .join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(pki(name)).expect("tests/mtls (tests/mtls/make-certs.sh makes it)")
}

/// A client that trusts the test CA, with `identity` (`client-a`, `client-b`) or none.
fn client(identity: Option<&str>) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&read("ca.pem")).expect("CA");
    let mut builder = reqwest::Client::builder()
        .tls_certs_only([ca])
        .timeout(std::time::Duration::from_secs(10));
    if let Some(name) = identity {
        let mut pem = read(&format!("{name}.pem"));
        pem.extend(read(&format!("{name}.key")));
        builder = builder.identity(reqwest::Identity::from_pem(&pem).expect("identity"));
    }
    builder.build().expect("client")
}

/// The DER of a PEM certificate of the test PKI.
fn der(name: &str) -> Vec<u8> {
    use base64::Engine as _;
    let pem = String::from_utf8(read(name)).expect("PEM");
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("base64")
}

#[tokio::test]
async fn a_bound_token_works_only_over_a_connection_with_its_certificate() {
    let cert_a = pki("client-a.pem");
    let server = process::start(
        "mtls",
        &[
            "--listen",
            "127.0.0.1:0",
            "--cert",
            pki("server.pem").to_str().expect("path"),
            "--key",
            pki("server.key").to_str().expect("path"),
            "--client-ca",
            pki("ca.pem").to_str().expect("path"),
            "--token-for",
            cert_a.to_str().expect("path"),
        ],
        "token for",
    )
    .await;
    let resource = server.field("resource");
    let token = server.field(&format!("token for {}", cert_a.display()));
    let call = |identity: Option<&'static str>, token: String| {
        let resource = resource.clone();
        async move {
            client(identity)
                .get(&resource)
                .bearer_auth(token)
                .send()
                .await
                .expect("TLS request")
        }
    };

    let bound = call(Some("client-a"), token.clone()).await;
    assert_eq!(bound.status(), StatusCode::OK);
    let body: serde_json::Value = bound.json().await.expect("json");
    let thumbprint = ClientCertificate::new(der("client-a.pem")).thumbprint();
    assert_eq!(body["cnf"]["x5t#S256"], json!(thumbprint));

    for (identity, why) in [
        (Some("client-b"), "not the one the token is bound to"),
        (None, "came without one"),
    ] {
        let answer = call(identity, token.clone()).await;
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED, "{identity:?}");
        let challenge = answer
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
        let body: serde_json::Value = answer.json().await.expect("json");
        assert!(
            body["error_description"]
                .as_str()
                .is_some_and(|d| d.contains(why)),
            "{identity:?}: {body}"
        );
    }
}

const ISSUER: &str = "https://idp.example.com";
const RESOURCE: &str = "https://mcp.example.com/mcp";

#[tokio::test]
async fn a_proxy_header_is_read_only_when_configured_by_name() {
    let idp = SigningKey::ec("idp");
    let keys = || LocalKeys::from_jwks(jwks(&[&idp]).to_string().as_bytes()).expect("keys");
    let issuer = |bound: bool| {
        Issuer::new(ISSUER)
            .local_keys(keys())
            .discovery(false)
            .certificate_bound_tokens(bound)
    };
    let make = |checks: Option<SenderChecks>, bound: bool| {
        let mut builder = ResourceServer::builder(RESOURCE).issuer(issuer(bound));
        if let Some(checks) = checks {
            builder = builder.sender_checks(checks);
        }
        support::app(builder.build().expect("config").layer())
    };
    let thumbprint = ClientCertificate::new(der("client-a.pem")).thumbprint();
    let mut claims = claims(ISSUER, RESOURCE);
    claims["cnf"] = json!({"x5t#S256": thumbprint});
    let token = idp.sign(&claims);
    let escaped: String = form_urlencoded::byte_serialize(&read("client-a.pem"))
        .collect::<String>()
        .replace('+', "%20");
    let escaped_b: String = form_urlencoded::byte_serialize(&read("client-b.pem"))
        .collect::<String>()
        .replace('+', "%20");
    let send = |app: axum::Router, header: Option<(&'static str, String)>| {
        let token = token.clone();
        async move {
            let mut request =
                http::Request::get("/mcp").header("authorization", format!("Bearer {token}"));
            if let Some((name, value)) = header {
                request = request.header(name, value);
            }
            support::send(&app, request.body(Body::empty()).expect("request")).await
        }
    };
    let header_mode = || {
        SenderChecks::new().client_certificates(ClientCertificates::from_header(
            HeaderName::from_static("x-ssl-client-cert"),
            CertificateHeader::EscapedPem,
        ))
    };

    // Configured: the proxy's header is the certificate.
    let proxied = make(Some(header_mode()), true);
    let ok = send(
        proxied.clone(),
        Some(("x-ssl-client-cert", escaped.clone())),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{ok:?}");
    let other = send(proxied.clone(), Some(("x-ssl-client-cert", escaped_b))).await;
    assert_eq!(other.status, StatusCode::UNAUTHORIZED, "{other:?}");
    assert!(other.description().contains("not the one"), "{other:?}");
    let none = send(proxied, None).await;
    assert!(none.description().contains("came without one"), "{none:?}");

    // Not configured: the same header is ignored, whoever sends it.
    let direct = make(None, true);
    let ignored = send(direct, Some(("x-ssl-client-cert", escaped.clone()))).await;
    assert_eq!(ignored.status, StatusCode::UNAUTHORIZED, "{ignored:?}");
    assert!(
        ignored.description().contains("came without one"),
        "{ignored:?}"
    );

    // An issuer that does not accept certificate-bound tokens refuses them outright.
    let off = make(Some(header_mode()), false);
    let refused = send(off, Some(("x-ssl-client-cert", escaped))).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{refused:?}");
    assert!(
        refused
            .description()
            .contains("does not accept certificate-bound"),
        "{refused:?}"
    );

    // The metadata document says certificate-bound tokens are accepted.
    let request = http::Request::get("/.well-known/oauth-protected-resource/mcp")
        .body(Body::empty())
        .expect("request");
    let doc = support::send(&make(None, true), request).await.body;
    assert_eq!(
        doc["tls_client_certificate_bound_access_tokens"],
        json!(true)
    );
}

/// A verifier of the user's own that vouches for every token with these claims.
struct Vouches(serde_json::Map<String, serde_json::Value>);

impl mcp_gatekeeper::TokenVerifier for Vouches {
    fn verify(&self, _: &mcp_gatekeeper::BearerToken) -> mcp_gatekeeper::VerifyFuture {
        let kind = mcp_gatekeeper::TokenKind::Other("custom".into());
        let principal = mcp_gatekeeper::Principal::from_claims(kind, ISSUER, self.0.clone());
        mcp_gatekeeper::VerifyFuture::ready(Ok(principal))
    }
}

#[tokio::test]
async fn a_bound_principal_of_a_verifier_of_ones_own_is_refused_even_with_the_right_certificate() {
    // R-JWT-5: only issuers set up for a binding (Issuer::certificate_bound_tokens) may
    // have bound tokens; a custom verifier's principal carries no such setting.
    let der = der("client-a.pem");
    let mut claims = claims(ISSUER, RESOURCE);
    claims["cnf"] = json!({"x5t#S256": ClientCertificate::new(der.clone()).thumbprint()});
    let serde_json::Value::Object(claims) = claims else {
        unreachable!("claims are an object")
    };
    let server = ResourceServer::with_verifier(RESOURCE, Vouches(claims))
        .authorization_server(ISSUER)
        .build()
        .expect("config");
    let app = support::app(server.layer());
    let mut request = http::Request::get("/mcp")
        .header("authorization", "Bearer opaque-custom-token")
        .body(Body::empty())
        .expect("request");
    request.extensions_mut().insert(ClientCertificate::new(der));
    let answer = support::send(&app, request).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{answer:?}");
    assert!(
        answer
            .description()
            .contains("does not accept certificate-bound"),
        "{answer:?}"
    );
}
