//! The configuration file: one for each flag set of the examples (`proxy/examples/`),
//! each checked by `--check-config` and mapped as the flags are; and each kind of
//! mistake, with the message that names the file, the key and the fix.

mod common;

use std::path::{Path, PathBuf};

use common::TempFile;
use mcp_gatekeeper_proxy::load;

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

/// The secrets the example files name.
fn secrets() -> Vec<(String, String)> {
    vec![
        ("SEARCH_EXCHANGE_SECRET".into(), "exchange-secret".into()),
        ("NOTES_API_KEY".into(), "api-key".into()),
        (
            "DPOP_NONCE_SECRET".into(),
            "0123456789abcdef0123456789abcdef".into(),
        ),
    ]
}

#[tokio::test]
async fn every_example_file_passes_check_config_and_maps_as_its_flags_do() {
    // introspection.toml reads /run/secrets/introspection: point it at a file here.
    let secret = TempFile::new("introspection-secret\n");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(example("")).expect("proxy/examples") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            names.push(path);
        }
    }
    names.sort();
    assert!(names.len() >= 7, "{names:?}");
    for path in &names {
        let shown = path.display().to_string();
        let mut command = common::proxy_command(&["--config", &shown, "--check-config"]);
        for (name, value) in secrets() {
            command.env(name, value);
        }
        if shown.ends_with("introspection.toml") {
            command.env(
                "MCP_GATEKEEPER__ISSUERS__0__INTROSPECTION__CLIENT_SECRET__FILE",
                secret.0.display().to_string(),
            );
        }
        let output = command.output().await.expect("--check-config");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
        assert!(output.status.success(), "{shown}: {stdout}{stderr}");
        assert!(
            stdout.contains("the configuration is good"),
            "{shown}: {stdout}{stderr}"
        );
    }

    // What the flags did, the files do.
    let env = secrets();
    let gateway = load(&example("gateway.toml"), env.clone()).expect("gateway.toml");
    assert_eq!(
        gateway.resource_uri("notes").as_deref(),
        Some("https://mcp.example.com/servers/notes/mcp")
    );
    assert!(
        gateway
            .exchange_layer("search")
            .expect("exchange")
            .is_some()
    );
    let (name, value) = gateway
        .upstream_header("notes")
        .expect("header")
        .expect("a header");
    assert_eq!(
        (name.as_str(), value.to_str().ok()),
        ("x-api-key", Some("api-key"))
    );
    let server = gateway.resource_server("notes").expect("notes");
    assert_eq!(server.resource().authorization_servers().len(), 2);
    let search = gateway.resource_server("search").expect("search");
    assert_eq!(
        search.resource().authorization_servers(),
        ["https://login.example.com/tenant-a"]
    );

    let public = load(&example("public.toml"), env.clone()).expect("public.toml");
    let rules = public.scope_rules("notes").expect("rules");
    assert!(rules.is_public(&mcp_gatekeeper::McpOperation::new("tools/list", None)));
    assert!(rules.is_public(&mcp_gatekeeper::McpOperation::tool_call("whoami")));
    assert!(!rules.is_public(&mcp_gatekeeper::McpOperation::tool_call("write")));

    let dpop = load(&example("dpop.toml"), env.clone()).expect("dpop.toml");
    let server = dpop.resource_server("notes").expect("notes");
    assert!(server.resource().dpop_required());

    let mcp_server = load(&example("mcp_server.toml"), env).expect("mcp_server.toml");
    assert_eq!(
        mcp_server.resource_uri("notes").as_deref(),
        Some("https://mcp.example.com/mcp")
    );
    let rules = mcp_server.scope_rules("notes").expect("rules");
    assert_eq!(
        rules
            .scopes_for(&mcp_gatekeeper::McpOperation::tool_call("write_note"))
            .as_ref(),
        ["mcp:write"]
    );
}

/// A minimal good configuration, with `extra` appended.
fn good(extra: &str) -> String {
    format!(
        "[[issuers]]\nissuer = \"https://idp.example.com\"\n\n[servers.notes]\nupstream = \"http://127.0.0.1:9000/mcp\"\n{extra}"
    )
}

/// The error loading `text` with `env`; it must name the file.
fn mistake(text: &str, env: &[(&str, &str)]) -> String {
    let file = TempFile::new(text);
    let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
    let error = load(&file.0, env).expect_err("a mistake").to_string();
    assert!(
        error.starts_with(&file.0.display().to_string()),
        "the file is not named: {error}"
    );
    error
}

/// A name, the file's text, the environment, and what the error must say.
type Mistake<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, Vec<&'a str>);

