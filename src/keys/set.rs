//! [`KeySet`] and [`VerificationKey`]: parsed public keys, indexed by `kid`. Parsed
//! once per set version, never per request.
//!
//! A bad key in a JWK set is skipped alone (R-KEY-3); symmetric (`oct`) keys are never
//! taken from a JWK set or PEM, because a public key used as an HMAC secret is the
//! classic algorithm-confusion attack (R-JWT-1).

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use serde_json::Value;

use crate::error::ConfigError;

/// The smallest RSA modulus accepted, as jsonwebtoken's backends and NIST require.
const MIN_RSA_BITS: usize = 2048;

/// The size in bits of a base64url RSA modulus (0 when it is not base64url).
fn rsa_modulus_bits(n: &str) -> usize {
    use base64::Engine;
    let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(n) else {
        return 0;
    };
    match bytes.iter().position(|b| *b != 0) {
        Some(first) => (bytes.len() - first) * 8 - bytes[first].leading_zeros() as usize,
        None => 0,
    }
}

/// A public key (or a configured HMAC secret) ready to verify signatures.
pub struct VerificationKey {
    key: DecodingKey,
    kid: Option<String>,
    family: AlgorithmFamily,
    alg: Option<Algorithm>,
    curve: Option<EllipticCurve>,
    /// The same key, parsed once for AWS-LC (see `native.rs`).
    #[cfg(feature = "aws-lc-rs")]
    native: super::native::NativeKey,
}

impl VerificationKey {
    /// Parses one JWK (a JSON object). Refuses `oct` keys, keys whose `use` is not
    /// `sig`, and keys of unsupported types; the error says why (safe to log).
    pub fn from_jwk(value: &Value) -> Result<Self, String> {
        let jwk: Jwk =
            serde_json::from_value(value.clone()).map_err(|_| "not a valid JWK".to_owned())?;
        if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
            return Err("its \"use\" is not \"sig\"".into());
        }
        let alg = match value.get("alg") {
            None => None,
            Some(Value::String(name)) => Some(Algorithm::from_str(name).map_err(|_| {
                format!("its \"alg\" {name:?} is not a supported signature algorithm")
            })?),
            Some(_) => return Err("its \"alg\" is not a string".into()),
        };
        let (family, curve) = match &jwk.algorithm {
            AlgorithmParameters::RSA(rsa) => {
                let bits = rsa_modulus_bits(&rsa.n);
                if bits < MIN_RSA_BITS {
                    return Err(format!(
                        "its RSA modulus has {bits} bits; at least {MIN_RSA_BITS} are required"
                    ));
                }
                (AlgorithmFamily::Rsa, None)
            }
            AlgorithmParameters::EllipticCurve(ec) => (AlgorithmFamily::Ec, Some(ec.curve.clone())),
            AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
                (AlgorithmFamily::Ed, None)
            }
            AlgorithmParameters::OctetKey(_) => {
                return Err(
                    "it is a symmetric (oct) key, which is never accepted from a key set".into(),
                );
            }
            _ => return Err("its key type is not supported".into()),
        };
        if alg.is_some_and(|a| a.family() != family) {
            return Err("its \"alg\" does not fit its key type".into());
        }
        let key =
            DecodingKey::from_jwk(&jwk).map_err(|_| "its key material is invalid".to_owned())?;
        Ok(Self {
            key,
            kid: jwk.common.key_id,
            family,
            alg,
            curve,
            #[cfg(feature = "aws-lc-rs")]
            native: super::native::NativeKey::from_jwk(value),
        })
    }

    /// A public key from PEM, for `alg` (an RSA, EC or EdDSA algorithm).
    pub fn from_pem(pem: &[u8], alg: Algorithm) -> Result<Self, ConfigError> {
        let bad = || ConfigError::new(format!("the PEM key is not a valid public key for {alg:?}"));
        let family = alg.family();
        let key = match family {
            AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(pem),
            AlgorithmFamily::Ec => DecodingKey::from_ec_pem(pem),
            AlgorithmFamily::Ed => DecodingKey::from_ed_pem(pem),
            AlgorithmFamily::Hmac => {
                return Err(ConfigError::new(
                    "an HMAC algorithm cannot use a PEM key; configure a shared secret with Issuer::hmac_secret",
                ));
            }
        }
        .map_err(|_| bad())?;
        Ok(Self {
            key,
            kid: None,
            family,
            alg: Some(alg),
            curve: None,
            #[cfg(feature = "aws-lc-rs")]
            native: super::native::NativeKey::from_pem(pem),
        })
    }

    /// An HMAC shared secret for `alg` (HS256/384/512); only ever from explicit
    /// configuration.
    pub(crate) fn hmac(secret: &[u8], alg: Algorithm) -> Self {
        Self {
            key: DecodingKey::from_secret(secret),
            kid: None,
            family: AlgorithmFamily::Hmac,
            alg: Some(alg),
            curve: None,
            #[cfg(feature = "aws-lc-rs")]
            native: super::native::NativeKey::hmac(secret, alg),
        }
    }

    /// Sets the key id.
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// The key id, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// Whether this key may verify a signature made with `alg`: same family, the
    /// JWK's own `alg` when it has one (R-JWT-1), and the right curve for ECDSA.
    pub fn accepts(&self, alg: Algorithm) -> bool {
        if alg.family() != self.family || self.alg.is_some_and(|a| a != alg) {
            return false;
        }
        match (&self.curve, alg) {
            (Some(EllipticCurve::P256), Algorithm::ES256)
            | (Some(EllipticCurve::P384), Algorithm::ES384) => true,
            (Some(_), _) => false,
            (None, _) => true,
        }
    }

    /// Whether `signature` (base64url, as in the token) over `message` (the token's
    /// `header.payload`) was made with this key for `alg`. With AWS-LC, by the key
    /// parsed once; otherwise, or for a key AWS-LC cannot parse, by jsonwebtoken.
    pub(crate) fn verify(
        &self,
        alg: Algorithm,
        message: &[u8],
        signature: &str,
    ) -> jsonwebtoken::errors::Result<bool> {
        #[cfg(feature = "aws-lc-rs")]
        if let Some(valid) = self.native.verify(alg, message, signature) {
            return Ok(valid);
        }
        jsonwebtoken::crypto::verify(signature, message, &self.key, alg)
    }
}

