//! mcp-gatekeeper-proxy under load on loopback, bounded in time: the proxy in front of
//! a minimal upstream, compared side by side with the upstream called directly.
//!
//! Processes: the upstream (axum on one worker thread: `POST /mcp` answers a small
//! JSON-RPC result, `GET /mcp` opens an SSE stream with one event; it also serves the
//! JWK set), the proxy (`mcp_gatekeeper_proxy::Gateway` on `--proxy-threads` worker
//! threads, default 1, a server whose issuer's keys come from that JWK set), and this
//! one, the load generator (keep-alive HTTP/1.1 connections on one thread, each
//! sending a `tools/call` as soon as the previous answer is in).
//!
//! Cases:
//! - `direct`: the load on the upstream;
//! - `proxy`: the same load through the proxy, one RS256 token repeated (so the
//!   verified-token cache serves it after the first request);
//! - `sse`: no load; 1,000 SSE streams opened through the proxy and held, and the
//!   proxy's resident memory before and after (per stream).
//!
//! ```text
//! cargo bench -p mcp-gatekeeper-benches --bench proxy -- [--seconds N] [--connections N]
//!     [--rounds N] [--proxy-threads N] [--streams N] [CASE...]
//! ```
//! Every run is bounded: `--seconds` per case and round (default 5, after 1 s of
//! warm-up), at most 10 million requests per case, and 60 s to open the streams.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use common::{ISSUER, RESOURCE, Signer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CASES: [&str; 3] = ["direct", "proxy", "sse"];
const CALL: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"}}}"#;
const RESULT: &str =
    r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"hello"}]}}"#;

struct Options {
    seconds: u64,
    connections: usize,
    rounds: usize,
    proxy_threads: usize,
    streams: usize,
    /// Requests per second offered in all (open loop), or 0: each connection sends as
    /// soon as its previous answer is in (closed loop, saturation).
    rate: u64,
    /// An upstream started by hand (`http://127.0.0.1:PORT/PATH`), e.g. the TypeScript
    /// SDK's server; default: the minimal one of this benchmark.
    upstream: Option<String>,
    cases: Vec<String>,
}

fn options() -> Options {
    let mut options = Options {
        seconds: 5,
        connections: 8,
        rounds: 3,
        proxy_threads: 1,
        streams: 1000,
        rate: 0,
        upstream: None,
        cases: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => options.seconds = common::wire::number(args.next()),
            "--connections" => options.connections = common::wire::number(args.next()) as usize,
            "--rounds" => options.rounds = common::wire::number(args.next()).max(1) as usize,
            "--proxy-threads" => {
                options.proxy_threads = common::wire::number(args.next()).max(1) as usize
            }
            "--streams" => options.streams = common::wire::number(args.next()) as usize,
            "--rate" => options.rate = common::wire::number(args.next()),
            "--upstream" => options.upstream = args.next(),
            "--serve-upstream" => {
                serve_upstream();
                std::process::exit(0);
            }
            "--serve-proxy" => {
                let jwks = common::wire::number(args.next()) as u16;
                let threads = common::wire::number(args.next()) as usize;
                let upstream = args.next().unwrap_or_default();
                serve_proxy(jwks, threads, &upstream);
                std::process::exit(0);
            }
            other => common::wire::case(other, &CASES, &mut options.cases),
        }
    }
    if options.cases.is_empty() {
        options.cases = CASES.iter().map(|c| (*c).to_owned()).collect();
    }
    options
}

fn main() {
    let options = options();
    let load = match options.rate {
        0 => "closed loop (each connection sends when its answer is in)".to_owned(),
        rate => format!("open loop, {rate} req/s offered"),
    };
    println!(
        "proxy: {} s per case after 1 s of warm-up, {} connections, {load}, upstream {}, \
         proxy on {} worker thread(s), {} round(s) with the cases in turn",
        options.seconds,
        options.connections,
        options
            .upstream
            .as_deref()
            .unwrap_or("minimal (axum, 1 worker thread)"),
        options.proxy_threads,
        options.rounds
    );
    // The minimal upstream also serves the JWK set of the token's issuer.
    let mut minimal = Process::start(&["--serve-upstream".to_owned()]);
    let port = minimal.field("port ");
    let token = minimal.field("token ");
    let upstream = options
        .upstream
        .clone()
        .unwrap_or_else(|| format!("http://127.0.0.1:{port}/mcp"));
    let mut proxy = Process::start(&[
        "--serve-proxy".to_owned(),
        port.clone(),
        options.proxy_threads.to_string(),
        upstream.clone(),
    ]);
    let proxy_port: u16 = proxy.field("port ").parse().expect("port");
    let (upstream_port, upstream_path) = split_upstream(&upstream);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let mut rounds: Vec<(Summary, Summary)> = Vec::new();
    let load = options.cases.iter().any(|c| c == "direct" || c == "proxy");
    for round in 1..=options.rounds.min(if load { usize::MAX } else { 0 }) {
        let direct = runtime.block_on(drive(upstream_port, &upstream_path, None, &options));
        println!("round {round} direct: {direct}");
        let through = runtime.block_on(drive(proxy_port, "/mcp", Some(&token), &options));
        println!("round {round}  proxy: {through}");
        rounds.push((direct, through));
    }
    if !rounds.is_empty() {
        report(&mut rounds);
    }
    if options.cases.iter().any(|c| c == "sse") {
        runtime.block_on(streams(proxy_port, &token, &proxy, options.streams));
    }
}

