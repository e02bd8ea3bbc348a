//! The HTTP suite on one Redis deployment (a Cluster, a Sentinel
//! deployment, a TLS server): every store-dependent check of
//! `http_suite`, each on a fresh store of its own (a key prefix of its own
//! on the shared deployment), one after another. Starting a deployment per
//! check would cost seconds each; a prefix keeps the stores apart just as
//! well.
//!
//! The list is the one `tests/http.rs` runs on every store; a check added
//! there belongs here too.

use std::future::Future;
use std::pin::Pin;

use crate::http_suite as suite;
use crate::stores::StoreUnderTest;

type Check = fn(StoreUnderTest) -> Pin<Box<dyn Future<Output = ()> + Send>>;

macro_rules! checks {
    ($($check:ident),* $(,)?) => {
        [$((stringify!($check), (|store| Box::pin(suite::$check(store))) as Check)),*]
    };
}

/// Runs every check on a store from `store(prefix)`, a fresh prefix each,
/// naming the check that fails.
pub async fn run_http_suite<F, Fut>(shape: &str, store: F)
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = StoreUnderTest>,
{
    let checks = checks![
        untouched_sessions_cost_nothing,
        written_values_are_read_back,
        foreign_cookies_are_never_adopted,
        max_age_equals_ttl,
        rolling_refreshes_cookie_and_expiry,
        fixed_expiry_never_moves,
        absolute_lifetime_caps_rolling,
        sessions_expire_after_ttl,
        regenerate_replaces_the_id,
        destroy_removes_record_and_cookie,
        concurrent_writes_both_survive,
        destroy_is_not_undone_by_a_late_write,
        store_outage_answers_empty_500,
        oversized_sessions_are_refused,
        server_errors_persist_nothing,
        ids_at_rest_are_hashed,
    ];
    for (name, check) in checks {
        let under_test = store(format!("http-{name}:")).await;
        // A failing check panics; say which one first.
        eprintln!("{shape}: HTTP suite check {name}");
        check(under_test).await;
    }
}
