//! Push fan-out (R-POL-5). Events are rows in `events` (committed with the change that
//! caused them); this hub only wakes the streams. A stream that falls behind is
//! closed, and its agent resumes from its last sequence number, so nothing is lost.
//!
//! One dispatcher per centre process reads new rows after each local commit and, on
//! PostgreSQL, after each NOTIFY from another replica (LISTEN/NOTIFY fan-out).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use sqlx::Row;
use tokio::sync::mpsc;

use crate::db::{Backend, Db, PG_EVENT_CHANNEL};

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Event {
    pub seq: i64,
    pub kind: String,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

/// Per-stream queue depth; a stream further behind than this is cut and resyncs.
const STREAM_QUEUE: usize = 256;

#[derive(Default)]
pub struct Hub {
    streams: Mutex<HashMap<String, Vec<mpsc::Sender<Event>>>>,
}

impl Hub {
    pub fn subscribe(&self, device_id: &str) -> mpsc::Receiver<Event> {
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        let mut streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        streams.entry(device_id.to_string()).or_default().push(tx);
        rx
    }

    pub fn connected_devices(&self) -> usize {
        let streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        streams
            .values()
            .filter(|v| v.iter().any(|s| !s.is_closed()))
            .count()
    }

    /// Event streams open on this process (for /metrics; one device may hold several).
    pub fn open_streams(&self) -> usize {
        let streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        streams
            .values()
            .map(|v| v.iter().filter(|s| !s.is_closed()).count())
            .sum()
    }

    /// Whether `device_id` has an open event stream on this process (the console's
    /// "online"; on PostgreSQL replicas, a stream held by another replica is not seen).
    pub fn is_connected(&self, device_id: &str) -> bool {
        let streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        streams
            .get(device_id)
            .is_some_and(|v| v.iter().any(|s| !s.is_closed()))
    }

    /// Hand `ev` to every stream of the device; `created_ms` is when its change began
    /// (the push latency of /metrics).
    fn deliver(&self, device_id: &str, ev: &Event, created_ms: i64) {
        let metrics = crate::metrics::get();
        let mut streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = streams.get_mut(device_id) {
            // try_send: a full or closed queue drops that stream; the agent resyncs.
            list.retain(|s| match s.try_send(ev.clone()) {
                Ok(()) => {
                    let ms = (crate::db::now_ms() - created_ms).max(0) as u64;
                    metrics.pushed_live(std::time::Duration::from_millis(ms));
                    true
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    metrics.stream_cut();
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
            if list.is_empty() {
                streams.remove(device_id);
            }
        }
    }

    /// Hand `ev` to every open stream of this process (an event not stored per
    /// device, such as a new audit checkpoint). A full queue drops that stream.
    pub fn broadcast(&self, ev: &Event) {
        let mut streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        streams.retain(|_, list| {
            list.retain(|s| s.try_send(ev.clone()).is_ok());
            !list.is_empty()
        });
    }

    /// Run forever: after each wake-up, deliver every event newer than the last seen.
    pub async fn run_dispatcher(self: Arc<Self>, db: Arc<Db>) {
        let mut last: i64 = match sqlx::query("SELECT MAX(seq) FROM events")
            .fetch_one(&db.pool)
            .await
        {
            Ok(r) => r.try_get::<Option<i64>, _>(0).ok().flatten().unwrap_or(0),
            Err(_) => 0,
        };
        let remote = Arc::new(tokio::sync::Notify::new());
        if db.backend == Backend::Postgres {
            spawn_pg_listener(db.url.clone(), remote.clone());
        }
        loop {
            tokio::select! {
                _ = db.events_committed.notified() => {}
                _ = remote.notified() => {}
                // A safety net: if a wake-up is ever lost, at most one second passes.
                _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            }
            loop {
                let rows = sqlx::query(
                    "SELECT seq, device_id, kind, payload, created_ms FROM events WHERE seq > $1 ORDER BY seq LIMIT 5000",
                )
                .bind(last)
                .fetch_all(&db.pool)
                .await;
                let rows = match rows {
                    Ok(r) => r,
                    Err(e) => {
                        crate::metrics::get().db_error(&e);
                        tracing::warn!(error = %e, "event dispatcher cannot read events");
                        break;
                    }
                };
                if rows.is_empty() {
                    break;
                }
                for r in &rows {
                    let seq: i64 = r.get(0);
                    let device: String = r.get(1);
                    let payload: String = r.get(3);
                    let ev = Event {
                        seq,
                        kind: r.get(2),
                        payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
                    };
                    self.deliver(&device, &ev, r.try_get(4).unwrap_or(0));
                    last = seq;
                }
            }
        }
    }
}

fn spawn_pg_listener(url: String, wake: Arc<tokio::sync::Notify>) {
    tokio::spawn(async move {
        loop {
            match sqlx::postgres::PgListener::connect(&url).await {
                Ok(mut l) => {
                    if let Err(e) = l.listen(PG_EVENT_CHANNEL).await {
                        tracing::warn!(error = %e, "LISTEN failed");
                    } else {
                        while l.recv().await.is_ok() {
                            wake.notify_one();
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot connect the event listener; retrying"),
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    });
}
