//! Shared machinery for sessionkit's integration tests: a real axum server on
//! a loopback port, the application the HTTP suite drives, an observable
//! store wrapper, store factories, the HTTP suite itself, which
//! `tests/http.rs` runs against every store, and the power-cut rounds of
//! `tests/power_loss.rs`.

#![forbid(unsafe_code)]

pub mod app;
pub mod crash_workload;
pub mod credentials_suite;
pub mod exclusive_counter;
pub mod failover_workload;
pub mod http_checks;
pub mod http_suite;
pub mod observed_store;
pub mod postgres_server;
pub mod power_cut;
pub mod power_cut_http;
pub mod raw_http;
pub mod redis_cluster;
pub mod redis_node;
pub mod redis_sentinel;
pub mod redis_server;
pub mod redis_suites;
pub mod redis_tls;
pub mod same_key_suite;
pub mod server;
pub mod stores;
pub mod support;
pub mod two_servers_suite;
pub mod user_sessions_suite;
pub mod visitor;
