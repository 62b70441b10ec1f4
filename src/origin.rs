//! [`OriginLayer`]: the `Origin` check of MCP's Streamable HTTP transport (R-MCP-7).
//!
//! A web page that reaches a server on `localhost` through DNS rebinding sends its own
//! origin (`http://evil.example:3000`) with every request its script makes. The
//! transport says a server MUST answer a request whose `Origin` header is present and
//! invalid with `403`, and MAY give a JSON-RPC error without `id` as the body: this
//! stage does so before any token is looked at, so such a page learns nothing, not even
//! the challenge. A request without `Origin` (every client that is not a browser)
//! passes; so does one from an allowed origin: by default the resource's own (for a
//! per-route resource, the origin of the route's resource URI), and those added with
//! [`OriginLayer::allow`].
//!
//! An origin is compared in its serialized form (`scheme://host[:port]`, lower case,
//! the scheme's default port left out, a domain name in its ASCII form), so
//! `HTTP://LOCALHOST:80` and `http://localhost` are one origin; an origin of another
//! scheme (`chrome-extension://<id>`, `tauri://localhost`) is compared as its text in
//! lower case. There are no wildcards. `null` (sandboxed frames, `file:` pages) is
//! never allowed, nor is a header given twice.
//!
//! Browsers leave `Origin` off same-origin `GET`s, so a rebinding page's `GET` of its
//! own name passes this stage; it still needs a token the stages after this one
//! accept.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue, ORIGIN};
use http::request::Parts;
use http::{Request, Response, StatusCode};
use tower::Service;

use crate::body::ResponseBody;
use crate::challenge::Refused;
use crate::error::ConfigError;
use crate::future::{Rejection, ResponseFuture, WatchedFuture};
use crate::resource::ProtectedResource;
use crate::rule::Rule;

/// The rule id this stage's refusals carry in logs.
const RULE: Rule = Rule::Mcp7;

/// The origins whose pages may call the server: the resource's own, and those added
/// with [`OriginLayer::allow`]. The [`OriginLayer`] refuses the others; the
/// [`CorsLayer`](crate::CorsLayer) lets only these read the answers.
#[derive(Clone, Debug)]
pub(crate) struct AllowedOrigins {
    resource: ProtectedResource,
    /// The resource's own origin, when it has one URI (a per-route resource's is
    /// found per request).
    own: Option<Arc<str>>,
    /// Serialized origins allowed besides the resource's own.
    allowed: Arc<[String]>,
}

impl AllowedOrigins {
    /// The resource's own origin only.
    pub(crate) fn new(resource: ProtectedResource) -> Self {
        let own = resource
            .fixed_uri()
            .and_then(serialize_prefix)
            .map(Into::into);
        Self {
            resource,
            own,
            allowed: Arc::new([]),
        }
    }

    /// Also `origins`; the error names the one that is not an origin.
    pub(crate) fn allow<I, T>(mut self, origins: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        let mut allowed = self.allowed.to_vec();
        for origin in origins {
            let origin = origin.as_ref();
            let serialized = serialize(origin).ok_or_else(|| {
                ConfigError::new(format!(
                    "allowed origin {origin:?} is not an origin: give a scheme and a host \
                     with an optional port and nothing after it, e.g. \
                     \"http://localhost:6274\""
                ))
            })?;
            if !allowed.contains(&serialized) {
                allowed.push(serialized);
            }
        }
        self.allowed = allowed.into();
        Ok(self)
    }

    /// Whether the `Origin` header value `value` of the request `parts` is allowed.
    pub(crate) fn contains(&self, value: &HeaderValue, parts: &Parts) -> bool {
        let Some(origin) = value.to_str().ok().and_then(serialize) else {
            return false;
        };
        if self.allowed.contains(&origin) {
            return true;
        }
        match &self.own {
            Some(own) => **own == *origin,
            None => self
                .resource
                .resource_for(parts)
                .map(std::borrow::Cow::into_owned)
                .or_else(|| crate::metadata::described_resource(&self.resource, parts))
                .and_then(|resource| serialize_prefix(&resource))
                .is_some_and(|own| own == origin),
        }
    }
}

/// A layer that refuses requests from browser origins that are not allowed; see the
/// module docs.
#[derive(Clone, Debug)]
pub struct OriginLayer {
    origins: AllowedOrigins,
    on: bool,
}

