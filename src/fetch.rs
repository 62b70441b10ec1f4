//! The one bounded HTTP client for calls to identity providers (R-KEY-4): a timeout on
//! every call, a cap on the response size, no redirect to another origin, no proxy
//! taken from the environment. Discovery and JWKS fetches go through it.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{CACHE_CONTROL, CONTENT_LENGTH};
use reqwest::redirect;

use crate::error::ConfigError;

/// Limits for calls to identity providers.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Time for the whole call, connection included. Default 5 s.
    pub timeout: Duration,
    /// Time to establish the connection. Default 2 s.
    pub connect_timeout: Duration,
    /// Largest response body accepted. Default 256 KiB.
    pub max_body_bytes: usize,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            max_body_bytes: 256 * 1024,
        }
    }
}

/// Why a fetch failed, in words safe to log (no response bodies, no internals).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FetchError {
    /// Could not connect, or timed out.
    Unreachable(String),
    /// The server answered with a status other than 200 (or 201): the status, and
    /// the OAuth `error` code of its JSON body (RFC 6749 §5.2) when it had one.
    Status(u16, Option<String>),
    /// The body is over the cap.
    TooLarge(usize),
    /// The body is not the JSON we asked for.
    Invalid(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unreachable(why) => write!(f, "unreachable ({why})"),
            Self::Status(code, None) => write!(f, "answered HTTP {code}"),
            Self::Status(code, Some(error)) => write!(f, "answered HTTP {code} ({error})"),
            Self::TooLarge(cap) => write!(f, "answered more than {cap} bytes"),
            Self::Invalid(why) => write!(f, "answered an invalid document ({why})"),
        }
    }
}

/// A successful fetch: the body and the freshness the server gave it.
pub(crate) struct Fetched {
    pub(crate) body: Bytes,
    pub(crate) max_age: Option<Duration>,
}

/// The bounded client. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Fetcher {
    client: reqwest::Client,
    max_body_bytes: usize,
}

impl Fetcher {
    /// Builds the client; does no I/O.
    pub(crate) fn new(options: &FetchOptions) -> Result<Self, ConfigError> {
        Self::with_root_certificate(options, None)
    }

    /// Builds the client, trusting `root_pem` (a PEM CA certificate) besides the
    /// system's roots, e.g. a Kubernetes cluster's CA.
    pub(crate) fn with_root_certificate(
        options: &FetchOptions,
        root_pem: Option<&[u8]>,
    ) -> Result<Self, ConfigError> {
        let policy = redirect::Policy::custom(|attempt| {
            let same_origin = attempt
                .previous()
                .first()
                .is_some_and(|first| first.origin() == attempt.url().origin());
            if attempt.previous().len() > 3 || !same_origin {
                attempt.stop()
            } else {
                attempt.follow()
            }
        });
        let mut builder = reqwest::Client::builder();
        if let Some(pem) = root_pem {
            builder = add_root(builder, pem)?;
        }
        let client = builder
            .timeout(options.timeout)
            .connect_timeout(options.connect_timeout)
            .redirect(policy)
            .no_proxy()
            .user_agent(concat!("mcp-gatekeeper/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|_| {
                ConfigError::new(
                    "could not build the HTTP client for identity providers (TLS backend \
                     failed to initialise); check the crate's TLS feature",
                )
            })?;
        Ok(Self {
            client,
            max_body_bytes: options.max_body_bytes,
        })
    }

    /// GETs `url` as JSON, within the limits.
    pub(crate) async fn get_json(&self, url: &str) -> Result<Fetched, FetchError> {
        self.send(self.client.get(url)).await
    }

