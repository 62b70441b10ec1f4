//! Forged and malformed tokens (issue 7): every case is refused, none reaches the inner
//! service. Each test is one family of attacks; `refused` checks a case: the status
//! (401 `invalid_token`, or 400 `invalid_request` where the Authorization header itself
//! breaks RFC 6750's syntax, which is decided before any token is read), the challenge,
//! and that the protected handler never ran. Tokens are made with real tools where they
//! can be (jsonwebtoken and AWS-LC sign them), by hand where no tool would.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Header};
use mcp_gatekeeper::keys::LocalKeys;
use mcp_gatekeeper::{Issuer, ResourceServer};
use serde_json::{Value, json};
use support::signing::{hmac_token, jwks, unsigned};
use support::{Answer, SigningKey, claims};

const ISSUER: &str = "https://idp.example.com";
const RESOURCE: &str = "http://localhost/mcp";

/// The protected app, the number of requests its handler saw, and every log line the
/// stack wrote (R-OPS-1: checked for the tokens after each case).
struct Target {
    app: Router,
    reached: Arc<AtomicUsize>,
    cases: AtomicUsize,
    logs: Arc<std::sync::Mutex<Vec<u8>>>,
    /// The audit trail as JSON lines, and how many of its events were checked.
    audit: support::AuditLog,
    audited: AtomicUsize,
    _capture: tracing::subscriber::DefaultGuard,
}

impl Target {
    fn new(issuer: Issuer) -> Self {
        Self::with(ResourceServer::builder(RESOURCE).issuer(issuer.discovery(false)))
    }

    fn with(builder: mcp_gatekeeper::ResourceServerBuilder) -> Self {
        let reached = Arc::new(AtomicUsize::new(0));
        let count = reached.clone();
        let (capture, logs, audit) = support::capture_logs_and_audit();
        let server = builder.build().expect("valid configuration");
        let app = Router::new()
            .route(
                "/mcp",
                get(move || {
                    count.fetch_add(1, Ordering::SeqCst);
                    async { "reached" }
                }),
            )
            .layer(server.layer());
        Self {
            app,
            reached,
            cases: AtomicUsize::new(0),
            logs,
            audit,
            audited: AtomicUsize::new(0),
            _capture: capture,
        }
    }

    /// Sends `token` and checks it is refused with 401 `invalid_token` naming `why`.
    async fn refused(&self, token: &str, why: &str) -> Answer {
        self.refused_with(token, StatusCode::UNAUTHORIZED, why)
            .await
    }

    async fn refused_with(&self, token: &str, status: StatusCode, why: &str) -> Answer {
        self.cases.fetch_add(1, Ordering::SeqCst);
        let answer = self.send(token).await;
        assert_eq!(answer.status, status, "{why}: {answer:?}");
        let code = if status == StatusCode::BAD_REQUEST {
            "invalid_request"
        } else {
            "invalid_token"
        };
        assert!(
            answer.challenge().contains(&format!("error=\"{code}\"")),
            "{why}: {answer:?}"
        );
        assert!(
            answer.description().contains(why),
            "expected {why:?} in {answer:?}"
        );
        assert_eq!(
            self.reached.load(Ordering::SeqCst),
            0,
            "{why}: reached the service"
        );
        let event = self.one_audit_event("reject", status);
        assert_eq!(event["kind"], code, "{why}: {event}");
        assert!(
            event["rule"].as_str().is_some_and(|r| r.starts_with("R-")),
            "{why}: {event}"
        );
        // No principal was made; an issuer is named only once its key verified the
        // signature (then the claims were refused), never as the token claims it.
        for unverified in ["subject", "client_id"] {
            assert!(event.get(unverified).is_none(), "{why}: {event}");
        }
        assert!(
            event.get("issuer").is_none() || event["issuer"] == ISSUER,
            "{why}: {event}"
        );
        self.assert_nothing_leaks(token, &answer);
        answer
    }

