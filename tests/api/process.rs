//! The real binary: graceful shutdown on SIGTERM, the drain delay, exit codes, the health
//! check subcommand, and what its logs contain (and never contain).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::acl::SERVICE_COMMANDS;
use crate::harness::redis_server::RedisServer;
use crate::harness::service_process::{ServiceProcess, binary};
use crate::harness::timing::{eventually, slack};

#[tokio::test]
async fn a_request_in_flight_at_sigterm_completes_and_the_process_exits_0() {
    let redis = RedisServer::start();
    let shutdown_timeout = Duration::from_secs(5);
    let mut service = ServiceProcess::against(
        &redis,
        &[(
            "TSAPI_SHUTDOWN_TIMEOUT",
            &humantime::format_duration(shutdown_timeout).to_string(),
        )],
    );

    // Headers and half the body: the request is in flight.
    let mut in_flight = TcpStream::connect(service.api.addr).unwrap();
    in_flight
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    in_flight
        .write_all(b"PUT /v1/timestamps/in-flight HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{\"epoch_ms\": ")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));

    let signalled = Instant::now();
    service.signal(libc::SIGTERM);
    // The listener closes (no drain delay by default) while the request is still open.
    eventually(slack(), || async {
        TcpStream::connect(service.api.addr).is_err()
    })
    .await;
    in_flight.write_all(b"42}").unwrap();
    let mut answer = String::new();
    in_flight.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 201 Created"), "{answer}");
    assert!(answer.ends_with(r#""epoch_ms":42}"#), "{answer}");

    // The request finished, so the shutdown did not have to wait for its timeout.
    let status = service.wait(shutdown_timeout + slack());
    assert_eq!(status.code(), Some(0));
    assert!(
        signalled.elapsed() < shutdown_timeout,
        "{:?}",
        signalled.elapsed()
    );
    let messages: Vec<String> = service
        .events()
        .iter()
        .map(|e| e["message"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(
        messages.iter().any(|m| m == "shutdown signal received"),
        "{messages:?}"
    );
    assert!(
        messages.last().is_some_and(|m| m.starts_with("stopped")),
        "{messages:?}"
    );
}

#[tokio::test]
async fn requests_that_never_finish_are_cut_at_the_shutdown_timeout() {
    let redis = RedisServer::start();
    let shutdown_timeout = Duration::from_secs(1);
    let mut service = ServiceProcess::against(
        &redis,
        &[(
            "TSAPI_SHUTDOWN_TIMEOUT",
            &humantime::format_duration(shutdown_timeout).to_string(),
        )],
    );
    let mut stuck = TcpStream::connect(service.api.addr).unwrap();
    stuck
        .write_all(b"PUT /v1/timestamps/stuck HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));

    let signalled = Instant::now();
    service.signal(libc::SIGTERM);
    let status = service.wait(shutdown_timeout + slack());

    assert_eq!(status.code(), Some(0));
    // Not before the timeout (less the timer's granularity), and not long after it.
    let took = signalled.elapsed();
    assert!(
        took >= shutdown_timeout - Duration::from_millis(100) && took < shutdown_timeout + slack(),
        "{took:?}"
    );
    drop(stuck);
}

#[tokio::test]
async fn during_the_drain_delay_readiness_fails_but_requests_are_served() {
    let redis = RedisServer::start();
    // Long enough for the checks below to run inside it, however slow the machine.
    let drain_delay = slack() * 3;
    let mut service = ServiceProcess::against(
        &redis,
        &[(
            "TSAPI_DRAIN_DELAY",
            &humantime::format_duration(drain_delay).to_string(),
        )],
    );
    assert_eq!(service.admin.get("/readyz").await.status, 200);

    service.signal(libc::SIGINT);
    eventually(slack(), || async {
        service.admin.get("/readyz").await.status == 503
    })
    .await;
    let body = service.admin.get("/readyz").await.json();
    assert_eq!(body["reason"], "shutting down");
    assert_eq!(service.admin.get("/livez").await.status, 200);
    assert_eq!(
        service
            .api
            .put_empty("/v1/timestamps/during-drain")
            .await
            .status,
        201
    );

    assert_eq!(service.wait(drain_delay + slack()).code(), Some(0));
    assert!(TcpStream::connect(service.api.addr).is_err());
}

#[tokio::test]
async fn the_healthcheck_command_follows_readiness() {
    let mut redis = RedisServer::start();
    let service = ServiceProcess::against(&redis, &[]);
    let readyz = format!("http://{}/readyz", service.admin.addr);
    let check = |env: &[(&str, &str)], args: &[&str]| {
        let output = binary(env).arg("healthcheck").args(args).output().unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };

    assert_eq!(check(&[], &["--url", &readyz]), (Some(0), String::new()));
    // Without --url it probes the configured admin address.
    let admin = service.admin.addr.to_string();
    assert_eq!(check(&[("TSAPI_ADMIN_LISTEN", &admin)], &[]).0, Some(0));

    redis.stop();
    let (code, stderr) = check(&[], &["--url", &readyz]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("503") && stderr.contains("redis"),
        "{stderr}"
    );

    let (code, stderr) = check(&[], &["--url", "http://127.0.0.1:1/readyz"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("cannot connect"), "{stderr}");
}

#[test]
fn a_bad_configuration_exits_2_with_one_line_naming_the_key() {
    for (env, args, expected) in [
        (
            &[("TSAPI_LISTEN", "nowhere")][..],
            &[][..],
            "listen (from environment variable TSAPI_LISTEN)",
        ),
        (
            &[("TSAPI_REDIS__PASSWORD_FILE", "/nonexistent")],
            &["config"],
            "redis.password_file (from environment",
        ),
        (
            &[],
            &["--config", "/nonexistent.toml"],
            "configuration file /nonexistent.toml (named by --config)",
        ),
        (
            &[("TSAPI_CONFIG", "/nonexistent.toml")],
            &["config"],
            "(named by TSAPI_CONFIG)",
        ),
    ] {
        let output = binary(env).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert!(output.stdout.is_empty());
    }
}

#[tokio::test]
async fn logs_are_json_lines_with_an_access_log_carrying_the_request_id() {
    let redis = RedisServer::start();
    let mut service = ServiceProcess::against(&redis, &[]);
    let response = service
        .api
        .send(
            hyper::Method::PUT,
            "/v1/timestamps/build-42",
            &[("x-request-id", "trace-abc")],
            None,
        )
        .await;
    assert_eq!(response.status, 201);
    service.signal(libc::SIGTERM);
    service.wait(Duration::from_secs(5));

    let events = service.events();
    for event in &events {
        for field in ["timestamp", "level", "target", "message"] {
            assert!(event.get(field).is_some(), "{field} missing: {event}");
        }
    }
    let starting = events
        .iter()
        .find(|e| e["message"] == "starting")
        .expect("a start-up event");
    assert_eq!(starting["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        starting["git_sha"].is_string()
            && starting["listen"] == "127.0.0.1:0"
            && starting["admin_listen"].is_string()
    );
    let config: Value = serde_json::from_str(starting["config"].as_str().unwrap()).unwrap();
    assert_eq!(config["redis"]["url"], redis.url());

    let access: Vec<&Value> = events
        .iter()
        .filter(|e| e["target"] == "timestamp_api::access")
        .collect();
    assert_eq!(access.len(), 1, "{access:?}");
    let line = access[0];
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["method"], "PUT");
    assert_eq!(line["route"], "/v1/timestamps/{name}");
    assert_eq!(line["status"], 201);
    assert!(line["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0));
    assert_eq!(line["span"]["request_id"], "trace-abc");
    assert!(
        !line.to_string().contains("build-42"),
        "the raw path leaked: {line}"
    );
}

#[tokio::test]
async fn events_logged_while_serving_a_request_carry_its_id() {
    let mut redis = RedisServer::start();
    let mut service = ServiceProcess::against(&redis, &[]);
    redis.stop();
    let response = service
        .api
        .send(
            hyper::Method::GET,
            "/v1/timestamps/a",
            &[("x-request-id", "during-outage")],
            None,
        )
        .await;
    assert_eq!(response.status, 503);
    service.signal(libc::SIGTERM);
    service.wait(Duration::from_secs(5));

    let warning = service
        .events()
        .into_iter()
        .find(|e| e["message"] == "answering 503")
        .expect("the 503 is logged");
    assert_eq!(warning["level"], "WARN");
    assert_eq!(warning["span"]["request_id"], "during-outage");
}

#[test]
fn the_text_format_is_for_humans() {
    let redis = RedisServer::start();
    let mut service = ServiceProcess::against(&redis, &[("TSAPI_LOG_FORMAT", "text")]);
    service.signal(libc::SIGTERM);
    assert_eq!(service.wait(Duration::from_secs(5)).code(), Some(0));
    let lines = service.stdout();
    assert!(
        lines
            .iter()
            .any(|line| line.contains("INFO") && line.contains("starting")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .all(|line| serde_json::from_str::<Value>(line).is_err()),
        "{lines:?}"
    );
}

#[tokio::test]
async fn the_redis_password_never_appears_in_logs_config_output_or_error_bodies() {
    const PASSWORD: &str = "pw-3f9c1b7e0d55a8e2";
    const WRONG_PASSWORD: &str = "pw-wrong-91c04d2b7f";
    let dir = tempfile::tempdir().unwrap();
    let acl = dir.path().join("users.acl");
    std::fs::write(
        &acl,
        format!(
            "user default off\nuser app on >{PASSWORD} ~ts:* resetchannels -@all {}\n",
            SERVICE_COMMANDS.trim()
        ),
    )
    .unwrap();
    let (right, wrong) = (dir.path().join("right"), dir.path().join("wrong"));
    std::fs::write(&right, format!("{PASSWORD}\n")).unwrap();
    std::fs::write(&wrong, WRONG_PASSWORD).unwrap();
    let mut redis = RedisServer::start_with(&["--aclfile", acl.to_str().unwrap()]);
    let url = redis.url();
    let (right, wrong) = (right.display().to_string(), wrong.display().to_string());
    let with_password_file = |file: &str| {
        [
            ("TSAPI_REDIS__URL", url.clone()),
            ("TSAPI_REDIS__USERNAME", "app".to_owned()),
            ("TSAPI_REDIS__PASSWORD_FILE", file.to_owned()),
            ("TSAPI_LOG", "debug".to_owned()),
        ]
    };
    let (right_env, wrong_env) = (with_password_file(&right), with_password_file(&wrong));
    fn borrow<'a>(env: &'a [(&'static str, String); 4]) -> [(&'static str, &'a str); 4] {
        env.each_ref().map(|(name, value)| (*name, value.as_str()))
    }

    let mut seen = Vec::new();
    let mut good = ServiceProcess::start(&borrow(&right_env));
    let mut bad = ServiceProcess::start(&borrow(&wrong_env));
    assert_eq!(good.api.put_empty("/v1/timestamps/a").await.status, 201);
    for service in [&good, &bad] {
        for response in [
            service.api.get("/v1/timestamps/a").await,
            service.api.get("/v1/timestamps/-bad").await,
            service.api.put_json("/v1/timestamps/a", "{").await,
            service.api.get("/v1/timestamps?cursor=zz").await,
            service.admin.get("/readyz").await,
            service.admin.get("/metrics").await,
        ] {
            seen.push(String::from_utf8_lossy(&response.body).into_owned());
        }
    }
    assert_eq!(
        bad.api.get("/v1/timestamps/a").await.status,
        503,
        "a wrong password gives 503s"
    );
    redis.stop();
    for response in [
        good.api.get("/v1/timestamps/a").await,
        good.admin.get("/readyz").await,
    ] {
        assert_eq!(response.status, 503);
        seen.push(String::from_utf8_lossy(&response.body).into_owned());
    }
    for command in [&["config"][..], &["healthcheck"][..]] {
        let output = binary(&borrow(&right_env)).args(command).output().unwrap();
        seen.push(String::from_utf8_lossy(&output.stdout).into_owned());
        seen.push(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    assert!(
        seen.iter()
            .any(|text| text.contains("# redis.password: [redacted]")),
        "{seen:?}"
    );
    for service in [&mut good, &mut bad] {
        service.signal(libc::SIGTERM);
        service.wait(Duration::from_secs(5));
        seen.extend(service.stdout());
        seen.extend(service.stderr());
    }

    assert!(seen.len() > 20);
    for text in &seen {
        assert!(
            !text.contains(PASSWORD) && !text.contains(WRONG_PASSWORD),
            "a password leaked: {text}"
        );
    }
}
