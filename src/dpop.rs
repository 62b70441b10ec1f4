//! [`DpopVerifier`]: checks a DPoP proof (RFC 9449 §4.3) for the request it came with,
//! and remembers its `jti` so that it is never accepted twice ([`ReplayStore`]).
//!
//! A proof is a JWT the client signs, for each request, with the private key its
//! access token is bound to (`cnf.jkt`, the RFC 7638 thumbprint of that key). It holds
//! the request's method and URI, the time, a unique `jti` and the hash of the access
//! token (`ath`), so a stolen token is useless without the key, and a stolen proof is
//! useless for any other request. The verifier checks it in full and gives the
//! thumbprint of its key, for the caller to compare with the token's `cnf.jkt`.
//!
//! Every check refuses with its own description, safe to show the client: the
//! proof's header (`typ`, `alg`, a public `jwk`), the signature, `htm`, `htu`, `iat`,
//! `ath`, and the `jti` not seen before within the proof's lifetime.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::ConfigError;
use crate::keys::VerificationKey;
use crate::sender::InMemoryReplayStore;

/// The algorithms a proof may use by default: asymmetric ones only (RFC 9449 §4.3).
pub const DEFAULT_DPOP_ALGORITHMS: [Algorithm; 5] = [
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
    Algorithm::RS256,
    Algorithm::PS256,
];

/// How long after its `iat` a proof is accepted, by default.
pub const DEFAULT_PROOF_LIFETIME: Duration = Duration::from_secs(300);

/// How far in the future a proof's `iat` may be (clock skew), by default.
pub const DEFAULT_PROOF_SKEW: Duration = Duration::from_secs(5);

/// How many proofs the default in-process replay store remembers (about 22 MiB when
/// full, allocated as it fills). It keeps each proof for one to two windows of 310 s,
/// so it holds a sustained 1,600 proofs a second; beyond that new proofs are refused
/// (`503`) until the window moves on.
pub const DEFAULT_REPLAY_CAPACITY: u64 = 1_000_000;

/// The longest proof read; a longer one is refused before it is decoded.
const MAX_PROOF_LEN: usize = 8 * 1024;

/// The longest `jti` kept.
const MAX_JTI_LEN: usize = 256;

/// JWK members that only a private key has (RFC 7517, RFC 7518 §6, RFC 8037).
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Remembers the proofs seen, so that a `jti` is accepted once within a proof's
/// lifetime. In process by default ([`InMemoryReplayStore`]); a shared store lets
/// every replica refuse a proof another one accepted.
pub trait ReplayStore: Send + Sync + 'static {
    /// Records `key` (a digest of the proof's key and `jti`) for `ttl`: `Ok(true)` when
    /// it was not seen before, `Ok(false)` when it was. `Err` (the store cannot answer)
    /// refuses the request as unavailable, never as accepted.
    fn first_use(
        &self,
        key: [u8; 32],
        ttl: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<bool, String>> + Send + '_>>;
}

/// The request a proof must be for.
#[derive(Debug, Clone, Copy)]
pub struct ProofRequest<'a> {
    /// The HTTP method (`POST`), compared exactly with `htm`.
    pub method: &'a str,
    /// The URI the client sent the request to, as the client saw it: the resource
    /// URI (from configuration, never from `Host` alone). Compared with `htu` after
    /// RFC 3986 normalisation, its query and fragment left out; a proof whose `htu`
    /// has a query or a fragment is refused (RFC 9449 §4.2).
    pub uri: &'a str,
    /// Another URI the client may have sent the request to, also accepted as `htu`:
    /// the resource's origin with the path the request arrived at, when that path is
    /// not the resource URI's own.
    pub other_uri: Option<&'a str>,
    /// The access token the proof comes with, whose SHA-256 `ath` must be.
    pub access_token: &'a str,
}

/// A proof that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProof {
    /// The RFC 7638 SHA-256 thumbprint of the proof's key (base64url): the access
    /// token's `cnf.jkt` must be this.
    pub jkt: String,
    /// The proof's `jti`.
    pub jti: String,
    /// The proof's `nonce`, when it has one (RFC 9449 §9).
    pub nonce: Option<String>,
}

