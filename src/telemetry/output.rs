//! Where log lines go: stdout, in batches.
//!
//! Writing each line with its own `write(2)` cost about a tenth of the service's throughput in
//! bench/run, and two runtime threads contended for stdout's lock. Lines are appended to one
//! shared buffer instead, and written out when it fills, whenever a runtime thread runs out of
//! work (`flush` is the runtime's park hook, so an idle service writes at once and a busy one
//! writes many lines per system call), at exit, and before a panic is reported.

use std::io::{self, Write};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// A buffer this full is written out at once, busy or not.
const FLUSH_AT_BYTES: usize = 32 * 1024;

static BUFFER: Mutex<Vec<u8>> = Mutex::new(Vec::new());

fn buffer() -> MutexGuard<'static, Vec<u8>> {
    // A panic while holding the lock leaves at worst a partial line; keep logging.
    BUFFER.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Writes every buffered line to stdout.
pub fn flush() {
    let mut buffer = buffer();
    write_out(&mut buffer);
}

fn write_out(buffer: &mut Vec<u8>) {
    if buffer.is_empty() {
        return;
    }
    let mut stdout = io::stdout().lock();
    // If stdout is gone there is nowhere left to report it; the lines are dropped, never kept.
    let _ = stdout.write_all(buffer).and_then(|()| stdout.flush());
    buffer.clear();
}

/// The `MakeWriter` for the fmt layer: each formatted event arrives in one `write`.
#[derive(Debug, Clone, Copy, Default)]
pub struct BatchedStdout;

impl io::Write for BatchedStdout {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let mut buffer = buffer();
        buffer.extend_from_slice(bytes);
        if buffer.len() >= FLUSH_AT_BYTES {
            write_out(&mut buffer);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchedStdout {
    type Writer = Self;

    fn make_writer(&'a self) -> Self {
        *self
    }
}

/// Makes a panic's own message come after the lines logged before it.
pub fn flush_before_panic_reports() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        flush();
        report(info);
    }));
}
