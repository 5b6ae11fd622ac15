//! The real `timestamp-api` binary as a child process: `ServiceProcess` starts it on ephemeral
//! ports (read back from its "serving" log line), collects its stdout and stderr, signals it and
//! waits for it; `binary` is a bare command for the binary's other uses (its subcommands, a
//! start that must fail).

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::client::Client;
use super::redis_server::RedisServer;
use super::send_signal;

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
    /// The binary with `env` as its whole configuration.
    pub fn start(env: &[(&str, &str)]) -> Self {
        Self::start_command(Self::command(env))
    }

    /// `start` against `redis`: `TSAPI_REDIS__URL` is its URL, and `env` comes on top.
    pub fn against(redis: &RedisServer, env: &[(&str, &str)]) -> Self {
        Self::start_command(Self::command_against(redis, env))
    }

    /// `against` with nothing on top, and the file descriptor limit (`ulimit -n`) set to
    /// `soft` and `hard`.
    pub fn against_with_fd_limit(redis: &RedisServer, soft: u64, hard: u64) -> Self {
        use std::os::unix::process::CommandExt;
        let mut command = Self::command_against(redis, &[]);
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

    fn command_against(redis: &RedisServer, env: &[(&str, &str)]) -> Command {
        let mut command = Self::command(&[("TSAPI_REDIS__URL", &redis.url())]);
        command.envs(env.iter().copied());
        command
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
