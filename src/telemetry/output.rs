//! Where log lines go: stdout, through a bounded buffer that a thread of its own writes out.
//!
//! A log sink that stops reading (a stalled journald, a log shipper that fell behind, a pipe
//! nobody drains) must not stop the service: request handlers and probes only ever append a line
//! to the buffer, under a lock held for a copy, and never wait for stdout. When the buffer holds
//! `CAPACITY` bytes, a new line is dropped and counted (`timestamp_api_log_lines_dropped_total`);
//! once the sink takes lines again, the writer logs how many were lost.
//!
//! The writer sleeps until a line arrives, lets a batch gather for `GATHER` (or until
//! `WRITE_AT` bytes wait), then swaps the buffer for an empty one and writes the batch with one
//! `write`, outside the lock. tracing-appender's non-blocking writer does the same job with a
//! channel message (and an allocation) per line; measured in the same runs, it cost about a
//! tenth of the service's throughput more than this (docs/performance.md).

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Bytes the buffer holds while the sink is slow (a few thousand lines); beyond, lines drop.
const CAPACITY: usize = 1024 * 1024;

/// A buffer this full is written out at once.
const WRITE_AT: usize = 32 * 1024;

/// How long the first line of a batch waits for others: the delay before a line is written.
const GATHER: Duration = Duration::from_millis(10);

/// At exit, how long to wait for the last lines to be written (the sink may be stalled).
const FINAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

static BUFFER: Mutex<Vec<u8>> = Mutex::new(Vec::new());
static LINE_WAITING: Condvar = Condvar::new();
static CLOSING: AtomicBool = AtomicBool::new(false);
static DROPPED: AtomicU64 = AtomicU64::new(0);

fn buffer() -> MutexGuard<'static, Vec<u8>> {
    // A panic while holding the lock leaves at worst a partial line; keep logging.
    BUFFER.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Log lines dropped so far because the sink did not keep up.
pub fn dropped_lines() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// The `MakeWriter` for the fmt layer: each formatted event arrives in one `write`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stdout;

impl Write for Stdout {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let mut buffer = buffer();
        let before = buffer.len();
        if before + line.len() > CAPACITY {
            drop(buffer);
            DROPPED.fetch_add(1, Ordering::Relaxed);
        } else {
            buffer.extend_from_slice(line);
            // The writer waits for the first line of a batch, then for a full one.
            if before == 0 || (before < WRITE_AT && buffer.len() >= WRITE_AT) {
                LINE_WAITING.notify_one();
            }
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Stdout {
    type Writer = Self;

    fn make_writer(&'a self) -> Self {
        *self
    }
}

/// Writes out what is left when dropped, waiting at most `FINAL_WRITE_TIMEOUT`.
pub struct WriterGuard {
    finished: Option<mpsc::Receiver<()>>,
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        CLOSING.store(true, Ordering::SeqCst);
        // Taken under the lock, so that the writer cannot miss it between its check and its wait.
        drop(buffer());
        LINE_WAITING.notify_one();
        if let Some(finished) = self.finished.take() {
            let _ = finished.recv_timeout(FINAL_WRITE_TIMEOUT);
        }
    }
}

/// Starts the writer thread. Without it (it could not be spawned), lines are buffered up to
/// `CAPACITY` and then dropped, and the error is reported on stderr.
pub fn start() -> WriterGuard {
    let (finish, finished) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || {
            write_batches(&mut io::stdout());
            let _ = finish.send(());
        });
    match spawned {
        Ok(_) => WriterGuard {
            finished: Some(finished),
        },
        Err(error) => {
            eprintln!("timestamp-api: cannot start the log writer: {error}");
            WriterGuard { finished: None }
        }
    }
}

fn write_batches(out: &mut impl Write) {
    let mut batch = Vec::new();
    let mut reported = 0;
    loop {
        {
            let buffer = buffer();
            let closing = || CLOSING.load(Ordering::SeqCst);
            let mut buffer = LINE_WAITING
                .wait_while(buffer, |buffer| buffer.is_empty() && !closing())
                .unwrap_or_else(PoisonError::into_inner);
            if buffer.is_empty() {
                return;
            }
            if !closing() {
                buffer = LINE_WAITING
                    .wait_timeout_while(buffer, GATHER, |buffer| {
                        buffer.len() < WRITE_AT && !closing()
                    })
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            std::mem::swap(&mut *buffer, &mut batch);
        }
        // Nowhere is left to report a failed write to; the lines are gone either way.
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        batch.clear();
        let dropped = dropped_lines();
        if dropped > reported {
            tracing::warn!(dropped = dropped - reported, "log lines were dropped");
            reported = dropped;
        }
    }
}
