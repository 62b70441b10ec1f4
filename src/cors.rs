//! [`CorsLayer`]: CORS for browser-based MCP clients (R-MCP-7), with tower-http's
//! [`Cors`](tower_http::cors::Cors), from the same allow-list as the
//! [`OriginLayer`](crate::OriginLayer).
//!
//! A page on `http://localhost:6274` (the MCP Inspector) that calls a server on
//! `http://localhost:3000` first sends a preflight `OPTIONS` without a token, then
//! reads each answer only if the answer says its origin may. This stage comes right
//! after the `Origin` check (which has refused foreign origins already): it answers
//! every preflight itself, so none needs a token, and it marks every other answer, the
//! refusals of the stages after it included, so that the page can read the `401`
//! challenge's `WWW-Authenticate` and the `Mcp-Session-Id`.
//!
//! Only allowed origins are named in `Access-Control-Allow-Origin` (the resource's own
//! and those added with [`CorsLayer::allow`], the same list the `Origin` check uses),
//! never `*`, and credentials (cookies) are never allowed: MCP clients send their token
//! in `Authorization`, which the page sets itself. CORS headers the service behind
//! sets itself (a server we did not write may allow `*` or credentials) are taken out.
//! A preflight may ask for the `Mcp-Param-*` headers of the tools behind (SEP-2243):
//! the tools declare them, so the answer allows the ones asked for.
//!
//! A request without `Origin` (every client that is not a browser) skips tower-http's
//! work: its answer only gains `Vary` (and loses the CORS headers of the service
//! behind), so a shared cache never hands a browser an answer made for another origin.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{
    ACCEPT, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_REQUEST_HEADERS, AUTHORIZATION, CONTENT_TYPE,
    HeaderMap, HeaderName, HeaderValue, ORIGIN, VARY, WWW_AUTHENTICATE,
};
use http::request::Parts;
use http::{Method, Request, Response};
use pin_project::pin_project;
use tower::{Layer, Service};
use tower_http::cors::{AllowOrigin, Cors};

use crate::error::ConfigError;
use crate::mcp::{MCP_METHOD, MCP_NAME, MCP_PROTOCOL_VERSION, MCP_SESSION_ID};
use crate::origin::AllowedOrigins;
use crate::resource::ProtectedResource;

const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

/// The request headers an MCP client sends, which a page may send cross-origin.
const REQUEST_HEADERS: [HeaderName; 9] = [
    AUTHORIZATION,
    CONTENT_TYPE,
    ACCEPT,
    MCP_PROTOCOL_VERSION,
    MCP_SESSION_ID,
    MCP_METHOD,
    MCP_NAME,
    LAST_EVENT_ID,
    DPOP,
];

/// The response headers a page may read besides the CORS-safelisted ones.
const EXPOSED_HEADERS: [HeaderName; 4] = [
    WWW_AUTHENTICATE,
    MCP_SESSION_ID,
    MCP_PROTOCOL_VERSION,
    crate::challenge::DPOP_NONCE,
];

/// The DPoP proof header (RFC 9449 §4.1), which browser clients send with a DPoP token.
const DPOP: HeaderName = HeaderName::from_static("dpop");

/// How long a browser may keep a preflight's answer.
const MAX_AGE: Duration = Duration::from_secs(600);

/// The `Vary` of every answer, the one tower-http gives those it marks.
const VARY_VALUE: HeaderValue = HeaderValue::from_static(
    "origin, access-control-request-method, access-control-request-headers",
);

/// A layer that answers CORS preflights and marks answers readable by the pages of
/// allowed origins; see the module docs.
#[derive(Clone, Debug)]
pub struct CorsLayer {
    origins: AllowedOrigins,
    headers: Vec<HeaderName>,
    cors: tower_http::cors::CorsLayer,
    on: bool,
}

impl CorsLayer {
    /// Lets the pages of the resource's own origin read the answers.
    pub fn new(resource: ProtectedResource) -> Self {
        Self::with_origins(AllowedOrigins::new(resource), true)
    }

    /// Does nothing: no preflight is answered, no answer is marked. For a service
    /// with a CORS layer of its own, or one no browser calls.
    pub fn off() -> Self {
        Self::with_origins(
            AllowedOrigins::new(ProtectedResource::per_route(|_| None)),
            false,
        )
    }

    /// Also lets the pages of `origins` (`http://localhost:6274`) read the answers.
    /// Each must be an origin, a scheme and a host with an optional port and nothing
    /// after it; the error says which is not.
    pub fn allow<I, T>(mut self, origins: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        self.origins = self.origins.allow(origins)?;
        Ok(self.configured())
    }

