//! JOSE parsing: a compact JWS taken apart before anything in it is trusted.
//!
//! The header is decoded once and only for the members this server reads; keys it
//! names or embeds (`jku`, `jwk`, `x5u`, `x5c`) are not even parsed, and `crit`,
//! `b64` and nested JWTs are refused (R-JWT-3). An algorithm that does not exist here,
//! such as `none`, makes the header unreadable (R-JWT-1). The claims are decoded once,
//! refusing an object that names a member twice at any depth (R-JWT-2). The signed
//! message and the signature are kept as sent, for the signature check.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use crate::error::AuthError;
use crate::rule::Rule;

/// The JOSE header members this server reads. Any other member is ignored; a member
/// of these given twice makes the header malformed (serde refuses duplicate fields).
/// Keys named or embedded by the header (`jku`, `jwk`, `x5u`, `x5c`) are not even
/// parsed (R-JWT-3).
#[derive(serde::Deserialize)]
pub(crate) struct JoseHeader {
    pub(super) alg: Algorithm,
    #[serde(default)]
    pub(super) kid: Option<String>,
    #[serde(default)]
    pub(super) typ: Option<String>,
    #[serde(default)]
    pub(super) cty: Option<String>,
    #[serde(default)]
    pub(super) crit: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub(super) b64: Option<serde::de::IgnoredAny>,
}

/// A JWT taken apart, before its signature is checked. Each part is decoded once, and
/// nothing borrows the token, so a verification that must fetch keys keeps this
/// instead of decoding the token again.
pub(super) struct Parsed {
    pub(super) header: JoseHeader,
    pub(super) claims: Map<String, Value>,
    /// The length of `header.payload`, what the signature covers; the signature
    /// follows it and a dot.
    message_len: usize,
}

impl Parsed {
    /// The signed message and the signature, from the token this was parsed from.
    pub(super) fn split<'t>(&self, token: &'t str) -> (&'t str, &'t str) {
        match token.split_at_checked(self.message_len) {
            Some((message, rest)) => (message, rest.get(1..).unwrap_or_default()),
            None => (token, ""),
        }
    }
}

/// The start of the error a duplicate key gives [`Strict`].
const DUPLICATE: &str = "duplicate key";

/// A JSON value in which an object that names a member twice, at any depth, is an
/// error: a parser that keeps the first and one that keeps the last would read two
/// different tokens, and whatever checks the claims after this server may be the
/// other kind.
struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number that is not finite"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(value) = map.next_value()?;
            if object.insert(key, value).is_some() {
                return Err(serde::de::Error::custom(DUPLICATE));
            }
        }
        Ok(Value::Object(object))
    }
}

/// `text` as JSON in which no object names a member twice, at any depth.
pub(crate) fn parse_strict(text: &str) -> Result<Value, serde_json::Error> {
    serde_json::from_str::<Strict>(text).map(|Strict(value)| value)
}

/// Takes a compact JWS apart: the header and the claims decoded (once each), and the
/// signed message and signature as sent. Nothing here is trusted yet.
pub(super) fn parse(token: &str) -> Result<Parsed, AuthError> {
    let Some([header, payload, _]) = segments(token) else {
        return Err(malformed());
    };
    let raw_header = URL_SAFE_NO_PAD.decode(header).map_err(|_| malformed())?;
    let header_len = header.len();
    let header = read_header(&raw_header)?;
    refuse_extensions(&header)?;
    let claims = read_claims(payload)?;
    // segments() split on the only two dots: header '.' payload '.' signature.
    Ok(Parsed {
        header,
        claims,
        message_len: header_len + 1 + payload.len(),
    })
}

/// The refusal of a token that is not a JWS in compact form.
fn malformed() -> AuthError {
    AuthError::invalid_token(Rule::Jwt1, "the access token is not a well-formed JWT")
}

