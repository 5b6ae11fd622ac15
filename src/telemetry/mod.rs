//! Logging and the per-request identity every log line and metric carries.
//!
//! Events go to stdout as JSON lines (`json`: one object with timestamp, level, target,
//! message, fields and the current span) or, with `log_format = "text"`, in a human format,
//! buffered for a writer thread (`output`), so a slow log sink never blocks a request. Each
//! request runs in a `request` span holding its request id, so every event logged while serving
//! it names the request; the access log is one event per request under the
//! `timestamp_api::access` target. A panic is logged as one `panic` event with the request id,
//! and counted.

mod json;
pub mod output;
pub mod traces;

use std::io::IsTerminal;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use tracing::{Level, Metadata};
use tracing_subscriber::filter::{FilterExt, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};
use warp::http::{HeaderMap, HeaderValue};

use crate::config::{Config, LogFormat};

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Longest incoming request id kept; a longer or odd one is replaced by a generated id.
const REQUEST_ID_MAX_LEN: usize = 64;

/// Installs the global subscriber (with the OpenTelemetry layer when `traces` is given) and
/// the panic hook. The filter was validated with the configuration, so an error here means a
/// subscriber is already installed (a second call in one process). Keep the guard until exit:
/// dropping it writes out the queued lines.
pub fn init(config: &Config, traces: Option<&traces::Pipeline>) -> output::WriterGuard {
    let filter = EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("info"));
    let guard = output::start();
    // Without traces, the log filter is global, as cheap as a filter gets. With them, each
    // layer has its own: the log's filter still decides what is logged (and it never sees the
    // Redis spans), and the traces see the request and Redis spans and the warnings inside
    // them, whatever the log level.
    let installed = match traces {
        None => with_log_layer!(config.log_format, |log| {
            tracing_subscriber::registry()
                .with(filter)
                .with(log)
                .try_init()
        }),
        Some(traces) => with_log_layer!(config.log_format, |log| {
            tracing_subscriber::registry()
                .with(log.with_filter(logged(filter)))
                .with(trace_layer(traces))
                .try_init()
        }),
    };
    if let Err(error) = installed {
        eprintln!("timestamp-api: logging was already set up: {error}");
    }
    log_panics();
    guard
}

/// Runs `$install` with `$log` bound to the fmt layer of `$format` (the two are of different
/// types, and so is each subscriber they end up in).
macro_rules! with_log_layer {
    ($format:expr, |$log:ident| $install:expr) => {
        match $format {
            LogFormat::Json => {
                let $log = tracing_subscriber::fmt::layer()
                    .with_writer(output::Stdout)
                    .fmt_fields(json::JsonFields)
                    .event_format(json::JsonLines);
                $install
            }
            LogFormat::Text => {
                let $log = tracing_subscriber::fmt::layer()
                    .with_writer(output::Stdout)
                    .with_ansi(std::io::stdout().is_terminal());
                $install
            }
        }
    };
}
use with_log_layer;

/// What the log takes when traces are on: what `filter` enables, less the Redis spans.
fn logged<S>(filter: EnvFilter) -> impl tracing_subscriber::layer::Filter<S> {
    filter.and(filter_fn(|metadata| !is_trace_only(metadata)))
}

/// The OpenTelemetry layer: the spans of `traces::SPANS`, and the warnings and errors logged
/// inside them as span events.
fn trace_layer<S>(traces: &traces::Pipeline) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    let traced = filter_fn(|metadata| {
        metadata.target() == traces::SPANS
            || (metadata.is_event()
                && metadata.target().starts_with("timestamp_api")
                && *metadata.level() <= Level::WARN)
    });
    tracing_opentelemetry::layer()
        .with_tracer(traces.tracer.clone())
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_level(false)
        .with_tracked_inactivity(false)
        // Parents come from the tracing span tree; nothing here reads OpenTelemetry's current
        // context, and attaching it at every poll of a request was a cost for no one.
        .with_context_activation(false)
        .with_filter(traced)
}

/// The Redis spans: children of the request span that only traces need.
fn is_trace_only(metadata: &Metadata<'_>) -> bool {
    metadata.target() == traces::SPANS && metadata.name() == "redis"
}

static PANICS: AtomicU64 = AtomicU64::new(0);

