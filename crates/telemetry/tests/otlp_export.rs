//! End-to-end check of the OTLP path: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans reach
//! the collector as `POST /v1/traces` (protobuf) at the latest when the guard is dropped.
//!
//! The environment cannot be changed in-process without `unsafe`, so the test re-runs its
//! own binary as a child with the variable set, against a fake collector on loopback.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const CHILD_MARKER: &str = "OPENWATCH_OTLP_TEST_CHILD";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_to_the_configured_collector() {
    if std::env::var_os(CHILD_MARKER).is_some() {
        let guard = openwatch_telemetry::init("otlp-test").expect("init");
        assert!(guard.exporting());
        tracing::info_span!("exported_span").in_scope(|| tracing::info!("inside"));
        drop(guard);
        return;
    }

    let collector = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = collector.local_addr().unwrap();
    let received = tokio::spawn(async move {
        let (mut socket, _) = collector.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buf = vec![0; 65536];
        // Read until the body named by content-length has arrived.
        loop {
            let n = socket.read(&mut buf).await.unwrap();
            request.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&request).to_string();
            if let Some(split) = text.find("\r\n\r\n") {
                let head = text[..split].to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if request.len() >= split + 4 + length {
                    break;
                }
            }
            if n == 0 {
                break;
            }
        }
        socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await.unwrap();
        request
    });

    let output = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "spans_are_exported_to_the_configured_collector", "--nocapture"])
        .env(CHILD_MARKER, "1")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}"))
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output).await.unwrap().unwrap();
    assert!(output.status.success(), "child failed: {}", String::from_utf8_lossy(&output.stderr));

    let request = tokio::time::timeout(Duration::from_secs(5), received).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&request);
    assert!(text.starts_with("POST /v1/traces HTTP/1.1\r\n"), "{text}");
    assert!(text.to_ascii_lowercase().contains("content-type: application/x-protobuf"), "{text}");
    assert!(text.contains("exported_span"), "span name in the protobuf body");
    assert!(text.contains("otlp-test"), "service name in the resource");
}
