//! An HTTP client of one listener (`Client`), which can also send a request byte for byte; the
//! `TestResponse` it returns; and `metric`, which reads one sample out of a metrics exposition.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::http::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// An HTTP client of one listener: one fresh connection per request.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    pub addr: SocketAddr,
}

impl Client {
    pub async fn get(&self, path: &str) -> TestResponse {
        self.send(Method::GET, path, &[], None).await
    }

    pub async fn delete(&self, path: &str) -> TestResponse {
        self.send(Method::DELETE, path, &[], None).await
    }

    /// PUT with a JSON body.
    pub async fn put_json(&self, path: &str, body: &str) -> TestResponse {
        self.send(
            Method::PUT,
            path,
            &[("content-type", "application/json")],
            Some(body),
        )
        .await
    }

    /// PUT with no body at all: no Content-Length and no Transfer-Encoding, as `curl -X PUT`.
    pub async fn put_empty(&self, path: &str) -> TestResponse {
        self.raw(&format!(
            "PUT {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
        ))
        .await
    }

    /// Sends one request over a fresh connection.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> TestResponse {
        let stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connecting to the service");
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("HTTP handshake");
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "test");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let body = Full::new(Bytes::from(body.unwrap_or_default().to_owned()));
        let response = sender
            .send_request(request.body(body).expect("a valid request"))
            .await
            .expect("a response");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("the response body").to_bytes();
        TestResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// Sends `request` byte for byte and parses the (`Connection: close`) answer.
    pub async fn raw(&self, request: &str) -> TestResponse {
        let addr = self.addr;
        let request = request.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut stream = TcpStream::connect(addr).expect("connecting to the service");
            // Longer than any deadline of the service's (the body read's is 5 s), so the
            // service's answer, not this client's patience, ends the exchange.
            stream
                .set_read_timeout(Some(timestamp_api::BODY_READ_TIMEOUT * 4))
                .expect("read timeout");
            stream
                .write_all(request.as_bytes())
                .expect("sending the request");
            let mut raw = Vec::new();
            stream.read_to_end(&mut raw).expect("reading the response");
            TestResponse::parse(&raw)
        })
        .await
        .expect("raw request task")
    }
}

#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl TestResponse {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|error| panic!("body is not JSON ({error}): {:?}", self.body))
    }

    /// The body as UTF-8 text (the metrics exposition, say).
    pub fn text(&self) -> String {
        String::from_utf8(self.body.to_vec()).expect("a UTF-8 body")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Asserts an RFC 9457 problem of the given status and type slug; returns the body.
    pub fn assert_problem(&self, status: u16, slug: &str) -> Value {
        self.assert_problem_of(status, &[slug])
    }

    /// As `assert_problem`, for an answer that may be any one of `slugs`.
    pub fn assert_problem_of(&self, status: u16, slugs: &[&str]) -> Value {
        assert_eq!(self.status.as_u16(), status, "body: {:?}", self.body);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json")
        );
        let body = self.json();
        assert_eq!(body["status"], status, "{body}");
        assert!(
            body["type"]
                .as_str()
                .is_some_and(|kind| slugs.iter().any(|slug| kind.ends_with(&format!("#{slug}")))),
            "expected problem type {}: {body}",
            slugs.join(" or ")
        );
        assert!(
            body["title"]
                .as_str()
                .is_some_and(|title| !title.is_empty()),
            "{body}"
        );
        assert!(
            body["detail"]
                .as_str()
                .is_some_and(|detail| !detail.is_empty()),
            "{body}"
        );
        body
    }

    fn parse(raw: &[u8]) -> Self {
        let text = String::from_utf8_lossy(raw);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|line| line.split(' ').nth(1))
            .and_then(|code| code.parse::<u16>().ok())
            .and_then(|code| StatusCode::from_u16(code).ok())
            .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
        let mut headers = HeaderMap::new();
        for line in lines {
            if let Some((name, value)) = line.split_once(':') {
                headers.append(
                    hyper::http::HeaderName::from_bytes(name.trim().as_bytes())
                        .expect("header name"),
                    value.trim().parse().expect("header value"),
                );
            }
        }
        Self {
            status,
            headers,
            body: Bytes::from(body.to_owned()),
        }
    }
}

/// The value of one sample in a Prometheus text exposition: `series` is the metric name with
/// its labels exactly as rendered (`http_requests_total{method="GET",...}`).
pub fn metric(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        line.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}
