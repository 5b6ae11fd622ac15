//! Prometheus metrics, served as text on the admin listener's `/metrics`.
//!
//! Names follow Prometheus conventions (base units, `_total` counters, an `_build_info` gauge).
//! Labels stay low-cardinality: the HTTP route is the template (`/v1/timestamps/{name}`),
//! never the raw path, and unknown methods collapse into `_OTHER`. Each `App` owns its own
//! registry, so tests that run many services in one process do not mix their numbers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus::core::Collector;
use prometheus::proto::MetricType;
use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};
use serde::Serialize;
use warp::http::{Method, StatusCode};

use crate::store::ConnectFailure;
use crate::{telemetry, version};

/// Request latencies of this service are mostly well under a millisecond; the buckets start
/// there and reach the multi-second range a stalled dependency would produce.
const HTTP_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const REDIS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One metric as the catalogue describes it: what `timestamp-api metrics` prints, and what the
/// dashboard check and the tests hold docs/operations.md and the Grafana dashboard to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricDescription {
    pub name: String,
    /// `counter`, `gauge` or `histogram`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub labels: Vec<String>,
    pub help: String,
    /// A histogram's bucket bounds, in its unit.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub buckets: Vec<f64>,
}

/// Makes each metric, registers it and writes it into the catalogue, so that a metric cannot
/// exist without being described.
struct Registrar<'a> {
    registry: &'a Registry,
    catalogue: Vec<MetricDescription>,
}

impl Registrar<'_> {
    /// The names, help texts and label sets in this file are fixed and distinct, so creating
    /// and registering a metric cannot fail; a failure would be a bug that the first test
    /// catches.
    fn add<M: Collector + Clone + 'static>(
        &mut self,
        kind: &'static str,
        metric: prometheus::Result<M>,
    ) -> M {
        let metric = metric.expect("valid metric");
        for desc in metric.desc() {
            self.catalogue.push(MetricDescription {
                name: desc.fq_name.clone(),
                kind,
                labels: desc.variable_labels.clone(),
                help: desc.help.clone(),
                buckets: Vec::new(),
            });
        }
        self.registry
            .register(Box::new(metric.clone()))
            .expect("metric registered once");
        metric
    }

    fn counter(&mut self, name: &str, help: &str) -> IntCounter {
        self.add("counter", IntCounter::new(name, help))
    }

    fn counters(&mut self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.add("counter", IntCounterVec::new(Opts::new(name, help), labels))
    }

    fn gauge(&mut self, name: &str, help: &str) -> IntGauge {
        self.add("gauge", IntGauge::new(name, help))
    }

    fn gauges(&mut self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.add("gauge", IntGaugeVec::new(Opts::new(name, help), labels))
    }

    fn histograms(
        &mut self,
        name: &str,
        help: &str,
        buckets: &[f64],
        labels: &[&str],
    ) -> HistogramVec {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        let histograms = self.add("histogram", HistogramVec::new(opts, labels));
        if let Some(described) = self.catalogue.last_mut() {
            described.buckets = buckets.to_vec();
        }
        histograms
    }
}

/// Why the service made a new connection to the Redis primary: the `cause` label of
/// `timestamp_api_redis_reconnections_total` and of the log line that says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconnection {
    Readonly,
    ConnectionLost,
    PrimaryMoved,
    Unresponsive,
}

impl Reconnection {
    const ALL: [Self; 4] = [
        Self::Readonly,
        Self::ConnectionLost,
        Self::PrimaryMoved,
        Self::Unresponsive,
    ];

    pub const fn label(self) -> &'static str {
        match self {
            Self::Readonly => "readonly",
            Self::ConnectionLost => "connection_lost",
            Self::PrimaryMoved => "primary_moved",
            Self::Unresponsive => "unresponsive",
        }
    }

    const fn meaning(self) -> &'static str {
        match self {
            Self::Readonly => "the node answered READONLY",
            Self::ConnectionLost => "the connection failed",
            Self::PrimaryMoved => "Sentinel names another node",
            Self::Unresponsive => "with redis.url, two checks in a row without an answer",
        }
    }
}

