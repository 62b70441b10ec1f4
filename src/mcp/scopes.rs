//! [`McpScopes`]: the scopes each MCP operation needs, declared once. The same
//! declaration decides requests (`403 insufficient_scope` naming exactly the scopes of
//! the operation, the MCP step-up challenge), filters `tools/list`, and fills the
//! metadata document's `scopes_supported`, so the three never disagree.

use crate::error::ConfigError;
use crate::hierarchy::ScopeHierarchy;
use std::borrow::Cow;
use std::sync::Arc;

use crate::decision::Decision;
use crate::principal::Principal;

use super::argument::{Argument, ArgumentRule};
use super::operation::{McpOperation, OperationSource};
use super::readings::{case_insensitive, visit_readings};

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
    arguments: Vec<ArgumentRule>,
    /// Methods that may be called without a token.
    public_methods: Vec<String>,
    /// Tools that may be called without a token.
    public_tools: Vec<Pattern>,
    hierarchy: ScopeHierarchy,
}

#[derive(Debug, Clone)]
struct Rule {
    methods: &'static [&'static str],
    method: Option<String>,
    pattern: Option<Pattern>,
    /// The pattern as a case-insensitive file system reads it, for the reading of a
    /// `file:` URI made the same way.
    folded: Option<Pattern>,
    scopes: Arc<[String]>,
}

impl Rule {
    fn matches(&self, method: &str, name: Option<&str>, folded: bool) -> bool {
        let method_ok = match &self.method {
            Some(m) => m == method,
            None => self.methods.contains(&method),
        };
        let pattern = match folded {
            true => &self.folded,
            false => &self.pattern,
        };
        method_ok
            && match pattern {
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
            arguments: Vec::new(),
            public_methods: Vec::new(),
            public_tools: Vec::new(),
            hierarchy: ScopeHierarchy::new(),
        }
    }

    /// The same rules, met also by scopes that imply the ones a rule names (R-MCP-4:
    /// with `mcp:admin` ⊇ `mcp:write`, a token with `mcp:admin` passes a
    /// `mcp:write` rule); challenges still name the rule's own scopes. A hierarchy
    /// with a cycle is an error. In a [`ResourceServer`](crate::ResourceServer), the
    /// builder's [`scope_hierarchy`](crate::ResourceServerBuilder::scope_hierarchy),
    /// when set, is used instead, for these rules and the required scopes alike.
    pub fn with_hierarchy(self, hierarchy: ScopeHierarchy) -> Result<Self, ConfigError> {
        hierarchy.validate()?;
        Ok(self.hierarchy_checked(hierarchy))
    }

    /// The hierarchy the rules are met with (empty unless set).
    pub(crate) fn hierarchy(&self) -> &ScopeHierarchy {
        &self.hierarchy
    }

