//! Load on loopback, bounded in time: requests per second and latency percentiles of
//! an axum server, one worker thread, in its own process, driven by a keep-alive
//! HTTP/1.1 load generator on one thread of this process.
//!
//! Cases (all `GET /mcp` answered "ok"):
//! - `hello`: plain axum;
//! - `stack`: the same behind the mcp-gatekeeper stack, one RS256 token repeated (the
//!   verified-token cache serves it);
//! - `raw`: the same behind a middleware calling `jsonwebtoken::decode` on every
//!   request (no cache), RS256;
//! - `busy` and `flood`: `stack` with keys from a JWKS URL, and a quarter more
//!   connections that send the valid token (`busy`) or tokens with random `kid`s
//!   (`flood`); the latency of the valid requests on the main connections is reported,
//!   so that the two compare the cost of a flood of unknown `kid`s with that of as
//!   many ordinary requests;
//! - `memory`: no HTTP; one million distinct tokens through the stack in process, and
//!   the process's memory before and after (the cache must stay within its bounds).
//!
//! ```text
//! cargo bench -p mcp-gatekeeper-benches --bench load -- [--seconds N] [--connections N] [CASE...]
//! ```
//! Every run is bounded: `--seconds` per case (default 5, after 1 s of warm-up) and at
//! most 10 million requests per case. `benches/report.sh` runs it and prints the table.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use common::{RESOURCE, Signer};
use serde_json::{Map, Value};
use tower::Layer;

const CASES: [&str; 6] = ["hello", "stack", "raw", "busy", "flood", "memory"];

struct Options {
    seconds: u64,
    connections: usize,
    rounds: usize,
    cases: Vec<String>,
}

fn options() -> Options {
    let mut options = Options {
        seconds: 5,
        connections: 32,
        rounds: 1,
        cases: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => options.seconds = common::wire::number(args.next()),
            "--connections" => options.connections = common::wire::number(args.next()) as usize,
            "--rounds" => options.rounds = common::wire::number(args.next()).max(1) as usize,
            "--serve" => {
                let case = args.next().unwrap_or_default();
                serve(&case);
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
    println!(
        "load: {} s per case after 1 s of warm-up, {} connections, server on 1 worker \
         thread, {} round(s) with the cases in turn",
        options.seconds, options.connections, options.rounds
    );
    // Per round, each case's summary; ratios are taken within a round (side by side),
    // then their median across rounds.
    let mut rounds: Vec<Vec<(String, Summary)>> = Vec::new();
    for round in 1..=options.rounds {
        let mut results = Vec::new();
        for case in &options.cases {
            if case == "memory" {
                if round == 1 {
                    memory();
                }
                continue;
            }
            let summary = run_case(case, &options);
            println!("round {round} {case:>6}: {summary}");
            results.push((case.clone(), summary));
        }
        rounds.push(results);
    }
    let rate = |results: &[(String, Summary)], name: &str| {
        results
            .iter()
            .find(|(case, _)| case == name)
            .map(|(_, s)| s.rate)
    };
    for case in &options.cases {
        let mut rates: Vec<f64> = rounds.iter().filter_map(|r| rate(r, case)).collect();
        if !rates.is_empty() {
            println!(
                "median {case:>6}: {:>9.0} req/s",
                common::wire::median(&mut rates)
            );
        }
    }
    for (top, bottom) in [("stack", "hello"), ("raw", "hello"), ("stack", "raw")] {
        let mut ratios: Vec<f64> = rounds
            .iter()
            .filter_map(|r| Some(rate(r, top)? / rate(r, bottom)?))
            .collect();
        if !ratios.is_empty() {
            let each: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
            println!(
                "ratio {top}/{bottom}: median {:.2} (rounds: {})",
                common::wire::median(&mut ratios),
                each.join(", ")
            );
        }
    }
}

/// Requests per second and latency percentiles of one case.
struct Summary {
    requests: u64,
    rate: f64,
    p50: Duration,
    p99: Duration,
    /// Requests sent alongside on the extra connections (`busy`, `flood`).
    extra: Option<u64>,
    server_rss_kib: u64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>9.0} req/s  p50 {:>6.1} µs  p99 {:>6.1} µs  ({} requests, server RSS {} MiB)",
            self.rate,
            self.p50.as_secs_f64() * 1e6,
            self.p99.as_secs_f64() * 1e6,
            self.requests,
            self.server_rss_kib / 1024
        )?;
        if let Some(sent) = self.extra {
            write!(f, "; {sent} more on the extra connections")?;
        }
        Ok(())
    }
}

