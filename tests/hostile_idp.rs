//! Identity providers that misbehave (issue 7, R-KEY-3/4/5): a JWK set or discovery
//! document that never comes, comes a byte at a time, is 100 MB, is junk, has
//! duplicate `kid`s, weak RSA keys or 10,000 keys, and a provider that flaps. Each is
//! a loopback server; each case ends in a defined status within a bounded time, with
//! no panic, and recovers without a restart once the provider behaves.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use mcp_gatekeeper::keys::JwksOptions;
use mcp_gatekeeper::{Issuer, ResourceServer};
use serde_json::{Value, json};
use support::{SigningKey, TestIdp, call, claims, ms};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const RESOURCE: &str = "https://mcp.example.com/mcp";

/// Limits short enough for tests: 1.5 s per fetch, quick back-off.
fn quick() -> JwksOptions {
    support::quick_jwks()
}

/// The stack trusting `idp`'s issuer with keys from its JWK set.
fn protect_jwks(idp: &TestIdp) -> Router {
    let server = ResourceServer::builder(RESOURCE)
        .issuer(
            Issuer::new(&idp.issuer)
                .jwks_uri(idp.jwks_uri())
                .jwks_options(quick()),
        )
        .build()
        .expect("valid configuration");
    support::app(server.layer())
}

/// How the hostile server answers.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    /// The JWK set, at once.
    Normal,
    /// The headers, then the body one byte every 100 ms.
    Trickle,
    /// 100 MB of JSON-ish bytes, chunked (no length).
    HugeChunked,
    /// 100 MB of JSON-ish bytes with that Content-Length.
    HugeDeclared,
    /// The body set with `set_body`.
    Body,
}

/// A raw HTTP/1.1 server on 127.0.0.1 that answers every request per its mode.
struct Hostile {
    url: String,
    issuer: String,
    mode: Arc<AtomicU8>,
    jwks: Arc<std::sync::Mutex<String>>,
    body: Arc<std::sync::Mutex<String>>,
    sent: Arc<AtomicU64>,
    requests: Arc<AtomicUsize>,
}

impl Hostile {
    async fn start(jwks: Value) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let hostile = Self {
            url: format!("http://{addr}/jwks"),
            issuer: format!("http://{addr}"),
            mode: Arc::new(AtomicU8::new(Mode::Normal as u8)),
            jwks: Arc::new(std::sync::Mutex::new(jwks.to_string())),
            body: Arc::new(std::sync::Mutex::new(String::new())),
            sent: Arc::new(AtomicU64::new(0)),
            requests: Arc::new(AtomicUsize::new(0)),
        };
        let (mode, jwks, body, sent, requests) = (
            hostile.mode.clone(),
            hostile.jwks.clone(),
            hostile.body.clone(),
            hostile.sent.clone(),
            hostile.requests.clone(),
        );
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let mode = mode.load(Ordering::SeqCst);
                let jwks = jwks.lock().expect("jwks").clone();
                let body = body.lock().expect("body").clone();
                requests.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(answer(stream, mode, jwks, body, sent.clone()));
            }
        });
        hostile
    }

    fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    fn set_body(&self, body: &str) {
        *self.body.lock().expect("body") = body.to_owned();
        self.set(Mode::Body);
    }

    fn app(&self, options: JwksOptions) -> Router {
        let server = ResourceServer::builder(RESOURCE)
            .issuer(
                Issuer::new(&self.issuer)
                    .jwks_uri(&self.url)
                    .jwks_options(options),
            )
            .build()
            .expect("valid configuration");
        support::app(server.layer())
    }
}