/// Why a proof was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DpopError {
    /// The proof is invalid for this request (`401 invalid_dpop_proof`); the
    /// description says which check, in words safe to show the client.
    Invalid(String),
    /// The replay store could not answer (`503`); the description is for the log.
    Unavailable(String),
}

impl std::fmt::Display for DpopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Invalid(why) => write!(f, "invalid DPoP proof: {why}"),
            Self::Unavailable(why) => write!(f, "DPoP replay store unavailable: {why}"),
        }
    }
}

impl std::error::Error for DpopError {}

fn invalid(why: impl Into<String>) -> DpopError {
    DpopError::Invalid(why.into())
}

/// Checks DPoP proofs (RFC 9449 §4.3); see the module docs.
#[derive(Clone)]
pub struct DpopVerifier {
    algorithms: Arc<[Algorithm]>,
    lifetime: Duration,
    skew: Duration,
    replay: Arc<dyn ReplayStore>,
    /// Whether `replay` is the in-process store made here (remade when the window
    /// changes), not one the user gave.
    own_store: bool,
}

impl std::fmt::Debug for DpopVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopVerifier")
            .field("algorithms", &self.algorithms)
            .field("lifetime", &self.lifetime)
            .field("skew", &self.skew)
            .finish_non_exhaustive()
    }
}

impl Default for DpopVerifier {
    fn default() -> Self {
        Self::new()
    }
}

impl DpopVerifier {
    /// [`DEFAULT_DPOP_ALGORITHMS`], proofs accepted for [`DEFAULT_PROOF_LIFETIME`]
    /// after their `iat` and [`DEFAULT_PROOF_SKEW`] before it, and an
    /// [`InMemoryReplayStore`] of [`DEFAULT_REPLAY_CAPACITY`] proofs.
    pub fn new() -> Self {
        // The same window as replay_ttl() gives.
        let ttl = DEFAULT_PROOF_LIFETIME + DEFAULT_PROOF_SKEW * 2;
        Self {
            algorithms: DEFAULT_DPOP_ALGORITHMS.into(),
            lifetime: DEFAULT_PROOF_LIFETIME,
            skew: DEFAULT_PROOF_SKEW,
            replay: Arc::new(InMemoryReplayStore::new(DEFAULT_REPLAY_CAPACITY, ttl)),
            own_store: true,
        }
    }

    /// The algorithms a proof may use; symmetric ones (HMAC) are refused: a proof is
    /// signed with a key only the client holds.
    pub fn algorithms<I>(mut self, algorithms: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = Algorithm>,
    {
        let algorithms: Vec<Algorithm> = algorithms.into_iter().collect();
        if algorithms.is_empty() {
            return Err(ConfigError::new("DPoP needs at least one proof algorithm"));
        }
        if let Some(hmac) = algorithms
            .iter()
            .find(|a| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512))
        {
            return Err(ConfigError::new(format!(
                "{hmac:?} cannot sign a DPoP proof: RFC 9449 allows asymmetric algorithms only"
            )));
        }
        self.algorithms = algorithms.into();
        Ok(self)
    }

    /// How long after its `iat` a proof is accepted, and how far before it (skew,
    /// which also stands for the clock difference of replicas). The replay store
    /// remembers each `jti` for the lifetime and twice the skew; the default
    /// in-process store is made again for the new window, a store given with
    /// [`DpopVerifier::replay_store`] is kept.
    pub fn proof_window(mut self, lifetime: Duration, skew: Duration) -> Self {
        self.lifetime = lifetime;
        self.skew = skew;
        if self.own_store {
            self.replay = Arc::new(InMemoryReplayStore::new(
                DEFAULT_REPLAY_CAPACITY,
                self.replay_ttl(),
            ));
        }
        self
    }

