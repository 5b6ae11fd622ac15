//! The test harness. `spawn_app()` starts a private `redis-server` (ephemeral port, temporary
//! directory, stopped on drop) and the service in-process on port 0 against it; the `TestApp`
//! it returns owns both. `ServiceProcess` runs the real binary instead. A `Client` talks to one
//! listener, and can also send a request byte for byte.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::http::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tempfile::TempDir;
use timestamp_api::{App, Config};
use tokio::task::JoinHandle;

/// The redis-server to run: `REDIS_SERVER_BIN`, or `redis-server` on PATH.
pub fn redis_server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("REDIS_SERVER_BIN") {
        return PathBuf::from(path);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("redis-server"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "redis-server not found: the integration tests need a real Redis. Install it \
                 (Debian: apt-get install redis-server) or set REDIS_SERVER_BIN to its path"
            )
        })
}

/// Held by the tests that load the machine (a thousand connections, tens of megabytes of
/// answers, twelve thousand requests, six redis-servers failing over under writers): on two
/// cores, two of them at once would measure each other rather than the service.
pub static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A private redis-server. Dropping it kills the process and removes its directory.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
    extra_args: Vec<String>,
    /// A Sentinel's configuration file (Sentinel rewrites it, so it must be a file).
    sentinel_config: Option<PathBuf>,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts with extra `redis-server` arguments (an `--aclfile`, say).
    pub fn start_with(extra_args: &[&str]) -> Self {
        Self::start_in(
            tempfile::tempdir().expect("temporary directory for redis-server"),
            extra_args,
            None,
        )
    }

    /// Starts a Sentinel (`redis-server <file> --sentinel`) with `config` as its file.
    pub fn start_sentinel(config: &str) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory for a Sentinel");
        let file = dir.path().join("sentinel.conf");
        std::fs::write(&file, config).expect("writing the Sentinel's configuration");
        Self::start_in(dir, &[], Some(file))
    }

    fn start_in(dir: TempDir, extra_args: &[&str], sentinel_config: Option<PathBuf>) -> Self {
        let mut server = Self {
            child: None,
            port: 0,
            dir,
            extra_args: extra_args.iter().map(|arg| (*arg).to_owned()).collect(),
            sentinel_config,
        };
        // Another test may take a port between our probe and redis' bind: try a few.
        for _ in 0..5 {
            server.port = free_port();
            if server.launch() {
                return server;
            }
        }
        panic!("redis-server did not start; log:\n{}", server.log());
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills the server (like a crash: no final save).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the process (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        send_signal(
            self.child.as_ref().expect("redis-server is running"),
            libc::SIGSTOP,
        );
    }

    /// Undoes `pause` (SIGCONT).
    pub fn resume(&self) {
        send_signal(
            self.child.as_ref().expect("redis-server is running"),
            libc::SIGCONT,
        );
    }

    /// Starts the server again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.launch() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not restart; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A direct connection, for looking at what the service stored.
    pub fn client(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|client| client.get_connection())
            .expect("direct connection to the test redis-server")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    fn launch(&mut self) -> bool {
        let binary = redis_server_binary();
        let mut command = Command::new(&binary);
        if let Some(file) = &self.sentinel_config {
            command.arg(file).arg("--sentinel");
        }
        let mut child = command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--save", "", "--appendonly", "no", "--logfile", "redis.log"])
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("spawning {}: {error}", binary.display()));
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            if answers_ping(self.port) {
                self.child = Some(child);
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Signals a child directly, so that the tests need no `kill` program (the Nix sandbox has none).
fn send_signal(child: &Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("a pid fits pid_t");
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; the pid is a child we
    // have not reaped, so it cannot have been reused by another process.
    let result = unsafe { libc::kill(pid, signal) };
    assert_eq!(
        result,
        0,
        "kill({pid}, {signal}) failed: {}",
        std::io::Error::last_os_error()
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free local port")
}

/// Any reply to PING (PONG, or NOAUTH when the default user is off) means Redis is up.
fn answers_ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).is_ok()
        && (line.starts_with('+') || line.starts_with('-'))
}

/// The service, running in-process on ephemeral ports against a Redis of its own; dropping it
/// aborts the server task, then stops the Redis.
pub struct TestApp {
    /// A client of the API listener.
    pub api: Client,
    /// A client of the admin listener.
    pub admin: Client,
    /// The Redis the service uses: stop, pause or restart it, or look at what was stored.
    pub redis: RedisServer,
    server: JoinHandle<()>,
}

/// The service, configured as `TestApp::spawn` says, against a Redis of its own.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// `spawn_app`, with `configure` changing the configuration before the service binds.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    TestApp::spawn(RedisServer::start(), configure).await
}

