//! Start-up and serving: binds the API and admin listeners, serves HTTP/1.1 on them with hyper,
//! wraps every request in its telemetry (request id, span, access log, metrics), and runs the
//! shutdown sequence described in `shutdown`.
//!
//! Listeners are bound before `run`, so tests and the binary learn the real addresses (port 0
//! picks a free one) before any request is made.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_service::Service as _;
use tracing::Instrument;
use warp::Filter;
use warp::http::Request;
use warp::reply::Response;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::shutdown::Draining;
use crate::store::{Store, StoreError};
use crate::telemetry::{self, REQUEST_ID_HEADER, Route};

/// A client gets this long to send its request headers; slow-loris connections are cut.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

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
}

/// A bound, ready-to-run service.
pub struct App {
    store: Store,
    metrics: Metrics,
    draining: Draining,
    api: Listener,
    admin: Listener,
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

impl App {
    /// Binds both listeners and prepares the Redis client. Does not wait for Redis: the service
    /// starts while Redis is down, answers 503 and reports not ready until Redis is reachable.
    pub async fn bind(config: &Config) -> Result<Self, StartError> {
        let metrics = Metrics::new();
        let store = Store::new(&config.redis, metrics.clone())?;
        Ok(Self {
            api: Listener::bind("listen", config.listen).await?,
            admin: Listener::bind("admin_listen", config.admin_listen).await?,
            store,
            metrics,
            draining: Draining::default(),
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
    /// the Redis connection is closed.
    pub async fn run(self, signal: impl Future<Output = ()>) {
        let Self {
            store,
            metrics,
            draining,
            api,
            admin,
            drain_delay,
            shutdown_timeout,
        } = self;
        tracing::info!(api_addr = %api.addr, admin_addr = %admin.addr, "serving");

        let (stop, stopped) = watch::channel(());
        let api = serve(
            api.socket,
            Observed {
                routes: crate::api::routes(store.clone()),
                metrics: metrics.clone(),
                access_log: AccessLog::Info,
            },
            stopped.clone(),
            shutdown_timeout,
        );
        let admin = serve(
            admin.socket,
            Observed {
                routes: crate::admin::routes(store.clone(), metrics.clone(), draining.clone()),
                metrics,
                access_log: AccessLog::Debug,
            },
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
        };
        tokio::join!(api, admin, sequence);
        drop(store);
        tracing::info!("stopped; Redis connection closed");
    }
}

/// Accepts connections until `stopped` changes, then waits up to `timeout` for the
/// connections to finish the request they are serving.
async fn serve<F>(
    listener: TcpListener,
    service: Observed<F>,
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
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    // Out of file descriptors, typically: pause instead of spinning.
                    tracing::error!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            // The one change ever sent is "stop"; a dropped sender means the same.
            _ = stopped.changed() => break,
        };
        // Responses are small and written in one go; Nagle would only add latency.
        let _ = stream.set_nodelay(true);
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(TokioIo::new(stream), service.clone());
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
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

/// Where a listener's access-log lines go: the API's at info, the admin listener's (probes and
/// scrapes, every few seconds) at debug.
#[derive(Debug, Clone, Copy)]
enum AccessLog {
    Info,
    Debug,
}

/// Wraps a listener's warp routes with what every request gets: a request id (kept from a
/// well-formed `X-Request-Id`, else generated, and echoed), a span carrying it, one access-log
/// event, and the HTTP metrics.
#[derive(Clone)]
struct Observed<F> {
    routes: F,
    metrics: Metrics,
    access_log: AccessLog,
}

impl<F> hyper::service::Service<Request<Incoming>> for Observed<F>
where
    F: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static,
    F::Future: Send,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let start = Instant::now();
        let request_id = telemetry::request_id(request.headers());
        let method = request.method().clone();
        let span = tracing::info_span!(
            "request",
            request_id = request_id.to_str().unwrap_or_default()
        );
        let handled = warp::service(self.routes.clone()).call(request);
        let (metrics, access_log) = (self.metrics.clone(), self.access_log);
        Box::pin(
            async move {
                let Ok(mut response) = handled.await;
                let elapsed = start.elapsed();
                let route = Route::of(&response).0;
                let status = response.status();
                metrics.observe_request(&method, route, status, elapsed);
                response.headers_mut().insert(REQUEST_ID_HEADER, request_id);
                // Microsecond resolution is plenty, and keeps the log lines short.
                let latency_ms = elapsed.as_micros() as f64 / 1000.0;
                match access_log {
                    AccessLog::Info => tracing::info!(
                        target: "timestamp_api::access", %method, route, status = status.as_u16(), latency_ms, "request"
                    ),
                    AccessLog::Debug => tracing::debug!(
                        target: "timestamp_api::access", %method, route, status = status.as_u16(), latency_ms, "request"
                    ),
                }
                Ok(response)
            }
            .instrument(span),
        )
    }
}
