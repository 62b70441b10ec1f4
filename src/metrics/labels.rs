//! The values of the labels: bounded sets, most of them `'static` strings.

/// The most distinct issuers [`intern`] keeps; any more are `other`.
const MAX_ISSUERS: usize = 1024;

/// `issuer` as a `'static` string, kept once per distinct value for the process:
/// a configured issuer, named at build time (so the labels of each request cost no
/// allocation). Past [`MAX_ISSUERS`] distinct values, `other`.
pub(crate) fn intern(issuer: &str) -> &'static str {
    static KNOWN: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let mut known = KNOWN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(found) = known.iter().find(|k| **k == issuer) {
        return found;
    }
    if known.len() >= MAX_ISSUERS {
        return "other";
    }
    let leaked: &'static str = Box::leak(issuer.to_owned().into_boxed_str());
    known.push(leaked);
    leaked
}

#[cfg(feature = "metrics")]
pub(crate) fn status_label(status: Option<u16>) -> &'static str {
    match status {
        None => "none",
        Some(200) => "200",
        Some(201) => "201",
        Some(202) => "202",
        Some(204) => "204",
        Some(304) => "304",
        Some(400) => "400",
        Some(401) => "401",
        Some(403) => "403",
        Some(404) => "404",
        Some(405) => "405",
        Some(406) => "406",
        Some(413) => "413",
        Some(415) => "415",
        Some(429) => "429",
        Some(500) => "500",
        Some(502) => "502",
        Some(503) => "503",
        Some(504) => "504",
        Some(100..=199) => "1xx",
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(_) => "5xx",
    }
}

/// The methods of the MCP specification (2026-07-28 and before): the values of the
/// `mcp_method` label besides `other` and `none`.
pub(crate) const MCP_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "server/discover",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "completion/complete",
    "logging/setLevel",
    "tasks/get",
    "tasks/result",
    "tasks/list",
    "tasks/cancel",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
    "roots/list",
    "sampling/createMessage",
    "elicitation/create",
];

/// The `mcp_method` and `tool` labels of an operation, as two bytes: indexes into
/// [`MCP_METHODS`] and the tools of [`enable_with_tools`](super::enable_with_tools), or one of the markers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OperationLabels {
    method: u8,
    tool: u8,
}

const OTHER: u8 = u8::MAX - 1;
const NONE: u8 = u8::MAX;

impl OperationLabels {
    /// The labels of the operation `method` on `name`.
    pub(crate) fn of(method: Option<&str>, name: Option<&str>) -> Self {
        let index =
            |found: Option<usize>| found.and_then(|i| u8::try_from(i).ok()).unwrap_or(OTHER);
        let method = match method {
            None => NONE,
            Some(method) => index(MCP_METHODS.iter().position(|known| *known == method)),
        };
        let tool = match name {
            None => NONE,
            Some(name) => index(listed_tools().iter().position(|t| &**t == name)),
        };
        Self { method, tool }
    }

    /// The `mcp_method` label: a method of the specification, `other` or `none`.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn method(self) -> &'static str {
        label(
            self.method,
            MCP_METHODS.get(usize::from(self.method)).copied(),
        )
    }

    /// The `tool` label: a tool named in [`enable_with_tools`](super::enable_with_tools), `other` or `none`.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn tool(self) -> &'static str {
        let listed = listed_tools().get(usize::from(self.tool)).map(|t| &**t);
        label(self.tool, listed)
    }
}

fn label(index: u8, found: Option<&'static str>) -> &'static str {
    match (index, found) {
        (NONE, _) => "none",
        (_, Some(found)) if index < OTHER => found,
        _ => "other",
    }
}

/// The tools of [`enable_with_tools`](super::enable_with_tools) (none before it, or without the feature).
fn listed_tools() -> &'static [Box<str>] {
    #[cfg(feature = "metrics")]
    if let Some(listed) = super::TOOLS.get() {
        return listed;
    }
    &[]
}
