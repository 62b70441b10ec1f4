//! [`Discovery`]: the last tier (R-KEY-2). Finds the issuer's `jwks_uri` (and its
//! `introspection_endpoint`, for the introspection verifier, and its `token_endpoint`,
//! for token exchange) from its metadata on
//! first need — never at construction — trying RFC 8414
//! (`/.well-known/oauth-authorization-server` inserted before the issuer's path) and
//! then OpenID Connect (`/.well-known/openid-configuration` appended), and insists
//! that the document's `issuer` is exactly the configured one. A failure is logged,
//! backed off and retried on later need; it never stops another tier from answering.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use jsonwebtoken::Algorithm;
use serde_json::Value;

use super::flight::{Flight, Gate};
use super::{JwksCache, JwksOptions, KeyError, KeyFuture, KeySet, KeySource};
use crate::fetch::{FetchError, Fetcher};
use crate::uri::{self, Transport};

/// Whether a failed fetch means the host is out of reach.
enum FetchFailure {
    Unreachable,
    Other,
}

/// What discovery learned about the issuer.
pub(crate) struct Discovered {
    jwks: Option<JwksCache>,
    /// The RFC 7662 endpoint, when the issuer has one.
    pub(crate) introspection_endpoint: Option<String>,
    /// The token endpoint (RFC 8414), for RFC 8693 token exchange.
    pub(crate) token_endpoint: Option<String>,
}

/// The endpoints a metadata document names (each checked to be an https or loopback
/// URL).
#[derive(Debug)]
pub(crate) struct Endpoints {
    jwks_uri: Option<String>,
    introspection_endpoint: Option<String>,
    token_endpoint: Option<String>,
}

struct Inner {
    issuer: String,
    fetcher: Fetcher,
    /// For the URLs the document names (R-GW-3): see [`Fetcher::for_discovered`].
    discovered_fetcher: Fetcher,
    options: JwksOptions,
    discovered: ArcSwapOption<Discovered>,
    flight: Flight,
    /// Whether the document may name plain-http endpoints off loopback.
    transport: Transport,
}

/// Reads a metadata document of `issuer` (RFC 8414 or OIDC): its `jwks_uri`,
/// `introspection_endpoint` and `token_endpoint`, once its `issuer` is checked to be
/// exactly `issuer`. The error is safe to log.
pub(crate) fn parse_document(
    body: &[u8],
    issuer: &str,
    transport: Transport,
) -> Result<Endpoints, String> {
    let document: Value = serde_json::from_slice(body).map_err(|_| "not JSON".to_owned())?;
    let named = document.get("issuer").and_then(Value::as_str);
    if named != Some(issuer) {
        return Err(format!(
            "names issuer {:?}, not the configured {issuer:?}",
            named
                .unwrap_or("<none>")
                .chars()
                .take(200)
                .collect::<String>(),
        ));
    }
    let endpoint = |name: &str| -> Result<Option<String>, String> {
        match document.get(name) {
            None => Ok(None),
            Some(Value::String(url)) => uri::check_url_with(url, name, transport)
                .map(|()| Some(url.clone()))
                .map_err(|e| e.message().to_owned()),
            Some(_) => Err(format!("{name} is not a string")),
        }
    };
    let jwks_uri = endpoint("jwks_uri")?;
    let introspection_endpoint = endpoint("introspection_endpoint")?;
    let token_endpoint = endpoint("token_endpoint")?;
    if jwks_uri.is_none() && introspection_endpoint.is_none() && token_endpoint.is_none() {
        return Err("has none of jwks_uri, introspection_endpoint, token_endpoint".into());
    }
    Ok(Endpoints {
        jwks_uri,
        introspection_endpoint,
        token_endpoint,
    })
}

/// Lazy discovery of an issuer's keys. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Discovery(Arc<Inner>);

impl Discovery {
    pub(crate) fn new(
        issuer: String,
        fetcher: Fetcher,
        discovered_fetcher: Fetcher,
        options: JwksOptions,
        transport: Transport,
    ) -> Self {
        let flight = Flight::new(options.min_backoff, options.max_backoff);
        Self(Arc::new(Inner {
            issuer,
            fetcher,
            discovered_fetcher,
            options,
            discovered: ArcSwapOption::empty(),
            flight,
            transport,
        }))
    }

