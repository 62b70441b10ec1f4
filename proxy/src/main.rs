//! `mcp-gatekeeper-proxy`: see the crate docs and the README's "Gateway (proxy)".

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
usage: mcp-gatekeeper-proxy --config FILE [--check-config]
       mcp-gatekeeper-proxy explain --config FILE TOKEN|- [--server ID] [--tool NAME]

  --config FILE    the gateway's configuration (TOML); environment variables
                   MCP_GATEKEEPER__SECTION__KEY override its keys (e.g.
                   MCP_GATEKEEPER__PROXY__LISTEN=0.0.0.0:8080)
  --check-config   check the configuration (secrets are read), say so, and exit
  explain          say, rule by rule, why the configuration accepts or refuses
                   TOKEN ('-': read it from standard input), on each server or
                   on --server ID, for a call of --tool NAME; the token is never
                   printed
";

enum Command {
    Serve { config: PathBuf, check: bool },
    Explain(mcp_gatekeeper_proxy::explain::Request),
}

fn parse(args: &[String]) -> Result<Command, String> {
    let explain = args.first().is_some_and(|a| a == "explain");
    let mut config = None;
    let mut check = false;
    let (mut token, mut server, mut tool) = (None, None, None);
    let mut iter = args.iter().skip(usize::from(explain));
    while let Some(arg) = iter.next() {
        let mut value = |name: &str| {
            iter.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "--config" => config = Some(PathBuf::from(value("--config")?)),
            "--check-config" if !explain => check = true,
            "--server" if explain => server = Some(value("--server")?),
            "--tool" if explain => tool = Some(value("--tool")?),
            "-h" | "--help" => return Err(String::new()),
            other if explain && token.is_none() && (other == "-" || !other.starts_with('-')) => {
                token = Some(other.to_owned());
            }
            // Never echoed in explain: it may be the token.
            _ if explain => {
                return Err(
                    "an unknown argument, or a second token (a token that starts with '-' \
                     is given on standard input: '-')"
                        .into(),
                );
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let config = config.ok_or("--config FILE is needed")?;
    if !explain {
        return Ok(Command::Serve { config, check });
    }
    let token = token.ok_or("explain needs the token (or '-' to read it from standard input)")?;
    Ok(Command::Explain(mcp_gatekeeper_proxy::explain::Request {
        config,
        token,
        server,
        tool,
    }))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match parse(&args) {
        Ok(command) => command,
        Err(why) if why.is_empty() => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(why) => {
            eprintln!("error: {why}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: no async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match command {
        Command::Serve { config, check } => runtime.block_on(serve(config, check)),
        Command::Explain(request) => runtime.block_on(mcp_gatekeeper_proxy::explain::run(request)),
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`, without the audit trail),
/// and the audit trail as JSON lines to `audit_log` (`-`: standard output), if set.
fn init_tracing(audit_log: Option<&str>) -> std::io::Result<()> {
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    use tracing_subscriber::{EnvFilter, filter::Targets, fmt, prelude::*};
    let human = fmt::layer().with_writer(std::io::stderr).with_filter(
        EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new("info,mcp_gatekeeper::audit=off")),
    );
    let audit = match audit_log {
        None => None,
        Some(target) => {
            let writer = match target {
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

/// Serves `/metrics` on `listen`, if given; the address it got.
async fn serve_metrics(listen: Option<&str>) -> Result<Option<std::net::SocketAddr>, String> {
    let Some(listen) = listen else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|error| format!("{listen:?}: cannot listen there ({error})"))?;
    let address = listener.local_addr().map_err(|error| error.to_string())?;
    mcp_gatekeeper_proxy::metrics::serve(listener)?;
    Ok(Some(address))
}

/// Starts logging, with the audit trail where `audit_log` says; a message on failure.
fn start_logging(path: &std::path::Path, audit_log: Option<&str>) -> Result<(), String> {
    init_tracing(audit_log).map_err(|error| {
        format!(
            "{}: proxy.audit_log = {:?}: cannot write there ({error})",
            path.display(),
            audit_log.unwrap_or_default()
        )
    })
}

async fn serve(path: PathBuf, check: bool) -> ExitCode {
    let config = match mcp_gatekeeper_proxy::load(&path, std::env::vars()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    if let Err(error) = start_logging(&path, config.proxy.audit_log.as_deref()) {
        eprintln!("error: {error}");
        return ExitCode::from(2);
    }
    if check {
        println!(
            "{}: the configuration is good ({} issuer(s), {} server(s))",
            path.display(),
            config.issuers.len(),
            config.servers.len()
        );
        return ExitCode::SUCCESS;
    }
    let gateway = match mcp_gatekeeper_proxy::Gateway::new(&config) {
        Ok(gateway) => gateway,
        Err(error) => {
            eprintln!("error: {}: {error}", path.display());
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(&config.proxy.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!(
                "error: {}: proxy.listen = {:?}: cannot listen there ({error})",
                path.display(),
                config.proxy.listen
            );
            return ExitCode::FAILURE;
        }
    };
    let metrics = match serve_metrics(config.proxy.metrics.as_deref()).await {
        Ok(address) => address,
        Err(error) => {
            eprintln!("error: {}: proxy.metrics: {error}", path.display());
            return ExitCode::FAILURE;
        }
    };
    let address = listener
        .local_addr()
        .map_or_else(|_| config.proxy.listen.clone(), |a| a.to_string());
    print_banner(&config, &address, metrics);
    gateway.serve(listener, shutdown_signal()).await;
    ExitCode::SUCCESS
}

/// What the proxy serves, ending with the line `ready`.
fn print_banner(
    config: &mcp_gatekeeper::config::GatewayConfig,
    address: &str,
    metrics: Option<std::net::SocketAddr>,
) {
    println!("mcp-gatekeeper-proxy listening on {address}");
    if let Some(metrics) = metrics {
        println!("  metrics: http://{metrics}/metrics");
    }
    for (id, server) in &config.servers {
        println!(
            "  server {id}: {} -> {}",
            config.resource_uri(id).unwrap_or_default(),
            server.upstream
        );
    }
    println!("ready");
}

/// SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("shutdown signal received");
}
