//! OpenTelemetry traces, end to end: the real binary exports to a real OTLP/HTTP receiver
//! (`harness::collector`), configured by the standard `OTEL_*` variables. The caller's trace is
//! continued, spans are named after routes and commands, the access log joins the trace, odd
//! trace headers start new traces, and a collector that is down, refusing or wedged costs
//! requests nothing but the spans, which are counted.

use std::time::{Duration, Instant};

use serde_json::Value;
use warp::http::Method;

use crate::harness::client::{Client, metric};
use crate::harness::collector::{Behaviour, Collector, Received};
use crate::harness::redis_server::RedisServer;
use crate::harness::service_process::ServiceProcess;
use crate::harness::timing::{HEAVY, eventually, slack};

/// Spans are exported about a second after they end; this covers that with room.
fn exported_within() -> Duration {
    Duration::from_secs(5) + slack()
}

const SERVER: i32 = 2;
const CLIENT: i32 = 3;

fn traceparent(trace_id: &str, parent: &str) -> String {
    format!("00-{trace_id}-{parent}-01")
}

fn traced(collector: &Collector, redis: &RedisServer, env: &[(&str, &str)]) -> ServiceProcess {
    let endpoint = collector.endpoint();
    let mut all = vec![("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())];
    all.extend_from_slice(env);
    ServiceProcess::against(redis, &all)
}

async fn children_of(collector: &Collector, parent: &Received, names: &[&str]) -> Vec<Received> {
    let mut children = Vec::new();
    for name in names {
        children.push(
            collector
                .span(exported_within(), |span| {
                    span.span.name == *name && span.parent_span_id() == parent.span_id()
                })
                .await,
        );
    }
    children
}

async fn access_log_line(service: &ServiceProcess, request_id: &str) -> Value {
    let find = || {
        service.events().into_iter().find(|event| {
            event["target"] == "timestamp_api::access" && event["span"]["request_id"] == request_id
        })
    };
    eventually(slack(), || async { find().is_some() }).await;
    find().unwrap()
}

#[tokio::test]
async fn an_incoming_traceparent_is_continued_down_to_each_redis_command_and_into_the_log() {
    let collector = Collector::start(Behaviour::Accept).await;
    // The replica syncs at once, not after the default 5 s wait for others to join the same
    // diskless transfer, which the wait for it below could not cover under load (CI,
    // 2026-12-03: "condition not met within 5s").
    let redis = RedisServer::start_with(&["--repl-diskless-sync-delay", "0"]);
    let port = redis.port().to_string();
    let _replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port]);
    let service = traced(
        &collector,
        &redis,
        &[
            ("TSAPI_REDIS__MIN_REPLICA_ACKS", "1"),
            ("OTEL_SERVICE_NAME", "ts-under-test"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment.name=test,service.name=not-this-one",
            ),
        ],
    );
    // Until the replica has synced, writes are 503 not-replicated.
    eventually(slack() * 5, || async {
        service
            .api
            .put_json("/v1/timestamps/warm-up", r#"{"epoch_ms": 1}"#)
            .await
            .status
            .is_success()
    })
    .await;

    let put_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let put_parent = "00f067aa0ba902b7";
    let put = service
        .api
        .send(
            Method::PUT,
            "/v1/timestamps/traced",
            &[
                ("traceparent", &traceparent(put_trace, put_parent)),
                ("tracestate", "vendor=opaque"),
                ("content-type", "application/json"),
                ("x-request-id", "put-traced"),
            ],
            Some(r#"{"epoch_ms": 1795628183123}"#),
        )
        .await;
    assert_eq!(put.status, 201, "{:?}", put.body);
    let get_trace = "0af7651916cd43dd8448eb211c80319c";
    let get_parent = "b7ad6b7169203331";
    let get = service
        .api
        .send(
            Method::GET,
            "/v1/timestamps/traced",
            &[
                ("traceparent", &traceparent(get_trace, get_parent)),
                ("x-request-id", "get-traced"),
            ],
            None,
        )
        .await;
    assert_eq!(get.status, 200);

    for (trace_id, parent, name, status, commands, request_id) in [
        (
            put_trace,
            put_parent,
            "PUT /v1/timestamps/{name}",
            "201",
            &["SET", "WAIT"][..],
            "put-traced",
        ),
        (
            get_trace,
            get_parent,
            "GET /v1/timestamps/{name}",
            "200",
            &["GET"][..],
            "get-traced",
        ),
    ] {
        let server = collector
            .span(exported_within(), |span| {
                span.trace_id() == trace_id && span.span.kind == SERVER
            })
            .await;
        assert_eq!(server.span.name, name);
        assert_eq!(server.span.kind, SERVER);
        assert_eq!(server.parent_span_id(), parent);
        let method = name.split(' ').next().unwrap();
        assert_eq!(
            server.attribute("http.request.method").as_deref(),
            Some(method)
        );
        assert_eq!(
            server.attribute("http.route").as_deref(),
            Some("/v1/timestamps/{name}")
        );
        assert_eq!(
            server.attribute("http.response.status_code").as_deref(),
            Some(status)
        );
        assert_eq!(server.attribute("request_id").as_deref(), Some(request_id));
        assert_eq!(server.resource["service.name"], "ts-under-test");
        assert_eq!(server.resource["deployment.environment.name"], "test");

        for command in children_of(&collector, &server, commands).await {
            assert_eq!(command.span.kind, CLIENT);
            assert_eq!(command.trace_id(), trace_id);
            assert_eq!(
                command.attribute("db.system.name").as_deref(),
                Some("redis")
            );
            assert_eq!(
                command.attribute("db.operation.name").as_deref(),
                Some(command.span.name.as_str())
            );
            assert_eq!(
                command.attribute("server.port").as_deref(),
                Some(port.as_str())
            );
            // The command's name only: never the key or the value.
            for value in command.all_attribute_values() {
                assert!(
                    !value.contains("traced") && !value.contains("1795628183123"),
                    "{value}"
                );
            }
        }

        let line = access_log_line(&service, request_id).await;
        assert_eq!(line["trace_id"], trace_id, "{line}");
        assert_eq!(line["span_id"], server.span_id(), "{line}");
        // The flags that steer the trace layer stay out of the log.
        assert!(line["span"].get("otel.kind").is_none(), "{line}");
    }
    let put = collector
        .span(Duration::ZERO, |span| {
            span.trace_id() == put_trace && span.span.kind == SERVER
        })
        .await;
    assert_eq!(put.span.trace_state, "vendor=opaque");
    // The admin listener's probes and scrapes are not traced.
    service.admin.get("/readyz").await;
    tokio::time::sleep(exported_within()).await;
    assert!(
        collector
            .spans()
            .iter()
            .all(|span| span.attribute("http.route").as_deref() != Some("/readyz"))
    );
}

#[tokio::test]
async fn the_signal_specific_endpoint_is_posted_to_as_given_and_wins_over_the_base_one() {
    // A platform that sets both, the base one pointing elsewhere: the spans must reach the
    // URL of OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, with no second `/v1/traces` added to it.
    let collector = Collector::start(Behaviour::Accept).await;
    let redis = RedisServer::start();
    let url = format!("{}/v1/traces", collector.endpoint());
    let elsewhere = Collector::down_endpoint();
    let service = ServiceProcess::against(
        &redis,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", elsewhere.as_str()),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", url.as_str()),
        ],
    );
    assert_eq!(service.api.get("/v1/timestamps/signal").await.status, 404);
    collector
        .span(exported_within(), |span| {
            span.span.name == "GET /v1/timestamps/{name}"
        })
        .await;
}

