//! The HTTP suites on one Redis deployment (a Cluster, a Sentinel
//! deployment, a TLS server, a server spoken to over RESP3): every
//! store-dependent check of `http_suite`, `user_sessions_suite` and
//! `same_key_suite`, each on a fresh store of its own (a key prefix of its
//! own on the shared deployment), one after another. Starting a deployment per check would cost seconds each; a
//! prefix keeps the stores apart just as well.
//!
//! The checks come from [`with_http_checks!`](crate::with_http_checks), the
//! list `tests/http.rs` runs on every store, so no shape can miss one.
//! Also the checks of `two_servers_suite` (two app servers, two stores, one
//! deployment), which only a shared store can pass.

use std::future::Future;
use std::pin::Pin;
use std::process::Command;
use std::time::Duration;

use sessionkit::StoreKey;

use crate::stores::StoreUnderTest;
use crate::{http_suite, same_key_suite, two_servers_suite, user_sessions_suite};

type Check = fn(StoreUnderTest) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// The checks as `(name, check)` pairs.
macro_rules! check_table {
    ([] $($suite:ident::$check:ident),* $(,)?) => {
        [$((stringify!($check), (|store| Box::pin($suite::$check(store))) as Check)),*]
    };
}

/// Runs every check of the HTTP suites on a store from `store(prefix)`, a fresh prefix each,
/// naming the check that fails.
pub async fn run_http_suite<F, Fut>(shape: &str, store: F)
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = StoreUnderTest>,
{
    let checks = crate::with_http_checks!(check_table![]);
    for (name, check) in checks {
        let under_test = store(format!("http-{name}:")).await;
        // A failing check panics; say which one first.
        eprintln!("{shape}: HTTP suite check {name}");
        check(under_test).await;
    }
}

/// The command that runs the `lease-holder` binary at `bin` (the test's
/// `env!("CARGO_BIN_EXE_lease-holder")`): it takes `key`'s lease for `ttl`
/// through a `RedisStore` on `url` with `prefix`, and holds it.
pub fn lease_holder(bin: &str, url: &str, prefix: &str, key: &StoreKey, ttl: Duration) -> Command {
    let mut command = Command::new(bin);
    command.arg(url).arg(prefix).arg(key.as_str()).arg(ttl.as_millis().to_string());
    command
}

/// Runs every check of `two_servers_suite` on one Redis deployment: each
/// check on two stores from `store(prefix)` (two connections, as two app
/// servers would have) sharing a fresh prefix, the lease holder started by
/// `holder(prefix, key, ttl)`.
pub async fn run_two_servers_suite<F, Fut>(shape: &str, store: F, holder: impl Fn(&str, &StoreKey, Duration) -> Command)
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = StoreUnderTest>,
{
    let prefix = |name: &str| format!("two-{name}:");
    let store = &store;
    let pair = |name: &str| {
        eprintln!("{shape}: two app servers, check {name}");
        let prefix = prefix(name);
        async move { (store(prefix.clone()).await, store(prefix).await) }
    };
    let (a, b) = pair("increments").await;
    two_servers_suite::concurrent_increments_across_two_app_servers_all_count(a, b).await;
    let (a, b) = pair("pushes").await;
    two_servers_suite::concurrent_pushes_across_two_app_servers_all_land(a, b).await;
    let (a, b) = pair("exclusive").await;
    two_servers_suite::exclusive_read_modify_writes_across_two_app_servers_lose_nothing(a, b).await;
    let (a, b) = pair("killed-holder").await;
    let holder_prefix = prefix("killed-holder");
    two_servers_suite::a_killed_lease_holder_blocks_only_until_its_lease_runs_out(a, b, |key, ttl| {
        holder(&holder_prefix, key, ttl)
    })
    .await;
}
