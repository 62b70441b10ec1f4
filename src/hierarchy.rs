//! [`ScopeHierarchy`]: broader scopes that imply narrower ones (R-MCP-4).
//!
//! MCP 2026-07-28: "Servers MUST account for scope hierarchies, where a broader scope
//! implies narrower ones, when deciding whether a token is sufficient for an
//! operation." A hierarchy declares which scope implies which (`mcp:admin` ⊇
//! `mcp:write` ⊇ `mcp:read`, transitively) and, when asked, lets a granted scope
//! ending in `*` stand for every scope it prefixes (`repo:*` implies `repo:read`).
//! Every scope check the crate makes asks it: the required scopes, [`McpScopes`]
//! rules, [`RequireScopes`] and the tool-list filter (a callback sees the granted
//! scopes as they are, and may ask [`ScopeHierarchy::satisfies`] itself). Challenges
//! keep naming the scopes
//! the operation needs, never broader ones. A cycle (`a` ⊇ `b` ⊇ `a`) is a
//! configuration error: it would make the two one scope under two names.
//!
//! [`McpScopes`]: crate::McpScopes
//! [`RequireScopes`]: crate::RequireScopes

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::error::ConfigError;
use crate::principal::Scopes;

/// Which scopes imply which; see the module docs. Empty by default: a scope is
/// satisfied only by itself.
///
/// ```
/// use mcp_gatekeeper::ScopeHierarchy;
///
/// let hierarchy = ScopeHierarchy::new()
///     .implies("mcp:admin", ["mcp:write"])
///     .implies("mcp:write", ["mcp:read"])
///     .prefix_wildcards(true);
/// hierarchy.validate()?;
/// assert!(hierarchy.implies_scope("mcp:admin", "mcp:read"));
/// assert!(hierarchy.implies_scope("repo:*", "repo:read"));
/// assert!(!hierarchy.implies_scope("mcp:read", "mcp:write"));
/// # Ok::<(), mcp_gatekeeper::ConfigError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct ScopeHierarchy(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    /// What each scope implies directly, as declared.
    direct: BTreeMap<String, BTreeSet<String>>,
    /// What each scope implies, directly or not (itself only if in a cycle).
    closure: BTreeMap<String, BTreeSet<String>>,
    wildcards: bool,
}

impl ScopeHierarchy {
    /// No scope implies another.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares that `broader` implies each of `narrower` (and what they imply).
    pub fn implies<I, T>(self, broader: impl Into<String>, narrower: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        let mut direct = self.0.direct.clone();
        direct
            .entry(broader.into())
            .or_default()
            .extend(narrower.into_iter().map(Into::into));
        Self(Arc::new(Inner {
            closure: closure(&direct),
            direct,
            wildcards: self.0.wildcards,
        }))
    }

    /// Whether a scope ending in `:*`, `.*` or `/*` implies every scope it prefixes
    /// (`repo:*` implies `repo:read`; `*`, `m*` or `repo:read*` never count). Default
    /// `false`: turn it on only when the authorization server grants such scopes
    /// deliberately.
    pub fn prefix_wildcards(self, on: bool) -> Self {
        Self(Arc::new(Inner {
            direct: self.0.direct.clone(),
            closure: self.0.closure.clone(),
            wildcards: on,
        }))
    }

    /// Whether no scope implies another.
    pub fn is_empty(&self) -> bool {
        self.0.direct.is_empty() && !self.0.wildcards
    }

    /// Refuses a cycle, naming a scope on it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self
            .0
            .closure
            .iter()
            .find(|(scope, implied)| implied.contains(*scope))
        {
            Some((scope, _)) => Err(ConfigError::new(format!(
                "the scope hierarchy has a cycle through {scope:?}: a scope would imply \
                 itself through another, making them one scope under two names; remove \
                 one of the implications (R-MCP-4)"
            ))),
            None => Ok(()),
        }
    }

    /// Whether the scope `broader` implies `needed` (itself included).
    pub fn implies_scope(&self, broader: &str, needed: &str) -> bool {
        if broader == needed || self.wildcard_covers(broader, needed) {
            return true;
        }
        self.0.closure.get(broader).is_some_and(|implied| {
            implied.contains(needed) || implied.iter().any(|s| self.wildcard_covers(s, needed))
        })
    }

    /// Whether the scopes `granted` satisfy `needed`.
    pub fn satisfies(&self, granted: &Scopes, needed: &str) -> bool {
        granted.contains(needed)
            || (!self.is_empty() && granted.iter().any(|g| self.implies_scope(g, needed)))
    }

    fn wildcard_covers(&self, scope: &str, needed: &str) -> bool {
        // The prefix ends at a separator, so `files:read*` or `m*` cover nothing.
        self.0.wildcards
            && scope.strip_suffix('*').is_some_and(|prefix| {
                prefix.len() > 1 && prefix.ends_with([':', '.', '/']) && needed.starts_with(prefix)
            })
    }
}

/// Everything each scope of `direct` implies, following the declarations.
fn closure(direct: &BTreeMap<String, BTreeSet<String>>) -> BTreeMap<String, BTreeSet<String>> {
    direct
        .keys()
        .map(|scope| {
            let mut reached = BTreeSet::new();
            let mut next: Vec<&String> = direct[scope].iter().collect();
            while let Some(s) = next.pop() {
                if reached.insert(s.clone()) {
                    next.extend(direct.get(s).into_iter().flatten());
                }
            }
            (scope.clone(), reached)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mcp() -> ScopeHierarchy {
        ScopeHierarchy::new()
            .implies("mcp:admin", ["mcp:write"])
            .implies("mcp:write", ["mcp:read"])
    }

    #[test]
    fn a_broader_scope_implies_the_narrower_ones_transitively_and_never_the_reverse() {
        let h = mcp();
        assert!(h.validate().is_ok());
        assert!(h.implies_scope("mcp:admin", "mcp:write"));
        assert!(h.implies_scope("mcp:admin", "mcp:read"));
        assert!(h.implies_scope("mcp:read", "mcp:read"));
        assert!(!h.implies_scope("mcp:read", "mcp:write"));
        assert!(!h.implies_scope("mcp:write", "mcp:admin"));
        assert!(!h.implies_scope("other", "mcp:read"));
    }

    #[test]
    fn prefix_wildcards_count_only_when_turned_on_and_never_bare() {
        let off = mcp();
        assert!(!off.implies_scope("repo:*", "repo:read"));
        let on = mcp().prefix_wildcards(true);
        assert!(on.implies_scope("repo:*", "repo:read"));
        assert!(!on.implies_scope("repo:*", "repos:read"));
        assert!(!on.implies_scope("*", "repo:read"));
        assert!(!on.implies_scope("r*", "repo:read"));
        assert!(!on.implies_scope("files:read*", "files:readwrite"));
        assert!(on.implies_scope("files.*", "files.read"));
        // A wildcard reached through the hierarchy counts too.
        let through = on.implies("owner", ["repo:*"]);
        assert!(through.implies_scope("owner", "repo:write"));
    }

    #[test]
    fn a_cycle_is_a_configuration_error_naming_a_scope_on_it() {
        let cyclic = mcp().implies("mcp:read", ["mcp:admin"]);
        let error = cyclic
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("cycle through \"mcp:"), "{error}");
        // Checking terminates anyway.
        assert!(!cyclic.implies_scope("mcp:read", "elsewhere"));
    }
}
