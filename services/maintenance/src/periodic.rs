//! A round of work at start and then every interval, until shutdown: the shape shared by
//! housekeeping, the dispatcher and the stale-scan reaper.
//!
//! Each batch of a round is one transaction, so a round abandoned when the process exits
//! leaves nothing half-done; rounds also stop between batches once shutdown fires.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Runs `round` now and then `interval` after each round ends, until `shutdown` fires.
pub fn spawn<F, Fut>(interval: Duration, shutdown: CancellationToken, mut round: F) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        loop {
            // A round stops between its batches once shutdown fires; not cutting it here
            // keeps a transaction from being dropped half-way while the process drains.
            round().await;
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    })
}