impl std::fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerificationKey")
            .field("kid", &self.kid)
            .field("family", &self.family)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// An immutable set of verification keys, indexed by `kid`.
#[derive(Debug, Default)]
pub struct KeySet {
    by_kid: HashMap<String, Vec<Arc<VerificationKey>>>,
    /// Keys without a `kid` (a PEM, an HMAC secret): candidates for any `kid`.
    unnamed: Vec<Arc<VerificationKey>>,
    all: Vec<Arc<VerificationKey>>,
}

/// The result of parsing a JWK set: the usable keys and what was skipped.
pub(crate) struct Parsed {
    pub(crate) keys: KeySet,
    pub(crate) skipped: Vec<String>,
}

impl KeySet {
    /// A set of the given keys.
    pub fn new(keys: impl IntoIterator<Item = VerificationKey>) -> Self {
        let mut set = Self::default();
        for key in keys {
            set.push(key);
        }
        set
    }

    fn push(&mut self, key: VerificationKey) {
        let key = Arc::new(key);
        match &key.kid {
            Some(kid) => self
                .by_kid
                .entry(kid.clone())
                .or_default()
                .push(key.clone()),
            None => self.unnamed.push(key.clone()),
        }
        self.all.push(key);
    }

    /// Parses a JWK set document (`{"keys": [...]}`), skipping bad keys one by one.
    /// Fails only when the document itself is not a JWK set.
    pub fn from_jwks(json: &[u8]) -> Result<Self, ConfigError> {
        Self::parse(json, usize::MAX)
            .map(|parsed| parsed.keys)
            .map_err(|why| ConfigError::new(format!("the JWK set is not valid: {why}")))
    }

