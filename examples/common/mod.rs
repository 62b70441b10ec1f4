//! What both examples do the same way: flag errors, logging, the rmcp transport
//! settings, and printing the banner.

use std::io::Write as _;

/// Parses flags with `parse`; on `Err` prints the message (none for `--help`) and the
/// usage, and exits (0 for help, 2 for a mistake).
pub fn args_or_exit<T>(parse: impl FnOnce() -> Result<T, String>, usage: &str) -> T {
    match parse() {
        Ok(args) => args,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("error: {message}\n");
            }
            eprint!("{usage}");
            std::process::exit(if message.is_empty() { 0 } else { 2 });
        }
    }
}

/// Starts logging and binds the listener; its address tells which port `:0` got.
pub async fn bind(
    listen: &str,
) -> std::io::Result<(tokio::net::TcpListener, std::net::SocketAddr)> {
    init_tracing();
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// Streamable HTTP without sessions and with plain JSON answers (easy with curl),
/// accepting the loopback names and the host of `public_url`.
#[allow(dead_code)] // the hyper example serves no rmcp transport
pub fn streamable_http_config(public_url: &str) -> rmcp::transport::StreamableHttpServerConfig {
    let mut hosts = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if let Some(host) = public_url
        .parse::<http::Uri>()
        .ok()
        .and_then(|u| u.host().map(str::to_owned))
    {
        hosts.push(
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
        );
    }
    rmcp::transport::StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_allowed_hosts(hosts)
}

/// Prints the banner in one write; a closed stdout is not fatal, the server keeps
/// serving.
pub fn print_banner(banner: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(banner.as_bytes())
        .and_then(|()| stdout.flush());
}
