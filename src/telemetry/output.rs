//! Where log lines go: stdout, through a bounded queue that a dedicated thread drains.
//!
//! A log sink that stops reading (a stalled journald, a log shipper that fell behind, a pipe
//! nobody drains) must not stop the service: request handlers and probes only ever put a line
//! on the queue, never wait for stdout. When the queue is full the line is dropped and counted
//! (`timestamp_api_log_lines_dropped_total`), and once the sink takes lines again the writer
//! thread logs how many were lost. tracing-appender's lossy non-blocking writer does the
//! queueing; the writer thread writes through a large buffer, so a busy service writes many
//! lines per system call (docs/performance.md measured both this and the writer it replaced).

use std::io::{self, BufWriter, Stdout, Write};
use std::sync::OnceLock;

use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};

/// Lines the queue holds while the sink is slow; beyond them lines are dropped. At a few
/// hundred bytes a line this bounds the queue to a few MiB.
const QUEUE_LINES: usize = 8192;

/// The writer thread's buffer: it is written out when full and whenever the queue runs empty.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Log lines dropped so far because the sink did not keep up.
pub fn dropped_lines() -> u64 {
    DROPPED
        .get()
        .map_or(0, |counter| counter.dropped_lines() as u64)
}

/// The writer for the fmt layer, and the guard that flushes the queue when dropped (at exit).
pub fn stdout() -> (NonBlocking, WorkerGuard) {
    let sink = ReportingSink {
        out: BufWriter::with_capacity(WRITE_BUFFER_BYTES, io::stdout()),
        reported: 0,
    };
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(QUEUE_LINES)
        .thread_name("log-writer")
        .finish(sink);
    // Only the first subscriber's counter is kept; `telemetry::init` runs once per process.
    let _ = DROPPED.set(writer.error_counter());
    (writer, guard)
}

/// Stdout as the writer thread sees it: after each line it could write, it reports lines that
/// were dropped since the last report, as a log event of its own (queued like any other).
struct ReportingSink {
    out: BufWriter<Stdout>,
    reported: u64,
}

impl Write for ReportingSink {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let written = self.out.write(line)?;
        let dropped = dropped_lines();
        if dropped > self.reported {
            tracing::warn!(dropped = dropped - self.reported, "log lines were dropped");
            self.reported = dropped;
        }
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
