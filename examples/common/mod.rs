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
#[allow(dead_code)] // the flagship example calls bind_with
pub async fn bind(
    listen: &str,
) -> std::io::Result<(tokio::net::TcpListener, std::net::SocketAddr)> {
    bind_with(listen, None).await
}

/// [`bind`], and the audit trail (`mcp_gatekeeper::audit`) written to `audit_log` as
/// JSON lines (`-`: standard output).
#[allow(dead_code)] // only the flagship example takes --audit-log
pub async fn bind_with(
    listen: &str,
    audit_log: Option<&str>,
) -> std::io::Result<(tokio::net::TcpListener, std::net::SocketAddr)> {
    init_tracing(audit_log)?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`, without the audit trail),
/// and the audit trail as JSON lines to `audit_log`, if given.
fn init_tracing(audit_log: Option<&str>) -> std::io::Result<()> {
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    use tracing_subscriber::{EnvFilter, filter::Targets, fmt, prelude::*};
    let human = fmt::layer().with_writer(std::io::stderr).with_filter(
        EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| "info,mcp_gatekeeper::audit=off".into()),
    );
    let audit = match audit_log {
        None => None,
        Some(path) => {
            let writer = match path {
                "-" => BoxMakeWriter::new(std::io::stdout),
                path => BoxMakeWriter::new(std::sync::Mutex::new(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)?,
                )),
            };
            let only_audit =
                Targets::new().with_target(mcp_gatekeeper::audit::TARGET, tracing::Level::INFO);
            Some(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false)
                    .with_writer(writer)
                    .with_filter(only_audit),
            )
        }
    };
    tracing_subscriber::registry()
        .with(human)
        .with(audit)
        .init();
    Ok(())
}

/// Records the metrics (`mcp_gatekeeper::metrics`) with the Prometheus exporter's
/// recorder, `tools` as values of the `tool` label, and serves them at `GET /metrics`
/// on `listen`; its address.
#[allow(dead_code)] // only the flagship example takes --metrics
pub async fn serve_metrics(listen: &str, tools: &[&str]) -> std::io::Result<std::net::SocketAddr> {
    use mcp_gatekeeper::metrics::REMOTE_CALL_BUCKETS;
    use metrics_exporter_prometheus::PrometheusBuilder;
    let handle = PrometheusBuilder::new()
        .set_buckets(REMOTE_CALL_BUCKETS)
        .and_then(PrometheusBuilder::install_recorder)
        .map_err(std::io::Error::other)?;
    mcp_gatekeeper::metrics::enable_with_tools(tools.iter().copied());
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    let scrape = move || {
        let text = handle.render();
        async move {
            (
                [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                text,
            )
        }
    };
    let app = axum::Router::new().route("/metrics", axum::routing::get(scrape));
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!("the metrics endpoint stopped: {error}");
        }
    });
    Ok(addr)
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
