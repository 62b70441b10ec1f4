//! Keys parsed once, for signature checks with AWS-LC directly (feature `aws-lc-rs`).
//!
//! jsonwebtoken hands its crypto backend the raw key material on every call, so an
//! RSA or EC key is parsed (and RSA's Montgomery context built) for each token. Here
//! each [`VerificationKey`](super::VerificationKey) keeps its material and parses it
//! once per algorithm, on first use, into an `aws_lc_rs` key that is reused for as
//! long as its key set lives: about 2.6 µs less per RS256 token, 2.8 µs per ES256.
//!
//! The algorithms are the very ones jsonwebtoken's AWS-LC backend uses (RSA keys of
//! 2048 to 8192 bits, fixed-size ECDSA signatures), so the two agree on every token;
//! a key this module cannot parse falls back to jsonwebtoken.

use std::sync::OnceLock;

use aws_lc_rs::hmac;
use aws_lc_rs::signature::{self, ParsedPublicKey, RsaParameters, RsaPublicKeyComponents};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;

/// The key material, as given.
pub(crate) enum Material {
    /// An RSA modulus and exponent (big-endian).
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// An EC point (SEC1, uncompressed) or an Ed25519 public key (32 bytes).
    Point(Vec<u8>),
    /// A DER SubjectPublicKeyInfo (from PEM).
    Spki(Vec<u8>),
    /// A shared secret, ready for its one HMAC algorithm.
    Hmac(Box<hmac::Key>),
    /// Nothing this module can use: jsonwebtoken checks the signatures.
    Unknown,
}

/// Key material and its parsed forms, one per algorithm, made on first use.
pub(crate) struct NativeKey {
    material: Material,
    parsed: [OnceLock<Option<ParsedPublicKey>>; 9],
}

impl NativeKey {
    pub(crate) fn new(material: Material) -> Self {
        Self {
            material,
            parsed: Default::default(),
        }
    }

    /// Material from a JWK's public parameters (base64url, as in the JWK).
    pub(crate) fn from_jwk(value: &serde_json::Value) -> Self {
        let field = |name: &str| {
            value
                .get(name)
                .and_then(serde_json::Value::as_str)
                .and_then(|text| URL_SAFE_NO_PAD.decode(text).ok())
        };
        let material = match value.get("kty").and_then(serde_json::Value::as_str) {
            Some("RSA") => match (field("n"), field("e")) {
                (Some(n), Some(e)) => Material::Rsa { n, e },
                _ => Material::Unknown,
            },
            Some("EC") => match (field("x"), field("y")) {
                (Some(x), Some(y)) => {
                    let mut point = Vec::with_capacity(1 + x.len() + y.len());
                    point.push(0x04);
                    point.extend(x);
                    point.extend(y);
                    Material::Point(point)
                }
                _ => Material::Unknown,
            },
            Some("OKP") => field("x").map_or(Material::Unknown, Material::Point),
            _ => Material::Unknown,
        };
        Self::new(material)
    }

    /// Material from a PEM public key: the DER of its first block.
    pub(crate) fn from_pem(pem: &[u8]) -> Self {
        let der = std::str::from_utf8(pem).ok().and_then(|text| {
            let body: String = text
                .lines()
                .skip_while(|line| !line.starts_with("-----BEGIN"))
                .skip(1)
                .take_while(|line| !line.starts_with("-----END"))
                .flat_map(|line| line.trim().chars())
                .collect();
            base64::engine::general_purpose::STANDARD.decode(body).ok()
        });
        Self::new(der.map_or(Material::Unknown, Material::Spki))
    }

    /// A shared secret for `alg` (HS256/384/512).
    pub(crate) fn hmac(secret: &[u8], alg: Algorithm) -> Self {
        let algorithm = match alg {
            Algorithm::HS256 => hmac::HMAC_SHA256,
            Algorithm::HS384 => hmac::HMAC_SHA384,
            Algorithm::HS512 => hmac::HMAC_SHA512,
            _ => return Self::new(Material::Unknown),
        };
        Self::new(Material::Hmac(Box::new(hmac::Key::new(algorithm, secret))))
    }