    /// The metadata URLs to try, in order.
    fn candidates(&self) -> [String; 2] {
        let issuer = self.0.issuer.trim_end_matches('/');
        [
            uri::insert_well_known(&self.0.issuer, "oauth-authorization-server"),
            format!("{issuer}/.well-known/openid-configuration"),
        ]
    }

    async fn discover(&self) -> Result<(), KeyError> {
        let started = std::time::Instant::now();
        let done = |outcome| crate::metrics::discovery(&self.0.issuer, outcome, started.elapsed());
        let mut failures = Vec::new();
        let mut unreachable = false;
        for url in self.candidates() {
            match self.fetch_document(&url).await {
                Ok(Endpoints {
                    jwks_uri,
                    introspection_endpoint,
                    token_endpoint,
                }) => {
                    tracing::info!(issuer = %self.0.issuer, ?jwks_uri, ?introspection_endpoint, ?token_endpoint, "discovered the issuer's metadata");
                    let jwks = jwks_uri.map(|uri| {
                        JwksCache::new(
                            uri,
                            &self.0.issuer,
                            "discovery",
                            self.0.discovered_fetcher.clone(),
                            self.0.options.clone(),
                        )
                    });
                    self.0.discovered.store(Some(Arc::new(Discovered {
                        jwks,
                        introspection_endpoint,
                        token_endpoint,
                    })));
                    done("ok");
                    return Ok(());
                }
                // The other form lives on the same host: no use asking it.
                Err((FetchFailure::Unreachable, why)) => {
                    failures.push(why);
                    unreachable = true;
                    break;
                }
                Err((FetchFailure::Other, why)) => failures.push(why),
            }
        }
        done(match unreachable {
            true => "unreachable",
            false => "failed",
        });
        tracing::warn!(issuer = %self.0.issuer, "discovery failed: {}", failures.join("; "));
        Err(KeyError {
            retry_after: self.0.options.min_backoff,
            reason: "the identity provider's metadata could not be fetched".into(),
        })
    }

    /// One metadata document's endpoints, after checking its `issuer`.
    async fn fetch_document(&self, url: &str) -> Result<Endpoints, (FetchFailure, String)> {
        let other = |why: String| (FetchFailure::Other, format!("{url}: {why}"));
        let body = match self.0.fetcher.get_json(url).await {
            Ok(fetched) => fetched.body,
            Err(error @ FetchError::Unreachable(_)) => {
                return Err((FetchFailure::Unreachable, format!("{url}: {error}")));
            }
            Err(error) => return Err(other(error.to_string())),
        };
        parse_document(&body, &self.0.issuer, self.0.transport).map_err(other)
    }

    /// The issuer's metadata, discovered on first need (single flight, back-off).
    pub(crate) async fn discovered(&self) -> Result<Arc<Discovered>, KeyError> {
        if let Some(discovered) = self.0.discovered.load_full() {
            return Ok(discovered);
        }
        let seen = self.0.flight.seen();
        if let Gate::BackingOff(error) = self.0.flight.gate() {
            return Err(error);
        }
        let this = self.clone();
        self.0
            .flight
            .run(seen, move || async move { this.discover().await })
            .await?;
        self.0.discovered.load_full().ok_or_else(|| KeyError {
            retry_after: self.0.options.min_backoff,
            reason: "the identity provider's metadata could not be fetched".into(),
        })
    }

    async fn resolve_inner(
        &self,
        kid: Option<String>,
        alg: Algorithm,
    ) -> Result<Option<Arc<KeySet>>, KeyError> {
        match &self.discovered().await?.jwks {
            Some(cache) => cache.resolve(kid, alg).await,
            None => Ok(None),
        }
    }
}

impl KeySource for Discovery {
    fn tier(&self) -> &'static str {
        "discovery"
    }

    fn cached(&self, kid: Option<&str>, alg: Algorithm) -> Option<Arc<KeySet>> {
        self.0
            .discovered
            .load()
            .as_ref()?
            .jwks
            .as_ref()?
            .cached(kid, alg)
    }

    fn resolve(&self, kid: Option<String>, alg: Algorithm) -> KeyFuture {
        let this = self.clone();
        Box::pin(async move { this.resolve_inner(kid, alg).await })
    }
}
