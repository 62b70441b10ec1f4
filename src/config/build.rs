//! The mapping of a [`GatewayConfig`] onto the builders, with the checks that name
//! the key at fault and the fix.

use std::str::FromStr as _;

use super::{Credentials, DpopMode, ExchangeConfig, GatewayConfig, IssuerConfig, Secret};
use super::{IntrospectionConfig, ServerConfig};
use crate::error::ConfigError;
use crate::{
    Algorithm, AudiencePolicy, ClientAuth, Dpop, DpopNonces, ExchangeLayer, Introspection, Issuer,
    McpScopes, ResourceServer, SenderChecks, TokenExchange,
};

/// The paths the gateway answers itself (`/healthz`, `/readyz`).
pub const RESERVED_PATHS: [&str; 2] = ["/healthz", "/readyz"];

/// Headers a static upstream credential may not be: the gateway sets them, or they
/// go one hop only (RFC 9110 §7.6.1).
const GATEWAY_HEADERS: [&str; 14] = [
    "host",
    "connection",
    "content-length",
    "transfer-encoding",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
    "dpop",
    "via",
    "x-real-ip",
];

/// A [`ConfigError`] about `key`.
fn at(key: &str, message: impl std::fmt::Display) -> ConfigError {
    ConfigError::new(format!("{key}: {message}"))
}

impl Secret {
    /// The secret's value; `key` names it in the error.
    pub fn read(&self, key: &str) -> Result<String, ConfigError> {
        match self {
            Self::Value(value) => Ok(value.clone()),
            Self::Env(name) => env_value(name, std::env::var(name).ok(), key),
            Self::File(path) => match std::fs::read_to_string(path) {
                Ok(value) => {
                    let value = value.strip_suffix('\n').unwrap_or(&value);
                    let value = value.strip_suffix('\r').unwrap_or(value);
                    if value.is_empty() {
                        Err(at(key, format!("the file {} is empty", path.display())))
                    } else {
                        Ok(value.to_owned())
                    }
                }
                Err(error) => Err(at(
                    key,
                    format!("the file {} cannot be read ({error})", path.display()),
                )),
            },
        }
    }
}

/// The value of the environment variable `name`, which must be set and not empty.
fn env_value(name: &str, value: Option<String>, key: &str) -> Result<String, ConfigError> {
    match value {
        Some(value) if !value.is_empty() => Ok(value),
        Some(_) => Err(at(key, format!("the environment variable {name} is empty"))),
        None => Err(at(
            key,
            format!(
                "the environment variable {name} is not set: export it, or use {{ file = \"...\" }}"
            ),
        )),
    }
}

impl GatewayConfig {
    /// Reads every `{ env = "NAME" }` secret now, from `lookup` (the process's
    /// environment: `|name| std::env::var(name).ok()`), keeping the values in place;
    /// secrets in files are read when they are used.
    pub fn resolve_secrets(
        &mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        let mut secrets: Vec<(String, &mut Secret)> = Vec::new();
        for (i, issuer) in self.issuers.iter_mut().enumerate() {
            if let Some(introspection) = &mut issuer.introspection {
                secrets.push((
                    format!("issuers[{i}].introspection.client_secret"),
                    &mut introspection.client_secret,
                ));
            }
        }
        for (id, server) in &mut self.servers {
            if let Some(secret) = &mut server.dpop_nonce_secret {
                secrets.push((format!("servers.{id}.dpop_nonce_secret"), secret));
            }
            match &mut server.credentials {
                Credentials::Header { value, .. } => {
                    secrets.push((format!("servers.{id}.credentials.value"), value));
                }
                Credentials::Exchange(exchange) => secrets.push((
                    format!("servers.{id}.credentials.client_secret"),
                    &mut exchange.client_secret,
                )),
                Credentials::None => {}
            }
        }
        for (key, secret) in secrets {
            if let Secret::Env(name) = secret {
                *secret = Secret::Value(env_value(name, lookup(name), &key)?);
            }
        }
        Ok(())
    }

