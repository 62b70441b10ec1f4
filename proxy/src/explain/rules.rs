//! The rows of one server's explanation, rule by rule.

use std::fmt::Write as _;

use mcp_gatekeeper::config::GatewayConfig;
use mcp_gatekeeper::{AudienceMatch, AudiencePolicy, McpOperation, Principal};
use serde_json::{Map, Value};

use super::relative;
use super::stack::{Outcome, lenient_server, run_stack};
use super::trace::Fields;

/// The JWT's header and claims, when it is one.
type Decoded = (Value, Map<String, Value>);

/// One server's explanation in the making.
struct Server<'a> {
    text: &'a mut String,
    config: &'a GatewayConfig,
    id: &'a str,
    resource: String,
    decoded: Option<&'a Decoded>,
}

impl Server<'_> {
    fn claims(&self) -> Option<&Map<String, Value>> {
        self.decoded.map(|(_, claims)| claims)
    }

    /// One row: `ok`, `FAIL` or `-`, the rule, what was found.
    fn row(&mut self, mark: &str, rule: &str, found: &str) {
        let _ = writeln!(self.text, "  {mark:<5} {rule:<10} {found}");
    }

    /// A hint below a row.
    fn hint(&mut self, hint: &str) {
        let _ = writeln!(self.text, "        hint: {hint}");
    }

    /// The issuers this server trusts.
    fn trusted(&self) -> Vec<String> {
        match &self.config.servers[self.id].issuers {
            Some(names) => names.clone(),
            None => self
                .config
                .issuers
                .iter()
                .map(|i| i.issuer.clone())
                .collect(),
        }
    }

    fn iss(&self) -> Option<String> {
        self.claims()?.get("iss")?.as_str().map(str::to_owned)
    }
}

/// Explains one server; whether it accepts the token.
pub(super) async fn explain_server(
    text: &mut String,
    config: &GatewayConfig,
    id: &str,
    token: &str,
    decoded: Option<&Decoded>,
    tool: Option<&str>,
    fields: &Fields,
) -> Result<bool, String> {
    let resource = config.resource_uri(id).unwrap_or_default();
    let _ = writeln!(text, "\nserver {id}: {resource}");
    let gatekeeper = config.resource_server(id).map_err(|e| e.to_string())?;
    let lenient = lenient_server(config, id, &resource)?;
    let mut server = Server {
        text,
        config,
        id,
        resource,
        decoded,
    };
    let issuer_ok = issuer_row(&mut server);
    // What the issuer vouches for, alone: signature or introspection.
    let vouched = run_stack(&lenient, token, None, fields).await;
    let vouched_for = vouched_row(&mut server, &vouched, issuer_ok);
    expiry_row(&mut server);
    type_row(&mut server);
    if decoded.is_none() && !vouched_for {
        server.row("-", "audience", "not known: the token was not introspected");
        server.row("-", "scopes", "not known: the token was not introspected");
    } else {
        let principal = vouched.principal.as_ref();
        audience_rows(&mut server, principal)?;
        binding_row(&mut server);
        scope_rows(&mut server, tool, principal)?;
    }
    // The verdict is the real stack's.
    let outcome = run_stack(&gatekeeper, token, tool, fields).await;
    let asked = tool.map_or_else(|| "tools/list".to_owned(), |t| format!("tools/call {t}"));
    let accepted = outcome.status < 300;
    if accepted {
        let _ = writeln!(server.text, "  => accepted for {asked}");
    } else {
        let rule = outcome.fields.get("rule").map(|r| format!(" [{r}]"));
        let _ = writeln!(
            server.text,
            "  => refused for {asked}: {} {}{}",
            outcome.status,
            outcome.error,
            rule.unwrap_or_default()
        );
    }
    Ok(accepted)
}

/// Whether the token's `iss` is trusted here.
fn issuer_row(server: &mut Server<'_>) -> bool {
    let trusted = server.trusted();
    match server.iss() {
        Some(iss) if trusted.contains(&iss) => {
            server.row("ok", "issuer", &format!("{iss:?} is trusted"));
            true
        }
        Some(iss) => {
            let found = format!("{iss:?} is not one this server trusts ({trusted:?})");
            server.row("FAIL", "issuer", &found);
            let trim = |s: &str| s.trim_end_matches('/').to_owned();
            match trusted.iter().find(|t| trim(t) == trim(&iss)) {
                Some(near) => server.hint(&format!(
                    "the issuer is compared exactly: {near:?} is configured; write it as the token has it"
                )),
                None => server.hint(
                    "add it to [[issuers]] (and to this server's issuers, if it lists them) if it is to be trusted",
                ),
            }
            false
        }
        None if server.decoded.is_some() => {
            server.row("FAIL", "issuer", "the token has no iss claim");
            false
        }
        None => {
            let found = "an opaque token says nothing itself; introspection below";
            server.row("-", "issuer", found);
            true
        }
    }
}