async fn answer(
    mut stream: tokio::net::TcpStream,
    mode: u8,
    jwks: String,
    body: String,
    sent: Arc<AtomicU64>,
) {
    let mut request = Vec::new();
    let mut buffer = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buffer[..n]),
        }
    }
    let head = |length: Option<usize>| {
        match length {
        Some(length) => format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {length}\r\nconnection: close\r\n\r\n"
        ),
        None => "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n".to_owned(),
    }
    };
    let write = |bytes: Vec<u8>| {
        sent.fetch_add(bytes.len() as u64, Ordering::SeqCst);
        bytes
    };
    let result: std::io::Result<()> = async {
        if mode == Mode::Normal as u8 || mode == Mode::Body as u8 {
            let body = if mode == Mode::Normal as u8 {
                jwks
            } else {
                body
            };
            let bytes = write(format!("{}{body}", head(Some(body.len()))).into_bytes());
            stream.write_all(&bytes).await?;
        } else if mode == Mode::Trickle as u8 {
            stream
                .write_all(&write(head(Some(jwks.len())).into_bytes()))
                .await?;
            for byte in jwks.bytes() {
                stream.write_all(&write(vec![byte])).await?;
                tokio::time::sleep(ms(100)).await;
            }
        } else {
            let total = 100 * 1024 * 1024;
            let declared = mode == Mode::HugeDeclared as u8;
            stream
                .write_all(&write(head(declared.then_some(total)).into_bytes()))
                .await?;
            let chunk = format!("{{\"keys\":[{}", "0,".repeat(32 * 1024));
            let mut written = 0;
            while written < total {
                let piece = if declared {
                    chunk.as_bytes().to_vec()
                } else {
                    format!("{:x}\r\n{chunk}\r\n", chunk.len()).into_bytes()
                };
                stream.write_all(&write(piece)).await?;
                written += chunk.len();
            }
        }
        stream.flush().await
    }
    .await;
    let _ = result;
}

async fn status_within(app: &Router, token: &str, limit: Duration) -> (StatusCode, Duration) {
    let started = Instant::now();
    let answer = tokio::time::timeout(limit, call(app, "/mcp", Some(token)))
        .await
        .unwrap_or_else(|_| panic!("no answer within {limit:?}"));
    if answer.status == StatusCode::SERVICE_UNAVAILABLE {
        assert!(
            !answer.header("retry-after").is_empty(),
            "a 503 says when to retry: {answer:?}"
        );
        assert!(
            !answer.description().contains("127.0.0.1"),
            "no internals: {answer:?}"
        );
    }
    (answer.status, started.elapsed())
}

/// Waits out the back-off, then expects `token` to be accepted again.
async fn recovers(app: &Router, token: &str) {
    for _ in 0..40 {
        if call(app, "/mcp", Some(token)).await.status == StatusCode::OK {
            return;
        }
        tokio::time::sleep(ms(100)).await;
    }
    panic!("no recovery within 4 s");
}