    /// Parses a JWK set, keeping at most `max_keys` usable keys.
    pub(crate) fn parse(json: &[u8], max_keys: usize) -> Result<Parsed, String> {
        let doc: Value = serde_json::from_slice(json).map_err(|_| "not JSON".to_owned())?;
        let Some(Value::Array(entries)) = doc.get("keys") else {
            return Err("no \"keys\" array".into());
        };
        let mut keys = KeySet::default();
        let mut skipped = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            let name = || match entry.get("kid").and_then(Value::as_str) {
                Some(kid) => format!("kid {:?}", kid.chars().take(64).collect::<String>()),
                None => format!("key #{i}"),
            };
            if keys.all.len() >= max_keys {
                skipped.push(format!("{} (over the cap of {max_keys} keys)", name()));
                continue;
            }
            match VerificationKey::from_jwk(entry) {
                Ok(key) => keys.push(key),
                Err(why) => skipped.push(format!("{}: {why}", name())),
            }
        }
        Ok(Parsed { keys, skipped })
    }

    /// The keys that may verify a token with this `kid` and `alg`. A `kid` is only
    /// ever a lookup key (R-JWT-3); keys without a `kid` of their own are candidates
    /// for any `kid`. A token without `kid` may use any key of the set that fits
    /// `alg`.
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'a Arc<VerificationKey>> + 'a {
        let keys: &[Arc<VerificationKey>] = match kid {
            Some(kid) => self.by_kid.get(kid).map_or(&self.unnamed, Vec::as_slice),
            None => &self.all,
        };
        keys.iter().filter(move |k| k.accepts(alg))
    }

    /// Whether the set has a candidate for `kid` and `alg`.
    pub fn has(&self, kid: Option<&str>, alg: Algorithm) -> bool {
        self.candidates(kid, alg).next().is_some()
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.all.len()
    }

    /// Whether the set has no key.
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const N: &str = "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw";

    #[test]
    fn bad_keys_are_skipped_one_by_one() {
        // R-KEY-3
        let doc = json!({"keys": [
            {"kty": "RSA", "kid": "good", "n": N, "e": "AQAB", "alg": "RS256", "use": "sig"},
            {"kty": "RSA", "kid": "broken"},
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "enc", "n": N, "e": "AQAB", "use": "enc"},
            {"kty": "RSA", "kid": "weird-alg", "n": N, "e": "AQAB", "alg": "ES256"},
        ]});
        let parsed = KeySet::parse(doc.to_string().as_bytes(), 10).map_err(|e| e.to_string());
        let parsed = parsed.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.keys.len(), 1);
        assert_eq!(parsed.skipped.len(), 4, "{:?}", parsed.skipped);
        assert!(parsed.keys.has(Some("good"), Algorithm::RS256));
        assert!(
            !parsed.keys.has(Some("hmac"), Algorithm::HS256),
            "R-JWT-1: no oct key from a set"
        );
    }

    #[test]
    fn rsa_keys_under_2048_bits_are_skipped_with_the_reason() {
        use base64::Engine;
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let mut small = vec![0xC3u8; 128]; // 1024 bits
        small[127] |= 1;
        let mut padded = vec![0u8; 1];
        padded.extend(vec![0x7Fu8; 256]); // 2047 bits behind a zero byte
        let doc = json!({"keys": [
            {"kty": "RSA", "kid": "small", "n": b64(&small), "e": "AQAB"},
            {"kty": "RSA", "kid": "padded", "n": b64(&padded), "e": "AQAB"},
            {"kty": "RSA", "kid": "good", "n": N, "e": "AQAB"},
        ]});
        let parsed = KeySet::parse(doc.to_string().as_bytes(), 10).map_err(|e| e.to_string());
        let parsed = parsed.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.keys.len(), 1);
        assert!(parsed.keys.has(Some("good"), Algorithm::RS256));
        assert!(
            parsed.skipped[0].contains("1024 bits"),
            "{:?}",
            parsed.skipped
        );
        assert!(
            parsed.skipped[1].contains("2047 bits"),
            "{:?}",
            parsed.skipped
        );
        assert_eq!(rsa_modulus_bits(N), 2048);
    }

    #[test]
    fn jwk_alg_must_match_the_token_alg() {
        // R-JWT-1
        let doc =
            json!({"keys": [{"kty": "RSA", "kid": "k", "n": N, "e": "AQAB", "alg": "RS256"}]});
        let set = KeySet::from_jwks(doc.to_string().as_bytes()).unwrap_or_default();
        assert!(set.has(Some("k"), Algorithm::RS256));
        assert!(!set.has(Some("k"), Algorithm::PS256));
        assert!(!set.has(Some("k"), Algorithm::ES256));
        assert!(!set.has(Some("other"), Algorithm::RS256));
    }

    #[test]
    fn key_count_is_capped() {
        // R-KEY-3
        let keys: Vec<_> = (0..5)
            .map(|i| json!({"kty": "RSA", "kid": i.to_string(), "n": N, "e": "AQAB"}))
            .collect();
        let doc = json!({ "keys": keys });
        let parsed = KeySet::parse(doc.to_string().as_bytes(), 3).map_err(|e| e.to_string());
        let parsed = parsed.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.keys.len(), 3);
        assert_eq!(parsed.skipped.len(), 2);
    }

    #[test]
    fn non_jwks_documents_are_errors() {
        assert!(KeySet::parse(b"not json", 10).is_err());
        assert!(KeySet::parse(b"{\"keys\": 3}", 10).is_err());
    }

    #[test]
    fn keys_without_kid_serve_tokens_with_any_kid() {
        // R-KEY-1: a PEM key or an HMAC secret has no kid; tokens naming one still find it.
        let set = KeySet::new([VerificationKey::hmac(
            b"0123456789abcdef0123456789abcdef",
            Algorithm::HS256,
        )]);
        assert!(set.has(Some("any"), Algorithm::HS256));
        assert!(set.has(None, Algorithm::HS256));
        assert!(!set.has(Some("any"), Algorithm::HS384));
    }
}