    /// Checks `signature` (base64url, as in the token) over `message` with this key
    /// for `alg`: `Some(valid)`, or `None` when this module cannot (then jsonwebtoken
    /// decides).
    pub(crate) fn verify(&self, alg: Algorithm, message: &[u8], signature: &str) -> Option<bool> {
        if let Material::Hmac(key) = &self.material {
            let Ok(tag) = URL_SAFE_NO_PAD.decode(signature) else {
                return Some(false);
            };
            return Some(hmac::verify(key, message, &tag).is_ok());
        }
        let index = super::ASYMMETRIC.iter().position(|a| *a == alg)?;
        let parsed = self.parsed[index]
            .get_or_init(|| self.parse(alg))
            .as_ref()?;
        let Ok(signature) = URL_SAFE_NO_PAD.decode(signature) else {
            return Some(false);
        };
        Some(parsed.verify_sig(message, &signature).is_ok())
    }

    /// Whether `signature` over `message` was made with this key for `alg`, checked
    /// once without keeping the parsed key: for keys met once (a DPoP proof's). `None`
    /// when the material does not fit `alg`.
    pub(crate) fn verify_once(
        &self,
        alg: Algorithm,
        message: &[u8],
        signature: &str,
    ) -> Option<bool> {
        let signature = URL_SAFE_NO_PAD.decode(signature).ok();
        let verified = |checked: Result<(), aws_lc_rs::error::Unspecified>| checked.is_ok();
        match (params(alg)?, &self.material) {
            (Params::Rsa(params), Material::Rsa { n, e }) => Some(signature.is_some_and(|s| {
                verified(RsaPublicKeyComponents { n, e }.verify(params, message, &s))
            })),
            (Params::Other(algorithm), Material::Point(bytes)) => {
                Some(signature.is_some_and(|s| {
                    verified(
                        signature::UnparsedPublicKey::new(algorithm, bytes).verify(message, &s),
                    )
                }))
            }
            _ => None,
        }
    }

    fn parse(&self, alg: Algorithm) -> Option<ParsedPublicKey> {
        match (params(alg)?, &self.material) {
            (Params::Rsa(params), Material::Rsa { n, e }) => RsaPublicKeyComponents { n, e }
                .to_parsed_public_key(params)
                .ok(),
            (Params::Rsa(params), Material::Spki(der)) => ParsedPublicKey::new(params, der).ok(),
            (Params::Other(algorithm), Material::Point(bytes) | Material::Spki(bytes)) => {
                ParsedPublicKey::new(algorithm, bytes).ok()
            }
            _ => None,
        }
    }
}

