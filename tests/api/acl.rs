//! The service against a Redis whose ACL allows exactly the commands the docs list (GET, SET,
//! DEL, SCAN, MGET, PING) on the key prefix, with the default user off: the whole API works,
//! and Redis records no denied command.

use redis::Commands;

use crate::helpers::{RedisServer, TestApp};

const ACL: &str = "\
user default off
user app on >app-password ~ts:* resetchannels -@all +get +set +del +scan +mget +ping
user admin on >admin-password ~* &* +@all
";

#[tokio::test]
async fn the_documented_command_set_is_all_the_service_needs() {
    let dir = tempfile::tempdir().unwrap();
    let acl_file = dir.path().join("users.acl");
    let password_file = dir.path().join("redis_password");
    std::fs::write(&acl_file, ACL).unwrap();
    std::fs::write(&password_file, "app-password\n").unwrap();
    let redis = RedisServer::start_with(&["--aclfile", acl_file.to_str().unwrap()]);

    let app = TestApp::spawn(redis, |config| {
        config.redis.username = Some("app".into());
        config.redis.password = Some(timestamp_api::Secret::new("app-password"));
    })
    .await;

    assert_eq!(app.api.put_empty("/v1/timestamps/a").await.status, 201);
    assert_eq!(
        app.api
            .put_json("/v1/timestamps/b", r#"{"epoch_ms": 7}"#)
            .await
            .status,
        201
    );
    assert_eq!(
        app.api
            .put_json("/v1/timestamps/b", r#"{"epoch_ms": 8}"#)
            .await
            .status,
        200
    );
    assert_eq!(app.api.get("/v1/timestamps/b").await.json()["epoch_ms"], 8);
    let listed = app.api.get("/v1/timestamps?limit=1").await.json();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    let cursor = listed["next_cursor"].as_str().unwrap();
    assert_eq!(
        app.api
            .get(&format!("/v1/timestamps?cursor={cursor}"))
            .await
            .status,
        200
    );
    assert_eq!(app.api.delete("/v1/timestamps/a").await.status, 204);
    app.api
        .get("/v1/timestamps/a")
        .await
        .assert_problem(404, "not-found");

    let admin = |user: &str, password: &str| {
        redis::Client::open(format!(
            "redis://{user}:{password}@127.0.0.1:{}/0",
            app.redis.port()
        ))
        .and_then(|client| client.get_connection())
    };
    let mut admin_connection = admin("admin", "admin-password").unwrap();
    let denied: Vec<redis::Value> = redis::cmd("ACL")
        .arg("LOG")
        .query(&mut admin_connection)
        .unwrap();
    assert!(
        denied.is_empty(),
        "the service sent commands the ACL denies: {denied:?}"
    );

    // The ACL really is in force, so the check above could have failed.
    let mut as_app = admin("app", "app-password").unwrap();
    let flush: redis::RedisResult<()> = redis::cmd("FLUSHALL").query(&mut as_app);
    assert_eq!(flush.unwrap_err().code(), Some("NOPERM"));
    let outside: redis::RedisResult<Option<String>> = as_app.get("other:key");
    assert_eq!(outside.unwrap_err().code(), Some("NOPERM"));
    let mut anonymous = redis::Client::open(app.redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let refused: redis::RedisResult<String> = redis::cmd("PING").query(&mut anonymous);
    assert_eq!(refused.unwrap_err().code(), Some("NOAUTH"));
}
