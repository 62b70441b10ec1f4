//! Cedar policies (issue 17, feature `cedar`): decisions over subject, groups, method,
//! tool and the tool's hints learned from the server's `tools/list` answers; the same
//! policies filtering `tools/list`; validation at load naming what is wrong; a
//! replacement at run time; an evaluation error denying; a step-up asked by a
//! `@scopes` forbid; seed 003's "permit everything" with an opaque token; and
//! ToolHive's documented example policies, the working ones unchanged and the broken
//! ones refused at load with the reason.

#![cfg(feature = "cedar")]

mod support;

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use mcp_gatekeeper::cedar::CedarPolicy;
use mcp_gatekeeper::keys::LocalKeys;
use mcp_gatekeeper::{
    Authorize, Decision, FetchOptions, Introspection, Issuer, McpOperation, Principal,
    ResourceServer, TokenKind,
};
use serde_json::{Value, json};
use support::{INTROSPECTION_CLIENT, SigningKey, TestIdp};
use tower::{Layer, ServiceExt};

const ISSUER: &str = "https://idp.example.com";
const RESOURCE: &str = "https://mcp.example.com/mcp";

/// The tools the server behind lists, with the hints it gives.
const TOOLS: &str = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[
  {"name":"read_notes","annotations":{"readOnlyHint":true,"destructiveHint":false}},
  {"name":"delete_all","annotations":{"destructiveHint":true}},
  {"name":"plain"}
]}}"#;

fn principal(claims: Value) -> Principal {
    let claims = claims.as_object().cloned().unwrap_or_default();
    Principal::from_claims(TokenKind::Jwt, ISSUER, claims)
}

async fn decide(policy: &CedarPolicy, who: &Principal, operation: &McpOperation) -> Decision {
    let parts = Request::new(()).into_parts().0;
    policy.authorize(who, operation, &parts).await
}

fn allowed(decision: &Decision) -> bool {
    *decision == Decision::Allow
}

/// The whole stack trusting `issuer`, with `policy` and tool filtering on, in front of
/// a server that lists [`TOOLS`] and answers everything else with an empty result.
fn stack(
    issuer: Issuer,
    policy: CedarPolicy,
) -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = Response<impl http_body::Body<Data = Bytes, Error = impl std::fmt::Debug>>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    let server = ResourceServer::builder(RESOURCE)
        .issuer(issuer)
        .authorize(policy)
        .filter_tools(true)
        .build()
        .expect("valid configuration");
    server
        .layer()
        .layer(tower::service_fn(|request: Request<_>| async move {
            let (_, body) = request.into_parts();
            let bytes = http_body_util::BodyExt::collect(body)
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            let message: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let answer = match message["method"].as_str() {
                Some("tools/list") => TOOLS.to_owned(),
                _ => r#"{"jsonrpc":"2.0","id":1,"result":{}}"#.to_owned(),
            };
            let mut response = Response::new(Full::new(Bytes::from(answer)));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            Ok::<_, Infallible>(response)
        }))
}

/// An issuer whose JWTs are signed with `key`.
fn local(key: &SigningKey) -> Issuer {
    let keys =
        LocalKeys::from_jwks(support::signing::jwks(&[key]).to_string().as_bytes()).expect("keys");
    Issuer::new(ISSUER).local_keys(keys).discovery(false)
}

/// `idp`, whose opaque tokens are introspected.
fn introspected(idp: &TestIdp) -> Issuer {
    let introspection = Introspection::new(INTROSPECTION_CLIENT.0, INTROSPECTION_CLIENT.1)
        .endpoint(idp.introspection_uri())
        .fetch_options(FetchOptions::default());
    Issuer::new(&idp.issuer).introspection(introspection)
}

fn token(key: &SigningKey, extra: Value) -> String {
    let mut claims = support::claims(ISSUER, RESOURCE);
    if let (Some(claims), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
        claims.extend(extra.clone());
    }
    key.sign(&claims)
}

/// Sends a JSON-RPC `method` with `params` and `token`; the status and the body.
async fn call<S, B>(service: &S, token: &str, method: &str, params: Value) -> (StatusCode, Value)
where
    S: tower::Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible> + Clone,
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let request = Request::post("/mcp")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    let response = service.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let mut body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if let Some(challenge) = challenge {
        body["challenge"] = json!(challenge);
    }
    (status, body)
}

