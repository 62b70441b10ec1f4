//! `explain`: for each cause of refusal the suite tests, the line that names it (and
//! the hint for seeds 000 and 001), against a real identity provider on loopback; the
//! token is never printed.

mod common;

// The root's harness; its features are the root package's, none of this one's. It
// has its own copy of the identity provider helpers that `common` has too.
#[allow(unexpected_cfgs, clippy::duplicate_mod)]
#[path = "../../tests/support/mod.rs"]
mod support;

use mcp_gatekeeper::config::GatewayConfig;
use mcp_gatekeeper_proxy::explain::explain;
use serde_json::{Value, json};
use support::{SigningKey, TestIdp, now, signing};

const PUBLIC: &str = "http://127.0.0.1:8080";

fn resource(id: &str) -> String {
    format!("{PUBLIC}/servers/{id}/mcp")
}

/// Two servers: `notes` (mcp:read, `write*` needs mcp:write) and `other`; `extra` is
/// added to the `[[issuers]]` entry.
fn config(idp: &TestIdp, extra: &str) -> GatewayConfig {
    let text = format!(
        r#"
[proxy]
listen = "127.0.0.1:8080"

[[issuers]]
issuer = "{}"
{extra}

[servers.notes]
upstream = "http://127.0.0.1:9/mcp"
scopes = ["mcp:read"]
tools = {{ "write*" = ["mcp:write"] }}

[servers.other]
upstream = "http://127.0.0.1:9/mcp"
"#,
        idp.issuer
    );
    toml_config(&text)
}

fn toml_config(text: &str) -> GatewayConfig {
    let file = common::TempFile::new(text);
    mcp_gatekeeper_proxy::load(&file.0, std::iter::empty()).expect("configuration")
}

/// Good claims for `notes`.
fn claims(idp: &TestIdp) -> Value {
    json!({
        "iss": idp.issuer, "sub": "user-1", "aud": resource("notes"),
        "client_id": "my-client", "scope": "mcp:read",
        "iat": now(), "exp": now() + 600, "jti": "j1",
    })
}

/// `claims` with `changes` (a null removes the claim).
fn with(mut claims: Value, changes: Value) -> Value {
    for (name, value) in changes.as_object().cloned().unwrap_or_default() {
        match value {
            Value::Null => {
                claims.as_object_mut().map(|c| c.remove(&name));
            }
            value => claims[name.as_str()] = value,
        }
    }
    claims
}

fn at_jwt(key: &SigningKey, claims: &Value) -> String {
    let mut header = jsonwebtoken::Header::new(key.alg);
    header.kid = Some(key.kid.clone());
    header.typ = Some("at+jwt".into());
    key.sign_with(header, claims)
}

/// A name, the token, the configuration, the server and tool asked, and the lines
/// expected.
type Case<'a> = (
    &'a str,
    String,
    GatewayConfig,
    Option<&'a str>,
    Option<&'a str>,
    &'a [&'a str],
);

