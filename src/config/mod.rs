//! A gateway's configuration as data: the serde types of the file that
//! `mcp-gatekeeper-proxy` reads (TOML there; any serde format here), mapped onto
//! [`ResourceServer`](crate::ResourceServer) and [`ExchangeLayer`](crate::ExchangeLayer)
//! by [`GatewayConfig::resource_server`] and [`GatewayConfig::exchange_layer`], so
//! that a Rust gateway can load the same file.
//!
//! Secrets are never values of the file: each is a [`Secret`], read from an
//! environment variable or a file when the configuration is mapped. Every check names
//! the key it is about (`servers.alpha.upstream`) and the fix.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use mcp_gatekeeper::config::GatewayConfig;
//!
//! let config: GatewayConfig = serde_json::from_value(serde_json::json!({
//!     "proxy": { "listen": "127.0.0.1:8080", "public_url": "https://mcp.example.com" },
//!     "issuers": [{ "issuer": "https://idp.example.com" }],
//!     "servers": {
//!         "notes": {
//!             "upstream": "http://127.0.0.1:9000/mcp",
//!             "scopes": ["mcp:read"],
//!             "tools": { "write*": ["mcp:write"] }
//!         }
//!     }
//! }))?;
//! config.validate()?;
//! assert_eq!(
//!     config.resource_uri("notes").as_deref(),
//!     Some("https://mcp.example.com/servers/notes/mcp")
//! );
//! let gatekeeper = config.resource_server("notes")?;
//! assert!(gatekeeper.resource().fixed_uri().is_some());
//! # Ok(())
//! # }
//! ```

mod build;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// The whole file: how the gateway listens, whom it trusts, and the MCP servers
/// behind it (`/servers/{id}/mcp` each).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// How the gateway listens and forwards.
    #[serde(default)]
    pub proxy: ProxySettings,
    /// The trusted issuers (at least one).
    #[serde(default)]
    pub issuers: Vec<IssuerConfig>,
    /// The MCP servers behind the gateway, by id (letters, digits, `-`, `_`): each is
    /// served at `/servers/{id}/mcp`.
    #[serde(default)]
    pub servers: BTreeMap<String, ServerConfig>,
}

/// How the gateway listens and forwards (`[proxy]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxySettings {
    /// The address to listen on (default `127.0.0.1:8080`).
    pub listen: String,
    /// The origin clients connect to, e.g. `https://mcp.example.com` behind a load
    /// balancer (default `http://` and the listen address): the resource URIs are
    /// made of it.
    pub public_url: Option<String>,
    /// How long to wait for a connection to an upstream (default 5 s); then `504`.
    pub connect_timeout_seconds: u64,
    /// How long to wait for an upstream's response head (default 300 s; `0` waits
    /// for ever); then `504`. An upstream that answers JSON (not SSE) sends its head
    /// only when the tool is done, so this caps a tool call. An open SSE stream has no
    /// timeout.
    pub first_byte_timeout_seconds: u64,
    /// After SIGTERM, how long open requests and SSE streams may go on (default 30 s).
    pub shutdown_grace_seconds: u64,
    /// Where the audit trail ([`crate::audit`]) goes, one JSON object per request:
    /// a file (appended) or `-` for standard output (default: nowhere).
    pub audit_log: Option<String>,
    /// Where Prometheus metrics ([`crate::metrics`]) are served, at `GET /metrics`:
    /// an address of their own such as `127.0.0.1:9464` (default: not served).
    pub metrics: Option<String>,
}

impl Default for ProxySettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            public_url: None,
            connect_timeout_seconds: 5,
            first_byte_timeout_seconds: 300,
            shutdown_grace_seconds: 30,
            audit_log: None,
            metrics: None,
        }
    }
}

/// A trusted issuer (`[[issuers]]`), mapped onto [`Issuer`](crate::Issuer).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The issuer identifier, exactly as its tokens' `iss`.
    pub issuer: String,
    /// The JWKS URL, when it is not to be discovered.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Whether keys (and endpoints) are discovered from the issuer's metadata
    /// (default `true`).
    #[serde(default = "yes")]
    pub discovery: bool,
    /// The JWS algorithms accepted (default: the asymmetric ones the keys allow).
    #[serde(default)]
    pub algorithms: Vec<String>,
    /// Opaque tokens of this issuer by RFC 7662 introspection.
    #[serde(default)]
    pub introspection: Option<IntrospectionConfig>,
    /// DPoP-bound tokens (RFC 9449): `"allowed"` or `"required"`.
    #[serde(default)]
    pub dpop: Option<DpopMode>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds.
    #[serde(default)]
    pub leeway_seconds: Option<u64>,
    /// Insist on RFC 9068 access tokens (`typ: at+jwt` and its claims).
    #[serde(default)]
    pub strict_rfc9068: bool,
    /// Plain `http` to this issuer off loopback (a network trusted by other means).
    #[serde(default)]
    pub allow_insecure_http: bool,
}

fn yes() -> bool {
    true
}

/// RFC 7662 introspection of an issuer's opaque tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionConfig {
    /// The gateway's client id at the issuer.
    pub client_id: String,
    /// Its secret.
    pub client_secret: Secret,
    /// The endpoint, when it is not the one the issuer's metadata names.
    #[serde(default)]
    pub endpoint: Option<String>,
}

/// How an issuer's DPoP-bound tokens are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DpopMode {
    /// DPoP-bound tokens with proofs, and Bearer tokens.
    Allowed,
    /// Only DPoP-bound tokens.
    Required,
}