    /// Also lets pages send the request headers `names`; the headers MCP clients send,
    /// `Mcp-Param-*` ones included, are always allowed.
    pub fn allow_headers<I>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = HeaderName>,
    {
        for name in names {
            if !self.headers.contains(&name) {
                self.headers.push(name);
            }
        }
        self.configured()
    }

    /// CORS for the pages of `origins`, on or off.
    pub(crate) fn with_origins(origins: AllowedOrigins, on: bool) -> Self {
        Self {
            origins,
            headers: REQUEST_HEADERS.to_vec(),
            cors: tower_http::cors::CorsLayer::new(),
            on,
        }
        .configured()
    }

    /// `self` with its tower-http layer made from its origins and headers.
    fn configured(mut self) -> Self {
        let origins = self.origins.clone();
        self.cors = tower_http::cors::CorsLayer::new()
            .allow_origin(AllowOrigin::predicate(move |origin, parts| {
                origins.contains(origin, parts)
            }))
            .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
            .allow_headers(self.headers.clone())
            .expose_headers(EXPOSED_HEADERS)
            .max_age(MAX_AGE);
        self
    }
}

impl<S> Layer<S> for CorsLayer {
    type Service = CorsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CorsService {
            inner: self.cors.layer(inner),
            origins: self.origins.clone(),
            on: self.on,
        }
    }
}

/// The service made by [`CorsLayer`].
#[derive(Clone, Debug)]
pub struct CorsService<S> {
    inner: Cors<S>,
    origins: AllowedOrigins,
    on: bool,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for CorsService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = CorsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.get_mut().poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        if !self.on {
            return CorsFuture::Off(self.inner.get_mut().call(req));
        }
        let preflight = req.method() == Method::OPTIONS;
        let origin = req.headers().get(ORIGIN);
        if !preflight && origin.is_none() {
            return CorsFuture::NoOrigin(self.inner.get_mut().call(req));
        }
        let (parts, body) = req.into_parts();
        let allowed = origin_allowed(&self.origins, &parts);
        let params = match (preflight, allowed) {
            (true, true) => requested_params(&parts.headers),
            _ => None,
        };
        // Only browsers pay for the box (the rest of the stack's future stays small).
        CorsFuture::Cors(Box::pin(Marked {
            future: self.inner.call(Request::from_parts(parts, body)),
            allowed,
            preflight,
            params,
        }))
    }
}

/// Whether the request's `Origin` (the first one) is allowed.
fn origin_allowed(origins: &AllowedOrigins, parts: &Parts) -> bool {
    parts
        .headers
        .get(ORIGIN)
        .is_some_and(|origin| origins.contains(origin, parts))
}

/// The `Mcp-Param-*` names a preflight asks to send, for the answer to allow: the
/// tools behind declare them (`x-mcp-header` in their schemas), which this layer
/// cannot know in advance.
fn requested_params(headers: &HeaderMap) -> Option<HeaderValue> {
    let asked = headers.get(ACCESS_CONTROL_REQUEST_HEADERS)?.to_str().ok()?;
    let params: Vec<&str> = asked
        .split(',')
        .take(MAX_PARAMS)
        .map(str::trim)
        .filter(|name| {
            name.len() > PARAM_PREFIX.len()
                && name
                    .get(..PARAM_PREFIX.len())
                    .is_some_and(|p| p.eq_ignore_ascii_case(PARAM_PREFIX))
                && HeaderName::from_bytes(name.as_bytes()).is_ok()
        })
        .collect();
    if params.is_empty() {
        return None;
    }
    HeaderValue::from_str(&params.join(",").to_ascii_lowercase()).ok()
}

/// The most `Mcp-Param-*` names of one preflight allowed back.
const MAX_PARAMS: usize = 64;

/// The prefix of the headers that mirror tool arguments (SEP-2243).
const PARAM_PREFIX: &str = "mcp-param-";

/// Takes out of `headers` the CORS headers of the service behind, which this layer
/// did not decide (a server we did not write may allow `*`, or credentials).
fn strip_foreign(headers: &mut HeaderMap, keep: &[HeaderName]) {
    let foreign: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("access-control-") && !keep.contains(name))
        .cloned()
        .collect();
    for name in foreign {
        headers.remove(name);
    }
}

