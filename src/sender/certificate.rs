//! Client certificates for certificate-bound tokens (RFC 8705 §3): from the
//! connection ([`ClientCertificate`], a request extension the server's TLS acceptor
//! sets), or from a header that a TLS-terminating proxy the operator trusts sets
//! (only when named: [`ClientCertificates::from_header`]).

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::HeaderName;
use http::request::Parts;
use sha2::{Digest, Sha256};

use crate::error::AuthError;
use crate::rule::Rule;

/// The DER bytes of the client certificate of a request's TLS connection (the leaf,
/// first of the chain the client sent). Put it into the request's extensions where
/// the TLS handshake is done; `examples/mtls.rs` shows it with tokio-rustls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCertificate(Bytes);

impl ClientCertificate {
    /// The certificate whose DER encoding is `der`.
    pub fn new(der: impl Into<Bytes>) -> Self {
        Self(der.into())
    }

    /// The DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.0
    }

    /// The RFC 8705 §3.1 thumbprint: base64url SHA-256 of the DER encoding, the
    /// `cnf["x5t#S256"]` of a token bound to this certificate.
    pub fn thumbprint(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(&self.0))
    }
}

/// How a proxy header carries the client certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertificateHeader {
    /// Envoy's `X-Forwarded-Client-Cert`: `Hash=<hex SHA-256 of the DER>` or
    /// `Cert="<URL-encoded PEM>"` of one element (a header naming several hops is
    /// refused: which one is the client is not known).
    EnvoyXfcc,
    /// A URL-encoded PEM certificate, as nginx's `$ssl_client_escaped_cert` gives it.
    EscapedPem,
}

/// Where the client certificate of a request comes from. The default is the
/// connection ([`ClientCertificate`] in the request's extensions).
#[derive(Clone, Debug, Default)]
pub struct ClientCertificates(Source);

#[derive(Clone, Debug, Default)]
enum Source {
    #[default]
    Connection,
    Header(HeaderName, CertificateHeader),
}

impl ClientCertificates {
    /// The certificate of the request's own TLS connection: the [`ClientCertificate`]
    /// extension the server's acceptor put into the request.
    pub fn from_connection() -> Self {
        Self(Source::Connection)
    }

    /// The certificate a TLS-terminating proxy put into the header `name`, and only
    /// that (the connection's is not looked at). Only behind a proxy that always
    /// sets or removes this header: anyone who can reach the server directly could
    /// otherwise claim any certificate.
    pub fn from_header(name: HeaderName, format: CertificateHeader) -> Self {
        Self(Source::Header(name, format))
    }

    /// The certificate's RFC 8705 thumbprint for `parts`: `None` without one; an
    /// `invalid_token` refusal when the proxy's header cannot be read.
    pub(crate) fn thumbprint(&self, parts: &Parts) -> Result<Option<String>, AuthError> {
        match &self.0 {
            Source::Connection => Ok(parts
                .extensions
                .get::<ClientCertificate>()
                .map(ClientCertificate::thumbprint)),
            Source::Header(name, format) => {
                let mut values = parts.headers.get_all(name).iter();
                let (value, None) = (values.next(), values.next()) else {
                    return Err(unreadable(
                        "the request has more than one client certificate header",
                    ));
                };
                let Some(value) = value else {
                    return Ok(None);
                };
                let value = value
                    .to_str()
                    .map_err(|_| unreadable("the client certificate header is not ASCII"))?;
                match format {
                    CertificateHeader::EnvoyXfcc => xfcc_thumbprint(value).map(Some),
                    CertificateHeader::EscapedPem => {
                        pem_thumbprint(&percent_decode(value)?).map(Some)
                    }
                }
            }
        }
    }
}

fn unreadable(why: &'static str) -> AuthError {
    AuthError::invalid_token(Rule::Mtls1, why)
}

/// The thumbprint of the one element of an Envoy `X-Forwarded-Client-Cert` header:
/// its `Hash` (hex SHA-256 of the DER) and/or its `Cert`, which must agree. A key
/// given twice refuses the header: Envoy writes `Hash` and `Cert` once, before the
/// `URI` and `DNS` values it copies raw from the certificate, so a second one can only
/// come from a certificate whose name was chosen to look like one.
fn xfcc_thumbprint(value: &str) -> Result<String, AuthError> {
    let elements = split_outside_quotes(value, ',');
    let [element] = elements.as_slice() else {
        return Err(unreadable(
            "the X-Forwarded-Client-Cert header names several hops; the client's certificate is not known",
        ));
    };
    let mut hash = None;
    let mut cert = None;
    for pair in split_outside_quotes(element, ';') {
        let Some((key, value)) = pair.split_once('=') else {
            continue;
        };
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        let slot = match key.trim().to_ascii_lowercase().as_str() {
            "hash" => &mut hash,
            "cert" => &mut cert,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(unreadable(
                "the X-Forwarded-Client-Cert header gives Hash or Cert twice",
            ));
        }
    }
    let by_hash = match hash {
        Some(hex) => Some(
            decode_hex(hex)
                .filter(|d| d.len() == 32)
                .map(|digest| URL_SAFE_NO_PAD.encode(digest))
                .ok_or_else(|| {
                    unreadable("the X-Forwarded-Client-Cert Hash is not a hex SHA-256")
                })?,
        ),
        None => None,
    };
    let by_cert = match cert {
        Some(cert) => Some(pem_thumbprint(&percent_decode(cert)?)?),
        None => None,
    };
    match (by_hash, by_cert) {
        (Some(hash), Some(cert)) if hash != cert => Err(unreadable(
            "the X-Forwarded-Client-Cert Hash and Cert name different certificates",
        )),
        (Some(thumbprint), _) | (None, Some(thumbprint)) => Ok(thumbprint),
        (None, None) => Err(unreadable(
            "the X-Forwarded-Client-Cert header has neither Hash nor Cert",
        )),
    }
}

