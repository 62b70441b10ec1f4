//! An embedded issuer for the examples: a key made at start and kept in process
//! (seed 004's case: no discovery, nothing to reach), and tokens signed with it.

use std::time::{SystemTime, UNIX_EPOCH};

use mcp_gatekeeper::Issuer;
use mcp_gatekeeper::keys::LocalKeys;
use serde_json::{Value, json};

use crate::signing::{SigningKey, jwks};

/// An issuer whose key lives in this process.
pub struct Embedded {
    /// The issuer URL, as tokens carry it in `iss`.
    pub issuer: String,
    key: SigningKey,
}

impl Embedded {
    /// A new key for `issuer`, and the trusted [`Issuer`] that verifies its tokens.
    pub fn new(issuer: String, kid: &str) -> Result<(Self, Issuer), mcp_gatekeeper::ConfigError> {
        let key = SigningKey::ec(kid);
        let keys = LocalKeys::from_jwks(jwks(&[&key]).to_string().as_bytes())?;
        let trusted = Issuer::new(&issuer).local_keys(keys).discovery(false);
        Ok((Self { issuer, key }, trusted))
    }

    /// A one-hour access token for `subject` and `audience` with `scope`.
    #[allow(dead_code)] // the mTLS example prints only bound tokens
    pub fn token(&self, subject: &str, audience: &str, scope: &str) -> String {
        self.sign(subject, audience, scope, None)
    }

    /// The same, bound to a key or a certificate by `cnf` (RFC 7800): `{"jkt": …}`
    /// for DPoP (RFC 9449), `{"x5t#S256": …}` for mutual TLS (RFC 8705).
    #[allow(dead_code)]
    pub fn bound_token(&self, subject: &str, audience: &str, scope: &str, cnf: Value) -> String {
        self.sign(subject, audience, scope, Some(cnf))
    }

    fn sign(&self, subject: &str, audience: &str, scope: &str, cnf: Option<Value>) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut claims = json!({
            "iss": self.issuer,
            "sub": subject,
            "aud": audience,
            "client_id": "mcp-gatekeeper-example",
            "scope": scope,
            "iat": now,
            "exp": now + 3600,
            "jti": format!("{subject}-{now}-{}-{}", scope.len(), cnf.is_some()),
        });
        if let Some(cnf) = cnf {
            claims["cnf"] = cnf;
        }
        self.key.sign(&claims)
    }
}
