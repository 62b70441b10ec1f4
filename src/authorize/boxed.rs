//! [`BoxAuthorize`]: a policy whose type is erased.

use std::sync::Arc;

use http::request::Parts;

use super::Authorize;
use crate::decision::Decide;
use crate::mcp::{Argument, McpOperation};
use crate::principal::Principal;

/// A type-erased [`Authorize`], as the [`ResourceServer`](crate::ResourceServer) keeps it.
#[derive(Clone)]
pub struct BoxAuthorize(Arc<dyn Authorize>);

impl BoxAuthorize {
    /// Erases the type of `authorize`.
    pub fn new(authorize: impl Authorize) -> Self {
        Self(Arc::new(authorize))
    }
}

impl std::fmt::Debug for BoxAuthorize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BoxAuthorize")
    }
}

impl Authorize for BoxAuthorize {
    fn authorize(&self, principal: &Principal, operation: &McpOperation, parts: &Parts) -> Decide {
        self.0.authorize(principal, operation, parts)
    }

    fn needs_operation(&self, principal: &Principal) -> bool {
        self.0.needs_operation(principal)
    }

    fn arguments(&self) -> Vec<Argument> {
        self.0.arguments()
    }

    fn allows_anonymous(&self, operation: &McpOperation) -> bool {
        self.0.allows_anonymous(operation)
    }

    fn tool_listed(&self, name: &str, annotations: Option<&serde_json::Value>) {
        self.0.tool_listed(name, annotations);
    }

    fn filters_tool_lists(&self) -> bool {
        self.0.filters_tool_lists()
    }
}
