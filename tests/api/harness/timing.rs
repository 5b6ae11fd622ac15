//! Time in the tests: the slack added to every configured time a test checks, how soon the
//! service must serve again after Redis returns, `eventually` for polling a condition, and
//! `HEAVY`, which keeps the tests that load the machine from running at the same time.

use std::time::{Duration, Instant};

/// Held by the tests that load the machine (a thousand connections, tens of megabytes of
/// answers, twelve thousand requests, six redis-servers failing over under writers, a cluster
/// resharded or listed 5,000 names at a time) and by those that compare latencies: on two
/// cores, two of them at once would measure each other rather than the service.
pub static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What a test adds to a time the service is configured to keep before it calls that time
/// missed: `TSAPI_TEST_SLACK` (a duration such as `5s`), 1 s by default. Under `nix flake
/// check` the tests share the builder's cores with clippy, the docs and the image builds, so
/// any step can take much longer than on an idle machine; the Nix check sets 5 s. A bound is
/// the configured time plus this slack, and nothing is retried to hide a miss.
pub fn slack() -> Duration {
    std::env::var("TSAPI_TEST_SLACK").map_or(Duration::from_secs(1), |slack| {
        humantime::parse_duration(&slack)
            .unwrap_or_else(|error| panic!("TSAPI_TEST_SLACK={slack:?}: {error}"))
    })
}

/// How soon the service serves again once Redis is back: docs/architecture.md promises about
/// a second (reconnect back-off at most 400 ms, and the connection task's 1 s check).
pub fn reconnects_within() -> Duration {
    Duration::from_secs(1) + slack()
}

/// Polls `check` until it holds or `within` has passed; returns how long it took.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "condition not met within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
