//! The gateway: routes (`/servers/{id}/mcp` and its metadata to that server's stack,
//! `/healthz`, `/readyz`), the accept loop, and the graceful shutdown.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use mcp_gatekeeper::config::GatewayConfig;
use tower::util::BoxCloneSyncService;
use tower::{Layer as _, ServiceExt as _};

use crate::forward::{self, Credentials, Forward, PeerAddr, ProxyBody, PublicOrigin};
use crate::ready::Readiness;

/// One server's whole stack.
type Route = BoxCloneSyncService<Request<Incoming>, Response<ProxyBody>, Infallible>;

/// A built gateway, ready to serve. Cheap to clone.
#[derive(Clone)]
pub struct Gateway(Arc<Inner>);

struct Inner {
    /// Path → the stack of the server it belongs to.
    routes: HashMap<String, Route>,
    readiness: Readiness,
    grace: Duration,
}

impl Gateway {
    /// Builds every server's stack from a configuration that
    /// [`validate`](GatewayConfig::validate)d.
    pub fn new(config: &GatewayConfig) -> Result<Self, mcp_gatekeeper::ConfigError> {
        let settings = &config.proxy;
        let client = forward::client(Duration::from_secs(settings.connect_timeout_seconds));
        let first_byte = match settings.first_byte_timeout_seconds {
            0 => None,
            seconds => Some(Duration::from_secs(seconds)),
        };
        let public = settings
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", settings.listen));
        let origin = public_origin(&public);
        let mut routes = HashMap::new();
        for id in config.servers.keys() {
            let upstream = config.upstream_uri(id)?;
            let gatekeeper = config.resource_server(id)?;
            let exchange = config.exchange_layer(id)?;
            let credentials = match (&exchange, config.upstream_header(id)?) {
                (Some(_), _) => Credentials::Exchanged,
                (None, Some((name, value))) => Credentials::Header(name, value),
                (None, None) => Credentials::None,
            };
            let forward = Forward::new(
                client.clone(),
                &upstream,
                credentials,
                first_byte,
                origin.clone(),
            );
            let route: Route = match exchange {
                Some(exchange) => box_route(gatekeeper.layer().layer(exchange.layer(forward))),
                None => box_route(gatekeeper.layer().layer(forward)),
            };
            for path in config.route_paths(id)? {
                routes.insert(path, route.clone());
            }
        }
        Ok(Self(Arc::new(Inner {
            routes,
            readiness: Readiness::new(config),
            grace: Duration::from_secs(settings.shutdown_grace_seconds),
        })))
    }

    /// Answers one request.
    pub async fn handle(&self, request: Request<Incoming>) -> Response<ProxyBody> {
        let path = request.uri().path();
        if let Some(route) = self.0.routes.get(path) {
            return match route.clone().oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
        }
        match (request.method(), path) {
            (&Method::GET | &Method::HEAD, "/healthz") => {
                json(StatusCode::OK, r#"{"status":"ok"}"#)
            }
            (&Method::GET | &Method::HEAD, "/readyz") => {
                let (ready, report) = self.0.readiness.check().await;
                let status = if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                json(status, report.to_string())
            }
            _ => forward::error(
                StatusCode::NOT_FOUND,
                "no MCP server here: the servers are at /servers/{id}/mcp",
            ),
        }
    }

    /// Serves connections from `listener` until `shutdown` completes; then stops
    /// accepting and lets open requests (SSE streams included) finish within the
    /// grace period, after which the rest are cut.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(30));
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(accepted) => accepted,
                        Err(error) => {
                            // Out of file descriptors, say: wait a little, go on.
                            tracing::warn!("accept failed: {error}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let connection = http.serve_connection(TokioIo::new(stream), connection_service(self.clone(), peer));
                    let connection = graceful.watch(connection);
                    tokio::spawn(async move {
                        if let Err(error) = connection.await {
                            tracing::debug!(%peer, "connection ended: {error}");
                        }
                    });
                }
                () = &mut shutdown => break,
            }
        }
        drop(listener);
        tracing::info!(
            "shutting down: no new connections; open requests have {:?}",
            self.0.grace
        );
        match tokio::time::timeout(self.0.grace, graceful.shutdown()).await {
            Ok(()) => tracing::info!("every connection closed"),
            Err(_) => tracing::warn!("the grace period is over; open streams are cut"),
        }
    }
}

/// The hyper service of one connection from `peer`.
fn connection_service(
    gateway: Gateway,
    peer: SocketAddr,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<ProxyBody>,
    Error = Infallible,
    Future = impl std::future::Future<Output = Result<Response<ProxyBody>, Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |mut request: Request<Incoming>| {
        let gateway = gateway.clone();
        request.extensions_mut().insert(PeerAddr(peer));
        async move { Ok::<_, Infallible>(gateway.handle(request).await) }
    })
}

/// A stack as a [`Route`].
fn box_route<S, B>(service: S) -> Route
where
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<forward::BoxError>,
{
    BoxCloneSyncService::new(service.map_response(|response: Response<B>| {
        response.map(|body| body.map_err(Into::into).boxed_unsync())
    }))
}

/// `X-Forwarded-Proto`/`-Host` of the public URL.
fn public_origin(public: &str) -> PublicOrigin {
    let (scheme, rest) = public.split_once("://").unwrap_or(("http", public));
    let host = rest.split('/').next().unwrap_or_default();
    PublicOrigin {
        proto: http::HeaderValue::from_str(scheme)
            .unwrap_or(http::HeaderValue::from_static("http")),
        host: http::HeaderValue::from_str(host).ok(),
    }
}

/// A JSON answer.
fn json(status: StatusCode, body: impl Into<bytes::Bytes>) -> Response<ProxyBody> {
    let mut response = Response::new(forward::full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}