/// What became of changed `redis.tls` files: the `outcome` label of
/// `timestamp_api_redis_tls_reloads_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsReload {
    Loaded,
    Rejected,
}

impl TlsReload {
    const fn label(self) -> &'static str {
        match self {
            Self::Loaded => "loaded",
            Self::Rejected => "rejected",
        }
    }
}

/// The prometheus crate's process metrics, registered in `registry` and described from what
/// they gather (their descriptions carry no type).
fn process_metrics(registry: &Registry) -> Vec<MetricDescription> {
    let process = prometheus::process_collector::ProcessCollector::for_self();
    let described = process
        .collect()
        .iter()
        .map(|family| MetricDescription {
            name: family.name().to_owned(),
            kind: match family.get_field_type() {
                MetricType::COUNTER => "counter",
                MetricType::HISTOGRAM => "histogram",
                _ => "gauge",
            },
            labels: Vec::new(),
            help: family.help().to_owned(),
            buckets: Vec::new(),
        })
        .collect();
    registry
        .register(Box::new(process))
        .expect("metric registered once");
    described
}

#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

struct Inner {
    registry: Registry,
    catalogue: Vec<MetricDescription>,
    ready: IntGauge,
    http: HttpMetrics,
    redis: RedisMetrics,
    connections: ConnectionMetrics,
    /// Made and described with the rest, but in a registry of their own that is exposed only
    /// once asked for (with Sentinel, where there are replicas to report on): elsewhere the
    /// series would read 0 and look like an outage.
    replication: Optional<ReplicationGauges>,
    /// The same for the cluster's metrics, exposed only in cluster mode.
    cluster: Optional<ClusterMetrics>,
    response_buffer_bytes: IntGauge,
    // Process-wide counts kept by `telemetry`, copied in at each scrape.
    panics: IntCounter,
    log_lines_dropped: IntCounter,
    trace_spans: IntCounterVec,
    /// Held while those are copied in, so that two concurrent scrapes cannot both add.
    catching_up: Mutex<()>,
}

struct HttpMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
}

impl HttpMetrics {
    fn new(registrar: &mut Registrar<'_>) -> Self {
        Self {
            requests: registrar.counters(
                "http_requests_total",
                "HTTP requests answered, by method, route template and status.",
                &["method", "route", "status"],
            ),
            duration: registrar.histograms(
                "http_request_duration_seconds",
                "Time from receiving an HTTP request to its response, by method and route template.",
                HTTP_BUCKETS,
                &["method", "route"],
            ),
        }
    }
}

struct RedisMetrics {
    duration: HistogramVec,
    errors: IntCounterVec,
    primary: IntGaugeVec,
    failovers: IntCounter,
    reconnections: IntCounterVec,
    reconnection_failures: IntCounterVec,
    tls_reloads: IntCounterVec,
    refusals: IntCounterVec,
}

