//! `/readyz`: every issuer reachable (its `jwks_uri`, else its metadata) and every
//! upstream accepting connections. Each probe is bounded in time; the report names
//! what is not ready, never a secret.

use std::time::Duration;

use futures_util::future::join_all;
use mcp_gatekeeper::config::GatewayConfig;
use serde_json::{Value, json};

/// How long one probe of an issuer may take.
const ISSUER_PROBE: Duration = Duration::from_secs(3);

/// The probes of a gateway.
pub(crate) struct Readiness {
    /// (issuer, the URLs to try in order: any answering 2xx will do).
    issuers: Vec<(String, Vec<String>)>,
    /// (server id, host:port).
    upstreams: Vec<(String, String)>,
    connect: Duration,
    http: Option<reqwest::Client>,
}

impl Readiness {
    pub(crate) fn new(config: &GatewayConfig) -> Self {
        let issuers = config
            .issuers
            .iter()
            .map(|issuer| {
                let urls = match &issuer.jwks_uri {
                    Some(uri) => vec![uri.clone()],
                    None => metadata_urls(&issuer.issuer),
                };
                (issuer.issuer.clone(), urls)
            })
            .collect();
        let upstreams = config
            .servers
            .keys()
            .filter_map(|id| {
                let uri = config.upstream_uri(id).ok()?;
                let host = uri.host()?;
                let port = uri.port_u16().unwrap_or(80);
                Some((id.clone(), format!("{host}:{port}")))
            })
            .collect();
        let http = reqwest::Client::builder()
            .timeout(ISSUER_PROBE)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .ok();
        Self {
            issuers,
            upstreams,
            connect: Duration::from_secs(config.proxy.connect_timeout_seconds),
            http,
        }
    }

    /// Whether everything is ready, and the report.
    pub(crate) async fn check(&self) -> (bool, Value) {
        let issuers = join_all(self.issuers.iter().map(|(issuer, urls)| async move {
            let why = self.probe_issuer(urls).await.err();
            (issuer.clone(), why)
        }))
        .await;
        let upstreams = join_all(self.upstreams.iter().map(|(id, address)| async move {
            let why = match tokio::time::timeout(
                self.connect,
                tokio::net::TcpStream::connect(address.as_str()),
            )
            .await
            {
                Ok(Ok(_)) => None,
                Ok(Err(error)) => Some(format!("cannot connect to {address}: {error}")),
                Err(_) => Some(format!(
                    "no connection to {address} within {:?}",
                    self.connect
                )),
            };
            (id.clone(), why)
        }))
        .await;
        let ready = issuers
            .iter()
            .chain(upstreams.iter())
            .all(|(_, why)| why.is_none());
        let entry = |why: &Option<String>| match why {
            None => json!({ "ready": true }),
            Some(why) => json!({ "ready": false, "why": why }),
        };
        let report = json!({
            "ready": ready,
            "issuers": issuers.iter().map(|(k, why)| (k.clone(), entry(why))).collect::<serde_json::Map<_, _>>(),
            "upstreams": upstreams.iter().map(|(k, why)| (k.clone(), entry(why))).collect::<serde_json::Map<_, _>>(),
        });
        (ready, report)
    }

    async fn probe_issuer(&self, urls: &[String]) -> Result<(), String> {
        let Some(http) = &self.http else {
            return Err("no HTTP client".into());
        };
        let mut failures = Vec::new();
        for url in urls {
            match http.get(url).send().await {
                Ok(answer) if answer.status().is_success() => return Ok(()),
                Ok(answer) => failures.push(format!("{url}: {}", answer.status())),
                Err(error) => failures.push(format!(
                    "{url}: {}",
                    if error.is_timeout() {
                        "timed out"
                    } else {
                        "unreachable"
                    }
                )),
            }
        }
        Err(failures.join("; "))
    }
}

/// RFC 8414's metadata URL, then OpenID Connect's.
fn metadata_urls(issuer: &str) -> Vec<String> {
    let trimmed = issuer.trim_end_matches('/');
    let (origin, path) = match trimmed.split_once("://") {
        Some((scheme, rest)) => match rest.find('/') {
            Some(i) => (format!("{scheme}://{}", &rest[..i]), &rest[i..]),
            None => (trimmed.to_owned(), ""),
        },
        None => (trimmed.to_owned(), ""),
    };
    vec![
        format!("{origin}/.well-known/oauth-authorization-server{path}"),
        format!("{trimmed}/.well-known/openid-configuration"),
    ]
}
