//! A real MCP server (rmcp, Streamable HTTP on axum) behind mcp-gatekeeper.
//!
//! ```text
//! cargo run --example mcp_server                      # embedded issuer, prints a token
//! cargo run --example mcp_server -- --issuer https://idp.example.com --resource https://mcp.example.com/mcp
//! ```
//!
//! Flags (a public contract, see the README):
//! - `--listen ADDR`   address to listen on (default `127.0.0.1:3000`);
//! - `--resource URL`  canonical resource URI (default `http://<listen address>/mcp`);
//! - `--issuer URL`    trust this issuer through lazy discovery (repeatable); without it
//!   an embedded in-process issuer is used, with keys generated at start;
//! - `--introspection-client-id ID`, `--introspection-client-secret SECRET`: opaque
//!   tokens of the issuers by introspection;
//! - `--filter-tools`  leave out of `tools/list` the tools the caller may not call;
//! - `--challenge-granted-scopes`  `insufficient_scope` challenges also name the scopes
//!   the token has, for clients that replace their scopes when they step up;
//! - `--challenge-all-scopes`  the `401` challenge names every supported scope, for
//!   clients that register with exactly the first challenge's scopes;
//! - `--allow-origin URL`  let the pages of this origin call the server (repeatable;
//!   the resource's own origin always may, any other browser origin gets 403);
//! - `--public METHOD`  requests of this JSON-RPC method need no token (repeatable,
//!   e.g. `server/discover`, `tools/list`); `--public-tool NAME` the same for calls of
//!   one tool; every other request without a token still gets the 401 challenge;
//! - `--dpop allowed|required`  accept DPoP-bound tokens (RFC 9449) of the trusted
//!   issuers, sent as `Authorization: DPoP <token>` with a proof: `allowed` also takes
//!   Bearer tokens, `required` only DPoP-bound ones; the embedded issuer then also
//!   prints a DPoP-bound token, its client's private key and a ready `curl` with a
//!   proof;
//! - `--dpop-nonces`  with `--dpop`: every proof must carry a server nonce (RFC 9449
//!   §9); the first request gets `401 use_dpop_nonce` and a `DPoP-Nonce` to retry with;
//! - `--cedar FILE`  (built with `--features cedar`) Cedar policies from FILE decide
//!   calls and filter `tools/list` too; the file is read again on `SIGHUP`;
//! - `--help`.
//!
//! Tools: `whoami` and `notes` need scope `mcp:read`, `write` needs `mcp:write`
//! (see `examples/common/notes.rs`); a call without the scope gets
//! `403 insufficient_scope` naming it, so clients can step up.

mod common;
#[path = "common/embedded.rs"]
mod embedded;
#[path = "common/notes.rs"]
mod notes;
#[path = "../tests/support/signing.rs"]
mod signing;

use std::fmt::Write as _;
use std::sync::Arc;

use mcp_gatekeeper::{
    Dpop, DpopNonces, Introspection, Issuer, ResourceServer, SenderChecks, metadata_path,
};
use rmcp::transport::streamable_http_server::StreamableHttpService;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;

