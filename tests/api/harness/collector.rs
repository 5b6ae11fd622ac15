//! A real OTLP/HTTP receiver on an ephemeral port: it decodes each `POST /v1/traces` body as
//! an `ExportTraceServiceRequest` (opentelemetry-proto) and keeps the spans, or misbehaves as
//! told (`Behaviour`), as a collector that is overloaded or wedged does.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// 200 with an empty `ExportTraceServiceResponse`.
    Accept,
    /// 503, as an overloaded collector answers.
    Unavailable,
    /// Reads the request, then never answers.
    Hang,
}

/// A span as received, with its resource's attributes.
#[derive(Debug, Clone)]
pub struct Received {
    pub span: Span,
    pub resource: HashMap<String, String>,
}

impl Received {
    pub fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }

    pub fn span_id(&self) -> String {
        hex(&self.span.span_id)
    }

    pub fn parent_span_id(&self) -> String {
        hex(&self.span.parent_span_id)
    }

    /// A string, integer or boolean attribute, as text.
    pub fn attribute(&self, key: &str) -> Option<String> {
        self.span
            .attributes
            .iter()
            .find(|attribute| attribute.key == key)
            .and_then(|attribute| attribute.value.as_ref()?.value.as_ref())
            .map(text)
    }

    /// Every attribute value (events' included) as text.
    pub fn all_attribute_values(&self) -> Vec<String> {
        let events = self.span.events.iter().flat_map(|event| &event.attributes);
        self.span
            .attributes
            .iter()
            .chain(events)
            .filter_map(|attribute| attribute.value.as_ref()?.value.as_ref())
            .map(text)
            .collect()
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::StringValue(text) => text.clone(),
        Value::IntValue(number) => number.to_string(),
        Value::BoolValue(flag) => flag.to_string(),
        Value::DoubleValue(number) => number.to_string(),
        other => format!("{other:?}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

pub struct Collector {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    /// Export requests that arrived, whatever the answer.
    requests: Arc<Mutex<usize>>,
    task: tokio::task::JoinHandle<()>,
}

impl Collector {
    pub async fn start(behaviour: Behaviour) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(Mutex::new(0));
        let (kept, counted) = (received.clone(), requests.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (kept, counted) = (kept.clone(), counted.clone());
                let service = hyper::service::service_fn(move |request| {
                    receive(request, behaviour, kept.clone(), counted.clone())
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Self {
            addr,
            received,
            requests,
            task,
        }
    }

    /// An endpoint where nothing listens.
    pub fn down_endpoint() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn spans(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn requests(&self) -> usize {
        *self.requests.lock().unwrap()
    }

    /// Waits for a span `matches` accepts; panics with what arrived after `within`.
    pub async fn span(&self, within: Duration, matches: impl Fn(&Received) -> bool) -> Received {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(span) = self.spans().into_iter().find(|span| matches(span)) {
                return span;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no such span within {within:?}; received: {:#?}",
                self.spans()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(
    request: Request<hyper::body::Incoming>,
    behaviour: Behaviour,
    kept: Arc<Mutex<Vec<Received>>>,
    counted: Arc<Mutex<usize>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    assert_eq!(request.uri().path(), "/v1/traces");
    assert_eq!(
        request.headers().get("content-type").unwrap(),
        "application/x-protobuf"
    );
    let body = request.into_body().collect().await.unwrap().to_bytes();
    *counted.lock().unwrap() += 1;
    match behaviour {
        Behaviour::Accept => {}
        Behaviour::Unavailable => {
            return Ok(Response::builder()
                .status(StatusCode::SERVICE_UNAVAILABLE)
                .body(Full::default())
                .unwrap());
        }
        Behaviour::Hang => std::future::pending().await,
    }
    let export = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export");
    let mut kept = kept.lock().unwrap();
    for resource_spans in export.resource_spans {
        let resource: HashMap<String, String> = resource_spans
            .resource
            .iter()
            .flat_map(|resource| &resource.attributes)
            .filter_map(|attribute| {
                Some((
                    attribute.key.clone(),
                    text(attribute.value.as_ref()?.value.as_ref()?),
                ))
            })
            .collect();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                kept.push(Received {
                    span,
                    resource: resource.clone(),
                });
            }
        }
    }
    let reply = ExportTraceServiceResponse::default().encode_to_vec();
    Ok(Response::new(Full::new(Bytes::from(reply))))
}
