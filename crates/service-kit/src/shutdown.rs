//! Graceful shutdown: SIGTERM (orchestrators) and SIGINT (Ctrl-C) cancel one
//! [`CancellationToken`] that the whole service watches: consumers stop taking messages,
//! in-flight work finishes, the ops server stops, then `main` returns.
//!
//! A second signal while shutting down exits immediately (status 130 for SIGINT, 143 for
//! SIGTERM), for when draining is stuck and an operator insists.

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// A token cancelled on the first SIGTERM or SIGINT, logging which signal arrived. Must be
/// called inside a Tokio runtime, once per process. If the handlers cannot be installed
/// (never expected on Linux), the error is logged and the signals keep their default
/// behaviour, which terminates the process.
pub fn shutdown_token() -> CancellationToken {
    let token = CancellationToken::new();
    let (terminate, interrupt) = match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(t), Ok(i)) => (t, i),
        (Err(err), _) | (_, Err(err)) => {
            tracing::error!(error = %err, "cannot install SIGTERM/SIGINT handlers; signals will kill the process");
            return token;
        }
    };
    tokio::spawn(watch(terminate, interrupt, token.clone()));
    token
}

async fn watch(mut terminate: Signal, mut interrupt: Signal, token: CancellationToken) {
    let first = next_signal(&mut terminate, &mut interrupt).await;
    tracing::info!(signal = first, "shutdown requested: finishing in-flight work");
    token.cancel();
    let second = next_signal(&mut terminate, &mut interrupt).await;
    tracing::warn!(signal = second, "second signal during shutdown: exiting immediately");
    std::process::exit(if second == "SIGINT" { 130 } else { 143 });
}

async fn next_signal(terminate: &mut Signal, interrupt: &mut Signal) -> &'static str {
    tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    }
}
