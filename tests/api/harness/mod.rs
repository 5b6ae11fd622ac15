//! The test harness, by concern: a private redis-server (`redis_server`), the service
//! in-process (`app`) or as the real binary (`service_process`), an HTTP client of either
//! (`client`), time bounds and polling (`timing`), a replicated Redis watched by Sentinel
//! (`topology`), a Redis Cluster (`cluster`), certificates made for the run (`certs`), and an
//! OTLP receiver (`collector`).

use std::process::Child;

pub mod app;
pub mod certs;
pub mod client;
pub mod cluster;
pub mod collector;
pub mod redis_server;
pub mod service_process;
pub mod timing;
pub mod topology;

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
