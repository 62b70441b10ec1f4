//! [`TokenExchange`]: RFC 8693 token exchange for the client side of a gateway. A
//! gateway must not pass the client's token on (it was issued for the gateway); it
//! exchanges it at the issuer's token endpoint for one whose audience is the upstream.
//!
//! Exchanged tokens are cached by the SHA-256 of the subject token until shortly before
//! they expire, and concurrent requests with one subject token cause one exchange
//! (single flight). A failed exchange is an error, never a fallback to passing the
//! client's token on.
//!
//! The token endpoint is configured, or discovered from the issuer's metadata
//! (RFC 8414, then OpenID Connect) on first need, like the keys (R-KEY-2); a
//! discovered endpoint receives the client secret only on the issuer's own origin
//! (R-GW-3).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::ConfigError;
use crate::fetch::{FetchError, FetchOptions, Fetcher};
use crate::keys::{Discovery, JwksOptions};
use crate::uri::{self, Transport};
use crate::verify::ClientAuth;

mod layer;

pub use layer::{ExchangeFuture, ExchangeLayer, ExchangeService};

/// The grant type of RFC 8693.
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The token type of an access token (RFC 8693 §3).
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// The longest an exchanged token is reused, whatever its `expires_in` says.
const MAX_REUSE_SECS: u64 = 86_400;

/// How long before its expiry an exchanged token stops being reused, by default.
pub const DEFAULT_EXCHANGE_MARGIN: Duration = Duration::from_secs(30);

/// Why an exchange failed. The description is for the log; the client of the gateway
/// gets a 502 or 503 naming no more than that the upstream token could not be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExchangeError {
    /// The authorization server refused this subject token (`invalid_grant`,
    /// `invalid_target`, `invalid_scope`): the request cannot be served as is.
    Refused(String),
    /// The authorization server could not be reached or answered nonsense.
    Unavailable(String),
}

impl std::fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused(why) => write!(f, "token exchange refused: {why}"),
            Self::Unavailable(why) => write!(f, "token exchange unavailable: {why}"),
        }
    }
}

impl std::error::Error for ExchangeError {}

/// An exchanged token and when it stops being reused.
#[derive(Debug)]
struct Exchanged {
    access_token: String,
    reuse_until: Instant,
}

/// RFC 8693 token exchange at one token endpoint, for one upstream; see the module
/// docs. Cheap to clone.
#[derive(Clone)]
pub struct TokenExchange(Arc<Inner>);

/// Where the token endpoint is.
#[derive(Debug, Clone)]
enum Endpoint {
    /// Configured.
    Fixed(String),
    /// Named by this issuer's metadata.
    Issuer(String),
}

/// The endpoint, ready to use.
enum Target {
    Fixed(String),
    Discovered(Discovery),
}

struct Inner {
    target: Target,
    /// The issuer whose tokens this exchange takes (`None`: any verified token).
    issuer: Option<String>,
    client_id: String,
    client_secret: String,
    auth: ClientAuth,
    resource: Option<String>,
    audience: Option<String>,
    scope: Option<String>,
    margin: Duration,
    fetcher: Fetcher,
    cache: moka::future::Cache<[u8; 32], Arc<Exchanged>>,
}

impl std::fmt::Debug for TokenExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let endpoint = match &self.0.target {
            Target::Fixed(endpoint) => endpoint.as_str(),
            Target::Discovered(_) => "<discovered>",
        };
        f.debug_struct("TokenExchange")
            .field("token_endpoint", &endpoint)
            .field("issuer", &self.0.issuer)
            .field("client_id", &self.0.client_id)
            .field("resource", &self.0.resource)
            .field("audience", &self.0.audience)
            .finish_non_exhaustive()
    }
}

/// The settings of a [`TokenExchange`], checked by [`TokenExchangeBuilder::build`].
#[derive(Clone)]
pub struct TokenExchangeBuilder {
    endpoint: Endpoint,
    issuer: Option<String>,
    client_id: String,
    client_secret: String,
    auth: ClientAuth,
    resource: Option<String>,
    audience: Option<String>,
    scope: Option<String>,
    margin: Duration,
    capacity: u64,
    fetch: FetchOptions,
}