const USAGE: &str = "\
usage: mcp_server [--listen ADDR] [--resource URL] [--issuer URL]...
                  [--introspection-client-id ID --introspection-client-secret SECRET]
                  [--filter-tools] [--challenge-granted-scopes] [--challenge-all-scopes]
                  [--allow-origin URL]... [--public METHOD]... [--public-tool NAME]...
                  [--dpop allowed|required [--dpop-nonces]] [--audit-log PATH]
                  [--metrics ADDR] [--cedar FILE]

  --listen ADDR    address to listen on (default 127.0.0.1:3000; port 0 picks one)
  --resource URL   canonical resource URI clients connect to (default http://ADDR/mcp)
  --issuer URL     trust this OAuth/OIDC issuer, keys by lazy discovery (repeatable);
                   without it an embedded issuer with in-process keys is used and a
                   ready-to-use access token is printed
  --introspection-client-id ID, --introspection-client-secret SECRET
                   also accept opaque tokens of the --issuer(s) by RFC 7662
                   introspection (endpoint from discovery), with these credentials
  --filter-tools   leave out of tools/list the tools the caller may not call
  --challenge-granted-scopes
                   insufficient_scope challenges also name the scopes the token has,
                   for clients that replace their scopes when they step up
  --challenge-all-scopes
                   the 401 challenge names every supported scope, for clients that
                   register with exactly the first challenge's scopes and cannot
                   step up beyond them
  --allow-origin URL
                   let the pages of this origin (e.g. http://localhost:6274) call the
                   server (repeatable); the resource's own origin always may, any
                   other browser origin is answered 403
  --public METHOD  requests of this JSON-RPC method (server/discover, initialize,
                   notifications/initialized, tools/list, ping, ...) need no token
                   (repeatable); any other request without one gets the 401
  --public-tool NAME
                   calls of this tool need no token (repeatable)
  --dpop allowed|required
                   accept DPoP-bound tokens (RFC 9449) of the trusted issuers, sent
                   as 'Authorization: DPoP <token>' with a DPoP proof; 'allowed' also
                   takes Bearer tokens, 'required' only DPoP-bound ones. The embedded
                   issuer then also prints a DPoP-bound token, the client key it is
                   bound to, and a curl command with a proof good for one call
  --dpop-nonces    with --dpop: DPoP proofs must carry a nonce of this server
                   (RFC 9449 section 9); a proof without one gets 401
                   use_dpop_nonce and a DPoP-Nonce header to retry with
  --metrics ADDR   serve Prometheus metrics (mcp_gatekeeper::metrics) at
                   http://ADDR/metrics (e.g. 127.0.0.1:9464; port 0 picks one)
  --audit-log PATH write the audit trail, one JSON object per request (the fields of
                   mcp_gatekeeper::audit), to PATH (appended; '-': standard output)
  --cedar FILE     Cedar policies (ToolHive's entity model, mcp_gatekeeper::cedar)
                   decide calls beside the scopes and filter tools/list; FILE is
                   read again on SIGHUP (needs the example built with --features
                   cedar)

tools: whoami and notes need scope mcp:read, write needs mcp:write
";

struct Args {
    listen: String,
    resource: Option<String>,
    issuers: Vec<String>,
    introspection_client_id: Option<String>,
    introspection_client_secret: Option<String>,
    filter_tools: bool,
    challenge_granted_scopes: bool,
    challenge_all_scopes: bool,
    allow_origins: Vec<String>,
    public_methods: Vec<String>,
    public_tools: Vec<String>,
    dpop: Option<Dpop>,
    dpop_nonces: bool,
    audit_log: Option<String>,
    metrics: Option<String>,
    cedar: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: "127.0.0.1:3000".into(),
        resource: None,
        issuers: Vec::new(),
        introspection_client_id: None,
        introspection_client_secret: None,
        filter_tools: false,
        challenge_granted_scopes: false,
        challenge_all_scopes: false,
        allow_origins: Vec::new(),
        public_methods: Vec::new(),
        public_tools: Vec::new(),
        dpop: None,
        dpop_nonces: false,
        audit_log: None,
        metrics: None,
        cedar: None,
    };
    let mut iter = std::env::args().skip(1);
    while let Some(flag) = iter.next() {
        let mut value = |name: &str| iter.next().ok_or_else(|| format!("{name} needs a value"));
        match flag.as_str() {
            "--listen" => args.listen = value("--listen")?,
            "--resource" => args.resource = Some(value("--resource")?),
            "--issuer" => args.issuers.push(value("--issuer")?),
            "--introspection-client-id" => {
                args.introspection_client_id = Some(value("--introspection-client-id")?);
            }
            "--introspection-client-secret" => {
                args.introspection_client_secret = Some(value("--introspection-client-secret")?);
            }
            "--filter-tools" => args.filter_tools = true,
            "--challenge-granted-scopes" => args.challenge_granted_scopes = true,
            "--challenge-all-scopes" => args.challenge_all_scopes = true,
            "--allow-origin" => args.allow_origins.push(value("--allow-origin")?),
            "--public" => args.public_methods.push(value("--public")?),
            "--public-tool" => args.public_tools.push(value("--public-tool")?),
            "--dpop-nonces" => args.dpop_nonces = true,
            "--audit-log" => args.audit_log = Some(value("--audit-log")?),
            "--metrics" => args.metrics = Some(value("--metrics")?),
            "--cedar" => args.cedar = Some(value("--cedar")?),
            "--dpop" => {
                args.dpop = Some(match value("--dpop")?.as_str() {
                    "allowed" => Dpop::allowed(),
                    "required" => Dpop::required(),
                    other => {
                        return Err(format!("--dpop takes allowed or required, not {other:?}"));
                    }
                });
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    match (
        &args.introspection_client_id,
        &args.introspection_client_secret,
    ) {
        (Some(_), None) | (None, Some(_)) => {
            return Err(
                "--introspection-client-id and --introspection-client-secret go together".into(),
            );
        }
        (Some(_), Some(_)) if args.issuers.is_empty() => {
            return Err("introspection needs an --issuer".into());
        }
        _ => {}
    }
    if args.dpop_nonces && args.dpop.is_none() {
        return Err("--dpop-nonces needs --dpop".into());
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = common::args_or_exit(parse_args, USAGE);
    let (listener, addr) = common::bind_with(&args.listen, args.audit_log.as_deref()).await?;
    let metrics = match &args.metrics {
        // The example's own tools are few and known: each gets its label value.
        Some(listen) => Some(common::serve_metrics(listen, &["whoami", "notes", "write"]).await?),
        None => None,
    };
    let origin = format!("http://{addr}");
    let resource = args
        .resource
        .clone()
        .unwrap_or_else(|| format!("{origin}/mcp"));

    // Per-tool scopes, declared once: they decide calls (403 insufficient_scope names
    // what is missing), filter tools/list, and fill scopes_supported.
    let mut rules = notes::scope_rules().public(&args.public_methods);
    for tool in &args.public_tools {
        rules = rules.public_tool(tool);
    }
    let mut builder = ResourceServer::builder(&resource)
        .mcp_scopes(rules)
        .filter_tools(args.filter_tools)
        .challenge_granted_scopes(args.challenge_granted_scopes)
        .challenge_all_scopes(args.challenge_all_scopes)
        .resource_name("mcp-gatekeeper example");
    for origin in &args.allow_origins {
        builder = builder.allow_origin(origin);
    }
    if let Some(path) = &args.cedar {
        builder = cedar::policies(builder, path)?;
    }
    if args.dpop_nonces {
        // One replica: a secret made now. Replicas share one (DpopNonces docs).
        let mut secret = [0u8; 32];
        aws_lc_rs::rand::fill(&mut secret).map_err(|_| "no random bytes for the nonce secret")?;
        builder = builder.sender_checks(SenderChecks::new().nonces(DpopNonces::new(secret)?));
    }
    let mut embedded = None;
    if args.issuers.is_empty() {
        // The embedded issuer: keys made now, kept in process (seed 004's case).
        let (issuer, mut trusted) =
            embedded::Embedded::new(format!("{origin}/embedded-issuer"), "embedded-1")?;
        if let Some(dpop) = args.dpop {
            trusted = trusted.dpop(dpop);
        }
        builder = builder.issuer(trusted);
        embedded = Some(issuer);
    } else {
        for issuer in &args.issuers {
            let mut trusted = Issuer::new(issuer);
            if let Some(dpop) = args.dpop {
                trusted = trusted.dpop(dpop);
            }
            if let (Some(id), Some(secret)) = (
                &args.introspection_client_id,
                &args.introspection_client_secret,
            ) {
                trusted = trusted.introspection(Introspection::new(id, secret));
            }
            builder = builder.issuer(trusted);
        }
    }
    let gatekeeper = builder.build()?;

    let config = common::streamable_http_config(&resource);
    let server = notes::Notes::new();
    let mcp = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let app = axum::Router::new()
        .route_service(mcp_gatekeeper_path(&resource).as_str(), mcp)
        .layer(gatekeeper.layer());

    let mut banner = String::new();
    say!(&mut banner, "mcp-gatekeeper example MCP server");
    say!(&mut banner, "  listening: {addr}");
    say!(&mut banner, "  resource:  {resource}");
    if let Some(metrics) = metrics {
        say!(&mut banner, "  metrics:   http://{metrics}/metrics");
    }
    say!(
        &mut banner,
        "  metadata:  {origin}{}",
        metadata_path(&resource)
    );
    match &embedded {
        Some(embedded) => {
            let token = embedded.token("demo-user", &resource, "mcp:read");
            say!(
                &mut banner,
                "  issuer:    {} (embedded, in-process keys)",
                embedded.issuer
            );
            say!(&mut banner, "  token:     {token}");
            say!(
                &mut banner,
                "  write-token: {}",
                embedded.token("demo-user", &resource, "mcp:read mcp:write")
            );
            say!(&mut banner, "try:");
            let path = mcp_gatekeeper_path(&resource);
            let curl = |tool: &str, arguments: &str| {
                let message = format!(
                    r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}","arguments":{arguments}}}}}"#
                );
                format!(
                    "  curl -si {origin}{path} -H 'Authorization: Bearer {token}' \
                     -H 'Content-Type: application/json' \
                     -H 'Accept: application/json, text/event-stream' -d '{message}'"
                )
            };
            say!(&mut banner, "{}", curl("whoami", "{}"));
            say!(
                &mut banner,
                "  # write needs mcp:write: with the token above it answers 403 insufficient_scope \
                 scope=\"mcp:write\"; with write-token it succeeds"
            );
            say!(&mut banner, "{}", curl("write", r#"{"text":"hello"}"#));
            if args.dpop.is_some() {
                dpop_banner(&mut banner, embedded, &resource);
            }
        }
        None => {
            for issuer in &args.issuers {
                say!(&mut banner, "  issuer:    {issuer} (lazy discovery)");
            }
        }
    }
    common::print_banner(&banner);
    axum::serve(listener, app).await?;
    Ok(())
}

/// The DPoP part of the banner: a token bound to a client key made now, that key
/// (private JWK, for a DPoP client), and a `curl` whose proof is good for one call
/// within five minutes.
fn dpop_banner(banner: &mut String, embedded: &embedded::Embedded, resource: &str) {
    let client = signing::SigningKey::ec("dpop-client");
    let public = client.jwk();
    let Some(jkt) = mcp_gatekeeper::thumbprint(&public) else {
        return;
    };
    let token = embedded.bound_token(
        "demo-user",
        resource,
        "mcp:read",
        serde_json::json!({ "jkt": jkt }),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut header = jsonwebtoken::Header::new(client.alg);
    header.typ = Some("dpop+jwt".into());
    header.jwk = serde_json::from_value(serde_json::json!({
        "kty": public["kty"], "crv": public["crv"], "x": public["x"], "y": public["y"],
    }))
    .ok();
    let proof = client.sign_with(
        header,
        &serde_json::json!({
            "jti": format!("banner-{now}"),
            "htm": "POST",
            "htu": resource,
            "iat": now,
            "ath": mcp_gatekeeper::access_token_hash(&token),
        }),
    );
    say!(banner, "  dpop-token: {token}");
    if let Some(key) = client.private_jwk() {
        say!(banner, "  dpop-key:  {key}");
    }
    let message = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","arguments":{}}}"#;
    say!(
        banner,
        "  # with DPoP (the proof is good for one call, within 5 minutes; make a new one \
         per request with the key above, e.g. with npm's dpop package):"
    );
    say!(
        banner,
        "  curl -si {resource} -H 'Authorization: DPoP {token}' -H 'DPoP: {proof}' \
         -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
         -d '{message}'"
    );
    say!(banner, "  dpop-proof: {proof}");
}

/// `--cedar FILE`.
#[cfg(feature = "cedar")]
mod cedar {
    use mcp_gatekeeper::ResourceServerBuilder;
    use mcp_gatekeeper::cedar::CedarPolicy;

    /// `builder` deciding by the Cedar policies of the file at `path`, which is read
    /// again on each `SIGHUP`.
    pub fn policies(
        builder: ResourceServerBuilder,
        path: &str,
    ) -> Result<ResourceServerBuilder, Box<dyn std::error::Error>> {
        let policy = CedarPolicy::builder().policy_file(path).build()?;
        let reloaded = policy.clone();
        let path = path.to_owned();
        let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                match reloaded.replace_policies_from_file(&path) {
                    Ok(()) => eprintln!("the Cedar policies of {path} are in force"),
                    Err(e) => eprintln!("the Cedar policies in force stay: {e}"),
                }
            }
        });
        Ok(builder.authorize(policy))
    }
}

/// `--cedar FILE` without the feature.
#[cfg(not(feature = "cedar"))]
mod cedar {
    use mcp_gatekeeper::ResourceServerBuilder;

    pub fn policies(
        _: ResourceServerBuilder,
        _: &str,
    ) -> Result<ResourceServerBuilder, Box<dyn std::error::Error>> {
        Err("--cedar needs the example built with --features cedar".into())
    }
}

/// `writeln!` into the banner; writing into a `String` cannot fail.
macro_rules! say {
    ($banner:expr, $($arg:tt)*) => {
        let _ = writeln!($banner, $($arg)*);
    };
}
use say;

/// The local path the MCP endpoint is served at: the resource URI's path.
fn mcp_gatekeeper_path(resource: &str) -> String {
    let path = resource
        .parse::<http::Uri>()
        .ok()
        .map(|u| u.path().trim_end_matches('/').to_owned())
        .unwrap_or_default();
    if path.is_empty() {
        "/".to_owned()
    } else {
        path
    }
}