#[test]
fn each_kind_of_mistake_names_the_key_and_the_fix() {
    let cases: Vec<Mistake> = vec![
        (
            "TOML syntax",
            "[proxy\nlisten = 1".into(),
            vec![],
            vec!["line 1"],
        ),
        (
            "unknown key",
            good("upstrem = \"x\""),
            vec![],
            vec!["unknown field `upstrem`", "line"],
        ),
        (
            "a secret written in the file",
            good("credentials = { kind = \"header\", value = \"hunter2\" }"),
            vec![],
            vec![
                "a secret is not written in the configuration",
                "{ env = \"VARIABLE\" }",
            ],
        ),
        (
            "a secret's variable unset",
            good(
                "credentials = { kind = \"header\", value = { env = \"NO_SUCH_VARIABLE_HERE\" } }",
            ),
            vec![],
            vec![
                "servers.notes.credentials.value",
                "NO_SUCH_VARIABLE_HERE is not set",
            ],
        ),
        (
            "a secret's file missing",
            good("credentials = { kind = \"header\", value = { file = \"/nonexistent/secret\" } }"),
            vec![],
            vec![
                "servers.notes.credentials.value",
                "/nonexistent/secret cannot be read",
            ],
        ),
        (
            "a secret both ways",
            good("credentials = { kind = \"header\", value = { env = \"A\", file = \"/b\" } }"),
            vec![],
            vec!["either { env = \"VARIABLE\" } or { file = \"/path\" }"],
        ),
        (
            "no issuer",
            "[servers.notes]\nupstream = \"http://127.0.0.1:9/mcp\"\n".into(),
            vec![],
            vec!["issuers: no issuer is trusted", "[[issuers]]"],
        ),
        (
            "no server",
            "[[issuers]]\nissuer = \"https://idp.example.com\"\n".into(),
            vec![],
            vec!["servers: no MCP server", "[servers.NAME]"],
        ),
        (
            "listen",
            format!("[proxy]\nlisten = \"localhost\"\n{}", good("")),
            vec![],
            vec!["proxy.listen", "write IP:PORT"],
        ),
        (
            "metrics address",
            format!("[proxy]\nmetrics = \"localhost:9464\"\n{}", good("")),
            vec![],
            vec!["proxy.metrics", "write IP:PORT"],
        ),
        (
            "metrics on the clients' address",
            format!(
                "[proxy]\nlisten = \"127.0.0.1:8080\"\nmetrics = \"127.0.0.1:8080\"\n{}",
                good("")
            ),
            vec![],
            vec!["proxy.metrics", "an address of their own"],
        ),
        (
            "empty audit_log",
            format!("[proxy]\naudit_log = \"\"\n{}", good("")),
            vec![],
            vec!["proxy.audit_log", "\"-\" for standard output"],
        ),
        (
            "public_url with a path",
            format!(
                "[proxy]\npublic_url = \"https://mcp.example.com/base\"\n{}",
                good("")
            ),
            vec![],
            vec!["proxy.public_url", "not an origin"],
        ),
        (
            "https upstream",
            good("").replace("http://127.0.0.1:9000/mcp", "https://api.example.com/mcp"),
            vec![],
            vec![
                "servers.notes.upstream",
                "https upstreams are not supported",
            ],
        ),
        (
            "server id",
            good("").replace("[servers.notes]", "[servers.\"no/tes\"]"),
            vec![],
            vec!["servers.no/tes", "letters, digits"],
        ),
        (
            "a server's unknown issuer",
            good("issuers = [\"https://other.example.com\"]"),
            vec![],
            vec!["servers.notes.issuers", "is not one of [[issuers]]"],
        ),
        (
            "plain http issuer",
            good("").replace("https://idp.example.com", "http://idp.example.com"),
            vec![],
            vec!["issuers[0].issuer"],
        ),
        (
            "no way to keys",
            good("").replace(
                "issuer = \"https://idp.example.com\"",
                "issuer = \"https://idp.example.com\"\ndiscovery = false",
            ),
            vec![],
            vec!["issuers[0]", "needs jwks_uri or introspection"],
        ),
        (
            "algorithm",
            good("").replace(
                "issuer = \"https://idp.example.com\"",
                "issuer = \"https://idp.example.com\"\nalgorithms = [\"RS257\"]",
            ),
            vec![],
            vec!["issuers[0].algorithms", "\"RS257\" is not a JWS algorithm"],
        ),
        (
            "dpop mode",
            good("").replace(
                "issuer = \"https://idp.example.com\"",
                "issuer = \"https://idp.example.com\"\ndpop = \"maybe\"",
            ),
            vec![],
            vec!["unknown variant `maybe`", "allowed", "required"],
        ),
        (
            "credentials kind",
            good("credentials = { kind = \"passthrough\" }"),
            vec![],
            vec!["unknown variant `passthrough`", "none", "exchange"],
        ),
        (
            "exchange client authentication",
            good(
                "credentials = { kind = \"exchange\", client_id = \"gw\", client_secret = { env = \"GW_SECRET\" }, auth = \"private_key_jwt\" }",
            ),
            vec![("GW_SECRET", "s")],
            vec!["servers.notes.credentials.auth", "client_secret_basic"],
        ),
        (
            "a header the gateway sets",
            good(
                "credentials = { kind = \"header\", name = \"host\", value = { env = \"GW_SECRET\" } }",
            ),
            vec![("GW_SECRET", "s")],
            vec![
                "servers.notes.credentials.name",
                "set by the gateway itself",
            ],
        ),
        (
            "a short nonce secret",
            good("dpop_nonces = true\ndpop_nonce_secret = { env = \"GW_SECRET\" }"),
            vec![("GW_SECRET", "short")],
            vec!["servers.notes.dpop_nonce_secret", "at least 32"],
        ),
        (
            "a route taken twice",
            good(
                "[servers.other]\nupstream = \"http://127.0.0.1:9001/mcp\"\nresource = \"http://127.0.0.1:8080/servers/notes/mcp\"\n",
            ),
            vec![],
            vec![
                "servers.other.resource",
                "its path /servers/notes/mcp is server notes's too",
            ],
        ),
        (
            "a route on the gateway's own path",
            good("resource = \"https://mcp.example.com/healthz\""),
            vec![],
            vec!["servers.notes.resource", "/healthz is the gateway's own"],
        ),
        (
            "an exchange with several issuers and none named",
            format!(
                "[[issuers]]\nissuer = \"https://other.example.com\"\n{}",
                good(
                    "credentials = { kind = \"exchange\", client_id = \"gw\", client_secret = { env = \"GW_SECRET\" } }"
                )
            ),
            vec![("GW_SECRET", "s")],
            vec![
                "servers.notes.credentials.issuer",
                "name the one whose tokens are exchanged",
            ],
        ),
        (
            "an exchange for an issuer not trusted",
            good(
                "credentials = { kind = \"exchange\", issuer = \"https://x.example.com\", client_id = \"gw\", client_secret = { env = \"GW_SECRET\" } }",
            ),
            vec![("GW_SECRET", "s")],
            vec![
                "servers.notes.credentials.issuer",
                "not an issuer this server trusts",
            ],
        ),
        (
            "an upstream with a query",
            good("").replace("9000/mcp", "9000/mcp?tenant=a"),
            vec![],
            vec!["servers.notes.upstream", "has a query"],
        ),
        (
            "an upstream with user info",
            good("").replace("http://127.0.0.1", "http://user:pw@127.0.0.1"),
            vec![],
            vec!["servers.notes.upstream", "user info"],
        ),
        (
            "a zero connect timeout",
            format!("[proxy]\nconnect_timeout_seconds = 0\n{}", good("")),
            vec![],
            vec!["proxy.connect_timeout_seconds", "at least 1 second"],
        ),
        (
            "a hop-by-hop credential header",
            good(
                "credentials = { kind = \"header\", name = \"te\", value = { env = \"GW_SECRET\" } }",
            ),
            vec![("GW_SECRET", "s")],
            vec!["servers.notes.credentials.name", "goes one hop only"],
        ),
        (
            "a forwarding credential header",
            good(
                "credentials = { kind = \"header\", name = \"X-Forwarded-User\", value = { env = \"GW_SECRET\" } }",
            ),
            vec![("GW_SECRET", "s")],
            vec!["servers.notes.credentials.name"],
        ),
        (
            "an override past an array",
            good(""),
            vec![(
                "MCP_GATEKEEPER__ISSUERS__3__ISSUER",
                "https://x.example.com",
            )],
            vec![
                "environment variable MCP_GATEKEEPER__ISSUERS__3__ISSUER",
                "past the array's 1 items",
            ],
        ),
        (
            "an override with a wrong value",
            good(""),
            vec![("MCP_GATEKEEPER__PROXY__CONNECT_TIMEOUT_SECONDS", "soon")],
            vec![
                "with the overrides of MCP_GATEKEEPER__PROXY__CONNECT_TIMEOUT_SECONDS",
                "connect_timeout_seconds",
            ],
        ),
    ];
    let mut failures = Vec::new();
    for (name, text, env, expected) in &cases {
        let error = mistake(text, env);
        for words in expected {
            if !error.contains(words) {
                failures.push(format!("{name}: no {words:?} in: {error}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn environment_variables_override_keys_and_secrets_stay_references() {
    let file = TempFile::new(&good(""));
    let env = [
        ("MCP_GATEKEEPER__PROXY__LISTEN", "127.0.0.1:9999"),
        (
            "MCP_GATEKEEPER__PROXY__PUBLIC_URL",
            "https://public.example.com",
        ),
        ("MCP_GATEKEEPER__SERVERS__NOTES__SCOPES", "[\"a\", \"b\"]"),
        ("MCP_GATEKEEPER__SERVERS__NOTES__FILTER_TOOLS", "true"),
        ("UNRELATED", "ignored"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
    let config = load(&file.0, env).expect("overridden");
    assert_eq!(config.proxy.listen, "127.0.0.1:9999");
    assert_eq!(
        config.resource_uri("notes").as_deref(),
        Some("https://public.example.com/servers/notes/mcp")
    );
    assert_eq!(config.servers["notes"].scopes, ["a", "b"]);
    assert!(config.servers["notes"].filter_tools);

    // An override cannot write a secret in: it is a value like any in the file.
    let env = [(
        "MCP_GATEKEEPER__SERVERS__NOTES__CREDENTIALS",
        "{ kind = \"header\", value = \"hunter2\" }",
    )]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
    let error = load(&file.0, env).expect_err("inline secret").to_string();
    assert!(
        error.contains("a secret is not written in the configuration"),
        "{error}"
    );
}
