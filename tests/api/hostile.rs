//! Hostile clients and stalled dependencies, against the real binary and a real redis-server:
//! request targets without a path, clients that never read, connection floods, idle and slow
//! connections, forged cursors, a stdout nobody reads, the contract's edges, and what error
//! bodies reveal. Every case is bounded in time, and every case ends by checking that the
//! service did not panic (the panic counter is 0 and stderr holds no panic report).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hyper::Method;
use redis::Commands;

use crate::harness::client::{Client, TestResponse, metric};
use crate::harness::redis_server::RedisServer;
use crate::harness::service_process::ServiceProcess;
use crate::harness::timing::{HEAVY, eventually, slack};

async fn metrics_of(service: &ServiceProcess) -> String {
    service.admin.get("/metrics").await.text()
}

async fn assert_no_panics(service: &ServiceProcess) {
    let metrics = metrics_of(service).await;
    assert_eq!(
        metric(&metrics, "timestamp_api_panics_total"),
        Some(0.0),
        "{metrics}"
    );
    let stderr = service.stderr();
    assert!(
        !stderr.iter().any(|line| line.contains("panicked")),
        "{stderr:?}"
    );
}

/// One request that must answer promptly while the service is under attack: within the
/// slack any step gets (`slack()`, 1 s by default), since no configured time applies.
async fn promptly(
    what: &str,
    request: impl std::future::Future<Output = TestResponse>,
) -> TestResponse {
    let (started, prompt) = (Instant::now(), slack());
    match tokio::time::timeout(prompt, request).await {
        Ok(response) => response,
        Err(_) => panic!(
            "{what} did not answer within {prompt:?} (waited {:?})",
            started.elapsed()
        ),
    }
}

/// A service with its own Redis holding `names` timestamps (`name-0`, `name-1`, …).
fn service_with(names: usize, env: &[(&str, &str)]) -> (RedisServer, ServiceProcess) {
    service_with_names((0..names).map(|i| format!("name-{i}")), env)
}

/// A service with its own Redis holding a timestamp for each of `names`.
fn service_with_names(
    names: impl Iterator<Item = String>,
    env: &[(&str, &str)],
) -> (RedisServer, ServiceProcess) {
    let redis = RedisServer::start();
    let pairs: Vec<(String, i64)> = names
        .map(|name| (format!("ts:{name}"), 1_795_628_183_123))
        .collect();
    if !pairs.is_empty() {
        let () = redis.client().mset(&pairs).unwrap();
    }
    let service = ServiceProcess::against(&redis, env);
    (redis, service)
}

/// The service opens a socket per client; 1,000 clients need more descriptors than some
/// defaults (1,024) leave. The service inherits the raised limit.
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    assert!(
        limit.rlim_cur >= 4096,
        "need 4096 file descriptors, have {}",
        limit.rlim_cur
    );
}