    /// The one audit event the last request produced: its decision, its status, the
    /// request's method and path, its timings; never a query or a header's value.
    fn one_audit_event(&self, decision: &str, status: StatusCode) -> Value {
        let events = self.audit.events();
        let seen = self.audited.swap(events.len(), Ordering::SeqCst);
        assert_eq!(
            events.len(),
            seen + 1,
            "one audit event per request: {events:?}"
        );
        let event = events[seen].clone();
        assert_eq!(event["target"], "mcp_gatekeeper::audit", "{event}");
        assert_eq!(event["message"], "decision", "{event}");
        assert_eq!(event["decision"], decision, "{event}");
        assert_eq!(event["status"], status.as_u16(), "{event}");
        assert_eq!(event["http_method"], "GET", "{event}");
        assert_eq!(event["path"], "/mcp", "{event}");
        assert!(
            event["time_unix_ms"]
                .as_u64()
                .is_some_and(|t| t > 1_700_000_000_000),
            "{event}"
        );
        let latency = event["latency_ms"].as_f64().expect("latency_ms");
        let decided = event["decision_ms"].as_f64().expect("decision_ms");
        assert!(0.0 <= decided && decided <= latency, "{event}");
        event
    }

    /// No part of `token` long enough to matter is in the answer or in any log line.
    fn assert_nothing_leaks(&self, token: &str, answer: &Answer) {
        let logs = String::from_utf8_lossy(&self.logs.lock().expect("logs")).into_owned();
        let answer = format!("{:?} {:?}", answer.headers, answer.body);
        let secrets = token
            .split(['.', ' ', '\t'])
            .filter(|part| part.len() >= 12)
            .chain([token]);
        for secret in secrets {
            assert!(!answer.contains(secret), "the answer shows {secret:?}");
            assert!(!logs.contains(secret), "the logs show {secret:?}");
            assert!(
                !self.audit.text().contains(secret),
                "the audit trail shows {secret:?}"
            );
        }
    }

    async fn send(&self, token: &str) -> Answer {
        let request = http::Request::get("/mcp")
            .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
            .body(axum::body::Body::empty())
            .expect("request");
        support::send(&self.app, request).await
    }

    /// A valid token goes through (so the refusals are not of a broken setup).
    async fn accepts(&self, token: &str) {
        let answer = self.send(token).await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        self.reached.store(0, Ordering::SeqCst);
        let event = self.one_audit_event("allow", StatusCode::OK);
        assert_eq!(event["issuer"], ISSUER, "{event}");
        assert!(event["subject"].is_string(), "{event}");
        assert!(event["key_tier"].is_string(), "{event}");
        assert!(event.get("rule").is_none(), "{event}");
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let cases = self.cases.load(Ordering::SeqCst);
        // Seen with --nocapture: the number of cases each family checked.
        println!("{cases} cases refused");
        if cases > 0 && !std::thread::panicking() {
            let logs = self.logs.lock().expect("logs");
            assert!(
                String::from_utf8_lossy(&logs).contains("decision=\"reject\""),
                "the leak check saw the stack's logs"
            );
            let events = self.audit.events().len();
            assert_eq!(
                events,
                self.audited.load(Ordering::SeqCst),
                "every audit event was checked: none without its request"
            );
        }
    }
}

fn local(keys: &[&SigningKey]) -> LocalKeys {
    LocalKeys::from_jwks(jwks(keys).to_string().as_bytes()).expect("local keys")
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The three segments of a token.
fn parts(token: &str) -> [String; 3] {
    let mut parts = token.split('.').map(str::to_owned);
    [
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    ]
}

/// A token signed by `key` over a header and payload given as raw JSON text (so that
/// duplicate keys and odd values survive).
fn signed_raw(key: &SigningKey, header: &str, payload: &str) -> String {
    let message = format!("{}.{}", b64(header), b64(payload));
    let signature = key.sign_message(message.as_bytes());
    format!("{message}.{signature}")
}

#[tokio::test]
async fn alg_none_in_every_casing_is_refused() {
    let key = SigningKey::ec("k");
    let target = Target::new(Issuer::new(ISSUER).local_keys(local(&[&key])));
    target.accepts(&key.sign(&claims(ISSUER, RESOURCE))).await;
    let body = claims(ISSUER, RESOURCE);
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = json!({"alg": alg, "typ": "JWT"});
        let bare = format!("{}.{}.", b64(header.to_string()), b64(body.to_string()));
        target.refused(&bare, "is not accepted").await;
        target
            .refused(&unsigned(&header, &body), "is not accepted")
            .await;
    }
}