/// For each case's claims, whether a `tools/call` of `plain` and a `prompts/get` of
/// `greeting` are allowed, each decided twice (the second on what the principal
/// keeps).
async fn may_call_and_prompt(policy: &CedarPolicy, cases: &[(Value, bool, bool)]) {
    let call = McpOperation::tool_call("plain");
    let prompt = McpOperation::new("prompts/get", Some("greeting".into()));
    for (claims, may_call, may_prompt) in cases {
        let who = principal(claims.clone());
        for _ in 0..2 {
            let called = decide(policy, &who, &call).await;
            assert_eq!(
                allowed(&called),
                *may_call,
                "{claims} tools/call: {called:?}"
            );
            let prompted = decide(policy, &who, &prompt).await;
            assert_eq!(
                allowed(&prompted),
                *may_prompt,
                "{claims} prompts/get: {prompted:?}"
            );
        }
    }
}

fn tool(name: &str) -> Value {
    json!({"name": name, "arguments": {}})
}

#[tokio::test]
async fn permits_forbids_and_the_default_deny_decide_over_subject_groups_method_and_tool() {
    let policy = CedarPolicy::builder()
        .policies(
            r#"
            permit(principal, action == Action::"call_tool", resource == Tool::"read_notes");
            permit(principal in THVGroup::"admins", action, resource);
            forbid(principal == Client::"mallory", action, resource);
            "#,
        )
        .build()
        .expect("valid policies");
    let key = SigningKey::ec("k");
    let service = stack(local(&key), policy);
    let alice = token(&key, json!({"sub": "alice"}));
    let bob = token(&key, json!({"sub": "bob", "groups": ["admins"]}));
    let mallory = token(&key, json!({"sub": "mallory", "groups": ["admins"]}));

    assert_eq!(
        call(&service, &alice, "tools/call", tool("read_notes"))
            .await
            .0,
        200
    );
    let (status, body) = call(&service, &alice, "tools/call", tool("delete_all")).await;
    assert_eq!(status, 403, "{body}");
    let challenge = body["challenge"].as_str().unwrap_or_default();
    assert!(!challenge.contains("insufficient_scope"), "{challenge}");
    assert_eq!(
        call(&service, &bob, "tools/call", tool("delete_all"))
            .await
            .0,
        200
    );
    // A forbid overrides the group's permit.
    assert_eq!(
        call(&service, &mallory, "tools/call", tool("read_notes"))
            .await
            .0,
        403
    );
    // Other actions: a prompt nobody permits, a method no action covers.
    let greeting = json!({"name": "greeting"});
    assert_eq!(
        call(&service, &alice, "prompts/get", greeting.clone())
            .await
            .0,
        403
    );
    assert_eq!(call(&service, &bob, "prompts/get", greeting).await.0, 200);
    assert_eq!(call(&service, &alice, "ping", json!({})).await.0, 200);
    assert_eq!(
        call(&service, &bob, "sampling/createMessage", json!({}))
            .await
            .0,
        403
    );
}

#[tokio::test]
async fn hints_learned_from_the_servers_tools_list_decide_calls_and_the_same_policies_filter_it() {
    let policy = CedarPolicy::builder()
        .policies(
            r#"
            permit(principal, action == Action::"call_tool", resource);
            forbid(principal, action == Action::"call_tool", resource)
              when { resource.destructiveHint };
            "#,
        )
        .build()
        .expect("valid policies");
    let key = SigningKey::ec("k");
    let service = stack(local(&key), policy);
    let alice = token(&key, json!({"sub": "alice"}));
    // Before the server said anything, a tool has MCP's defaults: destructive.
    assert_eq!(
        call(&service, &alice, "tools/call", tool("read_notes"))
            .await
            .0,
        403
    );
    let (status, listed) = call(&service, &alice, "tools/list", json!({})).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .map(|tools| tools.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["read_notes"], "{listed}");
    assert_eq!(
        call(&service, &alice, "tools/call", tool("read_notes"))
            .await
            .0,
        200
    );
    assert_eq!(
        call(&service, &alice, "tools/call", tool("delete_all"))
            .await
            .0,
        403
    );
    assert_eq!(
        call(&service, &alice, "tools/call", tool("plain")).await.0,
        403
    );
}

