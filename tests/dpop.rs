//! DPoP-bound tokens through the whole stack (issue 15; RFC 9449, R-DPOP-1, R-JWT-5):
//! the issuer policies, every check of a proof refused with its own description and
//! without reaching the service, the challenges and the metadata, server nonces
//! shared by replicas, and the replay store (in process; in Redis across replicas,
//! with feature `redis`, against a real `redis-server` this test starts on loopback).
//!
//! Tokens and proofs are signed by real keys (AWS-LC through `support::signing`).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::StatusCode;
use axum::routing::post;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, Header};
use mcp_gatekeeper::keys::LocalKeys;
use mcp_gatekeeper::{
    Dpop, DpopNonces, DpopVerifier, Introspection, Issuer, ResourceServer, ResourceServerBuilder,
    SenderChecks, access_token_hash, thumbprint,
};
use serde_json::{Value, json};
use support::signing::{hmac_token, jwks, unsigned};
use support::{Answer, SigningKey, claims, now};

const ISSUER: &str = "https://idp.example.com";
const RESOURCE: &str = "https://mcp.example.com/mcp";

/// The protected app and how many requests reached its handler.
struct Target {
    app: Router,
    reached: Arc<AtomicUsize>,
}

fn issuer(key: &SigningKey) -> Issuer {
    let keys = LocalKeys::from_jwks(jwks(&[key]).to_string().as_bytes()).expect("local keys");
    Issuer::new(ISSUER).local_keys(keys).discovery(false)
}

impl Target {
    fn new(builder: ResourceServerBuilder) -> Self {
        let reached = Arc::new(AtomicUsize::new(0));
        let count = reached.clone();
        let server = builder.build().expect("valid configuration");
        let app = Router::new()
            .route(
                "/mcp",
                post(move || {
                    count.fetch_add(1, Ordering::SeqCst);
                    async { "reached" }
                })
                .get(|| async { "reached" }),
            )
            .layer(server.layer());
        Self { app, reached }
    }

    fn with(issuer: Issuer) -> Self {
        Self::new(ResourceServer::builder(RESOURCE).issuer(issuer))
    }

    fn reached(&self) -> usize {
        self.reached.swap(0, Ordering::SeqCst)
    }

    /// `POST /mcp` with `Authorization: <scheme> <token>` and these `DPoP` headers.
    async fn post(&self, scheme: &str, token: &str, proofs: &[&str]) -> Answer {
        self.send(http::Method::POST, "/mcp", scheme, token, proofs, &[])
            .await
    }

    async fn send(
        &self,
        method: http::Method,
        path: &str,
        scheme: &str,
        token: &str,
        proofs: &[&str],
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = http::Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("{scheme} {token}"));
        for proof in proofs {
            request = request.header("dpop", *proof);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        support::send(&self.app, request.body(Body::empty()).expect("request")).await
    }
}

/// A client: its key, and proofs signed with it.
struct Client {
    key: SigningKey,
}

impl Client {
    fn new(name: &str) -> Self {
        Self {
            key: SigningKey::ec(name),
        }
    }

    fn jkt(&self) -> String {
        thumbprint(&self.key.jwk()).expect("thumbprint")
    }

    fn header(&self) -> Header {
        let mut header = Header::new(self.key.alg);
        header.typ = Some("dpop+jwt".into());
        let mut jwk = self.key.jwk();
        if let Some(object) = jwk.as_object_mut() {
            object.remove("kid");
            object.remove("use");
        }
        header.jwk = serde_json::from_value::<Jwk>(jwk).ok();
        header
    }

    fn claims(&self, token: &str) -> Value {
        static JTI: AtomicUsize = AtomicUsize::new(0);
        json!({
            "jti": format!("jti-{}", JTI.fetch_add(1, Ordering::SeqCst)),
            "htm": "POST",
            "htu": RESOURCE,
            "iat": now(),
            "ath": access_token_hash(token),
        })
    }

    /// A proof with a header of the caller's making, signed with the client's key.
    fn signed_by_hand(&self, header: &Value, claims: &Value) -> String {
        use base64::Engine as _;
        let b64 =
            |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let input = format!("{}.{}", b64(header), b64(claims));
        format!("{input}.{}", self.key.sign_message(input.as_bytes()))
    }

    /// A good proof for `POST RESOURCE` with `token`.
    fn proof(&self, token: &str) -> String {
        self.proof_with(token, |_| {})
    }

