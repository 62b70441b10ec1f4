//! Signing keys generated at run time (AWS-LC), their public JWKs, and token minting.
//! Shared by the tests and by `examples/mcp_server.rs` (its embedded issuer).
#![allow(dead_code)]

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::KeyPair;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair,
};
use base64::Engine;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// A private signing key with its `kid` and algorithm.
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    encoding: EncodingKey,
    public: Value,
    /// PEM of the public key (SubjectPublicKeyInfo), when known.
    pub public_pem: Option<String>,
    /// The private scalar `d` of an EC key (base64url), for its private JWK.
    private_d: Option<String>,
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

impl SigningKey {
    fn finish(
        kid: &str,
        alg: Algorithm,
        encoding: EncodingKey,
        public_pem: Option<String>,
    ) -> Self {
        let jwk = Jwk::from_encoding_key(&encoding, alg).expect("public JWK from private key");
        let mut public = serde_json::to_value(&jwk).expect("JWK to JSON");
        public["kid"] = json!(kid);
        public["use"] = json!("sig");
        Self {
            kid: kid.to_owned(),
            alg,
            encoding,
            public,
            public_pem,
            private_d: None,
        }
    }

    /// A fresh RSA-2048 key for RS256.
    pub fn rsa(kid: &str) -> Self {
        Self::rsa_for(kid, Algorithm::RS256)
    }

    /// A fresh RSA-2048 key for `alg` (RS* or PS*).
    pub fn rsa_for(kid: &str, alg: Algorithm) -> Self {
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .expect("RSA keygen");
        let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).expect("RSA PKCS#8");
        let encoding = EncodingKey::from_rsa_pem(pem("PRIVATE KEY", der.as_ref()).as_bytes())
            .expect("RSA encoding key");
        let public_der = AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(pair.public_key())
            .expect("RSA SPKI");
        Self::finish(
            kid,
            alg,
            encoding,
            Some(pem("PUBLIC KEY", public_der.as_ref())),
        )
    }

    /// A fresh P-256 key for ES256.
    pub fn ec(kid: &str) -> Self {
        use aws_lc_rs::encoding::{AsBigEndian, EcPrivateKeyBin};
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .expect("EC keygen");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .expect("EC key");
        let d: EcPrivateKeyBin = pair.private_key().as_be_bytes().expect("EC private key");
        let mut key = Self::finish(
            kid,
            Algorithm::ES256,
            EncodingKey::from_ec_der(pkcs8.as_ref()),
            None,
        );
        key.private_d = Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d.as_ref()));
        key
    }

    /// The private JWK (the public one with `d`) of an ES256 key.
    pub fn private_jwk(&self) -> Option<Value> {
        let mut jwk = self.public.clone();
        jwk["d"] = json!(self.private_d.as_ref()?);
        Some(jwk)
    }

    /// A fresh P-384 key for ES384.
    pub fn ec384(kid: &str) -> Self {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &SystemRandom::new())
                .expect("EC keygen");
        Self::finish(
            kid,
            Algorithm::ES384,
            EncodingKey::from_ec_der(pkcs8.as_ref()),
            None,
        )
    }

    /// A fresh Ed25519 key for EdDSA.
    pub fn ed(kid: &str) -> Self {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("Ed25519 keygen");
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("Ed25519 key");
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
        let public = json!({"kty": "OKP", "crv": "Ed25519", "x": x, "alg": "EdDSA", "kid": kid, "use": "sig"});
        let encoding = EncodingKey::from_ed_der(pkcs8.as_ref());
        Self {
            kid: kid.to_owned(),
            alg: Algorithm::EdDSA,
            encoding,
            public,
            public_pem: None,
            private_d: None,
        }
    }

    /// The public JWK (with `kid`, `alg`, `use`).
    pub fn jwk(&self) -> Value {
        self.public.clone()
    }

    /// A token with the standard header (`alg`, `kid`, `typ: at+jwt`).
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        header.typ = Some("at+jwt".into());
        self.sign_with(header, claims)
    }

    /// The signature (base64url) of `message` with this key, for tokens built by hand.
    pub fn sign_message(&self, message: &[u8]) -> String {
        jsonwebtoken::crypto::sign(message, &self.encoding, self.alg).expect("sign")
    }

    /// A token with a header of the caller's making.
    pub fn sign_with(&self, header: Header, claims: &Value) -> String {
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("sign token")
    }
}

/// A JWK set document of the public keys.
pub fn jwks(keys: &[&SigningKey]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() })
}

/// Builds a token from raw header and payload JSON, signed with an HMAC `secret`
/// (for algorithm-confusion and header-tampering tests).
pub fn hmac_token(header: &Value, claims: &Value, secret: &[u8]) -> String {
    use aws_lc_rs::hmac;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let input = format!("{}.{}", b64(header), b64(claims));
    let alg = match header["alg"].as_str() {
        Some("HS384") => hmac::HMAC_SHA384,
        Some("HS512") => hmac::HMAC_SHA512,
        _ => hmac::HMAC_SHA256,
    };
    let tag = hmac::sign(&hmac::Key::new(alg, secret), input.as_bytes());
    format!(
        "{input}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref())
    )
}

/// A token with arbitrary header and claims and a garbage signature.
pub fn unsigned(header: &Value, claims: &Value) -> String {
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.c2lnbmF0dXJl", b64(header), b64(claims))
}
