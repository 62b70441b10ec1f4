//! Certificate-bound tokens (RFC 8705): mcp-gatekeeper behind TLS with client
//! certificates, on axum and tokio-rustls.
//!
//! ```text
//! cargo run --example mtls -- --token-for tests/mtls/client-a.pem
//! curl --cacert tests/mtls/ca.pem --cert tests/mtls/client-a.pem --key tests/mtls/client-a.key \
//!      -H "Authorization: Bearer <token>" https://127.0.0.1:3443/mcp
//! ```
//!
//! The TLS acceptor asks each client for a certificate (signed by `--client-ca`, or
//! none) and puts the one it got into every request of the connection as a
//! [`ClientCertificate`]; the stack compares a token's `cnf["x5t#S256"]` with it.
//! A token bound to client-a's certificate works only on a connection made with that
//! certificate: with client-b's, or with none, it is `401 invalid_token`.
//!
//! Flags:
//! - `--listen ADDR`    address to listen on (default `127.0.0.1:3443`);
//! - `--cert PEM`, `--key PEM`  the server's certificate chain and key (default
//!   `tests/mtls/server.pem`, `tests/mtls/server.key`, for localhost and 127.0.0.1);
//! - `--client-ca PEM`  the CA that signs client certificates (default
//!   `tests/mtls/ca.pem`);
//! - `--issuer URL`     trust this issuer's certificate-bound tokens (repeatable);
//!   without it an embedded issuer is used;
//! - `--token-for PEM`  with the embedded issuer: print a token bound to this client
//!   certificate (repeatable).

mod common;
#[path = "common/embedded.rs"]
mod embedded;
#[path = "../tests/support/signing.rs"]
mod signing;

use std::sync::Arc;

use axum::Json;
use axum::routing::get;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use mcp_gatekeeper::{ClientCertificate, Issuer, Principal, ResourceServer};
use serde_json::{Value, json};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};
use tower::ServiceExt;

const USAGE: &str = "\
usage: mtls [--listen ADDR] [--cert PEM --key PEM] [--client-ca PEM] [--issuer URL]...
            [--token-for PEM]...

  --listen ADDR     address to listen on (default 127.0.0.1:3443)
  --cert PEM        the server's certificate chain (default tests/mtls/server.pem)
  --key PEM         the server's private key (default tests/mtls/server.key)
  --client-ca PEM   the CA of client certificates (default tests/mtls/ca.pem)
  --issuer URL      trust this issuer's certificate-bound tokens (repeatable); without
                    it an embedded issuer is used
  --token-for PEM   print a token of the embedded issuer bound to this client
                    certificate (repeatable)
";

struct Args {
    listen: String,
    cert: String,
    key: String,
    client_ca: String,
    issuers: Vec<String>,
    token_for: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: "127.0.0.1:3443".into(),
        cert: "tests/mtls/server.pem".into(),
        key: "tests/mtls/server.key".into(),
        client_ca: "tests/mtls/ca.pem".into(),
        issuers: Vec::new(),
        token_for: Vec::new(),
    };
    let mut iter = std::env::args().skip(1);
    while let Some(flag) = iter.next() {
        let mut value = |name: &str| iter.next().ok_or(format!("{name} needs a value"));
        match flag.as_str() {
            "--listen" => args.listen = value("--listen")?,
            "--cert" => args.cert = value("--cert")?,
            "--key" => args.key = value("--key")?,
            "--client-ca" => args.client_ca = value("--client-ca")?,
            "--issuer" => args.issuers.push(value("--issuer")?),
            "--token-for" => args.token_for.push(value("--token-for")?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if !args.issuers.is_empty() && !args.token_for.is_empty() {
        return Err("--token-for needs the embedded issuer (no --issuer)".into());
    }
    Ok(args)
}

/// TLS that asks for a client certificate signed by `client_ca` and lets a client
/// without one connect (its bound tokens are then refused by the stack).
fn tls(args: &Args) -> Result<TlsAcceptor, Box<dyn std::error::Error>> {
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(&args.client_ca)? {
        roots.add(ca?)?;
    }
    let clients = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()?;
    let chain = CertificateDer::pem_file_iter(&args.cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(&args.key)?;
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(clients)
        .with_single_cert(chain, key)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The handler: who called, and the certificate the token is bound to.
async fn whoami(principal: Principal) -> Json<Value> {
    Json(json!({
        "sub": principal.subject(),
        "iss": principal.issuer(),
        "cnf": principal.claims().get("cnf"),
    }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = common::args_or_exit(parse_args, USAGE);
    let (listener, addr) = common::bind(&args.listen).await?;
    let resource = format!("https://{addr}/mcp");
    let mut builder = ResourceServer::builder(&resource);
    let mut embedded = None;
    if args.issuers.is_empty() {
        let (issuer, trusted) =
            embedded::Embedded::new(format!("https://{addr}/embedded-issuer"), "embedded-1")?;
        builder = builder.issuer(trusted.certificate_bound_tokens(true));
        embedded = Some(issuer);
    }
    for issuer in &args.issuers {
        builder = builder.issuer(Issuer::new(issuer).certificate_bound_tokens(true));
    }
    let gatekeeper = builder.build()?;
    let app = axum::Router::new()
        .route("/mcp", get(whoami).post(whoami))
        .layer(gatekeeper.layer());
    let acceptor = tls(&args)?;

    let mut banner =
        format!("mcp-gatekeeper with mutual TLS\n  listening: {addr}\n  resource:  {resource}\n");
    if let Some(embedded) = &embedded {
        for pem in &args.token_for {
            let der = CertificateDer::from_pem_file(pem)?;
            let thumbprint = ClientCertificate::new(der.to_vec()).thumbprint();
            let token = embedded.bound_token(
                "demo-user",
                &resource,
                "mcp:read",
                json!({"x5t#S256": thumbprint}),
            );
            banner.push_str(&format!("  token for {pem}: {token}\n"));
        }
    }
    common::print_banner(&banner);

    loop {
        let (tcp, _) = listener.accept().await?;
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            // The leaf of the chain the client sent, for every request of the connection.
            let certificate = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|leaf| ClientCertificate::new(leaf.to_vec()));
            let service =
                hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
                    if let Some(certificate) = &certificate {
                        request.extensions_mut().insert(certificate.clone());
                    }
                    app.clone().oneshot(request)
                });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service);
            let _ = connection.await;
        });
    }
}