/// The port and path of an `http://127.0.0.1:PORT/PATH` upstream.
fn split_upstream(url: &str) -> (u16, String) {
    let rest = url.strip_prefix("http://127.0.0.1:").unwrap_or_else(|| {
        eprintln!("--upstream takes http://127.0.0.1:PORT/PATH");
        std::process::exit(2)
    });
    let (port, path) = rest.split_once('/').unwrap_or((rest, ""));
    let port = port.parse().unwrap_or_else(|_| {
        eprintln!("--upstream {url}: no port");
        std::process::exit(2)
    });
    (port, format!("/{path}"))
}

/// Medians across rounds of the rates, the ratio (taken within each round) and the
/// latency the proxy adds.
fn report(rounds: &mut [(Summary, Summary)]) {
    let pick = |f: &dyn Fn(&(Summary, Summary)) -> f64| {
        let mut values: Vec<f64> = rounds.iter().map(f).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let direct = pick(&|(d, _)| d.rate);
    let proxy = pick(&|(_, p)| p.rate);
    let ratio = pick(&|(d, p)| p.rate / d.rate);
    let added_p50 = pick(&|(d, p)| (p.p50.as_secs_f64() - d.p50.as_secs_f64()) * 1e6);
    let added_p99 = pick(&|(d, p)| (p.p99.as_secs_f64() - d.p99.as_secs_f64()) * 1e6);
    println!("median direct: {direct:>9.0} req/s");
    println!("median  proxy: {proxy:>9.0} req/s");
    println!("ratio proxy/direct: median {ratio:.2}");
    println!(
        "added latency: p50 {added_p50:.1} µs, p99 {added_p99:.1} µs (medians of the per-round differences)"
    );
}

/// A server process of this benchmark; killed when dropped.
struct Process {
    child: Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Process {
    fn start(args: &[String]) -> Self {
        let exe = std::env::current_exe().expect("this benchmark's path");
        let mut child = Command::new(exe)
            .args(args)
            .stdout(Stdio::piped())
            .stdin(Stdio::piped())
            .spawn()
            .expect("server process");
        let stdout = child.stdout.take().expect("stdout");
        Self {
            child,
            lines: BufReader::new(stdout).lines(),
        }
    }

    /// The next line, which must start with `name`; the rest of it.
    fn field(&mut self, name: &str) -> String {
        let line = self
            .lines
            .next()
            .and_then(Result::ok)
            .unwrap_or_else(|| panic!("the server said nothing (expected {name})"));
        line.strip_prefix(name)
            .unwrap_or_else(|| panic!("expected {name}, got {line}"))
            .to_owned()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Requests per second and latency percentiles of one run.
struct Summary {
    requests: u64,
    rate: f64,
    p50: Duration,
    p99: Duration,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>9.0} req/s  p50 {:>6.1} µs  p99 {:>6.1} µs  ({} requests)",
            self.rate,
            self.p50.as_secs_f64() * 1e6,
            self.p99.as_secs_f64() * 1e6,
            self.requests,
        )
    }
}

/// The `tools/call` request to `path` on `port`, with `token` if any.
fn request(port: u16, path: &str, token: Option<&str>) -> Vec<u8> {
    let authorization = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{authorization}\
         Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
         MCP-Protocol-Version: 2025-11-25\r\nContent-Length: {}\r\n\r\n{CALL}",
        CALL.len()
    )
    .into_bytes()
}

