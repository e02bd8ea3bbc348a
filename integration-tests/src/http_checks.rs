//! The one list of store-dependent HTTP checks: every check of
//! `http_suite`, `user_sessions_suite` and `same_key_suite` that each store
//! must pass. `tests/http.rs` turns it into one test per check and store;
//! `redis_suites` runs it on each Redis deployment. A check added here runs
//! on every store and every Redis shape; one left out runs nowhere.

/// Calls `$callback! { [args] suite::check, suite::check, ... }` with every
/// store-dependent HTTP check, each as `<suite module>::<check function>`
/// (the modules of this crate). `args` are passed through unchanged, for
/// the callback's own use (a store's name, say).
///
/// ```
/// macro_rules! names {
///     ([] $($suite:ident::$check:ident),* $(,)?) => { [$(stringify!($check)),*] };
/// }
/// let names = sessionkit_integration_tests::with_http_checks!(names![]);
/// assert!(names.contains(&"ids_at_rest_are_hashed"));
/// ```
#[macro_export]
macro_rules! with_http_checks {
    ($callback:ident ! [ $($args:tt)* ]) => {
        $callback! {
            [$($args)*]
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
        }
    };
}