/// Panics so far in this process (`timestamp_api_panics_total`).
pub fn panics() -> u64 {
    PANICS.load(Ordering::Relaxed)
}

/// Replaces the standard panic report (plain text on stderr, outside the log) with one `panic`
/// event in the log, carrying the request id of the request being served, and counts it. The
/// request's task ends and its client gets a 500 (`http::Observed`); the service goes on.
fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        PANICS.fetch_add(1, Ordering::Relaxed);
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        tracing::error!(
            request_id = current_request_id().as_deref(),
            panic = payload,
            location = info.location().map(ToString::to_string),
            "panic"
        );
    }));
}

tokio::task_local! {
    static REQUEST_ID: HeaderValue;
}

/// Runs `work` (a request's handling) with `request_id` as the current request id.
pub async fn with_request_id<F: std::future::Future>(
    request_id: HeaderValue,
    work: F,
) -> F::Output {
    REQUEST_ID.scope(request_id, work).await
}

/// The id of the request being served on this task, if any: error bodies and the panic event
/// carry it, so that a client's report leads to the log lines.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID
        .try_with(|id| id.to_str().ok().map(str::to_owned))
        .ok()
        .flatten()
}

/// The request id to use: a well-formed incoming `X-Request-Id` (1 to 64 characters of
/// `[A-Za-z0-9._:-]`), so that ids from a proxy or client carry through, or a new one.
///
/// It is returned as a header value, ready to echo; its text is `[A-Za-z0-9._:-]` only.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    match headers.get(REQUEST_ID_HEADER) {
        Some(incoming) if incoming.to_str().is_ok_and(is_valid_request_id) => incoming.clone(),
        _ => new_request_id(),
    }
}

fn is_valid_request_id(id: &str) -> bool {
    (1..=REQUEST_ID_MAX_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// 32 hex digits: a per-process random half and a counter. Unique within the process without a
/// syscall per request; unique across processes with overwhelming probability.
fn new_request_id() -> HeaderValue {
    static PROCESS_SEED: LazyLock<u64> = LazyLock::new(|| {
        use std::hash::{BuildHasher, Hasher};
        // The standard library seeds each RandomState from the OS's random source.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        hasher.finish()
    });
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // By hand rather than with `format!`: a third of the cost of a request id was the
    // formatting machinery (docs/performance.md).
    let mut id = [0; 32];
    let halves = [*PROCESS_SEED, COUNTER.fetch_add(1, Ordering::Relaxed)];
    for (digit, nibble) in id.iter_mut().zip(halves.iter().flat_map(|half| {
        (0..16)
            .rev()
            .map(move |position| (half >> (position * 4)) & 0xf)
    })) {
        // A nibble is below 16, so it indexes HEX and the cast cannot truncate.
        *digit = HEX[nibble as usize];
    }
    // Hex digits are always a valid header value; the fallback is unreachable.
    HeaderValue::from_maybe_shared(Bytes::copy_from_slice(&id))
        .unwrap_or(HeaderValue::from_static("invalid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_id(id: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_str(id).unwrap());
        headers
    }

    #[test]
    fn a_panic_is_counted_instead_of_printed() {
        let standard = std::panic::take_hook();
        log_panics();
        let before = panics();
        let outcome = std::panic::catch_unwind(|| panic!("on purpose"));
        // Other tests' failures are reported the standard way again.
        std::panic::set_hook(standard);
        assert!(outcome.is_err());
        assert!(panics() > before);
    }

    #[test]
    fn well_formed_incoming_ids_are_kept() {
        for id in [
            "abc",
            "0f8fad5b-d9cb-469f-a165-70867728950e",
            "req_1.2:3",
            &"a".repeat(64),
        ] {
            assert_eq!(request_id(&with_id(id)), id);
        }
    }

    #[test]
    fn odd_or_missing_ids_are_replaced() {
        for id in ["", "has space", "semi;colon", "{json}", &"a".repeat(65)] {
            let chosen = request_id(&with_id(id));
            assert_ne!(chosen, id);
            assert!(is_valid_request_id(chosen.to_str().unwrap()), "{chosen:?}");
        }
        let first = request_id(&HeaderMap::new());
        let second = request_id(&HeaderMap::new());
        assert_eq!(first.len(), 32);
        assert_ne!(first, second);
    }
}
