//! A private redis-server: `RedisServer` runs `redis-server` (or a Sentinel) on a free loopback
//! port with a temporary directory, and kills it on drop. It can also crash, freeze, thaw and
//! restart it, and hands out direct connections for looking at what the service stored. With
//! `ServerTls` it speaks only TLS on that port, and the direct connections do too.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::certs::ServerTls;
use super::send_signal;

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

/// A private redis-server. Dropping it kills the process and removes its directory.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
    extra_args: Vec<String>,
    /// A Sentinel's configuration file (Sentinel rewrites it, so it must be a file).
    sentinel_config: Option<PathBuf>,
    tls: Option<ServerTls>,
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
            None,
        )
    }

    /// Starts a server that speaks only TLS, as `tls` says, with extra arguments.
    pub fn start_tls(tls: ServerTls, extra_args: &[&str]) -> Self {
        Self::start_in(
            tempfile::tempdir().expect("temporary directory for redis-server"),
            extra_args,
            None,
            Some(tls),
        )
    }

    /// Starts a Sentinel (`redis-server <file> --sentinel`) with `config` as its file, and with
    /// TLS on its port if `tls`.
    pub fn start_sentinel(config: &str, tls: Option<ServerTls>) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory for a Sentinel");
        let file = dir.path().join("sentinel.conf");
        std::fs::write(&file, config).expect("writing the Sentinel's configuration");
        Self::start_in(dir, &[], Some(file), tls)
    }

    fn start_in(
        dir: TempDir,
        extra_args: &[&str],
        sentinel_config: Option<PathBuf>,
        tls: Option<ServerTls>,
    ) -> Self {
        let mut server = Self {
            child: None,
            port: 0,
            dir,
            extra_args: extra_args.iter().map(|arg| (*arg).to_owned()).collect(),
            sentinel_config,
            tls,
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

    /// Whether the process runs (it was not stopped, or was restarted since).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// `redis://127.0.0.1:<port>/0`, or `rediss://` with TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}/0", self.port)
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
        open_client(&self.url(), self.tls.as_ref())
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
        let port = self.port.to_string();
        let listen = match &self.tls {
            Some(tls) => tls.args(self.port),
            None => vec!["--port".to_owned(), port],
        };
        let mut child = command
            .args(&listen)
            .args(["--bind", "127.0.0.1"])
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
            if answers_ping(self.port, self.tls.as_ref()) {
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

pub(super) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free local port")
}

/// A redis-rs client of `url`, with the harness's TLS settings for a TLS server.
pub fn open_client(url: &str, tls: Option<&ServerTls>) -> redis::RedisResult<redis::Client> {
    match tls {
        Some(tls) => tls.client(url),
        None => redis::Client::open(url),
    }
}

/// Any reply to PING (PONG, or NOAUTH when the default user is off) means Redis is up. A TLS
/// server is asked without checking its certificate, which some tests make bad on purpose.
fn answers_ping(port: u16, tls: Option<&ServerTls>) -> bool {
    if let Some(tls) = tls {
        let reply = tls
            .client(&format!("rediss://127.0.0.1:{port}/#insecure"))
            .and_then(|client| client.get_connection_with_timeout(Duration::from_millis(500)))
            .and_then(|mut connection| redis::cmd("PING").query::<redis::Value>(&mut connection));
        return match reply {
            Ok(_) => true,
            Err(error) => error.code().is_some(),
        };
    }
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
