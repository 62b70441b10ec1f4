//! `/readyz`: every issuer reachable (its `jwks_uri`, else its metadata, else its
//! introspection endpoint) and every upstream accepting connections. Each probe is
//! bounded in time, and a result serves for [`FRESH`] (one check at a time, however
//! many probes come: the identity providers see at most one round per interval). The
//! report names what is not ready and why in a word, not the upstreams' addresses.

use std::time::Duration;

use futures_util::future::join_all;
use mcp_gatekeeper::config::GatewayConfig;
use serde_json::{Value, json};

/// How long one probe of an issuer may take.
const ISSUER_PROBE: Duration = Duration::from_secs(3);

/// How long a check's result is served before the next check.
pub(crate) const FRESH: Duration = Duration::from_secs(5);

/// What to ask an issuer.
struct Probe {
    /// The URLs to try in order.
    urls: Vec<String>,
    /// Whether any HTTP answer will do (an introspection endpoint answers a `GET`
    /// with 4xx), or only a 2xx.
    any_answer: bool,
}

/// The probes of a gateway.
pub(crate) struct Readiness {
    issuers: Vec<(String, Probe)>,
    /// (server id, host:port).
    upstreams: Vec<(String, String)>,
    connect: Duration,
    http: Option<reqwest::Client>,
    /// The last check: when, whether ready, the report.
    last: tokio::sync::Mutex<Option<(std::time::Instant, bool, Value)>>,
}

impl Readiness {
    pub(crate) fn new(config: &GatewayConfig) -> Self {
        let issuers = config
            .issuers
            .iter()
            .map(|issuer| {
                let introspection = issuer
                    .introspection
                    .as_ref()
                    .and_then(|i| i.endpoint.clone());
                let probe = match (&issuer.jwks_uri, issuer.discovery, introspection) {
                    (Some(uri), _, _) => Probe {
                        urls: vec![uri.clone()],
                        any_answer: false,
                    },
                    (None, true, _) | (None, false, None) => Probe {
                        urls: metadata_urls(&issuer.issuer),
                        any_answer: false,
                    },
                    (None, false, Some(endpoint)) => Probe {
                        urls: vec![endpoint],
                        any_answer: true,
                    },
                };
                (issuer.issuer.clone(), probe)
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
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// Whether everything is ready, and the report: the last check's if it is fresh,
    /// else a new one (one at a time).
    pub(crate) async fn check(&self) -> (bool, Value) {
        let mut last = self.last.lock().await;
        if let Some((at, ready, report)) = last.as_ref()
            && at.elapsed() < FRESH
        {
            return (*ready, report.clone());
        }
        let (ready, report) = self.check_now().await;
        *last = Some((std::time::Instant::now(), ready, report.clone()));
        (ready, report)
    }

    async fn check_now(&self) -> (bool, Value) {
        let issuers = join_all(self.issuers.iter().map(|(issuer, probe)| async move {
            let why = self.probe_issuer(probe).await.err();
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

    async fn probe_issuer(&self, probe: &Probe) -> Result<(), String> {
        let Some(http) = &self.http else {
            return Err("no HTTP client".into());
        };
        let mut failures = Vec::new();
        for url in &probe.urls {
            match http.get(url).send().await {
                Ok(answer) if answer.status().is_success() || probe.any_answer => return Ok(()),
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