    /// Where seen proofs are remembered (a store shared by every replica). An
    /// [`InMemoryReplayStore`] given here must keep proofs for the lifetime and twice
    /// the skew, or every proof is refused as unavailable.
    pub fn replay_store(mut self, store: impl ReplayStore) -> Self {
        self.replay = Arc::new(store);
        self.own_store = false;
        self
    }

    /// The algorithms a proof may use (for `dpop_signing_alg_values_supported`).
    pub fn allowed_algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    /// Checks `proof` for `request` now.
    pub async fn verify(
        &self,
        proof: &str,
        request: ProofRequest<'_>,
    ) -> Result<VerifiedProof, DpopError> {
        self.verify_at(proof, request, SystemTime::now()).await
    }

    /// Checks `proof` for `request` at the time `now`.
    pub async fn verify_at(
        &self,
        proof: &str,
        request: ProofRequest<'_>,
        now: SystemTime,
    ) -> Result<VerifiedProof, DpopError> {
        let checked = self.check(proof, request, now)?;
        self.first_use(&checked).await?;
        Ok(checked)
    }

    /// Records the proof's `jti` in the replay store: an error when it was seen before
    /// or the store cannot answer. Owns what it needs, so the future can outlive
    /// `self`.
    pub(crate) fn first_use(
        &self,
        proof: &VerifiedProof,
    ) -> impl Future<Output = Result<(), DpopError>> + Send + 'static {
        let key = replay_key(&proof.jkt, &proof.jti);
        let ttl = self.replay_ttl();
        let store = Arc::clone(&self.replay);
        async move {
            match store.first_use(key, ttl).await {
                Ok(true) => Ok(()),
                Ok(false) => {
                    crate::metrics::dpop_refused("replay");
                    Err(invalid(
                        "the proof's jti was seen before: a proof is good for one request",
                    ))
                }
                Err(why) => {
                    crate::metrics::dpop_refused("store_unavailable");
                    Err(DpopError::Unavailable(why))
                }
            }
        }
    }

    /// How long a proof's `jti` is remembered: as long as it can be accepted (its
    /// lifetime and the skew), plus the skew again for replicas whose clocks are that
    /// far apart.
    fn replay_ttl(&self) -> Duration {
        self.lifetime + self.skew * 2
    }

    /// Every check but the replay store's.
    pub(crate) fn check(
        &self,
        proof: &str,
        request: ProofRequest<'_>,
        now: SystemTime,
    ) -> Result<VerifiedProof, DpopError> {
        if proof.len() > MAX_PROOF_LEN {
            return Err(invalid(format!(
                "the proof is longer than {MAX_PROOF_LEN} bytes"
            )));
        }
        let mut parts = proof.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("the proof is not a compact JWS (three parts)"));
        };
        let header = URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| invalid("the proof's header is not base64url"))?;
        let header: ProofHeader<'_> = serde_json::from_slice(&header).map_err(|_| {
            invalid(
                "the proof's header is not a JSON object giving typ, alg, jwk and crit at \
                 most once each, with the right types",
            )
        })?;
        let alg = self.check_header(&header)?;
        let jwk = header
            .jwk
            .as_ref()
            .ok_or_else(|| invalid("the proof's header has no jwk"))?;
        let message_len = proof.len() - signature.len() - 1;
        if !signed_by(jwk, alg, &proof.as_bytes()[..message_len], signature)? {
            return Err(invalid(
                "the proof's signature does not verify with its jwk",
            ));
        }
        let claims = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| invalid("the proof's claims are not base64url"))?;
        let claims: ProofClaims<'_> = serde_json::from_slice(&claims).map_err(|_| {
            invalid(
                "the proof's claims are not a JSON object giving jti, htm, htu, iat, ath and \
                 nonce once each, with the right types",
            )
        })?;
        let jti = self.check_claims(&claims, request, now)?;
        let jkt = thumbprint(jwk).ok_or_else(|| invalid("the proof's jwk has no thumbprint"))?;
        let nonce = claims.nonce.map(Cow::into_owned);
        Ok(VerifiedProof { jkt, jti, nonce })
    }

    /// `typ` and `alg`; the algorithm the proof uses.
    fn check_header(&self, header: &ProofHeader<'_>) -> Result<Algorithm, DpopError> {
        // RFC 7515 §4.1.11: extensions a recipient does not understand refuse the JWS.
        if header.crit.is_some() {
            return Err(invalid(
                "the proof's header names crit extensions, which this server does not understand",
            ));
        }
        let typ = header.typ.as_deref();
        if !typ.is_some_and(|t| t.eq_ignore_ascii_case("dpop+jwt")) {
            return Err(invalid("the proof's typ is not dpop+jwt"));
        }
        let alg = header
            .alg
            .as_deref()
            .ok_or_else(|| invalid("the proof's header has no alg"))?;
        let allowed = alg
            .parse::<Algorithm>()
            .ok()
            .filter(|a| self.algorithms.contains(a));
        allowed.ok_or_else(|| {
            invalid(format!(
                "the proof's alg {:?} is not one this server accepts",
                crate::mcp::shorten(alg)
            ))
        })
    }

    /// `jti`, `htm`, `htu`, `iat` and `ath`; the `jti`.
    fn check_claims(
        &self,
        claims: &ProofClaims<'_>,
        request: ProofRequest<'_>,
        now: SystemTime,
    ) -> Result<String, DpopError> {
        let jti = claims
            .jti
            .as_deref()
            .filter(|j| !j.is_empty() && j.len() <= MAX_JTI_LEN);
        let jti = jti.ok_or_else(|| invalid("the proof has no jti (or one over 256 bytes)"))?;
        if claims.htm.as_deref() != Some(request.method) {
            return Err(invalid("the proof's htm is not this request's method"));
        }
        let htu = claims
            .htu
            .as_deref()
            .filter(|htu| !htu.is_empty())
            .ok_or_else(|| invalid("the proof has no htu"))?;
        if htu.contains(['?', '#']) {
            return Err(invalid(
                "the proof's htu has a query or a fragment; RFC 9449 leaves them out",
            ));
        }
        let exact = htu == request.uri || request.other_uri == Some(htu);
        let htu = (!exact).then(|| normalize_htu(htu)).flatten();
        let matches = |uri: &str| htu.is_some() && htu == normalize_htu(uri);
        if !exact && !matches(request.uri) && !request.other_uri.is_some_and(matches) {
            return Err(invalid("the proof's htu is not this request's URI"));
        }
        let iat = claims
            .iat
            .filter(|i| i.is_finite())
            .ok_or_else(|| invalid("the proof has no numeric iat"))?;
        let now = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        if iat > now + self.skew.as_secs_f64() {
            return Err(invalid("the proof's iat is in the future"));
        }
        if iat < now - self.lifetime.as_secs_f64() {
            return Err(invalid("the proof is too old (its iat is past the window)"));
        }
        if claims.ath.as_deref() != Some(access_token_hash(request.access_token).as_str()) {
            return Err(invalid(
                "the proof's ath is not the hash of the access token it came with",
            ));
        }
        Ok(jti.to_owned())
    }
}

