//! [`TokenReviewVerifier`]: Kubernetes service-account tokens checked by the API
//! server's TokenReview API (`authentication.k8s.io/v1`) with the configured
//! audiences (R-ISS-2). Feature `kubernetes`.
//!
//! The reviewer authenticates with a service-account token (re-read from its file on
//! every call, since kubelet rotates it) and trusts the cluster CA. The reviewed
//! user's name, uid, groups and extra become the principal; results are cached like
//! introspection results.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};
use tokio::sync::OnceCell;

use super::cache::{ResultCache, Verified, ttl_until};
use super::{CacheFuture, TokenCacheOptions, TokenCacheUsage};
use super::{TokenVerifier, VerifyFuture};
use crate::bearer::BearerToken;
use crate::error::{AuthError, ConfigError};
use crate::fetch::{FetchOptions, Fetcher};
use crate::principal::{Principal, TokenKind};
use crate::rule::Rule;
use crate::uri;

const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

#[derive(Clone, Debug)]
enum Secret {
    Value(String),
    File(PathBuf),
}

#[derive(Clone, Debug)]
enum Ca {
    System,
    Pem(Vec<u8>),
    File(PathBuf),
}

/// Settings of the Kubernetes TokenReview verifier.
///
/// ```
/// use mcp_gatekeeper::TokenReview;
///
/// // Inside a pod: API server, token and CA from the usual in-cluster places.
/// let review = TokenReview::in_cluster("https://kubernetes.default.svc.cluster.local")
///     .audiences(["https://mcp.example.com/mcp"]);
/// ```
#[derive(Clone)]
pub struct TokenReview {
    api_server: String,
    issuer: String,
    audiences: Vec<String>,
    token: Secret,
    ca: Ca,
    cache: TokenCacheOptions,
    fetch: FetchOptions,
}

impl std::fmt::Debug for TokenReview {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReview")
            .field("api_server", &self.api_server)
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("ca", &self.ca)
            .finish_non_exhaustive()
    }
}

impl TokenReview {
    /// Reviews tokens whose (unverified) `iss` is `issuer` — the cluster's
    /// service-account issuer — at `api_server`, authenticated with the token in
    /// `token_file`.
    pub fn new(api_server: impl Into<String>, issuer: impl Into<String>) -> Self {
        Self {
            api_server: api_server.into(),
            issuer: issuer.into(),
            audiences: Vec::new(),
            token: Secret::File(PathBuf::from(SERVICE_ACCOUNT_DIR).join("token")),
            ca: Ca::System,
            cache: TokenCacheOptions {
                max_ttl: Duration::from_secs(60),
                ..TokenCacheOptions::default()
            },
            fetch: FetchOptions::default(),
        }
    }

    /// The in-cluster defaults: the API server from `KUBERNETES_SERVICE_HOST` and
    /// `KUBERNETES_SERVICE_PORT` (else `https://kubernetes.default.svc`), the pod's
    /// service-account token and the cluster CA from their usual files.
    pub fn in_cluster(issuer: impl Into<String>) -> Self {
        let host = std::env::var("KUBERNETES_SERVICE_HOST").ok();
        let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
        let api_server = match host {
            Some(host) if host.contains(':') => format!("https://[{host}]:{port}"),
            Some(host) => format!("https://{host}:{port}"),
            None => "https://kubernetes.default.svc".into(),
        };
        let mut review = Self::new(api_server, issuer);
        review.ca = Ca::File(PathBuf::from(SERVICE_ACCOUNT_DIR).join("ca.crt"));
        review
    }

    /// The audiences the token must have been issued for (sent in the review).
    pub fn audiences<I, T>(mut self, audiences: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.audiences = audiences.into_iter().map(Into::into).collect();
        self
    }

