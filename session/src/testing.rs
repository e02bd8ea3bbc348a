//! The store conformance kit (feature `testing`): proves that a
//! [`SessionStore`] honours the contract in [`crate::store`].
//!
//! # Testing your own store
//!
//! Add sessionkit with the `testing` feature to your dev-dependencies and
//! expand [`store_conformance_tests!`](crate::store_conformance_tests) in a
//! test module, with an expression that builds a fresh, empty store. It
//! becomes one `#[test]` per contract, named after it, so a failure says which
//! promise broke:
//!
//! ```
//! use std::collections::HashMap;
//! use std::sync::Mutex;
//! use std::time::SystemTime;
//!
//! use sessionkit::{expiry, SessionId, SessionMap, SessionRecord, SessionStore, StoreError};
//!
//! /// A third-party store: a map behind one lock.
//! #[derive(Default)]
//! pub struct LockedMapStore {
//!     records: Mutex<HashMap<SessionId, SessionRecord>>,
//! }
//!
//! impl LockedMapStore {
//!     fn records(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, SessionRecord>> {
//!         self.records.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
//!     }
//! }
//!
//! #[sessionkit::async_trait]
//! impl SessionStore for LockedMapStore {
//!     async fn get(&self, id: &SessionId) -> Result<Option<SessionRecord>, StoreError> {
//!         let now = expiry::now();
//!         Ok(self.records().get(id).filter(|r| !r.is_expired_at(now)).cloned())
//!     }
//!     async fn set(&self, id: &SessionId, data: &SessionMap, expires_at: Option<SystemTime>) -> Result<(), StoreError> {
//!         self.records().insert(id.clone(), SessionRecord::new(data.clone(), expires_at));
//!         Ok(())
//!     }
//!     async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
//!         self.records().remove(id);
//!         Ok(())
//!     }
//!     async fn update(
//!         &self,
//!         id: &SessionId,
//!         changes: &sessionkit::Changes,
//!         expires_at: Option<SystemTime>,
//!     ) -> Result<sessionkit::UpdateOutcome, StoreError> {
//!         // One lock around the read-modify-write makes it atomic.
//!         let now = expiry::now();
//!         let mut records = self.records();
//!         match records.get_mut(id).filter(|r| !r.is_expired_at(now)) {
//!             Some(record) => {
//!                 changes.apply(&mut record.data);
//!                 record.expires_at = expires_at;
//!                 Ok(sessionkit::UpdateOutcome::Applied)
//!             }
//!             None => Ok(sessionkit::UpdateOutcome::Missing),
//!         }
//!     }
//!     async fn delete_expired(&self) -> Result<u64, StoreError> {
//!         let now = expiry::now();
//!         let mut records = self.records();
//!         let before = records.len();
//!         records.retain(|_, r| !r.is_expired_at(now));
//!         Ok((before - records.len()) as u64)
//!     }
//! }
//!
//! #[cfg(test)]
//! mod conformance {
//!     sessionkit::store_conformance_tests!(async { super::LockedMapStore::default() });
//! }
//! # fn main() {
//! #     // Doctests do not run `#[test]`s; run every check here instead.
//! #     sessionkit::testing::block_on(sessionkit::testing::run_all(
//! #         || async { LockedMapStore::default() },
//! #         sessionkit::testing::Options::default(),
//! #     ));
//! # }
//! ```
//!
//! The factory is evaluated once per check, so each check starts from an
//! empty store. A store that needs a temporary directory or database can
//! keep it alive with [`Guarded`]. A store whose engine expires records by
//! itself (Redis) passes [`Options`] saying so.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::{Changes, SessionId, SessionMap, SessionRecord, SessionStore, StoreError, UpdateOutcome, expiry};

/// How the kit should treat a store's particularities.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct Options {
    /// The engine removes expired records on its own (Redis key expiry), so
    /// `delete_expired` may find fewer expired records than were written,
    /// down to none. Every other promise is checked as usual.
    pub expires_on_its_own: bool,
}