impl OriginLayer {
    /// Allows the resource's own origin only.
    pub fn new(resource: ProtectedResource) -> Self {
        Self {
            origins: AllowedOrigins::new(resource),
            on: true,
        }
    }

    /// Checks nothing: every request passes. For a service behind a proxy that checks
    /// `Origin` itself, or one no browser can reach.
    pub fn off(resource: ProtectedResource) -> Self {
        Self {
            on: false,
            ..Self::new(resource)
        }
    }

    /// Also allows `origins` (`http://localhost:6274`, `https://app.example.com`):
    /// the pages of these origins may call the server. Each must be an origin, a
    /// scheme and a host with an optional port and nothing after it; the error says
    /// which is not.
    pub fn allow<I, T>(mut self, origins: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        self.origins = self.origins.allow(origins)?;
        Ok(self)
    }

    /// The same check with the allowed origins of `origins`.
    pub(crate) fn with_origins(origins: AllowedOrigins, on: bool) -> Self {
        Self { origins, on }
    }

    /// Whether `parts` may go on: no `Origin`, or one allowed origin.
    fn admits(&self, parts: &Parts) -> bool {
        if !self.on {
            return true;
        }
        let mut values = parts.headers.get_all(ORIGIN).iter();
        match (values.next(), values.next()) {
            (None, _) => true,
            (Some(value), None) => self.origins.contains(value, parts),
            (Some(_), Some(_)) => false,
        }
    }
}

/// The serialized origin `text` denotes, if it is exactly an origin: a scheme, a host
/// and an optional port with nothing after them (a trailing `/` aside); for a scheme
/// with opaque origins, that text in lower case.
fn serialize(text: &str) -> Option<String> {
    let url = reqwest::Url::parse(text).ok()?;
    let bare = url.username().is_empty()
        && url.password().is_none()
        && url.query().is_none()
        && url.fragment().is_none()
        && matches!(url.path(), "" | "/");
    let origin = url.origin();
    if !bare {
        return None;
    }
    if origin.is_tuple() {
        return Some(origin.ascii_serialization());
    }
    // Schemes the URL standard gives opaque origins to, which browsers still send
    // as `scheme://host` (`chrome-extension://<id>`, `tauri://localhost`): compared
    // as that text, in lower case. `file:` and `data:` pages send `null`.
    let host = url.host_str().filter(|h| !h.is_empty())?;
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    Some(format!("{}://{host}{port}", url.scheme()).to_ascii_lowercase())
}

/// The serialized origin of a URL (a resource URI, whose path does not matter).
fn serialize_prefix(url: &str) -> Option<String> {
    let origin = reqwest::Url::parse(url).ok()?.origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
}

/// The `403` of a refused origin: a JSON-RPC error without `id`, as the transport
/// allows.
fn forbidden<B>() -> Response<ResponseBody<B>> {
    const BODY: &str = r#"{"jsonrpc":"2.0","error":{"code":-32000,"message":"Forbidden: requests from this Origin are not allowed (MCP Streamable HTTP: Origin validation)"}}"#;
    let mut response = Response::new(ResponseBody::full(Bytes::from_static(BODY.as_bytes())));
    *response.status_mut() = StatusCode::FORBIDDEN;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

crate::pipeline::layer_service!(OriginLayer => OriginService);

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for OriginService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ReqBody: http_body::Body,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = WatchedFuture<ResponseFuture<S::Future, ResBody, ReqBody>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let (parts, body) = req.into_parts();
        let mut watch = crate::audit::start(&parts);
        let _entered = watch.as_mut().map(crate::audit::enter);
        let future = if self.layer.admits(&parts) {
            ResponseFuture::inner(self.inner.call(Request::from_parts(parts, body)))
        } else {
            refuse(&parts, body)
        };
        if _entered.is_some() {
            crate::audit::decided_by_now();
        }
        drop(_entered);
        WatchedFuture::new(future, watch)
    }
}