    /// [`McpScopes::with_hierarchy`] for a hierarchy validated already.
    pub(crate) fn hierarchy_checked(mut self, hierarchy: ScopeHierarchy) -> Self {
        self.hierarchy = hierarchy;
        self
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
            folded: pattern.map(|p| Pattern::new(&case_insensitive(p))),
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

    /// `tools/call` of the tools matching `pattern` also needs `scopes` unless its
    /// `argument` has one of the argument's free values ([`Argument::unless`]): the
    /// scopes may depend on what is asked (`visibility: "public"` needs less than
    /// `"private"`). They are added to those of the tool's rule (or the default), and
    /// a call that lacks both is answered with one challenge naming all of them.
    /// `tools/list` filtering lists the tool for a caller without them, since some
    /// call of it needs none. The argument is read as the most lenient server would
    /// read it: a member that differs from its name only in letter case, or one given
    /// twice, is refused with `400`.
    ///
    /// ```
    /// use mcp_gatekeeper::{Argument, McpOperation, McpScopes};
    ///
    /// let scopes = McpScopes::new(["repo:read"])
    ///     .tool("create_repo", ["repo:write"])
    ///     .tool_argument("create_repo", Argument::new("visibility").unless(["public"]), ["repo:private"]);
    /// let public = McpOperation::tool_call("create_repo").with_argument("visibility", "public".into());
    /// let private = McpOperation::tool_call("create_repo").with_argument("visibility", "private".into());
    /// assert_eq!(*scopes.scopes_for(&public), ["repo:write"]);
    /// assert_eq!(*scopes.scopes_for(&private), ["repo:write", "repo:private"]);
    /// ```
    pub fn tool_argument<I, T>(mut self, pattern: &str, argument: Argument, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.arguments.push(ArgumentRule {
            argument: argument.for_tools(pattern),
            scopes: collect(scopes),
        });
        self
    }

    /// Requests of the JSON-RPC `methods` may be made without a token (opt-in; never
    /// the default): for servers that let anyone discover them (`server/discover`,
    /// `initialize` and `notifications/initialized` for 2025-11-25 clients,
    /// `tools/list`, `ping`). A request without credentials for one of them goes on
    /// with an anonymous [`Principal`] ([`Principal::is_anonymous`]); one for any
    /// other operation gets the usual `401` challenge; a request whose token fails
    /// verification is still `401`. A public operation needs no scope from anyone,
    /// the builder's required scopes included; a callback still decides it. Only the
    /// operation read from the body counts, never the `Mcp-Method` header alone.
    ///
    /// ```
    /// use mcp_gatekeeper::{McpOperation, McpScopes};
    ///
    /// let scopes = McpScopes::new(["mcp:read"])
    ///     .public(["server/discover", "tools/list"])
    ///     .public_tool("get_weather");
    /// assert!(scopes.is_public(&McpOperation::new("tools/list", None)));
    /// assert!(scopes.is_public(&McpOperation::tool_call("get_weather")));
    /// assert!(!scopes.is_public(&McpOperation::tool_call("whoami")));
    /// ```
    pub fn public<I, T>(mut self, methods: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.public_methods
            .extend(methods.into_iter().map(Into::into));
        self
    }

    /// `tools/call` of the tools matching `pattern` may be made without a token; see
    /// [`McpScopes::public`]. With tool filtering, an anonymous `tools/list` lists
    /// only these.
    pub fn public_tool(mut self, pattern: &str) -> Self {
        self.public_tools.push(Pattern::new(pattern));
        self
    }

    /// Whether `operation`, read from a body, may be made without a token.
    pub fn is_public(&self, operation: &McpOperation) -> bool {
        if operation.source() != OperationSource::Body {
            return false;
        }
        let Some(method) = operation.method() else {
            return false;
        };
        self.public_methods.iter().any(|m| m == method)
            || (method == "tools/call"
                && operation
                    .name()
                    .is_some_and(|name| self.public_tools.iter().any(|p| p.matches(name))))
    }

    /// Whether any operation is public.
    pub(crate) fn has_public(&self) -> bool {
        !(self.public_methods.is_empty() && self.public_tools.is_empty())
    }

    /// The arguments the rules read (each name once).
    pub fn arguments(&self) -> Vec<Argument> {
        super::argument::read_by(&self.arguments)
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
    /// resource URIs matching `pattern` need `scopes`. URIs are matched under every
    /// reading a server may take (see [`McpScopes::scopes_for`]), so `../`, `%2e%2e`,
    /// `//`, a backslash, the scheme's case or a `file:` host form cannot step out of
    /// a rule. Write patterns in the canonical form: lower-case scheme, `file:///…`.
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
    /// A resource URI is matched under every reading a server behind may take, and
    /// the operation needs the scopes of every rule any reading matches (R-GW-2): as
    /// sent; percent-decoded once and twice; with `\` taken for `/`; with dot
    /// segments removed as RFC 3986 §5.2.4 says and with the path cleaned as a file
    /// system path (`//` collapses, `..` pops a segment); with the scheme in lower
    /// case and `file:/x`, `file://localhost/x`, `file://any-host/x`, `file:////x`
    /// read as `file:///x`; user info and default ports dropped.
    /// So under a rule `file:///secret/*`, `file:///public//../secret/k` needs the
    /// secret rule's scopes as well as the public one's.
    pub fn scopes_for(&self, operation: &McpOperation) -> Cow<'_, [String]> {
        let scopes = self.rule_scopes(operation);
        if self.arguments.is_empty() || !operation.is("tools/call") || operation.is_listing() {
            return scopes;
        }
        let Some(tool) = operation.name() else {
            return scopes;
        };
        let mut scopes = scopes;
        for rule in self.arguments.iter().filter(|r| r.applies(tool, operation)) {
            if rule.scopes.iter().any(|s| !scopes.contains(s)) {
                crate::principal::add_scopes(scopes.to_mut(), rule.scopes.iter());
            }
        }
        scopes
    }

    /// The scopes of the first matching rule, else the default (URIs under every
    /// reading); [`McpScopes::scopes_for`] adds those of the argument rules.
    fn rule_scopes(&self, operation: &McpOperation) -> Cow<'_, [String]> {
        let Some(method) = operation.method() else {
            return Cow::Borrowed(&self.default);
        };
        if operation.source() == OperationSource::Headers {
            return Cow::Borrowed(&self.default);
        }
        let first = |name: Option<&str>, folded: bool| -> &[String] {
            self.rules
                .iter()
                .find(|rule| rule.matches(method, name, folded))
                .map_or(&self.default, |rule| &rule.scopes)
        };
        let raw = first(operation.name(), false);
        let (true, Some(uri)) = (URI_METHODS.contains(&method), operation.name()) else {
            return Cow::Borrowed(raw);
        };
        // Matched as they are made: a URI has up to a few hundred readings.
        let mut union: Option<Vec<String>> = None;
        visit_readings(uri, &mut |reading, folded| {
            let other = first(Some(reading), folded);
            let have = union.as_deref().unwrap_or(raw);
            if other.iter().any(|s| !have.contains(s)) {
                let mut more = have.to_vec();
                more.extend(other.iter().filter(|s| !have.contains(s)).cloned());
                union = Some(more);
            }
        });
        union.map_or(Cow::Borrowed(raw), Cow::Owned)
    }