impl Options {
    /// Options for an engine that removes expired records on its own.
    pub fn expiring_on_its_own() -> Self {
        Self { expires_on_its_own: true }
    }
}

/// A store together with something that must live as long as it (a
/// temporary directory, a database server handle).
pub struct Guarded<S, G> {
    store: S,
    _guard: G,
}

impl<S, G> Guarded<S, G> {
    /// Keeps `guard` alive as long as `store`.
    pub fn new(store: S, guard: G) -> Self {
        Self { store, _guard: guard }
    }
}

#[async_trait::async_trait]
impl<S: SessionStore, G: Send + Sync + 'static> SessionStore for Guarded<S, G> {
    async fn get(&self, id: &SessionId) -> Result<Option<SessionRecord>, StoreError> {
        self.store.get(id).await
    }
    async fn set(&self, id: &SessionId, data: &SessionMap, expires_at: Option<SystemTime>) -> Result<(), StoreError> {
        self.store.set(id, data, expires_at).await
    }
    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        self.store.delete(id).await
    }
    async fn touch(&self, id: &SessionId, expires_at: Option<SystemTime>) -> Result<bool, StoreError> {
        self.store.touch(id, expires_at).await
    }
    async fn update(
        &self,
        id: &SessionId,
        changes: &Changes,
        expires_at: Option<SystemTime>,
    ) -> Result<UpdateOutcome, StoreError> {
        self.store.update(id, changes, expires_at).await
    }
    async fn delete_expired(&self) -> Result<u64, StoreError> {
        self.store.delete_expired().await
    }
}

/// Runs `future` to completion on a multi-threaded tokio runtime, so that
/// the concurrency checks run in parallel for real.
pub fn block_on<F: Future>(future: F) -> F::Output {
    match tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build() {
        Ok(runtime) => runtime.block_on(future),
        Err(err) => panic!("conformance kit: cannot start a tokio runtime: {err}"),
    }
}

/// Expands to one `#[test]` per store contract, each on a fresh store made by
/// evaluating `$factory` (an expression of type `impl Future<Output = impl
/// SessionStore>`, such as `async { MyStore::new() }`). An optional second
/// argument gives [`testing::Options`](crate::testing::Options).
#[macro_export]
macro_rules! store_conformance_tests {
    ($factory:expr) => {
        $crate::store_conformance_tests!($factory, $crate::testing::Options::default());
    };
    ($factory:expr, $options:expr) => {
        $crate::__conformance_checks!(tests($factory, $options));
    };
}

/// The one list of checks, handed to the test generator or to [`run_all`].
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_checks {
    ($mode:ident $args:tt) => {
        $crate::__conformance_checks!(@each $mode $args;
            round_trip_keeps_nested_and_unicode_data,
            round_trip_keeps_a_one_mebibyte_record,
            set_overwrites_the_whole_record,
            delete_is_idempotent,
            missing_ids_read_as_none,
            expired_records_are_never_returned,
            touch_moves_only_the_expiry,
            touch_ignores_missing_and_expired_records,
            update_applies_set_remove_and_clear,
            update_never_recreates_a_missing_record,
            concurrent_updates_lose_no_key,
            delete_expired_removes_exactly_the_expired,
            ten_thousand_sessions_coexist,
        );
    };
    (@each tests($factory:expr, $options:expr); $($check:ident,)*) => {
        $(
            #[test]
            fn $check() {
                $crate::testing::block_on(async {
                    let store = ::std::sync::Arc::new($factory.await);
                    $crate::testing::checks::$check(store, $options).await;
                });
            }
        )*
    };
    (@each run($factory:expr, $options:expr); $($check:ident,)*) => {
        $( $crate::testing::checks::$check(::std::sync::Arc::new($factory().await), $options).await; )*
    };
}

