//! The pipeline, written once: [`GatekeeperLayer`] holds one layer per stage and
//! stacks them in the order a request meets them, and [`Gatekeeper`] is the service
//! that makes. [`ResourceServer`](crate::ResourceServer) builds it; the crate docs
//! draw it.

use tower::Layer;

use crate::audience::{AudienceLayer, AudienceService};
use crate::authorize::{AuthorizeLayer, AuthorizeService, ServerAuthorize};
use crate::bearer::{BearerLayer, BearerService};
use crate::enrich::{EnrichLayer, EnrichService, ServerEnrich};
use crate::mcp::{
    BindSessionsLayer, BindSessionsService, FilterToolsLayer, FilterToolsService, OperationLayer,
    OperationService,
};
use crate::metadata::{MetadataLayer, MetadataService};
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
pub type Gatekeeper<S> = MetadataService<
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
        self.metadata.layer(inner)
    }
}
