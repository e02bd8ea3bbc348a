//! The HTTP suites on one Redis deployment (a Cluster, a Sentinel
//! deployment, a TLS server): every store-dependent check of `http_suite`,
//! `user_sessions_suite` and `same_key_suite`, each on a fresh store of its
//! own (a key prefix of its own on the shared deployment), one after
//! another. Starting a deployment per check would cost seconds each; a
//! prefix keeps the stores apart just as well.
//!
//! The checks come from [`with_http_checks!`](crate::with_http_checks), the
//! list `tests/http.rs` runs on every store, so no shape can miss one.

use std::future::Future;
use std::pin::Pin;

use crate::stores::StoreUnderTest;
use crate::{http_suite, same_key_suite, user_sessions_suite};

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