impl TestApp {
    /// The service against `redis` as the test prepared it (started with extra arguments, or
    /// already stopped). Its configuration is the default one with both listeners on
    /// 127.0.0.1 port 0 and `redis` as the store, then changed by `configure`.
    pub async fn spawn(redis: RedisServer, configure: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..Config::default()
        };
        config.redis.url = redis.url();
        configure(&mut config);
        let app = App::bind(&config).await.expect("binding the service");
        let (api, admin) = (
            Client {
                addr: app.api_addr(),
            },
            Client {
                addr: app.admin_addr(),
            },
        );
        // Graceful shutdown is the binary's to show (process.rs): here the drop aborts the task.
        let server = tokio::spawn(app.run(std::future::pending()));
        Self {
            api,
            admin,
            redis,
            server,
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

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
                .is_some_and(|kind| kind.ends_with(&format!("#{slug}"))),
            "expected problem type {slug}: {body}"
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

/// The real `timestamp-api` binary, started with a clean environment plus `env`, listening on
/// ephemeral ports (read back from its "serving" log line). Killed on drop if still running.
pub struct ServiceProcess {
    child: Child,
    pub api: Client,
    pub admin: Client,
    stdout: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stderr: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// While false, nobody reads the service's stdout: its pipe fills and stays full.
    reading_stdout: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

pub const BINARY: &str = env!("CARGO_BIN_EXE_timestamp-api");

/// A command for the binary with nothing but PATH from the test's environment.
pub fn binary(env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BINARY);
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

impl ServiceProcess {
    pub fn start(env: &[(&str, &str)]) -> Self {
        Self::start_command(Self::command(env))
    }

    /// `start` with the file descriptor limit (`ulimit -n`) set to `soft` and `hard`.
    pub fn start_with_fd_limit(env: &[(&str, &str)], soft: u64, hard: u64) -> Self {
        use std::os::unix::process::CommandExt;
        let mut command = Self::command(env);
        // SAFETY: the closure runs in the child between fork and exec, and calls only
        // setrlimit, which is async-signal-safe, on a struct of its own.
        unsafe {
            command.pre_exec(move || {
                let limit = libc::rlimit {
                    rlim_cur: soft,
                    rlim_max: hard,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        Self::start_command(command)
    }

    fn command(env: &[(&str, &str)]) -> Command {
        let mut command = binary(&[
            ("TSAPI_LISTEN", "127.0.0.1:0"),
            ("TSAPI_ADMIN_LISTEN", "127.0.0.1:0"),
        ]);
        command.envs(env.iter().copied());
        command
    }

    fn start_command(mut command: Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting timestamp-api");
        let reading_stdout = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let stdout = collect_lines(
            child.stdout.take().expect("piped stdout"),
            reading_stdout.clone(),
        );
        let stderr = collect_lines(
            child.stderr.take().expect("piped stderr"),
            std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true)),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let announced = stdout
                .lock()
                .unwrap()
                .iter()
                .find_map(|line| serving_addresses(line));
            if let Some((api, admin)) = announced {
                return Self {
                    api: Client { addr: api },
                    admin: Client { addr: admin },
                    child,
                    stdout,
                    stderr,
                    reading_stdout,
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "timestamp-api exited with {status}; stderr: {:?}",
                    stderr.lock().unwrap()
                );
            }
            assert!(
                Instant::now() < deadline,
                "timestamp-api did not start: {:?}",
                stdout.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops reading the service's stdout, as a stalled log shipper would; `resume_stdout`
    /// drains it again.
    pub fn stall_stdout(&self) {
        self.reading_stdout
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn resume_stdout(&self) {
        self.reading_stdout
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// The process's resident memory now, in MiB.
    pub fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the service's /proc status");
        let kib: f64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc status");
        kib / 1024.0
    }

    /// The process's file descriptor limit now: soft and hard (`/proc/<pid>/limits`).
    pub fn fd_limit(&self) -> (u64, u64) {
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", self.child.id()))
            .expect("the service's /proc limits");
        let line = limits
            .lines()
            .find(|line| line.starts_with("Max open files"))
            .expect("a Max open files line");
        let mut values = line
            .trim_start_matches("Max open files")
            .split_whitespace()
            .map(|value| value.parse().expect("a number of files"));
        (values.next().unwrap(), values.next().unwrap())
    }

    /// Sends a signal such as `libc::SIGTERM` to the process.
    pub fn signal(&self, signal: libc::c_int) {
        send_signal(&self.child, signal);
    }

    /// Waits for the process to exit, at most `within`.
    pub fn wait(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for timestamp-api") {
                // Give the reader threads a moment to drain the pipes.
                std::thread::sleep(Duration::from_millis(50));
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "timestamp-api still running after {within:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Every stdout line, parsed as the JSON log event it must be.
    pub fn events(&self) -> Vec<Value> {
        self.stdout()
            .iter()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON log line: {line}"))
            })
            .collect()
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The listen addresses from the "serving" event, in either log format.
fn serving_addresses(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    if let Ok(event) = serde_json::from_str::<Value>(line) {
        if event["message"] != "serving" {
            return None;
        }
        let addr = |field: &str| event[field].as_str()?.parse().ok();
        return Some((addr("api_addr")?, addr("admin_addr")?));
    }
    if !line.contains("serving") {
        return None;
    }
    let addr = |field: &str| {
        let start = line.find(&format!("{field}="))? + field.len() + 1;
        line[start..].split_whitespace().next()?.parse().ok()
    };
    Some((addr("api_addr")?, addr("admin_addr")?))
}

fn collect_lines(
    pipe: impl Read + Send + 'static,
    reading: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        let mut pipe = BufReader::new(pipe);
        loop {
            while !reading.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(10));
            }
            let mut line = String::new();
            match pipe.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => sink
                    .lock()
                    .unwrap()
                    .push(line.trim_end_matches('\n').to_owned()),
            }
        }
    });
    lines
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
