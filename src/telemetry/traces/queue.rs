//! Between the request path and the collector: a bounded queue of ended spans and one export
//! task that drains it in batches.
//!
//! A request only ever tries to put its span in the queue; when the queue is full (the
//! collector is slow, down or never answers) the span is dropped and counted, and the request
//! goes on. The SDK's own batch processor runs its exports on a thread of its own, has no
//! count of what it drops, and blocks its caller on shutdown; this one runs on the service's
//! runtime, counts every span's outcome (`timestamp_api_trace_spans_total{outcome}`), and its
//! final flush is bounded by the caller's deadline.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use opentelemetry::Context;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use tokio::sync::{mpsc, oneshot};

/// Most spans in one export request.
const MAX_BATCH: usize = 512;

/// How long the first span of a batch waits for others: how late a span reaches the collector.
const GATHER: Duration = Duration::from_secs(1);

static EXPORTED: AtomicU64 = AtomicU64::new(0);
static DROPPED: AtomicU64 = AtomicU64::new(0);
static FAILED: AtomicU64 = AtomicU64::new(0);
/// Spans of the export under way, if any: lost too if the deadline passes before it ends.
static IN_EXPORT: AtomicU64 = AtomicU64::new(0);

/// Spans so far by outcome: exported, dropped (the queue was full), failed (the export failed).
pub fn span_counts() -> [(&'static str, u64); 3] {
    [
        ("exported", EXPORTED.load(Ordering::Relaxed)),
        ("dropped", DROPPED.load(Ordering::Relaxed)),
        ("failed", FAILED.load(Ordering::Relaxed)),
    ]
}

/// The tracer provider's span processor: the sending side of the queue.
#[derive(Debug)]
pub struct Queue {
    spans: mpsc::Sender<SpanData>,
}

/// The receiving side, until the export task takes it.
pub struct Pending<E> {
    spans: mpsc::Receiver<SpanData>,
    /// To count what is left at the deadline, without keeping the queue open.
    queued: mpsc::WeakSender<SpanData>,
    exporter: E,
}

/// Stops the export task: what is queued by then is exported, within a deadline.
pub struct Exporting {
    flush: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
    spans: mpsc::WeakSender<SpanData>,
}

pub fn queue<E: SpanExporter + 'static>(capacity: usize, exporter: E) -> (Pending<E>, Queue) {
    let (sender, receiver) = mpsc::channel(capacity);
    (
        Pending {
            spans: receiver,
            queued: sender.downgrade(),
            exporter,
        },
        Queue { spans: sender },
    )
}

impl SpanProcessor for Queue {
    fn on_start(&self, _span: &mut Span, _parent: &Context) {}

    fn on_end(&self, span: SpanData) {
        if self.spans.try_send(span).is_err() {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

impl<E: SpanExporter + 'static> Pending<E> {
    /// Starts the export task on the current runtime.
    pub fn start(self) -> Exporting {
        let (flush, flushing) = oneshot::channel();
        Exporting {
            flush,
            done: tokio::spawn(export(self.spans, self.exporter, flushing)),
            spans: self.queued,
        }
    }
}

impl Exporting {
    /// Exports what is queued, then stops, by `deadline` at the latest; spans still queued or
    /// in an export then are counted as dropped.
    pub async fn flush(self, deadline: Instant) {
        let _ = self.flush.send(());
        let left = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left, self.done).await.is_err() {
            let queued = self
                .spans
                .upgrade()
                .map_or(0, |spans| spans.max_capacity() - spans.capacity())
                as u64
                + IN_EXPORT.swap(0, Ordering::Relaxed);
            DROPPED.fetch_add(queued, Ordering::Relaxed);
            tracing::warn!(
                spans = queued,
                "traces: the receiver did not take the last spans before the shutdown deadline"
            );
        }
    }
}

async fn export<E: SpanExporter>(
    mut spans: mpsc::Receiver<SpanData>,
    exporter: E,
    mut flushing: oneshot::Receiver<()>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut failing = false;
    let mut closing = false;
    loop {
        if closing {
            // Only what is queued now; new spans of the last moments may be left behind.
            while batch.len() < MAX_BATCH
                && let Ok(span) = spans.try_recv()
            {
                batch.push(span);
            }
            if batch.is_empty() {
                return;
            }
        } else {
            tokio::select! {
                received = spans.recv_many(&mut batch, MAX_BATCH) => if received == 0 { return },
                _ = &mut flushing => { closing = true; continue },
            }
            let gathered = tokio::time::sleep(GATHER);
            tokio::pin!(gathered);
            while batch.len() < MAX_BATCH && !closing {
                let room = MAX_BATCH - batch.len();
                tokio::select! {
                    received = spans.recv_many(&mut batch, room) => if received == 0 { break },
                    () = &mut gathered => break,
                    _ = &mut flushing => closing = true,
                }
            }
        }
        let count = batch.len() as u64;
        IN_EXPORT.store(count, Ordering::Relaxed);
        let exported = exporter.export(std::mem::take(&mut batch)).await;
        IN_EXPORT.store(0, Ordering::Relaxed);
        match exported {
            Ok(()) => {
                EXPORTED.fetch_add(count, Ordering::Relaxed);
                if std::mem::take(&mut failing) {
                    tracing::info!("traces: exports succeed again");
                }
            }
            Err(error) => {
                FAILED.fetch_add(count, Ordering::Relaxed);
                // Once per outage; the count goes on in the metric.
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(
                        %error,
                        spans = count,
                        fix = "check that the collector at traces.url or traces.endpoint is up and accepts OTLP/HTTP",
                        "traces: an export failed; its spans are lost"
                    );
                }
            }
        }
        batch = Vec::with_capacity(MAX_BATCH);
    }
}