/// The response future of a [`CorsService`].
#[pin_project(project = CorsFutureProj)]
pub enum CorsFuture<F> {
    /// CORS is off: the inner service's future.
    Off(#[pin] F),
    /// A request without `Origin`: the inner service's answer, without CORS headers
    /// of its own, gains `Vary`.
    NoOrigin(#[pin] F),
    /// A preflight or a browser's request, in tower-http's hands.
    Cors(Pin<Box<Marked<F>>>),
}

/// tower-http's future, and what its answer is corrected with.
#[doc(hidden)]
#[pin_project]
pub struct Marked<F> {
    #[pin]
    future: tower_http::cors::ResponseFuture<F>,
    allowed: bool,
    preflight: bool,
    params: Option<HeaderValue>,
}

impl<F> std::fmt::Debug for CorsFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Off(_) => "CorsFuture::Off",
            Self::NoOrigin(_) => "CorsFuture::NoOrigin",
            Self::Cors(_) => "CorsFuture::Cors",
        })
    }
}

impl<F, B, E> Future for CorsFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Default,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            CorsFutureProj::Off(future) => future.poll(cx),
            CorsFutureProj::NoOrigin(future) => future.poll(cx).map_ok(|mut response| {
                strip_foreign(response.headers_mut(), &[]);
                response.headers_mut().append(VARY, VARY_VALUE);
                response
            }),
            CorsFutureProj::Cors(marked) => {
                let marked = marked.as_mut().project();
                let (allowed, preflight) = (*marked.allowed, *marked.preflight);
                let params = marked.params.take();
                marked.future.poll(cx).map_ok(|mut response| {
                    mark(response.headers_mut(), allowed, preflight, params);
                    if preflight {
                        response
                            .extensions_mut()
                            .insert(crate::audit::Served::Preflight);
                    }
                    response
                })
            }
        }
    }
}

