//! OpenTelemetry traces: a server span per API request, continued from the caller's W3C
//! `traceparent`, with a client span per Redis command under it, exported over OTLP/HTTP.
//!
//! Off unless `traces.endpoint` or `traces.url` is set; then `enabled()` is true and the request
//! path makes spans: `request_span` on the API listener, `redis_span` around each command, `event`
//! for what a request saw of a reconnection or a failover. The sampler decides before a request's
//! span exists, so a request it leaves out makes no span, and neither do the commands sent outside
//! a traced request (a probe's PING). Spans carry the route template, the method, the status and
//! the command's name, never a path, a key, a value or a password. The traced spans have their own
//! target (`SPANS`): the log leaves the Redis spans out, and `trace_id`/`span_id` in each log line
//! written inside a request (`current_ids`) join the log to the trace.
//!
//! Export is off the request path: `queue` (a bounded, counted queue and one export task) and
//! `client` (the HTTP client it posts with).

mod client;
mod queue;

use std::sync::OnceLock;
use std::time::Instant;

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{SpanKind, TraceContextExt, TracerProvider as _};
use opentelemetry::{KeyValue, Value};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, Sampler, SamplingDecision, SdkTracer, SdkTracerProvider,
    ShouldSample,
};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use warp::http::{HeaderMap, Method, StatusCode, Version};

use crate::config::{self, TracesConfig};
use crate::version;
pub use queue::span_counts;

/// The target of every span and span event made for traces.
pub const SPANS: &str = "timestamp_api::trace";

/// A longer `traceparent` is not parsed: version 00 is 55 characters, and later versions may
/// only append fields.
const MAX_TRACEPARENT_BYTES: usize = 128;

/// A longer `tracestate` is dropped whole (W3C allows it; propagating 512 is the minimum).
const MAX_TRACESTATE_BYTES: usize = 512;

/// The configured sampler, once tracing is on. `request_span` applies it before any span
/// exists, so that a request it leaves out costs what it costs with tracing off; the SDK then
/// records every span it is given.
static SAMPLER: OnceLock<Sampler> = OnceLock::new();

/// Whether tracing is on.
pub fn enabled() -> bool {
    SAMPLER.get().is_some()
}

#[derive(Debug, thiserror::Error)]
#[error("cannot set up the trace exporter: {0}")]
pub struct TracesError(#[from] opentelemetry_otlp::ExporterBuildError);

/// The pipeline, from the tracer the layer records with to the export task not yet started.
pub struct Pipeline {
    pub tracer: SdkTracer,
    provider: SdkTracerProvider,
    pending: queue::Pending<opentelemetry_otlp::SpanExporter>,
}

/// Exports until `flush`; made by `Pipeline::start`.
pub struct Exporting {
    exporting: queue::Exporting,
    /// Owns the queue the tracer ends spans into.
    _provider: SdkTracerProvider,
}

impl Pipeline {
    /// The pipeline `config` asks for, or `None` when tracing is off.
    pub fn new(config: &TracesConfig) -> Result<Option<Self>, TracesError> {
        let Some(url) = config.traces_url() else {
            return Ok(None);
        };
        let resource = Resource::builder_empty()
            .with_attributes(
                config
                    .resource()
                    .into_iter()
                    .map(|(key, value)| KeyValue::new(key, value)),
            )
            .with_attribute(KeyValue::new("service.version", version::VERSION))
            .build();
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client::Client::new(config.export_timeout))
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(url)
            .with_timeout(config.export_timeout)
            .build()?;
        opentelemetry_sdk::trace::SpanExporter::set_resource(&mut exporter, &resource);
        let (pending, queue) = queue::queue(config.queue_size, exporter);
        let provider = SdkTracerProvider::builder()
            .with_span_processor(queue)
            .with_sampler(Sampler::AlwaysOn)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("timestamp-api");
        // Only `cli` makes a pipeline, once per process.
        let _ = SAMPLER.set(sampler(config));
        Ok(Some(Self {
            tracer,
            provider,
            pending,
        }))
    }

    /// Starts exporting, on the current tokio runtime.
    pub fn start(self) -> Exporting {
        Exporting {
            exporting: self.pending.start(),
            _provider: self.provider,
        }
    }
}

