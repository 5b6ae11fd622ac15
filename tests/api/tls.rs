//! TLS to Redis (`rediss://`) against a real `redis-server --tls-port`, with certificates made
//! for the run (`harness::certs`): the API over TLS with a client certificate the server
//! requires, `redis.tls.server_name`, each way a TLS connection can fail answered as a 503
//! that names its class within the command timeout, and certificates renewed on disk taken up
//! at the next reconnect without a restart.

use std::time::{Duration, Instant};

use serde_json::Value;
use timestamp_api::Config;

use crate::harness::app::TestApp;
use crate::harness::certs::{Pair, Pki, ServerTls, Validity};
use crate::harness::client::metric;
use crate::harness::redis_server::RedisServer;
use crate::harness::timing::{eventually, reconnects_within, slack};

/// The service's TLS files: trust `ca`, and show `client` if given.
fn trust(config: &mut Config, ca: &Pki, client: Option<&Pair>) {
    config.redis.tls.ca_file = Some(ca.ca_file().to_owned());
    if let Some(client) = client {
        config.redis.tls.client_cert_file = Some(client.cert.clone());
        config.redis.tls.client_key_file = Some(client.key.clone());
    }
}

async fn failures(app: &TestApp, cause: &str) -> f64 {
    let metrics = app.admin.get("/metrics").await.text();
    metric(
        &metrics,
        &format!("timestamp_api_redis_reconnection_failures_total{{cause=\"{cause}\"}}"),
    )
    .unwrap_or(0.0)
}