/// Runs every check in turn, each on a fresh store from `factory`.
pub async fn run_all<S, F, Fut>(factory: F, options: Options)
where
    S: SessionStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    crate::__conformance_checks!(run(factory, options));
}

/// The individual checks. Each takes a fresh, empty store and panics with a
/// message naming the broken promise.
pub mod checks {
    use super::*;

    fn data(value: Value) -> SessionMap {
        match value {
            Value::Object(map) => map,
            other => panic!("conformance kit bug: {other} is not an object"),
        }
    }

    fn in_secs(secs: u64) -> SystemTime {
        expiry::now() + Duration::from_secs(secs)
    }

    fn must<T>(what: &str, result: Result<T, StoreError>) -> T {
        match result {
            Ok(value) => value,
            Err(err) => panic!("store failed on {what}: {err} ({err:?})"),
        }
    }

    async fn get<S: SessionStore>(store: &S, id: &SessionId) -> Option<SessionRecord> {
        must("get", store.get(id).await)
    }

    async fn set<S: SessionStore>(store: &S, id: &SessionId, value: Value, expires_at: Option<SystemTime>) {
        must("set", store.set(id, &data(value), expires_at).await);
    }

    fn record(value: Value, expires_at: Option<SystemTime>) -> SessionRecord {
        SessionRecord::new(data(value), expires_at)
    }

    /// Nested objects and arrays, unicode in keys and values, extreme
    /// numbers, and records with and without expiry come back unchanged.
    pub async fn round_trip_keeps_nested_and_unicode_data<S: SessionStore>(store: Arc<S>, _: Options) {
        let rich = json!({
            "user": { "name": "Zoë Ørsted", "roles": ["admin", "ops"], "age": null },
            "ключ": "значение",
            "emoji 😀": "🦀 and \u{0} and \"quotes\" and \\ backslash and \n newline",
            "nul\u{0}inside": "a\u{0}b",
            "numbers": [0, -1, 9_007_199_254_740_993_i64, u64::MAX, i64::MIN, 0.1, -2.5e-300, 1e300],
            "flags": [true, false],
            "deep": { "a": { "b": { "c": { "d": [[[{}]]] } } } },
            "empty": { "object": {}, "array": [], "string": "" },
        });
        let cases = [
            (SessionId::generate(), record(rich.clone(), Some(in_secs(3600)))),
            (SessionId::generate(), record(rich, None)),
            (SessionId::generate(), record(json!({}), Some(in_secs(60)))),
        ];
        for (id, expected) in &cases {
            must("set", store.set(id, &expected.data, expected.expires_at).await);
        }
        for (id, expected) in &cases {
            let got = get(&*store, id).await;
            assert_eq!(got.as_ref(), Some(expected), "a record must read back exactly as written");
        }
    }

    /// A 1 MiB record (the layer's default size limit) round-trips.
    pub async fn round_trip_keeps_a_one_mebibyte_record<S: SessionStore>(store: Arc<S>, _: Options) {
        let blob: String = (0..1024 * 1024).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        let items: Vec<Value> = (0..2_000).map(|i| json!({ "sku": format!("item-{i}"), "qty": i })).collect();
        let expected = record(json!({ "blob": blob, "items": items }), Some(in_secs(3600)));
        let id = SessionId::generate();
        must("set", store.set(&id, &expected.data, expected.expires_at).await);
        let got = get(&*store, &id).await;
        assert!(got.as_ref() == Some(&expected), "a 1 MiB record must read back exactly as written");
    }

