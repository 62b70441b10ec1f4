//! [`McpScopes`]: the scopes each MCP operation needs, declared once. The same
//! declaration decides requests (`403 insufficient_scope` naming exactly the scopes of
//! the operation, the MCP step-up challenge), filters `tools/list`, and fills the
//! metadata document's `scopes_supported`, so the three never disagree.

use std::borrow::Cow;
use std::sync::Arc;

use crate::authorize::Decision;
use crate::principal::Principal;

use super::operation::{McpOperation, OperationSource};

/// Per-operation scope rules for an MCP server.
///
/// Rules are tried in the order they were added and the first that matches decides;
/// an operation no rule matches (and a request whose operation is unknown, such as
/// the SSE `GET`) needs the default scopes. Names are matched exactly or with `*`
/// wildcards (`write*`, `*_admin`, `file:///public/*`), case-sensitively.
///
/// ```
/// use mcp_gatekeeper::{McpOperation, McpScopes};
///
/// let scopes = McpScopes::new(["mcp:read"])
///     .tool("write*", ["mcp:write"])
///     .tool("delete_repo", ["mcp:admin"]);
/// assert_eq!(*scopes.scopes_for(&McpOperation::tool_call("write_file")), ["mcp:write"]);
/// assert_eq!(*scopes.scopes_for(&McpOperation::tool_call("whoami")), ["mcp:read"]);
/// assert_eq!(scopes.all_scopes(), ["mcp:read", "mcp:write", "mcp:admin"]);
/// ```
#[derive(Debug, Clone)]
pub struct McpScopes {
    default: Arc<[String]>,
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    methods: &'static [&'static str],
    method: Option<String>,
    pattern: Option<Pattern>,
    scopes: Arc<[String]>,
}

impl Rule {
    fn matches(&self, method: &str, name: Option<&str>) -> bool {
        let method_ok = match &self.method {
            Some(m) => m == method,
            None => self.methods.contains(&method),
        };
        method_ok
            && match &self.pattern {
                None => true,
                Some(pattern) => name.is_some_and(|n| pattern.matches(n)),
            }
    }
}

/// The methods whose name is a resource URI.
const URI_METHODS: &[&str] = &[
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
];

/// `uri` as a server that decodes percent-escapes once and removes dot segments
/// (RFC 3986 §5.2.4) would read it; borrowed when that changes nothing.
fn normalized(uri: &str) -> Cow<'_, str> {
    if !uri.contains('%') && !uri.contains("/.") {
        return Cow::Borrowed(uri);
    }
    let bytes = uri.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[at], bytes.get(at + 1), bytes.get(at + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                decoded.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                at += 3;
            }
            (b, _, _) => {
                decoded.push(b);
                at += 1;
            }
        }
    }
    let decoded = String::from_utf8_lossy(&decoded).into_owned();
    let path_start = match decoded.find("://") {
        Some(i) => decoded[i + 3..]
            .find('/')
            .map_or(decoded.len(), |j| i + 3 + j),
        None => decoded.find(':').map_or(0, |i| i + 1),
    };
    let (head, rest) = decoded.split_at(path_start);
    let path_end = rest.find(['?', '#']).unwrap_or(rest.len());
    let (path, tail) = rest.split_at(path_end);
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing = false;
    for segment in path.split('/') {
        trailing = matches!(segment, "." | "..");
        match segment {
            "." => {}
            ".." => {
                if segments.len() > 1 {
                    segments.pop();
                }
            }
            other => segments.push(other),
        }
    }
    if trailing {
        segments.push("");
    }
    Cow::Owned(format!("{head}{}{tail}", segments.join("/")))
}

fn collect<I, T>(scopes: I) -> Arc<[String]>
where
    I: IntoIterator<Item = T>,
    T: Into<String>,
{
    scopes.into_iter().map(Into::into).collect()
}

impl McpScopes {
    /// Rules whose default — what every operation not matched by a rule needs — is
    /// `default_scopes` (may be empty: then unmatched operations need no scope).
    pub fn new<I, T>(default_scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        Self {
            default: collect(default_scopes),
            rules: Vec::new(),
        }
    }

