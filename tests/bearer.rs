//! Bearer extraction through the whole stack (R-BEAR-1..4) and the challenges it
//! produces (R-ERR-1, R-ERR-2).

mod support;

use axum::Router;
use axum::body::Body;
use http::{Request, StatusCode, header};
use mcp_gatekeeper::keys::LocalKeys;
use mcp_gatekeeper::{Issuer, ResourceServer};
use support::{SigningKey, call, claims, send};

const RESOURCE: &str = "https://mcp.example.com/mcp";
const ISSUER: &str = "https://idp.example.com";
const METADATA: &str = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp";

fn stack(key: &SigningKey) -> Router {
    let keys =
        LocalKeys::from_jwks(support::signing::jwks(&[key]).to_string().as_bytes()).expect("keys");
    let server = ResourceServer::builder(RESOURCE)
        .issuer(Issuer::new(ISSUER).local_keys(keys).discovery(false))
        .scopes_supported(["mcp:read", "mcp:write"])
        .required_scopes(["mcp:read"])
        .max_token_len(4096)
        .build()
        .expect("valid");
    support::app(server.layer())
}

async fn with_authorization(app: &Router, values: &[&str], uri: &str) -> support::Answer {
    let mut request = Request::post(uri);
    for value in values {
        request = request.header(header::AUTHORIZATION, *value);
    }
    send(app, request.body(Body::empty()).expect("request")).await
}

#[tokio::test]
async fn no_credentials_get_a_challenge_without_error_but_with_metadata_and_scope() {
    // R-BEAR-3, R-ERR-2
    let app = stack(&SigningKey::ec("k"));
    let answer = call(&app, "/mcp", None).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        answer.challenge(),
        format!("Bearer resource_metadata=\"{METADATA}\", scope=\"mcp:read\"")
    );
    assert!(!answer.challenge().contains("error="));
}

#[tokio::test]
async fn scheme_is_case_insensitive() {
    // R-BEAR-1
    let key = SigningKey::ec("k");
    let app = stack(&key);
    let token = key.sign(&claims(ISSUER, RESOURCE));
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let answer = with_authorization(&app, &[&format!("{scheme}  {token}")], "/mcp").await;
        assert_eq!(answer.status, StatusCode::OK, "{scheme}: {answer:?}");
    }
}

#[tokio::test]
async fn malformed_authorization_is_400_invalid_request() {
    // R-BEAR-1, R-ERR-1
    let app = stack(&SigningKey::ec("k"));
    for value in [
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer a b",
        "Token abc",
        "Bearer a%20b",
    ] {
        let answer = with_authorization(&app, &[value], "/mcp").await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{value}: {answer:?}"
        );
        assert!(
            answer.challenge().contains("error=\"invalid_request\""),
            "{answer:?}"
        );
        assert!(answer.challenge().contains(METADATA), "{answer:?}");
        assert_eq!(answer.body["error"], "invalid_request");
    }
}

#[tokio::test]
async fn query_form_and_duplicate_credentials_are_400() {
    // R-BEAR-2
    let key = SigningKey::ec("k");
    let app = stack(&key);
    let token = key.sign(&claims(ISSUER, RESOURCE));
    let answer = with_authorization(&app, &[], &format!("/mcp?access_token={token}")).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.description().contains("query"), "{answer:?}");
    assert!(!answer.description().contains(&token));
    let answer = with_authorization(
        &app,
        &[&format!("Bearer {token}")],
        &format!("/mcp?access_token={token}"),
    )
    .await;
    assert_eq!(
        answer.status,
        StatusCode::BAD_REQUEST,
        "two methods at once"
    );
    let answer = with_authorization(
        &app,
        &[&format!("Bearer {token}"), &format!("Bearer {token}")],
        "/mcp",
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.description().contains("more than one"), "{answer:?}");
    let form = Request::post("/mcp")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("access_token={token}")))
        .expect("request");
    let answer = send(&app, form).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.description().contains("form-encoded"), "{answer:?}");
}

#[tokio::test]
async fn oversized_tokens_are_refused_before_decoding() {
    // R-BEAR-4
    let app = stack(&SigningKey::ec("k"));
    let huge = format!("Bearer {}", "a".repeat(64 * 1024));
    let answer = with_authorization(&app, &[&huge], "/mcp").await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.description().contains("4096 bytes"), "{answer:?}");
}

#[tokio::test]
async fn a_bad_token_is_401_invalid_token_with_metadata_and_json_body() {
    // R-ERR-1, R-ERR-2
    let app = stack(&SigningKey::ec("k"));
    let answer = call(&app, "/mcp", Some("not-a-jwt")).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let challenge = answer.challenge();
    assert!(
        challenge.starts_with("Bearer error=\"invalid_token\", error_description=\""),
        "{challenge}"
    );
    assert!(
        challenge.contains(&format!("resource_metadata=\"{METADATA}\"")),
        "{challenge}"
    );
    assert_eq!(answer.body["error"], "invalid_token");
    assert_eq!(answer.header("content-type"), "application/json");
    assert!(
        !answer.body.to_string().contains("not-a-jwt"),
        "the token is never echoed (R-OPS-1)"
    );
}

/// Reads one HTTP/1.1 response (headers and a Content-Length body) from `stream`.
async fn read_response(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buffer).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            if buffer.len() >= end + 4 + length {
                return text;
            }
        }
        let n = stream.read(&mut chunk).await.expect("read the response");
        assert!(n > 0, "connection closed before a whole response: {text:?}");
        buffer.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn a_refused_request_body_is_drained_so_the_connection_survives() {
    // R-BEAR-3, R-ERR-2: the client must be able to read the challenge. hyper closes
    // (and the kernel resets) a connection whose request body was left unread.
    use tokio::io::AsyncWriteExt;
    let app = stack(&SigningKey::ec("k"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    // Refused by the bearer layer (no token) and by the verify layer (bad token).
    for authorization in ["", "Authorization: Bearer not.a.token\r\n"] {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let body = format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"pad\":\"{}\"}}",
            "x".repeat(20_000)
        );
        let head = format!(
            "POST /mcp HTTP/1.1\r\nHost: {addr}\r\n{authorization}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.expect("write head");
        stream.flush().await.expect("flush");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        stream.write_all(body.as_bytes()).await.expect("write body");
        let first = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            read_response(&mut stream),
        )
        .await
        .expect("answer");
        assert!(first.starts_with("HTTP/1.1 401"), "{first}");
        assert!(
            first
                .to_ascii_lowercase()
                .contains("www-authenticate: bearer"),
            "{first}"
        );
        // The same connection serves a second request: the body was read, not abandoned.
        let second = format!(
            "GET /.well-known/oauth-protected-resource/mcp HTTP/1.1\r\nHost: {addr}\r\n\r\n"
        );
        stream
            .write_all(second.as_bytes())
            .await
            .expect("write second request");
        let answer = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            read_response(&mut stream),
        )
        .await
        .expect("answer");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    server.abort();
}
