//! The RFC 9728 protected resource metadata document and the services that serve it
//! (R-PRM-1..3): at the path-inserted well-known URL of each resource
//! (`/mcp` → `/.well-known/oauth-protected-resource/mcp`), optionally also at the
//! root form, with `resource` exactly the canonical resource URI.
//!
//! [`MetadataLayer`] answers those paths in front of a service (so one layer on an
//! axum router covers both); [`MetadataEndpoint`] serves them alone.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tower::Service;

use crate::body::ResponseBody;
use crate::future::{Rejection, ResponseFuture};
use crate::resource::{METADATA_WELL_KNOWN, ProtectedResource};
use crate::uri;

const PREFIX: &str = "/.well-known/oauth-protected-resource";

/// The metadata document for `resource_uri` (R-PRM-2).
pub fn document(resource: &ProtectedResource, resource_uri: &str) -> Value {
    let mut doc = json!({
        "resource": resource_uri,
        "authorization_servers": resource.authorization_servers(),
        "bearer_methods_supported": ["header"],
    });
    if !resource.supported_scopes().is_empty() {
        doc["scopes_supported"] = json!(resource.supported_scopes());
    }
    if let Some(name) = resource.name() {
        doc["resource_name"] = json!(name);
    }
    // RFC 9728 §2 (the members RFC 9449 and RFC 8705 define), only when in use.
    if !resource.dpop_algorithms().is_empty() {
        doc["dpop_signing_alg_values_supported"] = json!(resource.dpop_algorithms());
        doc["dpop_bound_access_tokens_required"] = json!(resource.dpop_required());
    }
    if resource.accepts_certificate_bound_tokens() {
        doc["tls_client_certificate_bound_access_tokens"] = json!(true);
    }
    doc
}

/// Per route: what the route function says of the path `rest` a metadata document
/// is for.
fn route_resource(resource: &ProtectedResource, rest: &str, parts: &Parts) -> Option<String> {
    let mut route = Request::new(());
    *route.uri_mut() = if rest.is_empty() { "/" } else { rest }.parse().ok()?;
    *route.headers_mut() = parts.headers.clone();
    resource
        .resource_for(&route.into_parts().0)
        .map(std::borrow::Cow::into_owned)
}

/// The resource whose metadata document `parts` asks for, when it asks for one of a
/// per-route resource (the `Origin` check allows that resource's own origin).
pub(crate) fn described_resource(resource: &ProtectedResource, parts: &Parts) -> Option<String> {
    let rest = parts.uri.path().strip_prefix(PREFIX)?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    route_resource(resource, rest.trim_end_matches('/'), parts)
}

/// Answers a request for a metadata path; `None` when `parts` is not one.
fn answer(
    resource: &ProtectedResource,
    serve_root: bool,
    parts: &Parts,
) -> Option<Response<Bytes>> {
    let rest = parts.uri.path().strip_prefix(PREFIX)?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    let rest = rest.trim_end_matches('/');
    let resource_uri = match resource.fixed_uri() {
        Some(uri) if uri::path_of(uri) == rest || (serve_root && rest.is_empty()) => uri.to_owned(),
        Some(_) => return Some(plain(StatusCode::NOT_FOUND)),
        None => match route_resource(resource, rest, parts) {
            Some(uri) => uri,
            None => return Some(plain(StatusCode::NOT_FOUND)),
        },
    };
    let response = match parts.method {
        Method::GET | Method::HEAD => {
            let body = document(resource, &resource_uri).to_string();
            let mut response = Response::new(Bytes::from(body));
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            headers.insert(
                CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            );
            response
        }
        // CORS (preflights included) is the CorsLayer's, in front of this one.
        _ => {
            let mut response = plain(StatusCode::METHOD_NOT_ALLOWED);
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            response
        }
    };
    Some(response)
}

fn plain(status: StatusCode) -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = status;
    response
}

/// The well-known metadata URL path for a resource URI, e.g.
/// `/.well-known/oauth-protected-resource/mcp`.
pub fn metadata_path(resource_uri: &str) -> String {
    format!(
        "/.well-known/{METADATA_WELL_KNOWN}{}",
        uri::path_of(resource_uri)
    )
}

/// A layer that answers metadata requests itself and passes everything else on.
#[derive(Clone, Debug)]
pub struct MetadataLayer {
    resource: ProtectedResource,
    serve_root: bool,
}

