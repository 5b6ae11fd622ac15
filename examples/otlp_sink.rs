//! The collector of `make bench`'s traced rows: an OTLP/HTTP receiver that reads every export
//! request to its end and answers 200 with an empty `ExportTraceServiceResponse`, the cheapest
//! honest collector there is, so that the traced rows measure the service's cost of tracing
//! and not a collector's. It does not decode: bench/run reads how many spans arrived from the
//! service's own `timestamp_api_trace_spans_total{outcome="exported"}`, which counts a batch
//! only once the collector answered 2xx.
//!
//! Usage: `cargo run --release --example otlp_sink -- 127.0.0.1:PORT`

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

async fn accept(
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    // A body that fails half-way is the exporter's problem, not the sink's: answer anyway.
    let _ = request.into_body().collect().await;
    Ok(Response::builder()
        .header("content-type", "application/x-protobuf")
        .body(Full::new(Bytes::new()))
        .unwrap_or_default())
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let address: SocketAddr = std::env::args()
        .nth(1)
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 4318)));
    let listener = TcpListener::bind(address).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .serve_connection(TokioIo::new(stream), service_fn(accept));
        tokio::spawn(connection);
    }
}