impl RedisMetrics {
    fn new(registrar: &mut Registrar<'_>) -> Self {
        Self {
            duration: registrar.histograms(
                "timestamp_api_redis_command_duration_seconds",
                "Time for a Redis command to complete, by command, failures included.",
                REDIS_BUCKETS,
                &["command"],
            ),
            errors: registrar.counters(
                "timestamp_api_redis_command_errors_total",
                "Redis commands that failed or did not complete in time (abandoned at the \
                 operation's deadline), by command.",
                &["command"],
            ),
            primary: registrar.gauges(
                "timestamp_api_redis_primary",
                "1 for the Redis primary in use (address: host:port); the series of a former \
                 primary is removed.",
                &["address"],
            ),
            failovers: registrar.counter(
                "timestamp_api_redis_failovers_total",
                "Changes of the Redis primary the service has seen: with Sentinel, a new \
                 address; with redis.url, the node answering READONLY, once per demotion.",
            ),
            reconnections: registrar.counters(
                "timestamp_api_redis_reconnections_total",
                &format!(
                    "New connections to the Redis primary, by cause: {}.",
                    Reconnection::ALL
                        .map(|cause| format!("{} ({})", cause.label(), cause.meaning()))
                        .join(", ")
                ),
                &["cause"],
            ),
            reconnection_failures: registrar.counters(
                "timestamp_api_redis_reconnection_failures_total",
                &format!(
                    "Attempts to connect to Redis (the primary, or a Sentinel on the way to it) \
                     that failed, by cause: {}.",
                    ConnectFailure::ALL
                        .map(|cause| format!("{} ({})", cause.label(), cause.hint()))
                        .join("; ")
                ),
                &["cause"],
            ),
            tls_reloads: registrar.counters(
                "timestamp_api_redis_tls_reloads_total",
                "Changed redis.tls files seen at a new connection, by outcome: loaded (new \
                 connections use them) or rejected (they do not parse or do not fit together; \
                 the last good ones stay in use).",
                &["outcome"],
            ),
            refusals: registrar.counters(
                "timestamp_api_redis_refusals_total",
                "Redis commands refused with an error reply, so not applied (the client got 503 \
                 store-refused), by cause: oom \
                 (maxmemory reached), misconf (cannot persist), noperm, noauth, noreplicas, \
                 loading, busy, masterdown, wrongtype, clusterdown (a cluster that cannot \
                 serve the slot) or other.",
                &["cause"],
            ),
        }
    }
}

struct ConnectionMetrics {
    open: IntGaugeVec,
    refused: IntCounterVec,
    timed_out: IntCounterVec,
    accept_errors: IntCounterVec,
}

impl ConnectionMetrics {
    fn new(registrar: &mut Registrar<'_>) -> Self {
        Self {
            open: registrar.gauges(
                "timestamp_api_connections_open",
                "Client connections open, by listener (api, admin).",
                &["listener"],
            ),
            refused: registrar.counters(
                "timestamp_api_connections_refused_total",
                "Connections refused because the listener had max_connections open, by \
                 listener; the client gets a 503 problem document with Connection: close if its \
                 socket takes it.",
                &["listener"],
            ),
            timed_out: registrar.counters(
                "timestamp_api_connections_timed_out_total",
                "Connections closed by a timeout: write (a response write made no progress for \
                 write_timeout) or idle (no complete request head within idle_timeout).",
                &["listener", "timeout"],
            ),
            accept_errors: registrar.counters(
                "timestamp_api_accept_errors_total",
                "Failed accepts of a client connection (out of file descriptors, typically), by \
                 listener; logged at most once per 10 s, with the count in between.",
                &["listener"],
            ),
        }
    }
}

/// Metrics of one mode: described with the rest, in a registry of their own that `render`
/// includes from the first `expose` on.
struct Optional<T> {
    metrics: T,
    registry: Registry,
    exposed: AtomicBool,
}

impl<T: Clone> Optional<T> {
    fn new(
        catalogue: &mut Vec<MetricDescription>,
        make: impl FnOnce(&mut Registrar<'_>) -> T,
    ) -> Self {
        let registry = Registry::new();
        let mut registrar = Registrar {
            registry: &registry,
            catalogue: Vec::new(),
        };
        let metrics = make(&mut registrar);
        catalogue.extend(registrar.catalogue);
        Self {
            metrics,
            registry,
            exposed: AtomicBool::new(false),
        }
    }

    fn expose(&self) -> T {
        self.exposed.store(true, Ordering::Relaxed);
        self.metrics.clone()
    }

    fn gather(&self, families: &mut Vec<prometheus::proto::MetricFamily>) {
        if self.exposed.load(Ordering::Relaxed) {
            families.extend(self.registry.gather());
        }
    }
}

/// A redirection a cluster node answered with: the `kind` label of
/// `timestamp_api_redis_cluster_redirections_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redirection {
    /// The slot lives elsewhere now (the slot map changed).
    Moved,
    /// The slot is being migrated and this key has already left.
    Ask,
}