/// The refusal of a request from a foreign origin, logged and recorded on its span.
fn refuse<F, B, ReqBody: http_body::Body>(
    parts: &Parts,
    body: ReqBody,
) -> ResponseFuture<F, B, ReqBody> {
    let origin = parts
        .headers
        .get(ORIGIN)
        .map(|v| String::from_utf8_lossy(v.as_bytes()));
    let span = tracing::Span::current();
    span.record("decision", "reject");
    span.record("rule", RULE.id());
    tracing::info!(
        rule = RULE.id(),
        status = 403,
        origin = %crate::mcp::shorten(origin.as_deref().unwrap_or("(repeated)")),
        "request refused: its Origin header is not an allowed origin"
    );
    crate::audit::decided();
    let mut response = forbidden();
    response.extensions_mut().insert(Refused {
        rule: RULE,
        kind: "forbidden",
    });
    ResponseFuture::rejected(Rejection::new(response, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(origins: &[&str]) -> Parts {
        let mut request = Request::builder().uri("https://mcp.example.com/mcp");
        for origin in origins {
            request = request.header(ORIGIN, *origin);
        }
        request
            .body(())
            .map(|r| r.into_parts().0)
            .unwrap_or_else(|_| Request::new(()).into_parts().0)
    }

    fn layer() -> OriginLayer {
        OriginLayer::new(ProtectedResource::new("https://mcp.example.com/mcp"))
    }

    #[test]
    fn origins_compare_in_their_serialized_form() {
        assert_eq!(
            serialize("HTTP://LOCALHOST:80").as_deref(),
            Some("http://localhost")
        );
        assert_eq!(
            serialize("https://App.Example.com:443/").as_deref(),
            Some("https://app.example.com")
        );
        for not_an_origin in [
            "null",
            "file:///etc/passwd",
            "http://localhost:6274/app",
            "http://user@localhost",
            "http://localhost?x",
            "localhost:6274",
            "",
        ] {
            assert_eq!(serialize(not_an_origin), None, "{not_an_origin:?}");
        }
        assert_eq!(
            serialize("Chrome-Extension://AbC").as_deref(),
            Some("chrome-extension://abc")
        );
    }

    #[test]
    fn without_origin_or_from_the_resources_own_origin_a_request_passes() {
        assert!(layer().admits(&parts(&[])));
        assert!(layer().admits(&parts(&["https://mcp.example.com"])));
        assert!(layer().admits(&parts(&["https://MCP.example.com:443"])));
    }

    #[test]
    fn a_foreign_null_malformed_or_repeated_origin_is_refused() {
        for origins in [
            &["http://evil.example"][..],
            &["http://mcp.example.com"],
            &["https://mcp.example.com:8443"],
            &["null"],
            &["https://mcp.example.com/path"],
            &["https://mcp.example.com", "https://mcp.example.com"],
        ] {
            assert!(!layer().admits(&parts(origins)), "{origins:?}");
        }
    }

    #[test]
    fn allowed_origins_pass_and_what_is_not_an_origin_is_a_build_error() {
        let layer = layer().allow(["http://localhost:6274"]);
        let Ok(layer) = layer else {
            panic!("a valid origin");
        };
        assert!(layer.admits(&parts(&["http://localhost:6274"])));
        assert!(!layer.admits(&parts(&["http://localhost:6275"])));
        let error = OriginLayer::new(ProtectedResource::new("https://mcp.example.com/mcp"))
            .allow(["http://localhost:6274/app"])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("not an origin"), "{error}");
        let off = OriginLayer::off(ProtectedResource::new("https://mcp.example.com/mcp"));
        assert!(off.admits(&parts(&["http://evil.example"])));
    }

    #[test]
    fn a_per_route_resource_allows_the_origin_of_the_routes_resource() {
        let layer = OriginLayer::new(ProtectedResource::per_route(|parts| {
            (parts.uri.path() == "/mcp").then(|| "https://gw.example.com/mcp".to_owned())
        }));
        let with = |origin: &str, path: &str| {
            let mut parts = parts(&[origin]);
            parts.uri = path.parse().unwrap_or_default();
            parts
        };
        assert!(layer.admits(&with("https://gw.example.com", "/mcp")));
        assert!(!layer.admits(&with("https://mcp.example.com", "/mcp")));
        // A path that is no resource has no own origin to allow.
        assert!(!layer.admits(&with("https://gw.example.com", "/other")));
        // The metadata document of a route's resource is for the same origin.
        let metadata = "/.well-known/oauth-protected-resource/mcp";
        assert!(layer.admits(&with("https://gw.example.com", metadata)));
        assert!(!layer.admits(&with("https://mcp.example.com", metadata)));
    }
}