    /// `set` replaces the whole record: old keys and the old expiry go.
    pub async fn set_overwrites_the_whole_record<S: SessionStore>(store: Arc<S>, _: Options) {
        let id = SessionId::generate();
        set(&*store, &id, json!({ "a": 1, "b": 2 }), Some(in_secs(60))).await;
        set(&*store, &id, json!({ "b": 3 }), Some(in_secs(120))).await;
        let got = get(&*store, &id).await.unwrap_or_else(|| panic!("a record that was set must be found"));
        assert_eq!(Value::Object(got.data), json!({ "b": 3 }), "set must replace the data, not merge it");
        let expires = got.expires_at.unwrap_or_else(|| panic!("set must replace the expiry"));
        assert!(expires > in_secs(90), "set must replace the expiry");
        set(&*store, &id, json!({ "c": 4 }), None).await;
        assert_eq!(
            get(&*store, &id).await.and_then(|r| r.expires_at),
            None,
            "set with no expiry must clear the expiry"
        );
    }

    /// Deleting twice, or deleting what never existed, is not an error.
    pub async fn delete_is_idempotent<S: SessionStore>(store: Arc<S>, _: Options) {
        let id = SessionId::generate();
        let other = SessionId::generate();
        set(&*store, &id, json!({ "a": 1 }), Some(in_secs(60))).await;
        set(&*store, &other, json!({ "b": 1 }), Some(in_secs(60))).await;
        must("delete", store.delete(&id).await);
        assert_eq!(get(&*store, &id).await, None, "a deleted record must be gone");
        must("delete of a deleted record", store.delete(&id).await);
        must("delete of a record that never existed", store.delete(&SessionId::generate()).await);
        assert!(get(&*store, &other).await.is_some(), "delete must remove only its own record");
    }

    /// Ids that were never stored read as `None`.
    pub async fn missing_ids_read_as_none<S: SessionStore>(store: Arc<S>, _: Options) {
        for _ in 0..10 {
            assert_eq!(get(&*store, &SessionId::generate()).await, None);
        }
        set(&*store, &SessionId::generate(), json!({ "a": 1 }), None).await;
        assert_eq!(get(&*store, &SessionId::generate()).await, None);
    }

    /// An expired record is never returned, whether or not a sweep ran:
    /// neither one written already expired, nor one that expires while stored.
    pub async fn expired_records_are_never_returned<S: SessionStore>(store: Arc<S>, _: Options) {
        let past = SessionId::generate();
        set(&*store, &past, json!({ "a": 1 }), Some(expiry::now() - Duration::from_secs(1))).await;
        assert_eq!(get(&*store, &past).await, None, "a record written already expired must not be returned");

        let soon = SessionId::generate();
        let expires_at = expiry::now() + Duration::from_millis(1_000);
        set(&*store, &soon, json!({ "a": 1 }), Some(expires_at)).await;
        assert!(get(&*store, &soon).await.is_some(), "a live record must be returned");
        let wait = expires_at.duration_since(SystemTime::now()).unwrap_or_default() + Duration::from_millis(20);
        tokio::time::sleep(wait).await;
        assert_eq!(get(&*store, &soon).await, None, "a record must not be returned once it has expired");
    }

    /// `touch` moves the expiry, leaves the data alone and reports that the
    /// record existed.
    pub async fn touch_moves_only_the_expiry<S: SessionStore>(store: Arc<S>, _: Options) {
        let id = SessionId::generate();
        let value = json!({ "cart": [1, 2, 3], "name": "ada" });
        set(&*store, &id, value.clone(), Some(in_secs(60))).await;
        let later = in_secs(7200);
        assert!(must("touch", store.touch(&id, Some(later)).await), "touch of a live record must return true");
        assert_eq!(
            get(&*store, &id).await,
            Some(record(value.clone(), Some(later))),
            "touch must move the expiry only"
        );
        assert!(must("touch", store.touch(&id, None).await), "touch to no expiry must return true");
        assert_eq!(get(&*store, &id).await, Some(record(value, None)), "touch to `None` must remove the expiry");
    }

