//! [`Forward`]: the innermost service, which sends a request the stack let through to
//! its upstream and streams the answer back. Bodies go both ways frame by frame (SSE
//! events as the upstream writes them), with back-pressure: the upstream's socket is
//! read only as fast as the client takes the answer.
//!
//! What is changed on the way (RFC 9110 §7.6.1): hop-by-hop headers (`Connection`
//! and the fields it names, `Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer`,
//! `Transfer-Encoding`, `Upgrade`, `Proxy-Authenticate`, `Proxy-Authorization`) go
//! in neither direction; `Host` is the upstream's; `Forwarded`, every `X-Forwarded-*`
//! and `X-Real-IP` from the client are replaced by the gateway's own
//! `X-Forwarded-For`/`-Proto`/`-Host`, and `Via` names the gateway (§7.6.3); the
//! client's `Authorization` and `DPoP` never go on (the upstream gets its own
//! credentials, see [`Credentials`]). Everything else passes, the MCP headers
//! (`Mcp-Session-Id`, `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`,
//! `Last-Event-ID`) and the content headers included.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt as _;
use http_body_util::combinators::UnsyncBoxBody;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// The error type of bodies here.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of requests to upstreams and of the gateway's answers.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// The client's address, put into the request's extensions by the accept loop.
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub SocketAddr);

/// The gateway's own origin as clients see it (for `X-Forwarded-Proto`/`-Host`).
#[derive(Clone, Debug)]
pub(crate) struct PublicOrigin {
    pub(crate) proto: HeaderValue,
    pub(crate) host: Option<HeaderValue>,
}

/// What the upstream receives in place of the client's credentials.
#[derive(Clone, Debug)]
pub(crate) enum Credentials {
    /// Nothing.
    None,
    /// This header.
    Header(HeaderName, HeaderValue),
    /// What the exchange layer in front set (`Authorization: Bearer <exchanged>`).
    Exchanged,
}

/// This gateway in `Via` (RFC 9110 §7.6.3).
const VIA: &str = "1.1 mcp-gatekeeper-proxy";

/// The hop-by-hop fields (RFC 9110 §7.6.1, and the single-hop proxy fields).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
];

/// Removes the hop-by-hop fields, those `Connection` names first.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Sends requests to one upstream. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Forward {
    client: Client<HttpConnector, ProxyBody>,
    /// The upstream's scheme and authority, e.g. `http://127.0.0.1:9000`.
    authority: String,
    /// The upstream's path (its query is the client's).
    path: String,
    credentials: Credentials,
    first_byte: Option<Duration>,
    origin: PublicOrigin,
}

/// Timeouts of the connections to upstreams.
pub(crate) fn client(connect: Duration) -> Client<HttpConnector, ProxyBody> {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(connect));
    // Small SSE events must not wait for Nagle's algorithm.
    connector.set_nodelay(true);
    // Idle connections are dropped before the upstream would close them (Node's and
    // uvicorn's keep-alive is 5 s): a request sent on one the upstream is closing
    // would fail with 502.
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(4))
        .build(connector)
}

impl Forward {
    pub(crate) fn new(
        client: Client<HttpConnector, ProxyBody>,
        upstream: &Uri,
        credentials: Credentials,
        first_byte: Option<Duration>,
        origin: PublicOrigin,
    ) -> Self {
        let authority = upstream.authority().map_or("", |a| a.as_str());
        Self {
            client,
            authority: format!("http://{authority}"),
            path: upstream.path().to_owned(),
            credentials,
            first_byte,
            origin,
        }
    }