/// The header members of a proof that the checks read, each at most once (serde's
/// derive refuses one given twice); others are skipped.
#[derive(serde::Deserialize)]
struct ProofHeader<'a> {
    #[serde(borrow, default)]
    typ: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    alg: Option<Cow<'a, str>>,
    #[serde(default)]
    jwk: Option<Value>,
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

/// The claims of a proof that the checks read. Any of them given twice refuses the
/// proof (serde's derive says so); members not read are skipped, not kept.
#[derive(serde::Deserialize)]
struct ProofClaims<'a> {
    #[serde(borrow, default)]
    jti: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    htm: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    htu: Option<Cow<'a, str>>,
    #[serde(default)]
    iat: Option<f64>,
    #[serde(borrow, default)]
    ath: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    nonce: Option<Cow<'a, str>>,
}

/// Whether the proof's public key `jwk` made `signature` over `message` with `alg`; a
/// private key, a symmetric one or one that does not fit `alg` is refused. The key is
/// read once, for this proof alone.
fn signed_by(
    jwk: &Value,
    alg: Algorithm,
    message: &[u8],
    signature: &str,
) -> Result<bool, DpopError> {
    let Value::Object(members) = jwk else {
        return Err(invalid("the proof's jwk is not a JSON object"));
    };
    if let Some(private) = PRIVATE_MEMBERS.iter().find(|m| members.contains_key(**m)) {
        return Err(invalid(format!(
            "the proof's jwk has the private member {private:?}: a proof carries a public key"
        )));
    }
    let member = |name: &str| members.get(name).and_then(Value::as_str);
    let fits = match alg {
        Algorithm::ES256 => member("kty") == Some("EC") && member("crv") == Some("P-256"),
        Algorithm::ES384 => member("kty") == Some("EC") && member("crv") == Some("P-384"),
        Algorithm::EdDSA => member("kty") == Some("OKP") && member("crv") == Some("Ed25519"),
        _ => member("kty") == Some("RSA"),
    };
    if !fits {
        return Err(invalid("the proof's jwk does not fit its alg"));
    }
    #[cfg(feature = "aws-lc-rs")]
    if let Some(signed) = crate::keys::verify_jwk_once(jwk, alg, message, signature) {
        return Ok(signed);
    }
    let key = VerificationKey::from_jwk(jwk)
        .map_err(|why| invalid(format!("the proof's jwk is not usable: {why}")))?;
    if !key.accepts(alg) {
        return Err(invalid("the proof's jwk does not fit its alg"));
    }
    Ok(key.verify(alg, message, signature).unwrap_or(false))
}