    /// `touch` on a missing or expired record does nothing and says so.
    pub async fn touch_ignores_missing_and_expired_records<S: SessionStore>(store: Arc<S>, _: Options) {
        let missing = SessionId::generate();
        assert!(
            !must("touch", store.touch(&missing, Some(in_secs(60))).await),
            "touch of a missing record must return false"
        );
        assert_eq!(get(&*store, &missing).await, None, "touch must not create a record");

        let expired = SessionId::generate();
        set(&*store, &expired, json!({ "a": 1 }), Some(expiry::now() - Duration::from_secs(1))).await;
        assert!(
            !must("touch", store.touch(&expired, Some(in_secs(60))).await),
            "touch of an expired record must return false"
        );
        assert_eq!(get(&*store, &expired).await, None, "touch must not revive an expired record");
    }

    /// `update` applies sets, removes and clears key by key, and sets the expiry.
    pub async fn update_applies_set_remove_and_clear<S: SessionStore>(store: Arc<S>, _: Options) {
        let id = SessionId::generate();
        set(&*store, &id, json!({ "keep": 1, "change": 2, "drop": 3 }), Some(in_secs(60))).await;

        let mut changes = Changes::new();
        changes.set("change", json!({ "now": "an object" }));
        changes.set("new", json!([1, "two"]));
        changes.remove("drop");
        changes.remove("never-there");
        let later = in_secs(600);
        assert_eq!(must("update", store.update(&id, &changes, Some(later)).await), UpdateOutcome::Applied);
        let expected = json!({ "keep": 1, "change": { "now": "an object" }, "new": [1, "two"] });
        assert_eq!(get(&*store, &id).await, Some(record(expected, Some(later))), "update must apply each change");

        let mut clearing = Changes::new();
        clearing.clear();
        clearing.set("after", json!(true));
        assert_eq!(must("update", store.update(&id, &clearing, None).await), UpdateOutcome::Applied);
        assert_eq!(
            get(&*store, &id).await,
            Some(record(json!({ "after": true }), None)),
            "a clear must drop every key before the sets"
        );

        let empty = Changes::new();
        assert_eq!(must("update", store.update(&id, &empty, Some(later)).await), UpdateOutcome::Applied);
        assert_eq!(
            get(&*store, &id).await,
            Some(record(json!({ "after": true }), Some(later))),
            "an empty patch still sets the expiry"
        );
    }

    /// `update` on a missing, deleted or expired record reports `Missing`
    /// and writes nothing: a destroyed session is never brought back.
    pub async fn update_never_recreates_a_missing_record<S: SessionStore>(store: Arc<S>, _: Options) {
        let mut changes = Changes::new();
        changes.set("a", json!(1));

        let never = SessionId::generate();
        assert_eq!(must("update", store.update(&never, &changes, Some(in_secs(60))).await), UpdateOutcome::Missing);
        assert_eq!(get(&*store, &never).await, None, "update must not create a record");

        let deleted = SessionId::generate();
        set(&*store, &deleted, json!({ "b": 1 }), Some(in_secs(60))).await;
        must("delete", store.delete(&deleted).await);
        assert_eq!(must("update", store.update(&deleted, &changes, Some(in_secs(60))).await), UpdateOutcome::Missing);
        assert_eq!(get(&*store, &deleted).await, None, "update must not resurrect a deleted record");

        let expired = SessionId::generate();
        set(&*store, &expired, json!({ "b": 1 }), Some(expiry::now() - Duration::from_secs(1))).await;
        assert_eq!(must("update", store.update(&expired, &changes, Some(in_secs(60))).await), UpdateOutcome::Missing);
        assert_eq!(get(&*store, &expired).await, None, "update must not revive an expired record");
    }

