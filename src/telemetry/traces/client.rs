//! The HTTP client the OTLP exporter posts with: hyper's HTTP/1.1 client on the service's own
//! tokio runtime, one kept-alive connection (exports are sent one after the other), every
//! request bounded by the export timeout, replies read up to `MAX_REPLY_BYTES`.
//!
//! opentelemetry-otlp's own clients are reqwest (a second HTTP stack) or a hyper client that
//! needs a reactor on the thread that calls it; this one needs neither.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

/// A collector's reply is a small protobuf message; a longer one is not read.
const MAX_REPLY_BYTES: usize = 64 * 1024;

#[derive(Debug)]
pub struct Client {
    timeout: Duration,
    connection: Mutex<Option<SendRequest<Full<Bytes>>>>,
}

impl Client {
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            connection: Mutex::new(None),
        }
    }

    async fn post(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (mut parts, body) = request.into_parts();
        let authority = parts
            .uri
            .authority()
            .ok_or("the export URL has no host")?
            .clone();
        // Origin form on the wire, the authority in Host, as a client (not a proxy) sends it.
        parts.uri = parts
            .uri
            .path_and_query()
            .map_or("/", |target| target.as_str())
            .parse()?;
        parts
            .headers
            .insert(hyper::header::HOST, authority.as_str().parse()?);
        let mut kept = self.connection.lock().await;
        let mut sender = match kept.take() {
            Some(sender) if !sender.is_closed() => sender,
            _ => connect(&authority).await?,
        };
        sender.ready().await?;
        let response = sender
            .send_request(hyper::Request::from_parts(parts, Full::new(body)))
            .await?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_REPLY_BYTES)
            .collect()
            .await?
            .to_bytes();
        *kept = Some(sender);
        Ok(Response::from_parts(parts, body))
    }
}

async fn connect(
    authority: &hyper::http::uri::Authority,
) -> Result<SendRequest<Full<Bytes>>, HttpError> {
    let stream = TcpStream::connect((authority.host(), authority.port_u16().unwrap_or(80))).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    // Ends when the connection closes (or the sender is dropped); its error is the next
    // request's.
    tokio::spawn(connection);
    Ok(sender)
}

#[async_trait::async_trait]
impl HttpClient for Client {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        // A connection that did not answer in time is dropped with the request: `post` keeps
        // it only once a reply was read.
        tokio::time::timeout(self.timeout, self.post(request))
            .await
            .map_err(|_| format!("no answer within {:?}", self.timeout))?
    }
}