impl Redirection {
    const fn label(self) -> &'static str {
        match self {
            Self::Moved => "moved",
            Self::Ask => "ask",
        }
    }
}

/// The cluster mode's metrics (`redis.cluster.addresses`), by shard: the address of the primary
/// that took the command, as the service's slot map had it.
#[derive(Clone)]
pub struct ClusterMetrics {
    commands: IntCounterVec,
    redirections: IntCounterVec,
    slot_map_refreshes: IntCounter,
    ok: IntGauge,
}

impl ClusterMetrics {
    fn new(registrar: &mut Registrar<'_>) -> Self {
        Self {
            commands: registrar.counters(
                "timestamp_api_redis_cluster_commands_total",
                "Only in cluster mode: keyed Redis commands (a write and its WAIT count once) \
                 by shard (the primary's host:port) and outcome (ok or error: no answer, lost \
                 connection or error reply).",
                &["shard", "outcome"],
            ),
            redirections: registrar.counters(
                "timestamp_api_redis_cluster_redirections_total",
                "Only in cluster mode: MOVED and ASK answers (kind moved or ask), by the shard \
                 that gave them; each is followed to the node it names.",
                &["shard", "kind"],
            ),
            slot_map_refreshes: registrar.counter(
                "timestamp_api_redis_cluster_slot_map_refreshes_total",
                "Only in cluster mode: times the service read the slot map again because a \
                 node answered MOVED or could not be reached.",
            ),
            ok: registrar.gauge(
                "timestamp_api_redis_cluster_ok",
                "Only in cluster mode: 1 if the last readiness check found the cluster ok, \
                 every slot served and every shard's primary answering, else 0.",
            ),
        }
    }

    pub fn count_command(&self, shard: &str, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        self.commands.with_label_values(&[shard, outcome]).inc();
    }

    pub fn count_redirection(&self, shard: &str, kind: Redirection) {
        self.redirections
            .with_label_values(&[shard, kind.label()])
            .inc();
    }

    pub fn count_slot_map_refresh(&self) {
        self.slot_map_refreshes.inc();
    }

    pub fn set_ok(&self, ok: bool) {
        self.ok.set(i64::from(ok));
    }
}

impl ReplicationGauges {
    fn new(registrar: &mut Registrar<'_>) -> Self {
        Self {
            replicas_connected: registrar.gauge(
                "timestamp_api_redis_replicas_connected",
                "Only with Sentinel: replicas connected to the Redis primary (connected_slaves \
                 of its INFO replication), read once a second.",
            ),
            replica_lag_seconds: registrar.add(
                "gauge",
                Gauge::new(
                    "timestamp_api_redis_replica_lag_seconds",
                    "Only with Sentinel: the largest replication lag (lag=) among the primary's \
                     replicas, in seconds, read once a second.",
                ),
            ),
        }
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let mut registrar = Registrar {
            registry: &registry,
            catalogue: Vec::new(),
        };
        let ready = registrar.gauge(
            "timestamp_api_ready",
            "1 if the last readiness check (GET /readyz) passed, else 0.",
        );
        let http = HttpMetrics::new(&mut registrar);
        let redis = RedisMetrics::new(&mut registrar);
        let connections = ConnectionMetrics::new(&mut registrar);
        let response_buffer_bytes = registrar.gauge(
            "timestamp_api_response_buffer_bytes",
            "Bytes of the list-page budget (response_buffer_bytes) held now, by pages being \
             built or waiting for their clients to read them.",
        );
        let panics = registrar.counter(
            "timestamp_api_panics_total",
            "Panics in the process; each is a bug, logged as a panic event with its request id.",
        );
        let log_lines_dropped = registrar.counter(
            "timestamp_api_log_lines_dropped_total",
            "Log lines dropped because the log sink (stdout) did not keep up.",
        );
        let trace_spans = registrar.counters(
            "timestamp_api_trace_spans_total",
            "Spans by outcome: exported to traces.endpoint, dropped (the export queue was full, \
             or still held at the shutdown deadline) or failed (their export failed).",
            &["outcome"],
        );
        registrar
            .gauges(
                "timestamp_api_build_info",
                "Always 1; labels carry the version and git revision.",
                &["version", "git_sha"],
            )
            .with_label_values(&[version::VERSION, version::GIT_SHA])
            .set(1);
        let mut catalogue = registrar.catalogue;
        let replication = Optional::new(&mut catalogue, ReplicationGauges::new);
        let cluster = Optional::new(&mut catalogue, ClusterMetrics::new);
        catalogue.extend(process_metrics(&registry));
        Self(Arc::new(Inner {
            registry,
            catalogue,
            ready,
            http,
            redis,
            connections,
            replication,
            cluster,
            response_buffer_bytes,
            panics,
            log_lines_dropped,
            trace_spans,
            catching_up: Mutex::new(()),
        }))
    }