impl TokenExchange {
    /// Exchanges at `token_endpoint`, authenticated as `client_id` with
    /// `client_secret` (HTTP Basic by default).
    pub fn builder(
        token_endpoint: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> TokenExchangeBuilder {
        TokenExchangeBuilder::new(
            Endpoint::Fixed(token_endpoint.into()),
            None,
            client_id.into(),
            client_secret.into(),
        )
    }

    /// Exchanges the tokens of `issuer` at the `token_endpoint` its metadata names,
    /// discovered on the first exchange (never at construction; a failure is retried
    /// with back-off on later exchanges), authenticated as `client_id` with
    /// `client_secret`. The endpoint must be on the issuer's origin: the secret is
    /// not sent elsewhere.
    pub fn discover(
        issuer: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> TokenExchangeBuilder {
        let issuer = issuer.into();
        TokenExchangeBuilder::new(
            Endpoint::Issuer(issuer.clone()),
            Some(issuer),
            client_id.into(),
            client_secret.into(),
        )
    }

    /// The issuer whose tokens this exchange takes, when it is for one issuer.
    pub fn issuer(&self) -> Option<&str> {
        self.0.issuer.as_deref()
    }

    /// The token endpoint: configured, or from the issuer's metadata.
    async fn token_endpoint(&self) -> Result<String, ExchangeError> {
        let discovery = match &self.0.target {
            Target::Fixed(endpoint) => return Ok(endpoint.clone()),
            Target::Discovered(discovery) => discovery,
        };
        let discovered = discovery
            .discovered()
            .await
            .map_err(|error| ExchangeError::Unavailable(error.reason))?;
        let issuer = self.0.issuer.as_deref().unwrap_or_default();
        let endpoint = discovered.token_endpoint.clone().ok_or_else(|| {
            ExchangeError::Unavailable(format!(
                "the metadata of issuer {issuer} names no token_endpoint"
            ))
        })?;
        if !uri::same_origin(issuer, &endpoint) {
            return Err(ExchangeError::Unavailable(format!(
                "the metadata of issuer {issuer} names a token_endpoint on another origin \
                 ({endpoint}); the client secret is not sent there (configure the endpoint \
                 with TokenExchange::builder if it is right)"
            )));
        }
        Ok(endpoint)
    }

    /// A token for the upstream in place of `subject_token` (a token the gateway
    /// verified): from the cache while it is good for more than the margin, else
    /// exchanged (once for all the requests that ask at the same time).
    pub async fn exchange(&self, subject_token: &str) -> Result<String, ExchangeError> {
        let key: [u8; 32] = Sha256::digest(subject_token.as_bytes()).into();
        if let Some(hit) = self.0.cache.get(&key).await
            && hit.reuse_until > Instant::now()
        {
            return Ok(hit.access_token.clone());
        }
        self.0.cache.invalidate(&key).await;
        let this = self.clone();
        let subject = subject_token.to_owned();
        let exchanged = self
            .0
            .cache
            .try_get_with(key, async move { this.call(&subject).await.map(Arc::new) })
            .await
            .map_err(|error| (*error).clone())?;
        Ok(exchanged.access_token.clone())
    }

    /// The form and the `Authorization` value of an exchange of `subject_token`.
    fn request(&self, subject_token: &str) -> (String, Option<String>) {
        let inner = &self.0;
        {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", GRANT_TYPE)
                .append_pair("subject_token", subject_token)
                .append_pair("subject_token_type", ACCESS_TOKEN_TYPE)
                .append_pair("requested_token_type", ACCESS_TOKEN_TYPE);
            if let Some(resource) = &inner.resource {
                form.append_pair("resource", resource);
            }
            if let Some(audience) = &inner.audience {
                form.append_pair("audience", audience);
            }
            if let Some(scope) = &inner.scope {
                form.append_pair("scope", scope);
            }
            let authorization =
                inner
                    .auth
                    .authenticate(&mut form, &inner.client_id, &inner.client_secret);
            (form.finish(), authorization)
        }
    }

    /// One call of the token endpoint.
    async fn call(&self, subject_token: &str) -> Result<Exchanged, ExchangeError> {
        let inner = &self.0;
        // The serializer is not Send: the form is finished before the first await.
        let (form, authorization) = self.request(subject_token);
        let endpoint = self.token_endpoint().await?;
        let fetched = inner
            .fetcher
            .post_form(&endpoint, form, authorization.as_deref())
            .await
            .map_err(|error| match error {
                FetchError::Status(400, Some(code))
                    if matches!(
                        code.as_str(),
                        "invalid_grant" | "invalid_target" | "invalid_scope"
                    ) =>
                {
                    ExchangeError::Refused(code)
                }
                other => ExchangeError::Unavailable(other.to_string()),
            })?;
        let answer: Answer = serde_json::from_slice(&fetched.body).map_err(|_| {
            ExchangeError::Unavailable("the token endpoint answered no token".into())
        })?;
        if answer
            .issued_token_type
            .as_deref()
            .is_some_and(|t| t != ACCESS_TOKEN_TYPE)
        {
            return Err(ExchangeError::Unavailable(
                "the token endpoint issued another kind of token than an access token".into(),
            ));
        }
        if !answer.token_type.eq_ignore_ascii_case("bearer") {
            return Err(ExchangeError::Unavailable(format!(
                "the token endpoint issued a {:?} token, not a Bearer token",
                crate::mcp::shorten(&answer.token_type)
            )));
        }
        // A day at most: an answer's lifetime is the authorization server's to say,
        // not to overflow the clock with.
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(60).min(MAX_REUSE_SECS));
        let reuse_until = Instant::now() + lifetime.saturating_sub(inner.margin);
        Ok(Exchanged {
            access_token: answer.access_token,
            reuse_until,
        })
    }
}

/// The token endpoint's answer (RFC 8693 §2.2.1).
#[derive(Deserialize)]
struct Answer {
    access_token: String,
    #[serde(default)]
    issued_token_type: Option<String>,
    token_type: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl std::fmt::Debug for TokenExchangeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenExchangeBuilder")
            .field("endpoint", &self.endpoint)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("resource", &self.resource)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl TokenExchangeBuilder {
    fn new(
        endpoint: Endpoint,
        issuer: Option<String>,
        client_id: String,
        client_secret: String,
    ) -> Self {
        Self {
            endpoint,
            issuer,
            client_id,
            client_secret,
            auth: ClientAuth::default(),
            resource: None,
            audience: None,
            scope: None,
            margin: DEFAULT_EXCHANGE_MARGIN,
            capacity: 10_000,
            fetch: FetchOptions::default(),
        }
    }

    /// Takes only the tokens of `issuer` (an [`ExchangeLayer`] with several
    /// exchanges picks the one of the token's issuer).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// The upstream's resource URI, sent as `resource` (RFC 8707).
    pub fn resource(mut self, uri: impl Into<String>) -> Self {
        self.resource = Some(uri.into());
        self
    }

    /// The upstream's logical name, sent as `audience`.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// The scope to ask for (within the subject token's).
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// How the client authenticates (default HTTP Basic).
    pub fn auth(mut self, auth: ClientAuth) -> Self {
        self.auth = auth;
        self
    }

    /// How long before its expiry an exchanged token stops being reused.
    pub fn margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    /// Timeouts and size caps of the calls.
    pub fn fetch_options(mut self, options: FetchOptions) -> Self {
        self.fetch = options;
        self
    }

    /// Checks the settings: an https (or loopback http) endpoint or issuer, a target.
    pub fn build(self) -> Result<TokenExchange, ConfigError> {
        if self.resource.is_none() && self.audience.is_none() {
            return Err(ConfigError::new(
                "a token exchange needs the upstream: set resource or audience",
            ));
        }
        let fetcher = Fetcher::new(&self.fetch)?;
        let target = match self.endpoint {
            Endpoint::Fixed(endpoint) => {
                uri::check_url(&endpoint, "token endpoint")?;
                Target::Fixed(endpoint)
            }
            Endpoint::Issuer(issuer) => {
                uri::check_url(&issuer, "issuer")?;
                let discovered = fetcher.for_discovered(&issuer)?;
                Target::Discovered(Discovery::new(
                    issuer,
                    fetcher.clone(),
                    discovered,
                    JwksOptions::default(),
                    Transport::HttpsOrLoopback,
                ))
            }
        };
        let cache = moka::future::Cache::builder()
            .max_capacity(self.capacity)
            .time_to_live(Duration::from_secs(3600))
            .build();
        Ok(TokenExchange(Arc::new(Inner {
            target,
            issuer: self.issuer,
            client_id: self.client_id,
            client_secret: self.client_secret,
            auth: self.auth,
            resource: self.resource,
            audience: self.audience,
            scope: self.scope,
            margin: self.margin,
            fetcher,
            cache,
        })))
    }
}
