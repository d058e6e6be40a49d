//! `GET /api/scans/{id}/events`: a scan's status as Server-Sent Events.
//!
//! The stream opens with an `event: status` carrying the scan (the body of
//! `GET /api/scans/{id}`), then sends another whenever its status or progress changes. It
//! polls PostgreSQL and Redis every [`POLL_INTERVAL`] (the worker's progress key and the
//! scan row are the only sources; no broker subscription is needed, and every replica can
//! serve any stream), writes a `: keep-alive` comment every [`KEEP_ALIVE_INTERVAL`] so
//! proxies keep the connection open (and a vanished client is noticed), and ends after a
//! terminal status or after `max_secs`. A client reconnects to follow longer.

use std::convert::Infallible;
use std::time::Duration;

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{HttpResponse, get, web};
use openwatch_common::ids::ScanId;
use serde::Deserialize;
use tokio::time::Instant;
use utoipa::IntoParams;

use super::{ScanResponse, load_scan};
use crate::error::{ApiError, ErrorBody};
use crate::state::ApiState;

/// How often the stream looks for changes.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// How often a comment is written when nothing changes.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(15);
/// Default and bounds of `max_secs`.
const DEFAULT_MAX_SECS: u64 = 300;
const MAX_MAX_SECS: u64 = 3600;

/// How long to follow the scan.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// End the stream after this many seconds (1–3600, default 300).
    #[param(minimum = 1, maximum = 3600)]
    pub max_secs: Option<u64>,
}

/// Follows a scan: `event: status` with the scan JSON at once and on every change of its
/// status or progress, `: keep-alive` comments meanwhile; ends after a terminal status or
/// `max_secs`.
#[utoipa::path(
    tag = "scans",
    security(("bearer" = ["scans:read"])),
    params(("id" = uuid::Uuid, Path, description = "Scan id"), EventsQuery),
    responses(
        (status = 200, description = "An event stream: `event: status` / `data: <scan JSON>` records (see `ScanResponse`) and `: keep-alive` comments", content_type = "text/event-stream", body = String),
        (status = 400, description = "`invalid_max_secs`", body = ErrorBody),
        (status = 404, description = "`scan_not_found`", body = ErrorBody),
    )
)]
#[get("/scans/{id}/events")]
pub async fn scan_events(
    state: web::Data<ApiState>,
    path: web::Path<uuid::Uuid>,
    query: web::Query<EventsQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = ScanId(path.into_inner());
    let max_secs = query.max_secs.unwrap_or(DEFAULT_MAX_SECS);
    if !(1..=MAX_MAX_SECS).contains(&max_secs) {
        return Err(ApiError::bad_request("invalid_max_secs", "max_secs must be between 1 and 3600"));
    }
    let first = {
        let mut conn = state.pool.get().await?;
        load_scan(&state, &mut conn, id).await?
    };
    let now = Instant::now();
    let follower = Follower {
        state: state.into_inner(),
        id,
        first: Some(first),
        last: None,
        deadline: now + Duration::from_secs(max_secs),
        next_poll: now + POLL_INTERVAL,
        next_keep_alive: now + KEEP_ALIVE_INTERVAL,
        done: false,
    };
    let stream = futures_util::stream::unfold(follower, Follower::next);
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // nginx: pass events through at once instead of buffering them.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream))
}

/// The state of one stream.
struct Follower {
    state: std::sync::Arc<ApiState>,
    id: ScanId,
    /// The opening event, not sent yet.
    first: Option<ScanResponse>,
    /// The scan as last sent.
    last: Option<ScanResponse>,
    deadline: Instant,
    next_poll: Instant,
    next_keep_alive: Instant,
    done: bool,
}

/// One `status` event.
fn status_event(scan: &ScanResponse) -> Bytes {
    match serde_json::to_string(scan) {
        Ok(json) => Bytes::from(format!("event: status\ndata: {json}\n\n")),
        // Serialising plain data cannot fail; send a comment rather than break the stream.
        Err(error) => {
            tracing::error!(scan.id = %scan.id, %error, "cannot serialise a scan event");
            Bytes::from_static(b": unserialisable scan\n\n")
        }
    }
}

impl Follower {
    /// Sends `scan` and remembers it; a terminal status ends the stream after it.
    fn send(mut self, scan: ScanResponse) -> Option<(Result<Bytes, Infallible>, Self)> {
        let event = status_event(&scan);
        self.done = scan.status.is_terminal();
        self.last = Some(scan);
        Some((Ok(event), self))
    }

    /// The next chunk of the stream, or `None` when it ends.
    async fn next(mut self) -> Option<(Result<Bytes, Infallible>, Self)> {
        if self.done {
            return None;
        }
        if let Some(first) = self.first.take() {
            return self.send(first);
        }
        loop {
            tokio::time::sleep_until(self.next_poll.min(self.next_keep_alive).min(self.deadline)).await;
            let now = Instant::now();
            if now >= self.deadline {
                return None;
            }
            if now >= self.next_keep_alive {
                self.next_keep_alive = now + KEEP_ALIVE_INTERVAL;
                return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), self));
            }
            if now < self.next_poll {
                continue;
            }
            self.next_poll = now + POLL_INTERVAL;
            match self.poll().await {
                Ok(scan) if self.last.as_ref() != Some(&scan) => return self.send(scan),
                Ok(_) => {}
                // Deleted with its host: nothing more will happen.
                Err(error) if error.code() == "scan_not_found" => return None,
                Err(error) => tracing::warn!(scan.id = %self.id, %error, "scan event poll failed; retrying"),
            }
        }
    }

    async fn poll(&self) -> Result<ScanResponse, ApiError> {
        let mut conn = self.state.pool.get().await?;
        load_scan(&self.state, &mut conn, self.id).await
    }
}