#[tokio::test]
async fn each_cause_of_refusal_has_its_line_and_the_seed_hints() {
    let key = SigningKey::ec("k1");
    let stranger = SigningKey::ec("k1");
    let idp = TestIdp::start(&[&key]).await;
    let base = config(&idp, "");
    // The introspection secret, from a file (secrets never are in the configuration).
    let secret_file = common::TempFile::new(support::INTROSPECTION_CLIENT.1);
    let secret = secret_file.0.display().to_string();
    let introspection = format!(
        "introspection = {{ client_id = \"{}\", client_secret = {{ file = \"{secret}\" }} }}",
        support::INTROSPECTION_CLIENT.0
    );
    let good = claims(&idp);
    let cases: Vec<Case> = vec![
        (
            "accepted",
            at_jwt(&key, &good),
            base.clone(),
            Some("notes"),
            Some("whoami"),
            &[
                "ok    signature  verified with a key from the jwks_uri of the issuer's metadata (discovery)",
                "ok    audience   aud names this resource",
                "=> accepted for tools/call whoami",
            ],
        ),
        (
            "signature",
            at_jwt(&stranger, &good),
            base.clone(),
            Some("notes"),
            None,
            &[
                "FAIL  signature  invalid_token: the token's signature does not verify",
                "=> refused for tools/list: 401",
            ],
        ),
        (
            "issuer",
            at_jwt(
                &key,
                &with(good.clone(), json!({"iss": "https://evil.example.com"})),
            ),
            base.clone(),
            Some("notes"),
            None,
            &[
                "FAIL  issuer     \"https://evil.example.com\" is not one this server trusts",
                "-     signature  not checked",
            ],
        ),
        (
            "issuer with a trailing slash",
            at_jwt(
                &key,
                &with(good.clone(), json!({"iss": format!("{}/", idp.issuer)})),
            ),
            base.clone(),
            Some("notes"),
            None,
            &["hint: the issuer is compared exactly"],
        ),
        (
            "expired",
            at_jwt(
                &key,
                &with(
                    good.clone(),
                    json!({"exp": now() - 3600, "iat": now() - 7200}),
                ),
            ),
            base.clone(),
            Some("notes"),
            None,
            &[
                "FAIL  expiry     expired 36",
                "=> refused for tools/list: 401 invalid_token",
            ],
        ),
        (
            "no aud (seed 000)",
            at_jwt(&key, &with(good.clone(), json!({"aud": null}))),
            base.clone(),
            Some("notes"),
            None,
            &[
                "FAIL  audience   the token has no aud",
                "RFC 8707 resource parameter (resource=http://127.0.0.1:8080/servers/notes/mcp)",
                "allow_missing_audience = true",
            ],
        ),
        (
            "aud is the client id (seed 001)",
            at_jwt(&key, &with(good.clone(), json!({"aud": "my-client"}))),
            base.clone(),
            Some("notes"),
            None,
            &[
                "FAIL  audience   aud [\"my-client\"] does not name this resource",
                "accept_client_ids = [\"my-client\"]",
            ],
        ),
        (
            "aud on the public URL that differs (seed 001)",
            at_jwt(
                &key,
                &with(
                    good.clone(),
                    json!({"aud": "https://mcp.example.com/servers/notes/mcp"}),
                ),
            ),
            base.clone(),
            Some("notes"),
            None,
            &[
                "has this resource's path on another origin",
                "set proxy.public_url",
            ],
        ),
        (
            "aud whose path differs in case (the stack compares paths exactly)",
            at_jwt(
                &key,
                &with(
                    good.clone(),
                    json!({"aud": "http://127.0.0.1:8080/SERVERS/notes/mcp"}),
                ),
            ),
            base.clone(),
            Some("notes"),
            None,
            &[
                "FAIL  audience   aud [\"http://127.0.0.1:8080/SERVERS/notes/mcp\"] does not name this resource",
                "R-AUD-2",
            ],
        ),
        (
            "accepted: aud in another canonical form (upper-case scheme, trailing slash)",
            at_jwt(
                &key,
                &with(
                    good.clone(),
                    json!({"aud": "HTTP://127.0.0.1:8080/servers/notes/mcp/"}),
                ),
            ),
            base.clone(),
            Some("notes"),
            Some("whoami"),
            &[
                "ok    audience   aud names this resource",
                "=> accepted for tools/call whoami",
            ],
        ),
        (
            "aud of another server",
            at_jwt(&key, &good),
            base.clone(),
            Some("other"),
            None,
            &[
                "is the resource of server notes: the token is for that server",
                "R-AUD-2",
            ],
        ),
        (
            "scope",
            at_jwt(&key, &good),
            base.clone(),
            Some("notes"),
            Some("write_note"),
            &[
                "FAIL  scopes     tools/call write_note needs [\"mcp:write\"]: the token lacks [\"mcp:write\"]",
                "=> refused for tools/call write_note: 403 insufficient_scope",
            ],
        ),
        (
            "ID token",
            at_jwt(&key, &with(good.clone(), json!({"nonce": "n"}))),
            base.clone(),
            Some("notes"),
            None,
            &[
                "FAIL  type       an OpenID Connect ID token",
                "=> refused for tools/list: 401",
            ],
        ),
        (
            "typ with strict RFC 9068",
            {
                let mut header = jsonwebtoken::Header::new(key.alg);
                header.kid = Some(key.kid.clone());
                header.typ = Some("JWT".into());
                key.sign_with(header, &good)
            },
            config(&idp, "strict_rfc9068 = true"),
            Some("notes"),
            None,
            &[
                "and strict_rfc9068 is on",
                "the token's typ is not at+jwt (RFC 9068)",
            ],
        ),
        (
            "DPoP-bound token sent as Bearer",
            at_jwt(
                &key,
                &with(
                    good.clone(),
                    json!({"cnf": {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}}),
                ),
            ),
            base.clone(),
            Some("notes"),
            None,
            &[
                "-     binding    the token is bound to DPoP (RFC 9449)",
                "=> refused for tools/list: 401",
            ],
        ),
        (
            "opaque without introspection",
            "opaque-token-0123456789".to_owned(),
            base.clone(),
            Some("notes"),
            None,
            &[
                "token: opaque",
                "hint: opaque tokens need introspection",
                "-     audience   not known",
            ],
        ),
        (
            "opaque and inactive",
            "inactive-token-0123456789".to_owned(),
            config(&idp, &introspection),
            Some("notes"),
            None,
            &[
                "FAIL  introspect invalid_token",
                "=> refused for tools/list: 401",
            ],
        ),
    ];
    idp.set_introspection(
        "active-token-0123456789",
        json!({
            "active": true, "iss": idp.issuer, "sub": "user-2", "aud": "my-client",
            "client_id": "my-client", "scope": "mcp:read", "exp": now() + 600,
        }),
    );
    let mut failures = Vec::new();
    for (name, token, config, server, tool, expected) in &cases {
        let explanation = explain(config, token, *server, *tool)
            .await
            .expect("explain");
        let text = &explanation.text;
        assert!(
            !text.contains(token.as_str()),
            "{name}: the token was printed"
        );
        for line in *expected {
            if !text.contains(line) {
                failures.push(format!("{name}: no {line:?} in\n{text}"));
            }
        }
        let accepted = explanation.accepted.iter().all(|(_, ok)| *ok);
        if accepted != name.starts_with("accepted") {
            failures.push(format!("{name}: accepted = {accepted}\n{text}"));
        }
    }
    // Introspected and active, but for a client id: the hint holds for opaque tokens too.
    let introspecting = config(&idp, &introspection);
    let text = explain(
        &introspecting,
        "active-token-0123456789",
        Some("notes"),
        None,
    )
    .await
    .expect("explain")
    .text;
    for line in [
        "ok    introspect the issuer's introspection endpoint says the token is active",
        "accept_client_ids = [\"my-client\"]",
    ] {
        if !text.contains(line) {
            failures.push(format!("active opaque: no {line:?} in\n{text}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    let _ = signing::jwks;
}

#[tokio::test]
async fn the_binary_reads_the_token_from_stdin_and_exits_1_on_a_refusal() {
    use tokio::io::AsyncWriteExt as _;
    let key = SigningKey::ec("k1");
    let idp = TestIdp::start(&[&key]).await;
    let file = common::TempFile::new(&format!(
        "[[issuers]]\nissuer = \"{}\"\n[servers.notes]\nupstream = \"http://127.0.0.1:9/mcp\"\n",
        idp.issuer
    ));
    let token = at_jwt(&key, &with(claims(&idp), json!({"aud": "my-client"})));
    let path = file.0.to_string_lossy().into_owned();
    let mut child = common::proxy_command(&["explain", "--config", &path, "-", "--tool", "whoami"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("explain");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(format!("{token}\n").as_bytes())
        .await
        .expect("write");
    drop(stdin);
    let output = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("explain ended")
        .expect("output");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("accept_client_ids = [\"my-client\"]"),
        "{stdout}"
    );
    assert!(
        !stdout.contains(&token) && !stderr.contains(&token),
        "the token was printed"
    );

    // A token that starts with '-' and is not given on standard input is never echoed.
    let dashed = "-opaque-token-with-a-dash-0123";
    let stderr = refused_with_2(&["explain", "--config", &path, "x", dashed]).await;
    assert!(
        !stderr.contains("opaque-token-with"),
        "the token was echoed: {stderr}"
    );
    assert!(stderr.contains("standard input"), "{stderr}");

    // A configuration mistake: exit 2, the file and the key named.
    let bad = common::TempFile::new(
        "[[issuers]]\nissuer = \"http://idp.example.com\"\n[servers.x]\nupstream = \"http://127.0.0.1:9/mcp\"\n",
    );
    let bad_path = bad.0.to_string_lossy().into_owned();
    let stderr = refused_with_2(&["explain", "--config", &bad_path, "token"]).await;
    assert!(
        stderr.contains(&bad_path) && stderr.contains("issuers[0].issuer"),
        "{stderr}"
    );
}

/// Runs the binary with `args`, which must exit with 2; its standard error.
async fn refused_with_2(args: &[&str]) -> String {
    let output = common::proxy_command(args).output().await.expect("explain");
    assert_eq!(output.status.code(), Some(2));
    String::from_utf8_lossy(&output.stderr).into_owned()
}
