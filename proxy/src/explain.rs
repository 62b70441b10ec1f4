//! `explain`: placeholder module, written next.

use std::path::PathBuf;
use std::process::ExitCode;

/// What `explain` is asked.
pub struct Request {
    /// The configuration file.
    pub config: PathBuf,
    /// The token, or `-` for standard input.
    pub token: String,
    /// Only this server.
    pub server: Option<String>,
    /// For a call of this tool.
    pub tool: Option<String>,
}

/// Runs `explain`.
pub async fn run(request: Request) -> ExitCode {
    let _ = request;
    ExitCode::FAILURE
}