    /// Checks the whole configuration, mapping every server as the gateway would
    /// (secrets are read): the first mistake, naming its key and the fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check_proxy()?;
        if self.issuers.is_empty() {
            return Err(at(
                "issuers",
                "no issuer is trusted: add [[issuers]] with issuer = \"https://...\"",
            ));
        }
        for (i, issuer) in self.issuers.iter().enumerate() {
            if self.issuers[..i].iter().any(|o| o.issuer == issuer.issuer) {
                return Err(at(
                    &format!("issuers[{i}].issuer"),
                    format!("{:?} is listed twice", issuer.issuer),
                ));
            }
            issuer.to_issuer(&format!("issuers[{i}]"))?;
        }
        if self.servers.is_empty() {
            return Err(at(
                "servers",
                "no MCP server: add [servers.NAME] with upstream = \"http://...\"",
            ));
        }
        for id in self.servers.keys() {
            self.resource_server(id)?;
            self.exchange_layer(id)?;
            self.upstream_header(id)?;
        }
        self.check_routes()
    }

    /// The paths server `id` answers on: `/servers/{id}/mcp`, its resource's path, and
    /// its resource's RFC 9728 metadata path.
    pub fn route_paths(&self, id: &str) -> Result<Vec<String>, ConfigError> {
        let resource = self
            .resource_uri(id)
            .ok_or_else(|| at("servers", format!("there is no server {id:?}")))?;
        let mut paths = vec![
            format!("/servers/{id}/mcp"),
            crate::uri::path_of(&resource).to_owned(),
            crate::metadata_path(&resource),
        ];
        paths.dedup();
        Ok(paths)
    }

    /// Every path belongs to one server, and none is the gateway's own.
    fn check_routes(&self) -> Result<(), ConfigError> {
        let mut owners: std::collections::BTreeMap<String, &str> = Default::default();
        for id in self.servers.keys() {
            for path in self.route_paths(id)? {
                if RESERVED_PATHS.contains(&path.as_str()) || path == "/" {
                    return Err(at(
                        &format!("servers.{id}.resource"),
                        format!(
                            "its path {path} is the gateway's own: give the resource another path"
                        ),
                    ));
                }
                if let Some(other) = owners.insert(path.clone(), id)
                    && other != id
                {
                    return Err(at(
                        &format!("servers.{id}.resource"),
                        format!(
                            "its path {path} is server {other}'s too (the gateway routes by path, \
                             not by host): give each server a resource of its own path"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_proxy(&self) -> Result<(), ConfigError> {
        if self.proxy.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(at(
                "proxy.listen",
                format!(
                    "{:?} is not an address: write IP:PORT, e.g. \"127.0.0.1:8080\"",
                    self.proxy.listen
                ),
            ));
        }
        if let Some(metrics) = &self.proxy.metrics
            && metrics.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(at(
                "proxy.metrics",
                format!("{metrics:?} is not an address: write IP:PORT, e.g. \"127.0.0.1:9464\""),
            ));
        }
        if self.proxy.metrics.is_some() && self.proxy.metrics == Some(self.proxy.listen.clone()) {
            return Err(at(
                "proxy.metrics",
                "the metrics need an address of their own, not proxy.listen's",
            ));
        }
        if self.proxy.audit_log.as_deref() == Some("") {
            return Err(at(
                "proxy.audit_log",
                "an empty path: give a file to append to, or \"-\" for standard output",
            ));
        }
        if self.proxy.connect_timeout_seconds == 0 {
            return Err(at(
                "proxy.connect_timeout_seconds",
                "0 would refuse every connection: give at least 1 second",
            ));
        }
        if let Some(url) = &self.proxy.public_url {
            let (origin, path) = crate::uri::split_origin(url);
            if !(origin.starts_with("https://") || origin.starts_with("http://"))
                || !matches!(path, "" | "/")
            {
                return Err(at(
                    "proxy.public_url",
                    format!(
                        "{url:?} is not an origin: write scheme and host only, e.g. \"https://mcp.example.com\""
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The public origin (no trailing slash).
    fn public_url(&self) -> String {
        match &self.proxy.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.proxy.listen),
        }
    }

    /// Server `id`'s resource URI: its `resource`, else the public URL and
    /// `/servers/{id}/mcp`. `None` when there is no such server.
    pub fn resource_uri(&self, id: &str) -> Option<String> {
        let server = self.servers.get(id)?;
        Some(match &server.resource {
            Some(resource) => resource.clone(),
            None => format!("{}/servers/{id}/mcp", self.public_url()),
        })
    }

    fn server(&self, id: &str) -> Result<&ServerConfig, ConfigError> {
        self.servers
            .get(id)
            .ok_or_else(|| at("servers", format!("there is no server {id:?}")))
    }

    /// The issuers server `id` trusts.
    fn server_issuers(&self, id: &str) -> Result<Vec<(usize, &IssuerConfig)>, ConfigError> {
        let server = self.server(id)?;
        let Some(names) = &server.issuers else {
            return Ok(self.issuers.iter().enumerate().collect());
        };
        names
            .iter()
            .map(|name| {
                self.issuers
                    .iter()
                    .enumerate()
                    .find(|(_, i)| &i.issuer == name)
                    .ok_or_else(|| {
                        at(
                            &format!("servers.{id}.issuers"),
                            format!(
                                "{name:?} is not one of [[issuers]]: add it there, or fix the name"
                            ),
                        )
                    })
            })
            .collect()
    }

    /// Server `id`'s upstream URL, checked to be an absolute `http://` URL.
    pub fn upstream_uri(&self, id: &str) -> Result<http::Uri, ConfigError> {
        let server = self.server(id)?;
        check_upstream(&server.upstream, &format!("servers.{id}.upstream"))
    }

    /// Server `id`'s scope rules: `scopes` for every request, `tools` per tool name
    /// pattern, `public_methods` and `public_tools` without a token.
    pub fn scope_rules(&self, id: &str) -> Result<McpScopes, ConfigError> {
        let server = self.server(id)?;
        let mut rules = McpScopes::new(&server.scopes).public(&server.public_methods);
        for (pattern, scopes) in &server.tools {
            rules = rules.tool(pattern, scopes);
        }
        for tool in &server.public_tools {
            rules = rules.public_tool(tool);
        }
        Ok(rules)
    }

    /// Server `id`'s audience policy: its resource, the `accept_client_ids`, and a
    /// missing `aud` when `allow_missing_audience` says so.
    pub fn audience_policy(&self, id: &str) -> Result<AudiencePolicy, ConfigError> {
        let server = self.server(id)?;
        let policy = AudiencePolicy::resource().accept_client_ids(&server.accept_client_ids);
        Ok(match server.allow_missing_audience {
            true => policy.allow_missing_audience(),
            false => policy,
        })
    }

    /// Server `id`'s gatekeeper: its resource, the issuers it trusts, its audience and
    /// scope rules.
    pub fn resource_server(&self, id: &str) -> Result<ResourceServer, ConfigError> {
        let server = self.server(id)?;
        let key = format!("servers.{id}");
        if id.is_empty()
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(at(
                &key,
                "a server id uses letters, digits, '-' and '_' only (it is a path segment)",
            ));
        }
        self.upstream_uri(id)?;
        let resource = self.resource_uri(id).unwrap_or_default();
        let rules = self.scope_rules(id)?;
        let audience = self.audience_policy(id)?;
        let mut builder = ResourceServer::builder(&resource)
            .mcp_scopes(rules)
            .scopes_supported(&server.scopes_supported)
            .audience(audience)
            .filter_tools(server.filter_tools)
            .challenge_granted_scopes(server.challenge_granted_scopes)
            .challenge_all_scopes(server.challenge_all_scopes);
        if let Some(name) = &server.resource_name {
            builder = builder.resource_name(name);
        }
        for origin in &server.allow_origins {
            builder = builder.allow_origin(origin);
        }
        if server.dpop_nonces {
            builder = builder.sender_checks(SenderChecks::new().nonces(nonces(server, &key)?));
        }
        for (i, issuer) in self.server_issuers(id)? {
            builder = builder.issuer(issuer.to_issuer(&format!("issuers[{i}]"))?);
        }
        builder.build().map_err(|e| at(&key, e.message()))
    }

    /// Server `id`'s token exchange, when its credentials are `kind = "exchange"`: the
    /// tokens of one issuer (`issuer`, or the one the server trusts) exchanged at the
    /// configured token endpoint or the one its metadata names.
    pub fn exchange_layer(&self, id: &str) -> Result<Option<ExchangeLayer>, ConfigError> {
        let server = self.server(id)?;
        let Credentials::Exchange(exchange) = &server.credentials else {
            return Ok(None);
        };
        let key = format!("servers.{id}.credentials");
        let trusted = self.server_issuers(id)?;
        let issuer = match (&exchange.issuer, trusted.as_slice()) {
            (Some(name), _) => trusted
                .iter()
                .find(|(_, i)| &i.issuer == name)
                .map(|(_, i)| i.issuer.clone())
                .ok_or_else(|| {
                    at(
                        &format!("{key}.issuer"),
                        format!("{name:?} is not an issuer this server trusts"),
                    )
                })?,
            (None, [(_, only)]) => only.issuer.clone(),
            (None, _) => {
                return Err(at(
                    &format!("{key}.issuer"),
                    "the server trusts several issuers: name the one whose tokens are exchanged \
                     (the client secret goes to it alone; the others' tokens get 502)",
                ));
            }
        };
        let secret = exchange
            .client_secret
            .read(&format!("{key}.client_secret"))?;
        let builder = match &exchange.token_endpoint {
            Some(endpoint) => {
                TokenExchange::builder(endpoint, &exchange.client_id, &secret).issuer(&issuer)
            }
            None => TokenExchange::discover(&issuer, &exchange.client_id, &secret),
        };
        let built = self.exchange(builder, exchange, server, &key)?;
        Ok(Some(ExchangeLayer::new(built)))
    }

    fn exchange(
        &self,
        mut builder: crate::TokenExchangeBuilder,
        exchange: &ExchangeConfig,
        server: &ServerConfig,
        key: &str,
    ) -> Result<TokenExchange, ConfigError> {
        builder = builder.resource(exchange.resource.as_deref().unwrap_or(&server.upstream));
        if let Some(audience) = &exchange.audience {
            builder = builder.audience(audience);
        }
        if let Some(scope) = &exchange.scope {
            builder = builder.scope(scope);
        }
        builder = match exchange.auth.as_deref() {
            None | Some("client_secret_basic") => builder.auth(ClientAuth::ClientSecretBasic),
            Some("client_secret_post") => builder.auth(ClientAuth::ClientSecretPost),
            Some(other) => {
                return Err(at(
                    &format!("{key}.auth"),
                    format!(
                        "{other:?} is not a client authentication: use \"client_secret_basic\" or \"client_secret_post\""
                    ),
                ));
            }
        };
        builder.build().map_err(|e| at(key, e.message()))
    }

    /// Server `id`'s static upstream header, when its credentials are
    /// `kind = "header"`: the name and the secret value.
    pub fn upstream_header(
        &self,
        id: &str,
    ) -> Result<Option<(http::HeaderName, http::HeaderValue)>, ConfigError> {
        let server = self.server(id)?;
        let Credentials::Header { name, value } = &server.credentials else {
            return Ok(None);
        };
        let key = format!("servers.{id}.credentials");
        let header = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            at(
                &format!("{key}.name"),
                format!("{name:?} is not a header name"),
            )
        })?;
        if GATEWAY_HEADERS.contains(&header.as_str()) || header.as_str().starts_with("x-forwarded-")
        {
            return Err(at(
                &format!("{key}.name"),
                format!(
                    "{name:?} is set by the gateway itself or goes one hop only; name another header"
                ),
            ));
        }
        let mut value = http::HeaderValue::from_str(&value.read(&format!("{key}.value"))?)
            .map_err(|_| {
                at(
                    &format!("{key}.value"),
                    "the secret is not a header value (control characters?)",
                )
            })?;
        value.set_sensitive(true);
        Ok(Some((header, value)))
    }
}

/// An upstream must be an absolute `http://` URL.
fn check_upstream(url: &str, key: &str) -> Result<http::Uri, ConfigError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| at(key, format!("{url:?} is not a URL")))?;
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(at(
            key,
            "the upstream URL has user info: put credentials in [servers.ID.credentials], not in the URL",
        ));
    }
    if uri.query().is_some() {
        return Err(at(
            key,
            "the upstream URL has a query: the client's query is sent as it comes; put the upstream's settings in its path",
        ));
    }
    if uri.scheme_str() != Some("http") || uri.host().is_none() {
        return Err(at(
            key,
            format!(
                "{url:?}: the upstream is an http:// URL (e.g. \"http://127.0.0.1:9000/mcp\"); \
                 https upstreams are not supported, put the server on a private network or loopback"
            ),
        ));
    }
    Ok(uri)
}

/// The server's DPoP nonces: its secret, or one made now.
fn nonces(server: &ServerConfig, key: &str) -> Result<DpopNonces, ConfigError> {
    let nonce_key = format!("{key}.dpop_nonce_secret");
    match &server.dpop_nonce_secret {
        Some(secret) => DpopNonces::new(secret.read(&nonce_key)?),
        None => DpopNonces::random(),
    }
    .map_err(|e| at(&nonce_key, e.message()))
}

impl IssuerConfig {
    /// The [`Issuer`] this entry describes; `key` names the entry in errors (e.g.
    /// `issuers[0]`). Secrets are read.
    pub fn to_issuer(&self, key: &str) -> Result<Issuer, ConfigError> {
        issuer_of(self, key)
    }
}

/// One `[[issuers]]` entry as an [`Issuer`].
fn issuer_of(config: &IssuerConfig, key: &str) -> Result<Issuer, ConfigError> {
    let mut issuer = Issuer::new(&config.issuer).discovery(config.discovery);
    if let Some(uri) = &config.jwks_uri {
        issuer = issuer.jwks_uri(uri);
    }
    if !config.algorithms.is_empty() {
        let algorithms = config
            .algorithms
            .iter()
            .map(|name| {
                Algorithm::from_str(name).map_err(|_| {
                    at(
                        &format!("{key}.algorithms"),
                        format!("{name:?} is not a JWS algorithm (RS256, ES256, EdDSA, ...)"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        issuer = issuer.algorithms(algorithms);
    }
    if let Some(introspection) = &config.introspection {
        issuer = issuer.introspection(introspection_of(introspection, key)?);
    }
    issuer = match config.dpop {
        Some(DpopMode::Allowed) => issuer.dpop(Dpop::allowed()),
        Some(DpopMode::Required) => issuer.dpop(Dpop::required()),
        None => issuer,
    };
    if let Some(seconds) = config.leeway_seconds {
        issuer = issuer.leeway(std::time::Duration::from_secs(seconds));
    }
    issuer = issuer.strict_rfc9068(config.strict_rfc9068);
    if config.allow_insecure_http {
        issuer = issuer.allow_insecure_http();
    }
    if config.jwks_uri.is_none() && !config.discovery && config.introspection.is_none() {
        return Err(at(
            key,
            "with discovery = false, the issuer needs jwks_uri or introspection to verify tokens",
        ));
    }
    crate::uri::check_url_with(
        &config.issuer,
        "issuer",
        if config.allow_insecure_http {
            crate::uri::Transport::AnyHttp
        } else {
            crate::uri::Transport::HttpsOrLoopback
        },
    )
    .map_err(|e| at(&format!("{key}.issuer"), e.message()))?;
    Ok(issuer)
}

fn introspection_of(config: &IntrospectionConfig, key: &str) -> Result<Introspection, ConfigError> {
    let secret = config
        .client_secret
        .read(&format!("{key}.introspection.client_secret"))?;
    let mut introspection = Introspection::new(&config.client_id, secret);
    if let Some(endpoint) = &config.endpoint {
        introspection = introspection.endpoint(endpoint);
    }
    Ok(introspection)
}