    /// POSTs a form to `url` (with an optional `Authorization` value) and reads a
    /// JSON answer, within the limits.
    pub(crate) async fn post_form(
        &self,
        url: &str,
        form: String,
        authorization: Option<&str>,
    ) -> Result<Fetched, FetchError> {
        let mut request = self
            .client
            .post(url)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form);
        if let Some(value) = authorization {
            request = request.header(http::header::AUTHORIZATION, value);
        }
        self.send(request).await
    }

    /// POSTs a JSON document to `url` (with an optional `Authorization` value) and
    /// reads a JSON answer (`200` or `201`), within the limits.
    #[cfg_attr(not(feature = "kubernetes"), allow(dead_code))]
    pub(crate) async fn post_json(
        &self,
        url: &str,
        body: Vec<u8>,
        authorization: Option<&str>,
    ) -> Result<Fetched, FetchError> {
        let mut request = self
            .client
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(value) = authorization {
            request = request.header(http::header::AUTHORIZATION, value);
        }
        self.send(request).await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Fetched, FetchError> {
        let mut response = request
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| FetchError::Unreachable(describe(&e)))?;
        let status = response.status().as_u16();
        if !matches!(status, 200 | 201) {
            let error = match status {
                400..=499 => oauth_error(response).await,
                _ => None,
            };
            return Err(FetchError::Status(status, error));
        }
        let declared = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > self.max_body_bytes as u64) {
            return Err(FetchError::TooLarge(self.max_body_bytes));
        }
        let max_age = response
            .headers()
            .get(CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_max_age);
        let mut body = BytesMut::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| FetchError::Unreachable(describe(&e)))?
        {
            if body.len() + chunk.len() > self.max_body_bytes {
                return Err(FetchError::TooLarge(self.max_body_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched {
            body: body.freeze(),
            max_age,
        })
    }
}

#[cfg(feature = "rustls")]
fn add_root(
    builder: reqwest::ClientBuilder,
    pem: &[u8],
) -> Result<reqwest::ClientBuilder, ConfigError> {
    let certificate = reqwest::Certificate::from_pem(pem)
        .map_err(|_| ConfigError::new("the CA certificate is not a valid PEM certificate"))?;
    Ok(builder.add_root_certificate(certificate))
}

#[cfg(not(feature = "rustls"))]
fn add_root(
    _builder: reqwest::ClientBuilder,
    _pem: &[u8],
) -> Result<reqwest::ClientBuilder, ConfigError> {
    Err(ConfigError::new(
        "a CA certificate needs HTTPS: enable the `rustls` feature",
    ))
}

/// The largest error body read for its OAuth `error` code.
const ERROR_BODY_BYTES: usize = 4096;

/// The OAuth `error` code of an error answer's JSON body (RFC 6749 §5.2), if it has
/// one made of the characters RFC 6749 allows there (so it is safe to log and to
/// compare); the body is read up to a few KiB, within the call's timeout.
async fn oauth_error(mut response: reqwest::Response) -> Option<String> {
    let mut body = BytesMut::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        if body.len() + chunk.len() > ERROR_BODY_BYTES {
            return None;
        }
        body.extend_from_slice(&chunk);
    }
    error_code(&body)
}

/// The `error` member of a JSON error body, when it is a valid RFC 6749 error code.
fn error_code(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        error: Option<serde_json::Value>,
    }
    let error = serde_json::from_slice::<ErrorBody>(body).ok()?.error?;
    let error = error.as_str()?;
    // error = 1*( %x20-21 / %x23-5B / %x5D-7E ), kept short.
    let valid = !error.is_empty()
        && error.len() <= 64
        && error
            .bytes()
            .all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E));
    valid.then(|| error.to_owned())
}

/// A short, safe description of a client error: its kind, never its URL or body.
fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".into()
    } else if error.is_connect() {
        "connection failed".into()
    } else if error.is_redirect() {
        "redirect refused".into()
    } else if error.is_body() || error.is_decode() {
        "broken response body".into()
    } else {
        "request failed".into()
    }
}

/// `max-age` of a `Cache-Control` value; `no-store`/`no-cache` mean zero (the caller
/// applies its floor).
fn parse_max_age(value: &str) -> Option<Duration> {
    let mut max_age = None;
    for directive in value.split(',') {
        let directive = directive.trim();
        if directive.eq_ignore_ascii_case("no-store") || directive.eq_ignore_ascii_case("no-cache")
        {
            return Some(Duration::ZERO);
        }
        if let Some((name, secs)) = directive.split_once('=')
            && name.trim().eq_ignore_ascii_case("max-age")
        {
            max_age = secs
                .trim()
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs);
        }
    }
    max_age
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_max_age_is_read() {
        // R-KEY-3
        assert_eq!(
            parse_max_age("public, max-age=600"),
            Some(Duration::from_secs(600))
        );
        assert_eq!(
            parse_max_age("Max-Age=\"30\", must-revalidate"),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(parse_max_age("private"), None);
        assert_eq!(parse_max_age("max-age=abc"), None);
    }

    #[test]
    fn only_a_valid_oauth_error_code_is_taken_from_an_error_body() {
        let code = |body: &str| error_code(body.as_bytes());
        assert_eq!(
            code(r#"{"error":"invalid_request","error_description":"x"}"#),
            Some("invalid_request".to_owned())
        );
        assert_eq!(
            code(r#"{"error":"invalid_client"}"#),
            Some("invalid_client".to_owned())
        );
        for bad in [
            r#"{"error":"a\"quote"}"#,
            r#"{"error":"line\nbreak"}"#,
            r#"{"error":""}"#,
            r#"{"error":5}"#,
            r#"{"message":"invalid_request"}"#,
            "<html>400</html>",
        ] {
            assert_eq!(code(bad), None, "{bad}");
        }
        assert_eq!(code(&format!(r#"{{"error":"{}"}}"#, "e".repeat(65))), None);
    }
}
