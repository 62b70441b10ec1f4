//! `[proxy] metrics`: the library's metrics ([`mcp_gatekeeper::metrics`]) recorded by
//! the Prometheus exporter's recorder and served at `GET /metrics` on an address of
//! their own, away from the clients' listener.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper_util::rt::{TokioIo, TokioTimer};
use mcp_gatekeeper::metrics::REMOTE_CALL_BUCKETS;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// How often the exporter's histograms and idle series are maintained.
const UPKEEP: Duration = Duration::from_secs(5);

/// Installs the recorder (once per process), turns the library's metrics on, and
/// serves them on `listener` until the process ends.
pub fn serve(listener: tokio::net::TcpListener) -> Result<(), String> {
    let handle = PrometheusBuilder::new()
        .set_buckets(REMOTE_CALL_BUCKETS)
        .and_then(PrometheusBuilder::install_recorder)
        .map_err(|error| format!("the metrics recorder: {error}"))?;
    mcp_gatekeeper::metrics::enable();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(UPKEEP).await;
            upkeep.run_upkeep();
        }
    });
    tokio::spawn(accept(listener, handle));
    Ok(())
}

async fn accept(listener: tokio::net::TcpListener, handle: PrometheusHandle) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!("metrics: accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let handle = handle.clone();
        let service = hyper::service::service_fn(move |request| {
            std::future::ready(Ok::<_, Infallible>(answer(&request, &handle)))
        });
        let connection = http.serve_connection(TokioIo::new(stream), service);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!("metrics: connection ended: {error}");
            }
        });
    }
}

/// `GET /metrics`: the text exposition; anything else `404` or `405`. A `Host` that is
/// a name other than `localhost` is refused (`421`): a page that rebinds a DNS name to
/// this address cannot read the metrics.
fn answer<B>(request: &Request<B>, handle: &PrometheusHandle) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (request.method(), request.uri().path()) {
        _ if !addressed_by_ip(request) => {
            (StatusCode::MISDIRECTED_REQUEST, "text/plain", Bytes::new())
        }
        (&Method::GET, "/metrics") => (
            StatusCode::OK,
            "text/plain; version=0.0.4",
            Bytes::from(handle.render()),
        ),
        (_, "/metrics") => (StatusCode::METHOD_NOT_ALLOWED, "text/plain", Bytes::new()),
        _ => (StatusCode::NOT_FOUND, "text/plain", Bytes::new()),
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    if let Ok(value) = header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

/// Whether the request's `Host` (if any) is an IP address or `localhost`, with any port.
fn addressed_by_ip<B>(request: &Request<B>) -> bool {
    let Some(host) = request.headers().get(header::HOST) else {
        return true;
    };
    let Ok(host) = host.to_str() else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}
