//! The HTTP suite (`sessionkit_integration_tests::http_suite`) through a real
//! server and client, run against every store in the repository.

use sessionkit_integration_tests::stores;
use sessionkit_integration_tests::{credentials_suite, http_suite, same_key_suite, user_sessions_suite};

/// One `#[tokio::test]` running suite check `$check` on a fresh `$store`.
macro_rules! check {
    ($store:ident: $suite:ident: $($check:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $check() {
            // `None`: a Redis or PostgreSQL test on a machine without that server, said loudly (a failure under CI).
            let Some(store) = stores::$store().await else { return };
            $suite::$check(store).await;
        }
    )*};
}

/// One module per store, one test per suite check.
macro_rules! http_suite_for {
    ($($store:ident),* $(,)?) => {$(
        mod $store {
            use super::*;

            check!($store: http_suite:
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
            );
            check!($store: user_sessions_suite:
                a_users_sessions_are_listed_and_revoked_from_any_of_them,
                expired_and_logged_out_sessions_leave_the_listing,
                a_regenerate_racing_a_logout_never_brings_it_back,
                a_storm_of_logins_and_revocations_leaves_exact_listings,
                caps_reach_sessions_that_already_exist,
                a_logout_survives_its_client_hanging_up,
            );
            check!($store: same_key_suite:
                concurrent_increments_of_one_key_all_count,
                concurrent_pushes_onto_one_key_all_land,
                exclusive_read_modify_writes_lose_nothing,
                a_crashed_lease_holder_blocks_only_until_its_lease_runs_out,
                a_holder_whose_lease_ran_out_cannot_write,
                max_size_holds_on_the_stored_result,
            );
        }
    )*};
}

http_suite_for!(memory, file, postgres, redb, redis, sqlite);

/// Behaviour that does not depend on the store, checked once on memory.
mod layer {
    use super::*;

    check!(memory: http_suite: cookie_attributes_follow_the_config, handler_headers_are_kept, signed_cookies_reject_tampering);
    check!(memory: credentials_suite:
        a_signing_key_rotates_under_live_sessions,
        a_signature_is_bound_to_the_cookie_name,
        cookie_prefixes_are_checked_at_startup,
        ids_travel_in_a_header_for_api_clients,
    );
}

/// A route that extracts `Session` without a `SessionLayer` in front of it
/// answers an empty 500 (and logs why) instead of panicking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_layer_is_an_empty_500() {
    use axum::routing::get;
    let app =
        axum::Router::new().route("/", get(|session: sessionkit::Session| async move { session.id().to_string() }));
    let server = sessionkit_integration_tests::server::TestServer::start(app).await;
    let response = reqwest::get(server.url("/")).await.expect("request");
    assert_eq!(response.status(), reqwest::StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(response.text().await.expect("body"), "");
}