    fn rule(
        mut self,
        methods: &'static [&'static str],
        method: Option<String>,
        pattern: Option<&str>,
        scopes: Arc<[String]>,
    ) -> Self {
        self.rules.push(Rule {
            methods,
            method,
            pattern: pattern.map(Pattern::new),
            scopes,
        });
        self
    }

    /// `tools/call` of the tools matching `pattern` needs `scopes`.
    pub fn tool<I, T>(self, pattern: &str, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.rule(&["tools/call"], None, Some(pattern), collect(scopes))
    }

    /// `prompts/get` of the prompts matching `pattern` needs `scopes`.
    pub fn prompt<I, T>(self, pattern: &str, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.rule(&["prompts/get"], None, Some(pattern), collect(scopes))
    }

    /// `resources/read`, `resources/subscribe` and `resources/unsubscribe` of the
    /// resource URIs matching `pattern` need `scopes`. URIs are matched as sent and
    /// as normalised (see [`McpScopes::scopes_for`]), so `../` or `%2e%2e` cannot step
    /// out of a rule.
    pub fn resource<I, T>(self, pattern: &str, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.rule(URI_METHODS, None, Some(pattern), collect(scopes))
    }

    /// Every request with JSON-RPC method `method` (`tools/list`, `initialize`,
    /// `completion/complete`, …) needs `scopes`, whatever it names.
    pub fn method<I, T>(self, method: &str, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.rule(&[], Some(method.to_owned()), None, collect(scopes))
    }

    /// The scopes `operation` needs: those of the first matching rule, else the
    /// default. An operation known only from unverified headers
    /// ([`OperationSource::Headers`]) matches no rule.
    ///
    /// A resource URI with percent-escapes or dot segments is matched as sent and as
    /// a server would normalise it (`file:///public/../secret` is also
    /// `file:///secret`); when the two readings match different rules, the operation
    /// needs the scopes of both.
    pub fn scopes_for(&self, operation: &McpOperation) -> Cow<'_, [String]> {
        let Some(method) = operation.method() else {
            return Cow::Borrowed(&self.default);
        };
        if operation.source() == OperationSource::Headers {
            return Cow::Borrowed(&self.default);
        }
        let first = |name: Option<&str>| -> &[String] {
            self.rules
                .iter()
                .find(|rule| rule.matches(method, name))
                .map_or(&self.default, |rule| &rule.scopes)
        };
        let raw = first(operation.name());
        if let (true, Some(Cow::Owned(other))) = (
            URI_METHODS.contains(&method),
            operation.name().map(normalized),
        ) {
            let other = first(Some(&other));
            if other != raw {
                let mut both = raw.to_vec();
                both.extend(other.iter().filter(|s| !raw.contains(s)).cloned());
                return Cow::Owned(both);
            }
        }
        Cow::Borrowed(raw)
    }

    /// The default scopes: what an operation no rule matches needs.
    pub fn default_scopes(&self) -> &[String] {
        &self.default
    }

    /// Every scope the rules mention, default first, each once, in order of
    /// appearance: the `scopes_supported` these rules imply.
    pub fn all_scopes(&self) -> Vec<String> {
        let mut all: Vec<String> = Vec::new();
        let every = self
            .default
            .iter()
            .chain(self.rules.iter().flat_map(|r| r.scopes.iter()));
        for scope in every {
            if !all.contains(scope) {
                all.push(scope.clone());
            }
        }
        all
    }

    /// Whether the decision for `principal` can depend on the operation: false when
    /// it holds every scope any rule needs, so its request bodies need not be read.
    pub fn depends_on_operation(&self, principal: &Principal) -> bool {
        let granted = principal.scopes();
        !self
            .default
            .iter()
            .chain(self.rules.iter().flat_map(|r| r.scopes.iter()))
            .all(|s| granted.contains(s))
    }

    /// Decides `operation` for `principal`: allowed when every scope it needs was
    /// granted, else `insufficient_scope` naming all of them.
    pub fn decide(&self, principal: &Principal, operation: &McpOperation) -> Decision {
        let needed = self.scopes_for(operation);
        if needed.iter().all(|s| principal.scopes().contains(s)) {
            Decision::Allow
        } else {
            Decision::insufficient_scope(needed.iter().cloned())
        }
    }
}

/// A name pattern: literal text with `*` matching any run of characters.
#[derive(Debug, Clone)]
struct Pattern {
    parts: Vec<String>,
}