    /// Authenticates the reviews with this token instead of a token file.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.token = Secret::Value(token.into());
        self
    }

    /// Authenticates the reviews with the token in this file (re-read on each call).
    pub fn token_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.token = Secret::File(path.into());
        self
    }

    /// Trusts this PEM CA certificate for the API server.
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca = Ca::Pem(pem.into());
        self
    }

    /// Trusts the PEM CA certificate in this file (read on first use).
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca = Ca::File(path.into());
        self
    }

    /// The longest a review is reused (never past the token's `exp`). Default 60 s;
    /// zero turns the cache off. Same as setting [`TokenCacheOptions::max_ttl`].
    pub fn max_cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache.max_ttl = ttl;
        self
    }

    /// The bounds of the review cache (entries, bytes, time-to-live);
    /// [`TokenCacheOptions::disabled`] reviews every request.
    pub fn cache(mut self, options: TokenCacheOptions) -> Self {
        self.cache = options;
        self
    }

    /// Timeouts and size cap of the review call.
    pub fn fetch_options(mut self, options: FetchOptions) -> Self {
        self.fetch = options;
        self
    }

    /// The issuer whose tokens are reviewed.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }
}

struct Inner {
    config: TokenReview,
    /// The issuer as a `'static` label for the audit record and metrics.
    label: &'static str,
    fetcher: OnceCell<Fetcher>,
    cache: ResultCache,
}

/// Verifies Kubernetes tokens by TokenReview. Cheap to clone.
#[derive(Clone)]
pub struct TokenReviewVerifier(Arc<Inner>);

impl std::fmt::Debug for TokenReviewVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TokenReviewVerifier")
            .field(&self.0.config)
            .finish()
    }
}

impl TokenReviewVerifier {
    /// A verifier for `config`. Checks it; does no I/O (a CA file is read on first use).
    pub fn new(config: TokenReview) -> Result<Self, ConfigError> {
        uri::check_url(&config.api_server, "Kubernetes API server")?;
        if config.issuer.is_empty() {
            return Err(ConfigError::new(
                "TokenReview needs the cluster's service-account issuer, to know which tokens to review",
            ));
        }
        let fetcher = OnceCell::new();
        match &config.ca {
            Ca::System => {
                let _ = fetcher.set(Fetcher::new(&config.fetch)?);
            }
            Ca::Pem(pem) => {
                let _ = fetcher.set(Fetcher::with_root_certificate(&config.fetch, Some(pem))?);
            }
            Ca::File(_) => {}
        }
        Ok(Self(Arc::new(Inner {
            cache: ResultCache::new(config.cache, "token_review"),
            label: crate::metrics::intern(&config.issuer),
            config,
            fetcher,
        })))
    }

    fn unavailable(&self, why: &str) -> AuthError {
        AuthError::unavailable(Duration::from_secs(2), why.to_owned())
    }

    async fn fetcher(&self) -> Result<&Fetcher, AuthError> {
        self.0
            .fetcher
            .get_or_try_init(|| async {
                let Ca::File(path) = &self.0.config.ca else {
                    return Err(AuthError::misconfigured("TokenReview has no HTTP client"));
                };
                let pem = tokio::fs::read(path).await.map_err(|e| {
                    tracing::error!(path = %path.display(), "cannot read the cluster CA: {e}");
                    self.unavailable("the Kubernetes API server cannot be reached")
                })?;
                Fetcher::with_root_certificate(&self.0.config.fetch, Some(&pem)).map_err(|e| {
                    tracing::error!(path = %path.display(), "{e}");
                    self.unavailable("the Kubernetes API server cannot be reached")
                })
            })
            .await
    }

    async fn reviewer_token(&self) -> Result<String, AuthError> {
        match &self.0.config.token {
            Secret::Value(token) => Ok(token.clone()),
            Secret::File(path) => tokio::fs::read_to_string(path)
                .await
                .map(|t| t.trim().to_owned())
                .map_err(|e| {
                    tracing::error!(path = %path.display(), "cannot read the service-account token: {e}");
                    self.unavailable("the Kubernetes API server cannot be reached")
                }),
        }
    }

