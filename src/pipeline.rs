//! The pipeline, written once: [`GatekeeperLayer`] holds one layer per stage and
//! stacks them in the order a request meets them, and [`Gatekeeper`] is the service
//! that makes. [`ResourceServer`](crate::ResourceServer) builds it; the crate docs
//! draw it.

use tower::Layer;

use crate::audience::{AudienceLayer, AudienceService};
use crate::authorize::{AuthorizeLayer, AuthorizeService, ServerAuthorize};
use crate::bearer::{BearerLayer, BearerService};
use crate::cors::{CorsLayer, CorsService};
use crate::enrich::{EnrichLayer, EnrichService, ServerEnrich};
use crate::mcp::{
    BindSessionsLayer, BindSessionsService, FilterToolsLayer, FilterToolsService, OperationLayer,
    OperationService,
};
use crate::metadata::{MetadataLayer, MetadataService};
use crate::origin::{OriginLayer, OriginService};
use crate::verify::{VerifyLayer, VerifyService};

/// Declares the service a stage's layer makes, `$service<S>` (the inner service and
/// a clone of the layer), and the [`Layer`] impl that makes it. The stage's own file
/// then has only what it does: its `Service::call`.
macro_rules! layer_service {
    ($layer:ident => $service:ident) => {
        impl<S> tower::Layer<S> for $layer {
            type Service = $service<S>;

            fn layer(&self, inner: S) -> Self::Service {
                $service {
                    inner,
                    layer: self.clone(),
                }
            }
        }

        #[doc = concat!("The service made by [`", stringify!($layer), "`].")]
        #[derive(Clone, Debug)]
        pub struct $service<S> {
            inner: S,
            layer: $layer,
        }
    };
}
pub(crate) use layer_service;

/// The layer of a [`ResourceServer`](crate::ResourceServer): one layer per stage, in
/// the order a request meets them.
#[derive(Clone, Debug)]
pub struct GatekeeperLayer {
    pub(crate) origin: OriginLayer,
    pub(crate) cors: CorsLayer,
    pub(crate) metadata: MetadataLayer,
    pub(crate) bearer: BearerLayer,
    pub(crate) verify: VerifyLayer,
    pub(crate) audience: AudienceLayer,
    pub(crate) enrich: EnrichLayer<ServerEnrich>,
    pub(crate) sessions: BindSessionsLayer,
    pub(crate) operation: OperationLayer,
    pub(crate) authorize: AuthorizeLayer<ServerAuthorize>,
    pub(crate) filter: FilterToolsLayer<ServerAuthorize>,
}

/// The service of a [`GatekeeperLayer`] around `S`: the stages, outermost first.
pub type Gatekeeper<S> = OriginService<
    CorsService<
        MetadataService<
            BearerService<
                VerifyService<
                    AudienceService<
                        EnrichService<
                            BindSessionsService<
                                OperationService<
                                    AuthorizeService<
                                        FilterToolsService<S, ServerAuthorize>,
                                        ServerAuthorize,
                                    >,
                                >,
                            >,
                            ServerEnrich,
                        >,
                    >,
                >,
            >,
        >,
    >,
>;

impl<S> Layer<S> for GatekeeperLayer {
    type Service = Gatekeeper<S>;

    fn layer(&self, inner: S) -> Self::Service {
        let inner = self.filter.layer(inner);
        let inner = self.authorize.layer(inner);
        let inner = self.operation.layer(inner);
        let inner = self.sessions.layer(inner);
        let inner = self.enrich.layer(inner);
        let inner = self.audience.layer(inner);
        let inner = self.verify.layer(inner);
        let inner = self.bearer.layer(inner);
        let inner = self.metadata.layer(inner);
        let inner = self.cors.layer(inner);
        self.origin.layer(inner)
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::task::{Context, Poll};

    use bytes::Bytes;
    use http::{Request, Response};
    use http_body_util::Empty;
    use tower::Service;

    use super::Gatekeeper;

    /// The smallest inner service: answers at once.
    #[derive(Clone)]
    struct Noop;

    impl<B> Service<Request<B>> for Noop {
        type Response = Response<Empty<Bytes>>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Self::Response, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<B>) -> Self::Future {
            std::future::ready(Ok(Response::new(Empty::new())))
        }
    }

    type StackFuture = <Gatekeeper<Noop> as Service<Request<Empty<Bytes>>>>::Future;

    #[test]
    fn the_whole_stack_future_stays_small_because_only_the_hot_path_is_inline() {
        // Every stage's future holds the next one's, so a state kept inline by one
        // stage is paid for by every request through all of them. Pending checks and
        // refusals are boxed; what is left is the chain of calls.
        let size = std::mem::size_of::<StackFuture>();
        println!("the whole stack's response future: {size} bytes");
        assert!(size <= 512, "{size} bytes");
    }
}