    /// Every metric this process can export, whether or not it has a series yet.
    pub fn catalogue(&self) -> &[MetricDescription] {
        &self.0.catalogue
    }

    /// The connection metrics of one listener (`api` or `admin`), resolved once.
    pub fn listener(&self, listener: &'static str) -> ListenerMetrics {
        let inner = &self.0;
        ListenerMetrics {
            open: inner.connections.open.with_label_values(&[listener]),
            refused: inner.connections.refused.with_label_values(&[listener]),
            write_timeouts: inner
                .connections
                .timed_out
                .with_label_values(&[listener, "write"]),
            idle_timeouts: inner
                .connections
                .timed_out
                .with_label_values(&[listener, "idle"]),
            accept_errors: inner
                .connections
                .accept_errors
                .with_label_values(&[listener]),
        }
    }

    pub fn observe_request(
        &self,
        method: &Method,
        route: &str,
        status: StatusCode,
        elapsed: Duration,
    ) {
        let method = method_label(method);
        self.0
            .http
            .requests
            .with_label_values(&[method, route, status.as_str()])
            .inc();
        self.0
            .http
            .duration
            .with_label_values(&[method, route])
            .observe(elapsed.as_secs_f64());
    }

    /// Records the outcome of a readiness check, for alerting on it.
    pub fn set_ready(&self, ready: bool) {
        self.0.ready.set(i64::from(ready));
    }

    /// Starts timing one Redis command; see `RedisTimer`.
    pub fn time_redis(&self, command: &'static str) -> RedisTimer {
        RedisTimer {
            metrics: self.clone(),
            command,
            start: Instant::now(),
            succeeded: None,
        }
    }

    /// Marks `current` as the primary in use; the series of `previous`, if any, goes.
    pub fn set_primary(&self, previous: Option<&str>, current: &str) {
        if let Some(previous) = previous.filter(|previous| *previous != current) {
            // Absent only if it was never set, which is what removing wants anyway.
            let _ = self.0.redis.primary.remove_label_values(&[previous]);
        }
        self.0.redis.primary.with_label_values(&[current]).set(1);
    }

    /// No primary in use (between connections).
    pub fn unset_primary(&self, address: &str) {
        // Absent only if it was never set, which is what removing wants anyway.
        let _ = self.0.redis.primary.remove_label_values(&[address]);
    }

    pub fn count_failover(&self) {
        self.0.redis.failovers.inc();
    }

    pub fn count_reconnection(&self, cause: Reconnection) {
        self.0
            .redis
            .reconnections
            .with_label_values(&[cause.label()])
            .inc();
    }

    pub fn count_reconnection_failure(&self, cause: ConnectFailure) {
        self.0
            .redis
            .reconnection_failures
            .with_label_values(&[cause.label()])
            .inc();
    }

    pub fn count_tls_reload(&self, outcome: TlsReload) {
        self.0
            .redis
            .tls_reloads
            .with_label_values(&[outcome.label()])
            .inc();
    }