/// The decoded header, or the refusal that names what is wrong with it.
fn read_header(raw_header: &[u8]) -> Result<JoseHeader, AuthError> {
    serde_json::from_slice(raw_header).map_err(|_| {
        // Decode the raw header only to name an unsupported `alg` (like `none`).
        let alg = serde_json::from_slice::<Value>(raw_header)
            .ok()
            .and_then(|h| h.get("alg").and_then(Value::as_str).map(str::to_owned));
        match alg {
            Some(alg) if alg.parse::<Algorithm>().is_ok() => AuthError::invalid_token(
                Rule::Jwt1,
                "the token's header is not well-formed (a member given twice, or of the wrong type)",
            ),
            Some(alg) if alg.len() <= 16 && alg.bytes().all(|b| b.is_ascii_alphanumeric()) => {
                AuthError::invalid_token(
                    Rule::Jwt1,
                    format!("the token's algorithm {alg:?} is not accepted"),
                )
            }
            _ => malformed(),
        }
    })
}

/// Refuses the header members that would change how the token is read: `crit`, `b64`
/// and a nested JWT's `cty` (R-JWT-3).
fn refuse_extensions(header: &JoseHeader) -> Result<(), AuthError> {
    // RFC 7515 §4.1.11: no extension is understood here, and an empty list is
    // itself invalid, so any crit is refused.
    if header.crit.is_some() {
        return Err(AuthError::invalid_token(
            Rule::Jwt3,
            "the token's header marks extensions as critical (crit) that this server does not understand",
        ));
    }
    // RFC 7797: the payload is always read as base64url here, never as sent.
    if header.b64.is_some() {
        return Err(AuthError::invalid_token(
            Rule::Jwt3,
            "the token's header has b64 (RFC 7797 unencoded payload), which this server does not accept",
        ));
    }
    if header.cty.as_deref().is_some_and(|cty| {
        cty.eq_ignore_ascii_case("JWT") || cty.eq_ignore_ascii_case("application/jwt")
    }) {
        return Err(AuthError::invalid_token(
            Rule::Jwt3,
            "the token is a nested JWT (cty JWT), which this server does not accept",
        ));
    }
    Ok(())
}

/// The claims of the base64url `payload`: a JSON object that names no member twice.
fn read_claims(payload: &str) -> Result<Map<String, Value>, AuthError> {
    let raw = URL_SAFE_NO_PAD.decode(payload).map_err(|_| malformed())?;
    match serde_json::from_slice::<Strict>(&raw) {
        Ok(Strict(Value::Object(claims))) => Ok(claims),
        Ok(_) => Err(AuthError::invalid_token(
            Rule::Jwt2,
            "the token's claims are not a JSON object with a string iss",
        )),
        Err(error) if error.to_string().starts_with(DUPLICATE) => Err(AuthError::invalid_token(
            Rule::Jwt2,
            "the token's claims name a member twice (duplicate JSON keys), which parsers \
             read differently",
        )),
        Err(_) => Err(AuthError::invalid_token(
            Rule::Jwt2,
            "the token's claims are not a JSON object with a string iss",
        )),
    }
}

/// The `iss` a JWT-shaped token claims, unverified: only for routing.
pub(crate) fn unverified_issuer(token: &str) -> Option<String> {
    let [_, payload, _] = segments(token)?;
    let raw = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice::<UnverifiedIssuer<'_>>(&raw)
        .ok()?
        .iss
        .map(std::borrow::Cow::into_owned)
}

/// The one claim read before verification, to pick the issuer.
#[derive(serde::Deserialize)]
struct UnverifiedIssuer<'a> {
    #[serde(borrow, default)]
    iss: Option<std::borrow::Cow<'a, str>>,
}

/// The three segments of a compact JWS, or `None` for any other shape.
pub(crate) fn segments(token: &str) -> Option<[&str; 3]> {
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(header), Some(payload), Some(signature), None) => Some([header, payload, signature]),
        _ => None,
    }
}
