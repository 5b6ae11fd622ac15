//! Integration tests: the whole service over real HTTP against a real, private redis-server.
//! One test binary (modules below) keeps link time down; tests run in parallel, each with its
//! own Redis. What they share (processes, clients, time bounds) is in `harness/`.

mod acl;
mod admin;
mod cluster;
mod contract;
mod errors;
mod failover;
mod faults;
mod harness;
mod hostile;
mod listing;
mod process;
mod replicas;
mod sentinel;
mod timestamps;
mod tls;
mod traces;