    /// The gauge of the list-page budget in use (`api::ResponseBudget` keeps it).
    pub fn response_buffer_bytes(&self) -> IntGauge {
        self.0.response_buffer_bytes.clone()
    }

    /// Counts a command Redis refused; `cause` is one of the documented label values.
    pub fn count_refusal(&self, cause: &'static str) {
        self.0.redis.refusals.with_label_values(&[cause]).inc();
    }

    /// The replication gauges, exposed from the first call on (see `Inner::replication`).
    pub fn replication(&self) -> ReplicationGauges {
        self.0.replication.expose()
    }

    /// The cluster mode's metrics, exposed from the first call on.
    pub fn cluster(&self) -> ClusterMetrics {
        self.0.cluster.expose()
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        {
            let _only_us = self
                .0
                .catching_up
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            catch_up(&self.0.panics, telemetry::panics());
            catch_up(
                &self.0.log_lines_dropped,
                telemetry::output::dropped_lines(),
            );
            if telemetry::traces::enabled() {
                for (outcome, total) in telemetry::traces::span_counts() {
                    catch_up(&self.0.trace_spans.with_label_values(&[outcome]), total);
                }
            }
        }
        let mut buffer = Vec::new();
        let mut families = self.0.registry.gather();
        self.0.replication.gather(&mut families);
        self.0.cluster.gather(&mut families);
        families.sort_by(|a, b| a.name().cmp(b.name()));
        if let Err(error) = TextEncoder::new().encode(&families, &mut buffer) {
            tracing::error!(%error, "cannot encode metrics");
        }
        String::from_utf8_lossy(&buffer).into_owned()
    }
}

/// Brings `counter` up to `total`, a count kept outside this registry (counters never go down).
fn catch_up(counter: &IntCounter, total: u64) {
    counter.inc_by(total.saturating_sub(counter.get()));
}

/// What the primary says of its replicas, refreshed in the background (Sentinel only).
#[derive(Clone)]
pub struct ReplicationGauges {
    pub replicas_connected: IntGauge,
    pub replica_lag_seconds: Gauge,
}

/// One listener's connection metrics.
#[derive(Clone)]
pub struct ListenerMetrics {
    pub open: IntGauge,
    pub refused: IntCounter,
    pub write_timeouts: IntCounter,
    pub idle_timeouts: IntCounter,
    pub accept_errors: IntCounter,
}

/// Records a command's duration when dropped, and counts it as an error unless `finish(true)`
/// was called: a command abandoned because the operation's deadline passed is a failure too.
pub struct RedisTimer {
    metrics: Metrics,
    command: &'static str,
    start: Instant,
    succeeded: Option<bool>,
}

impl RedisTimer {
    pub fn finish(mut self, succeeded: bool) {
        self.succeeded = Some(succeeded);
    }
}