    /// 64 concurrent updates, each to its own key of one session, all survive.
    pub async fn concurrent_updates_lose_no_key<S: SessionStore>(store: Arc<S>, _: Options) {
        const WRITERS: usize = 64;
        let id = SessionId::generate();
        set(&*store, &id, json!({ "base": true }), Some(in_secs(600))).await;
        let expires_at = in_secs(600);
        let tasks: Vec<_> = (0..WRITERS)
            .map(|i| {
                let (store, id) = (Arc::clone(&store), id.clone());
                tokio::spawn(async move {
                    let mut changes = Changes::new();
                    changes.set(format!("k{i}"), json!(i));
                    store.update(&id, &changes, Some(expires_at)).await
                })
            })
            .collect();
        for task in tasks {
            match task.await {
                Ok(result) => assert_eq!(must("concurrent update", result), UpdateOutcome::Applied),
                Err(err) => panic!("an update task panicked: {err}"),
            }
        }
        let got = get(&*store, &id).await.unwrap_or_else(|| panic!("the session vanished under concurrent updates"));
        let lost: Vec<String> = (0..WRITERS).map(|i| format!("k{i}")).filter(|k| !got.data.contains_key(k)).collect();
        assert!(lost.is_empty(), "concurrent updates lost keys {lost:?}: update is not atomic");
        assert_eq!(got.data.get("base"), Some(&json!(true)), "concurrent updates lost an untouched key");
        assert_eq!(got.data.len(), WRITERS + 1);
    }

    /// `delete_expired` removes exactly the expired records, returns their
    /// count, and leaves live records and records without expiry alone.
    pub async fn delete_expired_removes_exactly_the_expired<S: SessionStore>(store: Arc<S>, options: Options) {
        let past = expiry::now() - Duration::from_secs(5);
        let expired: Vec<SessionId> = (0..25).map(|_| SessionId::generate()).collect();
        let live: Vec<SessionId> = (0..30).map(|_| SessionId::generate()).collect();
        let forever: Vec<SessionId> = (0..5).map(|_| SessionId::generate()).collect();
        for id in &expired {
            set(&*store, id, json!({ "x": "expired" }), Some(past)).await;
        }
        for id in &live {
            set(&*store, id, json!({ "x": "live" }), Some(in_secs(3600))).await;
        }
        for id in &forever {
            set(&*store, id, json!({ "x": "forever" }), None).await;
        }
        let removed = must("delete_expired", store.delete_expired().await);
        if options.expires_on_its_own {
            assert!(
                removed <= expired.len() as u64,
                "delete_expired removed {removed}, more than the {} expired",
                expired.len()
            );
        } else {
            assert_eq!(
                removed,
                expired.len() as u64,
                "delete_expired must return the number of expired records it removed"
            );
        }
        for id in live.iter().chain(&forever) {
            assert!(get(&*store, id).await.is_some(), "delete_expired removed a live record");
        }
        for id in &expired {
            assert_eq!(get(&*store, id).await, None);
        }
        assert_eq!(must("delete_expired", store.delete_expired().await), 0, "a second sweep must find nothing");
    }

    /// 10,000 sessions written concurrently coexist, each with its own data.
    pub async fn ten_thousand_sessions_coexist<S: SessionStore>(store: Arc<S>, _: Options) {
        const SESSIONS: usize = 10_000;
        const TASKS: usize = 16;
        let ids: Arc<Vec<SessionId>> = Arc::new((0..SESSIONS).map(|_| SessionId::generate()).collect());
        let expires_at = in_secs(3600);
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let (store, ids) = (Arc::clone(&store), Arc::clone(&ids));
                tokio::spawn(async move {
                    for (i, id) in ids.iter().enumerate().skip(task).step_by(TASKS) {
                        store.set(id, &data(json!({ "n": i })), Some(expires_at)).await?;
                    }
                    Ok::<_, StoreError>(())
                })
            })
            .collect();
        for task in tasks {
            match task.await {
                Ok(result) => must("set", result),
                Err(err) => panic!("a writer task panicked: {err}"),
            }
        }
        for (i, id) in ids.iter().enumerate() {
            let got = get(&*store, id).await.unwrap_or_else(|| panic!("session {i} of {SESSIONS} is missing"));
            assert_eq!(got.data.get("n"), Some(&json!(i)), "session {i} holds another session's data");
        }
    }
}