/// Signature (which key tier) or introspection; whether the issuer vouches for it.
fn vouched_row(server: &mut Server<'_>, vouched: &Outcome, issuer_ok: bool) -> bool {
    match (vouched.fields.get("key_tier"), issuer_ok) {
        (Some(tier), _) if tier == "introspection" => {
            let found = "the issuer's introspection endpoint says the token is active";
            server.row("ok", "introspect", found);
            true
        }
        (Some(tier), _) => {
            let found = format!("verified with a key from the {}", tier_name(tier));
            server.row("ok", "signature", &found);
            true
        }
        (None, false) => {
            server.row("-", "signature", "not checked: the issuer is not trusted");
            false
        }
        (None, true) if server.decoded.is_some() => {
            server.row("FAIL", "signature", &vouched.error);
            false
        }
        (None, true) => {
            server.row("FAIL", "introspect", &vouched.error);
            server.hint(
                "opaque tokens need introspection = { client_id = ..., client_secret = { env = ... } } on their issuer",
            );
            false
        }
    }
}

/// The name of a key tier in a sentence.
fn tier_name(tier: &str) -> String {
    match tier {
        "local" => "in-process keys".into(),
        "jwks" => "configured jwks_uri".into(),
        "discovery" => "jwks_uri of the issuer's metadata (discovery)".into(),
        "cache" => "verified-token cache".into(),
        other => format!("{other} tier"),
    }
}

fn expiry_row(server: &mut Server<'_>) {
    let exp = server.claims().and_then(|c| c.get("exp")).cloned();
    match exp {
        Some(exp) => match exp.as_u64() {
            Some(exp) if relative(exp).starts_with("in") => {
                server.row("ok", "expiry", &format!("expires {}", relative(exp)));
            }
            Some(exp) => server.row("FAIL", "expiry", &relative(exp)),
            None => server.row("FAIL", "expiry", "exp is not a number"),
        },
        None if server.decoded.is_some() => {
            server.row("FAIL", "expiry", "the token has no exp claim");
        }
        None => server.row("-", "expiry", "as the introspection answer says"),
    }
}

/// An access token, not an ID token; `typ` under strict RFC 9068.
fn type_row(server: &mut Server<'_>) {
    let Some((header, claims)) = server.decoded else {
        return;
    };
    let typ = header.get("typ").and_then(Value::as_str).unwrap_or("");
    if claims.contains_key("nonce") || claims.contains_key("at_hash") {
        let found = "an OpenID Connect ID token (nonce/at_hash), not an access token";
        server.row("FAIL", "type", found);
        server.hint("send the access token of the token response, not its id_token");
    } else if typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt") {
        server.row("ok", "type", "at+jwt (RFC 9068)");
    } else {
        let iss = server.iss();
        let strict = server
            .config
            .issuers
            .iter()
            .any(|i| Some(&i.issuer) == iss.as_ref() && i.strict_rfc9068);
        let (mark, why) = if strict {
            ("FAIL", " and strict_rfc9068 is on")
        } else {
            ("ok", " (accepted: strict_rfc9068 is off)")
        };
        server.row(mark, "type", &format!("typ {typ:?} is not at+jwt{why}"));
    }
}

/// The token's audiences: its `aud`, else what introspection said.
fn audiences(claims: Option<&Map<String, Value>>, principal: Option<&Principal>) -> Vec<String> {
    match (claims, claims.and_then(|c| c.get("aud"))) {
        (_, Some(Value::String(one))) => vec![one.clone()],
        (_, Some(Value::Array(many))) => many
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        (Some(_), _) => Vec::new(),
        (None, _) => principal
            .map(|p| p.audiences().to_vec())
            .unwrap_or_default(),
    }
}

fn path_of(uri: &str) -> Option<&str> {
    let rest = uri.split_once("://")?.1;
    rest.find('/').map(|i| &rest[i..])
}