#[tokio::test]
async fn request_targets_without_a_path_are_400_problems_on_both_listeners() {
    let (_redis, service) = service_with(0, &[]);
    for client in [service.api, service.admin] {
        for request in [
            "CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\nConnection: close\r\n\r\n",
            "OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        ] {
            let response = promptly(request, client.raw(request)).await;
            let body = response.assert_problem(400, "invalid-request");
            assert_eq!(
                body["request_id"].as_str(),
                response.header("x-request-id"),
                "{body}"
            );
        }
    }
    let metrics = metrics_of(&service).await;
    for method in ["OPTIONS", "_OTHER"] {
        let series =
            format!(r#"http_requests_total{{method="{method}",route="unmatched",status="400"}}"#);
        assert_eq!(metric(&metrics, &series), Some(2.0), "{series}\n{metrics}");
    }
    // The API listener's access log has them (the admin listener logs at debug).
    eventually(Duration::from_secs(5), || async {
        service
            .events()
            .iter()
            .filter(|event| event["target"] == "timestamp_api::access" && event["status"] == 400)
            .count()
            == 2
    })
    .await;
    assert_no_panics(&service).await;
}

/// `count` clients that each send `requests` pipelined requests for the OpenAPI document
/// (about 20 KB each, no Redis involved) with a 4 KiB receive buffer, and never read.
async fn non_reading_clients(
    service: &ServiceProcess,
    count: usize,
    requests: usize,
) -> Vec<tokio::net::TcpStream> {
    let pipelined = "GET /openapi.json HTTP/1.1\r\nHost: h\r\n\r\n".repeat(requests);
    let mut clients = Vec::new();
    for _ in 0..count {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = socket.connect(service.api.addr).await.unwrap();
        // As much as the socket takes now; the rest of the attack is the not reading.
        let _ = stream.try_write(pipelined.as_bytes());
        clients.push(stream);
    }
    clients
}

async fn api_connections(service: &ServiceProcess, series: &str) -> f64 {
    metric(&metrics_of(service).await, series).unwrap_or_else(|| panic!("no {series}"))
}

#[tokio::test]
async fn a_thousand_clients_that_never_read_leave_service_and_memory_intact() {
    let _alone = HEAVY.lock().await;
    raise_fd_limit();
    // Redis may answer slowly on a machine this busy; any answer within `PROMPT` is prompt.
    let (_redis, service) = service_with(
        1,
        &[
            ("TSAPI_WRITE_TIMEOUT", "3s"),
            ("TSAPI_IDLE_TIMEOUT", "3s"),
            ("TSAPI_REDIS__COMMAND_TIMEOUT", "900ms"),
        ],
    );
    let before = service.rss_mib();
    let hostile = non_reading_clients(&service, 1000, 16).await;

    let mut peak = service.rss_mib();
    for _ in 0..20 {
        let got = promptly("GET", service.api.get("/v1/timestamps/name-0")).await;
        assert_eq!(got.status, 200);
        let put = promptly(
            "PUT",
            service
                .api
                .put_json("/v1/timestamps/mine", r#"{"epoch_ms": 1}"#),
        )
        .await;
        assert!(put.status.is_success(), "{put:?}");
        let ready = promptly("/readyz", service.admin.get("/readyz")).await;
        assert_eq!(ready.status, 200);
        let live = promptly("/livez", service.admin.get("/livez")).await;
        assert_eq!(live.status, 200);
        peak = peak.max(service.rss_mib());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The service lets go of them by itself (the clients are all still connected): by the
    // write timeout where an answer stopped moving, by the idle timeout where the kernel's
    // buffers took every answer and the connection then waited for a request.
    let cut = eventually(Duration::from_secs(15), || async {
        api_connections(
            &service,
            r#"timestamp_api_connections_open{listener="api"}"#,
        )
        .await
            == 0.0
    })
    .await;
    drop(hostile);
    let settled = eventually(Duration::from_secs(10), || async {
        service.rss_mib() < 64.0
    })
    .await;
    println!(
        "RSS: {before:.1} MiB before, at most {peak:.1} MiB under 1,000 non-reading clients; \
         all cut after {cut:?}; under 64 MiB {settled:?} after they went away"
    );
    assert_no_panics(&service).await;
}

#[tokio::test]
async fn a_response_write_that_makes_no_progress_closes_the_connection() {
    let _alone = HEAVY.lock().await;
    let (_redis, service) = service_with(0, &[("TSAPI_WRITE_TIMEOUT", "2s")]);
    // Some 40 MB of answers each: more than the kernel's socket buffers take.
    let hostile = non_reading_clients(&service, 16, 2000).await;
    let cut = eventually(Duration::from_secs(20), || async {
        api_connections(
            &service,
            r#"timestamp_api_connections_timed_out_total{listener="api",timeout="write"}"#,
        )
        .await
            == 16.0
    })
    .await;
    println!("16 non-reading clients cut by the 2 s write timeout after {cut:?}");
    assert_eq!(
        api_connections(
            &service,
            r#"timestamp_api_connections_open{listener="api"}"#
        )
        .await,
        0.0
    );
    drop(hostile);
    assert_no_panics(&service).await;
}

/// Reads whatever the service says on a connection until it closes it, for up to `within`.
fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (String, Duration) {
    let started = Instant::now();
    stream.set_read_timeout(Some(within)).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    (
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn connections_over_the_cap_are_answered_503_and_counted() {
    let (_redis, service) = service_with(0, &[("TSAPI_MAX_CONNECTIONS", "4")]);
    let held: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(service.api.addr).unwrap())
        .collect();
    // Let the service accept the four before the fifth arrives.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut fifth = TcpStream::connect(service.api.addr).unwrap();
    let (answer, _) = read_until_closed(&mut fifth, Duration::from_secs(5));
    assert!(
        answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{answer}"
    );
    assert!(
        answer.contains("\r\ncontent-type: application/problem+json\r\n"),
        "{answer}"
    );
    assert!(answer.contains("\r\nretry-after: 1\r\n"), "{answer}");
    assert!(
        answer.contains(r#""status":503"#) && answer.contains("too-many-connections"),
        "{answer}"
    );

    // The admin listener has its own cap: probes still get through.
    assert_eq!(
        promptly("/livez", service.admin.get("/livez")).await.status,
        200
    );
    let metrics = metrics_of(&service).await;
    assert_eq!(
        metric(
            &metrics,
            r#"timestamp_api_connections_refused_total{listener="api"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            r#"timestamp_api_connections_open{listener="api"}"#
        ),
        Some(4.0),
        "{metrics}"
    );

    // A freed slot serves again.
    drop(held);
    eventually(Duration::from_secs(5), || async {
        TcpStream::connect(service.api.addr).is_ok_and(|mut stream| {
            stream
                .write_all(b"GET /v1/timestamps HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
                .is_ok()
                && read_until_closed(&mut stream, Duration::from_secs(2))
                    .0
                    .starts_with("HTTP/1.1 200 OK")
        })
    })
    .await;
    assert_no_panics(&service).await;
}

#[tokio::test]
async fn idle_and_slow_header_connections_are_closed_after_the_idle_timeout() {
    let idle_timeout = Duration::from_secs(1);
    let (_redis, service) = service_with(
        0,
        &[(
            "TSAPI_IDLE_TIMEOUT",
            &humantime::format_duration(idle_timeout).to_string(),
        )],
    );
    // Not before the timeout (less the timer's granularity), and not long after it.
    let closed_in_time = (idle_timeout - Duration::from_millis(100))..(idle_timeout + slack());

    // Kept alive after one request, then idle.
    let mut idle = TcpStream::connect(service.api.addr).unwrap();
    idle.write_all(b"GET /nowhere HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    let (answer, waited) = read_until_closed(&mut idle, closed_in_time.end + slack());
    assert!(answer.starts_with("HTTP/1.1 404 Not Found"), "{answer}");
    assert!(
        closed_in_time.contains(&waited),
        "an idle connection was closed after {waited:?}; idle_timeout is {idle_timeout:?}"
    );

    // Half a request head, never finished.
    let mut slow = TcpStream::connect(service.api.addr).unwrap();
    slow.write_all(b"GET /v1/timestamps HTTP/1.1\r\nHo")
        .unwrap();
    let (_, waited) = read_until_closed(&mut slow, closed_in_time.end + slack());
    assert!(closed_in_time.contains(&waited), "{waited:?}");

    let metrics = metrics_of(&service).await;
    assert_eq!(
        metric(
            &metrics,
            r#"timestamp_api_connections_timed_out_total{listener="api",timeout="idle"}"#
        ),
        Some(2.0),
        "{metrics}"
    );
    assert_no_panics(&service).await;
}

#[tokio::test]
async fn forged_cursors_are_400_and_replicas_sharing_a_key_accept_each_others() {
    let key_dir = tempfile::tempdir().unwrap();
    let key_file = key_dir.path().join("cursor_key");
    std::fs::write(
        &key_file,
        "0123456789abcdef0123456789abcdef0123456789abcdef\n",
    )
    .unwrap();
    let key_file = key_file.to_str().unwrap();
    let (redis, first) = service_with(31, &[("TSAPI_CURSOR_KEY_FILE", key_file)]);
    let second = ServiceProcess::against(&redis, &[("TSAPI_CURSOR_KEY_FILE", key_file)]);
    let stranger = ServiceProcess::against(&redis, &[]);

    // One stored name, named 500 times in a cursor of the old, unsigned layout and of the
    // current one with no valid tag.
    for forged in [
        URL_SAFE_NO_PAD.encode(format!("v1:end:{}", "name-0,".repeat(500))),
        URL_SAFE_NO_PAD.encode(format!("v2:end:{}", "name-0,".repeat(500))),
        URL_SAFE_NO_PAD.encode(format!("v2:end:name-0{}", "x".repeat(16))),
    ] {
        let response = first
            .api
            .get(&format!("/v1/timestamps?cursor={forged}"))
            .await;
        response.assert_problem(400, "invalid-query");
    }

    // A walk that alternates between the two replicas sees every name once, in pages of at
    // most `limit`; a replica with another key refuses their cursors.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 0.. {
        let replica: &Client = if page % 2 == 0 {
            &first.api
        } else {
            &second.api
        };
        let path = match &cursor {
            Some(cursor) => format!("/v1/timestamps?limit=7&cursor={cursor}"),
            None => "/v1/timestamps?limit=7".to_owned(),
        };
        let body = replica.get(&path).await.json();
        let items = body["items"].as_array().unwrap();
        assert!(items.len() <= 7, "{body}");
        seen.extend(
            items
                .iter()
                .map(|item| item["name"].as_str().unwrap().to_owned()),
        );
        match body["next_cursor"].as_str() {
            Some(next) => {
                stranger
                    .api
                    .get(&format!("/v1/timestamps?cursor={next}"))
                    .await
                    .assert_problem(400, "invalid-query");
                cursor = Some(next.to_owned());
            }
            None => break,
        }
        assert!(page < 100, "the walk does not end");
    }
    seen.sort();
    let mut expected: Vec<String> = (0..31).map(|i| format!("name-{i}")).collect();
    expected.sort();
    assert_eq!(seen, expected);
    for service in [&first, &second, &stranger] {
        assert_no_panics(service).await;
    }
}

#[tokio::test]
async fn a_stalled_log_reader_does_not_stall_requests_and_drops_are_counted_then_reported() {
    let _alone = HEAVY.lock().await;
    let (_redis, service) = service_with(1, &[]);
    service.stall_stdout();

    // Far more access-log lines than the pipe, the writer's buffer and the queue hold.
    let workers: Vec<_> = (0..8)
        .map(|worker| {
            let (api, admin) = (service.api, service.admin);
            tokio::spawn(async move {
                for i in 0..1500 {
                    let response = promptly("GET", api.get("/v1/timestamps/name-0")).await;
                    assert_eq!(response.status, 200);
                    if i % 250 == 0 {
                        let ready = promptly("/readyz", admin.get("/readyz")).await;
                        assert_eq!(ready.status, 200, "worker {worker}, request {i}");
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    let metrics = metrics_of(&service).await;
    let dropped = metric(&metrics, "timestamp_api_log_lines_dropped_total").unwrap();
    assert!(dropped > 0.0, "{metrics}");

    // Once the sink reads again, the service says how many lines it lost.
    service.resume_stdout();
    eventually(Duration::from_secs(10), || async {
        service.events().iter().any(|event| {
            event["message"] == "log lines were dropped" && event["dropped"].as_u64() > Some(0)
        })
    })
    .await;
    println!("{dropped} access-log lines dropped while stdout was not read");
    assert_no_panics(&service).await;
}

#[tokio::test]
async fn the_contracts_edges_hold() {
    let (_redis, service) = service_with(1, &[]);
    let api = service.api;

    // An empty name is a bad name, whatever the method; a trailing slash is another path.
    api.put_empty("/v1/timestamps/")
        .await
        .assert_problem(400, "invalid-name");
    for method in [Method::GET, Method::DELETE] {
        api.send(method, "/v1/timestamps/", &[], None)
            .await
            .assert_problem(400, "invalid-name");
    }
    for path in ["/v1/timestamps/name-0/", "/v1/timestamps/name-0//"] {
        api.get(path).await.assert_problem(404, "no-route");
    }
    assert_eq!(api.get("/v1/timestamps/name-0").await.status, 200);
    service
        .admin
        .get("/livez/")
        .await
        .assert_problem(404, "no-route");
    api.get("/openapi.json/")
        .await
        .assert_problem(404, "no-route");

    // HTTP/1.1 needs exactly one Host (RFC 9112); HTTP/1.0 does not.
    for request in [
        "GET /v1/timestamps/name-0 HTTP/1.1\r\nConnection: close\r\n\r\n",
        "GET /v1/timestamps/name-0 HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
    ] {
        api.raw(request)
            .await
            .assert_problem(400, "invalid-request");
    }
    assert_eq!(
        api.raw("GET /v1/timestamps/name-0 HTTP/1.0\r\n\r\n")
            .await
            .status,
        200
    );

    // An integer too large is out of range whatever its size; null is not "absent"; -0 is 0.
    for too_large in [
        "253402300800000",
        "18446744073709551615",
        "18446744073709551616",
    ] {
        api.put_json(
            "/v1/timestamps/x",
            &format!(r#"{{"epoch_ms": {too_large}}}"#),
        )
        .await
        .assert_problem(400, "out-of-range");
    }
    let body = api
        .put_json("/v1/timestamps/x", r#"{"timestamp": null, "epoch_ms": 5}"#)
        .await
        .assert_problem(400, "invalid-field");
    assert!(
        body["detail"].as_str().unwrap().contains("exactly one"),
        "{body}"
    );
    let zero = api
        .put_json("/v1/timestamps/x", r#"{"epoch_ms": -0}"#)
        .await;
    assert_eq!(zero.status, 201);
    assert_eq!(zero.json()["epoch_ms"], 0);
    assert_no_panics(&service).await;
}

#[tokio::test]
async fn error_bodies_carry_the_request_id_and_no_internals() {
    let (mut redis, service) = service_with(0, &[]);
    let () = redis.client().set("ts:garbled", "yesterday").unwrap();

    let internal = service.api.get("/v1/timestamps/garbled").await;
    let body = internal.assert_problem(500, "internal");
    assert_eq!(body["request_id"].as_str(), internal.header("x-request-id"));
    let text = body.to_string();
    assert!(!text.contains("ts:") && !text.contains("garbled"), "{text}");
    // The specifics are in the log, under the same request id.
    let request_id = body["request_id"].as_str().unwrap().to_owned();
    eventually(Duration::from_secs(5), || async {
        service.events().iter().any(|event| {
            event["message"] == "answering 500"
                && event["span"]["request_id"] == request_id.as_str()
                && event["error"]
                    .as_str()
                    .is_some_and(|error| error.contains("ts:garbled"))
        })
    })
    .await;

    redis.stop();
    let unavailable = service.api.get("/v1/timestamps/garbled").await;
    let body = unavailable.assert_problem(503, "unavailable");
    assert_eq!(
        body["request_id"].as_str(),
        unavailable.header("x-request-id")
    );
    // The class of failure, from a fixed set, and no internals: no address, no OS error.
    assert_eq!(body["cause"], "refused", "{body}");
    let text = body.to_string();
    assert!(
        !text.contains("127.0.0.1") && !text.contains("os error"),
        "{text}"
    );
    let not_ready = service.admin.get("/readyz").await.json();
    assert_eq!(not_ready["reason"], "redis: cannot connect (refused)");
    assert_no_panics(&service).await;
}

/// The answer to `request` sent as is, read until the service closes the connection.
async fn raw_answer(client: Client, request: Vec<u8>) -> String {
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(client.addr).unwrap();
        stream.write_all(&request).unwrap();
        read_until_closed(&mut stream, Duration::from_secs(5)).0
    })
    .await
    .unwrap()
}

fn with_headers(count: usize, value_bytes: usize) -> Vec<u8> {
    let mut request = b"GET /v1/timestamps HTTP/1.1\r\nHost: h\r\nConnection: close\r\n".to_vec();
    for i in 0..count {
        request.extend_from_slice(format!("X-{i}: {}\r\n", "a".repeat(value_bytes)).as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    request
}

#[tokio::test]
async fn oversized_heads_and_lengths_get_problem_documents_where_hyper_lets_them() {
    let (_redis, service) = service_with(0, &[]);
    let api = service.api;

    // A Content-Length no body can have is a 413, up to the largest hyper parses (u64::MAX -
    // 2); beyond it hyper answers itself (below): the service no longer rewrites the digits.
    for length in ["1025", "18446744073709551613"] {
        let request = format!(
            "PUT /v1/timestamps/a HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n\
             Content-Length: {length}\r\nConnection: close\r\n\r\n"
        );
        let response = promptly(length, api.raw(&request)).await;
        response.assert_problem(413, "payload-too-large");
    }

    // Also when the number arrives in pieces.
    let split = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(api.addr).unwrap();
        for piece in [
            "PUT /v1/timestamps/a HTTP/1.1\r\nHost: h\r\nContent-Length: 18446",
            "744073709551613",
            "\r\nConnection: close\r\n\r\n",
        ] {
            stream.write_all(piece.as_bytes()).unwrap();
            std::thread::sleep(Duration::from_millis(50));
        }
        read_until_closed(&mut stream, Duration::from_secs(5)).0
    })
    .await
    .unwrap();
    assert!(split.starts_with("HTTP/1.1 413 "), "{split}");

    // Over the service's own limits (64 fields, 8 KiB) and under hyper's: a problem document.
    for request in [with_headers(70, 1), with_headers(1, 10 * 1024)] {
        let answer = raw_answer(api, request).await;
        assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
        assert!(
            answer.contains("application/problem+json") && answer.contains("headers-too-large"),
            "{answer}"
        );
    }

    // What hyper answers itself, with an empty body, as docs/api.md lists it.
    for (request, status) in [
        (with_headers(120, 1), "431 Request Header Fields Too Large"),
        (
            with_headers(1, 20 * 1024),
            "431 Request Header Fields Too Large",
        ),
        (b"GET\r\n\r\n".to_vec(), "400 Bad Request"),
        (
            b"GET / HTTP/1.1\r\nHost: h\r\nno colon\r\n\r\n".to_vec(),
            "400 Bad Request",
        ),
        (
            b"PUT /v1/timestamps/a HTTP/1.1\r\nHost: h\r\nContent-Length: x\r\n\r\n".to_vec(),
            "400 Bad Request",
        ),
        // A Content-Length over hyper's largest: 431 up to u64::MAX, 400 beyond.
        (
            b"PUT /v1/timestamps/a HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551615\r\n\r\n"
                .to_vec(),
            "431 Request Header Fields Too Large",
        ),
        (
            b"PUT /v1/timestamps/a HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551616\r\n\r\n"
                .to_vec(),
            "400 Bad Request",
        ),
        (
            b"GET / HTTP/1.2\r\nHost: h\r\n\r\n".to_vec(),
            "400 Bad Request",
        ),
    ] {
        let answer = raw_answer(api, request).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}\r\n")),
            "{answer}"
        );
        assert!(answer.contains("\r\ncontent-length: 0\r\n"), "{answer}");
    }
    // The HTTP/2 preface without an upgrade: the connection is closed without an answer.
    assert_eq!(
        raw_answer(api, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec()).await,
        ""
    );
    assert_no_panics(&service).await;
}

#[tokio::test]
async fn an_overlong_request_target_is_414_and_overlong_header_fields_stay_431() {
    let (_redis, service) = service_with(0, &[]);
    let api = service.api;
    // Over the 6 KiB target limit and well under hyper's 16 KiB head: the service's own 414.
    for target in [
        format!("/v1/timestamps/{}", "a".repeat(14 * 1024)),
        format!("/v1/timestamps?limit=1&x={}", "b".repeat(7000)),
    ] {
        let request =
            format!("GET {target} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").into_bytes();
        let answer = raw_answer(api, request).await;
        assert!(answer.starts_with("HTTP/1.1 414 "), "{answer:.200}");
        assert!(answer.contains("uri-too-long"), "{answer:.400}");
    }
    // A target at the limit is routed (here: a name too long, which is a 400 of its own).
    let at_limit = format!(
        "/v1/timestamps/{}",
        "a".repeat(6 * 1024 - "/v1/timestamps/".len())
    );
    let request =
        format!("GET {at_limit} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").into_bytes();
    let answer = raw_answer(api, request).await;
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer:.200}");
    assert!(answer.contains("invalid-name"), "{answer:.400}");
    // Header fields over theirs are still 431, with a short target.
    let answer = raw_answer(api, with_headers(1, 10 * 1024)).await;
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer:.200}");
    assert_no_panics(&service).await;
}

#[tokio::test]
async fn an_overlong_method_is_refused_without_echoing_or_logging_it_whole() {
    let (_redis, service) = service_with(0, &[]);
    let method = "X".repeat(15_000);
    let request =
        format!("{method} /v1/timestamps HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    let answer = raw_answer(service.api, request.into_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer:.200}");
    assert!(answer.contains("invalid-request"), "{answer:.400}");
    assert!(answer.len() < 1024, "{} bytes of answer", answer.len());
    // A method at the limit is an ordinary unknown method: 405, echoed.
    let method = "Y".repeat(32);
    let request =
        format!("{method} /v1/timestamps HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    let answer = raw_answer(service.api, request.into_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 405 "), "{answer:.200}");
    assert!(answer.contains(&method), "{answer}");

    let logged = eventually(Duration::from_secs(5), || async {
        service
            .events()
            .iter()
            .filter(|event| event["target"] == "timestamp_api::access")
            .count()
            == 2
    })
    .await;
    println!("both requests logged within {logged:?}");
    for line in service.stdout() {
        assert!(line.len() < 1024, "a log line of {} bytes", line.len());
    }
    assert_no_panics(&service).await;
}

/// Sends `request`, shuts down the sending side (as `nc -N` does), and reads the answer.
fn half_closed(client: Client, request: &str) -> String {
    let mut stream = TcpStream::connect(client.addr).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    read_until_closed(&mut stream, Duration::from_secs(5)).0
}

#[tokio::test]
async fn a_request_followed_by_a_half_close_is_answered_applied_logged_and_counted() {
    let (redis, service) = service_with(1, &[]);
    let (api, admin) = (service.api, service.admin);
    let body = r#"{"epoch_ms": 1795628183123}"#;
    let put = move |name: usize| {
        format!(
            "PUT /v1/timestamps/half-{name} HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let answers = tokio::task::spawn_blocking(move || {
        let mut answers: Vec<String> = (0..30).map(|name| half_closed(api, &put(name))).collect();
        for request in [
            "GET /v1/timestamps/name-0 HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET /v1/timestamps?limit=5 HTTP/1.1\r\nHost: h\r\n\r\n",
            "DELETE /v1/timestamps/name-0 HTTP/1.1\r\nHost: h\r\n\r\n",
        ] {
            answers.push(half_closed(api, request));
        }
        answers.push(half_closed(
            admin,
            "GET /readyz HTTP/1.1\r\nHost: h\r\n\r\n",
        ));
        answers
    })
    .await
    .unwrap();
    let statuses: Vec<&str> = answers
        .iter()
        .map(|answer| answer.get(9..12).unwrap_or("none"))
        .collect();
    let mut expected = vec!["201"; 30];
    expected.extend(["200", "200", "204", "200"]);
    assert_eq!(statuses, expected);

    let mut redis = redis.client();
    for name in 0..30 {
        let stored: Option<i64> = redis.get(format!("ts:half-{name}")).unwrap();
        assert_eq!(stored, Some(1_795_628_183_123), "half-{name}");
    }
    let metrics = metrics_of(&service).await;
    let series = r#"http_requests_total{method="PUT",route="/v1/timestamps/{name}",status="201"}"#;
    assert_eq!(metric(&metrics, series), Some(30.0), "{metrics}");
    eventually(Duration::from_secs(5), || async {
        service
            .events()
            .iter()
            .filter(|event| event["target"] == "timestamp_api::access" && event["method"] == "PUT")
            .count()
            == 30
    })
    .await;
    assert_no_panics(&service).await;
}

#[tokio::test]
async fn a_write_whose_client_resets_the_connection_is_still_logged_and_counted() {
    let (redis, service) = service_with(0, &[]);
    // Redis holds every command while paused: the PUT is in flight when its client goes away.
    redis.pause();
    let api = service.api;
    tokio::task::spawn_blocking(move || {
        let body = r#"{"epoch_ms": 7}"#;
        let mut stream = TcpStream::connect(api.addr).unwrap();
        let request = format!(
            "PUT /v1/timestamps/gone HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).unwrap();
        // Well within the harness's 250 ms command timeout, so the write can still succeed.
        std::thread::sleep(Duration::from_millis(100));
        // SO_LINGER 0: close with a reset, as a client that crashed or timed out does.
        linger_zero(&stream);
    })
    .await
    .unwrap();
    redis.resume();
    let stored = eventually(Duration::from_secs(5), || {
        let mut redis = redis.client();
        async move { redis.get::<_, Option<i64>>("ts:gone").unwrap() == Some(7) }
    })
    .await;
    println!("the write was applied {stored:?} after Redis resumed");
    eventually(Duration::from_secs(5), || async {
        let series =
            r#"http_requests_total{method="PUT",route="/v1/timestamps/{name}",status="201"}"#;
        metric(&metrics_of(&service).await, series) == Some(1.0)
    })
    .await;
    eventually(Duration::from_secs(5), || async {
        service.events().iter().any(|event| {
            event["target"] == "timestamp_api::access"
                && event["method"] == "PUT"
                && event["status"] == 201
        })
    })
    .await;
    assert_no_panics(&service).await;
}

/// Sets SO_LINGER to 0 on `stream`, so that dropping it sends a reset.
fn linger_zero(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt reads `linger` (its size is passed) on a socket we own.
    let result = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::from_ref(&linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(result, 0, "{}", std::io::Error::last_os_error());
}

#[tokio::test]
async fn the_descriptor_limit_is_raised_at_start_up_and_a_hard_limit_too_low_caps_connections() {
    let redis = RedisServer::start();

    // A soft limit below what 1,024 connections per listener need, under the hard one this
    // process has (a process may lower its hard limit, never raise it).
    let mut ours = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct passed to it.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut ours) },
        0
    );
    let hard = ours.rlim_max.min(1 << 20);
    assert!(
        hard > 256,
        "this test needs a hard file limit above 256, not {hard}"
    );
    let raised = ServiceProcess::against_with_fd_limit(&redis, 256, hard);
    assert_eq!(raised.fd_limit(), (hard, hard));
    assert!(
        !raised
            .stdout()
            .iter()
            .any(|line| line.contains("file descriptor limit")),
        "{:?}",
        raised.stdout()
    );
    drop(raised);

    // A hard limit of 200: (200 - 64 reserved) / 2 = 68 connections per listener, said at
    // start-up; connections over that get the documented 503, not a wait in the listen queue.
    let capped = ServiceProcess::against_with_fd_limit(&redis, 200, 200);
    let warning = capped
        .events()
        .into_iter()
        .find(|event| {
            event["message"]
                .as_str()
                .is_some_and(|message| message.contains("file descriptor limit"))
        })
        .unwrap_or_else(|| panic!("no start-up warning: {:?}", capped.stdout()));
    assert_eq!(warning["level"], "WARN", "{warning}");
    assert_eq!(warning["serving"], 68, "{warning}");
    assert_eq!(warning["needed"], 2112, "{warning}");
    let api = capped.api;
    let answers = tokio::task::spawn_blocking(move || {
        let held: Vec<TcpStream> = (0..68)
            .map(|_| TcpStream::connect(api.addr).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        let answers: Vec<String> = (0..20)
            .map(|_| {
                let mut over = TcpStream::connect(api.addr).unwrap();
                read_until_closed(&mut over, Duration::from_secs(5)).0
            })
            .collect();
        drop(held);
        answers
    })
    .await
    .unwrap();
    for answer in &answers {
        assert!(answer.starts_with("HTTP/1.1 503 "), "{answer:?}");
        assert!(answer.contains("too-many-connections"), "{answer}");
    }
    let metrics = metrics_of(&capped).await;
    assert_eq!(
        metric(
            &metrics,
            r#"timestamp_api_connections_refused_total{listener="api"}"#
        ),
        Some(20.0),
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            r#"timestamp_api_accept_errors_total{listener="api"}"#
        ),
        Some(0.0),
        "{metrics}"
    );
    assert_no_panics(&capped).await;
}

#[tokio::test]
async fn a_burst_of_full_pages_nobody_reads_stays_within_the_budget_and_memory_comes_back() {
    let _alone = HEAVY.lock().await;
    raise_fd_limit();
    let budget_mib = 16.0;
    // Names of the longest length (128).
    let (_redis, service) = service_with_names((0..1000).map(|i| format!("{i:0>128}")), &[]);
    // Warm up: the runtime's threads, Redis connection and one page, as a service in use has.
    let warm = service.api.get("/v1/timestamps?limit=1000").await;
    assert_eq!(warm.json()["items"].as_array().unwrap().len(), 1000);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = service.rss_mib();

    // 200 clients, each 20 pipelined requests for a page of 1,000 items (some 200 KB of JSON):
    // without a budget, two pages held per connection, some 80 MB.
    let pipelined = "GET /v1/timestamps?limit=1000 HTTP/1.1\r\nHost: h\r\n\r\n".repeat(20);
    let mut clients = Vec::new();
    for _ in 0..200 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = socket.connect(service.api.addr).await.unwrap();
        let _ = stream.try_write(pipelined.as_bytes());
        clients.push(stream);
    }
    let mut peak: f64 = 0.0;
    let mut held_peak: f64 = 0.0;
    for _ in 0..30 {
        peak = peak.max(service.rss_mib());
        let metrics = metrics_of(&service).await;
        // Read, not required, here: the memory is what is measured first.
        let held = metric(&metrics, "timestamp_api_response_buffer_bytes");
        held_peak = held_peak.max(held.unwrap_or(f64::NAN));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Others still get served meanwhile: a single value at once, a page or a 503 `busy`.
    let got = promptly(
        "GET",
        service.api.get(&format!("/v1/timestamps/{:0>128}", 7)),
    )
    .await;
    assert_eq!(got.status, 200);
    let page = service.api.get("/v1/timestamps?limit=10").await;
    assert!(
        page.status == 200 || page.header("content-type") == Some("application/problem+json"),
        "{page:?}"
    );
    // Or, with the burst's reads queued on the one Redis connection, `unavailable`: the page's
    // own reads not back within `redis.command_timeout` (once in CI, 2026-12-03). Either way a
    // prompt 503 with a problem document, never a hang.
    if page.status != 200 {
        page.assert_problem_of(503, &["busy", "unavailable"]);
    }
    drop(clients);
    println!(
        "RSS: {idle:.1} MiB idle, at most {peak:.1} MiB under the burst; {:.1} MiB of the \
         budget held at most",
        held_peak / 1024.0 / 1024.0
    );

    // Back within twice the idle value (the allocator gives freed pages back to the kernel),
    // and at least half the way down, which glibc's malloc does not do by itself.
    let settled = (2.0 * idle).min(idle + (peak - idle) / 2.0);
    let back = eventually(Duration::from_secs(10), || async {
        service.rss_mib() <= settled
    })
    .await;
    println!("RSS within twice the idle value {back:?} after the clients left");
    assert!(
        held_peak > 0.0 && held_peak <= budget_mib * 1024.0 * 1024.0,
        "timestamp_api_response_buffer_bytes peaked at {held_peak}"
    );
    // docs/operations.md, "Memory": idle + the budget + 32 KiB per connection + the
    // allocator's slack (16 MiB).
    let bound = idle + budget_mib + 200.0 * 32.0 / 1024.0 + 16.0;
    assert!(peak <= bound, "peak {peak:.1} MiB over {bound:.1} MiB");
    assert_no_panics(&service).await;
}
