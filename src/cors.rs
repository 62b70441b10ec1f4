//! [`CorsLayer`]: CORS for browser-based MCP clients (R-MCP-7), with tower-http's
//! [`Cors`](tower_http::cors::Cors), from the same allow-list as the
//! [`OriginLayer`](crate::OriginLayer).
//!
//! A page on `http://localhost:6274` (the MCP Inspector) that calls a server on
//! `http://localhost:3000` first sends a preflight `OPTIONS` without a token, then
//! reads each answer only if the answer says its origin may. This stage is the
//! outermost: it answers every preflight itself, so none needs a token, and it marks
//! every other answer, the refusals of the stages after it included, so that the page
//! can read the `401` challenge's `WWW-Authenticate` and the `Mcp-Session-Id`.
//!
//! Only allowed origins are named in `Access-Control-Allow-Origin` (the resource's own
//! and those added with [`CorsLayer::allow`], the same list the `Origin` check uses),
//! never `*`, and credentials (cookies) are never allowed: MCP clients send their token
//! in `Authorization`, which the page sets itself.
//!
//! A request without `Origin` (every client that is not a browser) skips tower-http's
//! work: its answer only gains `Vary`, so a shared cache never hands a browser an
//! answer made for another origin.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{
    ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue, ORIGIN, VARY, WWW_AUTHENTICATE,
};
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
const REQUEST_HEADERS: [HeaderName; 8] = [
    AUTHORIZATION,
    CONTENT_TYPE,
    ACCEPT,
    MCP_PROTOCOL_VERSION,
    MCP_SESSION_ID,
    MCP_METHOD,
    MCP_NAME,
    LAST_EVENT_ID,
];

/// The response headers a page may read besides the CORS-safelisted ones.
const EXPOSED_HEADERS: [HeaderName; 3] = [WWW_AUTHENTICATE, MCP_SESSION_ID, MCP_PROTOCOL_VERSION];

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
    pub fn off(resource: ProtectedResource) -> Self {
        Self::with_origins(AllowedOrigins::new(resource), false)
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

    /// Also lets pages send the request headers `names` (an `Mcp-Param-*` header a
    /// rule reads, say); the headers MCP clients send are always allowed.
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
            on: self.on,
        }
    }
}

/// The service made by [`CorsLayer`].
#[derive(Clone, Debug)]
pub struct CorsService<S> {
    inner: Cors<S>,
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
        if req.method() != Method::OPTIONS && !req.headers().contains_key(ORIGIN) {
            return CorsFuture::NoOrigin(self.inner.get_mut().call(req));
        }
        // Only browsers pay for the box (the rest of the stack's future stays small).
        CorsFuture::Cors(Box::pin(self.inner.call(req)))
    }
}

/// The response future of a [`CorsService`].
#[pin_project(project = CorsFutureProj)]
pub enum CorsFuture<F> {
    /// CORS is off: the inner service's future.
    Off(#[pin] F),
    /// A request without `Origin`: the inner service's answer gains `Vary`.
    NoOrigin(#[pin] F),
    /// A preflight or a browser's request, in tower-http's hands.
    Cors(Pin<Box<tower_http::cors::ResponseFuture<F>>>),
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
                response.headers_mut().append(VARY, VARY_VALUE);
                response
            }),
            CorsFutureProj::Cors(future) => future.as_mut().poll(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tower::ServiceExt;

    use super::*;

    /// Answers 401 with a challenge, as the stages after this one do without a token.
    #[derive(Clone)]
    struct Challenging;

    impl<B> Service<Request<B>> for Challenging {
        type Response = Response<String>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Response<String>, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<B>) -> Self::Future {
            let mut response = Response::new(String::new());
            *response.status_mut() = http::StatusCode::UNAUTHORIZED;
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            std::future::ready(Ok(response))
        }
    }

    fn layer() -> CorsLayer {
        CorsLayer::new(ProtectedResource::new("https://mcp.example.com/mcp"))
    }

    async fn send(layer: &CorsLayer, request: Request<()>) -> Response<String> {
        match layer.layer(Challenging).oneshot(request).await {
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
        let off = CorsLayer::off(ProtectedResource::new("https://mcp.example.com/mcp"));
        let response = send(
            &off,
            request(Method::OPTIONS, Some("https://mcp.example.com")),
        )
        .await;
        assert_eq!(response.status(), http::StatusCode::UNAUTHORIZED);
        assert!(header(&response, "access-control-allow-origin").is_empty());
    }
}
