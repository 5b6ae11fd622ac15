//! Start-up and serving: binds the API and admin listeners, serves HTTP/1.1 on them with hyper
//! (every request through `http::Observed`), and runs the shutdown sequence described in
//! `shutdown`.
//!
//! What one client can hold is bounded: connections per listener (`max_connections`; one more
//! is answered 503 and closed), the time a connection may wait for a request head
//! (`idle_timeout`), the time a response write may make no progress (`write_timeout`), and the
//! bytes hyper buffers per connection (`CONNECTION_BUFFER_BYTES`).
//!
//! Listeners are bound before `run`, so tests and the binary learn the real addresses (port 0
//! picks a free one) before any request is made.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use warp::http::Request;
use warp::reply::Response;

use crate::api::ResponseBudget;
use crate::config::Config;
use crate::connection::ClientStream;
use crate::cursor::CursorKey;
use crate::descriptors;
use crate::http::{
    AccessLog, HttpError, IntoProblem, Observed, PROBLEM_CONTENT_TYPE, RETRY_AFTER_SECONDS,
};
use crate::metrics::{ListenerMetrics, Metrics};
use crate::shutdown::Draining;
use crate::store::{Store, StoreError};

/// hyper's read and write buffers per connection (its smallest allowed is 8 KiB, its default
/// about 400 KiB): a client that pipelines requests and never reads holds at most this much
/// twice. A request head must fit in it, or hyper answers 431 itself.
const CONNECTION_BUFFER_BYTES: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr} ({key}): {source}")]
    Bind {
        key: &'static str,
        addr: SocketAddr,
        source: io::Error,
    },
    #[error("cannot prepare the Redis client: {0}")]
    Store(#[from] StoreError),
    #[error("cannot draw a random cursor key: {0}")]
    CursorKey(getrandom::Error),
}

/// A bound, ready-to-run service.
pub struct App {
    store: Store,
    metrics: Metrics,
    draining: Draining,
    api: Listener,
    admin: Listener,
    cursor_key: CursorKey,
    response_budget: ResponseBudget,
    limits: ConnectionLimits,
    drain_delay: Duration,
    shutdown_timeout: Duration,
}

struct Listener {
    socket: TcpListener,
    addr: SocketAddr,
}

impl Listener {
    async fn bind(key: &'static str, addr: SocketAddr) -> Result<Self, StartError> {
        let error = |source| StartError::Bind { key, addr, source };
        let socket = TcpListener::bind(addr).await.map_err(error)?;
        let addr = socket.local_addr().map_err(error)?;
        Ok(Self { socket, addr })
    }
}

/// What each connection of a listener may hold (see the module's comment).
#[derive(Debug, Clone, Copy)]
struct ConnectionLimits {
    max_connections: usize,
    idle_timeout: Duration,
    write_timeout: Duration,
}

impl App {
    /// Binds both listeners and prepares the Redis client. Does not wait for Redis: the service
    /// starts while Redis is down, answers 503 and reports not ready until Redis is reachable.
    pub async fn bind(config: &Config) -> Result<Self, StartError> {
        let metrics = Metrics::new();
        let store = Store::new(&config.redis, metrics.clone())?;
        if config.cursor_key.is_none() {
            tracing::info!(
                "no cursor_key_file: list cursors are signed with a key of this process alone, \
                 so another replica refuses them"
            );
        }
        let cursor_key =
            CursorKey::new(config.cursor_key.as_ref()).map_err(StartError::CursorKey)?;
        let response_budget = ResponseBudget::new(
            config.response_buffer_bytes,
            config.redis.command_timeout,
            metrics.response_buffer_bytes(),
        );
        Ok(Self {
            cursor_key,
            response_budget,
            api: Listener::bind("listen", config.listen).await?,
            admin: Listener::bind("admin_listen", config.admin_listen).await?,
            store,
            metrics,
            draining: Draining::default(),
            limits: ConnectionLimits {
                max_connections: descriptors::connections_per_listener(config.max_connections),
                idle_timeout: config.idle_timeout,
                write_timeout: config.write_timeout,
            },
            drain_delay: config.drain_delay,
            shutdown_timeout: config.shutdown_timeout,
        })
    }

    pub fn api_addr(&self) -> SocketAddr {
        self.api.addr
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.addr
    }

    /// Serves until `signal` completes, then: readiness turns 503, serving goes on for the
    /// drain delay, the listeners close, in-flight requests get up to the shutdown timeout, and
    /// the Redis connection is closed. Returns the shutdown's deadline (the listeners' closing
    /// plus the shutdown timeout), which what else must finish (the trace export) keeps to.
    pub async fn run(self, signal: impl Future<Output = ()>) -> Instant {
        let Self {
            store,
            metrics,
            draining,
            api,
            admin,
            cursor_key,
            response_budget,
            limits,
            drain_delay,
            shutdown_timeout,
        } = self;
        tracing::info!(api_addr = %api.addr, admin_addr = %admin.addr, "serving");

        let (stop, stopped) = watch::channel(());
        let api = serve(
            api.socket,
            Observed {
                routes: crate::api::routes(store.clone(), cursor_key, response_budget),
                metrics: metrics.clone(),
                access_log: AccessLog::Info,
                traced: true,
            },
            Connections::new(limits, metrics.listener("api")),
            stopped.clone(),
            shutdown_timeout,
        );
        let admin = serve(
            admin.socket,
            Observed {
                routes: crate::admin::routes(store.clone(), metrics.clone(), draining.clone()),
                metrics: metrics.clone(),
                access_log: AccessLog::Debug,
                traced: false,
            },
            Connections::new(limits, metrics.listener("admin")),
            stopped,
            shutdown_timeout,
        );
        let sequence = async move {
            signal.await;
            draining.start();
            tracing::info!(
                ?drain_delay,
                "draining: /readyz answers 503, requests are still served"
            );
            tokio::time::sleep(drain_delay).await;
            tracing::info!(
                ?shutdown_timeout,
                "closing the listeners; finishing in-flight requests"
            );
            let _ = stop.send(());
            Instant::now() + shutdown_timeout
        };
        let ((), (), deadline) = tokio::join!(api, admin, sequence);
        drop(store);
        tracing::info!("stopped; Redis connection closed");
        deadline
    }
}

