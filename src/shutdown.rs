//! Graceful shutdown: the signals that start it, and the draining state readiness reports.
//!
//! The sequence (run by `server::App::run`): a signal arrives; `/readyz` turns 503 at once;
//! the service keeps serving for `drain_delay`, so load balancers notice and stop routing;
//! then the listeners close, in-flight requests get up to `shutdown_timeout` to finish, the
//! Redis connection is closed, and the process exits 0.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Shared between the shutdown sequence, which sets it, and `/readyz`, which reads it.
#[derive(Debug, Clone, Default)]
pub struct Draining(Arc<AtomicBool>);

impl Draining {
    pub fn start(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM (what `docker stop` and Kubernetes send).
///
/// The handlers are installed when this is called, not when the future is first polled, so
/// a signal that arrives right after start-up is not lost to the default action (exit without
/// draining). Call it inside the runtime, before the listeners announce themselves.
pub fn signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let interrupt = signal(SignalKind::interrupt());
    let terminate = signal(SignalKind::terminate());
    async move {
        let (mut interrupt, mut terminate) = match (interrupt, terminate) {
            (Ok(interrupt), Ok(terminate)) => (interrupt, terminate),
            (Err(error), _) | (_, Err(error)) => {
                tracing::error!(%error, "cannot listen for SIGINT and SIGTERM; stop the service with SIGKILL");
                return std::future::pending().await;
            }
        };
        let name = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        tracing::info!(signal = name, "shutdown signal received");
    }
}