impl Pattern {
    fn new(pattern: &str) -> Self {
        Self {
            parts: pattern.split('*').map(str::to_owned).collect(),
        }
    }

    fn matches(&self, name: &str) -> bool {
        let (first, rest) = match self.parts.split_first() {
            Some(split) => split,
            None => return name.is_empty(),
        };
        let Some(mut remaining) = name.strip_prefix(first.as_str()) else {
            return false;
        };
        let Some((last, middle)) = rest.split_last() else {
            return remaining.is_empty();
        };
        for part in middle {
            match remaining.find(part.as_str()) {
                Some(at) => remaining = &remaining[at + part.len()..],
                None => return false,
            }
        }
        remaining.len() >= last.len() && remaining.ends_with(last.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_literally_or_with_wildcards() {
        let cases = [
            ("write", "write", true),
            ("write", "write2", false),
            ("write*", "write", true),
            ("write*", "write_file", true),
            ("write*", "rewrite", false),
            ("*_admin", "repo_admin", true),
            ("*_admin", "repo_admins", false),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "acb", false),
            ("ab*ba", "aba", false),
            ("*", "", true),
            ("", "", true),
            ("", "x", false),
            ("file:///public/*", "file:///public/a.txt", true),
            ("file:///public/*", "file:///private/a.txt", false),
            ("Write*", "write", false),
        ];
        for (pattern, name, expected) in cases {
            assert_eq!(
                Pattern::new(pattern).matches(name),
                expected,
                "{pattern} ~ {name}"
            );
        }
    }

    fn rules() -> McpScopes {
        McpScopes::new(["mcp:read"])
            .tool("write*", ["mcp:write"])
            .resource("file:///secret/*", ["files:secret"])
            .prompt("admin", ["mcp:admin"])
            .method("tools/list", Vec::<String>::new())
            .tool("*", ["mcp:read", "mcp:tools"])
    }

    #[test]
    fn the_first_matching_rule_decides_else_the_default() {
        let rules = rules();
        let scopes = |op: McpOperation| rules.scopes_for(&op).to_vec();
        assert_eq!(scopes(McpOperation::tool_call("write_x")), ["mcp:write"]);
        assert_eq!(
            scopes(McpOperation::tool_call("whoami")),
            ["mcp:read", "mcp:tools"]
        );
        assert_eq!(
            scopes(McpOperation::new(
                "resources/subscribe",
                Some("file:///secret/k".into())
            )),
            ["files:secret"]
        );
        assert_eq!(
            scopes(McpOperation::new(
                "resources/read",
                Some("file:///pub".into())
            )),
            ["mcp:read"]
        );
        assert_eq!(
            scopes(McpOperation::new("prompts/get", Some("admin".into()))),
            ["mcp:admin"]
        );
        assert!(scopes(McpOperation::new("tools/list", None)).is_empty());
        assert_eq!(scopes(McpOperation::new("initialize", None)), ["mcp:read"]);
        assert_eq!(scopes(McpOperation::unknown()), ["mcp:read"]);
    }

    #[test]
    fn resource_uris_are_matched_as_sent_and_as_normalised() {
        let rules =
            McpScopes::new(["files:secret"]).resource("file:///public/*", Vec::<String>::new());
        let scopes = |uri: &str| {
            rules
                .scopes_for(&McpOperation::new("resources/read", Some(uri.to_owned())))
                .to_vec()
        };
        assert!(scopes("file:///public/a.txt").is_empty());
        assert!(scopes("file:///public/my%20notes.txt").is_empty());
        for sneaky in [
            "file:///public/../secret/k",
            "file:///public/./../secret/k",
            "file:///public/%2e%2e/secret/k",
            "file:///public/..",
        ] {
            assert_eq!(scopes(sneaky), ["files:secret"], "{sneaky}");
        }
        assert_eq!(
            normalized("file:///a/b/../c?x=/../#f"),
            "file:///a/c?x=/../#f"
        );
        assert_eq!(normalized("file:///a/%41"), "file:///a/A");
        assert_eq!(normalized("urn:x/./y"), "urn:x/y");
        assert!(matches!(normalized("file:///plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn all_scopes_lists_each_scope_once_default_first() {
        assert_eq!(
            rules().all_scopes(),
            [
                "mcp:read",
                "mcp:write",
                "files:secret",
                "mcp:admin",
                "mcp:tools"
            ]
        );
    }
}