#[tokio::test]
async fn hmac_with_the_issuers_public_key_as_secret_is_refused() {
    // Algorithm confusion: the attacker signs HS256 with what the server would use to
    // verify RS256, in every form a server might hold it.
    let key = SigningKey::rsa("k");
    let target = Target::new(Issuer::new(ISSUER).local_keys(local(&[&key])));
    let pem = key.public_pem.clone().expect("RSA PEM");
    let jwk = key.jwk();
    let modulus = URL_SAFE_NO_PAD
        .decode(jwk["n"].as_str().unwrap_or_default())
        .expect("n");
    let der = {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .expect("DER")
    };
    let header = json!({"alg": "HS256", "typ": "at+jwt", "kid": "k"});
    for secret in [
        pem.as_bytes().to_vec(),
        pem.trim_end().as_bytes().to_vec(),
        der,
        jwk.to_string().into_bytes(),
        modulus,
    ] {
        let token = hmac_token(&header, &claims(ISSUER, RESOURCE), &secret);
        target.refused(&token, "HS256").await;
    }
}

#[tokio::test]
async fn hostile_kids_are_only_unknown_kids() {
    let key = SigningKey::ec("k");
    let attacker = SigningKey::ec("attacker");
    let target = Target::with(
        ResourceServer::builder(RESOURCE)
            .issuer(
                Issuer::new(ISSUER)
                    .local_keys(local(&[&key]))
                    .discovery(false),
            )
            .max_token_len(32 * 1024),
    );
    let huge = "k".repeat(10 * 1024);
    for kid in [
        "../../../../etc/passwd",
        "k' OR '1'='1' --",
        "https://attacker.example/jwks.json",
        "",
        huge.as_str(),
        "k\u{0}",
    ] {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.to_owned());
        for signer in [&key, &attacker] {
            let token = signer.sign_with(header.clone(), &claims(ISSUER, RESOURCE));
            target.refused(&token, "kid").await;
        }
    }
    // With the default cap, a 10 KB kid makes a token refused before it is read.
    let capped = Target::new(Issuer::new(ISSUER).local_keys(local(&[&key])));
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(huge);
    let token = key.sign_with(header, &claims(ISSUER, RESOURCE));
    capped
        .refused_with(&token, StatusCode::BAD_REQUEST, "longer than")
        .await;
}

#[tokio::test]
async fn keys_named_or_embedded_in_the_header_are_never_used() {
    let key = SigningKey::ec("k");
    let attacker = SigningKey::ec("k"); // the trusted kid, the attacker's key
    let target = Target::new(Issuer::new(ISSUER).local_keys(local(&[&key])));
    let attacker_jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(attacker.jwk()).expect("JWK");
    let base = {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some("k".into());
        h
    };
    let mut jku = base.clone();
    jku.jku = Some("https://attacker.example/jwks.json".into());
    let mut x5u = base.clone();
    x5u.x5u = Some("https://attacker.example/cert.pem".into());
    let mut jwk = base.clone();
    jwk.jwk = Some(attacker_jwk);
    let mut x5c = base.clone();
    x5c.x5c = Some(vec![b64(b"attacker certificate")]);
    for header in [jku, x5u, jwk, x5c] {
        let token = attacker.sign_with(header, &claims(ISSUER, RESOURCE));
        target.refused(&token, "signature does not verify").await;
    }
    // A kid that is a URL, with jku beside it: still only an unknown kid.
    let mut url_kid = base;
    url_kid.kid = Some("https://attacker.example/k".into());
    url_kid.jku = Some("https://attacker.example/jwks.json".into());
    let token = attacker.sign_with(url_kid, &claims(ISSUER, RESOURCE));
    target.refused(&token, "kid").await;
}