/// The server process of `case`, its port and the token to send.
struct Server {
    child: Child,
    port: u16,
    token: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(case: &str) -> Server {
    let exe = std::env::current_exe().expect("this benchmark's path");
    let mut child = Command::new(exe)
        .args(["--serve", case])
        .stdout(Stdio::piped())
        .stdin(Stdio::piped())
        .spawn()
        .expect("server process");
    let stdout = child.stdout.take().expect("server stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut field = |name: &str| {
        let line = lines
            .next()
            .and_then(Result::ok)
            .unwrap_or_else(|| panic!("the {case} server said nothing"));
        line.strip_prefix(name)
            .unwrap_or_else(|| panic!("expected {name}, got {line}"))
            .to_owned()
    };
    let port = field("port ").parse().expect("port");
    let token = field("token ");
    Server { child, port, token }
}

fn run_case(case: &str, options: &Options) -> Summary {
    let server = start(case);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let summary = runtime.block_on(drive(&server, case, options));
    Summary {
        server_rss_kib: common::wire::rss_kib(server.child.id()),
        ..summary
    }
}

async fn drive(server: &Server, case: &str, options: &Options) -> Summary {
    let valid = request(server.port, &server.token);
    let warm_up = Instant::now() + Duration::from_secs(1);
    let end = warm_up + Duration::from_secs(options.seconds);
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..options.connections {
        tasks.push(tokio::spawn(common::wire::connection(
            server.port,
            vec![valid.clone()],
            warm_up,
            end,
            stop.clone(),
            200,
        )));
    }
    let mut extra_connections = Vec::new();
    if case == "busy" || case == "flood" {
        let (requests, status) = if case == "flood" {
            let signer = Signer::new("RS256");
            let forged: Vec<Vec<u8>> = (0..256)
                .map(|n| {
                    // Another kid for each: unknown to the issuer's key set.
                    let token = with_kid(&signer.token(n), &format!("random-{n}"), &signer);
                    request(server.port, &token)
                })
                .collect();
            (forged, 401)
        } else {
            (vec![valid.clone()], 200)
        };
        for _ in 0..(options.connections / 4).max(1) {
            extra_connections.push(tokio::spawn(common::wire::connection(
                server.port,
                requests.clone(),
                warm_up,
                end,
                stop.clone(),
                status,
            )));
        }
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("connection"));
    }
    let mut extra = None;
    if !extra_connections.is_empty() {
        let mut sent = 0;
        for task in extra_connections {
            sent += task.await.expect("extra connection").len() as u64;
        }
        extra = Some(sent);
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
        extra,
        server_rss_kib: 0,
    }
}

/// The token re-signed with `kid` in its header.
fn with_kid(token: &str, kid: &str, signer: &Signer) -> String {
    let claims: Value = {
        use base64::Engine;
        let payload = token.split('.').nth(1).unwrap_or_default();
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap_or_default();
        serde_json::from_slice(&raw).unwrap_or_default()
    };
    match signer {
        Signer::Key(key) => {
            let mut header = jsonwebtoken::Header::new(key.alg);
            header.kid = Some(kid.to_owned());
            key.sign_with(header, &claims)
        }
        Signer::Hmac => token.to_owned(),
    }
}

