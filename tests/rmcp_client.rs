//! rmcp as the MCP client, with its OAuth support (feature `auth`): it discovers the
//! authorization server from the example server's 401 challenge and metadata
//! document, registers itself dynamically at a real oidc-provider, runs the
//! authorization-code flow with PKCE (the provider approves headlessly), and calls
//! the protected tools with the token it got.

mod support;

use std::collections::HashMap;

use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::auth::{
    AuthClient, AuthorizationManager, AuthorizationRequest, AuthorizationSession,
};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use support::idp;
use support::process::start;

const REDIRECT: &str = "http://127.0.0.1/callback";

/// Follows the authorization URL the way a browser would (cookies kept, every
/// redirect followed) until the provider redirects to `REDIRECT`; returns that URL.
async fn follow_headlessly(mut url: String) -> String {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    // name -> (path, value): the provider scopes its interaction cookies by path.
    let mut jar: HashMap<String, (String, String)> = HashMap::new();
    for _ in 0..20 {
        if url.starts_with(REDIRECT) {
            return url;
        }
        let parsed = reqwest::Url::parse(&url).expect("absolute URL");
        let cookies: Vec<String> = jar
            .iter()
            .filter(|(_, (path, _))| parsed.path().starts_with(path.as_str()))
            .map(|(name, (_, value))| format!("{name}={value}"))
            .collect();
        let mut request = client.get(parsed.clone());
        if !cookies.is_empty() {
            request = request.header("cookie", cookies.join("; "));
        }
        let response = request.send().await.expect("authorization step");
        for set in response.headers().get_all("set-cookie") {
            let set = set.to_str().unwrap_or_default();
            let mut attributes = set.split(';');
            let Some((name, value)) = attributes.next().and_then(|p| p.split_once('=')) else {
                continue;
            };
            let path = attributes
                .filter_map(|a| a.trim().strip_prefix("path="))
                .next()
                .unwrap_or("/")
                .to_owned();
            jar.insert(name.trim().to_owned(), (path, value.to_owned()));
        }
        let location = response
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .unwrap_or_else(|| panic!("no redirect from {url}: {}", response.status()))
            .to_owned();
        url = parsed.join(&location).expect("location").to_string();
    }
    panic!("the authorization flow did not reach the redirect URI");
}

#[tokio::test]
async fn rmcp_client_discovers_authorizes_and_calls_the_protected_example() {
    // The provider only accepts resources named at start, so the port comes first.
    let port = support::closed_port().await.port();
    let resource = format!("http://127.0.0.1:{port}/mcp");
    let provider = idp::oidc_provider(&["--resource", &resource]).await;
    let _server = start(
        "mcp_server",
        &[
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--issuer",
            &provider.issuer(),
        ],
        "issuer:",
    )
    .await;

    // The 401 challenge is where rmcp starts.
    let challenge = reqwest::Client::new()
        .post(&resource)
        .header("accept", "application/json, text/event-stream")
        .json(&support::process::whoami())
        .send()
        .await
        .expect("unauthenticated call");
    assert_eq!(challenge.status(), 401);
    let challenge = challenge.headers()["www-authenticate"]
        .to_str()
        .expect("ascii")
        .to_owned();

    let mut manager = AuthorizationManager::new(resource.as_str())
        .await
        .expect("manager");
    let resolution = manager
        .resolve_metadata_from_challenge(Some(&challenge))
        .await
        .expect("discovery from our challenge and metadata document");
    assert_eq!(
        resolution.metadata.token_endpoint,
        provider.field("token_endpoint")
    );
    manager.set_metadata(resolution.metadata);
    let request = AuthorizationRequest::new(REDIRECT)
        .with_scopes(["mcp:read"])
        .with_client_name("rmcp interop test");
    let session = AuthorizationSession::new(manager, request)
        .await
        .map_err(|(_, e)| e)
        .expect("dynamic registration and the authorization URL");
    let callback = follow_headlessly(session.get_authorization_url().to_owned()).await;
    session
        .handle_callback_url(&callback)
        .await
        .expect("code exchanged for a token");

    let client = AuthClient::new(reqwest::Client::new(), session.auth_manager);
    let transport = StreamableHttpClientTransport::with_client(
        client,
        StreamableHttpClientTransportConfig::with_uri(resource.as_str()),
    );
    let mcp = ().serve(transport).await.expect("MCP session");
    let whoami = mcp
        .call_tool(CallToolRequestParams::new("whoami"))
        .await
        .expect("whoami");
    let caller = whoami.structured_content.expect("structured result");
    assert_eq!(caller["subject"], "user-1");
    assert_eq!(caller["issuer"], provider.issuer());
    assert_eq!(caller["audiences"][0], resource);
    assert_eq!(caller["kind"], "Jwt");
    let _ = mcp.cancel().await;
}
