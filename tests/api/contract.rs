//! The OpenAPI document against the running service: every documented operation is routed,
//! and what it answers is one of the statuses the document lists for it (shared responses are
//! `$ref`s into `components.responses`, resolved here).

use hyper::Method;
use serde_json::Value;

use crate::harness::app::spawn_app;

#[tokio::test]
async fn every_documented_operation_answers_a_documented_status() {
    let app = spawn_app().await;
    let document = app.api.get("/openapi.json").await.json();
    let paths = document["paths"].as_object().unwrap();
    assert!(paths.len() >= 3);

    assert_every_reference_resolves(&document, &document);
    let mut checked = 0;
    for (template, operations) in paths {
        for (method, operation) in operations.as_object().unwrap() {
            let documented: Vec<&String> =
                operation["responses"].as_object().unwrap().keys().collect();
            let method: Method = method.to_uppercase().parse().unwrap();
            for path in [
                template.replace("{name}", "probe"),
                template.replace("{name}", "-invalid"),
            ] {
                let body = (method == Method::PUT).then_some(r#"{"epoch_ms": 1}"#);
                let headers: &[(&str, &str)] = if body.is_some() {
                    &[("content-type", "application/json")]
                } else {
                    &[]
                };
                let response = app.api.send(method.clone(), &path, headers, body).await;
                let status = response.status.as_str().to_owned();
                assert!(
                    documented.contains(&&status),
                    "{method} {path} answered {status}; documented: {documented:?}"
                );
                if response.status.is_client_error() || response.status.is_server_error() {
                    let response = resolve(&document, &operation["responses"][status.as_str()]);
                    let schema = &response["content"]["application/problem+json"];
                    assert!(
                        schema.is_object(),
                        "{method} {path}: {status} is not documented as a problem"
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 10, "{checked}");
    // And the problem schema the document promises is what errors look like.
    let problem = &document["components"]["schemas"]["Problem"]["properties"];
    let body = app.api.get("/v1/timestamps/-invalid").await.json();
    for field in body.as_object().unwrap().keys() {
        assert!(
            problem.get(field).is_some_and(Value::is_object),
            "{field} not in the Problem schema"
        );
    }
}

/// `value`, or what it refers to if it is a `{"$ref": "#/..."}` within the document.
fn resolve<'a>(document: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"].as_str() {
        Some(reference) => {
            let pointer = reference.strip_prefix('#').unwrap_or(reference);
            document
                .pointer(pointer)
                .unwrap_or_else(|| panic!("{reference} does not resolve"))
        }
        None => value,
    }
}

fn assert_every_reference_resolves(document: &Value, value: &Value) {
    match value {
        Value::Object(fields) => {
            resolve(document, value);
            for field in fields.values() {
                assert_every_reference_resolves(document, field);
            }
        }
        Value::Array(items) => {
            for item in items {
                assert_every_reference_resolves(document, item);
            }
        }
        _ => {}
    }
}

/// The document admits no request the service refuses for its shape: a PUT body with both
/// fields (or none), and an empty cursor, are outside the schema as well as refused.
#[tokio::test]
async fn what_the_schema_admits_the_service_takes_and_what_it_refuses_the_schema_excludes() {
    let app = spawn_app().await;
    let document = app.api.get("/openapi.json").await.json();
    let set_request = &document["components"]["schemas"]["SetRequest"];
    assert_eq!(set_request["additionalProperties"], false, "{set_request}");
    assert_eq!(set_request["minProperties"], 1, "{set_request}");
    assert_eq!(set_request["maxProperties"], 1, "{set_request}");
    for (body, status) in [
        (r#"{"epoch_ms": 1}"#, 201),
        (r#"{"timestamp": "2026-11-25T17:36:23Z"}"#, 200),
        (
            r#"{"epoch_ms": 1, "timestamp": "2026-11-25T17:36:23Z"}"#,
            400,
        ),
        ("{}", 400),
    ] {
        let response = app.api.put_json("/v1/timestamps/shape", body).await;
        assert_eq!(response.status, status, "{body}");
    }

    let list = &document["paths"]["/v1/timestamps"]["get"]["parameters"];
    let cursor = list
        .as_array()
        .unwrap()
        .iter()
        .find(|parameter| parameter["name"] == "cursor")
        .unwrap();
    assert_eq!(cursor["schema"]["minLength"], 1, "{cursor}");
    app.api
        .get("/v1/timestamps?cursor=")
        .await
        .assert_problem(400, "invalid-query");
}