    /// The default scopes: what an operation no rule matches needs.
    pub fn default_scopes(&self) -> &[String] {
        &self.default
    }

    /// Every scope the rules mention, default first, each once, in order of
    /// appearance: the `scopes_supported` these rules imply.
    pub fn all_scopes(&self) -> Vec<String> {
        let mut all: Vec<String> = Vec::new();
        crate::principal::add_scopes(&mut all, self.every_scope());
        all
    }

    /// Every scope any rule names, repeats included.
    fn every_scope(&self) -> impl Iterator<Item = &String> {
        self.default
            .iter()
            .chain(self.rules.iter().flat_map(|r| r.scopes.iter()))
            .chain(self.arguments.iter().flat_map(|r| r.scopes.iter()))
    }

    /// Whether the decision for `principal` can depend on the operation: false when
    /// it holds every scope any rule needs, so its request bodies need not be read.
    pub fn depends_on_operation(&self, principal: &Principal) -> bool {
        if principal.is_anonymous() && self.has_public() {
            return true;
        }
        let granted = principal.scopes();
        !self
            .every_scope()
            .all(|s| self.hierarchy.satisfies(granted, s))
    }

    /// Decides `operation` for `principal`: allowed when every scope it needs was
    /// granted, else `insufficient_scope` naming all of them.
    pub fn decide(&self, principal: &Principal, operation: &McpOperation) -> Decision {
        if self.is_public(operation) {
            return Decision::Allow;
        }
        let needed = self.scopes_for(operation);
        let granted = principal.scopes();
        if needed.iter().all(|s| self.hierarchy.satisfies(granted, s)) {
            Decision::Allow
        } else {
            Decision::insufficient_scope(needed.iter().cloned())
        }
    }
}

/// A name pattern: literal text with `*` matching any run of characters.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    parts: Vec<String>,
}

impl Pattern {
    pub(crate) fn new(pattern: &str) -> Self {
        Self {
            parts: pattern.split('*').map(str::to_owned).collect(),
        }
    }

