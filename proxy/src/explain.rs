//! `explain`: why a configuration accepts or refuses a token, rule by rule, on each
//! server (the users of seeds 000 and 001 got a bare 401 and had to guess).
//!
//! The verdict is the real stack's: the token goes through the server's gatekeeper as
//! a request would (keys fetched, introspection asked). Beside it, a run that checks
//! only what the issuer vouches for (signature or introspection, issuer, expiry),
//! whose trace says which key tier verified the signature; and the claims, read
//! without verification, compared with the configuration for the hints (RFC 8707
//! `resource`, client ids in `aud`, a public URL that differs). The token itself is
//! never printed: it is named by its length and the first bytes of its SHA-256.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use mcp_gatekeeper::config::GatewayConfig;
use serde_json::{Map, Value};

mod rules;
mod stack;
mod trace;

/// What `explain` is asked.
#[derive(Debug, Clone)]
pub struct Request {
    /// The configuration file.
    pub config: PathBuf,
    /// The token, or `-` for standard input.
    pub token: String,
    /// Only this server.
    pub server: Option<String>,
    /// For a call of this tool.
    pub tool: Option<String>,
}

/// Runs `explain` as the binary does: prints the explanation; exit code 0 when every
/// server asked accepts the token, 1 when one refuses it, 2 when the question cannot
/// be asked (configuration, arguments).
pub async fn run(request: Request) -> ExitCode {
    let config = match crate::load(&request.config, std::env::vars()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let token = if request.token == "-" {
        let mut line = String::new();
        if std::io::stdin().read_line(&mut line).is_err() {
            eprintln!("error: no token on standard input");
            return ExitCode::from(2);
        }
        line.trim().to_owned()
    } else {
        request.token.trim().to_owned()
    };
    match explain(
        &config,
        &token,
        request.server.as_deref(),
        request.tool.as_deref(),
    )
    .await
    {
        Ok(explanation) => {
            print!("{}", explanation.text);
            if explanation.accepted.iter().all(|(_, ok)| *ok) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(why) => {
            eprintln!("error: {why}");
            ExitCode::from(2)
        }
    }
}

/// An explanation: its text and, per server, whether the token is accepted.
#[derive(Debug)]
pub struct Explanation {
    /// What `explain` prints.
    pub text: String,
    /// (server id, accepted).
    pub accepted: Vec<(String, bool)>,
}

/// The header and claims of a JWT, read without verification; `None` for an opaque
/// token.
fn decode(token: &str) -> Option<(Value, Map<String, Value>)> {
    let mut parts = token.split('.');
    let (header, claims) = (parts.next()?, parts.next()?);
    parts.next()?;
    let read = |part: &str| -> Option<Value> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part.trim_end_matches('='))
            .ok()?;
        serde_json::from_slice(&bytes).ok()
    };
    match (read(header)?, read(claims)?) {
        (header @ Value::Object(_), Value::Object(claims)) => Some((header, claims)),
        _ => None,
    }
}

/// Explains `token` against `config` (one server or all, for a call of `tool` or a
/// `tools/list`). The first call installs the process's tracing subscriber, which
/// catches what the stack records (and logs the rest to standard error at `warn`, or
/// as `RUST_LOG` says).
pub async fn explain(
    config: &GatewayConfig,
    token: &str,
    server: Option<&str>,
    tool: Option<&str>,
) -> Result<Explanation, String> {
    let fields = trace::fields();
    let ids: Vec<&String> = match server {
        Some(id) if config.servers.contains_key(id) => {
            config.servers.keys().filter(|k| *k == id).collect()
        }
        Some(id) => {
            return Err(format!(
                "--server {id:?}: the configuration has {}",
                config
                    .servers
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        None => config.servers.keys().collect(),
    };
    let mut text = String::new();
    let decoded = decode(token);
    describe_token(&mut text, token, decoded.as_ref());
    let mut accepted = Vec::new();
    for id in ids {
        let ok = rules::explain_server(
            &mut text,
            config,
            id,
            token,
            decoded.as_ref(),
            tool,
            &fields,
        )
        .await?;
        accepted.push((id.clone(), ok));
    }
    Ok(Explanation { text, accepted })
}

/// The token's description: kind, length, fingerprint, the claims that matter.
fn describe_token(text: &mut String, token: &str, decoded: Option<&(Value, Map<String, Value>)>) {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(token.as_bytes());
    let fingerprint: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    match decoded {
        Some((header, claims)) => {
            let _ = writeln!(
                text,
                "token: a JWT, {} bytes, SHA-256 {fingerprint}…; alg {}, kid {}, typ {}",
                token.len(),
                header["alg"],
                header.get("kid").unwrap_or(&Value::Null),
                header.get("typ").unwrap_or(&Value::Null),
            );
            for name in [
                "iss",
                "sub",
                "aud",
                "azp",
                "client_id",
                "scope",
                "scp",
                "exp",
                "cnf",
            ] {
                if let Some(value) = claims.get(name) {
                    let extra = match (name, value.as_u64()) {
                        ("exp", Some(exp)) => format!(" ({})", relative(exp)),
                        _ => String::new(),
                    };
                    let _ = writeln!(text, "  {name:<9} {value}{extra}");
                }
            }
        }
        None => {
            let _ = writeln!(
                text,
                "token: opaque (not a JWT), {} bytes, SHA-256 {fingerprint}…: only introspection can say what it is",
                token.len()
            );
        }
    }
}

/// "in 3599 s" or "expired 12 s ago".
fn relative(exp: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if exp > now {
        format!("in {} s", exp - now)
    } else {
        format!("expired {} s ago", now - exp)
    }
}
