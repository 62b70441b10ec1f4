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
    if matches!(command, Command::Serve { .. }) {
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
            )
            .with_writer(std::io::stderr)
            .init();
    }
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

async fn serve(path: PathBuf, check: bool) -> ExitCode {
    let config = match mcp_gatekeeper_proxy::load(&path, std::env::vars()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
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
    let address = listener
        .local_addr()
        .map_or_else(|_| config.proxy.listen.clone(), |a| a.to_string());
    println!("mcp-gatekeeper-proxy listening on {address}");
    for id in config.servers.keys() {
        println!(
            "  server {id}: {} -> {}",
            config.resource_uri(id).unwrap_or_default(),
            config.servers[id].upstream
        );
    }
    println!("ready");
    gateway.serve(listener, shutdown_signal()).await;
    ExitCode::SUCCESS
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