/// The audience row, decided by the server's own [`AudiencePolicy`](mcp_gatekeeper::AudiencePolicy)
/// (the stack's comparison, not a copy of it), with the hints of seeds 000 and 001.
fn audience_rows(server: &mut Server<'_>, principal: Option<&Principal>) -> Result<(), String> {
    let policy = server
        .config
        .audience_policy(server.id)
        .map_err(|e| e.to_string())?;
    let resource = server.resource.clone();
    let audiences = audiences(server.claims(), principal);
    match policy.check(&audiences, Some(&resource)) {
        Ok(AudienceMatch::Missing) => {
            server.row(
                "ok",
                "audience",
                "the token has no aud, and allow_missing_audience is on",
            );
        }
        Ok(AudienceMatch::ClientId) => {
            let found = format!("aud {audiences:?} is a client id that accept_client_ids lets in");
            server.row("ok", "audience", &found);
        }
        Ok(_) => {
            let found = format!("aud names this resource ({resource})");
            server.row("ok", "audience", &found);
        }
        Err(_) if audiences.is_empty() => {
            let found = "the token has no aud: it is not for any resource in particular";
            server.row("FAIL", "audience", found);
            server.hint(&format!(
                "the client should ask for it with the RFC 8707 resource parameter (resource={resource}); \
                 if the identity provider ignores resource, set allow_missing_audience = true on this \
                 server (any token of the issuer then opens it)"
            ));
        }
        Err(_) => {
            let found = format!("aud {audiences:?} does not name this resource ({resource})");
            server.row("FAIL", "audience", &found);
            audience_hints(server, &audiences, principal);
        }
    }
    Ok(())
}

/// Why an `aud` that is not this resource may be: a client id, the public URL, another
/// server's resource.
fn audience_hints(server: &mut Server<'_>, audiences: &[String], principal: Option<&Principal>) {
    let client = server
        .claims()
        .and_then(|c| c.get("client_id").or_else(|| c.get("azp")))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| principal.and_then(|p| p.client_id().map(str::to_owned)));
    if let Some(client) = client.filter(|c| audiences.contains(c)) {
        server.hint(&format!(
            "aud is the OAuth client id, as identity providers without RFC 8707 do: if that is yours, \
             set accept_client_ids = [{client:?}] on this server"
        ));
    }
    let path = path_of(&server.resource).map(str::to_owned);
    for audience in audiences {
        if path.is_some() && path_of(audience).map(str::to_owned) == path {
            server.hint(&format!(
                "{audience:?} has this resource's path on another origin: if clients reach the gateway \
                 there, set proxy.public_url (or this server's resource) to it"
            ));
        }
        let config = server.config;
        let owner = config.servers.keys().find(|other| {
            config.resource_uri(other).is_some_and(|r| {
                AudiencePolicy::resource()
                    .check(std::slice::from_ref(audience), Some(&r))
                    .is_ok()
            })
        });
        if let Some(other) = owner {
            server.hint(&format!(
                "{audience:?} is the resource of server {other}: the token is for that server"
            ));
        }
    }
}

fn binding_row(server: &mut Server<'_>) {
    let Some(cnf) = server.claims().and_then(|c| c.get("cnf")) else {
        return;
    };
    let kind = if cnf.get("jkt").is_some() {
        "DPoP (RFC 9449)"
    } else {
        "a client certificate (RFC 8705)"
    };
    let found = format!("the token is bound to {kind}: it is good only with that proof");
    server.row("-", "binding", &found);
}

/// The scopes the token has: its `scope`/`scp`, else what introspection said.
fn granted(claims: Option<&Map<String, Value>>, principal: Option<&Principal>) -> Vec<String> {
    match claims.and_then(|c| c.get("scope").or_else(|| c.get("scp"))) {
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => principal
            .map(|p| p.scopes().iter().map(str::to_owned).collect())
            .unwrap_or_default(),
    }
}

/// The scope rows: what the call (or each rule) needs, what the token has.
fn scope_rows(
    server: &mut Server<'_>,
    tool: Option<&str>,
    principal: Option<&Principal>,
) -> Result<(), String> {
    let rules = server
        .config
        .scope_rules(server.id)
        .map_err(|e| e.to_string())?;
    let has = granted(server.claims(), principal);
    let mut asked: Vec<(String, McpOperation)> = Vec::new();
    match tool {
        Some(tool) => asked.push((format!("tools/call {tool}"), McpOperation::tool_call(tool))),
        None => {
            asked.push(("tools/list".into(), McpOperation::new("tools/list", None)));
            for pattern in server.config.servers[server.id].tools.keys() {
                let operation = McpOperation::tool_call(pattern.trim_end_matches('*'));
                asked.push((format!("tools/call {pattern}"), operation));
            }
        }
    }
    for (what, operation) in asked {
        if rules.is_public(&operation) {
            server.row("ok", "scopes", &format!("{what} needs no token"));
            continue;
        }
        let needed = rules.scopes_for(&operation);
        let missing: Vec<&String> = needed.iter().filter(|s| !has.contains(s)).collect();
        let needed = needed.as_ref();
        if needed.is_empty() {
            server.row("ok", "scopes", &format!("{what} needs no scope"));
        } else if missing.is_empty() {
            server.row(
                "ok",
                "scopes",
                &format!("{what} needs {needed:?}: the token has it"),
            );
        } else {
            let found =
                format!("{what} needs {needed:?}: the token lacks {missing:?} (it has {has:?})");
            server.row("FAIL", "scopes", &found);
        }
    }
    Ok(())
}
