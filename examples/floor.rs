//! The floor of `make bench`: what an HTTP answer costs on this stack with nothing of the
//! service in it. A warp route for `GET /v1/timestamps/{name}` answering a constant JSON body
//! the size of a real one, served the way `server.rs` serves (hyper's HTTP/1 connection with
//! the same buffer, timer and half-close settings, `TCP_NODELAY`, a multi-threaded tokio
//! runtime, jemalloc). bench/run divides the service's CPU time per request by this one's.
//!
//! Usage: `cargo run --release --example floor -- 127.0.0.1:PORT`

use std::net::SocketAddr;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use warp::Filter;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const BODY: &str =
    r#"{"name":"bench","timestamp":"2026-12-02T05:35:00.000Z","epoch_ms":1796189700000}"#;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let address: SocketAddr = std::env::args()
        .nth(1)
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8088)));
    let listener = TcpListener::bind(address).await?;
    let route = warp::get()
        .and(warp::path!("v1" / "timestamps" / String))
        .map(|_name: String| warp::reply::with_header(BODY, "content-type", "application/json"));
    let service = warp::service(route);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .half_close(true)
            .max_buf_size(16 * 1024)
            .serve_connection(
                TokioIo::new(stream),
                hyper_util::service::TowerToHyperService::new(service),
            );
        tokio::spawn(connection);
    }
}
