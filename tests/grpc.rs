//! The stack in front of tonic (`examples/grpc.rs`, run as a process), driven by a
//! tonic client: refusals are gRPC statuses with the challenge in the metadata
//! (R-ERR-3).

mod support;

#[allow(clippy::all, clippy::pedantic, dead_code)]
mod proto {
    include!("../examples/grpc/notes.v1.rs");
}

use proto::notes_client::NotesClient;
use proto::{WhoAmIRequest, WriteRequest};
use support::process::{Running, start};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

async fn client(running: &Running) -> NotesClient<Channel> {
    NotesClient::connect(running.field("endpoint"))
        .await
        .expect("connect to the example")
}

fn with_token<T>(message: T, token: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(token) = token {
        let value = format!("Bearer {token}").parse().expect("ascii");
        request.metadata_mut().insert("authorization", value);
    }
    request
}

fn challenge(status: &Status) -> String {
    status
        .metadata()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn grpc_callers_get_grpc_statuses_with_the_challenge_in_metadata() {
    let running = start("grpc", &["--listen", "127.0.0.1:0"], "ready").await;
    let (read, write) = (running.field("token"), running.field("write-token"));
    let mut notes = client(&running).await;

    let status = notes
        .who_am_i(with_token(WhoAmIRequest {}, None))
        .await
        .expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(
        challenge(&status).starts_with("Bearer resource_metadata=\""),
        "{}",
        challenge(&status)
    );

    let tampered = format!("{read}x");
    let status = notes
        .who_am_i(with_token(WhoAmIRequest {}, Some(&tampered)))
        .await
        .expect_err("bad token");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(challenge(&status).contains("error=\"invalid_token\""));

    let reply = notes
        .who_am_i(with_token(WhoAmIRequest {}, Some(&read)))
        .await
        .expect("allowed")
        .into_inner();
    assert_eq!(reply.subject, "grpc-user");
    assert_eq!(reply.scopes, ["mcp:read"]);

    let status = notes
        .write(with_token(WriteRequest { text: "hi".into() }, Some(&read)))
        .await
        .expect_err("needs mcp:write");
    assert_eq!(status.code(), Code::PermissionDenied);
    let step_up = challenge(&status);
    assert!(
        step_up.starts_with("Bearer error=\"insufficient_scope\"")
            // The callback's step-up names the required scope too (one challenge
            // names every scope the call needs, SEP-2350).
            && step_up.ends_with("scope=\"mcp:read mcp:write\""),
        "{step_up}"
    );
    let reply = notes
        .write(with_token(WriteRequest { text: "hi".into() }, Some(&write)))
        .await
        .expect("allowed")
        .into_inner();
    assert_eq!(reply.notes, 1);

    // The metadata document answers plain HTTP/1 on the same port.
    let doc = support::process::get_json(&running.field("metadata")).await;
    assert_eq!(doc["resource"], running.field("resource"));
}

#[tokio::test]
async fn an_unreachable_issuer_is_grpc_unavailable() {
    let closed = support::closed_port().await;
    let issuer = format!("http://{closed}");
    let running = start(
        "grpc",
        &["--listen", "127.0.0.1:0", "--issuer", &issuer],
        "ready",
    )
    .await;
    let key = support::SigningKey::rsa("any");
    let token = key.sign(&support::claims(&issuer, &running.field("resource")));
    let status = client(&running)
        .await
        .who_am_i(with_token(WhoAmIRequest {}, Some(&token)))
        .await
        .expect_err("keys cannot be had");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.metadata().get("retry-after").is_some());
}