#[tokio::test]
async fn a_request_the_sampler_leaves_out_makes_no_span_and_its_log_no_trace_id() {
    let collector = Collector::start(Behaviour::Accept).await;
    let redis = RedisServer::start();
    // No new trace is recorded; a caller's decision is followed.
    let service = traced(
        &collector,
        &redis,
        &[
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0"),
        ],
    );
    let sampled = "4bf92f3577b34da6a3ce929d0e0e4736";
    let cases = [
        ("new-trace", None),
        (
            "caller-unsampled",
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00".to_owned()),
        ),
        (
            "caller-sampled",
            Some(traceparent(sampled, "00f067aa0ba902b7")),
        ),
    ];
    for (request_id, header) in &cases {
        let mut headers = vec![("x-request-id", *request_id)];
        if let Some(header) = header {
            headers.push(("traceparent", header));
        }
        let response = service
            .api
            .send(Method::GET, "/v1/timestamps/sampling", &headers, None)
            .await;
        assert_eq!(response.status, 404);
    }
    // The sampled request came last, and spans are exported in the order they ended.
    collector
        .span(exported_within(), |span| {
            span.span.name == "GET /v1/timestamps/{name}"
        })
        .await;
    let traces: Vec<String> = collector.spans().iter().map(Received::trace_id).collect();
    assert_eq!(
        traces,
        [sampled, sampled],
        "the request's span and its GET's"
    );
    for (request_id, trace_id) in [
        ("new-trace", None),
        ("caller-unsampled", None),
        ("caller-sampled", Some(sampled)),
    ] {
        let line = access_log_line(&service, request_id).await;
        assert_eq!(line["trace_id"].as_str(), trace_id, "{line}");
    }
}

