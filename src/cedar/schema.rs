//! The published schema of the entities [`CedarPolicy`](super::CedarPolicy) builds, in
//! Cedar's schema syntax, and the policy text's `arg_*` attributes.

use std::collections::BTreeSet;

use super::Options;

/// The claims every principal is declared with: read them without `has`; a token
/// that lacks one makes a policy that reads it fail (and so deny).
const CLAIMS: &[(&str, &str)] = &[
    ("sub", "String"),
    ("iss", "String"),
    ("client_id", "String"),
    ("azp", "String"),
    ("scope", "String"),
    ("scp", "Set<String>"),
    ("email", "String"),
    ("name", "String"),
    ("preferred_username", "String"),
    ("groups", "Set<String>"),
    ("roles", "Set<String>"),
    ("exp", "Long"),
    ("iat", "Long"),
    ("nbf", "Long"),
];

/// The schema of `options` for policies that read the arguments `arguments`.
pub(super) fn text(options: &Options, arguments: &BTreeSet<String>) -> String {
    let mut claims: Vec<(String, String)> = CLAIMS
        .iter()
        .map(|(name, ty)| ((*name).to_owned(), (*ty).to_owned()))
        .collect();
    for (name, ty) in &options.claims {
        claims.retain(|(n, _)| n != name);
        claims.push((name.clone(), ty.clone()));
    }
    let mut attributes = String::new();
    for (name, ty) in &claims {
        let name = if options.multi_valued.contains(name) {
            attributes.push_str(&format!(
                "  {}: Set<String>,\n",
                quoted(&format!("claimset_{name}"))
            ));
            attributes.push_str(&format!(
                "  {}: String,\n",
                quoted(&format!("claim_{name}"))
            ));
            continue;
        } else {
            name
        };
        attributes.push_str(&format!("  {}: {ty},\n", quoted(&format!("claim_{name}"))));
    }
    let mut args = String::new();
    for argument in arguments {
        args.push_str(&format!(
            "  {}: String,\n",
            quoted(&format!("arg_{argument}"))
        ));
        args.push_str(&format!(
            "  {}: Bool,\n",
            quoted(&format!("arg_{argument}_present"))
        ));
    }
    let group = &options.group_entity_type;
    format!(
        "// mcp-gatekeeper's Cedar model (ToolHive's names).\n\
         entity {group};\n\
         entity MCP;\n\
         entity Client in [{group}] {{\n{attributes}}};\n\
         entity Tool in [MCP] {{\n  name: String,\n  operation: String,\n  feature: String,\n  \
         readOnlyHint: Bool,\n  destructiveHint: Bool,\n  idempotentHint: Bool,\n  openWorldHint: Bool,\n{args}}};\n\
         entity Prompt in [MCP] {{\n  name: String,\n  operation: String,\n  feature: String,\n}};\n\
         entity Resource in [MCP] {{\n  name: String,\n  uri: String,\n  operation: String,\n  feature: String,\n}};\n\
         entity FeatureType {{\n  \"type\": String,\n  operation: String,\n  feature: String,\n}};\n\
         type Claims = {{\n{attributes}}};\n\
         type ClaimsAndArguments = {{\n{attributes}{args}}};\n\
         action call_tool appliesTo {{ principal: [Client], resource: [Tool], context: ClaimsAndArguments }};\n\
         action get_prompt appliesTo {{ principal: [Client], resource: [Prompt], context: Claims }};\n\
         action read_resource appliesTo {{ principal: [Client], resource: [Resource], context: Claims }};\n\
         action list_tools, list_prompts, list_resources appliesTo {{ principal: [Client], resource: [FeatureType], context: Claims }};\n"
    )
}

/// `name` as an attribute name of the schema: bare when it is an identifier, else a
/// quoted string (`"claim_cognito:groups"`).
fn quoted(name: &str) -> String {
    let identifier = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if identifier {
        name.to_owned()
    } else {
        format!("{name:?}")
    }
}

/// The arguments the policy text reads: every `arg_NAME` in it (an attribute, or a
/// quoted key), `NAME` without a `_present` suffix.
pub(super) fn arguments(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("arg_") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + 4..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let name = name.strip_suffix("_present").unwrap_or(&name).to_owned();
        if !name.is_empty() {
            found.insert(name);
        }
    }
    found
}

/// The claims the policy text reads: `NAME` of every `claim_NAME` and `claimset_NAME`
/// in it (an attribute, or a quoted key such as `principal["claim_cognito:groups"]`).
/// A claim a policy reads is always written out (Cedar has no computed attribute
/// names), so the others need not be converted.
pub(super) fn claims(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for prefix in ["claimset_", "claim_"] {
        let mut rest = text;
        while let Some(at) = rest.find(prefix) {
            let before = rest[..at].chars().next_back();
            rest = &rest[at + prefix.len()..];
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            // A quoted key runs to its closing quote; an attribute is an identifier.
            let name: String = match before {
                Some('"') => rest.chars().take_while(|c| *c != '"').collect(),
                _ => rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect(),
            };
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}