impl Exporting {
    /// Exports what is queued, by `deadline` at the latest (the shutdown's).
    pub async fn flush(self, deadline: Instant) {
        self.exporting.flush(deadline).await;
    }
}

fn sampler(config: &TracesConfig) -> Sampler {
    let ratio = Sampler::TraceIdRatioBased(config.sampler_arg);
    match config.sampler {
        config::Sampler::AlwaysOn => Sampler::AlwaysOn,
        config::Sampler::AlwaysOff => Sampler::AlwaysOff,
        config::Sampler::TraceIdRatio => ratio,
        config::Sampler::ParentbasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        config::Sampler::ParentbasedAlwaysOff => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        config::Sampler::ParentbasedTraceIdRatio => Sampler::ParentBased(Box::new(ratio)),
    }
}

/// The server span of an API request when tracing is on and the sampler records its trace,
/// continuing the caller's trace when its `traceparent` is well-formed (a malformed one starts
/// a new trace); `None` otherwise, and the request makes no span at all. Named `{method}` until
/// `finish_request` names it after the route.
pub fn request_span(
    request_id: &str,
    method: &Method,
    version: Version,
    headers: &HeaderMap,
) -> Option<tracing::Span> {
    let sampler = SAMPLER.get()?;
    let caller = TraceContextPropagator::new().extract(&TraceHeaders(headers));
    let continued = caller.span().span_context().is_valid();
    // A new trace is drawn with an id of its own, not the one the SDK then gives it: that
    // would matter only to a service after this one that sampled by trace id ignoring the
    // caller's decision, and the service calls none.
    let trace_id = if continued {
        caller.span().span_context().trace_id()
    } else {
        RandomIdGenerator::default().new_trace_id()
    };
    let decision = sampler
        .should_sample(
            continued.then_some(&caller),
            trace_id,
            "request",
            &SpanKind::Server,
            &[],
            &[],
        )
        .decision;
    if decision != SamplingDecision::RecordAndSample {
        return None;
    }
    let span = tracing::info_span!(
        target: SPANS,
        "request",
        request_id,
        otel.name = method_name(method),
        otel.kind = "server",
    );
    if continued {
        // Only fails once the span has started, and it has not been entered yet.
        let _ = span.set_parent(caller);
    }
    span.set_attribute("http.request.method", method_name(method));
    span.set_attribute("url.scheme", "http");
    span.set_attribute(
        "network.protocol.version",
        match version {
            Version::HTTP_10 => "1.0",
            _ => "1.1",
        },
    );
    Some(span)
}

/// Names the server span after the route template (`GET /v1/timestamps/{name}`) and records
/// the status; a 5xx marks the span as an error.
pub fn finish_request(
    span: &tracing::Span,
    method: &Method,
    route: Option<&'static str>,
    status: StatusCode,
) {
    if let Some(route) = route {
        // The span has started by now, and tracing-opentelemetry renames only spans that
        // have not (an `otel.name` record would be lost).
        span.context()
            .span()
            .update_name(format!("{} {route}", method_name(method)));
        span.set_attribute("http.route", route);
    }
    span.set_attribute("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.set_status(opentelemetry::trace::Status::error(""));
        span.set_attribute("error.type", status.as_str().to_owned());
    }
}

/// The client span of one Redis command on `node` (`host:port`), or a disabled span when
/// tracing is off or the command is not sent for a traced request: a probe's PING must not
/// become a trace of its own every few seconds.
pub fn redis_span(
    command: &'static str,
    node: impl FnOnce() -> Option<std::sync::Arc<str>>,
) -> tracing::Span {
    if !enabled() || !in_traced_request() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        target: SPANS,
        "redis",
        otel.name = command,
        otel.kind = "client",
    );
    span.set_attribute("db.system.name", "redis");
    span.set_attribute("db.operation.name", command);
    if let Some(node) = node()
        && let Some((host, port)) = node.rsplit_once(':')
    {
        span.set_attribute("server.address", host.to_owned());
        if let Ok(port) = port.parse::<i64>() {
            span.set_attribute("server.port", port);
        }
    }
    span
}