/// The RFC 7638 SHA-256 thumbprint (base64url) of a public JWK: its required
/// members, in lexicographic order, as compact JSON.
pub fn thumbprint(jwk: &Value) -> Option<String> {
    let member = |name: &str| jwk.get(name).and_then(Value::as_str);
    let required: &[&str] = match member("kty")? {
        "EC" => &["crv", "kty", "x", "y"],
        "RSA" => &["e", "kty", "n"],
        "OKP" => &["crv", "kty", "x"],
        _ => return None,
    };
    // Compact JSON, members in lexicographic order, each value a JSON string
    // (serde_json escapes it as RFC 8259 wants; the names need no escaping).
    let mut canonical = String::with_capacity(160);
    for (i, name) in required.iter().enumerate() {
        canonical.push(if i == 0 { '{' } else { ',' });
        canonical.push('"');
        canonical.push_str(name);
        canonical.push_str("\":");
        canonical.push_str(&serde_json::to_string(member(name)?).ok()?);
    }
    canonical.push('}');
    Some(URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes())))
}

/// The `ath` of an access token: base64url SHA-256 of its ASCII.
pub fn access_token_hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}

/// `uri` normalised for comparing with `htu` (RFC 9449 §4.3, RFC 3986 §6), as the URL
/// standard's parser serializes it: scheme and host in lower case, the scheme's
/// default port left out, an empty path as `/`, dot segments resolved; query and
/// fragment left out. Only `http` and `https` URIs with a host are compared.
fn normalize_htu(uri: &str) -> Option<String> {
    let url = reqwest::Url::parse(uri).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return None;
    }
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    Some(format!(
        "{}://{}{port}{}",
        url.scheme(),
        url.host_str()?,
        url.path()
    ))
}

/// The replay store's key of a proof: its key's thumbprint and its `jti`.
fn replay_key(jkt: &str, jti: &str) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update((jkt.len() as u64).to_be_bytes());
    hash.update(jkt.as_bytes());
    hash.update(jti.as_bytes());
    hash.finalize().into()
}

/// The test suite's signing keys, for proofs made in the tests below.
#[cfg(test)]
#[path = "../tests/support/signing.rs"]
mod signing;

#[cfg(test)]
mod tests {
    use super::signing::{self, SigningKey};
    use jsonwebtoken::Header;
    use jsonwebtoken::jwk::Jwk;
    use serde_json::json;

    use super::*;

