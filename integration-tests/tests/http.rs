//! The HTTP suite (`sessionkit_integration_tests::http_suite`) through a real
//! server and client, run against every store in the repository.

use sessionkit_integration_tests::http_suite as suite;
use sessionkit_integration_tests::stores;

/// One module per store, one `#[tokio::test]` per suite check.
macro_rules! http_suite_for {
    ($($store:ident),* $(,)?) => {$(
        mod $store {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn untouched_sessions_cost_nothing() {
                suite::untouched_sessions_cost_nothing(stores::$store().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn written_values_are_read_back() {
                suite::written_values_are_read_back(stores::$store().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn foreign_cookies_are_never_adopted() {
                suite::foreign_cookies_are_never_adopted(stores::$store().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn max_age_equals_ttl() {
                suite::max_age_equals_ttl(stores::$store().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn rolling_refreshes_and_fixed_keeps() {
                suite::rolling_refreshes_and_fixed_keeps(stores::$store().await, stores::$store().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn absolute_lifetime_caps_rolling() {
                suite::absolute_lifetime_caps_rolling(stores::$store().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sessions_expire_after_ttl() {
                suite::sessions_expire_after_ttl(stores::$store().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn regenerate_replaces_the_id() {
                suite::regenerate_replaces_the_id(stores::$store().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn destroy_removes_record_and_cookie() {
                suite::destroy_removes_record_and_cookie(stores::$store().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_writes_both_survive() {
                suite::concurrent_writes_both_survive(stores::$store().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn destroy_is_not_undone_by_a_late_write() {
                suite::destroy_is_not_undone_by_a_late_write(stores::$store().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn store_outage_answers_empty_500() {
                suite::store_outage_answers_empty_500(stores::$store().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn oversized_sessions_are_refused() {
                suite::oversized_sessions_are_refused(stores::$store().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn server_errors_persist_nothing() {
                suite::server_errors_persist_nothing(stores::$store().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn ids_at_rest_are_hashed() {
                suite::ids_at_rest_are_hashed(stores::$store().await).await;
            }
        }
    )*};
}

http_suite_for!(memory, file, redb, sqlite);

/// Behaviour that does not depend on the store, checked once.
mod layer {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cookie_attributes_follow_the_config() {
        suite::cookie_attributes_follow_the_config(stores::memory().await, stores::memory().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn handler_headers_are_kept() {
        suite::handler_headers_are_kept(stores::memory().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn signed_cookies_reject_tampering() {
        suite::signed_cookies_reject_tampering(stores::memory().await).await;
    }
}
