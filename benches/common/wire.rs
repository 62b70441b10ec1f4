//! The wire side of the load benchmarks (`load.rs`, `proxy.rs`): keep-alive HTTP/1.1
//! connections that send prepared requests and time the answers, and the memory of a
//! process.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The most requests one case sends.
pub const MAX_REQUESTS: u64 = 10_000_000;

/// A positive number option, or exit with a message.
pub fn number(arg: Option<String>) -> u64 {
    arg.and_then(|a| a.parse().ok()).unwrap_or_else(|| {
        eprintln!("--seconds, --connections and --rounds take a positive number");
        std::process::exit(2)
    })
}

/// An argument that is not an option of the benchmark: a case of `cases` (added to
/// `picked`), a flag of cargo's or libtest's (`--bench`, ignored), or a mistake (exit).
pub fn case(arg: &str, cases: &[&str], picked: &mut Vec<String>) {
    if cases.contains(&arg) {
        picked.push(arg.to_owned());
    } else if !arg.starts_with("--") {
        eprintln!("unknown case {arg:?}; cases: {}", cases.join(", "));
        std::process::exit(2);
    }
}

/// The median of `values` (sorted in place).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// A connection to `port` on loopback, without Nagle's delay.
pub async fn connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// Sends `request` on `stream` and reads its whole answer into `buffer`, which must
/// have status `status`.
pub async fn round_trip(stream: &mut TcpStream, request: &[u8], buffer: &mut [u8], status: u16) {
    stream.write_all(request).await.expect("send");
    let mut filled = 0;
    loop {
        let read = stream.read(&mut buffer[filled..]).await.expect("receive");
        assert!(read > 0, "the server closed the connection");
        filled += read;
        if let Some(len) = complete(&buffer[..filled]) {
            let expected = format!("HTTP/1.1 {status}");
            assert!(
                buffer.starts_with(expected.as_bytes()),
                "expected {expected}: {}",
                String::from_utf8_lossy(&buffer[..filled.min(200)])
            );
            assert_eq!(len, filled, "one answer per request");
            return;
        }
    }
}

/// One keep-alive connection sending `requests` in turn until `end`, expecting
/// `status`; the latencies of the requests after `warm_up`.
pub async fn connection(
    port: u16,
    requests: Vec<Vec<u8>>,
    warm_up: Instant,
    end: Instant,
    stop: Arc<AtomicBool>,
    status: u16,
) -> Vec<Duration> {
    let mut stream = connect(port).await;
    let mut latencies = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) && (latencies.len() as u64) < MAX_REQUESTS {
        let sent = Instant::now();
        if sent >= end {
            break;
        }
        round_trip(
            &mut stream,
            &requests[n % requests.len()],
            &mut buffer,
            status,
        )
        .await;
        n += 1;
        if sent >= warm_up {
            latencies.push(sent.elapsed());
        }
    }
    stop.store(true, Ordering::Relaxed);
    latencies
}

/// The length of the first complete response in `bytes` (`Content-Length` or
/// chunked), if it is all there.
pub fn complete(bytes: &[u8]) -> Option<usize> {
    let head = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let headers = std::str::from_utf8(&bytes[..head])
        .ok()?
        .to_ascii_lowercase();
    if headers.contains("transfer-encoding: chunked") {
        let end = bytes[head..].windows(5).position(|w| w == b"0\r\n\r\n")?;
        return Some(head + end + 5);
    }
    let length = headers
        .lines()
        .find_map(|line| line.strip_prefix("content-length:")?.trim().parse().ok())
        .unwrap_or(0);
    (bytes.len() >= head + length).then_some(head + length)
}

/// The resident memory of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                line.strip_prefix("VmRSS:")?
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .ok()
            })
        })
        .unwrap_or(0)
}