#[tokio::test]
async fn probes_and_scrapes_on_the_admin_listener_make_no_span() {
    let collector = Collector::start(Behaviour::Accept).await;
    let redis = RedisServer::start();
    let service = traced(&collector, &redis, &[]);
    for _ in 0..5 {
        // Each /readyz sends a PING to Redis.
        assert_eq!(service.admin.get("/readyz").await.status, 200);
        assert_eq!(service.admin.get("/metrics").await.status, 200);
    }
    let marker = service.api.get("/v1/timestamps/after-the-probes").await;
    assert_eq!(marker.status, 404);
    // Spans are exported in the order they ended, so once the marker's server span is in,
    // whatever the probes made before it is too.
    collector
        .span(exported_within(), |span| {
            span.span.name == "GET /v1/timestamps/{name}"
        })
        .await;
    let mut names: Vec<String> = collector
        .spans()
        .into_iter()
        .map(|span| span.span.name)
        .collect();
    names.sort();
    assert_eq!(names, ["GET", "GET /v1/timestamps/{name}"]);
}

#[tokio::test]
async fn no_trace_context_or_a_malformed_one_starts_a_new_trace_and_reaches_no_attribute() {
    let collector = Collector::start(Behaviour::Accept).await;
    let redis = RedisServer::start();
    let service = traced(&collector, &redis, &[]);
    let caller = "4bf92f3577b34da6a3ce929d0e0e4736";
    let well_formed = traceparent(caller, "00f067aa0ba902b7");
    let long = format!("{well_formed}-{}", "a".repeat(4096));
    let thousand_members = (0..1000)
        .map(|i| format!("k{i}=v"))
        .collect::<Vec<_>>()
        .join(",");
    let huge = "0".repeat(10 * 1024);
    // (request id, trace headers, whether the caller's trace goes on)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, bool);
    let cases: [Case<'_>; 6] = [
        ("none", vec![], false),
        (
            "garbage",
            vec![("traceparent", "garbage;; \"x\" ~\t{}")],
            false,
        ),
        (
            "zero-trace",
            vec![(
                "traceparent",
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            )],
            false,
        ),
        ("long", vec![("traceparent", &long)], false),
        (
            "repeated",
            vec![("traceparent", &well_formed), ("traceparent", &well_formed)],
            false,
        ),
        // A valid parent with a tracestate of a thousand members: the trace goes on, the
        // tracestate is dropped.
        (
            "members",
            vec![
                ("traceparent", &well_formed),
                ("tracestate", &thousand_members),
            ],
            true,
        ),
    ];
    for (request_id, headers, _) in &cases {
        let mut headers = headers.clone();
        headers.push(("x-request-id", request_id));
        let response = service
            .api
            .send(Method::GET, "/v1/timestamps/absent", &headers, None)
            .await;
        assert_eq!(response.status, 404, "{request_id}: {:?}", response.body);
    }
    // Beyond the request head limit: refused before anything reads it, as any header is.
    let refused = service
        .api
        .send(
            Method::GET,
            "/v1/timestamps/absent",
            &[("traceparent", &huge)],
            None,
        )
        .await;
    refused.assert_problem(431, "headers-too-large");

    for (request_id, _, continued) in cases {
        let span = collector
            .span(exported_within(), |span| {
                span.attribute("request_id").as_deref() == Some(request_id)
            })
            .await;
        assert_eq!(span.span.name, "GET /v1/timestamps/{name}");
        assert_eq!(
            span.attribute("http.response.status_code").as_deref(),
            Some("404")
        );
        if continued {
            assert_eq!(span.trace_id(), caller);
        } else {
            assert_ne!(span.trace_id(), caller, "{request_id}");
            assert_eq!(span.parent_span_id(), "", "{request_id}");
        }
        assert_ne!(span.trace_id(), "0".repeat(32));
        assert_eq!(span.span.trace_state, "", "{request_id}");
        for value in span.all_attribute_values() {
            assert!(value.len() <= 64, "{request_id}: {value}");
        }
        let line = access_log_line(&service, request_id).await;
        assert_eq!(line["trace_id"], span.trace_id().as_str(), "{line}");
    }
}

#[tokio::test]
async fn a_request_that_saw_its_redis_connection_replaced_says_so_in_span_events() {
    let collector = Collector::start(Behaviour::Accept).await;
    let mut redis = RedisServer::start();
    let service = traced(&collector, &redis, &[]);
    assert_eq!(service.api.get("/v1/timestamps/a").await.status, 404);
    redis.restart();
    // The first request on the old connection finds it lost, waits for the connector's next
    // one, and is answered on that.
    let response = service
        .api
        .send(
            Method::GET,
            "/v1/timestamps/a",
            &[("x-request-id", "after-restart")],
            None,
        )
        .await;
    assert_eq!(response.status, 404, "{:?}", response.body);
    let span = collector
        .span(exported_within(), |span| {
            span.attribute("request_id").as_deref() == Some("after-restart")
        })
        .await;
    let events: Vec<&str> = span
        .span
        .events
        .iter()
        .map(|event| event.name.as_str())
        .collect();
    assert_eq!(
        events,
        ["redis.connection_lost", "redis.reconnected"],
        "{span:#?}"
    );
    let reconnected = &span.span.events[1];
    assert!(
        reconnected
            .attributes
            .iter()
            .any(|attribute| attribute.key == "server.address"),
        "{reconnected:?}"
    );
}

