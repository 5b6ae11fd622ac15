//! Start-up and serving: binds the listener, serves HTTP/1.1 connections with hyper, and stops
//! gracefully (no new connections, in-flight requests finish, bounded by a timeout).
//!
//! The listener is bound before `run`, so tests and the binary learn the real address (port 0
//! picks a free one) before any request is made.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use warp::Filter;
use warp::reply::Response;

use crate::config::Config;
use crate::store::{Store, StoreError};

/// A client gets this long to send its request headers; slow-loris connections are cut.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long in-flight requests may take to finish once shutdown starts.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

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
    api: TcpListener,
    api_addr: SocketAddr,
}

impl App {
    /// Binds the listener and prepares the Redis client. Does not wait for Redis: the service
    /// starts while Redis is down and answers 503 until it is reachable.
    pub async fn bind(config: &Config) -> Result<Self, StartError> {
        let store = Store::new(&config.redis)?;
        let bind_error = |source| StartError::Bind {
            key: "listen",
            addr: config.listen,
            source,
        };
        let api = TcpListener::bind(config.listen).await.map_err(bind_error)?;
        let api_addr = api.local_addr().map_err(bind_error)?;
        Ok(Self {
            store,
            api,
            api_addr,
        })
    }

    /// The address the API listener is bound to.
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// Serves until `shutdown` completes, then drains in-flight requests.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tracing::info!(api_addr = %self.api_addr, "serving");
        serve(
            self.api,
            crate::api::routes(self.store),
            shutdown,
            SHUTDOWN_TIMEOUT,
        )
        .await;
        tracing::info!("stopped");
    }
}

/// Accepts connections until `shutdown` completes, then waits up to `timeout` for the
/// connections to finish their current request.
async fn serve<F>(
    listener: TcpListener,
    routes: F,
    shutdown: impl Future<Output = ()>,
    timeout: Duration,
) where
    F: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static,
    F::Future: Send,
{
    let service = TowerToHyperService::new(warp::service(routes));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
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
            () = &mut shutdown => break,
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
            "in-flight requests did not finish in time; closing them"
        );
    }
}
