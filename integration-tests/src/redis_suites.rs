//! The HTTP suites on one Redis deployment (a Cluster, a Sentinel
//! deployment, a TLS server): every store-dependent check of `http_suite`,
//! `user_sessions_suite` and `same_key_suite`, each on a fresh store of its own (a key prefix of its own
//! on the shared deployment), one after another. Starting a deployment per
//! check would cost seconds each; a prefix keeps the stores apart just as
//! well.
//!
//! The list is the one `tests/http.rs` runs on every store; a check added
//! there belongs here too.

use std::future::Future;
use std::pin::Pin;

use crate::stores::StoreUnderTest;
use crate::{http_suite, same_key_suite, user_sessions_suite};

type Check = fn(StoreUnderTest) -> Pin<Box<dyn Future<Output = ()> + Send>>;

macro_rules! checks {
    ($($suite:ident::$check:ident),* $(,)?) => {
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
    let checks = checks![
        http_suite::untouched_sessions_cost_nothing,
        http_suite::written_values_are_read_back,
        http_suite::foreign_cookies_are_never_adopted,
        http_suite::max_age_equals_ttl,
        http_suite::rolling_refreshes_cookie_and_expiry,
        http_suite::fixed_expiry_never_moves,
        http_suite::absolute_lifetime_caps_rolling,
        http_suite::sessions_expire_after_ttl,
        http_suite::regenerate_replaces_the_id,
        http_suite::destroy_removes_record_and_cookie,
        http_suite::concurrent_writes_both_survive,
        http_suite::destroy_is_not_undone_by_a_late_write,
        http_suite::store_outage_answers_empty_500,
        http_suite::oversized_sessions_are_refused,
        http_suite::server_errors_persist_nothing,
        http_suite::ids_at_rest_are_hashed,
        user_sessions_suite::a_users_sessions_are_listed_and_revoked_from_any_of_them,
        user_sessions_suite::expired_and_logged_out_sessions_leave_the_listing,
        user_sessions_suite::a_regenerate_racing_a_logout_never_brings_it_back,
        user_sessions_suite::a_storm_of_logins_and_revocations_leaves_exact_listings,
        user_sessions_suite::caps_reach_sessions_that_already_exist,
        user_sessions_suite::a_logout_survives_its_client_hanging_up,
        same_key_suite::concurrent_increments_of_one_key_all_count,
        same_key_suite::concurrent_pushes_onto_one_key_all_land,
        same_key_suite::exclusive_read_modify_writes_lose_nothing,
        same_key_suite::a_crashed_lease_holder_blocks_only_until_its_lease_runs_out,
        same_key_suite::a_holder_whose_lease_ran_out_cannot_write,
        same_key_suite::max_size_holds_on_the_stored_result,
    ];
    for (name, check) in checks {
        let under_test = store(format!("http-{name}:")).await;
        // A failing check panics; say which one first.
        eprintln!("{shape}: HTTP suite check {name}");
        check(under_test).await;
    }
}
