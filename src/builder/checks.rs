//! The checks of `build`: settings that contradict each other or the rules, refused
//! with a message that names the setting (R-OPS-2).

use crate::authorize::{Authorize, ServerAuthorize};
use crate::error::ConfigError;
use crate::resource::{OFFLINE_ACCESS, offline_access_named};

use super::ResourceServerBuilder;

impl<V> ResourceServerBuilder<V> {
    /// Refuses `offline_access` among the scopes, naming the setting that has it.
    pub(super) fn check_offline_access(&self) -> Result<(), ConfigError> {
        let has = |scopes: &[String]| scopes.iter().any(|s| s == OFFLINE_ACCESS);
        if has(&self.scopes.required) {
            return Err(offline_access_named("required_scopes"));
        }
        if self
            .scopes
            .mcp
            .as_ref()
            .is_some_and(|m| has(&m.all_scopes()))
        {
            return Err(offline_access_named("mcp_scopes"));
        }
        if has(self.resource.supported_scopes()) {
            return Err(offline_access_named("scopes_supported"));
        }
        Ok(())
    }

    /// Refuses MCP settings that contradict each other.
    pub(super) fn check_mcp(&self) -> Result<(), ConfigError> {
        if !self.mcp.operations && (self.scopes.mcp.is_some() || self.mcp.filter_tools) {
            return Err(ConfigError::new(
                "mcp_scopes and filter_tools need the MCP operation of each request, but \
                 mcp_operations(false) turns reading it off; drop one of them",
            ));
        }
        let lists = self.scopes.callback.as_ref();
        if !self.mcp.operations && lists.is_some_and(|c| c.filters_tool_lists()) {
            return Err(ConfigError::new(
                "the authorization policy (a CedarPolicy, say) decides by the MCP operation \
                 of each request and filters tools/list, but mcp_operations(false) turns \
                 reading it off; drop one of them",
            ));
        }
        Ok(())
    }

    /// Refuses a token length cap no real token fits.
    pub(super) fn check_token_len(&self) -> Result<(), ConfigError> {
        if self.max_token_len < 64 {
            return Err(ConfigError::new(format!(
                "max_token_len {} is too small for any real access token; use at least 1024",
                self.max_token_len
            )));
        }
        Ok(())
    }
}

/// Refuses an argument mirrored by a header that makes no header name.
pub(super) fn check_arguments(policy: &ServerAuthorize) -> Result<(), ConfigError> {
    policy
        .arguments()
        .iter()
        .try_for_each(crate::Argument::validate)
}
