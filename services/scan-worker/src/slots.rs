//! Scan slots: at most `OPENWATCH_CONCURRENCY` scans run at once in a process, and a free
//! slot goes to a waiting manual scan before any waiting scheduled one.
//!
//! The broker runtime consumes each queue with its own prefetch (= concurrency), so a
//! process consuming both `scans` and `compliance_scanning` may hold up to twice that many
//! requests. They all wait here for one of `concurrency` slots; when a slot frees up it is
//! handed to the oldest [`Priority::High`] waiter (queue `scans`), and only when there is
//! none to the oldest [`Priority::Low`] one (queue `compliance_scanning`). A burst of
//! scheduled scans therefore delays a manual scan by at most the scans already running,
//! never by the scheduled ones queued in this process. For a hard guarantee, run separate
//! pools per queue (`OPENWATCH_QUEUES=scans` and `=compliance_scanning`, as
//! `docker-compose.override.yml` does).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

/// Which waiters a freed slot goes to first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// Manual scans (queue `scans`).
    High,
    /// Scheduled scans (queue `compliance_scanning`).
    Low,
}

#[derive(Debug)]
struct State {
    free: usize,
    high: VecDeque<oneshot::Sender<()>>,
    low: VecDeque<oneshot::Sender<()>>,
}

/// A counting semaphore with two priority classes and FIFO order within each.
#[derive(Debug)]
pub struct ScanSlots {
    state: Mutex<State>,
}

/// A held slot; dropping it hands the slot to the next waiter.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<ScanSlots>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.release();
    }
}

/// Waiting for a slot; if the wait is abandoned after the slot was handed over, the slot is
/// passed on instead of being lost.
struct Waiter {
    slots: Arc<ScanSlots>,
    receiver: Option<oneshot::Receiver<()>>,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if let Some(mut receiver) = self.receiver.take() {
            receiver.close();
            if receiver.try_recv().is_ok() {
                self.slots.release();
            }
        }
    }
}

impl ScanSlots {
    /// `capacity` slots (at least one).
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State { free: capacity.max(1), high: VecDeque::new(), low: VecDeque::new() }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits for a slot; cancel-safe.
    pub async fn acquire(self: &Arc<Self>, priority: Priority) -> Slot {
        let receiver = {
            let mut state = self.lock();
            // Free slots exist only while nobody waits (a release hands its slot to a waiter).
            if state.free > 0 {
                state.free -= 1;
                return Slot { slots: Arc::clone(self) };
            }
            let (sender, receiver) = oneshot::channel();
            match priority {
                Priority::High => state.high.push_back(sender),
                Priority::Low => state.low.push_back(sender),
            }
            receiver
        };
        let mut waiter = Waiter { slots: Arc::clone(self), receiver: Some(receiver) };
        if let Some(receiver) = waiter.receiver.as_mut() {
            // The sender lives in `state` until it is used, and `state` lives as long as
            // `self`: the only outcome is the hand-over.
            let _handed_over = receiver.await;
        }
        waiter.receiver = None;
        Slot { slots: Arc::clone(self) }
    }

    /// Hands a slot to the next live waiter, or returns it to the pool.
    fn release(&self) {
        let mut state = self.lock();
        loop {
            let next = match state.high.pop_front() {
                Some(sender) => Some(sender),
                None => state.low.pop_front(),
            };
            match next {
                // A waiter that gave up has dropped its receiver: try the next one.
                Some(sender) => {
                    if sender.send(()).is_ok() {
                        return;
                    }
                }
                None => {
                    state.free += 1;
                    return;
                }
            }
        }
    }

    /// Slots free right now.
    #[cfg(test)]
    fn available(&self) -> usize {
        self.lock().free
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use tokio::sync::mpsc;

    use super::*;

    /// Spawns a task that takes a slot, reports `label`, and holds the slot until told.
    fn contender(
        slots: &Arc<ScanSlots>,
        priority: Priority,
        label: &'static str,
        order: mpsc::UnboundedSender<&'static str>,
    ) -> oneshot::Sender<()> {
        let (done, wait) = oneshot::channel::<()>();
        let slots = Arc::clone(slots);
        tokio::spawn(async move {
            let _slot = slots.acquire(priority).await;
            order.send(label).unwrap();
            let _ = wait.await;
        });
        done
    }

    async fn waiting(slots: &ScanSlots, high: usize, low: usize) {
        for _ in 0..1000 {
            {
                let state = slots.lock();
                if state.high.len() == high && state.low.len() == low {
                    return;
                }
            }
            tokio::task::yield_now().await;
        }
        panic!("waiters never queued");
    }

    #[tokio::test]
    async fn capacity_is_respected_and_high_priority_waiters_go_first() {
        let slots = ScanSlots::new(1);
        let (order_tx, mut order) = mpsc::unbounded_channel();
        let first = contender(&slots, Priority::Low, "running", order_tx.clone());
        assert_eq!(order.recv().await, Some("running"));
        assert_eq!(slots.available(), 0);

        let low1 = contender(&slots, Priority::Low, "low1", order_tx.clone());
        waiting(&slots, 0, 1).await;
        let low2 = contender(&slots, Priority::Low, "low2", order_tx.clone());
        waiting(&slots, 0, 2).await;
        let high = contender(&slots, Priority::High, "high", order_tx.clone());
        waiting(&slots, 1, 2).await;
        assert!(order.try_recv().is_err(), "nobody runs while the slot is held");

        first.send(()).unwrap();
        assert_eq!(order.recv().await, Some("high"), "the manual scan overtakes earlier scheduled ones");
        high.send(()).unwrap();
        assert_eq!(order.recv().await, Some("low1"));
        low1.send(()).unwrap();
        assert_eq!(order.recv().await, Some("low2"));
        low2.send(()).unwrap();
        for _ in 0..1000 {
            if slots.available() == 1 {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the slot was not returned");
    }

    #[tokio::test]
    async fn an_abandoned_wait_does_not_lose_the_slot() {
        let slots = ScanSlots::new(1);
        let held = slots.acquire(Priority::High).await;
        // A waiter that gives up before the slot frees…
        let gave_up = tokio::time::timeout(Duration::from_millis(10), slots.acquire(Priority::High)).await;
        assert!(gave_up.is_err());
        drop(held);
        assert_eq!(slots.available(), 1, "…is skipped when the slot is released");

        // A waiter dropped after the hand-over passes the slot on.
        let held = slots.acquire(Priority::High).await;
        let mut pending = Box::pin(slots.acquire(Priority::Low));
        assert!(futures_poll_once(pending.as_mut()).await.is_none());
        drop(held); // handed to `pending`, which never looks at it
        drop(pending);
        assert_eq!(slots.available(), 1);
    }

    /// Polls `future` once and returns its output if it was ready.
    async fn futures_poll_once<F: std::future::Future + Unpin>(future: F) -> Option<F::Output> {
        let mut future = future;
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut future).poll(cx) {
                std::task::Poll::Ready(output) => Some(output),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }
}