    /// The pattern as written.
    pub(crate) fn text(&self) -> String {
        self.parts.join("*")
    }

    pub(crate) fn matches(&self, name: &str) -> bool {
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
    use super::super::readings::*;
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

    /// Both rule styles: an allow-list (only `public` is free) and a deny-list
    /// (only `secret` costs a scope).
    fn both_styles() -> [McpScopes; 2] {
        [
            McpScopes::new(["files:secret"]).resource("file:///public/*", Vec::<String>::new()),
            McpScopes::new(Vec::<String>::new()).resource("file:///secret/*", ["files:secret"]),
        ]
    }

    fn scopes(rules: &McpScopes, uri: &str) -> Vec<String> {
        rules
            .scopes_for(&McpOperation::new("resources/read", Some(uri.to_owned())))
            .to_vec()
    }

    #[test]
    fn a_resource_uri_needs_the_scopes_of_every_reading_a_server_may_take() {
        for rules in both_styles() {
            for sneaky in [
                "file:///public//../secret/k",
                "FILE:///secret/k",
                "File:///secret/k",
                "file://localhost/secret/k",
                "file://LOCALHOST/secret/k",
                "file:/secret/k",
                "file:////secret/k",
                "file:///public/%2e%2e/secret/k",
                "file:///public/%2E%2E/secret/k",
                "file:///public/%252e%252e/secret/k",
                "file:///public/../secret/k",
                "file:///public/./../secret/k",
                "file:///public\\..\\secret\\k",
                "file:///public/..\\secret/k",
                "file:///%73ecret/k",
                "file:///public/a/../../secret/k",
                "file://evil.example/secret/k",
                "file://127.0.0.1/secret/k",
                "file://localhost:80/secret/k",
                "file:secret/k",
                "file:///public/..%2fsecret/k",
                "file:///./secret/k",
                " file:///secret/k",
                "file:///secret/k ",
                "\tfile:///secret/k",
                "file:///public/x?/../../secret/k",
                "file:///public/x#/../../secret/k",
                "file:///public/file://../secret/k",
                "file:///Secret/k",
                "file:///SECRET./k",
                "file:///secret /k",
                "%20file:///secret/k",
                "\u{a0}file:///secret/k",
                "\u{FEFF}file:///secret/k",
                "file:///ſecret/k",
            ] {
                assert_eq!(scopes(&rules, sneaky), ["files:secret"], "{sneaky}");
            }
            for public in [
                "file:///public/a.txt",
                "file:///public/my%20notes.txt",
                "file:///public/sub/../b.txt",
            ] {
                assert!(scopes(&rules, public).is_empty(), "{public}");
            }
        }
        // The allow-list style also guards the root and what is above it.
        let [allow, _] = both_styles();
        for above in [
            "file:///public/..",
            "file:///public/%2e%2e",
            "file:///public/../../etc/passwd",
        ] {
            assert_eq!(scopes(&allow, above), ["files:secret"], "{above}");
        }
    }

    #[test]
    fn rules_keep_their_own_letter_case_and_spelling() {
        // Allow-list rules whose patterns have capitals, spaces or a custom scheme's
        // authority: their own URIs stay free.
        let allow = McpScopes::new(["admin"])
            .resource("file:///Users/me/public/*", Vec::<String>::new())
            .resource("file:///public/My Docs/*", Vec::<String>::new())
            .resource("repo://MyOrg/*", Vec::<String>::new())
            .resource("config://settings", Vec::<String>::new());
        for free in [
            "file:///Users/me/public/a.txt",
            "file:///public/My Docs/a",
            "repo://MyOrg/x",
            "config://settings",
        ] {
            assert!(
                scopes(&allow, free).is_empty(),
                "{free}: {:?}",
                scopes(&allow, free)
            );
        }
        // Deny-list rules hold whatever case the file system ignores, and for exact
        // names whatever query or fragment follows.
        let deny = McpScopes::new(Vec::<String>::new())
            .resource("file:///Users/me/private/*", ["secret"])
            .resource("file:///secret.txt", ["secret"]);
        for sneaky in [
            "file:///users/me/private/k",
            "file:///USERS/ME/PRIVATE./k",
            "file:///secret.txt?",
            "file:///secret.txt#x",
            "file:///Secret.txt?x=1",
        ] {
            assert_eq!(scopes(&deny, sneaky), ["secret"], "{sneaky}");
        }
    }

    #[test]
    fn readings_are_canonical_forms_of_the_uri() {
        let all = readings("FILE:/public//../secret/k");
        assert_eq!(
            all[0], "FILE:/public//../secret/k",
            "the URI as sent comes first"
        );
        for expected in [
            "file:///public//../secret/k",
            "file:///public/secret/k",
            "file:///secret/k",
        ] {
            assert!(all.contains(&expected.to_owned()), "{expected} in {all:?}");
        }
        assert_eq!(
            canonical_uri(
                "file:///a/b/../c?x=/../#f",
                Cleaning::Rfc3986,
                Tail::Delimiters
            ),
            "file:///a/c?x=/../#f"
        );
        assert_eq!(
            canonical_uri("urn:x/./y", Cleaning::Rfc3986, Tail::Delimiters),
            "urn:x/y"
        );
        assert_eq!(
            canonical_uri(
                "HTTPS://Host.Example/a//b",
                Cleaning::Posix,
                Tail::Delimiters
            ),
            "https://host.example/a/b"
        );
        assert_eq!(
            canonical_uri("file:///a/..", Cleaning::Posix, Tail::Delimiters),
            "file:///"
        );
        assert_eq!(
            canonical_uri(
                "https://u:p@h.example:443/a",
                Cleaning::None,
                Tail::Delimiters
            ),
            "https://h.example/a"
        );
        assert_eq!(
            canonical_uri("http://h.example:8080/a", Cleaning::None, Tail::Delimiters),
            "http://h.example:8080/a"
        );
        assert_eq!(readings("file:///plain"), ["file:///plain"]);
        assert_eq!(percent_decode("a%41%zz%4"), Some("aA%zz%4".to_owned()));
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

#[cfg(test)]
mod argument_rules {
    use super::*;
    use serde_json::json;

    fn rules() -> McpScopes {
        McpScopes::new(["repo:read"])
            .tool("create_repo", ["repo:write"])
            .tool_argument(
                "create_repo",
                Argument::new("visibility")
                    .unless(["public"])
                    .header("Visibility"),
                ["repo:private"],
            )
    }

    #[test]
    fn an_argument_rule_adds_its_scopes_unless_the_value_is_a_free_one() {
        let call = |value: serde_json::Value| {
            McpOperation::tool_call("create_repo").with_argument("visibility", value)
        };
        assert_eq!(*rules().scopes_for(&call(json!("public"))), ["repo:write"]);
        for other in [
            json!("private"),
            json!("PUBLIC"),
            json!(null),
            json!(["public"]),
        ] {
            assert_eq!(
                *rules().scopes_for(&call(other.clone())),
                ["repo:write", "repo:private"],
                "{other}"
            );
        }
        // Arguments not read: fail closed; listing the tool: it may be called for less.
        let unread = McpOperation::tool_call("create_repo");
        assert_eq!(*rules().scopes_for(&unread), ["repo:write", "repo:private"]);
        let listing = McpOperation::tool_listing("create_repo");
        assert_eq!(*rules().scopes_for(&listing), ["repo:write"]);
        // Other tools are not concerned.
        let other = McpOperation::tool_call("list_repos").with_argument("visibility", json!("x"));
        assert_eq!(*rules().scopes_for(&other), ["repo:read"]);
    }

    #[test]
    fn argument_rules_are_supported_scopes_and_name_what_the_operation_layer_reads() {
        assert_eq!(
            rules().all_scopes(),
            ["repo:read", "repo:write", "repo:private"]
        );
        let read = rules().arguments();
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].name(), "visibility");
        assert_eq!(
            read[0].header_name().map(http::HeaderName::as_str),
            Some("mcp-param-visibility")
        );
    }
}
