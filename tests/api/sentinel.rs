//! The service against single Sentinels set up to mislead it: the defects a review found in how
//! it asks them and compares their answers, each reproduced.

use std::time::Duration;

use crate::harness::app::TestApp;
use crate::harness::client::metric;
use crate::harness::redis_server::RedisServer;
use crate::harness::timing::{eventually, reconnects_within};

/// The service, with `redis.url` pointing where nothing listens, asking the Sentinels on
/// `ports` (in that order) for master `m`.
async fn service_asking(ports: &[u16]) -> TestApp {
    let addresses = ports
        .iter()
        .map(|port| format!("127.0.0.1:{port}").parse().unwrap())
        .collect();
    TestApp::spawn(RedisServer::start(), |config| {
        config.redis.url = "redis://127.0.0.1:1/0".to_owned();
        config.redis.sentinel.addresses = addresses;
        config.redis.sentinel.master = Some("m".to_owned());
    })
    .await
}

/// Found in review: the service asked the Sentinel that answered last first again, even when
/// the node it named could not be reached, so one Sentinel that was cut off and out of date
/// kept it on a dead node for good.
#[tokio::test]
async fn a_sentinel_naming_a_dead_node_is_not_asked_first_again() {
    let mut dead = RedisServer::start();
    let live = RedisServer::start();
    let stale = RedisServer::start_sentinel(
        &format!(
            "sentinel monitor m 127.0.0.1 {} 1\nsentinel down-after-milliseconds m 60000\n",
            dead.port()
        ),
        None,
    );
    dead.stop();
    let current = RedisServer::start_sentinel(
        &format!("sentinel monitor m 127.0.0.1 {} 1\n", live.port()),
        None,
    );
    let app = service_asking(&[stale.port(), current.port()]).await;
    eventually(reconnects_within(), || async {
        app.admin.get("/readyz").await.status == 200
    })
    .await;
    assert_eq!(app.api.put_empty("/v1/timestamps/a").await.status, 201);
}

/// Found in review: with an IPv6 primary, the address the service kept (`::1:6379`) never
/// equalled the one Sentinel named (`[::1]:6379`), so every check reconnected.
#[tokio::test]
async fn an_ipv6_primary_is_not_taken_for_a_moved_one() {
    let node = RedisServer::start_with(&["--bind", "127.0.0.1", "::1"]);
    let sentinel = RedisServer::start_sentinel(
        &format!(
            "sentinel monitor m ::1 {} 1\nsentinel down-after-milliseconds m 60000\n",
            node.port()
        ),
        None,
    );
    let app = service_asking(&[sentinel.port()]).await;
    eventually(reconnects_within(), || async {
        app.admin.get("/readyz").await.status == 200
    })
    .await;
    // Three checks, a second apart (src/store/link.rs).
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let text = app.admin.get("/metrics").await.text();
    let moved = r#"timestamp_api_redis_reconnections_total{cause="primary_moved"}"#;
    assert_eq!(metric(&text, moved), None, "{text}");
    let ready = app.admin.get("/readyz").await.json();
    assert_eq!(
        ready["primary"],
        format!("[::1]:{}", node.port()),
        "{ready}"
    );
}

/// Found when the first PING came in: the service's user on the Sentinels may run only
/// `SENTINEL GET-MASTER-ADDR-BY-NAME` (scripts/secrets), so the PING every new connection sends
/// is answered NOPERM. That is an answer: the Sentinel is asked, and the service serves.
#[tokio::test]
async fn a_sentinel_that_allows_the_service_nothing_but_the_question_is_still_asked() {
    let node = RedisServer::start();
    let sentinel = RedisServer::start_sentinel(
        &format!(
            "sentinel monitor m 127.0.0.1 {} 1\n\
             user default off\n\
             user watcher on >watcher-password -@all +sentinel|get-master-addr-by-name\n",
            node.port()
        ),
        None,
    );
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("sentinel_password");
    std::fs::write(&password_file, "watcher-password\n").unwrap();
    let addresses = vec![format!("127.0.0.1:{}", sentinel.port()).parse().unwrap()];
    let app = TestApp::spawn(RedisServer::start(), |config| {
        config.redis.url = "redis://127.0.0.1:1/0".to_owned();
        config.redis.sentinel.addresses = addresses;
        config.redis.sentinel.master = Some("m".to_owned());
        config.redis.sentinel.username = Some("watcher".to_owned());
        config.redis.sentinel.password = Some(timestamp_api::Secret::new("watcher-password"));
        config.redis.sentinel.password_file = Some(password_file);
    })
    .await;
    eventually(reconnects_within(), || async {
        app.admin.get("/readyz").await.status == 200
    })
    .await;
    assert_eq!(app.api.put_empty("/v1/timestamps/a").await.status, 201);
}