/// AWS-LC's verification parameters of an asymmetric algorithm.
enum Params {
    Rsa(&'static RsaParameters),
    Other(&'static dyn signature::VerificationAlgorithm),
}

fn params(alg: Algorithm) -> Option<Params> {
    Some(match alg {
        Algorithm::RS256 => Params::Rsa(&signature::RSA_PKCS1_2048_8192_SHA256),
        Algorithm::RS384 => Params::Rsa(&signature::RSA_PKCS1_2048_8192_SHA384),
        Algorithm::RS512 => Params::Rsa(&signature::RSA_PKCS1_2048_8192_SHA512),
        Algorithm::PS256 => Params::Rsa(&signature::RSA_PSS_2048_8192_SHA256),
        Algorithm::PS384 => Params::Rsa(&signature::RSA_PSS_2048_8192_SHA384),
        Algorithm::PS512 => Params::Rsa(&signature::RSA_PSS_2048_8192_SHA512),
        Algorithm::ES256 => Params::Other(&signature::ECDSA_P256_SHA256_FIXED),
        Algorithm::ES384 => Params::Other(&signature::ECDSA_P384_SHA384_FIXED),
        Algorithm::EdDSA => Params::Other(&signature::ED25519),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
        Ed25519KeyPair, KeyPair,
    };
    use jsonwebtoken::EncodingKey;
    use jsonwebtoken::jwk::Jwk;

    /// A signing key, its public JWK, and its public key as PEM.
    fn key(alg: Algorithm) -> (EncodingKey, serde_json::Value, String) {
        let pem_of = |label: &str, der: &[u8]| {
            let body = base64::engine::general_purpose::STANDARD.encode(der);
            format!("-----BEGIN {label}-----\n{body}\n-----END {label}-----\n")
        };
        let pem = |der: &[u8]| pem_of("PUBLIC KEY", der);
        let rng = SystemRandom::new();
        let (encoding, spki) = match alg {
            Algorithm::RS256 | Algorithm::PS256 | Algorithm::RS512 => {
                let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                    .expect("RSA key");
                let der = AsDer::<Pkcs8V1Der>::as_der(&pair).expect("PKCS#8");
                let spki = AsDer::<PublicKeyX509Der>::as_der(pair.public_key()).expect("SPKI");
                let private = pem_of("PRIVATE KEY", der.as_ref());
                (
                    EncodingKey::from_rsa_pem(private.as_bytes()).expect("RSA key"),
                    spki.as_ref().to_vec(),
                )
            }
            Algorithm::ES256 | Algorithm::ES384 => {
                let signing = if alg == Algorithm::ES256 {
                    &ECDSA_P256_SHA256_FIXED_SIGNING
                } else {
                    &ECDSA_P384_SHA384_FIXED_SIGNING
                };
                let pkcs8 = EcdsaKeyPair::generate_pkcs8(signing, &rng).expect("EC key");
                let pair = EcdsaKeyPair::from_pkcs8(signing, pkcs8.as_ref()).expect("pair");
                let spki = AsDer::<PublicKeyX509Der>::as_der(pair.public_key()).expect("SPKI");
                (
                    EncodingKey::from_ec_der(pkcs8.as_ref()),
                    spki.as_ref().to_vec(),
                )
            }
            _ => {
                let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("Ed25519 key");
                let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("pair");
                let spki = AsDer::<PublicKeyX509Der>::as_der(pair.public_key()).expect("SPKI");
                // jsonwebtoken makes no JWK of an Ed25519 private key: by hand.
                let x = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
                let jwk = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": x});
                return (
                    EncodingKey::from_ed_der(pkcs8.as_ref()),
                    jwk,
                    pem(spki.as_ref()),
                );
            }
        };
        let jwk = Jwk::from_encoding_key(&encoding, alg).expect("JWK");
        let jwk = serde_json::to_value(jwk).expect("JSON");
        (encoding, jwk, pem(&spki))
    }

    #[test]
    fn parsed_keys_agree_with_jsonwebtoken_on_valid_and_forged_signatures() {
        let message = b"eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1c2VyIn0";
        for alg in [
            Algorithm::RS256,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::ES256,
            Algorithm::ES384,
            Algorithm::EdDSA,
        ] {
            let (encoding, jwk, pem) = key(alg);
            let signature = jsonwebtoken::crypto::sign(message, &encoding, alg).expect("sign");
            let decoding = jsonwebtoken::DecodingKey::from_jwk(
                &serde_json::from_value(jwk.clone()).expect("JWK"),
            )
            .expect("decoding key");
            for native in [
                NativeKey::from_jwk(&jwk),
                NativeKey::from_pem(pem.as_bytes()),
            ] {
                assert_eq!(
                    native.verify(alg, message, &signature),
                    Some(true),
                    "{alg:?}"
                );
                assert_eq!(
                    native.verify(alg, b"eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9", &signature),
                    Some(false),
                    "{alg:?}: another message"
                );
                assert_eq!(
                    native.verify(alg, message, "AAAA"),
                    Some(false),
                    "{alg:?}: another signature"
                );
                assert_eq!(
                    native.verify(alg, message, "not base64!"),
                    Some(false),
                    "{alg:?}: a malformed signature"
                );
            }
            assert_eq!(
                jsonwebtoken::crypto::verify(&signature, message, &decoding, alg).ok(),
                Some(true),
                "{alg:?}: jsonwebtoken agrees"
            );
        }
    }

    #[test]
    fn a_key_serves_only_the_algorithms_of_its_type() {
        let (encoding, jwk, _) = key(Algorithm::ES256);
        let message = b"a.b";
        let signature =
            jsonwebtoken::crypto::sign(message, &encoding, Algorithm::ES256).expect("sign");
        let native = NativeKey::from_jwk(&jwk);
        // A P-256 point is not an RSA key, nor a P-384 one: no parsed key, so the
        // caller falls back to jsonwebtoken, which refuses as well.
        assert_eq!(native.verify(Algorithm::RS256, message, &signature), None);
        assert_eq!(native.verify(Algorithm::ES384, message, &signature), None);
        assert_eq!(native.verify(Algorithm::HS256, message, &signature), None);
        let hmac = NativeKey::hmac(b"0123456789abcdef0123456789abcdef", Algorithm::HS256);
        let tag = jsonwebtoken::crypto::sign(
            message,
            &EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
            Algorithm::HS256,
        )
        .expect("sign");
        assert_eq!(hmac.verify(Algorithm::HS256, message, &tag), Some(true));
        assert_eq!(hmac.verify(Algorithm::HS256, b"a.c", &tag), Some(false));
    }

    #[test]
    fn rsa_keys_under_2048_bits_never_verify() {
        // A 1024-bit key (made with `openssl genrsa 1024`) and its genuine RS256
        // signature over "a.b": AWS-LC's legacy 1024-bit algorithm accepts it, so only
        // the 2048-bit minimum, which jsonwebtoken's backend has too, refuses it.
        let n = "qREfserVILidF12o9OnaX4iL9vsacx-J3am0K5KdI8_T20gzr99fKx6A8OoNlyR5FgvobR4zZ-7lNnErfMR0UUscsm-Y2ipOeGCcG9yWXD1p-Jix6FiwNavWOSYcr1PRYwSh6Fl9yyXV2Ns_zdfW8yH6Q2EU_FjtjLCLqEU09GU";
        let signature = "fatoYNpONZfpR98G8O6wYgb0iJLTgo6xZClnoORblBu0l5Ek-UfzIxsJGS-YS26tGUTD68e7mnJx5TqQJTDYKxXhI5V9dW3vTADUZ1I7HC6L1vEyrc6n6CU6unULtCAzbxopbUdL-_aG0HCoEM_FbwrKA-DkjrsKE7-TiRkLQAE";
        let modulus = URL_SAFE_NO_PAD.decode(n).expect("n");
        let raw_signature = URL_SAFE_NO_PAD.decode(signature).expect("signature");
        let legacy = RsaPublicKeyComponents {
            n: modulus.as_slice(),
            e: &[1u8, 0, 1][..],
        }
        .verify(
            &signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
            b"a.b",
            &raw_signature,
        );
        assert!(legacy.is_ok(), "the signature is genuine");
        let weak = NativeKey::new(Material::Rsa {
            n: modulus.clone(),
            e: vec![1, 0, 1],
        });
        assert_ne!(weak.verify(Algorithm::RS256, b"a.b", signature), Some(true));
        let jwk = serde_json::json!({"kty": "RSA", "n": n, "e": "AQAB"});
        let decoding =
            jsonwebtoken::DecodingKey::from_jwk(&serde_json::from_value(jwk).expect("JWK"))
                .expect("decoding key");
        assert_ne!(
            jsonwebtoken::crypto::verify(signature, b"a.b", &decoding, Algorithm::RS256).ok(),
            Some(true),
            "jsonwebtoken refuses it too"
        );
    }
}