#[tokio::test]
async fn critical_extensions_and_unencoded_payloads_are_refused() {
    let key = SigningKey::ec("k");
    let target = Target::new(Issuer::new(ISSUER).local_keys(local(&[&key])));
    let body = claims(ISSUER, RESOURCE).to_string();
    for header in [
        r#"{"alg":"ES256","kid":"k","crit":["exp"]}"#,
        r#"{"alg":"ES256","kid":"k","crit":["urn:example:unknown"],"urn:example:unknown":1}"#,
        r#"{"alg":"ES256","kid":"k","crit":[]}"#,
        r#"{"alg":"ES256","kid":"k","crit":["b64"],"b64":false}"#,
    ] {
        target
            .refused(&signed_raw(&key, header, &body), "crit")
            .await;
    }
    // RFC 7797's b64 without crit: this server never reads unencoded payloads.
    let header = r#"{"alg":"ES256","kid":"k","b64":false}"#;
    target
        .refused(&signed_raw(&key, header, &body), "b64")
        .await;
}

#[tokio::test]
async fn malformed_and_psychic_ecdsa_signatures_are_refused() {
    let key = SigningKey::ec("k");
    let target = Target::new(Issuer::new(ISSUER).local_keys(local(&[&key])));
    let token = key.sign(&claims(ISSUER, RESOURCE));
    target.accepts(&token).await;
    let [header, payload, signature] = parts(&token);
    let raw = URL_SAFE_NO_PAD.decode(&signature).expect("signature");
    // The order n of P-256: r = s = n is r = s = 0 mod n.
    let n = hex("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");
    // The same (valid) signature DER-encoded, as X.509 has it; JWS wants raw R || S.
    let der = {
        let int = |half: &[u8]| {
            let mut v = half.to_vec();
            while v.len() > 1 && v[0] == 0 && v[1] < 0x80 {
                v.remove(0);
            }
            if v[0] >= 0x80 {
                v.insert(0, 0);
            }
            let mut out = vec![0x02, v.len() as u8];
            out.extend(v);
            out
        };
        let mut body = int(&raw[..32]);
        body.extend(int(&raw[32..]));
        let mut out = vec![0x30, body.len() as u8];
        out.extend(body);
        out
    };
    let mut high_s = raw.clone();
    high_s[32..].copy_from_slice(&[0xff; 32]);
    for forged in [
        vec![0u8; 64],
        [n.clone(), n].concat(),
        vec![0xff; 64],
        raw[..63].to_vec(),
        [raw.clone(), vec![0]].concat(),
        der,
        high_s,
        Vec::new(),
    ] {
        let token = format!("{header}.{payload}.{}", b64(&forged));
        target.refused(&token, "signature").await;
    }
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

#[tokio::test]
async fn a_valid_signature_over_other_parts_is_refused() {
    let key = SigningKey::rsa("k");
    let target = Target::new(Issuer::new(ISSUER).local_keys(local(&[&key])));
    let token = key.sign(&claims(ISSUER, RESOURCE));
    target.accepts(&token).await;
    let [header, payload, signature] = parts(&token);
    let other_header = b64(r#"{"alg":"RS256","kid":"k","typ":"JWT"}"#);
    let mut admin = claims(ISSUER, RESOURCE);
    admin["sub"] = json!("admin");
    let other_payload = b64(admin.to_string());
    for forged in [
        format!("{other_header}.{payload}.{signature}"),
        format!("{header}.{other_payload}.{signature}"),
    ] {
        target.refused(&forged, "signature does not verify").await;
    }
    target
        .refused(&format!("{payload}.{header}.{signature}"), "")
        .await;
}

#[tokio::test]
async fn duplicate_json_keys_are_refused() {
    // Two parsers, one keeping the first and one the last, would read two tokens.
    let key = SigningKey::ec("k");
    let target = Target::new(Issuer::new(ISSUER).local_keys(local(&[&key])));
    let header = r#"{"alg":"ES256","kid":"k","typ":"at+jwt"}"#;
    let exp = support::now() + 600;
    let base = format!(r#""iss":"{ISSUER}","aud":"{RESOURCE}","exp":{exp},"scope":"mcp:read""#);
    target
        .accepts(&signed_raw(
            &key,
            header,
            &format!(r#"{{{base},"sub":"u"}}"#),
        ))
        .await;
    for payload in [
        format!(r#"{{{base},"sub":"user-1","sub":"admin"}}"#),
        format!(
            r#"{{"iss":"https://evil.example","iss":"{ISSUER}","aud":"{RESOURCE}","exp":{exp},"sub":"u"}}"#
        ),
        format!(r#"{{{base},"sub":"u","exp":1}}"#),
        format!(r#"{{{base},"sub":"u","roles":{{"admin":false,"admin":true}}}}"#),
    ] {
        target
            .refused(&signed_raw(&key, header, &payload), "duplicate")
            .await;
    }
    let payload = format!(r#"{{{base},"sub":"u"}}"#);
    let twice = r#"{"alg":"ES256","kid":"k","kid":"other"}"#;
    target
        .refused(&signed_raw(&key, twice, &payload), "well-formed")
        .await;
}

#[tokio::test]
async fn time_claims_of_the_wrong_type_or_out_of_range_are_refused() {
    let key = SigningKey::ec("k");
    let target = Target::new(Issuer::new(ISSUER).local_keys(local(&[&key])));
    let now = support::now();
    let with = |name: &str, value: Value| {
        let mut c = claims(ISSUER, RESOURCE);
        c[name] = value;
        key.sign(&c)
    };
    let cases: Vec<(String, &str)> = vec![
        (with("exp", json!(1e20)), "exp"),
        (with("exp", json!(u64::MAX)), "exp"),
        (with("exp", json!(-1)), "exp"),
        (with("exp", json!(1.797_693_134_862_315_7e308)), "exp"),
        (with("exp", json!((now + 600).to_string())), "exp"),
        (with("exp", json!(null)), "exp"),
        (with("nbf", json!(1e20)), "nbf"),
        (with("nbf", json!(-5)), "nbf"),
        (with("nbf", json!("0")), "nbf"),
        (with("iat", json!(1e20)), "iat"),
        (with("iat", json!(-5)), "iat"),
        (with("iat", json!(now.to_string())), "iat"),
        (with("exp", json!(now as f64 - 3600.5)), "expired"),
    ];
    for (token, why) in cases {
        target.refused(&token, why).await;
    }
    // A fractional exp in range is a NumericDate (RFC 7519 §2) and is accepted.
    target
        .accepts(&with("exp", json!(now as f64 + 600.5)))
        .await;
}

#[tokio::test]
async fn audiences_that_are_not_strings_are_refused() {
    let key = SigningKey::ec("k");
    let target = Target::new(Issuer::new(ISSUER).local_keys(local(&[&key])));
    for aud in [
        json!({"aud": RESOURCE}),
        json!(42),
        json!([RESOURCE, 1]),
        json!(true),
    ] {
        let mut c = claims(ISSUER, RESOURCE);
        c["aud"] = aud;
        target.refused(&key.sign(&c), "aud").await;
    }
}

#[tokio::test]
async fn nested_jwts_are_refused() {
    let key = SigningKey::ec("k");
    let target = Target::new(Issuer::new(ISSUER).local_keys(local(&[&key])));
    let inner = key.sign(&claims(ISSUER, RESOURCE));
    let header = r#"{"alg":"ES256","kid":"k","cty":"JWT"}"#;
    // The payload is the inner token, not claims.
    target
        .refused(&signed_raw(&key, header, &inner), "nested")
        .await;
    // cty JWT over JSON claims: still a nested token by its own header.
    let body = claims(ISSUER, RESOURCE).to_string();
    target
        .refused(&signed_raw(&key, header, &body), "nested")
        .await;
    // A payload that is another token, without cty: not claims.
    let plain = r#"{"alg":"ES256","kid":"k"}"#;
    target
        .refused(&signed_raw(&key, plain, &inner), "claims")
        .await;
}

#[tokio::test]
async fn tokens_with_whitespace_padding_or_other_alphabets_are_refused() {
    let key = SigningKey::ec("k");
    let target = Target::new(Issuer::new(ISSUER).local_keys(local(&[&key])));
    let token = key.sign(&claims(ISSUER, RESOURCE));
    let [header, payload, signature] = parts(&token);
    // Padding and the standard base64 alphabet's + and / pass RFC 6750's b64token
    // syntax, so they reach the token checks: 401.
    for forged in [
        format!("{token}=="),
        format!("{header}.{payload}.+{}", &signature[1..]),
        format!("{header}.{payload}.{}/", &signature[..signature.len() - 1]),
        format!("{header}+.{payload}.{signature}"),
    ] {
        target.refused(&forged, "").await;
    }
    // Whitespace inside, padding anywhere but at the end, or bytes outside ASCII break
    // the Authorization header's own syntax (R-BEAR-1): 400 invalid_request, before
    // any token is read.
    for forged in [
        format!("{header}. {payload}.{signature}"),
        format!("{header}.{payload}\t.{signature}"),
        format!("{header}.{payload}=.{signature}"),
    ] {
        target
            .refused_with(&forged, StatusCode::BAD_REQUEST, "b64token")
            .await;
    }
    let value = http::HeaderValue::from_bytes(format!("Bearer {token}\u{e9}").as_bytes())
        .expect("obs-text is a valid header value");
    let request = http::Request::get("/mcp")
        .header(http::header::AUTHORIZATION, value)
        .body(axum::body::Body::empty())
        .expect("request");
    let answer = support::send(&target.app, request).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{answer:?}");
    assert_eq!(target.reached.load(Ordering::SeqCst), 0);
    let event = target.one_audit_event("reject", StatusCode::BAD_REQUEST);
    assert_eq!(event["rule"], "R-BEAR-1", "{event}");
}

#[tokio::test]
async fn key_bound_refresh_and_id_tokens_are_refused_as_bearer_tokens() {
    let key = SigningKey::ec("k");
    let target = Target::new(Issuer::new(ISSUER).local_keys(local(&[&key])));
    for (name, value, why) in [
        (
            "cnf",
            json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}),
            "bound to a DPoP key",
        ),
        (
            "cnf",
            json!({"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}),
            "bound to a client certificate",
        ),
        ("cnf", json!({"jwk": {"kty": "EC"}}), "cannot check"),
        ("cnf", json!({}), "cannot check"),
        ("cnf", json!("jkt"), "cannot check"),
        ("nonce", json!("n-0S6_WzA2Mj"), "ID token"),
        ("at_hash", json!("77QmUPtjPfzWtF2AnpK9RQ"), "ID token"),
        ("token_use", json!("id"), "ID token"),
        ("token_type", json!("refresh_token"), "refresh"),
    ] {
        let mut c = claims(ISSUER, RESOURCE);
        c[name] = value;
        target.refused(&key.sign(&c), why).await;
    }
}

#[tokio::test]
async fn issuers_that_are_not_exactly_the_trusted_one_are_refused() {
    let key = SigningKey::ec("k");
    let target = Target::new(Issuer::new(ISSUER).local_keys(local(&[&key])));
    for iss in [
        json!(format!("{ISSUER}/")),
        json!(ISSUER.to_uppercase()),
        json!([ISSUER]),
        json!(null),
        json!({"iss": ISSUER}),
    ] {
        let mut c = claims(ISSUER, RESOURCE);
        c["iss"] = iss;
        target.refused(&key.sign(&c), "iss").await;
    }
    let mut c = claims(ISSUER, RESOURCE);
    if let Some(map) = c.as_object_mut() {
        map.remove("iss");
    }
    target.refused(&key.sign(&c), "iss").await;
}

#[tokio::test]
async fn tokens_of_other_shapes_are_refused() {
    let key = SigningKey::ec("k");
    let target = Target::new(Issuer::new(ISSUER).local_keys(local(&[&key])));
    let token = key.sign(&claims(ISSUER, RESOURCE));
    let [header, payload, signature] = parts(&token);
    for forged in [
        format!("{header}.{payload}"),
        format!("{header}.{payload}.{signature}.{signature}"),
        format!("{header}.{payload}.{signature}.{signature}.{signature}"),
        format!("{header}.{payload}."),
        format!(".{payload}.{signature}"),
        format!("{header}..{signature}"),
        "e30.e30.e30".to_owned(),
    ] {
        target.refused(&forged, "").await;
    }
}