    /// Asks the API server to review `token` for the configured audiences; its answer,
    /// read as JSON.
    async fn request_review(&self, token: &str) -> Result<Value, AuthError> {
        let config = &self.0.config;
        let mut spec = json!({ "token": token });
        if !config.audiences.is_empty() {
            spec["audiences"] = json!(config.audiences);
        }
        let body = json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": spec,
        });
        let url = format!(
            "{}/apis/authentication.k8s.io/v1/tokenreviews",
            config.api_server.trim_end_matches('/')
        );
        let authorization = format!("Bearer {}", self.reviewer_token().await?);
        let fetched = self
            .fetcher()
            .await?
            .post_json(&url, body.to_string().into_bytes(), Some(&authorization))
            .await
            .map_err(|error| match &error {
                crate::fetch::FetchError::Status(401 | 403, _) => {
                    AuthError::misconfigured(format!(
                        "the Kubernetes API server at {} refused this server's TokenReview \
                     (check its token and the system:auth-delegator role)",
                        config.api_server
                    ))
                }
                _ => {
                    tracing::warn!(api_server = %config.api_server, "TokenReview failed: {error}");
                    self.unavailable("the Kubernetes API server could not review the token")
                }
            })?;
        serde_json::from_slice(&fetched.body)
            .map_err(|_| self.unavailable("the Kubernetes API server answered nonsense"))
    }

    /// Reviews `token`: the claims of the user the API server authenticated it as, to
    /// be reused no longer than the token's `exp` or the cache's `max_ttl`.
    async fn review(&self, token: &str) -> Result<Arc<Verified>, AuthError> {
        let config = &self.0.config;
        let answer = self.request_review(token).await?;
        let status = &answer["status"];
        let audiences = authenticated_audiences(status, config)?;
        let mut claims = user_claims(&status["user"]);
        claims.insert("aud".into(), Value::Array(audiences));
        let exp = unverified_exp(token);
        if let Some(exp) = &exp {
            claims.insert("exp".into(), exp.clone());
        }
        let ttl = ttl_until(exp.as_ref(), config.cache.max_ttl)?;
        Ok(Arc::new(Verified { claims, ttl }))
    }

    async fn verify_owned(self, token: BearerToken) -> Result<Principal, AuthError> {
        let this = self.clone();
        let call = async { this.review(token.as_str()).await };
        let verified = self.0.cache.get_or_verify(token.as_str(), call).await?;
        crate::audit::verified(&self.0.config.issuer, self.0.label, "token-review", None);
        Ok(Principal::from_claims(
            TokenKind::TokenReview,
            self.0.config.issuer.clone(),
            verified.claims.clone(),
        ))
    }
}

/// The audiences a review's `status` gives the token, if it authenticated the token
/// and, when `config` has audiences, for one of them.
fn authenticated_audiences(status: &Value, config: &TokenReview) -> Result<Vec<Value>, AuthError> {
    if status["authenticated"] != Value::Bool(true) {
        if let Some(error) = status["error"].as_str() {
            tracing::info!("TokenReview refused the token: {error}");
        }
        return Err(AuthError::invalid_token(
            Rule::Iss2,
            "the Kubernetes API server did not authenticate the token",
        ));
    }
    let audiences = status["audiences"].as_array().cloned().unwrap_or_default();
    if !config.audiences.is_empty()
        && !audiences.iter().any(|a| {
            a.as_str()
                .is_some_and(|a| config.audiences.iter().any(|c| c == a))
        })
    {
        return Err(AuthError::invalid_token(
            Rule::Iss2,
            "the token is not for this server's audiences",
        ));
    }
    Ok(audiences)
}

/// The claims of the reviewed `user`: `sub` and `username` (its name), `uid`,
/// `groups` and `extra`.
fn user_claims(user: &Value) -> Map<String, Value> {
    let mut claims = Map::new();
    claims.insert("sub".into(), user["username"].clone());
    claims.insert("username".into(), user["username"].clone());
    claims.insert("uid".into(), user["uid"].clone());
    claims.insert(
        "groups".into(),
        user.get("groups").cloned().unwrap_or_else(|| json!([])),
    );
    claims.insert(
        "extra".into(),
        user.get("extra").cloned().unwrap_or_else(|| json!({})),
    );
    claims
}

/// The `exp` a JWT-shaped token claims, read without verification: it only ever
/// shortens how long the API server's answer is reused.
fn unverified_exp(token: &str) -> Option<Value> {
    let [_, payload, _] = super::jwt::segments(token)?;
    let claims: Map<String, Value> =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    claims.get("exp").filter(|e| e.is_u64()).cloned()
}

impl TokenVerifier for TokenReviewVerifier {
    fn verify(&self, token: &BearerToken) -> VerifyFuture {
        VerifyFuture::pending(self.clone().verify_owned(token.clone()))
    }

    fn forget(&self, token: &str) -> CacheFuture<()> {
        self.0.cache.forget(token)
    }

    fn cache_usage(&self) -> CacheFuture<TokenCacheUsage> {
        self.0.cache.usage()
    }
}