/// A secret: from an environment variable (`{ env = "NAME" }`) or a file
/// (`{ file = "/run/secrets/name" }`, its content without the final newline), never
/// written in the configuration itself.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "SecretForm")]
pub enum Secret {
    /// The value of this environment variable.
    Env(String),
    /// The content of this file.
    File(PathBuf),
    /// A value the program put here ([`GatewayConfig::resolve_secrets`]); never read
    /// from a file.
    Value(String),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Env(name) => f.debug_tuple("Env").field(name).finish(),
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
            Self::Value(_) => f.write_str("Value(<redacted>)"),
        }
    }
}

/// What a [`Secret`] may be written as, before it is checked.
#[derive(Deserialize)]
#[serde(untagged)]
enum SecretForm {
    // A value written in the file: refused, and so never read.
    Inline(#[allow(dead_code)] String),
    Source {
        #[serde(default)]
        env: Option<String>,
        #[serde(default)]
        file: Option<PathBuf>,
    },
}

impl TryFrom<SecretForm> for Secret {
    type Error = String;

    fn try_from(form: SecretForm) -> Result<Self, String> {
        match form {
            SecretForm::Inline(_) => Err("a secret is not written in the configuration: \
                 use { env = \"VARIABLE\" } or { file = \"/path/to/secret\" }"
                .into()),
            SecretForm::Source {
                env: Some(name),
                file: None,
            } if !name.is_empty() => Ok(Self::Env(name)),
            SecretForm::Source {
                env: None,
                file: Some(path),
            } => Ok(Self::File(path)),
            SecretForm::Source { .. } => {
                Err("a secret is either { env = \"VARIABLE\" } or { file = \"/path\" }".into())
            }
        }
    }
}

/// An MCP server behind the gateway (`[servers.{id}]`): where it is, its protected
/// resource, and its scope rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// The upstream's MCP endpoint, an `http://` URL (e.g. a sidecar on loopback).
    pub upstream: String,
    /// The resource URI clients use (default: the public URL and
    /// `/servers/{id}/mcp`).
    #[serde(default)]
    pub resource: Option<String>,
    /// The issuers (of `issuers`) this server trusts (default all).
    #[serde(default)]
    pub issuers: Option<Vec<String>>,
    /// Scopes every request needs unless a rule below says otherwise.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Scopes per tool name pattern (`"write*" = ["mcp:write"]`).
    #[serde(default)]
    pub tools: BTreeMap<String, Vec<String>>,
    /// More scopes to list in the metadata's `scopes_supported`.
    #[serde(default)]
    pub scopes_supported: Vec<String>,
    /// JSON-RPC methods that need no token (e.g. `tools/list`).
    #[serde(default)]
    pub public_methods: Vec<String>,
    /// Tools whose calls need no token.
    #[serde(default)]
    pub public_tools: Vec<String>,
    /// Leave out of `tools/list` the tools the caller may not call.
    #[serde(default)]
    pub filter_tools: bool,
    /// `insufficient_scope` challenges also name the scopes the token has.
    #[serde(default)]
    pub challenge_granted_scopes: bool,
    /// The `401` challenge names every supported scope.
    #[serde(default)]
    pub challenge_all_scopes: bool,
    /// Browser origins whose pages may call this server (the resource's own may).
    #[serde(default)]
    pub allow_origins: Vec<String>,
    /// Also accept tokens whose `aud` is one of these OAuth client ids (IdPs without
    /// RFC 8707 resource indicators, seed 001).
    #[serde(default)]
    pub accept_client_ids: Vec<String>,
    /// Accept tokens without `aud` (IdPs that ignore `resource`, seed 000). Any
    /// token of the trusted issuers then opens this server.
    #[serde(default)]
    pub allow_missing_audience: bool,
    /// The resource's human-readable name in its metadata.
    #[serde(default)]
    pub resource_name: Option<String>,
    /// DPoP proofs must carry a server nonce (RFC 9449 §9).
    #[serde(default)]
    pub dpop_nonces: bool,
    /// The nonces' secret, shared by replicas (default: one made at start).
    #[serde(default)]
    pub dpop_nonce_secret: Option<Secret>,
    /// What the gateway sends the upstream in place of the client's token.
    #[serde(default)]
    pub credentials: Credentials,
}

/// What the gateway sends an upstream in place of the client's credentials, which
/// never go on (`[servers.{id}.credentials]`, `kind = ...`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Credentials {
    /// Nothing (the upstream trusts the gateway's network).
    #[default]
    None,
    /// One header with a secret value, e.g. an API key.
    Header {
        /// The header's name (default `authorization`).
        #[serde(default = "authorization")]
        name: String,
        /// Its value.
        value: Secret,
    },
    /// An RFC 8693 token exchange of the verified token for one of the upstream.
    Exchange(ExchangeConfig),
}

fn authorization() -> String {
    "authorization".into()
}

/// An RFC 8693 token exchange for an upstream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeConfig {
    /// The gateway's client id at the issuers.
    pub client_id: String,
    /// Its secret.
    pub client_secret: Secret,
    /// The issuer whose tokens are exchanged (needed when the server trusts several;
    /// the others' tokens are then answered `502`, and the client secret never goes
    /// to them).
    #[serde(default)]
    pub issuer: Option<String>,
    /// The token endpoint (default: the issuer's, from its metadata).
    #[serde(default)]
    pub token_endpoint: Option<String>,
    /// The `resource` asked for (default: the upstream URL).
    #[serde(default)]
    pub resource: Option<String>,
    /// The `audience` asked for.
    #[serde(default)]
    pub audience: Option<String>,
    /// The `scope` asked for.
    #[serde(default)]
    pub scope: Option<String>,
    /// Client authentication: `"client_secret_basic"` (default) or
    /// `"client_secret_post"`.
    #[serde(default)]
    pub auth: Option<String>,
}