    /// A proof whose claims `edit` changed.
    fn proof_with(&self, token: &str, edit: impl FnOnce(&mut Value)) -> String {
        let mut claims = self.claims(token);
        edit(&mut claims);
        self.key.sign_with(self.header(), &claims)
    }
}

/// A token of `ISSUER` signed by `idp`, bound to `client`'s key.
fn bound_token(idp: &SigningKey, client: &Client) -> String {
    let mut claims = claims(ISSUER, RESOURCE);
    claims["cnf"] = json!({"jkt": client.jkt()});
    idp.sign(&claims)
}

/// The issuer's key, a client, a stack whose issuer allows DPoP, and a token of that
/// issuer bound to the client's key.
fn allowed() -> (SigningKey, Client, Target, String) {
    let idp = SigningKey::ec("idp");
    let client = Client::new("client");
    let target = Target::with(issuer(&idp).dpop(Dpop::allowed()));
    let token = bound_token(&idp, &client);
    (idp, client, target, token)
}

/// The metadata document the stack serves.
async fn metadata(target: &Target) -> Value {
    let request = http::Request::get("/.well-known/oauth-protected-resource/mcp")
        .body(Body::empty())
        .expect("request");
    support::send(&target.app, request).await.body
}

fn assert_dpop_refusal(answer: &Answer, code: &str, why: &str) {
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{why}: {answer:?}");
    let challenges: Vec<&str> = answer
        .headers
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let dpop = challenges
        .iter()
        .find(|c| c.starts_with("DPoP "))
        .unwrap_or_else(|| panic!("{why}: no DPoP challenge in {challenges:?}"));
    assert!(
        dpop.contains(&format!("error=\"{code}\"")),
        "{why}: {challenges:?}"
    );
    assert!(dpop.contains("algs=\""), "{why}: {dpop}");
    assert!(
        answer.description().contains(why),
        "expected {why:?} in {answer:?}"
    );
}

#[tokio::test]
async fn a_dpop_bound_token_with_a_good_proof_passes_and_each_proof_is_good_once() {
    let (_, client, target, token) = allowed();
    let proof = client.proof(&token);
    let answer = target.post("DPoP", &token, &[&proof]).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    // The token comes from the verified-token cache now; a new proof is checked.
    let again = target.post("DPoP", &token, &[&client.proof(&token)]).await;
    assert_eq!(again.status, StatusCode::OK, "{again:?}");
    assert_eq!(target.reached(), 2);
    let replayed = target.post("DPoP", &token, &[&proof]).await;
    assert_dpop_refusal(&replayed, "invalid_dpop_proof", "seen before");
    assert_eq!(target.reached(), 0);
    // The scheme is case-insensitive (RFC 9110 §11.1).
    let lower = target.post("dpop", &token, &[&client.proof(&token)]).await;
    assert_eq!(lower.status, StatusCode::OK, "{lower:?}");
}

/// A replayed proof is counted by its reason in
/// `mcp_gatekeeper_dpop_proofs_refused_total`; a good one is not.
#[cfg(feature = "metrics")]
#[tokio::test]
async fn a_replayed_proof_is_counted_by_its_reason() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);
    mcp_gatekeeper::metrics::enable();
    let (_, client, target, token) = allowed();
    let proof = client.proof(&token);
    let answer = target.post("DPoP", &token, &[&proof]).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let refused = support::prometheus::sample(
        "mcp_gatekeeper_dpop_proofs_refused_total",
        &[("reason", "replay")],
    );
    let counted = || {
        support::prometheus::parse(&handle.render())
            .get(&refused)
            .copied()
    };
    assert_eq!(counted(), None, "{}", handle.render());
    for _ in 0..2 {
        let replayed = target.post("DPoP", &token, &[&proof]).await;
        assert_dpop_refusal(&replayed, "invalid_dpop_proof", "seen before");
    }
    assert_eq!(counted(), Some(2.0), "{}", handle.render());
}

