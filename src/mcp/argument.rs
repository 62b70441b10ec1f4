//! [`Argument`]: a member of a `tools/call`'s `arguments` that a scope rule reads
//! ([`McpScopes::tool_argument`](super::McpScopes::tool_argument)), and the
//! `Mcp-Param-*` header that mirrors it (SEP-2243).

use std::sync::Arc;

use super::operation::McpOperation;
use super::scopes::Pattern;

/// A member of a `tools/call`'s `arguments` that a rule reads: its name, the values
/// that need no more scopes, and the `Mcp-Param-*` header that mirrors it (SEP-2243),
/// if the tool declares one (`"x-mcp-header"` in its input schema).
///
/// ```
/// use mcp_gatekeeper::Argument;
///
/// // `visibility` needs nothing more when it is exactly "public"; the tool's schema
/// // mirrors it in the header `Mcp-Param-Visibility`.
/// let visibility = Argument::new("visibility").unless(["public"]).header("Visibility");
/// assert_eq!(visibility.name(), "visibility");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Argument {
    pub(crate) name: String,
    pub(crate) free: Vec<serde_json::Value>,
    pub(crate) header: Option<String>,
}

impl Argument {
    /// The top-level member `name` of the arguments.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            free: Vec::new(),
            header: None,
        }
    }

    /// The values (compared as JSON, exactly: `"public"` is not `"Public"`) that need
    /// no more scopes; any other value, a missing argument or arguments that could not
    /// be read need the rule's scopes (fail closed).
    pub fn unless<I, V>(mut self, values: I) -> Self
    where
        I: IntoIterator<Item = V>,
        V: Into<serde_json::Value>,
    {
        self.free.extend(values.into_iter().map(Into::into));
        self
    }

    /// The tool mirrors this argument in the header `Mcp-Param-{name}` (its input
    /// schema's `"x-mcp-header": "{name}"`): a request that sends the header must send
    /// the body's value, and under MCP 2026-07-28 one whose body has the value must
    /// send the header (else `400 HeaderMismatch`). Browser pages may send it (CORS).
    pub fn header(mut self, name: impl Into<String>) -> Self {
        self.header = Some(name.into());
        self
    }

    /// The member's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `Mcp-Param-*` header that mirrors it, in full (`mcp-param-visibility`).
    pub fn header_name(&self) -> Option<String> {
        self.header
            .as_ref()
            .map(|h| format!("mcp-param-{}", h.to_ascii_lowercase()))
    }
}

/// `tools/call` of the tools matching `pattern` needs `scopes` too unless the
/// argument is one of its free values.
#[derive(Debug, Clone)]
pub(crate) struct ArgumentRule {
    pub(crate) pattern: Pattern,
    pub(crate) argument: Argument,
    pub(crate) scopes: Arc<[String]>,
}

impl ArgumentRule {
    /// Whether the rule asks for its scopes for `operation`, a `tools/call` of `tool`:
    /// it names the tool, and the argument is not one of its free values.
    pub(crate) fn applies(&self, tool: &str, operation: &McpOperation) -> bool {
        let free = operation
            .argument(&self.argument.name)
            .is_some_and(|value| self.argument.free.contains(value));
        self.pattern.matches(tool) && !free
    }
}

/// The arguments `rules` read, each name once (with the first header given for it).
pub(crate) fn read_by(rules: &[ArgumentRule]) -> Vec<Argument> {
    let mut read: Vec<Argument> = Vec::new();
    for rule in rules {
        match read.iter_mut().find(|a| a.name == rule.argument.name) {
            Some(known) if known.header.is_none() => known.header.clone_from(&rule.argument.header),
            Some(_) => {}
            None => read.push(rule.argument.clone()),
        }
    }
    read
}