/// The p99 latency of `count` GETs on each of two services, alternated request by request so
/// that a stall of the machine falls on both series alike. A 503 (their shared Redis stalled
/// past `redis.command_timeout`: once in CI, Valkey 8.1 beside the other tests) is a sample of
/// its latency like any answer; a p99 tolerates one in a hundred.
async fn p99s(first: &Client, second: &Client, count: usize) -> (Duration, Duration) {
    let (mut firsts, mut seconds) = (Vec::with_capacity(count), Vec::with_capacity(count));
    for _ in 0..count {
        for (api, latencies) in [(first, &mut firsts), (second, &mut seconds)] {
            let start = Instant::now();
            let response = api.get("/v1/timestamps/probe").await;
            latencies.push(start.elapsed());
            assert!(
                response.status == 404 || response.status == 503,
                "{} {:?}",
                response.status,
                response.body
            );
        }
    }
    let p99 = |latencies: &mut Vec<Duration>| {
        latencies.sort();
        latencies[count * 99 / 100]
    };
    (p99(&mut firsts), p99(&mut seconds))
}

/// The collector misbehaves: requests are as fast as with tracing off in the same run,
/// spans beyond the queue are dropped and counted, failed exports are counted, and SIGTERM
/// still ends the process within the shutdown timeout.
async fn a_bad_collector_costs_requests_nothing(endpoint: String, collector: Option<&Collector>) {
    // A p99 compared across two services: alone, or the machine-loading tests measure in it
    // (seen in CI while the two services were measured one after the other: outliers of 90 to
    // 240 ms beside the failover tests).
    let _alone = HEAVY.lock().await;
    let redis = RedisServer::start();
    let untraced = ServiceProcess::against(&redis, &[]);
    let shutdown_timeout = Duration::from_secs(3);
    let mut service = ServiceProcess::against(
        &redis,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("TSAPI_TRACES__QUEUE_SIZE", "16"),
            ("TSAPI_TRACES__EXPORT_TIMEOUT", "2s"),
            ("TSAPI_SHUTDOWN_TIMEOUT", "3s"),
        ],
    );
    // Warm both up (connections to Redis made), then alternate, so that both see the same
    // machine.
    p99s(&untraced.api, &service.api, 20).await;
    let (off, on) = p99s(&untraced.api, &service.api, 300).await;
    // An export on the request path would add the export timeout (2 s) to requests.
    assert!(
        on <= off * 3 + Duration::from_millis(20),
        "p99 with the bad collector {on:?}, with tracing off {off:?}"
    );

    let counted = |outcome: &'static str| {
        let admin = service.admin;
        async move {
            let text = admin.get("/metrics").await.text();
            metric(
                &text,
                &format!("timestamp_api_trace_spans_total{{outcome=\"{outcome}\"}}"),
            )
            .unwrap_or(0.0)
        }
    };
    eventually(slack(), || async { counted("dropped").await > 0.0 }).await;
    // Each failed export ends within its timeout (2 s), retries included.
    eventually(Duration::from_secs(2) + slack() * 2, || async {
        counted("failed").await > 0.0
    })
    .await;
    assert_eq!(counted("exported").await, 0.0);
    if let Some(collector) = collector {
        assert!(collector.requests() > 0);
    }

    let signalled = Instant::now();
    service.signal(libc::SIGTERM);
    let status = service.wait(shutdown_timeout + slack());
    assert_eq!(status.code(), Some(0));
    assert!(
        signalled.elapsed() < shutdown_timeout + slack(),
        "{:?}",
        signalled.elapsed()
    );
}

#[tokio::test]
async fn a_collector_that_is_down_costs_requests_nothing() {
    a_bad_collector_costs_requests_nothing(Collector::down_endpoint(), None).await;
}

#[tokio::test]
async fn a_collector_answering_503_costs_requests_nothing() {
    let collector = Collector::start(Behaviour::Unavailable).await;
    a_bad_collector_costs_requests_nothing(collector.endpoint(), Some(&collector)).await;
}

#[tokio::test]
async fn a_collector_that_never_answers_costs_requests_nothing() {
    let collector = Collector::start(Behaviour::Hang).await;
    a_bad_collector_costs_requests_nothing(collector.endpoint(), Some(&collector)).await;
}