/// The service against `redis`, configured by `configure`, cannot connect, for the reason
/// `cause` names: it counts the failures under that label, and a read, a write and `/readyz`
/// each answer 503 within the command timeout, naming it. None hangs; the service keeps running.
async fn assert_unreachable(redis: RedisServer, configure: impl FnOnce(&mut Config), cause: &str) {
    let app = &TestApp::spawn(redis, configure).await;
    eventually(reconnects_within(), || async {
        failures(app, cause).await >= 1.0
    })
    .await;
    let bound = Config::default().redis.command_timeout + slack();
    for response in [
        {
            let start = Instant::now();
            (app.api.get("/v1/timestamps/a").await, start.elapsed())
        },
        {
            let start = Instant::now();
            (
                app.api
                    .put_json("/v1/timestamps/a", r#"{"epoch_ms": 1}"#)
                    .await,
                start.elapsed(),
            )
        },
    ] {
        let (response, took) = response;
        let body = response.assert_problem(503, "unavailable");
        assert_eq!(body["cause"], cause, "{body}");
        assert!(took < bound, "took {took:?}");
        // No certificate bytes, no internals: the class and what to fix.
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(!detail.contains("BEGIN"), "{detail}");
    }
    let ready = app.admin.get("/readyz").await;
    assert_eq!(ready.status, 503);
    let ready: Value = serde_json::from_slice(&ready.body).expect("a JSON readiness body");
    assert_eq!(
        ready["reason"],
        format!("redis: cannot connect ({cause})"),
        "{ready}"
    );
}

#[tokio::test]
async fn the_api_works_over_tls_with_the_client_certificate_the_server_requires() {
    let pki = Pki::new("main");
    let client = pki.loopback("service");
    let app = TestApp::spawn(
        RedisServer::start_tls(ServerTls::from(&pki, true), &[]),
        |config| trust(config, &pki, Some(&client)),
    )
    .await;
    assert!(app.redis.url().starts_with("rediss://"));

    let put = app
        .api
        .put_json("/v1/timestamps/deploy", r#"{"epoch_ms": 1700000000000}"#)
        .await;
    assert_eq!(put.status, 201, "{}", put.text());
    let get = app.api.get("/v1/timestamps/deploy").await;
    assert_eq!(get.status, 200);
    assert_eq!(get.json()["epoch_ms"], 1_700_000_000_000_i64);
    let list = app.api.get("/v1/timestamps?limit=10").await.json();
    assert_eq!(list["items"][0]["name"], "deploy", "{list}");
    // What the service wrote is in that Redis, read over a TLS connection of the harness's.
    let stored: Option<i64> = redis::cmd("GET")
        .arg("ts:deploy")
        .query(&mut app.redis.client())
        .expect("GET over the harness's TLS connection");
    assert_eq!(stored, Some(1_700_000_000_000));
    assert_eq!(app.api.delete("/v1/timestamps/deploy").await.status, 204);
    assert_eq!(app.api.get("/v1/timestamps/deploy").await.status, 404);
    assert_eq!(app.admin.get("/readyz").await.status, 200);
}

#[tokio::test]
async fn a_server_signed_by_another_ca_is_refused_as_tls_unknown_ca() {
    let (pki, other) = (Pki::new("server's"), Pki::new("other"));
    assert_unreachable(
        RedisServer::start_tls(ServerTls::from(&pki, false), &[]),
        |config| trust(config, &other, None),
        "tls_unknown_ca",
    )
    .await;
}

/// A certificate for another name: refused, until `redis.tls.server_name` names it.
#[tokio::test]
async fn a_certificate_for_another_name_is_refused_unless_server_name_says_it() {
    let pki = Pki::new("main");
    let tls = ServerTls {
        server: pki.issue("elsewhere", &["redis.internal.example"], Validity::Current),
        ..ServerTls::from(&pki, false)
    };
    assert_unreachable(
        RedisServer::start_tls(tls.clone(), &[]),
        |config| trust(config, &pki, None),
        "tls_name_mismatch",
    )
    .await;

    let named = TestApp::spawn(RedisServer::start_tls(tls, &[]), |config| {
        trust(config, &pki, None);
        config.redis.tls.server_name = Some("redis.internal.example".into());
    })
    .await;
    eventually(reconnects_within(), || async {
        named.api.put_empty("/v1/timestamps/a").await.status == 201
    })
    .await;
}

#[tokio::test]
async fn an_expired_server_certificate_is_refused_as_tls_expired() {
    let pki = Pki::new("main");
    let tls = ServerTls {
        server: pki.issue("expired", &["127.0.0.1"], Validity::Expired),
        ..ServerTls::from(&pki, false)
    };
    assert_unreachable(
        RedisServer::start_tls(tls, &[]),
        |config| trust(config, &pki, None),
        "tls_expired",
    )
    .await;
}

/// TLS 1.3 completes the handshake before the server checks the client's certificate; the
/// PING after it is what finds out.
#[tokio::test]
async fn no_client_certificate_or_one_the_server_does_not_trust_is_tls_client_certificate() {
    let (pki, other) = (Pki::new("main"), Pki::new("other"));
    let untrusted_client = other.loopback("service");
    for client in [None, Some(&untrusted_client)] {
        assert_unreachable(
            RedisServer::start_tls(ServerTls::from(&pki, true), &[]),
            |config| trust(config, &pki, client),
            "tls_client_certificate",
        )
        .await;
    }
}

#[tokio::test]
async fn plaintext_to_a_tls_port_is_closed_and_tls_to_a_plaintext_port_is_tls_handshake() {
    let pki = Pki::new("main");
    let tls_server = RedisServer::start_tls(ServerTls::from(&pki, false), &[]);
    let plaintext_url = tls_server.url().replacen("rediss://", "redis://", 1);
    assert_unreachable(
        tls_server,
        |config| config.redis.url = plaintext_url,
        "closed",
    )
    .await;

    let plain_server = RedisServer::start();
    let tls_url = plain_server.url().replacen("redis://", "rediss://", 1);
    assert_unreachable(
        plain_server,
        |config| {
            config.redis.url = tls_url;
            trust(config, &pki, None);
        },
        "tls_handshake",
    )
    .await;
}

/// A renewal: a new CA, client pair and server certificate are written over the old files and
/// Redis restarts with them. The service reads the files again at its next connection and
/// writes again, without a restart. A renewal that does not parse is refused, counted, and the
/// last good files stay in use.
#[tokio::test]
async fn renewed_certificates_are_used_at_the_next_reconnect_and_a_bad_renewal_is_refused() {
    let (old, new) = (Pki::new("old"), Pki::new("new"));
    // The service's files are copies, so that the harness can replace them.
    let files = tempfile::tempdir().expect("a directory for the service's TLS files");
    let ca_file = files.path().join("ca.pem");
    std::fs::copy(old.ca_file(), &ca_file).expect("copying the CA");
    let client = Pair {
        cert: files.path().join("client.crt"),
        key: files.path().join("client.key"),
    };
    client.overwrite_with(&old.loopback("service"));
    let server_tls = ServerTls::from(&old, true);
    let mut app = TestApp::spawn(RedisServer::start_tls(server_tls.clone(), &[]), |config| {
        config.redis.tls.ca_file = Some(ca_file.clone());
        config.redis.tls.client_cert_file = Some(client.cert.clone());
        config.redis.tls.client_key_file = Some(client.key.clone());
    })
    .await;
    assert_eq!(app.api.put_empty("/v1/timestamps/a").await.status, 201);

    // Everything renewed from the new CA, on disk, and Redis restarted with it.
    std::fs::copy(new.ca_file(), &ca_file).expect("renewing the CA");
    client.overwrite_with(&new.loopback("service"));
    server_tls.server.overwrite_with(&new.loopback("server"));
    server_tls
        .harness_client
        .overwrite_with(&new.loopback("harness"));
    std::fs::copy(new.ca_file(), &server_tls.ca).expect("renewing the server's CA");
    app.redis.restart();
    let took = eventually(reconnects_within(), || async {
        app.api.put_empty("/v1/timestamps/a").await.status == 200
    })
    .await;
    println!("writing again {took:?} after Redis restarted with renewed certificates");
    let metrics = app.admin.get("/metrics").await.text();
    assert_eq!(
        metric(
            &metrics,
            r#"timestamp_api_redis_tls_reloads_total{outcome="loaded"}"#
        ),
        Some(1.0),
        "{metrics}"
    );

    // A renewal cut short: the key file holds half a PEM block.
    std::fs::write(&client.key, "-----BEGIN PRIVATE KEY-----\nMIIE\n").expect("a bad key");
    app.redis.restart();
    eventually(reconnects_within(), || async {
        app.api.put_empty("/v1/timestamps/a").await.status == 200
    })
    .await;
    let metrics = app.admin.get("/metrics").await.text();
    assert_eq!(
        metric(
            &metrics,
            r#"timestamp_api_redis_tls_reloads_total{outcome="rejected"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
    // Reported once, not at every reconnect: the bad files are still there.
    app.redis.restart();
    eventually(reconnects_within(), || async {
        app.api.put_empty("/v1/timestamps/a").await.status == 200
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let metrics = app.admin.get("/metrics").await.text();
    assert_eq!(
        metric(
            &metrics,
            r#"timestamp_api_redis_tls_reloads_total{outcome="rejected"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
}