#[test]
fn a_policy_naming_an_attribute_the_schema_does_not_declare_fails_at_load_naming_it() {
    let error = CedarPolicy::builder()
        .policies(r#"permit(principal, action, resource) when { resource.readOnlyHnt };"#)
        .build()
        .expect_err("an unknown attribute");
    let message = error.to_string();
    assert!(message.contains("readOnlyHnt"), "{message}");
    assert!(message.contains("policy0"), "{message}");
    assert!(
        message.contains("readOnlyHint"),
        "the close name is suggested: {message}"
    );
    let error = CedarPolicy::builder()
        .policies(
            "permit(principal, action, resource) when { principal.claim_department == \"eng\" };",
        )
        .build()
        .expect_err("an undeclared claim");
    assert!(error.to_string().contains("claim_department"), "{error}");
    CedarPolicy::builder()
        .policies(
            "permit(principal, action, resource) when { principal.claim_department == \"eng\" };",
        )
        .claim("department", "String")
        .build()
        .expect("declared with .claim");
}

#[tokio::test]
async fn policies_replaced_at_run_time_decide_the_next_request_and_a_bad_replacement_changes_nothing()
 {
    let policy = CedarPolicy::builder()
        .policies(
            r#"permit(principal, action == Action::"call_tool", resource == Tool::"read_notes");"#,
        )
        .build()
        .expect("valid policies");
    let key = SigningKey::ec("k");
    let service = stack(local(&key), policy.clone());
    let alice = token(&key, json!({"sub": "alice"}));
    assert_eq!(
        call(&service, &alice, "tools/call", tool("plain")).await.0,
        403
    );
    policy
        .replace_policies(r#"permit(principal, action == Action::"call_tool", resource);"#)
        .expect("valid replacement");
    assert_eq!(
        call(&service, &alice, "tools/call", tool("plain")).await.0,
        200
    );
    let refused =
        policy.replace_policies("permit(principal, action, resource) when { resource.nope };");
    assert!(refused.is_err());
    assert_eq!(
        call(&service, &alice, "tools/call", tool("plain")).await.0,
        200
    );
}

/// The policies of a call are those whose resource scope can hold for its tool:
/// whichever tool was called first, a `forbid` naming another still decides that
/// one's calls.
#[tokio::test]
async fn a_policy_naming_a_tool_decides_its_calls_whichever_tool_came_first() {
    let policy = CedarPolicy::builder()
        .policies(
            r#"
            permit(principal, action == Action::"call_tool", resource);
            forbid(principal, action == Action::"call_tool", resource == Tool::"delete_all");
            "#,
        )
        .build()
        .expect("valid policies");
    let who = principal(json!({"sub": "alice"}));
    for (tool, may) in [
        ("plain", true),
        ("delete_all", false),
        ("other", true),
        ("delete_all", false),
    ] {
        let decision = decide(&policy, &who, &McpOperation::tool_call(tool)).await;
        assert_eq!(allowed(&decision), may, "{tool}: {decision:?}");
    }
}

/// Policies whose principal scope cannot hold for a caller are left out of its
/// decisions (they cannot hold nor fail); this pins that the scope is read the way
/// Cedar reads it: through group hierarchies given as entities, by id, by type; and
/// that the group claims are read as ToolHive reads them, with a lone string one group.
#[tokio::test]
async fn principal_scopes_hold_through_group_hierarchies_ids_and_types() {
    let (_guard, logs) = support::capture_logs();
    let policy = CedarPolicy::builder()
        .policies(
            r#"
            permit(principal, action == Action::"call_tool", resource);
            forbid(principal in THVGroup::"restricted", action, resource);
            forbid(principal == Client::"mallory", action, resource);
            permit(principal is Client in THVGroup::"admins", action == Action::"get_prompt", resource);
            "#,
        )
        .entities_json(
            r#"[
              {"uid": {"type": "THVGroup", "id": "interns"}, "attrs": {},
               "parents": [{"type": "THVGroup", "id": "restricted"}]},
              {"uid": {"type": "THVGroup", "id": "summer"}, "attrs": {},
               "parents": [{"type": "THVGroup", "id": "interns"}]}
            ]"#,
        )
        .build()
        .expect("valid policies");
    let cases = [
        (json!({"sub": "alice"}), true, false),
        (json!({"sub": "ivan", "groups": ["interns"]}), false, false),
        (json!({"sub": "sam", "groups": ["summer"]}), false, false),
        (
            json!({"sub": "rita", "groups": ["restricted"]}),
            false,
            false,
        ),
        (json!({"sub": "mallory"}), false, false),
        (json!({"sub": "ada", "groups": ["admins"]}), true, true),
        // One group as a lone string is that group: a forbid on it holds.
        (json!({"sub": "rob", "groups": "restricted"}), false, false),
        (json!({"sub": "abe", "groups": "admins"}), true, true),
        // Any other shape is no group, and the next group claim is read, as in
        // ToolHive; so is the next after a lone string (never fewer groups than
        // ToolHive finds).
        (
            json!({"sub": "nia", "groups": {"restricted": true}}),
            true,
            false,
        ),
        (
            json!({"sub": "ned", "groups": null, "roles": ["restricted"]}),
            false,
            false,
        ),
        (
            json!({"sub": "oz", "groups": {"admins": true}, "roles": ["admins"]}),
            true,
            true,
        ),
        (
            json!({"sub": "sue", "groups": "staff", "roles": ["restricted"]}),
            false,
            false,
        ),
        (
            json!({"sub": "ali", "groups": "admins", "roles": []}),
            true,
            true,
        ),
        // The first array ends the search: `cognito:groups` is not read after it.
        (
            json!({"sub": "cy", "groups": [], "cognito:groups": ["restricted"]}),
            true,
            false,
        ),
        // `Client::"admins"` is not `THVGroup::"admins"`.
        (json!({"sub": "admins"}), true, false),
    ];
    may_call_and_prompt(&policy, &cases).await;
    // nia and oz both send an object as `groups` (no other test here does): the
    // first is a warning naming the claim and its type, the second only DEBUG.
    let logs = String::from_utf8_lossy(&logs.lock().expect("logs")).into_owned();
    let odd: Vec<&str> = logs
        .lines()
        .filter(|line| line.contains("neither an array of strings nor a string"))
        .collect();
    assert!(
        odd.iter()
            .all(|line| line.contains(r#"claim="groups""#) && line.contains(r#"shape="object""#)),
        "{logs}"
    );
    let warnings = odd.iter().filter(|line| line.contains(" WARN ")).count();
    let debug = odd.iter().filter(|line| line.contains(" DEBUG ")).count();
    assert_eq!((warnings, debug), (1, 1), "{logs}");
}

/// ToolHive's `group_claim_name` takes priority over its defaults and does not
/// replace them; `role_claim` adds its groups; an exact member name wins over a
/// dotted path.
#[tokio::test]
async fn group_claims_come_before_toolhives_defaults_and_the_role_claim_adds_to_them() {
    let policy = CedarPolicy::builder()
        .policies(
            r#"
            permit(principal, action == Action::"call_tool", resource);
            forbid(principal in THVGroup::"restricted", action, resource);
            permit(principal in THVGroup::"admins", action == Action::"get_prompt", resource);
            "#,
        )
        .group_claims(["https://example.com/groups"])
        .role_claim("realm_access.roles")
        .build()
        .expect("valid policies");
    let cases = [
        // Without the configured claim, the defaults are read.
        (json!({"sub": "a", "groups": ["restricted"]}), false, false),
        // The configured claim is an array: the defaults are not read.
        (
            json!({"sub": "b", "https://example.com/groups": ["admins"], "groups": ["restricted"]}),
            true,
            true,
        ),
        // ... and the role claim adds to it, as a path into an object.
        (
            json!({"sub": "c", "https://example.com/groups": ["admins"],
                   "realm_access": {"roles": ["restricted"]}}),
            false,
            false,
        ),
        // A member named with the dots wins over the path.
        (
            json!({"sub": "d", "realm_access.roles": ["admins"],
                   "realm_access": {"roles": ["restricted"]}}),
            true,
            true,
        ),
        // A role claim that is one string is one group.
        (
            json!({"sub": "e", "realm_access": {"roles": "restricted"}}),
            false,
            false,
        ),
    ];
    may_call_and_prompt(&policy, &cases).await;
}

/// Arguments are the `String`s the schema declares, whatever JSON type the client
/// sends (a lenient server reads `true` and `"true"`, `1` and `1.0` alike); a call
/// whose arguments were not read is denied, never decided as if it had none; a
/// replacement cannot name an argument the stack does not read.
#[tokio::test]
async fn arguments_are_strings_whatever_their_json_type_and_unread_ones_deny() {
    let policy = CedarPolicy::builder()
        .policies(
            r#"
            permit(principal, action == Action::"call_tool", resource);
            forbid(principal, action == Action::"call_tool", resource)
              when { resource has arg_path && resource.arg_path like "/etc/*" };
            forbid(principal, action == Action::"call_tool", resource)
              when { resource has arg_force && resource.arg_force == "true" };
            forbid(principal, action == Action::"call_tool", resource)
              when { context has arg_user && context.arg_user == "1" };
            "#,
        )
        .build()
        .expect("valid policies");
    let key = SigningKey::ec("k");
    let service = stack(local(&key), policy.clone());
    let alice = token(&key, json!({"sub": "alice"}));
    let with = |arguments: Value| json!({"name": "plain", "arguments": arguments});
    for (arguments, status) in [
        (json!({"path": "/tmp/notes"}), 200),
        (json!({"path": "/etc/shadow"}), 403),
        (json!({"force": false}), 200),
        (json!({"force": true}), 403),
        (json!({"force": "true"}), 403),
        (json!({"user": 2}), 200),
        (json!({"user": 1}), 403),
        (json!({"user": 1.0}), 403),
        (json!({"user": 1e0}), 403),
        (json!({"user": "1"}), 403),
        (json!({}), 200),
    ] {
        let (got, body) = call(&service, &alice, "tools/call", with(arguments.clone())).await;
        assert_eq!(got, status, "{arguments}: {body}");
    }
    // Arguments that are no object were not read: denied, not decided as absent.
    for arguments in [json!("path=/etc/shadow"), json!([["path", "/etc/shadow"]])] {
        let (got, body) = call(&service, &alice, "tools/call", with(arguments.clone())).await;
        assert_eq!(got, 403, "{arguments}: {body}");
    }
    // The stack reads the arguments named at build: a replacement may not add one.
    let error = policy
        .replace_policies(
            r#"permit(principal, action, resource);
               forbid(principal, action, resource) when { resource has arg_url };"#,
        )
        .expect_err("arg_url is not read");
    assert!(error.to_string().contains("arg_url"), "{error}");
    let (got, _) = call(
        &service,
        &alice,
        "tools/call",
        with(json!({"path": "/etc/x"})),
    )
    .await;
    assert_eq!(got, 403, "the policies in force stay");
}

/// A Cedar policy decides by the operation read from the body: with reading it
/// turned off, the server does not build, and a POST whose operation was not read is
/// denied.
#[tokio::test]
async fn a_cedar_policy_never_decides_a_post_whose_operation_was_not_read() {
    let policy = CedarPolicy::builder()
        .policies(r#"permit(principal, action == Action::"call_tool", resource == Tool::"plain");"#)
        .build()
        .expect("valid policies");
    let error = ResourceServer::builder(RESOURCE)
        .issuer(Issuer::new(ISSUER))
        .authorize(policy.clone())
        .mcp_operations(false)
        .build()
        .expect_err("the operation is needed");
    assert!(
        error.to_string().contains("mcp_operations(false)"),
        "{error}"
    );
    let who = principal(json!({"sub": "alice"}));
    let post = Request::post("/mcp")
        .body(())
        .expect("request")
        .into_parts()
        .0;
    let decision = policy
        .authorize(&who, &McpOperation::unknown(), &post)
        .await;
    assert!(!allowed(&decision), "{decision:?}");
    let get = Request::get("/mcp")
        .body(())
        .expect("request")
        .into_parts()
        .0;
    let decision = policy.authorize(&who, &McpOperation::unknown(), &get).await;
    assert!(
        allowed(&decision),
        "an SSE GET needs the token only: {decision:?}"
    );
}

#[tokio::test]
async fn an_evaluation_error_denies_even_beside_a_permit_and_the_log_names_the_policy() {
    let (_guard, logs) = support::capture_logs();
    let policy = CedarPolicy::builder()
        .policies(
            r#"
            permit(principal, action == Action::"call_tool", resource);
            forbid(principal, action == Action::"call_tool", resource)
              when { principal.claim_department == "contractors" };
            "#,
        )
        .claim("department", "String")
        .build()
        .expect("valid policies");
    let without = principal(json!({"sub": "alice"}));
    let decision = decide(&policy, &without, &McpOperation::tool_call("plain")).await;
    assert!(!allowed(&decision), "{decision:?}");
    let logs = String::from_utf8_lossy(&logs.lock().expect("logs")).into_owned();
    assert!(logs.contains("policy1"), "{logs}");
    assert!(logs.contains("claim_department"), "{logs}");
    let with = principal(json!({"sub": "alice", "department": "staff"}));
    assert!(allowed(
        &decide(&policy, &with, &McpOperation::tool_call("plain")).await
    ));
}

#[tokio::test]
async fn a_forbid_annotated_with_scopes_asks_for_them_as_a_step_up() {
    let policy = CedarPolicy::builder()
        .policies(
            r#"
            permit(principal, action == Action::"call_tool", resource);
            @scopes("mcp:delete")
            forbid(principal, action == Action::"call_tool", resource == Tool::"delete_all")
              unless { principal.claimset_scope.contains("mcp:delete") };
            "#,
        )
        .multi_valued_claims(["scope"])
        .build()
        .expect("valid policies");
    let key = SigningKey::ec("k");
    let service = stack(local(&key), policy);
    let reader = token(&key, json!({"sub": "alice", "scope": "mcp:read"}));
    let (status, body) = call(&service, &reader, "tools/call", tool("delete_all")).await;
    assert_eq!(status, 403);
    let challenge = body["challenge"].as_str().unwrap_or_default();
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(challenge.contains("scope=\"mcp:delete\""), "{challenge}");
    let deleter = token(
        &key,
        json!({"sub": "alice", "scope": "mcp:read mcp:delete"}),
    );
    assert_eq!(
        call(&service, &deleter, "tools/call", tool("delete_all"))
            .await
            .0,
        200
    );
    // A scope that only contains the text is not the scope.
    let drafts = token(&key, json!({"sub": "alice", "scope": "mcp:delete:drafts"}));
    assert_eq!(
        call(&service, &drafts, "tools/call", tool("delete_all"))
            .await
            .0,
        403
    );
}

#[tokio::test]
async fn seed_003_permit_everything_lets_every_caller_in_with_an_opaque_token() {
    // ToolHive #5146: with claims read from an upstream token that failed to parse,
    // `permit(principal, action, resource)` locked everyone out. Here the principal
    // comes from the verified token, introspected.
    let idp = TestIdp::start(&[]).await;
    idp.set_introspection(
        "ya29.opaque-token",
        json!({"active": true, "iss": idp.issuer, "sub": "user-1", "aud": RESOURCE,
               "client_id": "client-1", "exp": support::now() + 600}),
    );
    let policy = CedarPolicy::builder()
        .policies("permit(principal, action, resource);")
        .build()
        .expect("valid policies");
    let service = stack(introspected(&idp), policy);
    let (status, body) = call(
        &service,
        "ya29.opaque-token",
        "tools/call",
        tool("anything"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// Seed 003's opaque Google tokens: an introspection answer may leave `iss` out
/// (RFC 7662), and a policy over the issuer must still hold for them, so `claim_iss`
/// is the issuer that vouched for the token; so for a TokenReview user.
#[tokio::test]
async fn claim_iss_is_the_issuer_that_vouched_for_a_token_without_iss() {
    let idp = TestIdp::start(&[]).await;
    let answer = |iss: bool| {
        let mut answer = json!({"active": true, "sub": "user-1", "aud": RESOURCE,
            "client_id": "client-1", "exp": support::now() + 600});
        if iss {
            answer["iss"] = json!(idp.issuer);
        }
        answer
    };
    idp.set_introspection("ya29.with-iss", answer(true));
    idp.set_introspection("ya29.without-iss", answer(false));
    let policy = CedarPolicy::builder()
        .policies(format!(
            r#"permit(principal, action, resource) when {{ principal.claim_iss == "{}" }};"#,
            idp.issuer
        ))
        .build()
        .expect("valid policies");
    let service = stack(introspected(&idp), policy);
    for token in ["ya29.with-iss", "ya29.without-iss"] {
        let (status, body) = call(&service, token, "tools/call", tool("anything")).await;
        assert_eq!(status, 200, "{token}: {body}");
    }
    // A TokenReview user has no `iss`: its issuer is the one configured, and as a
    // multi-valued claim it is in `claimset_iss` too.
    let policy = CedarPolicy::builder()
        .policies(
            r#"permit(principal, action, resource)
                 when { principal.claimset_iss.contains("https://kubernetes.default.svc") };"#,
        )
        .multi_valued_claims(["iss"])
        .build()
        .expect("valid policies");
    let service_account = |issuer: &str| {
        let claims = json!({"sub": "system:serviceaccount:tools:runner"});
        let claims = claims.as_object().cloned().unwrap_or_default();
        Principal::from_claims(TokenKind::TokenReview, issuer, claims)
    };
    let call = McpOperation::tool_call("plain");
    let ours = service_account("https://kubernetes.default.svc");
    assert!(allowed(&decide(&policy, &ours, &call).await));
    let theirs = service_account("https://other-cluster.example");
    assert!(!allowed(&decide(&policy, &theirs, &call).await));
}

#[tokio::test]
async fn toolhives_documented_example_policies_run_unchanged() {
    // docs/authz.md (C1, D1-D12) and its deployment examples, ToolHive's ids policy<i>.
    let documented = [
        r#"permit(principal, action == Action::"call_tool", resource == Tool::"weather");"#,
        r#"permit(principal, action == Action::"get_prompt", resource == Prompt::"greeting");"#,
        r#"permit(principal, action == Action::"read_resource", resource == Resource::"data");"#,
        "permit(\n  principal,\n  action == Action::\"read_resource\",\n  resource == Resource::\"file:///etc/passwd\"\n);",
        r#"permit(principal == Client::"user123", action == Action::"call_tool", resource);"#,
        r#"permit(principal, action == Action::"call_tool", resource) when { principal.claim_roles.contains("admin") };"#,
        "permit(principal, action == Action::\"call_tool\", resource == Tool::\"calculator\") when {\n  resource.arg_operation == \"add\" || resource.arg_operation == \"subtract\"\n};",
        "permit(principal, action == Action::\"call_tool\", resource == Tool::\"weather\") when {\n  principal.claim_name == \"John Doe\"\n};",
        "permit(principal, action == Action::\"call_tool\", resource == Tool::\"forecast\") when {\n  context.claim_name == \"John Doe\"\n};",
        "permit(principal, action == Action::\"call_tool\", resource == Tool::\"maps\") when {\n  resource.arg_location == \"New York\" || resource.arg_location == \"London\"\n};",
        "permit(principal, action == Action::\"call_tool\", resource == Tool::\"traffic\") when {\n  context.arg_location == \"New York\" || context.arg_location == \"London\"\n};",
        r#"permit(principal, action == Action::"list_tools", resource == FeatureType::"tool");"#,
    ];
    let anyone = principal(json!({"sub": "someone", "name": "Jane Smith"}));
    let user123 = principal(json!({"sub": "user123"}));
    let admin = principal(json!({"sub": "root", "roles": ["admin"]}));
    let admin_as_string = principal(json!({"sub": "root", "roles": "admin"}));
    let john = principal(json!({"sub": "john", "name": "John Doe"}));
    let call = McpOperation::tool_call;
    let with = |tool: &str, name: &str, value: &str| {
        McpOperation::tool_call(tool).with_argument(name, json!(value))
    };
    let get = |method: &str, name: &str| McpOperation::new(method, Some(name.to_owned()));
    // Each documented policy alone, as each example is given (ToolHive denies a whole
    // set when any of its policies errors, and so does this crate).
    let cases: Vec<(usize, &str, &Principal, McpOperation, bool)> = vec![
        (0, "D1 weather", &anyone, call("weather"), true),
        (0, "D1 news", &anyone, call("news"), false),
        (
            1,
            "D2 greeting",
            &anyone,
            get("prompts/get", "greeting"),
            true,
        ),
        (2, "D3 data", &anyone, get("resources/read", "data"), true),
        (
            2,
            "D3 data2",
            &anyone,
            get("resources/read", "data2"),
            false,
        ),
        (
            3,
            "D4 passwd",
            &anyone,
            get("resources/read", "file:///etc/passwd"),
            true,
        ),
        (
            3,
            "D4 collision",
            &anyone,
            get("resources/read", "file://_etc/passwd"),
            false,
        ),
        (4, "D6 user123", &user123, call("news"), true),
        (4, "D6 someone else", &anyone, call("news"), false),
        (5, "D7 admin role", &admin, call("news"), true),
        (
            5,
            "D7 a role that is a string",
            &admin_as_string,
            call("news"),
            false,
        ),
        (5, "D7 no roles claim", &anyone, call("news"), false),
        (
            6,
            "D8 add",
            &anyone,
            with("calculator", "operation", "add"),
            true,
        ),
        (
            6,
            "D8 multiply",
            &anyone,
            with("calculator", "operation", "multiply"),
            false,
        ),
        (6, "D8 no argument", &anyone, call("calculator"), false),
        (7, "D9 John Doe", &john, call("weather"), true),
        (7, "D9 Jane Smith", &anyone, call("weather"), false),
        (
            8,
            "D10 John Doe in the context",
            &john,
            call("forecast"),
            true,
        ),
        (8, "D10 Jane Smith", &anyone, call("forecast"), false),
        (
            9,
            "D11 London",
            &anyone,
            with("maps", "location", "London"),
            true,
        ),
        (
            9,
            "D11 Paris",
            &anyone,
            with("maps", "location", "Paris"),
            false,
        ),
        (
            10,
            "D12 New York",
            &anyone,
            with("traffic", "location", "New York"),
            true,
        ),
        (10, "D12 no argument", &anyone, call("traffic"), false),
    ];
    for (index, case, who, operation, expected) in cases {
        let policy = CedarPolicy::builder()
            .policy_list([documented[index]])
            .build()
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        let decision = decide(&policy, who, &operation).await;
        assert_eq!(allowed(&decision), expected, "{case}: {decision:?}");
    }
    // C1, the three policies of the JSON configuration together.
    let policy = CedarPolicy::builder()
        .policy_list(documented[..3].iter().copied())
        .build()
        .expect("C1 loads");
    assert!(allowed(&decide(&policy, &anyone, &call("weather")).await));
    assert!(allowed(
        &decide(&policy, &anyone, &get("prompts/get", "greeting")).await
    ));
    assert!(!allowed(&decide(&policy, &anyone, &call("news")).await));
    // All of them in one set load too.
    let policy = CedarPolicy::builder()
        .policy_list(documented)
        .build()
        .expect("ToolHive's documented policies load together");
    assert!(
        !allowed(&decide(&policy, &anyone, &call("weather")).await),
        "D7 fails for him"
    );
    // tools/list is filtered through call_tool, without arguments: the old list_tools
    // policy lets nothing through, and D8's calculator is hidden.
    let policy = CedarPolicy::builder()
        .policy_list([documented[0], documented[6], documented[11]])
        .build()
        .expect("D1, D8 and list_tools load");
    let listing = |name: &str| McpOperation::tool_listing(name);
    assert!(allowed(
        &decide(&policy, &anyone, &listing("weather")).await
    ));
    assert!(!allowed(
        &decide(&policy, &anyone, &listing("calculator")).await
    ));
    assert!(allowed(
        &decide(&policy, &anyone, &McpOperation::new("tools/list", None)).await
    ));
}

/// A policy that could never apply is refused at load, not left to be inert: a
/// condition the schema makes always false (an argument named in a way calls never
/// carry), and a template, which nothing links.
#[test]
fn policies_that_could_never_apply_are_refused_at_load() {
    for (policy, why) in [
        (
            r#"forbid(principal, action == Action::"call_tool", resource) when { resource has "arg_file-path" };"#,
            "policy1",
        ),
        (
            r#"forbid(principal == ?principal, action == Action::"call_tool", resource);"#,
            "template",
        ),
    ] {
        let text =
            format!(r#"permit(principal, action == Action::"call_tool", resource);{policy}"#);
        let error = CedarPolicy::builder()
            .policies(text)
            .build()
            .expect_err(policy);
        assert!(error.to_string().contains(why), "{why:?} not in {error}");
    }
}

#[test]
fn toolhives_broken_example_policies_are_refused_at_load_with_the_reason() {
    let refused = |policies: &[&str], why: &str| {
        let error = CedarPolicy::builder()
            .policy_list(policies.iter().copied())
            .build()
            .expect_err(why);
        let message = error.to_string();
        assert!(message.contains(why), "{why:?} not in {message}");
    };
    // examples/authz-config.json: `Tool::[...]` is not Cedar.
    refused(
        &[
            r#"permit(principal, action == Action::"call_tool", resource in Tool::["calculator", "translator"]) when { principal.claim_roles.contains("admin") };"#,
        ],
        "line 1, column",
    );
    // docs/arch/02-core-concepts.md: an unquoted action id.
    refused(
        &[
            "permit(\n  principal == Client::\"user@example.com\",\n  action == Action::call_tool,\n  resource == Tool::\"web-search\"\n);",
        ],
        "line 3",
    );
    // vMCP examples: actions named after MCP methods, which ToolHive never matches.
    refused(
        &["permit(\n  principal,\n  action == Action::\"tools/call\",\n  resource\n);"],
        "tools/call",
    );
    // docs/authz.md D13: `<=` on decimals is a type error (ToolHive denies every call).
    refused(
        &[
            "permit(principal, action == Action::\"call_tool\", resource == Tool::\"sensitive_data\") when {\n  principal.claim_roles.contains(\"data_analyst\") &&\n  resource.arg_data_level <= principal.claim_clearance_level\n};",
        ],
        "claim_clearance_level",
    );
    // docs/authz.md D14 and authz-config-with-entities.json: `resource.owner` exists on
    // no entity the request builds.
    refused(
        &[
            "permit(principal, action == Action::\"call_tool\", resource) when { resource.owner == principal.claim_sub };",
        ],
        "owner",
    );
}

#[test]
fn the_published_schema_file_is_the_schema_of_the_default_options() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs/cedar/mcp-gatekeeper.cedarschema");
    let published = std::fs::read_to_string(&path).expect("docs/cedar/mcp-gatekeeper.cedarschema");
    assert_eq!(published, CedarPolicy::published_schema());
}
