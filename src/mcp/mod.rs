//! MCP awareness for authorization: what a request asks the MCP server to do
//! ([`McpOperation`], found by the [`OperationLayer`]), which scopes each operation
//! needs ([`McpScopes`]), and `tools/list` answers without the tools a caller could
//! not call ([`FilterToolsLayer`]).

mod filter;
mod layer;
mod operation;
mod scopes;

pub use filter::{
    DEFAULT_TOOLS_LIST_LIMIT, FilterTools, FilterToolsFuture, FilterToolsLayer, FilteredBody,
};
pub use layer::{DEFAULT_MCP_BODY_LIMIT, McpBody, Operation, OperationFuture, OperationLayer};
pub(crate) use operation::shorten;
pub use operation::{MCP_METHOD, MCP_NAME, McpOperation, OperationSource};
pub use scopes::McpScopes;