#[tokio::test]
async fn discovery_that_never_answers_ends_within_the_timeout() {
    let key = SigningKey::ec("k");
    let (hole, _task) = support::black_hole().await;
    let issuer = format!("http://{hole}");
    let server = ResourceServer::builder(RESOURCE)
        .issuer(Issuer::new(&issuer).jwks_options(quick()))
        .build()
        .expect("valid");
    let app = support::app(server.layer());
    let token = key.sign(&claims(&issuer, RESOURCE));
    // RFC 8414 then OIDC discovery, each bounded by the 1.5 s timeout.
    let (status, took) = status_within(&app, &token, Duration::from_secs(6)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(took < Duration::from_millis(3600), "{took:?}");
}

#[tokio::test]
async fn a_key_set_sent_a_byte_at_a_time_is_cut_at_the_timeout_and_recovers() {
    let key = SigningKey::ec("k");
    let hostile = Hostile::start(support::signing::jwks(&[&key])).await;
    hostile.set(Mode::Trickle);
    let app = hostile.app(quick());
    let token = key.sign(&claims(&hostile.issuer, RESOURCE));
    let (status, took) = status_within(&app, &token, Duration::from_secs(5)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(took < Duration::from_millis(2100), "{took:?}");
    hostile.set(Mode::Normal);
    recovers(&app, &token).await;
}

#[tokio::test]
async fn a_hundred_megabyte_answer_is_cut_at_the_cap_and_recovers() {
    let key = SigningKey::ec("k");
    let hostile = Hostile::start(support::signing::jwks(&[&key])).await;
    let app = hostile.app(quick());
    let token = key.sign(&claims(&hostile.issuer, RESOURCE));
    for mode in [Mode::HugeChunked, Mode::HugeDeclared] {
        hostile.set(mode);
        hostile.sent.store(0, Ordering::SeqCst);
        let (status, took) = status_within(&app, &token, Duration::from_secs(5)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(took < Duration::from_millis(2100), "{took:?}");
        // Reading stopped at the 256 KiB cap: what the server got out is that, plus
        // what the sockets' buffers took.
        tokio::time::sleep(ms(300)).await;
        let sent = hostile.sent.load(Ordering::SeqCst);
        assert!(sent < 16 * 1024 * 1024, "{sent} bytes were taken");
        tokio::time::sleep(ms(650)).await; // the back-off
    }
    hostile.set(Mode::Normal);
    recovers(&app, &token).await;
}

#[tokio::test]
async fn junk_key_sets_are_503_and_a_good_one_is_used_again() {
    let key = SigningKey::ec("k");
    let hostile = Hostile::start(support::signing::jwks(&[&key])).await;
    let app = hostile.app(quick());
    let token = key.sign(&claims(&hostile.issuer, RESOURCE));
    for junk in [
        "not json at all",
        "{\"keys\": \"junk\"}",
        "[1, 2, 3]",
        "{\"keys\": [1, \"a\", null, {}, {\"kty\": \"RSA\", \"n\": \"!!!\", \"e\": \"AQAB\"}]}",
        "{\"keys\": [{\"kty\": \"oct\", \"k\": \"c2VjcmV0\", \"kid\": \"k\"}]}",
        "",
        "\u{0}\u{1}\u{2}",
    ] {
        hostile.set_body(junk);
        let (status, _) = status_within(&app, &token, Duration::from_secs(5)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{junk:?}");
        tokio::time::sleep(ms(650)).await;
    }
    hostile.set(Mode::Normal);
    recovers(&app, &token).await;
    // Junk after a good set: the last good set stays in use.
    hostile.set_body("{\"keys\": []}");
    assert_eq!(
        call(&app, "/mcp", Some(&token)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn duplicate_kids_are_each_tried_and_forgeries_still_fail() {
    let first = SigningKey::ec("same");
    let second = SigningKey::ec("same");
    let attacker = SigningKey::ec("same");
    let idp = TestIdp::start(&[&first, &second]).await;
    let app = protect_jwks(&idp);
    for key in [&first, &second] {
        let answer = call(
            &app,
            "/mcp",
            Some(&key.sign(&claims(&idp.issuer, RESOURCE))),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    }
    let answer = call(
        &app,
        "/mcp",
        Some(&attacker.sign(&claims(&idp.issuer, RESOURCE))),
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{answer:?}");
    assert!(answer.description().contains("signature"), "{answer:?}");
}

#[tokio::test]
async fn weak_rsa_keys_are_never_used() {
    use base64::Engine;
    let good = SigningKey::rsa("good");
    let weak_n = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xC3u8; 128]);
    let idp = TestIdp::start(&[]).await;
    idp.set_jwks(json!({"keys": [
        {"kty": "RSA", "kid": "weak", "n": weak_n, "e": "AQAB", "alg": "RS256"},
        good.jwk(),
    ]}));
    let app = protect_jwks(&idp);
    let answer = call(
        &app,
        "/mcp",
        Some(&good.sign(&claims(&idp.issuer, RESOURCE))),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    // A token naming the weak key finds no key: it was skipped when the set was read.
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("weak".into());
    let token = good.sign_with(header, &claims(&idp.issuer, RESOURCE));
    let answer = call(&app, "/mcp", Some(&token)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{answer:?}");
    assert!(answer.description().contains("kid"), "{answer:?}");
    // A set of weak keys only is an unusable set: 503, not a 401 for every token.
    idp.set_jwks(json!({"keys": [{"kty": "RSA", "kid": "weak", "n": weak_n, "e": "AQAB"}]}));
    let fresh = protect_jwks(&idp);
    let answer = call(&fresh, "/mcp", Some(&token)).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{answer:?}");
}

#[tokio::test]
async fn ten_thousand_keys_are_refused_or_capped() {
    let key = SigningKey::ec("k-0");
    let mut keys = Vec::with_capacity(10_000);
    for i in 0..10_000 {
        let mut jwk = key.jwk();
        jwk["kid"] = json!(format!("k-{i}"));
        keys.push(jwk);
    }
    let hostile = Hostile::start(json!({ "keys": keys })).await;
    let first = key.sign(&claims(&hostile.issuer, RESOURCE));
    let mut last_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    last_header.kid = Some("k-9999".into());
    let last = key.sign_with(last_header, &claims(&hostile.issuer, RESOURCE));
    // With the default 256 KiB body cap, 1.6 MB of keys is too much: 503.
    let app = hostile.app(quick());
    let (status, _) = status_within(&app, &first, Duration::from_secs(5)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    // With room for the body, the first 64 keys are kept and the rest dropped.
    let mut roomy = quick();
    roomy.fetch.max_body_bytes = 4 * 1024 * 1024;
    let app = hostile.app(roomy);
    let (status, _) = status_within(&app, &first, Duration::from_secs(5)).await;
    assert_eq!(status, StatusCode::OK);
    let answer = call(&app, "/mcp", Some(&last)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{answer:?}");
    assert!(answer.description().contains("kid"), "{answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_provider_gives_503_or_200_and_never_anything_else() {
    let key = SigningKey::ec("k");
    let idp = TestIdp::start(&[&key]).await;
    idp.set_cache_control(Some("max-age=0"));
    let mut options = quick();
    options.min_ttl = ms(100);
    let app = support::app(
        ResourceServer::builder(RESOURCE)
            .issuer(
                Issuer::new(&idp.issuer)
                    .jwks_uri(idp.jwks_uri())
                    .jwks_options(options),
            )
            .build()
            .expect("valid")
            .layer(),
    );
    let token = key.sign(&claims(&idp.issuer, RESOURCE));
    // Down before the first fetch: nothing to verify with, 503.
    idp.switches().down.store(true, Ordering::SeqCst);
    let (status, _) = status_within(&app, &token, Duration::from_secs(5)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let flapping = Arc::new(AtomicBool::new(true));
    let flapper = {
        let (flapping, switch) = (flapping.clone(), idp.down_switch());
        tokio::spawn(async move {
            // Down 50 to 150 ms, up 100 to 300 ms, from a fixed pseudo-random sequence
            // so that no back-off period lines up with the down phases.
            let mut down = false;
            let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
            while flapping.load(Ordering::SeqCst) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                down = !down;
                switch.set(down);
                let period = if down {
                    50 + state % 100
                } else {
                    100 + state % 200
                };
                tokio::time::sleep(ms(period)).await;
            }
            switch.set(false);
        })
    };
    let (mut ok, mut unavailable) = (0, 0);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        let (status, _) = status_within(&app, &token, Duration::from_secs(3)).await;
        match status {
            StatusCode::OK => ok += 1,
            StatusCode::SERVICE_UNAVAILABLE => unavailable += 1,
            other => panic!("a flapping provider gave {other}"),
        }
        tokio::time::sleep(ms(20)).await;
    }
    flapping.store(false, Ordering::SeqCst);
    flapper.await.expect("flapper");
    assert!(
        ok > 0,
        "{ok} accepted, {unavailable} unavailable, {} fetches",
        idp.counters().jwks()
    );
    recovers(&app, &token).await;
    // Once a set was fetched, refreshes that fail keep it (stale-if-error).
    idp.switches().down.store(true, Ordering::SeqCst);
    for _ in 0..5 {
        assert_eq!(
            call(&app, "/mcp", Some(&token)).await.status,
            StatusCode::OK
        );
        tokio::time::sleep(ms(60)).await;
    }
}