    const URI: &str = "https://mcp.example.com/mcp";
    const TOKEN: &str = "an-access-token";

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default()
    }

    fn header(key: &SigningKey) -> Header {
        let mut header = Header::new(key.alg);
        header.typ = Some("dpop+jwt".into());
        let mut jwk = key.jwk();
        if let Some(object) = jwk.as_object_mut() {
            object.remove("kid");
        }
        header.jwk = serde_json::from_value::<Jwk>(jwk).ok();
        header
    }

    fn claims(jti: &str) -> Value {
        json!({"jti": jti, "htm": "POST", "htu": URI, "iat": now(),
            "ath": access_token_hash(TOKEN)})
    }

    fn request() -> ProofRequest<'static> {
        ProofRequest {
            method: "POST",
            uri: URI,
            other_uri: None,
            access_token: TOKEN,
        }
    }

    async fn verify(proof: &str) -> Result<VerifiedProof, DpopError> {
        DpopVerifier::new().verify(proof, request()).await
    }

    fn refused(result: Result<VerifiedProof, DpopError>) -> String {
        match result {
            Err(DpopError::Invalid(why)) => why,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_good_proof_passes_once_and_names_its_keys_thumbprint() {
        let key = SigningKey::ec("client");
        let proof = key.sign_with(header(&key), &claims("j1"));
        let verifier = DpopVerifier::new();
        let verified = verifier.verify(&proof, request()).await;
        let Ok(verified) = verified else {
            panic!("{verified:?}");
        };
        assert_eq!(Some(verified.jkt.clone()), thumbprint(&key.jwk()));
        assert_eq!(verified.jti, "j1");
        let again = refused(verifier.verify(&proof, request()).await);
        assert!(again.contains("seen before"), "{again}");
        for key in [SigningKey::ed("ed"), SigningKey::rsa("rsa")] {
            let proof = key.sign_with(header(&key), &claims("j2"));
            assert!(verify(&proof).await.is_ok(), "{:?}", key.alg);
        }
    }

    #[tokio::test]
    async fn each_claim_is_checked_against_the_request() {
        let key = SigningKey::ec("client");
        let cases: [(&str, Value, &str); 11] = [
            ("htm", json!("GET"), "htm"),
            ("htu", json!("https://mcp.example.com/mcp?x=1"), "query"),
            ("htu", json!("https://mcp.example.com/mcp#f"), "fragment"),
            ("htu", json!("https://other.example.com/mcp"), "htu"),
            ("htu", json!("https://mcp.example.com/other"), "htu"),
            ("htu", json!("http://mcp.example.com/mcp"), "htu"),
            ("iat", json!(now() - 3600), "too old"),
            ("iat", json!(now() + 3600), "future"),
            ("ath", json!(access_token_hash("another-token")), "ath"),
            ("jti", json!(""), "jti"),
            ("iat", json!("now"), "iat"),
        ];
        for (member, value, cause) in cases {
            let mut body = claims("j");
            body[member] = value.clone();
            let why = refused(verify(&key.sign_with(header(&key), &body)).await);
            assert!(why.contains(cause), "{member}={value}: {why}");
        }
        // htu: case of scheme and host and the default port do not matter.
        for htu in [
            "HTTPS://MCP.example.com/mcp",
            "https://mcp.example.com:443/mcp",
        ] {
            let mut body = claims(htu);
            body["htu"] = json!(htu);
            assert!(
                verify(&key.sign_with(header(&key), &body)).await.is_ok(),
                "{htu}"
            );
        }
    }

    #[tokio::test]
    async fn the_header_must_be_a_dpop_proof_with_a_public_asymmetric_key() {
        let key = SigningKey::ec("client");
        let mut wrong_typ = header(&key);
        wrong_typ.typ = Some("JWT".into());
        let why = refused(verify(&key.sign_with(wrong_typ, &claims("a"))).await);
        assert!(why.contains("typ"), "{why}");

        let mut no_jwk = header(&key);
        no_jwk.jwk = None;
        let why = refused(verify(&key.sign_with(no_jwk, &claims("b"))).await);
        assert!(why.contains("jwk"), "{why}");

        // Signed by another key than the one in the header.
        let other = SigningKey::ec("other");
        let why = refused(verify(&other.sign_with(header(&key), &claims("c"))).await);
        assert!(why.contains("signature"), "{why}");

        // HMAC and none are not proof algorithms.
        let hs = signing::hmac_token(
            &json!({"alg": "HS256", "typ": "dpop+jwt", "jwk": {"kty": "oct", "k": "c2VjcmV0"}}),
            &claims("d"),
            b"secret",
        );
        let why = refused(verify(&hs).await);
        assert!(why.contains("alg"), "{why}");
        let none = signing::unsigned(
            &json!({"alg": "none", "typ": "dpop+jwt", "jwk": key.jwk()}),
            &claims("e"),
        );
        assert!(refused(verify(&none).await).contains("alg"));

        // A private key in the header.
        let private = json!({"kty": "EC", "crv": "P-256", "x": key.jwk()["x"], "y": key.jwk()["y"], "d": "AAAA"});
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD
                .encode(json!({"alg": "ES256", "typ": "dpop+jwt", "jwk": private}).to_string()),
            URL_SAFE_NO_PAD.encode(claims("f").to_string())
        );
        let forged = format!("{message}.{}", key.sign_message(message.as_bytes()));
        let why = refused(verify(&forged).await);
        assert!(why.contains("private member"), "{why}");

        // An extension the server does not know (RFC 7515 §4.1.11).
        let mut critical = header(&key);
        critical.crit = Some(vec!["exp".into()]);
        let why = refused(verify(&key.sign_with(critical, &claims("h"))).await);
        assert!(why.contains("crit"), "{why}");

        // A member named twice.
        let twice = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","typ":"dpop+jwt","typ":"dpop+jwt"}"#),
            URL_SAFE_NO_PAD.encode(claims("g").to_string())
        );
        let why = refused(verify(&format!("{twice}.sig")).await);
        assert!(why.contains("once each"), "{why}");
        // A claim named twice (signed, so that the claims are read).
        let body = claims("i").to_string();
        let doubled = format!("{{\"htu\":\"https://mcp.example.com/other\",{}", &body[1..]);
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_string(&header(&key)).unwrap_or_default()),
            URL_SAFE_NO_PAD.encode(doubled)
        );
        let signed = format!("{message}.{}", key.sign_message(message.as_bytes()));
        let why = refused(verify(&signed).await);
        assert!(why.contains("once each"), "{why}");
        assert!(refused(verify("a.b").await).contains("three parts"));
    }

    #[test]
    fn thumbprints_follow_rfc_7638() {
        // RFC 7638 §3.1's example key and thumbprint.
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        assert_eq!(
            thumbprint(&jwk).as_deref(),
            Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
        );
        assert_eq!(thumbprint(&json!({"kty": "oct", "k": "x"})), None);
    }

    #[test]
    fn hmac_algorithms_are_a_configuration_error() {
        let error = DpopVerifier::new().algorithms([Algorithm::HS256]).err();
        assert!(error.is_some_and(|e| e.to_string().contains("asymmetric")));
        assert!(DpopVerifier::new().algorithms([]).is_err());
    }

    #[tokio::test]
    async fn a_failing_store_is_unavailable_never_an_accepted_proof_even_after_a_new_window() {
        struct Down;
        impl ReplayStore for Down {
            fn first_use(
                &self,
                _: [u8; 32],
                _: Duration,
            ) -> Pin<Box<dyn Future<Output = Result<bool, String>> + Send + '_>> {
                Box::pin(std::future::ready(Err("connection refused".to_owned())))
            }
        }
        let key = SigningKey::ec("client");
        let proof = key.sign_with(header(&key), &claims("z"));
        let result = DpopVerifier::new()
            .replay_store(Down)
            .proof_window(Duration::from_secs(60), Duration::from_secs(5))
            .verify(&proof, request())
            .await;
        assert_eq!(
            result,
            Err(DpopError::Unavailable("connection refused".into()))
        );
    }
}
