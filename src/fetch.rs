//! The one bounded HTTP client for calls to identity providers (R-KEY-4): a timeout on
//! every call, a cap on the response size, no redirect to another origin, no proxy
//! taken from the environment. Discovery and JWKS fetches go through it.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
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
    /// Host names resolved to fixed addresses instead of by DNS, as curl's
    /// `--resolve` does (split-horizon DNS, tests). A pinned host is configuration:
    /// the rules on where a discovery document may point do not apply to it.
    /// Default none.
    pub pinned_hosts: Vec<(String, SocketAddr)>,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            max_body_bytes: 256 * 1024,
            pinned_hosts: Vec::new(),
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
    /// Not fetched: the URL came from a discovery document and points where such a
    /// document may not send us (R-GW-3).
    Forbidden(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unreachable(why) => write!(f, "unreachable ({why})"),
            Self::Status(code, None) => write!(f, "answered HTTP {code}"),
            Self::Status(code, Some(error)) => write!(f, "answered HTTP {code} ({error})"),
            Self::TooLarge(cap) => write!(f, "answered more than {cap} bytes"),
            Self::Invalid(why) => write!(f, "answered an invalid document ({why})"),
            Self::Forbidden(why) => write!(f, "not fetched: {why}"),
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
    options: FetchOptions,
    /// For URLs a discovery document named: where they may not point.
    guard: Option<Arc<Guard>>,
}

/// Whether `ip` is an address a remote issuer's discovery document may not send us
/// to (R-GW-3): loopback, private, link-local (cloud metadata services live at
/// 169.254.169.254), unspecified, shared (CGNAT), broadcast, multicast or reserved;
/// IPv4-mapped and NAT64 IPv6 forms are judged by the IPv4 address they carry.
pub(crate) fn is_internal(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
                || (a == 198 && (18..20).contains(&b))
                || a >= 240
        }
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            let [.., hi, lo] = segments;
            let embedded = std::net::Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
            // NAT64 (64:ff9b::/96), IPv4-compatible (::a.b.c.d, deprecated) and
            // IPv4-translated (::ffff:0:a.b.c.d) forms carry an IPv4 address.
            let carries_v4 = segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0]
                || (segments[..6] == [0; 6] && !v6.is_loopback() && !v6.is_unspecified())
                || segments[..6] == [0, 0, 0, 0, 0xffff, 0];
            if carries_v4 {
                return is_internal(IpAddr::V4(embedded));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.is_unique_local()
                || v6.is_unicast_link_local()
                || (segments[0] & 0xffc0) == 0xfec0 // site-local, deprecated
        }
    }
}

