//! [`Argument`]: a member of a `tools/call`'s `arguments` that a policy reads
//! ([`McpScopes::tool_argument`](super::McpScopes::tool_argument), or
//! [`Authorize::arguments`](crate::Authorize::arguments)), for which tools, and the
//! `Mcp-Param-*` header that mirrors it (SEP-2243).

use std::sync::Arc;

use http::header::HeaderName;
use serde_json::Value;

use super::operation::McpOperation;
use super::scopes::Pattern;
use crate::error::ConfigError;

/// A member of a `tools/call`'s `arguments` that a policy reads: its name, the tools
/// whose calls it is read for, the values that need no more scopes, and the
/// `Mcp-Param-*` header that mirrors it (SEP-2243), if the tools declare one
/// (`"x-mcp-header"` in their input schema).
///
/// ```
/// use mcp_gatekeeper::Argument;
///
/// // `visibility` needs nothing more when it is exactly "public"; the tool's schema
/// // mirrors it in the header `Mcp-Param-Visibility`.
/// let visibility = Argument::new("visibility").unless(["public"]).header("Visibility");
/// assert_eq!(visibility.name(), "visibility");
/// assert!(visibility.read_for("create_repo"));
/// assert!(!visibility.clone().for_tools("create_*").read_for("delete_repo"));
/// ```
#[derive(Debug, Clone)]
pub struct Argument {
    pub(crate) name: String,
    tools: Option<Pattern>,
    pub(crate) free: Vec<Value>,
    header: Option<String>,
    /// `Mcp-Param-{header}`, when `header` makes a valid header name.
    header_name: Option<HeaderName>,
}

impl Argument {
    /// The top-level member `name` of the arguments of every tool's calls (narrow it
    /// with [`Argument::for_tools`]).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            tools: None,
            free: Vec::new(),
            header: None,
            header_name: None,
        }
    }

    /// Read only for calls of the tools matching `pattern` (`*` wildcards, as in
    /// [`McpScopes::tool`](super::McpScopes::tool)).
    /// [`McpScopes::tool_argument`](super::McpScopes::tool_argument) sets it from its
    /// own pattern.
    pub fn for_tools(mut self, pattern: &str) -> Self {
        self.tools = Some(Pattern::new(pattern));
        self
    }

    /// The values (compared as JSON, exactly: `"public"` is not `"Public"`) that need
    /// no more scopes; any other value, a missing argument or arguments that could not
    /// be read need the rule's scopes (fail closed).
    pub fn unless<I, V>(mut self, values: I) -> Self
    where
        I: IntoIterator<Item = V>,
        V: Into<Value>,
    {
        self.free.extend(values.into_iter().map(Into::into));
        self
    }

    /// The tools mirror this argument in the header `Mcp-Param-{name}` (their input
    /// schema's `"x-mcp-header": "{name}"`): a request that sends the header must send
    /// the body's value, and under MCP 2026-07-28 one whose body has the value must
    /// send the header (else `400 HeaderMismatch`). A `name` that cannot make a header
    /// name (it must be an HTTP token) is a build error.
    pub fn header(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.header_name =
            HeaderName::from_bytes(format!("mcp-param-{}", name.to_ascii_lowercase()).as_bytes())
                .ok()
                .filter(|_| !name.is_empty());
        self.header = Some(name);
        self
    }

    /// The member's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the member is read for a call of the tool `tool`.
    pub fn read_for(&self, tool: &str) -> bool {
        self.tools.as_ref().is_none_or(|p| p.matches(tool))
    }

    /// The `Mcp-Param-*` header that mirrors it (`mcp-param-visibility`).
    pub fn header_name(&self) -> Option<&HeaderName> {
        self.header_name.as_ref()
    }

    /// Refuses a header that makes no header name.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        match (&self.header, &self.header_name) {
            (Some(header), None) => Err(ConfigError::new(format!(
                "the argument {:?} is mirrored by the header {header:?}, which makes no \
                 header name: Mcp-Param-{{name}} needs a name of letters, digits and \
                 !#$%&'*+-.^_`|~ (an HTTP token)",
                self.name
            ))),
            _ => Ok(()),
        }
    }

    /// Whether `other` reads the same member for the same tools with the same header.
    pub(crate) fn same_read(&self, other: &Self) -> bool {
        self.name == other.name
            && self.header == other.header
            && self.tools.as_ref().map(Pattern::text) == other.tools.as_ref().map(Pattern::text)
    }
}

/// What a `tools/call` says of one argument, as [`McpOperation::argument`] tells it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ArgumentValue<'a> {
    /// The body has it.
    Present(&'a Value),
    /// The arguments were read and do not have it.
    Absent,
    /// The arguments were not read: no policy asked for this member for this tool
    /// ([`Authorize::arguments`](crate::Authorize::arguments)), the body was not read
    /// (the caller holds every scope the rules name), they are not an object, or the
    /// operation is a [`tool_listing`](McpOperation::tool_listing). A policy must not
    /// take it for any value: deciding as if it were allowed would fail open.
    NotRead,
}

impl<'a> ArgumentValue<'a> {
    /// The value, when the body has it.
    pub fn present(self) -> Option<&'a Value> {
        match self {
            Self::Present(value) => Some(value),
            _ => None,
        }
    }
}

/// `tools/call` of the tools matching `pattern` needs `scopes` too unless the
/// argument is one of its free values.
#[derive(Debug, Clone)]
pub(crate) struct ArgumentRule {
    pub(crate) argument: Argument,
    pub(crate) scopes: Arc<[String]>,
}

impl ArgumentRule {
    /// Whether the rule asks for its scopes for `operation`, a `tools/call` of `tool`:
    /// it names the tool, and the argument is not one of its free values.
    pub(crate) fn applies(&self, tool: &str, operation: &McpOperation) -> bool {
        let free = operation
            .argument(&self.argument.name)
            .present()
            .is_some_and(|value| self.argument.free.contains(value));
        self.argument.read_for(tool) && !free
    }
}

/// The arguments `rules` read, each reading once.
pub(crate) fn read_by(rules: &[ArgumentRule]) -> Vec<Argument> {
    let mut read: Vec<Argument> = Vec::new();
    for rule in rules {
        if !read.iter().any(|a| a.same_read(&rule.argument)) {
            read.push(rule.argument.clone());
        }
    }
    read
}