/// Whether the current span is a traced request's or one of its Redis spans' (the admin
/// listener's requests, and those the sampler left out, have an untraced span).
fn in_traced_request() -> bool {
    tracing::Span::current()
        .metadata()
        .is_some_and(|metadata| metadata.target() == SPANS)
}

/// Marks a Redis span as failed.
pub fn failed(span: &tracing::Span) {
    if enabled() {
        span.set_status(opentelemetry::trace::Status::error(""));
    }
}

/// An event on the current span (what a request saw: its connection was lost, the primary
/// moved, a new connection was made), when tracing is on.
pub fn event(name: &'static str, attributes: impl FnOnce() -> Vec<(&'static str, Value)>) {
    if enabled() && in_traced_request() {
        let attributes = attributes()
            .into_iter()
            .map(|(key, value)| KeyValue::new(key, value))
            .collect();
        tracing::Span::current().add_event(name, attributes);
    }
}

/// The trace and span ids of the current span, as the log writes them, when tracing is on.
pub fn current_ids() -> Option<(String, String)> {
    if !enabled() || !in_traced_request() {
        return None;
    }
    let context = tracing::Span::current().context();
    let span = context.span();
    let ids = span.span_context();
    ids.is_valid()
        .then(|| (ids.trace_id().to_string(), ids.span_id().to_string()))
}

/// The method as the span carries it: one of the standard ones, else `_OTHER`, so that a
/// client's odd method cannot name spans.
fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "_OTHER",
    }
}

/// The W3C trace context headers of a request, within bounds: one field each, and not longer
/// than a well-formed value can be.
struct TraceHeaders<'a>(&'a HeaderMap);

impl Extractor for TraceHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let limit = match key {
            "traceparent" => MAX_TRACEPARENT_BYTES,
            "tracestate" => MAX_TRACESTATE_BYTES,
            _ => return None,
        };
        let mut fields = self.0.get_all(key).iter();
        let value = fields.next()?;
        if fields.next().is_some() || value.len() > limit {
            return None;
        }
        value.to_str().ok()
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent", "tracestate"]
    }
}

#[cfg(test)]
mod tests {
    use warp::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn extracted(pairs: &[(&'static str, &str)]) -> opentelemetry::trace::SpanContext {
        TraceContextPropagator::new()
            .extract(&TraceHeaders(&headers(pairs)))
            .span()
            .span_context()
            .clone()
    }

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_well_formed_traceparent_is_continued_with_its_tracestate() {
        let context = extracted(&[("traceparent", PARENT), ("tracestate", "a=1,b=2")]);
        assert!(context.is_valid() && context.is_remote());
        assert_eq!(
            context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(context.span_id().to_string(), "00f067aa0ba902b7");
        assert_eq!(context.trace_state().header(), "a=1,b=2");
    }

    #[test]
    fn odd_trace_headers_are_ignored() {
        for bad in [
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            &format!("{PARENT}-{}", "0".repeat(200)),
        ] {
            assert!(!extracted(&[("traceparent", bad)]).is_valid(), "{bad}");
        }
        assert!(!extracted(&[("traceparent", PARENT), ("traceparent", PARENT)]).is_valid());
        let members = (0..1000)
            .map(|i| format!("k{i}=v"))
            .collect::<Vec<_>>()
            .join(",");
        let context = extracted(&[("traceparent", PARENT), ("tracestate", &members)]);
        assert!(context.is_valid());
        assert_eq!(context.trace_state().header(), "");
    }

    #[test]
    fn odd_methods_do_not_name_spans() {
        assert_eq!(method_name(&Method::GET), "GET");
        assert_eq!(method_name(&Method::from_bytes(b"BREW").unwrap()), "_OTHER");
    }
}
