//! `GET /v1/timestamps`: pagination over SCAN.

use std::collections::BTreeSet;

use redis::Commands;
use serde_json::Value;

use crate::harness::app::Backing;
use crate::harness::app::spawn_app;
use crate::harness::client::Client;

/// Follows `next_cursor` to the end; checks every page's size and values; returns the names in
/// the order they came (SCAN may repeat one; a cluster listing may not) and the page count.
pub async fn walk(api: &Client, limit: usize) -> (Vec<String>, usize) {
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/v1/timestamps?limit={limit}&cursor={cursor}"),
            None => format!("/v1/timestamps?limit={limit}"),
        };
        let response = api.get(&path).await;
        assert_eq!(response.status, 200, "{:?}", response.body);
        let body = response.json();
        let items = body["items"].as_array().unwrap();
        assert!(
            items.len() <= limit,
            "page of {} over limit {limit}",
            items.len()
        );
        for item in items {
            assert_eq!(item["epoch_ms"].as_i64().unwrap(), 1000 + number_of(item));
            seen.push(item["name"].as_str().unwrap().to_owned());
        }
        pages += 1;
        assert!(pages < 10_000, "pagination does not end");
        match &body["next_cursor"] {
            Value::Null => return (seen, pages),
            Value::String(next) => cursor = Some(next.clone()),
            other => panic!("next_cursor is {other}"),
        }
    }
}

fn number_of(item: &Value) -> i64 {
    item["name"]
        .as_str()
        .unwrap()
        .trim_start_matches("item-")
        .parse()
        .unwrap()
}

pub fn seed(redis: &Backing, count: i64) -> BTreeSet<String> {
    let mut direct = redis.client();
    (0..count)
        .map(|n| {
            let () = direct.set(format!("ts:item-{n}"), 1000 + n).unwrap();
            format!("item-{n}")
        })
        .collect()
}

#[tokio::test]
async fn an_empty_store_lists_nothing() {
    let app = spawn_app().await;
    let body = app.api.get("/v1/timestamps").await.json();
    assert_eq!(body, serde_json::json!({"items": [], "next_cursor": null}));
}

#[tokio::test]
async fn pages_cover_every_name_across_more_than_one_page() {
    let app = spawn_app().await;
    let expected = seed(&app.redis, 250);

    let (seen, pages) = walk(&app.api, 100).await;
    let seen: BTreeSet<String> = seen.into_iter().collect();

    assert_eq!(seen, expected);
    assert!(pages >= 3, "{pages} pages");
}

#[tokio::test]
async fn the_default_page_is_at_most_100() {
    let app = spawn_app().await;
    seed(&app.redis, 150);
    let body = app.api.get("/v1/timestamps").await.json();
    assert!(body["items"].as_array().unwrap().len() <= 100);
    assert!(body["next_cursor"].is_string());
}

#[tokio::test]
async fn tiny_pages_never_lose_names_scan_returned_early() {
    let app = spawn_app().await;
    let expected = seed(&app.redis, 60);
    for limit in [1, 3, 7] {
        let seen: BTreeSet<String> = walk(&app.api, limit).await.0.into_iter().collect();
        assert_eq!(seen, expected, "limit {limit}");
    }
}

#[tokio::test]
async fn keys_outside_the_prefix_or_not_names_are_not_listed() {
    let app = spawn_app().await;
    let expected = seed(&app.redis, 5);
    let mut direct = app.redis.client();
    let () = direct.set("other:item-99", 1).unwrap();
    let () = direct.set("ts:not a name", 1).unwrap();
    let () = direct.set("ts:item-98", "garbled").unwrap();

    let seen: BTreeSet<String> = walk(&app.api, 2).await.0.into_iter().collect();

    assert_eq!(seen, expected);
}