    /// The request as the upstream gets it.
    fn prepare<B>(&self, request: Request<B>) -> Result<Request<ProxyBody>, StatusCode>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let (mut parts, body) = request.into_parts();
        let query = parts
            .uri
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        parts.uri = format!("{}{}{query}", self.authority, self.path)
            .parse()
            .map_err(|_| StatusCode::BAD_REQUEST)?;
        // An HTTP/1.1 connection to the upstream, whatever the client spoke.
        parts.version = Version::HTTP_11;
        let peer = parts.extensions.get::<PeerAddr>().copied();
        let headers = &mut parts.headers;
        strip_hop_by_hop(headers);
        // The client's Host is the gateway's: the upstream's own comes from the URI
        // (SDK servers refuse a foreign Host: TypeScript 403, Python 421).
        headers.remove(header::HOST);
        // What the client says about the way it came is not the gateway's to vouch for.
        let forged: Vec<HeaderName> = headers
            .keys()
            .filter(|name| {
                let name = name.as_str();
                name.starts_with("x-forwarded-") || name == "forwarded" || name == "x-real-ip"
            })
            .cloned()
            .collect();
        for name in forged {
            headers.remove(name);
        }
        headers.append(header::VIA, HeaderValue::from_static(VIA));
        if let Some(PeerAddr(addr)) = peer
            && let Ok(value) = HeaderValue::from_str(&addr.ip().to_string())
        {
            headers.insert("x-forwarded-for", value);
        }
        headers.insert("x-forwarded-proto", self.origin.proto.clone());
        if let Some(host) = &self.origin.host {
            headers.insert("x-forwarded-host", host.clone());
        }
        match &self.credentials {
            Credentials::Exchanged => {}
            Credentials::None => {
                headers.remove(header::AUTHORIZATION);
                headers.remove("dpop");
            }
            Credentials::Header(name, value) => {
                headers.remove(header::AUTHORIZATION);
                headers.remove("dpop");
                headers.insert(name.clone(), value.clone());
            }
        }
        Ok(Request::from_parts(
            parts,
            body.map_err(Into::into).boxed_unsync(),
        ))
    }

    /// Forwards `request`; the upstream's answer, or the gateway's 502/504.
    pub(crate) async fn send<B>(self, request: Request<B>) -> Response<ProxyBody>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let request = match self.prepare(request) {
            Ok(request) => request,
            Err(status) => return error(status, "the request URI cannot be forwarded"),
        };
        let sent = self.client.request(request);
        let answer = match self.first_byte {
            Some(limit) => match tokio::time::timeout(limit, sent).await {
                Ok(answer) => answer,
                Err(_) => {
                    tracing::warn!(upstream = %self.authority, "the upstream sent no response head within {limit:?}");
                    return error(
                        StatusCode::GATEWAY_TIMEOUT,
                        "the upstream MCP server did not answer in time",
                    );
                }
            },
            None => sent.await,
        };
        match answer {
            Ok(response) => self.answer(response),
            Err(failure) => {
                let timed_out = is_connect_timeout(&failure);
                tracing::warn!(upstream = %self.authority, "the upstream could not be reached: {}", describe(&failure));
                if timed_out {
                    error(
                        StatusCode::GATEWAY_TIMEOUT,
                        "the upstream MCP server could not be reached in time",
                    )
                } else {
                    error(
                        StatusCode::BAD_GATEWAY,
                        "the upstream MCP server could not be reached",
                    )
                }
            }
        }
    }

    /// The upstream's answer as the client gets it.
    fn answer(&self, response: Response<hyper::body::Incoming>) -> Response<ProxyBody> {
        let (mut parts, body) = response.into_parts();
        // The upstream refused the gateway's own credentials: its challenge names its
        // own metadata, which would send the client to the wrong place.
        if matches!(
            parts.status,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ) && parts.headers.contains_key(header::WWW_AUTHENTICATE)
        {
            tracing::warn!(
                upstream = %self.authority,
                status = parts.status.as_u16(),
                "the upstream refused the gateway's credentials for it; check [servers.*.credentials]"
            );
            return error(
                StatusCode::BAD_GATEWAY,
                "the upstream MCP server refused the gateway's credentials",
            );
        }
        strip_hop_by_hop(&mut parts.headers);
        Response::from_parts(parts, body.map_err(Into::into).boxed_unsync())
    }
}

/// Whether the connection attempt timed out.
fn is_connect_timeout(failure: &hyper_util::client::legacy::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(failure);
    while let Some(error) = source {
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        source = error.source();
    }
    false
}

/// An error and its causes, on one line.
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The gateway's own answer: `status` with a JSON-RPC error body (code -32603, or
/// -32600 for a 4xx), naming the cause but nothing of the upstream's internals.
pub(crate) fn error(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let code = if status.is_client_error() {
        -32600
    } else {
        -32603
    };
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": { "code": code, "message": message },
    });
    let mut response = Response::new(full(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A whole body.
pub(crate) fn full(text: impl Into<Bytes>) -> ProxyBody {
    http_body_util::Full::new(text.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

impl<B> tower::Service<Request<B>> for Forward
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<ProxyBody>;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.send(request).await) })
    }
}