fn request(port: u16, token: &str) -> Vec<u8> {
    format!("GET /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\r\n")
        .into_bytes()
}

// ---------------------------------------------------------------------------------
// The server side (`--serve CASE`), in its own process.

fn serve(case: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("server runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let signer = Signer::new("RS256");
        let token = signer.token(0);
        let hello = Router::new().route("/mcp", get(|| async { "ok" }));
        let app = match case {
            "hello" => hello,
            "stack" => hello.layer(common::server("RS256", &signer).layer()),
            "raw" => {
                let key = Arc::new(signer.decoding_key());
                let validation = Arc::new(common::validation(jsonwebtoken::Algorithm::RS256));
                hello.layer(axum::middleware::from_fn(move |request, next| {
                    raw_verify(key.clone(), validation.clone(), request, next)
                }))
            }
            "busy" | "flood" => {
                let jwks_uri = jwks_server(signer.jwks()).await;
                let server = mcp_gatekeeper::ResourceServer::builder(RESOURCE)
                    .issuer(
                        mcp_gatekeeper::Issuer::new(common::ISSUER)
                            .algorithms([jsonwebtoken::Algorithm::RS256])
                            .jwks_uri(jwks_uri),
                    )
                    .required_scopes(["mcp:read"])
                    .build()
                    .expect("valid configuration");
                hello.layer(server.layer())
            }
            other => panic!("no server for {other}"),
        };
        println!("port {port}");
        println!("token {token}");
        let _ = std::io::stdout().flush();
        axum::serve(listener, app).await.expect("serve");
    });
}

async fn raw_verify(
    key: Arc<jsonwebtoken::DecodingKey>,
    validation: Arc<jsonwebtoken::Validation>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let token = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let valid = token.is_some_and(|token| {
        jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation).is_ok()
    });
    if valid {
        next.run(request).await
    } else {
        axum::response::IntoResponse::into_response(http::StatusCode::UNAUTHORIZED)
    }
}

/// A JWK set served on loopback; its URL.
async fn jwks_server(jwks: Value) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let body = jwks.to_string();
    let app = Router::new().route(
        "/jwks",
        get(move || {
            let body = body.clone();
            async move { ([(http::header::CONTENT_TYPE, "application/json")], body) }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://127.0.0.1:{port}/jwks")
}

// ---------------------------------------------------------------------------------
// Memory: a million distinct tokens through the stack, in process.

fn memory() {
    const TOKENS: u64 = 1_000_000;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _entered = runtime.enter();
    let signer = Signer::new("HS256");
    let server = common::server("HS256", &signer);
    let mut service = server.layer().layer(common::Noop);
    let pid = std::process::id();
    let at_start = common::wire::rss_kib(pid);
    let mut after_warm_up = 0;
    let started = Instant::now();
    for n in 0..TOKENS {
        let token = signer.token(n);
        assert_eq!(
            common::drive(&mut service, common::request(&token), &runtime),
            200
        );
        if n == 10_000 {
            after_warm_up = common::wire::rss_kib(pid);
        }
    }
    let elapsed = started.elapsed();
    let usage = runtime.block_on(server.token_cache_usage());
    let bounds = mcp_gatekeeper::TokenCacheOptions::default();
    println!(
        "memory: {TOKENS} distinct HS256 tokens in {elapsed:.1?}; process RSS {} MiB at start, \
         {} MiB after 10,000 tokens, {} MiB after {TOKENS}; cache {} entries, {} KiB \
         (bounds {} entries, {} KiB)",
        at_start / 1024,
        after_warm_up / 1024,
        common::wire::rss_kib(pid) / 1024,
        usage.entries,
        usage.bytes / 1024,
        bounds.max_entries,
        bounds.max_bytes / 1024,
    );
    assert!(usage.entries <= bounds.max_entries && usage.bytes <= bounds.max_bytes);
}
