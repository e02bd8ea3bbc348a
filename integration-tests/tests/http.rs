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

/// One module per store, one test per check of the crate's list
/// (`with_http_checks!`, which the Redis deployments run too).
macro_rules! store_module {
    ([$store:ident] $($suite:ident::$check:ident),* $(,)?) => {
        mod $store {
            use super::*;

            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    // `None`: a Redis or PostgreSQL test on a machine without that server, said loudly (a failure under CI).
                    let Some(store) = stores::$store().await else { return };
                    $suite::$check(store).await;
                }
            )*
        }
    };
}

macro_rules! http_suite_for {
    ($($store:ident),* $(,)?) => {$(
        sessionkit_integration_tests::with_http_checks!(store_module![$store]);
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