/// `value` split at `sep` where it is not inside double quotes (in which `\` escapes
/// the next character, as in `Subject="O=Foo\", Inc"`).
fn split_outside_quotes(value: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut quoted = false;
    let mut escaped = false;
    let mut start = 0;
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// `%XX` escapes decoded (a `+` stays a `+`: base64 uses it).
fn percent_decode(value: &str) -> Result<String, AuthError> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let byte = value
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| unreadable("the client certificate header has a bad %-escape"))?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| unreadable("the client certificate header is not UTF-8"))
}

/// The thumbprint of the first certificate of a PEM text.
fn pem_thumbprint(pem: &str) -> Result<String, AuthError> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let body = pem
        .split_once(BEGIN)
        .and_then(|(_, rest)| rest.split_once(END))
        .map(|(body, _)| body)
        .ok_or_else(|| unreadable("the client certificate header holds no PEM certificate"))?;
    let base64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = STANDARD
        .decode(base64)
        .map_err(|_| unreadable("the client certificate header's PEM is not base64"))?;
    Ok(ClientCertificate::new(der).thumbprint())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nAAECAwQFBgcICQ==\n-----END CERTIFICATE-----\n";

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut request = http::Request::builder();
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let (parts, ()) = request.body(()).unwrap_or_default().into_parts();
        parts
    }

    fn escaped(pem: &str) -> String {
        form_urlencoded::byte_serialize(pem.as_bytes())
            .collect::<String>()
            .replace('+', "%20")
    }

    #[test]
    fn each_header_format_gives_the_thumbprint_of_the_der() {
        let expected = ClientCertificate::new((0u8..10).collect::<Vec<u8>>()).thumbprint();
        let hex: String = Sha256::digest((0u8..10).collect::<Vec<u8>>())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let xfcc = ClientCertificates::from_header(
            HeaderName::from_static("x-forwarded-client-cert"),
            CertificateHeader::EnvoyXfcc,
        );
        let nginx = ClientCertificates::from_header(
            HeaderName::from_static("x-ssl-client-cert"),
            CertificateHeader::EscapedPem,
        );
        let by_hash = format!("By=spiffe://proxy;Hash={hex};Subject=\"CN=a,O=b\"");
        let both = format!(
            "Hash={hex};Cert=\"{}\";Subject=\"O=Foo\\\", Inc,CN=a\"",
            escaped(PEM)
        );
        let by_cert = format!("Cert=\"{}\";Subject=\"CN=a,O=b\"", escaped(PEM));
        for (source, header, value) in [
            (&xfcc, "x-forwarded-client-cert", by_hash.as_str()),
            (&xfcc, "x-forwarded-client-cert", by_cert.as_str()),
            (&xfcc, "x-forwarded-client-cert", both.as_str()),
            (&nginx, "x-ssl-client-cert", escaped(PEM).as_str()),
        ] {
            let got = source.thumbprint(&parts(&[(header, value)]));
            assert_eq!(
                got.ok().flatten().as_deref(),
                Some(expected.as_str()),
                "{value}"
            );
        }
        // Not set: no certificate. The connection's is not looked at in header mode.
        let mut with_extension = parts(&[]);
        with_extension
            .extensions
            .insert(ClientCertificate::new(vec![1u8]));
        assert!(matches!(xfcc.thumbprint(&with_extension), Ok(None)));
        assert!(matches!(
            ClientCertificates::from_connection().thumbprint(&with_extension),
            Ok(Some(_))
        ));
    }

    #[test]
    fn several_hops_two_headers_or_garbage_are_refused() {
        let xfcc = ClientCertificates::from_header(
            HeaderName::from_static("x-forwarded-client-cert"),
            CertificateHeader::EnvoyXfcc,
        );
        let two = format!("Hash={0},Hash={0}", "ab".repeat(32));
        // A certificate whose URI SAN reads as a second Hash (Envoy copies it raw).
        let injected = format!(
            "Hash={};URI=urn:x;Hash={}",
            "ab".repeat(32),
            "cd".repeat(32)
        );
        let disagree = format!("Hash={};Cert=\"{}\"", "ab".repeat(32), escaped(PEM));
        for headers in [
            vec![("x-forwarded-client-cert", two.as_str())],
            vec![("x-forwarded-client-cert", injected.as_str())],
            vec![("x-forwarded-client-cert", disagree.as_str())],
            vec![("x-forwarded-client-cert", "Hash=zz")],
            vec![("x-forwarded-client-cert", "Subject=\"CN=a\"")],
            vec![("x-forwarded-client-cert", "Cert=\"%zz\"")],
            vec![
                ("x-forwarded-client-cert", "Hash=00"),
                ("x-forwarded-client-cert", "Hash=00"),
            ],
        ] {
            let refused = xfcc.thumbprint(&parts(&headers));
            assert!(
                refused
                    .as_ref()
                    .is_err_and(|e| e.kind() == crate::AuthErrorKind::InvalidToken),
                "{headers:?}: {refused:?}"
            );
        }
    }
}
