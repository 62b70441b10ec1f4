//! [`EnrichLayer`]: an optional step after verification that adds claims to the
//! [`Principal`] (from a userinfo endpoint, an upstream token, a directory) — and
//! whose failure cannot lock everyone out (R-AZ-2: a gateway whose extra step before its
//! policy failed on every opaque token denied every request).
//!
//! When the [`Enrich`] step fails, the failure is logged and the request goes on with
//! the principal as verified, so authorization still runs on the claims that are
//! known. Enriched claims are kept apart from the verified ones
//! ([`Principal::enrichment`]) and never override them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Request;
use http::request::Parts;
use serde_json::{Map, Value};
use tower::{Layer, Service};

use crate::principal::Principal;
use crate::rule::Rule;

/// An enrichment step. Implemented for closures
/// `Fn(&Principal, &Parts) -> impl Future<Output = Result<Map<String, Value>, String>>`;
/// the error is a description for the log.
pub trait Enrich: Send + Sync + 'static {
    /// The future of the extra claims.
    type Future: Future<Output = Result<Map<String, Value>, String>> + Send + 'static;

    /// Extra claims for a verified request.
    fn enrich(&self, principal: &Principal, parts: &Parts) -> Self::Future;

    /// Whether this step does anything; a step that does not costs nothing per
    /// request.
    fn is_enabled(&self) -> bool {
        true
    }
}

impl<F, Fut> Enrich for F
where
    F: Fn(&Principal, &Parts) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Map<String, Value>, String>> + Send + 'static,
{
    type Future = Fut;

    fn enrich(&self, principal: &Principal, parts: &Parts) -> Fut {
        self(principal, parts)
    }
}

/// A layer that runs an [`Enrich`] step on verified requests. Put it after the
/// verify layer and before the authorize layer.
#[derive(Clone, Debug)]
pub struct EnrichLayer<E> {
    enrich: Arc<E>,
    timeout: Duration,
}

/// How long an enrichment step may take before it counts as failed.
pub const DEFAULT_ENRICH_TIMEOUT: Duration = Duration::from_secs(3);

impl<E> EnrichLayer<E> {
    /// A layer running `enrich`, given at most [`DEFAULT_ENRICH_TIMEOUT`].
    pub fn new(enrich: E) -> Self {
        Self {
            enrich: Arc::new(enrich),
            timeout: DEFAULT_ENRICH_TIMEOUT,
        }
    }

    /// How long the step may take; past it, it counts as failed and the request
    /// goes on with the verified claims.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The same layer running `enrich` instead.
    pub(crate) fn step(mut self, enrich: E) -> Self {
        self.enrich = Arc::new(enrich);
        self
    }
}

impl<S, E> Layer<S> for EnrichLayer<E> {
    type Service = EnrichService<S, E>;

    fn layer(&self, inner: S) -> Self::Service {
        EnrichService {
            inner,
            enrich: self.enrich.clone(),
            timeout: self.timeout,
        }
    }
}

/// The service made by [`EnrichLayer`].
#[derive(Debug)]
pub struct EnrichService<S, E> {
    inner: S,
    enrich: Arc<E>,
    timeout: Duration,
}

impl<S: Clone, E> Clone for EnrichService<S, E> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            enrich: self.enrich.clone(),
            timeout: self.timeout,
        }
    }
}

impl<S, E, ReqBody> Service<Request<ReqBody>> for EnrichService<S, E>
where
    S: Service<Request<ReqBody>> + Clone + Send + 'static,
    S::Future: Send,
    E: Enrich,
    ReqBody: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = EnrichFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // Without a principal (a layer missing in front) there is nothing to enrich;
        // the layers after this one refuse such a request.
        let principal = match req.extensions().get::<Principal>() {
            Some(principal) if self.enrich.is_enabled() && !principal.is_anonymous() => {
                principal.clone()
            }
            _ => return EnrichFuture::Direct(self.inner.call(req)),
        };
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let (mut parts, body) = req.into_parts();
        let enrichment = self.enrich.enrich(&principal, &parts);
        let timeout = self.timeout;
        EnrichFuture::Enriching(Box::pin(async move {
            let outcome = tokio::time::timeout(timeout, enrichment)
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {} ms", timeout.as_millis())));
            match outcome {
                Ok(extra) => {
                    parts.extensions.insert(principal.with_enrichment(extra));
                }
                Err(why) => {
                    tracing::warn!(
                        rule = Rule::Az2.id(),
                        "enrichment failed, going on with the verified claims: {why}"
                    );
                }
            }
            inner.call(Request::from_parts(parts, body)).await
        }))
    }
}

/// The response future of [`EnrichService`]: the inner future directly when there
/// is nothing to enrich.
#[pin_project::pin_project(project = EnrichFutureProj)]
pub enum EnrichFuture<F: Future> {
    /// No enrichment: the inner service's future.
    Direct(#[pin] F),
    /// Enrichment, then the inner service.
    Enriching(Pin<Box<dyn Future<Output = F::Output> + Send>>),
}

impl<F: Future> Future for EnrichFuture<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        match self.project() {
            EnrichFutureProj::Direct(future) => future.poll(cx),
            EnrichFutureProj::Enriching(future) => future.as_mut().poll(cx),
        }
    }
}

/// Type-erased enrichment, as the [`ResourceServer`](crate::ResourceServer) keeps it;
/// with none configured it passes requests through.
#[derive(Clone, Default)]
pub struct ServerEnrich(Option<Arc<dyn DynEnrich>>);

type BoxEnrichment = Pin<Box<dyn Future<Output = Result<Map<String, Value>, String>> + Send>>;

trait DynEnrich: Send + Sync {
    fn enrich(&self, principal: &Principal, parts: &Parts) -> BoxEnrichment;
}

impl<E: Enrich> DynEnrich for E {
    fn enrich(&self, principal: &Principal, parts: &Parts) -> BoxEnrichment {
        Box::pin(Enrich::enrich(self, principal, parts))
    }
}

impl ServerEnrich {
    pub(crate) fn new(enrich: impl Enrich) -> Self {
        Self(Some(Arc::new(enrich)))
    }
}

impl std::fmt::Debug for ServerEnrich {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ServerEnrich")
            .field(&self.0.is_some())
            .finish()
    }
}

impl Enrich for ServerEnrich {
    type Future = BoxEnrichment;

    fn enrich(&self, principal: &Principal, parts: &Parts) -> BoxEnrichment {
        match &self.0 {
            Some(enrich) => enrich.enrich(principal, parts),
            None => Box::pin(std::future::ready(Ok(Map::new()))),
        }
    }

    fn is_enabled(&self) -> bool {
        self.0.is_some()
    }
}