impl Drop for RedisTimer {
    fn drop(&mut self) {
        let inner = &self.metrics.0;
        inner
            .redis
            .duration
            .with_label_values(&[self.command])
            .observe(self.start.elapsed().as_secs_f64());
        if self.succeeded != Some(true) {
            inner.redis.errors.with_label_values(&[self.command]).inc();
        }
    }
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "_OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_requests_by_route_template_and_build_info() {
        let metrics = Metrics::new();
        metrics.observe_request(
            &Method::GET,
            "/v1/timestamps/{name}",
            StatusCode::OK,
            Duration::from_millis(2),
        );
        metrics.observe_request(
            &Method::from_bytes(b"BREW").unwrap(),
            "unmatched",
            StatusCode::NOT_FOUND,
            Duration::ZERO,
        );
        let text = metrics.render();
        assert!(
            text.contains(
                r#"http_requests_total{method="GET",route="/v1/timestamps/{name}",status="200"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"http_requests_total{method="_OTHER",route="unmatched",status="404"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"http_request_duration_seconds_bucket{method="GET",route="/v1/timestamps/{name}",le="0.0025"} 1"#), "{text}");
        assert!(
            text.contains(&format!(
                r#"timestamp_api_build_info{{git_sha="{}",version="{}"}} 1"#,
                version::GIT_SHA,
                version::VERSION
            )),
            "{text}"
        );
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
    }

    #[test]
    fn an_unfinished_redis_command_counts_as_an_error() {
        let metrics = Metrics::new();
        metrics.time_redis("GET").finish(true);
        metrics.time_redis("SET").finish(false);
        drop(metrics.time_redis("SCAN"));
        let text = metrics.render();
        assert!(
            text.contains(r#"timestamp_api_redis_command_duration_seconds_count{command="GET"} 1"#),
            "{text}"
        );
        assert!(
            !text.contains(r#"timestamp_api_redis_command_errors_total{command="GET"}"#),
            "{text}"
        );
        assert!(
            text.contains(r#"timestamp_api_redis_command_errors_total{command="SET"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"timestamp_api_redis_command_errors_total{command="SCAN"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn the_primary_series_follows_the_primary_and_replication_appears_when_asked() {
        let metrics = Metrics::new();
        metrics.set_primary(None, "10.0.0.1:6379");
        metrics.set_primary(Some("10.0.0.1:6379"), "10.0.0.2:6379");
        let text = metrics.render();
        assert!(!text.contains(r#"address="10.0.0.1:6379""#), "{text}");
        assert!(
            text.contains(r#"timestamp_api_redis_primary{address="10.0.0.2:6379"} 1"#),
            "{text}"
        );
        assert!(
            !text.contains("timestamp_api_redis_replicas_connected"),
            "{text}"
        );
        metrics.replication().replicas_connected.set(2);
        assert!(
            metrics
                .render()
                .contains("timestamp_api_redis_replicas_connected 2")
        );
    }

    /// docs/operations.md's table of metrics, from the catalogue.
    fn markdown_table(catalogue: &[MetricDescription]) -> String {
        let mut table = String::from("| Metric | Type | Labels | Meaning |\n|---|---|---|---|\n");
        for metric in catalogue {
            let kind = match (metric.buckets.first(), metric.buckets.last()) {
                (Some(first), Some(last)) => {
                    format!("histogram ({} … {})", seconds(*first), seconds(*last))
                }
                _ => metric.kind.to_owned(),
            };
            let labels = match metric.labels.as_slice() {
                [] => "—".to_owned(),
                labels => format!("`{}`", labels.join("`, `")),
            };
            table.push_str(&format!(
                "| `{}` | {kind} | {labels} | {} |\n",
                metric.name, metric.help
            ));
        }
        table
    }

    fn seconds(bound: f64) -> String {
        if bound < 1.0 {
            format!("{} ms", bound * 1000.0)
        } else {
            format!("{bound} s")
        }
    }

    #[test]
    fn the_metrics_table_in_operations_md_is_current() {
        let metrics = Metrics::new();
        crate::generated::check_block(
            "docs/operations.md",
            "metrics",
            &markdown_table(metrics.catalogue()),
        );
    }

    /// Every metric docs/operations.md names in its prose (runbooks, procedures) is one the
    /// code describes, series suffixes allowed.
    #[test]
    fn every_metric_operations_md_names_is_described() {
        let doc = include_str!("../docs/operations.md");
        let metrics = Metrics::new();
        let described: Vec<&str> = metrics
            .catalogue()
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        let named =
            regex::Regex::new(r"(?-u:\b)(?:timestamp_api|http|process)_[a-z0-9_]*[a-z0-9](?-u:\b)")
                .unwrap();
        let unknown: Vec<&str> = named
            .find_iter(doc)
            .map(|found| found.as_str())
            .filter(|name| {
                let series = ["_bucket", "_sum", "_count"]
                    .iter()
                    .fold(*name, |name, suffix| {
                        name.strip_suffix(suffix).unwrap_or(name)
                    });
                !described.contains(name) && !described.contains(&series)
            })
            .collect();
        assert!(
            unknown.is_empty(),
            "docs/operations.md names metrics the code does not describe: {unknown:?}"
        );
    }
}