/// One listener's connection bookkeeping: the permits that cap open connections, and the
/// metrics that count what the limits did.
struct Connections {
    limits: ConnectionLimits,
    permits: Arc<Semaphore>,
    metrics: ListenerMetrics,
    /// The answer to a connection over the cap, written once if the socket takes it at once.
    refusal: Arc<[u8]>,
}

impl Connections {
    fn new(limits: ConnectionLimits, metrics: ListenerMetrics) -> Self {
        let body = HttpError::TooManyConnections.problem_json();
        let mut refusal = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: {PROBLEM_CONTENT_TYPE}\r\n\
             retry-after: {RETRY_AFTER_SECONDS}\r\nconnection: close\r\n\
             content-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        refusal.extend_from_slice(&body);
        Self {
            limits,
            permits: Arc::new(Semaphore::new(limits.max_connections)),
            metrics,
            refusal: refusal.into(),
        }
    }
}

/// Accepts connections until `stopped` changes, then waits up to `timeout` for the
/// connections to finish the request they are serving.
async fn serve<F>(
    listener: TcpListener,
    service: Observed<F>,
    connections: Connections,
    mut stopped: watch::Receiver<()>,
    timeout: Duration,
) where
    Observed<F>: hyper::service::Service<Request<Incoming>, Response = Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    <Observed<F> as hyper::service::Service<Request<Incoming>>>::Future: Send,
{
    let graceful = GracefulShutdown::new();
    let limits = connections.limits;
    let mut accept_errors = AcceptErrors::default();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    connections.metrics.accept_errors.inc();
                    if let Some(suppressed) = accept_errors.record(std::time::Instant::now()) {
                        tracing::error!(
                            %error,
                            suppressed,
                            "accept failed (`suppressed`: failures since the last such line)"
                        );
                    }
                    // Out of file descriptors, typically: pause instead of spinning.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            // The one change ever sent is "stop"; a dropped sender means the same.
            _ = stopped.changed() => break,
        };
        let Ok(permit) = connections.permits.clone().try_acquire_owned() else {
            connections.metrics.refused.inc();
            // Best effort and never waiting: a fresh socket's send buffer takes these few
            // hundred bytes at once. Whatever request already arrived is read and discarded
            // first, so that closing does not turn into a reset that could destroy the answer.
            let mut discarded = [0; 1024];
            let _ = stream.try_read(&mut discarded);
            let _ = stream.try_write(&connections.refusal);
            continue;
        };
        // Responses are small and written in one go; Nagle would only add latency.
        let _ = stream.set_nodelay(true);
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            // A client may send its request and then shut down its sending side (`nc -N`,
            // some proxies and health checkers): the request is complete, so it is answered.
            .half_close(true)
            .header_read_timeout(limits.idle_timeout)
            .max_buf_size(CONNECTION_BUFFER_BYTES)
            .serve_connection(
                TokioIo::new(ClientStream::new(stream, limits.write_timeout)),
                service.clone(),
            );
        let connection = graceful.watch(connection);
        let metrics = connections.metrics.clone();
        metrics.open.inc();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                if error.is_timeout() {
                    metrics.idle_timeouts.inc();
                } else if is_write_timeout(&error) {
                    metrics.write_timeouts.inc();
                }
                tracing::debug!(%error, "connection ended with an error");
            }
            metrics.open.dec();
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?timeout,
            "in-flight requests did not finish in time; cutting them"
        );
    }
}

/// Rate limit on the log lines of failed accepts: a condition that lasts (out of file
/// descriptors) fails every 100 ms, which would otherwise be ten lines a second.
#[derive(Debug, Default)]
struct AcceptErrors {
    last_logged: Option<std::time::Instant>,
    suppressed: u64,
}

impl AcceptErrors {
    const EVERY: Duration = Duration::from_secs(10);

    /// Counts a failure at `now`; returns the failures not logged since the last line, if this
    /// one is to be logged.
    fn record(&mut self, now: std::time::Instant) -> Option<u64> {
        if self
            .last_logged
            .is_some_and(|last| now.duration_since(last) < Self::EVERY)
        {
            self.suppressed += 1;
            return None;
        }
        self.last_logged = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

fn is_write_timeout(error: &hyper::Error) -> bool {
    std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<io::Error>())
        .is_some_and(|error| error.kind() == io::ErrorKind::TimedOut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_accepts_are_logged_once_per_interval_with_the_count_between() {
        let start = std::time::Instant::now();
        let mut errors = AcceptErrors::default();
        assert_eq!(errors.record(start), Some(0));
        let logged: Vec<Option<u64>> = (1..=99)
            .map(|tick| errors.record(start + Duration::from_millis(100) * tick))
            .collect();
        assert!(logged.iter().all(Option::is_none), "{logged:?}");
        assert_eq!(errors.record(start + AcceptErrors::EVERY), Some(99));
        assert_eq!(errors.record(start + AcceptErrors::EVERY * 3), Some(0));
    }
}