impl MetadataLayer {
    /// Serves the metadata of `resource`.
    pub fn new(resource: ProtectedResource) -> Self {
        Self {
            resource,
            serve_root: false,
        }
    }

    /// Whether the document is also served at `/.well-known/oauth-protected-resource`
    /// (the root form), for clients that look only there (default `false`).
    pub fn serve_root(mut self, on: bool) -> Self {
        self.serve_root = on;
        self
    }
}

crate::pipeline::layer_service!(MetadataLayer => MetadataService);

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for MetadataService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ReqBody: http_body::Body,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let (parts, body) = req.into_parts();
        match answer(&self.layer.resource, self.layer.serve_root, &parts) {
            Some(mut response) => {
                response
                    .extensions_mut()
                    .insert(crate::audit::Served::Metadata);
                ResponseFuture::rejected(Rejection::new(response.map(ResponseBody::full), body))
            }
            None => ResponseFuture::inner(self.inner.call(Request::from_parts(parts, body))),
        }
    }
}

/// Serves only the metadata document (`404` for any other path).
#[derive(Clone, Debug)]
pub struct MetadataEndpoint {
    layer: MetadataLayer,
}

impl MetadataEndpoint {
    /// Serves the metadata of `resource`.
    pub fn new(layer: MetadataLayer) -> Self {
        Self { layer }
    }
}

impl<B> Service<Request<B>> for MetadataEndpoint {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (parts, _) = req.into_parts();
        let response = answer(&self.layer.resource, self.layer.serve_root, &parts)
            .unwrap_or_else(|| plain(StatusCode::NOT_FOUND));
        ready(Ok(
            response.map(|b| String::from_utf8_lossy(&b).into_owned())
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(
        resource: &ProtectedResource,
        serve_root: bool,
        path: &str,
    ) -> Option<(StatusCode, Value)> {
        let parts = Request::get(path).body(()).ok()?.into_parts().0;
        let response = answer(resource, serve_root, &parts)?;
        let body = serde_json::from_slice(response.body()).unwrap_or(Value::Null);
        Some((response.status(), body))
    }

    #[test]
    fn document_is_served_at_the_path_inserted_url() {
        // R-PRM-1, R-PRM-2
        let resource = ProtectedResource::new("https://mcp.example.com/mcp")
            .authorization_server("https://idp.example.com")
            .scopes_supported(["mcp:read"]);
        let (status, doc) = get(
            &resource,
            false,
            "/.well-known/oauth-protected-resource/mcp",
        )
        .unwrap_or_default();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(doc["resource"], "https://mcp.example.com/mcp");
        assert_eq!(
            doc["authorization_servers"],
            json!(["https://idp.example.com"])
        );
        assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
        assert_eq!(doc["scopes_supported"], json!(["mcp:read"]));
        assert_eq!(
            get(&resource, false, "/.well-known/oauth-protected-resource").map(|r| r.0),
            Some(StatusCode::NOT_FOUND)
        );
        assert_eq!(
            get(&resource, true, "/.well-known/oauth-protected-resource").map(|r| r.0),
            Some(StatusCode::OK)
        );
        assert_eq!(
            get(
                &resource,
                false,
                "/.well-known/oauth-protected-resource/other"
            )
            .map(|r| r.0),
            Some(StatusCode::NOT_FOUND)
        );
        assert!(get(&resource, false, "/mcp").is_none());
        assert!(
            get(
                &resource,
                false,
                "/.well-known/oauth-protected-resourcex/mcp"
            )
            .is_none()
        );
    }

    #[test]
    fn per_route_documents_name_the_route_resource() {
        // R-PRM-3
        let resource = ProtectedResource::per_route(|parts| {
            let id = parts
                .uri
                .path()
                .strip_prefix("/servers/")?
                .strip_suffix("/mcp")?;
            Some(format!("https://gw.example.com/servers/{id}/mcp"))
        })
        .authorization_server("https://idp.example.com");
        let (status, doc) = get(
            &resource,
            false,
            "/.well-known/oauth-protected-resource/servers/a1/mcp",
        )
        .unwrap_or_default();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(doc["resource"], "https://gw.example.com/servers/a1/mcp");
        assert_eq!(
            get(
                &resource,
                false,
                "/.well-known/oauth-protected-resource/nothing"
            )
            .map(|r| r.0),
            Some(StatusCode::NOT_FOUND)
        );
        assert_eq!(
            metadata_path("https://gw.example.com/servers/a1/mcp"),
            "/.well-known/oauth-protected-resource/servers/a1/mcp"
        );
    }
}