/// Corrects tower-http's answer: a foreign origin keeps no CORS header at all; an
/// allowed one keeps only what this layer decides (never credentials), and a
/// preflight's allowed headers gain the `Mcp-Param-*` names it asked for.
fn mark(headers: &mut HeaderMap, allowed: bool, preflight: bool, params: Option<HeaderValue>) {
    match (allowed, preflight) {
        (false, _) => strip_foreign(headers, &[]),
        (true, true) => {
            if let Some(params) = params {
                let joined = headers
                    .get(ACCESS_CONTROL_ALLOW_HEADERS)
                    .map(|listed| [listed.as_bytes(), b",", params.as_bytes()].concat());
                if let Some(value) = joined.and_then(|v| HeaderValue::from_bytes(&v).ok()) {
                    headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, value);
                }
            }
        }
        (true, false) => strip_foreign(
            headers,
            &[ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS],
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tower::ServiceExt;

    use super::*;

    /// An inner service answering with `status` and `headers`.
    fn answering(
        status: http::StatusCode,
        headers: &'static [(&'static str, &'static str)],
    ) -> impl Service<
        Request<()>,
        Response = Response<String>,
        Error = Infallible,
        Future = std::future::Ready<Result<Response<String>, Infallible>>,
    > + Clone {
        tower::service_fn(move |_: Request<()>| {
            let mut response = Response::new(String::new());
            *response.status_mut() = status;
            for (name, value) in headers {
                response
                    .headers_mut()
                    .insert(*name, HeaderValue::from_static(value));
            }
            std::future::ready(Ok(response))
        })
    }

    /// Answers 401 with a challenge, as the stages after this one do without a token.
    fn challenging() -> impl Service<
        Request<()>,
        Response = Response<String>,
        Error = Infallible,
        Future = std::future::Ready<Result<Response<String>, Infallible>>,
    > + Clone {
        answering(
            http::StatusCode::UNAUTHORIZED,
            &[("www-authenticate", "Bearer")],
        )
    }

    fn layer() -> CorsLayer {
        CorsLayer::new(ProtectedResource::new("https://mcp.example.com/mcp"))
    }

    async fn send(layer: &CorsLayer, request: Request<()>) -> Response<String> {
        match layer.layer(challenging()).oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }

    fn request(method: Method, origin: Option<&str>) -> Request<()> {
        let mut request = Request::builder()
            .method(method)
            .uri("https://mcp.example.com/mcp");
        if let Some(origin) = origin {
            request = request.header(ORIGIN, origin);
        }
        request
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization, mcp-name")
            .body(())
            .unwrap_or_default()
    }

    fn header(response: &Response<String>, name: &str) -> String {
        response
            .headers()
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join(", ")
    }

    #[tokio::test]
    async fn a_preflight_of_an_allowed_origin_is_answered_without_reaching_the_service() {
        let layer = layer()
            .allow(["http://localhost:6274"])
            .unwrap_or_else(|_| layer());
        let response = send(
            &layer,
            request(Method::OPTIONS, Some("http://localhost:6274")),
        )
        .await;
        assert_eq!(response.status(), http::StatusCode::OK);
        assert_eq!(
            header(&response, "access-control-allow-origin"),
            "http://localhost:6274"
        );
        let allowed = header(&response, "access-control-allow-headers");
        for name in [
            "authorization",
            "mcp-name",
            "mcp-session-id",
            "last-event-id",
        ] {
            assert!(allowed.contains(name), "{allowed}");
        }
        assert!(header(&response, "access-control-allow-credentials").is_empty());
        assert!(header(&response, "www-authenticate").is_empty());
    }

    #[tokio::test]
    async fn an_allowed_page_can_read_the_challenge_of_a_refusal() {
        let response = send(
            &layer(),
            request(Method::POST, Some("https://mcp.example.com")),
        )
        .await;
        assert_eq!(response.status(), http::StatusCode::UNAUTHORIZED);
        assert_eq!(
            header(&response, "access-control-allow-origin"),
            "https://mcp.example.com"
        );
        let exposed = header(&response, "access-control-expose-headers");
        assert!(exposed.contains("www-authenticate"), "{exposed}");
        assert!(exposed.contains("mcp-session-id"), "{exposed}");
    }

    #[tokio::test]
    async fn a_foreign_origin_is_never_named_and_nothing_is_a_wildcard() {
        for method in [Method::OPTIONS, Method::POST] {
            let response = send(&layer(), request(method, Some("http://evil.example"))).await;
            assert!(header(&response, "access-control-allow-origin").is_empty());
        }
    }

    #[tokio::test]
    async fn without_origin_the_answer_only_gains_vary() {
        let response = send(&layer(), request(Method::POST, None)).await;
        assert_eq!(response.status(), http::StatusCode::UNAUTHORIZED);
        assert!(header(&response, "access-control-allow-origin").is_empty());
        assert!(header(&response, "vary").contains("origin"));
    }

    #[tokio::test]
    async fn off_lets_preflights_through_to_the_service() {
        let off = CorsLayer::off();
        let response = send(
            &off,
            request(Method::OPTIONS, Some("https://mcp.example.com")),
        )
        .await;
        assert_eq!(response.status(), http::StatusCode::UNAUTHORIZED);
        assert!(header(&response, "access-control-allow-origin").is_empty());
    }

    #[tokio::test]
    async fn cors_headers_of_the_service_behind_are_taken_out() {
        for origin in [
            None,
            Some("http://evil.example"),
            Some("https://mcp.example.com"),
        ] {
            // Answers as a server we did not write might: CORS for all, credentials.
            let permissive = answering(
                http::StatusCode::OK,
                &[
                    ("access-control-allow-origin", "*"),
                    ("access-control-allow-credentials", "true"),
                ],
            );
            let response = match layer()
                .layer(permissive)
                .oneshot(request(Method::POST, origin))
                .await
            {
                Ok(response) => response,
                Err(never) => match never {},
            };
            assert_eq!(
                header(&response, "access-control-allow-credentials"),
                "",
                "{origin:?}"
            );
            let allowed = header(&response, "access-control-allow-origin");
            match origin {
                Some("https://mcp.example.com") => assert_eq!(allowed, "https://mcp.example.com"),
                _ => assert_eq!(allowed, "", "{origin:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_preflight_may_ask_for_the_mcp_param_headers_of_the_tools_behind() {
        let mut preflight = request(Method::OPTIONS, Some("https://mcp.example.com"));
        preflight.headers_mut().insert(
            "access-control-request-headers",
            HeaderValue::from_static("authorization, Mcp-Param-Region, x-other"),
        );
        let response = send(&layer(), preflight).await;
        let allowed = header(&response, "access-control-allow-headers");
        assert!(allowed.contains("mcp-param-region"), "{allowed}");
        assert!(!allowed.contains("x-other"), "{allowed}");
        // A foreign origin's preflight gets no CORS header at all.
        let response = send(
            &layer(),
            request(Method::OPTIONS, Some("http://evil.example")),
        )
        .await;
        assert!(
            response
                .headers()
                .keys()
                .all(|k| !k.as_str().starts_with("access-control-")),
            "{:?}",
            response.headers()
        );
    }
}