#[tokio::test]
async fn every_check_of_a_proof_refuses_with_its_own_description() {
    let (idp, client, target, token) = allowed();
    let edit =
        |member: &'static str, value: Value| client.proof_with(&token, move |c| c[member] = value);
    let thief = Client::new("thief");
    let mut private_jwk = client.key.jwk();
    private_jwk["d"] = json!("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let private = client.signed_by_hand(
        &json!({"alg": "ES256", "typ": "dpop+jwt", "jwk": private_jwk}),
        &client.claims(&token),
    );
    let hmac_header =
        json!({"alg": "HS256", "typ": "dpop+jwt", "jwk": {"kty": "oct", "k": "c2VjcmV0"}});
    let none_header = json!({"alg": "none", "typ": "dpop+jwt", "jwk": client.key.jwk()});
    let mut another_token_claims = claims(ISSUER, RESOURCE);
    another_token_claims["cnf"] = json!({"jkt": client.jkt()});
    another_token_claims["jti"] = json!("another");
    let another_token = idp.sign(&another_token_claims);
    let mut not_typed = client.header();
    not_typed.typ = Some("JWT".into());
    let cases: Vec<(String, &str)> = vec![
        (edit("htm", json!("GET")), "htm"),
        (edit("htu", json!("https://evil.example.com/mcp")), "htu"),
        (edit("htu", json!("https://mcp.example.com/admin")), "htu"),
        (
            edit("htu", json!("https://mcp.example.com/mcp?x=1")),
            "query",
        ),
        (edit("iat", json!(now() - 3600)), "too old"),
        (edit("iat", json!(now() + 3600)), "future"),
        (edit("ath", json!(access_token_hash("another"))), "ath"),
        (client.proof(&another_token), "ath"),
        (thief.proof(&token), "another key"),
        (
            hmac_token(&hmac_header, &client.claims(&token), b"secret"),
            "alg",
        ),
        (unsigned(&none_header, &client.claims(&token)), "alg"),
        (private, "private"),
        (
            client.key.sign_with(not_typed, &client.claims(&token)),
            "typ",
        ),
        ("not-a-jwt".to_owned(), "three parts"),
    ];
    for (proof, why) in &cases {
        let answer = target.post("DPoP", &token, &[proof]).await;
        let code = if *why == "another key" {
            "invalid_token"
        } else {
            "invalid_dpop_proof"
        };
        assert_dpop_refusal(&answer, code, why);
        assert_eq!(target.reached(), 0, "{why}: reached the service");
    }
    let good = client.proof(&token);
    let two = target.post("DPoP", &token, &[&good, &good]).await;
    assert_dpop_refusal(&two, "invalid_dpop_proof", "more than one DPoP header");
    let none = target.post("DPoP", &token, &[]).await;
    assert_dpop_refusal(&none, "invalid_dpop_proof", "no DPoP proof header");
    assert_eq!(target.reached(), 0);
    // The refusals spent no jti: the good proof still passes.
    assert_eq!(
        target.post("DPoP", &token, &[&good]).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_policy_decides_which_scheme_each_kind_of_token_may_use() {
    let idp = SigningKey::ec("idp");
    let client = Client::new("client");
    let bound = bound_token(&idp, &client);
    let unbound = idp.sign(&claims(ISSUER, RESOURCE));

    // Off (the default): a bound token is refused whatever the scheme; the DPoP scheme
    // is not read at all.
    let off = Target::with(issuer(&idp));
    let answer = off.post("Bearer", &bound, &[]).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(answer.description().contains("cnf.jkt"), "{answer:?}");
    let answer = off.post("DPoP", &bound, &[&client.proof(&bound)]).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{answer:?}");
    assert_eq!(
        off.post("Bearer", &unbound, &[]).await.status,
        StatusCode::OK
    );

    // Allowed: both schemes; a bound token sent as Bearer is refused (§7.2).
    let allowed = Target::with(issuer(&idp).dpop(Dpop::allowed()));
    assert_eq!(
        allowed.post("Bearer", &unbound, &[]).await.status,
        StatusCode::OK
    );
    let as_bearer = allowed
        .post("Bearer", &bound, &[&client.proof(&bound)])
        .await;
    assert_dpop_refusal(&as_bearer, "invalid_token", "not as a bearer token");
    let unbound_as_dpop = allowed
        .post("DPoP", &unbound, &[&client.proof(&unbound)])
        .await;
    assert_dpop_refusal(&unbound_as_dpop, "invalid_token", "no cnf.jkt");

    // Required: only DPoP.
    let required = Target::with(issuer(&idp).dpop(Dpop::required()));
    let answer = required.post("Bearer", &unbound, &[]).await;
    assert_dpop_refusal(&answer, "invalid_token", "only DPoP-bound tokens");
    let challenges = answer.headers.get_all("www-authenticate").iter().count();
    assert_eq!(
        challenges, 1,
        "required: only the DPoP challenge {answer:?}"
    );
    let ok = required
        .post("DPoP", &bound, &[&client.proof(&bound)])
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{ok:?}");
    assert_eq!(allowed.reached() + required.reached(), 2);
}

#[tokio::test]
async fn challenges_and_metadata_name_dpop_beside_bearer() {
    let idp = SigningKey::ec("idp");
    let target = Target::with(issuer(&idp).dpop(Dpop::allowed()));
    let request = http::Request::post("/mcp")
        .body(Body::empty())
        .expect("request");
    let answer = support::send(&target.app, request).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let challenges: Vec<String> = answer
        .headers
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect();
    let metadata_param =
        "resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\"";
    assert_eq!(challenges.len(), 2, "{challenges:?}");
    assert!(challenges[0].starts_with("Bearer ") && challenges[0].contains(metadata_param));
    assert!(challenges[1].starts_with("DPoP ") && challenges[1].contains(metadata_param));
    assert!(
        challenges[1].ends_with("algs=\"ES256 ES384 EdDSA RS256 PS256\""),
        "{challenges:?}"
    );
    assert!(
        !challenges.iter().any(|c| c.contains("error=")),
        "{challenges:?}"
    );
    // A Bearer token that fails: the error is on the Bearer challenge only.
    let bad = target.post("Bearer", "not.a.token", &[]).await;
    let challenges: Vec<&str> = bad
        .headers
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert!(
        challenges[0].contains("error=\"invalid_token\""),
        "{challenges:?}"
    );
    assert!(!challenges[1].contains("error="), "{challenges:?}");

    let doc = metadata(&target).await;
    assert_eq!(
        doc["dpop_signing_alg_values_supported"],
        json!(["ES256", "ES384", "EdDSA", "RS256", "PS256"])
    );
    assert_eq!(doc["dpop_bound_access_tokens_required"], json!(false));
    let required = Target::with(issuer(&idp).dpop(Dpop::required()));
    let doc = metadata(&required).await;
    assert_eq!(doc["dpop_bound_access_tokens_required"], json!(true));
    // Without DPoP, nothing of it shows.
    let plain = Target::with(issuer(&idp));
    let doc = metadata(&plain).await;
    assert!(
        doc.get("dpop_signing_alg_values_supported").is_none(),
        "{doc}"
    );
}

#[tokio::test]
async fn grpc_callers_get_unauthenticated_with_the_dpop_challenge() {
    let (_, client, target, token) = allowed();
    let replayed = client.proof(&token);
    let proofs = [replayed.as_str()];
    let grpc = [("content-type", "application/grpc")];
    let send = || {
        let method = http::Method::POST;
        target.send(method, "/mcp", "DPoP", &token, &proofs, &grpc)
    };
    assert_eq!(send().await.status, StatusCode::OK);
    let answer = send().await;
    assert_eq!(answer.header("grpc-status"), "16", "{answer:?}");
    assert!(
        answer.header("grpc-message").contains("seen before"),
        "{answer:?}"
    );
    let dpop = answer
        .headers
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|c| c.starts_with("DPoP error=\"invalid_dpop_proof\""));
    assert!(dpop, "{answer:?}");
}

fn with_nonces(idp: &SigningKey, nonces: DpopNonces) -> Target {
    Target::new(
        ResourceServer::builder(RESOURCE)
            .issuer(issuer(idp).dpop(Dpop::allowed()))
            .sender_checks(SenderChecks::new().nonces(nonces)),
    )
}

#[tokio::test]
async fn nonces_are_asked_for_shared_by_replicas_renewed_and_expire() {
    let idp = SigningKey::ec("idp");
    let client = Client::new("client");
    let token = bound_token(&idp, &client);
    let secret = [9u8; 32];
    let nonces = || {
        DpopNonces::new(secret)
            .expect("secret")
            .rotation(Duration::from_secs(1))
    };
    let replica_a = with_nonces(&idp, nonces());
    let replica_b = with_nonces(&idp, nonces());

    let first = replica_a
        .post("DPoP", &token, &[&client.proof(&token)])
        .await;
    assert_dpop_refusal(&first, "use_dpop_nonce", "requires a nonce");
    let nonce = first.header("dpop-nonce");
    assert!(!nonce.is_empty(), "{first:?}");
    let with_nonce = |nonce: &str| {
        let nonce = nonce.to_owned();
        client.proof_with(&token, move |c| c["nonce"] = json!(nonce))
    };
    let retry = replica_a.post("DPoP", &token, &[&with_nonce(&nonce)]).await;
    assert_eq!(retry.status, StatusCode::OK, "{retry:?}");
    // The other replica, with the same secret and no shared state, takes it too.
    let other = replica_b.post("DPoP", &token, &[&with_nonce(&nonce)]).await;
    assert_eq!(other.status, StatusCode::OK, "{other:?}");
    // A nonce that is not the server's.
    let forged = replica_a
        .post("DPoP", &token, &[&with_nonce("forged")])
        .await;
    assert_dpop_refusal(&forged, "use_dpop_nonce", "not one this server gave");

    // After a rotation the nonce is still good, and the answer carries the new one;
    // after three it has expired.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let renewed = replica_a.post("DPoP", &token, &[&with_nonce(&nonce)]).await;
    assert_eq!(renewed.status, StatusCode::OK, "{renewed:?}");
    let fresh = renewed.header("dpop-nonce");
    assert!(!fresh.is_empty() && fresh != nonce, "{renewed:?}");
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let expired = replica_a.post("DPoP", &token, &[&with_nonce(&nonce)]).await;
    assert_dpop_refusal(&expired, "use_dpop_nonce", "expired");
    assert_ne!(expired.header("dpop-nonce"), nonce);
}

#[tokio::test]
async fn an_opaque_token_is_bound_by_the_cnf_its_introspection_answers() {
    let client = Client::new("client");
    let idp = support::TestIdp::start(&[]).await;
    let token = "opaque-dpop-token";
    idp.set_introspection(
        token,
        json!({"active": true, "iss": idp.issuer, "sub": "user-1", "aud": RESOURCE,
            "scope": "mcp:read", "exp": now() + 600, "token_type": "DPoP",
            "cnf": {"jkt": client.jkt()}}),
    );
    let (id, secret) = support::INTROSPECTION_CLIENT;
    let trusted = Issuer::new(&idp.issuer)
        .introspection(Introspection::new(id, secret).endpoint(idp.introspection_uri()))
        .discovery(false)
        .introspect_jwts(true)
        .dpop(Dpop::allowed());
    let target = Target::with(trusted);
    let ok = target.post("DPoP", token, &[&client.proof(token)]).await;
    assert_eq!(ok.status, StatusCode::OK, "{ok:?}");
    let thief = Client::new("thief");
    let stolen = target.post("DPoP", token, &[&thief.proof(token)]).await;
    assert_dpop_refusal(&stolen, "invalid_token", "another key");
    let as_bearer = target.post("Bearer", token, &[]).await;
    assert_dpop_refusal(&as_bearer, "invalid_token", "not as a bearer token");
    assert_eq!(target.reached(), 1);
}

#[tokio::test]
async fn a_proof_is_good_only_at_the_uri_the_request_went_to() {
    let (idp, client, target, token) = allowed();
    // A proof for the resource URI, taken to another path of the same server.
    let proof = client.proof(&token);
    let moved = target
        .send(http::Method::POST, "/admin", "DPoP", &token, &[&proof], &[])
        .await;
    assert_dpop_refusal(&moved, "invalid_dpop_proof", "htu");
    // Behind a proxy (or a nested router) that took a prefix off the path, the
    // resource URI is still the one the client saw and named.
    let public = "https://mcp.example.com/api/mcp";
    let behind =
        Target::new(ResourceServer::builder(public).issuer(issuer(&idp).dpop(Dpop::allowed())));
    let mut claims = claims(ISSUER, public);
    claims["cnf"] = json!({"jkt": client.jkt()});
    let for_public = idp.sign(&claims);
    let proof = client.proof_with(&for_public, |c| c["htu"] = json!(public));
    let ok = behind.post("DPoP", &for_public, &[&proof]).await;
    assert_eq!(ok.status, StatusCode::OK, "{ok:?}");
    // A DPoP header that is not ASCII is refused as a proof, not read as no proof.
    let request = http::Request::post("/mcp")
        .header("authorization", format!("DPoP {token}"))
        .header(
            "dpop",
            http::HeaderValue::from_bytes(b"\xffproof").expect("obs-text"),
        )
        .body(Body::empty())
        .expect("request");
    let answer = support::send(&target.app, request).await;
    assert_dpop_refusal(&answer, "invalid_dpop_proof", "visible ASCII");
    assert_eq!(target.reached() + behind.reached(), 1);
}

#[tokio::test]
async fn a_proof_names_the_resource_uri_never_the_host_header() {
    let (idp, client, target, token) = allowed();
    // The attacker's Host does not make its htu right.
    let proof = client.proof_with(&token, |c| c["htu"] = json!("https://evil.example.com/mcp"));
    let answer = target
        .send(
            http::Method::POST,
            "/mcp",
            "DPoP",
            &token,
            &[&proof],
            &[("host", "evil.example.com")],
        )
        .await;
    assert_dpop_refusal(&answer, "invalid_dpop_proof", "htu");
    // A verifier configured with RS256 only refuses an ES256 proof, and says so in algs.
    let strict = Target::new(
        ResourceServer::builder(RESOURCE)
            .issuer(issuer(&idp).dpop(Dpop::allowed()))
            .sender_checks(
                SenderChecks::new().proofs(
                    DpopVerifier::new()
                        .algorithms([Algorithm::RS256])
                        .expect("algs"),
                ),
            ),
    );
    let answer = strict.post("DPoP", &token, &[&client.proof(&token)]).await;
    assert_dpop_refusal(&answer, "invalid_dpop_proof", "alg");
    assert!(
        answer
            .headers
            .get_all("www-authenticate")
            .iter()
            .any(|v| v.to_str().is_ok_and(|c| c.ends_with("algs=\"RS256\"")))
    );
}

#[cfg(feature = "redis")]
mod redis_store {
    use super::*;
    use mcp_gatekeeper::RedisReplayStore;

    /// A `redis-server` on a free loopback port, killed when dropped.
    struct Redis {
        child: std::process::Child,
        url: String,
    }

    impl Drop for Redis {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    async fn redis() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no", "--protected-mode", "yes"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server; scripts/test.sh installs it)");
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Redis {
            child,
            url: format!("redis://127.0.0.1:{port}/"),
        }
    }

    fn replica(idp: &SigningKey, url: &str) -> Target {
        let store = RedisReplayStore::new(url).expect("url").prefix("test:");
        Target::new(
            ResourceServer::builder(RESOURCE)
                .issuer(issuer(idp).dpop(Dpop::allowed()))
                .sender_checks(SenderChecks::new().proofs(DpopVerifier::new().replay_store(store))),
        )
    }

    #[tokio::test]
    async fn a_proof_replayed_to_another_replica_is_refused_through_redis() {
        let redis = redis().await;
        let idp = SigningKey::ec("idp");
        let client = Client::new("client");
        let token = bound_token(&idp, &client);
        let (a, b) = (replica(&idp, &redis.url), replica(&idp, &redis.url));
        let proof = client.proof(&token);
        let first = a.post("DPoP", &token, &[&proof]).await;
        assert_eq!(first.status, StatusCode::OK, "{first:?}");
        let replayed = b.post("DPoP", &token, &[&proof]).await;
        assert_dpop_refusal(&replayed, "invalid_dpop_proof", "seen before");
        let fresh = b.post("DPoP", &token, &[&client.proof(&token)]).await;
        assert_eq!(fresh.status, StatusCode::OK, "{fresh:?}");
        assert_eq!(a.reached() + b.reached(), 2);
    }

    #[tokio::test]
    async fn an_unreachable_store_is_503_never_an_accepted_proof() {
        let redis = redis().await;
        let idp = SigningKey::ec("idp");
        let client = Client::new("client");
        let token = bound_token(&idp, &client);
        let target = replica(&idp, &redis.url);
        assert_eq!(
            target
                .post("DPoP", &token, &[&client.proof(&token)])
                .await
                .status,
            StatusCode::OK
        );
        drop(redis);
        let started = std::time::Instant::now();
        let answer = target.post("DPoP", &token, &[&client.proof(&token)]).await;
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{answer:?}");
        assert!(answer.description().contains("replay store"), "{answer:?}");
        assert!(answer.headers.contains_key("retry-after"));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "bounded by the timeout"
        );
        let closed = support::closed_port().await;
        let never = replica(&idp, &format!("redis://{closed}/"));
        let answer = never.post("DPoP", &token, &[&client.proof(&token)]).await;
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{answer:?}");
        assert_eq!(target.reached() + never.reached(), 1);
    }
}