/// `--connections` keep-alive connections to `port` for `--seconds` after 1 s of
/// warm-up.
async fn drive(port: u16, path: &str, token: Option<&str>, options: &Options) -> Summary {
    let message = request(port, path, token);
    let warm_up = Instant::now() + Duration::from_secs(1);
    let end = warm_up + Duration::from_secs(options.seconds);
    let stop = Arc::new(AtomicBool::new(false));
    let connections = options.connections;
    let interval = (options.rate > 0)
        .then(|| Duration::from_secs_f64(options.connections as f64 / options.rate as f64));
    let tasks: Vec<_> = (0..options.connections)
        .map(|n| {
            let message = message.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                match interval {
                    None => {
                        common::wire::connection(port, vec![message], warm_up, end, stop, 200).await
                    }
                    Some(every) => {
                        // The connections' schedules interleave.
                        let offset = every.mul_f64(n as f64 / connections as f64);
                        paced(port, message, warm_up, end, every, offset).await
                    }
                }
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("connection"));
    }
    latencies.sort_unstable();
    let requests = latencies.len() as u64;
    let at = |q: f64| {
        latencies
            .get(((requests as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Summary {
        requests,
        rate: requests as f64 / options.seconds as f64,
        p50: at(0.50),
        p99: at(0.99),
    }
}

/// One keep-alive connection sending `message` every `every` (from `offset`) until
/// `end`; the latencies after `warm_up`, from each send (tokio's timer wakes up to a
/// millisecond late; at a rate the servers keep up with, no request waits for another).
async fn paced(
    port: u16,
    message: Vec<u8>,
    warm_up: Instant,
    end: Instant,
    every: Duration,
    offset: Duration,
) -> Vec<Duration> {
    let mut stream = common::wire::connect(port).await;
    let mut latencies = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let start = Instant::now() + offset;
    for n in 0u32.. {
        let due = start + every * n;
        if due >= end {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        let sent = Instant::now();
        common::wire::round_trip(&mut stream, &message, &mut buffer, 200).await;
        if sent >= warm_up {
            latencies.push(sent.elapsed());
        }
    }
    latencies
}

/// Opens `count` SSE streams through the proxy, waits for each one's first event,
/// and reports the proxy's memory per stream.
async fn streams(port: u16, token: &str, proxy: &Process, count: usize) {
    let pid = proxy.child.id();
    // One request first, so that keys and pools are in place before the baseline.
    let mut warm = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    warm.write_all(&request(port, "/mcp", Some(token)))
        .await
        .expect("send");
    let mut buffer = vec![0u8; 4096];
    let _ = warm.read(&mut buffer).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = common::wire::rss_kib(pid);
    let open = format!(
        "GET /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\
         Accept: text/event-stream\r\nMCP-Protocol-Version: 2025-11-25\r\n\r\n"
    );
    let started = Instant::now();
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        stream.write_all(open.as_bytes()).await.expect("send");
        held.push(stream);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for stream in &mut held {
        let mut seen = Vec::new();
        while !seen.windows(6).any(|w| w == b"data: ") {
            let left = deadline.saturating_duration_since(Instant::now());
            let read = tokio::time::timeout(left, stream.read(&mut buffer))
                .await
                .expect("the streams did not open within 60 s")
                .expect("read");
            assert!(read > 0, "a stream was closed");
            seen.extend_from_slice(&buffer[..read]);
        }
        assert!(
            seen.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&seen)
        );
    }
    let opened = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = common::wire::rss_kib(pid);
    println!(
        "sse: {count} streams open through the proxy in {:.2} s; proxy RSS {:.1} MiB before, \
         {:.1} MiB with them: {:.1} KiB per stream",
        opened.as_secs_f64(),
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        after.saturating_sub(before) as f64 / count.max(1) as f64
    );
}

// ---------------------------------------------------------------------------------
// The server processes.

/// The first SSE event, then nothing until the client goes.
struct OneEvent(Option<bytes::Bytes>);

impl http_body::Body for OneEvent {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        match self.0.take() {
            Some(event) => std::task::Poll::Ready(Some(Ok(http_body::Frame::data(event)))),
            None => std::task::Poll::Pending,
        }
    }
}

fn serve_upstream() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("upstream runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let signer = Signer::new("RS256");
        let jwks = signer.jwks().to_string();
        let app = Router::new()
            .route(
                "/mcp",
                get(|| async {
                    let event = bytes::Bytes::from_static(b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{}}\n\n");
                    (
                        [(http::header::CONTENT_TYPE, "text/event-stream")],
                        axum::body::Body::new(OneEvent(Some(event))),
                    )
                })
                .post(|| async { ([(http::header::CONTENT_TYPE, "application/json")], RESULT) }),
            )
            .route(
                "/jwks",
                get(move || {
                    let jwks = jwks.clone();
                    async move { ([(http::header::CONTENT_TYPE, "application/json")], jwks) }
                }),
            );
        println!("port {port}");
        println!("token {}", signer.token(0));
        let _ = std::io::stdout().flush();
        axum::serve(listener, app).await.expect("serve");
    });
}

fn serve_proxy(jwks: u16, threads: usize, upstream: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("proxy runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let text = format!(
            r#"
[proxy]
listen = "127.0.0.1:{port}"

[[issuers]]
issuer = "{ISSUER}"
jwks_uri = "http://127.0.0.1:{jwks}/jwks"
discovery = false
algorithms = ["RS256"]

[servers.bench]
upstream = "{upstream}"
resource = "{RESOURCE}"
"#
        );
        let config: mcp_gatekeeper::config::GatewayConfig =
            toml::from_str(&text).expect("the benchmark's configuration");
        config.validate().expect("a valid configuration");
        let gateway = mcp_gatekeeper_proxy::Gateway::new(&config).expect("the gateway");
        println!("port {port}");
        let _ = std::io::stdout().flush();
        gateway.serve(listener, std::future::pending()).await;
    });
}