/// The host of an absolute URL as the HTTP client reads it (WHATWG URL parsing:
/// `127.1`, `0x7f.0.0.1` and `2130706433` are all `127.0.0.1`), in lower case,
/// without brackets or port; empty when there is none.
pub(crate) fn host_of(url: &str) -> String {
    let host = match reqwest::Url::parse(url) {
        Ok(parsed) => parsed.host_str().unwrap_or_default().to_owned(),
        Err(_) => {
            let (origin, _) = crate::uri::split_origin(url);
            let authority = origin.split_once("://").map_or(origin, |(_, a)| a);
            let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            match authority.strip_prefix('[') {
                Some(rest) => rest.split(']').next().unwrap_or_default().to_owned(),
                None => authority.split(':').next().unwrap_or_default().to_owned(),
            }
        }
    };
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

/// Whether the host of `url` is internal by its very name: an IP literal of an
/// internal address, or `localhost` (and `*.localhost`, RFC 6761).
pub(crate) fn is_internal_host(url: &str) -> bool {
    let host = host_of(url);
    let host = host.trim_end_matches('.');
    host == "localhost"
        || host.ends_with(".localhost")
        || host.parse::<IpAddr>().is_ok_and(is_internal)
}

/// Where the URLs of a remote issuer's discovery document may point: anywhere
/// public, and the issuer's own host; not an internal address, whether by IP
/// literal (checked before sending) or by a name that resolves there (checked in
/// the resolver, so the check and the connection use the same addresses).
#[derive(Debug)]
struct Guard {
    issuer_host: String,
}

/// The error a guarded resolver refuses a name with; found again in the error chain.
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

impl Guard {
    /// Refuses `url` when its host is an internal IP literal other than the issuer's.
    fn check_literal(&self, url: &str) -> Result<(), FetchError> {
        let host = host_of(url);
        match host.parse::<IpAddr>() {
            Ok(ip) if is_internal(ip) && host != self.issuer_host => {
                Err(FetchError::Forbidden(format!(
                    "{host} is an internal address (loopback, private or link-local), where a \
                     remote issuer's discovery document may not send this server; configure \
                     the URL explicitly if it is right"
                )))
            }
            _ => Ok(()),
        }
    }
}

impl Guard {
    /// Why `host`, resolved to `addrs`, may not be fetched, if it may not: another
    /// host than the issuer's with an internal address among its addresses.
    fn refusal(&self, host: &str, addrs: &[SocketAddr]) -> Option<String> {
        let own = host
            .trim_end_matches('.')
            .eq_ignore_ascii_case(self.issuer_host.trim_end_matches('.'));
        let internal = addrs
            .iter()
            .find(|a| is_internal(a.ip()))
            .filter(|_| !own)?;
        Some(format!(
            "{host} resolves to {}, an internal address (loopback, private or link-local), \
             where a remote issuer's discovery document may not send this server; \
             configure the URL explicitly if it is right",
            internal.ip()
        ))
    }
}

impl reqwest::dns::Resolve for Guard {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        let guard = Guard {
            issuer_host: self.issuer_host.clone(),
        };
        Box::pin(async move {
            let lookup = host.clone();
            let addrs: Vec<SocketAddr> =
                tokio::task::spawn_blocking(move || (lookup.as_str(), 0).to_socket_addrs())
                    .await
                    .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)??
                    .collect();
            if let Some(why) = guard.refusal(&host, &addrs) {
                return Err(Box::new(Refused(why)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
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
        Self::build(options, root_pem, None)
    }

    /// The same limits, for the URLs a discovery document of `issuer` names: unless
    /// the issuer is itself internal (an internal IP literal or `localhost`), they
    /// may not point at internal addresses, except on the issuer's own host.
    pub(crate) fn for_discovered(&self, issuer: &str) -> Result<Self, ConfigError> {
        if is_internal_host(issuer) {
            return Ok(self.clone());
        }
        let guard = Guard {
            issuer_host: host_of(issuer),
        };
        Self::build(&self.options, None, Some(Arc::new(guard)))
    }

    fn build(
        options: &FetchOptions,
        root_pem: Option<&[u8]>,
        guard: Option<Arc<Guard>>,
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
        for (host, addr) in &options.pinned_hosts {
            builder = builder.resolve(host, *addr);
        }
        if let Some(guard) = &guard {
            builder = builder.dns_resolver(guard.clone());
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
            options: options.clone(),
            guard,
        })
    }

    /// GETs `url` as JSON, within the limits.
    pub(crate) async fn get_json(&self, url: &str) -> Result<Fetched, FetchError> {
        if let Some(guard) = &self.guard {
            guard.check_literal(url)?;
        }
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
            .map_err(|e| match refused(&e) {
                Some(why) => FetchError::Forbidden(why),
                None => FetchError::Unreachable(describe(&e)),
            })?;
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

/// The guard's reason, when it is what stopped the request.
fn refused(error: &reqwest::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = source {
        if let Some(refused) = error.downcast_ref::<Refused>() {
            return Some(refused.0.clone());
        }
        source = error.source();
    }
    None
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
    fn internal_addresses_are_told_in_every_form() {
        for internal in [
            "127.0.0.1",
            "127.9.9.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "0.1.2.3",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "::127.0.0.1",
            "::ffff:0:10.0.0.1",
            "fec0::1",
            "192.0.0.8",
            "198.18.0.1",
        ] {
            let ip: IpAddr = internal.parse().unwrap();
            assert!(is_internal(ip), "{internal}");
        }
        for public in [
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2001:4860::8888",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            let ip: IpAddr = public.parse().unwrap();
            assert!(!is_internal(ip), "{public}");
        }
        for url in [
            "http://127.0.0.1:8080/x",
            "https://[::1]/jwks",
            "https://LOCALHOST./x",
            "https://a.localhost/x",
            "https://user@169.254.169.254/latest",
        ] {
            assert!(is_internal_host(url), "{url}");
        }
        for url in [
            "https://accounts.google.com",
            "https://www.googleapis.com/oauth2/v3/certs",
            "https://localhost.example.com/",
        ] {
            assert!(!is_internal_host(url), "{url}");
        }
        assert_eq!(host_of("https://[fe80::1]:8443/p"), "fe80::1");
        assert_eq!(host_of("https://IDP.example.com:8443"), "idp.example.com");
        // The forms the HTTP client reads as loopback are loopback here too.
        for url in [
            "http://127.1/jwks",
            "http://0x7f.0.0.1/jwks",
            "http://2130706433/jwks",
            "http://0177.0.0.1/jwks",
            "http://[::ffff:7f00:1]/jwks",
            "http://[0:0:0:0:0:ffff:127.0.0.1]/jwks",
            "http://%31%32%37.0.0.1/jwks",
            "http://127.0.0.1./jwks",
        ] {
            assert!(is_internal_host(url), "{url} ({})", host_of(url));
        }
    }

    #[test]
    fn a_resolved_name_is_refused_only_for_an_internal_address_of_another_host() {
        let guard = Guard {
            issuer_host: "accounts.google.com".to_owned(),
        };
        let at = |ips: &[&str]| -> Vec<SocketAddr> {
            ips.iter()
                .map(|ip| SocketAddr::new(ip.parse().unwrap(), 0))
                .collect()
        };
        // Another https host with public addresses (Google's jwks_uri) is fine.
        assert_eq!(
            guard.refusal("www.googleapis.com", &at(&["142.250.1.1", "2a00:1450::1"])),
            None
        );
        // The issuer's own host is the issuer, wherever it is.
        assert_eq!(
            guard.refusal("accounts.google.com", &at(&["10.0.0.1"])),
            None
        );
        assert_eq!(
            guard.refusal("Accounts.Google.com.", &at(&["127.0.0.1"])),
            None
        );
        // Another host with an internal address among its addresses is not.
        for addrs in [
            &["127.0.0.1"][..],
            &["8.8.8.8", "169.254.169.254"],
            &["::1"],
        ] {
            let why = guard.refusal("evil.example", &at(addrs)).expect("refused");
            assert!(why.contains("internal address"), "{why}");
        }
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
